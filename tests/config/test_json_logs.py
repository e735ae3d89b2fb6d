"""MEMORY_LOG_FORMAT=json: one JSON object per line for log shippers, with the same pt-BR messages
and each call's extra fields; text (the default) is unchanged."""
import json
import logging
import subprocess
import sys

import pytest
from django.conf import settings

from beecatalog.logs import JsonFormatter

ROOT = settings.BASE_DIR


def record(message="Produto %s encontrado na memória - economia de %d tokens", args=("ABC123", 1500),
           exc_info=None):
    return logging.LogRecord("memory", logging.INFO, __file__, 10, message, args, exc_info)


def test_a_record_is_one_line_of_json_with_its_message_and_extra_fields():
    entry = record()
    entry.__dict__.update({"product_id": "ABC123", "tokens_saved": 1500, "kind": "main_content"})
    entry.created = 1796154861.25  # 2026-12-01T19:54:21.250Z
    line = JsonFormatter().format(entry)
    assert "\n" not in line
    assert json.loads(line) == {
        "timestamp": "2026-12-01T19:54:21.250Z", "level": "INFO", "logger": "memory",
        "message": "Produto ABC123 encontrado na memória - economia de 1500 tokens",
        "product_id": "ABC123", "tokens_saved": 1500, "kind": "main_content",
    }
    assert "memória" in line  # as it is, not \u00f3


def test_a_multiline_message_a_traceback_and_an_odd_value_stay_on_one_line():
    try:
        raise ValueError("resposta\ninválida")
    except ValueError:
        entry = record("Falha ao gerar conteúdo do produto %s:\n%s", ("X1", "linha 2"), exc_info=sys.exc_info())
    entry.__dict__["when"] = object()  # no JSON form: written as its str()
    entry.__dict__["level"] = "mine"  # an extra field never replaces one of the four
    line = JsonFormatter().format(entry)
    assert len(line.splitlines()) == 1
    fields = json.loads(line)
    assert fields["message"] == "Falha ao gerar conteúdo do produto X1:\nlinha 2"
    assert fields["level"] == "INFO"
    assert "ValueError: resposta\ninválida" in fields["exception"]
    assert fields["when"].startswith("<object object")


def run_python(code: str, process_env: dict, **values: str) -> subprocess.CompletedProcess:
    env = {**process_env, "DJANGO_SETTINGS_MODULE": "beecatalog.settings", "SECRET_KEY": "json-logs-test-secret",
           "CELERY_BROKER_URL": "", "MEMORY_LOG_LEVEL": "INFO", **values}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


SAVE = ("import django; django.setup();"
        "from memory.engine.memory import ProductMemory;"
        "ProductMemory().save_product_data({'sku': 'JSON-1', 'title': 'Abajur'},"
        " {'title': 'Abajur', 'description': 'Luz.', 'bullet_points': ['a'], 'seo_keywords': ['b']});"
        "ProductMemory().get_product_data('JSON-1')")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_json_the_memorys_lines_are_json_objects_with_their_fields(process_env):
    done = run_python(SAVE, process_env, MEMORY_LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    saved = next(e for e in lines if e["message"] == "Salvando produto JSON-1 na memória para reutilização futura")
    assert (saved["level"], saved["logger"], saved["product_id"], saved["kind"]) == (
        "INFO", "memory", "JSON-1", "main_content")
    found = next(e for e in lines if e["message"].startswith("Produto JSON-1 encontrado na memória"))
    assert found["tokens_saved"] == 0 and found["product_id"] == "JSON-1"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_by_default_the_lines_are_text_as_before(process_env):
    done = run_python(SAVE, process_env, MEMORY_LOG_FORMAT="text")
    assert done.returncode == 0, done.stderr
    assert "[INFO] Salvando produto JSON-1 na memória para reutilização futura" in done.stderr.splitlines()
