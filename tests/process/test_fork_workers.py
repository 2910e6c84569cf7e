"""Forked workers in fresh interpreters, as services run them (found: children hung).

Each scenario is a script run by `run_python` (killed, process group and all, if it does not
finish): the README's quick start at module level then a bare fork, a `multiprocessing` pool
with the fork start method running decorated functions, and a gunicorn-like preload where a
master imports an app module (registering and decorating at import) and forks workers that
serve calls and report back. Children leave the normal way (no `shutdown()`), so the atexit
hook runs in each of them.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_python

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

QUICK_EXIT = 2.0
"""The longest a child may take from its last word to its exit (found: forever)."""


def run_json(code: str, *, cwd: Path | None = None, timeout: float = 45.0) -> Any:
    """Run `code` and return the JSON object it printed last; fail with its output if it
    exited with an error."""
    done = run_python(textwrap.dedent(code), cwd=cwd, timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


FORK = """
import json, os, select, sys, time

def fork(body):
    # the child runs body(), writes its JSON answer and leaves the normal way (atexit runs)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        answer = body()
        answer["left_at"] = time.time()
        os.write(write, json.dumps(answer).encode())
        os.close(write)
        sys.exit(0)
    os.close(write)
    return pid, read

def collect_all(children, timeout=30.0):
    # every child's answer, and how long after its last word it took to exit: all children
    # are watched at once, so one's exit is seen while another is still working
    deadline = time.monotonic() + timeout
    data = {pid: b"" for pid, _ in children}
    reading = {read: pid for pid, read in children}
    exited = {}
    while (reading or len(exited) < len(children)) and time.monotonic() < deadline:
        for read in select.select(list(reading), [], [], 0.005)[0] if reading else ():
            chunk = os.read(read, 65536)
            if chunk:
                data[reading[read]] += chunk
            else:
                del reading[read]
        if not reading:
            time.sleep(0.005)  # polling the children's exits: nothing to wait on with a deadline
        for pid, _ in children:
            if pid not in exited:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    exited[pid] = (time.time(), status)
    answers = []
    for pid, _ in children:
        if pid not in exited:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            answers.append({"hung": True, "said": data[pid].decode()})
            continue
        answer = json.loads(data[pid])
        answer["exit_seconds"] = exited[pid][0] - answer.pop("left_at")
        answer["exit_status"] = os.waitstatus_to_exitcode(exited[pid][1])
        answers.append(answer)
    return answers

def collect(pid, read, timeout=20.0):
    return collect_all([(pid, read)], timeout)[0]
"""


def test_quick_start_at_module_level_then_fork() -> None:
    """The quick start registers at import; a forked child reports failures on a dormant and
    an awake connection, decorated calls work, and it exits at once, without shutdown() (the
    atexit hook) or after calling it."""
    result = run_json(FORK + """
import brama

brama.register("payments", max_attempts=3, expiry=30)
brama.register("search", max_attempts=3, expiry=30)
brama.failure("search", reason="before the fork")  # its actor is awake in the parent

@brama.circuit_breaker("payments")
def charge(amount):
    if amount < 0:
        raise ValueError("refused")
    return amount

charge(1)

def calls():
    took = {}
    started = time.monotonic()
    brama.failure("payments", reason="dormant")
    took["failure, dormant"] = time.monotonic() - started
    started = time.monotonic()
    brama.failure("search", reason="awake")
    took["failure, awake"] = time.monotonic() - started
    try:
        charge(-1)
    except ValueError:
        pass
    return {"took": took, "value": charge(5),
            "payments": brama.status("payments").failure_count,
            "search": brama.status("search").failure_count}

def only_exits():
    return {}

def shuts_down():
    brama.failure("search", reason="child")
    started = time.monotonic()
    brama.shutdown()
    return {"shutdown_seconds": time.monotonic() - started}

answers = [collect(*fork(calls)), collect(*fork(only_exits)), collect(*fork(shuts_down))]
print(json.dumps({"answers": answers,
                  "parent": [brama.status("payments").failure_count,
                             brama.status("search").failure_count]}))
""")
    with_calls, _only_exits, shuts_down = result["answers"]
    assert not any("hung" in answer for answer in result["answers"]), result
    assert max(with_calls["took"].values()) < 1.0, with_calls
    assert (with_calls["value"], with_calls["payments"], with_calls["search"]) == (5, 0, 2)
    assert shuts_down["shutdown_seconds"] < 1.0, shuts_down
    for answer in result["answers"]:
        assert answer["exit_status"] == 0
        assert answer["exit_seconds"] < QUICK_EXIT, answer
    assert result["parent"] == [0, 1]


POOL = """
import json, multiprocessing, os, time
import brama

brama.register("svc", max_attempts=2, expiry=30)

@brama.circuit_breaker("svc")
def fetch(x):
    if x < 0:
        raise ValueError(x)
    return x

@brama.circuit_breaker("tagged", max_attempts=5)
def tagged(x):
    return -x

def task(x):
    try:
        kind, value = "ok", fetch(x)
    except ValueError:
        kind, value = "failed", None
    except brama.CircuitOpenError:
        kind, value = "refused", None
    status = brama.status("svc")
    return [os.getpid(), x, kind, value, status.state.value, status.total_failures,
            tagged(x)]

if __name__ == "__main__":
    fetch(1)
    tagged(1)
    runs = {}
    for label, extra in (("pool", {}), ("maxtasksperchild", {"maxtasksperchild": 2})):
        # with maxtasksperchild the pool's handler thread forks new workers while the
        # parent's threads run: the fork happens on a thread that is not the main one
        started = time.monotonic()
        pool = multiprocessing.get_context("fork").Pool(3, **extra)
        try:
            results = pool.map_async(task, [1, -1, -1, 2, -1, 3] * 4, chunksize=1).get(20)
            pool.close()
            pool.join()
        finally:
            pool.terminate()
        runs[label] = {"results": results, "seconds": time.monotonic() - started}
    status = brama.status("svc")
    print(json.dumps({"runs": runs, "parent": [status.state.value, status.total_failures,
                                               status.total_successes]}))
"""


def test_a_multiprocessing_fork_pool_of_decorated_workers_completes() -> None:
    result = run_json(POOL)
    for label, run in result["runs"].items():
        results = run["results"]
        assert len(results) == 24, label
        per_worker: dict[int, list[list[Any]]] = {}
        for row in results:
            per_worker.setdefault(row[0], []).append(row)
        if label == "maxtasksperchild":
            assert len(per_worker) >= 12, per_worker  # a fresh worker every two tasks
        for rows in per_worker.values():
            # a worker starts from the parent's state (closed, no failure) and counts its own
            # calls: two failures in a row open its circuit, which then refuses
            consecutive, total, state = 0, 0, "closed"
            for _pid, x, kind, value, seen_state, seen_total, negated in rows:
                assert negated == -x
                if state == "open":
                    expected = "refused"
                elif x < 0:
                    expected, consecutive, total = "failed", consecutive + 1, total + 1
                    state = "open" if consecutive >= 2 else "closed"
                else:
                    expected, consecutive = "ok", 0
                assert (kind, seen_state, seen_total) == (expected, state, total), rows
                assert value == (x if kind == "ok" else None)
    assert result["parent"] == ["closed", 0, 1]  # the workers' failures stayed in the workers


APP = """
import asyncio, os
import brama

MASTER = os.getpid()
handled = []

brama.register("db", max_attempts=3, expiry=30)
brama.register("cache", max_attempts=2, expiry=30)
brama.register_group("backends", ["db", "cache"])
brama.subscribe(events=["failure"], handler=lambda event: handled.append(os.getpid()))

@brama.circuit_breaker("db")
def query(n):
    if n < 0:
        raise ConnectionError("db down")
    return n * 2

@brama.circuit_breaker("search", max_attempts=2, timeout=0.05)
async def search(delay):
    await asyncio.sleep(delay)
    return "found"

def view(n):
    with brama.guard("db"):  # a view around the query: one call, one count
        return query(n)
"""

MASTER = FORK + """
import asyncio
import brama
import app

brama.open_circuit("cache", reason="maintenance", expires_in=2.0)  # workers subscribe well before
opened_until = brama.status("cache").open_until
assert app.query(1) == 2

def serve(number):
    served = {"number": number, "pid": os.getpid()}
    served["inherited"] = [brama.status("db").state.value, brama.status("cache").state.value,
                           brama.groups()]
    half_opened = brama.subscribe(events=["circuit_half_opened"], connection="cache")
    outcomes = []
    for n in (1, -1, -1, -1, 3):
        try:
            outcomes.append(app.view(n))
        except ConnectionError:
            outcomes.append("failed")
        except brama.CircuitOpenError:
            outcomes.append("refused")
    served["outcomes"] = outcomes
    db = brama.status("db")
    served["db"] = [db.state.value, db.total_failures]

    async def searches():
        found = [await app.search(0)]
        for _ in range(2):
            try:
                await app.search(1.0)
            except TimeoutError:
                found.append("timeout")
        try:
            await app.search(0)
        except brama.CircuitOpenError:
            found.append("refused")
        return found

    served["search"] = asyncio.run(searches())
    event = half_opened.get(timeout=5)  # the cache's expiry, on this worker's own timer
    served["half_open_lateness"] = time.time() - opened_until
    served["half_opened"] = [event.event.value, event.connection]
    brama.testing.flush_events()
    served["master_handler_ran_here"] = app.handled.count(os.getpid())
    return served

import brama.testing

def idle(number):
    return {"number": number, "pid": os.getpid()}

children = [fork(lambda n=n: serve(n)) for n in range(4)] + [fork(lambda: idle(4))]
answers = collect_all(children)
brama.testing.flush_events()
db = brama.status("db")
print(json.dumps({"answers": answers, "master": [db.state.value, db.total_failures],
                  "master_handled": [pid == os.getpid() for pid in app.handled]}))
"""


def test_gunicorn_like_preload_master_forks_workers_that_serve(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    result = run_json(MASTER, cwd=tmp_path, timeout=50)
    answers = result["answers"]
    assert all("hung" not in answer for answer in answers), answers
    assert len({answer["pid"] for answer in answers}) == 5
    for answer in answers:
        assert answer["exit_status"] == 0
        assert answer["exit_seconds"] < QUICK_EXIT, answer
    for served in answers[:4]:
        assert served["inherited"] == ["closed", "open", {"backends": ["db", "cache"]}]
        assert served["outcomes"] == [2, "failed", "failed", "failed", "refused"], served
        assert served["db"] == ["open", 3]  # each failing view counted once
        assert served["search"] == ["found", "timeout", "timeout", "refused"]
        assert served["half_opened"] == ["circuit_half_opened", "cache"]
        assert -0.05 < served["half_open_lateness"] < 1.5, served
        assert served["master_handler_ran_here"] == 0
    assert result["master"] == ["closed", 0]  # the workers' failures are the workers'
    assert result["master_handled"] == []  # the master itself failed nothing
