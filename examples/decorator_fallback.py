"""`@brama.circuit_breaker` with a `fallback` and an `error_handler`.

`fetch_forecast` talks to a (simulated) weather API that, once it is overloaded, answers with
an error document instead of raising. The `error_handler` reads each return value and tells
the breaker whether it was a success or a failure (with a reason). Once the circuit is open
the function is not called at all: the `fallback` answers instead, with the last good
forecast. `ignore_exceptions` lists exceptions that say nothing about the API's health.

Run: python examples/decorator_fallback.py
"""

from __future__ import annotations

import time
from typing import Any

import brama

API = "weather_api"

healthy = True  # flipped by main() to simulate an outage
last_good: dict[str, dict[str, Any]] = {}


def classify(response: dict[str, Any]) -> str | tuple[str, str]:
    """The error_handler: an error document is a failure of the API, anything else a success."""
    if "error" in response:
        return ("failure", response["error"])
    return "success"


def cached_forecast(city: str) -> dict[str, Any]:
    """The fallback: called with the same arguments as the decorated function."""
    return {**last_good.get(city, {"city": city, "temp_c": None}), "stale": True}


@brama.circuit_breaker(API, error_handler=classify, fallback=cached_forecast,
                       ignore_exceptions=(ValueError,))
def fetch_forecast(city: str) -> dict[str, Any]:
    """Ask the weather API (simulated) for the forecast of `city`."""
    if not city:
        raise ValueError("city must not be empty")  # our bug, not the API's: ignored
    if not healthy:
        return {"error": "503 overloaded"}
    forecast = {"city": city, "temp_c": 21}
    last_good[city] = forecast
    return forecast


def show(call: str, result: Any) -> None:
    s = brama.status(API)
    print(f"{call:<24} -> {result!s:<52} [{s.state.value}, failures={s.failure_count}]")


def main() -> None:
    global healthy
    brama.register(API, max_attempts=3, expiry=0.5)

    show("fetch_forecast('Oslo')", fetch_forecast("Oslo"))
    try:
        fetch_forecast("")
    except ValueError as exc:
        show("fetch_forecast('')", f"ValueError: {exc} (not counted)")

    healthy = False
    print("-- the API starts answering with errors")
    for _ in range(3):
        show("fetch_forecast('Oslo')", fetch_forecast("Oslo"))
    print("-- the circuit is open: the fallback answers, the API is not called")
    show("fetch_forecast('Oslo')", fetch_forecast("Oslo"))
    show("fetch_forecast('Rome')", fetch_forecast("Rome"))

    healthy = True
    print("-- the API recovers; after the expiry one trial call goes through")
    time.sleep(0.8)
    show("fetch_forecast('Oslo')", fetch_forecast("Oslo"))
    s = brama.status(API)
    print(f"totals: {s.total_successes} successes, {s.total_failures} failures, "
          f"{s.rejected_calls} calls answered by the fallback")


if __name__ == "__main__":
    try:
        main()
    finally:
        brama.shutdown()
