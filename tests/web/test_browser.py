"""brama.web in a real headless browser (Debian's chromium, driven by Playwright): the page
renders every connection, a state change shows up without a reload, and a rate policy's
window rates are shown.

Skipped only when no browser is installed and the variable CI is not set; under CI a missing
browser is a failure (.ci/run installs Debian's chromium first)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.browser import browser, page, require_browser, row

__all__ = ["browser", "page"]  # fixtures used by name

@pytest.mark.app(poll_interval=0.2)
def test_the_page_renders_connections_and_follows_a_state_change_without_reload(served, page):
    system, clock = served.system, served.clock
    system.register("payments-api", max_attempts=3, expiry=42, type="http")
    system.register("orders-db", scope="shop", type="database")
    for _ in range(3):
        system.success("payments-api")
    system.failure("payments-api", reason="timeout")

    page.goto(served.url)
    page.wait_for_selector('#live:text("live")')  # the event stream is connected
    payments, orders = row(page, "payments-api"), row(page, "orders-db")
    assert payments.get_attribute("data-state") == "closed"
    assert payments.locator(".badge").inner_text() == "closed"
    assert payments.locator("td.failures").inner_text() == "1 / 3"
    assert payments.locator("td.rate").inner_text() == "75.0 %"
    assert payments.locator("td.name small").inner_text() == "http"
    assert orders.locator("td.scope").inner_text() == "shop"
    assert page.locator("#connections tbody tr").count() == 2
    assert page.locator("#summary").inner_text().startswith("2 connections")

    page.evaluate("window.__not_reloaded = true")
    system.open_circuit("payments-api", reason="maintenance")
    page.wait_for_selector('tr[data-connection="payments-api"][data-state="open"]')
    assert payments.locator(".badge").inner_text() == "open"
    # Time left from open_until and the server's clock (a FakeClock that stands still: the
    # page counts down from 42 s with its own clock between polls).
    left = payments.locator("td.open-for").inner_text()
    assert re.fullmatch(r"\d+\.\d s", left) and 30 < float(left[:-2]) <= 42, left
    assert page.locator("#events li.opened").first.inner_text().count("payments-api") == 1

    clock.advance(42)  # half-open on its timer
    page.wait_for_selector('tr[data-connection="payments-api"][data-state="half_open"]')
    assert payments.locator(".badge").inner_text() == "half-open"
    system.register("late-comer")
    page.wait_for_selector('tr[data-connection="late-comer"]')
    system.unregister("orders-db", scope="shop")
    page.wait_for_selector('tr[data-connection="orders-db"]', state="detached")
    assert page.evaluate("window.__not_reloaded") is True


@pytest.mark.app(poll_interval=0.2)
def test_the_sparkline_draws_the_calls_between_polls(served, page):
    system = served.system
    system.register("api", max_attempts=100)
    page.goto(served.url)
    page.wait_for_selector('tr[data-connection="api"]')
    before = page.locator('tr[data-connection="api"] svg.spark rect.fail').count()
    for _ in range(5):
        system.failure("api")
    system.success("api")
    page.wait_for_function(
        """() => document.querySelectorAll('tr[data-connection="api"] svg.spark rect.fail')
                 .length > 0 && document.querySelectorAll(
                 'tr[data-connection="api"] svg.spark rect.ok').length > 0""")
    assert before == 0
    assert "✗ 5" in row(page, "api").locator("td.totals").inner_text()


@pytest.mark.app(poll_interval=0.2)
def test_the_window_rates_of_a_rate_policy(served, page):
    system = served.system
    system.register("rated", failure_rate_threshold=0.9, slow_call_duration=1.0,
                    minimum_calls=4)
    system.register("plain")
    system.success("rated", duration=0.5)
    system.failure("rated", duration=2.0, reason="slow and failed")
    system.success("rated", duration=1.0)  # at slow_call_duration: slow
    system.success("plain")
    page.goto(served.url)
    rated, plain = row(page, "rated"), row(page, "plain")
    page.wait_for_selector('tr[data-connection="rated"] td.window:text("3 calls")')
    assert plain.locator("td.window").inner_text() == ""  # no rate policy
    system.success("rated", duration=0.1)  # 4 calls: minimum_calls reached
    page.wait_for_selector('tr[data-connection="rated"] td.window:text("failed")')
    assert rated.locator("td.window").inner_text() == "failed 25.0 % · slow 50.0 %"
    assert rated.locator("td.window").get_attribute("title") == "4 calls in the window"
    assert rated.locator("td.rate").inner_text() == "75.0 %"


def test_no_browser_skips_with_the_reason_but_fails_under_ci(monkeypatch):
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no browser: /usr/bin/chromium"):
        require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so the browser test must run"):
        require_browser()
