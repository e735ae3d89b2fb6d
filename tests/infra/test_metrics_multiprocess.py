"""/metrics under real gunicorn with several workers sharing PROMETHEUS_MULTIPROC_DIR: every scrape,
whichever worker answers it, adds up what every worker counted; gunicorn's master empties what a
previous run left; a worker that dies keeps its counts."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from memory.infra import multiprocess as multiprocess_folder

from tests.helpers import seed, wait_for
from tests.infra.test_monitoring import unknown_series
from tests.servers import ApiServer

WORKERS = 3
HITS = "beecatalog_memory_tier_hits_total"


def server_env(process_env: dict, folder: Path) -> dict:
    env = {k: v for k, v in process_env.items() if not k.startswith("PYTEST")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
        "SECRET_KEY": "multiprocess-metrics-test-secret",
        "CELERY_BROKER_URL": "",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "METRICS_ALLOW": "anonymous",
    })
    return env


def samples(text: str) -> dict[str, float]:
    """Each sample name's sum over its labels (every tier's hits together)."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def hits_by_process(folder: Path, scratch: Path) -> dict[int, float]:
    """The hits each process counted: its own counter file, read alone."""
    counted = {}
    for path in folder.glob("counter_*.db"):
        alone = scratch / path.stem
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        counted[int(path.stem.split("_")[1])] = sum(
            s.value for metric in registry.collect() for s in metric.samples if s.name == HITS)
        shutil.rmtree(alone)
    return counted


def leave_stale_counts(folder: Path) -> Path:
    """A previous run's file: 1,000 generations counted by a process that no longer exists."""
    code = ("from prometheus_client import Counter;"
            "Counter('beecatalog_memory_generations', 'stale').inc(1000)")
    env = {"PATH": os.environ["PATH"], "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    [stale] = folder.glob("counter_*.db")
    return stale


def test_emptying_the_folder_deletes_only_the_series_files(tmp_path):
    leave_stale_counts(tmp_path)
    (tmp_path / "gauge_livesum_12.db").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("de outra pessoa")
    (tmp_path / "backup.db").write_bytes(b"")
    assert multiprocess_folder.empty_folder(str(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "notes.txt"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
# With --preload the master loads the project (and its series) before on_starting empties the
# folder: each worker, a new pid, writes files of its own all the same.
@pytest.mark.parametrize("preload", [False, True], ids=["workers-load-the-app", "preload"])
def test_every_scrape_adds_up_the_requests_every_worker_counted(process_env, make_user, tmp_path, preload):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    stale = leave_stale_counts(folder)
    seed()
    token = Token.objects.create(user=make_user("admin", superuser=True)).key
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    env = server_env(process_env, folder)
    if preload:
        env["GUNICORN_CMD_ARGS"] = "--preload"
    server = ApiServer(env, tmp_path / "gunicorn.log", workers=WORKERS)
    try:
        server.wait_ready()
        assert not stale.exists(), "gunicorn's master left the previous run's file"
        emptied = re.search(r"Métricas: (\d+) arquivo\(s\) de uma execução anterior removido\(s\)", server.output())
        removed = int(emptied[1])
        # the stale file; with --preload also the files the master's own series had just made
        assert removed > 1 if preload else removed == 1
        assert samples(scrape(server.url))["beecatalog_memory_generations_total"] == 0

        def get(_):
            response = httpx.post(f"{server.url}/api/memory/get/", json={"product_id": "ABC123"},
                                  headers={"Authorization": f"Token {token}"}, timeout=30)
            assert response.status_code == 200 and response.json()["found"] is True, response.text

        # Requests at once, so that the workers share them; in rounds until two workers have counted.
        sent = 0
        with ThreadPoolExecutor(max_workers=6) as pool:
            def spread() -> bool:
                nonlocal sent
                list(pool.map(get, range(12)))
                sent += 12
                return len([n for n in hits_by_process(folder, scratch).values() if n > 0]) >= 2
            assert wait_for(spread, timeout=60, interval=0), f"one worker answered all {sent} requests"
        counted = hits_by_process(folder, scratch)
        assert sum(counted.values()) == sent

        # No single worker holds them all: a scrape answered by one worker alone would show less.
        for _ in range(2 * WORKERS):
            assert samples(scrape(server.url))[HITS] == sent

        # The dashboard's and the alerts' series are there in multiprocess mode too.
        assert unknown_series(set(samples(scrape(server.url)))) == []

        # A worker killed: gunicorn starts another (child_exit runs in the master); its counts stay.
        busiest = max((pid for pid in counted if pid != server.proc.pid), key=counted.get)
        os.kill(busiest, signal.SIGKILL)
        assert wait_for(lambda: busiest not in worker_pids(server.proc.pid)
                        and len(worker_pids(server.proc.pid)) == WORKERS, timeout=60), server.log()
        # the replacement worker, forked while the machine is busy, may take more than one probe's 2 s
        assert wait_for(server.answers, timeout=30, interval=0.2), server.log()
        assert samples(scrape(server.url))[HITS] == sent
        assert "Traceback" not in server.output(), server.log()
    finally:
        server.stop()


def worker_pids(master: int) -> set[int]:
    """gunicorn's workers: the master's children (from /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master:
            children.add(int(stat.parent.name))
    return children
