"""Stats: every write that changes the entry counts makes the next stats call right, in every process."""
import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest
import tablib
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from memory.admin.resources import ProductMemoryEntryResource
from memory.engine.memory import ProductMemory, forget_cached_stats
from memory.io.importer import import_entries
from memory.models import ProductMemoryEntry
from memory.services.backup import create_backup, restore_backup
from memory.services.entries import delete_entries, extend_expiry
from memory.services.purge import purge_expired
from memory.services.stats import memory_stats

CONTENT = {"title": "Garrafa", "description": "d"}


@pytest.fixture(params=["redis_client", "no_redis"])
def cached_stats(request, tmp_path):
    """Stats kept for a minute, with Redis and without it; nothing cached from an earlier test."""
    request.getfixturevalue(request.param)
    with override_settings(MEMORY_STATS_CACHE_SECONDS=60, MEMORY_BACKUP_DIR=tmp_path / "backups"):
        forget_cached_stats()
        yield


def save(sku, **kwargs):
    return ProductMemory().save_product_data({"sku": sku, "title": sku}, CONTENT, **kwargs)


def expire(*skus):
    ProductMemoryEntry.objects.filter(product_id__in=skus).update(expires_at=timezone.now() - timedelta(minutes=1))


def counts():
    stats = memory_stats()
    return stats["total_entries"], stats["active_entries"], stats["expired_entries"], stats["stale_entries"]


def admin_import(rows):
    dataset = tablib.Dataset(headers=["product_id", "payload"])
    for product_id, payload in rows:
        dataset.append([product_id, json.dumps(payload)])
    result = ProductMemoryEntryResource().import_data(dataset, dry_run=False)
    assert not result.has_errors() and not result.has_validation_errors()


@pytest.mark.django_db(transaction=True)
def test_the_window_spares_the_scan_when_nothing_was_written_through_the_memory(cached_stats):
    save("A")
    assert counts() == (1, 1, 0, 0)
    ProductMemoryEntry.objects.filter(product_id="A").delete()  # behind the memory's back
    assert counts() == (1, 1, 0, 0)


WRITES = {
    "save of a new product": lambda: save("NEW"),
    "save regenerating a stale entry": lambda: save("STALE"),
    "delete": lambda: ProductMemory().delete_product("A"),
    "clear": lambda: ProductMemory().clear(),
    "import": lambda: import_entries(io.StringIO(json.dumps([{"product_id": "NEW", "payload": CONTENT}])), "json"),
    "purge": lambda: purge_expired(),
    "admin delete": lambda: delete_entries(ProductMemoryEntry.objects.filter(product_id="A")),
    "admin extend expiry": lambda: extend_expiry(ProductMemoryEntry.objects.filter(product_id="OLD")),
    "admin import": lambda: admin_import([("NEW", CONTENT)]),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", list(WRITES))
def test_a_write_through_the_memory_makes_the_next_stats_call_right(cached_stats, write):
    save("A")
    save("OLD")
    expire("OLD")
    save("STALE", generator_version="template:template:p0")
    forget_cached_stats()
    before = counts()

    WRITES[write]()

    expected = (
        ProductMemoryEntry.objects.count(),
        ProductMemoryEntry.objects.filter(expires_at__gt=timezone.now(), generator_version=ProductMemory().generator_version).count(),
        ProductMemoryEntry.objects.filter(expires_at__lte=timezone.now()).count(),
        ProductMemoryEntry.objects.filter(expires_at__gt=timezone.now()).exclude(generator_version=ProductMemory().generator_version).count(),
    )
    assert expected != before, "the write should change a count"
    assert counts() == expected


@pytest.mark.django_db(transaction=True)
def test_restore_makes_the_next_stats_call_right(cached_stats):
    save("A")
    save("B")
    create_backup()
    ProductMemory().clear()
    assert counts() == (0, 0, 0, 0)
    restore_backup()
    assert counts() == (2, 2, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_write_inside_a_transaction_shows_once_committed(cached_stats):
    from django.db import transaction

    save("A")
    assert counts()[0] == 1
    with transaction.atomic():
        save("B")
    assert counts()[0] == 2


@pytest.mark.django_db(transaction=True)
def test_a_clear_in_another_process_makes_this_process_recount(redis_client, process_env):
    """The figures this process keeps (in Redis, or in its own cache) do not outlive another
    process's write."""
    with override_settings(MEMORY_STATS_CACHE_SECONDS=60):
        forget_cached_stats()
        save("A")
        save("B")
        assert counts()[0] == 2
        env = {**process_env, "MEMORY_STATS_CACHE_SECONDS": "60"}
        subprocess.run(
            [sys.executable, "manage.py", "manage_memory", "clear", "--confirm"],
            cwd=settings.BASE_DIR, env=env, check=True, capture_output=True, timeout=120,
        )
        assert counts()[0] == 0


@pytest.mark.django_db
def test_stats_of_a_kind_count_that_kind_and_memory_stats_count_every_kind(settings):
    save("A")
    save("B")
    ProductMemory("faq").save_product_data({"sku": "A"}, {"q": "?"})
    assert ProductMemory().stats()["total_entries"] == 2
    assert ProductMemory("faq").stats()["total_entries"] == 1
    assert ProductMemory("nothing").stats()["total_entries"] == 0
    assert memory_stats()["total_entries"] == 3
    assert memory_stats(kind="faq")["total_entries"] == 1
