"""The ``CACHES["memory_l2"]`` entry of each Redis mode: one server, Sentinel, Cluster.

``beecatalog/settings.py`` builds it from the environment; the tests build it for the servers
they start. Pure: no Django, no Redis client.
"""
from __future__ import annotations

from urllib.parse import quote, urlsplit

SINGLE, SENTINEL, CLUSTER = "single", "sentinel", "cluster"

_COMMON_OPTIONS = {
    "SERIALIZER": "memory.infra.serializers.StrictJSONSerializer",
    "COMPRESSOR": "memory.infra.compressors.Lz4ReadingZstdCompressor",
}


def url_database(url: str) -> int:
    """The database number of a ``redis://``/``rediss://`` URL (0 when it names none)."""
    if not url:
        return 0
    db = urlsplit(url).path.strip("/")
    return int(db) if db.isdigit() else 0


def url_password(url: str) -> str:
    return urlsplit(url).password or "" if url else ""


def memory_l2(mode: str, *, timeout: float, url: str = "", password: str = "", sentinels=(), master: str = "",
              sentinel_password: str = "", cluster_nodes=(), options: dict | None = None) -> dict:
    """The django-redis cache of the memory's L2 in ``mode``; ``timeout``: connect and socket
    timeout in seconds, towards the sentinels too; ``sentinel_password``: the sentinels' own
    (``requirepass`` of their configuration), when they ask for one; ``options`` are added to (or
    replace) its ``OPTIONS``."""
    socket = {"SOCKET_CONNECT_TIMEOUT": timeout, "SOCKET_TIMEOUT": timeout}
    if mode == SINGLE:
        location = url
        specific = {"CLIENT_CLASS": "memory.infra.cache_backends.SigningClient",
                    "CONNECTION_POOL_KWARGS": {"health_check_interval": 30}}
    elif mode == SENTINEL:
        # The master's name stands for its host: the pool asks the sentinels where it is.
        location = f"redis://{quote(master, safe='')}/{url_database(url)}"
        specific = {
            "CLIENT_CLASS": "memory.infra.cache_backends.SigningSentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": [tuple(s) for s in sentinels],
            "SENTINEL_KWARGS": {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                **({"password": sentinel_password} if sentinel_password else {})},
            "CONNECTION_POOL_KWARGS": {"health_check_interval": 30},
        }
        password = password or url_password(url)
    elif mode == CLUSTER:
        location = [f"redis://{host}:{port}" for host, port in cluster_nodes]
        specific = {"CLIENT_CLASS": "memory.infra.cache_backends.SigningClusterClient",
                    "CONNECTION_POOL_KWARGS": {"health_check_interval": 30}}
    else:
        raise ValueError(f"modo do Redis desconhecido: {mode!r} (use {SINGLE}, {SENTINEL} ou {CLUSTER})")
    if password:
        specific["PASSWORD"] = password
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": location,
        "KEY_PREFIX": "bcm",
        "TIMEOUT": None,
        "OPTIONS": {**specific, **_COMMON_OPTIONS, **socket, **(options or {})},
    }
