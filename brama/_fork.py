"""Fork safety: after `os.fork()`, every live system in the child resumes with fresh threads.

Threads do not survive a fork (gunicorn --preload, celery prefork, multiprocessing's fork
start method). In the child, `brama.otp` marks every inherited actor dead; then each live
`Brama` builds a new runtime over the state it already holds, exactly as a restarted tree
does: the same registrations, options, groups and circuit states, timers armed again from
state. Subscriptions of the parent are not inherited: subscribe again in the child.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

# The OTP layer's own fork handlers (inherited actors marked dead, timer services, buses)
# must run before `_resume_all` builds the new runtimes: handlers run in the order they
# were registered, so brama.otp registers first, whatever order modules are imported in.
import brama.otp  # noqa: F401

__all__ = ["track"]


class _Resumable(Protocol):
    def resume_after_fork(self) -> None: ...


_systems: weakref.WeakSet[_Resumable] = weakref.WeakSet()


def track(system: _Resumable) -> None:
    """Resume `system` in every child this process forks from now on."""
    _systems.add(system)


def _resume_all() -> None:
    for system in list(_systems):
        system.resume_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_resume_all)
