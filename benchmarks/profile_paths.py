"""Where Brama's hot paths spend their time: each path under cProfile, top functions printed.

    python benchmarks/profile_paths.py                      # every path
    python benchmarks/profile_paths.py --only failure --top 25 --sort cumulative

Paths (on the default system, as `@brama.circuit_breaker` users run them):
  guarded     `@brama.circuit_breaker` on a no-op, closed circuit
  available   `brama.available(name)`, closed circuit
  rejection   `@brama.circuit_breaker` on an open circuit, CircuitOpenError caught
  failure     `@brama.circuit_breaker` on a function that raises (max_attempts 1e9, stays
              closed), the connection's actor awake
  hibernated  `brama.failure(name)` on connections whose actor hibernated: each report
              starts an actor

A failure goes through the connection's actor: its handler (`on_receive`) runs on the
caller's thread when the actor is idle (direct dispatch), else on the actor's own thread. For
the failure paths a timing pass without the profiler splits the wall time per call into the
handler and the rest (the caller's side: lookup, dispatch, starting or waking the actor,
hand-off), and counts where the handler ran; the profiled pass profiles the caller's thread,
and separately the handlers that ran on actor threads.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _util import (
    awake,
    boom,
    calls,
    calls_catching,
    fmt_ns,
    gc_paused,
    machine_info,
    machine_lines,
    noop,
    wait_until,
)

import brama

PATHS = ("guarded", "available", "rejection", "failure", "hibernated")
ACTOR_PATHS = ("failure", "hibernated")
HUGE = 10**9


def _print_stats(title: str, profile: cProfile.Profile, sort: str, top: int) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = stream.getvalue()
    start = text.find("function calls")  # drop pstats' preamble up to the summary line
    print(f"--- {title} (sorted by {sort}) ---")
    print(text[max(0, text.rfind("\n", 0, start) + 1):].rstrip())
    print()


class HandlerSide:
    """Times the connection actors' message handler wherever it runs, and profiles it when it
    runs on an actor's own thread (the caller's profiler already sees direct dispatch).

    The class is the `actor_class` of a running connection actor's ref (a public pykka
    attribute); its public `on_receive` is wrapped while installed."""

    def __init__(self, actor_class: type[Any]) -> None:
        self.actor_class = actor_class
        self.original = actor_class.on_receive
        self.caller = threading.get_ident()
        self.profile: cProfile.Profile | None = None
        self.profiling = threading.Lock()  # one actor thread in the profiler at a time
        self.reset()

    def reset(self) -> None:
        self.handled = self.direct = self.ns = 0

    def install(self, profile: bool) -> None:
        side, original, clock = self, self.original, time.perf_counter_ns
        self.profile = cProfile.Profile() if profile else None
        self.reset()

        def on_receive(actor: Any, message: Any) -> Any:
            here = threading.get_ident() == side.caller
            prof = None if here or side.profile is None else side.profile
            if prof is not None and not side.profiling.acquire(blocking=False):
                prof = None
            start = clock()
            if prof is not None:
                prof.enable()
            try:
                return original(actor, message)
            finally:
                if prof is not None:
                    prof.disable()
                    side.profiling.release()
                side.ns += clock() - start
                side.handled += 1
                side.direct += here

        self.actor_class.on_receive = on_receive

    def remove(self) -> None:
        self.actor_class.on_receive = self.original


def _actor_class(system: brama.Brama) -> type[Any]:
    """The class of the connection actors, from a running one (public attributes only)."""
    system.register("bench-probe", max_attempts=HUGE)
    system.failure("bench-probe", reason="wakes its actor")
    ref = system.runtime.connections.whereis_child(system.cells["bench-probe"])
    assert ref is not None, "the probe connection has no running actor"
    actor_class: type[Any] = ref.actor_class
    system.unregister("bench-probe")
    return actor_class


def _hibernated_loop(system: brama.Brama, count: int) -> Callable[[int], None]:
    """`brama.failure(name)` over `count` connections whose actor hibernated (woken once by
    a failure, hibernate_after=0, waited for); each call of the loop takes fresh ones."""
    names = [f"hib-{i}" for i in range(count)]
    for name in names:
        system.register(name, max_attempts=HUGE, hibernate_after=0.0)
        system.failure(name, reason="wake")
    if not wait_until(lambda: not any(awake(system, x) for x in names), timeout=30.0):
        raise SystemExit("the connections did not hibernate within 30 s")
    pool = iter(names)

    def loop(n: int) -> None:
        for name in [next(pool) for _ in range(n)]:
            brama.failure(name, reason="boom")

    return loop


def _setup(path: str, system: brama.Brama, n: int) -> tuple[Callable[[int], None], str]:
    deco = brama.circuit_breaker
    if path == "available":
        system.register("profiled")
        return calls(lambda: brama.available("profiled")), "brama.available(name)"
    if path == "guarded":
        system.register("profiled")
        return calls(deco("profiled")(noop)), "@brama.circuit_breaker on a no-op"
    if path == "rejection":
        system.register("profiled", expiry=3600.0)
        system.open_circuit("profiled")
        return (calls_catching(deco("profiled")(noop), brama.CircuitOpenError),
                "@brama.circuit_breaker on an open circuit (CircuitOpenError caught)")
    if path == "failure":
        system.register("profiled", max_attempts=HUGE, hibernate_after=3600.0)
        return (calls_catching(deco("profiled")(boom), ValueError),
                "@brama.circuit_breaker on a raising function (closed, actor awake)")
    return (_hibernated_loop(system, n // 10 + 2 * n),
            "brama.failure(name), each on a connection whose actor hibernated")


def profile_path(path: str, n: int, sort: str, top: int) -> None:
    brama.shutdown()
    system = brama.start()
    side = HandlerSide(_actor_class(system)) if path in ACTOR_PATHS else None
    try:
        loop, label = _setup(path, system, n)
        loop(max(1, n // 10))  # warm-up: wakes the actor, fills caches
        print(f"=== {path}: {label}, {n:,} calls ===")

        if side is not None:  # timing pass, no profiler
            side.install(profile=False)
        with gc_paused():
            start = time.perf_counter_ns()
            loop(n)
            wall = (time.perf_counter_ns() - start) / n
        print(f"wall time per call without the profiler: {fmt_ns(wall)}")
        if side is not None and side.handled:
            inside = side.ns / side.handled
            print(f"  of which the connection actor's handler (on_receive): {fmt_ns(inside)} per"
                  f" message ({side.handled:,} messages, {side.direct:,} of them run on the"
                  " caller's thread by direct dispatch)")
            print(f"  the rest, {fmt_ns(wall - inside * side.handled / n)} per call, is the"
                  " caller's side: lookup, dispatch, starting or waking the actor, hand-off")
        print()

        if side is not None:  # profiled pass
            side.install(profile=True)
        caller = cProfile.Profile()
        with gc_paused():
            caller.enable()
            loop(n)
            caller.disable()
        _print_stats(f"{path}: caller thread", caller, sort, top)
        if side is not None and side.profile is not None and side.handled > side.direct:
            _print_stats(f"{path}: handlers run on actor threads", side.profile, sort, top)
    finally:
        if side is not None:
            side.remove()
        brama.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", metavar="PATH",
                        help=f"comma-separated paths among {', '.join(PATHS)}")
    parser.add_argument("--top", type=int, default=15, help="functions shown per profile")
    parser.add_argument("--sort", default="tottime",
                        help="pstats sort key: tottime (default), cumulative, ncalls, ...")
    parser.add_argument("-n", type=int, default=None,
                        help="calls per path (default 100,000; failure 5,000; hibernated 300)")
    args = parser.parse_args(argv)
    paths = PATHS if not args.only else tuple(p.strip() for p in args.only.split(","))
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise SystemExit(f"unknown path(s) {unknown}; choose from {', '.join(PATHS)}")
    for line in machine_lines(machine_info()):
        print(line)
    print()
    defaults = {"failure": 5_000, "hibernated": 300}
    for path in paths:
        profile_path(path, args.n or defaults.get(path, 100_000), args.sort, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
