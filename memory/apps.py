import atexit

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = _("Memória de produtos")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The engine's per-process state and threads (memory.engine.runtime): the listener and
        # the hit pusher start here, in every process that loads Django.
        from memory.engine import runtime

        atexit.register(runtime.save_counts_at_exit)
        # A command is one read-your-writes scope (memory.infra.replicas): its main thread's
        # context; requests and tasks open their own.
        from memory.infra import replicas

        replicas.enter_process_scope()
        runtime.start_background_threads()
        from memory.api import signals as api_signals

        api_signals.connect()
        # The Celery tasks, registered in every process that loads Django (the worker
        # included): the services queue them by name. Then the scheduled jobs' settings
        # check, and their django-celery-beat rows, kept in step on every migrate.
        from memory import periodic_tasks, tasks  # noqa: F401
        from memory.models import version_cascade_after_migrate
        from memory.infra.redis import check_mode as check_redis_mode
        from memory.schedules import check_job_settings, register_after_migrate

        checks.register(check_job_settings)
        checks.register(check_redis_mode, checks.Tags.caches)
        from memory.engine.partitions import check_layout as check_partition_layout

        checks.register(check_partition_layout, checks.Tags.database)
        post_migrate.connect(register_after_migrate, sender=self, dispatch_uid="memory.register_periodic_tasks")
        post_migrate.connect(version_cascade_after_migrate, sender=self, dispatch_uid="memory.version_cascade")
