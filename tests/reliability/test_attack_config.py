"""Attack: a global `configure` racing a per-connection `configure`.

The bug this test would have caught: each change was checked against the other's old value,
so both could be accepted and together be unresolvable (`max_expiry < initial_expiry`, in
2/3 of 3,000 iterations); afterwards `status`, `failure` and `connections()` raised
ConfigError, and an open circuit's expiry tick crashed its actor until the tree gave up. Both
now go through one transaction (`Settings.lock`).
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from brama import Brama, CircuitState, ConfigError, NotFoundError
from tests.helpers import run_threads

ITERATIONS = 3000
GLOBALS: list[dict[str, float]] = [
    {"expiry": 10.0, "max_expiry": 100.0},  # fits every initial_expiry below
    {"expiry": 10.0, "max_expiry": 15.0},  # too small for initial_expiry 20 and 50
    {"expiry": 40.0, "max_expiry": 40.0},  # too small for initial_expiry 50
]
INITIALS = [5.0, 20.0, 50.0]  # the connection's own initial_expiry; 5 always fits
SAFE_GLOBAL, SAFE_INITIAL = 0, 5.0


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 20 µs instead of 5 ms, so the two sides really interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(2e-5)
    yield
    sys.setswitchinterval(previous)


def impossible(global_index: int, initial: float) -> bool:
    return GLOBALS[global_index]["max_expiry"] < initial


class Race:
    """What each side did, and what the reader saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.outcomes = Counter[str]()
        self.problems: list[str] = []
        self.reads = 0

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


def global_side(system: Brama, race: Race) -> None:
    """Flip the global expiry / max_expiry; only this thread writes the global layer, so
    what is in effect after each call is known."""
    settings = system.runtime.settings
    rng = random.Random(1)
    current = SAFE_GLOBAL
    for _ in range(ITERATIONS):
        wanted = rng.randrange(len(GLOBALS))
        try:
            system.configure(**GLOBALS[wanted])
        except ConfigError:
            race.outcomes["global refused"] += 1
            if not any(impossible(wanted, i) for i in INITIALS):
                race.problem(f"global {GLOBALS[wanted]} refused, though nothing conflicts")
        except BaseException as exc:
            race.problem(f"global configure raised {exc!r}")
        else:
            race.outcomes["global accepted"] += 1
            current = wanted
        in_effect = settings.get("max_expiry"), settings.get("expiry")
        if in_effect != (GLOBALS[current]["max_expiry"], GLOBALS[current]["expiry"]):
            race.problem(f"global in effect {in_effect}, expected {GLOBALS[current]}")


def connection_side(system: Brama, race: Race) -> None:
    """Flip the connection's own initial_expiry, with configure or with set_expiry (which
    sets expiry and initial_expiry); only this thread writes them."""
    rng = random.Random(2)
    current = SAFE_INITIAL
    for _ in range(ITERATIONS):
        wanted = rng.choice(INITIALS)
        try:
            if rng.random() < 0.25:
                system.set_expiry("c", wanted)
            else:
                system.configure("c", initial_expiry=wanted)
        except ConfigError:
            race.outcomes["connection refused"] += 1
            if not any(impossible(g, wanted) for g in range(len(GLOBALS))):
                race.problem(f"initial_expiry={wanted} refused, though nothing conflicts")
        except BaseException as exc:
            race.problem(f"configure('c') raised {exc!r}")
        else:
            race.outcomes["connection accepted"] += 1
            current = wanted
        try:
            seen = system.status("c").initial_expiry
        except BaseException as exc:
            race.problem(f"status('c') after configure raised {exc!r}")
        else:
            if seen != current:
                race.problem(f"initial_expiry in effect {seen}, expected {current}")


def reader(system: Brama, race: Race) -> None:
    """Throughout: every read and report works; the circuit keeps opening and expiring
    (an expiry tick resolves the options inside the actor)."""
    rng = random.Random(3)
    while not race.done.is_set():
        op = rng.choice(["status", "connections", "failure", "success", "open", "reset"])
        try:
            if op == "status":
                system.status("c")
            elif op == "connections":
                system.connections()
            elif op == "failure":
                system.failure("c", reason="reader")
            elif op == "success":
                system.success("c")
            elif op == "open":
                system.open_circuit("c", expires_in=0.002)  # its tick comes at once
            else:
                system.reset_circuit("c")
            with race.lock:
                race.reads += 1
        except NotFoundError as exc:
            race.problem(f"{op} raised {exc!r}")
        except BaseException as exc:
            race.problem(f"{op} raised {type(exc).__name__}: {exc}")


@pytest.mark.timeout(90)
def test_global_and_connection_configure_racing_never_store_an_impossible_combination(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two threads, 3,000 iterations each: one flips the global expiry / max_expiry, the
    other the connection's initial_expiry (configure or set_expiry), through values of
    which some combinations are impossible (max_expiry < initial_expiry); a third reads
    and reports throughout. Every refusal is a ConfigError at the call that would have
    made it impossible, and only for a value that can conflict; what each side set is in
    effect afterwards; no read, report or expiry tick ever raises, no actor crashes."""
    caplog.set_level(logging.ERROR)
    race = Race()
    with Brama(max_restarts=3, max_seconds=5.0, **GLOBALS[SAFE_GLOBAL]) as system:
        system.register("c", max_attempts=2, initial_expiry=SAFE_INITIAL)
        cell = system.lookup("c")
        started = time.monotonic()

        def side(index: int) -> None:
            try:
                if index == 0:
                    global_side(system, race)
                elif index == 1:
                    connection_side(system, race)
                else:
                    reader(system, race)
            finally:
                if index < 2:
                    with race.lock:
                        race.outcomes["sides done"] += 1
                        if race.outcomes["sides done"] == 2:
                            race.done.set()

        run_threads(side, 3, timeout=80)
        elapsed = time.monotonic() - started
        final = system.status("c")
        assert final.max_expiry >= final.initial_expiry
        assert [s.identifier for s in system.connections()] == ["c"]
        rows = [r for r in system.runtime.connections.which_children() if r.id is cell]
        restarts = sum(r.restarts for r in rows)
        assert system.runtime.root.alive
        system.open_circuit("c", expires_in=0.01)
        system.reset_expiry("c")
        assert system.status("c").state is CircuitState.HALF_OPEN
    out = dict(race.outcomes)
    print(f"\n[attack 3] {ITERATIONS:,} iterations per side in {elapsed:.1f}s: {out}; "
          f"{race.reads:,} reads and reports, {len(race.problems)} problems, "
          f"{restarts} actor restarts")
    assert not race.problems, race.problems[:10]
    assert restarts == 0
    assert "actor_crashed" not in caplog.text
    assert out["global refused"] > 0 and out["connection refused"] > 0
    assert out["global accepted"] > 0 and out["connection accepted"] > 0


def test_the_oracle_knows_which_combinations_are_impossible() -> None:
    """The table above is right: each impossible pair is refused on a quiet system, each
    possible one accepted, whichever side changes last."""
    for g, values in enumerate(GLOBALS):
        for initial in INITIALS:
            with Brama(**GLOBALS[SAFE_GLOBAL]) as system:
                system.register("c", initial_expiry=initial)
                refused: Any = None
                try:
                    system.configure(**values)
                except ConfigError as exc:
                    refused = exc
                assert (refused is not None) == impossible(g, initial), (values, initial)
            with Brama(**values) as system:
                system.register("c", initial_expiry=SAFE_INITIAL)
                refused = None
                try:
                    system.configure("c", initial_expiry=initial)
                except ConfigError as exc:
                    refused = exc
                assert (refused is not None) == impossible(g, initial), (values, initial)
