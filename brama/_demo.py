"""`python -m brama demo`: a flaky HTTP service, a circuit breaker, and a live timeline.

What happens, in the order the code below does it:

1. `FlakyService` starts a real HTTP server on 127.0.0.1 (a free port, loopback only). It
   follows a schedule drawn from the seed: healthy, then a burst of 503 errors or of
   time-outs, healthy again, and so on. Every burst is long enough to trip the breaker and
   every recovery long enough for it to close again, so any seed shows the whole cycle.
2. The connection `"flaky-api"` is registered on the default Brama system with a short expiry,
   and `fetch` is wrapped in `@brama.circuit_breaker("flaky-api", error_handler=...)`.
3. A few worker threads call `fetch` in a loop. Exceptions (time-outs) are reported as failures
   by the decorator; the `error_handler` turns an HTTP 5xx answer into a failure; an open
   circuit rejects the call with `CircuitOpenError` before the service is even contacted.
4. The main thread reads `brama.subscribe(events=["state_change"])` and prints every transition
   (closed -> open -> half_open -> closed) as it happens, next to the service's own phases.
5. A summary: calls made, succeeded, failed, rejected, time spent open, number of openings.
   Then `brama.shutdown()` and the server stops.
"""

from __future__ import annotations

import contextlib
import http.server
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TextIO

import brama
from brama import CircuitOpenError, CircuitState, Event

__all__ = ["PHASE_LABELS", "DemoConfig", "FlakyService", "Phase", "Tally", "make_client",
           "make_schedule", "run", "short", "worker"]

CONNECTION = "flaky-api"
MAX_ATTEMPTS = 4
"""Consecutive failures that open the circuit."""
EXPIRY = 1.0
"""Seconds the circuit stays open before it lets one trial call through (half-open)."""
CLIENT_TIMEOUT = 0.2
"""urllib's timeout: a stalled answer counts as a failure after this many seconds."""
STALL = 1.0
"""How long the service sits on a request during a time-out burst (longer than the timeout)."""
CALL_INTERVAL = 0.05
"""Pause of each worker between two calls (plus a little jitter)."""

LEAD_IN = (1.0, 1.5)
"""Healthy seconds before the first burst (drawn from this range)."""
BURST = (1.5, 2.5)
"""Length of a burst: long enough for even one worker to see MAX_ATTEMPTS failures."""
RECOVERY = (2.0, 3.0)
"""Healthy seconds after a burst: longer than EXPIRY plus a stalled trial call, so it closes."""
MIN_DURATION = LEAD_IN[1] + BURST[0] + RECOVERY[0]
"""The shortest run whose schedule still holds one full burst and its recovery."""

PhaseKind = Literal["healthy", "errors", "timeouts"]

PHASE_LABELS: dict[PhaseKind, str] = {
    "healthy": "service healthy: 200 OK",
    "errors": "service failing: 503 Service Unavailable",
    "timeouts": f"service stalling: no answer within {CLIENT_TIMEOUT:.1f} s",
}


@dataclass(frozen=True)
class Phase:
    """One stretch of the service's schedule, in seconds since the demo started."""

    start: float
    end: float
    kind: PhaseKind


def make_schedule(duration: float, seed: int) -> list[Phase]:
    """The service's schedule for a run of `duration` seconds, the same for the same seed.

    Healthy lead-in, then bursts (503 errors and time-outs, alternating from a random first
    kind) separated by recoveries; the last phase is healthy and lasts until the end.
    """
    if duration < MIN_DURATION:
        raise ValueError(f"duration must be at least {MIN_DURATION} seconds, got {duration}")
    rng = random.Random(seed)
    phases: list[Phase] = []
    now = rng.uniform(*LEAD_IN)
    phases.append(Phase(0.0, now, "healthy"))
    kind: PhaseKind = rng.choice(["errors", "timeouts"])
    while duration - now >= BURST[0] + RECOVERY[0]:
        burst = min(rng.uniform(*BURST), duration - now - RECOVERY[0])
        phases.append(Phase(now, now + burst, kind))
        now += burst
        recovery = rng.uniform(*RECOVERY)
        if duration - (now + recovery) < BURST[0] + RECOVERY[0]:
            recovery = duration - now  # no room for another burst: stay healthy to the end
        phases.append(Phase(now, now + recovery, "healthy"))
        now += recovery
        kind = "timeouts" if kind == "errors" else "errors"
    return phases


class _QuietServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer that does not print tracebacks for clients that went away."""

    request_queue_size = 128  # the default backlog of 5 refuses bursts of connections

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class FlakyService:
    """A real HTTP server on 127.0.0.1 that follows a schedule of healthy and failing phases.

    Requests are handled in threads (`ThreadingHTTPServer`); a request is answered according to
    the phase it arrives in. Use it as a context manager: the server stops on exit.
    """

    def __init__(self, schedule: list[Phase]) -> None:
        self.schedule = schedule
        self.started = time.monotonic()
        """When the schedule began (monotonic); set again when the server starts serving."""
        self.started_wall = time.time()
        """The same moment on the wall clock, which event timestamps use."""
        self._closing = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flaky-service", daemon=True
        )

    @property
    def url(self) -> str:
        """The service's address (loopback, on the port the system picked)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def phase_at(self, elapsed: float) -> PhaseKind:
        """What the service does `elapsed` seconds after it started (healthy past the end)."""
        for phase in self.schedule:
            if phase.start <= elapsed < phase.end:
                return phase.kind
        return "healthy"

    def __enter__(self) -> FlakyService:
        self._thread.start()
        self.started, self.started_wall = time.monotonic(), time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # release requests stalled in a time-out burst
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server looks for
                kind = service.phase_at(time.monotonic() - service.started)
                if kind == "timeouts":
                    service._closing.wait(STALL)  # the client gives up long before this
                    return  # and never gets an answer
                status, body = (503, b"unavailable\n") if kind == "errors" else (200, b"ok\n")
                with contextlib.suppress(OSError):  # the client may be gone (time-out)
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the timeline readable

        return Handler


@dataclass
class Tally:
    """What the workers saw, counted under a lock."""

    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: Literal["succeeded", "failed", "rejected"]) -> None:
        """Count one call."""
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def calls(self) -> int:
        """Every call made, including the ones the breaker rejected."""
        return self.succeeded + self.failed + self.rejected


Verdict = Literal["success"] | tuple[Literal["failure"], str]


def classify(status: int) -> Verdict:
    """The `error_handler`: a 5xx answer is a failure of the dependency, anything else is not."""
    if status >= 500:
        return ("failure", f"HTTP {status}")
    return "success"


def make_client(url: str, system: brama.Brama | None = None, *, identifier: str = CONNECTION,
                scope: str | None = None) -> Callable[[], int]:
    """`fetch()`: GET `url` through the circuit breaker of `identifier` (CONNECTION unless
    said) in `scope`, of `system` (the default one if None); returns the HTTP status.

    An HTTP error answer is returned as its status (and classified by `classify`); a time-out
    or a refused connection raises, which the decorator reports as a failure and re-raises.
    """

    @brama.circuit_breaker(identifier, scope=scope, error_handler=classify, system=system)
    def fetch() -> int:
        try:
            with urllib.request.urlopen(url, timeout=CLIENT_TIMEOUT) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as error:
            return error.code

    return fetch


def worker(fetch: Callable[[], int], tally: Tally, stop: threading.Event, seed: int) -> None:
    """Call `fetch` until `stop` is set, counting what happened to each call."""
    jitter = random.Random(seed)
    while not stop.is_set():
        try:
            status = fetch()
        except CircuitOpenError:
            tally.add("rejected")  # the breaker said no: the service was not called
        except OSError:
            tally.add("failed")  # time-out or connection error, reported by the decorator
        else:
            tally.add("failed" if status >= 500 else "succeeded")
        stop.wait(CALL_INTERVAL * jitter.uniform(0.8, 1.2))


@dataclass(frozen=True)
class DemoConfig:
    """The command-line options of the demo."""

    duration: float = 12.0
    seed: int = 1
    workers: int = 4


@dataclass
class Timeline:
    """Prints the service's phases and the circuit's transitions as they happen.

    Also measures what the summary reports: openings and the time spent open.
    """

    out: TextIO
    started: float
    """Wall-clock time (epoch seconds) when the demo started; event timestamps are epoch too."""
    schedule: list[Phase]
    openings: int = 0
    reopenings: int = 0
    time_open: float = 0.0
    seen: set[CircuitState] = field(default_factory=set)
    _open_since: float | None = None
    _next_phase: int = 0

    def header(self) -> None:
        """The column titles."""
        self._print(f"{'time':>7}  {'what':<24}{'fails':>5}{'ok':>6}{'failed':>8}"
                    f"{'rejected':>10}  reason")

    def phases_until(self, elapsed: float) -> None:
        """Print the service phases that began by `elapsed` and were not printed yet."""
        while self._next_phase < len(self.schedule):
            phase = self.schedule[self._next_phase]
            if phase.start > elapsed:
                return
            self._next_phase += 1
            self._print(f"{phase.start:>6.2f}s  -- {PHASE_LABELS[phase.kind]} "
                        f"(until {phase.end:.2f}s)")

    def transition(self, event: Event) -> None:
        """Print one STATE_CHANGE event and account for it."""
        elapsed = event.timestamp - self.started
        self.phases_until(elapsed)
        previous = CircuitState(event.data["previous_state"])
        new = CircuitState(event.data["new_state"])
        self.seen.update((previous, new))
        if new is CircuitState.OPEN:
            self.openings += 1
            self.reopenings += previous is CircuitState.HALF_OPEN
            self._open_since = elapsed
        elif previous is CircuitState.OPEN and self._open_since is not None:
            self.time_open += elapsed - self._open_since
            self._open_since = None
        totals = brama.status(event.connection, scope=event.scope)  # read after the event
        what = f"{previous.value:<9} -> {new.value}"
        self._print(
            f"{elapsed:>6.2f}s  {what:<24}{event.data['failure_count']:>5}"
            f"{totals.total_successes:>6}{totals.total_failures:>8}{totals.rejected_calls:>10}"
            f"  {short(event.data['reason'])}"
        )

    def finish(self, elapsed: float) -> None:
        """Close the books at the end of the run (a circuit still open counts until now)."""
        if self._open_since is not None:
            self.time_open += elapsed - self._open_since
            self._open_since = None

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def short(reason: object, width: int = 40) -> str:
    """`reason` as text, cut to `width` characters."""
    text = str(reason)
    return text if len(text) <= width else text[: width - 3] + "..."


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _drain(subscription: brama.Subscription, quiet: float) -> Iterator[Event]:
    """The events still arriving on `subscription`, until none came for `quiet` seconds."""
    while True:
        try:
            event: Event = subscription.get(timeout=quiet)
        except queue.Empty:
            return
        yield event


def run(config: DemoConfig, out: TextIO) -> int:
    """Run the demo and print its timeline and summary to `out`; returns the exit status.

    Ctrl-C stops the workers early; the summary is still printed and the status is 130.
    """
    schedule = make_schedule(config.duration, config.seed)
    tally = Tally()
    stop = threading.Event()
    interrupted = False

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    with FlakyService(schedule) as service:
        brama.register(CONNECTION, max_attempts=MAX_ATTEMPTS, expiry=EXPIRY,
                       metadata={"url": service.url})
        try:
            fetch = make_client(service.url)
            _introduce(say, config, service.url)
            timeline = Timeline(out, service.started_wall, schedule)
            timeline.header()
            subscription = brama.subscribe(events=["state_change"], connection=CONNECTION)
            threads = [
                threading.Thread(target=worker, name=f"demo-worker-{n}", daemon=True,
                                 args=(fetch, tally, stop, config.seed * 1000 + n))
                for n in range(config.workers)
            ]
            for thread in threads:
                thread.start()
            deadline = service.started + config.duration
            try:
                while (now := time.monotonic()) < deadline:
                    try:
                        event = subscription.get(timeout=min(0.1, deadline - now))
                    except queue.Empty:
                        timeline.phases_until(time.monotonic() - service.started)
                    else:
                        timeline.transition(event)
            except KeyboardInterrupt:
                interrupted = True
                say("\ninterrupted (Ctrl-C): stopping the workers")
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            with subscription:  # transitions caused by the last calls, if any
                for event in _drain(subscription, quiet=0.2):
                    timeline.transition(event)
            elapsed = time.monotonic() - service.started
            timeline.finish(elapsed)
            status = brama.status(CONNECTION)
        finally:
            brama.shutdown()

    _summary(out, config, tally, timeline, status, elapsed)
    return 130 if interrupted else 0


def _introduce(say: Callable[[str], None], config: DemoConfig, url: str) -> None:
    threads = _plural(config.workers, "thread")
    say(f"Brama demo: {threads} call a flaky HTTP service through @brama.circuit_breaker")
    say(f"  service   {url} on loopback: healthy, with bursts of 503s and time-outs")
    say(f"  breaker   {CONNECTION!r} opens after {MAX_ATTEMPTS} failures in a row, "
        f"half-opens {EXPIRY:.1f} s later,")
    say("            and closes again when its trial call succeeds")
    say(f"  run       {config.duration:.1f} s, seed {config.seed} (the same seed gives "
        "the same schedule)")
    say("  timeline  state changes from brama.subscribe(events=['state_change']);")
    say("            fails: consecutive failures; ok / failed / rejected: the totals of")
    say("            brama.status() when the line is printed")
    say("")


def _summary(out: TextIO, config: DemoConfig, tally: Tally, timeline: Timeline,
             status: brama.ConnectionStatus, elapsed: float) -> None:
    calls = tally.calls
    lines = [
        "",
        f"Summary ({elapsed:.1f} s, {_plural(config.workers, 'worker')}, seed {config.seed})",
        f"  calls made        {calls:>6}",
        f"    succeeded       {tally.succeeded:>6}  ({_percent(tally.succeeded, calls)})",
        f"    failed          {tally.failed:>6}  ({_percent(tally.failed, calls)}, "
        "503 or time-out, reported to the breaker)",
        f"    rejected        {tally.rejected:>6}  ({_percent(tally.rejected, calls)}, "
        "CircuitOpenError: the service was spared the call)",
        f"  openings          {timeline.openings:>6}  "
        f"({timeline.reopenings} of them after a failed trial call in half_open)",
        f"  time spent open   {timeline.time_open:>6.1f} s ({_percent(timeline.time_open, elapsed)}"
        " of the run)",
        f"  breaker's view    state={status.state.value}, "
        f"total_successes={status.total_successes}, total_failures={status.total_failures}, "
        f"rejected_calls={status.rejected_calls}",
        f"  states seen       {', '.join(s.value for s in CircuitState if s in timeline.seen)}",
        "",
        "The code of this demo is brama/_demo.py; more in examples/.",
    ]
    print("\n".join(lines), file=out, flush=True)
