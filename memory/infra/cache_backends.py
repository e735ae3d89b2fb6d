"""The cache backends of the memory: L1's LocMem, and the django-redis client of L2 that signs
what it writes and checks what it reads (Redis is not trusted)."""
from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django_redis.client import DefaultClient
from django_redis.exceptions import CompressorError

from memory.infra.compressors import ValueTooLarge, max_value_bytes

# The HMAC-SHA256 that opens every value :class:`SigningClient` writes.
SIGNATURE_BYTES = 32
_SIGNING_SALT = b"beecatalog.memory.redis-value"


class LocalMemoryCache(LocMemCache):
    """Django's LocMem cache without the memcached key check on every call.

    L1 keys come only from ``memory.engine.tiers.cache_key``, printable, without spaces and
    at most ~200 characters (longer product ids are hashed), so the check (a loop over every
    character of the key, a sizeable share of an L1 hit: docs/benchmarks.md) can never warn.
    """

    def validate_key(self, key):
        return None


class InvalidValue(ValueError):
    """A value read from Redis that the memory did not write, or cannot use; the message says why (pt-BR)."""


class SigningClient(DefaultClient):
    """django-redis' client, whose values open with an HMAC-SHA256 of their bytes under a key
    derived from ``SECRET_KEY``: whoever can write to Redis but lacks the secret cannot forge
    one. A read checks it before anything else (a forged value is never even decompressed),
    then inflates at most :func:`memory.infra.compressors.max_value_bytes`; anything else is
    :class:`InvalidValue`. Whole numbers stay plain, as django-redis stores them, so that
    INCR works on them: whoever reads one checks its bounds.
    """

    _secret: str | None = None
    _key = b""

    def _signing_key(self) -> bytes:
        secret = settings.SECRET_KEY
        if secret is not self._secret:  # derived once per SECRET_KEY (tests override it)
            self._key = hmac.digest(secret.encode(), _SIGNING_SALT, "sha256")
            self._secret = secret
        return self._key

    def encode(self, value: Any, *, allow_int: bool = True) -> bytes | int:
        encoded = super().encode(value, allow_int=allow_int)
        if isinstance(encoded, int):
            return encoded
        return hmac.digest(self._signing_key(), encoded, "sha256") + encoded

    def decode(self, value: Any) -> Any:
        if isinstance(value, int):
            return value
        if not isinstance(value, bytes):
            raise InvalidValue(f"deve ser bytes, recebido {type(value).__name__}")
        if len(value) < 21 and value.lstrip(b"-").isdigit():  # what INCR and ``encode`` leave of a whole number
            return int(value)
        if len(value) <= SIGNATURE_BYTES:
            raise InvalidValue("sem assinatura")
        limit = max_value_bytes()
        if len(value) > limit + SIGNATURE_BYTES:
            raise InvalidValue(f"{len(value)} bytes, acima do limite de {limit}")
        body = value[SIGNATURE_BYTES:]
        if not hmac.compare_digest(value[:SIGNATURE_BYTES], hmac.digest(self._signing_key(), body, "sha256")):
            raise InvalidValue("assinatura inválida")
        # django-redis' own ``decode`` swallows every compressor error, a bomb's included.
        try:
            data = self._compressor.decompress(body)
        except ValueTooLarge as exc:
            raise InvalidValue(str(exc)) from None
        except CompressorError:
            data = body  # values under the compressor's ``min_length`` are stored as they are
        try:
            return self._serializer.loads(data)
        except (ValueError, TypeError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidValue(f"ilegível ({exc.__class__.__name__})") from None
