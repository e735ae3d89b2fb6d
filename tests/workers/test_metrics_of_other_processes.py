"""What a process nothing scrapes did (the Celery worker's refresh-ahead run and generations, a
command's) shows on web's /metrics: those series are read from PostgreSQL at each scrape."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from memory.engine.counters import flush_counters
from memory.engine.memory import ProductMemory
from memory.models import DailyStats, ProductMemoryEntry
from memory.providers import TemplateProvider
from tests.helpers import token_client

CONTENT = {"title": "Produto", "description": "Descrição", "bullet_points": ["a"], "seo_keywords": ["b"]}

# Run in another process, as the worker would: the scheduled job, then lookups of the refreshed
# entry and the every-minute flush (which counts the miss avoided), then the daily roll-up.
SCRIPT = """
import json
from memory.engine.counters import flush_counters
from memory.engine.memory import ProductMemory
from memory.infra import metrics
from memory.periodic_tasks import refresh_ahead_task
summary = refresh_ahead_task()
for _ in range(3):
    assert ProductMemory().get_product_data({"sku": "HOT-1"}) is not None
flush_counters()
print(json.dumps({"summary": summary, "own_generations": metrics.GENERATIONS._value.get()}))
"""


def samples(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {sample.name: sample.value for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples if not sample.labels}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_refresh_ahead_run_in_another_process_shows_on_webs_metrics(process_env, make_user):
    ProductMemory().save_product_data({"sku": "HOT-1", "title": "Luminária"}, CONTENT, tokens_prompt=60,
                                      tokens_completion=40, generator_version=TemplateProvider().generator_version)
    now = timezone.now()
    ProductMemoryEntry.objects.filter(product_id="HOT-1").update(  # hot, and expired: its next lookup would miss
        hotness=9.0, hotness_at=now, expires_at=now - timedelta(hours=1))
    flush_counters()  # the setup's own generation is in the daily statistics before the "before"
    client = token_client(make_user("staff", staff=True))
    before = samples(client)
    generations_here = before["beecatalog_memory_generations_total"]

    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", SCRIPT], cwd=settings.BASE_DIR,
                          env={**process_env, "LLM_PROVIDER": "template"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = json.loads(done.stdout.strip().splitlines()[-1])
    assert ran["summary"]["refreshed"] == 1 and ran["own_generations"] == 1  # counted there, in its process
    spent = ran["summary"]["tokens_spent"]
    assert spent > 0

    after = samples(client)
    today = DailyStats.objects.get(date=timezone.localdate())
    assert (today.tokens_spent_ahead, today.misses_avoided) == (spent, 1)
    assert after["beecatalog_memory_tokens_spent_ahead_total"] - before["beecatalog_memory_tokens_spent_ahead_total"] == spent
    assert after["beecatalog_memory_misses_avoided_total"] - before["beecatalog_memory_misses_avoided_total"] == 1
    assert after["beecatalog_memory_recorded_generations_total"] - before["beecatalog_memory_recorded_generations_total"] == 1
    assert (after["beecatalog_memory_recorded_tokens_spent_total"]
            - before["beecatalog_memory_recorded_tokens_spent_total"]) == spent
    # This process's own counter never saw that generation: why those series come from PostgreSQL.
    assert after["beecatalog_memory_generations_total"] == generations_here
