"""The benchmark's clients, each run in a subprocess of its own: ``python clients.py < spec``.

The parent (``jobs.py``) runs the simulator and keeps its request log; this process runs one
client against it and prints one JSON object: when each job ended and how, CPU time, memory
and the event loop's longest stall. The spec, a JSON object on stdin, names the client:

* ``octovid``: ``Client.submit_many`` at the default PollPolicy and RetryPolicy, paced at the
  key's limit, awaited with ``octovid.gather``; optionally after a warm-up batch.
* ``naive``: a coroutine per job that creates, then polls every 5 s until a terminal status,
  retrying any failed request (a 429 included) after 1 s, all under ``asyncio.gather``.
* ``openai``: the official ``openai`` client, ``client.videos.create_and_poll`` per job on the
  OpenAI-format route, all under ``asyncio.gather``.
* ``watch``: ``Client.watch`` of many existing task ids, for memory per task and CPU per poll.
* ``bare``: a plain aiohttp GET + ``json()`` loop: the baseline of CPU per request.
* ``create``: plain aiohttp creates, to set up the tasks that ``watch`` and ``bare`` query.

**Time.** Every client runs on a :class:`ScaledLoop`, whose clock runs ``scale`` times faster
than real time: a client's own constants (octovid's poll intervals, backoffs, limiter windows
and timeouts; openai's one-second poll and its retry backoff; the naive loop's 5 s) then hold
in the workload's seconds, unchanged, as the simulator's durations do. Instants reported to
the parent are ``time.monotonic()``, the simulator's clock (CLOCK_MONOTONIC is system-wide).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import resource
import selectors
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

import octovid

HEARTBEAT = 0.010  # real seconds between the heartbeat's wake-ups
# What a user of the unified query would treat as the end (PROTOCOL.md's status words).
TERMINAL = frozenset({
    "completed", "succeeded", "success", "succeed", "done", "failed", "failure", "error",
    "cancelled", "canceled", "video_generation_failed", "video_upsampling_failed",
})
FAILED = frozenset({
    "failed", "failure", "error", "cancelled", "canceled", "video_generation_failed",
    "video_upsampling_failed",
})


# -- time ---------------------------------------------------------------------------------


class _ScaledSelector(selectors.DefaultSelector):
    """Waits ``scale`` times shorter than asked: the loop's timeouts are in scaled seconds."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self._scale = scale

    def select(self, timeout: float | None = None) -> list[Any]:
        return super().select(None if timeout is None else timeout / self._scale)


class ScaledLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is ``time.monotonic() * scale``.

    Timers, ``asyncio.sleep``, aiohttp's and anyio's timeouts all read ``loop.time()``, so a
    client's every duration is in the workload's seconds, as the simulator's are.
    """

    def __init__(self, scale: float) -> None:
        super().__init__(_ScaledSelector(scale))
        self.scale = scale

    def time(self) -> float:
        return time.monotonic() * self.scale


class Heartbeat:
    """Wakes every 10 ms (real) and keeps the longest lateness: the loop's longest stall."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.longest, self.beats = 0.0, 0
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        scale = getattr(asyncio.get_running_loop(), "scale", 1.0)
        while True:
            started = time.perf_counter()
            await asyncio.sleep(HEARTBEAT * scale)
            self.longest = max(self.longest, time.perf_counter() - started - HEARTBEAT)
            self.beats += 1


def cpu() -> float:
    """CPU seconds (user and system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss() -> int:
    """The resident set size now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_rss() -> int:
    """The largest resident set size since :func:`reset_peak` (or the start), in bytes.

    Read from VmHWM: ``ru_maxrss`` would not do, as Linux carries it across ``execve`` from
    the parent that forked this process.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> None:
    """Start the peak resident set size again from the current one (Linux 4.0 and later)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


async def heartbeat_cost(seconds: float = 1.0) -> float:
    """CPU seconds per second the heartbeat costs on an idle loop (taken out of the figures)."""
    beat = Heartbeat()
    beat.start()
    await asyncio.sleep(0)
    before, started = cpu(), time.perf_counter()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(seconds * getattr(loop, "scale", 1.0))
    used, elapsed = cpu() - before, time.perf_counter() - started
    await beat.stop()
    return used / elapsed


class GCPauses:
    """The longest and the total time spent in the cyclic garbage collector."""

    def __init__(self) -> None:
        self.longest = self.total = 0.0
        self._started = 0.0

    def __enter__(self) -> GCPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, _: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            pause = time.perf_counter() - self._started
            self.longest, self.total = max(self.longest, pause), self.total + pause


class Measured:
    """Runs one phase under the heartbeat, taking CPU, stall, GC and memory figures."""

    def __init__(self, idle_cost: float) -> None:
        self.idle_cost = idle_cost
        self.figures: dict[str, Any] = {}
        self._beat = Heartbeat()

    async def run(self, phase: Awaitable[Any]) -> Any:
        gc.collect()
        rss_before = rss()
        reset_peak()
        self._beat.start()
        cpu_before, started = cpu(), time.perf_counter()
        self.figures["t_start"] = time.monotonic()
        try:
            with GCPauses() as pauses:
                return await phase
        finally:
            elapsed = time.perf_counter() - started
            used = cpu() - cpu_before
            self.figures.update(
                t_end=time.monotonic(),
                wall=elapsed,
                cpu=max(used - self.idle_cost * elapsed, 0.0),
                cpu_raw=used,
                rss_before=rss_before,
                rss_peak=peak_rss(),
                rss_after=rss(),
                max_stall=self._beat.longest,
                beats=self._beat.beats,
                gc_longest=pauses.longest,
                gc_total=pauses.total,
            )
            await self._beat.stop()


# -- the clients ----------------------------------------------------------------------------


def _outcome_of(job: octovid.Job) -> str:
    if job.cancelled():
        return "cancelled"
    exc = job.exception()
    if exc is None:
        return "completed"
    if isinstance(exc, octovid.TaskFailedError):
        return "failed"
    return f"error: {type(exc).__name__}"


async def run_octovid(spec: dict[str, Any], measured: Measured) -> list[list[Any]]:
    """Submit the warm-up batch, if any, then the measured one; one row per measured job."""
    requests, per = spec["rate"]
    client = octovid.Client(
        spec["key"], spec["url"], rate_limit=octovid.RateLimit(requests, per=per)
    )
    ended: dict[int, float] = {}

    async def batch(bodies: list[dict[str, Any]], rows: list[octovid.Job] | None) -> None:
        jobs = client.submit_many(
            [octovid.request_from_dict(body) for body in bodies], deadline=spec["deadline"]
        )
        if rows is not None:
            rows.extend(jobs)
            for index, job in enumerate(jobs):
                job.add_done_callback(
                    lambda _, index=index: ended.__setitem__(index, time.monotonic())
                )
        await octovid.gather(jobs, return_exceptions=True)

    jobs: list[octovid.Job] = []
    async with client:
        if spec.get("warmup"):
            await batch(spec["warmup"], None)
        await measured.run(batch(spec["bodies"], jobs))
        measured.figures["stats"] = {
            name: getattr(client.stats, name)
            for name in ("requests", "creates", "polls", "retries", "rate_limited", "errors")
        }
    return [[job.id, _outcome_of(job), ended.get(index)] for index, job in enumerate(jobs)]


async def _naive_job(
    session: aiohttp.ClientSession, spec: dict[str, Any], body: dict[str, Any], row: list[Any]
) -> list[Any]:
    """Create, then poll every ``interval`` until the end; any failure is retried in ``retry``.

    ``row`` is the job's [task id, outcome, instant it ended], filled in as they are known.
    """
    url, interval, retry = spec["url"], spec["interval"], spec["retry"]
    while True:
        with contextlib.suppress(aiohttp.ClientError, ValueError, asyncio.TimeoutError):
            async with session.post(f"{url}/v1/video/create", json=body) as response:
                if response.status == 200:
                    answer = await response.json(content_type=None)
                    break
        await asyncio.sleep(retry)
    task_id = row[0] = answer.get("id") or answer.get("task_id")
    wait = interval
    while True:
        await asyncio.sleep(wait)
        wait = retry
        with contextlib.suppress(aiohttp.ClientError, ValueError, asyncio.TimeoutError):
            async with session.get(f"{url}/v1/video/query", params={"id": task_id}) as response:
                if response.status != 200:
                    continue
                answer = await response.json(content_type=None)
            status = str(answer.get("status", "")).lower()
            if status in TERMINAL:
                row[1:] = ["failed" if status in FAILED else "completed", time.monotonic()]
                return row
            wait = interval


async def _bounded(coroutine: Awaitable[list[Any]], deadline: float, row: list[Any]) -> list[Any]:
    """The job's row once ``coroutine`` ends, or with an error at ``deadline`` seconds."""
    try:
        return await asyncio.wait_for(coroutine, deadline)
    except TimeoutError:
        row[1:] = ["error: deadline", None]
    except Exception as exc:  # the job's own failure, as asyncio.gather would report it
        row[1:] = [f"error: {type(exc).__name__}", None]
    return row


async def run_naive(spec: dict[str, Any], measured: Measured) -> list[list[Any]]:
    """One coroutine per job, under asyncio.gather, no shared limiter."""
    headers = {"Authorization": f"Bearer {spec['key']}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        rows: list[list[Any]] = [[None, None, None] for _ in spec["bodies"]]
        jobs = (
            _bounded(_naive_job(session, spec, body, row), spec["deadline"], row)
            for body, row in zip(spec["bodies"], rows, strict=True)
        )
        return list(await measured.run(asyncio.gather(*jobs)))


async def run_openai(spec: dict[str, Any], measured: Measured) -> list[list[Any]]:
    """``videos.create_and_poll`` per job, at the client's defaults, under asyncio.gather."""
    import openai

    client = openai.AsyncOpenAI(base_url=spec["url"] + "/v1", api_key=spec["key"])

    async def one(body: dict[str, Any], row: list[Any]) -> list[Any]:
        video = await client.videos.create_and_poll(model=body["model"], prompt=body["prompt"])
        row[:] = [video.id, video.status, time.monotonic()]
        return row

    async with client:
        # create_and_poll keeps the task id to itself until it returns: a job lost on the
        # way has none here.
        rows: list[list[Any]] = [[None, None, None] for _ in spec["bodies"]]
        jobs = (_bounded(one(body, row), spec["deadline"], row)
                for body, row in zip(spec["bodies"], rows, strict=True))
        return list(await measured.run(asyncio.gather(*jobs)))


async def run_watch(spec: dict[str, Any], measured: Measured) -> list[list[Any]]:
    """Watch many existing tasks for ``seconds``; memory per task, CPU per poll, stalls."""
    ids: list[str] = spec["ids"]
    requests, per = spec["rate"]
    client = octovid.Client(
        spec["key"], spec["url"], rate_limit=octovid.RateLimit(requests, per=per)
    )
    async with client:
        gc.collect()
        before = rss()
        beat = Heartbeat()
        beat.start()
        started = time.perf_counter()
        jobs = []
        for start in range(0, len(ids), 1000):
            jobs.extend(client.watch(task_id) for task_id in ids[start:start + 1000])
            await asyncio.sleep(0)
        measured.figures["watch_calls"] = time.perf_counter() - started
        measured.figures["watch_stall"] = beat.longest
        await beat.stop()
        gc.collect()
        measured.figures["rss_watching"] = rss()
        measured.figures["rss_before_watch"] = before
        polls_before = client.stats.polls
        loop = asyncio.get_running_loop()
        await measured.run(asyncio.sleep(spec["seconds"] * getattr(loop, "scale", 1.0)))
        started = time.perf_counter()
        gc.collect()  # a full collection with every task watched: the longest GC pause can be
        measured.figures["full_gc"] = time.perf_counter() - started
        measured.figures["rss_end"] = rss()
        measured.figures["polls"] = client.stats.polls - polls_before
        measured.figures["watching"] = client.stats.watching
        measured.figures["pending"] = sum(not job.done() for job in jobs)
    return []


PACE_SLACK = 0.005  # seconds ahead of its pace a paced bare loop runs before it sleeps


async def run_bare(spec: dict[str, Any], measured: Measured) -> list[list[Any]]:
    """GET + json() of the unified query, ``count`` times over ``ids``, with a few workers.

    With ``pace`` (requests a second), the workers together keep to that rate: one that is
    more than ``PACE_SLACK`` ahead sleeps the lead off (a timer every few ms, not per request).
    The CPU a request costs depends on the rate: at a lower one, fewer answers share each
    wake-up of the loop and each system call.
    """
    ids: list[str] = spec["ids"]
    count, workers = spec["count"], spec["workers"]
    pace: float | None = spec.get("pace")
    headers = {"Authorization": f"Bearer {spec['key']}"}
    query = f"{spec['url']}/v1/video/query"
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0

    async def worker(first: int) -> None:
        nonlocal sent
        for index in range(first, count, workers):
            if pace is not None:
                lead = sent / pace - (loop.time() - started)
                if lead > PACE_SLACK:
                    await asyncio.sleep(lead)
            sent += 1
            async with session.get(query, params={"id": ids[index % len(ids)]}) as response:
                await response.json()

    async with aiohttp.ClientSession(headers=headers) as session:
        await measured.run(asyncio.gather(*(worker(first) for first in range(workers))))
    measured.figures["requests"] = count
    return []


async def run_create(spec: dict[str, Any], measured: Measured) -> list[list[Any]]:
    """Create ``bodies`` on the unified route with a few workers; the task ids, in order."""
    bodies = spec["bodies"]
    workers = spec["workers"]
    headers = {"Authorization": f"Bearer {spec['key']}"}
    create = f"{spec['url']}/v1/video/create"
    ids: list[Any] = [None] * len(bodies)

    async def worker(first: int) -> None:
        for index in range(first, len(bodies), workers):
            async with session.post(create, json=bodies[index]) as response:
                answer = await response.json()
            ids[index] = answer.get("id") or answer.get("task_id")

    async with aiohttp.ClientSession(headers=headers) as session:
        await measured.run(asyncio.gather(*(worker(first) for first in range(workers))))
    return [[task_id] for task_id in ids]


CLIENTS: dict[str, Callable[[dict[str, Any], Measured], Awaitable[list[list[Any]]]]] = {
    "octovid": run_octovid,
    "naive": run_naive,
    "openai": run_openai,
    "watch": run_watch,
    "bare": run_bare,
    "create": run_create,
}


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    measured = Measured(await heartbeat_cost())
    rows = await CLIENTS[spec["client"]](spec, measured)
    return {**measured.figures, "idle_cost": measured.idle_cost, "jobs": rows}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the client of ``spec`` on a loop scaled by ``spec["scale"]``.

    With ``spec["wall"]`` (the simulator's wall time and monotonic clock at its start), the
    process's ``time.time()`` runs at the same pace from there, as the simulator's answers'
    stamps do: a client reads their age in workload seconds.
    """
    scale = float(spec.get("scale", 1.0))
    if "wall" in spec:
        wall, start = spec["wall"]
        monotonic = time.monotonic
        time.time = lambda: wall + (monotonic() - start) * scale
    with asyncio.Runner(loop_factory=lambda: ScaledLoop(scale)) as runner:
        return runner.run(main(spec))


def _quiet(names: Iterable[str]) -> None:
    warnings.simplefilter("ignore")  # openai's videos methods are marked deprecated
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)


if __name__ == "__main__":
    _quiet(("octovid", "openai", "httpx", "aiohttp"))
    json.dump(run(json.load(sys.stdin)), sys.stdout)
