"""Helpers shared by the benchmark scripts: timing loops, statistics, machine description."""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "Loop",
    "brama_decorator",
    "fmt_ns",
    "gc_paused",
    "interleave",
    "machine_info",
    "machine_lines",
    "median",
    "percentile",
    "time_loop",
]

Loop = Callable[[int], Any]
"""A contender: runs its operation `n` times in a tight loop."""


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


def time_loop(loop: Loop, n: int) -> float:
    """Nanoseconds per iteration of `loop(n)`, with the GC paused."""
    with gc_paused():
        start = time.perf_counter_ns()
        loop(n)
        elapsed = time.perf_counter_ns() - start
    return elapsed / n


def interleave(
    contenders: dict[str, Loop], n: int, samples: int, *, warmup: int | None = None
) -> dict[str, list[float]]:
    """Round-robin repetitions (A, B, C, A, B, C, ...): ns/op samples for each contender.

    Every contender first runs `warmup` iterations (default n // 10) untimed.
    """
    warm = max(1, n // 10) if warmup is None else warmup
    for loop in contenders.values():
        loop(warm)
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(samples):
        for name, loop in contenders.items():
            results[name].append(time_loop(loop, n))
    return results


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


def brama_decorator() -> Callable[..., Any] | None:
    """`brama.circuit_breaker`, or None while it does not exist yet."""
    import brama

    deco = getattr(brama, "circuit_breaker", None)
    if deco is not None:
        return deco  # type: ignore[no-any-return]
    try:
        from brama.decorator import circuit_breaker
    except ImportError:
        return None
    return circuit_breaker  # type: ignore[no-any-return]
