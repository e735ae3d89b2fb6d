"""Stored and user-given text printed by the commands: shown literally, never obeyed by the terminal.

A product id ``API[/]`` once made every later ``manage_memory list`` end in rich's MarkupError;
ids, titles and file names holding ESC sequences reached the terminal raw.
"""
import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from rich.console import Console

from memory.management.terminal import dumps, literal, plain
from memory.models import ProductMemoryEntry

from tests.helpers import make_entries

BASE_DIR = Path(settings.BASE_DIR)

CLEAR_SCREEN = "\x1b[2J"
SET_TITLE = "\x1b]0;pwned\x07"
HYPERLINK = "\x1b]8;;https://evil.example/\x1b\\clique\x1b]8;;\x1b\\"
C1_CSI = "\x9b31m"
# (product id, title): rich markup, ESC sequences, an 8-bit CSI, a bidi override.
HOSTILE = [
    ("API[/]", "[bold red]Título[/]"),
    ("CLS" + CLEAR_SCREEN, "Limpa" + CLEAR_SCREEN),
    ("OSC" + SET_TITLE, "Título" + SET_TITLE),
    ("LINK", HYPERLINK),
    ("C1" + C1_CSI, "Bidi \u202etxt.exe"),
]
# What a terminal would obey: ESC, BEL, the C1 block, bidi overrides.
OBEYED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_inert(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text
        found = OBEYED.search(text)
        assert found is None, f"{found.group()!r} printed raw in {text!r}"


# --- the helper -------------------------------------------------------------------------------


@pytest.mark.parametrize("value, shown", [
    ("API[/]", "API[/]"),
    ("Tênis “ação” 👩‍💻", "Tênis “ação” 👩‍💻"),  # the zero-width joiner of the emoji is kept
    (CLEAR_SCREEN, "\\x1b[2J"),
    (SET_TITLE, "\\x1b]0;pwned\\x07"),
    (HYPERLINK, "\\x1b]8;;https://evil.example/\\x1b\\clique\\x1b]8;;\\x1b\\"),
    (C1_CSI, "\\x9b31m"),
    ("a\tb\nc\rd\x00e\x7f", "a\\tb\\nc\\rd\\x00e\\x7f"),
    ("\u202etxt.exe", "\\u202etxt.exe"),
    (42, "42"),
])
def test_plain_writes_every_control_character_as_its_escape(value, shown):
    assert plain(value) == shown
    assert plain(plain(value)) == shown


def test_literal_is_never_read_as_markup():
    out = io.StringIO()
    Console(file=out, width=80).print(literal("API[/] [bold]x[/bold] :smile:"))
    assert out.getvalue() == "API[/] [bold]x[/bold] :smile:\n"


def test_dumps_is_the_same_json_with_nothing_a_terminal_obeys():
    data = {"ids": [pid for pid, _ in HOSTILE], "titles": [title for _, title in HOSTILE], "n": 1.5}
    text = dumps(data, indent=2)
    assert_inert(text)
    assert json.loads(text) == data
    assert "Título" in text  # non-ASCII stays readable


# --- manage_memory and generate_content, in this process ---------------------------------------


def run(command, *args):
    """(stdout, stderr) of a successful call."""
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(command, *args):
    """(message, stderr) of a call that ends in one CommandError line."""
    err = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command(command, *args, stdout=io.StringIO(), stderr=err)
    return str(info.value), err.getvalue()


@pytest.fixture
def hostile(db, redis_client, tmp_path):
    """The hostile entries, and a backup folder whose name is hostile too."""
    for product_id, title in HOSTILE:
        make_entries(1, product_id=product_id, payload={"title": title})
    backup_dir = tmp_path / ("backups" + SET_TITLE + "[/]")
    with override_settings(MEMORY_BACKUP_DIR=backup_dir):
        yield backup_dir


def test_list_shows_markup_and_escapes_literally(hostile):
    out, err = run("manage_memory", "list")
    assert_inert(out, err)
    assert "API[/]" in out and "[bold red]Título[/]" in out
    assert "CLS\\x1b[2J" in out and "OSC\\x1b]0;pwned\\x07" in out
    assert "de 5 entradas" in out


def test_list_json_gives_the_ids_back_exactly(hostile):
    out, _ = run("manage_memory", "list", "--json")
    assert_inert(out)
    listed = json.loads(out)["results"]
    assert {r["product_id"] for r in listed} == {pid for pid, _ in HOSTILE}
    assert {r["title"] for r in listed} == {title for _, title in HOSTILE}


def test_a_hostile_kind_in_the_list_title(hostile):
    out, _ = run("manage_memory", "list", "--kind", "[/]" + CLEAR_SCREEN)
    assert_inert(out)
    assert "Entradas ([/]\\x1b[2J)" in out


def test_stats_and_health_show_a_hostile_backup_folder_literally(hostile):
    out, err = run("manage_memory", "stats")
    assert_inert(out, err)
    assert "Pasta de backup" in out
    for args in (["health"], ["stats", "--json"], ["health", "--json"]):
        out, err = run("manage_memory", *args)
        assert_inert(out, err)
        assert "backups" in out


def test_delete_reports_hostile_ids_literally(hostile):
    for product_id, _ in HOSTILE:
        out, err = run("manage_memory", "delete", "--product-id", product_id, "--confirm")
        assert_inert(out, err)
        assert "removido da memória" in out
    assert not ProductMemoryEntry.objects.exists()
    message, err = refused("manage_memory", "delete", "--product-id", "API[/]" + SET_TITLE, "--confirm")
    assert_inert(message, err)
    assert "não está na memória" in message and "API[/]" in message
    message, _ = refused("manage_memory", "delete", "--product-id", C1_CSI)
    assert_inert(message)


def test_export_and_import_name_hostile_files_literally(hostile, tmp_path):
    target = tmp_path / ("saida" + CLEAR_SCREEN + "[/].jsonl")
    out, err = run("manage_memory", "export", "--output-file", str(target))
    assert_inert(out, err)
    assert "5 entradas exportadas" in out and "saida\\x1b[2J[/].jsonl" in out
    out, err = run("manage_memory", "import", "--input-file", str(target), "--dry-run")
    assert_inert(out, err)
    assert "5 registros lidos" in out
    message, err = refused("manage_memory", "import", "--input-file", str(tmp_path / ("falta" + SET_TITLE + ".csv")))
    assert_inert(message, err)
    assert "falta\\x1b]0;pwned\\x07.csv" in message


def test_import_errors_quote_hostile_cells_literally(hostile, tmp_path):
    bad = tmp_path / "ruim.jsonl"
    bad.write_text("\n".join(json.dumps(row) for row in [
        {"product_id": "ok", "payload": {"title": "x"}, "created_at": CLEAR_SCREEN + "[/]"},
        {"product_id": "ok2", "payload": {"title": "x"}, "hit_count": SET_TITLE},
    ]) + "\n", encoding="utf-8")
    message, err = refused("manage_memory", "import", "--input-file", str(bad))
    assert_inert(message, err)
    assert "registro 1" in err and "registro 2" in err and "recusada" in message


def test_backup_and_restore_name_a_hostile_folder_literally(hostile):
    out, err = run("manage_memory", "backup")
    assert_inert(out, err)
    assert "Backup criado" in out and "backups\\x1b]0;pwned\\x07[/]" in out
    out, err = run("manage_memory", "restore", "--dry-run")
    assert_inert(out, err)
    assert "5 registros lidos" in out


def test_generate_content_names_a_hostile_catalog_literally(db, tmp_path):
    message, _ = refused("generate_content", str(tmp_path / ("catalogo" + CLEAR_SCREEN + ".csv")))
    assert_inert(message)
    assert "catalogo\\x1b[2J.csv" in message
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"sku": "API[/]", "title": "[bold]Caneca[/]" + SET_TITLE}) + "\n"
                       + '{"sku": \n', encoding="utf-8")
    message, err = refused("generate_content", str(catalog))
    assert_inert(message, err)
    assert "linha 2" in err
    assert ProductMemoryEntry.objects.filter(product_id="API[/]").exists()
    message, _ = refused("generate_content", str(catalog), "--json")
    assert_inert(message)


# --- real processes ---------------------------------------------------------------------------


def child_env(tmp_path) -> dict:
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "MEMORY_BACKUP_DIR": str(tmp_path),
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_list_in_a_real_process_prints_every_id(redis_client, tmp_path):
    for product_id, title in HOSTILE:
        make_entries(1, product_id=product_id, payload={"title": title})
    done = subprocess.run(
        [sys.executable, "manage.py", "manage_memory", "list"],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=120, env=child_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert_inert(done.stdout, done.stderr)
    assert "API[/]" in done.stdout and "CLS\\x1b[2J" in done.stdout


# rich colours a terminal with SGR sequences: those are its own, and the only ESC it may print.
SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_list_on_a_terminal_prints_only_richs_own_colours(redis_client, tmp_path):
    for product_id, title in HOSTILE:
        make_entries(1, product_id=product_id, payload={"title": title})
    leader, follower = pty.openpty()
    env = {**child_env(tmp_path), "COLUMNS": "200", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "manage_memory", "list"],
        cwd=BASE_DIR, stdin=follower, stdout=follower, stderr=follower, env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    screen = b"".join(chunks).decode("utf-8", errors="replace")
    text = SGR.sub("", screen).replace("\r\n", "\n")
    assert_inert(text)
    assert "API[/]" in text and "OSC\\x1b]0;pwned\\x07" in text
