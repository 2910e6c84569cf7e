"""The inactivity sweep: removes closed connections nobody used for `inactive_threshold`.

Sweeping is something a user opts into (`inactive_threshold` is None, never, by default): a
registered connection that sees no traffic is still a dependency the application means to
call. When it is on, the sweep never takes a circuit that is open, half-open, or whose expiry
is disabled (a maintenance switch), and it measures inactivity from registration, the last
outcome or state change, and the last success on the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brama._cell import Cell, Key
from brama._circuit import CLOSED, Now
from brama._config import Settings
from brama.otp import Actor, TimerRef, TimerService
from brama.types import EventType

__all__ = ["Janitor", "Rearm", "Sweep", "Sweeper"]


@dataclass(frozen=True, slots=True)
class Sweep:
    """Janitor tick: time for a sweep."""


@dataclass(frozen=True, slots=True)
class Rearm:
    """`cleanup_interval` changed: count the next sweep from now."""


class Sweeper:
    """The sweep itself: which cells are inactive, removing them, and telling subscribers."""

    def __init__(
        self,
        table: dict[Key, Cell],
        settings: Settings,
        now: Callable[[], Now],
        terminate: Callable[[list[Cell]], None],
        emit: Callable[[EventType, str, str | None, dict[str, Any]], None],
    ) -> None:
        self.table = table
        self.settings = settings
        self.now = now
        self.terminate = terminate
        self.emit = emit

    def inactive(self, cell: Cell, now: Now, threshold: float) -> bool:
        """True when `cell` may be swept: closed, expiry not disabled, idle long enough."""
        state = cell.circuit
        if state.state is not CLOSED or state.expiry_disabled:
            return False
        idle = now.mono - state.last_activity
        if cell.last_fast_success is not None:
            idle = min(idle, now.wall - cell.last_fast_success)
        return idle >= threshold

    def sweep(self) -> list[Cell]:
        """Remove every inactive connection; returns the removed cells."""
        threshold = self.settings.get("inactive_threshold")
        if threshold is None:
            return []
        now = self.now()
        table = self.table
        removed: list[Cell] = []
        for key, cell in list(table.items()):
            if not self.inactive(cell, now, threshold):
                continue
            current = table.pop(key, None)
            if current is cell:
                cell.live = False
                removed.append(cell)
            elif current is not None:  # registered anew since the snapshot: not ours to take
                table.setdefault(key, current)
        if not removed:
            return removed
        self.terminate(removed)  # one supervisor round trip for the whole sweep
        for cell in removed:
            self.emit(EventType.CONNECTION_REMOVED, cell.identifier, cell.scope,
                      {"reason": "inactive", "inactive_threshold": threshold})
        self.emit(EventType.CLEANUP, "", None, {
            "removed": [{"identifier": c.identifier, "scope": c.scope} for c in removed],
            "count": len(removed),
        })
        return removed


class Janitor(Actor):
    """Runs the sweep every `cleanup_interval` seconds, on the system's timer service."""

    def __init__(self, sweeper: Sweeper, timers: TimerService) -> None:
        super().__init__()
        self.sweeper = sweeper
        self.timers = timers
        self.timer: TimerRef | None = None

    def on_start(self) -> None:
        self._arm()

    def on_stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        interval = self.sweeper.settings.get("cleanup_interval")
        self.timer = self.timers.send_after(interval, self.actor_ref, Sweep())

    def on_receive(self, message: Any) -> Any:
        match message:
            case Sweep():
                self.timer = None
                try:
                    self.sweeper.sweep()
                finally:
                    self._arm()
            case Rearm():
                self._arm()
            case _:
                return super().on_receive(message)
        return None
