"""The shared rate limiter: every request sent with one key passes through one of these.

Pacing is a GCRA (the compact form of a token bucket): one "theoretical arrival time" advanced by
``per / rate`` for each request, ``burst`` requests allowed at once. A grant that comes a little
late (timers fire up to a millisecond late) keeps its place on the grid, so the long-run rate is
the configured one; a window guard, the gateway's own rule, makes sure that catching up never
puts more than ``rate`` requests in any ``per`` seconds (with a little slack for the jitter of
the network between us and the gateway). The guard counts from when each request went out
(``Slot.sent``), not from when it was allowed to: a request held up by a new connection's
handshake must not let the ones after it bunch up behind it at the gateway.

**A 429 is evidence, not a verdict.** The gateway answers 429 for two reasons: the key's budget
is spent (slow down: every request of the key), or one upstream is saturated or a concurrency
gate is hit (a few percent of requests, whatever the rate: slowing down does not help). One 429
among many successes is its own request's business: that request retries after its own backoff
(``_retry``). The key reacts only to *congestion*, judged as TCP learned to judge loss: by the
fraction of 429s among recent answers, not by single ones.

* Evidence: the answers to the last 100 requests sent since the last reaction (30 s at most).
  Congestion is at least 5 429s there making at least 10% of them (``_THRESHOLD``) above the
  noise floor (below). 10% sits well clear of the 3-5% of sporadic upstream 429s: with 100
  answers, 5% noise reaches 10% about once in 40 windows, and a false alarm costs little
  (the cut is to what got through, see below, and is undone).
* One reaction per storm: answers to requests sent before a reaction are not evidence (they
  were on the wire before it), and no reaction follows another within 2 s. A storm (half the
  answers 429) also pauses every request, 1 s, doubling for storms in a row, at most 60 s.
* Adaptive: a reaction cuts the rate to what got through (the send rate times the fraction
  accepted, between half and 90% of it), so a client sent at twice a server's real limit lands
  on it in one step. It grows back in absolute steps: 10% of the configured rate a second up to
  90% of the rate it last met congestion at, 2% a second beyond (probing), never above the
  configured rate and never below 1/20 of it.
* Noise is learned: if a cut did not lower the fraction of 429s (it stays at 70% of what it was
  or more, over the next 20 answers), slowing down was no help. The cut is undone and that
  fraction becomes the noise floor, forgotten by half every minute.
* The server saying so for the key (``Retry-After`` on a 429 that is not about one upstream)
  pauses every request for that long (at most 300 s); this needs no statistics.

Also: a bound on requests in flight (``max_concurrency``), and two FIFO lanes, creates and
queries, served in alternation, so that a batch of creates does not starve the polling of
running tasks, nor the reverse. Waiters are futures in deques, woken by one timer, as
aiolimiter does. A waiter cancelled before its turn consumes nothing. The loop is bound lazily,
on first use; time is ``loop.time()``.

**Shared on Redis** (``RateLimit(redis=URL)``): every process using the key takes its slots
from one GCRA on Redis (``_shared_limit``), one reservation at a time: the reserved slot goes to
whichever waiter heads the lanes when it is due, so the lanes, the concurrency bound and the
judge stay local. The judge reads the send rate of every process from Redis, and what it
decides (a pause, a cut, a cut undone) is published there, so that every process slows down;
a process that learns of another's decision takes the shared rate and starts its evidence
afresh (one reaction per storm, whoever saw it). When Redis stops answering, the process paces
itself alone at the shared rate divided by the processes seen sharing the key lately, says so
in the log once, and probes Redis with a growing backoff to rejoin the shared budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import math
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import ConfigError
from ._shared_limit import SCHEMES, Reply, SharedBudget, SharedDown, redacted

if TYPE_CHECKING:
    from ._retry import Throttle

__all__ = ["Lane", "Limiter", "RateLimit", "Slot"]

log = logging.getLogger("octovid")

_EARLY = 1e-6  # timers may fire this much early
_CLOSED = "this octovid.Client is closed"
# The window guard's slack: requests reach the gateway with some jitter, so a window of grants
# exactly `per` seconds long may arrive a little shorter. 2.5% of the window, at most 0.25 s.
_SLACK, _SLACK_MAX = 0.025, 0.25

# The congestion judge; see the module docstring for why these values.
# Evidence: the answers to requests sent in the last 3 s, or the last 50 answers if that is more,
# none older than 30 s.
_SPAN, _SAMPLES, _HORIZON = 3.0, 50, 30.0
_MIN_429, _THRESHOLD = 5, 0.10  # congestion: this many 429s, this fraction above the noise
_STORM = 0.5  # a fraction of 429s that pauses every request
_RECENT, _SURGE = 10, 0.8  # a storm shows first as most of the last 10 answers refused
_HOLD = 2.0  # seconds between two reactions at least
_PAUSE, _PAUSE_MAX, _PAUSE_RESET = 1.0, 60.0, 30.0  # storm pauses: first, longest, streak end
_CUT_MIN, _CUT_MAX = 0.5, 0.9  # a cut keeps between these fractions of the send rate
_FAST, _SLOW = 0.10, 0.01  # growth per second, as fractions of the configured rate
_NEAR = 0.9  # fast growth up to this fraction of what got through when congestion was met
_UNDER = 0.9  # a cut aims this far below what got through
_GOODPUT_TAU = 10.0  # seconds: the memory of the moving average of what gets through
_FLOOR = 1 / 20  # the adaptive rate never goes below this fraction of the configured one
_VERIFY_MIN = 10  # answers that judge a cut at least (all 50, unless 30 s have passed)
_WORSE = 1.2  # a cut was too shallow if it left more than this ratio of 429s after/before
_NOISE_HALF_LIFE = 60.0  # seconds for the learned noise floor to halve
_PROBE_FIRST, _PROBE_MAX = 0.25, 1.0  # seconds between probes of a lost Redis: first, longest
_GRACE = 1.5 * _PROBE_MAX  # seconds after rejoining the shared budget that the share binds too
_STALE = 0.01  # seconds a reserved slot may go unused past its time and still be used


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


def _at_least_one(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, not {value!r}")


def _redis_url(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"redis must be a URL string or None, not {type(value).__name__}")
    shown = redacted(value)
    try:
        scheme, _sep, rest = value.partition("://")
        valid = scheme in SCHEMES and bool(rest.strip("/")) and value.isprintable()
    except ValueError:  # pragma: no cover - partition does not raise
        valid = False
    if not valid:
        raise ValueError(
            f"redis must be a redis://, rediss:// or unix:// URL (e.g. redis://localhost:6379/0), "
            f"not {shown!r}"
        )


@attrs.frozen
class RateLimit:
    """At most ``rate`` requests per ``per`` seconds, ``burst`` of them at once.

    With ``adaptive=True`` the client lowers its rate when the gateway's 429s show congestion
    (frequent 429s, not the sporadic ones of a saturated upstream) and raises it back towards
    ``rate`` while they do not, so a client that does not know the key's real limit settles
    near it.

    With ``redis="redis://host:6379/0"`` every RateLimit given that URL and used with the same
    API key shares one budget, across processes and machines: the pacing, the 429 pause and
    the adaptive rate live on that Redis server (under a hash of the key, never the key).
    """

    rate: float = attrs.field(validator=_positive)
    per: float = attrs.field(default=1.0, validator=_positive)
    burst: int = attrs.field(default=1, validator=_at_least_one)
    adaptive: bool = True
    redis: str | None = attrs.field(
        default=None, validator=_redis_url,
        repr=lambda url: "None" if url is None else repr(redacted(url)),
    )

    @property
    def interval(self) -> float:
        """Seconds between two requests at the configured rate."""
        return self.per / self.rate


class Lane(enum.IntEnum):
    """The two queues into one budget."""

    CREATE = 0
    QUERY = 1


_OTHER = {Lane.CREATE: Lane.QUERY, Lane.QUERY: Lane.CREATE}  # Lane(1 - lane), without a call


class Slot:
    """The right to send one request now. Release it when the answer has arrived."""

    __slots__ = ("_error", "_limiter", "at", "sent_at", "waited")

    def __init__(
        self, limiter: Limiter | None, at: float, waited: float,
        error: ConfigError | None = None,
    ) -> None:
        self._limiter = limiter
        self._error = error  # the limiter cannot pace this request: sending() raises it
        self.at = at  #: the loop time the slot was granted
        #: the loop time the request went out, as far as we know; None while it is going out
        self.sent_at: float | None = at
        self.waited = waited  #: seconds spent waiting for it

    def sending(self) -> None:
        """Record that the request is on its way out, until ``sent`` (or release) says when.

        The window guard counts from when requests went out: a request that spends 100 ms in a
        TLS handshake reaches the gateway 100 ms late, and those after it must not catch up.

        Raises:
            ConfigError: The shared budget's Redis could not be reached at start: nothing may
                be sent (a slot of a query lane carries that error rather than raising it in a
                scheduler's loop).
        """
        if self._error is not None:
            raise self._error
        if self._limiter is not None:
            self.sent_at = None

    def sent(self) -> None:
        """Record that the request's headers are on the wire now."""
        if self._limiter is not None:
            self._limiter._sent(self)

    def release(self) -> None:
        """Free the slot's place among the requests in flight; idempotent."""
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            if self.sent_at is None:  # it went out before its answer came, at the latest
                self.sent_at = limiter._now()
            limiter._release()

    def refund(self) -> None:
        """Give the slot back unused: nothing was sent, so it costs nothing."""
        if self._limiter is not None:
            self._limiter._refund(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class _Judge:
    """Tells congestion from noise in the answers of one key; see the module docstring."""

    __slots__ = (
        "accepted", "accepted_at", "before", "count_429", "noise", "noise_at", "reacted_at",
        "samples", "sending_before", "storms", "undo_rate",
    )

    def __init__(self) -> None:
        self.samples: deque[tuple[float, bool]] = deque()  # (sent at, was a 429), oldest first
        self.count_429 = 0
        self.reacted_at = -math.inf  # loop time of the last reaction
        self.before = 0.0  # the recent 429 fraction that caused the last cut; 0: none to judge
        self.undo_rate = 0.0  # the rate before the last cut
        self.sending_before = 0.0  # the send rate measured before it
        self.noise = 0.0  # the learned fraction of 429s that slowing down does not remove
        self.noise_at = 0.0
        self.storms = 0  # storms in a row, for the pause
        self.accepted = 0.0  # answers that were not 429s, per second: a moving average
        self.accepted_at = 0.0

    def delivered(self, now: float) -> None:
        """Count an answer that was not a 429 in the moving average of what gets through."""
        self.accepted = self.goodput(now) + 1 / _GOODPUT_TAU
        self.accepted_at = now

    def goodput(self, now: float) -> float:
        """Answers that were not 429s, per second, averaged over about ten seconds."""
        return self.accepted * math.exp((self.accepted_at - now) / _GOODPUT_TAU)

    def add(self, sent_at: float, throttled: bool, now: float) -> None:
        samples = self.samples
        samples.append((sent_at, throttled))
        self.count_429 += throttled
        while samples[0][0] < now - _HORIZON or (
            len(samples) > _SAMPLES and samples[0][0] < now - _SPAN
        ):
            self.count_429 -= samples.popleft()[1]

    @property
    def fraction(self) -> float:
        """The fraction of 429s in the evidence."""
        return self.count_429 / len(self.samples) if self.samples else 0.0

    @property
    def recent(self) -> float:
        """The fraction of 429s among the last few answers: how things stand right now."""
        last = list(itertools.islice(reversed(self.samples), _RECENT))
        return sum(throttled for _, throttled in last) / len(last) if last else 0.0

    def sending(self, default: float) -> float:
        """The send rate the evidence shows, in requests per second (``default`` if unclear)."""
        samples = self.samples
        span = samples[-1][0] - samples[0][0] if samples else 0.0
        return (len(samples) - 1) / span if len(samples) >= 10 and span > 0 else default

    def noise_floor(self, now: float) -> float:
        return float(self.noise * 0.5 ** ((now - self.noise_at) / _NOISE_HALF_LIFE))

    def congested(self, now: float) -> bool:
        if now < self.reacted_at + _HOLD or self.count_429 < _MIN_429:
            return False
        if self.before:  # a cut is being judged: only a storm outranks it
            return self.fraction >= _STORM
        return self.fraction >= self.noise_floor(now) + _THRESHOLD

    def judging(self, now: float) -> bool:
        """Whether enough has been seen since the last cut to judge it."""
        if not self.before:
            return False
        return (len(self.samples) >= _SAMPLES and now >= self.reacted_at + _SPAN) or (
            len(self.samples) >= _VERIFY_MIN and now >= self.reacted_at + _HORIZON
        )

    def reset(self, now: float) -> None:
        self.samples.clear()
        self.count_429 = 0
        self.reacted_at = now


class Limiter:
    """Paces and bounds the requests of one key. See the module docstring."""

    __slots__ = (
        "_closed", "_configured", "_cut_at", "_cut_rate", "_due", "_epoch", "_failed", "_grace",
        "_helpers", "_in_flight", "_judge", "_limit", "_live", "_loop", "_max_in_flight",
        "_members", "_met", "_not_before", "_queues", "_rate", "_reserving", "_sending_all",
        "_shared", "_span", "_started", "_stretch", "_tat", "_timer", "_turn", "_up", "_window",
        "granted", "waited",
    )

    def __init__(self, limit: RateLimit, max_in_flight: int, *, key: str | None = None) -> None:
        """``key``: the API key, whose budget ``limit.redis`` shares (None: not shared)."""
        if type(max_in_flight) is not int or max_in_flight < 1:
            raise ValueError(f"max_concurrency must be an integer >= 1, not {max_in_flight!r}")
        self._limit = limit
        self._max_in_flight = max_in_flight
        self._configured = limit.rate / limit.per  # requests per second, as configured
        self._rate = self._configured  # requests per second, now
        self._cut_rate = self._rate  # the rate right after the last cut
        self._cut_at = -math.inf  # loop time of the last cut
        self._met = self._rate  # the rate congestion was last met at
        self._tat = -math.inf  # GCRA theoretical arrival time
        self._not_before = -math.inf  # the shared pause
        # The window guard: the last `rate + burst - 1` grants (what a token bucket admits in
        # `per` seconds) may not span less than `per` seconds, plus slack for network jitter.
        count = max(1, math.floor(limit.rate))
        span = limit.per * count / limit.rate
        self._span = span + min(_SLACK * span, _SLACK_MAX)
        self._window: deque[Slot] = deque(maxlen=count + limit.burst - 1)
        self._judge = _Judge()
        self._in_flight = 0
        self._live = 0  # waiters not cancelled
        # Per lane: (future, loop time it started waiting), FIFO.
        self._queues: tuple[deque[tuple[asyncio.Future[Slot], float]], ...] = (deque(), deque())
        self._turn = Lane.CREATE
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.granted = 0  #: slots granted
        self.waited = 0.0  #: seconds waited for them, summed
        # The shared budget (None: this process paces alone).
        shared = self._shared = None if limit.redis is None or not key else (
            SharedBudget(limit.redis, key, (_NEAR, _FAST, _SLOW))
        )
        self._stretch = self._span / span  # the window guard's slack, as a longer interval
        self._started: asyncio.Task[None] | None = None
        self._failed: ConfigError | None = None  # Redis unreachable at start
        self._up = shared is not None  # Redis answers: the shared budget paces
        self._due: float | None = None  # the loop time the slot reserved on Redis is due
        self._reserving: asyncio.Task[None] | None = None  # the one reservation under way
        self._helpers: set[asyncio.Task[Any]] = set()  # publications and the probe
        self._epoch = 0  # the shared state's changes seen
        self._members = 1  # processes seen sharing the budget
        self._grace = -math.inf  # until then, the fallback's share binds besides Redis
        self._sending_all = 0.0  # grants per second, every process

    def __repr__(self) -> str:
        now = self._loop.time() if self._loop else 0.0
        cooling = max(0.0, self._not_before - now)
        return (
            f"<Limiter rate={self.rate:.3g}/s in_flight={self._in_flight}/{self._max_in_flight} "
            f"waiting={self._live} cooling={cooling:.1f}s>"
        )

    @property
    def rate(self) -> float:
        """The current rate, in requests per second (below the configured one after a cut)."""
        if self._loop is not None:
            self._interval(self._loop.time())
        return self._rate

    @property
    def paused_for(self) -> float:
        """Seconds until the shared pause ends (0 when there is none)."""
        return 0.0 if self._loop is None else max(0.0, self._not_before - self._loop.time())

    @property
    def shared(self) -> bool:
        """Whether the pacing is shared on Redis now (False: alone, or on the fallback share)."""
        return self._shared is not None and self._up and self._failed is None

    @property
    def in_flight(self) -> int:
        """Requests granted and not yet released."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        return self._live

    def waiting_in(self, lane: Lane) -> int:
        """Callers queued in ``lane`` (those cancelled meanwhile may still count)."""
        return len(self._queues[lane]) if self._live else 0

    async def start(self) -> None:
        """Reach the shared budget's Redis, once; nothing to do for a budget of one process.

        Raises:
            ConfigError: Redis cannot be reached (the URL is named without credentials).
        """
        if self._shared is None:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = self._loop.create_task(self._shared.start())
        try:
            await asyncio.shield(self._started)
        except ConfigError as exc:
            self._failed = exc
            raise

    async def acquire(self, lane: Lane = Lane.QUERY) -> Slot:
        """Wait for the right to send one request in ``lane``; FIFO within the lane.

        Raises:
            ConfigError: The shared budget's Redis could not be reached at start (creates; a
                query gets a slot whose ``sending()`` raises it, before anything is sent).
        """
        if self._closed:
            raise RuntimeError(_CLOSED)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._shared is not None and (self._started is None or not self._started.done()
                                         or self._failed is not None):
            try:
                await self.start()
            except ConfigError as exc:
                if lane is Lane.CREATE:
                    raise
                return Slot(None, loop.time(), 0.0, exc)
        slot = self.try_acquire(lane)
        if slot is not None:
            return slot
        now = loop.time()
        future: asyncio.Future[Slot] = loop.create_future()
        self._queues[lane].append((future, now))
        self._live += 1
        self._grant()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                # granted, then cancelled before it resumed: give the slot back
                self._refund(future.result())
            elif not self._closed:  # still queued: it leaves the queue lazily
                future.cancel()
                self._live -= 1
            raise

    def try_acquire(self, lane: Lane = Lane.QUERY) -> Slot | None:
        """A slot in ``lane`` now, if one is free and nobody waits for it; else None.

        Nothing is queued when there is none (a shared budget may start reserving its next
        slot, as ``acquire`` would): a caller that can do without (a poll going on to the
        next) leaves the slot to ``acquire``'s waiters.
        """
        loop = self._loop
        if self._live or self._in_flight >= self._max_in_flight or loop is None or self._closed:
            return None
        started = self._started
        if self._shared is not None and (  # a failed start's error is the task's (_failed's)
            started is None or not started.done() or started.cancelled()
            or started.exception() is not None
        ):
            return None  # acquire() reaches Redis first, or raises why it cannot
        now = loop.time()
        if self._ready(now) > now:
            return None
        self._turn = _OTHER[lane]
        return self._take(now, now)

    @property
    def saturated(self) -> bool:
        """Whether every place in flight is taken and nobody waits for one."""
        return self._in_flight >= self._max_in_flight and not self._live

    def answered(self, slot: Slot, throttle: Throttle | None = None) -> None:
        """Record the answer to the request of ``slot``: a 429 (``throttle``) or any other.

        Only answers count: a request that got none says nothing about the key's budget.
        """
        loop = self._loop
        assert loop is not None, "answered() before any acquire()"
        now = loop.time()
        sent_at = slot.sent_at if slot.sent_at is not None else slot.at
        if throttle is not None and throttle.key_wide and throttle.retry_after:
            self._pause(now + throttle.retry_after, "the gateway asked to wait")
        judge = self._judge
        if throttle is None:
            judge.delivered(now)
        if sent_at <= judge.reacted_at:
            return  # on the wire before the last reaction: part of what it reacted to
        judge.add(sent_at, throttle is not None, now)
        if judge.judging(now):
            self._verify(now)
        elif throttle is not None and judge.congested(now):
            self._react(now)

    def close(self) -> None:
        """Fail every waiter with RuntimeError (the client is closed) and refuse new ones."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in (self._reserving, *self._helpers):
            if task is not None:
                task.cancel()
        for queue in self._queues:
            while queue:
                future = queue.popleft()[0]
                if not future.done():
                    future.set_exception(RuntimeError(_CLOSED))
        self._live = 0

    async def disconnect(self) -> None:
        """Close the connections to the shared budget's Redis (after ``close``)."""
        if self._shared is not None:
            pending = [t for t in (self._started, self._reserving, *self._helpers) if t]
            if pending:
                await asyncio.wait(pending, timeout=1.0)
            await self._shared.close()

    # -- congestion ------------------------------------------------------------------------

    def _react(self, now: float) -> None:
        """Congestion: cut the rate (adaptive) and, in a storm, pause every request."""
        judge = self._judge
        fraction = judge.fraction
        if judge.recent >= _SURGE:  # a storm shows in the last answers before the evidence
            fraction = max(fraction, judge.recent)
        if fraction >= _STORM:
            judge.storms = judge.storms + 1 if now - judge.reacted_at < _PAUSE_RESET else 1
            self._pause(now + min(_PAUSE_MAX, _PAUSE * 2 ** (judge.storms - 1)),
                        f"{fraction:.0%} of recent requests were refused (429)")
        if self._limit.adaptive:
            rate = self._current(now)
            sending = self._sending(rate)
            # A little below what got through, so that the limit's queue drains.
            kept = min(_CUT_MAX, max(_CUT_MIN, (1 - fraction) * _UNDER))
            new = max(self._configured * _FLOOR, sending * kept)
            if new < rate:
                if not judge.before:  # a second cut in a row is undone to the first one's rate
                    judge.undo_rate = rate
                judge.before, judge.sending_before = fraction, sending
                # What got through lately: the limit if there is one, the old rate after a storm.
                self._met = max(sending * (1 - fraction), self._goodput(now, rate))
                self._set_rate(new, now, cut=True)
                log.info("octovid: %.0f%% of recent requests were refused (429); slowing down "
                         "to %.3g requests/s", fraction * 100, new)
        judge.reset(now)

    def _verify(self, now: float) -> None:
        """Judge the last cut: noise if it left the share of 429s as it was.

        Had there been a limit, sending ``r0`` with 429s on a fraction ``f0``, then ``r1``
        should see ``1 - (1 - f0) r0 / r1``; noise leaves ``f0``. The nearer one wins, if the
        two are far enough apart to tell.
        """
        judge = self._judge
        before, after = judge.before, judge.fraction
        threshold = judge.noise_floor(now) + _THRESHOLD
        judge.before = 0.0
        if after > _WORSE * before:  # not deep enough, or a storm's tail
            if judge.recent >= threshold:
                self._react(now)
            return
        limited = max(0.0, 1 - (1 - before) * judge.sending_before / self._sending(self._rate))
        if before - limited < before / 2:  # too shallow a cut to tell: a deeper one will
            if after >= threshold and judge.recent >= threshold:
                self._react(now)
            return
        if abs(after - before) < abs(after - limited):
            judge.noise, judge.noise_at = max(judge.noise_floor(now), after), now
            self._met = self._configured
            self._set_rate(max(self._current(now), judge.undo_rate), now)
            log.info("octovid: slowing down did not reduce the 429s (%.0f%% of requests): "
                     "they are noise; back to %.3g requests/s", after * 100, self._rate)

    def _pause(self, until: float, why: str) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if self._not_before <= now:
            log.info("octovid: %s; pausing all requests for %.1fs", why, until - now)
        if until > self._not_before:
            self._not_before = until
            # After the pause one request goes, then the pace resumes: no burst into a limit.
            self._tat = max(self._tat, until + (self._limit.burst - 1) / self._rate)
            if self.shared:
                assert self._shared is not None
                self._publish(self._shared.pause(until - now, self._limit.burst,
                                                 self._stretch / self._rate))
            self._grant()

    def _set_rate(self, rate: float, now: float, *, cut: bool = False) -> None:
        self._rate = self._cut_rate = min(self._configured, rate)
        self._cut_at = now
        if self.shared:
            assert self._shared is not None
            self._publish(self._shared.set_rate(self._configured, self._rate, self._met,
                                                cut=cut))
        self._grant()

    def _sending(self, rate: float) -> float:
        """Requests per second sent with the key: by every process when the budget is shared."""
        if self.shared and self._sending_all > 0:
            return min(rate, self._sending_all)
        return min(rate, self._judge.sending(rate))

    def _goodput(self, now: float, rate: float) -> float:
        """Answers that were not 429s, per second: this process's, scaled to every process's."""
        goodput = self._judge.goodput(now)
        if self.shared and self._sending_all > 0:
            mine = self._judge.sending(rate)
            goodput *= max(1.0, self._sending_all / mine) if mine > 0 else self._members
        return goodput

    # -- the shared budget -----------------------------------------------------------------

    def _publish(self, change: Coroutine[Any, Any, int]) -> None:
        """Tell every process of a pause or a change of rate (a lost Redis: they do not learn)."""

        async def publish() -> None:
            with contextlib.suppress(SharedDown):
                epoch = await change
                self._epoch = max(self._epoch, epoch)  # ours: no reason to start afresh

        self._helper(publish())

    def _helper(self, work: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(work)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _reserve(self) -> None:
        """Reserve the next slot on Redis, unless a reservation is under way or held."""
        if self._reserving is None and self._due is None and not self._closed:
            assert self._loop is not None
            self._reserving = self._loop.create_task(self._reservation())

    async def _reservation(self) -> None:
        assert self._shared is not None
        assert self._loop is not None
        try:
            reply = await self._shared.reserve(self._configured, self._limit.burst,
                                               self._stretch)
        except SharedDown as exc:
            self._lost(str(exc))
        else:
            now = self._loop.time()
            self._due = now + reply.delay
            self._adopt(reply, now)
        finally:
            self._reserving = None
        self._grant()

    def _adopt(self, reply: Reply, now: float) -> None:
        """Take the shared state Redis answered with; another process's decision resets ours."""
        self._members = reply.members
        self._sending_all = reply.sending
        if reply.epoch != self._epoch:
            if reply.epoch > self._epoch and reply.by != self._shared_member():
                self._judge.reset(now)  # one reaction per storm, whichever process saw it
                self._judge.before = 0.0
            self._epoch = reply.epoch
        if reply.pause_left > 0:
            self._not_before = max(self._not_before, now + reply.pause_left)
        if reply.cut_rate is None:
            return
        self._cut_rate, self._cut_at, self._met = reply.cut_rate, now - reply.cut_age, reply.met
        rate = self._grown(now)
        if rate >= self._configured > self._rate:
            log.info("octovid: request rate back to %.3g/s", self._configured)
        self._rate = rate

    def _shared_member(self) -> str:
        return self._shared.member if self._shared is not None else ""

    def _lost(self, why: str) -> None:
        """Redis stopped answering: pace alone on a fair share of the budget, probe to rejoin."""
        if not self._up:
            return
        assert self._loop is not None
        self._up = False
        self._due = None
        share = self._current(self._loop.time()) / self._members
        log.warning("octovid: lost the shared rate budget on Redis %s (%s); this process paces "
                    "alone at %.3g requests/s (1/%d of it) until Redis is back",
                    redacted(self._shared.url if self._shared else ""), why, share,
                    self._members)
        # Its last shared grant counts: the share's first grant comes one share's interval on.
        self._tat = max(self._tat, self._loop.time() + self._interval(self._loop.time()))
        self._helper(self._probe())

    async def _probe(self) -> None:
        assert self._shared is not None
        wait = _PROBE_FIRST
        while not self._closed:
            await asyncio.sleep(wait)
            if await self._shared.ping():
                self._up = True
                # The others rejoin within a probe's interval: until then, both paces bind.
                self._grace = self._loop.time() + _GRACE if self._loop else 0.0
                log.warning("octovid: Redis %s answers again; the rate budget is shared again",
                            redacted(self._shared.url))
                self._grant()
                return
            wait = min(_PROBE_MAX, wait * 2)

    def _current(self, now: float) -> float:
        """The adaptive rate at ``now``: grown back from the last cut in absolute steps."""
        if self._rate >= self._configured:
            return self._rate
        rate = self._grown(now)
        if rate >= self._configured:
            log.info("octovid: request rate back to %.3g/s", self._configured)
        self._rate = rate
        return rate

    def _grown(self, now: float) -> float:
        """The rate grown from the last cut to ``now`` (the shared budget's script does the
        same on Redis)."""
        configured, start = self._configured, self._cut_rate
        if start >= configured:
            return configured
        elapsed = now - self._cut_at
        near = min(configured, _NEAR * self._met)
        fast = max(0.0, (near - start) / (_FAST * configured))  # seconds of fast growth
        if elapsed <= fast:
            rate = start + _FAST * configured * elapsed
        else:
            rate = max(start, near) + _SLOW * configured * (elapsed - fast)
        return min(rate, configured)

    # -- pacing ----------------------------------------------------------------------------

    def _interval(self, now: float) -> float:
        if self._shared is not None and (not self._up or now < self._grace):
            # the fallback: a share of the budget, with the window guard's slack
            return self._members * self._stretch / self._current(now)
        return 1 / self._current(now)

    def _ready(self, now: float) -> float:
        """The earliest loop time the next request may go (inf: when Redis has answered)."""
        if self._shared is not None and self.shared:
            if now < self._grace:  # just rejoined: the others may still pace on their share
                alone = self._tat - (self._limit.burst - 1) * self._interval(now)
                if alone > now:
                    return alone
            due = self._due
            if due is not None and now - due > max(_STALE, self._stretch / self._current(now) / 2):
                due = self._due = None  # unused for too long: sending it now could overfill
            if due is None:
                self._reserve()
                return math.inf
            return max(self._not_before, due)
        burst = self._limit.burst
        at = max(self._not_before,
                 self._tat if burst == 1 else self._tat - (burst - 1) * self._interval(now))
        window = self._window
        if len(window) == window.maxlen:
            head = window[0]
            # A request still going out is waited for, for one window at most: a connection
            # stuck in its handshake must not hold up every other request for long.
            sent = head.sent_at if head.sent_at is not None else head.at + self._span
            at = max(at, sent + self._span)
        return at

    def _take(self, now: float, since: float) -> Slot:
        shared = self._shared is not None and self.shared
        if shared:
            self._due = None  # the reservation is spent
        if not shared or now < self._grace:
            interval = self._interval(now)
            late = now - self._tat
            # A slightly late grant keeps its place on the grid; after idle time it restarts.
            self._tat = (
                self._tat if 0 <= late <= interval / 2 else max(self._tat, now)
            ) + interval
        slot = Slot(self, now, now - since)
        window = self._window
        # Grants sent a window ago bind nothing: dropped, so that a high rate's window does not
        # keep its whole length of slots (a million at RateLimit(1e6)) for the collector.
        while window and (sent := window[0].sent_at) is not None and sent + self._span <= now:
            window.popleft()
        window.append(slot)
        self._in_flight += 1
        self.granted += 1
        self.waited += now - since
        return slot

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _sent(self, slot: Slot) -> None:
        slot.sent_at = max(slot.at, self._now())
        if self._live:
            self._grant()  # the guard may have moved, either way

    def _refund(self, slot: Slot) -> None:
        if not self.shared:  # a slot reserved on Redis is not given back: the safe side
            self._tat -= self._interval(slot.at)
        with contextlib.suppress(ValueError):
            self._window.remove(slot)
        slot.release()

    def _release(self) -> None:
        self._in_flight -= 1
        if self._live:
            self._grant()

    def _next_waiter(self) -> tuple[asyncio.Future[Slot], float] | None:
        for lane in (self._turn, _OTHER[self._turn]):
            queue = self._queues[lane]
            while queue and queue[0][0].done():  # cancelled while waiting
                queue.popleft()
            if queue:
                self._turn = _OTHER[lane]
                return queue.popleft()
        return None

    def _on_timer(self) -> None:
        self._timer = None
        self._grant()

    def _grant(self) -> None:
        """Hand out every slot available now; arm the one timer for the next."""
        if self._loop is None:
            return
        now = self._loop.time()
        while self._live and self._in_flight < self._max_in_flight:
            at = self._ready(now)
            if at == math.inf:
                return  # the reservation's answer grants
            if at > now + _EARLY:
                timer = self._timer
                if timer is None or timer.when() > at + _EARLY:
                    if timer is not None:
                        timer.cancel()
                    self._timer = self._loop.call_at(at, self._on_timer)
                return
            waiter = self._next_waiter()
            if waiter is None:
                return
            future, since = waiter
            self._live -= 1
            future.set_result(self._take(now, since))
