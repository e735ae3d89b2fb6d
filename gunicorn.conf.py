"""gunicorn's settings, read from the working directory by ``gunicorn beecatalog.wsgi``.

The hooks carry the memory's background threads (``memory.engine.runtime``) across gunicorn's
fork. Without ``--preload`` (the default) a worker loads Django after the fork and
``MemoryConfig.ready()`` starts them, so both hooks find Django not loaded and do nothing.
With ``--preload`` the master loaded Django, and started the threads, before forking.
This file is read before Django is set up, hence the imports inside the hooks.
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
