"""The poll schedule alone, on WORKLOADS.md's presets and virtual time: requests and delays.

```sh
python benchmarks/schedule.py              # every scenario, under a minute
python benchmarks/schedule.py --jobs 200   # fewer jobs
```

A model of the gateway, not the gateway: octovid's own :class:`~octovid._watcher.Watcher` and
:class:`~octovid._limiter.Limiter`, on an event loop whose clock jumps to the next timer, in
front of tasks drawn and shown exactly as ``octovid.testing.Simulator`` draws and shows them
(the presets' durations, progress patterns, 15 s refresh grid and "unknown" period, from
``octovid.testing``'s own functions), with no HTTP. So hours of workload run in seconds, every
figure is exact, and a change of the schedule can be judged on 2,000 jobs before the whole
client is measured over HTTP by ``benchmarks/jobs.py``.

Beside octovid's schedule, on the same tasks (the same seed), run three fixed-interval loops: a
poll every ``max_interval`` (30 s: the cheapest fixed schedule that keeps every delay within
the bound), a poll every 5 s (the naive loop), and "oracle": told the 2.5% quantile of this
very batch's durations, it polls first there and then every 29 s, the floor of any schedule
that ignores progress and keeps the delay within 30 s (with no key limit only). Every scenario
says its preset; figures are in workload seconds. Saved to ``results/schedule.md`` and
``results/schedule.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime as dt
import json
import math
import random
import statistics
import sys
import types
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from report import allowed, throughput_ceiling

import octovid
import octovid._watcher as watcher_module
from octovid import PollPolicy, RateLimit, Status, Task
from octovid._errors import RateLimitError
from octovid._jobs import Job
from octovid._limiter import Lane, Limiter, Slot
from octovid._retry import throttle_of
from octovid._routes import Route
from octovid._watcher import Watcher
from octovid.testing import VirtualLoop
from octovid.testing._tasks import SimTask, draw_steps, view, visible_after
from octovid.testing._workloads import JOBS, Jobs

RESULTS = Path(__file__).parent / "results"
EPOCH = 1.8e9  # the wall clock of virtual time 0
LATENCY = 0.3  # seconds each answer takes
MODELS = {"sora": "sora-2", "grok": "grok-video-3", "veo": "veo3.1", "veo-fast": "veo3.1-fast",
          "vidu": "viduq2", "jimeng": "jimeng-video-3.0"}


class Plan:
    """One task as the simulator plans it: its duration, outcome and progress pattern."""

    def __init__(self, jobs: Jobs, rng: random.Random) -> None:
        self.duration = jobs.draw_duration(rng)
        self.failed = rng.random() < jobs.failure_rate
        self.pattern = jobs.draw_pattern(rng)
        self.steps = draw_steps(self.pattern, self.duration, rng)


def _refusal() -> RateLimitError:
    return RateLimitError(429, "too many requests", code="rate_limit_exceeded")


class Model:
    """The gateway's task state and key limit; the watcher's Polling and Creating sides."""

    def __init__(self, jobs: Jobs, plans: list[Plan], limiter: Limiter | None,
                 limit: tuple[int, float] | None) -> None:
        self.jobs = jobs
        self.plans = deque(plans)
        self.limiter = limiter
        self.limit = limit  # (requests, per seconds) of the key: a sliding window, like the sim
        self.window: deque[float] = deque()
        self.tasks: dict[str, Any] = {}
        self.requests = 0
        self.refused = 0
        self.log: list[tuple[float, str, bool]] = []  # (time, "create" | "poll", bought a job)

    def _admit(self) -> bool:
        now = asyncio.get_running_loop().time()
        self.requests += 1
        if self.limit is None:
            return True
        count, per = self.limit
        while self.window and self.window[0] <= now - per:
            self.window.popleft()
        if len(self.window) >= count:
            self.refused += 1
            return False
        self.window.append(now)
        return True

    def _new_task(self) -> tuple[str, Any]:
        now = asyncio.get_running_loop().time()
        plan = self.plans.popleft()
        jobs = self.jobs
        visible = visible_after(plan.duration, jobs.refresh, 0.0, now, jobs.unknown_for)
        task_id = f"task_{len(self.tasks)}"
        self.tasks[task_id] = task = SimTask(
            id=task_id, family="sora", model="m", body={}, created=now,
            wall_created=EPOCH + now, duration=plan.duration,
            outcome="failed" if plan.failed else "completed", reason=None,
            terminal_at=now + visible, wall_terminal_at=EPOCH + now + visible,
            pattern=plan.pattern, refresh=jobs.refresh, ticks_from=0.0,
            unknown_for=jobs.unknown_for, queued_for=plan.steps.queued_for,
            step_at=plan.steps.step_at, step_level=plan.steps.step_level,
            stall_for=plan.steps.stall_for,
        )
        return task_id, task

    def snapshot(self, task_id: str, model: str | None) -> Task:
        """What a query now shows of the task, as octovid reads it."""
        task = self.tasks[task_id]
        seen = view(task, asyncio.get_running_loop().time())
        status = {"completed": Status.COMPLETED, "failed": Status.FAILED,
                  "queued": Status.QUEUED, "unknown": Status.UNKNOWN}.get(
                      seen.phase, Status.PROCESSING)
        progress = None
        if seen.reported and status is not Status.UNKNOWN:
            progress = 100 if status.terminal else int(seen.fraction * 100)
        return Task(id=task_id, status=status, raw_status=seen.phase, progress=progress,
                    model=model, updated_at=dt.datetime.fromtimestamp(seen.wall, dt.UTC),
                    video_url="https://cdn.example/v.mp4" if status is Status.COMPLETED else None)

    # -- the watcher's sides ---------------------------------------------------------------

    async def acquire(self, lane: Lane) -> Slot:
        assert self.limiter is not None
        return await self.limiter.acquire(lane)

    def try_acquire(self, lane: Lane) -> Slot | None:
        assert self.limiter is not None
        return self.limiter.try_acquire(lane)

    def saturated(self) -> bool:
        return self.limiter is not None and self.limiter.saturated

    def creates_waiting(self) -> bool:
        return self.limiter is not None and self.limiter.waiting_in(Lane.CREATE) > 0

    def observed(self, task: Task) -> None:
        pass

    async def create(self, job: Job) -> Task:
        assert self.limiter is not None
        assert job.request is not None
        while True:
            slot = await self.limiter.acquire(Lane.CREATE)
            with slot:
                slot.sending()
                slot.sent()  # the headers are on the wire at once (the transport says so)
                await asyncio.sleep(LATENCY)
                if self._admit():
                    self.limiter.answered(slot)
                    task_id, _ = self._new_task()
                    self.log.append((slot.at, "create", True))
                    return self.snapshot(task_id, job.request.model)
                self.limiter.answered(slot, throttle_of(_refusal()))
                self.log.append((slot.at, "create", False))
            await asyncio.sleep(1.0)

    async def query(self, slot: Slot, task_id: str, route: Route,
                    previous: Task | None = None) -> tuple[Task, float | None]:
        assert self.limiter is not None
        slot.sending()
        slot.sent()  # the headers are on the wire at once (the transport says so)
        await asyncio.sleep(LATENCY)
        if not self._admit():
            refusal = _refusal()
            self.limiter.answered(slot, throttle_of(refusal))
            self.log.append((slot.at, "poll", False))
            raise refusal
        self.limiter.answered(slot)
        task = self.snapshot(task_id, previous.model if previous is not None else None)
        self.log.append((slot.at, "poll", task.terminal))
        return task, None


async def run_octovid(model: Model, count: int, model_name: str, *, rate: RateLimit,
                      deadline: float, warm: int) -> dict[str, Any]:
    """Submit ``warm`` then ``count`` jobs to one watcher; their ends and the requests spent."""
    loop = asyncio.get_running_loop()
    watcher_module.time = types.SimpleNamespace(time=lambda: EPOCH + loop.time())  # type: ignore[assignment]
    model.limiter = Limiter(rate, 16)
    watcher = Watcher(gateway=model, creating=model, policy=PollPolicy(deadline=None),
                      max_creates=16, rng=random.Random(1))
    try:
        if warm:
            await octovid.gather([watcher.submit(_request(model_name, -1 - i), deadline=None)
                                  for i in range(warm)], return_exceptions=True)
        model.requests = model.refused = 0
        model.log.clear()
        start = loop.time()
        ends: dict[str, float] = {}
        jobs = [watcher.submit(_request(model_name, i), deadline=deadline) for i in range(count)]
        for job in jobs:
            job.add_done_callback(lambda j: ends.__setitem__(
                j.task.id if j.task else "", loop.time()) if j.task else None)
        await octovid.gather(jobs, return_exceptions=True)
        return {"start": start, "ends": ends,
                "lost": sum(1 for job in jobs if job.exception() is not None
                            and not isinstance(job.exception(), octovid.TaskFailedError))}
    finally:
        await watcher.close()


def _request(model_name: str, index: int) -> octovid.Request:
    if model_name.startswith("veo"):
        return octovid.VeoRequest(f"p{index}", model=model_name)
    if model_name.startswith("grok"):
        return octovid.GrokRequest(f"p{index}", model=model_name)
    return octovid.SoraRequest(f"p{index}", model=model_name)


async def run_fixed(model: Model, count: int, interval: float,
                    first: float | None = None) -> dict[str, Any]:
    """A coroutine per job: create, then poll every ``interval`` (the first after ``first``)
    until the end (no limiter)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    ends: dict[str, float] = {}

    async def one() -> None:
        while not model._admit():  # a retry after 1 s, as users write it
            model.log.append((loop.time(), "create", False))
            await asyncio.sleep(1.0)
        model.log.append((loop.time(), "create", True))
        await asyncio.sleep(LATENCY)
        task_id, _ = model._new_task()
        wait = interval if first is None else first
        while True:
            await asyncio.sleep(wait)
            wait = interval
            sent = loop.time()
            ok = model._admit()
            await asyncio.sleep(LATENCY)
            done = ok and model.snapshot(task_id, None).terminal
            model.log.append((sent, "poll", done))
            if done:
                ends[task_id] = loop.time()
                return

    await asyncio.gather(*(one() for _ in range(count)))
    return {"start": start, "ends": ends, "lost": 0}


def figures(model: Model, outcome: dict[str, Any], count: int) -> dict[str, Any]:
    """Requests per job, 429s and detection delays of one run."""
    delays = sorted(end - model.tasks[task_id].terminal_at
                    for task_id, end in outcome["ends"].items())
    cuts = statistics.quantiles(delays, n=20, method="inclusive") if len(delays) > 1 else [0.0]
    rows = {
        "requests per job": model.requests / count,
        "429s": model.refused,
        "detection p50 (s)": statistics.median(delays) if delays else math.nan,
        "detection p95 (s)": cuts[-1],
        "jobs lost": outcome["lost"],
        "last job done at (s)": max(outcome["ends"].values(), default=0.0) - outcome["start"],
    }
    if model.limit is not None:
        creates = [at for at, kind, bought in model.log if kind == "create" and bought]
        if creates:  # from the first request to the last accepted create, as report.throughput
            first, last = min(at for at, _, _ in model.log), max(creates)
            useful = sum(1 for at, _, bought in model.log if bought and at <= last)
            rows["throughput / limit, creates queued"] = useful / allowed(last - first,
                                                                          model.limit)
            rows["its ceiling with a p95 within 60 s"] = throughput_ceiling(
                list(model.tasks.values()), first, last, model.limit)
    return rows


def blind_floor(durations: list[float], bound: float, share: float = 0.95) -> float:
    """The fewest requests per job of any schedule blind to a task's duration until it polls
    it that sees ``share`` of the jobs within ``bound`` seconds of their end.

    Before its first poll nothing tells a task from the others: if that poll comes at age
    ``A``, the tasks that ended before ``A - bound`` are seen late, so ``A`` is at most the
    ``1 - share`` quantile plus ``bound``; every task still running then needs a second poll
    at least (even if its progress gives its end exactly).
    """
    ordered = sorted(durations)
    first = ordered[int((1 - share) * len(ordered))] + bound
    return 2 + sum(1 for d in ordered if d > first) / len(ordered)


def blind_optimum(durations: list[float], bound: float, share: float = 0.95,
                  step: float = 0.5) -> float:
    """The fewest requests per job of any schedule that knows a task by its age alone (no
    progress: Veo) and sees ``share`` of the jobs within ``bound`` seconds of their end.

    Such a schedule is one list of poll ages for every task. A task that ends between two polls
    is seen at the second, late if that is more than ``bound`` after its end; the polls it
    costs are those up to that one. Any list moved up to a ``step`` grid costs no more polls
    and sees no task more than ``step`` later, so the least polls + ``lam`` x (the share seen
    more than ``bound + step`` late) over the lists on the grid is at most that of any list.
    That is a shortest path; for every ``lam`` >= 0 its value less ``lam`` x (1 - ``share``)
    is at most the constrained optimum (weak duality), and the best ``lam`` is found by
    golden-section search (the dual is concave). A lower bound: no such schedule on these
    durations does better.
    """
    ordered = sorted(durations)
    if not ordered:
        return math.nan
    count, last = len(ordered), math.ceil(ordered[-1] / step)
    seen = [bisect.bisect_right(ordered, k * step) / count for k in range(last + 1)]
    # late[t]: the share that ended more than bound + step before t (the relaxed lateness),
    # and cut[t]: the last grid age s < t from which such tasks can still be unseen.
    late = [bisect.bisect_left(ordered, t * step - bound - step) / count
            for t in range(last + 1)]
    cut = [math.ceil((t * step - bound - step) / step) - 1 for t in range(last + 1)]

    def cheapest(lam: float) -> float:
        # cost[t]: the least polls + lam x late share of the lists whose last poll is at t. The
        # poll at t after one at s costs the share still running at s; the tasks that ended
        # since s and more than bound + step before t are late.
        cost = [0.0] * (last + 1)
        early, added = math.inf, 0  # min of cost[s] + running(s) - lam x seen(s), s <= cut[t]
        for t in range(1, last + 1):
            while added <= min(cut[t], t - 1):
                early = min(early, cost[added] + 1 - seen[added] - lam * seen[added])
                added += 1
            start = max(0, cut[t] + 1)
            near = min((cost[s] + 1 - seen[s] for s in range(start, t)), default=math.inf)
            cost[t] = min(near, early + lam * late[t])
        return cost[last] - lam * (1 - share)

    low, high = 0.0, 1000.0
    golden = (math.sqrt(5) - 1) / 2
    a, b = high - golden * (high - low), low + golden * (high - low)
    fa, fb = cheapest(a), cheapest(b)
    for _ in range(40):
        if fa < fb:
            low, a, fa = a, b, fb
            b = low + golden * (high - low)
            fb = cheapest(b)
        else:
            high, b, fb = b, a, fa
            a = high - golden * (high - low)
            fa = cheapest(a)
    return 1 + max(fa, fb, cheapest(0.0))


SCENARIOS: dict[str, dict[str, Any]] = {
    "sora": {"preset": "sora", "rate": RateLimit(50), "limit": None, "deadline": None},
    "grok": {"preset": "grok", "rate": RateLimit(50), "limit": None, "deadline": None},
    "veo-warm": {"preset": "veo", "rate": RateLimit(50), "limit": None, "deadline": None,
                 "warm": 150},
    "tight": {"preset": "tight", "rate": RateLimit(60, per=60), "limit": (60, 60.0),
              "deadline": 600.0},
}

TIGHT = Jobs(typical=(60.0, 240.0), tail=240.0, patterns={"linear": 1.0}, failure_rate=0.05,
             tail_share=0.0)


def scenario(name: str, count: int, seed: int) -> dict[str, dict[str, Any]]:
    """Run one scenario with each schedule; their figures."""
    spec = SCENARIOS[name]
    preset = spec["preset"]
    jobs = TIGHT if preset == "tight" else JOBS[preset]
    model_name = "sora-2" if preset == "tight" else MODELS[preset]
    warm = spec.get("warm", 0)
    if name == "tight":
        count = min(count, 200)
    rows: dict[str, dict[str, Any]] = {}
    for client in ("octovid", "every 30 s", "every 5 s", "oracle"):
        rng = random.Random(seed)
        plans = [(_uniform(rng) if jobs is TIGHT else Plan(jobs, rng)) for _ in range(count + warm)]
        if client == "oracle" and spec["limit"] is not None:
            continue  # no limiter: the floor of a key with room
        model = Model(jobs, plans, None, spec["limit"])
        loop = VirtualLoop(start=0.0)
        try:
            if client == "octovid":
                outcome = loop.run_until_complete(run_octovid(
                    model, count, model_name, rate=spec["rate"],
                    deadline=spec["deadline"] or math.inf, warm=warm))
            elif client == "oracle":  # knows the durations' 2.5% quantile: from there, 30 s
                model.plans = deque(plans[warm:])
                first = sorted(plan.duration for plan in plans[warm:])[count // 40]
                outcome = loop.run_until_complete(run_fixed(model, count, 29.0, first))
            else:
                model.plans = deque(plans[warm:])
                outcome = loop.run_until_complete(
                    run_fixed(model, count, 30.0 if client == "every 30 s" else 5.0))
        finally:
            loop.close()
        rows[client] = figures(model, outcome, count)
        if client == "octovid":
            floor = rows["floor"] = floors(model.tasks.values(), spec["limit"])
            if spec["limit"] is not None:
                requests, per = spec["limit"]
                floor["key seconds for the batch"] = (
                    (floor["any"] * count - requests) * per / requests)
    return rows


def floors(tasks: Iterable[SimTask], limit: tuple[int, float] | None,
           scale: float = 1.0) -> dict[str, float]:
    """The least requests per job any schedule needs on these tasks for the target's p95.

    Bounds, not schedules (``blind_floor``: any schedule; ``blind_optimum``: by age alone), on
    the durations the gateway shows (create to the instant queries see the end), times
    ``scale``. The target's bound is ``max_interval``, or twice that under a key limit (the
    tight key's 60 s).
    """
    shown = [(task.terminal_at - task.created) * scale for task in tasks
             if math.isfinite(task.terminal_at)]
    bound = PollPolicy().max_interval * (1 if limit is None else 2)
    if not shown:
        return {"bound": bound, "any": math.nan, "by_age": math.nan}
    return {"bound": bound, "any": blind_floor(shown, bound),
            "by_age": blind_optimum(shown, bound)}


def _uniform(rng: random.Random) -> Plan:
    plan = Plan(TIGHT, rng)
    plan.duration = rng.uniform(60.0, 240.0)
    return plan


def render(results: dict[str, dict[str, dict[str, Any]]], count: int) -> str:
    lines = [f"# The poll schedule on virtual time ({count} jobs a scenario)", ""]
    for name, rows in results.items():
        clients = [client for client in rows if client != "floor"]
        lines += [f"## {name}", "", "| figure | " + " | ".join(clients) + " |",
                  "|---" * (len(clients) + 1) + "|"]
        for figure in rows[clients[0]]:
            cells = [f"{rows[c].get(figure, math.nan):.2f}"
                     if isinstance(rows[c].get(figure, math.nan), float)
                     else str(rows[c][figure]) for c in clients]
            lines.append(f"| {figure} | " + " | ".join(cells) + " |")
        if (floor := rows.get("floor")) is not None:
            lines += ["", f"Floors for a detection p95 within {floor['bound']:.0f} s, in "
                      f"requests per job: {floor['any']:.2f} for any schedule (even "
                      f"one that knows each end from the first poll), "
                      f"{floor['by_age']:.2f} for one that knows a task by its age alone "
                      "(no progress: Veo)."]
            if "key seconds for the batch" in floor:
                lines[-1] += (f" The first takes {floor['key seconds for the batch']:.0f} s of "
                              "the key for the batch, with no wait in any queue.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS))
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    results = {name: scenario(name, args.jobs, args.seed) for name in args.only or SCENARIOS}
    text = render(results, args.jobs)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "schedule.md").write_text(text + "\n")
        (RESULTS / "schedule.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
