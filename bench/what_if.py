"""What-ifs of the bench: changes the project does not ship, measured to price a proposal.

:class:`BufferedHitCounter` is the proposal for ``memory/counters.py``: a hit
adds its counts to a buffer in the process, and the buffer goes to Redis in
one pipeline when it is a second old or holds 500 hits, so that a hit costs
no I/O. ``bench/side_by_side.py`` measures reads with it beside the real
counter, and ``BENCH_WHAT_IF=1`` installs it in the HTTP bench's workers
(``bench/urls.py``). What it gives up: up to a second of counts if the
process dies without running its exit hooks, and live stats that lag by that
second. Not thread-safe beyond what the GIL gives a dict merge; a real
version would take a lock and flush from a daemon thread.
"""
import time

from memory.counters import Counts, HitCounter

PUSH_AFTER_SECONDS = 1.0
PUSH_AFTER_HITS = 500


class BufferedHitCounter(HitCounter):
    def __init__(self):
        super().__init__()
        self._buffer = Counts()
        self._hits = 0
        self._since = time.monotonic()

    def _add(self, counts: Counts) -> None:
        self._buffer.merge(counts)
        self._hits += 1
        if self._hits >= PUSH_AFTER_HITS or time.monotonic() - self._since >= PUSH_AFTER_SECONDS:
            self.push()

    def push(self) -> None:
        buffer, self._buffer = self._buffer, Counts()
        self._hits, self._since = 0, time.monotonic()
        if not buffer.is_empty():
            super()._add(buffer)

    def flush(self) -> int:
        self.push()
        return super().flush()


def purge_expired_keyset(batch_size: int = 5000):
    """The proposal for ``memory.maintenance.purge_expired``: the same batches, but each
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

    from memory.maintenance import PurgeResult
    from memory.models import ProductMemoryEntry
    from memory.product_memory import ProductMemory

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
