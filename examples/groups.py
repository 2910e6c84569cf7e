"""Groups: `brama.register_group`, `group_available`, `group_status` (and `group_failure`).

A feature often needs several dependencies at once: checkout needs the payments API, the
inventory database and the tax service. A group checks them together: `group_available` is
True only when no member's circuit is open (a pure check: it takes no half-open permit), and
`group_status` shows every member. Each member keeps its own circuit and thresholds.

Run: python examples/groups.py
"""

from __future__ import annotations

import brama

MEMBERS = ["payments_api", "inventory_db", "tax_service"]


def show() -> None:
    print(f"  group_available('checkout') = {brama.group_available('checkout')}")
    for name, s in brama.group_status("checkout").items():
        print(f"    {name:<13} {s.state.value:<9} failures={s.failure_count}/{s.max_attempts}")


def main() -> None:
    for name in MEMBERS:
        brama.register(name, max_attempts=3, expiry=30.0)
    brama.register("search_api")  # not in the group: its state does not matter here
    brama.register_group("checkout", MEMBERS)

    print("all healthy:")
    show()

    print("tax_service fails 3 times in a row (and search_api is down):")
    for _ in range(3):
        brama.failure("tax_service", reason="HTTP 500")
    brama.open_circuit("search_api", reason="outage")
    show()
    if not brama.group_available("checkout"):
        print("  -> the shop hides the checkout button until tax_service recovers")

    print("an operator resets tax_service; then one failure reported for the whole group:")
    brama.reset_circuit("tax_service", reason="fixed")
    brama.group_failure("checkout", reason="checkout request timed out")
    show()

    print("a success for the whole group clears the failure counts:")
    brama.group_success("checkout")
    show()
    brama.unregister_group("checkout")


if __name__ == "__main__":
    try:
        main()
    finally:
        brama.shutdown()
