"""Expiry arithmetic: how long an opening lasts, under the fixed and progressive strategies."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from brama._options import Options

__all__ = ["expiry_overrides", "next_opening_expiry"]


def next_opening_expiry(step: int, options: Options) -> float:
    """The length of opening number `step` (0 = first since the last close), per strategy.

    fixed: `expiry`; progressive: `min(max_expiry, initial_expiry * backoff_factor ** step)`.
    """
    if options.expiry_strategy != "progressive":
        return options.expiry
    try:
        length = options.initial_expiry * options.backoff_factor ** max(step, 0)
    except OverflowError:
        return options.max_expiry
    return min(options.max_expiry, length)


def expiry_overrides(overrides: Mapping[str, Any], seconds: float) -> Mapping[str, Any]:
    """The overrides after `set_expiry(seconds)`: expiry and initial_expiry both set to it.

    The facade resolves these before sending SetExpiry, so a value above an explicit
    max_expiry is rejected with ConfigError instead of breaking the connection.
    """
    return MappingProxyType(
        {**overrides, "expiry": float(seconds), "initial_expiry": float(seconds)}
    )
