"""Settings of the HTTP bench: the project's own settings, with ``bench/urls.py`` as the URLconf.

Used only by ``bench/http_bench.py`` (``DJANGO_SETTINGS_MODULE=bench.settings``).
"""
from beecatalog.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
