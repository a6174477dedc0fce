"""The shared rate limiter, on virtual time."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque

import pytest

from octovid import RateLimit
from octovid._limiter import Lane, Limiter
from octovid._retry import Throttle


async def grants(limiter: Limiter, count: int, lane: Lane = Lane.QUERY) -> list[float]:
    """Acquire ``count`` slots at once, release each at once; return the grant times."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one() -> float:
        with await limiter.acquire(lane) as slot:
            return slot.at - start

    return list(await asyncio.gather(*(one() for _ in range(count))))


def approx(times: list[float]) -> list[float]:
    return [round(t, 9) for t in times]


def test_paces_at_the_configured_rate(virtual):
    """Requests are spaced per/rate apart, the first at once; a full window waits 2.5% more."""
    limiter = Limiter(RateLimit(4, per=2.0), max_in_flight=100)
    times = virtual(lambda: grants(limiter, 6))
    assert approx(times) == [0.0, 0.5, 1.0, 1.5, 2.05, 2.55]


def test_burst_goes_at_once_then_paces(virtual):
    """A burst of b requests goes immediately; the rest follow at the rate."""
    limiter = Limiter(RateLimit(2, burst=3), max_in_flight=100)
    times = virtual(lambda: grants(limiter, 6))
    assert approx(times) == [0.0, 0.0, 0.0, 0.5, 1.025, 1.5]


def test_idle_time_does_not_bank_more_than_the_burst(virtual):
    """After a long idle period only `burst` requests go at once."""
    limiter = Limiter(RateLimit(1, burst=2), max_in_flight=100)

    async def main() -> list[float]:
        await grants(limiter, 1)
        await asyncio.sleep(100)
        return await grants(limiter, 4)

    assert approx(virtual(main)) == [0.0, 0.0, 1.025, 2.0]


def test_late_timers_lose_no_rate_and_never_overfill_a_window(virtual):
    """Grants fired 1 ms late keep the grid (the rate less the 2.5% slack), no window overfills."""
    limiter = Limiter(RateLimit(50), max_in_flight=100)
    times = virtual(lambda: grants(limiter, 1000), lateness=0.001)
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved >= 0.99 * 50 / 1.025
    for i in range(len(times) - 50):
        assert times[i + 50] - times[i] >= 1.025 - 1e-9


def test_window_counts_from_when_a_request_went_out(virtual):
    """A request that left 0.3 s after its grant holds back the one a full window after it."""
    limiter = Limiter(RateLimit(2, adaptive=False), max_in_flight=100)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = await limiter.acquire()
        rest = asyncio.ensure_future(grants(limiter, 2))
        await asyncio.sleep(0.3)  # say, a TLS handshake on a new connection
        first.sent()
        first.release()
        return [first.sent_at - start, *await rest]

    # Without the late send the third would go at 1.025 (grant + window + slack).
    assert approx(virtual(main)) == [0.3, 0.5, 1.325]


@pytest.mark.parametrize(("goes_out_at", "next_at"), [(1.5, 2.525), (None, 2.05)],
                         ids=["sent-late", "never-sent"])
def test_a_request_still_going_out_holds_the_window_for_one_window_at_most(
    virtual, goes_out_at, next_at
):
    """A slot marked sending is waited for (a slow connect); unsent, for one window at most."""
    limiter = Limiter(RateLimit(1, adaptive=False), max_in_flight=100)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = await limiter.acquire()
        first.sending()
        if goes_out_at is not None:
            loop.call_at(start + goes_out_at, first.sent)
        loop.call_at(start + 5.0, first.release)
        second = await limiter.acquire()
        second.release()
        return second.at - start

    assert virtual(main) == pytest.approx(next_at)


def test_waiters_are_served_fifo(virtual):
    """Within a lane, slots are granted in the order they were asked for."""
    limiter = Limiter(RateLimit(10), max_in_flight=100)
    order: list[int] = []

    async def one(i: int) -> None:
        with await limiter.acquire():
            order.append(i)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(20)))

    virtual(main)
    assert order == list(range(20))


def test_lanes_alternate_so_neither_starves(virtual):
    """With both lanes full, creates and queries are granted in turn."""
    limiter = Limiter(RateLimit(1), max_in_flight=100)
    order: list[str] = []

    async def one(lane: Lane) -> None:
        with await limiter.acquire(lane):
            order.append(lane.name[0])

    async def main() -> None:
        # 10 creates queued first, then 5 queries: queries must not wait for all creates.
        await asyncio.gather(
            *(one(Lane.CREATE) for _ in range(10)), *(one(Lane.QUERY) for _ in range(5))
        )

    virtual(main)
    assert "".join(order[:11]) == "CQCQCQCQCQC"
    assert order.count("C") == 10


def test_cancelled_waiter_consumes_nothing(virtual):
    """A waiter cancelled before its turn leaves its slot to the next one."""
    limiter = Limiter(RateLimit(1), max_in_flight=100)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        times: list[float] = []

        async def one() -> None:
            with await limiter.acquire() as slot:
                times.append(slot.at - start)

        first = asyncio.ensure_future(one())
        doomed = asyncio.ensure_future(one())
        last = asyncio.ensure_future(one())
        await asyncio.sleep(0.5)
        doomed.cancel()
        await asyncio.gather(first, last)
        return times

    assert approx(virtual(main)) == [0.0, 1.025]
    assert limiter.granted == 2
    assert limiter.waiting == 0


def test_granted_then_cancelled_slot_is_refunded(virtual):
    """A slot granted to a waiter cancelled before it resumed is given back."""
    limiter = Limiter(RateLimit(1), max_in_flight=1)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        held = await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        loop.call_later(2.0, held.release)  # grants the waiter at t=2...
        loop.call_later(2.0, waiter.cancel)  # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await waiter
        start = loop.time()
        slot = await limiter.acquire()
        slot.release()
        return slot.at - start

    assert virtual(main) == 0.0
    assert limiter.in_flight == 0


def test_in_flight_bound(virtual):
    """No more than max_in_flight slots are held at once; a release lets the next go."""
    limiter = Limiter(RateLimit(1000), max_in_flight=3)
    peak = 0

    async def one() -> None:
        nonlocal peak
        with await limiter.acquire():
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(1.0)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(one() for _ in range(9)))
        return loop.time() - start

    elapsed = virtual(main)
    assert peak == 3
    assert 3.0 <= elapsed < 3.1  # three waves of three


KEY = Throttle(None, key_wide=True)  # a 429 of the key's own limit, no Retry-After
UPSTREAM = Throttle(None, key_wide=False)  # fail_to_fetch_task and the like


def test_key_wide_retry_after_pauses_every_waiter(virtual):
    """A 429 of the key's limit with Retry-After holds every request until the pause ends."""
    limiter = Limiter(RateLimit(10, adaptive=False), max_in_flight=100)

    async def main() -> list[float]:
        slot = await limiter.acquire()
        slot.release()
        limiter.answered(slot, Throttle(7.0, key_wide=True))
        return await grants(limiter, 3)

    assert virtual(main) == pytest.approx([7.0, 7.1, 7.2])


def test_an_upstream_retry_after_pauses_only_its_own_request(virtual):
    """Retry-After on an upstream-saturation 429 is that request's wait, not the key's."""
    limiter = Limiter(RateLimit(10, adaptive=False), max_in_flight=100)

    async def main() -> list[float]:
        slot = await limiter.acquire()
        slot.release()
        limiter.answered(slot, Throttle(7.0, key_wide=False))
        return await grants(limiter, 2)

    assert virtual(main) == pytest.approx([0.1, 0.2])


def test_pause_is_not_shortened_by_later_success(virtual):
    """Only time ends a pause: a success after a 429 does not release waiters early."""
    limiter = Limiter(RateLimit(10, adaptive=False), max_in_flight=100)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        first, second = await limiter.acquire(), await limiter.acquire()
        first.release()
        second.release()
        limiter.answered(first, Throttle(5.0, key_wide=True))
        limiter.answered(second)
        start = loop.time()
        later = await limiter.acquire()
        later.release()
        return later.at - start

    assert virtual(main) == pytest.approx(5.0, abs=0.11)


def test_a_single_429_changes_nothing_for_the_key(virtual):
    """One 429 without Retry-After among successes neither pauses nor slows the key."""
    limiter = Limiter(RateLimit(10), max_in_flight=100)

    async def main() -> tuple[float, list[float]]:
        slot = await limiter.acquire()
        slot.release()
        limiter.answered(slot, KEY)
        return limiter.rate, await grants(limiter, 2)

    rate, times = virtual(main)
    assert rate == 10.0
    assert times == pytest.approx([0.1, 0.2])


class Server:
    """A gateway on virtual time: a sliding-window limit per second, random 429s, storms."""

    def __init__(self, limiter: Limiter, *, limit: float | None = None, noise: float = 0.0,
                 storm: tuple[float, float] | None = None, seed: int = 1) -> None:
        self.limiter = limiter
        self.limit = limit
        self.noise = noise
        self.storm = storm  # (start, duration), seconds from the start
        self.rng = random.Random(seed)
        self.window: deque[float] = deque()
        self.log: list[tuple[float, bool]] = []  # (seconds from the start, accepted)

    async def run(self, seconds: float, workers: int = 64) -> None:
        """Keep ``workers`` requests going for ``seconds``, demand above any rate."""
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def worker() -> None:
            while loop.time() - start < seconds:
                slot = await self.limiter.acquire()
                slot.sending()
                slot.sent()
                sent = loop.time()
                await asyncio.sleep(0.05 * (0.5 + self.rng.random()))  # the round trip
                accepted = self.admit(sent, sent - start)
                self.log.append((sent - start, accepted))
                self.limiter.answered(slot, None if accepted else KEY)
                slot.release()

        await asyncio.gather(*(worker() for _ in range(workers)))

    def admit(self, now: float, elapsed: float) -> bool:
        if self.storm and self.storm[0] <= elapsed < self.storm[0] + self.storm[1]:
            return False
        if self.limit is not None:
            while self.window and self.window[0] <= now - 1.0:
                self.window.popleft()
            if len(self.window) >= self.limit:
                return False
            self.window.append(now)
        return self.rng.random() >= self.noise

    def sent(self, start: float, end: float) -> float:
        """Requests sent per second between two instants."""
        return sum(start <= t < end for t, _ in self.log) / (end - start)

    def accepted(self, start: float, end: float) -> float:
        """Requests accepted per second between two instants."""
        return sum(start <= t < end for t, ok in self.log if ok) / (end - start)


@pytest.mark.parametrize("rate", [40, 200])
@pytest.mark.parametrize("adaptive", [True, False])
@pytest.mark.parametrize("noise", [0.03, 0.05])
def test_sporadic_429s_do_not_slow_the_key(virtual, rate, adaptive, noise):
    """3-5% of requests refused at random, whatever the rate: the key keeps >= 90% of its rate."""
    limiter = Limiter(RateLimit(rate, adaptive=adaptive), max_in_flight=64)
    server = Server(limiter, noise=noise)
    virtual(lambda: server.run(60))
    assert server.sent(0, 60) >= 0.9 * rate  # the old limiter fell to 1/(8.6 q): 2-5 a second


def test_heavy_noise_is_learned_not_obeyed(virtual, caplog):
    """20% of requests refused at random: slowing down does not help, so the rate comes back."""
    limiter = Limiter(RateLimit(40), max_in_flight=64)
    server = Server(limiter, noise=0.2)
    with caplog.at_level(logging.INFO, logger="octovid"):
        virtual(lambda: server.run(120))
    assert server.sent(30, 120) >= 0.8 * 40
    assert "they are noise" in caplog.text


@pytest.mark.parametrize("rate", [40, 200])
def test_a_real_limit_at_half_the_rate_is_found(virtual, rate):
    """A server limit at half the configured rate: goodput >= 85% of it, 429s <= 5% after 15 s."""
    limiter = Limiter(RateLimit(rate), max_in_flight=64)
    server = Server(limiter, limit=rate / 2)
    virtual(lambda: server.run(60))
    sent, accepted = server.sent(15, 60), server.accepted(15, 60)
    assert accepted >= 0.85 * rate / 2
    assert 1 - accepted / sent <= 0.05


def test_a_storm_is_one_cut_and_requests_flow_again_soon(virtual, caplog):
    """A 1.5 s storm with 16 requests in flight: one cut, one 1 s pause, flowing within 3 s."""
    limiter = Limiter(RateLimit(40), max_in_flight=16)
    server = Server(limiter, storm=(30.0, 1.5))
    with caplog.at_level(logging.INFO, logger="octovid"):
        virtual(lambda: server.run(45, workers=16))
    assert sum("slowing down to" in r.getMessage() for r in caplog.records) == 1
    assert sum("pausing all requests" in r.getMessage() for r in caplog.records) == 1
    assert server.accepted(31.5, 34.5) >= 0.5 * 40


def test_a_storm_without_adaptation_pauses_once_not_for_a_minute(virtual, caplog):
    """adaptive=False: 16 in-flight 429s of one storm pause the key once, for 1 s (not 60)."""
    limiter = Limiter(RateLimit(40, adaptive=False), max_in_flight=16)
    server = Server(limiter, storm=(30.0, 1.5))
    with caplog.at_level(logging.INFO, logger="octovid"):
        virtual(lambda: server.run(45, workers=16))
    pauses = [r.getMessage() for r in caplog.records if "pausing all requests" in r.getMessage()]
    assert pauses == [pauses[0]]
    assert pauses[0].endswith("for 1.0s")
    assert server.accepted(31.5, 34.5) >= 0.9 * 40


def test_adaptive_rate_grows_back_in_absolute_steps(virtual):
    """After a cut the rate grows by a fixed share of the configured rate a second, up to it."""
    limiter = Limiter(RateLimit(100), max_in_flight=100)
    server = Server(limiter, storm=(20.0, 2.0))

    async def main() -> list[float]:
        await server.run(22.0)
        rates = [limiter.rate]
        for _ in range(2):
            await asyncio.sleep(10.0)
            rates.append(limiter.rate)
        await asyncio.sleep(120.0)
        rates.append(limiter.rate)
        return rates

    cut, later, still_later, recovered = virtual(main)
    assert cut < 80
    # Probing near the old rate: 1% of the configured rate a second, whatever the rate is.
    assert still_later - later == pytest.approx(10.0)
    assert recovered == 100.0


def test_close_fails_waiters_clearly(virtual):
    """Closing the limiter fails everyone waiting, and new callers, with "client is closed"."""
    limiter = Limiter(RateLimit(1), max_in_flight=1)

    async def main() -> None:
        held = await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        limiter.close()
        with pytest.raises(RuntimeError, match="Client is closed"):
            await waiter
        with pytest.raises(RuntimeError, match="Client is closed"):
            await limiter.acquire()
        held.release()

    virtual(main)
    assert limiter.waiting == 0


def test_rate_limit_validates_its_fields():
    """RateLimit refuses non-positive rates and periods and bursts below one."""
    with pytest.raises(ValueError, match="rate"):
        RateLimit(0)
    with pytest.raises(ValueError, match="per"):
        RateLimit(1, per=-1)
    with pytest.raises(ValueError, match="burst"):
        RateLimit(1, burst=0)
    assert RateLimit(2, per=4).interval == 2.0
