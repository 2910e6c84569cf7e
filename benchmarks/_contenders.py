"""The contenders of the benchmark cases: loop builders, `build(env) -> Loop | Arm`.

Loops call the libraries the way users write them (`system.available(name)`, not a bound
method cached in a local), the same way for every contender. Brama contenders use its public
API only.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from itertools import repeat
from typing import Any

import circuitbreaker
import pybreaker
import pykka
from _util import Arm, Env, Loop, awake, boom, calls, calls_catching, noop, wait_until

import brama
from brama.otp import Actor, call

HUGE = 10**9
"""max_attempts / fail_max / failure_threshold / reset_timeout that is never reached."""
AWAKE = 3600.0
"""hibernate_after (and expiry) for connections whose actor must stay up through a case."""
NAMES_100 = [f"svc-{i}" for i in range(100)]


# -- contenders: Brama --


def _on(env: Env, shared: bool) -> brama.Brama:
    """The case's fresh default system, or its one standalone system."""
    return env.shared("system", env.system) if shared else env.default()


def deco(name: str, fn: Callable[[], Any] = noop, catch: type[BaseException] | None = None,
         *, system: bool = False, counted: bool = False, fallback: Callable[..., Any] | None = None,
         open_: bool = False, **options: Any) -> Callable[[Env], Arm]:
    """`fn` decorated with `@brama.circuit_breaker(name)` on the default system (or, with
    `system`, `system=` the case's standalone one), called n times."""

    def build(env: Env) -> Arm:
        target = _on(env, system)
        target.register(name, **options)
        if open_:
            target.open_circuit(name)
        wrapped = brama.circuit_breaker(name, fallback=fallback,
                                        system=target if system else None)(fn)
        loop = calls(wrapped) if catch is None else calls_catching(wrapped, catch)
        return Arm(loop, count=(lambda: target.status(name).total_successes) if counted else None)

    return build


def observed(name: str) -> Callable[[Env], Arm]:
    """`@brama.circuit_breaker(name, system=...)` on a standalone system of its own that is
    observed: a `BramaCollector` registered on a Prometheus registry and `instrument()` active
    on an OpenTelemetry SDK meter provider (an in-memory reader, so nothing collects while
    the loop is timed). Both are checked to see the connection before the samples."""

    def build(env: Env) -> Arm:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from prometheus_client import CollectorRegistry

        from brama.integrations.opentelemetry import instrument
        from brama.integrations.prometheus import BramaCollector

        system = env.system()
        system.register(name)
        registry = CollectorRegistry()
        registry.register(BramaCollector(system))
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        env.on_exit(provider.shutdown)
        instrumentation = instrument(system, provider)
        env.on_exit(instrumentation.close)
        scraped = registry.get_sample_value("brama_calls_total", {
            "connection": name, "scope": "", "outcome": "success"})
        collected = reader.get_metrics_data()
        if scraped != 0.0 or collected is None or not collected.resource_metrics:
            raise RuntimeError(f"the metrics do not see {name!r}: {scraped!r}, {collected!r}")
        wrapped = brama.circuit_breaker(name, system=system)(noop)
        return Arm(calls(wrapped))

    return build


def manual_success(name: str, *, module: bool = False, counted: bool = False,
                   open_: bool = False) -> Callable[[Env], Arm]:
    """`if available(name): f(); success(name)`, with the module functions (default system)
    or the methods of the case's standalone system."""

    def build(env: Env) -> Arm:
        system = _on(env, not module)
        if open_:
            system.register(name, expiry=AWAKE)
            system.open_circuit(name)
        else:
            system.register(name)
        if module:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    if brama.available(name):
                        noop()
                        brama.success(name)
        else:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    if system.available(name):
                        noop()
                        system.success(name)
        return Arm(loop, count=(lambda: system.status(name).total_successes) if counted else None)

    return build


def available_of(module: bool) -> Callable[[Env], Loop]:
    """`available(name)` on a closed circuit, one of 100 registered connections."""

    def build(env: Env) -> Loop:
        system = _on(env, not module)
        for ident in NAMES_100:
            system.register(ident)
        name = NAMES_100[37]
        if module:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    brama.available(name)
        else:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    system.available(name)
        return loop

    return build


def manual_failure(env: Env) -> Loop:
    """`if system.available(): f() raises -> system.failure(reason)`, awake actor."""
    system = _on(env, True)
    system.register("manual", max_attempts=HUGE, hibernate_after=AWAKE)

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            if system.available("manual"):
                try:
                    boom()
                except ValueError as exc:
                    system.failure("manual", reason=repr(exc))

    def still_closed() -> str:
        state = system.status("manual")
        assert state.state is brama.CircuitState.CLOSED, state
        return (f"Manual connection after the samples: {state.total_failures:,} failures"
                " counted, still closed.")

    env.report(still_closed)
    return loop


def hibernated_failure(env: Env) -> Arm:
    """The manual failure loop, each report on a connection whose actor hibernated: fresh
    connections (hibernate_after=0) are woken by one failure each, then left to hibernate,
    all before the samples; every sample takes its connections from that pool and
    unregisters them afterwards (which stops the actors the reports woke)."""
    system = env.system()
    numbers = itertools.count()
    pool: list[str] = []
    current: list[str] = []
    batch = env.n * (env.plan.samples + 1)

    def refill(k: int) -> None:
        names = [f"hib-{next(numbers)}" for _ in range(max(k, batch))]
        for name in names:
            system.register(name, max_attempts=HUGE, hibernate_after=0.0)
            system.failure(name, reason="wake")
        if not wait_until(lambda: not any(awake(system, x) for x in names), timeout=30.0):
            raise RuntimeError("connections did not hibernate within 30 s")
        pool.extend(names)

    def before(k: int) -> None:
        if len(pool) < k:
            refill(k)
        current[:] = pool[:k]
        del pool[:k]

    def run(n: int) -> None:
        for name in current:
            if system.available(name):
                try:
                    boom()
                except ValueError as exc:
                    system.failure(name, reason=repr(exc))

    def after(k: int) -> None:
        for name in current:
            system.unregister(name)

    return Arm(run, before, after)


def _register_names(prefix: str) -> tuple[dict[str, Any], Callable[[int], None]]:
    """A holder for a fresh list of n names, made (untimed) by the returned `before`."""
    state: dict[str, Any] = {}

    def before(n: int) -> None:
        state["names"] = [f"{prefix}-{i:06d}" for i in range(n)]

    return state, before


def register_fresh(env: Env) -> Arm:
    """n registrations into a fresh system (created and stopped outside the timing)."""
    state, names = _register_names("conn")

    def before(n: int) -> None:
        names(n)
        state["system"] = brama.Brama()

    def run(n: int) -> None:
        system = state["system"]
        for name in state["names"]:
            system.register(name)

    def after(n: int) -> None:
        state.pop("system").stop()

    return Arm(run, before, after)


def memory_brama(env: Env) -> Arm:
    """n idle registered connections in a fresh system (one registered before the trace)."""
    state, names = _register_names("conn")

    def before(n: int) -> None:
        names(n)
        state["system"] = system = brama.Brama()
        system.register("warm-up")

    def run(n: int) -> None:
        system = state["system"]
        for name in state["names"]:
            system.register(name)

    def after(n: int) -> None:
        state.pop("system").stop()

    return Arm(run, before, after)


def subscriptions(existing: int, close: bool) -> Callable[[Env], Arm]:
    """n `system.subscribe()` (or n `.close()`) on a system that holds `existing` mailbox
    subscriptions; the other half of the pair runs untimed, so their number stays put."""

    def build(env: Env) -> Arm:
        system = env.shared(f"subs-{existing}", lambda: _subscribed(env, existing))
        made: list[Any] = []

        def subscribe(n: int) -> None:
            for _ in repeat(None, n):
                made.append(system.subscribe())

        def close_all(n: int) -> None:
            for sub in made:
                sub.close()
            made.clear()

        if close:
            return Arm(close_all, before=subscribe)
        return Arm(subscribe, after=close_all)

    return build


def _subscribed(env: Env, existing: int) -> brama.Brama:
    system = env.system()
    held = [system.subscribe() for _ in range(existing)]
    env.on_exit(held.clear)
    return system


# -- contenders: brama.otp --


class _Counting:
    """A handler that does a little work: counts the messages (and answers `_READ`)."""

    count = 0

    def on_receive(self, message: Any) -> Any:
        if message is _READ:
            return self.count
        self.count += 1
        return self.count


class _Counter(_Counting, Actor):
    """The handler in a `brama.otp.Actor`."""


class _PykkaCounter(_Counting, pykka.ThreadingActor):
    """The handler in a plain pykka actor."""

    use_daemon_thread = True


_READ = object()
_BUMP = object()


def otp_call(counted: bool) -> Callable[[Env], Arm]:
    """`brama.otp.call(ref, message)` to one `brama.otp.Actor`."""

    def build(env: Env) -> Arm:
        ref = _Counter.start()
        env.on_exit(ref.stop)

        def loop(n: int) -> None:
            for _ in repeat(None, n):
                call(ref, _BUMP)

        return Arm(loop, count=(lambda: call(ref, _READ)) if counted else None)

    return build


def plain_call(locked: bool) -> Callable[[Env], Arm]:
    """The same handler called as a plain method (under a `threading.Lock` if `locked`)."""

    def build(env: Env) -> Arm:
        counter = _Counting()
        if not locked:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    counter.on_receive(_BUMP)

            return Arm(loop)
        lock = threading.Lock()

        def guarded(message: Any) -> Any:
            with lock:
                return counter.on_receive(message)

        def locked_loop(n: int) -> None:
            for _ in repeat(None, n):
                guarded(_BUMP)

        return Arm(locked_loop, count=lambda: guarded(_READ))

    return build


def pykka_ask(env: Env) -> Loop:
    """pykka's `ref.ask(message)`: always a hand-off to the actor's thread."""
    ref = _PykkaCounter.start()
    env.on_exit(ref.stop)

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            ref.ask(_BUMP)

    return loop


def timer_armed(through_supervisor: bool) -> Callable[[Env], Loop]:
    """Arm a one-hour timer for an idle child and cancel it: on the timer service directly,
    or through its supervisor (`send_after` / `cancel_timer` keyed by child and name), the way
    a connection's expiry is armed."""

    def build(env: Env) -> Loop:
        from brama.otp import ChildSpec, Supervisor, TimerService

        timers = TimerService(name="bench-timers")
        env.on_exit(timers.stop)
        supervisor = Supervisor([ChildSpec.for_actor("child", _Counter)], timers=timers,
                                name="bench-supervisor")
        env.on_exit(supervisor.stop)
        child = supervisor.whereis_child("child")
        if through_supervisor:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    supervisor.send_after("child", "expiry", AWAKE, _BUMP)
                    supervisor.cancel_timer("child", "expiry")
        else:
            def loop(n: int) -> None:
                for _ in repeat(None, n):
                    timers.send_after(AWAKE, child, _BUMP).cancel()
        return loop

    return build


# -- contenders: pybreaker and circuitbreaker --


def pb_deco(fn: Callable[[], Any] = noop, catch: type[BaseException] | None = None,
            *, open_: bool = False, **options: Any) -> Callable[[Env], Loop]:
    def build(env: Env) -> Loop:
        breaker = pybreaker.CircuitBreaker(name="bench", **options)
        if open_:
            breaker.open()
        wrapped = breaker(fn)
        return calls(wrapped) if catch is None else calls_catching(wrapped, catch)

    return build


def pb_call(env: Env) -> Loop:
    breaker = pybreaker.CircuitBreaker(name="bench")

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            breaker.call(noop)

    return loop


def pb_state(env: Env) -> Loop:
    breakers = {ident: pybreaker.CircuitBreaker(name=ident) for ident in NAMES_100}
    name, closed = NAMES_100[37], pybreaker.STATE_CLOSED

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            breakers[name].current_state == closed  # noqa: B015

    return loop


def cb_deco(fn: Callable[[], Any] = noop, catch: type[BaseException] | None = None,
            *, open_: bool = False, **options: Any) -> Callable[[Env], Loop]:
    def build(env: Env) -> Loop:
        if open_:  # opened by one failure
            breaker = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HUGE,
                                                    name="bench", **options)
            with contextlib.suppress(ValueError):
                breaker(boom)()
            assert breaker.opened, "circuitbreaker did not open"
            wrapped = breaker(fn)
        else:
            wrapped = circuitbreaker.CircuitBreaker(name="bench", **options)(fn)
        return calls(wrapped) if catch is None else calls_catching(wrapped, catch)

    return build


def cb_state(env: Env) -> Loop:
    breakers = {ident: circuitbreaker.CircuitBreaker(name=ident) for ident in NAMES_100}
    name = NAMES_100[37]

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            breakers[name].closed  # noqa: B018

    return loop


def pb_into_dict(env: Env) -> Arm:
    """n pybreaker breakers built into a dict (kept by `run`'s result)."""
    state, names = _register_names("conn")

    def run(n: int) -> dict[str, Any]:
        return {name: pybreaker.CircuitBreaker(name=name) for name in state["names"]}

    return Arm(run, before=names)


def cb_into_dict(env: Env) -> Arm:
    state, names = _register_names("conn")

    def run(n: int) -> dict[str, Any]:
        return {name: circuitbreaker.CircuitBreaker(name=name) for name in state["names"]}

    return Arm(run, before=names)
