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

from brama.otp._actor import Actor, call, kill
from brama.otp._address import Address, ChildAddress
from brama.otp._childspec import (
    ChildInfo,
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    RestartIntensityExceeded,
    RestartType,
    StartContext,
    StateSlot,
    Strategy,
)
from brama.otp._clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from brama.otp._eventbus import EventBus, EventHandler, Interest, Subscription
from brama.otp._exit import (
    HIBERNATED,
    NORMAL,
    SHUTDOWN,
    ContainedBaseException,
    ErrorReply,
    Exit,
    ExitReason,
    NotHandledError,
    SelfCallError,
    StartError,
    demonitor,
    exit_reason,
    monitor,
    monitor_count,
    set_exit_reason,
)
from brama.otp._log import get_logger, safe_repr, safe_text
from brama.otp._registry import NameTakenError, Registry, Via
from brama.otp._supervisor import Supervisor
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
    "ChildRunningError",
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
    "NotHandledError",
    "Registry",
    "RestartIntensityExceeded",
    "RestartType",
    "SelfCallError",
    "StartContext",
    "StartError",
    "StateSlot",
    "Strategy",
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
    "kill",
    "monitor",
    "monitor_count",
    "safe_repr",
    "safe_text",
    "set_exit_reason",
]
