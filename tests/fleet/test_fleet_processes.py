"""The fleet across processes: spawned workers (and forked ones, as gunicorn --preload makes
them) share breakers through a real Redis. Real clocks: the server's decides expiry."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator

import pytest

from brama import Brama, CircuitState
from tests.fleet.harness import RedisServer
from tests.fleet.helpers import eventually
from tests.fleet.workers import Worker

OPEN = CircuitState.OPEN


@pytest.fixture(scope="module")
def pool(redis_server: RedisServer) -> Iterator[list[Worker]]:
    """Three spawned worker processes, reused by the tests of this module."""
    workers = [Worker(redis_server.url) for _ in range(3)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.close()


@pytest.fixture
def fleet(pool: list[Worker], server: RedisServer, namespace: str) -> Iterator[list[Worker]]:
    """The pool, each worker running a system in this test's namespace."""
    origins = {worker.ask("start", namespace=namespace) for worker in pool}
    assert len(origins) == len(pool)  # one member of the fleet each
    try:
        yield pool
    finally:
        for worker in pool:
            worker.ask("call", method="stop")


def register(workers: list[Worker], **options: object) -> None:
    for worker in workers:
        worker.ask("register", identifier="pay", options=options,
                   events=["circuit_half_opened", "state_change"])


def state(worker: Worker) -> CircuitState:
    status = worker.ask("call", method="status", args=("pay",))
    return CircuitState(status.state)


def test_a_trip_in_one_process_stops_the_others_within_100_ms(fleet) -> None:
    register(fleet, max_attempts=3, expiry=60)
    tripper, *watchers = fleet
    for worker in watchers:
        worker.send("watch", identifier="pay")
        assert worker.reply() == "watching"
    started = tripper.ask("trip", identifier="pay")
    delays = [worker.reply() - started for worker in watchers]
    print(f"trip seen by the other processes after {[round(d * 1000, 2) for d in delays]} ms")
    assert max(delays) < 0.1
    assert all(state(worker) is OPEN for worker in fleet)


def test_counts_add_up_across_processes(fleet) -> None:
    register(fleet, max_attempts=10, expiry=60)
    # Every success first, then the failures. A success anywhere resets the fleet's
    # consecutive count once its process has heard of a failure, so a worker whose
    # successes ran after another's failures (a loaded machine runs the workers in any
    # order) would rightly reset it, and the 10th failure below would not trip.
    for phase, count in (("success", 50), ("failure", 3)):
        for worker in fleet:
            for _ in range(count):
                worker.send("call", method=phase, args=("pay",))
        for worker in fleet:
            for _ in range(count):
                worker.reply()
    # 9 failures over the fleet, no success after them: closed, 9 in a row
    for worker in fleet:
        eventually(lambda w=worker: w.ask("call", method="status", args=("pay",))
                   .failure_count == 9, what="9 failures in a row, heard by every worker")
    assert [state(w) for w in fleet] == [CircuitState.CLOSED] * 3
    fleet[0].ask("call", method="failure", args=("pay",))  # the 10th
    for worker in fleet:
        eventually(lambda w=worker: state(w) is OPEN, what="the trip, heard by every worker")
        eventually(lambda w=worker: (
            (s := w.ask("call", method="status", args=("pay",))).total_failures == 10
            and s.total_successes == 150), timeout=10, what="the fleet's totals")


def test_one_half_open_and_fleet_wide_permits_across_processes(fleet) -> None:
    register(fleet, max_attempts=1, expiry=0.5, half_open_max_calls=2)
    fleet[1].ask("call", method="failure", args=("pay",))
    for worker in fleet:
        eventually(lambda w=worker: state(w) is CircuitState.HALF_OPEN, timeout=5)
    for worker in fleet:
        for _ in range(2):
            worker.send("acquire", identifier="pay")
    tickets = [worker.reply() for worker in fleet for _ in range(2)]
    granted = [t for t in tickets if t is not None]
    assert len(granted) == 2 and len(set(granted)) == 2  # two permits for the fleet
    opened = []
    for worker in fleet:
        halves = [data for kind, data in worker.ask("events")
                  if kind == "circuit_half_opened"]
        assert len(halves) == 1  # one half-open, heard once by each process
        opened.append(halves[0]["origin"])
    assert len(set(opened)) == 1


def test_a_worker_killed_while_holding_a_permit(fleet, redis_server, namespace) -> None:
    register(fleet, max_attempts=1, expiry=1.0)
    doomed = Worker(redis_server.url)
    try:
        doomed.ask("start", namespace=namespace)
        register([doomed], max_attempts=1, expiry=1.0)
        doomed.ask("call", method="failure", args=("pay",))
        eventually(lambda: state(doomed) is CircuitState.HALF_OPEN, timeout=5)
        assert doomed.ask("acquire", identifier="pay") is not None
        granted_at = time.monotonic()
        doomed.kill()  # dies with the permit: nobody will ever report or release it
    finally:
        doomed.kill()
    assert all(w.ask("acquire", identifier="pay") is None for w in fleet)

    def someone_gets_it() -> bool:
        return any(w.ask("acquire", identifier="pay") is not None for w in fleet)

    eventually(someone_gets_it, timeout=5, what="the dead worker's permit back")
    waited = time.monotonic() - granted_at
    assert 0.8 < waited < 3.0, waited  # after the permit's timeout (expiry: 1 s), not before


def test_forked_workers_share_the_breakers_of_a_system_made_before_the_fork(
        server: RedisServer, namespace: str) -> None:
    """gunicorn --preload / celery prefork: the system is made in the parent; every child
    resumes it with its own threads, store, bridge and origin."""
    parent = Brama(backend=server.url, namespace=namespace)
    parent.register("pay", max_attempts=2, expiry=60)
    context = multiprocessing.get_context("fork")
    children: list[Worker] = []
    try:
        for _ in range(2):
            worker = Worker.__new__(Worker)
            worker.commands, worker.results = context.Queue(), context.Queue()
            from tests.fleet.workers import serve

            worker.process = context.Process(
                target=serve, args=(server.url, worker.commands, worker.results, parent),
                daemon=True)
            worker.process.start()
            children.append(worker)
        origins = {parent.runtime.fleet.origin}
        for child in children:
            pid, origin = child.ask("origin")
            assert pid == child.process.pid
            origins.add(origin)
        assert len(origins) == 3
        children[0].ask("call", method="failure", args=("pay",))
        children[1].ask("call", method="failure", args=("pay",))  # the fleet's second
        eventually(lambda: parent.status("pay").state is OPEN)
        eventually(lambda: state(children[0]) is OPEN)
    finally:
        for child in children:
            child.close()
        parent.stop()
