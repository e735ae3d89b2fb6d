"""``manage_memory approve``, ``versions`` and ``restore-version``; ``generate_content --force``
on approved content."""
import io
import json

import pytest
from django.core.management import CommandError, call_command

from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Tênis de Corrida", "description": "Leve.", "bullet_points": ["a"], "seo_keywords": ["b"]}


def run(*args):
    out = io.StringIO()
    call_command("manage_memory", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*args):
    with pytest.raises(CommandError) as info:
        call_command("manage_memory", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert info.value.returncode == 1 and "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture
def entry():
    memory = ProductMemory()
    memory.save_product_data({"sku": "TEN-1", "title": "Tênis"}, CONTENT)
    memory.replace_content("TEN-1", {**CONTENT, "title": "Tênis de Corrida Leve"}, origin="edited", author="maria")
    return "TEN-1"


def test_approve_and_revoke(entry):
    out = run("approve", "--product-id", entry, "--by", "ana")
    assert "aprovado (versão 2) por ana" in out
    row = ProductMemoryEntry.objects.get()
    assert (row.approved, row.approved_by) == (True, "ana")
    data = json.loads(run("approve", "--product-id", entry, "--revoke", "--json"))
    assert (data["approved"], data["approved_by"], data["approved_at"]) == (False, "", None)


def test_approve_records_the_system_user_by_default(entry, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "operador")
    run("approve", "--product-id", entry)
    assert ProductMemoryEntry.objects.get().approved_by == "operador"


def test_versions_lists_the_history_with_the_fields_each_changed(entry):
    out = run("versions", "--product-id", entry)
    assert "2 (atual)" in out and "editado" in out and "maria" in out and "title" in out
    assert "gerado" in out
    data = json.loads(run("versions", "--product-id", entry, "--json"))
    assert [v["number"] for v in data["versions"]] == [2, 1]
    assert data["versions"][0]["changes"] == [{"field": "title", "change": "changed", "before": "Tênis de Corrida",
                                               "after": "Tênis de Corrida Leve"}]


def test_restore_version(entry):
    out = run("restore-version", "--product-id", entry, "--version", "1", "--by", "joao")
    assert "versão 1 restaurada como versão 3" in out
    row = ProductMemoryEntry.objects.get()
    assert (row.version, row.origin, row.author, row.payload) == (3, "restored", "joao", CONTENT)
    assert ProductMemory().get_product_data(entry).content == CONTENT


@pytest.mark.parametrize("args, message", [
    (("approve", "--product-id", "NADA"), "Produto NADA não está na memória (tipo main_content)."),
    (("versions", "--product-id", "NADA"), "Produto NADA não está na memória (tipo main_content)."),
    (("restore-version", "--product-id", "TEN-1", "--version", "9"),
     "Produto TEN-1 não tem a versão 9 (guardadas: 1 a 2)."),
    (("restore-version", "--product-id", "TEN-1", "--version", "2"),
     "version: a versão 2 já é o conteúdo atual do produto TEN-1"),
])
def test_unknown_products_and_versions_are_one_line_refusals(entry, args, message):
    assert refused(*args) == message


def test_generate_content_force_leaves_approved_content_and_says_so(entry, tmp_path):
    ProductMemory().set_approval(entry, True, by="ana")
    catalog = tmp_path / "catalogo.jsonl"
    catalog.write_text(json.dumps({"sku": entry, "title": "Tênis"}) + "\n" + json.dumps({"sku": "OUT-1", "title": "Outro"}))
    out = io.StringIO()
    call_command("generate_content", str(catalog), "--force", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert (summary["locked"], summary["generated"]) == (1, 1)
    assert ProductMemoryEntry.objects.get(product_id=entry).version == 2

    out = io.StringIO()
    call_command("generate_content", str(catalog), "--force", "--override-approval", "--json", stdout=out)
    assert json.loads(out.getvalue())["locked"] == 0
    row = ProductMemoryEntry.objects.get(product_id=entry)
    assert (row.version, row.origin, row.approved) == (3, "generated", False)


def test_list_shows_the_approval_beside_the_status(entry):
    ProductMemory().set_approval(entry, True, by="ana")
    assert "ativo (aprovado)" in run("list")
    assert json.loads(run("list", "--json"))["results"][0]["approved"] is True


def test_labels_are_in_portuguese_whatever_language_the_thread_has_active(entry):
    from django.utils import translation

    with translation.override("en"):
        out = run("versions", "--product-id", entry)
    assert "editado" in out and "gerado" in out
