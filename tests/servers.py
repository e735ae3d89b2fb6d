"""Real servers the tests start on free ports and stop themselves: redis-server, a TCP proxy a
test can cut, and gunicorn serving the project."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from django.conf import settings

from tests.helpers import wait_for


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
            [str(Path(sys.executable).parent / "gunicorn"), "beecatalog.wsgi", "--bind", f"127.0.0.1:{self.port}",
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
