"""octovid.sync: the blocking facade over the async client, against the simulator."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

import octovid
import octovid.sync
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.2, refresh=0.0)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator serving from a thread of its own, for tests that block."""
    with Simulator(duration=(0.1, 0.3), seed=3).run_in_thread() as simulator:
        yield simulator


def sync_client(sim: Simulator, **options) -> octovid.sync.Client:
    options.setdefault("rate_limit", 50)
    options.setdefault("poll", FAST)
    return octovid.sync.Client(api_key=sim.api_key, base_url=sim.url, **options)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "octovid-sync"]


def test_generate_get_and_download_block_and_return_their_values(sim, tmp_path):
    """generate returns the COMPLETED task, get queries it, download writes the file."""
    with sync_client(sim) as client:
        task = client.generate(octovid.GrokRequest("a cat"))
        again = client.get(task.id)
        path = client.download(task, tmp_path)
        stats = client.stats
    assert task.status is octovid.Status.COMPLETED
    assert again.id == task.id and again.status is octovid.Status.COMPLETED
    assert path.parent == tmp_path and path.stat().st_size > 0
    assert (stats.creates, stats.downloads) == (1, 1)


def test_batch_returns_tasks_and_failures_in_the_order_given(sim):
    """batch waits for every job; a failed one is its exception, in its place."""
    with sync_client(sim) as client:
        failing = client.create(octovid.SoraRequest("to fail"))
        sim.finish(failing.id, fail="content policy")
        requests = [octovid.GrokRequest(f"cat {i}") for i in range(4)]
        requests.insert(2, octovid.VideoRequest("no-such-model", "x"))
        results = client.batch(requests)
        with pytest.raises(octovid.TaskFailedError) as caught:
            client.wait(failing.id)
    assert [type(r).__name__ for r in results] == ["Task", "Task", "ServerError", "Task", "Task"]
    assert [r.status for r in results if isinstance(r, octovid.Task)] == (
        [octovid.Status.COMPLETED] * 4
    )
    assert caught.value.task.error == "content policy"


def test_batch_can_raise_the_first_failure(sim):
    """batch(..., return_exceptions=False) raises the first job's error in the caller."""
    with sync_client(sim) as client:
        with pytest.raises(octovid.ServerError, match="model"):
            client.batch([octovid.GrokRequest("ok"), octovid.VideoRequest("no-such-model", "x")],
                         return_exceptions=False)
        with pytest.raises(octovid.ConfigError, match="journal"):
            client.batch([octovid.GrokRequest("ok")], keys=["a"])


def test_errors_are_raised_in_the_calling_thread_with_their_type(sim):
    """A gateway refusal comes back as the same exception class, in the caller's thread."""
    with sync_client(sim) as client:
        with pytest.raises(octovid.TaskNotFoundError):
            client.get("sora-2:task_unknown")
        with pytest.raises(octovid.WaitTimeoutError):
            stuck = client.create(octovid.SoraRequest("stuck"))
            sim.stall(stuck.id)
            client.wait(stuck.id, deadline=0.3)
    with octovid.sync.Client(api_key="", base_url=sim.url) as keyless:
        with pytest.raises(octovid.ConfigError, match="API key"):
            keyless.create(octovid.GrokRequest("x"))


def test_many_threads_share_one_client_its_limiter_and_its_watcher(sim):
    """Eight threads generating at once all get their task; one client counted them all."""
    results: list[octovid.Task] = []
    errors: list[BaseException] = []
    with sync_client(sim) as client:

        def work(i: int) -> None:
            try:
                results.append(client.generate(octovid.GrokRequest(f"cat {i}")))
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = client.stats
    assert errors == []
    assert len({t.id for t in results}) == 8
    assert stats.creates == 8 and stats.pending == 0


def test_close_ends_the_thread_is_idempotent_and_later_calls_fail(sim):
    """close() stops the loop thread; a second close is a no-op; calls after it raise."""
    before = len(loop_threads())
    client = sync_client(sim)
    assert len(loop_threads()) == before + 1
    client.close()
    client.close()
    assert len(loop_threads()) == before
    assert "closed" in repr(client)
    with pytest.raises(RuntimeError, match="closed"):
        client.get("sora-2:task_x")


def test_bad_options_raise_at_construction_and_leave_no_thread():
    """A bad option raises its error from the constructor; the loop thread is ended."""
    before = len(loop_threads())
    with pytest.raises(ValueError, match="timeout"):
        octovid.sync.Client(api_key="k", timeout=-1)
    assert len(loop_threads()) == before


def test_it_works_where_an_event_loop_already_runs(sim):
    """Called from a coroutine (as in a notebook), it blocks but never touches that loop."""

    async def notebook_cell() -> octovid.Task:
        with sync_client(sim) as client:
            return client.generate(octovid.GrokRequest("a cat"))

    assert asyncio.run(notebook_cell()).status is octovid.Status.COMPLETED


def test_a_call_from_its_own_loop_thread_raises_instead_of_deadlocking(sim, tmp_path):
    """A progress callback calling the sync client gets a RuntimeError, not a hang."""
    seen: list[BaseException] = []
    with sync_client(sim) as client:
        task = client.generate(octovid.GrokRequest("a cat"))

        def progress(done: int, total: int | None) -> None:
            try:
                client.get(task.id)
            except RuntimeError as exc:
                seen.append(exc)

        client.download(task, tmp_path, progress=progress)
    assert seen and "own loop thread" in str(seen[0])


def test_call_runs_any_coroutine_of_the_async_client(sim):
    """call(fn) awaits fn(async_client) on the loop: the rest of the API is at hand."""
    with sync_client(sim) as client:
        first = client.call(lambda c: c.submit(octovid.GrokRequest("a cat")).created())
        done = client.wait(first.id)
    assert done.id == first.id and done.status is octovid.Status.COMPLETED


def test_ctrl_c_during_a_wait_stops_that_wait_and_raises_keyboardinterrupt(sim):
    """SIGINT while blocked raises KeyboardInterrupt in the caller; the watch is dropped."""
    assert threading.current_thread() is threading.main_thread()
    with sync_client(sim) as client:
        stuck = client.create(octovid.SoraRequest("stuck"))
        sim.stall(stuck.id)
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.wait(stuck.id, deadline=20)
        assert time.monotonic() - started < 5
        for _ in range(50):
            if client.stats.watching == 0:
                break
            time.sleep(0.02)
        assert client.stats.watching == 0
        assert client.get(stuck.id).id == stuck.id  # still usable after the interruption
