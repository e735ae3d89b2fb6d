"""Requests to a database that does not exist or lacks migrations get one pt-BR line saying so, not a 500."""
from __future__ import annotations

import logging

from django.db import Error as DatabaseError
from django.http import HttpResponse, JsonResponse

from memory.infra import replicas
from memory.infra.migration_state import NO_DATABASE, MissingDatabase, PendingMigrations, require_migrated

logger = logging.getLogger("memory")

API_PREFIX = "/api/"


class RequireMigratedDatabase:
    """Until every migration is applied, every view answers 503 with the hint to run ``migrate``:
    ``{"detail": ...}`` under ``/api/``, one line of text elsewhere (the admin, the dashboard).
    While the database DATABASE_URL names does not exist, the same with ``NO_DATABASE``, which
    names neither server nor database (the server's log does).

    A view class that reports the database itself (health, where pending migrations are
    ``down``) says so with ``answers_unmigrated = True``. When the database cannot be asked,
    the view runs and answers as it does for an outage. Once the database is found migrated
    this costs one set lookup per request (``memory.infra.migration_state``).
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._warned: set[type] = set()  # the server's log says each once, its clients on every request

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if getattr(getattr(view_func, "view_class", None), "answers_unmigrated", False):
            return None
        try:
            require_migrated()
        except (PendingMigrations, MissingDatabase) as exc:
            if type(exc) not in self._warned:
                self._warned.add(type(exc))
                logger.warning("%s", exc)
            detail = NO_DATABASE if isinstance(exc, MissingDatabase) else str(exc)
            if request.path_info.startswith(API_PREFIX):
                return JsonResponse({"detail": detail}, status=503, json_dumps_params={"ensure_ascii": False})
            return HttpResponse(f"{detail}\n", status=503, content_type="text/plain; charset=utf-8")
        except DatabaseError:
            return None
        return None


class ReadYourWrites:
    """Each request is one scope of :mod:`memory.infra.replicas`: once it wrote to the primary, its
    reads go there too, whatever a replica's lag; the next request starts clean."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with replicas.scope():
            return self.get_response(request)
