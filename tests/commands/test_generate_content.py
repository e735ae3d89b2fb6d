"""The catalog run: `manage.py generate_content CATALOG`."""
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from memory.models import ProductMemoryEntry

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
    assert first["generated"] == ProductMemoryEntry.objects.count() == 194  # 6 rows repeat a GTIN
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
        "sku,gtin,title\nOK-1,,Caneca\n,7891234567890,\n,,\nOK-2,,Prato\n", encoding="utf-8"
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
        ("c.json", "{not json", "JSON inválido"),
        ("c.json", '{"sku": "A"}', "lista de produtos"),
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
