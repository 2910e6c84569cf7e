"""The Lua scripts of the fleet store, their contracts, and how they are run.

Each script is one round trip and atomic on the server; none interprets the circuit (the
state is an opaque JSON text to them): Python steps the state machine, Redis only orders
and stores the results. Every script returns the server's `TIME`, which keeps the
`ServerClock` in step for free. Both keys of a connection share a hash tag, and the channel
travels in ARGV (channels are not keys), so the scripts run unchanged on Redis Cluster.

Versions: a key created by `join` or re-created by `transition` (after a FLUSHALL, an
eviction or its TTL) starts at the server time in microseconds (at least the caller's known
version + 1), then goes up by 1 per transition. So a version never repeats and a re-created
key always continues above every version the fleet saw before it vanished (unless the
server's clock steps back): owners may drop any notice whose version is not above theirs.

`Script.run` uses EVALSHA; on NOSCRIPT (a restarted or flushed script cache) it sends the
body with EVAL, which loads it again, so a restart costs one extra round trip once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from brama._fleet.config import require_redis

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["ADD_COUNTERS", "JOIN", "TRANSITION", "Script"]

_PROLOGUE = """
pcall(redis.replicate_commands)
local now = redis.call('TIME')
"""

TRANSITION_LUA: Final = _PROLOGUE + """
local current = redis.call('HMGET', KEYS[1], 'v', 's')
local status, version
if current[1] then
  if current[1] ~= ARGV[1] then
    return {0, current[1], current[2], now[1], now[2]}
  end
  version = string.format('%d', tonumber(current[1]) + 1)  -- below 2^53: exact
  status = 1
else
  local born = tonumber(now[1]) * 1000000 + tonumber(now[2])
  version = string.format('%d', math.max(tonumber(ARGV[1]) + 1, born))
  status = 2
end
local at = now[1] .. '.' .. string.format('%06d', now[2])
redis.call('HSET', KEYS[1], 'v', version, 's', ARGV[2], 'o', ARGV[6] or '', 't', at,
  'ov', version)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], '{"v":' .. version .. ',"t":' .. at .. ',' .. ARGV[5] ..
  ',"s":' .. ARGV[2] .. '}')
return {status, version, false, now[1], now[2]}
"""
"""Compare-and-set of one connection's state.

KEYS: state hash, counters hash. ARGV: expected version (decimal; "0" = none known), new
state JSON, TTL in ms, channel, notice header (`"k":..,"o":..,"e":..`), origin of the change.
Besides `v` and `s` the state hash keeps the last change's origin `o`, its server time `t`
and `ov`, the version they belong to (a Brama without this field leaves `ov` behind `v`).
Reply `{status, version, state, time_s, time_us}`:
- status 1: written; `version` is the new version (expected + 1), `state` is nil;
- status 2: the key was missing: created from the new state at a fresh version;
- status 0: version mismatch, nothing written: `version` and `state` are the current ones.
On 1 and 2 both keys' TTLs are refreshed and `{"v","t","k","o","e","s"}` is published."""

JOIN_LUA: Final = _PROLOGUE + """
local current = redis.call('HMGET', KEYS[1], 'v', 's')
local counters = redis.call('HGETALL', KEYS[2])
if current[1] then
  if ARGV[3] == '1' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
  return {0, current[1], current[2], now[1], now[2], counters}
end
if ARGV[3] ~= '1' then
  return {0, false, false, now[1], now[2], counters}
end
local version = string.format('%d', tonumber(now[1]) * 1000000 + tonumber(now[2]))
redis.call('HSET', KEYS[1], 'v', version, 's', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {1, version, false, now[1], now[2], counters}
"""
"""Join (ARGV[3] = "1") or read (ARGV[3] = "0") one connection's state; never overwrites.

KEYS: state hash, counters hash. ARGV: the caller's state JSON, TTL in ms, "1" to join.
Reply `{status, version, state, time_s, time_us, counters}` (counters as a flat
field/value list):
- status 0, version set: the existing state (a join refreshes both TTLs);
- status 1: joining, the key was missing and was created from the caller's state (SET NX);
- status 0, version nil: reading, and there is no state."""

ADD_COUNTERS_LUA: Final = _PROLOGUE + """
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'last_success' then
    local latest = tonumber(redis.call('HGET', KEYS[1], 'last_success') or '-1')
    if tonumber(ARGV[i + 1]) > latest then
      redis.call('HSET', KEYS[1], 'last_success', ARGV[i + 1])
    end
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if #ARGV > 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return {redis.call('HGETALL', KEYS[1]), now[1], now[2]}
"""
"""Add local counts to the fleet's counters of one connection.

KEYS: counters hash, state hash. ARGV: TTL in ms, then field, increment pairs (an empty list
only reads); the field `last_success` is not summed but kept as the latest time given.
Adding refreshes both TTLs (a connection still counting is not abandoned); a read refreshes
nothing, so a connection nobody uses expires even while processes (or a dashboard) watch it.
Reply `{counters (flat field/value list), time_s, time_us}`: the totals after the add."""


class Script:
    """A Lua script run by SHA, loaded again by EVAL when the server does not know it."""

    __slots__ = ("body", "name", "sha")

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:12]})"

    def run(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA; EVAL once on NOSCRIPT. Raises what redis-py raises."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except require_redis().exceptions.NoScriptError:
            return client.eval(self.body, len(keys), *keys, *args)

    def run_many(self, client: Redis,
                 calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """EVALSHA for each (keys, args), pipelined: one round trip for all of them (two if
        the server did not know the script: only the calls refused with NOSCRIPT, which ran
        nothing, are sent again after loading it). The replies in order; a call the server
        refused has its exception in its place. Raises what redis-py raises for the
        connection."""
        noscript = require_redis().exceptions.NoScriptError
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipeline = client.pipeline(transaction=False)
            for index in todo:
                keys, args = calls[index]
                pipeline.evalsha(self.sha, len(keys), *keys, *args)
            answers = pipeline.execute(raise_on_error=False)
            missing = []
            for index, answer in zip(todo, answers, strict=True):
                replies[index] = answer
                if isinstance(answer, noscript):
                    missing.append(index)
            if not missing or attempt:
                break
            client.script_load(self.body)
            todo = missing
        return replies


TRANSITION: Final = Script("transition", TRANSITION_LUA)
JOIN: Final = Script("join", JOIN_LUA)
ADD_COUNTERS: Final = Script("add_counters", ADD_COUNTERS_LUA)
