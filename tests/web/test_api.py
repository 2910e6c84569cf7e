"""brama.web: the JSON of /api/connections through a real server (fields, types, the server's
clock, scopes, connections coming and going), the page and its static files, errors, and the
WSGI details (HEAD, methods, mounting under a prefix), plus the arguments of `app()`."""

from __future__ import annotations

import dataclasses
import json
import wsgiref.util

import pytest

import brama
from brama.types import ConnectionStatus
from brama.web import app
from tests.web.conftest import T0


def test_every_status_field_with_enums_as_strings_and_times_as_numbers(served):
    system, clock = served.system, served.clock
    system.register("api", max_attempts=1, expiry=30, metadata={"team": "core", "odd": object()})
    clock.advance(2)
    system.failure("api", reason=ValueError("boom"))  # opens
    body = served.json("api/connections")
    assert body["now"] == T0 + 2
    assert body["running"] is True
    [row] = body["connections"]
    assert set(row) == {f.name for f in dataclasses.fields(ConnectionStatus)} | {"available"}
    assert row["identifier"] == "api"
    assert row["scope"] is None
    assert row["state"] == "open"
    assert row["available"] is False
    assert row["failure_count"] == 1
    assert row["opened_at"] == T0 + 2
    assert row["open_until"] == T0 + 32
    assert row["registered_at"] == T0
    assert row["success_rate"] == 0.0
    assert row["total_openings"] == 1
    assert row["last_failure_reason"] == "ValueError('boom')"  # not JSON: its repr
    assert row["metadata"]["team"] == "core"
    assert row["metadata"]["odd"].startswith("<object object at")


def test_connections_come_and_go_and_scope_filters(served):
    system = served.system
    assert served.json("api/connections")["connections"] == []
    system.register("api")
    system.register("api", scope="eu")
    system.register("db", scope="eu")
    rows = served.json("api/connections")["connections"]
    assert sorted((r["scope"] or "", r["identifier"]) for r in rows) == [
        ("", "api"), ("eu", "api"), ("eu", "db")]
    rows = served.json("api/connections?scope=eu")["connections"]
    assert sorted(r["identifier"] for r in rows) == ["api", "db"]
    system.unregister("api", scope="eu")
    rows = served.json("api/connections")["connections"]
    assert sorted((r["scope"] or "", r["identifier"]) for r in rows) == [("", "api"), ("eu", "db")]


def test_the_page_and_its_files(served):
    status, headers, body = served.get("")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page = body.decode()
    assert 'data-poll-ms="1000"' in page
    assert 'src="static/app.js"' in page and 'href="static/style.css"' in page
    status, headers, body = served.get("static/app.js")
    assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
    assert b"EventSource" in body
    status, headers, _ = served.get("static/style.css")
    assert (status, headers["Content-Type"]) == (200, "text/css; charset=utf-8")


@pytest.mark.app(poll_interval=0.25)
def test_the_poll_interval_reaches_the_page(served):
    assert b'data-poll-ms="250"' in served.get("")[2]


def test_unknown_paths_and_repeated_parameters_are_answered_with_json_errors(served):
    status, headers, body = served.get("nope")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": "no such page: '/nope'"}
    status, _, body = served.get("api/connections?scope=a&scope=b")
    assert status == 400
    assert "'scope' given 2 times" in json.loads(body)["error"]


def call(application, method="GET", path="/", script_name=""):
    """Call a WSGI application directly: (status, headers, body)."""
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, SCRIPT_NAME=script_name)
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=dict(headers))

    result = application(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return answer["status"], answer["headers"], body


def test_wsgi_methods_head_and_mounting_under_a_prefix(brama_system):
    page = app(brama_system)
    status, headers, body = call(page, "POST", "/api/connections")
    assert status.startswith("405") and headers["Allow"] == "GET, HEAD"
    status, headers, body = call(page, "HEAD", "/api/connections")
    assert status == "200 OK" and body == b"" and int(headers["Content-Length"]) > 0
    status, headers, _ = call(page, "GET", "", script_name="/ops/brama")
    assert status.startswith("301") and headers["Location"] == "/ops/brama/"
    status, _, body = call(page, "GET", "/", script_name="/ops/brama")
    assert status == "200 OK" and b"<title>Brama status</title>" in body


def test_the_default_system_is_read_at_each_request(brama_system):
    page = app()  # the default system: brama_system in this test
    brama_system.register("api")
    _, _, body = call(page, "GET", "/api/connections")
    assert [row["identifier"] for row in json.loads(body)["connections"]] == ["api"]


def test_a_stopped_system_shows_no_connections():
    system = brama.Brama()
    system.register("api")
    page = app(system)
    system.stop()
    _, _, body = call(page, "GET", "/api/connections")
    assert json.loads(body)["running"] is False
    assert json.loads(body)["connections"] == []
    status, _, body = call(page, "GET", "/events")
    assert status.startswith("503") and "stopped" in json.loads(body)["error"]


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"system": "default"}, TypeError, r"system must be a brama\.Brama or None.*str: 'default'"),
    ({"queue_size": 0}, ValueError, r"queue_size must be a whole number from 1 to 100000, got 0"),
    ({"queue_size": 2.5}, TypeError, r"queue_size must be a whole number .* float: 2\.5"),
    ({"heartbeat": 0}, ValueError, r"heartbeat must be a number from 0\.01 to 3600, got 0"),
    ({"max_streams": True}, TypeError, r"max_streams must be a whole number .* bool: True"),
    ({"poll_interval": 0.01}, ValueError, r"poll_interval must be a number from 0\.1 to 3600"),
])
def test_bad_arguments_name_the_argument_the_value_and_the_range(options, error, message):
    with pytest.raises(error, match=message):
        app(**options)
