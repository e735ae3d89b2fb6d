"""force-regenerate with the task queue's Redis (broker and result store) killed: a JSON 503 at
once, and nothing queued that was not answered with a 202."""
import time

import pytest

from memory.services.entries import GENERATE_TASK

from tests.helpers import post_json, queued_tasks, seed

URL = "/api/memory/force-regenerate/"
FAST = 1.5  # seconds; Celery's own retries took ~19 s


@pytest.mark.django_db
def test_force_regenerate_with_redis_down_is_a_fast_json_503_and_queues_once_it_is_back(api, celery_on_own_redis):
    server = celery_on_own_redis
    seed()
    first = post_json(api, URL, {"product_id": "ABC123"})
    assert first.status_code == 202
    assert queued_tasks(server.url) == [(GENERATE_TASK, first.json()["task_id"])]

    server.kill()
    # The first call finds the pooled broker connection dead, the next ones the result store's.
    for attempt in range(3):
        started = time.monotonic()
        response = post_json(api, URL, {"product_data": {"sku": "ABC123"}})
        took = time.monotonic() - started
        assert response.status_code == 503, (attempt, response.content[:300])
        assert response["Content-Type"] == "application/json"
        assert response.json()["detail"].startswith("A fila de tarefas não respondeu: ")
        assert took < FAST, f"call {attempt + 1} took {took:.1f} s"

    server.start()  # an empty Redis: it kept nothing from before
    accepted = [post_json(api, URL, {"product_id": "ABC123"}) for _ in range(2)]
    assert [r.status_code for r in accepted] == [202, 202]
    assert queued_tasks(server.url) == [(GENERATE_TASK, r.json()["task_id"]) for r in accepted]
