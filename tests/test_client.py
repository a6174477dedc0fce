"""Client against the simulator on loopback: real HTTP, real aiohttp, faults switched on."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time

import aiohttp
import pytest
from yarl import URL

import octovid
from octovid import Status
from octovid._retry import permanent
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.4, deadline=30)
ONE_OF_EACH = [
    octovid.VeoRequest("a cow flying", orientation="landscape"),
    octovid.SoraRequest("a corgi surfing"),
    octovid.GrokRequest("bread rising", aspect_ratio="1:1"),
    octovid.ViduRequest("a fox in snow", duration=5),
    octovid.JimengRequest("lanterns over a lake", size="1080p"),
]


def body_of(request: octovid.Request) -> str:
    return json.dumps(request.to_payload(), sort_keys=True, separators=(",", ":"))


def client_for(sim: Simulator, **options) -> octovid.Client:
    options.setdefault("rate_limit", 50)
    options.setdefault("poll", FAST)
    options.setdefault("retry", octovid.RetryPolicy(max_tries=4, max_time=20))
    return octovid.Client(sim.api_key, sim.url, **options)


def routes(sim: Simulator, route: str) -> list:
    return [record for record in sim.requests if record.route == route]


@pytest.fixture
async def sim():
    async with Simulator(seed=3, duration=(0.3, 0.8)) as simulator:
        yield simulator


async def test_a_get_waiting_for_the_limiter_fails_clearly_when_the_client_closes(sim):
    """close() while a get() waits for its turn raises "client is closed", not a bare cancel."""
    async with client_for(sim, rate_limit=0.5) as client:
        task = await client.create(octovid.GrokRequest("the one slot"))
        waiting = asyncio.ensure_future(client.get(task.id))
        await asyncio.sleep(0.05)
        await client.aclose()
        with pytest.raises(RuntimeError, match="Client is closed"):
            await waiting


# -- idempotency keys within one client ------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.5], ids=["queued", "on-the-wire"])
async def test_one_key_submitted_twice_at_once_is_created_once(sim, tmp_path, delay):
    """A key submitted again before its create answered shares that create and its task."""
    if delay:
        sim.inject("create", delay=delay)
    request = octovid.GrokRequest("a double click")
    async with client_for(sim, journal=tmp_path / "j.db") as client:
        first = client.submit(request, key="k")
        await asyncio.sleep(delay / 2)
        second = client.submit(request, key="k")
        done = await octovid.gather([first, second])
    assert done[0].id == done[1].id
    assert sim.creates_per_body() == {body_of(request): 1}


async def test_a_key_whose_first_job_left_early_is_created_by_the_next(sim, tmp_path):
    """If the first job of a key is cancelled before its create is sent, the second sends it."""
    request = octovid.GrokRequest("changed my mind, then not")
    async with client_for(sim, journal=tmp_path / "j.db", rate_limit=1) as client:
        await client.create(octovid.GrokRequest("takes the first slot"))
        first = client.submit(request, key="k")
        second = client.submit(request, key="k")
        await asyncio.sleep(0)
        first.cancel()
        task = await second
    assert task.status is Status.COMPLETED
    assert sim.creates_per_body()[body_of(request)] == 1


async def test_a_key_resubmitted_after_its_job_was_cancelled_unsent_is_created(sim, tmp_path):
    """Cancel a keyed job still waiting for the limiter, submit the key again: one create."""
    request = octovid.GrokRequest("second thoughts")
    async with client_for(sim, journal=tmp_path / "j.db", rate_limit=1) as client:
        await client.create(octovid.GrokRequest("takes the first slot"))
        first = client.submit(request, key="k")
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0)
        task = await asyncio.wait_for(client.submit(request, key="k"), 20)
    assert task.status is Status.COMPLETED
    assert sim.creates_per_body()[body_of(request)] == 1


async def test_closing_with_followers_of_a_key_waiting_returns(sim, tmp_path):
    """close() while two jobs of one key wait for the limiter resolves both, promptly."""
    async with client_for(sim, journal=tmp_path / "j.db", rate_limit=0.5) as client:
        await client.create(octovid.GrokRequest("takes the first slot"))
        jobs = [client.submit(octovid.GrokRequest("later"), key="k") for _ in range(2)]
        await asyncio.sleep(0.05)
        await asyncio.wait_for(client.aclose(), 10)
    for job in jobs:
        with pytest.raises(asyncio.CancelledError):
            job.result()


# -- create and get: the protocol core -------------------------------------------------------


@pytest.mark.parametrize("borrowed", [False, True], ids=["own-session", "borrowed-session"])
async def test_the_transport_reports_each_request_on_the_wire(sim, borrowed):
    """`sent` fires once per request, after the grant and before the answer, on any session."""
    from octovid._transport import Transport

    loop = asyncio.get_running_loop()
    session = aiohttp.ClientSession() if borrowed else None
    transport = Transport(URL(sim.url), sim.api_key, timeout=10, session=session)
    stamps: list[float] = []
    try:
        asked = loop.time()
        answer = await transport.request(
            "POST", transport.url("/v1/video/create"),
            payload=octovid.GrokRequest("a cat").to_payload(),
            sent=lambda: stamps.append(loop.time()),
        )
        answered = loop.time()
    finally:
        await transport.close()
        if session is not None:
            await session.close()
    assert answer.status == 200
    assert len(stamps) == 1
    assert asked <= stamps[0] <= answered



@pytest.mark.parametrize(
    ("request_", "id_prefix", "first"),
    [
        (ONE_OF_EACH[0], "video_", Status.QUEUED),
        (ONE_OF_EACH[1], "sora-2:task_", Status.QUEUED),
        (ONE_OF_EACH[2], "grok:", Status.PROCESSING),
        (ONE_OF_EACH[3], "", Status.PROCESSING),
        (ONE_OF_EACH[4], "", Status.PROCESSING),
    ],
    ids=["veo", "sora", "grok", "vidu", "jimeng"],
)
async def test_create_and_query_each_family(sim, request_, id_prefix, first):
    """Each family's create and query shapes normalise to one Task keyed by the create id."""
    async with client_for(sim) as client:
        created = await client.create(request_)
        assert created.id.startswith(id_prefix) and created.status is first
        running = await client.get(created.id)
        assert running.id == created.id  # Veo's query answers with another id
        assert not running.terminal
        sim.finish(created.id)
        done = await client.get(created.id)
    assert done.status is Status.COMPLETED
    assert done.video_url is not None and done.video_url.startswith(sim.cdn_url)
    assert done.error is None
    assert sim.creates_per_body() == {body_of(request_): 1}


@pytest.mark.parametrize("request_", ONE_OF_EACH, ids=["veo", "sora", "grok", "vidu", "jimeng"])
async def test_failure_reason_of_each_family(sim, request_):
    """A failed task of any family reads as FAILED with the gateway's reason."""
    async with client_for(sim) as client:
        created = await client.create(request_)
        sim.finish(created.id, fail="content policy violation")
        failed = await client.get(created.id)
    assert failed.status is Status.FAILED
    assert failed.error == "content policy violation"


async def test_invalid_request_sends_nothing(sim):
    """A request the gateway would refuse fails at construction, before any traffic."""
    async with client_for(sim) as client:
        with pytest.raises(octovid.RequestValidationError, match="duration"):
            client.submit(octovid.SoraRequest("x", duration=12))
        with pytest.raises(TypeError, match="octovid request"):
            client.submit_many([octovid.SoraRequest("fine"), {"model": "sora-2"}])  # type: ignore[list-item]
        await asyncio.sleep(0.1)  # had anything been queued, it would be on its way now
        assert client.stats.pending == 0
    assert sim.requests == []


async def test_ambiguous_create_is_not_sent_twice(sim):
    """A create whose connection drops after the gateway took it is not resent: no double bill."""
    sim.inject("create", drop="after")
    request = octovid.SoraRequest("dropped after create")
    async with client_for(sim) as client:
        with pytest.raises(octovid.CreateUncertainError) as info:
            await client.create(request)
    assert info.value.request is request
    assert len(routes(sim, "create")) == 1
    assert sim.creates_per_body() == {body_of(request): 1}


async def test_ambiguous_create_resent_only_when_asked(sim):
    """With retry_ambiguous_create=True the lost create is resent, and may be billed twice."""
    sim.inject("create", drop="after")
    request = octovid.SoraRequest("resend me")
    retry = octovid.RetryPolicy(max_tries=3, retry_ambiguous_create=True)
    async with client_for(sim, retry=retry) as client:
        task = await client.create(request)
    assert task.status is Status.QUEUED
    assert sim.creates_per_body() == {body_of(request): 2}


async def test_slow_create_that_times_out_is_uncertain(sim):
    """A create that times out after the gateway accepted it raises CreateUncertainError."""
    sim.inject("create", delay=1.0)
    request = octovid.VeoRequest("slow")
    async with client_for(sim, timeout=0.3) as client:
        with pytest.raises(octovid.CreateUncertainError):
            await client.create(request)
    assert sim.creates_per_body() == {body_of(request): 1}


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [(502, "json", "do_request_failed"), (500, "json", "fail_to_fetch_task"), (429, "empty", "")],
    ids=["502-json", "500-json", "429-empty"],
)
async def test_create_refused_by_the_gateway_is_retried(sim, status, body, code):
    """A create the gateway surely refused (its 5xx error body, a 429) is sent again."""
    sim.inject("create", status=status, body=body, code=code)
    request = octovid.GrokRequest("retry me")
    async with client_for(sim) as client:
        task = await client.create(request)
        retries = client.stats.retries
    assert task.status is Status.PROCESSING
    assert [r.status for r in routes(sim, "create")] == [status, 200]
    assert sim.creates_per_body() == {body_of(request): 1}
    assert retries == 1


async def test_create_answered_by_a_proxy_page_is_uncertain(sim):
    """A 502 HTML page from a proxy may hide an accepted create: it is not resent."""
    sim.inject("create", status=502, body="html")
    async with client_for(sim) as client:
        with pytest.raises(octovid.CreateUncertainError, match="proxy"):
            await client.create(octovid.ViduRequest("proxy"))
    assert len(routes(sim, "create")) == 1


async def test_create_that_never_connected_is_retried():
    """Connection refused means nothing was sent: the create is retried, then fails clearly."""
    retry = octovid.RetryPolicy(max_tries=3, max_time=10)
    async with octovid.Client("k", "http://127.0.0.1:9", retry=retry) as client:
        with pytest.raises(octovid.TransportError) as info:
            await client.create(octovid.SoraRequest("x"))
        stats = client.stats
    assert not isinstance(info.value, octovid.CreateUncertainError)
    assert info.value.sent is False
    assert "cannot connect to http://127.0.0.1:9" in str(info.value)
    assert stats.requests == 3 and stats.retries == 2


async def test_model_without_channel_fails_at_once(sim):
    """503 model_not_found is permanent: one request, a ServerError naming the code."""
    async with client_for(sim) as client:
        with pytest.raises(octovid.ServerError) as info:
            await client.create(octovid.VideoRequest("kling-v2", "x"))
    assert info.value.code == "model_not_found" and permanent(info.value)
    assert len(sim.requests) == 1
    assert len(routes(sim, "create")) == 1


async def test_bad_key_is_an_authentication_error_that_never_shows_the_key(sim):
    """A wrong key gives AuthenticationError with the request id; the key is in no message."""
    secret = "sk-very-secret-key-123"
    async with octovid.Client(secret, sim.url) as client:
        with pytest.raises(octovid.AuthenticationError) as info:
            await client.get("whatever")
        text = f"{info.value} {info.value!r} {client!r} {client.stats!r}"
    assert info.value.status == 401
    assert info.value.request_id
    assert secret not in text
    assert len(sim.requests) == 1  # 401 is not retried


async def test_quota_exhausted_is_insufficient_quota():
    """A create beyond the account's balance raises InsufficientQuotaError, not retried."""
    async with Simulator(quota=1) as sim, client_for(sim) as client:
        await client.create(octovid.SoraRequest("one"))
        with pytest.raises(octovid.InsufficientQuotaError) as info:
            await client.create(octovid.SoraRequest("two"))
    assert info.value.code == "insufficient_user_quota"
    assert len(routes(sim, "create")) == 2


async def test_unknown_task_id_is_task_not_found(sim):
    """Querying an id the gateway does not know raises TaskNotFoundError (a 400 there)."""
    async with client_for(sim) as client:
        with pytest.raises(octovid.TaskNotFoundError) as info:
            await client.get("video_does-not-exist")
    assert info.value.status == 400 and info.value.code == "task_not_exist"


async def test_get_survives_5xx_pages_and_dropped_connections(sim):
    """A query retries through 503 HTML pages and dropped connections."""
    async with client_for(sim) as client:
        created = await client.create(octovid.SoraRequest("x"))
        sim.inject("query", status=503, body="html")
        sim.inject("query", drop="before", times=2)
        task = await client.get(created.id)
    assert task.id == created.id
    statuses = [r.status for r in routes(sim, "query")]
    assert statuses[0] == 503 and statuses[-1] == 200


async def test_get_honours_retry_after():
    """After a 429 with Retry-After, the next request waits at least that long."""
    async with Simulator(rate_limit=(1, 0.5), retry_after=1.0) as sim, client_for(
        sim, rate_limit=100
    ) as client:
        created = await client.create(octovid.SoraRequest("x"))
        await client.get(created.id)
    queries = [r for r in sim.requests if r.route in ("create", "query")]
    limited = [i for i, r in enumerate(queries) if r.status == 429]
    assert limited, "the test needs a 429"
    first = limited[0]
    assert queries[first + 1].at - queries[first].at >= 0.99


async def test_ids_with_colons_are_url_encoded(sim):
    """A Sora id holds ':'; it reaches the gateway percent-encoded and intact."""
    async with client_for(sim) as client:
        created = await client.create(octovid.SoraRequest("x"))
        await client.get(created.id)
    query = routes(sim, "query")[0]
    assert ":" in created.id
    assert query.raw_path == "/v1/video/query?id=" + created.id.replace(":", "%3A")
    assert query.task_id == created.id


async def test_borrowed_session_is_left_open(sim):
    """A session passed in is used, and not closed by the client."""
    async with aiohttp.ClientSession() as session:
        async with client_for(sim, session=session) as client:
            await client.create(octovid.SoraRequest("x"))
        assert not session.closed
    assert len(routes(sim, "create")) == 1


async def test_missing_key_fails_at_first_use(monkeypatch):
    """Without a key the client builds, and its first request raises ConfigError."""
    monkeypatch.delenv("OCTOVID_API_KEY", raising=False)
    client = octovid.Client()
    with pytest.raises(octovid.ConfigError, match="OCTOVID_API_KEY"):
        await client.create(octovid.SoraRequest("x"))
    await client.aclose()


def test_key_and_base_url_come_from_the_environment(monkeypatch):
    """OCTOVID_API_KEY and OCTOVID_BASE_URL configure a client given neither."""
    monkeypatch.setenv("OCTOVID_API_KEY", "env-key")
    monkeypatch.setenv("OCTOVID_BASE_URL", "http://gateway.test:8080/")
    client = octovid.Client()
    assert client.base_url == "http://gateway.test:8080"
    assert "env-key" not in repr(client)


@pytest.mark.parametrize("url", ["ftp://x", "octopusx.ai", "https://k:s@host", "https://h/?q=1"])
def test_bad_base_url_is_a_config_error(url):
    """A base URL that is not plain http(s) is refused at construction."""
    with pytest.raises(octovid.ConfigError, match="base_url"):
        octovid.Client("k", url)


# -- submit, watch, the watcher against real HTTP -------------------------------------------


async def test_submit_many_resolves_every_job_in_order():
    """A mixed batch resolves every job, in input order, each created exactly once."""
    requests = [
        cls(f"prompt {i}") for i in range(6)
        for cls in (octovid.VeoRequest, octovid.SoraRequest, octovid.GrokRequest,
                    octovid.ViduRequest, octovid.JimengRequest)
    ]
    async with Simulator(seed=5, duration=(0.2, 1.0), failure_rate=0.3) as sim:
        async with client_for(sim) as client:
            jobs = client.submit_many(requests)
            results = await octovid.gather(jobs, return_exceptions=True)
        assert [job.request for job in jobs] == requests
        completed = [r for r in results if isinstance(r, octovid.Task)]
        failed = [r for r in results if isinstance(r, octovid.TaskFailedError)]
        assert len(completed) + len(failed) == len(requests)
        assert failed and completed
        assert all(t.status is Status.COMPLETED and t.video_url for t in completed)
        assert set(sim.creates_per_body().values()) == {1}
        assert len(sim.creates_per_body()) == len(requests)
        assert all(task.polls_after_terminal <= 1 for task in sim.tasks.values())


async def test_requests_never_exceed_the_rate():
    """With demand far above the limit, no window of one second holds more than the rate."""
    async with Simulator(seed=1, duration=(0.3, 0.8)) as sim:
        async with client_for(sim, rate_limit=40) as client:
            jobs = client.submit_many([octovid.SoraRequest(f"p{i}") for i in range(30)])
            await octovid.gather(jobs)
            stats = client.stats
    assert sim.max_rate(1.0) <= 40
    assert stats.limiter_wait > 0


async def test_zero_429s_when_the_limits_match():
    """A client paced at the gateway's own limit is never rate limited."""
    async with Simulator(seed=2, duration=(0.3, 0.8), rate_limit=(40, 1.0)) as sim:
        async with client_for(sim, rate_limit=40) as client:
            await octovid.gather(client.submit_many([octovid.GrokRequest(f"p{i}")
                                                     for i in range(30)]))
    assert sim.rate_limited == 0


@pytest.mark.parametrize(
    ("retry_after", "body"), [(1.0, "json"), (None, "json"), (None, "empty"), (None, "task")],
    ids=["retry-after", "no-retry-after", "empty-body", "task-shape"],
)
async def test_429_storm_slows_down_and_loses_nothing(retry_after, body, caplog):
    """A client 4x faster than the gateway's limit slows down and loses no job nor bills twice."""
    async with Simulator(seed=4, duration=(0.3, 1.0), rate_limit=(10, 0.5),
                         retry_after=retry_after, rate_limit_body=body) as sim:
        with caplog.at_level(logging.INFO, logger="octovid"):
            # The default tries (6): with 4, a create's jittered waits (0-0.5, 0-1, 0-2 s)
            # can all fall within the second the limiter takes to come down to 20/s.
            async with client_for(sim, rate_limit=80, retry=octovid.RetryPolicy()) as client:
                jobs = client.submit_many([octovid.ViduRequest(f"p{i}") for i in range(12)])
                results = await octovid.gather(jobs)
                stats = client.stats
    assert all(task.status is Status.COMPLETED for task in results)
    assert sim.rate_limited > 0
    assert stats.rate_limited == sim.rate_limited
    assert stats.rate < 80
    assert set(sim.creates_per_body().values()) == {1}
    assert any("slowing down" in record.getMessage() for record in caplog.records)


async def test_poll_faults_never_fail_a_job(sim):
    """5xx JSON, 5xx HTML, an empty 429 and dropped connections during polling only delay."""
    async with client_for(sim) as client:
        job = client.submit(octovid.SoraRequest("resilient"))
        await job.created()
        sim.inject("query", status=502, body="html")
        sim.inject("query", status=500, body="json", code="fail_to_fetch_task")
        sim.inject("query", status=429, body="empty")
        sim.inject("query", drop="before", times=2)
        task = await job
    assert task.status is Status.COMPLETED
    assert {r.status for r in routes(sim, "query")} >= {502, 500, 429, 200}


async def test_stuck_task_hits_its_deadline_and_is_not_polled_after(sim):
    """A task that never finishes fails its job at the deadline; polling stops there."""
    async with client_for(sim) as client:
        job = client.submit(octovid.JimengRequest("stuck"), deadline=1.5)
        created = await job.created()
        sim.stall(created.id)
        started = time.monotonic()
        with pytest.raises(octovid.WaitTimeoutError) as info:
            await job
        ended = time.monotonic()
        await asyncio.sleep(0.6)
    assert info.value.task_id == created.id
    assert info.value.task is not None and not info.value.task.terminal
    assert 1.0 <= ended - started <= 2.0
    assert all(r.at <= ended for r in routes(sim, "query") if r.task_id == created.id)


async def test_cancelled_job_is_not_polled_again(sim):
    """After job.cancel() the gateway sees no more queries for that task."""
    async with client_for(sim) as client:
        job = client.submit(octovid.GrokRequest("cancel me"))
        created = await job.created()
        sim.stall(created.id)
        await asyncio.sleep(0.5)
        job.cancel()
        cancelled = time.monotonic()
        await asyncio.sleep(0.8)
    assert job.done()
    late = [r for r in routes(sim, "query") if r.task_id == created.id and r.at > cancelled]
    assert late == []


async def test_close_resolves_pending_jobs_and_stops_traffic(sim):
    """Closing the client resolves every job with CancelledError; no request follows."""
    client = client_for(sim)
    jobs = client.submit_many([octovid.SoraRequest(f"p{i}") for i in range(5)])
    await asyncio.gather(*(job.created() for job in jobs))
    for job in jobs:
        sim.stall(job.id)
    await client.aclose()
    closed = time.monotonic()
    await asyncio.sleep(0.5)
    assert all(job.done() for job in jobs)
    for job in jobs:
        with pytest.raises(asyncio.CancelledError):
            job.result()
    assert all(r.at <= closed for r in sim.requests)
    with pytest.raises(RuntimeError, match="closed"):
        client.submit(octovid.SoraRequest("late"))


async def test_generate_returns_the_completed_task(sim):
    """generate() creates, waits and returns the COMPLETED task."""
    async with client_for(sim) as client:
        task = await client.generate(octovid.VeoRequest("x"))
    assert task.status is Status.COMPLETED and task.video_url


async def test_watch_shares_polls_and_reports_updates(sim):
    """Two watches of one id share polls; updates() rises to the terminal snapshot."""
    async with Simulator(duration=(1.5, 1.5)) as slow, client_for(slow) as client:
        created = await client.create(octovid.SoraRequest("x"))
        first = client.watch(created.id)
        second = client.watch(created.id)
        seen = [task async for task in first.updates()]
        other = await second
    assert seen[-1].status is Status.COMPLETED and other.status is Status.COMPLETED
    progress = [t.progress for t in seen if t.progress is not None]
    assert progress == sorted(progress)
    queries = [r.at for r in routes(slow, "query")]
    assert all(b - a > 0.05 for a, b in itertools.pairwise(queries))


async def test_stats_match_the_gateway_log(sim):
    """Client.stats counts what the gateway saw: requests, creates, polls."""
    async with client_for(sim) as client:
        await octovid.gather(client.submit_many([octovid.SoraRequest(f"p{i}")
                                                 for i in range(4)]))
        stats = client.stats
    assert stats.creates == len(routes(sim, "create")) == 4
    assert stats.polls == len(routes(sim, "query"))
    assert stats.requests == len(sim.requests)
    assert stats.pending == 0 and stats.watching == 0
