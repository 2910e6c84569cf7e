"""Manual reporting: `register`, `available`, `success` / `failure` around a call, `status`.

The most explicit way to use Brama, with no decorator: ask `available()` before calling the
dependency, and report how the call went. Here the dependency is a fake payment gateway that
fails a few times in a row; the circuit opens, refuses calls, half-opens after its expiry, and
closes again when the trial call succeeds.

Run: python examples/manual_reporting.py
"""

from __future__ import annotations

import time

import brama

API = "payments_api"


class PaymentGateway:
    """A stand-in for an HTTP API: calls 3 to 6 fail, every other call succeeds."""

    def __init__(self) -> None:
        self.calls = 0

    def charge(self, amount: int) -> str:
        self.calls += 1
        if 3 <= self.calls <= 6:
            raise ConnectionError("gateway unreachable")
        return f"charged {amount}"


def pay(gateway: PaymentGateway, amount: int) -> str:
    """Charge through the circuit breaker of API: the pattern this example is about."""
    if not brama.available(API):
        return "refused by the breaker (the gateway is not called)"
    try:
        receipt = gateway.charge(amount)
    except ConnectionError as exc:
        brama.failure(API, reason=repr(exc))
        return f"failed: {exc}"
    brama.success(API)
    return receipt


def show(label: str) -> None:
    s = brama.status(API)
    print(f"    {label:<28} state={s.state.value:<9} failure_count={s.failure_count} "
          f"successes={s.total_successes} failures={s.total_failures} "
          f"rejected={s.rejected_calls}")


def main() -> None:
    status = brama.register(API, max_attempts=3, expiry=0.5, metadata={"team": "billing"})
    print(f"registered {status.identifier!r}: max_attempts={status.max_attempts}, "
          f"expiry={status.expiry}s, state={status.state.value}")

    gateway = PaymentGateway()
    for amount in (10, 20, 30, 40, 50, 60):
        print(f"pay({amount}): {pay(gateway, amount)}")
    show("after six payments")

    print(f"waiting {brama.status(API).expiry}s for the open circuit to half-open...")
    time.sleep(0.8)
    show("after the expiry")

    print(f"pay(70): {pay(gateway, 70)}   <- the trial call (the gateway fails once more)")
    show("re-opened")
    time.sleep(0.8)
    print(f"pay(80): {pay(gateway, 80)}   <- the next trial call succeeds")
    show("closed again")
    print(f"success rate: {brama.status(API).success_rate:.0%}")


if __name__ == "__main__":
    try:
        main()
    finally:
        brama.shutdown()
