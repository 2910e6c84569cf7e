"""Fixtures of the integration tests: statuses carrying the rate fields of the rate policies.

`failure_rate` and `slow_call_rate` are being added to `ConnectionStatus` by other work; until
then these fixtures give the integrations statuses that have them, to show that a known rate
is reported and an unknown (None) one is not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from brama.types import ConnectionStatus


@dataclasses.dataclass(frozen=True)
class RatedStatus(ConnectionStatus):
    """A status with the rate fields (None: below the minimum number of calls, or off)."""

    failure_rate: float | None = None
    slow_call_rate: float | None = None


def _with_rates(status: ConnectionStatus, failure_rate: float | None,
                slow_call_rate: float | None) -> RatedStatus:
    values: dict[str, Any] = {f.name: getattr(status, f.name)
                              for f in dataclasses.fields(ConnectionStatus)}
    values.update(failure_rate=failure_rate, slow_call_rate=slow_call_rate)
    return RatedStatus(**values)


@pytest.fixture
def with_rates() -> Callable[[ConnectionStatus, float | None, float | None], RatedStatus]:
    """`with_rates(status, failure_rate, slow_call_rate)`: a copy of `status` with the rates."""
    return _with_rates
