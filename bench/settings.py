"""Settings of the HTTP bench: the project's own settings, with ``bench/urls.py`` as the URLconf.

Used only by ``bench/http_bench.py`` (``DJANGO_SETTINGS_MODULE=bench.settings``).
With ``BENCH_WHAT_IF=1`` it also turns off two per-request costs that the
profile of ``POST /api/memory/get/`` showed, to measure what they cost; the
project does not ship these changes (see docs/benchmarks.md):

- ``CONN_HEALTH_CHECKS``: a ``SELECT 1`` round trip before the first query of
  every request;
- DRF's ``TokenAuthentication``: a PostgreSQL query per request, replaced by
  :class:`bench.auth.CachedTokenAuthentication` (token -> user kept 60 s in the
  process);
- the hit counter's Redis round trip per hit, replaced by
  :class:`bench.what_if.BufferedHitCounter` (installed by ``bench/urls.py``).
"""
import os

from beecatalog.settings import *  # noqa: F401,F403
from beecatalog.settings import DATABASES, REST_FRAMEWORK

ROOT_URLCONF = "bench.urls"

if os.environ.get("BENCH_WHAT_IF") == "1":
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    REST_FRAMEWORK = {
        **REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "bench.auth.CachedTokenAuthentication",
            *REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"][1:],
        ],
    }
