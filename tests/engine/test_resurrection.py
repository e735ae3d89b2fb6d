"""A deleted entry never comes back: no read that overlaps a delete (or a save) leaves in Redis or
in an L1 a copy PostgreSQL no longer holds."""
import subprocess
import sys
from pathlib import Path

import pytest

from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key
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
