"""Model-based tests: random operation sequences against a small reference model.

A hypothesis `RuleBasedStateMachine` drives one `Brama` on a `FakeClock` through register,
unregister, success, failure, available, calls that own their permits (`acquire`, then the
permit's success, failure or release), clock advances, manual open / close / reset,
reset_expiry, set_expiry, disable_expiry and configure (per connection and global). After
every step the whole observable state of every connection is compared with `Reference`, an
independent model written from docs/api.md (it never calls `brama._circuit` or
`brama._window`). The rate policies' model runs in test_model_policies.py.

Where the contract is silent the model follows the decisions in the module docstring of
`brama/_circuit.py`; each such place is marked "impl decision" below.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from brama import (
    AlreadyRegisteredError,
    Brama,
    CircuitState,
    ConfigError,
    EventType,
    NotFoundError,
    Permit,
)
from brama.testing import FakeClock, flush_events
from tests.helpers import drain
from tests.hypothesis_profiles import scaled

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
LEGACY = "legacy"  # an outcome reported by plain success() / failure(): it owns no permit
EPSILON = 1e-9  # FakeClock fires timers due up to target + 1e-9 (documented float slack)
START_TIME = 1_000_000.0
NEVER = 1e9  # hibernate_after that never elapses within one example

# The same identifier in two scopes is two connections.
KEYS = [(None, "a"), (None, "b"), ("s", "a")]

# -- strategies --------------------------------------------------------------------------

seconds = st.integers(1, 10).map(float)
CONNECTION_OPTIONS = {
    "max_attempts": st.integers(1, 4),
    "expiry": seconds,
    "expiry_strategy": st.sampled_from(["fixed", "progressive"]),
    "initial_expiry": seconds,
    "max_expiry": st.integers(1, 40).map(float),
    "backoff_factor": st.sampled_from([1.0, 1.5, 2.0]),
    "half_open_max_calls": st.integers(1, 3),
    "success_threshold": st.integers(1, 3),
}
connection_options = st.fixed_dictionaries({}, optional=CONNECTION_OPTIONS)
start_options = st.fixed_dictionaries(
    {
        "max_attempts": st.integers(1, 4),
        "expiry": seconds,
        "expiry_strategy": st.sampled_from(["fixed", "progressive"]),
        "backoff_factor": st.sampled_from([1.0, 1.5, 2.0]),
        "half_open_max_calls": st.integers(1, 3),
        "success_threshold": st.integers(1, 3),
    }
)
keys = st.sampled_from(KEYS)
advances = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0])
reasons = st.sampled_from([None, "timeout", 500])


# -- the reference model -------------------------------------------------------------------


@dataclasses.dataclass
class Conn:
    """The model of one connection (API.md, "The state machine")."""

    overrides: dict[str, Any]
    registered_at: float
    type: str = "general"
    state: str = CLOSED
    failure_count: int = 0
    step: int = 0  # n of the progressive formula: openings since the circuit last closed
    opened_at: float | None = None
    deadline: float | None = None  # when the open circuit goes half-open on its timer
    current_expiry: float | None = None  # the current opening's length (open and half-open)
    disabled: bool = False
    half_open_successes: int = 0
    permits: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (id, deadline)
    next_permit: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0
    last_failure: float | None = None
    last_success: float | None = None
    # impl decision: last_state_change is None until the first state change.
    last_state_change: float | None = None
    # the rate policies' sliding window: (second, failed, slow) of each call recorded while
    # closed, oldest first; None until a call is recorded, and again once the circuit closes
    window: list[tuple[int, bool, bool]] | None = None


class Reference:
    """The reference model: connections, option layers, the clock and STATE_CHANGE events."""

    def __init__(self, start: dict[str, Any], now: float) -> None:
        self.start = dict(start)
        self.runtime: dict[str, Any] = {}
        self.conns: dict[tuple[str | None, str], Conn] = {}
        self.now = now
        # (scope, id, prev, new, rule): rule names what opened a closed circuit, else None
        self.changes: list[tuple[str | None, str, str, str, str | None]] = []

    # options (API.md "Configuration": per-connection > runtime configure > start > defaults;
    # initial_expiry defaults to expiry, max_expiry to 10 x expiry)

    def options(self, overrides: dict[str, Any], runtime: dict[str, Any] | None = None) -> dict:
        merged = {**self.start, **(self.runtime if runtime is None else runtime), **overrides}
        merged.setdefault("initial_expiry", merged["expiry"])
        merged.setdefault("max_expiry", merged["expiry"] * 10.0)
        return merged

    @staticmethod
    def valid(options: dict[str, Any]) -> bool:
        """ConfigError unless max_expiry >= initial_expiry, a slow-call rate threshold comes
        with a slow-call duration, and a count window can hold minimum_calls."""
        if options.get("slow_call_rate_threshold") is not None and (
            options.get("slow_call_duration") is None
        ):
            return False
        # a count window holds at most window_size calls: a larger minimum could never judge
        if options.get("window_type", "count") == "count" and (
            options.get("minimum_calls", 10) > (options.get("window_size") or 100)
        ):
            return False
        return options["max_expiry"] >= options["initial_expiry"]

    def opts(self, key: tuple[str | None, str]) -> dict[str, Any]:
        return self.options(self.conns[key].overrides)

    def next_expiry(self, conn: Conn) -> float:
        """Length of opening number `conn.step` (API.md "Progressive expiry")."""
        o = self.options(conn.overrides)
        if o["expiry_strategy"] != "progressive":
            return o["expiry"]
        return min(o["max_expiry"], o["initial_expiry"] * float(o["backoff_factor"]) ** conn.step)

    def status_expiry(self, conn: Conn) -> float:
        """status().expiry: current opening while open / half-open, else the next one."""
        if conn.state != CLOSED:
            assert conn.current_expiry is not None
            return conn.current_expiry
        return self.next_expiry(conn)

    # transitions

    def _change(self, key: tuple[str | None, str], conn: Conn, new: str,
                rule: str | None = None) -> None:
        if conn.state != new:
            self.changes.append((key[0], key[1], conn.state, new, rule))
            conn.last_state_change = self.now
        conn.state = new

    # the rate policies (docs/api.md "Rate policies")

    @staticmethod
    def windowed(o: dict[str, Any]) -> bool:
        return o.get("failure_rate_threshold") is not None or (
            o.get("slow_call_duration") is not None)

    def in_window(self, conn: Conn, o: dict[str, Any]) -> list[tuple[int, bool, bool]]:
        """The calls the window holds now: the last window_size calls, or those of the
        seconds of the last window_size seconds (one bucket per second)."""
        if conn.window is None:
            return []
        if o.get("window_type", "count") == "time":
            oldest = int(self.now // 1) - int(o.get("window_size") or 60) + 1
            return [call for call in conn.window if call[0] >= oldest]
        return conn.window[-int(o.get("window_size") or 100):]

    def rates(self, conn: Conn, o: dict[str, Any]) -> tuple[int, float | None, float | None]:
        """(calls in the window, failure rate, slow-call rate): rates None below
        minimum_calls; the slow-call rate None without a slow_call_duration."""
        calls = self.in_window(conn, o)
        if len(calls) < o.get("minimum_calls", 10):
            return len(calls), None, None
        failed = sum(1 for call in calls if call[1]) / len(calls)
        slow = sum(1 for call in calls if call[2]) / len(calls)
        return len(calls), failed, slow if o.get("slow_call_duration") is not None else None

    def record(self, key: tuple[str | None, str], failed: bool, duration: float | None) -> None:
        """A call's outcome enters the window of a closed circuit."""
        conn, o = self.conns[key], self.opts(key)
        if not self.windowed(o):
            conn.window = None
            return
        limit = o.get("slow_call_duration")
        slow = duration is not None and limit is not None and duration >= limit
        conn.window = [*(conn.window or []), (int(self.now // 1), failed, slow)]

    def broken(self, key: tuple[str | None, str]) -> str | None:
        """The rate rule the window breaks now (the failure rate is judged first)."""
        conn, o = self.conns[key], self.opts(key)
        if not self.windowed(o):
            return None
        _, failed, slow = self.rates(conn, o)
        threshold = o.get("failure_rate_threshold")
        if threshold is not None and failed is not None and failed >= threshold:
            return "failure_rate"
        threshold = o.get("slow_call_rate_threshold")
        if threshold is not None and slow is not None and slow >= threshold:
            return "slow_call_rate"
        return None

    def open(self, key: tuple[str | None, str], expires_in: float | None = None,
             rule: str | None = None) -> None:
        conn = self.conns[key]
        expiry = self.next_expiry(conn) if expires_in is None else float(expires_in)
        expiry = expiry if expiry > 0 else 0.0
        # impl decision: every opening (manual too, even with expires_in, even re-opening an
        # open circuit) advances the backoff step; a re-open gets a new opened_at / deadline
        # and emits no STATE_CHANGE.
        conn.step += 1
        conn.opened_at = self.now
        conn.deadline = None if conn.disabled else self.now + expiry
        conn.current_expiry = expiry
        conn.half_open_successes = 0
        conn.permits = []
        self._change(key, conn, OPEN, rule)

    def half_open(self, key: tuple[str | None, str]) -> None:
        conn = self.conns[key]
        conn.deadline = None
        conn.half_open_successes = 0
        conn.permits = []
        self._change(key, conn, HALF_OPEN)

    def close(self, key: tuple[str | None, str], *, clear_disabled: bool) -> None:
        conn = self.conns[key]
        conn.failure_count = 0
        conn.step = 0
        conn.opened_at = None
        conn.deadline = None
        conn.current_expiry = None
        if clear_disabled:
            conn.disabled = False
        conn.half_open_successes = 0
        conn.permits = []
        conn.window = None  # a closed circuit starts a new window
        self._change(key, conn, CLOSED)

    # operations

    @staticmethod
    def take_permit(conn: Conn, ticket: int | str) -> bool:
        """In half-open: does this outcome hold a permit of this half-open period? It takes it.
        A plain report (LEGACY) returns the oldest permit and always counts as a trial; a
        call's ticket only when that very permit is still out."""
        if ticket == LEGACY:
            conn.permits = conn.permits[1:]
            return True
        for index, (permit_id, _) in enumerate(conn.permits):
            if permit_id == ticket:
                del conn.permits[index]
                return True
        return False

    def success(self, key: tuple[str | None, str], ticket: int | str = LEGACY,
                duration: float | None = None) -> None:
        conn = self.conns[key]
        conn.successes += 1
        conn.last_success = self.now
        if conn.state == CLOSED:
            conn.failure_count = 0
            self.record(key, False, duration)
            if (rule := self.broken(key)) is not None:
                self.open(key, rule=rule)
        elif conn.state == HALF_OPEN and self.take_permit(conn, ticket):
            conn.half_open_successes += 1
            if conn.half_open_successes >= self.opts(key)["success_threshold"]:
                # impl decision: expiry_disabled survives a close by success threshold.
                self.close(key, clear_disabled=False)
        # open, or a call admitted before this half-open period: totals and
        # last_success_time only.

    def failure(self, key: tuple[str | None, str], ticket: int | str = LEGACY,
                duration: float | None = None) -> None:
        conn = self.conns[key]
        conn.failures += 1
        conn.last_failure = self.now
        if conn.state == OPEN or (conn.state == HALF_OPEN and not self.take_permit(conn, ticket)):
            return  # late answer: totals and last_failure_time only
        # impl decision: in half-open failure_count keeps the count that opened the circuit
        # (so a half-open failure adds one to it).
        conn.failure_count += 1
        if conn.state == HALF_OPEN:
            self.open(key)
            return
        self.record(key, True, duration)
        if conn.failure_count >= self.opts(key)["max_attempts"]:
            self.open(key, rule="max_attempts")  # the consecutive rule is judged first
        elif (rule := self.broken(key)) is not None:
            self.open(key, rule=rule)

    def acquire(self, key: tuple[str | None, str]) -> int | None:
        """`acquire`'s ticket: -1 admitted closed, a permit id in half-open, None refused."""
        conn = self.conns[key]
        if conn.state == CLOSED:
            return -1
        if not self.available(key):
            return None
        return conn.permits[-1][0]

    def release(self, key: tuple[str | None, str], ticket: int) -> None:
        """A call ends without an outcome: its permit (if still out) comes back at once."""
        conn = self.conns[key]
        if conn.state == HALF_OPEN:
            self.take_permit(conn, ticket)

    def available(self, key: tuple[str | None, str]) -> bool:
        conn = self.conns.get(key)
        if conn is None:
            return False
        if conn.state == CLOSED:
            return True
        if conn.state == HALF_OPEN and len(conn.permits) < self.opts(key)["half_open_max_calls"]:
            assert conn.current_expiry is not None
            # a permit not reported comes back after status().expiry seconds
            conn.permits.append((conn.next_permit, self.now + conn.current_expiry))
            conn.next_permit += 1
            return True
        conn.rejected += 1
        return False

    def reset_expiry(self, key: tuple[str | None, str]) -> None:
        conn = self.conns[key]
        conn.disabled = False
        if conn.state == OPEN:
            self.half_open(key)

    def set_expiry(self, key: tuple[str | None, str], value: float) -> None:
        conn = self.conns[key]
        # impl decision: set_expiry sets both expiry and initial_expiry of the connection.
        conn.overrides.update(expiry=value, initial_expiry=value)
        conn.disabled = False
        if conn.state == HALF_OPEN:
            conn.current_expiry = value  # impl decision: also the current half-open length
        elif conn.state == OPEN:
            assert conn.opened_at is not None
            remaining = conn.opened_at + value - self.now
            conn.current_expiry = value
            if remaining <= 0:
                # impl decision: a recomputed deadline already reached expires at once
                # (no wait for the next timer tick).
                self.half_open(key)
            else:
                conn.deadline = self.now + remaining

    def disable_expiry(self, key: tuple[str | None, str]) -> None:
        conn = self.conns[key]
        conn.disabled = True
        if conn.state == OPEN:
            conn.deadline = None

    def next_deadline(self) -> float | None:
        deadlines = [c.deadline for c in self.conns.values() if c.deadline is not None]
        deadlines += [d for c in self.conns.values() for _, d in c.permits]
        return min(deadlines, default=None)

    def advance(self, seconds: float) -> None:
        """FakeClock.advance: every timer due by the target fires at its own deadline."""
        target = self.now + seconds
        limit = target + EPSILON
        due: list[tuple[float, int, tuple[str | None, str], int | None]] = []
        for key, conn in self.conns.items():
            if conn.state == OPEN and conn.deadline is not None and conn.deadline <= limit:
                due.append((conn.deadline, 0, key, None))
            for permit_id, deadline in conn.permits:
                if deadline <= limit:
                    due.append((deadline, 1, key, permit_id))
        # An expiry leaves a half-open circuit with no permits, and permit timeouts arm
        # nothing, so no timer fired here schedules another one due in this same advance.
        for deadline, _, key, permit_id in sorted(due, key=lambda d: d[0]):
            self.now = max(self.now, deadline)
            conn = self.conns[key]
            if permit_id is None:
                self.half_open(key)  # EXPIRY: open -> half_open on its own timer
            else:
                conn.permits = [p for p in conn.permits if p[0] != permit_id]
        self.now = max(self.now, target)


# -- the state machine -----------------------------------------------------------------------


class BramaModel(RuleBasedStateMachine):
    """Random operations on a Brama on a FakeClock, checked against `Reference`."""

    hibernate_after: float | None = NEVER  # None: the default (5.0), so actors hibernate
    connection_options = connection_options  # what register and configure draw from
    configure_options = connection_options  # what a global configure draws from
    durations: st.SearchStrategy[float | None] = st.none()  # of reported calls

    def __init__(self) -> None:
        super().__init__()
        self.system: Brama | None = None

    @initialize(start=start_options, data=st.data())
    def start(self, start: dict[str, Any], data: st.DataObject) -> None:
        self.clock = FakeClock(START_TIME)
        options = dict(start, inactive_threshold=86_400.0, cleanup_interval=10.0)
        if self.hibernate_after is not None:
            options["hibernate_after"] = self.hibernate_after
        self.system = Brama(clock=self.clock, **options)
        self.model = Reference(start, START_TIME)
        # calls not ended yet: the connection, the permit, and its ticket in the model (the
        # system draws each registration's permit ids from a range of its own)
        self.held: list[tuple[tuple[str | None, str], Permit, int]] = []
        # STATE_CHANGE only: wanting SUCCESS would switch off the success fast path.
        self.changes = self.system.subscribe(events=[EventType.STATE_CHANGE])
        # Start with every connection registered, so the steps exercise circuits rather than
        # NotFoundError; the unregister / register rules still churn them.
        for key in KEYS:
            self.register(key, data)

    def teardown(self) -> None:
        if self.system is not None:
            self.system.stop()

    # rules

    @rule(key=keys, options=st.data())
    def register(self, key: tuple[str | None, str], options: st.DataObject) -> None:
        scope, identifier = key
        opts = options.draw(self.connection_options)
        valid = self.model.valid(self.model.options(opts))
        if key in self.model.conns:
            # API.md does not rank the two errors when both apply; either is a refusal.
            expected = AlreadyRegisteredError if valid else (AlreadyRegisteredError, ConfigError)
            with pytest.raises(expected):
                self.system.register(identifier, scope=scope, **opts)
            return
        if not valid:
            with pytest.raises(ConfigError):
                self.system.register(identifier, scope=scope, **opts)
            return
        status = self.system.register(identifier, scope=scope, **opts)
        self.model.conns[key] = Conn(overrides=dict(opts), registered_at=self.model.now)
        self.check_status(key, status)

    # Unregistering while another connection is missing would mostly produce NotFoundError
    # steps; one missing connection at a time keeps the unknown-connection paths covered.
    @precondition(lambda self: self.system is not None and len(self.model.conns) == len(KEYS))
    @rule(key=keys)
    def unregister(self, key: tuple[str | None, str]) -> None:
        self.system.unregister(key[1], scope=key[0])  # unknown connections are ignored
        self.model.conns.pop(key, None)
        self.held = [held for held in self.held if held[0] != key]  # abandoned

    @rule(key=keys, data=st.data())
    def success(self, key: tuple[str | None, str], data: st.DataObject) -> None:
        duration = data.draw(self.durations)
        if key not in self.model.conns:
            with pytest.raises(NotFoundError):
                self.system.success(key[1], scope=key[0], duration=duration)
            return
        self.system.success(key[1], scope=key[0], duration=duration)
        self.model.success(key, duration=duration)

    @rule(key=keys, reason=reasons, data=st.data())
    def failure(self, key: tuple[str | None, str], reason: Any, data: st.DataObject) -> None:
        duration = data.draw(self.durations)
        if key not in self.model.conns:
            with pytest.raises(NotFoundError):
                self.system.failure(key[1], scope=key[0], reason=reason, duration=duration)
            return
        self.system.failure(key[1], scope=key[0], reason=reason, duration=duration)
        self.model.failure(key, duration=duration)

    @rule(key=keys)
    def acquire(self, key: tuple[str | None, str]) -> None:
        """A call that owns its admission (what the decorator and guard do)."""
        if key not in self.model.conns:
            with pytest.raises(NotFoundError):
                self.system.acquire(key[1], scope=key[0])
            return
        expected = self.model.acquire(key)
        permit = self.system.acquire(key[1], scope=key[0])
        if expected is None:
            assert permit is None
            return
        assert permit is not None and permit.trial is (expected >= 0), (permit, expected)
        self.held.append((key, permit, expected))

    @precondition(lambda self: self.system is not None and bool(self.held))
    @rule(index=st.integers(0, 7), end=st.sampled_from(["success", "failure", "release"]),
          data=st.data())
    def end_call(self, index: int, end: str, data: st.DataObject) -> None:
        """One of the calls in flight ends; only its own permit is returned or counted."""
        key, permit, ticket = self.held.pop(index % len(self.held))
        if end == "release":
            permit.release()
            self.model.release(key, ticket)
            return
        duration = data.draw(self.durations)
        getattr(permit, end)(duration=duration)
        getattr(self.model, end)(key, ticket, duration)

    @rule(key=keys)
    def available(self, key: tuple[str | None, str]) -> None:
        expected = self.model.available(key)
        assert self.system.available(key[1], scope=key[0]) is expected

    @rule(key=keys, outcome=st.sampled_from(["success", "failure", "unreported"]))
    def guarded_call(self, key: tuple[str | None, str], outcome: str) -> None:
        """What a client of the plain API does: ask, and report the outcome only if the call
        went ahead (the report returns the oldest permit, whoever holds it)."""
        expected = self.model.available(key)
        assert self.system.available(key[1], scope=key[0]) is expected
        if not expected or outcome == "unreported":
            return  # an unreported half-open permit comes back on its timeout
        getattr(self.system, outcome)(key[1], scope=key[0])
        getattr(self.model, outcome)(key)

    @rule(key=keys, count=st.integers(2, 4))
    def burst_of_available(self, key: tuple[str | None, str], count: int) -> None:
        """Several callers at once: in half-open only half_open_max_calls get a permit."""
        for _ in range(count):
            expected = self.model.available(key)
            assert self.system.available(key[1], scope=key[0]) is expected

    @rule(key=keys, expires_in=st.one_of(st.none(), seconds))
    def open_circuit(self, key: tuple[str | None, str], expires_in: float | None) -> None:
        if key not in self.model.conns:
            with pytest.raises(NotFoundError):
                self.system.open_circuit(key[1], scope=key[0], expires_in=expires_in)
            return
        self.system.open_circuit(key[1], scope=key[0], reason="manual", expires_in=expires_in)
        self.model.open(key, expires_in)

    @rule(key=keys)
    def close_circuit(self, key: tuple[str | None, str]) -> None:
        if self.check_known(key, self.system.close_circuit):
            self.model.close(key, clear_disabled=True)

    @rule(key=keys)
    def reset_circuit(self, key: tuple[str | None, str]) -> None:
        if self.check_known(key, self.system.reset_circuit):
            self.model.close(key, clear_disabled=True)

    @rule(key=keys)
    def reset_expiry(self, key: tuple[str | None, str]) -> None:
        if self.check_known(key, self.system.reset_expiry):
            self.model.reset_expiry(key)

    @rule(key=keys)
    def disable_expiry(self, key: tuple[str | None, str]) -> None:
        if self.check_known(key, self.system.disable_expiry):
            self.model.disable_expiry(key)

    @rule(key=keys, value=seconds)
    def set_expiry(self, key: tuple[str | None, str], value: float) -> None:
        if key not in self.model.conns:
            with pytest.raises(NotFoundError):
                self.system.set_expiry(key[1], value, scope=key[0])
            return
        conn = self.model.conns[key]
        candidate = {**conn.overrides, "expiry": value, "initial_expiry": value}
        if not self.model.valid(self.model.options(candidate)):
            with pytest.raises(ConfigError):
                self.system.set_expiry(key[1], value, scope=key[0])
            return
        self.system.set_expiry(key[1], value, scope=key[0])
        self.model.set_expiry(key, value)

    @rule(key=keys, options=st.data())
    def configure_connection(self, key: tuple[str | None, str], options: st.DataObject) -> None:
        opts = options.draw(self.configure_options)
        if key not in self.model.conns:
            with pytest.raises(NotFoundError):
                self.system.configure(key[1], scope=key[0], **opts)
            return
        conn = self.model.conns[key]
        if not self.model.valid(self.model.options({**conn.overrides, **opts})):
            with pytest.raises(ConfigError):
                self.system.configure(key[1], scope=key[0], **opts)
            return
        self.system.configure(key[1], scope=key[0], **opts)
        conn.overrides.update(opts)

    @rule(data=st.data())
    def configure_global(self, data: st.DataObject) -> None:
        options = data.draw(self.configure_options)
        runtime = {**self.model.runtime, **options}
        ok = self.model.valid(self.model.options({}, runtime)) and all(
            self.model.valid(self.model.options(c.overrides, runtime))
            for c in self.model.conns.values()
        )
        if not ok:
            with pytest.raises(ConfigError):
                self.system.configure(**options)
            return
        self.system.configure(**options)
        self.model.runtime = runtime

    @rule(seconds=advances)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.advance(seconds)

    @precondition(lambda self: self.system is not None and self.model.next_deadline() is not None)
    @rule(offset=st.sampled_from([-0.5, 0.0, 0.5]))
    def advance_to_next_deadline(self, offset: float) -> None:
        """Land exactly on (or just around) the next timer: the boundary cases."""
        deadline = self.model.next_deadline()
        assert deadline is not None
        seconds = max(0.0, deadline - self.model.now + offset)
        self.clock.advance(seconds)
        self.model.advance(seconds)

    def check_known(self, key: tuple[str | None, str], method: Any) -> bool:
        if key not in self.model.conns:
            with pytest.raises(NotFoundError):
                method(key[1], scope=key[0])
            return False
        method(key[1], scope=key[0])
        return True

    # the check after every step

    def check_status(self, key: tuple[str | None, str], status: Any) -> None:
        m = self.model
        conn = m.conns[key]
        o = m.opts(key)
        outcomes = conn.successes + conn.failures
        calls, failure_rate, slow_call_rate = m.rates(conn, o)
        expected = {
            "identifier": key[1],
            "scope": key[0],
            "type": conn.type,
            "state": CircuitState(conn.state),
            "failure_count": conn.failure_count,
            "max_attempts": o["max_attempts"],
            "expiry": m.status_expiry(conn),
            "expiry_strategy": o["expiry_strategy"],
            "initial_expiry": o["initial_expiry"],
            "max_expiry": o["max_expiry"],
            "backoff_factor": o["backoff_factor"],
            "half_open_max_calls": o["half_open_max_calls"],
            "success_threshold": o["success_threshold"],
            "opened_at": conn.opened_at,
            "last_failure_time": conn.last_failure,
            "last_success_time": conn.last_success,
            "last_state_change": conn.last_state_change,
            "registered_at": conn.registered_at,
            "expiry_disabled": conn.disabled,
            "total_successes": conn.successes,
            "total_failures": conn.failures,
            "rejected_calls": conn.rejected,
            "success_rate": conn.successes / outcomes if outcomes else None,
            "calls_in_window": calls,
            "failure_rate": failure_rate,
            "slow_call_rate": slow_call_rate,
        }
        actual = {name: getattr(status, name) for name in expected}
        assert actual == expected, {
            name: (actual[name], expected[name])
            for name in expected
            if actual[name] != expected[name]
        }

    @invariant()
    def matches_model(self) -> None:
        if self.system is None:
            return
        m = self.model
        assert self.clock.time() == m.now
        listed = {(s.scope, s.identifier) for s in self.system.connections()}
        assert listed == set(m.conns)
        for key in KEYS:
            if key not in m.conns:
                with pytest.raises(NotFoundError):
                    self.system.status(key[1], scope=key[0])
                continue
            self.check_status(key, self.system.status(key[1], scope=key[0]))
            in_use = self.system.status(key[1], scope=key[0]).half_open_permits_in_use
            assert in_use == len(m.conns[key].permits), (in_use, m.conns[key].permits)
        # Every state change, and only those, emitted STATE_CHANGE, in order per connection
        # (API.md orders the events of one connection; timers of different connections due
        # at the same instant may fire in either order).
        flush_events(system=self.system)
        seen = [
            (e.scope, e.connection, e.data["previous_state"], e.data["new_state"],
             e.data.get("rule"))
            for e in drain(self.changes)
        ]
        for key in {c[:2] for c in seen + m.changes}:
            mine = [c[2:] for c in seen if c[:2] == key]
            expected = [c[2:] for c in m.changes if c[:2] == key]
            assert mine == expected, (key, mine, expected)
        m.changes.clear()


class HibernatingBramaModel(BramaModel):
    """The same model with the default hibernate_after (5 s) and per-connection values, so
    idle closed connections give their thread back and wake on the next message."""

    hibernate_after = None
    connection_options = st.fixed_dictionaries(
        {},
        optional={
            **CONNECTION_OPTIONS,
            "hibernate_after": st.sampled_from([0.0, 1.0, 5.0]),
        },
    )
    configure_options = connection_options


MODEL_SETTINGS = settings(
    max_examples=scaled(1500),  # about 25 s here; most examples run all 30 steps
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.timeout(300)
def test_brama_matches_reference_model() -> None:
    run_state_machine_as_test(BramaModel, settings=MODEL_SETTINGS)


@pytest.mark.timeout(240)
def test_brama_matches_reference_model_with_hibernation() -> None:
    run_state_machine_as_test(
        HibernatingBramaModel,
        settings=settings(MODEL_SETTINGS, max_examples=scaled(300)),
    )


def test_reference_model_progressive_formula() -> None:
    """The model itself: 5 s -> 10 s -> 20 s ... capped at max_expiry (API.md)."""
    model = Reference(
        {"max_attempts": 1, "expiry": 5.0, "expiry_strategy": "progressive",
         "backoff_factor": 2.0, "half_open_max_calls": 1, "success_threshold": 1},
        0.0,
    )
    key = (None, "x")
    model.conns[key] = Conn(overrides={"max_expiry": 30.0}, registered_at=0.0)
    lengths = []
    model.failure(key)
    for _ in range(4):
        lengths.append(model.conns[key].current_expiry)
        model.reset_expiry(key)
        assert model.available(key)
        model.failure(key)
    assert lengths == [5.0, 10.0, 20.0, 30.0]
    model.reset_expiry(key)
    model.success(key)
    assert model.conns[key].state == CLOSED
    assert model.next_expiry(model.conns[key]) == 5.0
