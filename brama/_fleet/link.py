"""The fleet link: one system's connections sharing their circuits through a `FleetStore`.

A system started with `backend=` builds one link (see `brama._runtime`). The connection
actors stay the owners of their cells: they hand every circuit message to `FleetLink.step`,
which steps the pure state machine (`brama._circuit.step`, the one definition of the rules) on
the fleet state the cell knows and writes the result by compare-and-set (`FleetStore.apply`,
which re-steps on a newer version), and they carry out the `Outcome` (snapshot, timers,
events) exactly as they do without a backend. The rest of the link:

- `join` at registration: the fleet's state of the connection, created from the fresh one
  only if the fleet has none (a joining process never resets anything).
- `changed` (a `ChangeNotice` the bridge heard): the events of other processes' transitions
  are published on the local bus once, in version order, with `data["origin"]`; a newer
  state is adopted and the timers re-armed from it. A process's own events wait (`held`)
  until the notices of the versions before theirs were published, so every subscriber in
  the fleet sees one connection's events in the same order.
- Quiet outcomes never reach Redis: a success on a closed circuit with nothing to reset (as
  the hot path would count it) and a refused admission are counted in the cell's fast
  counters, flushed in batches (`flush`, every second by the `Flusher` of `flusher.py`, and on
  unregister and stop) into the connection's counters hash. A status adds the fleet's counts
  (`Slot.extra`; a registration's `Slot` and the actor's `Outcome` are in `slot.py`).
- Faults: a `BackendUnavailable` makes the step local (`_offline`): the breaker keeps
  working alone, the slot is `dirty`, and its outcomes are remembered (`offline`). `resync`
  (when the backend is back, the bridge re-subscribed, or the next message) joins again: the
  fleet's state wins, except a local opening still in force over a closed fleet circuit,
  which is written (this process saw the dependency fail); the offline outcomes are added to
  the counters.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from brama import _circuit as circuit
from brama._cell import Cell, count_value
from brama._circuit import ALL_EVENTS, Circuit, Emit, Now
from brama._connection import FleetChanged, FleetFold, FleetResync
from brama._fleet.bridge import Bridge
from brama._fleet.clock import PinnedClock, ServerClock
from brama._fleet.codec import ChangeNotice, FleetState
from brama._fleet.config import FleetConfig
from brama._fleet.errors import BackendUnavailable, ContentionError, describe
from brama._fleet.flusher import Flusher
from brama._fleet.keys import FleetKey, new_origin
from brama._fleet.slot import Batch, Outcome, Slot, adopted_events, outcome_counts, tagged
from brama._fleet.store import Counters, FleetStore, Stepped
from brama._options import Options
from brama.otp import ChildSpec, Clock, TimerService, get_logger
from brama.types import CircuitState, EventType

__all__ = ["HOLD_LIMIT", "OPENED_OFFLINE", "READ_INTERVAL", "FleetLink"]

_log: Final = "brama.fleet"
READ_INTERVAL: Final = 2.0
"""Seconds after which a connection's fleet counts are read again even if this system has
nothing to add (its status then shows the others' counts within about this long)."""
HOLD_LIMIT: Final = 1.0
"""Seconds a process's own events wait for the notices before them (then they go out)."""
OPENED_OFFLINE: Final = "opened_while_backend_unavailable"
"""The reason of the opening a process writes on reconnection (see `FleetLink.resync`)."""
_FOLD: Final = circuit.PermitTimeout(-1)
"""A step that only folds the hot path's successes into the window (no permit has id -1)."""


class FleetLink:
    """A system's side of the fleet: its store, its origin, its clock (see the module doc)."""

    def __init__(self, settings: Any, given_clock: Clock | None,
                 emit: Callable[[EventType, str, str | None, dict[str, Any]], None],
                 wake: Callable[[Cell, Any], None], cells: Callable[[], Iterable[Cell]],
                 lookup: Callable[[str | None, str], Cell | None]) -> None:
        self.settings = settings
        self.config = FleetConfig.from_url(
            settings.get("backend"), namespace=settings.get("namespace"),
            timeout=settings.get("backend_timeout"), source="backend")
        self.origin = new_origin()
        self.clock: ServerClock = (ServerClock() if given_clock is None
                                   else PinnedClock(given_clock))
        self.emit = emit
        self.wake = wake
        self.cells = cells
        self.lookup = lookup
        self.closed = False
        self._down_since: float | None = None
        self.store = FleetStore(self.config, clock=self.clock, origin=self.origin,
                                on_unavailable=self._unavailable, on_restored=self._restored)

    def __repr__(self) -> str:
        return f"<FleetLink {self.config!r} origin={self.origin!r}>"

    # -- the supervision tree --

    def bridge_spec(self) -> ChildSpec:
        """The bridge: every transition of the namespace, told to the local connection."""
        return ChildSpec.for_actor(
            "bridge", Bridge, self.config, self.notice, on_reconnect=self.resync_all,
            on_disconnect=self._bridge_lost, skip_own=True, origin=self.origin)

    def flusher_spec(self, timers: TimerService) -> ChildSpec:
        return ChildSpec.for_actor("flusher", Flusher, self, timers)

    # -- registration --

    def join(self, identifier: str, scope: str | None, fresh: Circuit) -> tuple[Circuit, Slot]:
        """The circuit a new registration starts from (the fleet's, or `fresh` when the fleet
        has none or the backend is unavailable: then the slot is dirty) and its slot."""
        slot = Slot(self.store.key(identifier, scope))
        try:
            snapshot = self.store.join(slot.key, FleetState(fresh))
        except BackendUnavailable as exc:
            get_logger(_log).debug("fleet_join_failed", connection=identifier,
                                   error=describe(exc))
            slot.dirty = True
            return fresh, slot
        joined = snapshot.state.with_local(fresh)
        slot.version = slot.seen = snapshot.version
        slot.owners = joined.owners
        slot.set_counts(snapshot.counters, (0, 0))
        slot.read_at = time.monotonic()
        return joined.circuit, slot

    # -- steps (on the connection's actor) --

    def step(self, cell: Cell, options: Options, message: Any, wants: frozenset[EventType],
             local: Circuit | None = None) -> Outcome:
        """Step `message` on the fleet state and write it (see the module docstring)."""
        slot: Slot = cell.fleet
        local = cell.circuit if local is None else local
        seen_fast, origin, clock = cell.fast_seen + 1, self.origin, self.clock

        def run(shared: FleetState) -> Stepped[tuple[circuit.Step, str | None, Now]]:
            now = clock.now()
            shared = shared.drop_expired(now.mono).with_local(local)
            result = circuit.step(shared.circuit, options, message, now, ALL_EVENTS, seen_fast)
            quiet = self._quiet(cell, options, message, shared.circuit, result, now)
            if quiet is not None:
                return Stepped(shared, (), (result, quiet, now))
            return Stepped(shared.advance(result.circuit, origin), result.events,
                           (result, None, now), now.wall)

        try:
            applied = self.store.apply(slot.key, slot.version, FleetState(local, slot.owners),
                                       run)
        except ContentionError as exc:
            adopted = exc.state.with_local(local) if isinstance(exc.state, FleetState) else None
            if adopted is None:
                return self._offline(cell, options, message, wants, local, rearm=False)
            slot.version, slot.owners = exc.version, adopted.owners
            return self._offline(cell, options, message, wants, adopted.circuit, rearm=True)
        except BackendUnavailable:
            return self._offline(cell, options, message, wants, local, rearm=False)
        result, quiet, now = applied.result
        slot.version, slot.owners = applied.version, applied.state.owners
        timers = result.timers if applied.attempts == 1 else None
        if quiet is not None:
            if quiet == "rejected":
                next(cell.fast_rejections)
            else:
                seen = next(cell.fast_successes)
                if quiet == "windowed":
                    cell.fast_seen = seen
                cell.last_fast_success = now.wall
            wanted = tuple(e for e in result.events if e.event in wants)
            batches: tuple[Batch, ...] = ((now.wall, tagged(wanted, origin)),) if wanted else ()
            return Outcome(applied.state.circuit, now, result.reply,
                           None if timers is None else (), batches)
        batches = (self._own(slot, applied.version, applied.created, now.wall, result.events)
                   if applied.written else ())
        return Outcome(applied.state.circuit, now, result.reply, timers, batches)

    @staticmethod
    def _quiet(cell: Cell, options: Options, message: Any, before: Circuit,
               result: circuit.Step, now: Now) -> str | None:
        """Whether the step is one the fleet need not hear of: a refused admission, or a
        success the hot path would have counted itself (closed, nothing to reset; with a rate
        policy, a warm window, not slow, in the window's current second)."""
        kind = type(message)
        if kind is circuit.Acquire:
            return "rejected" if result.reply == circuit.REFUSED else None
        if kind is not circuit.Success or before.state is not CircuitState.CLOSED or (
                before.failure_count or result.circuit.state is not CircuitState.CLOSED):
            return None
        if not options.windowed:
            return "success"
        policy = cell.policy
        duration = message.duration
        if policy is not None and policy.warm and (
                policy.slow_after is None or duration is None or duration < policy.slow_after
        ) and (not policy.time_window or int(now.mono // 1) == cell.window_second):
            return "windowed"
        return None

    def _offline(self, cell: Cell, options: Options, message: Any,
                 wants: frozenset[EventType], base: Circuit, *, rearm: bool) -> Outcome:
        """Step on `base` without the backend: the local breaker keeps working."""
        slot: Slot = cell.fleet
        slot.dirty = True
        now = self.clock.now()
        result = circuit.step(base, options, message, now, wants, cell.fast_seen + 1)
        slot.offline = slot.offline.plus(outcome_counts(base, result.circuit))
        batches = ((now.wall, tagged(result.events, self.origin)),) if result.events else ()
        return Outcome(result.circuit, now, result.reply, None if rearm else result.timers,
                       batches)

    def _own(self, slot: Slot, version: int, created: bool, wall: float,
             events: Iterable[Emit]) -> tuple[Batch, ...]:
        """This process's events of `version`: out now if every earlier version's are, else
        held until the notices before them came."""
        mine = tagged(events, self.origin)
        if created or slot.seen >= version - 1:
            slot.seen = max(slot.seen, version)
            return ((wall, mine), *self._release(slot))
        slot.held.append((version, wall, time.monotonic(), mine))
        return ()

    @staticmethod
    def _release(slot: Slot, force: bool = False) -> tuple[Batch, ...]:
        """Held events whose turn came (all of them with `force`), in version order."""
        out: list[Batch] = []
        while slot.held and (force or slot.held[0][0] - 1 <= slot.seen):
            version, wall, _, events = slot.held.pop(0)
            slot.seen = max(slot.seen, version)
            out.append((wall, events))
        return tuple(out)

    def needs_resync(self, cell: Cell) -> bool:
        """True when the cell was stepped alone and the backend looks available again."""
        slot: Slot | None = cell.fleet
        return slot is not None and slot.dirty and self.store.available

    def changed(self, cell: Cell, notice: ChangeNotice) -> Outcome | None:
        """Another process's transition: its events once, a newer state adopted."""
        slot: Slot | None = cell.fleet
        if slot is None or notice.key != slot.key:
            return None
        now = self.clock.now()
        batches: tuple[Batch, ...] = ()
        if notice.version > slot.seen:
            slot.seen = notice.version
            wall = notice.time if notice.wall is None else notice.wall
            batches = ((wall, tagged(notice.events, notice.origin)), *self._release(slot))
        if notice.version <= slot.version or slot.dirty:  # an echo, or resync decides
            return Outcome(cell.circuit, now, None, (), batches)
        adopted = notice.state.with_local(cell.circuit)
        slot.version, slot.owners = notice.version, adopted.owners
        return Outcome(adopted.circuit, now, None, None, batches)

    def resync(self, cell: Cell, options: Options) -> Outcome | None:
        """Join again after the backend or the bridge came back (see the module docstring);
        None while the backend is still unavailable.

        A registration that never saw the fleet's state (it joined while the backend was
        down) only reads it: if the fleet lost it too (an empty restarted server), the
        processes that knew it re-create it, not a newcomer's fresh state. It stays unjoined
        (the flusher asks again every second) unless it has an opening of its own to give."""
        slot: Slot | None = cell.fleet
        if slot is None:
            return None
        local = cell.circuit
        now = self.clock.now()
        opening = (slot.dirty and local.state is CircuitState.OPEN
                   and local.open_deadline is not None and local.open_deadline > now.mono)
        try:
            self.flush(cell)
            if slot.version == 0 and not opening:
                snapshot = self.store.read(slot.key, FleetState(local))
                if snapshot is None:  # nothing to adopt yet, nothing worth writing
                    slot.dirty = False
                    return None
            else:
                snapshot = self.store.join(slot.key, FleetState(local, slot.owners))
            missed = snapshot.version > max(slot.seen, slot.version)  # unheard transitions
            slot.seen = max(slot.seen, snapshot.version)  # their events are gone: see below
            batches = self._release(slot, force=True)
            if snapshot.created:  # the fleet had lost it: our state is the fleet's now
                slot.version, slot.offline, slot.dirty = snapshot.version, Counters(), False
                return Outcome(local, now, None, (), batches)
            if slot.offline != Counters():
                offline = slot.offline
                with slot.lock:
                    counts = self.store.add_counters(
                        slot.key, successes=offline.successes, failures=offline.failures,
                        rejections=offline.rejections)
                    slot.set_counts(counts, slot.flushed)
                slot.offline = Counters()
        except BackendUnavailable:
            return None
        fleet = snapshot.state.with_local(local)
        slot.dirty = False
        slot.version, slot.owners = snapshot.version, fleet.owners
        if opening and fleet.circuit.state is CircuitState.CLOSED:
            assert local.open_deadline is not None
            reopen = circuit.OpenCircuit(OPENED_OFFLINE, local.open_deadline - now.mono)
            stepped = self.step(cell, options, reopen, ALL_EVENTS, fleet.circuit)
            return stepped._replace(timers=None, batches=(*batches, *stepped.batches))
        adopted = adopted_events(local, fleet.circuit, self.origin) if missed else ()
        if adopted:  # transitions this process did not hear: its subscribers catch up
            batches = (*batches, (now.wall, adopted))
        return Outcome(fleet.circuit, now, None, None, batches)

    def fold(self, cell: Cell, options: Options) -> Outcome | None:
        """The flusher's turn: fold the hot path's successes into the shared window, and let
        own events out that waited too long for a notice."""
        slot: Slot | None = cell.fleet
        if slot is None:
            return None
        stale = bool(slot.held) and time.monotonic() - slot.held[0][2] >= HOLD_LIMIT
        batches = self._release(slot, force=True) if stale else ()
        state = cell.circuit
        if (options.windowed and state.state is CircuitState.CLOSED
                and cell.fast_seen + 1 > state.folded and not slot.dirty):
            stepped = self.step(cell, options, _FOLD, ALL_EVENTS)
            return stepped._replace(batches=(*batches, *stepped.batches))
        return Outcome(state, self.clock.now(), None, (), batches) if batches else None

    def wants_fold(self, cell: Cell) -> bool:
        """True when the cell's actor has something for `fold` to do."""
        slot: Slot | None = cell.fleet
        if slot is None:
            return False
        if slot.held:
            return True
        return (cell.policy is not None and cell.circuit.state is CircuitState.CLOSED
                and cell.fast_seen + 1 > cell.circuit.folded)

    # -- counters --

    def flush(self, cell: Cell, *, read: bool = False) -> None:
        """Add the cell's fast counts since the last flush to the fleet's counters (and read
        them); with nothing to add, only when `read`. Raises BackendUnavailable."""
        slot: Slot | None = cell.fleet
        if slot is None:
            return
        with slot.lock:
            successes = count_value(cell.fast_successes)
            rejections = count_value(cell.fast_rejections)
            added_s, added_r = successes - slot.flushed[0], rejections - slot.flushed[1]
            if not (added_s or added_r or read):
                return
            counts = self.store.add_counters(
                slot.key, successes=added_s, rejections=added_r,
                last_success=cell.last_fast_success if added_s else None)
            slot.set_counts(counts, (successes, rejections))
            slot.read_at = time.monotonic()

    def tick(self) -> None:
        """Every FLUSH_INTERVAL: flush the counters (every connection due, in one pipelined
        round trip), ask actors with something to fold."""
        now = time.monotonic()
        cells = [cell for cell in list(self.cells()) if cell.fleet is not None and cell.live]
        if self.store.available:  # on a fault the counts wait for the next flush
            with contextlib.suppress(BackendUnavailable):
                self._flush_all(cells, now)
        for cell in cells:
            slot: Slot = cell.fleet
            if self.wants_fold(cell):
                self.wake(cell, FleetFold())
            elif slot.version == 0 and self.store.available:  # joined while Redis was down
                self.wake(cell, FleetResync())

    def _flush_all(self, cells: list[Cell], now: float) -> None:
        """`flush` for every cell with counts to add or due for a read, batched. The slots'
        locks are held until their totals are in, so no other flush adds the same counts."""
        with contextlib.ExitStack() as held:
            due: list[tuple[Cell, Slot, tuple[int, int]]] = []
            items: list[tuple[FleetKey, int, int, float | None]] = []
            for cell in cells:
                slot: Slot = cell.fleet
                slot.lock.acquire()
                successes = count_value(cell.fast_successes)
                rejections = count_value(cell.fast_rejections)
                added_s, added_r = successes - slot.flushed[0], rejections - slot.flushed[1]
                if not (added_s or added_r or now - slot.read_at >= READ_INTERVAL):
                    slot.lock.release()
                    continue
                held.callback(slot.lock.release)
                due.append((cell, slot, (successes, rejections)))
                items.append((slot.key, added_s, added_r,
                              cell.last_fast_success if added_s else None))
            results = self.store.add_counters_many(items)
            read_at = time.monotonic()
            for (_, slot, flushed), counts in zip(due, results, strict=True):
                if isinstance(counts, Counters):
                    slot.set_counts(counts, flushed)
                    slot.read_at = read_at

    # -- registrations ending, the system stopping --

    def forget(self, cells: Iterable[Cell]) -> None:
        """Registrations that ended (their actors stopped): flush their counts and release
        the trial permits this system holds, best effort. Fleet keys stay (others use them;
        the TTL removes abandoned ones)."""
        for cell in cells:
            slot: Slot | None = cell.fleet
            if slot is None or not self.store.available:
                continue
            try:
                self.flush(cell)
                self._release_permits(cell, slot)
            except BackendUnavailable as exc:
                get_logger(_log).debug("fleet_forget_failed", connection=cell.identifier,
                                       error=describe(exc))

    def _release_permits(self, cell: Cell, slot: Slot) -> None:
        owned = FleetState(cell.circuit, slot.owners).owned_by(self.origin)
        if not owned:
            return
        options = self.settings.resolve(cell.circuit.overrides)
        local, origin, clock = cell.circuit, self.origin, self.clock

        def run(shared: FleetState) -> Stepped[None]:
            now = clock.now()
            shared = shared.drop_expired(now.mono).with_local(local)
            state = shared.circuit
            for permit in owned:
                state = circuit.step(state, options, circuit.Release(permit), now).circuit
            return Stepped(shared.advance(state, origin), (), None, now.wall)

        self.store.apply(slot.key, slot.version, FleetState(local, slot.owners), run)

    def close(self, cells: Iterable[Cell]) -> None:
        """The system stops: forget every registration, then close the store."""
        self.forget(cells)
        self.closed = True
        self.store.close()

    # -- the backend coming and going (keeper and bridge threads) --

    def notice(self, notice: ChangeNotice) -> None:
        """The bridge heard a transition: tell the connection's actor, if registered here."""
        if self.closed:
            return
        cell = self.lookup(notice.key.scope, notice.key.identifier)
        if cell is not None and cell.fleet is not None:
            self.wake(cell, FleetChanged(notice))

    def resync_all(self) -> None:
        """Every registration joins again (the bridge re-subscribed, the backend is back)."""
        if self.closed:
            return
        for cell in list(self.cells()):
            if cell.live and cell.fleet is not None:
                self.wake(cell, FleetResync())

    def _bridge_lost(self, error: BaseException) -> None:
        if not self.closed:
            self.store.availability.failed(error)

    def _unavailable(self, error: BaseException) -> None:
        self._down_since = time.monotonic()
        if not self.closed:
            self.emit(EventType.BACKEND_UNAVAILABLE, "", None,
                      {"backend": self.config.display_url, "error": describe(error)})

    def _restored(self) -> None:
        since, self._down_since = self._down_since, None
        down_for = 0.0 if since is None else time.monotonic() - since
        if not self.closed:
            self.emit(EventType.BACKEND_RESTORED, "", None,
                      {"backend": self.config.display_url, "down_for": down_for})
            self.resync_all()

    # -- for tests (brama.testing.sync_fleet) --

    def caught_up(self) -> bool:
        """True when every registration holds the fleet's current version and published
        every event up to it (no own event waiting)."""
        for cell in list(self.cells()):
            slot: Slot | None = cell.fleet
            if slot is None or not cell.live:
                continue
            snapshot = self.store.read(slot.key)
            version = 0 if snapshot is None else snapshot.version
            if slot.version < version or slot.seen < version or slot.held:
                return False
        return True


