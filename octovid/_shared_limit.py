"""One key's rate budget shared by many processes through Redis: the wire to Redis, only.

The pacing is the limiter's GCRA moved onto Redis: one hash per key holds the theoretical
arrival time (TAT), the shared pause and the adaptive rate's last change; a Lua script, run
atomically on the Redis server and on its clock (``TIME``), reserves the next slot for a caller
and answers how long to wait for it. A grant costs one round trip (``EVALSHA``), never a loop
of polls: a caller that must wait has its slot already, it only sleeps until it is due.

Names in Redis derive from a hash of the API key (``octovid:budget:{<32 hex>}:...``), never the
key itself. The braces are a cluster hash tag, so the two keys of one budget live on one shard.

Nothing here decides: the :class:`~octovid._limiter.Limiter` owns the lanes, the concurrency
bound, the 429 judge and the fallback when Redis is lost. This module only says what Redis
answered, or raises :class:`SharedDown` when it did not.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from ._errors import ConfigError

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

__all__ = ["SCHEMES", "Reply", "SharedBudget", "SharedDown", "budget_name", "redacted"]

SCHEMES = ("redis", "rediss", "unix")
_TIMEOUT = 1.0  # seconds for one Redis command or connection: a lost Redis is noticed fast
_SEEN = 30.0  # seconds a process counts as sharing the key after its last grant
_TTL = 300.0  # seconds an idle budget stays in Redis (its adaptive rate included)
_SENT_TAU = 3.0  # seconds: the memory of the moving average of the grants of every process

# The adaptive rate grown back from its last change, as _limiter.Limiter._current computes it.
# Rates are requests per second, times microseconds of the server's clock.
_GROWN = """
local function grown(start, at, met, configured, now)
  if start >= configured then return configured end
  local elapsed = (now - at) / 1e6
  local near = math.min(configured, {near} * met)
  local fast = math.max(0, (near - start) / ({fast} * configured))
  local rate
  if elapsed <= fast then
    rate = start + {fast} * configured * elapsed
  else
    rate = math.max(start, near) + {slow} * configured * (elapsed - fast)
  end
  return math.min(rate, configured)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state, members = KEYS[1], KEYS[2]
"""

# ARGV: configured rate (requests/s), burst, stretch of the interval, member id.
# Returns: delay (us), members seen, epoch, who made the last change, cut rate, cut age (us),
# met, pause left (us), grants per second of every process.
_RESERVE = """
local configured, burst, stretch = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', state, 'tat', 'pause', 'cut_rate', 'cut_at', 'met', 'sent',
                     'sent_at', 'epoch', 'by')
local tat, pause = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local rate, cut = configured, tonumber(s[3])
if cut then rate = grown(cut, tonumber(s[4]), tonumber(s[5]), configured, now) end
local interval = 1e6 * stretch / rate
local at = math.max(now, pause, tat - (burst - 1) * interval)
tat = math.max(tat, at) + interval
local sent, sent_at = tonumber(s[6]) or 0, tonumber(s[7]) or at
if at > sent_at then
  sent = sent * math.exp((sent_at - at) / ({tau} * 1e6))
  sent_at = at
end
sent = sent + 1 / {tau}
redis.call('HSET', state, 'tat', tat, 'sent', sent, 'sent_at', sent_at)
redis.call('PEXPIRE', state, {ttl})
redis.call('ZADD', members, now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', members, '-inf', now - {seen})
redis.call('PEXPIRE', members, {ttl})
local age = -1
if cut then age = now - tonumber(s[4]) end
return {{tostring(at - now), redis.call('ZCARD', members), tonumber(s[8]) or 0, s[9] or '',
        tostring(cut or -1), tostring(age), s[5] or '', tostring(math.max(0, pause - now)),
        tostring(sent)}}
"""

# ARGV: configured rate, the new rate, the rate congestion was met at, '1' for a cut (applied
# only if below the shared rate now: another process may have cut deeper), member id.
_RATE = """
local configured, new, met = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', state, 'cut_rate', 'cut_at', 'met')
local rate = configured
if s[1] then rate = grown(tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), configured, now) end
if ARGV[4] == '1' and new >= rate then
  return {{redis.call('HINCRBY', state, 'epoch', 0), 0}}
end
redis.call('HSET', state, 'cut_rate', new, 'cut_at', now, 'met', met, 'by', ARGV[5])
redis.call('PEXPIRE', state, {ttl})
return {{redis.call('HINCRBY', state, 'epoch', 1), 1}}
"""

# ARGV: seconds to pause, burst, interval (us), member id. After the pause one request goes,
# then the pace resumes: no burst into a limit.
_PAUSE = """
local s = redis.call('HMGET', state, 'tat', 'pause')
local pause = math.max(tonumber(s[2]) or 0, now + tonumber(ARGV[1]) * 1e6)
local tat = math.max(tonumber(s[1]) or 0, pause + (tonumber(ARGV[2]) - 1) * tonumber(ARGV[3]))
redis.call('HSET', state, 'pause', pause, 'tat', tat, 'by', ARGV[4])
redis.call('PEXPIRE', state, {ttl})
return {{redis.call('HINCRBY', state, 'epoch', 1), 1}}
"""


class SharedDown(Exception):
    """Redis did not answer (refused, timed out, or broke the connection)."""


def redacted(url: str) -> str:
    """The URL without its user name and password, fit for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()


def budget_name(api_key: str) -> str:
    """The stem of the budget's names in Redis: a hash of the key, never the key itself."""
    digest = hashlib.sha256(b"octovid rate budget\0" + api_key.encode()).hexdigest()[:32]
    return f"octovid:budget:{{{digest}}}"


@attrs.frozen
class Reply:
    """What Redis answered to one reservation.

    Attributes:
        delay: Seconds until the reserved slot is due (0: now).
        members: Processes that took a slot of this budget in the last 30 s, this one included.
        epoch: Counts the changes of the shared pause and rate; ``by`` made the last one.
        cut_rate: The shared rate right after its last change (None: never changed).
        cut_age: Seconds since that change.
        met: The rate congestion was last met at.
        pause_left: Seconds of the shared pause still to run.
        sending: Slots granted a second, to every process (a moving average of 3 s).
    """

    delay: float
    members: int
    epoch: int
    by: str
    cut_rate: float | None
    cut_age: float
    met: float
    pause_left: float
    sending: float


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedBudget:
    """The Redis side of one key's shared budget; one per Limiter, bound to a loop on first use."""

    __slots__ = (
        "_client", "_growth", "_name", "_pause", "_rate", "_reserve", "_started", "member", "url",
    )

    def __init__(self, url: str, api_key: str, growth: tuple[float, float, float]) -> None:
        self.url = url
        self._growth = growth  # the adaptive rate's growth: near, fast, slow (see _limiter)
        self._name = budget_name(api_key)
        #: this process's name among the budget's members (random: nothing about the host)
        self.member = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._client: aioredis.Redis | None = None
        self._reserve: AsyncScript | None = None
        self._rate: AsyncScript | None = None
        self._pause: AsyncScript | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"<SharedBudget {redacted(self.url)} {self._name}>"

    @property
    def keys(self) -> list[str]:
        """The budget's two names in Redis: its state (a hash) and its members (a sorted set)."""
        return [f"{self._name}:state", f"{self._name}:members"]

    def _connect(self) -> aioredis.Redis:
        if self._client is None:
            try:  # an optional extra: imported when a budget is shared
                import redis.asyncio as aioredis  # noqa: PLC0415
                from redis.asyncio.retry import Retry  # noqa: PLC0415
                from redis.backoff import NoBackoff  # noqa: PLC0415
            except ImportError:  # pragma: no cover - the dev extra installs it
                raise ConfigError(
                    "RateLimit(redis=...) needs the redis package: pip install 'octovid[redis]'"
                ) from None
            client = aioredis.Redis.from_url(
                self.url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # a failed command is the limiter's to handle
            )
            # Nothing is retried here: a reservation resent after a timeout could take two.
            near, fast, slow = self._growth
            values = {"near": near, "fast": fast, "slow": slow, "tau": _SENT_TAU,
                      "ttl": int(_TTL * 1000), "seen": int(_SEEN * 1e6)}
            head = _GROWN.format(**values)
            self._reserve = client.register_script(head + _RESERVE.format(**values))
            self._rate = client.register_script(head + _RATE.format(**values))
            self._pause = client.register_script(head + _PAUSE.format(**values))
            self._client = client
        return self._client

    async def start(self) -> None:
        """Reach Redis and load the scripts, so that the first grant is one round trip.

        Raises:
            ConfigError: Redis cannot be reached at the URL (named without its credentials).
        """
        if self._started:
            return
        client = self._connect()
        try:
            await client.ping()
            for script in (self._reserve, self._rate, self._pause):
                assert script is not None
                await client.script_load(script.script)
        except Exception as exc:
            raise ConfigError(
                f"cannot reach Redis at {redacted(self.url)} for the shared rate budget "
                f"({_reason(exc)}): start it (e.g. redis-server --port 6379 --save '') or "
                "fix RateLimit(redis=...) / OCTOVID_REDIS_URL"
            ) from None
        self._started = True

    async def reserve(self, rate: float, burst: int, stretch: float) -> Reply:
        """Reserve the next slot of the budget at ``rate`` (configured, requests per second).

        Raises:
            SharedDown: Redis did not answer.
        """
        assert self._reserve is not None, "reserve() before start()"
        raw = await self._call(self._reserve, rate, burst, stretch, self.member)
        cut = float(raw[4])
        return Reply(
            delay=max(0.0, float(raw[0]) / 1e6), members=max(1, int(raw[1])),
            epoch=int(raw[2]), by=_text(raw[3]), cut_rate=None if cut < 0 else cut,
            cut_age=max(0.0, float(raw[5]) / 1e6), met=float(raw[6] or 0.0),
            pause_left=float(raw[7]) / 1e6, sending=float(raw[8]),
        )

    async def set_rate(self, configured: float, rate: float, met: float, *, cut: bool) -> int:
        """Publish a change of the adaptive rate; returns the epoch it made (or found)."""
        assert self._rate is not None
        raw = await self._call(self._rate, configured, rate, met, "1" if cut else "0",
                               self.member)
        return int(raw[0])

    async def pause(self, seconds: float, burst: int, interval: float) -> int:
        """Publish a pause of every process's requests; returns the epoch it made."""
        assert self._pause is not None
        raw = await self._call(self._pause, seconds, burst, interval * 1e6, self.member)
        return int(raw[0])

    async def ping(self) -> bool:
        """Whether Redis answers now."""
        try:
            await self._connect().ping()
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Close the connections to Redis."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _call(self, script: AsyncScript, *args: float | int | str) -> list[Any]:
        try:
            result = await script(keys=self.keys, args=list(args))
        except Exception as exc:  # redis errors, OSError, timeouts: all mean "not now"
            raise SharedDown(_reason(exc)) from exc
        return list(result)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
