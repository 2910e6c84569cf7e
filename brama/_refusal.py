"""What a refused call captured, and the message that explains the refusal.

Built on the hot path of a refusal, so it only keeps references: the message ("open: retry in
27.5 s; last failure: ...") and the `ConnectionStatus` are built when first read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from brama._cell import Cell, to_status
from brama._circuit import HALF_OPEN, OPEN, Circuit
from brama._options import Options
from brama._validation import in_scope
from brama.errors import CircuitOpenError
from brama.otp import safe_text
from brama.types import CircuitState, ConnectionStatus

__all__ = ["Refusal", "refuse"]


class Refusal(NamedTuple):
    """A refused call: the connection, its circuit as seen, and when (wall clock).

    A named tuple: it is built on every refusal, and a tuple is the cheapest record."""

    cell: Cell
    circuit: Circuit
    options_for: Callable[[Circuit], Options]
    wall: float

    @property
    def state(self) -> CircuitState:
        """The state that refused the call."""
        return self.circuit.state

    def message(self) -> str:
        """Why the call was refused and when calls will be let through again."""
        cell, circuit = self.cell, self.circuit
        text = (f"circuit of connection {cell.identifier!r}{in_scope(cell.scope)} is "
                f"{circuit.state.value}: call rejected")
        if circuit.state is OPEN:
            if circuit.open_deadline is None:
                text += ("; its expiry is disabled: it stays open until a manual action "
                         "(close_circuit, reset_circuit, reset_expiry or set_expiry)")
            elif circuit.opened_at is not None and circuit.current_expiry is not None:
                remaining = max(circuit.opened_at + circuit.current_expiry - self.wall, 0.0)
                text += f"; retry in {remaining:.1f} s"
        elif circuit.state is HALF_OPEN:
            text += (f"; trial calls in progress ({len(circuit.permits)} of "
                     f"{self.options_for(circuit).half_open_max_calls} permits taken)")
        if circuit.last_failure_reason is not None:
            text += f"; last failure: {safe_text(circuit.last_failure_reason)}"
        return text

    def status(self) -> ConnectionStatus:
        """The connection's status with the circuit as it was when the call was refused."""
        return to_status(self.cell, self.circuit, self.options_for(self.circuit))


def refuse(cell: Cell, options_for: Callable[[Circuit], Options], wall: float) -> CircuitOpenError:
    """The `CircuitOpenError` for a call refused by `cell` now."""
    return CircuitOpenError.refused(Refusal(cell, cell.circuit, options_for, wall))
