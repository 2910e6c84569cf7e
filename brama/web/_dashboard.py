"""`python -m brama dashboard`: the status page on 127.0.0.1, optionally with the demo behind it.

- No option: the page of this process's default system. It starts empty (nothing else runs in
  this process); the page is meant to be mounted in an application (`brama.web.app()`), and
  this command is the quickest way to look at it.
- `--demo`: three flaky HTTP services on loopback (the demo's `FlakyService`, each on a
  schedule of healthy phases and bursts of 503s or time-outs that repeats every minute), with
  worker threads calling them through `@brama.circuit_breaker`; their circuits open,
  half-open and close on the page as the services fail and recover.
- `--backend URL [--namespace NS]`: the page of the whole fleet on that backend: a system
  started with `brama.start(backend=URL, namespace=NS)` and a `FleetView` that registers
  every connection the fleet's processes have in Redis (discovered every `--interval`
  seconds), so each row is the fleet's live state of one connection, with the origin of its
  last change; a backend that does not answer is shown on the page, never a crash.

Ctrl-C stops it: workers first, then the event streams, the server and the system.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import brama
from brama._demo import (
    CONNECTION,
    EXPIRY,
    MAX_ATTEMPTS,
    FlakyService,
    PhaseKind,
    Tally,
    make_client,
    make_schedule,
    worker,
)
from brama._fleet import FleetConfig, RedisMissingError
from brama.errors import ConfigError
from brama.web._app import StatusApp
from brama.web._fleetview import DEFAULT_INTERVAL, FleetView
from brama.web._server import make_server

__all__ = ["DashboardConfig", "fleet_view", "run", "start_system"]

DEMO_PERIOD = 60.0
"""Seconds after which a demo service's schedule starts over."""
DEMO_SERVICES: tuple[tuple[str, str | None], ...] = (
    (CONNECTION, None),
    ("payments", "billing"),
    ("search", None),
)
"""The demo's connections (identifier, scope), one flaky service each."""
WORKERS_PER_SERVICE = 2


@dataclass(frozen=True)
class DashboardConfig:
    """The command-line options of the dashboard."""

    port: int = 8000
    backend: str | None = None
    namespace: str | None = None
    """The fleet's namespace (None: the system option's, `BRAMA_NAMESPACE` or `"brama"`)."""
    interval: float = DEFAULT_INTERVAL
    """Seconds between discovery passes of the fleet view."""
    demo: bool = False
    seed: int = 1


def start_system(backend: str | None, namespace: str | None = None) -> brama.Brama:
    """The default system (started if need be), or a new default system on `backend` (in
    `namespace`, else the system option's). A bad URL or namespace raises ConfigError, a
    missing redis-py RedisMissingError; an unreachable server is no error (the fleet view
    shows it)."""
    if backend is None:
        return brama.default()
    options: dict[str, str] = {"backend": backend}
    if namespace is not None:
        options["namespace"] = namespace
    return brama.start(**options)


def fleet_view(system: brama.Brama, interval: float = DEFAULT_INTERVAL) -> FleetView | None:
    """A fleet view of `system` (not started), or None when it has no backend."""
    link = system.runtime.fleet
    config = getattr(link, "config", None)
    return FleetView(system, config, interval=interval) if isinstance(config,
                                                                      FleetConfig) else None


class _LoopingService(FlakyService):
    """A demo service whose schedule repeats every `period` seconds, starting `offset`
    seconds into it (the demo's schedules end healthy, and the dashboard runs until it is
    stopped; offsets keep the services from failing in step)."""

    def __init__(self, period: float, seed: int, offset: float) -> None:
        super().__init__(make_schedule(period, seed))
        self.period = period
        self.offset = offset

    def phase_at(self, elapsed: float) -> PhaseKind:
        return super().phase_at((elapsed + self.offset) % self.period)


@contextlib.contextmanager
def _demo(seed: int, out: TextIO) -> Iterator[None]:
    """Run the demo's services and workers for the duration of the block."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with contextlib.ExitStack() as stack:
        for number, (identifier, scope) in enumerate(DEMO_SERVICES):
            offset = DEMO_PERIOD * number / len(DEMO_SERVICES)
            service = stack.enter_context(_LoopingService(DEMO_PERIOD, seed + number, offset))
            brama.register(identifier, scope=scope, max_attempts=MAX_ATTEMPTS, expiry=EXPIRY,
                           metadata={"url": service.url, "demo": True})
            fetch = make_client(service.url, identifier=identifier, scope=scope)
            where = identifier if scope is None else f"{scope}/{identifier}"
            print(f"  demo service {where:<18} {service.url}", file=out, flush=True)
            for n in range(WORKERS_PER_SERVICE):
                threads.append(threading.Thread(
                    target=worker, name=f"dashboard-demo-{identifier}-{n}", daemon=True,
                    args=(fetch, Tally(), stop, (seed + number) * 1000 + n)))
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join()


def run(config: DashboardConfig, out: TextIO, err: TextIO,
        stop: threading.Event | None = None) -> int:
    """Serve the dashboard until Ctrl-C (or until `stop` is set); returns the exit status."""
    try:
        system = start_system(config.backend, config.namespace)
    except (ConfigError, RedisMissingError, ValueError, TypeError) as error:
        print(f"python -m brama dashboard: {error}", file=err)
        return 2
    view: FleetView | None = None
    try:
        view = fleet_view(system, config.interval)
        status_app = StatusApp(fleet=view)
        try:
            server = make_server(status_app, port=config.port)
        except OSError as error:
            print(f"python -m brama dashboard: cannot listen on 127.0.0.1:{config.port}: "
                  f"{error.strerror or error}", file=err)
            return 1
        done = threading.Event() if stop is None else stop
        with server, (_demo(config.seed, out) if config.demo else contextlib.nullcontext()):
            if view is not None:
                view.start()
                fleet = view.summary()
                state = ("" if fleet["available"]
                         else f"; the backend does not answer yet ({fleet['error']})")
                print(f"  fleet {fleet['namespace']!r} on {fleet['backend']}: "
                      f"{fleet['discovered']} connections, discovery every "
                      f"{view.interval:g} s{state}", file=out, flush=True)
            print(f"Brama dashboard on {server.url}  (Ctrl-C to stop)", file=out, flush=True)
            thread = threading.Thread(target=server.serve_forever, name="brama-dashboard",
                                      kwargs={"poll_interval": 0.2}, daemon=True)
            thread.start()
            try:
                while thread.is_alive() and not done.wait(0.5):  # Ctrl-C interrupts the wait
                    pass
            except KeyboardInterrupt:
                print("\nstopping", file=out, flush=True)
            finally:
                if view is not None:
                    view.close()  # no discovery pass while the system stops
                status_app.close()  # ends the event streams, so their threads end too
                server.shutdown()
                thread.join()
        print("dashboard stopped", file=out, flush=True)
        return 0
    finally:
        if view is not None:
            view.close()
        brama.shutdown()
