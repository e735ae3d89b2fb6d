"""The folder where the processes of one server (gunicorn's workers) keep their metrics,
``PROMETHEUS_MULTIPROC_DIR``: what gunicorn's master does to it (``gunicorn.conf.py``).

prometheus_client writes each process's series to files of that folder, named by the process's
pid, and ``memory.infra.metrics.render_latest`` adds up every file. Files a previous run left
would be added too (counts that never happened in this run, and a pid a new worker may reuse),
so the master empties the folder before the first worker starts. When a worker dies, its
counters and histograms stay (what it counted happened); its live gauges go. This module
defines no series and needs no Django app: the master calls it before loading the project.
"""
from __future__ import annotations

from pathlib import Path

from prometheus_client import multiprocess

# prometheus_client's files: counter_<pid>.db, histogram_<pid>.db, gauge_<mode>_<pid>.db...
SERIES_FILES = "*_[0-9]*.db"


def empty_folder(folder: str, *, keep_pid: int | None = None) -> int:
    """Delete the series files a previous run left in ``folder`` (nothing else in it), but those of
    the process ``keep_pid`` (the caller's own, already open: the Celery worker's main process);
    how many."""
    removed = 0
    for path in Path(folder).glob(SERIES_FILES):
        if keep_pid is not None and path.stem.rpartition("_")[2] == str(keep_pid):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def worker_exited(folder: str, pid: int) -> None:
    """Forget the live gauges (``multiprocess_mode`` ``live*``) of the process ``pid``, which ended."""
    multiprocess.mark_process_dead(pid, folder)
