"""gunicorn's settings, read from the working directory by ``gunicorn beecatalog.wsgi``.

The hooks carry the memory's background threads (``memory.engine.runtime``) across gunicorn's
fork. Without ``--preload`` (the default) a worker loads Django after the fork and
``MemoryConfig.ready()`` starts them, so both hooks find Django not loaded and do nothing.
With ``--preload`` the master loaded Django, and started the threads, before forking.
With ``PROMETHEUS_MULTIPROC_DIR`` set, the master also keeps the workers' metrics folder
(``memory.infra.multiprocess``): emptied before the first worker, a dead worker's live
gauges removed. This file is read before Django is set up, hence the imports inside the hooks.
"""
import os

from django.apps import apps


def on_starting(server):
    """In the master, before any worker: load the settings, so that a value they refuse
    (``beecatalog.settings.refuse``: a public SECRET_KEY with DEBUG off, a bad timeout) stops
    gunicorn here with its one line. Left to the workers, each would print it, and gunicorn, seeing
    several fail at once, adds a traceback of its own."""
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")  # as beecatalog/wsgi.py
    settings.SECRET_KEY  # the first setting read imports the module
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from memory.infra import multiprocess

        # What a previous run (or `migrate` before this start) counted is not this run's.
        removed = multiprocess.empty_folder(settings.PROMETHEUS_MULTIPROC_DIR)
        server.log.info("Métricas: %d arquivo(s) de uma execução anterior removido(s) de %s",
                        removed, settings.PROMETHEUS_MULTIPROC_DIR)


def pre_fork(server, worker):
    """In the master: no worker may inherit a lock that one of the master's threads held."""
    if apps.ready:
        from memory.engine import runtime

        runtime.stop_background_threads()


def post_fork(server, worker):
    """In the new worker: threads do not survive a fork, so it starts its own."""
    if apps.ready:
        from memory.engine import runtime

        runtime.start_background_threads()


def child_exit(server, worker):
    """In the master, once a worker has exited: its live gauges leave the shared metrics."""
    from django.conf import settings

    if settings.PROMETHEUS_MULTIPROC_DIR:
        from memory.infra import multiprocess

        multiprocess.worker_exited(settings.PROMETHEUS_MULTIPROC_DIR, worker.pid)
