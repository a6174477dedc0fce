"""The shared rate limiter, on virtual time."""

from __future__ import annotations

import asyncio
import logging

import pytest

from octovid import RateLimit
from octovid._limiter import Lane, Limiter


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


def test_throttle_pauses_every_waiter_for_retry_after(virtual):
    """A 429 with Retry-After holds every request until the pause ends."""
    limiter = Limiter(RateLimit(10, adaptive=False), max_in_flight=100)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        slot = await limiter.acquire()
        slot.release()
        assert limiter.throttled(7.0, slot.at) == 7.0
        return [t + 0.0 for t in await grants(limiter, 3)] + [loop.time() - start]

    times = virtual(main)
    assert times[:3] == pytest.approx([7.0, 7.1, 7.2])


def test_an_absurd_retry_after_pauses_five_minutes_at_most(virtual, caplog):
    """Retry-After of a day (a proxy's, say) pauses the key for 300 s, not for a day."""
    limiter = Limiter(RateLimit(10, adaptive=False), max_in_flight=100)

    async def main() -> list[float]:
        slot = await limiter.acquire()
        slot.release()
        assert limiter.throttled(86_400.0, slot.at) == 300.0
        return await grants(limiter, 1)

    with caplog.at_level(logging.WARNING, logger="octovid"):
        assert virtual(main) == pytest.approx([300.0])
    assert "86400s" in caplog.text


def test_pause_is_not_shortened_by_later_success(virtual):
    """Only time ends a pause: a success after a 429 does not release waiters early."""
    limiter = Limiter(RateLimit(10, adaptive=False), max_in_flight=100)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        slot = await limiter.acquire()
        slot.release()
        limiter.throttled(5.0, slot.at)
        limiter.succeeded()
        start = loop.time()
        later = await limiter.acquire()
        later.release()
        return later.at - start

    assert virtual(main) == 5.0


def test_pause_without_retry_after_doubles(virtual):
    """Consecutive 429s without Retry-After pause 1, 2, 4 seconds; a success resets it."""
    limiter = Limiter(RateLimit(100, adaptive=False), max_in_flight=100)

    async def main() -> list[float]:
        waits = []
        for _ in range(3):
            slot = await limiter.acquire()
            slot.release()
            waits.append(limiter.throttled(None, slot.at))
        limiter.succeeded()
        slot = await limiter.acquire()
        slot.release()
        waits.append(limiter.throttled(None, slot.at))
        return waits

    assert virtual(main) == [1.0, 2.0, 4.0, 1.0]


def test_adaptive_cut_once_per_storm(virtual, caplog):
    """429s for requests sent before the cut belong to one storm: the rate is cut once."""
    limiter = Limiter(RateLimit(10), max_in_flight=100)

    async def main() -> float:
        slots = [await limiter.acquire() for _ in range(5)]
        for slot in slots:
            slot.release()
            limiter.throttled(0.0, slot.at)
        return limiter.rate

    with caplog.at_level(logging.INFO, logger="octovid"):
        rate = virtual(main)
    assert rate == pytest.approx(7.0)
    assert sum("slowing down" in r.getMessage() for r in caplog.records) == 1


def test_adaptive_rate_recovers_to_the_ceiling(virtual):
    """Without 429s the cut rate grows back linearly, up to the configured rate."""
    limiter = Limiter(RateLimit(10), max_in_flight=100)

    async def main() -> list[float]:
        slot = await limiter.acquire()
        slot.release()
        limiter.throttled(0.0, slot.at)
        rates = [limiter.rate]
        await asyncio.sleep(4.0)
        rates.append(limiter.rate)
        await asyncio.sleep(100.0)
        rates.append(limiter.rate)
        return rates

    cut, later, recovered = virtual(main)
    assert cut == pytest.approx(7.0)
    assert later == pytest.approx(7.0 * 1.2)
    assert recovered == 10.0


def test_adaptive_rate_converges_near_an_unknown_server_limit(virtual):
    """A client allowed 4x the server's limit settles near that limit with few 429s."""
    server_rate = 5.0
    limiter = Limiter(RateLimit(4 * server_rate), max_in_flight=100)
    accepted: list[float] = []
    rejected: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tat = 0.0  # the server's own GCRA, burst 2
        stop = loop.time() + 600

        async def worker() -> None:
            nonlocal tat
            while loop.time() < stop:
                slot = await limiter.acquire()
                now = loop.time()
                await asyncio.sleep(0.05)  # the request's round trip
                if now >= tat - 1 / server_rate:
                    tat = max(tat, now) + 1 / server_rate
                    accepted.append(now)
                    limiter.succeeded()
                else:
                    rejected.append(now)
                    limiter.throttled(None, slot.at)
                slot.release()

        await asyncio.gather(*(worker() for _ in range(20)))

    virtual(main)
    start = accepted[0] + 120  # after warming up
    window = [t for t in accepted if t >= start]
    achieved = len(window) / (accepted[-1] - start)
    late_rejects = [t for t in rejected if t >= start]
    assert 0.6 * server_rate <= achieved <= server_rate * 1.01
    assert len(late_rejects) / (len(window) + len(late_rejects)) < 0.05


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
