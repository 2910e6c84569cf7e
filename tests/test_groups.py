"""Groups: named sets of connections checked and reported to as one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brama
from brama import (
    AlreadyRegisteredError,
    Brama,
    BramaError,
    CircuitState,
    ConnectionStatus,
    EventType,
    NotFoundError,
)


@pytest.fixture
def system(brama_system: Brama) -> Brama:
    for name in ("db", "cache", "search"):
        brama_system.register(name)
    return brama_system


@pytest.fixture
def default_system() -> Iterator[None]:
    brama.shutdown()
    yield
    brama.shutdown()


def test_register_group_and_status(system: Brama) -> None:
    system.register_group("backend", ["db", "cache"])
    statuses = system.group_status("backend")
    assert list(statuses) == ["db", "cache"]
    assert all(isinstance(s, ConnectionStatus) for s in statuses.values())
    assert statuses["db"].identifier == "db"
    assert statuses["cache"].state is CircuitState.CLOSED


def test_members_may_be_any_iterable(system: Brama) -> None:
    system.register_group("gen", (name for name in ("db", "search")))
    system.register_group("tup", ("cache",))
    assert set(system.group_status("gen")) == {"db", "search"}
    assert set(system.group_status("tup")) == {"cache"}


def test_group_status_reflects_member_changes(system: Brama) -> None:
    system.register_group("backend", ["db", "cache"])
    system.failure("db", reason="x")
    system.open_circuit("cache")
    statuses = system.group_status("backend")
    assert statuses["db"].failure_count == 1
    assert statuses["cache"].state is CircuitState.OPEN


def test_group_available(system: Brama) -> None:
    system.register_group("backend", ["db", "cache"])
    assert system.group_available("backend") is True
    system.open_circuit("cache")
    assert system.group_available("backend") is False
    system.reset_expiry("cache")  # half-open is not open
    assert system.group_available("backend") is True
    system.close_circuit("cache")
    assert system.group_available("backend") is True


def test_group_available_is_pure_on_open_members(system: Brama) -> None:
    system.register_group("backend", ["db", "cache"])
    system.open_circuit("db")
    for _ in range(3):
        assert system.group_available("backend") is False
    assert system.status("db").rejected_calls == 0


def test_group_available_takes_no_half_open_permit(system: Brama) -> None:
    system.configure("db", half_open_max_calls=1)
    system.register_group("backend", ["db", "cache"])
    system.open_circuit("db")
    system.reset_expiry("db")
    for _ in range(3):
        assert system.group_available("backend") is True
    assert system.status("db").rejected_calls == 0
    assert system.available("db") is True  # the permit is still there
    assert system.available("db") is False  # and there was only one
    assert system.status("db").rejected_calls == 1


def test_group_success(system: Brama) -> None:
    system.register_group("backend", ["db", "cache"])
    system.failure("db")
    system.open_circuit("cache")
    system.reset_expiry("cache")
    system.group_success("backend")
    db, cache = system.status("db"), system.status("cache")
    assert db.total_successes == 1
    assert db.failure_count == 0
    assert cache.total_successes == 1
    assert cache.state is CircuitState.CLOSED
    assert system.status("search").total_successes == 0  # not a member


def test_group_failure(system: Brama) -> None:
    system.configure("cache", max_attempts=1)
    system.register_group("backend", ["db", "cache"])
    with system.subscribe(events=[EventType.FAILURE]) as sub:
        system.group_failure("backend", reason="network partition")
        events = [sub.get(timeout=10) for _ in range(2)]
    assert sorted(e.connection for e in events) == ["cache", "db"]
    assert {e.data["reason"] for e in events} == {"network partition"}
    assert system.status("db").total_failures == 1
    assert system.status("db").state is CircuitState.CLOSED
    assert system.status("cache").state is CircuitState.OPEN
    assert system.status("search").total_failures == 0
    system.group_failure("backend")  # reason is optional
    assert system.status("db").failure_count == 2


def test_unregister_group(system: Brama) -> None:
    system.register_group("backend", ["db", "cache"])
    system.unregister_group("backend")
    with pytest.raises(NotFoundError):
        system.group_status("backend")
    with pytest.raises(NotFoundError):
        system.unregister_group("backend")
    assert system.status("db").identifier == "db"  # connections stay
    system.register_group("backend", ["search"])  # the name is free again
    assert list(system.group_status("backend")) == ["search"]


GROUP_CALLS: list[tuple[str, Callable[[Brama, str], Any]]] = [
    ("unregister_group", lambda s, n: s.unregister_group(n)),
    ("group_available", lambda s, n: s.group_available(n)),
    ("group_status", lambda s, n: s.group_status(n)),
    ("group_success", lambda s, n: s.group_success(n)),
    ("group_failure", lambda s, n: s.group_failure(n, reason="r")),
]


@pytest.mark.parametrize(("label", "call"), GROUP_CALLS, ids=[c[0] for c in GROUP_CALLS])
def test_unknown_group_is_not_found(system: Brama, label: str,
                                    call: Callable[[Brama, str], Any]) -> None:
    with pytest.raises(NotFoundError, match="'nope'"):
        call(system, "nope")
    assert issubclass(NotFoundError, LookupError)


@pytest.mark.parametrize(("label", "call"), GROUP_CALLS, ids=[c[0] for c in GROUP_CALLS])
def test_group_name_type_is_checked(system: Brama, label: str,
                                    call: Callable[[Brama, str], Any]) -> None:
    with pytest.raises(TypeError, match="name"):
        call(system, 42)  # type: ignore[arg-type]


def test_register_twice_is_already_registered_and_keeps_the_first(system: Brama) -> None:
    system.register_group("backend", ["db"])
    with pytest.raises(AlreadyRegisteredError, match="backend"):
        system.register_group("backend", ["cache", "search"])
    assert list(system.group_status("backend")) == ["db"]


@pytest.mark.parametrize(
    ("name", "members", "scope", "error", "match"),
    [
        ("g", ["db", "missing"], None, NotFoundError, "members.*'missing'"),
        ("g", "db", None, TypeError, "members"),
        ("g", b"db", None, TypeError, "members"),
        ("g", 42, None, TypeError, "members"),
        ("g", [], None, ValueError, "members"),
        ("g", ["db", "db"], None, ValueError, "members.*'db'"),
        ("g", ["db", 7], None, TypeError, "members"),
        ("g", ["db", ""], None, ValueError, "members"),
        ("g", ["db"], "eu", NotFoundError, "members.*'db'.*'eu'"),
        ("g", ["db"], "", ValueError, "scope"),
        ("g", ["db"], 5, TypeError, "scope"),
        ("", ["db"], None, ValueError, "name"),
        (None, ["db"], None, TypeError, "name"),
    ],
)
def test_bad_register_group_changes_nothing(
    system: Brama, name: Any, members: Any, scope: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        system.register_group(name, members, scope=scope)
    assert system.groups() == {}
    with pytest.raises(NotFoundError):
        system.group_status("g")


def test_scoped_group(system: Brama) -> None:
    system.register("db", scope="eu")
    system.register("cache", scope="eu")
    system.register_group("eu-backend", ["db", "cache"], scope="eu")
    system.group_failure("eu-backend", reason="eu down")
    statuses = system.group_status("eu-backend")
    assert {s.scope for s in statuses.values()} == {"eu"}
    assert statuses["db"].total_failures == 1
    assert system.status("db").total_failures == 0  # the unscoped one is untouched
    system.open_circuit("db", scope="eu")
    assert system.group_available("eu-backend") is False
    system.open_circuit("cache")  # unscoped: not a member
    system.close_circuit("db", scope="eu")
    assert system.group_available("eu-backend") is True


def test_a_member_unregistered_later(system: Brama) -> None:
    system.register_group("backend", ["db", "cache"])
    system.unregister("cache")
    assert system.group_available("backend") is False
    assert list(system.group_status("backend")) == ["db"]
    system.group_success("backend")
    system.group_failure("backend", reason="r")
    db = system.status("db")
    assert (db.total_successes, db.total_failures) == (1, 1)
    system.register("cache")  # the same key again: it is the member once more
    assert system.group_available("backend") is True
    assert list(system.group_status("backend")) == ["db", "cache"]


def test_groups_of_a_stopped_system(brama_system: Brama) -> None:
    brama_system.register("db")
    brama_system.register_group("g", ["db"])
    brama_system.stop()
    with pytest.raises(BramaError, match="stopped"):
        brama_system.register_group("h", ["db"])
    with pytest.raises(BramaError, match="stopped"):
        brama_system.group_available("g")


def test_groups_are_per_system(brama_system: Brama, brama_clock: Any) -> None:
    brama_system.register("db")
    brama_system.register_group("g", ["db"])
    with Brama(clock=brama_clock) as other, pytest.raises(NotFoundError):
        other.group_status("g")


@pytest.mark.usefixtures("default_system")
def test_module_level_group_functions() -> None:
    brama.register("db", max_attempts=1)
    brama.register("cache")
    brama.register_group("backend", ["db", "cache"])
    assert brama.group_available("backend") is True
    brama.group_failure("backend", reason="boom")
    assert brama.group_available("backend") is False
    statuses = brama.group_status("backend")
    assert statuses["db"].state is CircuitState.OPEN
    assert statuses["cache"].failure_count == 1
    brama.group_success("backend")
    assert brama.status("cache").failure_count == 0
    assert brama.default().group_status("backend")["db"].total_successes == 1
    brama.unregister_group("backend")
    with pytest.raises(NotFoundError):
        brama.group_available("backend")
