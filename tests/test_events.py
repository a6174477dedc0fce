"""The event hook: requests, answers, 429s and pauses, job outcomes; a raising hook is harmless."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

import octovid
from octovid._transport import Transport

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.2, refresh=0.0)


def client_of(sim, events: list[octovid.Event] | None = None, **options) -> octovid.Client:
    options.setdefault("rate_limit", 50)
    options.setdefault("poll", FAST)
    hook = None if events is None else events.append
    return octovid.Client(api_key=sim.api_key, base_url=sim.url, on_event=hook, **options)


async def test_a_generated_and_downloaded_video_tells_every_request_answer_and_its_end(
    launch, tmp_path
):
    """Each request is told sent then answered with its status; the job's end is told once."""
    sim = await launch(duration=(0.2, 0.3), result_url="proxy")
    events: list[octovid.Event] = []
    async with client_of(sim, events) as client:
        task = await client.generate(octovid.SoraRequest("a cat"))
        await client.download(task, tmp_path)
        await asyncio.sleep(0)  # done callbacks run soon after the job ends
        stats = client.stats
    sent = [e for e in events if isinstance(e, octovid.RequestSent)]
    answers = [e for e in events if isinstance(e, octovid.Answered)]
    assert [e.kind for e in sent] == [e.kind for e in answers]
    assert sent[0].kind == "create" and sent[0].method == "POST"
    assert sent[0].url == sim.url + "/v1/video/create"
    assert {e.kind for e in sent} == {"create", "query", "download"}
    assert len(sent) == stats.requests
    assert [e.kind for e in sent].count("query") == stats.polls
    assert all(e.status == 200 and e.error is None and e.seconds >= 0 for e in answers)
    assert all("?" not in e.url for e in sent)
    finished = [e for e in events if isinstance(e, octovid.JobFinished)]
    assert finished == [octovid.JobFinished(
        outcome="completed", task_id=task.id, model="sora-2", status=octovid.Status.COMPLETED,
        seconds=finished[0].seconds,
    )]
    assert finished[0].seconds > 0.1
    assert sim.api_key not in repr(events)


async def test_a_429_with_a_key_wide_retry_after_tells_the_refusal_and_the_pause(launch):
    """A 429 is told as an answer, a RateLimited with its Retry-After, then the pause."""
    sim = await launch(duration=(0.1, 0.2))
    sim.inject("create", status=429, retry_after=1.0)
    events: list[octovid.Event] = []
    with octovid.testing.instant_retries():
        async with client_of(sim, events) as client:
            await client.generate(octovid.GrokRequest("a cat"))
            await asyncio.sleep(0)
    kinds = [e.name for e in events]
    first = kinds.index("rate_limited")
    assert kinds[first - 1:first + 2] == ["answer", "rate_limited", "pause"]
    refused = events[first - 1]
    assert isinstance(refused, octovid.Answered)
    assert (refused.status, refused.error) == (429, "RateLimitError")
    assert events[first] == octovid.RateLimited("create", 1.0)
    pause = events[first + 1]
    assert isinstance(pause, octovid.Paused) and 0.5 < pause.seconds <= 1.0
    assert kinds.count("pause") == 1
    assert kinds[-1] == "job"


async def test_an_upstream_429_is_told_without_a_pause(launch):
    """A 429 of a saturated upstream (no key-wide signal) is told, and no pause follows."""
    sim = await launch(duration=(0.1, 0.2))
    sim.inject("create", status=429, code="fail_to_fetch_task", retry_after=1.0)
    events: list[octovid.Event] = []
    with octovid.testing.instant_retries():
        async with client_of(sim, events) as client:
            await client.generate(octovid.GrokRequest("a cat"))
            await asyncio.sleep(0)
    assert [e for e in events if isinstance(e, octovid.RateLimited)] == [
        octovid.RateLimited("create", 1.0)
    ]
    assert not [e for e in events if isinstance(e, octovid.Paused)]


async def test_job_outcomes_are_told_as_failed_timeout_error_and_cancelled(launch):
    """Each way a job ends is told with its outcome, task id and error name."""
    sim = await launch(duration=(0.1, 0.2))
    events: list[octovid.Event] = []
    async with client_of(sim, events) as client:
        failing = await client.create(octovid.SoraRequest("will fail"))
        sim.finish(failing.id, fail="content policy")
        stuck = await client.create(octovid.SoraRequest("never ends"))
        sim.stall(stuck.id)
        failed = client.watch(failing.id)
        late = client.watch(stuck.id, deadline=0.3)
        missing = client.watch("sora-2:task_nope")
        cancelled = client.watch(stuck.id)
        cancelled.cancel()
        await octovid.gather([failed, late, missing], return_exceptions=True)
        pending = client.watch(stuck.id)
    await asyncio.sleep(0)
    ends = {(e.task_id, e.outcome): e for e in events if isinstance(e, octovid.JobFinished)}
    assert ends[(failing.id, "failed")].error == "TaskFailedError"
    assert ends[(failing.id, "failed")].status is octovid.Status.FAILED
    assert ends[(stuck.id, "timeout")].error == "WaitTimeoutError"
    assert ends[("sora-2:task_nope", "error")].error == "TaskNotFoundError"
    assert pending.cancelled()
    assert [e.outcome for e in events if isinstance(e, octovid.JobFinished)
            and e.task_id == stuck.id].count("cancelled") == 2
    assert len(ends) == 4


async def test_no_answer_is_told_with_no_status():
    """A refused connection is an answer with status None and the error's name."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    events: list[octovid.Event] = []
    retry = octovid.RetryPolicy(max_tries=1)
    async with octovid.Client(api_key="k", base_url=f"http://127.0.0.1:{port}",
                              on_event=events.append, retry=retry) as client:
        with pytest.raises(octovid.TransportError):
            await client.get("sora-2:task_x")
    assert [e.name for e in events] == ["request", "answer"]
    answer = events[1]
    assert isinstance(answer, octovid.Answered)
    assert (answer.kind, answer.status, answer.error) == ("query", None, "TransportError")


async def test_a_raising_hook_breaks_nothing_and_is_logged_once(launch, caplog):
    """A hook that raises on every event leaves requests and jobs intact; one log record."""
    sim = await launch(duration=(0.1, 0.2))
    calls = []

    def hook(event: octovid.Event) -> None:
        calls.append(event)
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR, logger="octovid")
    async with octovid.Client(api_key=sim.api_key, base_url=sim.url, rate_limit=50, poll=FAST,
                              on_event=hook) as client:
        tasks = await octovid.gather(client.submit_many(
            [octovid.GrokRequest(f"cat {i}") for i in range(5)]
        ))
        await asyncio.sleep(0)
    assert [t.status for t in tasks] == [octovid.Status.COMPLETED] * 5
    assert len([e for e in calls if isinstance(e, octovid.JobFinished)]) == 5
    assert len(calls) > 10
    records = [r for r in caplog.records if "on_event" in r.getMessage()]
    assert len(records) == 1


async def test_a_client_without_a_hook_uses_the_plain_transport_and_plain_jobs(launch):
    """No hook: the plain Transport and no done callback on jobs, so nothing is paid for it."""
    sim = await launch(duration=(0.1, 0.2))
    async with client_of(sim) as client:
        job = client.submit(octovid.GrokRequest("a cat"))
        assert job._waiters is None
        await job
        assert type(client._transport) is Transport


def test_a_hook_that_is_not_callable_is_refused():
    """``on_event`` must be callable: a clear TypeError names it."""
    with pytest.raises(TypeError, match="on_event"):
        octovid.Client(api_key="k", on_event="print")  # type: ignore[arg-type]
