"""The probes: measurements that are not interleaved contenders (threads while registering,
expiry lateness on the real clock, event fan-out, a Prometheus scrape). Each is
`body(out, env, targets)`."""

from __future__ import annotations

import gc
import importlib.metadata
import threading
import time
from collections.abc import Callable, Mapping
from itertools import repeat
from queue import Empty
from typing import Any

from _contenders import AWAKE, HUGE
from _harness import MISS, Outcome, Row, Target, judge, spread
from _util import Env, gc_paused, median, percentile, wait_until

from brama import Event, EventType
from brama.otp import EventBus


def threadcount(out: Outcome, env: Env, targets: Mapping[str, Target]) -> None:
    """Threads while 100,000 idle connections are registered, and after (`targets["threads"]`
    is the bound)."""
    count, limit, window = 100_000, targets["threads"].limit, 15.0
    names = [f"conn-{i:06d}" for i in range(count)]
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    before = threading.active_count()

    def sampler(t0: float) -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - t0, threading.active_count() - 1))
            stop.wait(0.005)

    system = env.system()
    try:
        t0 = time.monotonic()
        watcher = threading.Thread(target=sampler, args=(t0,), daemon=True)
        watcher.start()
        start = time.perf_counter_ns()
        for name in names:
            system.register(name)
        reg_s = (time.perf_counter_ns() - start) / 1e9
        wait_until(lambda: threading.active_count() - 1 < limit, timeout=window, poll=0.05)
        final = threading.active_count() - 1
        elapsed = time.monotonic() - t0
        stop.set()
        watcher.join()
        peak = max(c for _, c in samples)
        out.rows.append(judge(Row("max threads while registering and after", peak,
                                  "threads"), targets["threads"]))
        out.rows.append(judge(Row(f"threads at the end (after {elapsed:.2f} s)", final,
                                  "threads"), targets["threads"]))
        out.rows.append(Row(f"time to register {count:,}", reg_s, "s"))
        out.notes.append(
            f"Default options; threading.active_count() sampled every 5 ms ({len(samples)}"
            " samples; the sampler thread itself is not counted); waited up to"
            f" {window:g} s for the count to drop below {limit:,.0f}; {before} thread(s)"
            " before the system started."
        )
        out.extra["thread_samples"] = samples[:: max(1, len(samples) // 200)]
    finally:
        stop.set()
        t = time.perf_counter()
        system.stop()
        out.notes.append(f"stop() with {count:,} connections took {time.perf_counter() - t:.2f} s")


def expiry(out: Outcome, env: Env, targets: Mapping[str, Target]) -> None:
    """Lateness of CIRCUIT_HALF_OPENED after open_circuit, real clock (`targets["max"]`
    bounds the worst)."""
    circuits = 100
    rounds = env.plan.n(3, 1)
    by_stamp: list[float] = []
    by_receipt: list[float] = []
    missing = 0
    for r in range(rounds):
        system = env.system()
        expiries = {f"exp-{r}-{i:03d}": 0.05 + 0.45 * i / (circuits - 1) for i in range(circuits)}
        for name, expiry in expiries.items():
            system.register(name, expiry=expiry)
        sub = system.subscribe(events=[EventType.CIRCUIT_HALF_OPENED])
        received: list[tuple[Event, float]] = []

        def consume(sub: Any = sub, received: list[tuple[Event, float]] = received) -> None:
            while len(received) < circuits:
                try:
                    event = sub.get(timeout=3.0)
                except Empty:
                    return
                received.append((event, time.time()))

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        due: dict[str, float] = {}
        for name, expiry in expiries.items():
            system.open_circuit(name)
            opened_at = system.status(name).opened_at
            assert opened_at is not None
            due[name] = opened_at + expiry
        consumer.join(timeout=10.0)
        sub.close()
        seen = set()
        for event, got_at in received:
            seen.add(event.connection)
            by_stamp.append((event.timestamp - due[event.connection]) * 1000)
            by_receipt.append((got_at - due[event.connection]) * 1000)
        missing += circuits - len(seen)
        system.stop()

    for label, values in (("timer lateness (event timestamp - due)", by_stamp),
                          ("delivery lateness (receipt - due)", by_receipt)):
        for stat, q in (("median", 50.0), ("p99", 99.0)):
            out.rows.append(Row(f"{label}: {stat}", percentile(values, q), "ms"))
        worst = max(values) if values else float("nan")
        out.rows.append(judge(Row(f"{label}: max", worst, "ms"), targets["max"]))
    if missing:
        out.rows[-1].verdict = MISS
    out.notes.append(
        f"{rounds} round(s) x {circuits} circuits, expiries 50-500 ms, opened with"
        " open_circuit; due = status().opened_at + expiry; a mailbox subscription to"
        f" CIRCUIT_HALF_OPENED read in its own thread. Events missing: {missing}."
        f" Earliest: {min(by_stamp, default=float('nan')):.2f} ms (negative = early)."
    )


def _read_all(subs: list[Any], expected: int) -> Callable[[], list[list[tuple[Any, int]]]]:
    """One reader thread per subscription, each taking `expected` events with `get()` and
    stamping them (perf_counter_ns); returns a function that joins them and gives what each
    got. Readers are started and waiting when this returns."""
    got: list[list[tuple[Any, int]]] = [[] for _ in subs]
    ready = threading.Barrier(len(subs) + 1)

    def consume(sub: Any, into: list[tuple[Any, int]]) -> None:
        clock = time.perf_counter_ns
        ready.wait()
        while len(into) < expected:
            try:
                event = sub.get(timeout=1.0)
            except Empty:
                return
            into.append((event, clock()))

    readers = [threading.Thread(target=consume, args=(s, g), daemon=True)
               for s, g in zip(subs, got, strict=True)]
    for t in readers:
        t.start()
    ready.wait()

    def join() -> list[list[tuple[Any, int]]]:
        for t in readers:
            t.join(timeout=30.0)
        return got

    return join


def _fanout_figures(got: list[list[tuple[Any, int]]], start: int, expected: int,
                    latencies: list[float], dropped: int) -> dict[str, Any]:
    total = sum(len(into) for into in got)
    last = max((into[-1][1] for into in got if into), default=start + 1)
    per_sub = [len(into) / ((into[-1][1] - start) / 1e9) for into in got if into]
    return {
        "deliveries": total,
        "expected": expected,
        "dropped": dropped,
        "elapsed_s": (last - start) / 1e9,
        "deliveries_per_s": total / ((last - start) / 1e9),
        "per_subscriber_per_s": median(per_sub) if per_sub else 0.0,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        },
    }


def _bus_run(events: list[Event], subscribers: int,
             pace: tuple[int, float] | None) -> dict[str, Any]:
    """Publish `events` on a standalone `brama.otp.EventBus` (the class and defaults of a
    system's bus) to `subscribers` mailboxes read by one thread each. `pace` = (batch size,
    seconds between batches), or None for as fast as possible."""
    bus = EventBus(name="bench-fanout")
    try:
        subs = [bus.subscribe() for _ in range(subscribers)]
        join = _read_all(subs, len(events))
        sent = [0] * len(events)
        topic, clock = EventType.FAILURE, time.perf_counter_ns
        start = clock()
        if pace is None:
            for i, event in enumerate(events):
                sent[i] = clock()
                bus.publish(topic, event)
        else:
            batch, gap = pace
            next_at = time.perf_counter()
            for first in range(0, len(events), batch):
                for i in range(first, min(first + batch, len(events))):
                    sent[i] = clock()
                    bus.publish(topic, events[i])
                next_at += gap
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        got = join()
        dropped = sum(s.dropped for s in subs)
        latencies = [(at - sent[e.data["seq"]]) / 1e6 for into in got for e, at in into]
        return _fanout_figures(got, start, len(events) * subscribers, latencies, dropped)
    finally:
        bus.stop()


def _failures_run(env: Env, count: int, subscribers: int) -> dict[str, Any]:
    """End to end: `system.failure()` reports on a closed circuit, each a FAILURE event, to
    `subscribers` mailbox subscriptions of the system (`system.subscribe(events=...)`)."""
    system = env.system()
    system.register("fanout", max_attempts=HUGE, hibernate_after=AWAKE)
    subs = [system.subscribe(events=[EventType.FAILURE]) for _ in range(subscribers)]
    join = _read_all(subs, count)
    start_wall, start = time.time(), time.perf_counter_ns()
    for _ in repeat(None, count):
        system.failure("fanout", reason="boom")
    got = join()
    # latency: event timestamp (the actor's wall clock) -> get(), on the wall clock
    offset = start_wall - start / 1e9
    latencies = [(at / 1e9 + offset - e.timestamp) * 1000 for into in got for e, at in into]
    figures = _fanout_figures(got, start, count * subscribers, latencies,
                              sum(s.dropped for s in subs))
    system.stop()
    return figures


def fanout(out: Outcome, env: Env, targets: Mapping[str, Target]) -> None:
    """Deliveries/s and latency of events to 10 mailbox subscribers (`targets["rate"]` for
    the burst, `targets["p99"]` for the paced runs)."""
    plan = env.plan
    subscribers = 10
    burst_n = plan.n(20_000, 5_000)
    rounds = plan.n(3, 1)
    rate, batch = 5_000, 25  # 5,000 events/s = 50,000 deliveries/s to 10 subscribers
    paced_n = plan.n(10_000, 5_000)
    e2e_n = plan.n(5_000, 2_000)

    def make_events(n: int) -> list[Event]:
        now = time.time()
        return [
            Event(EventType.FAILURE, now, f"conn-{i % 100}", None,
                  {"failure_count": 1 + i % 10, "reason": "ValueError('boom')", "seq": i})
            for i in range(n)
        ]

    with gc_paused():
        bursts = [_bus_run(make_events(burst_n), subscribers, None) for _ in range(rounds)]
        # 5,000 events/s is 50,000 deliveries/s to 10 subscribers; 50,000 events/s (500,000
        # deliveries/s) is the stricter reading of the target.
        paced = [(prate, _bus_run(make_events(paced_n * prate // rate), subscribers,
                                  (batch * prate // rate, batch / rate)))
                 for prate in (rate, 10 * rate)]
        e2e = _failures_run(env, e2e_n, subscribers)
    totals = [b["deliveries_per_s"] for b in bursts]
    p99s = [b["latency_ms"]["p99"] for b in bursts]
    per_sub = [b["per_subscriber_per_s"] for b in bursts]
    out.rows.append(judge(Row("burst: deliveries/s (all subscribers)", median(totals), "/s",
                              spread(totals, "/s"), samples=totals), targets["rate"]))
    out.rows.append(Row("burst: events/s per subscriber", median(per_sub), "/s",
                        samples=per_sub))
    out.rows.append(Row("burst: p99 latency (includes the backlog)", median(p99s), "ms",
                        samples=p99s))
    out.rows.append(Row("burst: events dropped (full mailboxes)",
                        sum(b["dropped"] for b in bursts), "count"))
    for prate, run in paced:
        lat = run["latency_ms"]
        label = f"paced {prate:,} ev/s"
        out.rows.append(Row(f"{label}: deliveries/s achieved", run["deliveries_per_s"], "/s"))
        out.rows.append(Row(f"{label}: p50 latency", lat["p50"], "ms"))
        out.rows.append(judge(Row(f"{label}: p99 latency", lat["p99"], "ms"), targets["p99"]))
        out.rows.append(Row(f"{label}: max latency", lat["max"], "ms"))
        out.rows.append(Row(f"{label}: deliveries lost", run["expected"] - run["deliveries"],
                            "count"))
    lat = e2e["latency_ms"]
    out.rows.append(Row("end to end, system.failure() reports: deliveries/s",
                        e2e["deliveries_per_s"], "/s"))
    out.rows.append(Row("end to end: p99 latency (event timestamp -> get(), with backlog)",
                        lat["p99"], "ms"))
    out.rows.append(Row("end to end: deliveries lost", e2e["expected"] - e2e["deliveries"],
                        "count"))
    out.extra = {"bursts": bursts, "paced": {str(r): run for r, run in paced}, "e2e": e2e}
    out.notes.append(
        f"{subscribers} mailbox subscriptions (all events), each read by its own thread with"
        " get(), on a standalone brama.otp.EventBus (the class and defaults of a system's"
        " bus), publishing Event(FAILURE, ...) objects with EventBus.publish as connection"
        " actors do. A delivery = one event taken from one subscription by get()."
        " deliveries/s = all deliveries / (last get() - first publish); per subscriber = that"
        " subscription's deliveries / its own span."
        f" Burst: {burst_n:,} events as fast as possible, median of {rounds} run(s); latency"
        f" = publish() -> get(). Paced: {paced_n:,} events at {rate:,}/s in batches of"
        f" {batch}, and {10 * paced_n:,} at {10 * rate:,}/s in batches of {10 * batch}."
        f" End to end: {e2e_n:,} system.failure() reports on one closed connection, each a"
        f" FAILURE event, to {subscribers} system.subscribe(events=[FAILURE]) mailboxes."
    )


def scrape(out: Outcome, env: Env, targets: Mapping[str, Target]) -> None:
    """A Prometheus scrape of 10,000 connections, 100 of them open: `Brama.connections()`,
    `BramaCollector.collect()` and the whole text exposition (`generate_latest`), in ms, with
    the GC paused (as every timed loop here) and again with it on, as a real scrape runs
    (`targets["full"]` bounds the exposition)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from brama.integrations.prometheus import BramaCollector

    count, opened = 10_000, 100
    names = [f"conn-{i:05d}" for i in range(count)]
    system = env.system()
    for i, name in enumerate(names):  # half of them in a scope, like a real mix of labels
        system.register(name, scope=None if i % 2 else "even", max_attempts=1)
    for name in names[:: count // opened]:
        system.failure(name, scope="even", reason="down")
    collector = BramaCollector(system)
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry)
    samples = sum(len(family.samples) for family in collector.collect())
    open_series = text.count(b'state="open"} 1.0')
    if samples != 8 * count or open_series != opened:
        raise AssertionError(f"the scrape has {samples:,} samples and {open_series} open"
                             f" circuits, not {8 * count:,} and {opened}")

    read = f"Brama.connections(): {count:,} statuses (part of collect)"
    collect = f"BramaCollector.collect(): {samples:,} samples"
    full = "generate_latest(registry): collect + text format"
    steps: dict[str, Callable[[], Any]] = {
        read: system.connections,
        collect: lambda: list(collector.collect()),
        full: lambda: generate_latest(registry),
    }
    rounds = min(env.plan.samples, env.plan.n(5, 3))  # a scrape is long: 5 are plenty
    paused: dict[str, list[float]] = {label: [] for label in steps}
    with_gc: dict[str, list[float]] = {label: [] for label in steps}
    for step in steps.values():  # warm-up, untimed
        step()
    for _ in range(rounds):  # round-robin: every step, the GC paused then on, each round
        for label, step in steps.items():
            with gc_paused():
                start = time.perf_counter_ns()
                step()
                paused[label].append(time.perf_counter_ns() - start)
            gc.collect()
            start = time.perf_counter_ns()
            step()
            with_gc[label].append(time.perf_counter_ns() - start)

    for suffix, figures in (("", paused), (", GC on", with_gc)):
        for label in steps:
            values = [ns / 1e6 for ns in figures[label]]
            row = Row(label + suffix, median(values), "ms", spread(values, "ms"),
                      samples=values)
            target = {full: targets["full"], collect: targets["collect"]}.get(label)
            out.rows.append(row if target is None else judge(row, target))
    collect_ms, full_ms = (median(paused[label]) / 1e6 for label in (collect, full))
    out.notes.append(
        f"{count:,} connections (half in a scope), {opened} opened by a failure; one run per"
        f" sample, {rounds} samples per row, round-robin; each step runs with the GC paused"
        " (as every timed loop here), then with it on (collected first), as a Prometheus"
        f" server's scrape runs. The exposition is {len(text) / 1e6:.1f} MB of {samples:,}"
        f" samples (8 per connection). With the GC paused, collect() is {collect_ms:.0f} ms of"
        f" the {full_ms:.0f} ms scrape ({collect_ms / full_ms:.0%}): the rest is"
        " prometheus_client formatting the samples"
        f" (prometheus-client {importlib.metadata.version('prometheus-client')})."
    )
