"""The poll schedule on virtual time: every progress pattern of WORKLOADS.md, learning, budget.

The gateway here is the virtual one of test_watcher (no I/O, exact times); each test names the
progress pattern it runs (WORKLOADS.md "Patterns the scheduler must survive").
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import attrs
import pytest
from test_watcher import go, make

import octovid
from octovid import PollPolicy, Status, Task
from octovid._schedule import (
    Durations,
    Forecast,
    family_of,
    learned_gap,
    likely_age,
    prior_of,
)

D = PollPolicy().max_interval  # 30 s: the bound on how late a completion may be seen


def linear(fraction: float) -> int:
    return int(fraction * 100)


def queued_then_rising(fraction: float) -> int:
    return 0 if fraction < 0.4 else int((fraction - 0.4) / 0.6 * 100)


def jumping(fraction: float) -> int:
    return 0 if fraction < 0.7 else 90


def stalling(fraction: float) -> int:
    return min(60, int(fraction * 100)) if fraction < 0.9 else int(fraction * 100)


def none(fraction: float) -> int | None:
    return None


def run_one(virtual, shape, duration: float, *, model: str = "sora-2",
            policy: PollPolicy | None = None, learned: list[float] | None = None):
    """Watch one task of ``duration`` from its create; return (polls, detection delay)."""
    watcher, gateway, _ = make(policy=policy or PollPolicy(jitter=0.0, deadline=None,
                                                           priors=False))
    gateway.latency = 0.0
    for seconds in learned or ():
        watcher.learn(model, seconds)

    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=duration)
        gateway.shape["a"] = shape
        gateway.model["a"] = model
        start = Task(id="a", status=Status.QUEUED, raw_status="queued", model=model,
                     progress=None if shape is none else 0)
        await watcher.watch("a", deadline=None, task=start, created_at=loop.time())
        return len(gateway.polls("a")), loop.time() - gateway.done_at("a")

    return go(virtual, watcher, main)


@pytest.mark.parametrize("duration", [60.0, 180.0, 240.0])
def test_honest_linear_progress_costs_three_polls_and_is_seen_within_the_bound(
    virtual, duration
):
    """Linear progress: the end is aimed at once two estimates agree; seen within 30 s."""
    polls, delay = run_one(virtual, linear, duration)
    assert polls <= 4
    assert 0 <= delay <= D


def test_an_agreed_end_is_aimed_at_beyond_max_interval(virtual):
    """With agreeing samples the next poll may be further than max_interval away."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None))
    gateway.latency = 0.0

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=600.0)
        gateway.shape["a"] = linear
        await watcher.watch("a", deadline=None, created_at=loop.time(),
                            task=Task(id="a", status=Status.QUEUED, progress=0))
        return gateway.polls("a")

    gaps = [b - a for a, b in itertools.pairwise(go(virtual, watcher, main))]
    assert max(gaps) > 3 * D  # aimed at the end, not every 30 s
    assert max(gaps) <= 8 * D  # bounded: a far end is checked on the way


@pytest.mark.parametrize(
    ("shape", "duration"),
    [(queued_then_rising, 200.0), (jumping, 200.0), (stalling, 300.0), (none, 120.0)],
    ids=["queued-then-rising", "jumping", "stalling", "none"],
)
def test_every_pattern_is_seen_within_the_bound_without_a_spin(virtual, shape, duration):
    """Queued, jumping, stalling and no progress: seen within 30 s, never polled in a spin."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None))
    gateway.latency = 0.0

    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=duration)
        gateway.shape["a"] = shape
        start = Task(id="a", status=Status.QUEUED, progress=None if shape is none else 0)
        await watcher.watch("a", deadline=None, task=start, created_at=loop.time())
        return gateway.polls("a"), loop.time() - gateway.done_at("a")

    polls, delay = go(virtual, watcher, main)
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert 0 <= delay <= D
    assert min(gaps) >= PollPolicy().refresh - 1e-9  # never twice within a refresh period
    assert len(polls) <= duration / PollPolicy().refresh + 1


def test_no_poll_within_one_refresh_period_except_for_live_veo(virtual):
    """Two polls of one task are 15 s apart at least; Veo (fetched live) may go sooner."""
    policy = PollPolicy(initial=2.0, max_interval=30.0, jitter=0.0, deadline=None, priors=False)
    sora, _ = run_one(virtual, none, 40.0, policy=policy)
    veo, _ = run_one(virtual, none, 40.0, policy=policy, model="veo3.1-fast")
    assert sora < veo  # the geometric 2, 3, 4.5 s... floored at 15 s for Sora only


def test_learned_durations_aim_the_first_poll_near_where_tasks_finish(virtual):
    """Once 50 tasks of a model finished in 100-130 s, a new one is first polled near 100 s."""
    rng = random.Random(1)
    learned = [rng.uniform(100, 130) for _ in range(50)]
    polls, delay = run_one(virtual, none, 118.0, model="veo3.1", learned=learned)
    cold, _ = run_one(virtual, none, 118.0, model="veo3.1")
    assert polls <= 3 < cold
    assert 0 <= delay <= D


def test_learning_from_the_tasks_seen_to_finish(virtual):
    """The watcher learns each model's durations from its own finished tasks."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None, priors=False))
    gateway.latency = 0.0
    gateway.progress = False
    gateway.default_duration = 90.0

    async def main() -> list[int]:
        counts = []
        for _ in range(3):
            jobs = [watcher.submit(octovid.VeoRequest(f"x{i}"), deadline=None)
                    for i in range(25)]
            await octovid.gather(jobs)
            counts.append(len([e for e in gateway.log if e[1] == "query"]))
        return counts

    first, second, third = go(virtual, watcher, main)
    assert third - second < first  # later batches cost fewer polls than the cold first one


def test_durations_keep_the_recent_ones_in_order():
    """Durations forget the oldest beyond 256 and answer quantiles and the cdf."""
    durations = Durations()
    for seconds in range(1, 301):
        durations.add(float(seconds))
    assert len(durations) == 256
    assert durations.quantile(0.0) == 45.0 and durations.quantile(1.0) == 300.0
    assert durations.cdf(44.0) == 0.0 and durations.cdf(300.0) == 1.0
    assert learned_gap(durations, 310.0, PollPolicy()) is None  # older than any seen: no clue


def test_the_age_a_share_of_running_tasks_is_reached_is_read_between_durations():
    """`Durations.reached` draws the shares as lines between durations, from one spacing
    before the shortest; None beyond the longest."""
    durations = Durations()
    for i in range(20):
        durations.add(100.0 + 10 * i)  # 100 .. 290: each is 5% of the tasks
    assert durations.reached(5.0, 0.05) == pytest.approx(100.0)  # nothing ends before 90 s
    assert durations.reached(5.0, 0.005) == pytest.approx(91.0)  # a tenth of the first 5%
    assert durations.reached(95.0, 0.05) == pytest.approx(104.75)  # half the first 5% is done
    assert durations.reached(100.0, 0.0) == 100.0
    assert durations.reached(290.0, 0.1) is None


def test_the_first_poll_spends_the_lateness_allowance_and_the_next_keep_the_bound(virtual):
    """A Veo task of a learned model: its first poll at the 3% quantile + max_interval (the
    fewest polls for a 95% bound spend the allowance there), the next max_interval apart."""
    learned = [60.0 + i for i in range(100)]  # 60 .. 159 s, one a second
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None, priors=False))
    for seconds in learned:
        watcher.learn("veo3.1", seconds)
    gateway.latency = 0.0

    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=150.5)
        gateway.shape["a"] = none
        gateway.model["a"] = "veo3.1"
        start = Task(id="a", status=Status.QUEUED, raw_status="queued", model="veo3.1")
        created = loop.time()
        await watcher.watch("a", deadline=None, task=start, created_at=created)
        return [at - created for at in gateway.polls("a")], loop.time() - gateway.done_at("a")

    ages, delay = go(virtual, watcher, main)
    assert ages[0] == pytest.approx(62.0 + D, abs=0.5)  # 97% of the tasks run past 62 s
    gaps = [later - earlier for earlier, later in itertools.pairwise(ages)]
    assert all(D <= gap <= D + 1.0 for gap in gaps), gaps  # dense: a completion a second
    assert 0 <= delay <= D


def test_a_task_watched_part_way_through_gets_no_first_poll_allowance(virtual):
    """A task watched at 250 s, when most of its model's tasks have finished, is polled where
    0.5% of those still running end (+ max_interval), not on the create's 3% allowance."""
    learned = [100.0 + i for i in range(100)] + [300.0, 400.0, 500.0, 600.0, 700.0]
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None, priors=False))
    for seconds in learned:
        watcher.learn("veo3.1", seconds)
    gateway.latency = 0.0

    async def main() -> float:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=650.0)
        gateway.shape["a"] = none
        gateway.model["a"] = "veo3.1"
        start = Task(id="a", status=Status.PROCESSING, raw_status="processing",
                     model="veo3.1")
        watched = loop.time()
        await watcher.watch("a", deadline=None, task=start, created_at=watched - 250.0)
        return gateway.polls("a")[0] - watched

    first = go(virtual, watcher, main)
    assert first == pytest.approx(2.5 + D, abs=1.0)  # 250 s + a sliver of the 200-300 s gap


def test_an_uncertain_end_is_polled_max_interval_after_the_answer_not_sooner(virtual):
    """Jumping progress (0, then 90): the disputed end it suggests is soon, but the task was
    just seen running, so the next poll still waits max_interval."""
    rng = random.Random(2)
    learned = [rng.uniform(200, 400) for _ in range(50)]
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None, priors=False))
    for seconds in learned:
        watcher.learn("sora-2", seconds)
    gateway.latency = 0.0

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=300.0)
        gateway.shape["a"] = jumping
        gateway.model["a"] = "sora-2"
        start = Task(id="a", status=Status.QUEUED, raw_status="queued", model="sora-2",
                     progress=0)
        created = loop.time()
        await watcher.watch("a", deadline=None, task=start, created_at=created)
        return [at - created for at in gateway.polls("a")]

    ages = go(virtual, watcher, main)
    jumped = [age for age in ages if age >= 0.7 * 300.0 and age < 300.0]
    assert jumped  # it was seen at 90 before its end
    after = ages[ages.index(jumped[0]) + 1]
    assert after - jumped[0] == pytest.approx(D)  # jitter 0: the bound, to the second


def test_forecasts_agree_only_when_two_estimates_do():
    """Linear samples agree (tight spread); a slow start then a fast rise do not."""
    agreed = Forecast.of([(60.0, 30), (90.0, 45)], started=0.0, refresh=15.0)
    assert agreed is not None and agreed.agreed(PollPolicy())
    assert agreed.end == pytest.approx(200.0)
    disputed = Forecast.of([(60.0, 5), (90.0, 45)], started=0.0, refresh=15.0)
    assert disputed is not None and not disputed.agreed(PollPolicy())
    assert Forecast.of([(60.0, 0)], started=0.0, refresh=15.0) is None


def test_a_poll_after_hint_is_honoured(virtual):
    """A server's poll-after hint is never shortened by the schedule."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None, refresh=0.0))
    gateway.latency = 0.0
    original = gateway.query

    async def hinted(slot, task_id, route, previous=None):
        task, _ = await original(slot, task_id, route, previous)
        return task, 50.0

    gateway.query = hinted  # type: ignore[method-assign]

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=120.0)
        gateway.shape["a"] = none
        await watcher.watch("a", deadline=None, created_at=loop.time(),
                            task=Task(id="a", status=Status.QUEUED))
        return gateway.polls("a")

    gaps = [b - a for a, b in itertools.pairwise(go(virtual, watcher, main))]
    assert gaps and min(gaps) >= 50.0


def test_under_a_tight_budget_the_likeliest_finished_is_polled_first(virtual):
    """With slots scarce, a task past its agreed end is polled before long ones just due."""
    watcher, gateway, _ = make(rate=0.5, policy=PollPolicy(jitter=0.0, deadline=None))
    gateway.latency = 0.0

    async def main() -> float:
        loop = asyncio.get_running_loop()
        jobs = []
        for i in range(20):
            gateway.add(f"slow{i}", duration=10_000.0)
            gateway.shape[f"slow{i}"] = none
            jobs.append(watcher.watch(f"slow{i}", deadline=None, created_at=loop.time(),
                                      task=Task(id=f"slow{i}", status=Status.QUEUED)))
        gateway.add("fast", duration=100.0)
        gateway.shape["fast"] = linear
        fast = watcher.watch("fast", deadline=None, created_at=loop.time(),
                             task=Task(id="fast", status=Status.QUEUED, progress=0))
        await fast
        for job in jobs:
            job.cancel()
        return loop.time() - gateway.done_at("fast")

    assert go(virtual, watcher, main) <= 2 * D  # not behind a FIFO round of 20 slow tasks


def test_a_family_prior_aims_a_cold_start_and_the_probe_comes_first(virtual):
    """A Sora task of no progress, nothing learned: a probe, then polls aimed by the prior."""
    policy = PollPolicy(jitter=0.0, deadline=None)
    polls, delay = run_one(virtual, none, 200.0, policy=policy)
    cold, _ = run_one(virtual, none, 200.0, policy=attrs.evolve(policy, priors=False))
    assert polls <= cold - 3  # the geometric schedule polls all through the first minutes
    assert 0 <= delay <= D


def test_the_probe_goes_once_the_model_has_finished_twenty_times(virtual):
    """With 20 durations learned, the first poll is aimed by them, not sent after initial."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None))
    gateway.latency = 0.0
    for seconds in range(200, 220):
        watcher.learn("sora-2", float(seconds))

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=205.0)
        gateway.shape["a"] = none
        start = Task(id="a", status=Status.QUEUED, raw_status="queued", model="sora-2")
        await watcher.watch("a", deadline=None, task=start, created_at=loop.time())
        return [t - gateway.created["a"] for t in gateway.polls("a")]

    polls = go(virtual, watcher, main)
    assert polls[0] >= 200  # no probe: nothing of this model finished before 200 s


def test_a_prior_stands_in_until_twenty_are_learned_then_keeps_only_its_tail():
    """Durations: the prior alone at first; with 20 learned, only its points beyond them."""
    prior = [100.0, 200.0, 300.0, 400.0]
    durations = Durations(prior)
    assert durations.usable and len(durations) == 4
    for seconds in range(1, 21):
        durations.add(float(seconds))
    assert len(durations) == 24  # 20 learned, all below the prior: the prior stays
    assert durations.quantile(0.01) == 1.0
    for seconds in range(150, 170):
        durations.add(float(seconds))
    assert len(durations) == 40 + 3  # the prior's points up to the longest learned left
    assert durations.cdf(250.0) == pytest.approx(41 / 43)
    assert not Durations().usable


def test_priors_scale_down_with_a_short_policy():
    """A policy of sub-second intervals (a time-scaled simulator) scales the prior with it."""
    full = prior_of("veo3.1", PollPolicy())
    short = prior_of("veo3.1", PollPolicy(initial=0.05, max_interval=0.3))
    assert short == pytest.approx([seconds / 100 for seconds in full])
    assert prior_of("veo3.1", PollPolicy(priors=False)) == ()
    assert prior_of("no-such-model", PollPolicy()) == ()
    assert [family_of(m) for m in ("veo3.1-fast", "veo3", "sora-2-pro", "doubao-seedance-1")] \
        == ["veo-fast", "veo", "sora", "seedance"]


def test_priors_must_be_a_flag():
    """PollPolicy(priors=...) takes True or False and names the field otherwise."""
    with pytest.raises(ValueError, match="priors must be True or False"):
        PollPolicy(priors="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [jumping, stalling, queued_then_rising])
def test_progress_that_misleads_falls_back_on_the_prior_without_a_spin(virtual, shape):
    """Jumping, stalling or queued progress: seen within the bound, at few polls."""
    polls, delay = run_one(virtual, shape, 240.0, policy=PollPolicy(jitter=0.0, deadline=None))
    assert 0 <= delay <= D
    assert polls <= 240 / D + 2


def test_tasks_far_faster_than_the_family_drop_its_prior_and_are_polled_soon(virtual):
    """Sora tasks of 3 s (a simulator): the probes see them end, and every task follows soon."""
    watcher, gateway, _ = make(policy=PollPolicy(deadline=None))
    gateway.default_duration = 3.0

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await octovid.gather([watcher.submit(octovid.SoraRequest(f"p{i}"), deadline=None)
                              for i in range(30)])
        return loop.time() - start

    took = go(virtual, watcher, main)
    assert took < 2 * D  # the prior would first poll the last 22 after about 110 s


def test_an_agreed_end_is_polled_just_after_the_refresh_that_shows_it(virtual, wall):
    """On a 15 s refresh grid with stamped states, the end is seen within 2 s of its refresh."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None, priors=False))
    gateway.latency = 0.0
    gateway.grid = 15.0

    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=100.0)
        gateway.shape["a"] = linear
        await watcher.watch("a", deadline=None, created_at=loop.time(),
                            task=Task(id="a", status=Status.QUEUED, progress=0))
        shown = 15.0 * math.ceil(gateway.done_at("a") / 15.0)
        return len(gateway.polls("a")), loop.time() - shown

    polls, delay = go(virtual, watcher, main)
    assert 0 <= delay <= 2.0
    assert polls <= 4


def test_with_stamped_states_a_poll_waits_for_the_next_refresh_not_a_whole_period(
    virtual, wall
):
    """No progress, a 15 s refresh grid: each poll follows a refresh, some within 15 s."""
    watcher, gateway, _ = make(policy=PollPolicy(jitter=0.0, deadline=None, priors=False))
    gateway.latency = 0.0
    gateway.grid = 15.0

    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        gateway.add("a", duration=200.0)
        gateway.shape["a"] = none
        await watcher.watch("a", deadline=None, created_at=loop.time(),
                            task=Task(id="a", status=Status.QUEUED))
        shown = 15.0 * math.ceil(gateway.done_at("a") / 15.0)
        return gateway.polls("a"), loop.time() - shown

    polls, delay = go(virtual, watcher, main)
    assert all(math.floor(b / 15.0) > math.floor(a / 15.0)  # a refresh between any two
               for a, b in itertools.pairwise(polls))
    assert min(b - a for a, b in itertools.pairwise(polls)) < 15.0
    assert 0 <= delay <= D


def test_a_task_is_likely_finished_by_the_median_of_the_durations_beyond_its_age():
    """The ranking under a tight budget: the median of the durations longer than the age."""
    durations = Durations()
    for seconds in range(1, 101):
        durations.add(float(seconds))
    assert likely_age(durations, 0.0) == 50.0
    assert likely_age(durations, 60.0) == 80.0
    assert likely_age(durations, 150.0) == 150.0  # older than all: likely at its end
    assert likely_age(Durations(), 10.0) is None


def slow_rise(fraction: float) -> int:
    return 50 + int(10 * fraction)  # 50 to 60 over the whole task, then done


def test_an_end_beyond_every_known_duration_is_not_aimed_at(virtual):
    """Progress too slow for any known duration agrees on a far end: still seen within 30 s."""
    rng = random.Random(3)
    learned = [rng.uniform(60, 120) for _ in range(50)]
    polls, delay = run_one(virtual, slow_rise, 170.0, model="grok-video-3", learned=learned)
    assert 0 <= delay <= D
    assert polls <= 170 / PollPolicy().refresh + 1  # and no spin
