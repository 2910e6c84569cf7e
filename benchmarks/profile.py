"""Where Brama's hot paths spend their time: each path under cProfile, top functions printed.

    python benchmarks/profile.py                      # guarded, available, rejection, failure
    python benchmarks/profile.py --only failure --top 25 --sort cumulative

Paths (on the default system, as `@brama.circuit_breaker` users run them):
  guarded    `@brama.circuit_breaker` on a no-op, closed circuit
  available  `brama.available(name)`, closed circuit
  rejection  `@brama.circuit_breaker` on an open circuit, CircuitOpenError caught
  failure    `@brama.circuit_breaker` on a function that raises (max_attempts 1e9, stays closed)

The failure path crosses threads: the caller waits while the connection's actor works. It is
profiled on both sides (the caller, and the actor's message handling), and a timing pass
without the profiler splits the wall time per call into actor handling and hand-off.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file's name shadows the standard library's `profile`, which cProfile imports: import
# cProfile with this folder out of sys.path, then put the folder back (for `_util`).
_HERE = Path(__file__).resolve().parent
_SAVED_PATH = sys.path[:]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import cProfile  # noqa: E402

sys.path[:] = _SAVED_PATH

import argparse  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from itertools import repeat  # noqa: E402
from typing import Any  # noqa: E402

from _util import brama_decorator, fmt_ns, gc_paused, machine_info, machine_lines  # noqa: E402

import brama  # noqa: E402
from brama.connection import ConnectionActor  # noqa: E402

PATHS = ("guarded", "available", "rejection", "failure")


def _noop() -> None:
    return None


def _boom() -> None:
    raise ValueError("boom")


def _loop(fn: Callable[[], Any], catch: type[BaseException] | None = None) -> Callable[[int], None]:
    if catch is None:
        def plain(n: int) -> None:
            for _ in repeat(None, n):
                fn()

        return plain

    def catching(n: int) -> None:
        for _ in repeat(None, n):
            try:  # noqa: SIM105 - suppress() would add its own cost to the loop
                fn()
            except catch:
                pass

    return catching


def _print_stats(title: str, profiles: list[cProfile.Profile], sort: str, top: int) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=stream)
    for extra in profiles[1:]:
        stats.add(extra)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = stream.getvalue()
    # drop pstats' preamble up to the summary line
    start = text.find("function calls")
    print(f"--- {title} (sorted by {sort}) ---")
    print(text[max(0, text.rfind("\n", 0, start) + 1):].rstrip())
    print()


class _ActorSide:
    """Wraps `ConnectionActor._handle_receive` to time it, or to run it under a profiler."""

    def __init__(self) -> None:
        self.original = ConnectionActor._handle_receive
        self.handled = 0
        self.handling_ns = 0
        self.profile: cProfile.Profile | None = None

    def install(self, profile: bool) -> None:
        side = self
        original = self.original
        self.profile = cProfile.Profile() if profile else None
        clock = time.perf_counter_ns

        def handle(actor: Any, message: Any) -> Any:
            prof = side.profile
            start = clock()
            if prof is not None:
                prof.enable()
            try:
                return original(actor, message)
            finally:
                if prof is not None:
                    prof.disable()
                side.handling_ns += clock() - start
                side.handled += 1

        ConnectionActor._handle_receive = handle  # type: ignore[method-assign]

    def remove(self) -> None:
        ConnectionActor._handle_receive = self.original  # type: ignore[method-assign]


def _setup(path: str, deco: Callable[..., Any] | None) -> tuple[Callable[[int], None], str]:
    system = brama.default()
    if path == "available":
        system.register("profiled")
        return _loop(lambda: brama.available("profiled")), "brama.available(name)"
    if deco is None:
        raise SystemExit("brama.circuit_breaker does not exist yet; only --only available works")
    if path == "guarded":
        system.register("profiled")
        return _loop(deco("profiled")(_noop)), "@brama.circuit_breaker on a no-op"
    if path == "rejection":
        system.register("profiled", expiry=3600.0)
        system.open_circuit("profiled")
        return (_loop(deco("profiled")(_noop), brama.CircuitOpenError),
                "@brama.circuit_breaker on an open circuit (CircuitOpenError caught)")
    system.register("profiled", max_attempts=10**9)
    return (_loop(deco("profiled")(_boom), ValueError),
            "@brama.circuit_breaker on a raising function (circuit stays closed)")


def profile_path(path: str, n: int, sort: str, top: int) -> None:
    deco = brama_decorator()
    brama.shutdown()
    brama.start()
    side = _ActorSide()
    try:
        loop, label = _setup(path, deco)
        loop(max(1, n // 10))  # warm-up: wakes the actor, fills caches
        print(f"=== {path}: {label}, {n:,} calls ===")

        # timing pass, no profiler
        if path == "failure":
            side.install(profile=False)
        with gc_paused():
            start = time.perf_counter_ns()
            loop(n)
            wall = (time.perf_counter_ns() - start) / n
        print(f"wall time per call without the profiler: {fmt_ns(wall)}")
        if path == "failure" and side.handled:
            inside = side.handling_ns / side.handled
            print(f"  of which the connection actor handling the message (_handle_receive):"
                  f" {fmt_ns(inside)} per call ({side.handled:,} messages)")
            print(f"  the rest, {fmt_ns(wall - inside)} per call, is the caller's side and the"
                  " hand-off (ask, inbox queue, thread switch, future)")
        print()

        # profiled pass
        if path == "failure":
            side.install(profile=True)
        caller = cProfile.Profile()
        with gc_paused():
            caller.enable()
            loop(n)
            caller.disable()
        _print_stats(f"{path}: caller thread", [caller], sort, top)
        if path == "failure" and side.profile is not None:
            _print_stats(f"{path}: connection actor thread (message handling only)",
                         [side.profile], sort, top)
    finally:
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
                        help="calls per path (default 100,000; failure 5,000)")
    args = parser.parse_args(argv)
    paths = PATHS if not args.only else tuple(p.strip() for p in args.only.split(","))
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise SystemExit(f"unknown path(s) {unknown}; choose from {', '.join(PATHS)}")
    for line in machine_lines(machine_info()):
        print(line)
    print()
    for path in paths:
        n = args.n or (5_000 if path == "failure" else 100_000)
        profile_path(path, n, args.sort, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
