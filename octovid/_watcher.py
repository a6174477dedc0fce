"""The watcher: one scheduler polls every watched task under the shared limiter.

State is two heaps and one timer, not a coroutine per task:

* ``_due``: (next poll time, sequence, entry), one live item per watched task id. Stale items
  (the entry was polled or dropped since) are skipped when they surface.
* ``_deadlines``: (deadline, sequence, weak references to jobs), one item per job or per batch
  of jobs submitted together. The references are weak: a finished job that its caller dropped
  is freed at once, not at its deadline.

One driver coroutine waits until a poll is due, then for a query slot of the limiter, and only
then picks the most urgent due task: under a tight budget every task is still polled, the most
overdue first. Creates are started as jobs are submitted, at most ``max_creates`` at a time, and
queue in the limiter's create lane, which alternates with the query lane.

Invariants: each job is resolved exactly once, and only here; a task id is polled by at most one
request at a time, however many jobs watch it; a task with no job left is not polled again; a
failed poll never fails a job unless ``_retry.decide`` says it is final.

The watcher never imports aiohttp: it reaches the gateway through the :class:`Polling` protocol
(the client's Gateway) and has jobs created through :class:`Creating` (the client).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import math
import random
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import attrs

from ._errors import ProtocolError, TaskFailedError, WaitTimeoutError
from ._jobs import Job
from ._limiter import Lane, Slot
from ._requests import Request
from ._retry import Action, Kind, decide, waits
from ._task import Status, Task

__all__ = ["Creating", "PollPolicy", "Polling", "Watcher"]

log = logging.getLogger("octovid")

_SAMPLES = 6  # progress samples kept per task


class Polling(Protocol):
    """What the watcher needs of the gateway."""

    async def acquire(self, lane: Lane) -> Slot:
        """Wait for the limiter's leave to send one request."""

    async def query(self, slot: Slot, task_id: str) -> tuple[Task, float | None]:
        """Query a task on ``slot``; return the snapshot and the server's poll-after hint."""


class Creating(Protocol):
    """What the watcher needs to have a job's task created."""

    async def create(self, job: Job) -> Task:
        """Create the job's task (retries, journal and all); the first snapshot."""

    def observed(self, task: Task) -> None:
        """A watched task changed status; must not raise."""


def _seconds(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


def _factor(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 10:
        raise ValueError(f"{attribute.name} must be a number from 1 to 10, not {value!r}")


def _jitter(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be a fraction from 0 to below 1, not {value!r}")


def _optional_seconds(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _seconds(_, attribute, value)


@attrs.frozen
class PollPolicy:
    """When to poll a task.

    Without progress, intervals grow from ``initial`` by ``factor`` up to ``max_interval``, each
    stretched or shrunk by up to ``jitter`` (a fraction) so that tasks created together do not
    poll together. When the gateway reports rising progress, the next poll is aimed at the
    estimated completion, never more than ``max_interval`` after the last one. When progress
    stalls or the estimated completion has passed, the geometric schedule starts again from
    the last change of progress: a stuck task is polled less and less often, never in a spin.
    ``deadline`` is the default number of seconds a job may take in all (None: no limit).
    """

    initial: float = attrs.field(default=5.0, validator=_seconds)
    max_interval: float = attrs.field(default=30.0, validator=_seconds)
    factor: float = attrs.field(default=1.5, validator=_factor)
    jitter: float = attrs.field(default=0.1, validator=_jitter)
    deadline: float | None = attrs.field(default=3600.0, validator=_optional_seconds)

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.initial:
            raise ValueError(
                f"max_interval ({self.max_interval}) must not be below initial ({self.initial})"
            )

    def delay(self, polls: int, samples: deque[tuple[float, int]], now: float,
              rng: random.Random, *, unchanged: int | None = None) -> float:
        """Seconds from ``now`` to the next poll of a task.

        Args:
            polls: Polls of this task so far.
            samples: (loop time first seen, progress) of the task, oldest first, rising.
            now: The loop time of the poll that just answered.
            rng: The source of jitter.
            unchanged: Polls since its progress last changed (default: ``polls``): once the
                estimated completion has passed, the geometric schedule counts from there.
        """
        eta = estimate(samples)
        if eta is None or eta <= now:
            step = polls if eta is None or unchanged is None else unchanged
            geometric = min(self.max_interval, self.initial * self.factor ** step)
            spread = 1 + rng.uniform(-self.jitter, self.jitter)
            return min(self.max_interval, geometric * spread)
        # Aim just past the estimated completion: a little late beats one poll too early.
        total = eta - samples[0][0]
        aim = eta - now + 0.05 * total
        spread = 1 + rng.uniform(0, self.jitter)
        return min(self.max_interval, max(self.initial / 2, aim * spread))


def estimate(samples: deque[tuple[float, int]]) -> float | None:
    """The loop time progress should reach 100, from (time, progress) samples; None if unknown."""
    if len(samples) < 2:
        return None
    (t0, p0), (t1, p1) = samples[0], samples[-1]
    if p1 <= p0 or t1 <= t0 or p1 >= 100:
        return None
    return t1 + (100 - p1) * (t1 - t0) / (p1 - p0)


def _stop_unless_done(task: asyncio.Task[Any] | None, _: Job) -> None:
    if task is not None and not task.done():
        task.cancel()


class _Entry:
    """One watched task id, shared by every job watching it."""

    __slots__ = (
        "created_at", "failures", "jobs", "live", "polls", "samples", "schedule", "seq",
        "strikes", "task", "task_id", "unchanged",
    )

    def __init__(self, task_id: str, task: Task | None, created_at: float | None) -> None:
        self.task_id = task_id
        self.task = task
        self.jobs: list[Job] = []
        self.live = True
        self.seq = -1  # the sequence number of this entry's live heap item; -1: none
        self.polls = 0
        self.unchanged = 0  # polls since progress last changed
        self.failures = 0  # consecutive failed polls
        self.strikes = 0  # consecutive unreadable answers
        self.schedule: Iterator[float] | None = None  # the backoff of a run of failures
        self.created_at = created_at  # loop time of our own create, or None
        self.samples: deque[tuple[float, int]] = deque(maxlen=_SAMPLES)

    def sample(self, now: float, progress: int | None) -> None:
        """Keep the time each new progress value was first seen; restart if it went back."""
        if progress is None:
            return
        if self.samples and progress < self.samples[-1][1]:
            self.samples.clear()
        if not self.samples or progress > self.samples[-1][1]:
            self.samples.append((now, progress))
            self.unchanged = 0


class Watcher:
    """Schedules the creates and polls of one client. See the module docstring."""

    __slots__ = (
        "_closed", "_create_tasks", "_creates", "_creating", "_deadlines", "_driver", "_due",
        "_entries", "_gateway", "_jobs", "_loop", "_max_creates", "_policy", "_poll_tasks",
        "_rng", "_seq", "_timer", "_wake",
    )

    def __init__(
        self,
        *,
        gateway: Polling,
        creating: Creating,
        policy: PollPolicy,
        max_creates: int,
        rng: random.Random | None = None,
    ) -> None:
        self._gateway = gateway
        self._creating = creating
        self._policy = policy
        self._max_creates = max_creates
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._entries: dict[str, _Entry] = {}
        self._due: list[tuple[float, int, _Entry]] = []
        self._deadlines: list[tuple[float, int, list[weakref.ref[Job]]]] = []
        self._seq = itertools.count()
        self._creates: deque[Job] = deque()  # submitted, not started
        self._jobs: set[Job] = set()  # every job not yet resolved
        self._create_tasks: set[asyncio.Task[None]] = set()
        self._poll_tasks: set[asyncio.Task[None]] = set()
        self._driver: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake: asyncio.Future[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        due = f"{self._due[0][0] - self._loop.time():.1f}s" if self._due and self._loop else "-"
        return (
            f"<Watcher watching={len(self._entries)} due_next={due} "
            f"in_flight={len(self._poll_tasks)} creating={len(self._create_tasks)} "
            f"queued_creates={len(self._creates)}>"
        )

    @property
    def watching(self) -> int:
        """Task ids being polled."""
        return len(self._entries)

    @property
    def pending(self) -> int:
        """Jobs not yet resolved."""
        return len(self._jobs)

    # -- entry points ------------------------------------------------------------------------

    def hold(
        self, requests: Sequence[Request], *, deadline: float | None,
        keys: Sequence[str | None] | None = None,
    ) -> list[Job]:
        """New jobs for ``requests``, pending, their deadlines running, nothing sent yet.

        Each is then ``release``d (to be created), ``adopt``ed (to watch a task that exists)
        or ``settle``d (its outcome known).
        """
        loop = self._get_loop()
        at = None if deadline is None else loop.time() + deadline
        forget = self._forget
        if keys is None:
            jobs = [Job(loop, request=request, deadline=at) for request in requests]
        else:
            jobs = [Job(loop, request=request, key=key, deadline=at)
                    for request, key in zip(requests, keys, strict=True)]
        for job in jobs:
            job._on_cancel(forget)
        self._jobs.update(jobs)
        if at is not None and jobs:
            heapq.heappush(self._deadlines, (at, next(self._seq), list(map(weakref.ref, jobs))))
            self._arm()
        return jobs

    def release(self, jobs: Sequence[Job]) -> None:
        """Queue the creates of held jobs."""
        self._creates.extend(jobs)
        self._start_creates()

    def submit(self, request: Request, *, deadline: float | None, key: str | None = None) -> Job:
        """Queue a create; the job then watches the task it creates."""
        job = self.hold([request], deadline=deadline, keys=None if key is None else [key])[0]
        self.release([job])
        return job

    def watch(
        self, task_id: str, *, deadline: float | None, task: Task | None = None,
        created_at: float | None = None,
    ) -> Job:
        """Watch an existing task; jobs watching one task id share its polls."""
        loop = self._get_loop()
        at = None if deadline is None else loop.time() + deadline
        job = Job(loop, task_id=task_id, deadline=at)
        job._on_cancel(self._forget)
        self._jobs.add(job)
        if at is not None:
            heapq.heappush(self._deadlines, (at, next(self._seq), [weakref.ref(job)]))
            self._arm()
        self.adopt(job, task_id, task, created_at)
        return job

    def adopt(
        self, job: Job, task_id: str, task: Task | None = None, created_at: float | None = None
    ) -> None:
        """Have a held job watch the task ``task_id`` (resolving it at once if terminal)."""
        if job.done():
            return
        if task is not None and task.terminal:
            self.settle(job, task)
        else:
            self._attach(job, task_id, task, created_at)

    def settle(self, job: Job, outcome: Task | BaseException) -> None:
        """Resolve a job: a terminal snapshot, or an error."""
        if isinstance(outcome, Task):
            job._update(outcome)
            outcome = outcome if outcome.status is Status.COMPLETED else TaskFailedError(outcome)
        if job._finish(outcome):
            self._jobs.discard(job)

    async def close(self) -> None:
        """Resolve every pending job with CancelledError and stop; no future is left pending."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [*self._create_tasks, *self._poll_tasks]
        if self._driver is not None:
            tasks.append(self._driver)
        for task in tasks:
            task.cancel()
        for job in list(self._jobs):
            job._finish(asyncio.CancelledError())
        self._jobs.clear()
        self._creates.clear()
        self._entries.clear()
        self._due.clear()
        self._deadlines.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- jobs ------------------------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise RuntimeError("the client is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _forget(self, job: Job) -> None:
        """A job was cancelled: stop polling its task if no other job watches it."""
        self._jobs.discard(job)
        entry = self._entries.get(job.id) if job.id is not None else None
        if entry is not None and job in entry.jobs:
            entry.jobs.remove(job)
            if not entry.jobs:
                self._drop(entry)

    def _drop(self, entry: _Entry) -> None:
        entry.live = False
        if self._entries.get(entry.task_id) is entry:
            del self._entries[entry.task_id]

    # -- creates ---------------------------------------------------------------------------

    def _start_creates(self) -> None:
        while self._creates and len(self._create_tasks) < self._max_creates:
            job = self._creates.popleft()
            if job.done():  # cancelled or timed out before its turn: nothing was sent
                continue
            task = asyncio.ensure_future(self._run_create(job))
            self._create_tasks.add(task)
            task.add_done_callback(self._create_done)

    def _create_done(self, task: asyncio.Task[None]) -> None:
        self._create_tasks.discard(task)
        if not self._closed:
            self._start_creates()

    async def _run_create(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        # A job cancelled or timed out while its create waits for the limiter drops the create;
        # one already on the wire runs to its answer (the client shields it).
        job.add_done_callback(functools.partial(_stop_unless_done, asyncio.current_task()))
        try:
            task = await self._creating.create(job)
        except asyncio.CancelledError:
            self.settle(job, asyncio.CancelledError())
            raise
        except Exception as exc:
            self.settle(job, exc)
            return
        if job.done():  # timed out or cancelled while the create was in flight
            log.warning(
                "octovid: task %s was created after its job ended (%s); it is not watched: "
                "Client.watch(%r) resumes it", task.id, job, task.id,
            )
        else:
            self.adopt(job, task.id, task, loop.time())

    # -- polls -----------------------------------------------------------------------------

    def _attach(self, job: Job, task_id: str, task: Task | None, created_at: float | None) -> None:
        entry = self._entries.get(task_id)
        if entry is None:
            entry = self._entries[task_id] = _Entry(task_id, task, created_at)
            if task is None:  # a task we know nothing of: ask at once
                delay = 0.0
            else:
                if created_at is not None:
                    entry.sample(created_at, task.progress)
                delay = self._jittered(self._policy.initial)
            self._schedule(entry, delay)
        elif task is not None and entry.task is None:
            entry.task = task
        entry.jobs.append(job)
        if entry.task is not None:
            job._update(entry.task)

    def _schedule(self, entry: _Entry, delay: float) -> None:
        assert self._loop is not None
        entry.seq = next(self._seq)
        heapq.heappush(self._due, (self._loop.time() + delay, entry.seq, entry))
        if self._driver is None:
            self._driver = asyncio.ensure_future(self._drive())
            self._driver.add_done_callback(self._driver_done)
        self._arm()

    def _driver_done(self, driver: asyncio.Task[None]) -> None:
        if driver.cancelled() or driver.exception() is None:
            return
        exc = driver.exception()
        log.error("octovid: the watcher stopped on an internal error", exc_info=exc)
        for job in list(self._jobs):  # never leave a job pending
            self.settle(job, RuntimeError(f"octovid's watcher stopped: {exc!r}"))

    def _pop_due(self) -> _Entry | None:
        """The most urgent due entry, or None; skips stale heap items."""
        assert self._loop is not None
        now = self._loop.time()
        while self._due:
            at, seq, entry = self._due[0]
            if not entry.live or seq != entry.seq:
                heapq.heappop(self._due)
                continue
            if at > now:
                return None
            heapq.heappop(self._due)
            entry.seq = -1
            return entry
        return None

    def _next_due(self) -> float | None:
        while self._due:
            at, seq, entry = self._due[0]
            if entry.live and seq == entry.seq:
                return at
            heapq.heappop(self._due)
        return None

    async def _drive(self) -> None:
        """The one poll loop: wait for a due task, then a slot, then poll the most urgent."""
        loop = asyncio.get_running_loop()
        while True:
            at = self._next_due()
            if at is None or at > loop.time():
                self._wake = loop.create_future()
                self._arm()
                try:
                    await self._wake
                finally:
                    self._wake = None
                continue
            self._dispatch(await self._gateway.acquire(Lane.QUERY))

    def _dispatch(self, slot: Slot) -> None:
        """Poll the most urgent due task on ``slot`` (no local of the loop keeps it alive)."""
        entry = self._pop_due()
        if entry is None:  # the due task was dropped while we waited
            slot.refund()
            return
        task = asyncio.ensure_future(self._poll(entry, slot))
        self._poll_tasks.add(task)
        task.add_done_callback(self._poll_tasks.discard)

    async def _poll(self, entry: _Entry, slot: Slot) -> None:
        try:
            task, hint = await self._gateway.query(slot, entry.task_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if entry.live:
                self._poll_failed(entry, exc)
        else:
            if entry.live:
                self._polled(entry, task, hint)
        finally:
            slot.release()

    def _polled(self, entry: _Entry, task: Task, hint: float | None) -> None:
        assert self._loop is not None
        now = self._loop.time()
        changed = entry.task is None or entry.task.raw_status != task.raw_status
        entry.polls += 1
        entry.unchanged += 1
        entry.failures = entry.strikes = 0
        entry.schedule = None
        entry.task = task
        if task.terminal:
            self._drop(entry)
            for job in entry.jobs:
                self.settle(job, task)
            entry.jobs.clear()
        else:
            for job in entry.jobs:
                job._update(task)
            entry.sample(now, task.progress)
            delay = self._policy.delay(entry.polls, entry.samples, now, self._rng,
                                       unchanged=entry.unchanged)
            self._schedule(entry, max(delay, hint or 0.0))
        if changed:  # after the next poll is settled: the observer (journal) cannot stop it
            try:
                self._creating.observed(task)
            except Exception:  # pragma: no cover - the observer promises not to raise
                log.exception("octovid: recording task %s failed", task.id)

    def _poll_failed(self, entry: _Entry, exc: Exception) -> None:
        assert self._loop is not None
        entry.failures += 1
        entry.strikes = entry.strikes + 1 if isinstance(exc, ProtocolError) else 0
        if entry.schedule is None:
            entry.schedule = waits(self._policy.max_interval)
        age = None if entry.created_at is None else self._loop.time() - entry.created_at
        verdict = decide(
            exc, Kind.POLL, schedule=entry.schedule, age=age,
            attempt=entry.strikes if isinstance(exc, ProtocolError) else entry.failures,
        )
        if verdict.action is not Action.RETRY:
            log.warning("octovid: giving up on task %s: %s", entry.task_id, exc)
            self._drop(entry)
            for job in entry.jobs:
                self.settle(job, exc)
            entry.jobs.clear()
            return
        log.info("octovid: poll of task %s failed (%s); polling again in %.1fs",
                 entry.task_id, exc, verdict.wait)
        self._schedule(entry, verdict.wait)

    def _jittered(self, delay: float) -> float:
        return delay * (1 + self._rng.uniform(-1, 1) * self._policy.jitter)

    # -- the timer -------------------------------------------------------------------------

    def _arm(self) -> None:
        """Point the one timer at the next deadline, or the next poll if the driver waits."""
        if self._closed:
            return
        assert self._loop is not None
        at = self._deadlines[0][0] if self._deadlines else math.inf
        if self._wake is not None:
            due = self._next_due()
            if due is not None:
                at = min(at, due)
        timer = self._timer
        if timer is not None:
            if timer.when() <= at:
                return
            timer.cancel()
        self._timer = None if at == math.inf else self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, refs = heapq.heappop(self._deadlines)
            for ref in refs:
                job = ref()
                if job is not None:
                    self._expire(job)
        due = self._next_due()
        if self._wake is not None and due is not None and due <= now and not self._wake.done():
            self._wake.set_result(None)
        self._arm()

    def _expire(self, job: Job) -> None:
        if job.done():
            return
        elapsed = job.elapsed
        log.info("octovid: job %s reached its deadline after %.1fs", job, elapsed)
        self.settle(job, WaitTimeoutError(job.id, job.task, elapsed))
        self._forget(job)
