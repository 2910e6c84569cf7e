"""Many writers on one key: threads of one process, and forked processes.

Each writer increments a counter held in the shared state (`total_successes`) through
`apply`, recording every version it wrote. Compare-and-set must make the versions one
gapless sequence with no version written twice, and the counter must end at the exact
number of increments: no update lost, whoever raced whom.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

from brama._circuit import new_circuit
from brama._fleet import FleetConfig, FleetState, FleetStore, Stepped

INCREMENTS = 40
ATTEMPTS = 10_000
"""Enough to never give up: these tests are about correctness under contention."""


def bump(store: FleetStore) -> Callable[[FleetState], Stepped[None]]:
    def run(shared: FleetState) -> Stepped[None]:
        circuit = shared.circuit
        return Stepped(FleetState(circuit.evolve(total_successes=circuit.total_successes + 1),
                                  shared.owners), (), None)
    return run


def increment(store: FleetStore, identifier: str, count: int) -> tuple[list[int], int]:
    """`count` increments; the versions this writer wrote, and the attempts it needed."""
    key = store.key(identifier)
    known = store.join(key, FleetState(new_circuit(store.clock.now())))
    version, state = known.version, known.state
    written: list[int] = []
    attempts = 0
    for _ in range(count):
        applied = store.apply(key, version, state, bump(store), attempts=ATTEMPTS)
        assert applied.written
        written.append(applied.version)
        attempts += applied.attempts
        version, state = applied.version, applied.state
    return written, attempts


def check(store: FleetStore, identifier: str, versions: list[int], total: int) -> None:
    snapshot = store.read(store.key(identifier))
    assert snapshot is not None
    assert snapshot.state.circuit.total_successes == total
    assert len(versions) == total and len(set(versions)) == total
    assert sorted(versions) == list(range(snapshot.version - total + 1, snapshot.version + 1))


def test_threads_compare_and_set_one_key(make_store: Callable[..., FleetStore],
                                         config: FleetConfig) -> None:
    writers = 4
    stores = [make_store(config, origin=f"thread/{n}") for n in range(writers)]
    results: list[tuple[list[int], int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def run(store: FleetStore) -> None:
        try:
            start.wait(10)
            results.append(increment(store, "shared", INCREMENTS))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(50)
    assert not errors, errors
    assert len(results) == writers
    versions = [v for written, _ in results for v in written]
    check(stores[0], "shared", versions, writers * INCREMENTS)


def _process_writer(store: FleetStore, count: int, start: Any, out: Any) -> None:
    """A forked process using the store its parent made before the fork (gunicorn
    --preload, celery prefork): its own pool, keeper thread and origin come with it."""
    try:
        start.wait(30)
        out.put((store.origin, *increment(store, "shared", count)))
    finally:
        store.close()


def test_processes_compare_and_set_one_key(make_store: Callable[..., FleetStore],
                                           config: FleetConfig) -> None:
    writers = 3
    inherited = make_store(config)
    inherited.join(inherited.key("warm"), FleetState(new_circuit(inherited.clock.now())))
    context = multiprocessing.get_context("fork")
    start = context.Barrier(writers)
    out = context.Queue()
    processes = [
        context.Process(target=_process_writer, args=(inherited, INCREMENTS, start, out),
                        daemon=True)
        for _ in range(writers)
    ]
    try:
        for process in processes:
            process.start()
        results = [out.get(timeout=50) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    origins = {origin for origin, _, _ in results}
    assert len(origins) == writers and inherited.origin not in origins
    versions = [v for _, written, _ in results for v in written]
    check(inherited, "shared", versions, writers * INCREMENTS)
    assert all(process.exitcode == 0 for process in processes)
