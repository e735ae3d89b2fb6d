"""The cache backend of L1."""
from django.core.cache.backends.locmem import LocMemCache


class LocalMemoryCache(LocMemCache):
    """Django's LocMem cache without the memcached key check on every call.

    L1 keys come only from ``memory.engine.tiers.cache_key``, printable, without spaces and
    at most ~200 characters (longer product ids are hashed), so the check (a loop over every
    character of the key, a sizeable share of an L1 hit: docs/benchmarks.md) can never warn.
    """

    def validate_key(self, key):
        return None
