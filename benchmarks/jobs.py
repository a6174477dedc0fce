"""Benchmark: octovid against a naive loop and the openai client, on WORKLOADS.md's presets.

What it measures, for each scenario and client (every figure of WORKLOADS.md "What to
measure"): requests per job, 429s, detection delay (the gateway's completion to the client
knowing it, p50 and p95), jobs lost, throughput against the key's limit while jobs queue,
client CPU per request, peak memory per job and the event loop's longest stall. Then 100,000
tasks watched in one process (memory per task, CPU per poll, stalls), and octovid's CPU per
request against a bare aiohttp GET + json loop, timed and (with valgrind) counted in
instructions.

How: the simulator (``octovid.testing.Simulator``, a named workload preset, time-scaled) runs
in this process and keeps the request log; each client runs in a subprocess of its own
(``clients.py``) on an event loop whose clock is scaled the same way, so its own defaults
hold in workload seconds. Each client of a scenario gets a fresh simulator with the same seed.

    python benchmarks/jobs.py            # every scenario, about 20 minutes on 2 cores
    python benchmarks/jobs.py --quick    # smaller and faster, a few minutes
    python benchmarks/jobs.py --only sora-200 tight
    python benchmarks/jobs.py --smoke --out /tmp/bench   # a tiny run, as the tests do

Results: ``benchmarks/results/jobs.json`` (every figure) and ``jobs.md`` (the tables), or
``jobs-quick.*`` for ``--quick``. Needs ``pip install -e '.[bench]'`` (the openai client;
without it, its runs are skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from report import fmt, job_figures, scenario_table, simple_table
from schedule import floors

from octovid.testing import WORKLOADS, Simulator

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CLIENTS = HERE / "clients.py"
SEED = 8


@dataclasses.dataclass(frozen=True)
class Run:
    """One client's run of a scenario: its time scale and, if fewer, how many jobs it runs."""

    client: str
    scale: float
    jobs: int | None = None


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A workload, a key, a batch, and the clients that run it."""

    key: str
    title: str
    jobs: int
    runs: tuple[Run, ...]
    preset: str | None = None  # a name in WORKLOADS; else ``sim`` and ``model`` say
    sim: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = "sora-2"
    limit: tuple[int, float] | None = None  # the key's limit at the simulator
    rate: tuple[float, float] = (50.0, 1.0)  # octovid's rate_limit: requests per seconds
    deadline: float = 3600.0  # octovid's default deadline
    warmup: int = 0  # jobs octovid runs to completion first, in the same client

    def bodies(self, count: int, *, seed: int = SEED) -> list[dict[str, Any]]:
        if self.preset is not None:
            return WORKLOADS[self.preset].bodies(count, seed=seed)
        return [{"model": self.model, "prompt": f"{self.key} job {i}", "images": []}
                for i in range(count)]

    def simulator(self, scale: float) -> Simulator:
        return Simulator(workload=self.preset, time_scale=scale, seed=SEED,
                         rate_limit=self.limit, **self.sim)


TIGHT = {"duration": (60.0, 240.0), "failure_rate": 0.05, "refresh": 15.0, "unknown_for": 15.0}


def scenarios(mode: str) -> list[Scenario]:
    """The scenarios of a full run, a quick one (fewer jobs, faster clocks) or a smoke test."""
    if mode == "smoke":
        return [
            Scenario("grok-20", "Grok-like preset, 20 jobs, no key limit", 20, (
                Run("octovid", 80), Run("naive", 80), Run("openai", 40, 5)), preset="grok"),
            Scenario("tight-20", "Key limit 60/min, 20 jobs of 60-240 s, 600 s deadlines", 20,
                     (Run("octovid", 80), Run("naive", 40), Run("openai", 40)),
                     sim=TIGHT, limit=(60, 60.0), rate=(60.0, 60.0), deadline=600.0),
        ]
    if mode == "quick":
        return [
            Scenario("sora-200", "Sora-like preset, 200 jobs, no key limit", 200, (
                Run("octovid", 80), Run("naive", 40), Run("openai", 20, 10)), preset="sora"),
            Scenario("grok-100", "Grok-like preset, 100 jobs, no key limit", 100, (
                Run("octovid", 80), Run("naive", 40), Run("openai", 20, 10)), preset="grok"),
            Scenario("veo-100-warm", "Veo preset (no progress), 100 jobs after 60 warm-up jobs",
                     100, (Run("octovid", 80), Run("naive", 40), Run("openai", 20, 10)),
                     preset="veo", warmup=60),
            Scenario("tight", "Key limit 60/min, 100 jobs of 60-240 s, 600 s deadlines", 100,
                     (Run("octovid", 40), Run("naive", 20), Run("openai", 20)),
                     sim=TIGHT, limit=(60, 60.0), rate=(60.0, 60.0), deadline=600.0),
            Scenario("sora-faults", "sora+faults preset, 100 jobs, 1200 s deadlines", 100, (
                Run("octovid", 80), Run("naive", 40), Run("openai", 20, 10)),
                preset="sora+faults", deadline=1200.0),
        ]
    return [
        Scenario("sora-200", "Sora-like preset, 200 jobs, no key limit", 200, (
            Run("octovid", 40), Run("naive", 20), Run("openai", 8, 25)), preset="sora"),
        Scenario("sora-2000", "Sora-like preset, 2,000 jobs, no key limit", 2000, (
            Run("octovid", 8), Run("naive", 4)), preset="sora"),
        Scenario("grok-200", "Grok-like preset, 200 jobs, no key limit", 200, (
            Run("octovid", 40), Run("naive", 20), Run("openai", 8, 25)), preset="grok"),
        Scenario("veo-200-warm", "Veo preset (no progress), 200 jobs after 150 warm-up jobs",
                 200, (Run("octovid", 40), Run("naive", 20), Run("openai", 8, 25)),
                 preset="veo", warmup=150),
        Scenario("tight", "Key limit 60/min, 200 jobs of 60-240 s, 600 s deadlines", 200, (
            Run("octovid", 20), Run("naive", 6), Run("openai", 6)),
            sim=TIGHT, limit=(60, 60.0), rate=(60.0, 60.0), deadline=600.0),
        Scenario("sora-faults", "sora+faults preset, 200 jobs, 1200 s deadlines", 200, (
            Run("octovid", 40), Run("naive", 20), Run("openai", 10, 25)),
            preset="sora+faults", deadline=1200.0),
    ]


# -- running a client ---------------------------------------------------------------------


async def child(spec: dict[str, Any], wrap: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``clients.py`` with ``spec`` on its stdin (under ``wrap``, a command); its report."""
    process = await asyncio.create_subprocess_exec(
        *wrap, sys.executable, str(CLIENTS), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(json.dumps(spec).encode())
    if process.returncode != 0:
        raise RuntimeError(f"{spec['client']} failed:\n{err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def client_spec(scenario: Scenario, run: Run, sim: Simulator) -> dict[str, Any]:
    """What the client process needs: the gateway, its clock, the jobs and its settings."""
    count = run.jobs or scenario.jobs
    spec: dict[str, Any] = {
        "client": run.client, "url": sim.url, "key": sim.api_key, "scale": run.scale,
        "bodies": scenario.bodies(count), "deadline": scenario.deadline,
        "rate": scenario.rate, "interval": 5.0, "retry": 1.0,
        # The simulator's wall clock runs at the workload's pace from these two readings at its
        # start; the client's runs the same way (``clients.run``), so stamps read true.
        "wall": [sim._wall_epoch, sim._epoch],
    }
    if run.client == "octovid" and scenario.warmup:
        spec["warmup"] = scenario.bodies(scenario.warmup, seed=SEED + 1)
    return spec


async def run_scenario(scenario: Scenario) -> dict[str, Any]:
    """Every client of ``scenario``, one after the other, each on a fresh simulator."""
    results: dict[str, Any] = {}
    for run in scenario.runs:
        sim = scenario.simulator(run.scale)
        async with sim:
            served = time.process_time()
            report_ = await child(client_spec(scenario, run, sim))
            served = time.process_time() - served
            figures = job_figures(sim, report_, scale=run.scale, deadline=scenario.deadline,
                                  limit=scenario.limit)
        figures["server_cpu_per_request_us"] = served / max(figures["requests"], 1) * 1e6
        figures["simulator"] = sim.describe()
        if run.client == "octovid":
            measured = (sim.tasks[task_id] for task_id, _, _ in report_["jobs"]
                        if task_id in sim.tasks)
            figures["floor"] = floors(measured, scenario.limit, run.scale)
        results[run.client] = figures
        print(f"  {run.client:8} {summary(figures)}", flush=True)
    return results


def summary(f: dict[str, Any]) -> str:
    """One progress line."""
    return (
        f"{f['jobs']} jobs at {f['time_scale']:g}x: {f['requests_per_job']:.2f} req/job, "
        f"{f['r429']} 429s, detection p50 {fmt(f['detection_p50'], '1f')} s "
        f"p95 {fmt(f['detection_p95'], '1f')} s, lost {f['lost']}, "
        f"CPU {f['cpu_per_request_us']:.0f} us/req, stall {f['max_stall_ms']:.0f} ms, "
        f"{f['wall_s']:.0f} s"
    )


# -- 100,000 watched tasks, and CPU per request against a bare loop ----------------------


async def create_tasks(sim: Simulator, count: int, prefix: str) -> list[str]:
    """``count`` tasks created through the gateway by a plain aiohttp process; their ids."""
    bodies = [{"model": "sora-2", "prompt": f"{prefix} {i}", "images": []} for i in range(count)]
    made = await child({"client": "create", "url": sim.url, "key": sim.api_key,
                        "bodies": bodies, "workers": 32})
    return [row[0] for row in made["jobs"]]


async def run_watch(count: int, seconds: float, rate: float) -> dict[str, Any]:
    """``Client.watch`` of ``count`` running tasks for ``seconds``, polled at ``rate``/s."""
    sim = Simulator(duration=(7200.0, 14400.0), refresh=15.0, unknown_for=15.0, seed=SEED)
    async with sim:
        ids = await create_tasks(sim, count, "watched")
        r = await child({"client": "watch", "url": sim.url, "key": sim.api_key, "ids": ids,
                         "rate": (rate, 1.0), "seconds": seconds})
        polled = sum(task.polls > 0 for task in sim.tasks.values())
    registered = r["rss_watching"] - r["rss_before_watch"]
    grown = r["rss_end"] - r["rss_watching"]
    return {
        "tasks": count,
        "seconds": seconds,
        "rate": rate,
        "polls": r["polls"],
        "tasks_polled": polled,
        "watch_calls_s": r["watch_calls"],
        "stall_while_registering_ms": r["watch_stall"] * 1e3,
        "kb_per_task_registered": registered / count / 1024,
        "kb_per_polled_snapshot": grown / max(polled, 1) / 1024,
        "kb_per_task_end": (r["rss_end"] - r["rss_before_watch"]) / count / 1024,
        # Once every task has been polled, each holds its last snapshot too.
        "kb_per_task_all_polled": (registered / count + grown / max(polled, 1)) / 1024,
        "cpu_per_poll_us": r["cpu"] / max(r["polls"], 1) * 1e6,
        "max_stall_ms": r["max_stall"] * 1e3,
        "gc_longest_ms": r["gc_longest"] * 1e3,
        "gc_total_s": r["gc_total"],
        "full_gc_ms": r.get("full_gc", math.nan) * 1e3,
        "still_watching": r["watching"],
        "pending": r["pending"],
        "rss_mb": r["rss_end"] / 2**20,
    }


async def run_cpu(tasks: int, requests: int, seconds: float, rounds: int = 3) -> dict[str, Any]:
    """CPU per request: octovid's watcher flat out against a bare GET + json loop.

    Three take turns, ``rounds`` times: the bare loop flat out, octovid flat out, and the bare
    loop paced at the rate octovid just reached (the same 16 in flight): a request's CPU
    depends on the rate (see ``clients.run_bare``), and flat out the bare loop runs faster.
    The speed of a shared machine drifts by half and more between minutes, so the ratios are
    taken turn by turn (octovid against the bare turn just before it, and against the paced
    one just after) and the median of them is the figure; the least of each is shown too.
    """
    sim = Simulator(duration=(7200.0, 14400.0), seed=SEED)
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "octovid": [], "paced": []}
    async with sim:
        ids = await create_tasks(sim, tasks, "cpu")
        bare, watch = _flat_out(sim, ids, requests, seconds)
        for _ in range(rounds):
            runs["bare"].append(await child(bare))
            octo = await child(watch)
            runs["octovid"].append(octo)
            runs["paced"].append(await child({**bare, "pace": octo["polls"] / octo["wall"]}))
    def served(run: dict[str, Any]) -> int:  # a bare run's requests, a watch run's polls
        return max(int(run.get("requests") or run.get("polls") or 0), 1)

    def rate(run: dict[str, Any]) -> float:
        return served(run) / run["wall"]

    each = {name: [run["cpu"] / served(run) * 1e6 for run in turns]
            for name, turns in runs.items()}
    best = {name: runs[name][us.index(min(us))] for name, us in each.items()}
    paired = [o / b for o, b in zip(each["octovid"], each["bare"], strict=True)]
    paced = [o / b for o, b in zip(each["octovid"], each["paced"], strict=True)]

    return {
        "tasks": tasks,
        "rounds": rounds,
        "bare_cpu_per_request_each_us": each["bare"],
        "octovid_cpu_per_request_each_us": each["octovid"],
        "paced_cpu_per_request_each_us": each["paced"],
        "bare_requests": best["bare"]["requests"],
        "bare_cpu_per_request_us": min(each["bare"]),
        "bare_rate": rate(best["bare"]),
        "paced_cpu_per_request_us": min(each["paced"]),
        "paced_rate": rate(best["paced"]),
        "octovid_polls": best["octovid"]["polls"],
        "octovid_cpu_per_request_us": min(each["octovid"]),
        "octovid_rate": rate(best["octovid"]),
        "ratio_of_least": min(each["octovid"]) / min(each["bare"]),
        "ratio_of_least_at_equal_rate": min(each["octovid"]) / min(each["paced"]),
        "ratio_each": paired,
        "ratio_at_equal_rate_each": paced,
        "ratio": statistics.median(paired),
        "ratio_at_equal_rate": statistics.median(paced),
    }


def _flat_out(sim: Simulator, ids: list[str], requests: int, seconds: float
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The specs of the bare loop (``requests`` of them) and of octovid (``seconds``), flat out.

    At 100x the watcher's polls of every task are due all the time: it runs flat out, at its
    default max_concurrency (16), the limiter set out of the way.
    """
    base = {"url": sim.url, "key": sim.api_key, "ids": ids}
    return ({**base, "client": "bare", "count": requests, "workers": 16},
            {**base, "client": "watch", "rate": (1e6, 1.0), "seconds": seconds, "scale": 100.0})


async def run_instructions(tasks: int, sizes: tuple[int, int], seconds: tuple[float, float]
                           ) -> dict[str, Any] | None:
    """Instructions per request, counted by valgrind (cachegrind): the bare loop and octovid.

    CPU time on a shared machine is noisy; an instruction count is not. Each client runs
    twice, ``sizes`` bare requests or ``seconds`` of polling flat out, and the difference of
    the two counts over the difference of the requests is the cost of one, without the
    start-up. Under valgrind every client is many times slower than the server, so each
    wake-up of the loop finds every answer in: the count is that of the best batching for
    both. None if valgrind is not installed.
    """
    if shutil.which("valgrind") is None:
        return None
    sim = Simulator(duration=(7200.0, 14400.0), seed=SEED)
    counted: dict[str, list[tuple[int, int]]] = {"bare": [], "octovid": []}
    async with sim:
        ids = await create_tasks(sim, tasks, "instructions")
        with tempfile.TemporaryDirectory() as scratch:
            for size, duration in zip(sizes, seconds, strict=True):
                for name, spec in zip(("bare", "octovid"), _flat_out(sim, ids, size, duration),
                                      strict=True):
                    out = Path(scratch) / f"{name}-{size}.out"
                    run = await child(spec, ("valgrind", "--tool=cachegrind", "--cache-sim=no",
                                             f"--cachegrind-out-file={out}"))
                    served = int(run.get("requests") or run.get("polls") or 0)
                    counted[name].append((served, _instructions(out)))
    per = {name: (i2 - i1) / max(n2 - n1, 1)
           for name, ((n1, i1), (n2, i2)) in counted.items()}
    return {
        "tasks": tasks,
        "counted": counted,
        "bare_per_request": per["bare"],
        "octovid_per_request": per["octovid"],
        "ratio": per["octovid"] / per["bare"],
    }


def _instructions(path: Path) -> int:
    """The instructions a cachegrind output file counts in all."""
    for line in path.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {path}")


# -- targets and output --------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[list[str]]:
    """Issue 8's targets against this run's figures: (target, where, measured, floor, met)."""
    rows: list[list[str]] = []
    s = results["scenarios"]

    def octo(key: str) -> dict[str, Any] | None:
        return s.get(key, {}).get("octovid")

    def add(target: str, where: str, measured: str, met: bool | None, floor: str = "-") -> None:
        rows.append([target, where, measured, floor,
                     "-" if met is None else ("yes" if met else "no")])

    def floor(o: dict[str, Any]) -> str:
        f = o.get("floor")
        return "-" if f is None else f"{f['any']:.2f} any, {f['by_age']:.2f} by age alone"

    for key in ("sora-200", "sora-2000", "grok-200", "grok-100"):
        if (o := octo(key)) is not None:
            add("<= 2.5 requests per job, p95 <= 30 s", key,
                f"{o['requests_per_job']:.2f} req/job, p95 {fmt(o['detection_p95'], '1f')} s",
                o["requests_per_job"] <= 2.5 and o["detection_p95"] <= 30, floor(o))
    for key in ("veo-200-warm", "veo-100-warm"):
        if (o := octo(key)) is not None:
            add("warmed Veo: <= 4 requests per job, p95 <= 30 s", key,
                f"{o['requests_per_job']:.2f} req/job, p95 {fmt(o['detection_p95'], '1f')} s",
                o["requests_per_job"] <= 4 and o["detection_p95"] <= 30, floor(o))
    if (o := octo("tight")) is not None:
        add("0 lost, throughput >= 90%, p95 <= 60 s", "tight",
            f"{o['lost']} lost, {fmt(o.get('throughput'), 'pct')}, "
            f"p95 {fmt(o['detection_p95'], '1f')} s",
            o["lost"] == 0 and o.get("throughput", 0) >= 0.9 and o["detection_p95"] <= 60,
            f"{floor(o)}; throughput ceiling {fmt(o.get('throughput_ceiling'), 'pct')} "
            "(one first age for all)")
    for key, clients in s.items():
        o = clients.get("octovid")
        for other in ("naive", "openai"):
            if o is None or other not in clients:
                continue
            t = clients[other]
            fewer = t["requests_per_job"] / o["requests_per_job"]
            add(f">= 5x fewer requests than {other}, p95 no worse", key,
                f"{fewer:.1f}x fewer, p95 {fmt(o['detection_p95'], '1f')} s vs "
                f"{fmt(t['detection_p95'], '1f')} s",
                fewer >= 5 and not o["detection_p95"] > t["detection_p95"])
    if (c := results.get("cpu")) is not None:
        def each(key: str) -> str:
            return ", ".join(f"{r:.2f}" for r in c.get(key, []))

        add("CPU per request <= 1.3x bare aiohttp, flat out", "cpu",
            f"{c['ratio']:.2f}x, the median of turns ({each('ratio_each')})", c["ratio"] <= 1.3)
        add("CPU per request <= 1.3x bare aiohttp, at the same rate", "cpu",
            f"{c['ratio_at_equal_rate']:.2f}x, the median of turns "
            f"({each('ratio_at_equal_rate_each')})", c["ratio_at_equal_rate"] <= 1.3)
    if (i := results.get("instructions")) is not None:
        add("instructions per request <= 1.3x bare aiohttp (valgrind)", "instructions",
            f"{i['octovid_per_request']:,.0f} vs {i['bare_per_request']:,.0f} = "
            f"{i['ratio']:.2f}x", i["ratio"] <= 1.3)
    if (w := results.get("watch")) is not None:
        add("100,000 watched: <= 3 KB each, no stall > 100 ms", f"watch {w['tasks']:,}",
            f"{w['kb_per_task_registered']:.2f} KB registered, "
            f"{w['kb_per_task_all_polled']:.2f} KB once polled, stall {w['max_stall_ms']:.0f} ms"
            f", full GC {w['full_gc_ms']:.0f} ms",
            w["kb_per_task_all_polled"] <= 3 and w["max_stall_ms"] <= 100
            and not w["full_gc_ms"] > 100)
    return rows


def markdown(results: dict[str, Any], plan: list[Scenario]) -> str:
    """Every table of the run, as markdown."""
    parts = [f"Run of {results['date']}, {results['machine']}, octovid "
             f"{results['octovid']}, openai {results['openai']}; {results['command']}."]
    for scenario in plan:
        if scenario.key not in results["scenarios"]:
            continue
        clients = results["scenarios"][scenario.key]
        parts.append(f"### {scenario.key}: {scenario.title}")
        parts.append(f"Simulator: {next(iter(clients.values()))['simulator']}.")
        parts.append(scenario_table(clients))
    if (w := results.get("watch")) is not None:
        parts.append(f"### watch: {w['tasks']:,} tasks watched in one process")
        parts.append(simple_table(["figure", "value"], [
            ["memory per watched task, registered (KB)", f"{w['kb_per_task_registered']:.2f}"],
            ["memory per task at the end (KB)", f"{w['kb_per_task_end']:.2f}"],
            ["tasks polled at least once", f"{w['tasks_polled']:,}"],
            ["memory per polled task's snapshot (KB)", f"{w['kb_per_polled_snapshot']:.2f}"],
            ["memory per task once all are polled (KB, the two above)",
             f"{w['kb_per_task_all_polled']:.2f}"],
            [f"polls in {w['seconds']:g} s at {w['rate']:g}/s", f"{w['polls']:,}"],
            ["CPU per poll (us)", f"{w['cpu_per_poll_us']:.0f}"],
            ["longest loop stall while watched (ms)", f"{w['max_stall_ms']:.1f}"],
            ["longest GC pause while watched (ms)", f"{w['gc_longest_ms']:.1f}"],
            [f"time in GC in those {w['seconds']:g} s (s)", f"{w['gc_total_s']:.2f}"],
            ["a full collection, forced at the end (ms)", f"{w['full_gc_ms']:.1f}"],
            ["time of the watch() calls (s)", f"{w['watch_calls_s']:.2f}"],
            ["longest stall during the watch() calls (ms)",
             f"{w['stall_while_registering_ms']:.1f}"],
        ]))
    if (c := results.get("cpu")) is not None:
        parts.append("### cpu: CPU per request, octovid's watcher flat out against bare aiohttp")
        def turns(key: str) -> str:
            return ", ".join(f"{us:.0f}" for us in c.get(f"{key}_cpu_per_request_each_us", []))

        parts.append(f"{c.get('rounds', 1)} turns each (bare {turns('bare')} us; octovid "
                     f"{turns('octovid')} us; bare paced {turns('paced')} us); the rows show "
                     "the least of each. The paced bare loop keeps to the rate octovid reached "
                     "in the turn before: a request costs more CPU at a lower rate, as fewer "
                     "answers share each wake-up of the loop. The ratios are the median of "
                     "the turns' own: this machine's speed drifts between minutes.")
        rows = [
            ["bare aiohttp GET + json, 16 workers", f"{c['bare_requests']:,}",
             f"{c['bare_rate']:,.0f}", f"{c['bare_cpu_per_request_us']:.0f}"],
            ["octovid watcher, max_concurrency 16", f"{c['octovid_polls']:,}",
             f"{c['octovid_rate']:,.0f}", f"{c['octovid_cpu_per_request_us']:.0f}"],
            ["ratio, both flat out (median of the turns')", "", "", f"{c['ratio']:.2f}x"],
        ]
        if "paced_cpu_per_request_us" in c:
            rows[1:1] = [["bare, paced at octovid's rate, 16 workers", f"{c['bare_requests']:,}",
                          f"{c['paced_rate']:,.0f}", f"{c['paced_cpu_per_request_us']:.0f}"]]
            rows.append(["ratio at the same rate (median of the turns')", "", "",
                         f"{c['ratio_at_equal_rate']:.2f}x"])
        parts.append(simple_table(["client", "requests", "requests/s", "CPU per request (us)"],
                                  rows))
    if (i := results.get("instructions")) is not None:
        parts.append("### instructions: instructions per request, counted by valgrind")
        parts.append("Both clients flat out under cachegrind, each run at two lengths: the "
                     "difference of the counts over the difference of the requests is one "
                     "request's, without the start-up. Unlike CPU time, the count does not "
                     "drift with the machine; under valgrind both clients are far slower than "
                     "the server, so it is the count at the best batching for both.")
        parts.append(simple_table(["client", "requests (two runs)", "instructions per request"], [
            ["bare aiohttp GET + json, 16 workers",
             " / ".join(f"{n:,}" for n, _ in i["counted"]["bare"]),
             f"{i['bare_per_request']:,.0f}"],
            ["octovid watcher, max_concurrency 16",
             " / ".join(f"{n:,}" for n, _ in i["counted"]["octovid"]),
             f"{i['octovid_per_request']:,.0f}"],
            ["ratio", "", f"{i['ratio']:.2f}x"],
        ]))
    parts.append("### Issue 8's targets")
    parts.append("The floor is the least requests per job that keeps the target's p95 on this "
                 "batch's durations: for any schedule (even one that knows each end from its "
                 "first poll), and for one that knows a task by its age alone (no progress, as "
                 "Veo); `blind_floor` and `blind_optimum` in schedule.py.")
    parts.append(simple_table(["target", "scenario", "measured", "floor (req/job)", "met"],
                              targets(results)))
    return "\n\n".join(parts) + "\n"


def _clean(value: Any) -> Any:
    """NaN and infinity as null, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _openai_version() -> str | None:
    try:
        import openai
    except ImportError:
        return None
    return str(openai.__version__)


def plan_of(mode: str, only: list[str] | None) -> list[Scenario]:
    """The scenarios to run, without the openai client's runs if it is not installed."""
    plan = [s for s in scenarios(mode) if not only or s.key in only]
    if _openai_version() is None:
        print("openai is not installed (pip install -e '.[bench]'): its runs are skipped")
        plan = [dataclasses.replace(s, runs=tuple(r for r in s.runs if r.client != "openai"))
                for s in plan]
    return plan


async def measure(mode: str, plan: list[Scenario], only: list[str] | None) -> dict[str, Any]:
    """Run the plan, then the watch and cpu sections (unless ``only`` leaves them out)."""
    import octovid

    command = "python benchmarks/jobs.py" + ("" if mode == "full" else f" --{mode}")
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.python_implementation()} {platform.python_version()}, "
                   f"{platform.machine()}, {_cores()} cores",
        "octovid": octovid.__version__,
        "openai": _openai_version(),
        "command": command,
        "scenarios": {},
    }
    started = time.perf_counter()
    for scenario in plan:
        print(f"{scenario.key}: {scenario.title}", flush=True)
        results["scenarios"][scenario.key] = await run_scenario(scenario)
    if not only or "watch" in only:
        count, seconds = {"smoke": (2000, 2.0), "quick": (20_000, 10.0)}.get(
            mode, (100_000, 60.0))
        print(f"watch: {count:,} tasks for {seconds:g} s", flush=True)
        results["watch"] = await run_watch(count, seconds, rate=1000.0)
    if not only or "cpu" in only:
        print("cpu: octovid flat out against bare aiohttp", flush=True)
        tasks, requests, seconds, rounds = {
            "smoke": (200, 1000, 1.0, 1), "quick": (2000, 5000, 5.0, 2),
        }.get(mode, (2000, 12_000, 8.0, 5))
        results["cpu"] = await run_cpu(tasks, requests, seconds, rounds)
        if mode != "smoke":
            print("instructions: the same two, counted by valgrind", flush=True)
            sizes, spans = ((1000, 3000), (4.0, 12.0)) if mode == "quick" else (
                (2000, 6000), (8.0, 24.0))
            counted = await run_instructions(tasks, sizes, spans)
            if counted is not None:
                results["instructions"] = counted
    results["wall_s"] = time.perf_counter() - started
    return results


def write(results: dict[str, Any], plan: list[Scenario], out: Path, name: str) -> str:
    """Save the figures as JSON and the tables as markdown in ``out``; the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(_clean(results), indent=1) + "\n")
    text = markdown(results, plan)
    (out / f"{name}.md").write_text(text)
    return text


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, faster clocks")
    parser.add_argument("--smoke", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--out", default=str(RESULTS), help="where results are written")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these scenarios (and 'watch', 'cpu')")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = plan_of(mode, args.only)
    results = asyncio.run(measure(mode, plan, args.only))
    print(write(results, plan, Path(args.out), "jobs" if mode == "full" else f"jobs-{mode}"))


if __name__ == "__main__":
    main()
