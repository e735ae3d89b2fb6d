"""django-celery-beat's periodic task admin, with the two labels the package leaves untranslatable.

The package names its schedule column after a model property (``scheduler``)
and gives the ``task`` field a plain-string verbose name, so neither passes
through gettext; everything else it shows is translated by the override
catalog in ``beecatalog/locale/``.
"""
from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask


class TaskNameFilter(admin.AllValuesFieldListFilter):
    """Filter by the Celery task's name, titled in the active language."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = _("task name")


class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    list_display = tuple(
        "schedule_column" if name == "scheduler" else name for name in BeatPeriodicTaskAdmin.list_display
    )
    list_filter = tuple(
        ("task", TaskNameFilter) if name == "task" else name for name in BeatPeriodicTaskAdmin.list_filter
    )

    @admin.display(description=_("schedule"))
    def schedule_column(self, obj):
        return obj.scheduler


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
