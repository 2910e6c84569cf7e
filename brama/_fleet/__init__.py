"""Fleet-wide circuits on Redis: the backend's components, and the link that wires them in.

Every process with the same backend URL and namespace shares each connection's circuit; a
healthy call stays local (no Redis on the call path), a transition is one compare-and-set
round trip, and every process hears every transition through one subscription.

- `FleetConfig` (`config`): URL, namespace, timeouts, TTL; `from_env` reads
  `BRAMA_BACKEND` / `BRAMA_NAMESPACE`; makes the redis-py client (extra `brama[redis]`).
- `FleetKey` (`keys`): a connection's two keys, with a Cluster hash tag; the channel; the
  origin of this process.
- `FleetState`, `ChangeNotice` (`codec`): the shared state as JSON, events, notices.
- Lua scripts (`scripts`): transition (compare-and-set + publish), join/read, counters.
- `ServerClock` (`clock`): the server's time, estimated locally.
- `Availability` (`health`): fail fast while Redis is down, probe it in the background.
- `FleetStore` (`store`): join, transition, apply, add_counters, counters, sync_clock.
- `discover`, `last_changes` (`discovery`): every connection with a fleet state in a
  namespace (SCAN, no writes) and who changed each last, for views of the whole fleet such
  as `python -m brama dashboard --backend`.
- `Bridge` (`bridge`): the supervised actor that turns published transitions into callbacks.
- `FleetLink` (`link`, with `Slot` / `Outcome` in `slot` and the `Flusher` in `flusher`): a
  `Brama` system's side, used by its runtime and connection actors (imported only by a
  system that has a `backend`, so it is not re-exported here).

docs/fleet.md explains the design and how the connection actor is meant to use it.
"""

from brama._fleet.bridge import Bridge, BridgeInfo, BridgeStatus
from brama._fleet.clock import ServerClock
from brama._fleet.codec import ChangeNotice, FleetState, decode_state, encode_state
from brama._fleet.config import FleetConfig, from_env
from brama._fleet.discovery import LastChange, discover, last_changes
from brama._fleet.errors import (
    BackendUnavailable,
    ContentionError,
    FleetDataError,
    RedisMissingError,
    describe,
)
from brama._fleet.keys import (
    FleetKey,
    changes_channel,
    fleet_key,
    parse_state_key,
    process_origin,
    state_key_pattern,
)
from brama._fleet.store import Applied, Counters, FleetStore, Result, Snapshot, Stepped

__all__ = [
    "Applied",
    "BackendUnavailable",
    "Bridge",
    "BridgeInfo",
    "BridgeStatus",
    "ChangeNotice",
    "ContentionError",
    "Counters",
    "FleetConfig",
    "FleetDataError",
    "FleetKey",
    "FleetState",
    "FleetStore",
    "LastChange",
    "RedisMissingError",
    "Result",
    "ServerClock",
    "Snapshot",
    "Stepped",
    "changes_channel",
    "decode_state",
    "describe",
    "discover",
    "encode_state",
    "fleet_key",
    "from_env",
    "last_changes",
    "parse_state_key",
    "process_origin",
    "state_key_pattern",
]
