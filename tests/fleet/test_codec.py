"""The fleet codec: circuits as JSON, permit owners, events and notices (no server needed)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brama._circuit import Circuit, Emit, Failure, Now, new_circuit, step
from brama._config import Settings
from brama._fleet import FleetDataError, FleetState, decode_state, encode_state, fleet_key
from brama._fleet.codec import (
    LOCAL_FIELDS,
    SHARED_FIELDS,
    decode_notice,
    jsonable,
    notice_header,
)
from brama.types import CircuitState, EventType

OPTIONS = Settings(environ={}).resolve({"max_attempts": 2, "expiry": 5.0,
                                        "half_open_max_calls": 2})
NOW = Now(1_800_000_000.25, 1_800_000_000.25)

times = st.one_of(st.none(), st.floats(min_value=0, max_value=4e9, allow_nan=False))
counts = st.integers(min_value=0, max_value=2**53)
circuits = st.builds(
    Circuit,
    state=st.sampled_from(list(CircuitState)),
    failure_count=counts, opening_step=counts, opened_at=times, open_deadline=times,
    current_expiry=times, expiry_disabled=st.booleans(), generation=counts,
    half_open_successes=counts,
    permits=st.lists(st.tuples(counts, st.floats(0, 4e9)), max_size=3).map(tuple),
    next_permit_id=counts, total_successes=counts, total_failures=counts,
    rejected_calls=counts, total_openings=counts, last_failure_time=times,
    last_failure_reason=st.one_of(st.none(), st.text(max_size=20), st.integers()),
    last_success_time=times, last_state_change=times, registered_at=times,
    last_activity=st.floats(0, 4e9),
)


@settings(max_examples=200, deadline=None)
@given(circuits)
def test_round_trip_keeps_every_shared_field(circuit: Circuit) -> None:
    state = FleetState(circuit)
    assert decode_state(encode_state(state)) == state


def test_every_circuit_field_is_shared_except_the_local_ones() -> None:
    assert set(SHARED_FIELDS) == set(Circuit.__slots__) - LOCAL_FIELDS
    assert {"overrides", "folded"} == LOCAL_FIELDS
    assert "state" in SHARED_FIELDS and "window" in SHARED_FIELDS


def test_rate_windows_are_shared_and_checked() -> None:
    """The fleet judges its rates over every process's calls: both kinds of window travel."""
    from brama._window import CountWindow, TimeWindow

    count = CountWindow(size=5).record(True, False, 0).record(False, True, 0)
    timed = (TimeWindow(size=3, second=100).record(True, True, 100.5)
             .record(False, False, 101.2).record(True, False, 102.9))
    for window in (None, count, timed):
        state = FleetState(new_circuit(NOW).evolve(window=window, folded=7))
        decoded = decode_state(encode_state(state))
        assert decoded.circuit.window == window
        assert decoded.circuit.folded == 0  # how many fast successes were folded: local
    good = json.loads(encode_state(FleetState(new_circuit(NOW).evolve(window=timed))))
    for bad in ({"kind": "ring"}, {**good["window"], "size": 0},
                {**good["window"], "past": [[1, 2]]}, {**good["window"], "calls": "3"}):
        with pytest.raises(FleetDataError, match="window"):
            decode_state(json.dumps({**good, "window": bad}))


def test_overrides_stay_local_and_come_back_from_the_decoder() -> None:
    mine = new_circuit(NOW, {"max_attempts": 3})
    state = FleetState(new_circuit(NOW, {"max_attempts": 7}))
    text = encode_state(state)
    assert "max_attempts" not in text
    decoded = decode_state(text, mine)
    assert decoded.circuit.overrides is mine.overrides
    assert decoded.with_local(mine) is decoded
    assert decode_state(text).circuit.overrides == {}


def test_reasons_and_event_data_become_json() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    circuit = new_circuit(NOW).evolve(last_failure_reason=ValueError("boom"))
    assert decode_state(encode_state(FleetState(circuit))).circuit.last_failure_reason == (
        "ValueError('boom')")
    assert jsonable({3: Odd()}) == "{3: <odd>}"  # a mapping JSON cannot key: its repr
    assert jsonable({"a": (1, 2.5, None), "b": CircuitState.OPEN, "c": Odd(),
                     "d": float("inf")}) == {"a": [1, 2.5, None], "b": "open", "c": "<odd>",
                                             "d": "inf"}


def test_permit_owners_follow_the_permits() -> None:
    half = new_circuit(NOW).evolve(state=CircuitState.HALF_OPEN, current_expiry=5.0)
    shared = FleetState(half)
    first = shared.advance(half.evolve(permits=((0, 10.0),), next_permit_id=1), "a")
    second = first.advance(first.circuit.evolve(permits=((0, 10.0), (1, 20.0)),
                                                next_permit_id=2), "b")
    assert dict(second.owners) == {0: "a", 1: "b"}
    assert second.owned_by("b") == (1,)
    assert decode_state(encode_state(second)) == second
    text = json.loads(encode_state(second))
    assert text["permits"] == [[0, 10.0, "a"], [1, 20.0, "b"]]
    dropped = second.drop_expired(15.0)
    assert dropped.circuit.permits == ((1, 20.0),) and dict(dropped.owners) == {1: "b"}
    assert second.drop_expired(5.0) is second


def test_a_newer_format_or_foreign_data_is_refused() -> None:
    good = json.loads(encode_state(FleetState(new_circuit(NOW))))
    with pytest.raises(FleetDataError, match="format 2 is not supported"):
        decode_state(json.dumps({**good, "format": 2}))
    with pytest.raises(FleetDataError, match="not valid JSON"):
        decode_state(b"\xff not json")
    with pytest.raises(FleetDataError, match="JSON object"):
        decode_state("[1, 2]")
    with pytest.raises(FleetDataError, match="state field state='ajar'"):
        decode_state(json.dumps({**good, "state": "ajar"}))
    with pytest.raises(FleetDataError, match="failure_count='3' must be an integer"):
        decode_state(json.dumps({**good, "failure_count": "3"}))
    with pytest.raises(FleetDataError, match="permit"):
        decode_state(json.dumps({**good, "permits": [[1]]}))


def test_unknown_fields_are_ignored_and_missing_ones_take_defaults() -> None:
    decoded = decode_state(json.dumps({"format": 1, "state": "open", "from_the_future": 1}))
    assert decoded.circuit == Circuit(state=CircuitState.OPEN)


def test_notice_header_and_payload_decode() -> None:
    key = fleet_key("shop", "payments", scope="eu")
    circuit = new_circuit(NOW)
    result = step(circuit, OPTIONS, Failure("timeout"), NOW)
    header = notice_header(key, "web1/42/abcd", result.events, 1800000000.125)
    payload = ('{"v":17,"t":1800000000.250000,' + header + ',"s":'
               + encode_state(FleetState(result.circuit)) + "}")
    notice = decode_notice(payload.encode(), "shop")
    assert notice.key == key
    assert (notice.version, notice.origin, notice.time) == (17, "web1/42/abcd", 1800000000.25)
    assert notice.wall == 1800000000.125  # the decider's clock, its events' timestamp
    assert notice.state.circuit == result.circuit
    assert [e.event for e in notice.events] == [EventType.FAILURE]
    assert notice.events[0].data["reason"] == "timeout"
    with pytest.raises(FleetDataError):
        decode_notice(b'{"v":1}', "shop")


def test_unknown_event_types_are_skipped() -> None:
    from brama._fleet.codec import decode_events

    events = decode_events([["state_change", {"new_state": "open"}], ["from_the_future", {}]])
    assert events == (Emit(EventType.STATE_CHANGE, {"new_state": "open"}),)


def test_own_notices_are_recognised_without_decoding() -> None:
    from brama._fleet.codec import own_marker

    mine, theirs = "web1/42/abcd", "web2/7/ef01"
    sneaky = fleet_key("shop", f'x","o":"{mine}","e":[', scope=f',"o":"{mine}","e":')
    for key, origin in ((sneaky, theirs), (fleet_key("shop", "p"), mine)):
        payload = ('{"v":1,"t":1.0,' + notice_header(key, origin, ()) + ',"s":'
                   + encode_state(FleetState(new_circuit(NOW))) + "}").encode()
        assert (own_marker(mine) in payload) == (origin == mine)
        assert decode_notice(payload, "shop").key == key
