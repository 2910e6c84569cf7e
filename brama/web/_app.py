"""The status page as a WSGI application: the page, its JSON, and its event stream.

Routes (GET and HEAD; the URLs in the page are relative, so the application can be mounted
under any prefix of another WSGI application):

- `/`: the page (static HTML, JavaScript and CSS shipped as package data). It polls
  `api/connections` and listens to `events`; everything it shows (sparklines of recent calls
  included) is computed in the browser from the polled totals, so a page costs the server one
  snapshot read per poll and nothing per call.
- `/api/connections`: `{"now", "running", "connections": [status, ...]}`; `now` is the
  system's clock (wall seconds), so a page computes "time left open" from `open_until` with
  the server's clock, even a `FakeClock`. `?scope=` keeps one scope. With a `fleet` view
  (`python -m brama dashboard --backend`), also `"fleet": {...}` (backend, namespace,
  whether it answers) and each connection's `last_change` (origin, time, version).
- `/events`: Server-Sent Events (see `brama.web._stream`). `?events=` picks the event types
  (comma-separated, or `all`); by default every type except `success`, because a subscriber
  to `success` takes every success off Brama's fast path (a healthy call then costs an actor
  round trip to publish its event). `?connection=` and `?scope=` narrow the stream.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

import brama
from brama.errors import BramaError
from brama.integrations import check_system, statuses
from brama.otp import get_logger, safe_repr
from brama.types import ConnectionStatus, EventType
from brama.web._encode import dumps, jsonable, status_dict
from brama.web._stream import EventStream

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["DEFAULT_EVENTS", "FleetAnnotations", "StatusApp", "app"]

DEFAULT_EVENTS: frozenset[EventType] = frozenset(EventType) - {EventType.SUCCESS}
"""The event types `/events` streams without `?events=`: all but `success` (see above)."""

_log = get_logger("brama.web")
_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"),
]
_EVENT_NAMES = frozenset(event.value for event in EventType)
_STATIC = {
    "static/app.js": "text/javascript; charset=utf-8",
    "static/style.css": "text/css; charset=utf-8",
}


def _check_number(name: str, value: Any, low: float, high: float, *,
                  integer: bool = False) -> float:
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise TypeError(f"{name} must be {kind} from {low:g} to {high:g}, "
                        f"got {type(value).__name__}: {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {kind} from {low:g} to {high:g}, got {value!r}")
    return value


class FleetAnnotations(Protocol):
    """What a view of the whole fleet adds to `/api/connections` (see `brama.web._fleetview`)."""

    def summary(self) -> dict[str, Any]:
        """The `fleet` object of the answer."""

    def row(self, status: ConnectionStatus) -> dict[str, Any]:
        """Fields added to one connection's object."""


class _HTTPError(Exception):
    """A request that gets an error answer (status line, JSON message, extra headers)."""

    def __init__(self, status: str, message: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class StatusApp:
    """The WSGI application of the status page (build it with `brama.web.app()`).

    Thread-safe: serve it with a threaded server (each `/events` client holds a thread for
    as long as it is connected). `close()` ends every open event stream.
    """

    def __init__(self, system: brama.Brama | None = None, *, queue_size: int = 256,
                 heartbeat: float = 15.0, max_streams: int = 32,
                 poll_interval: float = 1.0, fleet: FleetAnnotations | None = None) -> None:
        self._system = check_system(system)
        self._fleet = fleet
        self._queue_size = int(_check_number("queue_size", queue_size, 1, 100_000,
                                             integer=True))
        self._heartbeat = float(_check_number("heartbeat", heartbeat, 0.01, 3600))
        self._max_streams = int(_check_number("max_streams", max_streams, 1, 10_000,
                                              integer=True))
        poll = _check_number("poll_interval", poll_interval, 0.1, 3600)
        self._lock = threading.Lock()
        self._streams: set[EventStream] = set()
        self._closed = False
        static = resources.files("brama.web") / "static"
        page = (static / "index.html").read_text(encoding="utf-8")
        self._files: dict[str, tuple[str, bytes]] = {
            "": ("text/html; charset=utf-8",
                 page.replace("__POLL_MS__", str(round(poll * 1000))).encode()),
        }
        for name, content_type in _STATIC.items():
            self._files[name] = (content_type, (static / name.split("/", 1)[1]).read_bytes())

    def __repr__(self) -> str:
        return (f"<StatusApp of {self._system or 'the default system'}, "
                f"{self.streams} event streams>")

    @property
    def streams(self) -> int:
        """How many `/events` clients are connected now."""
        with self._lock:
            return len(self._streams)

    def close(self) -> None:
        """End every open event stream (their clients see the stream end); idempotent. The
        page and the JSON keep being served; new event streams are refused."""
        with self._lock:
            self._closed = True
            streams = list(self._streams)
        for stream in streams:
            stream.close()

    # -- WSGI --

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse
                 ) -> Iterable[bytes]:
        """Answer one request (the WSGI entry point)."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        try:
            if method not in ("GET", "HEAD"):
                raise _HTTPError("405 Method Not Allowed", f"method {method} is not allowed",
                                 [("Allow", "GET, HEAD")])
            if path == "" and environ.get("SCRIPT_NAME"):
                # Mounted under a prefix: the page's relative URLs need the trailing slash.
                location = environ["SCRIPT_NAME"] + "/"
                start_response("301 Moved Permanently", [("Location", location)])
                return [b""]
            route = path.lstrip("/")
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            if route == "api/connections":
                return self._respond(start_response, method, "200 OK",
                                     "application/json", self._connections(query))
            if route == "events":
                stream = self._open_stream(query)
                start_response("200 OK", [
                    ("Content-Type", "text/event-stream; charset=utf-8"),
                    ("Cache-Control", "no-cache"),
                    ("X-Accel-Buffering", "no"),  # proxies: do not buffer the stream
                    *_SECURITY_HEADERS,
                ])
                if method == "HEAD":
                    stream.close()
                    return [b""]
                return stream
            if route in self._files:
                content_type, body = self._files[route]
                return self._respond(start_response, method, "200 OK", content_type, body)
            raise _HTTPError("404 Not Found", f"no such page: {path!r}")
        except _HTTPError as error:
            body = dumps({"error": error.message})
            return self._respond(start_response, method, error.status, "application/json",
                                 body, error.headers)
        except Exception as error:
            _log.error("brama.web request failed", path=path, error=safe_repr(error),
                       exc_info=True)
            body = dumps({"error": "internal error"})
            return self._respond(start_response, method, "500 Internal Server Error",
                                 "application/json", body)

    @staticmethod
    def _respond(start_response: StartResponse, method: str, status: str,
                 content_type: str, body: bytes,
                 extra: list[tuple[str, str]] | None = None) -> list[bytes]:
        start_response(status, [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            *_SECURITY_HEADERS,
            *(extra or []),
        ])
        return [b"" if method == "HEAD" else body]

    # -- routes --

    def _target(self) -> brama.Brama:
        return brama.default() if self._system is None else self._system

    def _connections(self, query: dict[str, list[str]]) -> bytes:
        system = self._target()
        scope = _single(query, "scope")
        fleet = self._fleet
        rows = [status_dict(status) | ({} if fleet is None else jsonable(fleet.row(status)))
                for status in statuses(system) if scope is None or status.scope == scope]
        answer: dict[str, Any] = {"now": system.clock.time(), "running": system.running,
                                  "connections": rows}
        if fleet is not None:
            answer["fleet"] = jsonable(fleet.summary())
        return dumps(answer)

    def _open_stream(self, query: dict[str, list[str]]) -> EventStream:
        events = _event_types(_single(query, "events"))
        connection, scope = _single(query, "connection"), _single(query, "scope")
        with self._lock:
            if self._closed:
                raise _HTTPError("503 Service Unavailable", "the status page is closed")
            if len(self._streams) >= self._max_streams:
                raise _HTTPError(
                    "503 Service Unavailable",
                    f"too many event streams open (max_streams={self._max_streams})",
                    [("Retry-After", "5")])
            try:
                subscription = self._target().subscribe(
                    events=events, connection=connection, scope=scope,
                    queue_size=self._queue_size)
            except (TypeError, ValueError) as error:  # ConfigError is a ValueError
                raise _HTTPError("400 Bad Request", str(error)) from None
            except BramaError as error:  # the system is stopped
                raise _HTTPError("503 Service Unavailable", str(error)) from None
            stream = EventStream(subscription, heartbeat=self._heartbeat,
                                 retry=2.0, on_close=self._forget)
            self._streams.add(stream)
        return stream

    def _forget(self, stream: EventStream) -> None:
        with self._lock:
            self._streams.discard(stream)


def _single(query: dict[str, list[str]], name: str) -> str | None:
    """The one value of query parameter `name` (None when absent); 400 when repeated."""
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _HTTPError("400 Bad Request",
                         f"query parameter {name!r} given {len(values)} times; give it once")
    return values[0]


def _event_types(text: str | None) -> frozenset[EventType]:
    """`?events=`: None for the default, `all`, or comma-separated event types."""
    if text is None:
        return DEFAULT_EVENTS
    if text.strip() == "all":
        return frozenset(EventType)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _EVENT_NAMES]
    if unknown or not names:
        accepted = ", ".join(sorted(e.value for e in EventType))
        raise _HTTPError(
            "400 Bad Request",
            f"events={text!r}: give 'all' or event types separated by commas, from: "
            f"{accepted}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return frozenset(EventType(name) for name in names)


def app(system: brama.Brama | None = None, *, queue_size: int = 256, heartbeat: float = 15.0,
        max_streams: int = 32, poll_interval: float = 1.0) -> StatusApp:
    """The status page of `system` (None: the default system as it is at each request) as a
    WSGI application.

    `queue_size`: events each `/events` client may fall behind by before the oldest are
    dropped (1 to 100,000). `heartbeat`: seconds between keep-alive comments, which is also
    how soon a client that went away is noticed (0.01 to 3600). `max_streams`: event
    streams open at once; more get 503 (1 to 10,000). `poll_interval`: seconds between the
    page's polls of `/api/connections` (0.1 to 3600).
    """
    return StatusApp(system, queue_size=queue_size, heartbeat=heartbeat,
                     max_streams=max_streams, poll_interval=poll_interval)
