"""The pytest plugin: fixtures `brama_clock` (a FakeClock) and `brama_system` (a Brama on it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brama.otp._clock import FakeClock
from brama.system import Brama


@pytest.fixture
def brama_clock() -> FakeClock:
    """A fake clock at t=1,000,000 s; `advance(seconds)` fires every timer that falls due."""
    return FakeClock(1_000_000.0)


@pytest.fixture
def brama_system(brama_clock: FakeClock) -> Iterator[Brama]:
    """A fresh Brama system on `brama_clock`, stopped after the test."""
    system = Brama(clock=brama_clock)
    try:
        yield system
    finally:
        system.stop()
