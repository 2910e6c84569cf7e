"""One logging path: the OTP layer logs structlog key/value events.

Without a structlog configuration the events reach stdlib `logging` as `event=... key=...`
with the traceback handed to `logging` (so it is rendered, not lost); with a JSON setup each
event is one JSON object and the exception a field of it, never a multi-line text.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from brama.otp import Actor, ChildSpec, Supervisor, get_logger
from tests.helpers import wait_until


class Crasher(Actor):
    """Crashes on "crash"."""

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("the handler broke")
        return message


@pytest.fixture
def json_structlog() -> Iterator[io.StringIO]:
    """structlog configured as a JSON application would, for the test only."""
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    try:
        yield out
    finally:
        structlog.reset_defaults()


def test_without_structlog_configured_events_reach_logging_with_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not structlog.is_configured()
    caplog.set_level(logging.INFO, logger="brama.test")
    try:
        raise RuntimeError("inner")
    except RuntimeError:
        get_logger("brama.test").error("something_failed", child="db", attempt=2,
                                       exc_info=True)
    record = next(r for r in caplog.records if r.name == "brama.test")
    assert record.getMessage() == "event='something_failed' attempt=2 child='db'"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "RuntimeError: inner" in caplog.text  # logging rendered the traceback


def test_a_crash_under_a_supervisor_is_logged_as_one_event_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with Supervisor([ChildSpec.for_actor("worker", Crasher)], name="log-sup") as sup:
        first = sup.whereis_child("worker")
        assert first is not None
        first.tell("crash")
        wait_until(lambda: sup.whereis_child("worker") not in (None, first),
                   what="the worker restarted")
    crash = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ValueError]
    assert crash, [r.getMessage() for r in caplog.records]
    assert all("\n" not in r.getMessage() for r in caplog.records)  # one line per event
    assert "ValueError: the handler broke" in caplog.text


def test_with_a_json_setup_each_event_is_one_json_object_with_the_exception_as_a_field(
    json_structlog: io.StringIO,
) -> None:
    try:
        raise RuntimeError("inner")
    except RuntimeError:
        get_logger("brama.test").error("something_failed", child="db", exc_info=True)
    with Supervisor([ChildSpec.for_actor("worker", Crasher)], name="json-sup") as sup:
        first = sup.whereis_child("worker")
        assert first is not None
        first.tell("crash")
        wait_until(lambda: sup.whereis_child("worker") not in (None, first),
                   what="the worker restarted")
    lines = [line for line in json_structlog.getvalue().splitlines() if line]
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    mine = next(e for e in events if e["event"] == "something_failed")
    assert mine["child"] == "db" and mine["level"] == "error"
    assert "RuntimeError: inner" in mine["exception"]
    crashes = [e for e in events if "ValueError: the handler broke" in e.get("exception", "")]
    assert crashes, events
