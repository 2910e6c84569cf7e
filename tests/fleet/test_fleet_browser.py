"""The fleet's status page in a real headless browser: a dashboard system on the backend
shows a worker's connection, then the worker's trip, with the worker named as its origin,
without a reload. The browser fixtures (and their CI rule: skip only outside CI) are the
status page tests'."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from brama import Brama
from brama.web import StatusApp, make_server
from brama.web._fleetview import FleetView
from tests.browser import browser, page, row
from tests.helpers import WAIT

__all__ = ["browser", "page"]  # fixtures used by name


@pytest.fixture
def fleet_page(make_brama) -> Iterator[tuple[Brama, FleetView, str]]:
    """A dashboard system on the test's backend and namespace, its fleet view (discovery by
    hand: `refresh()`) and its page served on 127.0.0.1: (system, view, url)."""
    system = make_brama()
    view = FleetView(system, system.runtime.fleet.config, interval=3600)
    status_app = StatusApp(system, fleet=view, poll_interval=0.2)
    server = make_server(status_app, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="test-fleet-page", daemon=True)
    thread.start()
    try:
        yield system, view, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        status_app.close()
        view.close()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def test_a_workers_trip_appears_with_its_origin_without_reload(
        make_brama, fleet_page, namespace, page: Any) -> None:
    worker = make_brama()
    worker.register("payments", max_attempts=2, expiry=300)
    _, view, url = fleet_page
    assert view.refresh()

    page.goto(url)
    page.wait_for_selector('#live:text("live")')
    payments = row(page, "payments")
    page.wait_for_selector('tr[data-connection="payments"][data-state="closed"]')
    summary = page.locator("#summary").inner_text()
    assert summary.startswith(f"fleet {namespace} on redis://127.0.0.1:"), summary
    assert "unavailable" not in summary

    page.evaluate("window.__not_reloaded = true")
    for _ in range(2):
        worker.failure("payments", reason="refused")
    page.wait_for_selector('tr[data-connection="payments"][data-state="open"]')
    assert view.refresh()  # who changed it last: read with each discovery pass
    origin = worker.runtime.fleet.origin
    assert payments.locator(".badge").inner_text() == "open"
    assert payments.locator("td.failures").inner_text().startswith("2 / ")
    page.wait_for_function(
        "(origin) => document.querySelector('tr[data-connection=\"payments\"] td.state')"
        ".title === `last change by ${origin}`", arg=origin)
    opened = page.locator("#events li.opened").first.inner_text()
    assert "payments" in opened and f"by {origin}" in opened
    assert page.evaluate("window.__not_reloaded") is True
