"""Real servers the tests start on free ports and stop themselves: redis-server, a TCP proxy a
test can cut, gunicorn serving the project, and a PostgreSQL cluster a test can freeze."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path

import httpx
import psycopg
from django.conf import settings

from tests.helpers import wait_for


GUNICORN = [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket"]
"""gunicorn as the tests start it: without its control socket, one fixed path per user
(``~/.gunicorn/gunicorn.ctl``) that each gunicorn started meanwhile would take from the others."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listens(port: int) -> bool:
    """Does something accept TCP connections on 127.0.0.1:``port``?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    if not wait_for(lambda: listens(port), timeout, interval=0.05):
        raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """A throwaway redis-server: ``start()``, ``kill()`` (SIGKILL, as a crash) and start again on the same port."""

    def __init__(self, port: int | None = None):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    stop = kill


class TcpProxy:
    """A TCP proxy to a real server that a test can cut (every connection dropped, new ones refused)
    and restore: the server "becomes unreachable" without being stopped."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._open = threading.Event()

    def start(self) -> "TcpProxy":
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open.set()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while self._listener is not None:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self.cut()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()


class ApiServer:
    """``gunicorn beecatalog.wsgi`` with ``workers`` workers on a free port of 127.0.0.1, its output
    in ``log_path``; ``wait_ready()`` returns once it answers HTTP, ``stop()`` stops it whatever happened."""

    def __init__(self, env: dict, log_path: Path, workers: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [*GUNICORN, "beecatalog.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers), "--timeout", "60", "--graceful-timeout", "5"],
            cwd=settings.BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def answers(self) -> bool:
        """Does it answer HTTP at all (whatever the status)?"""
        try:
            httpx.get(f"{self.url}/api/memory/health/", timeout=2)
        except httpx.TransportError:
            return False
        return True

    def wait_ready(self, timeout: float = 60) -> None:
        started = wait_for(lambda: self.proc.poll() is not None or self.answers(), timeout, interval=0.2)
        if not started or self.proc.poll() is not None:
            raise AssertionError("gunicorn did not start:\n" + self.log())

    def output(self) -> str:
        """Everything the server and its workers wrote so far."""
        self._log.flush()
        # a worker may be in the middle of writing a character
        return self.log_path.read_bytes().decode("utf-8", errors="replace")

    def log(self) -> str:
        """The end of the output, for failure messages."""
        return self.output()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} (PostgreSQL's server programs) is not installed")
    return found


def _child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: no procps needed)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


class PostgresServer:
    """A throwaway PostgreSQL cluster of the test's own on a free loopback port (TCP only, trust
    authentication, no durability), run as the ``postgres`` user when the tests run as root.

    ``start()``; ``freeze()`` stops the postmaster and every process it started with SIGSTOP: the
    server hangs, its sockets stay open and the kernel still acknowledges what is sent to it, as with
    a server stuck on its disk; ``thaw()``; ``stop()`` thaws, shuts it down and deletes its files.
    """

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.user = "postgres" if os.geteuid() == 0 else None  # initdb and postgres refuse to run as root
        self.data_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.replica_of: PostgresServer | None = None
        self._frozen: list[int] = []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                               connect_timeout=2, **kwargs)

    def start(self, timeout: float = 60.0, *, replica_of: "PostgresServer | None" = None,
              apply_delay: str = "0") -> "PostgresServer":
        """A new cluster (``initdb``), or with ``replica_of`` a hot standby streaming from that running
        primary (``pg_basebackup -R``), ``recovery_min_apply_delay`` set to ``apply_delay``."""
        self.data_dir = Path(tempfile.mkdtemp(prefix="bc-pg-"))
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if replica_of is None:
            subprocess.run(
                [_pg_binary("initdb"), "-D", str(self.data_dir / "data"), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                user=self.user, check=True, capture_output=True, timeout=timeout,
            )
        else:
            # initdb's pg_hba.conf trusts replication connections from 127.0.0.1
            subprocess.run(
                [_pg_binary("pg_basebackup"), "-h", "127.0.0.1", "-p", str(replica_of.port), "-U", "postgres",
                 "-D", str(self.data_dir / "data"), "-R", "-X", "stream", "--no-sync", "-c", "fast"],
                user=self.user, check=True, capture_output=True, timeout=timeout,
            )
            # in the file, not on the command line, so that set_apply_delay's ALTER SYSTEM can change it
            with (self.data_dir / "data" / "postgresql.auto.conf").open("a") as conf:
                conf.write(f"recovery_min_apply_delay = '{apply_delay}'\n")
        self.replica_of = replica_of
        self._log = (self.data_dir / "postgres.log").open("w")
        self.proc = subprocess.Popen(
            [_pg_binary("postgres"), "-D", str(self.data_dir / "data"), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=40", "-c", "shared_buffers=32MB",
             *(["-c", "hot_standby=on"] if replica_of else [])],
            user=self.user, stdout=self._log, stderr=subprocess.STDOUT,
        )
        # the port opens before the server accepts sessions (a standby: once it is consistent)
        if not wait_for(lambda: self.proc.poll() is not None or self._accepts_sessions(), timeout, interval=0.1) \
                or self.proc.poll() is not None:
            raise RuntimeError("PostgreSQL did not start:\n" + self.log())
        return self

    # --- a streaming replica (start(replica_of=...)) ----------------------------------------------

    def caught_up(self) -> bool:
        """Has this replica replayed everything its primary has written so far?"""
        with self.replica_of.connect(autocommit=True) as primary:
            (written,) = primary.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        with self.connect(autocommit=True) as replica:
            return bool(replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [written]).fetchone()[0])

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        if not wait_for(self.caught_up, timeout, interval=0.05):
            raise TimeoutError(f"the replica did not catch up with its primary in {timeout} s")

    def pause_replay(self) -> None:
        """The replica stops applying what it receives (its data stays as it is now), until ``resume_replay``."""
        with self.connect(autocommit=True) as replica:
            replica.execute("SELECT pg_wal_replay_pause()")
        if not wait_for(lambda: self._replay_state() == "paused", 10, interval=0.05):
            raise TimeoutError("replay did not pause")

    def resume_replay(self) -> None:
        with self.connect(autocommit=True) as replica:
            replica.execute("SELECT pg_wal_replay_resume()")

    def _replay_state(self) -> str:
        with self.connect(autocommit=True) as replica:
            return replica.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0]

    def set_apply_delay(self, delay: str) -> None:
        """``recovery_min_apply_delay`` of this replica, reloaded (SIGHUP) and awaited."""
        with self.connect(autocommit=True) as replica:
            replica.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
            replica.execute("SELECT pg_reload_conf()")
            if not wait_for(lambda: replica.execute("SELECT current_setting('recovery_min_apply_delay')"
                                                    ).fetchone()[0] == delay, 10, interval=0.05):
                raise TimeoutError(f"recovery_min_apply_delay did not become {delay}")

    def _accepts_sessions(self) -> bool:
        try:
            self.connect().close()
        except psycopg.OperationalError:
            return False
        return True

    def log(self) -> str:
        return (self.data_dir / "postgres.log").read_text()[-4000:] if self.data_dir else ""

    def processes(self) -> list[int]:
        """The postmaster and every process it started."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *_child_pids(self.proc.pid)]

    def freeze(self) -> None:
        # the postmaster first, so that it starts no process the loop below would miss
        os.kill(self.proc.pid, signal.SIGSTOP)
        self._frozen = [self.proc.pid]
        for pid in _child_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGSTOP)
                self._frozen.append(pid)
            except ProcessLookupError:
                pass

    def thaw(self) -> None:
        for pid in [*self._frozen[1:], *self._frozen[:1]]:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._frozen = []

    def stop(self) -> None:
        try:
            self.thaw()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)  # fast shutdown: sessions are ended
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    for pid in self.processes():
                        os.kill(pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        finally:
            self.proc = None
            if self.data_dir is not None:
                if hasattr(self, "_log"):
                    self._log.close()
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self.data_dir = None


def _redis_answers(port: int, *command: str, password: str = "") -> str:
    """What ``redis-cli -p port command…`` prints, or "" when the server does not answer."""
    auth = ["--no-auth-warning", "-a", password] if password else []
    try:
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *auth, *command],
                              capture_output=True, text=True, timeout=5).stdout
    except (subprocess.TimeoutExpired, OSError):
        return ""


class _RedisProcess:
    """One redis-server (or sentinel) of a group, its config file and data in the group's tmp dir."""

    def __init__(self, root: Path, port: int, lines: list[str], sentinel: bool = False):
        self.port, self.sentinel = port, sentinel
        self.dir = root / str(port)
        self.dir.mkdir()
        self.conf = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        self.conf.write_text("\n".join([f"port {port}", "bind 127.0.0.1", f"dir {self.dir}", 'save ""',
                                        "appendonly no", f"logfile {self.dir / 'log'}", *lines]) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class _RedisGroup(ABC):
    """Servers started together: ``start()`` brings them all up or, on any failure, stops what it
    started before raising."""

    def start(self, timeout: float = 60.0):
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @abstractmethod
    def _start(self, timeout: float) -> None:
        """Start every server and wait until the group serves, within ``timeout`` seconds."""

    @abstractmethod
    def stop(self) -> None:
        """Stop every server started, and remove the group's files."""


class RedisCluster(_RedisGroup):
    """A throwaway Redis Cluster of ``masters`` masters and no replica (every slot on some master),
    on free loopback ports, its files under a tmp dir: ``start()``, ``kill(port)``, ``stop()``.

    With ``replicas=1`` each master gets a replica, so that killing a master fails over."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000):
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server / redis-cli are not installed")
        self.root = Path(tempfile.mkdtemp(prefix="bc-redis-cluster-"))
        self.replicas = replicas
        self.nodes = [
            # cluster-port: the bus port, free too (its default, port + 10000, may not be)
            _RedisProcess(self.root, free_port(), ["cluster-enabled yes", "cluster-config-file nodes.conf",
                                                   f"cluster-port {free_port()}",
                                                   f"cluster-node-timeout {node_timeout_ms}",
                                                   "cluster-require-full-coverage no",
                                                   "cluster-allow-reads-when-down no"])
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    def _start(self, timeout: float) -> None:
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *self.addresses, "--cluster-replicas", str(self.replicas),
             "--cluster-yes"], capture_output=True, text=True, timeout=timeout)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]} {created.stderr[-2000:]}")
        if not wait_for(self.ok, timeout, interval=0.1):
            raise TimeoutError(f"the cluster never reached cluster_state:ok in {timeout} s")
        # A replica that has not synced yet cannot take over its master: wait for every link.
        if self.replicas and not wait_for(lambda: sum(self._synced(n.port) for n in self.nodes) == len(self.nodes)
                                          - len(self.nodes) // (1 + self.replicas), timeout, interval=0.1):
            raise TimeoutError(f"the replicas never synced with their masters in {timeout} s")

    @staticmethod
    def _synced(port: int) -> bool:
        return "master_link_status:up" in _redis_answers(port, "info", "replication")

    def ok(self) -> bool:
        """Does every live node say cluster_state:ok, each slot served by a master?"""
        live = [node for node in self.nodes if node.alive]
        return bool(live) and all("cluster_state:ok" in _redis_answers(n.port, "cluster", "info") for n in live)

    def masters(self) -> list[int]:
        """The ports of the live masters."""
        return [n.port for n in self.nodes if n.alive and "role:master" in _redis_answers(n.port, "info", "replication")]

    def kill(self, port: int) -> None:
        next(node for node in self.nodes if node.port == port).kill()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class SentinelGroup(_RedisGroup):
    """A throwaway master + replica watched by three sentinels (quorum 2), on free loopback ports,
    with short failure detection (``down_after_ms``) so that a killed master fails over in seconds."""

    def __init__(self, master_name: str = "bcmaster", down_after_ms: int = 1000, failover_timeout_ms: int = 3000,
                 sentinel_password: str = ""):
        """``sentinel_password``: the sentinels ask for it (``requirepass``), and give it to each other."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.root = Path(tempfile.mkdtemp(prefix="bc-redis-sentinel-"))
        self.master_name = master_name
        self.sentinel_password = sentinel_password
        protected = [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"] \
            if sentinel_password else []
        master_port, replica_port = free_port(), free_port()
        self.servers = [
            _RedisProcess(self.root, master_port, []),
            _RedisProcess(self.root, replica_port, [f"replicaof 127.0.0.1 {master_port}"]),
        ]
        self.sentinels = [
            _RedisProcess(self.root, free_port(), [
                f"sentinel monitor {master_name} 127.0.0.1 {master_port} 2",
                f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
                f"sentinel parallel-syncs {master_name} 1",
                *protected,
            ], sentinel=True)
            for _ in range(3)
        ]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def _start(self, timeout: float) -> None:
        for process in self.servers + self.sentinels:
            process.start()
        master = self.servers[0].port
        if not wait_for(lambda: "master_link_status:up" in _redis_answers(self.servers[1].port, "info", "replication"),
                        timeout, interval=0.1):
            raise TimeoutError(f"the replica never synced with the master in {timeout} s")
        # Every sentinel knows the replica and the other sentinels: a failover can be agreed on.
        if not wait_for(lambda: all(self._sees_group(s.port) for s in self.sentinels), timeout, interval=0.1):
            raise TimeoutError(f"the sentinels never found each other and the replica of :{master} in {timeout} s")

    def _sees_group(self, port: int) -> bool:
        fields = _redis_answers(port, "sentinel", "master", self.master_name, password=self.sentinel_password).split()
        found = dict(zip(fields[::2], fields[1::2]))
        return found.get("num-slaves") == "1" and found.get("num-other-sentinels") == "2"

    def master_port(self) -> int | None:
        """The master's port as the sentinels answer it now (the first that answers)."""
        for sentinel in self.sentinels:
            answer = _redis_answers(sentinel.port, "sentinel", "get-master-addr-by-name", self.master_name,
                                    password=self.sentinel_password).split()
            if len(answer) == 2:
                return int(answer[1])
        return None

    def kill_master(self) -> int:
        """Kill the current master; returns its port."""
        port = self.master_port()
        next(s for s in self.servers if s.port == port).kill()
        return port

    def stop(self) -> None:
        for process in self.sentinels + self.servers:
            process.kill()
        shutil.rmtree(self.root, ignore_errors=True)
