"""The bridge: every transition in the fleet, handed to this process as it is published.

`Bridge` is a `brama.otp.Actor` (so a supervisor can own and restart it) that runs one
listener thread subscribed to the namespace's channel. Each message is decoded into a
`ChangeNotice` and given to `on_change(notice)`, on the listener thread, in channel order
(which, per connection, is version order); with `skip_own`, notices of this process's own
transitions are dropped first.

Pub/sub is fire-and-forget: a message published while the bridge is disconnected is lost
for good. So the bridge never tries to replay: whenever its subscription becomes live (the
first time, and after every reconnection) it calls `on_reconnect()`, and the owner re-reads
the fleet state of what it holds (`FleetStore.join`); each lost subscription (or failed
attempt) calls `on_disconnect(error)`. Whatever was missed before that call
is covered by the re-read; whatever comes after it arrives on the channel.

Redis going away is noticed at once when the socket closes, and within about
`heartbeat + timeout` when the server hangs (the bridge PINGs its subscription every
`heartbeat` seconds). It then reconnects with backoff (`probe_min` doubling to `probe_max`,
jittered). Callbacks are user code to the bridge: an exception is logged and contained; they
should be quick (a `tell`), as the next notice waits for them. Stopping the actor stops the
thread within about one `timeout`; a callback that never returns is abandoned (the thread
is a daemon), so `stop()` never hangs. A bug in the listener kills the actor, for its
supervisor to restart.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from brama._fleet.codec import ChangeNotice, decode_notice, own_marker
from brama._fleet.config import FleetConfig, require_redis
from brama._fleet.errors import FleetDataError, describe
from brama._fleet.keys import changes_channel, process_origin
from brama.otp import Actor, get_logger, kill

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub

__all__ = ["Bridge", "BridgeInfo", "BridgeStatus"]

_log: Final = "brama.fleet.bridge"
_JOIN: Final = 1.0
"""Longest wait in `on_stop` for the listener thread, beyond one `timeout` and one connect
(a callback in flight gets that long to return; after it the thread is abandoned)."""
_POLL: Final = 0.05
"""Longest wait for a message before the listener looks at its stop flag again."""


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """Call message: answered with the bridge's `BridgeStatus`."""


@dataclass(frozen=True, slots=True)
class BridgeStatus:
    """What the bridge has done so far."""

    subscribed: bool
    """True while the subscription is live."""
    subscriptions: int
    """Successful subscriptions (1 + reconnections)."""
    notices: int
    """Notices handed to `on_change`."""
    skipped: int
    """Own notices dropped (`skip_own`)."""
    undecodable: int
    """Messages that were not notices (logged and dropped)."""
    last_error: str | None


class Bridge(Actor):
    """Subscribes to the fleet's changes; see the module docstring.

    `Bridge.start(config, on_change, on_reconnect=..., skip_own=..., origin=...)` returns
    once the listener thread runs (not once subscribed: Redis may be down); supervise it with
    `ChildSpec.for_actor(id, Bridge, config, on_change, ...)`.
    """

    def __init__(
        self,
        config: FleetConfig,
        on_change: Callable[[ChangeNotice], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        on_disconnect: Callable[[BaseException], None] | None = None,
        skip_own: bool = False,
        origin: str | None = None,
        make_client: Callable[[], Redis] | None = None,
    ) -> None:
        super().__init__()
        if not callable(on_change):
            raise TypeError(f"on_change must be callable, got {on_change!r}")
        if on_reconnect is not None and not callable(on_reconnect):
            raise TypeError(f"on_reconnect must be callable or None, got {on_reconnect!r}")
        require_redis()
        self.config = config
        self.on_change = on_change
        self.on_reconnect = on_reconnect
        self.on_disconnect = on_disconnect
        self.skip_own = skip_own
        self.origin = origin
        self.channel = changes_channel(config.namespace)
        self._make_client = make_client if make_client is not None else config.client
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = False
        self._subscriptions = 0
        self._notices = 0
        self._skipped = 0
        self._undecodable = 0
        self._last_error: str | None = None

    # -- actor life cycle --

    def on_start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"brama-fleet-bridge "
                                        f"{self.config.namespace}", daemon=True)
        self._thread.start()

    def on_stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.config.timeout + self.config.connect_timeout + _JOIN)
            if thread.is_alive():
                get_logger(_log).warning("fleet_bridge_thread_abandoned",
                                         namespace=self.config.namespace)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, BridgeInfo):
            return self.status()
        return super().on_receive(message)

    def status(self) -> BridgeStatus:
        """The counters of this bridge (also answered to a `BridgeInfo` call)."""
        return BridgeStatus(self._subscribed, self._subscriptions, self._notices,
                            self._skipped, self._undecodable, self._last_error)

    # -- the listener thread --

    def _run(self) -> None:
        try:
            self._listen_forever()
        except BaseException as exc:  # a bug: let the supervisor restart the bridge
            get_logger(_log).error("fleet_bridge_crashed", namespace=self.config.namespace,
                                   exc_info=exc)
            if not self._stopping.is_set():
                kill(self.actor_ref, exc if isinstance(exc, Exception)
                     else RuntimeError(f"fleet bridge listener ended: {exc!r}"))

    def _listen_forever(self) -> None:
        redis = require_redis()
        faults = (redis.RedisError, OSError)
        client: Redis | None = None
        delay = self.config.probe_min
        while not self._stopping.is_set():
            try:
                if client is None:
                    client = self._make_client()
                pubsub = self._subscribe(client)
            except faults as exc:
                self._last_error = describe(exc)
                get_logger(_log).debug("fleet_bridge_subscribe_failed", error=self._last_error)
                self._callback("on_disconnect", self.on_disconnect, exc)
                self._stopping.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2.0, self.config.probe_max)
                continue
            delay = self.config.probe_min
            self._subscriptions += 1
            self._subscribed = True
            get_logger(_log).info("fleet_bridge_subscribed", channel=self.channel,
                                  subscriptions=self._subscriptions)
            try:
                self._callback("on_reconnect", self.on_reconnect)
                self._pump(pubsub)
            except faults as exc:
                self._last_error = describe(exc)
                get_logger(_log).warning("fleet_bridge_disconnected", channel=self.channel,
                                         error=self._last_error)
                self._callback("on_disconnect", self.on_disconnect, exc)
            finally:
                self._subscribed = False
                self._close(pubsub)
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken pool must not raise
                client.close()

    def _subscribe(self, client: Redis) -> PubSub:
        """A live subscription: SUBSCRIBE sent and confirmed within the timeout."""
        pubsub: PubSub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self.channel)
            deadline = time.monotonic() + self.config.timeout + self.config.connect_timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    raise require_redis().TimeoutError("no subscription confirmation in time")
                message = pubsub.get_message(timeout=min(left, _POLL))
                if message is not None and message["type"] == "subscribe":
                    break
            return pubsub
        except BaseException:
            self._close(pubsub)
            raise

    def _pump(self, pubsub: PubSub) -> None:
        """Deliver messages until stopped; raises when the connection is lost or hangs."""
        heartbeat = self.config.heartbeat
        patience = heartbeat + self.config.timeout
        last_heard = time.monotonic()
        pinged = False
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=_POLL)
            now = time.monotonic()
            if message is None:
                if now - last_heard >= patience and pinged:
                    raise require_redis().TimeoutError(
                        f"no answer on the subscription for {now - last_heard:.2f}s")
                if now - last_heard >= heartbeat and not pinged:
                    pubsub.ping()
                    pinged = True
                continue
            last_heard, pinged = now, False
            if message["type"] == "message":
                self._deliver(message["data"])

    def _deliver(self, payload: Any) -> None:
        if isinstance(payload, str):  # a client made with decode_responses=True
            payload = payload.encode()
        if self.skip_own and own_marker(self.origin or process_origin()) in payload:
            self._skipped += 1  # found without decoding: a process skips its own cheaply
            return
        try:
            notice = decode_notice(payload, self.config.namespace)
        except FleetDataError as exc:
            self._undecodable += 1
            get_logger(_log).warning("fleet_notice_undecodable", error=describe(exc))
            return
        if self._stopping.is_set():
            return
        self._notices += 1
        self._callback("on_change", self.on_change, notice)

    def _callback(self, name: str, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None or self._stopping.is_set():
            return
        try:
            callback(*args)
        except Exception as exc:  # user code: contained (a BaseException ends the bridge)
            get_logger(_log).error("fleet_bridge_callback_failed", callback=name,
                                   exc_info=exc)

    @staticmethod
    def _close(pubsub: PubSub) -> None:
        with contextlib.suppress(Exception):  # the connection is already broken
            pubsub.close()
