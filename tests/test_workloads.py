"""octovid.testing's workloads: the presets, their distributions and patterns, on real HTTP."""

from __future__ import annotations

import collections
import importlib.metadata
import json
import random
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs
import pytest

from octovid.testing import CONDITIONS, JOBS, WORKLOADS, Conditions, Jobs, Simulator, Workload

pytest_plugins = ["pytester"]

AUTH = {"Authorization": "Bearer sim-key"}

Launch = Callable[..., Awaitable[Simulator]]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def fetch(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] = AUTH,
    **kwargs: Any,
) -> tuple[int, Any]:
    async with http.request(method, url, headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def create(http: aiohttp.ClientSession, sim: Simulator, model: str) -> str:
    status, answer = await fetch(
        http, "POST", sim.url + "/v1/video/create", json={"model": model, "prompt": "p"}
    )
    assert status == 200, answer
    return str(answer.get("id") or answer["task_id"])


async def query(http: aiohttp.ClientSession, sim: Simulator, task_id: str) -> Any:
    status, answer = await fetch(http, "GET", sim.url + "/v1/video/query", params={"id": task_id})
    assert status == 200, answer
    return answer


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))]


def only(kind: str, pattern: str, **changes: Any) -> Workload:
    """A workload whose ``kind`` jobs all follow ``pattern``, live, with no unknown period."""
    return WORKLOADS["mixed"].with_jobs(
        kind, patterns={pattern: 1.0}, refresh=0.0, unknown_for=0.0, **changes
    )


# The presets


def test_presets_cover_every_family_and_condition_set():
    """WORKLOADS has a preset per kind, mixed, and each of them under each condition set."""
    bases = ["veo-fast", "veo", "sora", "grok", "vidu", "jimeng", "mixed"]
    assert set(CONDITIONS) == {"sporadic-429", "storms", "faults"}
    assert set(WORKLOADS) == set(bases) | {f"{b}+{c}" for b in bases for c in CONDITIONS}
    assert all(WORKLOADS[name].name == name for name in WORKLOADS)
    families = {model.split("-")[0][:4] for model, _ in WORKLOADS["mixed"].models}
    assert families == {"veo3", "sora", "grok", "vidu", "jime"}
    assert WORKLOADS["sora+faults"] == WORKLOADS["sora"].with_conditions("faults")
    assert WORKLOADS["sora"].conditions == Conditions()


def test_faults_preset_is_the_described_run():
    """The faults set: 5% of creates saturated (40% with Retry-After 1), a 1.5 s storm, more."""
    faults = CONDITIONS["faults"]
    assert (faults.sporadic_429, faults.sporadic_429_creates_only) == (0.05, True)
    assert (faults.sporadic_retry_after, faults.sporadic_retry_after_value) == (0.4, 1.0)
    assert [duration for _, duration in faults.storms] == [1.5]
    assert faults.error_rate == 0.03
    assert min(faults.drop_before_rate, faults.drop_after_rate, faults.stuck_rate) > 0


def test_jobs_table_follows_workloads_md():
    """Each kind has WORKLOADS.md's typical range and tail; Veo live, the others refreshed."""
    table = {kind: (jobs.typical, jobs.tail) for kind, jobs in JOBS.items()}
    assert table == {
        "veo-fast": ((30, 90), 180),
        "veo": ((60, 240), 480),
        "sora": ((120, 300), 900),
        "grok": ((30, 120), 240),
        "vidu": ((30, 120), 300),
        "jimeng": ((60, 180), 360),
    }
    assert {kind for kind, jobs in JOBS.items() if jobs.refresh == 0} == {"veo-fast", "veo"}
    assert all(jobs.refresh == jobs.unknown_for == 15 for k, jobs in JOBS.items() if "veo" not in k)
    assert {pattern for pattern, _ in JOBS["veo"].patterns} == {"none"}
    assert dict(JOBS["sora"].patterns)["jumping"] >= 0.5
    assert dict(JOBS["jimeng"].patterns)["stalling"] >= 0.3


@pytest.mark.parametrize("kind", list(JOBS))
def test_durations_have_the_typical_range_and_a_long_tail(kind):
    """Drawn durations have the typical range as p10-p90, some in the tail, none beyond it."""
    jobs = JOBS[kind]
    rng = random.Random(1)
    durations = [jobs.draw_duration(rng) for _ in range(20_000)]
    low, high = jobs.typical
    assert percentile(durations, 0.1) == pytest.approx(low, rel=0.06)
    assert percentile(durations, 0.9) == pytest.approx(high, rel=0.06)
    assert max(durations) <= jobs.tail
    beyond = sum(1 for d in durations if d > (high + jobs.tail) / 2) / len(durations)
    assert 0.01 < beyond < 0.03


def test_pattern_weights_are_followed():
    """draw_pattern picks patterns by their weights."""
    rng = random.Random(2)
    counts = collections.Counter(JOBS["sora"].draw_pattern(rng) for _ in range(10_000))
    for pattern, weight in JOBS["sora"].patterns:
        assert counts[pattern] / 10_000 == pytest.approx(weight, abs=0.03)


@pytest.mark.parametrize(
    "changes",
    [
        {"typical": (0.0, 10.0)},
        {"typical": (20.0, 10.0)},
        {"tail": 50.0},
        {"patterns": {}},
        {"patterns": {"wobbly": 1.0}},
        {"patterns": {"linear": 0.0}},
        {"tail_share": 0.2},
        {"failure_rate": 1.5},
    ],
)
def test_impossible_jobs_are_refused(changes):
    """Jobs refuses ranges out of order, unknown or weightless patterns and bad shares."""
    with pytest.raises(ValueError):
        attrs.evolve(JOBS["grok"], **changes)


def test_with_conditions_names_and_replaces():
    """with_conditions replaces or changes the conditions, and says so in the name."""
    faulty = WORKLOADS["grok"].with_conditions("faults", stuck_rate=0.0)
    assert faulty.name == "grok+faults+stuck_rate=0.0"
    assert faulty.conditions == attrs.evolve(CONDITIONS["faults"], stuck_rate=0.0)
    assert WORKLOADS["grok+faults"].with_conditions("storms").name == "grok+storms"
    custom = WORKLOADS["grok"].with_conditions(Conditions(error_rate=0.1))
    assert (custom.name, custom.conditions.error_rate) == ("grok+error_rate=0.1", 0.1)
    with pytest.raises(KeyError):
        WORKLOADS["grok"].with_conditions("hurricanes")


def test_bodies_follow_the_model_weights():
    """bodies draws create bodies whose models follow the weights, reproducibly."""
    bodies = WORKLOADS["sora"].bodies(4000, seed=3)
    assert bodies == WORKLOADS["sora"].bodies(4000, seed=3)
    share = sum(1 for body in bodies if body["model"] == "sora-2") / len(bodies)
    assert share == pytest.approx(0.7, abs=0.03)
    assert bodies[0] == {"model": bodies[0]["model"], "prompt": "sora job 0", "images": []}


def test_custom_jobs_replace_one_kind_and_keep_the_others():
    """A Workload's own Jobs replace the table's for their kind; other kinds keep JOBS."""
    slow = Jobs(typical=(600.0, 900.0), tail=1200.0, patterns={"linear": 1.0})
    workload = Workload(name="slow-grok", models={"grok-video-3": 1.0}, jobs={"grok": slow})
    assert workload.jobs_for("grok-video-3-pro") is slow
    assert workload.jobs_for("sora-2") == JOBS["sora"]
    assert workload.jobs_for("veo3-fast") == JOBS["veo-fast"]
    assert workload.jobs_for("kling-v2") is None
    assert workload.with_jobs("grok", failure_rate=0.5).jobs_for("grok-video-3") == attrs.evolve(
        slow, failure_rate=0.5
    )


def test_workload_refuses_unknown_models():
    """A workload's models must belong to a family."""
    with pytest.raises(ValueError):
        Workload(name="x", models={"kling-v2": 1.0})


def test_describe_names_the_workload_and_its_conditions():
    """Workload.describe and Simulator.describe say which preset and conditions ran."""
    assert WORKLOADS["sora"].describe() == "sora: no faults"
    sim = Simulator(workload="sora+sporadic-429", time_scale=40, seed=1, rate_limit=(600, 60))
    assert sim.describe() == (
        "workload sora+sporadic-429; sporadic_429=0.03; rate limit 600/60 s; time scale 40, seed 1"
    )
    plain = Simulator(duration=(0.5, 2.0), failure_rate=0.1)
    assert plain.describe() == (
        "durations 0.5-2 s, failure rate 0.1; no faults; time scale 1, seed None"
    )
    assert "workload=sora+sporadic-429" in repr(sim)


# The simulator on a workload


def test_simulator_takes_a_workload_or_its_name():
    """workload= takes a Workload or a preset's name; an unknown name is refused."""
    assert Simulator(workload="veo").workload is WORKLOADS["veo"]
    assert Simulator(workload=WORKLOADS["vidu+faults"]).conditions == CONDITIONS["faults"]
    with pytest.raises(ValueError, match="unknown workload"):
        Simulator(workload="kling")


@pytest.mark.parametrize(
    "options",
    [
        {"duration": (1.0, 2.0)},
        {"failure_rate": 0.1},
        {"refresh": 5.0},
        {"unknown_for": 5.0},
        {"sporadic_429": 0.1},
        {"storms": [(1.0, 1.0)]},
    ],
)
def test_workload_excludes_the_options_it_sets(options):
    """A workload's own settings cannot also be given as options: no silent override."""
    with pytest.raises(ValueError):
        Simulator(workload="sora", **options)


async def test_tasks_draw_their_plan_from_the_workload(launch, http):
    """Each task's duration, pattern and outcome come from its model's kind, time-scaled."""
    clock = FakeClock()
    sim = await launch(workload="mixed", time_scale=10.0, seed=4, clock=clock)
    for body in WORKLOADS["mixed"].bodies(600, seed=4):
        await create(http, sim, body["model"])
    by_kind = collections.defaultdict(list)
    for task in sim.tasks.values():
        kind = "veo-fast" if "fast" in task.model else task.family
        by_kind[kind].append(task)
    assert set(by_kind) == set(JOBS)
    for kind, tasks in by_kind.items():
        jobs = JOBS[kind]
        assert all(task.duration * 10 <= jobs.tail for task in tasks)
        assert {task.pattern for task in tasks} <= {p for p, _ in jobs.patterns}
        assert all(task.refresh == jobs.refresh / 10 for task in tasks)
        assert all(task.unknown_for == jobs.unknown_for / 10 for task in tasks)
    sora = by_kind["sora"]
    assert 150 < sum(task.duration for task in sora) / len(sora) * 10 < 300
    failed = sum(1 for task in sim.tasks.values() if task.outcome == "failed")
    assert 5 <= failed <= 45


async def test_veo_is_live_and_has_no_progress(launch, http):
    """Veo tasks refresh live (no ticks), report no progress and are never unknown."""
    clock = FakeClock()
    sim = await launch(workload="veo-fast", clock=clock, seed=5)
    task_id = await create(http, sim, "veo3.1-fast")
    task = sim.tasks[task_id]
    assert (task.pattern, task.refresh, task.unknown_for) == ("none", 0.0, 0.0)
    assert task.terminal_at - task.created == pytest.approx(task.duration)
    statuses = []
    for step in range(11):
        clock.now = task.created + task.duration * step / 10
        answer = await query(http, sim, task_id)
        assert "progress" not in answer
        statuses.append(answer["status"])
    assert statuses[0] == "pending"
    assert statuses[-1] == "completed"
    assert "video_generating" in statuses


async def test_refreshed_families_are_unknown_then_tick_on_one_grid(launch, http):
    """Grok tasks say unknown for 15 s, then show the state of one 15 s grid from start."""
    clock = FakeClock()
    workload = WORKLOADS["grok"].with_jobs("grok", patterns={"linear": 1.0}, tail_share=0.0)
    sim = await launch(workload=workload, clock=clock, seed=6)
    start = clock.now
    clock.now = start + 4.0
    first = await create(http, sim, "grok-video-3")
    clock.now = start + 11.0
    second = await create(http, sim, "grok-video-3")
    clock.now = start + 18.0
    assert (await query(http, sim, first))["status"] == "unknown"
    clock.now = start + 26.0
    updates = []
    for task_id in (first, second):
        answer = await query(http, sim, task_id)
        assert answer["status"] == "processing"
        updates.append(answer["status_update_time"])
    # Both show the refresh of start + 15 s, whatever their creation.
    assert updates[0] == updates[1]
    tasks = [sim.tasks[first], sim.tasks[second]]
    assert all((task.terminal_at - start) % 15 == pytest.approx(0) for task in tasks)
    assert all(task.terminal_at - task.created >= task.duration for task in tasks)


async def progress_curve(http, sim, task_id, clock, points=100):
    """The (status, progress) a query sees at ``points`` instants across the task's life."""
    task = sim.tasks[task_id]
    seen = []
    for step in range(points + 1):
        clock.now = task.created + task.duration * step / points
        answer = await query(http, sim, task_id)
        seen.append((answer["status"], answer.get("progress")))
    return seen


async def test_linear_progress_rises_evenly(launch, http):
    """linear: progress is the share of the duration elapsed."""
    clock = FakeClock()
    sim = await launch(workload=only("grok", "linear"), clock=clock, seed=7)
    task_id = await create(http, sim, "grok-video-3")
    curve = await progress_curve(http, sim, task_id, clock, points=10)
    assert [progress for _, progress in curve] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


async def test_queued_then_rising_stays_at_zero_through_its_queue(launch, http):
    """queued_then_rising: status queued and progress 0 for the queue phase, then rising."""
    clock = FakeClock()
    sim = await launch(workload=only("jimeng", "queued_then_rising"), clock=clock, seed=8)
    task_id = await create(http, sim, "jimeng-video-3.0")
    task = sim.tasks[task_id]
    assert 0.2 * task.duration <= task.queued_for <= 0.5 * task.duration
    curve = await progress_curve(http, sim, task_id, clock)
    queued = [point for point in curve if point[0] == "in_queue"]
    assert set(queued) == {("in_queue", "0%")}
    assert len(queued) == pytest.approx(task.queued_for / task.duration * 100, abs=1.5)
    rising = [int(progress.rstrip("%")) for status, progress in curve if status == "running"]
    assert rising == sorted(rising) and rising[-1] >= 95
    assert curve[-1] == ("done", "100%")


async def test_jumping_goes_from_zero_to_ninety_to_done(launch, http):
    """jumping: Sora's string progress is "0", then "90", then "100" at the end."""
    clock = FakeClock()
    sim = await launch(workload=only("sora", "jumping"), clock=clock, seed=9)
    task_id = await create(http, sim, "sora-2")
    curve = await progress_curve(http, sim, task_id, clock)
    progress = [p for _, p in curve]
    assert set(progress) == {"0", "90", "100"}
    changes = [p for i, p in enumerate(progress) if i == 0 or p != progress[i - 1]]
    assert changes == ["0", "90", "100"]
    jump = progress.index("90")
    assert jump == pytest.approx(
        sim.tasks[task_id].step_at / sim.tasks[task_id].duration * 100, abs=1
    )
    assert ("in_progress", "0") in curve  # running while showing 0


async def test_stalling_holds_below_100_for_a_long_stretch(launch, http):
    """stalling: progress rises, holds at one value for stall_for, then rises to the end."""
    clock = FakeClock()
    sim = await launch(workload=only("vidu", "stalling"), clock=clock, seed=10)
    task_id = await create(http, sim, "viduq2-pro")
    task = sim.tasks[task_id]
    curve = await progress_curve(http, sim, task_id, clock)
    progress = [p for _, p in curve]
    assert progress == sorted(progress)
    held = collections.Counter(progress[:-1]).most_common(1)[0]
    assert held[0] == int(task.step_level * 100) < 100
    assert held[1] == pytest.approx(task.stall_for / task.duration * 100, abs=2)
    assert held[1] >= 29
    assert progress[-1] == 100


async def test_none_pattern_drops_progress_from_unified_queries(launch, http):
    """none: the unified query has no progress; the OpenAI route shows 0 until the end."""
    clock = FakeClock()
    sim = await launch(workload=only("sora", "none"), clock=clock, seed=11)
    task_id = await create(http, sim, "sora-2")
    _, openai_id = await fetch(
        http, "POST", sim.url + "/v1/videos", json={"model": "sora-2", "prompt": "p"}
    )
    curve = await progress_curve(http, sim, task_id, clock, points=4)
    assert all(progress is None for _, progress in curve)
    task = sim.tasks[openai_id["id"]]
    clock.now = task.created + task.duration / 2
    half = (await fetch(http, "GET", f"{sim.url}/v1/videos/{task.id}"))[1]
    clock.now = task.terminal_at
    done = (await fetch(http, "GET", f"{sim.url}/v1/videos/{task.id}"))[1]
    assert (half["status"], half["progress"]) == ("in_progress", 0)
    assert (done["status"], done["progress"]) == ("completed", 100)


async def test_tasks_record_what_benchmarks_need(launch, http):
    """A SimTask holds its drawn duration, pattern, visible end, polls and late polls."""
    clock = FakeClock()
    sim = await launch(workload="sora", time_scale=60.0, clock=clock, seed=12)
    task_id = await create(http, sim, "sora-2")
    task = sim.tasks[task_id]
    assert 1 < task.duration * 60 < 15 * 60
    assert task.pattern in {"jumping", "queued_then_rising", "linear"}
    clock.now = task.terminal_at - 0.01
    assert (await query(http, sim, task_id))["status"] != "completed"
    clock.now = task.terminal_at
    for _ in range(3):
        await query(http, sim, task_id)
    assert (task.polls, task.polls_after_terminal) == (4, 3)


async def test_faults_preset_at_forty_times(launch, http):
    """sora+faults at 40x: about 5% of creates saturated, two in five with Retry-After 0.025."""
    sim = await launch(workload="sora+faults", time_scale=40.0, seed=13)
    statuses = collections.Counter()
    retry_after = collections.Counter()
    for _ in range(1000):
        try:
            async with http.post(
                sim.url + "/v1/video/create", json={"model": "sora-2", "prompt": "p"}, headers=AUTH
            ) as response:
                statuses[response.status] += 1
                if response.status == 429:
                    retry_after[response.headers.get("Retry-After")] += 1
        except aiohttp.ServerDisconnectedError:
            statuses[0] += 1
    served = sim.faults_served
    assert served["sporadic_429"] == pytest.approx(50, abs=28)
    assert served["error"] == pytest.approx(30, abs=22)
    assert served["drop_before"] + served["drop_after"] == statuses[0] > 0
    assert retry_after["0.025"] == pytest.approx(0.4 * served["sporadic_429"], abs=15)
    assert set(retry_after) <= {None, "0.025"}
    assert statuses[429] == sim.rate_limited == served["sporadic_429"] + served["storm_429"]
    assert served["stuck"] <= 30


# The command line and the pytest plugin


def test_standalone_cli_runs_a_workload():
    """python -m octovid.testing --workload NAME --time-scale X serves it and says so."""
    command = [sys.executable, "-m", "octovid.testing", "--port", "0", "--seed", "1"]
    command += ["--workload", "grok+faults", "--time-scale", "40"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            match = re.fullmatch(
                r"octovid simulator listening on (http://127\.0\.0\.1:\d+) \(api key: sim-key\)\n",
                process.stdout.readline(),
            )
            assert match is not None
            described = process.stdout.readline()
            assert described.startswith("octovid simulator running workload grok+faults; ")
            assert described.endswith("time scale 40, seed 1\n")
            request = urllib.request.Request(
                match[1] + "/v1/video/create",
                data=b'{"model": "grok-video-3", "prompt": "p"}',
                headers={"Authorization": "Bearer sim-key", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert json.load(response)["status"] == "processing"
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    assert (process.returncode, stderr) == (0, "")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workload", "kling"], "unknown workload 'kling'"),
        (["--workload", "sora", "--duration", "1", "2"], "drop --duration"),
        (["--time-scale", "0"], "expected a positive number"),
    ],
)
def test_standalone_cli_refuses_bad_workload_arguments(arguments, message):
    """The command line refuses unknown workloads, workload conflicts and bad time scales."""
    result = subprocess.run(
        [sys.executable, "-m", "octovid.testing", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_pytest_plugin_marker_takes_a_workload(pytester):
    """The octovid_simulator marker passes workload and time_scale through to the Simulator."""
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.octovid_simulator(workload="grok+storms", time_scale=20, seed=3)
        def test_marked(octovid_simulator):
            assert octovid_simulator.workload.name == "grok+storms"
            assert octovid_simulator.time_scale == 20
            assert octovid_simulator.describe().startswith("workload grok+storms; storms=")
        """
    )
    installed = importlib.metadata.entry_points(group="pytest11", name="octovid")
    plugin = [] if installed else ["-p", "octovid.testing._plugin"]
    result = pytester.runpytest(*plugin, "-p", "no:asyncio", "--strict-markers")
    result.assert_outcomes(passed=1)


def test_testing_exports_a_complete_all():
    """octovid.testing's __all__ names every public class and function once (ruff sorts it)."""
    import octovid.testing

    defined = {
        name
        for name, value in vars(octovid.testing).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("octovid")
    }
    assert len(set(octovid.testing.__all__)) == len(octovid.testing.__all__)
    assert defined <= set(octovid.testing.__all__)
    assert {"CONDITIONS", "JOBS", "WORKLOADS"} <= set(octovid.testing.__all__)
    assert octovid.testing.kind_of("veo3.1-fast-components") == "veo-fast"
    assert octovid.testing.kind_of("veo3.1-pro") == "veo"
    assert octovid.testing.kind_of("kling-v2") is None
