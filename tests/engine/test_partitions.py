"""Partitions by expiry (``MEMORY_PARTITION_BY_EXPIRY=monthly``, memory.engine.partitions): after
``manage_memory partition`` the memory works as before on a table range-partitioned by month of
``expires_at``: one row per (product_id, kind) across partitions, rows moving with their versions,
whole expired months dropped by the purge, months ahead created, and back with ``--undo``.

Most tests convert inside the test's own transaction (PostgreSQL's DDL is transactional): the
rollback at the end gives the next test the plain table again. The concurrency tests need
commits: they convert and undo around themselves (``committed_partitions``)."""
import io
import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import psycopg
import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from memory.engine import partitions
from memory.engine.memory import ProductMemory
from memory.engine.tiers import DatabaseTier, cache_key
from memory.io.export import iter_export
from memory.io.importer import import_entries
from memory.models import ContentVersion, ProductMemoryEntry
from memory.periodic_tasks import purge_expired_entries
from memory.services.purge import purge_expired
from tests.helpers import CONTENT, make_entries, snapshot_table, wait_for

def monthly():
    return override_settings(MEMORY_PARTITION_BY_EXPIRY="monthly", MEMORY_PARTITIONS_AHEAD=3)

NOW = timezone.now()
THIS_MONTH = partitions.month_start(NOW)


def months_from_now(n: int, day: int = 10) -> datetime:
    start = THIS_MONTH
    for _ in range(abs(n)):
        start = partitions.next_month(start) if n > 0 else (start - timedelta(days=1)).replace(day=1)
    return start.replace(day=day)


def partition_of(product_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM memory_productmemoryentry WHERE product_id = %s",
                       [product_id])
        return [name for (name,) in cursor.fetchall()][0]


def attached() -> list[str]:
    with connection.cursor() as cursor:
        return [p.name for p in partitions.partitions(cursor)]


def upsert(product_id: str, expires_at: datetime, title: str = "Conteúdo", **kwargs):
    return DatabaseTier().upsert(
        product_id=product_id, kind="main_content", payload={**CONTENT, "title": title}, source_data={"sku": product_id},
        input_fingerprint="f" * 64, generator_version="template:template:p1", tokens_prompt=10, tokens_completion=5,
        expires_at=expires_at, **kwargs)


@pytest.fixture
def partitioned(db):
    """The entries table converted, inside the test's transaction (rolled back after it)."""
    with monthly():
        yield partitions.convert(now=NOW)


# --- the conversion ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_conversion_keeps_every_row_its_versions_indexes_and_ids():
    make_entries(3, prefix="NOV")  # T0 + 90 days: a month of 2027 (DEFAULT if beyond the months ahead)
    make_entries(2, prefix="OLD", expires_at=months_from_now(-2))
    ProductMemory().save_product_data({"sku": "SAVED"}, CONTENT)
    before, next_id = snapshot_table(), ProductMemoryEntry.objects.order_by("-id").first().id + 1
    with monthly():
        call_command("manage_memory", "partition", stdout=io.StringIO())
        assert partitions.is_partitioned()
        assert snapshot_table() == before
        assert partition_of("OLD00000") == partitions.partition_name(months_from_now(-2))
        saved = ProductMemoryEntry.objects.get(product_id="SAVED").expires_at  # now + MEMORY_DEFAULT_TTL
        assert partition_of("SAVED") == partitions.partition_name(partitions.month_start(saved))
        names = attached()
        assert names[-1] == partitions.DEFAULT_PARTITION
        assert [partitions.partition_name(months_from_now(n)) for n in range(4)] == [
            n for n in names if n >= partitions.partition_name(THIS_MONTH) and n != partitions.DEFAULT_PARTITION][:4]
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'memory_productmemoryentry'")
            indexes = {name for (name,) in cursor.fetchall()}
        assert {"memory_entry_expires_idx", "memory_entry_title_trgm", "memory_entry_family_idx",
                partitions.KEY_INDEX, "memory_productmemoryentry_pkey"} <= indexes
        entry = ProductMemoryEntry.objects.create(product_id="NEXT", payload={}, input_fingerprint="x",
                                                  generator_version="g", expires_at=NOW)
        assert entry.id == next_id  # the identity goes on where it was


@pytest.mark.django_db
def test_the_command_refuses_with_the_setting_off_and_when_already_done():
    with pytest.raises(CommandError, match="MEMORY_PARTITION_BY_EXPIRY não é monthly"):
        call_command("manage_memory", "partition")
    with pytest.raises(CommandError, match="não está particionada; nada a desfazer"):
        call_command("manage_memory", "partition", "--undo")
    with monthly():
        call_command("manage_memory", "partition", stdout=io.StringIO())
        with pytest.raises(CommandError, match="já está particionada"):
            call_command("manage_memory", "partition")


def test_undo_gives_back_the_plain_table_with_its_constraint_and_cascade(partitioned):
    make_entries(2)
    ProductMemory().save_product_data({"sku": "SAVED"}, CONTENT)
    before = snapshot_table()
    out = io.StringIO()
    call_command("manage_memory", "partition", "--undo", stdout=out)
    assert "sem partições de novo: 3 entradas" in out.getvalue()
    assert not partitions.is_partitioned() and snapshot_table() == before
    with connection.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid IN "
                       "('memory_productmemoryentry'::regclass, 'memory_contentversion'::regclass)")
        constraints = {name for (name,) in cursor.fetchall()}
    assert {"memory_entry_product_kind_uniq", "memory_version_entry_fk", "memory_productmemoryentry_pkey"} <= constraints
    with override_settings(MEMORY_PARTITION_BY_EXPIRY="off"):  # ON CONFLICT again
        ProductMemory().save_product_data({"sku": "SAVED"}, {**CONTENT, "title": "De novo"})
        ProductMemoryEntry.objects.filter(product_id="SAVED").delete()
    assert ContentVersion.objects.filter(entry__product_id="SAVED").count() == 0
    assert ContentVersion.objects.count() == 2


# --- writes and reads ----------------------------------------------------------------------------


def test_save_get_and_update_through_the_memory(partitioned, redis_client):
    memory = ProductMemory()
    first = memory.save_product_data({"sku": "P1"}, CONTENT, tokens_prompt=10, tokens_completion=5)
    caches["memory_l1"].clear()
    redis_client.flushdb()
    assert memory.get_product_data("P1").content == CONTENT
    second = memory.save_product_data({"sku": "P1"}, {**CONTENT, "title": "Nova"})
    entry = ProductMemoryEntry.objects.get(product_id="P1")
    assert (entry.version, entry.payload["title"], entry.created_at.timestamp()) == (2, "Nova", first.created_at)
    assert second.created_at == first.created_at
    assert list(ContentVersion.objects.filter(entry=entry).values_list("number", flat=True)) == [2, 1]
    memory.evict([("P1", "main_content")])
    assert memory.get_product_data("P1").content["title"] == "Nova"


def test_one_row_per_key_across_partitions(partitioned):
    upsert("K1", months_from_now(1))
    with pytest.raises(IntegrityError, match="memory_entry_product_kind_uniq"), transaction.atomic():
        ProductMemoryEntry.objects.create(product_id="K1", payload={}, input_fingerprint="x", generator_version="g",
                                          expires_at=months_from_now(2))
    upsert("K1", months_from_now(2), title="Outra expiração")  # an upsert replaces it instead
    assert list(ProductMemoryEntry.objects.filter(product_id="K1").values_list("version", flat=True)) == [2]
    other = ProductMemoryEntry.objects.create(product_id="K2", payload={}, input_fingerprint="x",
                                              generator_version="g", expires_at=months_from_now(1))
    with pytest.raises(IntegrityError), transaction.atomic():
        ProductMemoryEntry.objects.filter(pk=other.pk).update(product_id="K1")  # a key changed onto another


def test_an_expiry_change_moves_the_row_with_its_versions(partitioned):
    upsert("MOVE", months_from_now(1))
    assert partition_of("MOVE") == partitions.partition_name(months_from_now(1))
    upsert("MOVE", months_from_now(2), title="Segunda")
    ProductMemoryEntry.objects.filter(product_id="MOVE").update(expires_at=months_from_now(3))
    assert partition_of("MOVE") == partitions.partition_name(months_from_now(3))
    entry = ProductMemoryEntry.objects.get(product_id="MOVE")
    assert list(ContentVersion.objects.filter(entry=entry).values_list("number", flat=True)) == [2, 1]


def test_an_approved_entry_is_not_overwritten_unless_overridden(partitioned):
    upsert("APR", months_from_now(1))
    ProductMemoryEntry.objects.filter(product_id="APR").update(approved=True)
    from memory.engine.versions import ApprovedContent

    with pytest.raises(ApprovedContent):
        upsert("APR", months_from_now(2), title="Não")
    upsert("APR", months_from_now(2), title="Sim", override_approval=True)
    entry = ProductMemoryEntry.objects.get(product_id="APR")
    assert (entry.payload["title"], entry.approved, entry.version) == ("Sim", False, 2)


class _Undo(Exception):
    pass


def _import_state(text: str) -> tuple:
    try:
        with transaction.atomic():
            report = import_entries(io.StringIO(text), "jsonl")
            raise _Undo(snapshot_table(), report.as_dict())
    except _Undo as done:
        return done.args


@pytest.mark.django_db
def test_import_of_new_and_existing_keys_leaves_what_it_leaves_on_a_plain_table():
    make_entries(3)
    rows = [json.loads(line) for line in "".join(iter_export("jsonl")).splitlines()]
    rows[0]["payload"] = {**CONTENT, "title": "Do arquivo"}  # a content it did not hold: a new version
    rows[1]["expires_at"] = months_from_now(2).isoformat()  # another month: the row moves
    rows += [dict(r, product_id="NOVO-" + r["product_id"]) for r in rows]  # new keys
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    plain = _import_state(text)
    with monthly():
        partitions.convert(now=NOW)
        assert _import_state(text) == plain
        assert plain[1]["created"] == 3 and plain[1]["updated"] == 3


def test_an_import_of_more_keys_than_the_lock_table_holds_in_one_transaction(partitioned):
    """Row locks, not advisory locks: PostgreSQL's lock table (64 per connection by default)
    would refuse one transaction thousands of them."""
    rows = [{"product_id": f"BULK{i:05d}", "kind": "main_content", "payload": {**CONTENT, "n": i},
             "input_fingerprint": "f" * 64, "generator_version": "g", "expires_at": months_from_now(i % 3).isoformat()}
            for i in range(12_000)]
    report = import_entries(io.StringIO("\n".join(json.dumps(r) for r in rows) + "\n"), "jsonl")
    assert report.created == 12_000
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partitions.KEYS} WHERE product_id LIKE 'BULK%%'")
        assert cursor.fetchone() == (12_000,)
    upsert("BULK00007", months_from_now(2), title="Depois")
    assert ProductMemoryEntry.objects.get(product_id="BULK00007").version == 2


def test_the_versions_go_with_a_deleted_entry(partitioned):
    upsert("GONE", months_from_now(1))
    upsert("STAYS", months_from_now(1))
    ProductMemory().delete_product("GONE")
    assert list(ContentVersion.objects.values_list("entry__product_id", flat=True)) == ["STAYS"]


@pytest.mark.django_db
def test_the_statistics_read_the_partitions_size_and_row_estimate():
    from memory.admin.entries import estimated_count
    from memory.services.stats import table_bytes

    make_entries(3)
    with monthly():
        partitions.convert(now=NOW)  # ends with ANALYZE
    assert table_bytes() > 8192 * 3  # each partition and its indexes, not the parent's 0 bytes
    assert estimated_count(ProductMemoryEntry.objects.all(), exact_limit=1) == 3


# --- purge and the months ahead ------------------------------------------------------------------


@pytest.mark.django_db
def test_purge_drops_a_whole_expired_month_and_deletes_the_current_months_expired_rows(redis_client):
    memory = ProductMemory()
    for sku in ("OLD1", "OLD2", "OLD3", "NOW1", "LIVE"):
        memory.save_product_data({"sku": sku}, CONTENT)
    ProductMemoryEntry.objects.filter(product_id__startswith="OLD").update(expires_at=months_from_now(-2))
    ProductMemoryEntry.objects.filter(product_id="NOW1").update(expires_at=timezone.now() - timedelta(seconds=1))
    with monthly():
        partitions.convert(now=NOW)  # a month for the rows of two months ago
    expired_month = partitions.partition_name(months_from_now(-2))
    assert expired_month in attached()
    assert caches["memory_l2"].get(cache_key(("OLD1", "main_content"))) is not None
    with monthly():
        result = purge_expired(batch_size=2)
    assert (result.deleted, result.partitions_dropped) == (4, 1)
    assert result.batches == 3  # the month in two batches of two, then the current month's row
    assert expired_month not in attached() and partitions.detached_tables() == []
    assert list(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == ["LIVE"]
    assert list(ContentVersion.objects.values_list("entry__product_id", flat=True)) == ["LIVE"]
    assert ContentVersion.objects.count() == 1
    for sku in ("OLD1", "OLD3", "NOW1"):
        assert caches["memory_l2"].get(cache_key((sku, "main_content"))) is None
        assert caches["memory_l1"].get(cache_key((sku, "main_content"))) is None
    assert caches["memory_l2"].get(cache_key(("LIVE", "main_content"))) is not None


@pytest.mark.django_db
def test_a_month_holding_an_approved_entry_is_kept_and_purged_row_by_row():
    for sku in ("OLD1", "KEEP"):
        upsert(sku, months_from_now(-2))
    ProductMemoryEntry.objects.filter(product_id="KEEP").update(approved=True)
    with monthly():
        partitions.convert(now=NOW)
        result = purge_expired()
    assert (result.deleted, result.partitions_dropped) == (1, 0)
    assert partitions.partition_name(months_from_now(-2)) in attached()
    assert list(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == ["KEEP"]


@pytest.mark.django_db
def test_a_purge_finishes_a_month_an_interrupted_one_detached():
    upsert("OLD1", months_from_now(-2))
    with monthly():
        partitions.convert(now=NOW)
        assert partitions.detach_expired(NOW) == [partitions.DETACHED_PREFIX + f"{months_from_now(-2):%Y_%m}"]
        assert not ProductMemoryEntry.objects.exists()  # detached: out of the table at once
        result = purge_expired()
    assert (result.deleted, result.partitions_dropped) == (1, 1)
    assert partitions.detached_tables() == [] and ContentVersion.objects.count() == 0


@pytest.mark.django_db
def test_a_key_whose_entry_went_with_a_detached_month_can_be_saved_again():
    upsert("BACK", months_from_now(-2))
    with monthly():
        partitions.convert(now=NOW)
        partitions.detach_expired(NOW)
        upsert("BACK", months_from_now(1), title="Nova")  # the key's owner is gone: taken over
        assert purge_expired().partitions_dropped == 1
        with pytest.raises(IntegrityError), transaction.atomic():  # the new entry still owns it
            ProductMemoryEntry.objects.create(product_id="BACK", payload={}, input_fingerprint="x",
                                              generator_version="g", expires_at=months_from_now(2))
    entry = ProductMemoryEntry.objects.get(product_id="BACK")
    assert (entry.payload["title"], entry.version) == ("Nova", 1)


@pytest.mark.django_db
def test_the_scheduled_purge_creates_the_months_ahead_and_empties_the_default_partition():
    far = months_from_now(5)
    with monthly():
        partitions.convert(now=NOW - timedelta(days=62))  # converted two months ago
        upsert("FAR", far, title="Primeira")
        upsert("FAR", far, title="Segunda")
        assert partition_of("FAR") == partitions.DEFAULT_PARTITION
        result = purge_expired_entries()
        assert result["partitions_created"] >= 2
        assert {partitions.partition_name(months_from_now(n)) for n in range(4)} <= set(attached())
        # later: the month of FAR is created ahead, FAR moves in with its versions
        assert partitions.create_ahead(now=NOW, months=5) == [partitions.partition_name(months_from_now(n))
                                                             for n in (4, 5)]
    assert partition_of("FAR") == partitions.partition_name(far)
    entry = ProductMemoryEntry.objects.get(product_id="FAR")
    assert list(ContentVersion.objects.filter(entry=entry).values_list("number", flat=True)) == [2, 1]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partitions.DEFAULT_PARTITION}")
        assert cursor.fetchone() == (0,)


# --- the operator's checks -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_system_check_tells_to_convert_or_to_set_the_variable():
    with monthly():
        assert [m.id for m in partitions.check_layout(databases=["default"])] == ["memory.W031"]
        partitions.convert(now=NOW)
        assert partitions.check_layout(databases=["default"]) == []
    assert [m.id for m in partitions.check_layout(databases=["default"])] == ["memory.E031"]


@pytest.mark.django_db
def test_set_but_not_converted_the_memory_works_and_the_purge_says_what_to_run(caplog):
    with monthly():
        ProductMemory().save_product_data({"sku": "P1"}, CONTENT)
        ProductMemory().save_product_data({"sku": "P1"}, {**CONTENT, "title": "Nova"})
        assert ProductMemoryEntry.objects.get(product_id="P1").version == 2
        purge_expired()
    assert "execute manage_memory partition" in caplog.text


# --- concurrency (committed) ---------------------------------------------------------------------


@pytest.fixture
def committed_partitions(transactional_db):
    with monthly():
        partitions.convert(now=NOW)
        try:
            yield
        finally:
            for table in partitions.detached_tables():
                partitions.drop_detached(table)
            partitions.undo()


def _raw_connection():
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**{k: v for k, v in params.items() if k in (
        "dbname", "user", "password", "host", "port")}, autocommit=False)


def _sessions(watcher) -> list[tuple]:
    """What each session of the test database is doing and who blocks it: a failed wait's message."""
    return watcher.execute("SELECT pid, state, wait_event_type, wait_event, left(query, 120), pg_blocking_pids(pid)"
                           " FROM pg_stat_activity WHERE datname = current_database()").fetchall()


def test_a_concurrent_insert_of_the_same_key_waits_then_is_refused(committed_partitions):
    insert = ("INSERT INTO memory_productmemoryentry (product_id, kind, payload, source_data, input_fingerprint,"
              " generator_version, tokens_prompt, tokens_completion, hit_count, tokens_saved, created_at, updated_at,"
              " expires_at) VALUES ('RACE', 'main_content', '{}', '{}', 'x', 'g', 0, 0, 0, 0, now(), now(), %s)")
    first, second = _raw_connection(), _raw_connection()
    outcome = {}
    try:
        first.execute(insert, [months_from_now(1)])

        def other():
            try:
                second.execute(insert, [months_from_now(2)])  # another partition
                second.commit()
                outcome["second"] = "inserted"
            except psycopg.errors.UniqueViolation:
                second.rollback()
                outcome["second"] = "refused"

        thread = threading.Thread(target=other)
        thread.start()
        pid = second.info.backend_pid
        with _raw_connection() as watcher:
            assert wait_for(lambda: watcher.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() == ("Lock",)), \
                "the second insert did not wait for the key's lock"
            watcher.rollback()
        first.commit()
        thread.join(10)
        assert outcome == {"second": "refused"}
    finally:
        first.close()
        second.close()
    assert ProductMemoryEntry.objects.filter(product_id="RACE").count() == 1


def test_concurrent_saves_of_one_new_key_leave_one_row_and_both_versions(committed_partitions):
    barrier = threading.Barrier(2)
    errors = []

    def save(n):
        try:
            barrier.wait(5)
            upsert("TWICE", months_from_now(n), title=f"Versão {n}")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    entry = ProductMemoryEntry.objects.get(product_id="TWICE")
    assert entry.version == 2
    assert sorted(ContentVersion.objects.filter(entry=entry).values_list("number", flat=True)) == [1, 2]


def test_a_save_racing_an_import_of_its_key_waits_and_then_updates_the_imported_row(committed_partitions):
    importer = _raw_connection()  # what an import batch does first: claim and lock its keys
    importer.execute(f"INSERT INTO {partitions.KEYS} (product_id, kind) VALUES ('RACED', 'main_content')")
    done = {}

    def save():
        try:
            upsert("RACED", months_from_now(2), title="Do salvamento")
            done["save"] = "ok"
        except Exception as exc:  # reported below
            done["save"] = repr(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=save)
    try:
        thread.start()
        with _raw_connection() as watcher:
            # the sessions the import's claim blocks (not any other lock wait of the database's)
            assert wait_for(lambda: watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                [importer.info.backend_pid]).fetchone() == (1,)), (
                f"the save did not wait for the import's claim (import {importer.info.backend_pid}, save {done}): "
                f"{_sessions(watcher)}")
            watcher.rollback()
        importer.execute(
            "INSERT INTO memory_productmemoryentry (product_id, kind, payload, source_data, input_fingerprint,"
            " generator_version, tokens_prompt, tokens_completion, hit_count, tokens_saved, created_at, updated_at,"
            " expires_at) VALUES ('RACED', 'main_content', '{\"title\": \"Do arquivo\"}', '{}', 'x', 'g', 0, 0, 0, 0,"
            " now(), now(), %s)", [months_from_now(1)])
        importer.commit()
        thread.join(20)
    finally:
        importer.close()
    assert done == {"save": "ok"}
    entry = ProductMemoryEntry.objects.get(product_id="RACED")
    assert (entry.payload["title"], entry.version) == ("Do salvamento", 2)


# --- SQLite ----------------------------------------------------------------------------------------


def test_on_sqlite_migrate_and_the_purge_work_and_the_command_refuses(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "DJANGO_SETTINGS_MODULE"}
    env.update({"DJANGO_SETTINGS_MODULE": "beecatalog.settings", "PYTHONPATH": str(settings.BASE_DIR),
                "SECRET_KEY": "test-secret-key-" + "x" * 40, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                "REDIS_URL": "", "CELERY_BROKER_URL": "", "MEMORY_LOG_LEVEL": "WARNING",
                "MEMORY_PARTITION_BY_EXPIRY": "monthly", "PROMETHEUS_MULTIPROC_DIR": ""})

    def manage(*args):
        return subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env,
                              capture_output=True, text=True, timeout=300)

    assert manage("migrate", "-v", "0").returncode == 0
    purged = manage("manage_memory", "purge", "--json")
    assert purged.returncode == 0, purged.stderr[-2000:]
    assert json.loads(purged.stdout)["partitions_dropped"] == 0
    refused = manage("manage_memory", "partition")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == ["CommandError: Partições por expiração exigem PostgreSQL; "
                                                   "este banco é sqlite."]
