"""A pykka actor that raises alerts: `brama.subscribe(actor=ref, events=[...])`.

Brama tells every event to the subscribed actor with `tell`, so the actor handles them one at
a time in its own thread, in the order they happened, and never slows the circuits down. This
one pages on `circuit_opened` and resolves the page on `circuit_closed`, with how long the
dependency was out. Once the actor is stopped, the bus drops its subscription.

Run: python examples/alerting_actor.py
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

import brama
from brama import Event, EventType


class AlertingActor(pykka.ThreadingActor):
    """Receives Brama events as messages and turns openings and closings into alerts."""

    def __init__(self, done: threading.Event, expected: int) -> None:
        super().__init__()
        self.open_since: dict[str, float] = {}
        self.alerts: list[str] = []
        self.done = done
        self.expected = expected

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Event):
            self.handle(message)
        elif message == "alerts":
            return list(self.alerts)
        return None

    def handle(self, event: Event) -> None:
        name = event.connection
        if event.event is EventType.CIRCUIT_OPENED:
            self.open_since[name] = event.timestamp
            self.alert(f"PAGE     {name} is down: circuit opened ({event.data['reason']}, "
                       f"{event.data['failure_count']} consecutive failures)")
        elif event.event is EventType.CIRCUIT_CLOSED:
            down_for = event.timestamp - self.open_since.pop(name, event.timestamp)
            self.alert(f"RESOLVED {name} is back after {down_for:.1f}s "
                       f"({event.data['reason']})")

    def alert(self, text: str) -> None:
        print(f"  [alerting actor] {text}", flush=True)
        self.alerts.append(text)
        if len(self.alerts) >= self.expected:
            self.done.set()


def main() -> None:
    done = threading.Event()
    alerting = AlertingActor.start(done, expected=4)
    try:
        with brama.Brama(max_attempts=3, expiry=0.3) as system:
            system.subscribe(actor=alerting, events=["circuit_opened", "circuit_closed"])
            system.register("search_api")
            system.register("email_api")

            print("search_api fails 3 times; email_api fails once and recovers")
            for _ in range(3):
                system.failure("search_api", reason="HTTP 502")
            system.failure("email_api", reason="SMTP timeout")
            system.success("email_api")

            print("an operator forces email_api open for maintenance")
            system.open_circuit("email_api", reason="maintenance window")
            time.sleep(0.4)  # both circuits half-open after their 0.3 s expiry
            print("search_api's trial call succeeds; the operator closes email_api")
            system.success("search_api")
            system.close_circuit("email_api", reason="maintenance over")

            if not done.wait(5):
                raise SystemExit("the alerting actor did not see all events")
            alerts: list[str] = alerting.ask("alerts", block=True)
            print(f"{len(alerts)} alerts raised")
    finally:
        alerting.stop()  # a pykka actor's thread would keep the interpreter alive


if __name__ == "__main__":
    main()
