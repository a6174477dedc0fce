"""The watcher: one scheduler polls every watched task under the shared limiter.

State is two heaps and one timer, not a coroutine per task:

* ``_due``: (next poll time, sequence, task id), one live item per watched task id. Stale items
  (the entry was polled or dropped since: its sequence moved on) are skipped when they surface.
  The items hold the id, not the entry: a tuple of a float, an int and a str is one object
  fewer for the garbage collector to walk, 100,000 times over.
* ``_deadlines``: the loop times at which jobs give up, each once, with ``_cohorts`` holding
  the pending jobs of each (a batch submitted together is one cohort). A job leaves its cohort
  when it is resolved: a finished job that its caller dropped is freed at once, not at its
  deadline.

One driver coroutine waits until a poll is due, then for a query slot of the limiter, and only
then picks the most urgent due task: under a tight budget every task is still polled, the most
overdue first. A poll that ends goes on to the next due task in the same coroutine while a slot
is free at once and nobody waits for one; at full speed the driver stands by. Creates are
started as jobs are submitted, at most ``max_creates`` at a time, and queue in the limiter's
create lane, which alternates with the query lane.

Invariants: each job is resolved exactly once, and only here; a task id is polled by at most one
request at a time, however many jobs watch it; a task with no job left is not polled again; a
failed poll never fails a job unless ``_retry.decide`` says it is final.

The watcher never imports aiohttp: it reaches the gateway through the :class:`Polling` protocol
(the client's Gateway) and has jobs created through :class:`Creating` (the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import heapq
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ._errors import ProtocolError, TaskFailedError, WaitTimeoutError
from ._jobs import Job
from ._limiter import Lane, Slot
from ._requests import Request
from ._retry import Action, Kind, decide, waits
from ._routes import Route
from ._schedule import (
    Durations,
    Forecast,
    PollPolicy,
    learned_gap,
    likely_age,
    prior_of,
    reach,
    refresh_of,
)
from ._task import Status, Task

__all__ = ["Creating", "Polling", "Watcher"]

log = logging.getLogger("octovid")

_SAMPLES = 3  # progress samples kept per task (with fewer, the start counts as one)
_PROBES = 8  # tasks of a model first polled after ``initial`` while its prior is unconfirmed


class Polling(Protocol):
    """What the watcher needs of the gateway."""

    async def acquire(self, lane: Lane) -> Slot:
        """Wait for the limiter's leave to send one request."""

    def try_acquire(self, lane: Lane) -> Slot | None:
        """The limiter's leave to send one request now, if free and nobody waits; else None."""

    def saturated(self) -> bool:
        """Whether every place in flight is taken and nobody waits for one."""

    async def query(
        self, slot: Slot, task_id: str, route: Route, previous: Task | None
    ) -> tuple[Task, float | None]:
        """Query a task on ``slot`` and its route; the snapshot and the poll-after hint.

        An answer that says what ``previous`` (the last snapshot) said may come back as
        ``previous`` itself.
        """

    def creates_waiting(self) -> bool:
        """Whether creates are waiting for the limiter (the budget is contended)."""


class Creating(Protocol):
    """What the watcher needs to have a job's task created."""

    async def create(self, job: Job) -> Task:
        """Create the job's task (retries, journal and all); the first snapshot."""

    def observed(self, task: Task) -> None:
        """A watched task changed status; must not raise."""


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (if on) for a bulk allocation without cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _started(task: Task | None, now: float) -> float | None:
    """The loop time a task was created, from its answer's ``created_at``, if plausible."""
    if task is None or task.created_at is None:
        return None
    age = time.time() - task.created_at.timestamp()
    return now - age if 0 <= age < 30 * 86400 else None


def _state_time(task: Task, now: float, refresh: float) -> float:
    """The loop time of the state an answer shows: its ``status_update_time`` if plausible.

    The gateway refreshes its stored state every ``refresh`` seconds: the progress of an answer
    may be that old, and the stamp says how old. Clocks differ, and some stamps only move with
    the status, so a stamp is believed only within about one refresh period of now.
    """
    if task.updated_at is None or not refresh:
        return now
    age = time.time() - task.updated_at.timestamp()
    return now - age if -refresh / 2 <= age <= 1.5 * refresh else now


def _refresh_after(tick: float, at: float, refresh: float) -> float:
    """The gateway's first refresh at or after loop time ``at`` (after ``tick``), given one."""
    return tick + refresh * max(1, math.ceil((at - tick) / refresh))


def _stop_unless_done(task: asyncio.Task[Any] | None, _: Job) -> None:
    if task is not None and not task.done():
        task.cancel()


class _Entry:
    """One watched task id, shared by every job watching it."""

    __slots__ = (
        "end", "failures", "jobs", "last_poll", "live", "model", "polls", "route", "samples",
        "schedule", "seq", "started", "strikes", "task", "task_id", "unchanged",
    )

    def __init__(self, task_id: str, task: Task | None, started: float | None,
                 route: Route) -> None:
        self.task_id = task_id
        self.route = route  # the route family it is queried on
        self.task = task
        self.model = task.model if task is not None else None
        # The jobs watching it: one (the common case, no list for the collector to walk), a
        # list of them, or None once none is left.
        self.jobs: Job | list[Job] | None = None
        self.live = True
        self.seq = -1  # the sequence number of this entry's live heap item; -1: none
        self.polls = 0
        self.unchanged = 0  # polls since progress last changed
        self.failures = 0  # consecutive failed polls
        self.strikes = 0  # consecutive unreadable answers
        self.schedule: Iterator[float] | None = None  # the backoff of a run of failures
        self.started = started  # loop time the task was created, if known
        self.last_poll = started  # loop time of the last answer
        # (loop time, progress), rising, 3 at most: tuples of numbers, which the collector
        # stops walking (as it does floats), while 100,000 are watched
        self.samples: tuple[tuple[float, int], ...] = ()
        self.end: float | None = None  # the end the progress forecasts, if any

    def watchers(self) -> Sequence[Job]:
        """The jobs watching this task."""
        jobs = self.jobs
        return () if jobs is None else (jobs,) if isinstance(jobs, Job) else jobs

    def add(self, job: Job) -> None:
        jobs = self.jobs
        self.jobs = job if jobs is None else [jobs, job] if isinstance(jobs, Job) else [*jobs, job]

    def discard(self, job: Job) -> bool:
        """Stop counting ``job`` among the watchers; whether it was one."""
        jobs = self.jobs
        if jobs is job:
            self.jobs = None
            return True
        if not isinstance(jobs, list) or job not in jobs:
            return False
        rest = [other for other in jobs if other is not job]
        self.jobs = rest[0] if len(rest) == 1 else rest
        return True

    def sample(self, at: float, progress: int | None, now: float | None = None) -> None:
        """Keep the time each new progress value was reached; restart if it went back.

        ``at`` is when the state was stamped; a stamp that did not move while the progress did
        belongs to the status, not the progress: ``now`` is taken instead.
        """
        if progress is None:
            return
        samples = self.samples
        if samples and progress < samples[-1][1]:
            samples = ()
        if not samples or progress > samples[-1][1]:
            if samples and at <= samples[-1][0]:
                at = max(now or at, samples[-1][0])
            self.samples = (*samples[1 - _SAMPLES:], (at, progress))
            self.unchanged = 0


class Watcher:
    """Schedules the creates and polls of one client. See the module docstring."""

    __slots__ = (
        "_closed", "_cohorts", "_create_tasks", "_creates", "_creating", "_deadlines", "_driver",
        "_due", "_durations", "_entries", "_gateway", "_hook", "_jobs", "_late", "_loop",
        "_max_creates", "_policy", "_poll_tasks", "_ready", "_refreshes", "_rng", "_seq",
        "_standby", "_timer", "_wake", "_wake_at",
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
        self._due: list[tuple[float, int, str]] = []
        # Due polls, the earliest likely finished first: (likely at, due, seq, task id).
        self._ready: list[tuple[float, float, int, str]] = []
        # The same due polls, oldest first: promoted in the order they fell due, so a queue.
        self._late: deque[tuple[float, int, str]] = deque()
        self._durations: dict[str, Durations] = {}  # per model: what finished tasks took
        self._refreshes: dict[str | None, float] = {}  # per model: refresh_of
        self._deadlines: list[float] = []  # a heap
        # deadline -> its pending jobs: a set, or the one job of a lone deadline (a watch)
        self._cohorts: dict[float, set[Job] | Job] = {}
        self._hook = self._forget  # one bound method for every job, not one each
        self._seq = itertools.count()
        self._creates: deque[Job] = deque()  # submitted, not started
        self._jobs: set[Job] = set()  # every job not yet resolved
        self._create_tasks: set[asyncio.Task[None]] = set()
        self._poll_tasks: set[asyncio.Task[None]] = set()
        self._driver: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake: asyncio.Future[None] | None = None
        self._wake_at: float | None = None  # when the waiting driver looks again, at the latest
        self._standby = False  # the driver waits for a poll to end, not for one to be due
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
        now = loop.time()
        at = None if deadline is None else now + deadline
        hook = self._hook
        with _no_gc():  # 100,000 jobs make no cycles: collecting while they are made is waste
            if keys is None:
                jobs = [Job(loop, request=request, deadline=at, started=now, hook=hook)
                        for request in requests]
            else:
                jobs = [Job(loop, request=request, key=key, deadline=at, started=now, hook=hook)
                        for request, key in zip(requests, keys, strict=True)]
            self._jobs.update(jobs)
            if at is not None:
                self._cohort(at).update(jobs)
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
        created_at: float | None = None, route: Route = Route.UNIFIED,
    ) -> Job:
        """Watch an existing task; jobs watching one task id share its polls."""
        loop = self._get_loop()
        at = None if deadline is None else loop.time() + deadline
        job = Job(loop, task_id=task_id, deadline=at, hook=self._hook)
        self._jobs.add(job)
        if at is not None:
            cohort = self._cohorts.get(at)
            if cohort is None:  # the common case: its own instant
                self._cohorts[at] = job
                heapq.heappush(self._deadlines, at)
                self._arm()
            elif isinstance(cohort, Job):
                self._cohorts[at] = {cohort, job}
            else:
                cohort.add(job)
        self.adopt(job, task_id, task, created_at, route)
        return job

    def adopt(
        self, job: Job, task_id: str, task: Task | None = None, created_at: float | None = None,
        route: Route | None = None,
    ) -> None:
        """Have a held job watch the task ``task_id`` (resolving it at once if terminal).

        The task is queried on ``route``, by default the one its snapshot came from.
        """
        if job.done():
            return
        if task is not None and task.terminal:
            self.settle(job, task)
        else:
            family = route or (task.route if task is not None else Route.UNIFIED)
            self._attach(job, task_id, task, created_at, family)

    def settle(self, job: Job, outcome: Task | BaseException) -> None:
        """Resolve a job: a terminal snapshot, or an error."""
        if isinstance(outcome, Task):
            job._update(outcome)
            outcome = outcome if outcome.status is Status.COMPLETED else TaskFailedError(outcome)
        if job._finish(outcome):
            self._release_job(job)

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
        self._unwatch_all()
        self._deadlines.clear()
        self._cohorts.clear()
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

    def _cohort(self, at: float) -> set[Job]:
        """The pending jobs giving up at loop time ``at``; the timer learns of a new one."""
        cohort = self._cohorts.get(at)
        if cohort is None:
            cohort = self._cohorts[at] = set()
            heapq.heappush(self._deadlines, at)
            self._arm()
        elif isinstance(cohort, Job):
            cohort = self._cohorts[at] = {cohort}
        return cohort

    def _release_job(self, job: Job) -> None:
        """A job is resolved: the watcher keeps no reference to it."""
        self._jobs.discard(job)
        if job.deadline is not None:
            cohort = self._cohorts.get(job.deadline)
            if cohort is job:
                del self._cohorts[job.deadline]
            elif isinstance(cohort, set):
                cohort.discard(job)

    def _forget(self, job: Job) -> None:
        """A job was cancelled: stop polling its task if no other job watches it."""
        self._release_job(job)
        entry = self._entries.get(job.id) if job.id is not None else None
        if entry is not None and entry.discard(job) and entry.jobs is None:
            self._drop(entry)

    def _finish(self, entry: _Entry, outcome: Task | BaseException) -> None:
        """Stop polling ``entry`` and resolve every job watching it with ``outcome``."""
        self._drop(entry)
        for job in entry.watchers():
            self.settle(job, outcome)
        entry.jobs = None

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
            self._nudge()  # its place in flight may be free for a poll

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

    def _attach(self, job: Job, task_id: str, task: Task | None, created_at: float | None,
                route: Route) -> None:
        entry = self._entries.get(task_id)
        if entry is None:
            assert self._loop is not None
            now = self._loop.time()
            started = created_at if created_at is not None else _started(task, now)
            entry = self._entries[task_id] = _Entry(task_id, task, started, route)
            if job.request is not None:  # the model asked for: what durations are learned by
                entry.model = job.request.model or entry.model
            if task is None:  # a task we know nothing of: ask at once
                delay = 0.0
            else:
                if started is not None:
                    entry.sample(started, task.progress)
                delay = self._first_gap(entry, now)
            self._schedule(entry, delay)
        elif task is not None and entry.task is None:
            entry.task = task
            entry.model = entry.model or task.model
        entry.add(job)
        if entry.task is not None:
            job._update(entry.task)

    def learn(self, model: str, seconds: float) -> None:
        """Learn that a task of ``model`` took ``seconds`` from create to completion.

        A task far faster than its family's figures (under half the prior's shortest) says
        this gateway is not what they describe: the prior goes, and the model's tasks waiting
        on it are polled again soon.
        """
        durations = self._durations_of(model)
        assert durations is not None
        durations.add(seconds)
        if durations.contradicted_by(seconds):
            log.info("octovid: a %s task took %.1fs, far less than its family's usual "
                     "durations; polling its tasks from the start", model, seconds)
            durations.drop_prior()
            if self._loop is not None:
                for entry in self._entries.values():
                    if entry.model == model and entry.live and entry.seq != -1:
                        self._schedule(entry, self._jittered(self._policy.initial))

    def _refresh_of(self, model: str | None) -> float:
        """``refresh_of`` the policy and ``model``, worked out once per model."""
        refresh = self._refreshes.get(model)
        if refresh is None:
            refresh = self._refreshes[model] = refresh_of(self._policy, model)
        return refresh

    def _durations_of(self, model: str | None) -> Durations | None:
        """The durations of ``model``: its family's prior and what its tasks took."""
        if model is None:
            return None
        durations = self._durations.get(model)
        if durations is None:
            durations = self._durations[model] = Durations(prior_of(model, self._policy))
        return durations

    def _schedule(self, entry: _Entry, delay: float, now: float | None = None) -> None:
        """Poll ``entry`` in ``delay`` seconds (from ``now``, the loop time, if known)."""
        assert self._loop is not None
        entry.seq = next(self._seq)
        # Never in the past: due polls are promoted in the order they fall due (_promote).
        at = (self._loop.time() if now is None else now) + max(delay, 0.0)
        heapq.heappush(self._due, (at, entry.seq, entry.task_id))
        if self._driver is None:
            self._driver = asyncio.ensure_future(self._drive())
            self._driver.add_done_callback(self._driver_done)
        if self._wake is not None and not self._standby:
            self._arm()  # the waiting driver may have to look sooner

    def _poll_done(self, task: asyncio.Task[None]) -> None:
        self._poll_tasks.discard(task)
        self._driver_done(task)  # a poll picks the next due one too: the same safety net

    def _driver_done(self, driver: asyncio.Task[None]) -> None:
        """After an internal error: fail every pending job, and start afresh for new ones."""
        if driver.cancelled() or driver.exception() is None:
            return
        exc = driver.exception()
        log.error("octovid: the watcher stopped on an internal error", exc_info=exc)
        for job in list(self._jobs):  # never leave a job pending
            self.settle(job, RuntimeError(f"octovid's watcher stopped: {exc!r}"))
        self._unwatch_all()  # watched for those jobs only
        if driver is self._driver:
            self._driver = None  # the next task watched starts another

    def _unwatch_all(self) -> None:
        """Stop polling every task: no entry, no due poll is left."""
        for entry in self._entries.values():
            entry.live = False
        self._entries.clear()
        self._due.clear()
        self._ready.clear()
        self._late.clear()

    # A heap item is live if its task's entry still has the item's sequence number: checked
    # in each of the three below, as they run for every poll, on every item.

    def _next_due(self) -> float | None:
        due, entries = self._due, self._entries
        while due:
            at, seq, task_id = due[0]
            entry = entries.get(task_id)
            if entry is not None and entry.seq == seq:
                return at
            heapq.heappop(due)
        return None

    def _promote(self, now: float) -> None:
        """Move the polls that are due to the ready ones: by when likely finished, and by age."""
        due, ready, late, entries = self._due, self._ready, self._late, self._entries
        while due and due[0][0] <= now:
            item = heapq.heappop(due)
            at, seq, task_id = item
            entry = entries.get(task_id)
            if entry is not None and entry.seq == seq:
                heapq.heappush(ready, (self._likely_at(entry), at, seq, task_id))
                late.append(item)  # after every item promoted before: none fell due later

    def _pick(self, now: float) -> tuple[_Entry, bool] | None:
        """The ready poll to send next, and whether it should go before waiting creates.

        A poll that has waited ``max_interval`` past its time goes first (the oldest first),
        else the one whose task became likely finished the earliest; it goes before waiting
        creates if that time has come.
        """
        late, entries = self._late, self._entries
        while late:
            at, seq, task_id = late[0]
            entry = entries.get(task_id)
            if entry is not None and entry.seq == seq:
                if at + self._policy.max_interval <= now:
                    return entry, True
                break
            late.popleft()
        ready = self._ready
        while ready:
            likely, at, seq, task_id = ready[0]
            entry = entries.get(task_id)
            if entry is not None and entry.seq == seq:
                return entry, likely <= now
            heapq.heappop(ready)
        return None

    async def _drive(self) -> None:
        """The one poll loop: wait for a due task, then a slot, then poll the most likely done.

        While creates wait for the limiter, a poll unlikely to find its task finished waits
        too, for ``max_interval`` at most: the budget goes where it buys the most. While every
        place in flight is taken, and polls hold some, it stands by: a poll that ends goes on
        to the next due task itself (``_follow``), and one that does not wakes the driver.
        """
        loop = asyncio.get_running_loop()
        gateway = self._gateway
        while True:
            now = loop.time()
            self._promote(now)
            picked = self._pick(now)
            wake_at = self._next_due()
            if picked is not None:
                if picked[1] or not gateway.creates_waiting():
                    slot = gateway.try_acquire(Lane.QUERY)
                    if slot is not None:
                        self._dispatch(slot, picked[0])
                        del slot, picked  # no local of the loop keeps them alive
                        continue
                    if not (self._poll_tasks and gateway.saturated()):
                        entry, seq = picked[0], picked[0].seq
                        slot = await gateway.acquire(Lane.QUERY)
                        # Granted at once (the clock has not moved), the pick still stands.
                        same = loop.time() == now and entry.seq == seq and entry.live
                        self._dispatch(slot, entry if same else None)
                        del entry, slot, picked
                        continue
                    self._standby = True
                wake_at = now + 1.0 if self._standby else min(wake_at or math.inf, now + 1.0)
            self._wake = loop.create_future()
            self._wake_at = wake_at
            self._arm()
            try:
                await self._wake
            finally:
                self._wake = None
                self._wake_at = None
                self._standby = False

    def _nudge(self) -> None:
        """Wake the driver if it stands by for a place in flight.

        A poll that ends without going on and a create that ends nudge it; a place that a
        ``Client.get`` or a download frees waits for its re-check (a second at most).
        """
        wake = self._wake
        if self._standby and wake is not None and not wake.done():
            wake.set_result(None)

    def _dispatch(self, slot: Slot, entry: _Entry | None = None) -> None:
        """Poll ``entry``, or the ready task to pick now, on ``slot``."""
        assert self._loop is not None
        if entry is None:
            now = self._loop.time()
            self._promote(now)
            picked = self._pick(now)
            if picked is None:  # the ready task was dropped while we waited
                slot.refund()
                return
            entry = picked[0]
        entry.seq = -1  # its items in both ready heaps are dead now
        task = self._loop.create_task(self._poll(entry, slot))
        self._poll_tasks.add(task)
        task.add_done_callback(self._poll_done)

    async def _poll(self, entry: _Entry, slot: Slot) -> None:
        """Poll ``entry`` on ``slot``, then each due task while a slot is free at once."""
        gateway = self._gateway
        while True:
            try:
                task, hint = await gateway.query(slot, entry.task_id, entry.route, entry.task)
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
            follow = self._follow()
            if follow is None:
                # Out of the polls in flight now, not when the done callback runs: the driver
                # this wakes must not stand by for a poll that has ended.
                self._poll_tasks.discard(asyncio.current_task())
                self._nudge()
                return
            entry, slot = follow

    def _follow(self) -> tuple[_Entry, Slot] | None:
        """The due poll an ended one goes on to, on a slot free at once; None if none.

        Going on in the same coroutine costs no new task and no wake of the driver, which at
        full speed are much of a poll's CPU. A slot is taken only if nobody waits for one:
        creates and other queries keep their turns.
        """
        if self._closed:
            return None
        assert self._loop is not None
        now = self._loop.time()
        self._promote(now)
        picked = self._pick(now)
        if picked is None:
            return None
        slot = self._gateway.try_acquire(Lane.QUERY)
        if slot is None:
            return None
        entry = picked[0]
        entry.seq = -1  # its items in both ready heaps are dead now
        return entry, slot

    def _polled(self, entry: _Entry, task: Task, hint: float | None) -> None:
        assert self._loop is not None
        now = self._loop.time()
        changed = entry.task is None or entry.task.raw_status != task.raw_status
        previous = entry.last_poll
        entry.polls += 1
        entry.unchanged += 1
        entry.failures = entry.strikes = 0
        entry.schedule = None
        entry.task = task
        entry.last_poll = now
        entry.model = entry.model or task.model
        if task.terminal:
            if task.status is Status.COMPLETED and entry.model and entry.started is not None:
                # It finished between the last two answers: when its answer says, else the
                # middle of that gap.
                ended = _state_time(task, now, self._policy.max_interval)
                if previous is None or not previous < ended < now:
                    ended = now if previous is None else (previous + now) / 2
                self.learn(entry.model, ended - entry.started)
            self._finish(entry, task)
        else:
            jobs = entry.jobs
            if isinstance(jobs, Job):  # entry.watchers(), without a tuple for the common case
                jobs._update(task)
            elif jobs:
                for job in jobs:
                    job._update(task)
            refresh = self._refresh_of(entry.model)
            stamp = _state_time(task, now, refresh)
            entry.sample(stamp, task.progress, now)
            # The answer's stamp is an instant of the gateway's refresh if it is believed.
            tick = stamp if refresh and stamp != now else None
            self._schedule(entry, max(self._plan(entry, now, refresh, tick), hint or 0.0), now)
        if changed:  # after the next poll is settled: the observer (journal) cannot stop it
            try:
                self._creating.observed(task)
            except Exception:  # pragma: no cover - the observer promises not to raise
                log.exception("octovid: recording task %s failed", task.id)

    def _first_gap(self, entry: _Entry, now: float) -> float:
        """Seconds from the create's answer (or a watch's first snapshot) to the first poll."""
        policy = self._policy
        floor = self._refresh_of(entry.model)
        durations = self._durations_of(entry.model)
        if durations is not None and not durations.confirmed and durations.probes < _PROBES:
            # A family's figures may not be this gateway's (nor a simulator's): the first
            # tasks of a model are polled soon, and one far faster than the figures drops them.
            durations.probes += 1
        else:
            learned = self._learned_gap(entry, now)
            if learned is not None:
                return max(floor, learned)
        return max(floor, self._jittered(policy.initial))

    def _learned_gap(self, entry: _Entry, now: float) -> float | None:
        """The gap the model's durations advise, jittered within the bound; None if none."""
        durations = self._durations_of(entry.model)
        if durations is None or entry.started is None:
            return None
        gap = learned_gap(durations, now - entry.started, self._policy, first=not entry.polls)
        return None if gap is None else self._bounded(gap)

    def _bounded(self, gap: float) -> float:
        """``gap``, whose last ``max_interval`` bounds a delay, shortened by the jitter: that
        spreads the polls and leaves room for the answer's own time."""
        policy = self._policy
        return gap - policy.max_interval * policy.jitter * self._rng.uniform(0.5, 1.0)

    def _plan(self, entry: _Entry, now: float, refresh: float, tick: float | None) -> float:
        """Seconds from now to the next poll of a task that is not finished (``_schedule``).

        ``refresh`` is the gateway's period for the task, ``tick`` a refresh instant (the last
        answer's stamp) if one is known.
        """
        policy = self._policy
        # Not before the gateway's next refresh: the answer cannot change until then.
        floor = refresh if tick is None else _refresh_after(tick, now, refresh) - now + refresh / 10
        forecast = Forecast.of(entry.samples, entry.started, refresh)
        agreed = forecast is not None and forecast.agreed(policy) and not self._beyond(
            entry, forecast.end)
        if forecast is not None and forecast.end + (refresh if agreed else 0.0) <= now:
            forecast = None  # an end that passed (and the refresh that shows it) says no more
        entry.end = None if forecast is None else forecast.end
        if forecast is not None:
            if agreed:
                # Aim where the gateway shows the end: its next refresh after it, by the state
                # stamps if the answers carry them, else spread over the period (so that tasks
                # ending together do not poll together).
                shown = (forecast.end + refresh * self._rng.uniform(0.5, 1.0) if tick is None
                         else _refresh_after(tick, forecast.end, refresh))
                gap = shown - now + refresh / 10
            else:
                # The answer just showed the task running: a completion from now on is seen
                # within max_interval, however early the uncertain end may come.
                gap = self._bounded(policy.max_interval)
            return max(floor, min(gap, reach(policy)))
        learned = self._learned_gap(entry, now)
        if learned is not None:
            return max(floor, learned)
        # Nothing to go by: the geometric schedule from the last change of progress.
        step = entry.unchanged if entry.samples else entry.polls
        return max(floor, policy.geometric(step, self._rng))

    def _beyond(self, entry: _Entry, end: float) -> bool:
        """Whether ``end`` makes the task longer than any of its model's known durations.

        Progress that stalled and rose again agrees on an end far off; no poll is aimed at
        one the durations (the family's tail, those seen) have never reached.
        """
        durations = self._durations_of(entry.model)
        return (durations is not None and durations.usable and entry.started is not None
                and end - entry.started > durations.longest)

    def _likely_at(self, entry: _Entry) -> float:
        """The loop time from which the task is more likely finished than not (inf: unknown).

        Due polls are ranked by it: the earliest is the most likely to find its task finished
        whenever it is sent, and a poll whose time has come goes before waiting creates.
        """
        if entry.end is not None:
            return entry.end
        durations = self._durations_of(entry.model)
        if durations is not None and entry.started is not None and entry.last_poll is not None:
            age = likely_age(durations, entry.last_poll - entry.started)
            if age is not None:
                return entry.started + age
        return math.inf

    def _poll_failed(self, entry: _Entry, exc: Exception) -> None:
        assert self._loop is not None
        entry.failures += 1
        entry.strikes = entry.strikes + 1 if isinstance(exc, ProtocolError) else 0
        if entry.schedule is None:
            entry.schedule = waits(self._policy.max_interval)
        # A task we created and have not yet seen answer is as young as a fresh one: its first
        # poll may come minutes after its create, when its family's tasks start to finish.
        age = None if entry.started is None else (
            self._loop.time() - entry.started if entry.polls else 0.0)
        verdict = decide(
            exc, Kind.POLL, schedule=entry.schedule, age=age,
            attempt=entry.strikes if isinstance(exc, ProtocolError) else entry.failures,
        )
        if verdict.action is not Action.RETRY:
            log.info("octovid: giving up on task %s: %s", entry.task_id, exc)
            self._finish(entry, exc)
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
        at = self._deadlines[0] if self._deadlines else math.inf
        if self._wake is not None:
            at = min(at, self._wake_time())
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
        while self._deadlines and self._deadlines[0] <= now:
            cohort = self._cohorts.pop(heapq.heappop(self._deadlines), ())
            for job in [cohort] if isinstance(cohort, Job) else list(cohort):
                self._expire(job)
        if self._wake is not None and self._wake_time() <= now and not self._wake.done():
            self._wake.set_result(None)
        self._arm()

    def _wake_time(self) -> float:
        """When the waiting driver must look again: the next due poll, or its own re-check.

        Standing by, only its re-check: the polls in flight take the due ones.
        """
        due = None if self._standby else self._next_due()
        at = math.inf if due is None else due
        return at if self._wake_at is None else min(at, self._wake_at)

    def _expire(self, job: Job) -> None:
        if job.done():
            return
        elapsed = job.elapsed
        log.info("octovid: job %s reached its deadline after %.1fs", job, elapsed)
        self.settle(job, WaitTimeoutError(job.id, job.task, elapsed))
        self._forget(job)
