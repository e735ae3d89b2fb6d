"""The short paths of the get endpoint answer exactly what DRF's own machinery would."""
import json

import pytest
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from memory.api import serializers as s
from memory.api.negotiation import JSONFirstNegotiation
from memory.engine.memory import ProductMemory

from tests.helpers import PRODUCT, seed

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("tier", ["l1", "l3"])
def test_the_found_body_is_what_the_serializer_gives(tier, settings):
    seed()
    memory = ProductMemory()
    if tier == "l3":
        memory.l1.clear()
        if memory.l2 is not None:
            memory.l2.clear()
    hit = memory.get_product_data(PRODUCT["sku"], count_hit=False)
    assert s.FoundSerializer.represent_hit(hit) == s.FoundSerializer(s.FoundSerializer.from_hit(hit)).data


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json; indent=4",
                                    "text/html", "application/*", "text/html, application/json;q=0.9"])
def test_negotiation_picks_what_drf_would(accept):
    headers = {"HTTP_ACCEPT": accept} if accept is not None else {}
    request = Request(APIRequestFactory().post("/api/memory/get/", **headers))
    renderers = [JSONRenderer()]
    try:
        expected = DefaultContentNegotiation().select_renderer(request, renderers)
    except NotAcceptable:
        with pytest.raises(NotAcceptable):
            JSONFirstNegotiation().select_renderer(request, renderers)
        return
    renderer, media_type = JSONFirstNegotiation().select_renderer(request, renderers)
    assert (renderer, media_type) == expected


def test_a_client_that_accepts_only_html_gets_406(api):
    seed()
    response = api.post("/api/memory/get/", json.dumps({"product_id": PRODUCT["sku"]}),
                        content_type="application/json", HTTP_ACCEPT="text/html")
    assert response.status_code == 406
