"""L1 coherence across processes: a change on one instance evicts the others' L1 copies within a second."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.core.cache import caches
from django.db import connection

from memory.engine import runtime
from memory.engine.coherence import listener, wait_until_subscribed
from memory.engine.memory import ProductMemory

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
CONTENT = {"title": "Versão 1", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}


class Peer:
    def __init__(self, product_id, redis_url):
        s = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
            "DATABASE_URL": f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}",
            "REDIS_URL": redis_url,
            "MEMORY_LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "peers" / "l1_peer.py"), product_id],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def cache_in_l1(self):
        """Read until the copy sits in the peer's L1: an invalidation for an earlier change
        may still be on its way and evict the first fill."""
        for _ in range(50):
            if self.ask("get").startswith("l1"):
                return True
        return False

    def close(self):
        try:
            self.ask("quit")
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=10)


@pytest.fixture
def peer(transactional_db, redis_client):
    kwargs = redis_client.connection_pool.connection_kwargs
    url = f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    ProductMemory().save_product_data({"sku": "COH-1"}, CONTENT)
    p = Peer("COH-1", url)
    yield p
    p.close()


@pytest.mark.slow
def test_save_on_one_instance_evicts_the_other_instances_l1(peer):
    assert peer.ask("get").startswith("l2")
    assert peer.ask("get") == "l1 Versão 1"
    ProductMemory().save_product_data({"sku": "COH-1"}, {**CONTENT, "title": "Versão 2"})
    assert peer.ask("wait-evicted 1.0") == "evicted"
    assert peer.ask("get") == "l2 Versão 2"


@pytest.mark.slow
def test_delete_and_clear_on_one_instance_evict_the_other_instances_l1(peer):
    assert peer.cache_in_l1()
    ProductMemory().delete_product("COH-1")
    assert peer.ask("wait-evicted 1.0") == "evicted"
    assert peer.ask("get") == "miss"
    ProductMemory().save_product_data({"sku": "COH-1"}, CONTENT)
    assert peer.cache_in_l1()
    ProductMemory().clear()
    assert peer.ask("wait-evicted 1.0") == "evicted"


@pytest.mark.slow
def test_an_edit_or_an_approval_on_one_instance_evicts_the_other_instances_l1(peer):
    assert peer.cache_in_l1()
    ProductMemory().replace_content("COH-1", {**CONTENT, "title": "Editado"}, origin="edited", author="maria")
    assert peer.ask("wait-evicted 1.0") == "evicted"
    assert peer.ask("get") == "l2 Editado"
    assert peer.cache_in_l1()
    ProductMemory().set_approval("COH-1", True, by="ana")
    assert peer.ask("wait-evicted 1.0") == "evicted"


@pytest.mark.django_db
def test_l1_is_not_read_while_invalidations_cannot_be_heard(redis_client):
    memory = ProductMemory()
    memory.save_product_data({"sku": "COH-2"}, CONTENT)
    assert memory.get_product_data("COH-2").tier == "l1"
    listener.stop()  # as when the pub/sub connection is lost and has not come back yet
    assert memory.get_product_data("COH-2").tier == "l2"
    # a read made while deaf does not fill L1, and resubscribing empties it
    runtime.start_background_threads()
    assert wait_until_subscribed(10)
    assert caches["memory_l1"].get("entry:main_content:{COH-2}") is None
    assert memory.get_product_data("COH-2").tier == "l2"
    assert memory.get_product_data("COH-2").tier == "l1"


@pytest.mark.django_db
def test_a_read_that_overlaps_an_eviction_does_not_fill_l1(redis_client, monkeypatch):
    memory = ProductMemory()
    memory.save_product_data({"sku": "COH-5"}, CONTENT)
    caches["memory_l1"].clear()
    real_get_many = memory.l2.get_many

    def get_many_then_heard_eviction(keys):
        found = real_get_many(keys)
        listener.epoch += 1  # another instance's eviction arrives while this read is under way
        return found

    monkeypatch.setattr(memory.l2, "get_many", get_many_then_heard_eviction)
    assert memory.get_product_data("COH-5").tier == "l2"
    assert caches["memory_l1"].get("entry:main_content:{COH-5}") is None


@pytest.mark.django_db
def test_a_fill_from_postgres_never_overwrites_a_newer_redis_copy(redis_client):
    memory = ProductMemory()
    old = memory.save_product_data({"sku": "COH-6"}, CONTENT)
    claims = memory.l2.claim_fills([old.key])  # a slow reader about to read the old row
    newer = memory.save_product_data({"sku": "COH-6"}, {**CONTENT, "title": "Versão 2"})
    assert memory.l2.fill_many([old], claims) == 0  # its fill arriving late
    caches["memory_l1"].clear()
    assert memory.get_product_data("COH-6").content["title"] == newer.payload["title"]


@pytest.mark.django_db
def test_the_listener_stays_subscribed_across_its_keepalive_pings(redis_client, caplog, monkeypatch):
    pings = []
    ping = redis.client.PubSub.ping
    monkeypatch.setattr(redis.client.PubSub, "ping", lambda self, *args: pings.append(1) or ping(self, *args))
    memory = ProductMemory()
    memory.save_product_data({"sku": "COH-3"}, CONTENT)
    assert memory.get_product_data("COH-3").tier == "l1"
    with caplog.at_level("WARNING", logger="memory"):
        assert wait_for(lambda: len(pings) >= 2, timeout=10)  # the listener pings every second while idle
    assert memory.get_product_data("COH-3").tier == "l1"  # L1 was not emptied by a resubscription
    assert "invalidação" not in caplog.text


@pytest.mark.django_db
def test_a_garbled_invalidation_message_is_ignored(redis_client, caplog):
    from memory.engine.coherence import _channel

    memory = ProductMemory()
    memory.save_product_data({"sku": "COH-4"}, CONTENT)
    with caplog.at_level("WARNING", logger="memory"):
        redis_client.publish(_channel(), b"\xff not json")
        redis_client.publish(_channel(), b"[1, 2]")
        assert wait_for(lambda: "ilegível" in caplog.text, timeout=5)
    assert "Falha no ouvinte" not in caplog.text
    assert memory.get_product_data("COH-4").tier == "l1"


@pytest.mark.django_db
@pytest.mark.parametrize("message", [
    {"origin": "x", "keys": "abc"},
    {"origin": "x", "keys": [[1, 2]]},
    {"origin": "x", "keys": [["COH-5"]]},
    {"origin": "x", "keys": [{"a": 1}]},
    {"origin": 7, "clear": True},
    {"keys": [["COH-5", "main_content"]]},
    "[" * 100_000,
])
def test_a_hostile_invalidation_message_neither_stops_the_listener_nor_empties_l1(redis_client, caplog, message):
    from memory.engine.coherence import _channel, listener

    memory = ProductMemory()
    memory.save_product_data({"sku": "COH-5"}, CONTENT)
    assert memory.get_product_data("COH-5").tier == "l1"
    with caplog.at_level("WARNING", logger="memory"):
        redis_client.publish(_channel(), message if isinstance(message, str) else json.dumps(message))
        assert wait_for(lambda: "Mensagem de invalidação ignorada" in caplog.text, timeout=5)
    assert "Falha no ouvinte" not in caplog.text
    assert listener.running and listener.subscribed
    assert memory.get_product_data("COH-5").tier == "l1"
