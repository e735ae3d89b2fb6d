"""The stats dashboard page: for staff who may view the entries, inside the admin's look."""
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.shortcuts import render
from django.utils.translation import gettext as _

from memory.services.dashboard import dashboard_data


@staff_member_required
@permission_required("memory.view_productmemoryentry", raise_exception=True)
def dashboard(request):
    """The page; anyone else is sent to the admin login, staff without the view permission get 403."""
    context = {
        **admin.site.each_context(request),
        **dashboard_data(),
        "title": _("Memory dashboard"),
    }
    return render(request, "memory/dashboard.html", context)
