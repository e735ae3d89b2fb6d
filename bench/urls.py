"""The project's URLs plus ``POST /bench/bare/``: the baseline of the HTTP bench.

The bare view goes through the same middleware as the API but does nothing
else: no DRF, no authentication, no lookup. It answers the bytes that
``POST /api/memory/get/`` answered for a product (saved by
``bench/http_bench.py`` in ``var/bench/get_response.json`` before the server
starts), so both sides send the same JSON.
"""
from pathlib import Path

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from beecatalog.urls import urlpatterns as project_urlpatterns

BODY_FILE = Path(__file__).resolve().parent.parent / "var" / "bench" / "get_response.json"
BODY = BODY_FILE.read_bytes() if BODY_FILE.exists() else b"{}"


@csrf_exempt
def bare(request):
    return HttpResponse(BODY, content_type="application/json")


urlpatterns = [path("bench/bare/", bare), *project_urlpatterns]
