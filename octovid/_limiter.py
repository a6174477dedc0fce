"""The shared rate limiter: every request sent with one key passes through one of these.

Pacing is a GCRA (the compact form of a token bucket): one "theoretical arrival time" advanced by
``per / rate`` for each request, ``burst`` requests allowed at once. A grant that comes a little
late (timers fire up to a millisecond late) keeps its place on the grid, so the long-run rate is
the configured one; a window guard, the gateway's own rule, makes sure that catching up never
puts more than ``rate`` requests in any ``per`` seconds (with a little slack for the jitter of
the network between us and the gateway). The guard counts from when each request went out
(``Slot.sent``), not from when it was allowed to: a request held up by a new connection's
handshake must not let the ones after it bunch up behind it at the gateway. On top of it:

* a cool-down after a 429: one shared "not before" instant that every waiter respects and that
  only the passing of time moves back;
* an adaptive rate (AIMD): cut on a 429, grown back linearly towards the configured rate;
* a bound on requests in flight (``max_concurrency``);
* two FIFO lanes, creates and queries, served in alternation, so that a batch of creates does
  not starve the polling of running tasks, nor the reverse.

Waiters are futures in deques, woken by one timer, as aiolimiter does. A waiter cancelled before
its turn consumes nothing. The loop is bound lazily, on first use; time is ``loop.time()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
from collections import deque
from typing import Any

import attrs

__all__ = ["Lane", "Limiter", "RateLimit", "Slot"]

log = logging.getLogger("octovid")

_CUT = 0.7  # multiplicative decrease of the adaptive rate on a 429
_GROWTH = 0.05  # additive increase per second, as a fraction of the rate after the last cut
_FLOOR = 1 / 64  # the adaptive rate never goes below this fraction of the configured one
_COOL_MIN, _COOL_MAX = 1.0, 60.0  # cool-down after a 429 without Retry-After, doubling per 429
_PAUSE_MAX = 300.0  # the longest Retry-After obeyed: a proxy's "come back tomorrow" is not
_EARLY = 1e-6  # timers may fire this much early
_CLOSED = "this octovid.Client is closed"
# The window guard's slack: requests reach the gateway with some jitter, so a window of grants
# exactly `per` seconds long may arrive a little shorter. 2.5% of the window, at most 0.25 s.
_SLACK, _SLACK_MAX = 0.025, 0.25


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


def _at_least_one(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, not {value!r}")


@attrs.frozen
class RateLimit:
    """At most ``rate`` requests per ``per`` seconds, ``burst`` of them at once.

    With ``adaptive=True`` the client lowers its rate when the gateway answers 429 and raises it
    back towards ``rate`` while it does not, so a client that does not know the key's real limit
    settles near it.
    """

    rate: float = attrs.field(validator=_positive)
    per: float = attrs.field(default=1.0, validator=_positive)
    burst: int = attrs.field(default=1, validator=_at_least_one)
    adaptive: bool = True

    @property
    def interval(self) -> float:
        """Seconds between two requests at the configured rate."""
        return self.per / self.rate


class Lane(enum.IntEnum):
    """The two queues into one budget."""

    CREATE = 0
    QUERY = 1


class Slot:
    """The right to send one request now. Release it when the answer has arrived."""

    __slots__ = ("_limiter", "at", "sent_at", "waited")

    def __init__(self, limiter: Limiter | None, at: float, waited: float) -> None:
        self._limiter = limiter
        self.at = at  #: the loop time the slot was granted
        #: the loop time the request went out, as far as we know; None while it is going out
        self.sent_at: float | None = at
        self.waited = waited  #: seconds spent waiting for it

    def sending(self) -> None:
        """Record that the request is on its way out, until ``sent`` (or release) says when.

        The window guard counts from when requests went out: a request that spends 100 ms in a
        TLS handshake reaches the gateway 100 ms late, and those after it must not catch up.
        """
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


class Limiter:
    """Paces and bounds the requests of one key. See the module docstring."""

    __slots__ = (
        "_closed", "_cut_at", "_cut_rate", "_in_flight", "_limit", "_live", "_loop",
        "_max_in_flight", "_not_before", "_queues", "_rate", "_span", "_streak", "_tat",
        "_timer", "_turn", "_window", "granted", "waited",
    )

    def __init__(self, limit: RateLimit, max_in_flight: int) -> None:
        if type(max_in_flight) is not int or max_in_flight < 1:
            raise ValueError(f"max_concurrency must be an integer >= 1, not {max_in_flight!r}")
        self._limit = limit
        self._max_in_flight = max_in_flight
        self._rate = limit.rate / limit.per  # requests per second, now
        self._cut_rate = self._rate  # the rate right after the last cut
        self._cut_at = -math.inf  # loop time of the last cut
        self._tat = -math.inf  # GCRA theoretical arrival time
        self._not_before = -math.inf  # the shared cool-down
        # The window guard: the last `rate + burst - 1` grants (what a token bucket admits in
        # `per` seconds) may not span less than `per` seconds, plus slack for network jitter.
        count = max(1, math.floor(limit.rate))
        span = limit.per * count / limit.rate
        self._span = span + min(_SLACK * span, _SLACK_MAX)
        self._window: deque[Slot] = deque(maxlen=count + limit.burst - 1)
        self._streak = 0  # 429 events since the last success
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

    def __repr__(self) -> str:
        now = self._loop.time() if self._loop else 0.0
        cooling = max(0.0, self._not_before - now)
        return (
            f"<Limiter rate={self.rate:.3g}/s in_flight={self._in_flight}/{self._max_in_flight} "
            f"waiting={self._live} cooling={cooling:.1f}s>"
        )

    @property
    def rate(self) -> float:
        """The current rate, in requests per second (below the configured one after 429s)."""
        if self._loop is not None:
            self._interval(self._loop.time())
        return self._rate

    @property
    def in_flight(self) -> int:
        """Requests granted and not yet released."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        return self._live

    async def acquire(self, lane: Lane = Lane.QUERY) -> Slot:
        """Wait for the right to send one request in ``lane``; FIFO within the lane."""
        if self._closed:
            raise RuntimeError(_CLOSED)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._live and self._in_flight < self._max_in_flight and self._ready(now) <= now:
            self._turn = Lane(1 - lane)
            return self._take(now, now)
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

    def throttled(self, retry_after: float | None, sent_at: float) -> float:
        """Record a 429 for a request sent at ``sent_at``; return the cool-down applied.

        Every waiter then waits until ``now + cool-down`` at least. 429s for requests sent before
        the last cut belong to the same storm: they extend the cool-down but do not cut again.
        """
        assert self._loop is not None, "throttled() before any acquire()"
        now = self._loop.time()
        interval = self._interval(now)
        fresh = sent_at > self._cut_at
        if fresh:
            self._streak += 1
        if retry_after is not None:
            wait = min(retry_after, _PAUSE_MAX)
            if retry_after > _PAUSE_MAX:
                log.warning(
                    "octovid: a 429 asked to wait %.0fs; pausing all requests for %.0fs only",
                    retry_after, _PAUSE_MAX,
                )
        else:
            wait = min(_COOL_MAX, max(interval, _COOL_MIN * 2 ** (self._streak - 1)))
        if fresh and self._limit.adaptive:
            floor = self._limit.rate / self._limit.per * _FLOOR
            self._cut_rate = self._rate = max(floor, self._rate * _CUT)
            self._cut_at = now
            interval = 1 / self._rate
            log.info("octovid: rate limited (429); slowing down to %.3g requests/s", self._rate)
        if now + wait > self._not_before:
            self._not_before = now + wait
            log.info("octovid: rate limited (429); pausing all requests for %.1fs", wait)
        # After the pause, one request goes, then the pace resumes: no burst into a limit.
        self._tat = max(self._tat, self._not_before + (self._limit.burst - 1) * interval)
        self._grant()
        return wait

    def succeeded(self) -> None:
        """Record an answer that was not a 429: the next cool-down starts small again."""
        self._streak = 0

    def close(self) -> None:
        """Fail every waiter with RuntimeError (the client is closed) and refuse new ones."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for queue in self._queues:
            while queue:
                future = queue.popleft()[0]
                if not future.done():
                    future.set_exception(RuntimeError(_CLOSED))
        self._live = 0

    # -- internals ------------------------------------------------------------------------

    def _interval(self, now: float) -> float:
        configured = self._limit.rate / self._limit.per
        if self._rate < configured:
            grown = self._cut_rate * (1 + _GROWTH * (now - self._cut_at))
            if grown >= configured:
                self._rate = configured
                log.info("octovid: request rate back to %.3g/s", configured)
            else:
                self._rate = grown
        return 1 / self._rate

    def _ready(self, now: float) -> float:
        """The earliest loop time the next request may go."""
        at = max(self._not_before, self._tat - (self._limit.burst - 1) * self._interval(now))
        window = self._window
        if len(window) == window.maxlen:
            head = window[0]
            # A request still going out is waited for, for one window at most: a connection
            # stuck in its handshake must not hold up every other request for long.
            sent = head.sent_at if head.sent_at is not None else head.at + self._span
            at = max(at, sent + self._span)
        return at

    def _take(self, now: float, since: float) -> Slot:
        interval = self._interval(now)
        late = now - self._tat
        # A slightly late grant keeps its place on the grid; after idle time the grid restarts.
        self._tat = (self._tat if 0 <= late <= interval / 2 else max(self._tat, now)) + interval
        slot = Slot(self, now, now - since)
        self._window.append(slot)
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
        self._tat -= self._interval(slot.at)
        with contextlib.suppress(ValueError):
            self._window.remove(slot)
        slot.release()

    def _release(self) -> None:
        self._in_flight -= 1
        if self._live:
            self._grant()

    def _next_waiter(self) -> tuple[asyncio.Future[Slot], float] | None:
        for lane in (self._turn, Lane(1 - self._turn)):
            queue = self._queues[lane]
            while queue and queue[0][0].done():  # cancelled while waiting
                queue.popleft()
            if queue:
                self._turn = Lane(1 - lane)
                return queue.popleft()
        return None

    def _on_timer(self) -> None:
        self._timer = None
        self._grant()

    def _grant(self) -> None:
        """Hand out every slot available now; arm the one timer for the next."""
        assert self._loop is not None
        now = self._loop.time()
        while self._live and self._in_flight < self._max_in_flight:
            at = self._ready(now)
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
