"""``manage_memory``: every subcommand, its refusals, its errors and its exit codes."""
import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import tablib
from django.conf import settings
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.test import override_settings
from django.utils import timezone

from memory.models import ContentVersion, ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key
from memory.io.schema import ENTRY_FIELDS, EXPORT_FIELDS, exported_versions

from tests.helpers import (
    FORMULA_TEXTS, ROUND_TRIP_TEXTS, SPREADSHEET_TRIGGERS, make_entries, make_formula_entries, snapshot_table,
)

pytestmark = pytest.mark.django_db

BASE_DIR = Path(settings.BASE_DIR)
CONTENT = {"title": "Tênis de Corrida", "description": "Leve."}


def run(*args):
    """Call the command; returns (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("manage_memory", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args, match=None):
    """Call the command expecting a CommandError with exit code 1; returns (message, stderr)."""
    err = io.StringIO()
    with pytest.raises(CommandError, match=match) as info:
        call_command("manage_memory", *args, stdout=io.StringIO(), stderr=err)
    assert info.value.returncode == 1
    assert "\n" not in str(info.value)
    return str(info.value), err.getvalue()


def manage(*args, env=None):
    """Run ``manage.py manage_memory`` in a new process, as a person would."""
    return subprocess.run(
        [sys.executable, "manage.py", "manage_memory", *args],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **(env or {})},
    )


@pytest.fixture
def saved(redis_client):
    memory = ProductMemory()
    for sku in ("ABC123", "XYZ789", "LMN456"):
        memory.save_product_data({"sku": sku, "title": f"Produto {sku}"}, {**CONTENT, "title": f"Tênis {sku}"},
                                 tokens_prompt=700, tokens_completion=800)
    return memory


@pytest.fixture
def backups(tmp_path):
    with override_settings(MEMORY_BACKUP_DIR=tmp_path / "backups"):
        yield tmp_path / "backups"


# -- stats, list ----------------------------------------------------------------------


def test_stats_shows_a_table_and_json(saved, backups):
    out, _ = run("stats")
    assert "Entradas" in out and "Tokens economizados" in out and "Redis" in out
    data = json.loads(run("stats", "--json")[0])
    assert data["total_entries"] == 3 and data["active_entries"] == 3
    assert data["redis"]["available"] is True
    assert {"database", "backup_dir", "estimated_cost_saved", "hit_rate"} <= set(data)


def test_list_shows_entries_with_search_and_json(saved):
    out, _ = run("list", "--limit", "100")
    assert "ABC123" in out and "Tênis XYZ789" in out and "de 3 entradas" in out
    out, _ = run("list", "--search", "xyz")
    assert "XYZ789" in out and "ABC123" not in out
    data = json.loads(run("list", "--limit", "2", "--json")[0])
    assert data["count"] == 3 and len(data["results"]) == 2
    assert data["results"][0]["status"] == "active"


@pytest.mark.parametrize("args", [["--limit", "0"], ["--limit", "5000"], ["--offset", "-1"]])
def test_list_rejects_bad_paging(args):
    message, _ = refused("list", *args)
    assert ("limit" if "--limit" in args else "offset") in message


# -- export, import -----------------------------------------------------------------------


def test_export_works_as_the_original_design_invokes_it(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, _ = run("export", "--limit", "1000", "--output-file", "backup.json")
    data = json.loads((tmp_path / "backup.json").read_text())
    assert [d["product_id"] for d in data] == ["ABC123", "XYZ789", "LMN456"]
    assert "3 entradas exportadas" in out
    assert "\x1b[" not in out  # no progress bar or colour when stdout is not a terminal
    run("export", "--output-file", "analysis.json", "--limit", "2")
    assert len(json.loads((tmp_path / "analysis.json").read_text())) == 2


def test_export_takes_its_format_from_the_option_or_the_extension_and_can_write_to_stdout(saved, tmp_path):
    run("export", "--output-file", str(tmp_path / "a.csv"))
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == ",".join(EXPORT_FIELDS)
    run("export", "--format", "jsonl", "--output-file", str(tmp_path / "a.txt"))
    assert len((tmp_path / "a.txt").read_text().splitlines()) == 3
    out, err = run("export", "--format", "jsonl")
    assert [json.loads(line)["product_id"] for line in out.splitlines()] == ["ABC123", "XYZ789", "LMN456"]
    assert "3 entradas exportadas" in err


def test_export_with_a_bad_limit_or_format_writes_nothing(saved, tmp_path):
    target = tmp_path / "x.json"
    refused("export", "--limit", "0", "--output-file", str(target), match="limit")
    refused("export", "--output-file", str(tmp_path / "x.xlsx"), match="format")
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_is_drawn_on_a_terminal(saved, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    call_command("manage_memory", "export", "--output-file", str(tmp_path / "a.json"), stdout=out)
    assert "Exportando" in out.getvalue()


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_export_clear_import_round_trip_through_the_command(fmt, tmp_path):
    make_entries(4)
    make_entries(1, prefix="FAQ", kind="faq")
    before = snapshot_table()
    path = tmp_path / f"memory.{fmt}"
    run("export", "--output-file", str(path))
    run("clear", "--confirm")
    assert not ProductMemoryEntry.objects.exists()

    out, _ = run("import", "--input-file", str(path))

    assert "5 registros lidos: 5 novos, 0 atualizados" in out
    assert snapshot_table() == before


def test_csv_export_quotes_every_cell_a_spreadsheet_would_run_as_a_formula(tmp_path):
    make_formula_entries()
    path = tmp_path / "memory.csv"
    run("export", "--output-file", str(path))
    with path.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted(row["product_id"] for row in rows) == sorted("'" + text for text in FORMULA_TEXTS)
    assert [cell for row in rows for cell in row.values() if cell.startswith(SPREADSHEET_TRIGGERS)] == []
    out, _ = run("export", "--format", "jsonl")  # JSON is not a spreadsheet: texts as they are
    assert sorted(json.loads(line)["product_id"] for line in out.splitlines()) == sorted(FORMULA_TEXTS)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_formula_and_quoted_texts_come_back_exactly_through_a_spreadsheet(fmt, tmp_path):
    """CSV as the command writes it; XLSX as a spreadsheet saves it, quotes in front of formulas."""
    make_formula_entries(ROUND_TRIP_TEXTS)
    before = snapshot_table()
    path = tmp_path / f"memory.{fmt}"
    run("export", "--output-file", str(tmp_path / "memory.csv"))
    if fmt == "xlsx":
        with (tmp_path / "memory.csv").open(encoding="utf-8", newline="") as stream:
            dataset = tablib.Dataset().load(stream.read(), format="csv")
        path.write_bytes(dataset.export("xlsx"))
    run("clear", "--confirm")

    out, _ = run("import", "--input-file", str(path))

    assert f"{len(ROUND_TRIP_TEXTS)} novos" in out
    assert snapshot_table() == before


def test_import_reads_the_admin_xlsx_layout(tmp_path):
    make_entries(2)
    before = snapshot_table()
    dataset = tablib.Dataset(headers=["id", "title", *EXPORT_FIELDS])
    for e in ProductMemoryEntry.objects.values("id", "title", *ENTRY_FIELDS):
        e["versions"] = exported_versions(ContentVersion.objects.filter(entry_id=e["id"]))
        dataset.append([
            e["id"], e["title"],
            *[json.dumps(e[f], ensure_ascii=False) if f in ("payload", "source_data", "versions")
              else e[f].isoformat() if hasattr(e[f], "isoformat") else e[f] for f in EXPORT_FIELDS],
        ])
    path = tmp_path / "admin-export.xlsx"
    path.write_bytes(dataset.export("xlsx"))
    ProductMemoryEntry.objects.all().delete()
    out, _ = run("import", "--input-file", str(path))
    assert "2 novos" in out
    assert snapshot_table() == before


def test_import_with_bad_rows_names_them_and_changes_nothing(saved, tmp_path):
    before = snapshot_table()
    rows = [
        {"product_id": "NEW1", "payload": {"title": "ok"}},
        {"product_id": "ABC123", "payload": {"title": "alterado"}},
        {"product_id": "NEW3", "payload": "não é json"},
        {"product_id": "NEW4", "payload": {}, "hit_count": "muitos"},
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows))

    message, err = refused("import", "--input-file", str(path))

    assert "2 de 4 registro(s) inválido(s); nada foi gravado" in message
    assert "registro 3: payload" in err and "registro 4: hit_count" in err
    assert snapshot_table() == before
    assert ProductMemory().get_product_data("ABC123").content["title"] == "Tênis ABC123"


def test_import_reports_bad_rows_as_json(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"product_id": "A", "payload": {}}\n{"payload": {}}\n')
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("manage_memory", "import", "--input-file", str(path), "--json", stdout=out, stderr=io.StringIO())
    report = json.loads(out.getvalue())
    assert report["ok"] is False and report["errors"] == [{"row": 2, "message": "product_id: obrigatório"}]
    assert not ProductMemoryEntry.objects.exists()


def test_import_dry_run_changes_nothing(saved, tmp_path):
    before = snapshot_table()
    path = tmp_path / "new.jsonl"
    path.write_text('{"product_id": "ABC123", "payload": {"title": "x"}}\n{"product_id": "N", "payload": {}}\n')
    out, _ = run("import", "--input-file", str(path), "--dry-run")
    assert "Simulação" in out and "1 novos, 1 atualizados" in out and "nada foi gravado" in out
    assert snapshot_table() == before


@pytest.mark.parametrize("content, name, match", [
    (None, "missing.json", "não foi possível ler"),
    (b"\x00\x01binary", "dados.csv", "product_id"),
    (b'{"a": 1}', "obj.json", "lista"),
    (b"[]", "dados.txt", "format"),
])
def test_unreadable_or_wrong_files_are_one_clear_error(tmp_path, content, name, match):
    make_entries(1)
    before = snapshot_table()
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    refused("import", "--input-file", str(path), match=match)
    assert snapshot_table() == before


# -- health ---------------------------------------------------------------------------


def test_health_reports_ok_as_text_and_json(redis_client, backups):
    out, _ = run("health")
    assert "Saúde da memória" in out and "PostgreSQL" in out
    data = json.loads(run("health", "--json")[0])
    assert data["status"] == "ok"


def test_health_degraded_exits_zero_unless_strict(dead_redis, backups):
    out, _ = run("health")
    assert "degradado" in out
    message, _ = refused("health", "--strict")
    assert "degradada" in message and "redis" in message


def test_health_down_exits_one(monkeypatch, backups):
    def database_down():
        raise OperationalError("connection refused")

    monkeypatch.setattr("memory.infra.health.check_database", database_down)
    out = io.StringIO()
    with pytest.raises(CommandError, match="PostgreSQL não responde") as info:
        call_command("manage_memory", "health", "--json", stdout=out)
    assert info.value.returncode == 1
    assert json.loads(out.getvalue())["status"] == "down"


# -- clear, delete ----------------------------------------------------------------------


def test_clear_refuses_without_confirm_and_changes_nothing(saved):
    before = snapshot_table()
    message, _ = refused("clear")
    assert "--confirm" in message and "3 entradas" in message
    assert snapshot_table() == before
    assert caches["memory_l2"].get(cache_key(("ABC123", "main_content"))) is not None


def test_clear_with_confirm_empties_every_tier(saved):
    out, _ = run("clear", "--confirm")
    assert "3 entradas removidas" in out
    assert not ProductMemoryEntry.objects.exists()
    assert caches["memory_l2"].get(cache_key(("ABC123", "main_content"))) is None
    assert caches["memory_l1"].get(cache_key(("ABC123", "main_content"))) is None


def test_delete_refuses_without_confirm_and_changes_nothing(saved):
    before = snapshot_table()
    message, _ = refused("delete", "--product-id", "ABC123")
    assert "--confirm" in message
    assert snapshot_table() == before


def test_delete_works_as_the_original_design_invokes_it(saved):
    out, _ = run("delete", "--product-id", "ABC123", "--confirm")
    assert "removido" in out
    assert not ProductMemoryEntry.objects.filter(product_id="ABC123").exists()
    assert caches["memory_l2"].get(cache_key(("ABC123", "main_content"))) is None
    assert ProductMemoryEntry.objects.count() == 2


def test_delete_of_an_unknown_product_exits_non_zero(saved):
    message, _ = refused("delete", "--product-id", "NAOEXISTE", "--confirm")
    assert "NAOEXISTE" in message and "não está na memória" in message
    assert ProductMemoryEntry.objects.count() == 3


def test_clear_and_delete_cannot_run_without_arguments_they_need():
    with pytest.raises(CommandError, match="product-id"):
        call_command("manage_memory", "delete", "--confirm", stderr=io.StringIO())
    with pytest.raises(CommandError, match="SUBCOMANDO"):
        call_command("manage_memory", stderr=io.StringIO())


# -- backup, restore, warm, purge -----------------------------------------------------------


def test_backup_clear_restore_through_the_command_gives_back_equal_entries(backups, redis_client):
    make_entries(3)
    before = snapshot_table()
    out, _ = run("backup", "--keep", "2")
    assert "Backup criado" in out and "3 entradas" in out
    (path,) = backups.iterdir()
    with gzip.open(path, "rt") as f:
        assert len(f.readlines()) == 3
    run("clear", "--confirm")

    out, _ = run("restore")

    assert "Restauração concluída" in out and "3 novos" in out
    assert snapshot_table() == before


def test_backup_keeps_the_last_n(backups):
    make_entries(1)
    for _ in range(3):
        data = json.loads(run("backup", "--keep", "2", "--json")[0])
    assert len(list(backups.iterdir())) == 2
    assert data["entries"] == 1 and len(data["removed"]) == 1


def test_restore_reads_a_named_file_and_refuses_a_bad_one(backups, tmp_path):
    make_entries(2)
    run("backup")
    (name,) = [p.name for p in backups.iterdir()]
    ProductMemoryEntry.objects.filter(product_id="SKU00000").delete()
    out, _ = run("restore", "--input-file", name)
    assert "1 novos, 1 atualizados" in out
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    refused("restore", "--input-file", str(broken), match="gzip")


def test_restore_with_no_backup_is_a_clear_error(backups):
    refused("restore", match="nenhum backup")


def test_warm_refills_redis_after_flushdb(saved, redis_client):
    redis_client.flushdb()
    key = cache_key(("XYZ789", "main_content"))
    assert caches["memory_l2"].get(key) is None
    out, _ = run("warm", "--batch-size", "2")
    assert "3 entradas ativas em 2 lote(s)" in out
    assert caches["memory_l2"].get(key)["payload"]["title"] == "Tênis XYZ789"


def test_warm_without_redis_is_a_clear_error(no_redis):
    refused("warm", match="Redis não configurado")


def test_warm_with_redis_down_is_a_clear_error(dead_redis):
    refused("warm", match="Redis não responde")


def test_purge_removes_only_expired_rows(saved):
    ProductMemoryEntry.objects.filter(product_id__in=["ABC123", "LMN456"]).update(
        expires_at=timezone.now() - timedelta(seconds=5))
    out, _ = run("purge", "--batch-size", "1")
    assert "2 entradas expiradas removidas em 2 lote(s)" in out
    assert list(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == ["XYZ789"]
    assert caches["memory_l2"].get(cache_key(("ABC123", "main_content"))) is None


def test_purge_rejects_a_bad_batch_size():
    refused("purge", "--batch-size", "0", match="batch_size")


# -- real processes: exit codes and no tracebacks ---------------------------------------------


@pytest.mark.slow
def test_with_the_database_down_every_command_ends_in_one_line_and_exit_1():
    env = {"TEST_DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing"}
    for args in (["stats"], ["list"], ["export", "--output-file", "-"], ["clear", "--confirm"], ["health"]):
        result = manage(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert "CommandError:" in result.stderr
        if args != ["health"]:
            assert "Banco de dados indisponível" in result.stderr


@pytest.mark.slow
def test_usage_errors_exit_2():
    result = manage()
    assert result.returncode == 2 and "SUBCOMANDO" in result.stderr
    result = manage("list", "--limit", "dez")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_exit_codes_hold_in_a_real_process(tmp_path):
    """Against the test database: refusals and unknown products exit 1, success 0."""
    ProductMemory().save_product_data("ABC123", CONTENT)
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    env = {"TEST_DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
           "MEMORY_BACKUP_DIR": str(tmp_path)}
    assert manage("delete", "--product-id", "ABC123", env=env).returncode == 1
    assert manage("clear", env=env).returncode == 1
    assert ProductMemoryEntry.objects.filter(product_id="ABC123").exists()
    assert manage("delete", "--product-id", "NOPE", "--confirm", env=env).returncode == 1
    ok = manage("delete", "--product-id", "ABC123", "--confirm", env=env)
    assert ok.returncode == 0, ok.stderr
    assert not ProductMemoryEntry.objects.exists()
    assert manage("health", env=env).returncode == 0


def table_rows(out: str) -> dict[str, list[str]]:
    """The cells of each row of rich tables, by the first cell."""
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if len(cells) >= 2 and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def test_stats_numbers_read_in_pt_br_and_json_keeps_machine_numbers(saved, backups):
    for sku in ("ABC123", "XYZ789", "LMN456"):
        saved.get_product_data(sku)
    rows = table_rows(run("stats")[0])
    assert rows["Tokens economizados"] == ["4.500"]
    assert re.fullmatch(r"US\$ 0,\d{4}", rows["Custo estimado economizado"][0])
    assert re.fullmatch(r"\d{1,3},\d%", rows["Taxa de acerto"][0])
    assert re.fullmatch(r"\d{1,3} B|\d{1,3},\d (KB|MB|GB)", rows["Tabela no PostgreSQL"][0])
    data = json.loads(run("stats", "--json")[0])
    assert isinstance(data["estimated_cost_saved"], float) and data["tokens_saved"] == 4500


def test_health_latencies_read_in_pt_br(redis_client):
    rows = table_rows(run("health")[0])
    assert re.fullmatch(r"\d+,\d ms", rows["PostgreSQL"][1])


@pytest.mark.parametrize("verbosity", ["1", "2"])
def test_import_says_once_that_it_is_done(verbosity, tmp_path, caplog):
    make_entries(3)
    path = tmp_path / "memory.jsonl"
    run("export", "--output-file", str(path))
    run("clear", "--confirm")
    caplog.clear()
    out, err = run("import", "--input-file", str(path), "--verbosity", verbosity)
    assert (out + err + caplog.text).count("Importação concluída") == 1
    assert "Importação concluída: 3 registros lidos: 3 novos, 0 atualizados." in out
    memory_lines = [r for r in caplog.records if r.name.startswith("memory")]
    assert bool(memory_lines) == (verbosity == "2")  # the memory's own log lines only from -v 2


def test_a_refused_import_is_said_once(tmp_path, caplog):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"product_id": "", "payload": {}}\n', encoding="utf-8")
    message, err = refused("import", "--input-file", str(path))
    assert "Importação recusada" in message
    assert "Importação recusada" not in caplog.text + err
