"""The failure path against the simulator: sporadic 429s, storms, dropped connections, leaks.

Each test here pins one of the faults measured on an imitation of the real gateway (WORKLOADS.md,
"Rate limits and 429s" and "Other faults"), through the public API only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref

import pytest

import octovid
from octovid import Status
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.2, max_interval=0.5, deadline=60)


async def hammer(client: octovid.Client, task_id: str, seconds: float, workers: int = 32) -> int:
    """Query one task from ``workers`` coroutines for ``seconds``: demand above any rate."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    answers = 0

    async def worker() -> None:
        nonlocal answers
        while loop.time() < stop:
            await client.get(task_id)
            answers += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return answers


@pytest.mark.parametrize("adaptive", [True, False])
async def test_sporadic_upstream_429s_do_not_throttle_the_key(adaptive):
    """Workload "sporadic 429s" (5% of requests, whatever the rate): >= 80% of 40/s is sent."""
    async with Simulator(sporadic_429=0.05, duration=(60.0, 60.0), seed=3) as sim:
        limit = octovid.RateLimit(40, adaptive=adaptive)
        async with octovid.Client(sim.api_key, sim.url, rate_limit=limit,
                                  max_concurrency=32) as client:
            task = await client.create(octovid.GrokRequest("busy upstream"))
            start = time.monotonic()
            await hammer(client, task.id, 6.0)
            elapsed = time.monotonic() - start
            stats = client.stats
    sent = sum(r.route == "query" for r in sim.requests)
    assert sim.faults_served["sporadic_429"] > 0
    assert sent / elapsed >= 0.8 * 40  # the old limiter settled near 4/s, or paused for good
    assert stats.rate >= 0.8 * 40


async def test_a_short_storm_does_not_freeze_a_key_without_adaptation():
    """Workload "storm": a 1.5 s storm with 16 in flight; requests flow within 3 s of its end."""
    async with Simulator(duration=(60.0, 60.0), seed=5) as sim:
        limit = octovid.RateLimit(40, adaptive=False)
        async with octovid.Client(sim.api_key, sim.url, rate_limit=limit,
                                  max_concurrency=16) as client:
            task = await client.create(octovid.GrokRequest("storm"))
            load = asyncio.ensure_future(hammer(client, task.id, 8.0, workers=16))
            await asyncio.sleep(2.0)
            sim.storm(1.5)
            storm_end = sim.requests[-1].at + 1.5
            await load
    after = [r for r in sim.requests if r.route == "query" and r.status == 200
             and storm_end + 1.0 <= r.at < storm_end + 3.0]
    assert sim.faults_served["storm_429"] >= 10
    assert len(after) >= 0.5 * 40 * 2.0  # the old limiter paused the key for a minute here


async def test_every_request_the_gateway_sees_is_counted_once():
    """A GET whose reused connection drops is not resent behind the limiter's back."""
    async with Simulator(duration=(60.0, 60.0)) as sim:
        async with octovid.Client(sim.api_key, sim.url) as client:
            task = await client.create(octovid.SoraRequest("counted"))
            await client.get(task.id)  # the connection is now kept alive, to be reused
            sim.inject("query", drop="before")
            await client.get(task.id)  # dropped once, then retried through the limiter
            stats = client.stats
    assert [r.status for r in sim.requests if r.route == "query"] == [200, 0, 200]
    assert stats.requests == len(sim.requests) == 4


async def test_a_finished_job_that_was_dropped_is_freed():
    """A finished job nobody holds is freed at once, not kept until its one-hour deadline."""
    async with Simulator(duration=(0.2, 0.2)) as sim:
        async with octovid.Client(sim.api_key, sim.url, poll=FAST) as client:
            job = client.submit(octovid.ViduRequest("freed"), deadline=3600)
            task = await job
            ref = weakref.ref(job)
            del job
            gc.collect()
            assert ref() is None
            assert client.stats.pending == 0
    assert task.status is Status.COMPLETED


async def test_a_create_429_is_retried_after_its_own_retry_after_only(caplog):
    """An upstream 429 with Retry-After delays that create, not the other requests of the key."""
    async with Simulator(duration=(60.0, 60.0)) as sim:
        async with octovid.Client(sim.api_key, sim.url, rate_limit=20) as client:
            sim.inject("create", status=429, code="fail_to_fetch_task", retry_after=1.0)
            with caplog.at_level(logging.INFO, logger="octovid"):
                slow = asyncio.ensure_future(client.create(octovid.SoraRequest("retried")))
                await asyncio.sleep(0.05)
                other = await client.create(octovid.SoraRequest("unhindered"))
                first_other = sim.requests[-1].at
                created = await slow
    creates = [r for r in sim.requests if r.route == "create"]
    assert [r.status for r in creates] == [429, 200, 200]
    assert first_other - creates[0].at < 0.5  # the other create was not paused
    assert creates[2].at - creates[0].at >= 1.0  # the refused one waited what it was told
    assert created.id != other.id
    assert "pausing all requests" not in caplog.text
