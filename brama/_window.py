"""Sliding windows of call outcomes, for the failure-rate and slow-call-rate policies.

Pure and immutable, like the rest of the state machine: recording an outcome returns a new
window. Both kinds cost O(1) per outcome and bounded memory per connection:

- a count window (the last `size` calls) keeps two bit registers, one bit per call (failed,
  slow), shifted as calls come in: a few machine words for the usual sizes;
- a time window (the calls of the last `size` seconds) aggregates calls in one bucket per
  second, as resilience4j does: outcomes within a second update the current bucket; a new
  second moves it to the past buckets (at most `size` of them) and drops the expired ones.

Successes counted on the hot path without the actor are folded in later, in one step
(`add_successes`); in a time window they belong to its current second, the only one in which
the hot path counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple

from brama._record import record

__all__ = ["CountWindow", "Rates", "TimeWindow", "Window", "new_window"]


class Rates(NamedTuple):
    """What a window says now: calls it holds, and the rates (None below the minimum)."""

    calls: int
    failures: int
    slow: int
    failure_rate: float | None
    slow_call_rate: float | None

    @staticmethod
    def of(calls: int, failures: int, slow: int, minimum_calls: int) -> Rates:
        """The rates of `calls` outcomes, judged only from `minimum_calls` on."""
        if calls < max(minimum_calls, 1):
            return Rates(calls, failures, slow, None, None)
        return Rates(calls, failures, slow, failures / calls, slow / calls)


@record
class CountWindow:
    """The last `size` calls: bit i of `failed` / `slow` is the (i+1)-th most recent call."""

    __slots__ = ("calls", "failed", "size", "slow")

    def __init__(self, *, size: int, calls: int = 0, failed: int = 0, slow: int = 0) -> None:
        self.size: Final = size
        self.calls: Final = calls
        self.failed: Final = failed
        self.slow: Final = slow

    if TYPE_CHECKING:

        def evolve(self, **changes: Any) -> CountWindow: ...

    def record(self, failed: bool, slow: bool, now: float) -> CountWindow:
        """The window with one more call at its end."""
        mask = (1 << self.size) - 1
        return self.evolve(
            calls=min(self.calls + 1, self.size),
            failed=((self.failed << 1) | failed) & mask,
            slow=((self.slow << 1) | slow) & mask,
        )

    def add_successes(self, count: int, now: float) -> CountWindow:
        """The window with `count` more fast, successful calls at its end."""
        if count <= 0:
            return self
        if count >= self.size:
            return self.evolve(calls=self.size, failed=0, slow=0)
        mask = (1 << self.size) - 1
        return self.evolve(calls=min(self.calls + count, self.size),
                           failed=(self.failed << count) & mask, slow=(self.slow << count) & mask)

    def rates(self, minimum_calls: int, now: float, pending: int = 0) -> Rates:
        """The window's rates now, counting `pending` successes not folded in yet."""
        window = self.add_successes(pending, now)
        return Rates.of(window.calls, window.failed.bit_count(), window.slow.bit_count(),
                        minimum_calls)


_EMPTY_PAST: tuple[tuple[int, int, int, int], ...] = ()


@record
class TimeWindow:
    """The calls of the last `size` seconds, in one bucket per second.

    `second` is the current bucket's second (`floor(monotonic time)`); `past` holds the
    earlier buckets still in the window, oldest first, as (second, calls, failed, slow); the
    `past_*` fields are their sums.
    """

    __slots__ = ("calls", "failed", "past", "past_calls", "past_failed", "past_slow", "second",
                 "size", "slow")

    def __init__(self, *, size: int, second: int = 0, calls: int = 0, failed: int = 0,
                 slow: int = 0, past: tuple[tuple[int, int, int, int], ...] = _EMPTY_PAST,
                 past_calls: int = 0, past_failed: int = 0, past_slow: int = 0) -> None:
        self.size: Final = size
        self.second: Final = second
        self.calls: Final = calls
        self.failed: Final = failed
        self.slow: Final = slow
        self.past: Final = past
        self.past_calls: Final = past_calls
        self.past_failed: Final = past_failed
        self.past_slow: Final = past_slow

    if TYPE_CHECKING:

        def evolve(self, **changes: Any) -> TimeWindow: ...

    def at(self, now: float) -> TimeWindow:
        """The window as seen at monotonic time `now`: buckets older than `size` seconds
        dropped, the current bucket moved to the past if `now` is in a later second."""
        second = int(now // 1)
        if second <= self.second:
            return self
        past = self.past
        if self.calls:
            past = (*past, (self.second, self.calls, self.failed, self.slow))
        oldest = second - self.size + 1
        if past and past[0][0] < oldest:
            past = tuple(bucket for bucket in past if bucket[0] >= oldest)
            totals = (sum(b[1] for b in past), sum(b[2] for b in past), sum(b[3] for b in past))
        else:
            totals = (self.past_calls + self.calls, self.past_failed + self.failed,
                      self.past_slow + self.slow)
        return self.evolve(second=second, calls=0, failed=0, slow=0, past=past,
                           past_calls=totals[0], past_failed=totals[1], past_slow=totals[2])

    def record(self, failed: bool, slow: bool, now: float) -> TimeWindow:
        """The window with one more call at `now`."""
        window = self.at(now)
        return window.evolve(calls=window.calls + 1, failed=window.failed + failed,
                             slow=window.slow + slow)

    def add_successes(self, count: int, now: float) -> TimeWindow:
        """The window as seen at `now`, with `count` more fast, successful calls in its current
        second: the hot path counts successes without the actor only within that second (see
        `brama._cell.Cell.window_second`), so that is where they belong, whenever folded."""
        if count <= 0:
            return self.at(now)
        return self.evolve(calls=self.calls + count).at(now)

    def rates(self, minimum_calls: int, now: float, pending: int = 0) -> Rates:
        """The window's rates at `now`, counting `pending` successes not folded in yet."""
        window = self.add_successes(pending, now)
        return Rates.of(window.past_calls + window.calls, window.past_failed + window.failed,
                        window.past_slow + window.slow, minimum_calls)


Window = CountWindow | TimeWindow


def new_window(kind: str, size: float, now: float) -> Window:
    """An empty window of `kind` ("count" or "time") and `size` (calls or seconds)."""
    if kind == "time":
        return TimeWindow(size=max(int(size), 1), second=int(now // 1))
    return CountWindow(size=max(int(size), 1))
