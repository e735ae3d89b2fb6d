"""What the admin says, through Django's test client, in pt-BR and in English.

The pt-BR pages carry no English left over from the packages (django-celery-beat,
django-import-export) nor fuzzy entries of our own catalog, and every page names
the product (and shows its icon) rather than Django.
"""
import csv
import gettext
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule

from memory.admin.resources import EXPORT_FIELDS
from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry
from memory.providers.prompts import current_generator_version
from memory.schedules import register_periodic_tasks

pytestmark = pytest.mark.django_db

THIRD_PARTY_MO = settings.BASE_DIR / "beecatalog" / "third_party_locale" / "pt_BR" / "LC_MESSAGES" / "django.mo"
BEAT_PAGES = [
    "admin:app_list",
    "admin:django_celery_beat_periodictask_changelist",
    "admin:django_celery_beat_intervalschedule_changelist",
    "admin:django_celery_beat_crontabschedule_changelist",
    "admin:django_celery_beat_solarschedule_changelist",
    "admin:django_celery_beat_clockedschedule_changelist",
    "admin:django_celery_beat_periodictask_add",
]


class _TextOf(HTMLParser):
    """The text a reader sees: element text and the title, without scripts and styles."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(" ".join(data.split()))


def visible_text(response) -> str:
    assert response.status_code == 200, response.status_code
    parser = _TextOf()
    parser.feed(response.content.decode())
    return "\n".join(parser.parts)


def title_of(response) -> str:
    return re.search(r"<title>(.*?)</title>", response.content.decode(), re.DOTALL).group(1).strip()


def page(client, url, language, **params):
    return client.get(url, params, HTTP_ACCEPT_LANGUAGE=language)


def untranslated_english(text: str) -> list[str]:
    """The packages' English strings (those pt-BR says differently) found as whole phrases in ``text``."""
    with THIRD_PARTY_MO.open("rb") as mo:
        catalog = gettext.GNUTranslations(mo)._catalog
    found = []
    for msgid, msgstr in catalog.items():
        if isinstance(msgid, tuple):
            msgid = msgid[0] if msgid[1] == 0 else None
        if not msgid or msgid == msgstr:
            continue
        # A msgid may hold format fields ("every {} {}"): each becomes "anything".
        pattern = r"(?<!\w)" + r".+?".join(map(re.escape, re.split(r"\{\w*\}|%\(\w+\)s|%s", msgid.strip()))) + r"(?!\w)"
        if re.search(pattern, text):
            found.append(msgid)
    return sorted(found)


@pytest.fixture
def periodic_tasks():
    register_periodic_tasks()


# -- the product's name -------------------------------------------------------------

@pytest.mark.parametrize("language, index_title", [("pt-br", "Administração"), ("en", "Administration")])
def test_every_admin_page_names_beecatalog_not_django(admin_client, language, index_title):
    index = page(admin_client, reverse("admin:index"), language)
    text = visible_text(index)
    assert "BeeCatalog Memory" in text.splitlines()
    assert index_title in text.splitlines()
    assert title_of(index) == f"{index_title} | BeeCatalog Memory"
    assert "Django" not in text and "Django" not in title_of(index)

    entries = page(admin_client, reverse("admin:memory_productmemoryentry_changelist"), language)
    assert title_of(entries).endswith("| BeeCatalog Memory")
    assert "Django" not in visible_text(entries)


def test_admin_pages_link_the_icon_and_favicon_ico_leads_to_it(admin_client, client):
    icon = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">',
                     admin_client.get(reverse("admin:index")).content.decode()).group(1)
    login = client.get(reverse("admin:login")).content.decode()
    assert f'<link rel="icon" type="image/svg+xml" href="{icon}">' in login
    redirect = client.get("/favicon.ico")
    assert redirect.status_code == 302 and redirect["Location"] == icon
    svg = client.get(icon)
    assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(svg.streaming_content if svg.streaming else [svg.content])


# -- django-celery-beat ---------------------------------------------------------------

def app_models(text: str, app_name: str) -> list[str]:
    """The model names the admin index lists under ``app_name``."""
    lines = text.splitlines()
    start = lines.index(app_name) + 4  # the caption, then the table's three column headings
    names = []
    for line in lines[start:]:
        if line in ("Adicionar", "Alterar", "Add", "Change"):
            continue
        if line.startswith(("Nome do modelo", "Model name")) or len(names) == 5:
            break
        names.append(line)
    return names


def test_the_periodic_tasks_section_speaks_portuguese(admin_client, periodic_tasks):
    index = visible_text(page(admin_client, reverse("admin:index"), "pt-br"))
    assert app_models(index, "Tarefas periódicas") == [
        "Crontabs", "Eventos solares", "Horário fixo", "Intervalos", "Tarefas periódicas",
    ]
    for name in BEAT_PAGES:
        kwargs = {"app_label": "django_celery_beat"} if name == "admin:app_list" else {}
        text = visible_text(page(admin_client, reverse(name, kwargs=kwargs), "pt-br"))
        assert untranslated_english(text) == [], name


def test_the_periodic_task_list_shows_translated_columns_filters_and_actions(admin_client, periodic_tasks):
    text = visible_text(page(admin_client, reverse("admin:django_celery_beat_periodictask_changelist"), "pt-br"))
    for line in ("Nome", "Habilitado", "Agendamento", "Agendamento por intervalo", "Data e hora de início",
                 "Última execução", "Tarefa única", "Por nome da tarefa", "Executar as tarefas selecionadas",
                 "memória: snapshot de backup"):
        assert line in text.splitlines(), line
    assert "Scheduler" not in text and "Task Name" not in text
    assert all(line.startswith("a cada ") for line in text.splitlines() if line.startswith(("a cada", "every")))


@pytest.mark.parametrize("language, lines", [
    ("pt-br", ["a cada dia", "a cada 5 minutos", "a cada 90 segundos"]),
    ("en", ["every day", "every 5 minutes", "every 90 seconds"]),
])
def test_intervals_read_in_the_active_language(admin_client, language, lines):
    IntervalSchedule.objects.bulk_create([
        IntervalSchedule(every=1, period=IntervalSchedule.DAYS),
        IntervalSchedule(every=5, period=IntervalSchedule.MINUTES),
        IntervalSchedule(every=90, period=IntervalSchedule.SECONDS),
    ])
    text = visible_text(page(admin_client, reverse("admin:django_celery_beat_intervalschedule_changelist"), language))
    assert set(lines) <= set(text.splitlines())


def test_the_periodic_task_section_stays_english_in_english(admin_client, periodic_tasks):
    index = visible_text(page(admin_client, reverse("admin:index"), "en"))
    assert app_models(index, "Periodic Tasks") == ["Clocked", "Crontabs", "Intervals", "Periodic tasks", "Solar events"]
    text = visible_text(page(admin_client, reverse("admin:django_celery_beat_periodictask_changelist"), "en"))
    for line in ("Name", "Schedule", "Interval Schedule", "By task name", "Run selected tasks"):
        assert line in text.splitlines(), line


# -- django-import-export ---------------------------------------------------------------

@pytest.mark.parametrize("language, fields_line", [
    ("pt-br", "Este exportador vai exportar os seguintes campos:"),
    ("en", "This exporter will export the following fields:"),
])
def test_export_page_says_it_exports(admin_client, language, fields_line):
    text = visible_text(page(admin_client, reverse("admin:memory_productmemoryentry_export"), language))
    assert fields_line in text.splitlines()
    if language == "pt-br":
        assert untranslated_english(text) == []


@pytest.mark.parametrize("language, line", [
    ("pt-br", "Exportar 2 itens selecionados."), ("en", "Export 2 selected items."),
])
def test_export_of_selected_entries_counts_them_in_the_active_language(admin_client, language, line):
    memory = ProductMemory()
    for sku in ("ABC-1", "XYZ-2"):
        memory.save_product_data({"sku": sku, "title": sku}, {"title": sku, "description": "Descrição."})
    response = admin_client.post(reverse("admin:memory_productmemoryentry_changelist"), {
        "action": "export_admin_action",
        "_selected_action": list(ProductMemoryEntry.objects.values_list("pk", flat=True)),
    }, HTTP_ACCEPT_LANGUAGE=language)
    assert line in visible_text(response).splitlines()


def import_csv(client, data: str, language: str):
    upload = SimpleUploadedFile("entries.csv", data.encode())
    return client.post(reverse("admin:memory_productmemoryentry_import"), {
        "format": "0", "resource": "0", "import_file": upload,
    }, HTTP_ACCEPT_LANGUAGE=language)


def entries_csv(*rows: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def entry_row(product_id: str, **changes) -> dict:
    row = {
        "product_id": product_id, "kind": "main_content", "source_data": "{}", "input_fingerprint": "f" * 64,
        "payload": json.dumps({"title": product_id, "description": "Descrição.", "bullet_points": ["Qualidade"],
                               "seo_keywords": [product_id.lower()]}),
        "generator_version": current_generator_version(), "tokens_prompt": "10", "tokens_completion": "5",
        "hit_count": "0", "tokens_saved": "0", "created_at": "2026-01-01T10:00:00+00:00",
        "updated_at": "2026-01-01T10:00:00+00:00", "last_hit_at": "", "expires_at": "2030-01-01T00:00:00+00:00",
    }
    return {**row, **changes}


def test_import_pages_have_no_english_left(admin_client, django_capture_on_commit_callbacks):
    form = visible_text(page(admin_client, reverse("admin:memory_productmemoryentry_import"), "pt-br"))
    assert untranslated_english(form) == []

    bad_row = entry_row("BAD", tokens_prompt="-5")
    rejected = visible_text(import_csv(admin_client, entries_csv(entry_row("NEW-1"), bad_row), "pt-br"))
    assert ("Corrija estes erros nos dados onde for possível e envie o arquivo de novo pelo formulário acima."
            in rejected.splitlines())
    assert untranslated_english(rejected) == []

    preview = import_csv(admin_client, entries_csv(entry_row("NEW-1"), entry_row("NEW-2")), "pt-br")
    assert untranslated_english(visible_text(preview)) == []
    confirm = preview.context["confirm_form"]
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(reverse("admin:memory_productmemoryentry_process_import"), {
            name: confirm.initial[name] for name in ("import_file_name", "original_file_name", "format", "resource")
            if confirm.initial.get(name) is not None
        }, HTTP_ACCEPT_LANGUAGE="pt-br", follow=True)
    text = visible_text(done)
    assert ("Importação concluída (entradas da memória): 2 novas, 0 atualizadas, 0 removidas e 0 ignoradas."
            in text.splitlines())
    assert untranslated_english(text) == []


# -- our own catalog --------------------------------------------------------------------

@pytest.mark.parametrize("language, title, choice", [
    ("pt-br", "Por validade", "expira em até 7 dias"),
    ("en", "By expiry", "expires within 7 days"),
])
def test_entries_expiry_filter_is_translated(admin_client, language, title, choice):
    text = visible_text(page(admin_client, reverse("admin:memory_productmemoryentry_changelist"), language))
    assert title in text.splitlines() and choice in text.splitlines()


CATALOGS = sorted([*(settings.BASE_DIR / "locale").glob("*/LC_MESSAGES/django.po"),
                   *(settings.BASE_DIR / "beecatalog" / "third_party_locale").glob("*/LC_MESSAGES/django.po")])


def catalog_name(po) -> str:
    return str(po.relative_to(settings.BASE_DIR))


@pytest.mark.parametrize("po", CATALOGS, ids=catalog_name)
def test_no_catalog_entry_is_fuzzy(po):
    """A fuzzy entry is left out of the compiled catalog, so its page shows the English msgid."""
    fuzzy = [block.split("msgid ", 1)[1].split("\n", 1)[0] for block in po.read_text().split("\n\n")
             if re.search(r"^#,.*\bfuzzy\b", block, re.MULTILINE)]
    assert fuzzy == []


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="needs GNU gettext's msgfmt (apt-get install gettext)")
@pytest.mark.parametrize("po", CATALOGS, ids=catalog_name)
def test_compiled_catalog_is_up_to_date(po, tmp_path):
    """The committed .mo holds what its .po says (compilemessages was run after the last edit)."""
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(po)], check=True)
    with fresh.open("rb") as new, po.with_suffix(".mo").open("rb") as committed:
        assert gettext.GNUTranslations(committed)._catalog == gettext.GNUTranslations(new)._catalog
