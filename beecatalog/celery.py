"""The Celery app. Broker: ``CELERY_BROKER_URL``, else ``REDIS_URL``; with neither,
tasks run eagerly in the calling process, so the embedded default still works."""
import logging
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")

app = Celery("beecatalog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.after_setup_logger.connect
def _memory_lines_through_the_workers_handler(**kwargs):
    """The worker (and beat) print every line through the handler Celery puts on the root
    logger; the console handler LOGGING gives the ``memory`` logger, for the commands and the
    web processes where root has none, would print each of the memory's lines a second time."""
    memory = logging.getLogger("memory")
    for handler in list(memory.handlers):
        memory.removeHandler(handler)


# The memory's background threads (memory.engine.runtime) across the pool's fork. Django is
# set up (and MemoryConfig.ready() has started the threads) before either signal is sent; this
# module is imported while the settings load, before the apps are ready, hence the imports
# inside the handlers.

@signals.worker_init.connect
def _stop_memory_threads_before_the_pool_forks(sender=None, **kwargs):
    """The prefork pool forks its children from this process: its threads stop first, so that
    no child inherits a lock one of them held (this process runs no task)."""
    pool = getattr(sender, "pool_cls", "")
    if "prefork" in (pool if isinstance(pool, str) else pool.__module__) or pool == "processes":
        from memory.engine import runtime

        runtime.stop_background_threads()


@signals.worker_process_init.connect
def _start_memory_threads_in_the_pool_process(**kwargs):
    """Sent in each prefork child (threads do not survive the fork) and once by the solo pool."""
    from memory.engine import runtime

    runtime.start_background_threads()
