"""Benchmarks of Brama against pybreaker and circuitbreaker, in one process, interleaved.

    python benchmarks/run.py                 # the full run (about 2 minutes)
    python benchmarks/run.py --quick         # a smoke run (a few seconds per benchmark)
    python benchmarks/run.py --only guarded,failure --json results.json

Timed loops run with the GC paused; contenders of one benchmark run round-robin (A, B, C, A,
B, C, ...) and the table shows medians. "ratio" is always Brama's cost over pybreaker's
(time per call, bytes per breaker, or seconds per registration): below 1.0, Brama is cheaper.
See benchmarks/README.md for what each benchmark measures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from queue import Empty
from typing import Any

import circuitbreaker
import pybreaker
from _util import (
    Loop,
    brama_decorator,
    fmt_ns,
    gc_paused,
    interleave,
    machine_info,
    machine_lines,
    median,
    percentile,
)

import brama
from brama import CircuitOpenError, Event, EventType

PASS = "PASS"
MISS = "MISS"
NA = "n/a"

# -- results --


@dataclass
class Row:
    contender: str
    value: float
    unit: str  # "ns" (per call), "B", "/s", "ms", "threads", "s", "count"
    spread: str = ""
    ratio: float | None = None
    target: str = ""
    verdict: str = ""
    samples: list[float] = field(default_factory=list)

    def shown_value(self) -> str:
        v = self.value
        if v != v:
            return NA
        if self.unit == "ns":
            return fmt_ns(v)
        if self.unit == "B":
            return f"{v:,.0f} B"
        if self.unit == "/s":
            return f"{v:,.0f}/s"
        if self.unit == "ms":
            return f"{v:.2f} ms"
        if self.unit == "s":
            return f"{v:.2f} s"
        return f"{v:,.0f}"


@dataclass
class Outcome:
    key: str
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Plan:
    quick: bool
    samples: int

    def n(self, default: int, quick: int) -> int:
        return quick if self.quick else default


def _spread(samples: list[float]) -> str:
    if len(samples) < 2:
        return ""
    return f"{fmt_ns(percentile(samples, 25))} .. {fmt_ns(percentile(samples, 75))}"


def _time_row(name: str, samples: list[float], ref: list[float] | None = None,
              limit: float | None = None) -> Row:
    """A row of ns/op samples; with `ref`, the ratio of medians and the verdict vs `limit`."""
    value = median(samples)
    row = Row(name, value, "ns", _spread(samples), samples=samples)
    if ref is not None:
        row.ratio = value / median(ref)
        if limit is not None:
            row.target = f"ratio ≤ {limit:g}"
            row.verdict = PASS if row.ratio <= limit else MISS
    return row


def _missing_row(name: str, target: str = "") -> Row:
    return Row(name, float("nan"), "ns", "", None, target, NA)


def _noop() -> None:
    return None


def _boom() -> None:
    raise ValueError("boom")


def _fresh_default() -> brama.Brama:
    """A new default system (the one `@brama.circuit_breaker` and `brama.available` use)."""
    brama.shutdown()
    return brama.start()


@contextlib.contextmanager
def _systems() -> Iterator[list[brama.Brama]]:
    """Every Brama system appended to the yielded list is stopped on exit, and the default."""
    created: list[brama.Brama] = []
    try:
        yield created
    finally:
        for system in created:
            system.stop()
        brama.shutdown()


def _repeat_loop(fn: Callable[[], Any]) -> Loop:
    def loop(n: int) -> None:
        for _ in repeat(None, n):
            fn()

    return loop


# -- 1. guarded no-op call on a closed circuit --


def bench_guarded(plan: Plan, out: Outcome) -> None:
    n = plan.n(100_000, 10_000)
    deco = brama_decorator()
    with _systems() as systems:
        _fresh_default()
        system = brama.Brama()
        systems.append(system)
        system.register("manual")
        brama.register("manual")

        pb = pybreaker.CircuitBreaker(name="guarded")
        pb_wrapped = pb(_noop)
        cb_wrapped = circuitbreaker.circuit(name="guarded")(_noop)

        def bare(n: int) -> None:
            f = _noop
            for _ in repeat(None, n):
                f()

        def manual_module(n: int) -> None:
            for _ in repeat(None, n):
                if brama.available("manual"):
                    _noop()
                    brama.success("manual")

        def manual_system(n: int) -> None:
            for _ in repeat(None, n):
                if system.available("manual"):
                    _noop()
                    system.success("manual")

        def pb_call(n: int) -> None:
            for _ in repeat(None, n):
                pb.call(_noop)

        contenders: dict[str, Loop] = {"bare no-op call (reference)": bare}
        if deco is not None:
            contenders["brama @circuit_breaker (default system)"] = _repeat_loop(
                deco("guarded")(_noop)
            )
            contenders["brama @circuit_breaker(system=...)"] = _repeat_loop(
                deco("guarded", system=system)(_noop)
            )
        contenders["brama manual: brama.available / f() / brama.success"] = manual_module
        contenders["brama manual: system.available / f() / system.success"] = manual_system
        contenders["pybreaker @breaker"] = _repeat_loop(pb_wrapped)
        contenders["pybreaker breaker.call(f)"] = pb_call
        contenders["circuitbreaker @circuit"] = _repeat_loop(cb_wrapped)

        res = interleave(contenders, n, plan.samples)
        ref_deco = res["pybreaker @breaker"]
        ref_call = res["pybreaker breaker.call(f)"]
        out.rows.append(_time_row("bare no-op call (reference)", res.pop(
            "bare no-op call (reference)")))
        if deco is None:
            out.rows.append(_missing_row("brama @circuit_breaker (not implemented yet)",
                                         "ratio ≤ 1"))
        for name, samples in res.items():
            if name.startswith("brama @"):
                out.rows.append(_time_row(name, samples, ref_deco, 1.0))
            elif name.startswith("brama manual"):
                out.rows.append(_time_row(name, samples, ref_call, 1.0))
            else:
                out.rows.append(_time_row(name, samples))
        out.notes.append(
            f"{n:,} calls per sample, {plan.samples} samples each, interleaved. Ratios: decorator"
            " rows vs pybreaker @breaker, manual rows vs pybreaker breaker.call(f)."
            " Aim: ratio 0.3."
        )


# -- 2. available() vs a dict of pybreaker breakers --


def bench_available(plan: Plan, out: Outcome) -> None:
    n = plan.n(200_000, 20_000)
    names = [f"svc-{i}" for i in range(100)]
    name = names[37]
    with _systems() as systems:
        _fresh_default()
        system = brama.Brama()
        systems.append(system)
        for ident in names:
            system.register(ident)
            brama.register(ident)
        pb_breakers = {ident: pybreaker.CircuitBreaker(name=ident) for ident in names}
        cb_breakers = {ident: circuitbreaker.CircuitBreaker(name=ident) for ident in names}
        closed = pybreaker.STATE_CLOSED

        def module(n: int) -> None:
            for _ in repeat(None, n):
                brama.available(name)

        def method(n: int) -> None:
            for _ in repeat(None, n):
                system.available(name)

        def pb_state(n: int) -> None:
            for _ in repeat(None, n):
                pb_breakers[name].current_state == closed  # noqa: B015

        def cb_state(n: int) -> None:
            for _ in repeat(None, n):
                cb_breakers[name].closed  # noqa: B018

        res = interleave(
            {
                "brama.available(name) (default system)": module,
                "system.available(name)": method,
                "pybreaker breakers[name].current_state == 'closed'": pb_state,
                "circuitbreaker breakers[name].closed": cb_state,
            },
            n,
            plan.samples,
        )
        ref = res["pybreaker breakers[name].current_state == 'closed'"]
        for label, samples in res.items():
            is_brama = not label.startswith(("pybreaker", "circuitbreaker"))
            out.rows.append(_time_row(label, samples, ref if is_brama else None, 1.0))
        out.notes.append(
            f"{n:,} checks per sample on a closed circuit, 100 breakers registered on each side."
        )


# -- 3. rejection on an open circuit --


def bench_rejection(plan: Plan, out: Outcome) -> None:
    n = plan.n(20_000, 2_000)
    deco = brama_decorator()
    with _systems() as systems:
        _fresh_default()
        system = brama.Brama()
        systems.append(system)
        for ident in ("rejected", "rejected-fallback", "manual"):
            brama.register(ident, expiry=3600.0)
            brama.open_circuit(ident)
        system.register("manual", expiry=3600.0)
        system.open_circuit("manual")

        pb = pybreaker.CircuitBreaker(name="rejection", reset_timeout=10**9)
        pb.open()
        pb_wrapped = pb(_noop)
        cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=10**9,
                                           name="rejection")
        cb_wrapped = cb(_boom)
        with contextlib.suppress(ValueError):
            cb_wrapped()
        assert cb.opened, "circuitbreaker did not open"
        cb_fb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=10**9,
                                              name="rejection-fb", fallback_function=_noop)
        cb_fb_wrapped = cb_fb(_boom)
        with contextlib.suppress(ValueError):
            cb_fb_wrapped()

        def raising(fn: Callable[[], Any], exc: type[BaseException]) -> Loop:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    try:  # noqa: SIM105 - suppress() would add its own cost to the loop
                        fn()
                    except exc:
                        pass

            return loop

        def manual(n: int) -> None:
            for _ in repeat(None, n):
                if system.available("manual"):
                    _noop()
                    system.success("manual")

        contenders: dict[str, Loop] = {}
        if deco is not None:
            contenders["brama @circuit_breaker raising CircuitOpenError"] = raising(
                deco("rejected")(_noop), CircuitOpenError
            )
            contenders["brama @circuit_breaker(fallback=...)"] = _repeat_loop(
                deco("rejected-fallback", fallback=_noop)(_noop)
            )
        contenders["brama manual: if system.available(): ... (open)"] = manual
        contenders["pybreaker @breaker raising CircuitBreakerError"] = raising(
            pb_wrapped, pybreaker.CircuitBreakerError
        )
        contenders["circuitbreaker @circuit raising CircuitBreakerError"] = raising(
            cb_wrapped, circuitbreaker.CircuitBreakerError
        )
        contenders["circuitbreaker @circuit(fallback_function=...)"] = _repeat_loop(
            cb_fb_wrapped
        )
        res = interleave(contenders, n, plan.samples)
        ref = res["pybreaker @breaker raising CircuitBreakerError"]
        if deco is None:
            out.rows.append(_missing_row("brama @circuit_breaker (not implemented yet)",
                                         "ratio ≤ 1"))
        for label, samples in res.items():
            is_brama = label.startswith("brama")
            out.rows.append(_time_row(label, samples, ref if is_brama else None, 1.0))
        out.notes.append(
            f"{n:,} rejected calls per sample; circuits opened with a 1 h expiry (pybreaker:"
            " reset_timeout=1e9). Every Brama row is compared with pybreaker raising."
        )


# -- 4. failure path on a circuit that stays closed --


def bench_failure(plan: Plan, out: Outcome) -> None:
    n = plan.n(20_000, 1_000)
    deco = brama_decorator()
    huge = 10**9
    with _systems() as systems:
        _fresh_default()
        system = brama.Brama()
        systems.append(system)
        brama.register("failing", max_attempts=huge)
        system.register("manual", max_attempts=huge)

        pb = pybreaker.CircuitBreaker(name="failure", fail_max=huge)
        pb_wrapped = pb(_boom)
        cb_wrapped = circuitbreaker.CircuitBreaker(failure_threshold=huge, name="failure")(_boom)

        def raising(fn: Callable[[], Any]) -> Loop:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    try:  # noqa: SIM105 - suppress() would add its own cost to the loop
                        fn()
                    except ValueError:
                        pass

            return loop

        def manual(n: int) -> None:
            for _ in repeat(None, n):
                if system.available("manual"):
                    try:
                        _boom()
                    except ValueError as exc:
                        system.failure("manual", reason=repr(exc))

        contenders: dict[str, Loop] = {}
        if deco is not None:
            contenders["brama @circuit_breaker, function raises"] = raising(
                deco("failing")(_boom)
            )
        contenders["brama manual: available / f() raises / system.failure"] = manual
        contenders["pybreaker @breaker, function raises"] = raising(pb_wrapped)
        contenders["circuitbreaker @circuit, function raises"] = raising(cb_wrapped)
        res = interleave(contenders, n, plan.samples)
        ref = res["pybreaker @breaker, function raises"]
        if deco is None:
            out.rows.append(_missing_row("brama @circuit_breaker (not implemented yet)",
                                         "ratio ≤ 2"))
        for label, samples in res.items():
            is_brama = label.startswith("brama")
            out.rows.append(_time_row(label, samples, ref if is_brama else None, 2.0))
        state = system.status("manual")
        assert state.state is brama.CircuitState.CLOSED, state
        out.notes.append(
            f"{n:,} failing calls per sample, max_attempts / fail_max / failure_threshold = 1e9,"
            f" so circuits stay closed (manual connection: {state.total_failures:,} failures"
            " counted, still closed)."
        )


# -- 5. guarded calls from 4 threads on one breaker --


def _threaded(loop: Loop, n: int, threads: int) -> float:
    """Run `loop(n)` in `threads` threads at once; ns per call over all threads."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            loop(n)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    with gc_paused():
        barrier.wait()
        start = time.perf_counter_ns()
        for t in workers:
            t.join()
        elapsed = time.perf_counter_ns() - start
    if errors:
        raise errors[0]
    return elapsed / (n * threads)


def bench_threads(plan: Plan, out: Outcome) -> None:
    threads = 4
    n = plan.n(25_000, 5_000)
    deco = brama_decorator()
    with _systems() as systems:
        _fresh_default()
        system = brama.Brama()
        systems.append(system)
        system.register("manual")
        pb = pybreaker.CircuitBreaker(name="threads")
        pb_wrapped = pb(_noop)
        cb_wrapped = circuitbreaker.circuit(name="threads")(_noop)

        def manual(n: int) -> None:
            for _ in repeat(None, n):
                if system.available("manual"):
                    _noop()
                    system.success("manual")

        def pb_call(n: int) -> None:
            for _ in repeat(None, n):
                pb.call(_noop)

        checked: dict[str, Callable[[], int]] = {}
        contenders: dict[str, Loop] = {}
        if deco is not None:
            label = "brama @circuit_breaker (default system)"
            contenders[label] = _repeat_loop(deco("threads")(_noop))
            checked[label] = lambda: brama.status("threads").total_successes
        label = "brama manual: system.available / f() / system.success"
        contenders[label] = manual
        checked[label] = lambda: system.status("manual").total_successes
        contenders["pybreaker @breaker"] = _repeat_loop(pb_wrapped)
        contenders["pybreaker breaker.call(f)"] = pb_call
        contenders["circuitbreaker @circuit"] = _repeat_loop(cb_wrapped)

        for loop in contenders.values():  # warm-up, single thread
            loop(max(1, n // 10))
        res: dict[str, list[float]] = {name: [] for name in contenders}
        exact: dict[str, list[tuple[int, int]]] = {name: [] for name in checked}
        for _ in range(plan.samples):
            for name, loop in contenders.items():
                before = checked[name]() if name in checked else 0
                res[name].append(_threaded(loop, n, threads))
                if name in checked:
                    exact[name].append((checked[name]() - before, n * threads))
        if deco is None:
            out.rows.append(_missing_row("brama @circuit_breaker (not implemented yet)",
                                         "ratio ≤ 1"))
        for name, samples in res.items():
            if name.startswith("brama @"):
                out.rows.append(_time_row(name, samples, res["pybreaker @breaker"], 1.0))
            elif name.startswith("brama manual"):
                out.rows.append(_time_row(name, samples, res["pybreaker breaker.call(f)"], 1.0))
            else:
                out.rows.append(_time_row(name, samples))
        out.notes.append(
            f"{threads} threads x {n:,} calls per sample on one breaker; time per call ="
            " wall time / all calls. Ratios as in benchmark 1."
        )
        for name, pairs in exact.items():
            ok = all(got == want for got, want in pairs)
            got_total = sum(g for g, _ in pairs)
            want_total = sum(w for _, w in pairs)
            out.notes.append(
                f"success count check, {name}: status().total_successes grew by"
                f" {got_total:,} for {want_total:,} calls over {len(pairs)} samples:"
                f" {'EXACT' if ok else 'WRONG ' + repr(pairs)}"
            )
            out.extra.setdefault("success_counts", {})[name] = pairs
            assert ok, f"{name}: successes miscounted: {pairs}"


# -- 6. memory per idle registered connection --


def _wait_children(system: brama.Brama, count: int) -> bool:
    """Wait until the connections supervisor has taken in `count` children.

    `register` queues the child spec for the supervisor without waiting; the supervisor takes
    queued specs in before its next message, so a `which_children()` round trip (a message)
    is how to wait for it. False if the supervisor cannot be reached this way.
    """
    sup = getattr(system, "_connections_sup", None)
    if sup is None or not hasattr(sup, "which_children"):
        return False
    sup.which_children()
    return bool(sup.count_children() >= count)


def _traced_bytes(build: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated (tracemalloc, after gc) by `build()`, and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return used, kept


def bench_memory(plan: Plan, out: Outcome) -> None:
    count = 20_000
    rounds = 1 if plan.quick else 3
    names = [f"conn-{i:05d}" for i in range(count)]
    results: dict[str, list[float]] = {
        "brama (registered, idle)": [],
        "pybreaker CircuitBreaker in a dict": [],
        "circuitbreaker CircuitBreaker in a dict": [],
    }
    for _ in range(rounds):
        system = brama.Brama()
        try:
            system.register("warm-up")
            _wait_children(system, 1)

            def build_brama(system: brama.Brama = system) -> None:
                for name in names:
                    system.register(name)
                _wait_children(system, count + 1)

            used, _ = _traced_bytes(build_brama)
            results["brama (registered, idle)"].append(used / count)
        finally:
            system.stop()
        used, kept = _traced_bytes(
            lambda: {name: pybreaker.CircuitBreaker(name=name) for name in names}
        )
        results["pybreaker CircuitBreaker in a dict"].append(used / count)
        del kept
        used, kept = _traced_bytes(
            lambda: {name: circuitbreaker.CircuitBreaker(name=name) for name in names}
        )
        results["circuitbreaker CircuitBreaker in a dict"].append(used / count)
        del kept
    ref = median(results["pybreaker CircuitBreaker in a dict"])
    for label, values in results.items():
        value = median(values)
        row = Row(label, value, "B", "", samples=values)
        if label.startswith("brama"):
            row.ratio = value / ref
            row.target = "≤ 2,048 B"
            row.verdict = PASS if value <= 2048 else MISS
        out.rows.append(row)
    out.notes.append(
        f"tracemalloc, {count:,} connections, bytes still allocated after gc.collect() / count,"
        f" median of {rounds} round(s); identifier strings are counted on every side."
    )


# -- 7. registrations per second --


def bench_register(plan: Plan, out: Outcome) -> None:
    count = 20_000
    samples = plan.samples
    names = [f"conn-{i:05d}" for i in range(count)]
    calls: list[float] = []
    settled: list[float] = []
    pb_rates: list[float] = []
    observed = True
    for _ in range(samples):
        system = brama.Brama()
        try:
            with gc_paused():
                start = time.perf_counter_ns()
                for name in names:
                    system.register(name)
                returned = time.perf_counter_ns()
                observed = _wait_children(system, count) and observed
                done = time.perf_counter_ns()
            calls.append(count / ((returned - start) / 1e9))
            settled.append(count / ((done - start) / 1e9))
        finally:
            system.stop()
        with gc_paused():
            start = time.perf_counter_ns()
            breakers = {name: pybreaker.CircuitBreaker(name=name) for name in names}
            pb_rates.append(count / ((time.perf_counter_ns() - start) / 1e9))
        del breakers
    ref = median(pb_rates)

    def row(label: str, rates: list[float], target: bool) -> Row:
        value = median(rates)
        r = Row(label, value, "/s", f"{min(rates):,.0f} .. {max(rates):,.0f}", samples=rates)
        if target:
            r.ratio = ref / value
            r.target = "≥ 20,000/s"
            r.verdict = PASS if value >= 20_000 else MISS
        return r

    out.rows.append(row("brama register(): calls returned", calls, True))
    if observed:
        out.rows.append(row("brama register(): + supervisor took all in", settled, True))
    out.rows.append(row("pybreaker CircuitBreaker() into a dict", pb_rates, False))
    out.notes.append(
        f"{count:,} registrations into a fresh system per sample, {samples} samples (min .. max"
        " shown). ratio = pybreaker rate / Brama rate (time per registration)."
    )
    system = brama.Brama()  # untimed: are queued registrations taken in without a message?
    try:
        for name in names:
            system.register(name)
        sup = getattr(system, "_connections_sup", None)
        if sup is not None and hasattr(sup, "count_children"):
            time.sleep(0.5)
            idle = sup.count_children()
            _wait_children(system, count)
            out.notes.append(
                f"connections supervisor, 0.5 s after a {count:,}-registration loop with no"
                f" other message: {idle:,} children taken in; after a which_children() round"
                f" trip: {sup.count_children():,}."
                + ("" if idle >= count else " (specs left queued until the next message)")
            )
    finally:
        system.stop()


# -- 8. threads for 100,000 idle connections --


def bench_threadcount(plan: Plan, out: Outcome) -> None:
    count = 100_000
    limit = 1_000
    window = 15.0
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
        _wait_children(system, count)
        settled_s = (time.perf_counter_ns() - start) / 1e9
        while time.monotonic() - t0 < window:
            if threading.active_count() - 1 < limit:
                break
            time.sleep(0.05)
        final = threading.active_count() - 1
        elapsed = time.monotonic() - t0
        stop.set()
        watcher.join()
        peak = max(c for _, c in samples)
        ok = final < limit and elapsed <= window
        out.rows.append(Row("max threads while registering and after", peak, "threads",
                            target=f"< {limit:,}", verdict=PASS if peak < limit else MISS))
        out.rows.append(Row(f"threads at the end (after {elapsed:.2f} s)", final, "threads",
                            target=f"< {limit:,} within {window:g} s",
                            verdict=PASS if ok else MISS))
        out.rows.append(Row(f"time to register {count:,} (calls returned)", reg_s, "s"))
        out.rows.append(Row(f"time to register {count:,} (+ supervisor took all in)",
                            settled_s, "s"))
        out.notes.append(
            f"default options; threading.active_count() sampled every 5 ms ({len(samples)}"
            f" samples; the sampler thread itself is not counted); {before} threads before"
            " the system started."
        )
        out.extra["thread_samples"] = samples[:: max(1, len(samples) // 200)]
    finally:
        stop.set()
        t = time.perf_counter()
        system.stop()
        out.notes.append(f"stop() with {count:,} connections took {time.perf_counter() - t:.2f} s")


# -- 9. expiry lateness on the real clock --


def bench_expiry(plan: Plan, out: Outcome) -> None:
    circuits = 100
    rounds = 1 if plan.quick else 3
    by_stamp: list[float] = []
    by_receipt: list[float] = []
    missing = 0
    for r in range(rounds):
        system = brama.Brama()
        try:
            expiries = {
                f"exp-{r}-{i:03d}": 0.05 + 0.45 * i / (circuits - 1) for i in range(circuits)
            }
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
        finally:
            system.stop()

    def rows(label: str, values: list[float]) -> None:
        for stat, q in (("median", 50.0), ("p99", 99.0)):
            out.rows.append(Row(f"{label}: {stat}", percentile(values, q), "ms"))
        worst = max(values) if values else float("nan")
        out.rows.append(Row(f"{label}: max", worst, "ms", target="max ≤ 50 ms",
                            verdict=PASS if worst <= 50 else MISS))

    rows("timer lateness (event timestamp - due)", by_stamp)
    rows("delivery lateness (receipt - due)", by_receipt)
    out.notes.append(
        f"{rounds} round(s) x {circuits} circuits, expiries 50-500 ms, opened with"
        " open_circuit; due = status().opened_at + expiry; a mailbox subscription to"
        f" CIRCUIT_HALF_OPENED read in its own thread. Events missing: {missing}."
        f" Earliest: {min(by_stamp, default=float('nan')):.2f} ms (negative = early)."
    )
    if missing:
        out.rows[-1].verdict = MISS


# -- 10. event fan-out to 10 mailbox subscribers --


def _fanout_run(system: brama.Brama, events: list[Event], subscribers: int,
                pace: tuple[int, float] | None) -> dict[str, Any]:
    """Publish `events` through the system's bus to `subscribers` mailboxes read by one thread
    each. `pace` = (batch size, seconds between batches), or None for as fast as possible."""
    bus = system._bus
    subs = [system.subscribe() for _ in range(subscribers)]
    sent = [0] * len(events)
    got: list[list[tuple[int, int]]] = [[] for _ in subs]
    ready = threading.Barrier(subscribers + 1)

    def consume(sub: Any, into: list[tuple[int, int]]) -> None:
        clock = time.perf_counter_ns
        ready.wait()
        while len(into) < len(events):
            try:
                event = sub.get(timeout=1.0)
            except Empty:
                return
            into.append((event.data["seq"], clock()))

    readers = [threading.Thread(target=consume, args=(s, g), daemon=True)
               for s, g in zip(subs, got, strict=True)]
    for t in readers:
        t.start()
    ready.wait()
    topic = EventType.FAILURE
    clock = time.perf_counter_ns
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
    published = clock()
    for t in readers:
        t.join(timeout=30.0)
    dropped = sum(s.dropped for s in subs)
    for s in subs:
        s.close()
    latencies = [(at - sent[seq]) / 1e6 for into in got for seq, at in into]
    last = max((into[-1][1] for into in got if into), default=published)
    per_sub = [len(into) / ((into[-1][1] - start) / 1e9) for into in got if into]
    total = sum(len(into) for into in got)
    return {
        "deliveries": total,
        "expected": len(events) * subscribers,
        "dropped": dropped,
        "elapsed_s": (last - start) / 1e9,
        "publish_s": (published - start) / 1e9,
        "deliveries_per_s": total / ((last - start) / 1e9),
        "per_subscriber_per_s": median(per_sub) if per_sub else 0.0,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        },
    }


def bench_fanout(plan: Plan, out: Outcome) -> None:
    subscribers = 10
    burst_n = plan.n(20_000, 5_000)
    rounds = 1 if plan.quick else 3
    rate, batch = 5_000, 25  # 5,000 events/s = 50,000 deliveries/s to 10 subscribers
    paced_n = plan.n(10_000, 5_000)

    def make_events(n: int) -> list[Event]:
        now = time.time()
        return [
            Event(EventType.FAILURE, now, f"conn-{i % 100}", None,
                  {"failure_count": 1 + i % 10, "reason": "ValueError('boom')", "seq": i})
            for i in range(n)
        ]

    bursts: list[dict[str, Any]] = []
    with _systems() as systems:
        for _ in range(rounds):
            system = brama.Brama()
            systems.append(system)
            with gc_paused():
                bursts.append(_fanout_run(system, make_events(burst_n), subscribers, None))
            system.stop()
        paced_runs: list[tuple[int, dict[str, Any]]] = []
        # 5,000 events/s is 50,000 deliveries/s to 10 subscribers; 50,000 events/s (500,000
        # deliveries/s) is the stricter reading of the target.
        for prate in (rate, 10 * rate):
            system = brama.Brama()
            systems.append(system)
            count = paced_n if prate == rate else 10 * paced_n
            with gc_paused():
                run = _fanout_run(system, make_events(count), subscribers,
                                  (batch * prate // rate, batch / rate))
            paced_runs.append((prate, run))
            system.stop()
    totals = [b["deliveries_per_s"] for b in bursts]
    per_sub = [b["per_subscriber_per_s"] for b in bursts]
    p99s = [b["latency_ms"]["p99"] for b in bursts]
    value = median(totals)
    out.rows.append(Row("burst: deliveries/s (all subscribers)", value, "/s",
                        f"{min(totals):,.0f} .. {max(totals):,.0f}", target="≥ 50,000/s",
                        verdict=PASS if value >= 50_000 else MISS, samples=totals))
    out.rows.append(Row("burst: events/s per subscriber", median(per_sub), "/s",
                        samples=per_sub))
    out.rows.append(Row("burst: p99 latency (includes the backlog)", median(p99s), "ms",
                        samples=p99s))
    out.rows.append(Row("burst: events dropped (full mailboxes)",
                        sum(b["dropped"] for b in bursts), "count"))
    for prate, run in paced_runs:
        lat = run["latency_ms"]
        out.rows.append(Row(f"paced {prate:,} ev/s: deliveries/s achieved",
                            run["deliveries_per_s"], "/s"))
        out.rows.append(Row(f"paced {prate:,} ev/s: p50 latency", lat["p50"], "ms"))
        out.rows.append(Row(f"paced {prate:,} ev/s: p99 latency", lat["p99"], "ms",
                            target="p99 ≤ 50 ms", verdict=PASS if lat["p99"] <= 50 else MISS))
        out.rows.append(Row(f"paced {prate:,} ev/s: max latency", lat["max"], "ms"))
        out.rows.append(Row(f"paced {prate:,} ev/s: deliveries lost",
                            run["expected"] - run["deliveries"], "count"))
    out.extra = {"bursts": bursts, "paced": {str(r): run for r, run in paced_runs}}
    out.notes.append(
        f"{subscribers} mailbox subscriptions (all events), each read by its own thread with"
        " get(); events are Event(FAILURE, ...) objects published with the system's bus"
        " (system._bus.publish), as the connection actors do. A delivery = one event taken"
        " from one subscription by get(). deliveries/s = all deliveries / (last get() - first"
        " publish); per subscriber = that subscription's deliveries / its own span."
        f" Burst: {burst_n:,} events as fast as possible, median of {rounds} run(s)"
        f" ({burst_n * subscribers:,} deliveries each); latency = publish() call → get()"
        f" return. Paced: {paced_n:,} events at {rate:,}/s in batches of {batch}, and"
        f" {10 * paced_n:,} at {10 * rate:,}/s in batches of {10 * batch}."
    )


# -- the table --

BENCHMARKS: list[tuple[str, str, Callable[[Plan, Outcome], None]]] = [
    ("guarded", "guarded no-op call, closed circuit", bench_guarded),
    ("available", "available(name) check", bench_available),
    ("rejection", "rejection on an open circuit", bench_rejection),
    ("failure", "failure path, circuit stays closed", bench_failure),
    ("threads", "guarded calls from 4 threads, one breaker", bench_threads),
    ("memory", "memory per idle registered connection", bench_memory),
    ("register", "registrations per second", bench_register),
    ("threadcount", "threads for 100,000 idle connections", bench_threadcount),
    ("expiry", "expiry lateness, real clock", bench_expiry),
    ("fanout", "event fan-out to 10 subscribers", bench_fanout),
]


def _select(only: str | None) -> list[tuple[int, str, str, Callable[[Plan, Outcome], None]]]:
    numbered = [(i + 1, *b) for i, b in enumerate(BENCHMARKS)]
    if not only:
        return numbered
    wanted = [w.strip().lower() for w in only.split(",") if w.strip()]
    chosen = [
        b for b in numbered
        if any(w == str(b[0]) or b[1].startswith(w) for w in wanted)
    ]
    if not chosen:
        names = ", ".join(f"{i} {k}" for i, k, _, _ in numbered)
        raise SystemExit(f"--only {only!r} matches no benchmark; choose from: {names}")
    return chosen


def _table(outcomes: list[Outcome]) -> list[str]:
    header = ("contender", "median", "p25 .. p75 / range", "ratio", "target", "result")
    lines = []
    width = max([len(r.contender) for o in outcomes for r in o.rows] + [40]) + 3
    fmt = f"{{:<{width}}} {{:>12}}  {{:<23}} {{:>6}}  {{:<26}} {{}}"
    lines.append(fmt.format(*header))
    lines.append("-" * (width + 80))
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
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--only", metavar="NAME",
                        help="comma-separated benchmark names or numbers (prefixes work): "
                        + ", ".join(k for k, _, _ in BENCHMARKS))
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per contender (default 9, quick 3)")
    args = parser.parse_args(argv)
    plan = Plan(quick=args.quick, samples=args.samples or (3 if args.quick else 9))
    chosen = _select(args.only)

    info = machine_info()
    for line in machine_lines(info):
        print(line)
    mode = "quick" if plan.quick else "default"
    print(f"mode    : {mode}, {plan.samples} samples per contender, interleaved round-robin;"
          " GC paused in timed loops")
    if brama_decorator() is None:
        print("note    : brama.circuit_breaker does not exist yet; decorator rows are n/a")
    print(flush=True)

    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for number, key, title, fn in chosen:
        out = Outcome(key, number, title)
        t = time.perf_counter()
        print(f"[{number}/{len(BENCHMARKS)}] {title} ...", end=" ", file=sys.stderr, flush=True)
        try:
            fn(plan, out)
        except Exception as exc:  # report and go on with the next benchmark
            out.error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                brama.shutdown()
        out.extra["seconds"] = round(time.perf_counter() - t, 2)
        print(f"{out.extra['seconds']:.1f} s", file=sys.stderr, flush=True)
        outcomes.append(out)
    total = time.perf_counter() - started

    print("ratio = Brama cost / pybreaker cost (time per call, bytes, time per registration);"
          " below 1 Brama is cheaper")
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
          f"{f', {len(errors)} benchmark(s) failed' if errors else ''};"
          f" total time {total:.1f} s")

    if args.json:
        payload = {
            "machine": info,
            "mode": mode,
            "samples": plan.samples,
            "total_seconds": round(total, 2),
            "benchmarks": [asdict(o) for o in outcomes],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
