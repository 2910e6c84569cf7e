"""The first-impression material keeps working: every example script and `python -m brama demo`.

Each example runs in a subprocess from the repository root, as a newcomer would run it. A new
file in examples/ is picked up automatically (it must exit 0 and print something); the ones
listed in KEY_LINES must also print their key line.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from brama._demo import BURST, MIN_DURATION, RECOVERY, make_schedule

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES_EXAMPLE = EXAMPLES / "test_with_fixtures.py"
TIMEOUT = 60

KEY_LINES = {
    "manual_reporting.py": "refused by the breaker",
    "decorator_fallback.py": "'stale': True",
    "asyncio_app.py": "rejected (open circuit)",
    "alerting_actor.py": "RESOLVED",
    "groups.py": "group_available('checkout') = False",
    "otp_worker_pool.py": "worker-1 is found by name again",
}

SCRIPTS = sorted(
    path for path in EXAMPLES.glob("*.py")
    if path != FIXTURES_EXAMPLE and not path.name.startswith("_")
)

TRANSITION = re.compile(r"^\s*\d+\.\d+s\s+(closed|open|half_open)\s+->\s+(closed|open|half_open)\b",
                        re.MULTILINE)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def test_the_examples_are_found() -> None:
    assert {path.name for path in SCRIPTS} >= set(KEY_LINES)
    assert FIXTURES_EXAMPLE.exists()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_example_runs(script: Path) -> None:
    source = script.read_text(encoding="utf-8")
    assert source.startswith('"""'), f"{script.name} needs a docstring saying what it shows"
    result = run(str(script.relative_to(ROOT)))
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script.name} printed nothing"
    assert KEY_LINES.get(script.name, "") in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def test_example_test_file_passes() -> None:
    # -n 0: pyproject.toml's addopts would start pytest-xdist workers for these few tests
    result = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                 str(FIXTURES_EXAMPLE.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout
    assert "failed" not in result.stdout


@pytest.mark.parametrize("seed", [1, 0])  # seed 1 starts with 503s, seed 0 with time-outs
def test_demo_shows_the_whole_cycle(seed: int) -> None:
    result = run("-m", "brama", "demo", "--duration", "6", "--seed", str(seed))
    assert result.returncode == 0, result.stdout + result.stderr
    transitions = TRANSITION.findall(result.stdout)
    assert ("closed", "open") in transitions, result.stdout
    assert ("open", "half_open") in transitions, result.stdout
    assert ("half_open", "closed") in transitions, result.stdout
    assert "states seen       closed, open, half_open" in result.stdout
    assert "Summary" in result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def test_demo_is_reproducible_from_its_seed() -> None:
    assert make_schedule(12.0, 7) == make_schedule(12.0, 7)
    assert make_schedule(12.0, 7) != make_schedule(12.0, 8)


@pytest.mark.parametrize("duration", [MIN_DURATION, 6.0, 12.0, 30.0])
def test_every_schedule_trips_and_recovers(duration: float) -> None:
    """The design promise behind "any seed shows open, half_open and closed"."""
    for seed in range(300):
        phases = make_schedule(duration, seed)
        assert phases[0].start == 0.0 and phases[0].kind == "healthy"
        assert phases[-1].end == pytest.approx(duration) and phases[-1].kind == "healthy"
        assert all(a.end == b.start for a, b in itertools.pairwise(phases))
        bursts = [(n, p) for n, p in enumerate(phases) if p.kind != "healthy"]
        assert bursts, f"seed {seed}: no burst"
        for n, burst in bursts:
            assert burst.end - burst.start >= BURST[0] - 1e-9
            recovery = phases[n + 1]
            assert recovery.kind == "healthy"
            assert recovery.end - recovery.start >= RECOVERY[0] - 1e-9


def test_no_command_prints_usage_and_exits_2() -> None:
    result = run("-m", "brama")
    assert result.returncode == 2
    assert "usage: python -m brama" in result.stderr
    assert "demo" in result.stderr


def test_unknown_command_or_bad_option_exits_2() -> None:
    assert run("-m", "brama", "frobnicate").returncode == 2
    assert run("-m", "brama", "demo", "--duration", "1").returncode == 2
    assert run("-m", "brama", "demo", "--workers", "0").returncode == 2
