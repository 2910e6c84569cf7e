"""asyncio: `@brama.circuit_breaker` on an `async def`, and `async with brama.guard(...)`.

The decorator wraps coroutine functions as it wraps plain ones: the breaker is consulted
before the coroutine starts and the outcome is reported when it finishes. `guard` does the
same for a block of code. Concurrent calls (a request every 20 ms, gathered with
`asyncio.gather`) share one circuit: once it opens, the next calls are rejected at once with
`CircuitOpenError` instead of waiting for the failing service's time-out.

Run: python examples/asyncio_app.py
"""

from __future__ import annotations

import asyncio
import time

import brama
from brama import CircuitOpenError


class InventoryService:
    """A simulated remote service: answers in 10 ms, or times out after 50 ms when down."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def stock(self, item: str) -> int:
        self.calls += 1
        if self.down:
            await asyncio.sleep(0.05)
            raise TimeoutError(f"inventory did not answer for {item!r}")
        await asyncio.sleep(0.01)
        return len(item)


inventory = InventoryService()


@brama.circuit_breaker("inventory")
async def get_stock(item: str) -> int:
    return await inventory.stock(item)


async def recommendations(user: str) -> list[str]:
    """A block guarded by `async with`: success if it completes, failure if it raises."""
    async with brama.guard("recommendations"):
        await asyncio.sleep(0.01)
        return [f"book for {user}", f"lamp for {user}"]


async def get_stock_after(delay: float, item: str) -> int:
    await asyncio.sleep(delay)
    return await get_stock(item)


async def stock_report(items: list[str]) -> list[str]:
    """Ask for every item, one request every 20 ms; show what happened to each call."""
    results = await asyncio.gather(
        *(get_stock_after(0.02 * n, item) for n, item in enumerate(items)),
        return_exceptions=True,
    )
    lines = []
    for item, result in zip(items, results, strict=True):
        if isinstance(result, CircuitOpenError):
            lines.append(f"{item}: rejected ({result.status.state.value} circuit)")
        elif isinstance(result, BaseException):
            lines.append(f"{item}: failed ({type(result).__name__})")
        else:
            lines.append(f"{item}: {result} in stock")
    return lines


async def main() -> None:
    brama.register("inventory", max_attempts=3, expiry=0.3)
    items = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu"]

    print("healthy:", await stock_report(items[:3]))
    print("guarded block:", await recommendations("ada"))

    inventory.down = True
    started, calls = time.monotonic(), inventory.calls
    report = await stock_report(items)
    print(f"down ({time.monotonic() - started:.2f}s, "
          f"{inventory.calls - calls} calls reached the service):")
    for line in report:
        print("   ", line)
    report = await stock_report(items)
    print("still open, nothing reaches the service:", report[:2], "...")

    inventory.down = False
    await asyncio.sleep(0.5)  # the circuit half-opens after its 0.3 s expiry
    print("recovered:", await stock_report(items[:1]), "->",
          brama.status("inventory").state.value)
    print("then:", await stock_report(items[1:3]))
    for name in ("inventory", "recommendations"):
        s = brama.status(name)
        print(f"{name:<16} state={s.state.value:<7} successes={s.total_successes} "
              f"failures={s.total_failures} rejected={s.rejected_calls}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        brama.shutdown()
