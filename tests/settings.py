"""Test defaults: the suite runs against the local PostgreSQL and Redis unless told otherwise.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` choose other servers. They are the only say: an
exported ``DATABASE_URL`` / ``REDIS_URL`` (a developer's own data) is never used, because the
tests flush the Redis database and create and drop the test database.
"""
import os

os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/beecatalog")
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-secret-key")

from beecatalog.settings import *  # noqa: E402,F401,F403

# Tests run Celery tasks eagerly in process; the one test that starts a real
# worker gives the worker its own broker settings.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = ""
CELERY_RESULT_BACKEND = None

# Stats must reflect each test's writes at once.
MEMORY_STATS_CACHE_SECONDS = 0
