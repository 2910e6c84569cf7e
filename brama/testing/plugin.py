"""The pytest plugin: fixtures `brama_clock` (a FakeClock) and `brama_system` (a Brama on it).

Inside a test that uses `brama_system`, that system is also the default one: module-level
functions and decorators without `system=` use it and its fake clock. The previous default is
restored after the test, and the test's system is stopped, so nothing leaks to the next test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brama._system import Brama
from brama.otp import FakeClock
from brama.testing import default_system


@pytest.fixture
def brama_clock() -> FakeClock:
    """A fake clock at t=1,000,000 s; `advance(seconds)` fires every timer that falls due."""
    return FakeClock(1_000_000.0)


@pytest.fixture
def brama_system(brama_clock: FakeClock) -> Iterator[Brama]:
    """A fresh Brama system on `brama_clock`, the default for this test, stopped after it."""
    system = Brama(clock=brama_clock)
    try:
        with default_system(system):
            yield system
    finally:
        system.stop()
