"""The short paths of the get endpoint answer exactly what DRF's own machinery would."""
import json

import pytest

from memory.api import serializers as s
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
