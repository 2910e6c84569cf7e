"""Fixtures of the status page tests: a real threaded server on a free loopback port, and
Server-Sent Events clients that read with bounded waits."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import brama
from brama.testing import FakeClock
from brama.web import StatusApp, ThreadingWSGIServer, app, make_server
from tests.helpers import WAIT

T0 = 1_000_000.0


@dataclass
class Served:
    """A Brama system (on a FakeClock), its status page and the server serving it."""

    system: brama.Brama
    clock: FakeClock
    app: StatusApp
    server: ThreadingWSGIServer

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """GET `path`: (status, headers, body), for error answers too."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=WAIT) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture
def served(request) -> Iterator[Served]:
    """The page of a fresh FakeClock system, served on 127.0.0.1; `@pytest.mark.app(...)`
    passes options to `brama.web.app`."""
    marker = request.node.get_closest_marker("app")
    options = dict(marker.kwargs) if marker else {}
    clock = FakeClock(T0)
    with brama.Brama(clock=clock) as system:
        page = app(system, **options)
        server = make_server(page, port=0)
        thread = threading.Thread(target=server.serve_forever, name="test-status-page",
                                  kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield Served(system, clock, page, server)
        finally:
            page.close()
            server.shutdown()
            server.server_close()
            thread.join(WAIT)


class SSEClient:
    """A Server-Sent Events client on urllib: `next()` is the next SSE block as a dict of its
    fields (`data` JSON-decoded for Brama events), comments as {"comment": text}."""

    def __init__(self, url: str) -> None:
        self.response = urllib.request.urlopen(url, timeout=WAIT)
        self.headers = dict(self.response.headers)

    def next(self) -> dict[str, Any]:
        block: dict[str, Any] = {}
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError("the event stream ended")
            text = line.decode().rstrip("\n")
            if not text:
                if block:
                    return block
                continue
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                block.setdefault("comment", value)
            else:
                block[name] = value

    def event(self) -> dict[str, Any]:
        """The next Brama event (skipping comments and other SSE event names)."""
        while True:
            block = self.next()
            if "data" in block and block.get("event", "message") == "message":
                return json.loads(block["data"])

    def close(self) -> None:
        self.response.close()


@pytest.fixture
def sse(served) -> Iterator[Any]:
    """`sse(path)`: an SSEClient on `served`, already subscribed (its first block read)."""
    clients: list[SSEClient] = []

    def connect(path: str = "events") -> SSEClient:
        client = SSEClient(served.url + path)
        clients.append(client)
        assert client.next() == {"retry": "2000", "comment": "subscribed"}
        return client

    yield connect
    for client in clients:
        client.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "app(**options): options of brama.web.app for `served`")
