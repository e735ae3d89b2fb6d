"""A what-if of the HTTP bench (``BENCH_WHAT_IF=1``): token authentication without a query per request.

Not used by the project. It keeps token -> user for 60 s in the process, so a
revoked token keeps working up to a minute in each worker: the trade-off the
benchmark prices.
"""
import time

from rest_framework.authentication import TokenAuthentication

TTL = 60.0
_cache: dict[str, tuple[float, tuple]] = {}


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        now = time.monotonic()
        cached = _cache.get(key)
        if cached and cached[0] > now:
            return cached[1]
        result = super().authenticate_credentials(key)
        _cache[key] = (now + TTL, result)
        return result
