import atexit
import logging

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _flush_local_counters_at_exit():
    """Counts still buffered in this process (the last second of hits, or all of them
    without Redis) must not leave with it."""
    from memory.engine.counters import hit_counter

    if hit_counter.local.is_empty():
        return
    try:
        hit_counter.push()  # to Redis when it answers, where the scheduled flush takes them
        if not hit_counter.local.is_empty():
            hit_counter.flush_local()
    except Exception:  # at exit nothing can be done but say so
        logging.getLogger("memory").exception("Falha ao gravar contadores ao encerrar o processo")


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = _("Memória de produtos")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        atexit.register(_flush_local_counters_at_exit)
        from memory.api import signals as api_signals

        api_signals.connect()
        # The scheduled jobs: their Celery tasks (registered in every process that
        # loads Django, the worker included), their settings check, and their
        # django-celery-beat rows, kept in step on every migrate.
        from memory import periodic_tasks  # noqa: F401
        from memory.schedules import check_job_settings, register_after_migrate

        checks.register(check_job_settings)
        post_migrate.connect(register_after_migrate, sender=self, dispatch_uid="memory.register_periodic_tasks")
