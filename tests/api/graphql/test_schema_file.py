"""docs/schema.graphql is the schema the code serves: this test fails when they drift apart
(``python manage.py graphql_schema`` writes the file again)."""
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from memory.api.graphql.schema import SCHEMA_FILE, printed_schema


def test_docs_schema_graphql_is_the_served_schema():
    path = Path(settings.BASE_DIR) / SCHEMA_FILE
    assert path.read_text(encoding="utf-8") == printed_schema(), (
        f"{SCHEMA_FILE} está desatualizado; rode: python manage.py graphql_schema")


def test_the_command_writes_the_file_and_checks_it(tmp_path, capsys):
    target = tmp_path / "schema.graphql"
    call_command("graphql_schema", "--output", str(target))
    assert target.read_text(encoding="utf-8") == printed_schema()
    call_command("graphql_schema", "--check", "--output", str(target))
    assert "confere com o esquema do código" in capsys.readouterr().out
    target.write_text(printed_schema().replace("deleteEntry", "removeEntry"), encoding="utf-8")
    with pytest.raises(CommandError, match="está desatualizado"):
        call_command("graphql_schema", "--check", "--output", str(target))


def test_the_command_names_a_file_it_cannot_read(tmp_path):
    with pytest.raises(CommandError, match="Não foi possível ler"):
        call_command("graphql_schema", "--check", "--output", str(tmp_path / "nada.graphql"))
