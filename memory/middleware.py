"""The project's middleware: requests to a database that does not exist or lacks migrations get one
pt-BR line saying so, not a 500; every response gets the Content-Security-Policy of the settings;
each request is one read-your-writes scope of the read replicas."""
from __future__ import annotations

import http.client
import logging

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
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


# What a view (django-csp's decorators) sets on a response to ask for a policy of its own.
_OWN_POLICY_ATTRIBUTES = ("_csp_config", "_csp_update", "_csp_replace", "_csp_exempt",
                          "_csp_config_ro", "_csp_update_ro", "_csp_replace_ro", "_csp_exempt_ro")
_DEBUG_PAGES = (http.client.INTERNAL_SERVER_ERROR, http.client.NOT_FOUND)


class ContentSecurityPolicy(CSPMiddleware):
    """django-csp's middleware, with the settings' two headers built once.

    django-csp builds both headers from ``CONTENT_SECURITY_POLICY`` and
    ``CONTENT_SECURITY_POLICY_REPORT_ONLY`` on every response, a tenth of an API get served from
    L1 in process (docs/benchmarks.md). A response whose view asks for a policy of its own (a
    django-csp decorator) or whose request took a nonce goes through django-csp as it is; every
    other one gets the headers built the first time, as django-csp would set them.
    """

    def __init__(self, get_response):
        super().__init__(get_response)
        self._headers: list[tuple[str, str, tuple[str, ...]]] | None = None
        setting_changed.connect(self._forget_headers)

    def _forget_headers(self, setting, **kwargs):
        if setting.startswith("CONTENT_SECURITY_POLICY"):
            self._headers = None

    def _settings_headers(self) -> list[tuple[str, str, tuple[str, ...]]]:
        if self._headers is None:
            headers = []
            for header, name, report_only in ((HEADER, "CONTENT_SECURITY_POLICY", False),
                                              (HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", True)):
                value = build_policy(report_only=report_only)
                if value:
                    excluded = tuple((getattr(settings, name, None) or {}).get("EXCLUDE_URL_PREFIXES") or ())
                    headers.append((header, value, excluded))
            self._headers = headers
        return self._headers

    def process_response(self, request, response):
        if getattr(request, "_csp_nonce", None) is not None or any(
            hasattr(response, name) for name in _OWN_POLICY_ATTRIBUTES
        ):
            return super().process_response(request, response)
        if response.status_code in _DEBUG_PAGES and settings.DEBUG:
            return response
        for header, value, excluded in self._settings_headers():
            if header not in response and not request.path_info.startswith(excluded):
                response[header] = value
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


class ReadYourWrites:
    """Each request is one scope of :mod:`memory.infra.replicas`: once it wrote to the primary, its
    reads go there too, whatever a replica's lag; the next request starts clean."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with replicas.scope():
            return self.get_response(request)
