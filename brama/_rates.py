"""The rate rules of a closed circuit: its window of recent calls as the options shape it,
one more call recorded in it, and the rule the window now breaks (pure functions)."""

from __future__ import annotations

from brama._circuit_state import Circuit
from brama._messages import Now
from brama._options import Options
from brama._window import TimeWindow, Window, new_window
from brama.types import EventType

__all__ = ["exceeded", "record_call", "window_of"]


def window_of(c: Circuit, options: Options, now: float) -> Window | None:
    """The circuit's window as the current options shape it: its own if it has that shape,
    else a new, empty one (None when no rate policy is on)."""
    if not options.windowed:
        return None
    window, kind, size = c.window, options.window_type, options.window_size
    if window is None or window.size != size or (kind == "time") != isinstance(window, TimeWindow):
        return new_window(kind, size, now)
    return window


def record_call(c: Circuit, options: Options, now: Now, failed: bool, duration: float | None,
            seen_fast: int) -> tuple[Window | None, int]:
    """The window after one more call (and the hot path's successes since the last step),
    shaped by the current options; with how many hot-path successes it now holds."""
    if not options.windowed:  # no rate policy: the common case, without a call
        return None, seen_fast
    window = window_of(c, options, now.mono)
    if window is None:
        return None, seen_fast
    folded = c.folded  # a new window starts from the successes the old one had folded
    window = window.add_successes(seen_fast - folded, now.mono)
    slow = (duration is not None and options.slow_call_duration is not None
            and duration >= options.slow_call_duration)
    return window.record(failed, slow, now.mono), max(seen_fast, folded)


def exceeded(window: Window | None, options: Options,
              now: Now) -> tuple[str, EventType, float, float] | None:
    """The rate rule a closed circuit's window now breaks: (rule, event, rate, threshold).

    Checked after every call recorded, successes too: the call that brings the window to
    `minimum_calls` is the first one its rates are judged on."""
    if window is None:
        return None
    rates = window.rates(options.minimum_calls, now.mono)
    threshold = options.failure_rate_threshold
    if threshold is not None and rates.failure_rate is not None and (
        rates.failure_rate >= threshold
    ):
        return "failure_rate", EventType.FAILURE_RATE_EXCEEDED, rates.failure_rate, threshold
    threshold = options.slow_call_rate_threshold
    if threshold is not None and rates.slow_call_rate is not None and (
        rates.slow_call_rate >= threshold
    ):
        return "slow_call_rate", EventType.SLOW_CALL_RATE_EXCEEDED, rates.slow_call_rate, threshold
    return None
