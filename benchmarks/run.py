"""Benchmarks of Brama against pybreaker and circuitbreaker, in one process, interleaved.

    python benchmarks/run.py                 # the full run (a few minutes)
    python benchmarks/run.py --quick         # a smoke run (under a minute)
    python benchmarks/run.py --only guarded,failure --json results.json

Every case is a record in `CASES`: its contenders (loop builders), the reference contender of
its ratios, its sample size; every target is in `TARGETS`, once. Timed loops run with the GC
paused; contenders of one case run round-robin (A, B, C, A, B, C, ...) and the table shows
medians. "ratio" is a row's cost over its reference's, measured in the same run (time per
call, bytes per item, time per registration): below 1.0 the row is cheaper. See
benchmarks/README.md for what each case measures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from queue import Empty
from typing import Any

import circuitbreaker
import pybreaker
import pykka
from _util import (
    Arm,
    Env,
    Loop,
    Plan,
    arm_of,
    awake,
    boom,
    calls,
    calls_catching,
    fmt_ns,
    gc_paused,
    interleave,
    machine_info,
    machine_lines,
    median,
    noop,
    percentile,
    wait_until,
)

import brama
from brama import CircuitOpenError, Event, EventType
from brama.otp import Actor, EventBus, call

PASS, MISS, NA = "PASS", "MISS", "n/a"
HUGE = 10**9
"""max_attempts / fail_max / failure_threshold / expiry that is never reached."""
AWAKE = 3600.0
"""hibernate_after for connections whose actor must stay awake through a case."""

# -- targets: the one place where they are written --


@dataclass(frozen=True)
class Target:
    """PASS when the row's `on` ("ratio" or "value") compares to `limit` with `op`.

    `goal` is where the issue wants to get eventually (reported, not judged); `today` is the
    ratio recorded in the README before this run ("no worse than today"), also reported."""

    on: str
    op: str
    limit: float
    unit: str = ""
    goal: Target | None = None
    today: float | None = None

    def text(self) -> str:
        limit = f"{self.limit:,g}{self.unit}"
        return f"ratio {self.op} {limit}" if self.on == "ratio" else f"{self.op} {limit}"

    def met(self, row: Row) -> bool | None:
        got = row.ratio if self.on == "ratio" else row.value
        if got is None or got != got:
            return None
        if self.op == "≤":
            return got <= self.limit
        if self.op == "<":
            return got < self.limit
        return got >= self.limit


TARGETS: dict[str, Target] = {
    "guarded": Target("ratio", "≤", 1.0, today=0.34, goal=Target("ratio", "≤", 0.3)),
    "available": Target("ratio", "≤", 1.0, today=0.84),
    "rejection": Target("ratio", "≤", 0.6, goal=Target("ratio", "≤", 0.3)),
    "failure": Target("ratio", "≤", 2.0, goal=Target("ratio", "≤", 1.0)),
    "threads": Target("ratio", "≤", 1.0, today=0.08),
    "subscribe": Target("ratio", "≤", 2.0),
    "memory": Target("ratio", "≤", 1.1, goal=Target("value", "≤", 700, " B")),
    "register": Target("value", "≥", 100_000, "/s"),
    "threadcount": Target("value", "<", 1_000, " threads"),
    "expiry": Target("value", "≤", 50, " ms"),
    "fanout.rate": Target("value", "≥", 50_000, "/s"),
    "fanout.p99": Target("value", "≤", 50, " ms"),
}

# -- results --


@dataclass
class Row:
    contender: str
    value: float
    unit: str  # "ns" (per call), "B", "/s", "ms", "s", "threads", "count"
    spread: str = ""
    ratio: float | None = None
    target: str = ""
    verdict: str = ""
    samples: list[float] = field(default_factory=list)

    def shown_value(self) -> str:
        return _shown(self.value, self.unit)


def _shown(v: float, unit: str) -> str:
    if v != v:
        return NA
    if unit == "ns":
        return fmt_ns(v)
    if unit == "B":
        return f"{v:,.0f} B"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:,.0f}"


def _spread(values: list[float], unit: str) -> str:
    """p25 .. p75 of the samples (without the unit for rates and sizes)."""
    if len(values) < 2:
        return ""
    low, high = percentile(values, 25), percentile(values, 75)
    if unit == "ns":
        return f"{fmt_ns(low)} .. {fmt_ns(high)}"
    return f"{low:,.0f} .. {high:,.0f}"


def judge(row: Row, key: str) -> Row:
    """Give `row` the target `key` of TARGETS and its verdict."""
    target = TARGETS[key]
    row.target = target.text()
    met = target.met(row)
    row.verdict = NA if met is None else PASS if met else MISS
    return row


@dataclass
class Outcome:
    key: str
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# -- cases --


@dataclass(frozen=True)
class Contender:
    """One contender of a case: `build(env)` returns its loop (or an `Arm` with hooks).

    Compared contenders get a ratio against `vs` (default: the case's reference) and the
    case's target; the others are references and context. `scale`: a fraction of the case's
    sample size, for slow contenders."""

    label: str
    build: Callable[[Env], Arm | Loop]
    compared: bool = True
    vs: str | None = None
    scale: float = 1.0


def ours(label: str, build: Callable[[Env], Arm | Loop], *, vs: str | None = None,
         scale: float = 1.0) -> Contender:
    return Contender(label, build, True, vs, scale)


def peer(label: str, build: Callable[[Env], Arm | Loop], *, scale: float = 1.0) -> Contender:
    return Contender(label, build, False, None, scale)


@dataclass(frozen=True)
class Case:
    """A comparison: contenders sampled the same way, interleaved, in one table block.

    `measure` is "time" (ns per call, in `threads` threads at once) or "bytes" (bytes still
    allocated per item, tracemalloc after gc). `show` "/s" prints times as rates. `n` and
    `samples` are (full, quick); `samples` caps the samples per contender. `note` is
    formatted with n, samples and threads."""

    key: str
    title: str
    contenders: tuple[Contender, ...]
    n: tuple[int, int]
    ref: str | None = None
    target: str | None = None
    measure: str = "time"
    threads: int = 1
    show: str = "ns"
    samples: tuple[int, int] | None = None
    note: str = ""

    def run(self, plan: Plan, out: Outcome) -> None:
        env = Env(plan)
        try:
            n = plan.n(*self.n)
            samples = plan.samples if self.samples is None else min(
                plan.samples, plan.n(*self.samples))
            sizes: dict[str, int] = {}
            arms: dict[str, Arm] = {}
            for c in self.contenders:
                env.n = sizes[c.label] = max(1, int(n * c.scale))
                arms[c.label] = arm_of(c.build(env))
            if self.measure == "bytes":
                raw = _bytes_per_item(arms, sizes, samples)
            else:
                raw = interleave(arms, sizes, samples, self.threads)
            out.rows = [self._row(c, raw) for c in self.contenders]
            out.notes.append(self.note.format(n=n, samples=samples, threads=self.threads))
            scaled = [f"{c.label}: {sizes[c.label]:,}" for c in self.contenders if c.scale != 1]
            if scaled:
                out.notes.append("Smaller samples for the slow contenders: " + "; ".join(scaled))
            counted = [label for label, arm in arms.items() if arm.count is not None]
            if counted:
                out.notes.append(
                    f"Counted after every sample, exact each time: {'; '.join(counted)}"
                    " (the counter grew by exactly the number of calls).")
            out.notes.extend(env.reports())
            out.notes.extend(self._against_target(out.rows))
        finally:
            env.close()

    def _row(self, c: Contender, raw: dict[str, list[float]]) -> Row:
        unit = "B" if self.measure == "bytes" else self.show
        costs = raw[c.label]
        values = [1e9 / v for v in costs] if unit == "/s" else costs
        row = Row(c.label, median(values), unit, _spread(values, unit), samples=values)
        ref = c.vs or self.ref
        if c.compared and ref is not None:
            row.ratio = median(costs) / median(raw[ref])
            if self.target is not None:
                judge(row, self.target)
        return row

    def _against_target(self, rows: list[Row]) -> list[str]:
        """The goal and the figure recorded before, read on the first compared row."""
        if self.target is None:
            return []
        target = TARGETS[self.target]
        head = next((r for r in rows if r.verdict in (PASS, MISS)), None)
        if head is None:
            return []
        lines = []
        if target.today is not None and head.ratio is not None:
            verdict = "no worse" if head.ratio <= target.today else "worse"
            lines.append(f"No worse than today: ratio {target.today:g} recorded in the README;"
                         f" this run, {head.contender}: {head.ratio:.2f} ({verdict}).")
        if target.goal is not None:
            met = target.goal.met(head)
            shown = f"{head.ratio:.2f}" if target.goal.on == "ratio" else head.shown_value()
            lines.append(f"Goal {target.goal.text()}: {head.contender}: {shown}"
                         f" ({'met' if met else 'not yet'}).")
        return lines


@dataclass(frozen=True)
class Probe:
    """A measurement that is not a set of interleaved contenders (threads, clocks, fan-out):
    `body` fills the outcome's rows and notes, judged with `judge`."""

    key: str
    title: str
    body: Callable[[Plan, Outcome, Env], None]

    def run(self, plan: Plan, out: Outcome) -> None:
        env = Env(plan)
        try:
            self.body(plan, out, env)
        finally:
            env.close()


def _bytes_per_item(arms: dict[str, Arm], sizes: dict[str, int],
                    samples: int) -> dict[str, list[float]]:
    """Round-robin: bytes still allocated (tracemalloc, after gc) per item of `run(n)`, whose
    result is kept alive until measured; `before` / `after` run outside the trace."""
    results: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(samples):
        for name, arm in arms.items():
            n = sizes[name]
            if arm.before is not None:
                arm.before(n)
            try:
                gc.collect()
                tracemalloc.start()
                try:
                    base = tracemalloc.get_traced_memory()[0]
                    kept = arm.run(n)
                    gc.collect()
                    used = tracemalloc.get_traced_memory()[0] - base
                finally:
                    tracemalloc.stop()
                del kept
            finally:
                if arm.after is not None:
                    arm.after(n)
            results[name].append(used / n)
    return results


# -- contenders: Brama --


def _on(env: Env, shared: bool) -> brama.Brama:
    """The case's fresh default system, or its one standalone system."""
    return env.shared("system", env.system) if shared else env.default()


def deco(name: str, fn: Callable[[], Any] = noop, catch: type[BaseException] | None = None,
         *, system: bool = False, counted: bool = False, fallback: Callable[..., Any] | None = None,
         open_: bool = False, **options: Any) -> Callable[[Env], Arm]:
    """`fn` decorated with `@brama.circuit_breaker(name)` on the default system (or, with
    `system`, `system=` the case's standalone one), called n times."""

    def build(env: Env) -> Arm:
        target = _on(env, system)
        target.register(name, **options)
        if open_:
            target.open_circuit(name)
        wrapped = brama.circuit_breaker(name, fallback=fallback,
                                        system=target if system else None)(fn)
        loop = calls(wrapped) if catch is None else calls_catching(wrapped, catch)
        return Arm(loop, count=(lambda: target.status(name).total_successes) if counted else None)

    return build


def manual_success(name: str, *, module: bool = False, counted: bool = False,
                   open_: bool = False) -> Callable[[Env], Arm]:
    """`if available(name): f(); success(name)`, with the module functions (default system)
    or the methods of the case's standalone system."""

    def build(env: Env) -> Arm:
        system = _on(env, not module)
        if open_:
            system.register(name, expiry=AWAKE)
            system.open_circuit(name)
        else:
            system.register(name)
        if module:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    if brama.available(name):
                        noop()
                        brama.success(name)
        else:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    if system.available(name):
                        noop()
                        system.success(name)
        return Arm(loop, count=(lambda: system.status(name).total_successes) if counted else None)

    return build


def available_of(module: bool) -> Callable[[Env], Loop]:
    """`available(name)` on a closed circuit, one of 100 registered connections."""

    def build(env: Env) -> Loop:
        system = _on(env, not module)
        for ident in NAMES_100:
            system.register(ident)
        name = NAMES_100[37]
        if module:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    brama.available(name)
        else:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    system.available(name)
        return loop

    return build


NAMES_100 = [f"svc-{i}" for i in range(100)]


def manual_failure(env: Env) -> Loop:
    """`if system.available(): f() raises -> system.failure(reason)`, awake actor."""
    system = _on(env, True)
    system.register("manual", max_attempts=HUGE, hibernate_after=AWAKE)

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            if system.available("manual"):
                try:
                    boom()
                except ValueError as exc:
                    system.failure("manual", reason=repr(exc))

    def still_closed() -> str:
        state = system.status("manual")
        assert state.state is brama.CircuitState.CLOSED, state
        return (f"Manual connection after the samples: {state.total_failures:,} failures"
                " counted, still closed.")

    env.report(still_closed)
    return loop


def hibernated_failure(env: Env) -> Arm:
    """The manual failure loop, each report on a connection whose actor hibernated: fresh
    connections (hibernate_after=0) are woken by one failure each, then left to hibernate,
    all before the samples; every sample takes its connections from that pool and
    unregisters them afterwards (which stops the actors the reports woke)."""
    system = env.system()
    numbers = itertools.count()
    pool: list[str] = []
    current: list[str] = []
    batch = env.n * (env.plan.samples + 1)

    def refill(k: int) -> None:
        names = [f"hib-{next(numbers)}" for _ in range(max(k, batch))]
        for name in names:
            system.register(name, max_attempts=HUGE, hibernate_after=0.0)
            system.failure(name, reason="wake")
        if not wait_until(lambda: not any(awake(system, x) for x in names), timeout=30.0):
            raise RuntimeError("connections did not hibernate within 30 s")
        pool.extend(names)

    def before(k: int) -> None:
        if len(pool) < k:
            refill(k)
        current[:] = pool[:k]
        del pool[:k]

    def run(n: int) -> None:
        for name in current:
            if system.available(name):
                try:
                    boom()
                except ValueError as exc:
                    system.failure(name, reason=repr(exc))

    def after(k: int) -> None:
        for name in current:
            system.unregister(name)

    return Arm(run, before, after)


def _register_names(prefix: str) -> tuple[dict[str, Any], Callable[[int], None]]:
    """A holder for a fresh list of n names, made (untimed) by the returned `before`."""
    state: dict[str, Any] = {}

    def before(n: int) -> None:
        state["names"] = [f"{prefix}-{i:06d}" for i in range(n)]

    return state, before


def register_fresh(env: Env) -> Arm:
    """n registrations into a fresh system (created and stopped outside the timing)."""
    state, names = _register_names("conn")

    def before(n: int) -> None:
        names(n)
        state["system"] = brama.Brama()

    def run(n: int) -> None:
        system = state["system"]
        for name in state["names"]:
            system.register(name)

    def after(n: int) -> None:
        state.pop("system").stop()

    return Arm(run, before, after)


def memory_brama(env: Env) -> Arm:
    """n idle registered connections in a fresh system (one registered before the trace)."""
    state, names = _register_names("conn")

    def before(n: int) -> None:
        names(n)
        state["system"] = system = brama.Brama()
        system.register("warm-up")

    def run(n: int) -> None:
        system = state["system"]
        for name in state["names"]:
            system.register(name)

    def after(n: int) -> None:
        state.pop("system").stop()

    return Arm(run, before, after)


def subscriptions(existing: int, close: bool) -> Callable[[Env], Arm]:
    """n `system.subscribe()` (or n `.close()`) on a system that holds `existing` mailbox
    subscriptions; the other half of the pair runs untimed, so their number stays put."""

    def build(env: Env) -> Arm:
        system = env.shared(f"subs-{existing}", lambda: _subscribed(env, existing))
        made: list[Any] = []

        def subscribe(n: int) -> None:
            for _ in repeat(None, n):
                made.append(system.subscribe())

        def close_all(n: int) -> None:
            for sub in made:
                sub.close()
            made.clear()

        if close:
            return Arm(close_all, before=subscribe)
        return Arm(subscribe, after=close_all)

    return build


def _subscribed(env: Env, existing: int) -> brama.Brama:
    system = env.system()
    held = [system.subscribe() for _ in range(existing)]
    env.on_exit(held.clear)
    return system


# -- contenders: brama.otp --


class _Counting:
    """A handler that does a little work: counts the messages (and answers `_READ`)."""

    count = 0

    def on_receive(self, message: Any) -> Any:
        if message is _READ:
            return self.count
        self.count += 1
        return self.count


class _Counter(_Counting, Actor):
    """The handler in a `brama.otp.Actor`."""


class _PykkaCounter(_Counting, pykka.ThreadingActor):
    """The handler in a plain pykka actor."""

    use_daemon_thread = True


_READ = object()
_BUMP = object()


def otp_call(counted: bool) -> Callable[[Env], Arm]:
    """`brama.otp.call(ref, message)` to one `brama.otp.Actor`."""

    def build(env: Env) -> Arm:
        ref = _Counter.start()
        env.on_exit(ref.stop)

        def loop(n: int) -> None:
            for _ in repeat(None, n):
                call(ref, _BUMP)

        return Arm(loop, count=(lambda: call(ref, _READ)) if counted else None)

    return build


def plain_call(locked: bool) -> Callable[[Env], Arm]:
    """The same handler called as a plain method (under a `threading.Lock` if `locked`)."""

    def build(env: Env) -> Arm:
        counter = _Counting()
        if not locked:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    counter.on_receive(_BUMP)

            return Arm(loop)
        lock = threading.Lock()

        def guarded(message: Any) -> Any:
            with lock:
                return counter.on_receive(message)

        def locked_loop(n: int) -> None:
            for _ in repeat(None, n):
                guarded(_BUMP)

        return Arm(locked_loop, count=lambda: guarded(_READ))

    return build


def pykka_ask(env: Env) -> Loop:
    """pykka's `ref.ask(message)`: always a hand-off to the actor's thread."""
    ref = _PykkaCounter.start()
    env.on_exit(ref.stop)

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            ref.ask(_BUMP)

    return loop


# -- contenders: pybreaker and circuitbreaker --


def pb_deco(fn: Callable[[], Any] = noop, catch: type[BaseException] | None = None,
            *, open_: bool = False, **options: Any) -> Callable[[Env], Loop]:
    def build(env: Env) -> Loop:
        breaker = pybreaker.CircuitBreaker(name="bench", **options)
        if open_:
            breaker.open()
        wrapped = breaker(fn)
        return calls(wrapped) if catch is None else calls_catching(wrapped, catch)

    return build


def pb_call(env: Env) -> Loop:
    breaker = pybreaker.CircuitBreaker(name="bench")

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            breaker.call(noop)

    return loop


def pb_state(env: Env) -> Loop:
    breakers = {ident: pybreaker.CircuitBreaker(name=ident) for ident in NAMES_100}
    name, closed = NAMES_100[37], pybreaker.STATE_CLOSED

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            breakers[name].current_state == closed  # noqa: B015

    return loop


def cb_deco(fn: Callable[[], Any] = noop, catch: type[BaseException] | None = None,
            *, open_: bool = False, **options: Any) -> Callable[[Env], Loop]:
    def build(env: Env) -> Loop:
        if open_:  # opened by one failure
            breaker = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HUGE,
                                                    name="bench", **options)
            with contextlib.suppress(ValueError):
                breaker(boom)()
            assert breaker.opened, "circuitbreaker did not open"
            wrapped = breaker(fn)
        else:
            wrapped = circuitbreaker.CircuitBreaker(name="bench", **options)(fn)
        return calls(wrapped) if catch is None else calls_catching(wrapped, catch)

    return build


def cb_state(env: Env) -> Loop:
    breakers = {ident: circuitbreaker.CircuitBreaker(name=ident) for ident in NAMES_100}
    name = NAMES_100[37]

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            breakers[name].closed  # noqa: B018

    return loop


def pb_into_dict(env: Env) -> Arm:
    """n pybreaker breakers built into a dict (kept by `run`'s result)."""
    state, names = _register_names("conn")

    def run(n: int) -> dict[str, Any]:
        return {name: pybreaker.CircuitBreaker(name=name) for name in state["names"]}

    return Arm(run, before=names)


def cb_into_dict(env: Env) -> Arm:
    state, names = _register_names("conn")

    def run(n: int) -> dict[str, Any]:
        return {name: circuitbreaker.CircuitBreaker(name=name) for name in state["names"]}

    return Arm(run, before=names)


# -- probes --


def probe_threadcount(plan: Plan, out: Outcome, env: Env) -> None:
    """Threads while 100,000 idle connections are registered, and after."""
    count, limit, window = 100_000, TARGETS["threadcount"].limit, 15.0
    names = [f"conn-{i:06d}" for i in range(count)]
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    before = threading.active_count()

    def sampler(t0: float) -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - t0, threading.active_count() - 1))
            stop.wait(0.005)

    system = brama.Brama()
    try:
        t0 = time.monotonic()
        watcher = threading.Thread(target=sampler, args=(t0,), daemon=True)
        watcher.start()
        start = time.perf_counter_ns()
        for name in names:
            system.register(name)
        reg_s = (time.perf_counter_ns() - start) / 1e9
        wait_until(lambda: threading.active_count() - 1 < limit, timeout=window, poll=0.05)
        final = threading.active_count() - 1
        elapsed = time.monotonic() - t0
        stop.set()
        watcher.join()
        peak = max(c for _, c in samples)
        out.rows.append(judge(Row("max threads while registering and after", peak,
                                  "threads"), "threadcount"))
        out.rows.append(judge(Row(f"threads at the end (after {elapsed:.2f} s)", final,
                                  "threads"), "threadcount"))
        out.rows.append(Row(f"time to register {count:,}", reg_s, "s"))
        out.notes.append(
            f"Default options; threading.active_count() sampled every 5 ms ({len(samples)}"
            " samples; the sampler thread itself is not counted); waited up to"
            f" {window:g} s for the count to drop below {limit:,.0f}; {before} thread(s)"
            " before the system started."
        )
        out.extra["thread_samples"] = samples[:: max(1, len(samples) // 200)]
    finally:
        stop.set()
        t = time.perf_counter()
        system.stop()
        out.notes.append(f"stop() with {count:,} connections took {time.perf_counter() - t:.2f} s")


def probe_expiry(plan: Plan, out: Outcome, env: Env) -> None:
    """Lateness of CIRCUIT_HALF_OPENED after open_circuit, real clock."""
    circuits = 100
    rounds = 1 if plan.quick else 3
    by_stamp: list[float] = []
    by_receipt: list[float] = []
    missing = 0
    for r in range(rounds):
        system = env.system()
        expiries = {f"exp-{r}-{i:03d}": 0.05 + 0.45 * i / (circuits - 1) for i in range(circuits)}
        for name, expiry in expiries.items():
            system.register(name, expiry=expiry)
        sub = system.subscribe(events=[EventType.CIRCUIT_HALF_OPENED])
        received: list[tuple[Event, float]] = []

        def consume(sub: Any = sub, received: list[tuple[Event, float]] = received) -> None:
            while len(received) < circuits:
                try:
                    event = sub.get(timeout=3.0)
                except Empty:
                    return
                received.append((event, time.time()))

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        due: dict[str, float] = {}
        for name, expiry in expiries.items():
            system.open_circuit(name)
            opened_at = system.status(name).opened_at
            assert opened_at is not None
            due[name] = opened_at + expiry
        consumer.join(timeout=10.0)
        sub.close()
        seen = set()
        for event, got_at in received:
            seen.add(event.connection)
            by_stamp.append((event.timestamp - due[event.connection]) * 1000)
            by_receipt.append((got_at - due[event.connection]) * 1000)
        missing += circuits - len(seen)
        system.stop()

    for label, values in (("timer lateness (event timestamp - due)", by_stamp),
                          ("delivery lateness (receipt - due)", by_receipt)):
        for stat, q in (("median", 50.0), ("p99", 99.0)):
            out.rows.append(Row(f"{label}: {stat}", percentile(values, q), "ms"))
        worst = max(values) if values else float("nan")
        out.rows.append(judge(Row(f"{label}: max", worst, "ms"), "expiry"))
    if missing:
        out.rows[-1].verdict = MISS
    out.notes.append(
        f"{rounds} round(s) x {circuits} circuits, expiries 50-500 ms, opened with"
        " open_circuit; due = status().opened_at + expiry; a mailbox subscription to"
        f" CIRCUIT_HALF_OPENED read in its own thread. Events missing: {missing}."
        f" Earliest: {min(by_stamp, default=float('nan')):.2f} ms (negative = early)."
    )


def _read_all(subs: list[Any], expected: int) -> Callable[[], list[list[tuple[Any, int]]]]:
    """One reader thread per subscription, each taking `expected` events with `get()` and
    stamping them (perf_counter_ns); returns a function that joins them and gives what each
    got. Readers are started and waiting when this returns."""
    got: list[list[tuple[Any, int]]] = [[] for _ in subs]
    ready = threading.Barrier(len(subs) + 1)

    def consume(sub: Any, into: list[tuple[Any, int]]) -> None:
        clock = time.perf_counter_ns
        ready.wait()
        while len(into) < expected:
            try:
                event = sub.get(timeout=1.0)
            except Empty:
                return
            into.append((event, clock()))

    readers = [threading.Thread(target=consume, args=(s, g), daemon=True)
               for s, g in zip(subs, got, strict=True)]
    for t in readers:
        t.start()
    ready.wait()

    def join() -> list[list[tuple[Any, int]]]:
        for t in readers:
            t.join(timeout=30.0)
        return got

    return join


def _fanout_figures(got: list[list[tuple[Any, int]]], start: int, expected: int,
                    latencies: list[float], dropped: int) -> dict[str, Any]:
    total = sum(len(into) for into in got)
    last = max((into[-1][1] for into in got if into), default=start + 1)
    per_sub = [len(into) / ((into[-1][1] - start) / 1e9) for into in got if into]
    return {
        "deliveries": total,
        "expected": expected,
        "dropped": dropped,
        "elapsed_s": (last - start) / 1e9,
        "deliveries_per_s": total / ((last - start) / 1e9),
        "per_subscriber_per_s": median(per_sub) if per_sub else 0.0,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        },
    }


def _bus_run(events: list[Event], subscribers: int,
             pace: tuple[int, float] | None) -> dict[str, Any]:
    """Publish `events` on a standalone `brama.otp.EventBus` (the class and defaults of a
    system's bus) to `subscribers` mailboxes read by one thread each. `pace` = (batch size,
    seconds between batches), or None for as fast as possible."""
    bus = EventBus(name="bench-fanout")
    try:
        subs = [bus.subscribe() for _ in range(subscribers)]
        join = _read_all(subs, len(events))
        sent = [0] * len(events)
        topic, clock = EventType.FAILURE, time.perf_counter_ns
        start = clock()
        if pace is None:
            for i, event in enumerate(events):
                sent[i] = clock()
                bus.publish(topic, event)
        else:
            batch, gap = pace
            next_at = time.perf_counter()
            for first in range(0, len(events), batch):
                for i in range(first, min(first + batch, len(events))):
                    sent[i] = clock()
                    bus.publish(topic, events[i])
                next_at += gap
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        got = join()
        dropped = sum(s.dropped for s in subs)
        latencies = [(at - sent[e.data["seq"]]) / 1e6 for into in got for e, at in into]
        return _fanout_figures(got, start, len(events) * subscribers, latencies, dropped)
    finally:
        bus.stop()


def _failures_run(env: Env, count: int, subscribers: int) -> dict[str, Any]:
    """End to end: `system.failure()` reports on a closed circuit, each a FAILURE event, to
    `subscribers` mailbox subscriptions of the system (`system.subscribe(events=...)`)."""
    system = env.system()
    system.register("fanout", max_attempts=HUGE, hibernate_after=AWAKE)
    subs = [system.subscribe(events=[EventType.FAILURE]) for _ in range(subscribers)]
    join = _read_all(subs, count)
    start_wall, start = time.time(), time.perf_counter_ns()
    for _ in repeat(None, count):
        system.failure("fanout", reason="boom")
    got = join()
    # latency: event timestamp (the actor's wall clock) -> get(), on the wall clock
    offset = start_wall - start / 1e9
    latencies = [(at / 1e9 + offset - e.timestamp) * 1000 for into in got for e, at in into]
    figures = _fanout_figures(got, start, count * subscribers, latencies,
                              sum(s.dropped for s in subs))
    system.stop()
    return figures


def probe_fanout(plan: Plan, out: Outcome, env: Env) -> None:
    """Deliveries/s and latency of events to 10 mailbox subscribers."""
    subscribers = 10
    burst_n = plan.n(20_000, 5_000)
    rounds = 1 if plan.quick else 3
    rate, batch = 5_000, 25  # 5,000 events/s = 50,000 deliveries/s to 10 subscribers
    paced_n = plan.n(10_000, 5_000)
    e2e_n = plan.n(5_000, 2_000)

    def make_events(n: int) -> list[Event]:
        now = time.time()
        return [
            Event(EventType.FAILURE, now, f"conn-{i % 100}", None,
                  {"failure_count": 1 + i % 10, "reason": "ValueError('boom')", "seq": i})
            for i in range(n)
        ]

    with gc_paused():
        bursts = [_bus_run(make_events(burst_n), subscribers, None) for _ in range(rounds)]
        # 5,000 events/s is 50,000 deliveries/s to 10 subscribers; 50,000 events/s (500,000
        # deliveries/s) is the stricter reading of the target.
        paced = [(prate, _bus_run(make_events(paced_n * prate // rate), subscribers,
                                  (batch * prate // rate, batch / rate)))
                 for prate in (rate, 10 * rate)]
        e2e = _failures_run(env, e2e_n, subscribers)
    totals = [b["deliveries_per_s"] for b in bursts]
    p99s = [b["latency_ms"]["p99"] for b in bursts]
    per_sub = [b["per_subscriber_per_s"] for b in bursts]
    out.rows.append(judge(Row("burst: deliveries/s (all subscribers)", median(totals), "/s",
                              _spread(totals, "/s"), samples=totals), "fanout.rate"))
    out.rows.append(Row("burst: events/s per subscriber", median(per_sub), "/s",
                        samples=per_sub))
    out.rows.append(Row("burst: p99 latency (includes the backlog)", median(p99s), "ms",
                        samples=p99s))
    out.rows.append(Row("burst: events dropped (full mailboxes)",
                        sum(b["dropped"] for b in bursts), "count"))
    for prate, run in paced:
        lat = run["latency_ms"]
        label = f"paced {prate:,} ev/s"
        out.rows.append(Row(f"{label}: deliveries/s achieved", run["deliveries_per_s"], "/s"))
        out.rows.append(Row(f"{label}: p50 latency", lat["p50"], "ms"))
        out.rows.append(judge(Row(f"{label}: p99 latency", lat["p99"], "ms"), "fanout.p99"))
        out.rows.append(Row(f"{label}: max latency", lat["max"], "ms"))
        out.rows.append(Row(f"{label}: deliveries lost", run["expected"] - run["deliveries"],
                            "count"))
    lat = e2e["latency_ms"]
    out.rows.append(Row("end to end, system.failure() reports: deliveries/s",
                        e2e["deliveries_per_s"], "/s"))
    out.rows.append(Row("end to end: p99 latency (event timestamp -> get(), with backlog)",
                        lat["p99"], "ms"))
    out.rows.append(Row("end to end: deliveries lost", e2e["expected"] - e2e["deliveries"],
                        "count"))
    out.extra = {"bursts": bursts, "paced": {str(r): run for r, run in paced}, "e2e": e2e}
    out.notes.append(
        f"{subscribers} mailbox subscriptions (all events), each read by its own thread with"
        " get(), on a standalone brama.otp.EventBus (the class and defaults of a system's"
        " bus), publishing Event(FAILURE, ...) objects with EventBus.publish as connection"
        " actors do. A delivery = one event taken from one subscription by get()."
        " deliveries/s = all deliveries / (last get() - first publish); per subscriber = that"
        " subscription's deliveries / its own span."
        f" Burst: {burst_n:,} events as fast as possible, median of {rounds} run(s); latency"
        f" = publish() -> get(). Paced: {paced_n:,} events at {rate:,}/s in batches of"
        f" {batch}, and {10 * paced_n:,} at {10 * rate:,}/s in batches of {10 * batch}."
        f" End to end: {e2e_n:,} system.failure() reports on one closed connection, each a"
        f" FAILURE event, to {subscribers} system.subscribe(events=[FAILURE]) mailboxes."
    )


# -- the table of cases --

PB_DECO, PB_CALL = "pybreaker @breaker", "pybreaker breaker.call(f)"
PB_STATE = "pybreaker breakers[name].current_state == 'closed'"
PB_REJECT = "pybreaker @breaker raising CircuitBreakerError"
PB_FAIL = "pybreaker @breaker, function raises"
PLAIN = "plain method call doing the same work"
LOCKED = "function under a threading.Lock, 4 threads"
SUB_1K, CLOSE_1K = "system.subscribe(), 1,000 held", "subscription.close(), 1,000 held"

CASES: list[Case | Probe] = [
    Case("guarded", "guarded no-op call, closed circuit", ref=PB_DECO, target="guarded",
         n=(100_000, 10_000), contenders=(
             peer("bare no-op call (reference)", lambda env: calls(noop)),
             ours("brama @circuit_breaker (default system)", deco("guarded")),
             ours("brama @circuit_breaker(system=...)", deco("guarded", system=True)),
             ours("brama manual: brama.available / f() / brama.success",
                  manual_success("manual", module=True), vs=PB_CALL),
             ours("brama manual: system.available / f() / system.success",
                  manual_success("manual"), vs=PB_CALL),
             peer(PB_DECO, pb_deco()),
             peer(PB_CALL, pb_call),
             peer("circuitbreaker @circuit", cb_deco()),
         ), note="{n:,} calls per sample, {samples} samples each, interleaved. Ratios:"
         " decorator rows vs pybreaker @breaker, manual rows vs pybreaker breaker.call(f)."),
    Case("available", "available(name) check", ref=PB_STATE, target="available",
         n=(200_000, 20_000), contenders=(
             ours("brama.available(name) (default system)", available_of(module=True)),
             ours("system.available(name)", available_of(module=False)),
             peer(PB_STATE, pb_state),
             peer("circuitbreaker breakers[name].closed", cb_state),
         ), note="{n:,} checks per sample on a closed circuit, 100 breakers registered on"
         " each side."),
    Case("rejection", "rejection on an open circuit", ref=PB_REJECT, target="rejection",
         n=(20_000, 2_000), contenders=(
             ours("brama @circuit_breaker raising CircuitOpenError",
                  deco("rejected", catch=CircuitOpenError, open_=True, expiry=AWAKE)),
             ours("brama @circuit_breaker(fallback=...)",
                  deco("rejected-fallback", fallback=noop, open_=True, expiry=AWAKE)),
             ours("brama manual: if system.available(): ... (open)",
                  manual_success("manual", open_=True)),
             peer(PB_REJECT, pb_deco(catch=pybreaker.CircuitBreakerError, open_=True,
                                     reset_timeout=HUGE)),
             peer("circuitbreaker @circuit raising CircuitBreakerError",
                  cb_deco(catch=circuitbreaker.CircuitBreakerError, open_=True)),
             peer("circuitbreaker @circuit(fallback_function=...)",
                  cb_deco(open_=True, fallback_function=noop)),
         ), note="{n:,} rejected calls per sample; circuits opened with a 1 h expiry"
         " (pybreaker: reset_timeout=1e9). Every Brama row is compared with pybreaker raising."),
    Case("failure", "failure reported, circuit stays closed", ref=PB_FAIL, target="failure",
         n=(20_000, 2_000), contenders=(
             ours("brama @circuit_breaker, function raises (awake actor)",
                  deco("failing", boom, ValueError, max_attempts=HUGE, hibernate_after=AWAKE)),
             ours("brama manual: f() raises, system.failure (awake actor)", manual_failure),
             ours("brama manual: f() raises, system.failure (hibernated actor)",
                  hibernated_failure, scale=0.01),
             peer(PB_FAIL, pb_deco(boom, ValueError, fail_max=HUGE)),
             peer("circuitbreaker @circuit, function raises",
                  cb_deco(boom, ValueError, failure_threshold=HUGE)),
         ), note="{n:,} failing calls per sample, {samples} samples, interleaved;"
         " max_attempts / fail_max / failure_threshold = 1e9, so circuits stay closed."
         " Awake: hibernate_after = 1 h, the actor is idle between reports (direct dispatch)."
         " Hibernated: each report is the first on a connection whose actor hibernated"
         " (woken once, hibernate_after = 0, waited for), so the report starts its actor."),
    Case("threads", "guarded calls from 4 threads, one breaker", ref=PB_DECO, target="threads",
         threads=4, n=(25_000, 5_000), contenders=(
             ours("brama @circuit_breaker (default system)", deco("threads", counted=True)),
             ours("brama manual: system.available / f() / system.success",
                  manual_success("manual", counted=True), vs=PB_CALL),
             peer(PB_DECO, pb_deco()),
             peer(PB_CALL, pb_call),
             peer("circuitbreaker @circuit", cb_deco()),
         ), note="{threads} threads x {n:,} calls per sample on one breaker; time per call ="
         " wall time / all calls. Ratios as in the guarded case."),
    Case("otp-call", "brama.otp.call to an idle actor (direct dispatch)", ref=PLAIN,
         n=(100_000, 10_000), contenders=(
             ours("brama.otp.call(ref, message), idle Actor", otp_call(counted=False)),
             peer(PLAIN, plain_call(locked=False)),
             peer("pykka ref.ask(message), a thread hand-off (context)", pykka_ask,
                  scale=0.02),
         ), note="{n:,} calls per sample; the handler counts the message and returns the"
         " count. No target: the ratio is the price of the actor's bookkeeping."),
    Case("otp-contention", "brama.otp.call from 4 threads to one actor", ref=LOCKED,
         threads=4, n=(10_000, 2_000), contenders=(
             ours("brama.otp.call(ref, message), 4 threads, one Actor", otp_call(counted=True)),
             peer(LOCKED, plain_call(locked=True)),
         ), note="{threads} threads x {n:,} calls per sample; time per call = wall time / all"
         " calls. A call that finds the actor busy is queued to the actor's thread. No target."),
    Case("subscribe", "subscribe / close with 1,000 and 10,000 subscriptions",
         target="subscribe", n=(1_000, 200), contenders=(
             peer(SUB_1K, subscriptions(1_000, close=False)),
             ours("system.subscribe(), 10,000 held", subscriptions(10_000, close=False),
                  vs=SUB_1K),
             peer(CLOSE_1K, subscriptions(1_000, close=True)),
             ours("subscription.close(), 10,000 held", subscriptions(10_000, close=True),
                  vs=CLOSE_1K),
         ), note="{n:,} mailbox subscriptions made (or closed) per sample, on systems holding"
         " 1,000 and 10,000 others; the other half of the pair runs untimed. Ratio = cost at"
         " 10,000 / cost at 1,000: flat (O(1)) is 1, O(n) would be about 10."),
    Case("memory", "memory per idle registered connection", measure="bytes",
         ref="pybreaker CircuitBreaker in a dict", target="memory", n=(20_000, 20_000),
         samples=(3, 1), contenders=(
             ours("brama register() (idle connection)", memory_brama),
             peer("pybreaker CircuitBreaker in a dict", pb_into_dict),
             peer("circuitbreaker CircuitBreaker in a dict", cb_into_dict),
         ), note="tracemalloc, {n:,} items, bytes still allocated after gc.collect() / count,"
         " median of {samples} round(s); the identifier strings are made before the trace,"
         " so no side counts them."),
    Case("register", "registrations per second", show="/s", target="register",
         ref="pybreaker CircuitBreaker() into a dict", n=(20_000, 20_000), contenders=(
             ours("brama register() into a fresh system", register_fresh),
             peer("pybreaker CircuitBreaker() into a dict", pb_into_dict),
         ), note="{n:,} registrations into a fresh system per sample, {samples} samples;"
         " the target is the rate; ratio = time per registration over pybreaker's."),
    Probe("threadcount", "threads for 100,000 idle connections", probe_threadcount),
    Probe("expiry", "expiry lateness, real clock", probe_expiry),
    Probe("fanout", "event fan-out to 10 subscribers", probe_fanout),
]


# -- running --


def _select(only: str | None) -> list[tuple[int, Case | Probe]]:
    numbered = list(enumerate(CASES, start=1))
    if not only:
        return numbered
    wanted = [w.strip().lower() for w in only.split(",") if w.strip()]
    chosen = [(i, c) for i, c in numbered
              if any(w == str(i) or c.key.startswith(w) for w in wanted)]
    if not chosen:
        names = ", ".join(f"{i} {c.key}" for i, c in numbered)
        raise SystemExit(f"--only {only!r} matches no case; choose from: {names}")
    return chosen


def _table(outcomes: list[Outcome]) -> list[str]:
    header = ("contender", "median", "p25 .. p75", "ratio", "target", "result")
    width = max([len(r.contender) for o in outcomes for r in o.rows] + [40]) + 3
    fmt = f"{{:<{width}}} {{:>12}}  {{:<23}} {{:>6}}  {{:<20}} {{}}"
    lines = [fmt.format(*header), "-" * (width + 74)]
    for o in outcomes:
        lines.append(f"{o.number}. {o.title}")
        if o.error:
            lines.append(f"   ERROR: {o.error}")
        for r in o.rows:
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
            lines.append(fmt.format("   " + r.contender, r.shown_value(), r.spread, ratio,
                                    r.target, r.verdict).rstrip())
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--only", metavar="NAME",
                        help="comma-separated case names or numbers (prefixes work): "
                        + ", ".join(c.key for c in CASES))
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per contender (default 9, quick 3)")
    args = parser.parse_args(argv)
    plan = Plan(quick=args.quick, samples=args.samples or (3 if args.quick else 9))
    chosen = _select(args.only)

    info = machine_info()
    for line in machine_lines(info):
        print(line)
    mode = "quick" if plan.quick else "full"
    print(f"mode    : {mode}, {plan.samples} samples per contender, interleaved round-robin;"
          " GC paused in timed loops", flush=True)
    print()

    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for number, case in chosen:
        out = Outcome(case.key, number, case.title)
        t = time.perf_counter()
        print(f"[{number}/{len(CASES)}] {case.title} ...", end=" ", file=sys.stderr, flush=True)
        try:
            case.run(plan, out)
        except Exception as exc:  # report it and go on with the next case
            out.error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                brama.shutdown()
        out.extra["seconds"] = round(time.perf_counter() - t, 2)
        print(f"{out.extra['seconds']:.1f} s", file=sys.stderr, flush=True)
        outcomes.append(out)
    total = time.perf_counter() - started

    print("ratio = the row's cost / its reference's cost in this run (time per call or per"
          " registration, bytes per item); below 1 the row is cheaper")
    print()
    for line in _table(outcomes):
        print(line)
    print()
    for o in outcomes:
        for note in o.notes:
            print(f"[{o.number}] {note}")
    verdicts = [r.verdict for o in outcomes for r in o.rows if r.verdict in (PASS, MISS)]
    errors = [o for o in outcomes if o.error]
    print()
    print(f"targets: {verdicts.count(PASS)} PASS, {verdicts.count(MISS)} MISS"
          f"{f', {len(errors)} case(s) failed' if errors else ''}; total time {total:.1f} s")

    if args.json:
        payload = {
            "machine": info,
            "mode": mode,
            "samples": plan.samples,
            "total_seconds": round(total, 2),
            "targets": {key: asdict(t) for key, t in TARGETS.items()},
            "cases": [asdict(o) for o in outcomes],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
