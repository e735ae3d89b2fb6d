"""The short paths of the get endpoint answer exactly what DRF's own machinery would."""
import json

import pytest
from django.test import RequestFactory
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

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


def test_a_client_that_accepts_only_html_gets_406(api):
    seed()
    response = api.post("/api/memory/get/", json.dumps({"product_id": PRODUCT["sku"]}),
                        content_type="application/json", HTTP_ACCEPT="text/html")
    assert response.status_code == 406


@pytest.mark.parametrize("accept", ["", "*/*", "application/json", "application/json; indent=2", "text/html, */*;q=0.1",
                                    "text/html"])
def test_the_negotiation_picks_what_drf_would_for_every_accept_header(accept):
    """The short path (no header, */*, application/json) gives DRF's own answer; the rest go
    through DRF's negotiation, its 406 included."""
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    request = Request(RequestFactory().post("/api/memory/get/", **headers))
    answers = []
    for negotiation in (JSONFirstNegotiation(), DefaultContentNegotiation()):
        try:
            renderer, media_type = negotiation.select_renderer(request, [JSONRenderer()])
            answers.append((type(renderer), media_type))
        except NotAcceptable:
            answers.append("406")
    assert answers[0] == answers[1]
    assert answers[0] == "406" if accept == "text/html" else answers[0][0] is JSONRenderer


def test_the_api_answers_json_without_an_accept_header(api):
    seed()
    response = api.post("/api/memory/get/", json.dumps({"product_id": PRODUCT["sku"]}), content_type="application/json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
