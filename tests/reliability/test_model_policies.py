"""The reference model with the rate policies on (docs/api.md "Rate policies").

Connections register with random failure-rate and slow-call-rate rules over count and time
windows; calls report random durations, through the plain API and through calls that own
their permits. The model (`Reference.rates`, `record`, `broken` in test_model.py) keeps every
recorded call of a closed circuit and judges the window from scratch after each one, with no
bit registers, buckets or hot-path counters: what `brama._window` does in O(1) must add up
to the same rates, the same trips and the same rule in the events.

Policy options are fixed at registration here (a `configure` changes the other options): the
model is the contract's, and the contract says nothing of a window reshaped mid-flight.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from tests.hypothesis_profiles import scaled
from tests.reliability.test_model import CONNECTION_OPTIONS, MODEL_SETTINGS, BramaModel

POLICY_OPTIONS = {
    "failure_rate_threshold": st.sampled_from([None, 0.25, 0.5, 1.0]),
    "slow_call_duration": st.sampled_from([None, 1.0, 2.0]),
    "slow_call_rate_threshold": st.sampled_from([None, 0.5, 1.0]),
    "window_type": st.sampled_from(["count", "time"]),
    "window_size": st.sampled_from([1, 2, 3, 5]),
    "minimum_calls": st.integers(1, 4),
}


class PolicyBramaModel(BramaModel):
    """Random operations on connections with rate policies, checked against `Reference`."""

    connection_options = st.fixed_dictionaries(
        {"minimum_calls": POLICY_OPTIONS["minimum_calls"]},  # the default 10 mostly refused
        optional={**CONNECTION_OPTIONS,
                  **{k: v for k, v in POLICY_OPTIONS.items() if k != "minimum_calls"}},
    )
    configure_options = st.fixed_dictionaries({}, optional=CONNECTION_OPTIONS)
    durations = st.sampled_from([None, 0.5, 1.0, 2.0, 3.0])


@pytest.mark.timeout(300)
def test_brama_matches_reference_model_with_rate_policies() -> None:
    run_state_machine_as_test(
        PolicyBramaModel,
        settings=settings(MODEL_SETTINGS, max_examples=scaled(500)),  # ~10 s on a quiet machine
    )


def test_the_policy_model_trips_on_a_rate_alone() -> None:
    """The model itself: one failure in three trips a 0.3 failure rate, not max_attempts."""
    from tests.reliability.test_model import Conn, Reference

    model = Reference({"max_attempts": 10, "expiry": 5.0, "expiry_strategy": "fixed",
                       "backoff_factor": 2.0, "half_open_max_calls": 1,
                       "success_threshold": 1}, 0.0)
    key = (None, "x")
    model.conns[key] = Conn(overrides={"failure_rate_threshold": 0.3, "minimum_calls": 3,
                                       "window_size": 3}, registered_at=0.0)
    model.success(key)
    model.success(key)
    assert model.conns[key].state == "closed"
    model.failure(key)
    assert model.conns[key].state == "open"
    assert model.changes[-1][-1] == "failure_rate"
