"""beecatalog.environment: each reader returns the value it accepts, or stops the process with one
pt-BR line naming the variable, the value (its password masked) and the form expected."""
import pytest

from beecatalog import environment as read
from beecatalog.settings import BACKEND_ALIASES, TRANSPORT_ALIASES

NAME = "BC_TEST_SETTING"


def refusal(capsys, reader, value, *args, **kwargs) -> str:
    """The one line ``reader`` prints for ``value`` before it stops the process with exit code 4."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NAME, value)
        with pytest.raises(SystemExit) as stopped:
            reader(NAME, *args, **kwargs)
    assert stopped.value.code == read.EXIT_CODE
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"{NAME}: "), err
    return err.strip()


def accepted(monkeypatch, reader, value, *args, **kwargs):
    monkeypatch.setenv(NAME, value)
    return reader(NAME, *args, **kwargs)


@pytest.mark.parametrize("value, kwargs, line", [
    ("90d", {"minimum": 1, "example": "90 dias = 7776000"},
     "use um número inteiro de segundos maior ou igual a 1 (90 dias = 7776000), não '90d'"),
    ("-1", {}, "use um número inteiro de segundos maior ou igual a 0, não '-1'"),
    ("2.5", {}, "use um número inteiro de segundos maior ou igual a 0, não '2.5'"),
    ("", {}, "use um número inteiro de segundos maior ou igual a 0, não ''"),
    ("mil", {"minimum": 1, "unit": "bytes"}, "use um número inteiro de bytes maior ou igual a 1, não 'mil'"),
    ("0", {"minimum": 1, "unit": ""}, "use um número inteiro maior ou igual a 1, não '0'"),
])
def test_a_whole_number_that_is_not_one_is_refused_with_the_form_expected(capsys, value, kwargs, line):
    assert refusal(capsys, read.whole, value, 60, **kwargs) == f"{NAME}: {line}"


@pytest.mark.parametrize("value", ["30s", "nan", "inf", "-0.5", "1 ano", "0,5"])
def test_a_number_of_seconds_that_is_not_one_is_refused(capsys, value):
    line = refusal(capsys, read.number, value, 1.0)
    assert line == f"{NAME}: use um número de segundos maior ou igual a 0, não {value!r}"


@pytest.mark.parametrize("reader, value, expected", [
    (read.whole, " 7776000 ", 7776000),
    (read.whole, "0", 0),
    (read.number, "0.25", 0.25),
    (read.number, "5", 5.0),
])
def test_numbers_are_read_as_numbers(monkeypatch, reader, value, expected):
    assert accepted(monkeypatch, reader, value, 1) == expected


def test_an_unset_number_is_its_default(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    assert read.whole(NAME, 7_776_000, minimum=1) == 7_776_000


@pytest.mark.parametrize("value, expected", [("true", True), ("False", False), ("1", True), ("off", False), (" yes ", True)])
def test_flags_read_the_usual_spellings(monkeypatch, value, expected):
    assert accepted(monkeypatch, read.flag, value, not expected) is expected


@pytest.mark.parametrize("value", ["talvez", "sim", "2", ""])
def test_a_flag_that_is_neither_true_nor_false_is_refused(capsys, value):
    assert refusal(capsys, read.flag, value, False) == f"{NAME}: use true ou false, não {value!r}"


def test_a_choice_names_every_allowed_value(capsys, monkeypatch):
    assert accepted(monkeypatch, read.choice, "openai", ("template", "openai"), "template") == "openai"
    line = refusal(capsys, read.choice, "opena1", ("template", "openai"), "template")
    assert line == f"{NAME}: use template ou openai, não 'opena1'"
    assert refusal(capsys, read.choice, "OpenAI", ("template", "openai"), "template").endswith("não 'OpenAI'")


@pytest.mark.parametrize("value, line", [
    ("127.0.0.1:6379", "falta o esquema da URL; use redis://host:6379/0, não '127.0.0.1:6379'"),
    ("redis:127.0.0.1", "falta o esquema da URL; use redis://host:6379/0, não 'redis:127.0.0.1'"),
    ("http://127.0.0.1:6379/0",
     "esquema 'http' desconhecido; use redis://, rediss:// ou unix://, como redis://host:6379/0, não 'http://127.0.0.1:6379/0'"),
    ("redis://:s3nha@127.0.0.1:63a9/0",
     "a porta não é um número de 1 a 65535; use redis://host:6379/0, não 'redis://:***@127.0.0.1:63a9/0'"),
    ("redis://127.0.0.1:6379/cache",
     "o banco do Redis é um número (/0 a /15), como redis://host:6379/0, não 'redis://127.0.0.1:6379/cache'"),
])
def test_a_redis_url_without_its_scheme_or_with_another_is_refused(capsys, value, line):
    assert refusal(capsys, read.redis_url, value) == f"{NAME}: {line}"


@pytest.mark.parametrize("value", ["", "redis://127.0.0.1:6379/6", "rediss://u:p@host:6380", "unix:///run/redis.sock?db=1"])
def test_redis_urls_are_kept_as_written(monkeypatch, value):
    assert accepted(monkeypatch, read.redis_url, value) == value


@pytest.mark.parametrize("value, schemes", [
    ("redis://127.0.0.1:6379/0", TRANSPORT_ALIASES),
    ("amqp://guest@rabbit//", TRANSPORT_ALIASES),
    ("db+postgresql://u@host/db", BACKEND_ALIASES),
    ("rpc://", BACKEND_ALIASES),
])
def test_celery_urls_take_celerys_own_schemes(monkeypatch, value, schemes):
    assert accepted(monkeypatch, read.celery_url, value, "", schemes) == value


def test_a_celery_url_with_an_unknown_scheme_names_the_known_ones(capsys):
    line = refusal(capsys, read.celery_url, "redsi://127.0.0.1:6379/0", "", TRANSPORT_ALIASES)
    assert line.startswith(f"{NAME}: esquema 'redsi' desconhecido; use redis://host:6379/0 ou outro esquema do Celery (")
    assert "amqp, " in line and "rediss, " in line and line.endswith("não 'redsi://127.0.0.1:6379/0'")
    assert refusal(capsys, read.celery_url, "127.0.0.1:6379", "", BACKEND_ALIASES).startswith(f"{NAME}: falta o esquema")


@pytest.mark.parametrize("value, line", [
    ("postgress://postgres:segredo@127.0.0.1:5432/bc",
     "esquema 'postgress' desconhecido; use postgres:// (PostgreSQL) ou sqlite:// (SQLite), como "
     "postgres://usuário:senha@host:5432/banco ou sqlite:///caminho/arquivo.sqlite3, "
     "não 'postgress://postgres:***@127.0.0.1:5432/bc'"),
    ("mysql://u@host/db", "esquema 'mysql' desconhecido"),
    ("127.0.0.1:5432/bc", "falta o esquema da URL"),
    ("postgres://u@host:port/bc", "a porta não é um número de 1 a 65535"),
    ("postgres://u:p@host:5432/", "falta o nome do banco no fim da URL"),
    ("postgres://u:p@host:5432", "falta o nome do banco no fim da URL"),
])
def test_a_database_url_that_cannot_be_used_is_refused_without_its_password(capsys, value, line):
    refused = refusal(capsys, read.database, value, "sqlite:///x.sqlite3")
    assert refused.startswith(f"{NAME}: {line}")
    assert "segredo" not in refused and ":p@" not in refused


def test_a_database_url_is_djangos_databases_entry(monkeypatch):
    config = accepted(monkeypatch, read.database, "postgres://u:p@db.example:6543/bc?connect_timeout=5", "")
    assert (config["ENGINE"], config["NAME"], config["HOST"], config["PORT"]) == (
        "django.db.backends.postgresql", "bc", "db.example", 6543)
    assert config["OPTIONS"] == {"connect_timeout": 5}
    assert accepted(monkeypatch, read.database, "sqlite:////tmp/x.sqlite3", "")["NAME"] == "/tmp/x.sqlite3"


def test_time_zones_come_from_the_iana_database(capsys, monkeypatch):
    assert accepted(monkeypatch, read.time_zone, "UTC", "America/Sao_Paulo") == "UTC"
    line = refusal(capsys, read.time_zone, "Brasil/Sao_Paulo", "America/Sao_Paulo")
    assert line == f"{NAME}: use um fuso horário da base IANA, como America/Sao_Paulo ou UTC, não 'Brasil/Sao_Paulo'"


def test_trusted_origins_need_their_scheme(capsys, monkeypatch):
    assert accepted(monkeypatch, read.origins, "https://a.example, http://b.example:8000,") == [
        "https://a.example", "http://b.example:8000"]
    assert refusal(capsys, read.origins, "https://a.example,b.example").endswith("não 'b.example'")


def test_an_http_url_needs_its_scheme_and_host(capsys, monkeypatch):
    assert accepted(monkeypatch, read.http_url, "http://127.0.0.1:11434/v1", "") == "http://127.0.0.1:11434/v1"
    assert refusal(capsys, read.http_url, "api.openai.com/v1", "").startswith(f"{NAME}: falta o esquema da URL")
    assert refusal(capsys, read.http_url, "ftp://files.example/v1", "").startswith(
        f"{NAME}: use uma URL http:// ou https:// com host")


@pytest.mark.parametrize("url, shown", [
    ("postgres://u:p%40ss@h:5432/db", "postgres://u:***@h:5432/db"),
    ("redis://:segredo@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("postgres://u@h/db", "postgres://u@h/db"),
    ("sem-esquema", "sem-esquema"),
])
def test_a_url_is_quoted_with_its_password_masked(url, shown):
    assert read.masked(url) == shown
