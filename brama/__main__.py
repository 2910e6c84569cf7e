"""The command line: `python -m brama demo [--duration SECONDS] [--seed N] [--workers N]`.

No command, or an unknown one, prints the usage and exits with status 2.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence

from brama._demo import MIN_DURATION, DemoConfig, run

__all__ = ["main"]

PROG = "python -m brama"


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {value}")
    return value


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not MIN_DURATION <= value <= 3600:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_DURATION:g} and 3600 seconds, got {text}"
        )
    return value


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
    demo.add_argument("--workers", type=_workers, default=4, metavar="N",
                      help="worker threads calling the service, 1 to 64 (default: 4)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help(sys.stderr)
        print(f"\n{PROG}: error: a command is required (try: {PROG} demo)", file=sys.stderr)
        return 2

    seed: int = random.randrange(10_000) if args.seed is None else args.seed
    config = DemoConfig(duration=args.duration, seed=seed, workers=args.workers)
    try:
        return run(config, sys.stdout)
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
