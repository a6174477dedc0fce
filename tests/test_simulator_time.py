"""octovid.testing.Simulator's time: the injectable clock and time_scale, over real HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest

from octovid.testing import Simulator

AUTH = {"Authorization": "Bearer sim-key"}
GROK = {"model": "grok-video-3", "prompt": "p"}

Launch = Callable[..., Awaitable[Simulator]]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def fetch(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] = AUTH,
    **kwargs: Any,
) -> tuple[int, Mapping[str, str], Any]:
    async with http.request(method, url, headers=headers, **kwargs) as response:
        body = await response.read()
        is_json = response.content_type == "application/json"
        return response.status, response.headers, (await response.json() if is_json else body)


async def create(http: aiohttp.ClientSession, sim: Simulator, body: Any = GROK) -> Any:
    status, _, answer = await fetch(http, "POST", sim.url + "/v1/video/create", json=body)
    assert status == 200, answer
    return answer


async def query(http: aiohttp.ClientSession, sim: Simulator, task_id: str) -> Any:
    status, _, answer = await fetch(
        http, "GET", sim.url + "/v1/video/query", params={"id": task_id}
    )
    assert status == 200, answer
    return answer


# The injectable clock


async def test_clock_drives_task_life(launch, http, clock):
    """A task's create, progress and end follow the injected clock, not real time."""
    sim = await launch(clock=clock, duration=(100.0, 100.0), unknown_for=10.0)
    task_id = (await create(http, sim))["id"]
    task = sim.tasks[task_id]
    assert (task.created, task.terminal_at) == (clock.now, clock.now + 100.0)
    assert (await query(http, sim, task_id))["status"] == "unknown"
    clock.advance(50.0)
    answer = await query(http, sim, task_id)
    assert (answer["status"], answer["progress"]) == ("processing", 50)
    clock.advance(50.0)
    assert (await query(http, sim, task_id))["status"] == "completed"
    assert (task.polls, task.polls_after_terminal) == (3, 1)


async def test_clock_drives_refresh_ticks(launch, http, clock):
    """Refresh ticks are counted on the injected clock: a query sees the last tick's state."""
    sim = await launch(clock=clock, duration=(100.0, 100.0), refresh=15.0)
    created = await create(http, sim)
    clock.advance(29.0)
    answer = await query(http, sim, created["id"])
    assert answer["progress"] == 15
    assert answer["status_update_time"] == created["status_update_time"] + 15
    clock.advance(1.0)
    assert (await query(http, sim, created["id"]))["progress"] == 30
    assert sim.tasks[created["id"]].terminal_at - sim.tasks[created["id"]].created == 105.0


async def test_clock_drives_the_rate_limit_window(launch, http, clock):
    """The rate limit's sliding window slides on the injected clock."""
    sim = await launch(clock=clock, rate_limit=(2, 10.0))
    url = sim.url + "/v1/video/query?id=x"
    statuses = [(await fetch(http, "GET", url))[0] for _ in range(3)]
    assert statuses == [400, 400, 429]
    clock.advance(9.9)
    assert (await fetch(http, "GET", url))[0] == 429
    clock.advance(0.1)
    assert [(await fetch(http, "GET", url))[0] for _ in range(3)] == [400, 400, 429]
    assert sim.faults_served["limit_429"] == sim.rate_limited == 3


async def test_clock_drives_url_expiry_and_wall_times(launch, http, clock):
    """Wall times in answers and URL expiry follow the clock from the wall time at start."""
    sim = await launch(clock=clock, duration=(0.0, 0.0), url_ttl=60.0)
    clock.advance(3600.0)
    created = await create(http, sim)
    assert abs(created["status_update_time"] - (time.time() + 3600)) < 5
    url = (await query(http, sim, created["id"]))["video_url"]
    expires = int(re.search(r"expires=(\d+)", url)[1])  # type: ignore[index]
    assert abs(expires - (time.time() + 3660)) < 5
    assert (await fetch(http, "GET", url, headers={}))[0] == 200
    clock.advance(61.0)
    status, _, body = await fetch(http, "GET", url, headers={})
    assert status == 403
    assert b"Request has expired" in body


async def test_request_records_read_the_clock(launch, http, clock):
    """Each request record's at is the injected clock; its wall is consistent with it."""
    sim = await launch(clock=clock)
    await fetch(http, "GET", sim.url + "/v1/video/query?id=x")
    clock.advance(12.5)
    await fetch(http, "GET", sim.url + "/v1/video/query?id=x")
    first, second = sim.requests
    assert (first.at, second.at) == (clock.now - 12.5, clock.now)
    assert second.wall - first.wall == pytest.approx(12.5)
    assert abs(first.wall - time.time()) < 5
    assert sim.max_rate(10.0) == 1


async def test_finish_reads_the_clock(launch, http, clock):
    """finish stamps the terminal instant from the injected clock."""
    sim = await launch(clock=clock, duration=(100.0, 100.0))
    task_id = (await create(http, sim))["id"]
    clock.advance(7.0)
    sim.finish(task_id)
    task = sim.tasks[task_id]
    assert task.terminal_at == clock.now
    assert task.wall_terminal_at - task.wall_created == pytest.approx(7.0)


# time_scale


async def test_time_scale_divides_durations_refresh_and_unknown(launch, http, clock):
    """time_scale divides the task duration, the refresh period and the unknown period."""
    sim = await launch(
        clock=clock, duration=(40.0, 40.0), refresh=20.0, unknown_for=10.0, time_scale=40.0
    )
    task_id = (await create(http, sim))["id"]
    task = sim.tasks[task_id]
    assert task.duration == 1.0
    assert (task.refresh, task.unknown_for) == (0.5, 0.25)
    assert task.terminal_at - task.created == 1.0
    clock.advance(0.2)
    assert (await query(http, sim, task_id))["status"] == "unknown"
    clock.advance(0.4)
    assert (await query(http, sim, task_id))["progress"] == 50  # the tick at 0.5 s
    assert sim.time_scale == 40.0


async def test_time_scale_divides_a_duration_callable(launch, http):
    """A duration callable's seconds are divided by time_scale too."""
    sim = await launch(duration=lambda model, rng: 30.0, time_scale=10.0)
    task_id = (await create(http, sim))["id"]
    assert sim.tasks[task_id].duration == 3.0


async def test_time_scale_divides_the_rate_limit_window(launch, http, clock):
    """A rate limit of 2 per 40 s at time_scale 40 is 2 per second."""
    sim = await launch(clock=clock, rate_limit=(2, 40.0), time_scale=40.0)
    url = sim.url + "/v1/video/query?id=x"
    assert [(await fetch(http, "GET", url))[0] for _ in range(3)] == [400, 400, 429]
    clock.advance(1.0)
    assert (await fetch(http, "GET", url))[0] == 400


async def test_time_scale_divides_url_ttl(launch, http, clock):
    """A url_ttl of 12 h at time_scale 3600 expires in 12 s of the clock."""
    sim = await launch(clock=clock, duration=(0.0, 0.0), url_ttl=12 * 3600.0, time_scale=3600)
    task_id = (await create(http, sim))["id"]
    url = (await query(http, sim, task_id))["video_url"]
    clock.advance(11.0)
    assert (await fetch(http, "GET", url, headers={}))[0] == 200
    clock.advance(2.0)
    assert (await fetch(http, "GET", url, headers={}))[0] == 403


@pytest.mark.parametrize(
    ("retry_after", "time_scale", "header"),
    [(1.0, 1.0, "1"), (1.2, 1.0, "2"), (1.0, 40.0, "0.025"), (3.0, 2.0, "1.5"), (4, 2, "2")],
)
async def test_time_scale_divides_retry_after(launch, http, retry_after, time_scale, header):
    """Retry-After is rounded up to whole seconds, then scaled: a decimal if not whole."""
    sim = await launch(rate_limit=(1, 10.0), retry_after=retry_after, time_scale=time_scale)
    replies = [await fetch(http, "GET", sim.url + "/v1/video/query?id=x") for _ in range(2)]
    assert replies[1][0] == 429
    assert replies[1][1]["Retry-After"] == header


async def test_time_scale_divides_latency_and_injected_delays(launch, http):
    """latency and inject's delay are divided by time_scale: 4 s at 40x is 0.1 s."""
    sim = await launch(latency=4.0, time_scale=40.0)
    sim.inject("query", delay=8.0)
    url = sim.url + "/v1/video/query?id=x"
    timings = []
    for _ in range(2):
        started = time.monotonic()
        await fetch(http, "GET", url)
        timings.append(time.monotonic() - started)
    assert 0.3 <= timings[0] < 1.5
    assert 0.1 <= timings[1] < 0.3


async def test_time_scale_divides_poll_after_ms(launch, http):
    """poll_after_ms is sent on GET /v1/videos/{id} only, divided by time_scale."""
    sim = await launch(poll_after_ms=2000, time_scale=4.0)
    plain = await launch()
    for simulator, expected in ((sim, "500"), (plain, None)):
        _, _, answer = await fetch(http, "POST", simulator.url + "/v1/videos", json={"prompt": "p"})
        _, headers, _ = await fetch(http, "GET", f"{simulator.url}/v1/videos/{answer['id']}")
        assert headers.get("openai-poll-after-ms") == expected
        _, unified, _ = await fetch(
            http, "GET", simulator.url + "/v1/video/query", params={"id": answer["id"]}
        )
        assert "openai-poll-after-ms" not in unified


@pytest.mark.parametrize("time_scale", [0, -1.0, float("inf"), float("nan")])
def test_time_scale_must_be_positive(time_scale):
    """A time_scale that is not a positive finite number is refused."""
    with pytest.raises(ValueError, match="time_scale"):
        Simulator(time_scale=time_scale)


async def test_the_default_clock_is_real_time(launch, http):
    """Without a clock, instants are time.monotonic() and wall times time.time()."""
    sim = await launch(duration=(0.2, 0.2))
    before = time.monotonic()
    task_id = (await create(http, sim))["id"]
    task = sim.tasks[task_id]
    assert before <= task.created <= time.monotonic()
    assert abs(task.wall_created - time.time()) < 1
    await asyncio.sleep(task.terminal_at - time.monotonic() + 0.02)
    assert (await query(http, sim, task_id))["status"] == "completed"
