"""The pykka internals that `brama/otp/_actor.py` overrides or reads must still exist.

`brama.otp` pins `pykka>=4,<5`; if a pykka release renames any of these, this test fails
before anything subtler does.
"""

from __future__ import annotations

import inspect
import queue

import pykka
from pykka import ActorRef, ActorRegistry
from pykka import messages as pykka_messages
from pykka._envelope import Envelope

from brama.otp import Actor


def test_the_overridden_actor_methods_exist_in_pykka() -> None:
    for name in ("_create_actor_inbox", "_actor_loop", "_stop", "_handle_failure",
                 "_handle_receive", "on_start", "on_stop", "on_failure", "on_receive"):
        assert callable(getattr(pykka.ThreadingActor, name, None)), name


def test_the_inbox_is_created_by_create_actor_inbox_and_is_a_queue() -> None:
    inbox = pykka.ThreadingActor._create_actor_inbox()
    assert isinstance(inbox, queue.Queue)
    source = inspect.getsource(pykka.Actor.__init__)
    assert "self._create_actor_inbox()" in source


def test_the_envelope_and_internal_messages_exist() -> None:
    envelope = Envelope("message", reply_to=None)
    assert (envelope.message, envelope.reply_to) == ("message", None)
    for name in ("_ActorStop", "ProxyCall", "ProxyGetAttr", "ProxySetAttr"):
        assert isinstance(getattr(pykka_messages, name), type), name


def test_the_registry_internals_read_after_fork_exist() -> None:
    assert isinstance(ActorRegistry._actor_refs, list)
    assert hasattr(ActorRegistry._actor_refs_lock, "acquire")


def test_refs_keep_a_weak_reference_to_their_actor() -> None:
    ref: ActorRef[Actor] = Actor.start()
    try:
        assert ref._actor_weakref() is not None
        assert ref.actor_inbox is not None and ref.actor_stopped is not None
    finally:
        ref.stop()
