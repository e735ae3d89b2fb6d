"""The Celery app. Broker: ``CELERY_BROKER_URL``, else ``REDIS_URL``; with neither,
tasks run eagerly in the calling process, so the embedded default still works."""
import logging
import os

from celery import Celery, signals
from django.conf import settings

from beecatalog.environment import refuse
from beecatalog.logs import JsonFormatter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")

app = Celery("beecatalog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.after_setup_logger.connect
def _memory_lines_through_the_workers_handler(logger=None, **kwargs):
    """The worker (and beat) print every line through the handler Celery puts on the root
    logger; the console handler LOGGING gives the ``memory`` logger, for the commands and the
    web processes where root has none, would print each of the memory's lines a second time.
    With ``MEMORY_LOG_FORMAT=json`` that handler writes JSON lines, as the other processes do."""
    memory = logging.getLogger("memory")
    for handler in list(memory.handlers):
        memory.removeHandler(handler)
    _json_lines_if_asked(logger)


@signals.after_setup_task_logger.connect
def _task_lines_as_json_if_asked(logger=None, **kwargs):
    """Celery's task logger has a handler of its own (it does not reach root's)."""
    _json_lines_if_asked(logger)


def _json_lines_if_asked(logger: logging.Logger | None) -> None:
    if logger is not None and settings.MEMORY_LOG_FORMAT == "json":
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())


# The memory's background threads (memory.engine.runtime) across the pool's fork. Django is
# set up (and MemoryConfig.ready() has started the threads) before either signal is sent; this
# module is imported while the settings load, before the apps are ready, hence the imports
# inside the handlers.

def _forks(worker) -> bool:
    """Whether the worker's pool is prefork: its tasks run in child processes."""
    pool = getattr(worker, "pool_cls", "")
    return "prefork" in (pool if isinstance(pool, str) else pool.__module__) or pool == "processes"


@signals.worker_init.connect
def _stop_memory_threads_before_the_pool_forks(sender=None, **kwargs):
    """The prefork pool forks its children from this process: its threads stop first, so that
    no child inherits a lock one of them held (this process runs no task)."""
    if _forks(sender):
        from memory.engine import runtime

        runtime.stop_background_threads()


@signals.worker_init.connect
def _prepare_the_workers_metrics(sender=None, **kwargs):
    """With ``METRICS_WORKER_PORT``, before the pool starts: a prefork pool's children count in
    ``PROMETHEUS_MULTIPROC_DIR`` (without it, the endpoint of this process, which runs no task,
    would show nothing: refused in one line); what a previous run left there is removed."""
    if not settings.METRICS_WORKER_PORT:
        return
    from memory.infra import multiprocess

    folder = settings.PROMETHEUS_MULTIPROC_DIR
    if not folder:
        if _forks(sender):
            refuse("METRICS_WORKER_PORT: com o pool prefork, as tarefas contam em processos filhos; defina"
                   " PROMETHEUS_MULTIPROC_DIR com uma pasta só deste worker (um tmpfs, por exemplo) ou use"
                   " --pool solo/threads")
        return
    removed = multiprocess.empty_folder(folder, keep_pid=os.getpid())
    logging.getLogger("memory").info(
        "Métricas do worker: %d arquivo(s) de uma execução anterior removido(s) de %s", removed, folder)


@signals.worker_ready.connect
def _serve_the_workers_metrics(**kwargs):
    """``METRICS_WORKER_PORT``: the worker's own /metrics, for Prometheus's second target."""
    if not settings.METRICS_WORKER_PORT:
        return
    from memory.infra import metrics

    log = logging.getLogger("memory")
    address, port = settings.METRICS_WORKER_ADDR, settings.METRICS_WORKER_PORT
    try:
        metrics.serve_process_metrics(port, address)
    except OSError as exc:
        log.error("Métricas do worker: não foi possível escutar em %s:%d (%s); o worker segue sem /metrics",
                  address, port, exc.strerror or exc)
        return
    log.info("Métricas do worker em http://%s:%d/metrics", address, port)


@signals.worker_process_init.connect
def _start_memory_threads_in_the_pool_process(**kwargs):
    """Sent in each prefork child (threads do not survive the fork) and once by the solo pool."""
    from memory.engine import runtime

    runtime.start_background_threads()


# Read-your-writes (memory.infra.replicas): each task a worker runs is one scope, ended with the
# task; a task run eagerly stays in its caller's scope (the request or command that ran it).
_task_scopes: dict[str, object] = {}


@signals.task_prerun.connect
def _open_read_your_writes_scope(task_id=None, task=None, **kwargs):
    from memory.infra import replicas

    if task_id and not getattr(task.request, "is_eager", False):
        _task_scopes[task_id] = replicas.enter()


@signals.task_postrun.connect
def _close_read_your_writes_scope(task_id=None, **kwargs):
    from memory.infra import replicas

    token = _task_scopes.pop(task_id, None)
    if token is not None:
        replicas.leave(token)
