"""How API clients prove who they are: a token, or the session of a staff user."""
from __future__ import annotations

import copy
import threading
import time

from django.conf import settings
from drf_spectacular.authentication import SessionScheme
from rest_framework.authentication import SessionAuthentication, TokenAuthentication

from memory.engine.coherence import l1_is_trustworthy, register_auth_cache

# Per-instance caches of ``has_perm``: dropped from every cached user handed out, so that a
# permission granted or revoked counts from the next request on.
_PERMISSION_CACHES = ("_perm_cache", "_user_perm_cache", "_group_perm_cache")


class TokenUserCache:
    """Token key -> (user, token), kept ``API_TOKEN_CACHE_SECONDS`` in the process.

    DRF's ``TokenAuthentication`` reads PostgreSQL on every request, most of the work
    of a ``POST /api/memory/get/`` served from L1 (docs/benchmarks.md).
    A change to a token or a user empties this cache in every process at once
    (signals in ``memory/api/signals.py``, relayed by the L1 invalidation channel);
    the TTL bounds what a change made outside Django (raw SQL) can outlive. Like L1,
    the cache is read only while this process hears invalidations.
    """

    MAX_TOKENS = 10_000

    def __init__(self):
        self._lock = threading.Lock()
        self._users: dict[str, tuple[float, object, object]] = {}

    @staticmethod
    def seconds() -> float:
        return settings.API_TOKEN_CACHE_SECONDS

    def get(self, key: str) -> tuple | None:
        """``(user, token)`` as ``authenticate_credentials`` returns them, or None; the user is a
        copy for this request."""
        found = self._users.get(key)
        if found is None:
            return None
        expires, user, token = found
        if time.monotonic() >= expires:
            self._users.pop(key, None)
            return None
        fresh = copy.copy(user)  # Django's own copy: model state and related caches included
        for name in _PERMISSION_CACHES:
            fresh.__dict__.pop(name, None)
        return (fresh, token)

    def put(self, key: str, user, token) -> None:
        with self._lock:
            if len(self._users) >= self.MAX_TOKENS:
                self._users.clear()
            self._users[key] = (time.monotonic() + self.seconds(), user, token)

    def clear(self) -> None:
        with self._lock:
            self._users.clear()


token_users = TokenUserCache()
register_auth_cache(token_users.clear)  # emptied by the invalidation channel's auth messages


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, with the token's user cached (see ``TokenUserCache``)."""

    def authenticate_credentials(self, key):
        usable = token_users.seconds() > 0 and l1_is_trustworthy()
        if usable:
            cached = token_users.get(key)
            if cached is not None:
                return cached
        user, token = super().authenticate_credentials(key)
        if usable:
            token_users.put(key, user, token)
        return (user, token)


class StaffSessionAuthentication(SessionAuthentication):
    """A logged-in session counts only for staff users; it keeps DRF's CSRF check on unsafe methods.

    Other session users are treated as anonymous, so that logging into the
    site never opens the API by itself: clients use tokens.
    """

    def authenticate(self, request):
        user = getattr(request._request, "user", None)
        if not user or not user.is_active or not user.is_staff:
            return None
        self.enforce_csrf(request)
        return (user, None)


class StaffSessionScheme(SessionScheme):
    """The OpenAPI description of :class:`StaffSessionAuthentication` (a session cookie)."""

    target_class = "memory.api.authentication.StaffSessionAuthentication"
    name = "staffSessionAuth"
