"""A threaded `wsgiref` server for the status page (stdlib only).

`wsgiref.simple_server` handles one request at a time; an `/events` client holds its request
for as long as it is connected, so the page needs a thread per request
(`socketserver.ThreadingMixIn`). Request threads are daemons, so a stream that is still open
never keeps the process alive, and the request log is off (a page polls every second).
"""

from __future__ import annotations

import socketserver
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["ThreadingWSGIServer", "make_server"]


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """`wsgiref`'s server with a daemon thread per request."""

    daemon_threads = True
    request_queue_size = 64  # the default backlog of 5 refuses a burst of page loads

    @property
    def url(self) -> str:
        """The server's address as a URL (`http://127.0.0.1:PORT/`)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_server(application: WSGIApplication, *, host: str = "127.0.0.1",
                port: int = 0) -> ThreadingWSGIServer:
    """A threaded WSGI server of `application` on `host`:`port` (0: a free port), bound and
    ready: call `serve_forever()` (and `shutdown()`, `server_close()` to stop it)."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be a whole number from 0 to 65535 (0: any free port), "
                        f"got {type(port).__name__}: {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 0 to 65535 (0: any free port), "
                         f"got {port!r}")
    server = ThreadingWSGIServer((host, port), _QuietHandler)
    server.set_app(application)
    return server
