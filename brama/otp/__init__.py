"""brama.otp: a small OTP layer on pykka (supervisor, registry, event bus, timers, clocks).

Usable by any pykka application on its own; Brama's connection management is built on it.
Re-exports only, like pykka's own `__init__`:

- `Actor`: a pykka `ThreadingActor` that can be monitored (`monitor` / `demonitor`, `Exit`
  messages with a reason), supervised and hibernated, and that contains `BaseException`s;
  `call` is an `ask` that never hangs on an actor that died.
- `Supervisor`, `ChildSpec`: one_for_one / one_for_all / rest_for_one, permanent / transient /
  temporary children, restart intensity and escalation, dynamic and dormant children.
- `Registry`: unique names to actors, read without a round trip.
- `EventBus`, `Subscription`: topics, trusted `match` predicates and user filters; actor,
  handler (thread or asyncio) or mailbox delivery, every kind bounded; restartable under a
  `Supervisor` (`child_spec`) without losing its subscriptions; dead in a forked child.
- `TimerService`: `send_after` on one scheduler thread; `FakeClock` drives it in tests.
"""

from brama.otp._actor import (
    HIBERNATED,
    NORMAL,
    SHUTDOWN,
    Actor,
    ContainedBaseException,
    ErrorReply,
    Exit,
    ExitReason,
    call,
    demonitor,
    exit_reason,
    monitor,
    set_exit_reason,
)
from brama.otp._clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from brama.otp._eventbus import EventBus, EventHandler, Interest, Subscription
from brama.otp._log import get_logger, safe_repr, safe_text
from brama.otp._registry import NameTakenError, Registry, Via
from brama.otp._supervisor import (
    Address,
    ChildAddress,
    ChildInfo,
    ChildNotFoundError,
    ChildSpec,
    RestartIntensityExceeded,
    StartContext,
    StateSlot,
    Supervisor,
)
from brama.otp._timers import Destination, TimerRef, TimerService

__all__ = [
    "HIBERNATED",
    "NORMAL",
    "SHUTDOWN",
    "SYSTEM_CLOCK",
    "Actor",
    "Address",
    "ChildAddress",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildSpec",
    "Clock",
    "ContainedBaseException",
    "Destination",
    "ErrorReply",
    "EventBus",
    "EventHandler",
    "Exit",
    "ExitReason",
    "FakeClock",
    "Interest",
    "NameTakenError",
    "Registry",
    "RestartIntensityExceeded",
    "StartContext",
    "StateSlot",
    "Subscription",
    "Supervisor",
    "SystemClock",
    "TimerRef",
    "TimerService",
    "Via",
    "call",
    "demonitor",
    "exit_reason",
    "get_logger",
    "monitor",
    "safe_repr",
    "safe_text",
    "set_exit_reason",
]
