"""One clock for the fleet: the Redis server's time, estimated locally without a round trip.

Hosts' clocks disagree (by milliseconds with NTP, by minutes without); a deadline written by
one host must mean the same on every other. So in fleet mode the state machine runs on the
server's clock: `ServerClock` keeps `offset = server time - local monotonic time`, measured
by round trips (every store script returns `TIME`; the store samples it on its own when no
script did for `clock_refresh` seconds), and reads `monotonic() + offset` with no I/O.

Each sample bounds the offset to within half its round trip. The clock keeps the sample
with the smallest bound, aged by an assumed drift (100 ppm of the time since it was taken),
so one slow round trip never makes the estimate worse; a sample that contradicts the kept
one beyond both bounds means the server's clock moved (an NTP step, a failover to another
host) and is taken at once. Readings never go backwards (they pause instead), so the
estimate can serve as the monotonic clock too: `Now(wall=t, mono=t)`.

Before the first sample the clock reads the local wall clock (`synced` is False): a process
that starts while Redis is down still has a sensible time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from brama._circuit import Now

__all__ = ["DRIFT", "PinnedClock", "ServerClock"]

DRIFT: Final = 1e-4
"""Assumed worst drift between the local monotonic clock and the server's clock (s/s)."""


class ServerClock:
    """Estimated Redis server time; satisfies `brama.otp.Clock` (`time()`, `monotonic()`)."""

    __slots__ = ("_at", "_error", "_last", "_lock", "_monotonic", "_offset", "_samples",
                 "drift")

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, drift: float = DRIFT) -> None:
        self._monotonic = monotonic
        self._offset = wall() - monotonic()
        self._error = math.inf
        self._at = monotonic()
        self._last = -math.inf
        self._samples = 0
        self._lock = threading.Lock()
        self.drift = drift

    def __repr__(self) -> str:
        state = f"±{self.uncertainty() * 1000:.3f} ms" if self.synced else "unsynced"
        return f"<ServerClock offset={self._offset:.6f} {state}>"

    @property
    def synced(self) -> bool:
        """True once a server sample was taken."""
        return self._samples > 0

    @property
    def samples(self) -> int:
        """Server samples observed so far."""
        return self._samples

    @property
    def offset(self) -> float:
        """Server time minus local monotonic time, as currently estimated."""
        return self._offset

    def uncertainty(self) -> float:
        """Bound on the estimate's error now, in seconds (inf before the first sample)."""
        return self._error + (self._monotonic() - self._at) * self.drift

    def age(self) -> float:
        """Seconds since the kept sample was taken."""
        return self._monotonic() - self._at

    def local(self) -> float:
        """The local monotonic reading this clock is based on: time round trips with it."""
        return self._monotonic()

    def observe(self, sent: float, received: float, server_time: float) -> bool:
        """Take a sample: the server said `server_time` between `sent` and `received`, two
        readings of `local()`. Returns True when it replaced the estimate."""
        if not received >= sent:
            return False
        offset = server_time - (sent + received) / 2.0
        error = (received - sent) / 2.0
        with self._lock:
            self._samples += 1
            kept = self._error + (received - self._at) * self.drift
            if error <= kept or abs(offset - self._offset) > error + kept:
                self._offset, self._error, self._at = offset, error, received
                return True
        return False

    def observe_reply(self, sent: float, received: float, seconds: bytes | str | int,
                      micros: bytes | str | int) -> bool:
        """`observe` with the two fields of a Redis `TIME` reply."""
        return self.observe(sent, received, int(seconds) + int(micros) / 1e6)

    def monotonic(self) -> float:
        """Estimated server time (epoch seconds), never going backwards."""
        now = self._monotonic() + self._offset
        with self._lock:
            if now < self._last:
                return self._last
            self._last = now
        return now

    time = monotonic
    """The same estimate: on the fleet's clock, wall and monotonic times are one."""

    def stamp(self) -> float:
        """The estimate without the never-backwards guarantee (no lock; a fifth of the cost),
        for timestamps on the hot path (the latest success), which nothing orders by."""
        return self._monotonic() + self._offset

    def now(self) -> Now:
        """`Now(wall=t, mono=t)` for the state machine, t the estimated server time."""
        t = self.monotonic()
        return Now(t, t)


class PinnedClock(ServerClock):
    """The fleet's clock when a system was given a clock of its own (a `FakeClock` in tests):
    that clock's readings, never moved by the server's `TIME`. Every system of a test fleet
    sharing one `FakeClock` then steps on the same, deterministic time."""

    __slots__ = ()

    def __init__(self, clock: Any) -> None:
        super().__init__(clock.monotonic, clock.time)

    def __repr__(self) -> str:
        return f"<PinnedClock offset={self.offset:.6f}>"

    def observe(self, sent: float, received: float, server_time: float) -> bool:
        """Server samples are ignored: the given clock decides."""
        return False
