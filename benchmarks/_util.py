"""Helpers shared by the benchmark scripts: contenders and their loops, interleaved sampling
with the GC paused, statistics, fresh Brama systems stopped on exit, the machine description.

Only public Brama API is used here (`brama`, `brama.otp`, and public attributes of the objects
they return).
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import brama

__all__ = [
    "Arm",
    "Env",
    "Loop",
    "Plan",
    "arm_of",
    "awake",
    "boom",
    "calls",
    "calls_catching",
    "fmt_ns",
    "gc_paused",
    "interleave",
    "machine_info",
    "machine_lines",
    "median",
    "noop",
    "percentile",
    "wait_until",
]

Loop = Callable[[int], Any]
"""A contender's timed body: runs its operation `n` times in a tight loop."""


@dataclass
class Arm:
    """A contender ready to be sampled.

    `run(n)` is timed; `before(n)` and `after(n)` run untimed around every run (warm-up
    included): fresh connections, a fresh system, cleaning up. `count()`, when given, reads a
    counter the operation must bump exactly once per call; the sampler checks it.
    """

    run: Loop
    before: Callable[[int], None] | None = None
    after: Callable[[int], None] | None = None
    count: Callable[[], int] | None = None


def arm_of(built: Arm | Loop) -> Arm:
    return built if isinstance(built, Arm) else Arm(built)


@dataclass(frozen=True)
class Plan:
    """How hard to measure: `quick` (smoke run) and samples per contender."""

    quick: bool
    samples: int

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# -- loops --


def noop() -> None:
    return None


def boom() -> None:
    raise ValueError("boom")


def calls(fn: Callable[[], Any]) -> Loop:
    """`fn()` n times."""

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            fn()

    return loop


def calls_catching(fn: Callable[[], Any], exc: type[BaseException]) -> Loop:
    """`fn()` n times, catching `exc` each time."""

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            try:  # noqa: SIM105 - suppress() would add its own cost to the loop
                fn()
            except exc:
                pass

    return loop


# -- sampling --


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect once, then keep the cyclic GC off for the timed block (restored after)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _in_threads(loop: Loop, n: int, threads: int) -> int:
    """Run `loop(n)` in `threads` threads released at once; wall time in ns."""
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
    barrier.wait()
    start = time.perf_counter_ns()
    for t in workers:
        t.join()
    elapsed = time.perf_counter_ns() - start
    if errors:
        raise errors[0]
    return elapsed


def sample(arm: Arm, n: int, threads: int = 1) -> float:
    """One sample: ns per call of `arm.run(n)` (in `threads` threads at once: wall time / all
    calls), the GC paused, `before` / `after` untimed; checks `arm.count` if it has one."""
    total = n * threads
    if arm.before is not None:
        arm.before(total)
    counted = arm.count() if arm.count is not None else 0
    try:
        with gc_paused():
            if threads == 1:
                start = time.perf_counter_ns()
                kept = arm.run(n)  # freed after the timing
                elapsed = time.perf_counter_ns() - start
                del kept
            else:
                elapsed = _in_threads(arm.run, n, threads)
    finally:
        if arm.after is not None:
            arm.after(total)
    if arm.count is not None:
        grew = arm.count() - counted
        if grew != total:
            raise AssertionError(f"{total:,} calls, but the counter grew by {grew:,}")
    return elapsed / total


def interleave(arms: dict[str, Arm], sizes: dict[str, int], samples: int,
               threads: int = 1) -> dict[str, list[float]]:
    """Round-robin samples (A, B, C, A, B, C, ...): ns per call for each contender, after an
    untimed warm-up of a tenth of its size."""
    for name, arm in arms.items():
        sample(arm, max(1, sizes[name] // 10), threads)
    results: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(samples):
        for name, arm in arms.items():
            results[name].append(sample(arm, sizes[name], threads))
    return results


def wait_until(done: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    """Poll `done()` until it is true or `timeout` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return done()
        time.sleep(poll)
    return True


# -- statistics and formatting --


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (pos - low))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def fmt_ns(ns: float) -> str:
    """A duration in ns, printed with a readable unit."""
    if ns != ns:  # NaN
        return "n/a"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


# -- Brama systems --


class Env:
    """What the contenders of one case share, all released by `close()`: a fresh default
    system, standalone systems (stopped), anything registered with `on_exit`, and notes
    computed once the samples are taken (`report`). `n` is the size of one sample of the
    contender being built (for contenders that prepare their connections in advance)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.n = 0
        self._default: brama.Brama | None = None
        self._shared: dict[str, Any] = {}
        self._exits: list[Callable[[], Any]] = []
        self._reports: list[Callable[[], str]] = []

    def default(self) -> brama.Brama:
        """A fresh default system (the one `@brama.circuit_breaker` and `brama.available`
        use), the same for the whole case; shut down on exit."""
        if self._default is None:
            brama.shutdown()
            self._default = brama.start()
            self.on_exit(brama.shutdown)
        return self._default

    def system(self, **options: Any) -> brama.Brama:
        """A new standalone system, stopped on exit."""
        system = brama.Brama(**options)
        self.on_exit(system.stop)
        return system

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()` once per case under `key`: what several contenders use together."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def on_exit(self, release: Callable[[], Any]) -> None:
        self._exits.append(release)

    def report(self, line: Callable[[], str]) -> None:
        """A line for the case's notes, computed after the samples (it may assert)."""
        self._reports.append(line)

    def reports(self) -> list[str]:
        return [line() for line in self._reports]

    def close(self) -> None:
        """Release everything, newest first, each even if another fails."""
        errors: list[BaseException] = []
        while self._exits:
            try:
                self._exits.pop()()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def awake(system: brama.Brama, identifier: str) -> bool:
    """True while the connection has a running actor (it is neither hibernated nor new)."""
    ref = system.runtime.connections.whereis_child(system.cells[identifier])
    return ref is not None and ref.is_alive()


# -- the machine --


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "switch_interval_s": sys.getswitchinterval(),
        "versions": {
            name: _version(name) for name in ("brama", "pykka", "pybreaker", "circuitbreaker")
        },
    }


def machine_lines(info: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return [
        f"machine : {info['cores']} cores ({info['usable_cores']} usable), {info['machine']},"
        f" {info['platform']}",
        f"python  : {info['implementation']} {info['python']}"
        f" (switch interval {info['switch_interval_s'] * 1000:.0f} ms)",
        f"versions: {versions}",
    ]
