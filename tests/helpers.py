"""The one helpers module of the test suite: bounded waits, recorders, timed calls, events.

Every wait here is bounded, so a bug shows up as a failure, never as a hang; nothing sleeps
to wait for something it can wait on (polling loops wait on an Event with a short timeout
only for state that offers nothing to wait on).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

import brama

WAIT = 5.0
"""Upper bound, in seconds, for anything the tests wait on."""

_pause = threading.Event()
_markers = itertools.count()


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "") -> bool:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds. Returns True,
    so `assert wait_until(...)` reads naturally."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        _pause.wait(0.003)
    return True


def drain(subscription: Any) -> list[Any]:
    """Everything a mailbox subscription holds right now (after a flush: all published)."""
    events = []
    while True:
        try:
            events.append(subscription.get(timeout=0))
        except queue.Empty:
            return events


def take(subscription: Any, count: int, timeout: float = WAIT) -> list[Any]:
    """The next `count` events of a mailbox subscription, each waited for up to `timeout`."""
    return [subscription.get(timeout=timeout) for _ in range(count)]


def kinds(events: Iterable[brama.Event]) -> list[brama.EventType]:
    """The event types of `events`, in order."""
    return [e.event for e in events]


def events_before_marker(system: brama.Brama, sub: brama.Subscription) -> list[brama.Event]:
    """Every event the catch-all subscription `sub` holds before a marker registered now.

    Proves without timing that nothing (or exactly what) was emitted: the marker's events are
    published after everything that happened before, so once they arrive every earlier event
    has arrived too. The marker is unregistered again and its three events are consumed.
    """
    name = f"__marker_{next(_markers)}__"
    system.register(name)
    seen: list[brama.Event] = []
    while True:
        event = sub.get(timeout=WAIT)
        if event.connection == name:
            break
        seen.append(event)
    assert event.event is brama.EventType.CONNECTION_REGISTERED, event
    follower = sub.get(timeout=WAIT)
    assert (follower.connection, follower.event) == (name, brama.EventType.REGISTRATION)
    system.unregister(name)
    gone = sub.get(timeout=WAIT)
    assert (gone.connection, gone.event) == (name, brama.EventType.CONNECTION_UNREGISTERED)
    return seen


def threads_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """Live threads that were not in `before`."""
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def wait_no_new_threads(before: set[threading.Thread], timeout: float = WAIT) -> None:
    """Fail unless every thread started since `before` ends within `timeout` seconds."""
    wait_until(lambda: not threads_since(before), timeout,
               what="threads started by the test to end")


class Recorder(pykka.ThreadingActor):
    """A plain pykka actor (not a brama one) that puts what it is told into a queue."""

    use_daemon_thread = True

    def __init__(self, inbox: queue.Queue[Any] | None = None) -> None:
        super().__init__()
        self.inbox: queue.Queue[Any] = queue.Queue() if inbox is None else inbox

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            return "pong"
        self.inbox.put(message)
        return None


class Outcome:
    """What a bounded call did: its value, the exception it raised, and how long it took."""

    __slots__ = ("error", "seconds", "value")

    def __init__(self, value: Any, error: BaseException | None, seconds: float) -> None:
        self.value = value
        self.error = error
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Outcome(value={self.value!r}, error={self.error!r}, seconds={self.seconds:.3f})"


def timed_call(func: Callable[[], Any], timeout: float = WAIT) -> Outcome:
    """Run `func` in a daemon thread; fail the test if it has not returned after `timeout`.

    The caller's thread never blocks on the library, so a hang is reported as a failure.
    """
    box: list[Outcome] = []
    done = threading.Event()

    def run() -> None:
        start = time.monotonic()
        try:
            value = func()
        except BaseException as exc:  # report everything, the test decides
            box.append(Outcome(None, exc, time.monotonic() - start))
        else:
            box.append(Outcome(value, None, time.monotonic() - start))
        finally:
            done.set()

    thread = threading.Thread(target=run, name="timed-call", daemon=True)
    thread.start()
    if not done.wait(timeout):
        pytest.fail(f"{func} did not return within {timeout}s (hang)")
    thread.join(timeout)
    return box[0]


def lateness_ok(samples_ms: list[float], *, median_ms: float, p90_ms: float) -> bool:
    """Real-clock timing judged on a distribution, not one sample: the median and the 90th
    percentile of lateness must be under their bounds (a loaded 2-core machine delays a few)."""
    ordered = sorted(samples_ms)
    median = ordered[len(ordered) // 2]
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return median <= median_ms and p90 <= p90_ms


def in_child(body: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run `body` in a child made with `os.fork()` and return what it returned (pickled back).

    An exception in the child fails the test with the child's traceback; a child that has not
    answered after `timeout` seconds is killed and fails the test, so a hang never hangs the
    suite. The child leaves with `os._exit`, running none of the test process's atexit hooks.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            try:
                answer: tuple[str, Any] = ("ok", body())
            except BaseException:
                answer = ("error", traceback.format_exc())
            try:
                data = pickle.dumps(answer)
            except Exception:
                data = pickle.dumps(("error", f"unpicklable answer: {answer!r}"))
            view = memoryview(data)
            while view:
                view = view[os.write(write, view):]
        finally:
            os._exit(0)
    os.close(write)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    finished = False
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([read], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read, 65536)
            if not chunk:
                finished = True
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        reap(pid)
    if not finished:
        pytest.fail(f"the forked child hung: no answer within {timeout}s (killed)")
    if not chunks:
        pytest.fail("the forked child died without answering")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        pytest.fail(f"the forked child raised:\n{value}")
    return value


def reap(pid: int, timeout: float = WAIT) -> int:
    """Wait (bounded) for child `pid` to end and return its wait status; kill it if it does
    not end within `timeout` seconds and fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} did not exit within {timeout}s (killed)")
        _pause.wait(0.005)


def run_python(code: str, *, timeout: float = 30.0, cwd: Path | str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (this venv's); fail the test if it has not finished
    after `timeout` seconds, killing its whole process group (children it forked included)."""
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=WAIT)
        pytest.fail(f"the script did not finish within {timeout}s (killed)\n"
                    f"stdout:\n{stdout}\nstderr:\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_threads(target: Callable[[int], Any], count: int, timeout: float = 40.0,
                name: str = "worker") -> list[Any]:
    """Run `target(index)` in `count` daemon threads at once and return what each returned.

    Fails the test if a thread is still running after `timeout` seconds (a hang or a
    deadlock); an exception in a thread is re-raised here, with that thread's traceback.
    """
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), name=f"{name}-{i}", daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    if hung:
        pytest.fail(f"threads still running after {timeout}s (hang or deadlock?): {hung}")
    if errors:
        raise errors[0]
    return results


@contextlib.contextmanager
def dashboard_process(*args: str) -> Iterator[tuple[str, list[str]]]:
    """`python -m brama dashboard --port 0 *args` in a process of its own: yields (the page's
    URL, the lines it printed up to it), then stops it with Ctrl-C and checks that it stopped
    cleanly (status 0, "dashboard stopped", no traceback)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "brama", "dashboard", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        while not lines or "Brama dashboard on" not in lines[-1]:
            assert process.stdout is not None and process.stderr is not None
            line = timed_call(process.stdout.readline, 3 * WAIT).value
            assert line, f"the dashboard ended early: {lines} {process.stderr.read()}"
            lines.append(line)
        found = re.search(r"http://127\.0\.0\.1:\d+/", lines[-1])
        assert found, lines
        yield found.group(0), lines
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=6 * WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.endswith("dashboard stopped\n")
    assert "Traceback" not in err
