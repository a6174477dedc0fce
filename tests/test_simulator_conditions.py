"""octovid.testing.Simulator's random conditions and storms, over real HTTP.

Proportions are checked on seeded runs of hundreds of requests, with tolerances of about four
standard deviations, so a change of seed would not break them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs
import pytest

from octovid.testing import Conditions, Simulator

AUTH = {"Authorization": "Bearer sim-key"}
SORA = {"model": "sora-2", "prompt": "p"}
SATURATED = "当前分组上游负载已饱和，请稍后再试"  # noqa: RUF001

Launch = Callable[..., Awaitable[Simulator]]


@attrs.frozen
class Reply:
    status: int  # 0: the connection was closed without an answer
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def fetch(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] = AUTH,
    **kwargs: Any,
) -> Reply:
    """One request; a closed connection is a Reply with status 0."""
    try:
        async with http.request(method, url, headers=headers, **kwargs) as response:
            return Reply(response.status, response.headers, await response.read())
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return Reply(0, {}, b"")


async def creates(http: aiohttp.ClientSession, sim: Simulator, count: int) -> list[Reply]:
    return [
        await fetch(http, "POST", sim.url + "/v1/video/create", json=SORA) for _ in range(count)
    ]


async def queries(http: aiohttp.ClientSession, sim: Simulator, count: int) -> list[Reply]:
    url = sim.url + "/v1/video/query?id=x"
    return [await fetch(http, "GET", url) for _ in range(count)]


def near(count: int, total: int, probability: float, sigmas: float = 4.0) -> bool:
    """Whether ``count`` of ``total`` is within ``sigmas`` standard deviations of expected."""
    expected = total * probability
    return abs(count - expected) <= sigmas * (total * probability * (1 - probability)) ** 0.5


# Sporadic 429s


async def test_sporadic_429_on_creates_and_queries_with_the_gateway_codes(launch, http):
    """sporadic_429 refuses that share of creates and queries with both upstream codes."""
    sim = await launch(sporadic_429=0.2, seed=1)
    replies = await creates(http, sim, 600) + await queries(http, sim, 600)
    limited = [reply for reply in replies if reply.status == 429]
    assert near(sum(1 for r in replies[:600] if r.status == 429), 600, 0.2)
    assert near(sum(1 for r in replies[600:] if r.status == 429), 600, 0.2)
    bodies = collections.Counter(reply.body for reply in limited)
    saturated = {"code": "fail_to_fetch_task", "message": SATURATED, "data": None}
    concurrency = {
        "code": "token_concurrency_limit_reached",
        "message": "token_concurrency_limit_reached",
        "data": None,
    }
    assert {reply.body for reply in limited} == {
        r.body for r in limited if r.json() in (saturated, concurrency)
    }
    share = sum(n for body, n in bodies.items() if b"fail_to_fetch_task" in body) / len(limited)
    assert 0.35 < share < 0.65
    assert all("Retry-After" not in reply.headers for reply in limited)
    assert len(sim.tasks) == 600 - sum(1 for r in replies[:600] if r.status == 429)
    assert sim.faults_served["sporadic_429"] == sim.rate_limited == len(limited)


async def test_sporadic_429_whatever_the_rate(launch, http):
    """Sporadic 429s come even at a crawl: slowing down does not make them stop."""
    sim = await launch(sporadic_429=0.5, seed=2)
    statuses = []
    for _ in range(20):
        statuses.append((await fetch(http, "GET", sim.url + "/v1/video/query?id=x")).status)
        await asyncio.sleep(0.01)
    assert 429 in statuses[10:]
    assert 400 in statuses


async def test_sporadic_429_creates_only(launch, http):
    """sporadic_429_creates_only spares queries."""
    sim = await launch(sporadic_429=0.5, sporadic_429_creates_only=True, seed=3)
    assert {reply.status for reply in await queries(http, sim, 200)} == {400}
    assert near(sum(1 for r in await creates(http, sim, 200) if r.status == 429), 200, 0.5)


async def test_sporadic_retry_after_share_and_scaled_value(launch, http):
    """sporadic_retry_after is the share of sporadic 429s with Retry-After, value time-scaled."""
    sim = await launch(
        sporadic_429=1.0,
        sporadic_retry_after=0.4,
        sporadic_retry_after_value=2.0,
        time_scale=8.0,
        seed=4,
    )
    limited = await queries(http, sim, 500)
    assert {reply.status for reply in limited} == {429}
    values = [reply.headers.get("Retry-After") for reply in limited]
    assert set(values) == {None, "0.25"}
    assert near(values.count("0.25"), 500, 0.4)


async def test_sporadic_429_spares_the_cdn_and_content(launch, http):
    """Sporadic 429s are for creates and queries: not the CDN, not /content."""
    sim = await launch(duration=(0.0, 0.0))
    reply = await fetch(http, "POST", sim.url + "/v1/video/create", json=SORA)
    task_id = reply.json()["id"]
    video_url = (await fetch(http, "GET", sim.url + f"/v1/video/query?id={task_id}")).json()[
        "video_url"
    ]
    spoiled = await launch(sporadic_429=1.0, error_rate=0.0)
    assert (await fetch(http, "GET", video_url, headers={})).status == 200
    assert (await fetch(http, "GET", spoiled.url + "/v1/videos/x/content")).status == 404
    assert (await fetch(http, "GET", spoiled.url + "/v1/nothing")).status == 404


# Storms


async def test_storm_refuses_everything_for_its_duration(launch, http):
    """sim.storm(d): every gateway request answered within d seconds gets the limit's 429."""
    clock = FakeClock()
    sim = await launch(clock=clock, rate_limit_body="task", retry_after=2.0)
    sim.storm(3.0)
    during = await queries(http, sim, 5)
    during += await creates(http, sim, 5)
    assert {reply.status for reply in during} == {429}
    assert during[0].json() == {"code": "fail_to_fetch_task", "message": SATURATED, "data": None}
    assert during[0].headers["Retry-After"] == "2"
    assert sim.tasks == {}
    clock.advance(2.9)
    assert (await queries(http, sim, 1))[0].status == 429
    clock.advance(0.1)
    assert (await queries(http, sim, 1))[0].status == 400
    assert sim.faults_served["storm_429"] == sim.rate_limited == 11


async def test_storm_is_decided_at_answer_time(launch, http):
    """Requests that arrived before a storm and are answered during it get 429 too."""
    sim = await launch(latency=0.2)
    in_flight = [
        asyncio.create_task(fetch(http, "GET", sim.url + "/v1/video/query?id=x")) for _ in range(20)
    ]
    await asyncio.sleep(0.1)
    assert len(sim.requests) == 0  # all of them arrived, none answered
    sim.storm(0.5)
    assert {reply.status for reply in await asyncio.gather(*in_flight)} == {429}
    assert all(record.at < time.monotonic() - 0.1 for record in sim.requests)


async def test_scheduled_storms_count_from_start(launch, http):
    """storms=[(start, duration)] refuse every request in each (time-scaled) span after start."""
    clock = FakeClock(now=5000.0)
    sim = await launch(clock=clock, storms=[(10.0, 2.0), (20.0, 1.0)], time_scale=2.0)
    timeline = {}
    for at in (0.0, 4.9, 5.0, 5.9, 6.0, 9.9, 10.0, 10.4, 10.5):
        clock.now = 5000.0 + at
        timeline[at] = (await queries(http, sim, 1))[0].status
    assert timeline == {
        0.0: 400,
        4.9: 400,
        5.0: 429,
        5.9: 429,
        6.0: 400,
        9.9: 400,
        10.0: 429,
        10.4: 429,
        10.5: 400,
    }


async def test_storm_body_follows_rate_limit_body(launch, http):
    """A storm's 429 has the rate limit's body: here an empty one."""
    sim = await launch(rate_limit_body="empty")
    sim.storm(10.0)
    reply = (await queries(http, sim, 1))[0]
    assert (reply.status, reply.body) == (429, b"")
    assert "Retry-After" not in reply.headers


def test_storm_needs_a_positive_duration():
    """sim.storm refuses a duration that is not positive."""
    with pytest.raises(ValueError):
        Simulator().storm(0)


# 5xx, drops, slow answers


async def test_error_rate_serves_502_and_503_as_json_or_html(launch, http):
    """error_rate answers 502 or 503, half JSON do_request_failed, half an nginx page."""
    sim = await launch(error_rate=0.3, seed=5)
    replies = await queries(http, sim, 800)
    errors = [reply for reply in replies if reply.status >= 500]
    assert near(len(errors), 800, 0.3)
    assert {reply.status for reply in errors} == {502, 503}
    assert 0.35 < sum(1 for r in errors if r.status == 502) / len(errors) < 0.65
    html = [reply for reply in errors if reply.headers["Content-Type"].startswith("text/html")]
    assert 0.35 < len(html) / len(errors) < 0.65
    assert all(b"<center>nginx</center>" in reply.body for reply in html)
    for reply in errors:
        if reply not in html:
            assert reply.json()["code"] == "do_request_failed"
            assert reply.json()["data"] is None
    assert sim.faults_served["error"] == len(errors)
    assert sim.rate_limited == 0


async def test_drop_before_creates_nothing_and_is_recorded(launch, http):
    """drop_before_rate closes connections unanswered: no task, status 0, one record each."""
    sim = await launch(drop_before_rate=0.25, seed=6)
    replies = await creates(http, sim, 400)
    dropped = sum(1 for reply in replies if reply.status == 0)
    assert near(dropped, 400, 0.25)
    assert len(sim.tasks) == 400 - dropped
    assert len(sim.requests) == 400  # the gateway saw every request the client sent
    assert sum(1 for record in sim.requests if record.status == 0) == dropped
    assert sim.faults_served["drop_before"] == dropped


async def test_drop_after_creates_and_bills_the_task(launch, http):
    """drop_after_rate creates the task and takes its quota, then closes the connection."""
    sim = await launch(drop_after_rate=0.5, quota=20, seed=7)
    replies = []
    while not any(reply.status == 403 for reply in replies):
        replies += await creates(http, sim, 1)
        assert len(replies) < 200
    dropped = [record for record in sim.requests if record.status == 0]
    assert len(sim.tasks) == 20  # the quota is spent on answered and unanswered creates alike
    assert (
        sum(1 for reply in replies if reply.status == 200)
        + len([record for record in dropped if record.task_id is not None])
        == 20
    )
    assert sim.faults_served["drop_after"] == len(dropped) > 3
    assert {reply.status for reply in replies} == {0, 200, 403}


async def test_drop_after_is_for_creates_only(launch, http):
    """drop_after_rate never touches queries."""
    sim = await launch(drop_after_rate=1.0)
    assert {reply.status for reply in await queries(http, sim, 20)} == {400}


async def test_slow_create_creates_its_task_first(launch, http):
    """A slow create is accepted before its delay: a client that times out does not know."""
    sim = await launch(slow_rate=1.0, slow_delay=12.0, time_scale=40.0)
    with pytest.raises(TimeoutError):
        async with http.post(
            sim.url + "/v1/video/create",
            json=SORA,
            headers=AUTH,
            timeout=aiohttp.ClientTimeout(total=0.1),
        ):
            pass
    assert len(sim.tasks) == 1
    await asyncio.sleep(0.3)
    assert sim.faults_served["slow"] == 1
    assert sim.requests[0].status == 200


async def test_slow_query_is_late_by_slow_delay(launch, http):
    """A slow query answers slow_delay (time-scaled) late, with the state at answer time."""
    sim = await launch(slow_rate=0.5, slow_delay=6.0, time_scale=40.0, seed=8)
    timings = []
    for _ in range(40):
        started = time.monotonic()
        await fetch(http, "GET", sim.url + "/v1/video/query?id=x")
        timings.append(time.monotonic() - started)
    slow = [timing for timing in timings if timing >= 0.15]
    assert len(slow) == sim.faults_served["slow"]
    assert 8 <= len(slow) <= 32
    assert all(timing < 0.1 for timing in timings if timing < 0.15)


async def test_storm_hits_a_slow_query_at_answer_time(launch, http):
    """A slow query answered during a storm that began while it waited gets 429."""
    sim = await launch(slow_rate=1.0, slow_delay=0.3)
    pending = asyncio.create_task(fetch(http, "GET", sim.url + "/v1/video/query?id=x"))
    await asyncio.sleep(0.1)
    sim.storm(1.0)
    assert (await pending).status == 429


# Unknown ids, stuck tasks


async def test_not_found_for_hides_new_tasks_from_queries(launch, http):
    """Within not_found_for of its create, a task's queries answer 400 task_not_exist."""
    clock = FakeClock()
    sim = await launch(clock=clock, not_found_for=5.0, duration=(100.0, 100.0))
    task_id = (await fetch(http, "POST", sim.url + "/v1/video/create", json=SORA)).json()["id"]
    openai = (await fetch(http, "POST", sim.url + "/v1/videos", json=SORA)).json()["id"]
    native = (await fetch(http, "POST", sim.url + "/v1/video/generations", json=SORA)).json()[
        "data"
    ]["task_id"]
    urls = [
        sim.url + f"/v1/video/query?id={task_id}",
        sim.url + f"/v1/videos/{openai}",
        sim.url + f"/v1/video/generations/{native}",
    ]
    clock.advance(4.9)
    early = [await fetch(http, "GET", url) for url in urls]
    assert [(reply.status, reply.json()["code"]) for reply in early] == [
        (400, "task_not_exist")
    ] * 3
    clock.advance(0.1)
    assert [(await fetch(http, "GET", url)).status for url in urls] == [200] * 3
    assert sim.faults_served["not_found"] == 3
    assert [task.polls for task in sim.tasks.values()] == [1, 1, 1]
    assert [record.task_id for record in sim.requests[3:6]] == [task_id, openai, native]


async def test_stuck_tasks_never_finish_and_freeze_their_progress(launch, http):
    """stuck_rate tasks run forever with a frozen progress, until sim.finish."""
    clock = FakeClock()
    sim = await launch(clock=clock, stuck_rate=1.0, duration=(100.0, 100.0), seed=9)
    task_id = (await fetch(http, "POST", sim.url + "/v1/video/create", json=SORA)).json()["id"]
    task = sim.tasks[task_id]
    assert task.stuck and task.terminal_at == float("inf")
    assert 20 <= task.frozen_after <= 80
    seen = []
    for _ in range(5):
        clock.advance(1000.0)
        reply = await fetch(http, "GET", sim.url + f"/v1/video/query?id={task_id}")
        seen.append((reply.json()["status"], reply.json()["progress"]))
    assert seen == [("in_progress", str(int(task.frozen_after)))] * 5
    assert sim.faults_served["stuck"] == 1
    sim.finish(task_id)
    reply = await fetch(http, "GET", sim.url + f"/v1/video/query?id={task_id}")
    assert reply.json()["status"] == "completed"


async def test_stuck_rate_share_and_separate_random_stream(launch, http):
    """stuck_rate picks that share of tasks, and leaves the tasks' drawn plans unchanged."""
    plans = []
    for stuck_rate in (0.0, 0.3):
        sim = await launch(stuck_rate=stuck_rate, duration=(1.0, 9.0), failure_rate=0.5, seed=10)
        await creates(http, sim, 300)
        plans.append([(task.duration, task.outcome) for task in sim.tasks.values()])
        stuck = sum(1 for task in sim.tasks.values() if task.stuck)
    assert plans[0] == plans[1]
    assert near(stuck, 300, 0.3)


# Counting, seeds, validation


async def test_rate_limited_counts_every_429(launch, http):
    """rate_limited counts the limit's, the storms', the sporadic and injected 429s alike."""
    clock = FakeClock()
    sim = await launch(clock=clock, rate_limit=(3, 10.0), sporadic_429=0.5, seed=11)
    sim.inject("query", status=429, body="empty")
    replies = await queries(http, sim, 5)
    clock.advance(10.0)
    sim.storm(1.0)
    replies += await queries(http, sim, 2)
    statuses = [reply.status for reply in replies]
    served = sim.faults_served
    assert served["limit_429"] == 2
    assert served["storm_429"] == 2
    assert served["injected"] == 1
    assert sim.rate_limited == statuses.count(429) == 5 + served["sporadic_429"]
    assert sum(1 for record in sim.requests if record.status == 429) == sim.rate_limited


async def test_scripted_faults_take_the_place_of_random_ones(launch, http):
    """An injected fault is served for its request instead of a random condition."""
    sim = await launch(error_rate=1.0)
    sim.inject("query", status=418, times=2)
    statuses = [reply.status for reply in await queries(http, sim, 4)]
    assert statuses[:2] == [418, 418]
    assert set(statuses[2:]) <= {502, 503}
    assert (sim.faults_served["injected"], sim.faults_served["error"]) == (2, 2)


async def test_a_seed_replays_the_same_faults(launch, http):
    """The same seed serves the same faults to the same sequence of requests."""
    runs = []
    for _ in range(2):
        sim = await launch(
            seed=12,
            sporadic_429=0.1,
            error_rate=0.1,
            drop_before_rate=0.05,
            drop_after_rate=0.05,
            stuck_rate=0.2,
        )
        replies = await creates(http, sim, 100) + await queries(http, sim, 100)
        runs.append(([reply.status for reply in replies], dict(sim.faults_served)))
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    "options",
    [
        {"sporadic_429": 1.5},
        {"error_rate": -0.1},
        {"sporadic_retry_after": 2.0},
        {"slow_delay": -1.0},
        {"not_found_for": -1.0},
        {"sporadic_429": 0.6, "error_rate": 0.5},
        {"storms": [(-1.0, 1.0)]},
        {"storms": [(1.0, 0.0)]},
        {"poll_after_ms": -1},
    ],
)
def test_impossible_conditions_are_refused(options):
    """Probabilities outside [0, 1], a total over 1 and negative durations are refused."""
    with pytest.raises(ValueError):
        Simulator(**options)


def test_conditions_describe_what_is_on():
    """Conditions.describe lists the conditions that are on, or says there are none."""
    assert Conditions().describe() == "no faults"
    described = Conditions(sporadic_429=0.05, storms=[(10, 1.5)], stuck_rate=0.01).describe()
    assert described == "sporadic_429=0.05 storms=[10/1.5] stuck_rate=0.01"
