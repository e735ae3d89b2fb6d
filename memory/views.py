"""The stats dashboard page: staff only, inside the admin's look."""
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.utils.translation import gettext as _

from memory.services.dashboard import dashboard_data


@staff_member_required
def dashboard(request):
    context = {
        **admin.site.each_context(request),
        **dashboard_data(),
        "title": _("Memory dashboard"),
    }
    return render(request, "memory/dashboard.html", context)
