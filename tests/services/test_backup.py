"""Backups on disk, restore, and refilling Redis from PostgreSQL."""
import gzip
import json
import re
import threading
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone

from memory.services import backup
from memory.services.backup import RedisUnavailable, create_backup, list_backups, restore_backup, warm_redis
from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key

from tests.helpers import make_entries, snapshot_table

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Garrafa", "description": "d"}


@pytest.fixture
def backups(tmp_path):
    with override_settings(MEMORY_BACKUP_DIR=tmp_path / "backups"):
        yield tmp_path / "backups"


def test_backup_writes_a_gzipped_jsonl_snapshot_with_a_timestamped_name(backups):
    make_entries(3)
    result = create_backup()
    assert result.entries == 3 and result.path.parent == backups
    assert backup.BACKUP_NAME.match(result.path.name)
    with gzip.open(result.path, "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert [x["product_id"] for x in lines] == ["SKU00000", "SKU00001", "SKU00002"]
    assert result.bytes == result.path.stat().st_size
    assert not [p for p in backups.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_backup_keeps_only_the_newest_n_and_leaves_other_files_alone(backups):
    backups.mkdir(parents=True)
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        (backups / f"memory-{stamp}.jsonl.gz").write_bytes(b"")
    (backups / "notes.txt").write_text("mine")
    make_entries(1)

    result = create_backup(keep=2)

    names = [p.name for p in list_backups()]
    assert names == ["memory-20260103T000000Z.jsonl.gz", result.path.name]
    assert [p.name for p in result.removed] == ["memory-20260101T000000Z.jsonl.gz", "memory-20260102T000000Z.jsonl.gz"]
    assert (backups / "notes.txt").read_text() == "mine"


def test_two_backups_in_the_same_second_get_distinct_names(backups):
    first = create_backup(keep=5)
    second = create_backup(keep=5)
    assert first.path != second.path
    assert list_backups()[-1] == second.path


def test_bad_keep_is_refused(backups):
    with pytest.raises(ValueError, match="keep"):
        create_backup(keep=0)


def test_backup_clear_restore_gives_back_equal_entries(backups, redis_client):
    make_entries(4)
    make_entries(2, prefix="FAQ", kind="faq")
    before = snapshot_table()
    create_backup()
    ProductMemory().clear()
    assert not ProductMemoryEntry.objects.exists()

    report = restore_backup()  # the newest

    assert report.ok and report.created == 6
    assert snapshot_table() == before


def test_restore_accepts_a_name_inside_the_backup_folder(backups):
    make_entries(2)
    name = create_backup().path.name
    ProductMemoryEntry.objects.all().delete()
    assert restore_backup(name).created == 2


def test_restore_without_any_backup_is_a_clear_error(backups):
    with pytest.raises(ValueError, match="nenhum backup"):
        restore_backup()


def test_a_truncated_backup_restores_nothing(backups):
    make_entries(50)
    path = create_backup().path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = snapshot_table()
    ProductMemoryEntry.objects.filter(product_id="SKU00000").update(hit_count=999)
    with pytest.raises(ValueError, match="gzip"):
        restore_backup(path)
    assert ProductMemoryEntry.objects.get(product_id="SKU00000").hit_count == 999
    assert len(snapshot_table()) == len(before)


def test_warm_refills_redis_after_flushdb_with_active_entries_only(redis_client):
    memory = ProductMemory()
    for i in range(25):
        memory.save_product_data(f"LIVE{i}", CONTENT)
    memory.save_product_data("OLD", CONTENT)
    memory.save_product_data("STALE", CONTENT, generator_version="openai:gpt-3:p0")
    ProductMemoryEntry.objects.filter(product_id="OLD").update(expires_at=timezone.now() - timedelta(seconds=1))
    redis_client.flushdb()
    caches["memory_l1"].clear()
    assert caches["memory_l2"].get(cache_key(("LIVE0", "main_content"))) is None

    result = warm_redis(batch_size=10)

    assert (result.entries, result.batches) == (25, 3)
    assert caches["memory_l2"].get(cache_key(("LIVE24", "main_content")))["payload"] == CONTENT
    assert caches["memory_l2"].get(cache_key(("OLD", "main_content"))) is None
    assert caches["memory_l2"].get(cache_key(("STALE", "main_content"))) is None
    # The copy carries the entry's remaining lifetime as its Redis TTL.
    ttl = caches["memory_l2"].ttl(cache_key(("LIVE0", "main_content")))
    assert 0 < ttl <= 7_776_000
    assert memory.get_product_data("LIVE3").tier == "l2"


def test_an_entry_deleted_while_redis_is_warmed_is_not_copied_into_it(redis_client, monkeypatch):
    memory = ProductMemory()
    for product_id in ("KEPT", "GONE"):
        memory.save_product_data(product_id, CONTENT)
    redis_client.flushdb()
    tier = memory.l2
    run_guarded = tier.run_guarded

    def delete_first(*args, **kwargs):
        # Another process deletes an entry after the warm-up read which rows to copy.
        monkeypatch.setattr(tier, "run_guarded", run_guarded)
        ProductMemory().delete_product("GONE")
        return run_guarded(*args, **kwargs)

    monkeypatch.setattr(tier, "run_guarded", delete_first)
    result = warm_redis()

    assert result.entries == 1
    assert caches["memory_l2"].get(cache_key(("KEPT", "main_content")))["payload"] == CONTENT
    assert caches["memory_l2"].get(cache_key(("GONE", "main_content"))) is None


def test_warm_without_redis_configured_is_a_clear_error(no_redis):
    with pytest.raises(RedisUnavailable, match="não configurado"):
        warm_redis()


def test_warm_with_redis_down_is_a_clear_error(dead_redis):
    ProductMemory().save_product_data("A", CONTENT)
    with pytest.raises(RedisUnavailable, match="não responde"):
        warm_redis()


def test_warm_reports_redis_going_away_midway(redis_client, monkeypatch):
    import redis

    memory = ProductMemory()
    for i in range(5):
        memory.save_product_data(f"P{i}", CONTENT)
    calls = []
    execute = redis.client.Pipeline.execute
    warming = threading.get_ident()  # the hit pusher's pipelines run in another thread

    def execute_then_die(pipe, *args, **kwargs):
        if threading.get_ident() == warming:
            calls.append(1)
        if threading.get_ident() == warming and len(calls) == 3:  # a batch is two pipelines: its claims, then its copies
            raise redis.exceptions.ConnectionError("Redis foi reiniciado")
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute_then_die)
    with pytest.raises(RedisUnavailable, match="após 2 entradas"):
        warm_redis(batch_size=2)


def test_the_backup_and_warm_logs_read_in_pt_br(backups, redis_client, caplog):
    make_entries(3)
    with caplog.at_level("INFO", logger="memory"):
        create_backup()
        warm_redis()
    assert re.search(r"Backup da memória: 3 entradas em \S+ \(\d{1,3}(,\d)? (B|KB)\)", caplog.text), caplog.text
    assert re.search(r"Redis aquecido: 3 entradas em 1 lotes \(\d+,\d\d s\)", caplog.text), caplog.text
