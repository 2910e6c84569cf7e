"""Helpers for testing code that uses Brama: a fake clock, forced states, crashes.

The pytest plugin (fixtures `brama_system` and `brama_clock`) lives in `brama.testing.plugin`
and is registered through the `pytest11` entry point.
"""

from __future__ import annotations

from brama import api
from brama.otp.clock import FakeClock
from brama.system import Brama

__all__ = ["FakeClock", "crash_connection"]


def _system(system: Brama | None) -> Brama:
    return api.default() if system is None else system


def crash_connection(identifier: str, *, scope: str | None = None,
                     system: Brama | None = None) -> None:
    """Make the connection's actor die of an unhandled exception, to test supervision."""
    _system(system)._crash(identifier, scope)
