"""Fixtures of the OTP-layer tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from brama.otp import Supervisor
from tests.helpers import wait_until
from tests.otp.children import StartLog


@pytest.fixture
def rec() -> StartLog:
    return StartLog()


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """The test (and its fixtures) must leave no actor thread behind."""
    before = set(threading.enumerate())
    yield
    wait_until(lambda: set(threading.enumerate()) <= before, what="actor threads to end")


@pytest.fixture
def make_sup() -> Iterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(*args: Any, **kwargs: Any) -> Supervisor:
        sup = Supervisor(*args, **kwargs)
        made.append(sup)
        return sup

    yield make
    for sup in reversed(made):
        sup.stop()
    pykka.ActorRegistry.stop_all()
