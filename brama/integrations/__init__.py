"""Observability integrations: Prometheus (`brama.integrations.prometheus`) and
OpenTelemetry (`brama.integrations.opentelemetry`); the status page is `brama.web`.

Every integration reads the snapshots that connections already publish (the same ones
`Brama.connections()` returns), at scrape or collection time only: nothing is added to the hot
path, so an application pays for metrics when they are read, not on every guarded call.

The submodules import their optional dependency on import and say which extra to install when
it is missing (`pip install 'brama[prometheus]'`, `pip install 'brama[opentelemetry]'`); this
package itself imports nothing optional, so the helpers below are always available.
"""

from __future__ import annotations

from typing import Any

import brama
from brama.errors import BramaError
from brama.types import ConnectionStatus

__all__ = ["check_system", "statuses"]


def check_system(system: Any) -> brama.Brama | None:
    """`system` if it is a `brama.Brama` or None (meaning the default system), else TypeError.

    Integrations take the system when they are set up but resolve None only when they read,
    so they follow the default system across `brama.shutdown()` and a later restart.
    """
    if system is not None and not isinstance(system, brama.Brama):
        raise TypeError(
            f"system must be a brama.Brama or None (the default system), "
            f"got {type(system).__name__}: {system!r}"
        )
    return system


def statuses(system: brama.Brama | None = None) -> list[ConnectionStatus]:
    """The status of every connection of `system` now (None: the default system as it is now).

    An empty list when the system is stopped, so a scrape that races a shutdown reports no
    connections instead of failing. The default system starts on first use, like every
    module-level function of `brama`.
    """
    target = brama.default() if system is None else system
    if not target.running:
        return []
    try:
        return target.connections()
    except BramaError:  # stopped between the check and the read
        if target.running:
            raise
        return []
