"""A deleted entry never comes back: no read that overlaps a delete (or a save) leaves in Redis or
in an L1 a copy PostgreSQL no longer holds."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.cache import caches

from memory.engine.coherence import listener
from memory.engine.memory import ProductMemory
from memory.engine.tiers import LocalTier, cache_key
from memory.infra import redis as redis_owner
from memory.models import ProductMemoryEntry

from tests.helpers import stop_process
from tests.peers.resurrection_peer import ROUND_KEY, STOP_KEY, product_id

ROOT = Path(__file__).resolve().parents[2]
PEER = str(ROOT / "tests" / "peers" / "resurrection_peer.py")
ROUNDS = 1000
READERS = 3


def _start(role, *args, env):
    proc = subprocess.Popen([sys.executable, PEER, role, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", f"the {role} could not subscribe to invalidations"
    return proc


@pytest.mark.slow
def test_one_writer_saving_and_deleting_under_three_readers_resurrects_nothing(
    transactional_db, redis_client, process_env
):
    redis_client.set(ROUND_KEY, 0)
    readers = [_start("reader", env=process_env) for _ in range(READERS)]
    writer = None
    try:
        writer = _start("writer", str(ROUNDS), env=process_env)
        out, _ = writer.communicate(timeout=600)
        assert out.strip() == "done"
        redis_client.set(STOP_KEY, 1)
        held_in_l1 = []
        for reader in readers:
            out, _ = reader.communicate(timeout=60)
            held_in_l1.append(out.strip())
    finally:
        redis_client.set(STOP_KEY, 1)
        for proc in [*readers, *([writer] if writer else [])]:
            stop_process(proc)

    assert not ProductMemoryEntry.objects.exists()
    kind = ProductMemory().kind
    names = [redis_owner.make_key(cache_key((product_id(i), kind))) for i in range(ROUNDS)]
    in_redis = [product_id(i) for i, value in enumerate(redis_client.mget(names)) if value is not None]
    served = {pid: getattr(ProductMemory().get_product_data(pid, count_hit=False), "tier", None) for pid in in_redis}
    assert (served, held_in_l1) == ({}, ["l1-held 0"] * READERS), (
        f"{len(served)} deleted entr(y/ies) of {ROUNDS} rounds came back from Redis; readers' L1: {held_in_l1}"
    )


# -- the same interleavings, forced in one process --------------------------------------------

CONTENT = {"title": "Versão 1", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}


def _change_during_the_l3_read(monkeypatch, memory, change):
    """``memory``'s next PostgreSQL read returns what it read, then ``change()`` runs before the
    fills: another writer acting between a reader's L3 read and its L2 and L1 fills."""
    read = memory.l3.get_many

    def read_then_change(keys):
        found = read(keys)
        monkeypatch.setattr(memory.l3, "get_many", read)
        change()
        return found

    monkeypatch.setattr(memory.l3, "get_many", read_then_change)


@pytest.mark.django_db
def test_a_delete_between_a_reads_l3_read_and_its_fill_leaves_no_copy_in_redis(redis_client, monkeypatch):
    writer, reader = ProductMemory(), ProductMemory()
    writer.save_product_data("RACE-1", CONTENT)
    caches["memory_l1"].clear()
    redis_client.delete(redis_owner.make_key(cache_key(("RACE-1", reader.kind))))  # the reader misses L2
    _change_during_the_l3_read(monkeypatch, reader, lambda: writer.delete_product("RACE-1"))

    assert reader.get_product_data("RACE-1", count_hit=False).tier == "l3"  # it read the row before the delete

    assert redis_client.get(redis_owner.make_key(cache_key(("RACE-1", reader.kind)))) is None
    assert caches["memory_l1"].get(cache_key(("RACE-1", reader.kind))) is None
    assert reader.get_product_data("RACE-1", count_hit=False) is None


@pytest.mark.django_db
def test_a_save_then_an_eviction_between_a_reads_l3_read_and_its_fill_leave_no_older_copy(redis_client, monkeypatch):
    writer, reader = ProductMemory(), ProductMemory()
    writer.save_product_data("RACE-2", CONTENT)
    caches["memory_l1"].clear()
    redis_client.delete(redis_owner.make_key(cache_key(("RACE-2", reader.kind))))

    def save_newer_then_evict():
        writer.save_product_data("RACE-2", {**CONTENT, "title": "Versão 2"})
        writer.evict([("RACE-2", writer.kind)])  # as an import or a roll-up drops the copies

    _change_during_the_l3_read(monkeypatch, reader, save_newer_then_evict)
    assert reader.get_product_data("RACE-2", count_hit=False).content["title"] == "Versão 1"

    assert redis_client.get(redis_owner.make_key(cache_key(("RACE-2", reader.kind)))) is None
    assert reader.get_product_data("RACE-2", count_hit=False).content["title"] == "Versão 2"


@pytest.mark.django_db
def test_a_delete_in_this_process_during_a_read_keeps_the_copy_out_of_l1(redis_client, monkeypatch):
    # The listener ignores this process's own messages: its own eviction must stop the fill too.
    memory = ProductMemory()
    memory.save_product_data("RACE-3", CONTENT)
    caches["memory_l1"].clear()
    redis_client.delete(redis_owner.make_key(cache_key(("RACE-3", memory.kind))))
    _change_during_the_l3_read(monkeypatch, memory, lambda: ProductMemory().delete_product("RACE-3"))

    assert memory.get_product_data("RACE-3", count_hit=False).tier == "l3"

    assert caches["memory_l1"].get(cache_key(("RACE-3", memory.kind))) is None


@pytest.mark.django_db
def test_an_eviction_heard_while_l1_is_filled_waits_for_the_fill_and_then_drops_it(redis_client, monkeypatch):
    memory = ProductMemory()
    memory.save_product_data("RACE-4", CONTENT)
    caches["memory_l1"].clear()
    l1 = LocalTier()
    message = json.dumps({"origin": "another-process", "keys": [["RACE-4", memory.kind]]})
    heard = []
    set_many = LocalTier.set_many

    def set_many_while_an_eviction_arrives(self, snapshots):
        # The listener applies an eviction after this fill checked the epoch, before it writes.
        listening = threading.Thread(target=listener._apply, args=(l1, message))
        listening.start()
        listening.join(timeout=0.2)  # returns at once if nothing makes the eviction wait
        heard.append(listening)
        set_many(self, snapshots)

    monkeypatch.setattr(LocalTier, "set_many", set_many_while_an_eviction_arrives)
    assert memory.get_product_data("RACE-4", count_hit=False).tier == "l2"
    monkeypatch.setattr(LocalTier, "set_many", set_many)
    heard[0].join(timeout=5)

    assert not heard[0].is_alive()
    assert caches["memory_l1"].get(cache_key(("RACE-4", memory.kind))) is None
