"""`manage.py generate_content CATALOG --batch-api` and `--batch-status ID`, against a fake
OpenAI-compatible server on loopback; a run killed mid-way and run again sends nothing twice."""
import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from memory.models import BatchRun, ProductMemoryEntry
from memory.engine.memory import ProductMemory
from tests.helpers import stop_process, wait_for
from tests.providers.fake_openai import Reply, completion

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
OTHER_CONTENT = {"title": "Outro", "description": "Escrito antes.", "bullet_points": ["a"], "seo_keywords": ["b"]}


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("generate_content", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write_catalog(tmp_path, n=3, prefix="S"):
    path = tmp_path / "catalogo.jsonl"
    path.write_text("".join(json.dumps({"sku": f"{prefix}{i}", "title": f"Produto {i}"}) + "\n" for i in range(n)),
                    encoding="utf-8")
    return path


@pytest.fixture
def fake(openai_on_fake):
    """The fake OpenAI server, the provider pointed at it (conftest.py's ``openai_on_fake``)."""
    return openai_on_fake


def test_batch_api_is_refused_with_the_template_provider(tmp_path, settings):
    settings.LLM_PROVIDER = "template"
    with pytest.raises(CommandError, match=r"--batch-api: .*LLM_PROVIDER=template.*LLM_PROVIDER=openai"):
        run(str(write_catalog(tmp_path)), "--batch-api")
    with pytest.raises(CommandError, match=r"--batch-status: .*LLM_PROVIDER=template"):
        BatchRun.objects.create(model="m", generator_version="g", batch_id="batch_9", status=BatchRun.SUBMITTED)
        run("--batch-status", "batch_9")
    assert not ProductMemoryEntry.objects.exists()


@pytest.mark.parametrize("args, message", [
    (("--no-wait",), "--no-wait: só vale com --batch-api"),
    (("--batch-api", "--force"), "--force: não combina com --batch-api"),
    (("--batch-api", "--poll-interval", "0"), "--poll-interval: use um número de segundos maior que 0"),
    (("--batch-status", "batch_1"), "--batch-status: consulta um lote já enviado"),
])
def test_option_mistakes_are_one_line_each(tmp_path, fake, args, message):
    with pytest.raises(CommandError, match=message):
        run(str(write_catalog(tmp_path)), *args)


def test_no_catalog_and_no_batch_status_is_an_error(fake):
    with pytest.raises(CommandError, match="catalog: informe o arquivo do catálogo"):
        run()


def test_an_unknown_batch_id_is_an_error(fake):
    with pytest.raises(CommandError, match="--batch-status: lote desconhecido: nenhum lote 'batch_x'"):
        run("--batch-status", "batch_x")


def test_a_batch_run_waits_ingests_and_sums_up(tmp_path, fake):
    catalog = write_catalog(tmp_path, 3)
    ProductMemory().save_product_data({"sku": "S0", "title": "Produto 0"}, OTHER_CONTENT, tokens_prompt=10,
                                      tokens_completion=5)
    fake.batch.step = 1
    out, err = run(str(catalog), "--batch-api", "--json", "--poll-interval", "0.01")
    summary = json.loads(out)
    assert (summary["products"], summary["reused"], summary["generated"], summary["failed"]) == (3, 1, 2, 0)
    assert (summary["tokens_spent"], summary["tokens_saved"], summary["tokens_wasted"]) == (2 * 1267, 15, 0)
    assert summary["batch_discount"] == 0.5
    (batch,) = summary["batches"]
    assert (batch["status"], batch["provider_status"], batch["requests"]) == ("done", "completed", 2)
    assert summary["estimated_batch_cost_usd"] == batch["estimated_cost_usd"] > 0
    # progress, on a stream that is not a terminal: one line per change
    assert "Lote batch_2 enviado: 2 produto(s)" in err
    assert "Lote batch_2: in_progress, 1/2 requisições concluídas" in err
    assert "Lote batch_2: completed, 2/2 requisições concluídas" in err
    # the second run finds everything in memory and sends nothing
    again = json.loads(run(str(catalog), "--batch-api", "--json")[0])
    assert (again["reused"], again["generated"], again["batches"]) == (3, 0, [])
    assert fake.batch.count("POST", r"/v1/batches") == 1


def test_the_human_summary_is_in_portuguese(tmp_path, fake):
    out, _ = run(str(write_catalog(tmp_path, 2)), "--batch-api", "--poll-interval", "0.01")
    assert "Resumo do catálogo pela Batch API (50% do preço)" in out
    for label in ("Gerados", "Reutilizados da memória", "Custo estimado dos lotes", "Tokens desperdiçados"):
        assert label in out


def test_no_wait_gives_the_batch_id_and_batch_status_ingests_it(tmp_path, fake):
    fake.batch.hold = True
    out, err = run(str(write_catalog(tmp_path, 2)), "--batch-api", "--no-wait")
    assert "Lote(s) em andamento: batch_2" in out and "generate_content --batch-status batch_2" in out
    assert "Ainda no lote (sem resultado)" in out
    assert not ProductMemoryEntry.objects.exists()

    out, _ = run("--batch-status", "batch_2")
    assert "O lote ainda não terminou" in out and "in_progress" in out
    fake.batch.hold = False
    status = json.loads(run("--batch-status", "batch_2", "--json")[0])
    assert (status["status"], status["generated"], status["failed_products"]) == ("done", 2, [])
    assert ProductMemoryEntry.objects.count() == 2
    # asked again: nothing more is saved
    assert json.loads(run("--batch-status", "batch_2", "--json")[0])["generated"] == 2
    assert ProductMemoryEntry.objects.count() == 2


def test_failed_lines_are_listed_and_fail_the_exit_status(tmp_path, fake):
    fake.batch.reply = lambda product: (Reply(body=completion("{quebrado", prompt_tokens=90, completion_tokens=10))
                                        if product["sku"] == "S1" else Reply())
    err = StringIO()
    with pytest.raises(CommandError, match="0 linha.*1 falha"):
        call_command("generate_content", str(write_catalog(tmp_path, 2)), "--batch-api", "--poll-interval", "0.01",
                     stdout=StringIO(), stderr=err)
    assert "linha 2: falha na geração: resposta inválida (o conteúdo não é JSON)" in err.getvalue()
    with pytest.raises(CommandError, match="1 falha"):
        run("--batch-status", "batch_2")


# --- a run killed and run again ------------------------------------------------------------------


def batch_run(env, catalog, *args):
    return subprocess.Popen(
        [sys.executable, "manage.py", "generate_content", str(catalog), "--batch-api", "--poll-interval", "0.05",
         *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture
def child_env(process_env, fake_openai):
    return {**process_env, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "sk-test",
            "LLM_MODEL": "gpt-4o-mini", "LLM_MAX_ATTEMPTS": "2"}


def finished(process, timeout=60):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("killed_when", ["batch created and saved", "batch created, answer not received"])
def test_a_run_killed_before_ingest_and_run_again_sends_no_product_twice(tmp_path, fake_openai, child_env,
                                                                         killed_when):
    catalog = write_catalog(tmp_path, 4)
    fake_openai.batch.hold = True
    if killed_when == "batch created, answer not received":
        fake_openai.batch.create_delay = 30  # the batch exists at the provider; the process never hears of it
    first = batch_run(child_env, catalog)
    try:
        if killed_when == "batch created and saved":
            assert wait_for(lambda: BatchRun.objects.filter(status=BatchRun.SUBMITTED).exists(), timeout=60)
        else:
            assert wait_for(lambda: len(fake_openai.batch.batches) == 1, timeout=60)
            assert BatchRun.objects.get().batch_id == ""
        first.kill()
        first.wait(timeout=15)
    finally:
        stop_process(first)

    fake_openai.batch.create_delay = 0
    fake_openai.batch.hold = False
    second = batch_run(child_env, catalog, "--json")
    try:
        code, out, err = finished(second)
    finally:
        stop_process(second)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["generated"], summary["failed"]) == (4, 0)
    assert "Retomando o lote" in err
    assert fake_openai.batch.count("POST", r"/v1/batches") == 1
    assert sorted(fake_openai.batch.products_sent()) == ["S0", "S1", "S2", "S3"]
    assert ProductMemoryEntry.objects.count() == 4
    assert BatchRun.objects.get().status == BatchRun.DONE
