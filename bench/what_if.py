"""What-ifs of the bench: changes measured to price a proposal before they were made.

:func:`purge_expired_keyset` is the keyset purge as ``bench/at_scale.py``'s
``purge_keyset`` step measured it; ``memory.services.purge.purge_expired`` has
worked this way since. (The buffered hit counter and the cached token lookup
that were priced here are shipped too, in ``memory/counters.py`` and
``memory/api/authentication.py``.)
"""
import time


def purge_expired_keyset(batch_size: int = 5000):
    """The proposal for ``memory.services.purge.purge_expired``: the same batches, but each
    ``SELECT`` starts where the previous batch ended (``expires_at >= last``).

    ``purge_expired`` asks every batch for the oldest expired rows from the start
    of the ``expires_at`` index, so it walks over the index entries of every row
    already deleted in this run until VACUUM removes them: one statement now
    and then takes over a second. Starting at the last ``expires_at`` seen skips
    them. A row that expires behind the cursor during the run waits for the
    next run.
    """
    from django.db import transaction
    from django.utils import timezone

    from memory.services.purge import PurgeResult
    from memory.models import ProductMemoryEntry
    from memory.engine.memory import ProductMemory

    now = timezone.now()
    memory = ProductMemory()
    result = PurgeResult()
    started = time.perf_counter()
    last = None
    while True:
        batch_started = time.perf_counter()
        expired = ProductMemoryEntry.objects.filter(expires_at__lte=now)
        if last is not None:
            expired = expired.filter(expires_at__gte=last)
        rows = list(expired.order_by("expires_at").values_list("id", "product_id", "kind", "expires_at")[:batch_size])
        if not rows:
            break
        with transaction.atomic():
            deleted, _ = ProductMemoryEntry.objects.filter(id__in=[r[0] for r in rows], expires_at__lte=now).delete()
        memory.evict([(product_id, kind) for _, product_id, kind, _ in rows])
        last = rows[-1][3]
        result.deleted += deleted
        result.batches += 1
        result.longest_batch_ms = max(result.longest_batch_ms, (time.perf_counter() - batch_started) * 1000)
    result.seconds = round(time.perf_counter() - started, 3)
    result.longest_batch_ms = round(result.longest_batch_ms, 2)
    return result
