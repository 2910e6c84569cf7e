"""Properties of random message sequences (hypothesis)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from brama._circuit import (
    EXPIRY_TIMER,
    REFUSED,
    Acquire,
    CloseCircuit,
    DisableExpiry,
    ExpiryTick,
    Failure,
    OpenCircuit,
    PermitTimeout,
    ResetCircuit,
    ResetExpiry,
    SetExpiry,
    Success,
    permit_timer,
    resume_timers,
)
from brama._expiry import next_opening_expiry
from brama.types import EventType
from tests.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Driver,
    check_invariants,
)
from tests.hypothesis_profiles import scaled

# --- properties ----------------------------------------------------------------------------

MESSAGES = st.one_of(
    st.just(Success()),
    st.builds(Failure, st.sampled_from([None, "x"])),
    st.just(Acquire()),
    st.builds(
        OpenCircuit,
        st.none(),
        st.one_of(st.none(), st.floats(min_value=0.1, max_value=50.0)),
    ),
    st.builds(CloseCircuit),
    st.builds(ResetCircuit),
    st.just(ResetExpiry()),
    st.builds(SetExpiry, st.floats(min_value=0.1, max_value=50.0)),
    st.just(DisableExpiry()),
    st.builds(PermitTimeout, st.integers(min_value=0, max_value=5)),
    st.builds(ExpiryTick, st.integers(min_value=0, max_value=20)),
)
ACTIONS = st.lists(
    st.one_of(
        MESSAGES.map(lambda m: ("send", m)),
        st.floats(min_value=0.0, max_value=30.0).map(lambda t: ("advance", t)),
    ),
    max_size=60,
)
OVERRIDES = st.fixed_dictionaries(
    {
        "max_attempts": st.integers(min_value=1, max_value=4),
        "half_open_max_calls": st.integers(min_value=1, max_value=3),
        "success_threshold": st.integers(min_value=1, max_value=3),
        "expiry_strategy": st.sampled_from(["fixed", "progressive"]),
        "expiry": st.floats(min_value=0.5, max_value=20.0),
    }
)


def run(overrides: Mapping[str, Any], actions: list[tuple[str, Any]]) -> Driver:
    d = Driver(**overrides)
    for kind, value in actions:
        if kind == "send":
            d.send(value)
        else:
            d.advance(value)
    return d


@settings(max_examples=scaled(300), deadline=None)
@given(OVERRIDES, ACTIONS)
def test_random_sequences_keep_invariants(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = Driver(**overrides)
    previous = d.circuit
    for kind, value in actions:
        if kind == "send":
            result = d.send(value)
            changes = [e for e in result.events if e.event is EventType.STATE_CHANGE]
            if result.circuit.state is not previous.state:
                assert len(changes) == 1
                data = changes[0].data
                assert data["previous_state"] is previous.state
                assert data["new_state"] is result.circuit.state
                assert data["failure_count"] == result.circuit.failure_count
                assert result.circuit.generation > previous.generation
            else:
                assert changes == []
            if isinstance(value, Acquire):
                assert isinstance(result.reply, int)
                if result.reply == REFUSED:
                    assert result.circuit.rejected_calls == previous.rejected_calls + 1
        else:
            d.advance(value)
        previous = d.circuit
        check_invariants(d.circuit, d.options)
        # Timer hygiene: exactly the expiry of an open circuit and one timeout per permit
        # are armed; nothing is left behind for the memory to keep.
        expected = {permit_timer(pid) for pid, _ in d.circuit.permits}
        if d.circuit.state is OPEN and d.circuit.open_deadline is not None:
            expected.add(EXPIRY_TIMER)
        assert set(d.pending) == expected
    status = d.status()
    outcomes = status.total_successes + status.total_failures
    assert status.success_rate is None if outcomes == 0 else 0 <= status.success_rate <= 1


@settings(max_examples=scaled(200), deadline=None)
@given(OVERRIDES, ACTIONS)
def test_open_circuit_always_reaches_half_open_unless_disabled(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = run(overrides, actions)
    if d.circuit.state is OPEN:
        length = d.circuit.current_expiry
        assert length is not None
        d.advance(length + 1.0)
        if d.circuit.expiry_disabled:
            assert d.circuit.state is OPEN
        else:
            assert d.circuit.state is HALF_OPEN


@settings(max_examples=scaled(200), deadline=None)
@given(OVERRIDES, ACTIONS)
def test_progressive_openings_follow_the_formula(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = Driver(**{**overrides, "expiry_strategy": "progressive"})
    for kind, value in actions:
        if kind != "send":
            d.advance(value)
            continue
        step_before = d.circuit.opening_step
        options = d.options
        d.send(value)
        opened = [e for e in d.take_events() if e.event is EventType.CIRCUIT_OPENED]
        if opened and not (isinstance(value, OpenCircuit) and value.expires_in is not None):
            assert opened[0].data["expiry"] == next_opening_expiry(step_before, options)
            assert d.circuit.opening_step == step_before + 1
        if d.circuit.state is CLOSED:
            assert d.circuit.opening_step == 0


@settings(max_examples=scaled(100), deadline=None)
@given(OVERRIDES, ACTIONS)
def test_resume_timers_rebuild_the_same_future(
    overrides: dict[str, Any], actions: list[tuple[str, Any]]
) -> None:
    d = run(overrides, actions)
    restarted = Driver(circuit=d.circuit)
    restarted.mono = d.mono
    for key, delay, message in resume_timers(d.circuit, d.now()):
        restarted.arm(key, delay, message)
    d.advance(100.0)
    restarted.advance(100.0)
    assert restarted.circuit.state is d.circuit.state
    assert restarted.circuit.permits == d.circuit.permits
