"""The catalog run: `manage.py generate_content CATALOG`."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from memory.models import ProductMemoryEntry
from memory.providers import CircuitOpen, GenerationError, TemplateProvider
from tests.providers.fake_openai import error

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "catalog.csv"


def run(*args):
    from io import StringIO

    out, err = StringIO(), StringIO()
    call_command("generate_content", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_sample_catalog_twice_second_run_is_served_from_memory():
    first = json.loads(run(str(SAMPLE), "--json")[0])
    second = json.loads(run(str(SAMPLE), "--json")[0])
    assert first["products"] == second["products"] == 200
    assert first["generated"] == ProductMemoryEntry.objects.filter(kind="main_content").count() == 194  # 6 rows repeat a GTIN
    # 181 of them variants of 45 families: one generation per family, stored as the family's base.
    assert (first["derived_variants"], first["families"]) == (181, 45)
    assert ProductMemoryEntry.objects.filter(kind="family").count() == 45
    assert first["failed"] == 0
    assert second["reused"] == 200 and second["generated"] == 0
    assert second["tokens_spent"] == 0
    assert second["tokens_saved"] == first["tokens_spent"] + first["tokens_saved"]
    assert second["estimated_cost_saved_usd"] > 0


def test_human_summary_is_in_portuguese():
    out, _ = run(str(SAMPLE))
    assert "Reutilizados da memória" in out and "Tokens economizados" in out


def test_changed_rows_are_regenerated_as_stale(tmp_path):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text('{"sku": "A1", "title": "Caneca"}\n{"sku": "A2", "title": "Prato"}\n', encoding="utf-8")
    run(str(catalog))
    catalog.write_text('{"sku": "A1", "title": "Caneca Azul"}\n{"sku": "A2", "title": "Prato"}\n', encoding="utf-8")
    summary = json.loads(run(str(catalog), "--json")[0])
    assert (summary["stale_regenerated"], summary["reused"]) == (1, 1)


def test_bad_rows_are_reported_by_number_skipped_and_fail_the_exit_status(tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_text(
        "sku,gtin,title,price\nOK-1,,Caneca,1\n,7891234567890,,2\n,,,3\nOK-2,,Prato,4\n", encoding="utf-8"
    )
    with pytest.raises(CommandError, match="2 linha"):
        run(str(catalog))
    assert set(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == {"OK-1", "OK-2"}


def test_bad_rows_are_listed_with_line_numbers(tmp_path, capsys):
    catalog = tmp_path / "c.json"
    catalog.write_text(json.dumps([{"sku": "A"}, "texto", {"ean": "123"}]), encoding="utf-8")
    from io import StringIO

    err = StringIO()
    with pytest.raises(CommandError):
        call_command("generate_content", str(catalog), stdout=StringIO(), stderr=err)
    assert "linha 2: deve ser um objeto" in err.getvalue()
    assert "linha 3: ean:" in err.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("c.txt", "x", "format"),
        ("c.json", "[{not json", "JSON inválido"),
        ("c.json", "{not json", "lista de objetos"),
        ("c.json", '{"sku": "A"}', "lista de objetos"),
    ],
)
def test_unreadable_catalogs_give_one_clear_error(tmp_path, name, content, message):
    catalog = tmp_path / name
    catalog.write_text(content, encoding="utf-8")
    with pytest.raises(CommandError, match=message):
        run(str(catalog))
    assert not ProductMemoryEntry.objects.exists()


def test_missing_catalog_and_bad_batch_size_are_command_errors():
    with pytest.raises(CommandError, match="não encontrado"):
        run("/nao/existe.csv")
    with pytest.raises(CommandError, match="batch-size"):
        run(str(SAMPLE), "--batch-size", "0")


def catalog_run(env, *args):
    """``manage.py generate_content`` on the sample catalog in a new process, as a person runs it."""
    return subprocess.run(
        [sys.executable, "manage.py", "generate_content", str(SAMPLE), *args],
        cwd=SAMPLE.parents[1], capture_output=True, text=True, timeout=300, env=env,
    )


PER_PRODUCT = re.compile(r"Salvando produto \S+ na memória|Produto \S+ encontrado na memória")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_terminal_gets_the_summary_and_the_per_product_lines_only_with_v2(process_env):
    env = {k: v for k, v in process_env.items() if k != "MEMORY_LOG_LEVEL"}  # the default level, INFO
    first = catalog_run(env)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # not one log line per product
    assert len(first.stdout.splitlines()) <= 16  # the summary table: title, borders, 13 rows
    assert "Tokens gastos" in first.stdout and "Custo estimado economizado" in first.stdout
    second = catalog_run(env, "-v", "2")
    assert second.returncode == 0, second.stderr
    per_product = [line for line in second.stderr.splitlines() if PER_PRODUCT.search(line)]
    assert len(per_product) == 200  # every product of the catalog, each once
    assert "Reutilizados da memória" in second.stdout


def summary_rows(out: str) -> dict[str, str]:
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    return rows


def test_the_summary_numbers_read_in_pt_br():
    run(str(SAMPLE))
    rows = summary_rows(run(str(SAMPLE))[0])
    assert re.fullmatch(r"\d{1,3}(\.\d{3})+", rows["Tokens economizados"])  # 63.763, no comma, no dot decimal
    assert re.fullmatch(r"US\$ 0,\d{4}", rows["Custo estimado economizado"])
    assert rows["Produtos"] == "200"


def test_per_product_log_lines_follow_the_verbosity(caplog):
    run(str(SAMPLE))
    assert not [r for r in caplog.records if PER_PRODUCT.search(r.getMessage())]
    caplog.clear()
    run(str(SAMPLE), "--verbosity", "2")
    assert len([r for r in caplog.records if PER_PRODUCT.search(r.getMessage())]) == 200


# --- catalogs as Excel saves them, and the formats of the import -------------------------------


def test_a_semicolon_windows_1252_catalog_as_excel_pt_br_saves_it_is_read(tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_bytes("sku;title;preço\nCF-1;Caneca Café;10,5\nCF-2;Prato Açaí;7\n".encode("cp1252"))
    summary = json.loads(run(str(catalog), "--json")[0])
    assert (summary["products"], summary["failed"]) == (2, 0)
    entry = ProductMemoryEntry.objects.get(product_id="CF-1")
    assert entry.source_data == {"sku": "CF-1", "title": "Caneca Café", "preço": "10,5"}


def test_a_tab_delimited_utf8_catalog_with_bom_is_read(tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_bytes("\ufeffsku\ttitle\nTB-1\tCaneca Café\n".encode("utf-8"))
    assert json.loads(run(str(catalog), "--json")[0])["failed"] == 0
    assert ProductMemoryEntry.objects.get(product_id="TB-1").source_data["title"] == "Caneca Café"


def test_a_catalog_without_an_identifier_column_names_the_columns_it_has(tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_text("codigo|nome\nA|Caneca\n", encoding="utf-8")
    with pytest.raises(CommandError) as info:
        run(str(catalog))
    message = str(info.value)
    assert "nenhuma coluna que identifique o produto" in message and "'codigo|nome'" in message
    assert "\n" not in message
    assert not ProductMemoryEntry.objects.exists()


@pytest.mark.parametrize("name, content", [
    ("c.csv", b""), ("c.csv", b"sku,title\n"), ("c.csv", b"sku,title\n,\n\n"), ("c.json", b"[]"), ("c.jsonl", b"\n"),
])
def test_an_empty_catalog_is_a_command_error(tmp_path, name, content):
    catalog = tmp_path / name
    catalog.write_bytes(content)
    with pytest.raises(CommandError, match="vazio"):
        run(str(catalog))


def test_an_xlsx_catalog_is_read_as_the_import_reads_it(tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["sku", "ean", "title"])
    sheet.append(["X-1", None, "Caneca"])
    sheet.append([None, 7891234567895, "Prato"])  # Excel hands the GTIN back as a float
    workbook.save(tmp_path / "c.xlsx")
    summary = json.loads(run(str(tmp_path / "c.xlsx"), "--json")[0])
    assert (summary["products"], summary["failed"]) == (2, 0)
    assert set(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == {"X-1", "gtin:07891234567895"}


def test_a_gzipped_catalog_is_read(tmp_path):
    import gzip

    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(b'{"sku": "GZ-1", "title": "Caneca"}\n'))
    assert json.loads(run(str(tmp_path / "c.jsonl.gz"), "--json")[0])["products"] == 1
    assert ProductMemoryEntry.objects.filter(product_id="GZ-1").exists()


# --- a run the provider stops: the rest not attempted, exit status 3, finished by the next run ----

BREAKER_OPEN = "Circuito do provedor aberto: nenhuma chamada por 30 s"


class StoppingProvider(TemplateProvider):
    """The template writer, until its circuit opens after ``calls`` generations (when given)."""

    def __init__(self, calls=None):
        self.limit = calls
        self.calls = 0

    def generate(self, product_data):
        self.calls += 1
        if self.limit is not None and self.calls > self.limit:
            raise CircuitOpen(BREAKER_OPEN)
        return super().generate(product_data)


def jsonl_catalog(tmp_path, n):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text("".join(json.dumps({"sku": f"S{i}", "title": f"Produto {i}"}) + "\n" for i in range(n)),
                       encoding="utf-8")
    return catalog


def incomplete_run(*args):
    from io import StringIO

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as info:
        call_command("generate_content", *args, stdout=out, stderr=err)
    return info.value, out.getvalue(), err.getvalue()


def test_a_run_whose_provider_opens_its_circuit_exits_3_with_the_not_attempted_and_the_next_run_finishes(
    tmp_path, monkeypatch
):
    catalog = jsonl_catalog(tmp_path, 10)
    stopping = StoppingProvider(calls=3)
    monkeypatch.setattr("memory.services.generation.get_provider", lambda: stopping)
    error, out, err = incomplete_run(str(catalog))
    assert error.returncode == 3
    assert str(error) == ("Execução incompleta: 0 falha(s) de geração e 7 produto(s) não tentado(s); rode o comando "
                          "de novo para concluir (o que já foi salvo é reutilizado)")
    rows = summary_rows(out)
    assert (rows["Gerados"], rows["Reutilizados da memória"], rows["Falhas"]) == ("3", "0", "0")
    assert rows["Não tentados (sem chamada ao provedor)"] == "7"
    assert f"Geração interrompida: {BREAKER_OPEN}; 7 produto(s) não tentado(s), sem chamada ao provedor" in err
    assert stopping.calls == 4

    healthy = StoppingProvider()
    monkeypatch.setattr("memory.services.generation.get_provider", lambda: healthy)
    summary = json.loads(run(str(catalog), "--json")[0])  # exit 0: no CommandError
    assert (summary["reused"], summary["generated"], summary["failed"], summary["not_attempted"]) == (3, 7, 0, 0)
    assert healthy.calls == 7 and ProductMemoryEntry.objects.count() == 10


def test_once_halted_the_run_calls_the_provider_for_no_later_batch(tmp_path, monkeypatch):
    monkeypatch.setattr("memory.management.commands.generate_content.ROWS_PER_BATCH_CALL", 4)
    catalog = jsonl_catalog(tmp_path, 10)
    stopping = StoppingProvider(calls=1)
    monkeypatch.setattr("memory.services.generation.get_provider", lambda: stopping)
    error, out, _ = incomplete_run(str(catalog), "--json")
    assert error.returncode == 3
    summary = json.loads(out)
    assert (summary["generated"], summary["not_attempted"], summary["halted"]) == (1, 9, BREAKER_OPEN)
    assert summary["not_attempted_rows"] == list(range(2, 11))
    assert stopping.calls == 2  # one good, one that met the open circuit; none in the next two batches


def test_failed_generations_exit_3_and_bad_rows_alone_exit_1(tmp_path, monkeypatch):
    class Failing(TemplateProvider):
        def generate(self, product_data):
            raise GenerationError("resposta inválida")

    monkeypatch.setattr("memory.services.generation.get_provider", lambda: Failing())
    error, _, err = incomplete_run(str(jsonl_catalog(tmp_path, 2)))
    assert error.returncode == 3 and "2 falha(s) de geração e 0 produto(s) não tentado(s)" in str(error)
    assert "linha 1: falha na geração: resposta inválida" in err
    catalog = tmp_path / "bad.jsonl"
    catalog.write_text('{"sku": "OK"}\n"texto"\n', encoding="utf-8")
    monkeypatch.setattr("memory.services.generation.get_provider", lambda: TemplateProvider())
    error, _, _ = incomplete_run(str(catalog))
    assert error.returncode == 1 and str(error) == "1 linha(s) inválida(s) ignorada(s)"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_exit_status_of_an_incomplete_run_reaches_the_shell(tmp_path, process_env, fake_openai):
    # Every answer a 429 saying the quota is spent: the first product fails, the rest are not attempted.
    fake_openai.script(then=error(429, "You exceeded your current quota", code="insufficient_quota"))
    env = {**process_env, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "sk-test",
           "LLM_MODEL": "gpt-4o-mini", "LLM_MAX_ATTEMPTS": "3"}
    catalog = jsonl_catalog(tmp_path, 6)
    done = subprocess.run([sys.executable, "manage.py", "generate_content", str(catalog), "--batch-size", "1"],
                          cwd=SAMPLE.parents[1], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 3, done.stderr
    assert fake_openai.calls == 1  # not 6 products x 3 attempts
    rows = summary_rows(done.stdout)
    assert (rows["Falhas"], rows["Não tentados (sem chamada ao provedor)"]) == ("1", "5")
    assert "CommandError: Execução incompleta: 1 falha(s) de geração e 5 produto(s) não tentado(s)" in done.stderr
