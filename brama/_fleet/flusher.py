"""The flusher: a system's fast counters added to the fleet's every second, and actors with
hot-path successes to fold into a shared window (or own events held too long) woken."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from brama.otp import Actor, TimerRef, TimerService

__all__ = ["FLUSH_INTERVAL", "FlushTick", "Flusher", "Ticking"]

FLUSH_INTERVAL: Final = 1.0
"""Seconds between two flushes of the fast counters (on the system's clock)."""


@dataclass(frozen=True, slots=True)
class FlushTick:
    """Flusher timer message."""


class Ticking(Protocol):
    """What the flusher drives: a `FleetLink`."""

    def tick(self) -> object: ...


class Flusher(Actor):
    """Runs `FleetLink.tick` every FLUSH_INTERVAL seconds on the system's timer service."""

    def __init__(self, link: Ticking, timers: TimerService) -> None:
        super().__init__()
        self.link = link
        self.timers = timers
        self.timer: TimerRef | None = None

    def on_start(self) -> None:
        self.timer = self.timers.send_after(FLUSH_INTERVAL, self.actor_ref, FlushTick())

    def on_stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, FlushTick):
            try:
                self.link.tick()
            finally:
                self.timer = self.timers.send_after(FLUSH_INTERVAL, self.actor_ref,
                                                    FlushTick())
            return None
        return super().on_receive(message)
