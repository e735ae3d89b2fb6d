import atexit
import logging

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


def _flush_local_counters_at_exit():
    """A short-lived process (a command, a test run) keeps its counts in process when
    there is no Redis: write them before it goes."""
    from .counters import hit_counter

    if hit_counter.local.is_empty():
        return
    try:
        hit_counter.flush_local()
    except Exception:  # at exit nothing can be done but say so
        logging.getLogger("memory").exception("Falha ao gravar contadores ao encerrar o processo")


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = _("Memória de produtos")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        atexit.register(_flush_local_counters_at_exit)
