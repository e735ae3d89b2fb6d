"""The cache backends of the memory: L1's LocMem, and the django-redis client of L2 that signs
what it writes and checks what it reads (Redis is not trusted), on one Redis server, behind
Redis Sentinel (:class:`SigningSentinelClient`) or on a Redis Cluster (:class:`SigningClusterClient`)."""
from __future__ import annotations

import hmac
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django_redis.client import DefaultClient, SentinelClient
from django_redis.exceptions import CompressorError
from redis.cluster import ClusterNode, RedisCluster

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


class SigningSentinelClient(SigningClient, SentinelClient):
    """:class:`SigningClient` behind Redis Sentinel: django-redis' ``SentinelClient`` with its
    ``SentinelConnectionFactory`` (``OPTIONS["CONNECTION_FACTORY"]``), whose pool asks the
    sentinels for the master on every new connection, so that a promoted master is followed
    without a restart. ``LOCATION`` names the master (``redis://mymaster/0``); the memory reads
    and writes on the master only (a replica may lag behind a save it has just made)."""

    def __init__(self, server, params, backend):
        super().__init__(server, params, backend)
        self._server = self._server[:1]  # the master's pool; SentinelClient adds the replicas' second
        self._clients = [None]


class SigningClusterClient(SigningClient):
    """:class:`SigningClient` on a Redis Cluster, through redis-py's ``RedisCluster``.

    django-redis has no cluster client. This class is the seam rather than a connection factory
    because the choice it changes is the client's: ``DefaultClient`` reads each ``LOCATION``
    item as a server of its own (the first for writes, the others as read replicas), while here
    they are the startup nodes of one cluster, one ``RedisCluster`` for reads and writes (it
    routes each key to its slot's master and follows failovers and slot moves itself), shared by
    every thread of the process as django-redis shares its connection pools. The cache API calls
    a cluster cannot take whole are rewritten: ``get_many`` (``mget_nonatomic``, one pipeline
    per node) and ``clear`` (the memory's keys only, scanned on every master).
    """

    _clusters: dict[tuple, RedisCluster] = {}
    _clusters_lock = threading.Lock()

    def __init__(self, server, params, backend):
        super().__init__(server, params, backend)
        self._nodes = tuple(self._server)
        self._clients = [None]

    def _startup_nodes(self) -> list[ClusterNode]:
        nodes = []
        for location in self._nodes:
            parts = urlsplit(location if "://" in location else f"redis://{location}")
            nodes.append(ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379))
        return nodes

    def _connection_kwargs(self) -> dict:
        options = self._options
        first = urlsplit(self._nodes[0] if "://" in self._nodes[0] else f"redis://{self._nodes[0]}")
        kwargs = {key: value for key, value in {
            "username": options.get("USERNAME") or (unquote(first.username) if first.username else None),
            "password": options.get("PASSWORD") or (unquote(first.password) if first.password else None),
            "socket_timeout": options.get("SOCKET_TIMEOUT"),
            "socket_connect_timeout": options.get("SOCKET_CONNECT_TIMEOUT"),
        }.items() if value is not None}
        if first.scheme == "rediss":
            kwargs["ssl"] = True
        kwargs.update(options.get("CONNECTION_POOL_KWARGS", {}))
        return kwargs

    def connect(self, index: int = 0) -> RedisCluster:
        kwargs = self._connection_kwargs()
        key = (self._nodes, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with self._clusters_lock:
            found = self._clusters.get(key)
            if found is None:
                found = self._clusters[key] = RedisCluster(startup_nodes=self._startup_nodes(), **kwargs)
        return found

    def get_client(self, write: bool = True, tried: list[int] | None = None) -> RedisCluster:
        if self._clients[0] is None:
            self._clients[0] = self.connect(0)
        return self._clients[0]

    def get_client_with_index(self, write: bool = True, tried: list[int] | None = None):
        return self.get_client(write), 0

    def get_many(self, keys, version=None, client=None) -> dict:
        client = client or self.get_client()
        map_keys = {self.make_key(k, version=version): k for k in keys}
        if not map_keys:
            return {}
        values = client.mget_nonatomic(list(map_keys))
        return {map_keys[key]: self.decode(value) for key, value in zip(map_keys, values) if value is not None}

    def clear(self, client=None) -> None:
        """Delete this cache's keys (its ``KEY_PREFIX``) on every master; other keys stay."""
        client = client or self.get_client()
        batch = []
        for key in client.scan_iter(match=self.make_pattern("*"), count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)

    def do_close_clients(self) -> None:
        self._clients = [None]  # the process's RedisCluster stays, shared with the other threads
