"""Test defaults: the suite runs against the local PostgreSQL and Redis unless told otherwise.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` choose other servers. They are the only say: an
exported ``DATABASE_URL`` / ``REDIS_URL`` (a developer's own data) is never used, because the
tests flush the Redis database and create and drop the test database.

Under pytest-xdist (``make test`` runs several workers) each worker needs a database and a Redis
database of its own, since every test flushes its Redis database. pytest-django names worker
``gwN``'s test database ``test_<name>_gwN``; here worker ``gwN`` takes the Redis database N below
the one ``TEST_REDIS_URL`` names (``/15``: gw0 on 15, gw1 on 14, ...). The worker's URL is written
back into ``TEST_REDIS_URL`` for the child processes a test starts (manage.py, celery, the peers),
with ``TEST_REDIS_WORKER`` naming the worker it was derived for, so that a child that inherits
both keeps it as it is.
"""
import os
from urllib.parse import parse_qsl, urlencode, urlsplit

from beecatalog import environment as read

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def worker_redis_url(url: str, worker: str, workers: int) -> str:
    """``url`` moved to the Redis database of xdist worker ``worker`` (``gwN``): N below its own."""
    parts = urlsplit(url)
    index = int(worker.removeprefix("gw"))
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        base = int(query.get("db") or 0)
    else:
        base = int(parts.path.strip("/") or 0)
    if base - index < 0:
        read.refuse(f"TEST_REDIS_URL: com {workers} workers do pytest-xdist cada um usa um banco do Redis, do"
                    f" banco da URL para baixo; use um banco a partir de /{workers - 1}, como {DEFAULT_REDIS_URL},"
                    f" não {read.masked(url)!r}")
    if parts.scheme == "unix":
        # urlunsplit would drop the empty host's "//"
        return f"unix://{parts.netloc}{parts.path}?{urlencode({**query, 'db': base - index})}"
    return parts._replace(path=f"/{base - index}").geturl()


os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/beecatalog")
_redis_url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _redis_url and _worker and os.environ.get("TEST_REDIS_WORKER") != _worker:  # empty: no Redis
    _redis_url = worker_redis_url(_redis_url, _worker, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    os.environ["TEST_REDIS_URL"] = _redis_url
    os.environ["TEST_REDIS_WORKER"] = _worker
os.environ["REDIS_URL"] = _redis_url
os.environ.setdefault("SECRET_KEY", "test-secret-key")

from beecatalog.settings import *  # noqa: E402,F401,F403

# Tests run Celery tasks eagerly in process; the one test that starts a real
# worker gives the worker its own broker settings.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = ""
CELERY_RESULT_BACKEND = None

# Stats must reflect each test's writes at once.
MEMORY_STATS_CACHE_SECONDS = 0

# The suite's Redis answers on a loaded machine (four xdist workers and the processes and servers
# they start, on 2 cores): a reply later than the production socket timeout (0.25 s) would count
# as an outage in the middle of an unrelated test. The fault tests set their own timeouts
# (tests.helpers.l2_caches); gunicorn and celery, on beecatalog.settings, keep the default.
if "memory_l2" in CACHES:  # noqa: F405
    CACHES["memory_l2"]["OPTIONS"]["SOCKET_TIMEOUT"] = 2.0  # noqa: F405
