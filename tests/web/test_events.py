"""brama.web's /events: Server-Sent Events through a real server (every event but `success`
by default, `?events=` to choose, filters, bad parameters), and the bounds: a client that goes
away is unsubscribed, a slow client holds at most `queue_size` events and is told what it
lost, the number of streams is capped, and closing the page or stopping the system ends them."""

from __future__ import annotations

import json
import wsgiref.util

import pytest

from brama import EventType
from brama.testing import flush_events
from brama.web import DEFAULT_EVENTS, app
from tests.helpers import wait_until


def test_every_event_but_success_by_default(served, sse):
    assert frozenset(EventType) - {EventType.SUCCESS} == DEFAULT_EVENTS
    stream = sse()
    assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["Cache-Control"] == "no-cache"
    system = served.system
    system.register("api", max_attempts=1)
    system.success("api")  # not streamed
    system.failure("api", reason="timeout")  # failure, then the circuit opens
    events = [stream.event() for _ in range(5)]
    kinds = [e["event"] for e in events]
    assert sorted(kinds[:2]) == ["connection_registered", "registration"]
    assert kinds[2] == "failure"
    assert sorted(kinds[3:]) == ["circuit_opened", "state_change"]
    change = next(e for e in events if e["event"] == "state_change")
    assert change["connection"] == "api" and change["scope"] is None
    assert change["timestamp"] == served.clock.time()
    assert change["data"]["previous_state"] == "closed"
    assert change["data"]["new_state"] == "open"
    assert change["data"]["reason"] == "max_attempts"
    assert change["data"]["last_failure_reason"] == "timeout"
    system.register("marker")  # the next event after these is the marker's: no success
    assert stream.event()["connection"] == "marker"


def test_events_opt_in_to_successes_and_filters(served, sse):
    system = served.system
    system.register("api")
    system.register("db", scope="eu")
    successes = sse("events?events=success")
    eu = sse("events?events=all&scope=eu")
    one = sse("events?events=failure,circuit_opened&connection=api")
    system.success("db", scope="eu")
    system.success("api")
    system.failure("db", scope="eu")
    system.failure("api")
    assert [(e["event"], e["connection"]) for e in (successes.event(), successes.event())] == [
        ("success", "db"), ("success", "api")]
    assert [(e["event"], e["scope"]) for e in (eu.event(), eu.event())] == [
        ("success", "eu"), ("failure", "eu")]
    first = one.event()
    assert (first["event"], first["connection"]) == ("failure", "api")
    system.unregister("api")  # not a type `one` asked for
    system.register("api", max_attempts=1)
    system.failure("api")
    assert [one.event()["event"] for _ in range(2)] == ["failure", "circuit_opened"]


@pytest.mark.parametrize(("query", "message"), [
    ("events=bogus", "events='bogus': give 'all' or event types separated by commas"),
    ("events=", "events='': give 'all'"),
    ("connection=", "connection must be a non-empty str"),
    ("scope=", "scope must be None or a non-empty str"),
    ("events=all&events=success", "'events' given 2 times"),
])
def test_bad_parameters_are_400_with_a_message(served, query, message):
    status, _, body = served.get(f"events?{query}")
    assert status == 400
    assert message in json.loads(body)["error"]
    assert served.app.streams == 0


@pytest.mark.app(heartbeat=0.05)
def test_heartbeats_and_a_client_that_goes_away_is_unsubscribed(served, sse):
    stream = sse()
    assert stream.next() == {"comment": "keep-alive"}
    assert served.app.streams == 1
    stream.close()
    # The server notices at the next heartbeat it cannot write, and unsubscribes.
    wait_until(lambda: served.app.streams == 0, what="the stream of a gone client to close")


def wsgi_stream(page, query=""):
    """Open /events by calling the application directly (no server: nothing reads it)."""
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(PATH_INFO="/events", QUERY_STRING=query)
    return page(environ, lambda status, headers, exc_info=None: None)


def test_a_slow_client_holds_at_most_queue_size_events(brama_system):
    page = app(brama_system, queue_size=10, heartbeat=0.05)
    stream = wsgi_stream(page)
    try:
        assert next(stream).startswith(b"retry: 2000\n: subscribed")
        brama_system.register("api", max_attempts=1_000)
        for _ in range(100):  # 2 registration events and 100 failure events
            brama_system.failure("api")
        flush_events(system=brama_system)
        assert stream.dropped == 92  # the mailbox kept the last 10
        block = next(stream).decode()
        first, _, rest = block.partition("\n\n")
        assert first == 'event: dropped\ndata: {"dropped":92,"total":92}'
        datas = [json.loads(line[6:]) for line in rest.splitlines() if line.startswith("data: ")]
        assert [d["data"]["failure_count"] for d in datas] == list(range(91, 101))
        assert next(stream) == b": keep-alive\n\n"  # nothing more, and no second notice
    finally:
        stream.close()
    assert page.streams == 0


@pytest.mark.app(max_streams=2, heartbeat=0.05)
def test_the_number_of_streams_is_capped(served, sse):
    sse()
    second = sse()
    status, headers, body = served.get("events")
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert "too many event streams open (max_streams=2)" in json.loads(body)["error"]
    second.close()  # noticed at a heartbeat, and unsubscribed
    wait_until(lambda: served.app.streams == 1, what="the closed stream to be dropped")
    sse()


def test_closing_the_page_ends_its_streams(served, sse):
    stream = sse()
    served.app.close()
    with pytest.raises(EOFError):
        stream.next()
    assert served.app.streams == 0
    status, _, body = served.get("events")
    assert status == 503 and "closed" in json.loads(body)["error"]
    assert served.get("api/connections")[0] == 200  # the rest of the page still works


def test_stopping_the_system_ends_the_streams(served, sse):
    stream = sse()
    served.system.stop()
    with pytest.raises(EOFError):
        stream.next()
    wait_until(lambda: served.app.streams == 0, what="the stream to close")
