"""Job: a lean future, resolved once by the watcher, with Future's semantics."""

from __future__ import annotations

import asyncio
import sys

import pytest

import octovid
from octovid import Status, Task
from octovid._jobs import Job

DONE = Task(id="t", status=Status.COMPLETED, raw_status="completed", progress=100)


async def test_a_job_makes_no_future_until_awaited():
    """A new Job holds no asyncio future: 100,000 of them are cheap to build."""
    job = Job(asyncio.get_running_loop(), request=octovid.SoraRequest("x"))
    assert job._waiters is None
    assert sys.getsizeof(job) < 200


async def test_pending_job_raises_like_a_pending_future():
    """result() and exception() of a pending job raise InvalidStateError."""
    job = Job(asyncio.get_running_loop())
    assert not job.done()
    with pytest.raises(asyncio.InvalidStateError):
        job.result()
    with pytest.raises(asyncio.InvalidStateError):
        job.exception()


async def test_a_job_is_resolved_exactly_once():
    """The first outcome wins; later ones are refused and change nothing."""
    job = Job(asyncio.get_running_loop())
    assert job._finish(DONE)
    assert not job._finish(octovid.ProtocolError("late"))
    assert not job.cancel()
    assert job.result() is DONE and job.exception() is None
    assert await job is DONE


async def test_an_error_outcome_raises_on_await_and_result():
    """A job that failed raises its error when awaited, and from result()."""
    job = Job(asyncio.get_running_loop())
    error = octovid.TaskFailedError(Task(id="t", status=Status.FAILED, error="policy"))
    job._finish(error)
    assert job.exception() is error
    with pytest.raises(octovid.TaskFailedError):
        job.result()
    with pytest.raises(octovid.TaskFailedError):
        await job


async def test_a_cancelled_job_is_cancelled_for_every_reader():
    """cancel() resolves the job cancelled: awaiting, result() and exception() all raise."""
    job = Job(asyncio.get_running_loop())
    waiter = asyncio.ensure_future(_await(job))
    await asyncio.sleep(0)
    assert job.cancel()
    assert job.cancelled() and job.done()
    with pytest.raises(asyncio.CancelledError):
        job.result()
    with pytest.raises(asyncio.CancelledError):
        job.exception()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def _await(job: Job) -> Task:
    return await job


async def test_done_callbacks_run_soon_even_when_added_late():
    """Callbacks run on the loop after resolution, also those added after it."""
    job = Job(asyncio.get_running_loop())
    calls: list[str] = []
    job.add_done_callback(lambda j: calls.append("before"))
    job._finish(DONE)
    job.add_done_callback(lambda j: calls.append("after"))
    assert calls == []  # not synchronously, as with futures
    await asyncio.sleep(0)
    assert calls == ["before", "after"]


async def test_awaiting_a_job_is_shielded():
    """A waiter cancelled by wait_for leaves the job pending; a later await gets the outcome."""
    job = Job(asyncio.get_running_loop())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_await(job), 0.01)
    assert not job.done()
    job._finish(DONE)
    assert await job is DONE


async def test_created_resolves_with_the_first_snapshot_or_the_outcome():
    """created() gives the first snapshot; if the job ends first, its outcome."""
    loop = asyncio.get_running_loop()
    job = Job(loop)
    waiting = asyncio.ensure_future(job.created())
    await asyncio.sleep(0)
    first = Task(id="t", status=Status.QUEUED, raw_status="queued")
    job._update(first)
    assert await waiting is first
    failed = Job(loop)
    failed._finish(octovid.AuthenticationError(401, "Invalid token"))
    with pytest.raises(octovid.AuthenticationError):
        await failed.created()


async def test_updates_stream_each_change_and_end_with_the_outcome():
    """updates() yields each new status or progress once, then stops at the end."""
    job = Job(asyncio.get_running_loop())
    seen: list[tuple[str, int | None]] = []

    async def read() -> None:
        async for task in job.updates():
            seen.append((task.raw_status, task.progress))

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0)
    for progress in (0, 0, 40, 40, 80):
        job._update(Task(id="t", status=Status.PROCESSING, raw_status="running",
                         progress=progress))
    job._finish(DONE)
    await reader
    assert seen == [("running", 0), ("running", 40), ("running", 80), ("completed", 100)]
