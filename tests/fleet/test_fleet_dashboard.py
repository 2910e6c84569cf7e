"""The status page of a whole fleet (`python -m brama dashboard --backend`), on a real Redis:
worker systems register and trip connections; a dashboard system on the same backend finds
them by discovery (`FleetView`, driven pass by pass with `refresh()`), shows the fleet's
state and who changed it last, never changes what it watches, and rides out Redis dying."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brama import Brama
from brama.web import StatusApp
from brama.web._fleetview import FleetView
from tests.fleet.harness import RedisServer
from tests.fleet.helpers import eventually, fleet_version, subscribed
from tests.helpers import WAIT, dashboard_process


def get(app: StatusApp, path: str = "/api/connections") -> tuple[str, Any]:
    """Call the WSGI application directly: (status line, decoded JSON)."""
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": ""}
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], json.loads(body) if path.startswith("/api/") else body


def rows(app: StatusApp) -> dict[tuple[str | None, str], dict[str, Any]]:
    status, data = get(app)
    assert status == "200 OK", data
    return {(c["scope"], c["identifier"]): c for c in data["connections"]}


@pytest.fixture
def dashboard(make_brama) -> Iterator[Callable[..., tuple[Brama, FleetView, StatusApp]]]:
    views: list[FleetView] = []

    def make(system: Brama | None = None) -> tuple[Brama, FleetView, StatusApp]:
        system = system or make_brama()
        view = FleetView(system, system.runtime.fleet.config, interval=3600)
        views.append(view)
        return system, view, StatusApp(system, fleet=view)

    try:
        yield make
    finally:
        for view in views:
            view.close()


def test_the_page_lists_every_connection_of_the_fleet_with_its_state_and_origin(
        make_brama, dashboard, namespace):
    a, b = make_brama(), make_brama()
    a.register("A", max_attempts=2, expiry=300)
    b.register("B", scope="billing")
    b.register("A", max_attempts=2, expiry=300)
    for _ in range(2):
        a.failure("A", reason="boom")
    elsewhere = make_brama(namespace=namespace + "x")
    elsewhere.register("C")
    version = fleet_version(a, "A")

    _, view, app = dashboard()
    assert view.refresh()
    found = rows(app)
    assert set(found) == {(None, "A"), ("billing", "B")}  # not the other namespace's C
    assert found[(None, "A")]["state"] == "open"
    assert found[(None, "A")]["failure_count"] == 2
    assert found[(None, "A")]["last_failure_reason"] == "boom"
    assert found[(None, "A")]["open_until"] == pytest.approx(
        a.status("A").open_until, abs=1.0)
    change = found[(None, "A")]["last_change"]
    assert change["origin"] == a.runtime.fleet.origin and change["version"] == version
    assert found[("billing", "B")]["state"] == "closed"
    assert found[("billing", "B")]["last_change"] is None  # joined, never changed
    fleet = get(app)[1]["fleet"]
    assert fleet["available"] and fleet["namespace"] == namespace
    assert fleet["discovered"] == 2 and fleet["error"] is None
    # watching changed nothing: same version, same state
    assert fleet_version(a, "A") == version
    assert view.refresh() and fleet_version(a, "A") == version


def test_later_connections_and_live_changes_appear(make_brama, dashboard, server, namespace):
    a = make_brama()
    a.register("A", max_attempts=2)
    system, view, app = dashboard()
    assert view.refresh()
    subscribed(a, system)
    a.register("late")
    assert set(rows(app)) == {(None, "A")}  # until the next pass
    assert view.refresh()
    assert set(rows(app)) == {(None, "A"), (None, "late")}
    # another process's trip reaches the page through the dashboard system's bridge
    a.failure("A")
    a.failure("A")
    eventually(lambda: rows(app)[(None, "A")]["state"] == "open", what="the trip relayed")
    # a connection whose keys are gone is dropped at the next pass
    admin = server.admin()
    key = a.runtime.fleet.store.key("late")
    admin.delete(key.state, key.counters)
    assert view.refresh()
    assert set(rows(app)) == {(None, "A")}
    assert rows(app)[(None, "A")]["last_change"]["origin"] == a.runtime.fleet.origin


def test_watching_keeps_no_connection_alive(make_brama, dashboard, server):
    """The view reads (discovery, last changes, the fleet's counters) without refreshing a
    TTL: a connection the workers stopped using expires as it would with no dashboard, and
    the view then drops it."""
    from brama.testing import sync_fleet

    worker = make_brama()
    worker.register("idle")
    system, view, app = dashboard()
    assert view.refresh() and (None, "idle") in rows(app)
    admin = server.admin()
    key = worker.runtime.fleet.store.key("idle")
    for name in (key.state, key.counters):
        admin.pexpire(name, 60_000)
    for _ in range(3):
        assert view.refresh()
        sync_fleet(system)  # flushes with nothing to add: a read of the fleet's counters
    assert 0 < admin.pttl(key.state) <= 60_000
    assert admin.pttl(key.counters) <= 60_000
    admin.delete(key.state, key.counters)  # the TTL ran out
    assert view.refresh()
    assert (None, "idle") not in rows(app)


def test_connections_registered_here_by_other_code_are_left_alone(make_brama, dashboard):
    a = make_brama()
    a.register("A")
    system, view, app = dashboard()
    system.register("A", metadata={"mine": True})
    assert view.refresh()
    a.runtime.fleet.store.client.delete(a.runtime.fleet.store.key("A").state)
    assert view.refresh()
    assert rows(app)[(None, "A")]["metadata"] == {"mine": True}


def test_redis_dying_is_shown_and_the_page_recovers(own_server: RedisServer, namespace):
    def make() -> Brama:
        return Brama(backend=own_server.url, namespace=namespace, backend_timeout=0.5)

    worker, system = make(), make()
    view = FleetView(system, system.runtime.fleet.config, interval=3600)
    try:
        worker.register("A", max_attempts=1)
        worker.failure("A")
        app = StatusApp(system, fleet=view)
        assert view.refresh()
        own_server.kill()
        assert not view.refresh()
        status, data = get(app)
        assert status == "200 OK"
        assert data["fleet"]["available"] is False and data["fleet"]["error"]
        assert data["connections"][0]["identifier"] == "A"  # the last known state stays
        assert get(app, "/")[0] == "200 OK"
        own_server.restart()
        eventually(view.refresh, timeout=10, what="discovery working again")
        assert get(app)[1]["fleet"]["available"] is True
        # the fleet re-creates its state (the worker's opening), and the page shows it
        eventually(lambda: view.refresh() and rows(app).get((None, "A"), {}).get("state")
                   == "open", timeout=10, what="the worker's state back on the page")
    finally:
        view.close()
        for brama_system in (worker, system):
            brama_system.stop()


def test_the_command_serves_the_fleet_and_discovers_in_the_background(make_brama, server,
                                                                       namespace):
    a = make_brama()
    a.register("A", max_attempts=1)
    a.failure("A")
    with dashboard_process("--backend", server.url, "--namespace", namespace, "--interval", "0.2"
                           ) as (url, lines):
        assert any(f"fleet '{namespace}'" in line and "1 connections" in line
                   for line in lines), lines

        def page() -> dict[str, Any]:
            with urllib.request.urlopen(url + "api/connections", timeout=WAIT) as response:
                return json.load(response)

        first = {c["identifier"]: c for c in page()["connections"]}
        assert first["A"]["state"] == "open"
        assert first["A"]["last_change"]["origin"] == a.runtime.fleet.origin
        a.register("late")  # found by the background loop, no refresh() here
        eventually(lambda: {"A", "late"} <= {c["identifier"] for c in page()["connections"]},
                   timeout=10, what="the later connection discovered")
    assert fleet_version(a, "A") > 0
