"""The watcher's scheduling, on virtual time, against a scripted in-memory gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest

import octovid
from octovid import PollPolicy, RateLimit, Status, Task
from octovid._jobs import Job
from octovid._limiter import Lane, Limiter, Slot
from octovid._routes import Route
from octovid._schedule import estimate
from octovid._watcher import Watcher

EPOCH = 1.8e9  # the wall clock at loop time 0: conftest's ``wall`` fixture


class Gateway:
    """Tasks on virtual time: linear progress from create to completion, scripted faults."""

    def __init__(self, limiter: Limiter, *, latency: float = 0.05, progress: bool = True) -> None:
        self.limiter = limiter
        self.latency = latency
        self.progress = progress
        self.duration: dict[str, float] = {}
        self.created: dict[str, float] = {}
        self.outcome: dict[str, str] = {}
        self.faults: dict[str, list[Exception]] = defaultdict(list)
        self.status_word: dict[str, str] = {}
        self.stall_at: dict[str, int] = {}  # task id -> the progress it sticks at
        self.shape: dict[str, Callable[[float], int | None]] = {}  # fraction done -> progress
        self.model: dict[str, str] = {}  # task id -> the model its answers name
        self.log: list[tuple[float, str, str]] = []  # (time, "create" | "query", task id)
        self.observations: list[Task] = []  # what the watcher reported (the journal's feed)
        self.routes: list[Route] = []  # the route of each query
        self.pollers: set[asyncio.Task[object] | None] = set()  # the coroutines that queried
        self.default_duration = 10.0
        # The gateway's refresh period: 0, every answer is live; else an answer shows the state
        # of the last multiple of ``grid`` (loop time), stamped with it (wall: EPOCH + it).
        self.grid = 0.0
        self._ids = 0

    def add(self, task_id: str, duration: float, outcome: str = "completed") -> None:
        self.created[task_id] = asyncio.get_running_loop().time()
        self.duration[task_id] = duration
        self.outcome[task_id] = outcome

    def done_at(self, task_id: str) -> float:
        return self.created[task_id] + self.duration[task_id]

    def polls(self, task_id: str) -> list[float]:
        return [t for t, kind, i in self.log if kind == "query" and i == task_id]

    async def acquire(self, lane: Lane) -> Slot:
        return await self.limiter.acquire(lane)

    def try_acquire(self, lane: Lane) -> Slot | None:
        return self.limiter.try_acquire(lane)

    def saturated(self) -> bool:
        return self.limiter.saturated

    def creates_waiting(self) -> bool:
        return self.limiter.waiting_in(Lane.CREATE) > 0

    def observed(self, task: Task) -> None:
        self.observations.append(task)

    async def create(self, job: Job) -> Task:
        slot = await self.limiter.acquire(Lane.CREATE)
        # Like the client: once sent, a create runs to its answer even if its caller leaves.
        return await asyncio.shield(self._exchange(slot, job))

    async def _exchange(self, slot: Slot, job: Job) -> Task:
        with slot:
            self._ids += 1
            task_id = f"t{self._ids}"
            self.log.append((slot.at, "create", task_id))
            await asyncio.sleep(self.latency)
            self.add(task_id, self.default_duration)
            model = job.request.model if job.request is not None else None
            if model is not None:
                self.model[task_id] = model
            task = Task(id=task_id, status=Status.QUEUED, raw_status="queued", model=model,
                        progress=0 if self.progress else None)
            job._update(task)
            return task

    async def query(
        self, slot: Slot, task_id: str, route: Route, previous: Task | None = None
    ) -> tuple[Task, float | None]:
        self.routes.append(route)
        return await self._query(slot, task_id), None

    async def _query(self, slot: Slot, task_id: str) -> Task:
        self.log.append((slot.at, "query", task_id))
        self.pollers.add(asyncio.current_task())
        await asyncio.sleep(self.latency)
        if self.faults[task_id]:
            raise self.faults[task_id].pop(0)
        now = asyncio.get_running_loop().time()
        stamp = None
        if self.grid:
            now = self.grid * math.floor(now / self.grid)
            stamp = dt.datetime.fromtimestamp(EPOCH + now, dt.UTC)
        fraction = (now - self.created[task_id]) / self.duration[task_id]
        if task_id in self.stall_at:  # stuck below 100 for good
            fraction = min(fraction, self.stall_at[task_id] / 100)
        if fraction >= 1:
            if self.outcome[task_id] == "failed":
                return Task(id=task_id, status=Status.FAILED, raw_status="failed",
                            error="content policy", updated_at=stamp)
            return Task(id=task_id, status=Status.COMPLETED, raw_status="completed",
                        progress=100, video_url=f"https://cdn.example/{task_id}.mp4",
                        updated_at=stamp)
        word = self.status_word.get(task_id, "processing")
        shape = self.shape.get(task_id)
        progress = shape(fraction) if shape else int(fraction * 100) if self.progress else None
        return Task(id=task_id, status=octovid._task.status_of(word), raw_status=word,
                    progress=progress, model=self.model.get(task_id), updated_at=stamp)


def make(
    rate: float = 100.0, *, policy: PollPolicy | None = None, max_in_flight: int = 16,
    progress: bool = True,
) -> tuple[Watcher, Gateway, Limiter]:
    limiter = Limiter(RateLimit(rate, adaptive=False), max_in_flight)
    gateway = Gateway(limiter, progress=progress)
    # The scripted tasks take seconds, not the minutes of the families' public figures.
    watcher = Watcher(
        gateway=gateway, creating=gateway, policy=policy or PollPolicy(priors=False),
        max_creates=max_in_flight, rng=random.Random(7),
    )
    return watcher, gateway, limiter


def go(virtual, watcher: Watcher, main):
    """Run ``main`` on virtual time, then close the watcher."""

    async def scenario():
        try:
            return await main()
        finally:
            await watcher.close()

    return virtual(scenario)


EXACT = PollPolicy(initial=1.0, factor=2.0, max_interval=8.0, jitter=0.0, deadline=None,
                   refresh=0.0)


def test_geometric_schedule_exact(virtual):
    """The poll schedule of a task without progress is 1, 2, 4, 8, 8... seconds apart."""
    watcher, gateway, _ = make(policy=EXACT, progress=False)
    gateway.latency = 0.0

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=40.0)
        start = loop.time()
        job = watcher.watch("a", deadline=None, task=Task(id="a", status=Status.QUEUED),
                            created_at=start)
        await job
        return [round(t - start, 3) for t in gateway.polls("a")]

    assert go(virtual, watcher, main) == [1.0, 3.0, 7.0, 15.0, 23.0, 31.0, 39.0, 47.0]


def test_progress_estimate_aims_at_completion(virtual):
    """With linear progress at the default policy, a 60 s task costs at most 4 requests."""
    watcher, gateway, _ = make()
    gateway.default_duration = 60.0

    async def main() -> tuple[int, float]:
        job = watcher.submit(octovid.SoraRequest("x"), deadline=None)
        await job
        assert job.id is not None
        loop = asyncio.get_running_loop()
        return len([e for e in gateway.log if e[2] == job.id]), loop.time() - gateway.done_at(
            job.id
        )

    requests, delay = go(virtual, watcher, main)
    assert requests <= 4
    assert 0 <= delay <= PollPolicy().max_interval


def test_estimate_needs_rising_progress():
    """The completion estimate extrapolates rising progress and refuses anything else."""
    from collections import deque

    assert estimate(deque([(0.0, 10), (10.0, 30)])) == pytest.approx(45.0)
    assert estimate(deque([(0.0, 10)])) is None
    assert estimate(deque([(0.0, 30), (10.0, 30)])) is None
    assert estimate(deque([(0.0, 30), (10.0, 100)])) is None


def test_budget_too_small_degrades_fairly(virtual):
    """With demand far above the budget, every task is polled in turn and none starves."""
    watcher, gateway, _ = make(rate=2.0, policy=PollPolicy(initial=5, max_interval=30,
                                                           deadline=None))

    async def main() -> list[Job]:
        loop = asyncio.get_running_loop()
        jobs = []
        for i in range(100):
            gateway.add(f"t{i}", duration=150.0)
            jobs.append(watcher.watch(f"t{i}", deadline=None,
                                      task=Task(id=f"t{i}", status=Status.QUEUED),
                                      created_at=loop.time()))
        await octovid.gather(jobs)
        return jobs

    go(virtual, watcher, main)
    queries = [(t, i) for t, kind, i in gateway.log if kind == "query"]
    times = [t for t, _ in queries]
    # Never above the budget: any 10 s window holds at most 20 (+1 at the edge) queries.
    for start in times:
        assert sum(1 for t in times if start <= t < start + 10) <= 21
    # None starves: in the first 300 queries every task was polled at least twice.
    counts: Counter[str] = Counter(task_id for _, task_id in queries[:300])
    assert min(counts[f"t{i}"] for i in range(100)) >= 2
    # Every task was resolved soon after it finished: within about one round of the budget.
    delays = [gateway.polls(f"t{i}")[-1] - gateway.done_at(f"t{i}") for i in range(100)]
    assert max(delays) <= 1.2 * 100 / 2.0
    assert len(queries) <= 4 * 100


def test_overdue_task_near_completion_goes_first(virtual):
    """Under a tight budget a task whose estimated completion has passed is polled first."""
    watcher, gateway, _ = make(rate=1.0, policy=PollPolicy(initial=2, max_interval=30,
                                                           jitter=0, deadline=None))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        gateway.add("fast", duration=12.0)
        jobs = [watcher.watch("fast", deadline=None, task=Task(id="fast", status=Status.QUEUED,
                                                                 progress=0),
                              created_at=loop.time())]
        for i in range(30):
            gateway.add(f"slow{i}", duration=1000.0)
            jobs.append(watcher.watch(f"slow{i}", deadline=None,
                                      task=Task(id=f"slow{i}", status=Status.QUEUED),
                                      created_at=loop.time()))
        await jobs[0]
        delay = loop.time() - gateway.done_at("fast")
        for job in jobs[1:]:
            job.cancel()
        return delay

    assert go(virtual, watcher, main) < 30.0  # not a whole round of 30 tasks at 1/s behind


def test_deadline_fails_the_job_on_time(virtual):
    """A stuck task's job fails at its deadline with the last snapshot; polling stops."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> tuple[octovid.WaitTimeoutError, float]:
        loop = asyncio.get_running_loop()
        gateway.add("stuck", duration=1e9)
        start = loop.time()
        job = watcher.watch("stuck", deadline=30.0)
        with pytest.raises(octovid.WaitTimeoutError) as info:
            await job
        ended = loop.time() - start
        await asyncio.sleep(100)
        return info.value, ended

    error, ended = go(virtual, watcher, main)
    assert ended == pytest.approx(30.0)
    assert error.task_id == "stuck"
    assert error.task is not None and error.task.status is Status.PROCESSING
    assert error.elapsed == pytest.approx(30.0)
    assert max(gateway.polls("stuck")) < gateway.created["stuck"] + 30.0
    assert watcher.watching == 0


def test_watched_jobs_give_up_each_at_its_own_deadline_and_leave_none_behind(virtual):
    """Watches with lone and shared deadline instants expire on time; resolved ones leave."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for name in ("s1", "s2", "s3", "quick"):
            gateway.add(name, duration=1e9 if name != "quick" else 2.0)
        ended: dict[str, float] = {}
        jobs = {name: watcher.watch(name, deadline=deadline) for name, deadline in
                (("s1", 10.0), ("s2", 20.0), ("quick", 20.0))}
        jobs["s3"] = watcher.watch("s3", deadline=None)
        watcher._cohort(jobs["s2"].deadline).add(jobs["s3"])  # shares s2's instant
        for name, job in jobs.items():
            job.add_done_callback(lambda _, name=name: ended.__setitem__(name, loop.time()))
        await asyncio.gather(*jobs.values(), return_exceptions=True)
        lone = sum(1 for cohort in watcher._cohorts.values() if isinstance(cohort, Job))
        return [ended[name] - start for name in ("s1", "s2", "s3", "quick")], lone

    ended, lone = go(virtual, watcher, main)
    assert ended[:3] == [pytest.approx(10.0), pytest.approx(20.0), pytest.approx(20.0)]
    assert ended[3] < 5.0  # it completed; its deadline instant was left at once
    assert lone == 0


def test_cancelled_job_is_not_polled_again(virtual):
    """Cancelling the only job of a task stops its polls at once."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=1e9)
        job = watcher.watch("a", deadline=None)
        await asyncio.sleep(10)
        assert job.cancel() is True
        assert job.cancel() is False
        cancelled_at = loop.time()
        await asyncio.sleep(100)
        with pytest.raises(asyncio.CancelledError):
            job.result()
        return cancelled_at

    cancelled_at = go(virtual, watcher, main)
    assert max(gateway.polls("a")) <= cancelled_at
    assert watcher.watching == 0


def test_two_jobs_on_one_task_share_its_polls(virtual):
    """Watching one id twice polls it once per due time, and resolves both jobs."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> tuple[Task, Task]:
        gateway.add("a", duration=20.0)
        first = watcher.watch("a", deadline=None)
        second = watcher.watch("a", deadline=None)
        assert watcher.watching == 1
        return await first, await second

    first, second = go(virtual, watcher, main)
    assert first.status is second.status is Status.COMPLETED
    polls = gateway.polls("a")
    assert len(polls) == len(set(polls))  # never two queries at the same instant
    assert len(polls) <= 6


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_a_create_still_waiting_for_the_limiter_is_never_sent_for_an_ended_job(virtual, how):
    """Cancelled or timed out before its turn, a create is dropped: nothing is sent or billed."""
    watcher, gateway, limiter = make(rate=1.0)

    async def main() -> tuple[list[Job], float]:
        start = asyncio.get_running_loop().time()
        deadline = 0.5 if how == "deadline" else None
        jobs = [watcher.submit(octovid.SoraRequest(f"p{i}"), deadline=deadline)
                for i in range(5)]
        await asyncio.sleep(0)
        if how == "cancel":
            for job in jobs[1:]:
                job.cancel()
        await asyncio.sleep(10)
        return jobs, start

    jobs, start = go(virtual, watcher, main)
    assert [t - start for t, kind, _ in gateway.log if kind == "create"] == [0.0]
    assert all(job.done() for job in jobs)
    assert limiter.waiting == 0


def test_cancelling_one_of_two_jobs_keeps_the_other(virtual):
    """A task watched by two jobs keeps being polled when one of them is cancelled."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> Task:
        gateway.add("a", duration=20.0)
        first = watcher.watch("a", deadline=None)
        second = watcher.watch("a", deadline=None)
        await asyncio.sleep(2)
        first.cancel()
        return await second

    assert go(virtual, watcher, main).status is Status.COMPLETED


def test_transient_failures_never_fail_the_job(virtual):
    """Connection errors, 429s and 5xx during polling only delay the next poll."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> Task:
        gateway.add("a", duration=5.0)
        gateway.faults["a"] = [
            octovid.TransportError("reset", sent=True),
            octovid.RateLimitError(429, "slow down"),
            octovid.ServerError(502, "bad gateway", from_gateway=False),
            octovid.ProtocolError("garbled"),
        ]
        return await watcher.watch("a", deadline=None)

    assert go(virtual, watcher, main).status is Status.COMPLETED
    assert len(gateway.polls("a")) >= 5


def test_failed_polls_retry_within_a_second_then_back_off(virtual):
    """A failed poll is retried after U(0, 0.5) s, then U(0, 1), U(0, 2)... up to max_interval."""
    policy = PollPolicy(initial=5.0, factor=2.0, max_interval=6.0, jitter=0.0, deadline=None)
    watcher, gateway, _ = make(policy=policy, progress=False)
    gateway.latency = 0.0

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=60.0)
        gateway.faults["a"] = [octovid.ServerError(502, "bad gateway")] * 6
        start = loop.time()
        job = watcher.watch("a", deadline=None, task=Task(id="a", status=Status.QUEUED),
                            created_at=start)
        await job
        return gateway.polls("a")

    polls = go(virtual, watcher, main)
    gaps = [b - a for a, b in itertools.pairwise(polls[:7])]
    ceilings = [0.5, 1.0, 2.0, 4.0, 6.0, 6.0]  # doubling from 0.5 s, capped at max_interval
    assert all(0 <= gap <= ceiling + 1e-9 for gap, ceiling in zip(gaps, ceilings, strict=True))
    assert sum(gaps) < sum(ceilings)  # jittered below the ceilings, not at them


def test_stalled_progress_backs_off_instead_of_spinning(virtual):
    """A task stuck at 60% past its predicted end is polled less and less often, not every 2.5 s."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None))
    gateway.latency = 0.0

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=100.0)
        gateway.stall_at["a"] = 60
        job = watcher.watch("a", deadline=None, task=Task(id="a", status=Status.QUEUED),
                            created_at=loop.time())
        await asyncio.sleep(600)
        job.cancel()
        return gateway.polls("a")

    polls = go(virtual, watcher, main)
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert len(polls) < 30  # the old spin polled this task about 200 times in 600 s
    assert min(gaps) >= PollPolicy().initial  # never the old initial / 2
    assert gaps[-8:] == pytest.approx([PollPolicy().max_interval] * 8)  # grown back to the cap


def test_permanent_error_fails_the_job(virtual):
    """An authentication error during polling fails the job with that error."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> BaseException | None:
        gateway.add("a", duration=5.0)
        gateway.faults["a"] = [octovid.AuthenticationError(401, "Invalid token")]
        job = watcher.watch("a", deadline=None)
        with pytest.raises(octovid.AuthenticationError):
            await job
        return job.exception()

    assert isinstance(go(virtual, watcher, main), octovid.AuthenticationError)
    assert watcher.watching == 0


def test_repeated_unreadable_answers_fail_only_that_task(virtual):
    """Three unreadable answers in a row fail that task's job; others go on."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> tuple[BaseException | None, Task]:
        gateway.add("bad", duration=50.0)
        gateway.add("good", duration=5.0)
        gateway.faults["bad"] = [octovid.ProtocolError("not JSON")] * 3
        bad = watcher.watch("bad", deadline=None)
        good = watcher.watch("good", deadline=None)
        with pytest.raises(octovid.ProtocolError):
            await bad
        return bad.exception(), await good

    error, good = go(virtual, watcher, main)
    assert isinstance(error, octovid.ProtocolError)
    assert good.status is Status.COMPLETED


def test_task_not_found_is_transient_just_after_our_create(virtual):
    """task_not_exist right after our own create is retried; for a watched id it is final."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> tuple[Task, BaseException | None]:
        gateway.default_duration = 4.0
        job = watcher.submit(octovid.SoraRequest("x"), deadline=None)
        task = await job.created()
        gateway.faults[task.id] = [octovid.TaskNotFoundError(400, "task_not_exist")]
        gateway.add("other", duration=4.0)
        gateway.faults["other"] = [octovid.TaskNotFoundError(400, "task_not_exist")]
        other = watcher.watch("other", deadline=None)
        with pytest.raises(octovid.TaskNotFoundError):
            await other
        return await job, other.exception()

    task, error = go(virtual, watcher, main)
    assert task.status is Status.COMPLETED
    assert isinstance(error, octovid.TaskNotFoundError)


def test_failed_task_raises_task_failed_error(virtual):
    """A task that ends FAILED fails its job with TaskFailedError carrying the task."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> octovid.TaskFailedError:
        gateway.add("a", duration=3.0, outcome="failed")
        with pytest.raises(octovid.TaskFailedError) as info:
            await watcher.watch("a", deadline=None)
        return info.value

    error = go(virtual, watcher, main)
    assert error.task.status is Status.FAILED
    assert error.task.error == "content policy"
    assert "content policy" in str(error)


def test_unknown_status_keeps_polling(virtual):
    """A status word never seen before is UNKNOWN, not terminal: polling goes on."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> Task:
        gateway.add("a", duration=10.0)
        gateway.status_word["a"] = "teleporting"
        return await watcher.watch("a", deadline=None)

    assert go(virtual, watcher, main).status is Status.COMPLETED
    assert len(gateway.polls("a")) >= 3


def test_creates_do_not_starve_polls(virtual):
    """While a long batch of creates runs, tasks created early are polled and resolved."""
    watcher, gateway, _ = make(rate=2.0, policy=PollPolicy(initial=2, max_interval=10,
                                                           deadline=None))
    gateway.default_duration = 5.0

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        jobs = [watcher.submit(octovid.SoraRequest(f"p{i}"), deadline=None) for i in range(200)]
        first_done = asyncio.get_running_loop().create_future()
        jobs[0].add_done_callback(lambda _: first_done.done() or first_done.set_result(
            loop.time()))
        await octovid.gather(jobs)
        last_create = max(t for t, kind, _ in gateway.log if kind == "create")
        return first_done.result(), last_create

    first_done, last_create = go(virtual, watcher, main)
    assert first_done < last_create - 50  # resolved long before the batch finished creating


# Saturated: 200 tasks polled every 1-2 s, 4 requests in flight of 50 ms each (80 a second).
BUSY = PollPolicy(initial=1.0, factor=2.0, max_interval=2.0, jitter=0.0, deadline=None,
                  refresh=0.0, priors=False)


def _busy(watcher: Watcher, gateway: Gateway, count: int = 200) -> list[Job]:
    loop = asyncio.get_running_loop()
    jobs = []
    for i in range(count):
        gateway.add(f"b{i}", duration=20.0)
        jobs.append(watcher.watch(f"b{i}", deadline=None, created_at=loop.time(),
                                  task=Task(id=f"b{i}", status=Status.QUEUED)))
    return jobs


def test_a_poll_that_ends_goes_on_to_the_next_in_the_same_coroutine(virtual):
    """At full speed a few coroutines carry every poll: no new task for each one."""
    watcher, gateway, _ = make(rate=1000.0, policy=BUSY, max_in_flight=4, progress=False)

    async def main() -> None:
        await octovid.gather(_busy(watcher, gateway))

    go(virtual, watcher, main)
    polls = sum(kind == "query" for _, kind, _ in gateway.log)
    assert polls > 1000
    assert len(gateway.pollers) <= 8


def test_polls_going_on_leave_the_next_slot_to_a_waiting_request(virtual):
    """A query or a create that waits while polls go on back to back gets the next free slot."""
    watcher, gateway, limiter = make(rate=1000.0, policy=BUSY, max_in_flight=4,
                                     progress=False)

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        jobs = _busy(watcher, gateway)
        await asyncio.sleep(5.0)
        assert limiter.in_flight == 4  # saturated
        asked = loop.time()
        with await limiter.acquire(Lane.QUERY):  # a user's Client.get, say
            query_wait = loop.time() - asked
        asked = loop.time()
        await watcher.submit(octovid.SoraRequest("one more"), deadline=None).created()
        create_wait = loop.time() - asked - gateway.latency
        await octovid.gather(jobs)
        return query_wait, create_wait

    query_wait, create_wait = go(virtual, watcher, main)
    assert query_wait <= gateway.latency + 1e-6  # the first poll to end hands over its slot
    assert create_wait <= gateway.latency + 1e-6


def test_a_place_a_create_frees_goes_to_a_due_poll_at_once(virtual):
    """While polls go on back to back, the place of a create that ends is filled at once."""
    watcher, gateway, limiter = make(rate=1000.0, policy=BUSY, max_in_flight=4,
                                     progress=False)

    async def main() -> int:
        jobs = _busy(watcher, gateway)
        await asyncio.sleep(5.0)
        await watcher.submit(octovid.SoraRequest("one more"), deadline=None).created()
        await asyncio.sleep(0.01)  # the driver's own re-check comes a second later
        in_flight = limiter.in_flight
        await octovid.gather(jobs)
        return in_flight

    assert go(virtual, watcher, main) == 4


def test_a_place_freed_after_the_last_poll_in_flight_ended_is_not_left_idle(virtual):
    """When the last poll in flight hands its slot to a waiting query, the driver queues."""
    watcher, gateway, limiter = make(rate=1000.0, policy=BUSY, max_in_flight=2,
                                     progress=False)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        jobs = _busy(watcher, gateway)
        await asyncio.sleep(5.0)
        download = await limiter.acquire(Lane.QUERY)  # one place held for long, as a download
        await asyncio.sleep(0.5)  # one poll goes on in the other; the driver stands by
        with await limiter.acquire(Lane.QUERY):  # a Client.get takes it from the last poll
            await asyncio.sleep(gateway.latency)
        freed = loop.time()
        await asyncio.sleep(2.0)
        download.release()
        await octovid.gather(jobs)
        return freed

    freed = go(virtual, watcher, main)
    after = min(t for t, kind, _ in gateway.log if kind == "query" and t >= freed)
    assert after - freed < 0.01  # the next poll takes the freed place at once


def test_an_internal_error_in_a_poll_fails_every_pending_job(virtual, monkeypatch):
    """A bug that stops a poll's coroutine fails the pending jobs; none is left waiting."""
    watcher, gateway, _ = make(policy=EXACT)

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Watcher, "_polled", broken)

    async def main() -> BaseException | None:
        gateway.add("a", duration=5.0)
        job = watcher.watch("a", deadline=None, task=Task(id="a", status=Status.QUEUED),
                            created_at=asyncio.get_running_loop().time())
        try:
            await job
        except RuntimeError as exc:
            return exc
        return None

    error = go(virtual, watcher, main)
    assert isinstance(error, RuntimeError)
    assert "a bug" in str(error)


def test_after_an_internal_error_the_watcher_polls_new_jobs_to_their_end(virtual, monkeypatch):
    """The jobs pending at an internal error fail; a task watched after it is still polled."""
    watcher, gateway, _ = make(policy=EXACT)
    original = Watcher._likely_at  # the driver ranks the first due poll with it
    failures = iter([ZeroDivisionError("a bug")])

    def once_broken(self: Watcher, entry: object) -> float:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return original(self, entry)

    monkeypatch.setattr(Watcher, "_likely_at", once_broken)

    async def main() -> tuple[BaseException | None, Task]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=5.0)
        first = watcher.watch("a", deadline=None, task=Task(id="a", status=Status.QUEUED),
                              created_at=loop.time())
        try:
            await first
        except RuntimeError as exc:
            error: BaseException | None = exc
        else:
            error = None
        gateway.add("b", duration=5.0)
        second = watcher.watch("b", deadline=None, task=Task(id="b", status=Status.QUEUED),
                               created_at=loop.time())
        return error, await second

    error, task = go(virtual, watcher, main)
    assert isinstance(error, RuntimeError)
    assert task.status is Status.COMPLETED
    assert not [i for _, kind, i in gateway.log if kind == "query" and i == "a"][1:]


def test_deadline_while_creating_keeps_the_task_id(virtual):
    """A job whose deadline passes during its create fails, but learns its task id."""
    watcher, gateway, _ = make(policy=EXACT)
    gateway.latency = 5.0

    async def main() -> tuple[Job, octovid.WaitTimeoutError]:
        job = watcher.submit(octovid.SoraRequest("x"), deadline=2.0)
        with pytest.raises(octovid.WaitTimeoutError) as info:
            await job
        await asyncio.sleep(10)
        return job, info.value

    job, error = go(virtual, watcher, main)
    assert error.task_id is None
    assert job.id == "t1"
    assert gateway.polls("t1") == []


def test_close_resolves_every_job(virtual):
    """Closing resolves every pending job with CancelledError, queued creates included."""
    watcher, gateway, _ = make(rate=1.0, policy=EXACT)

    async def main() -> list[Job]:
        gateway.add("a", duration=1e9)
        jobs = [watcher.watch("a", deadline=None)]
        jobs += [watcher.submit(octovid.SoraRequest(f"p{i}"), deadline=None) for i in range(50)]
        await asyncio.sleep(5)
        await watcher.close()
        return jobs

    jobs = go(virtual, watcher, main)
    assert all(job.done() for job in jobs)
    assert all(job.cancelled() for job in jobs)
    assert watcher.pending == 0


def test_updates_yield_each_change_then_end(virtual):
    """updates() yields each change of status or progress and ends at the terminal one."""
    watcher, gateway, _ = make(policy=PollPolicy(initial=1, max_interval=2, jitter=0,
                                                 deadline=None))

    async def main() -> list[tuple[Status, int | None]]:
        gateway.add("a", duration=6.0)
        job = watcher.watch("a", deadline=None)
        return [(task.status, task.progress) async for task in job.updates()]

    seen = go(virtual, watcher, main)
    assert seen[-1] == (Status.COMPLETED, 100)
    assert all(s is Status.PROCESSING for s, _ in seen[:-1])
    progress = [p for _, p in seen[:-1]]
    assert progress == sorted(progress) and len(set(progress)) == len(progress)


def test_updates_raise_when_the_job_times_out(virtual):
    """updates() raises the job's error when it ends without a terminal snapshot."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> int:
        gateway.add("a", duration=1e9)
        job = watcher.watch("a", deadline=5.0)
        seen = 0
        with pytest.raises(octovid.WaitTimeoutError):
            async for _ in job.updates():
                seen += 1
        return seen

    assert go(virtual, watcher, main) >= 1


def test_created_returns_the_first_snapshot(virtual):
    """created() returns the create's answer, before the task finishes."""
    watcher, _, _ = make(policy=EXACT)

    async def main() -> tuple[Task, bool]:
        job = watcher.submit(octovid.SoraRequest("x"), deadline=None)
        first = await job.created()
        return first, job.done()

    first, done = go(virtual, watcher, main)
    assert first.status is Status.QUEUED and first.id == "t1"
    assert done is False


def test_as_completed_yields_in_completion_order(virtual):
    """as_completed yields the job that finished first first."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> list[str | None]:
        for name, duration in (("slow", 30.0), ("fast", 3.0), ("mid", 10.0)):
            gateway.add(name, duration=duration)
        jobs = [watcher.watch(name, deadline=None) for name in ("slow", "fast", "mid")]
        return [job.id async for job in octovid.as_completed(jobs)]

    assert go(virtual, watcher, main) == ["fast", "mid", "slow"]


def test_as_completed_times_out(virtual):
    """as_completed raises TimeoutError when jobs outlast its timeout; they go on."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> tuple[list[str | None], bool]:
        gateway.add("fast", duration=2.0)
        gateway.add("stuck", duration=1e9)
        jobs = [watcher.watch("fast", deadline=None), watcher.watch("stuck", deadline=None)]
        seen = []
        with pytest.raises(TimeoutError, match="1 of 2"):
            async for job in octovid.as_completed(jobs, timeout=20):
                seen.append(job.id)
        return seen, jobs[1].done()

    assert go(virtual, watcher, main) == (["fast"], False)


def test_gather_keeps_order_and_returns_exceptions(virtual):
    """gather returns tasks in the order given, errors in place with return_exceptions."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> list[Task | BaseException]:
        gateway.add("late", duration=10.0)
        gateway.add("bad", duration=2.0, outcome="failed")
        gateway.add("early", duration=2.0)
        jobs = [watcher.watch(name, deadline=None) for name in ("late", "bad", "early")]
        return await octovid.gather(jobs, return_exceptions=True)

    late, bad, early = go(virtual, watcher, main)
    assert isinstance(late, Task) and late.id == "late"
    assert isinstance(bad, octovid.TaskFailedError)
    assert isinstance(early, Task) and early.id == "early"


def test_awaiting_is_shielded(virtual):
    """Cancelling a coroutine that awaits a job does not cancel the job."""
    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> Task:
        gateway.add("a", duration=10.0)
        job = watcher.watch("a", deadline=None)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(job, 2.0)
        assert not job.done()
        return await job

    assert go(virtual, watcher, main).status is Status.COMPLETED


def test_ten_thousand_tasks_resolve(virtual):
    """10,000 tasks watched at once all resolve, and the queries keep to the budget."""
    watcher, gateway, _ = make(rate=500.0, max_in_flight=64,
                               policy=PollPolicy(initial=5, max_interval=30, deadline=None))

    async def main() -> list[Task | BaseException]:
        loop = asyncio.get_running_loop()
        jobs = []
        for i in range(10_000):
            gateway.add(f"t{i}", duration=20.0 + (i % 40))
            jobs.append(watcher.watch(f"t{i}", deadline=None,
                                      task=Task(id=f"t{i}", status=Status.QUEUED, progress=0),
                                      created_at=loop.time()))
        return await octovid.gather(jobs, return_exceptions=True)

    results = go(virtual, watcher, main)
    assert all(isinstance(r, Task) and r.status is Status.COMPLETED for r in results)
    queries = sum(1 for _, kind, _ in gateway.log if kind == "query")
    assert queries / 10_000 <= 3.5  # progress estimation keeps the polls per task low


def test_a_task_is_queried_on_the_route_it_was_created_on(virtual):
    """A watch on the OpenAI-format route polls that route, never the unified one."""
    from octovid._routes import Route

    watcher, gateway, _ = make(policy=EXACT)

    async def main() -> Task:
        gateway.add("v1", duration=3.0)
        return await watcher.watch("v1", deadline=None, route=Route.OPENAI)

    assert go(virtual, watcher, main).status is Status.COMPLETED
    assert gateway.routes and set(gateway.routes) == {Route.OPENAI}

