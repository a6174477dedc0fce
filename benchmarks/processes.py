"""Benchmark: one key's budget used by 4 worker processes, shared on Redis or paced alone.

Three groups run side by side, each against its own simulator in a process of its own (the
key's limit ``rate_limit=(20, 1.0)``: 20 requests in any second) with 4 worker processes of
octovid that split one batch of a WORKLOADS.md preset between them:

* ``shared``: every worker uses ``RateLimit(20, redis=URL)`` on one redis-server;
* ``local``: every worker uses its own ``RateLimit(20)``, what users do today;
* ``outage``: as ``shared``, with its redis-server stopped for 10 s mid-run, then restarted.

For each: 429s, the rate at the gateway against the limit while demand exceeds it (from the
first request to the last accepted create: creates still queue), requests per job, each
process's share of the grants in that span, Redis round trips per grant (commands the clients
sent, from ``INFO commandstats``), Redis CPU per grant (``INFO cpu``, less its idle cost) and
the client's CPU per grant (each worker's process CPU: HTTP, JSON and scheduling included);
for the outage, jobs failed or hung and the gateway's rate during the outage.

**Time.** Rates are real-time: the budget lives on Redis's clock, which no client can scale.
The workload's durations are divided by ``--scale`` (the simulator's ``time_scale``), and so
are octovid's poll intervals (``PollPolicy``), as benchmarks/jobs.py scales a whole client;
the key's window stays one real second.

    python benchmarks/processes.py           # 2,000 jobs a group, about 6 minutes on 2 cores
    python benchmarks/processes.py --quick   # 240 jobs a group, under a minute

Results: ``benchmarks/results/processes.json`` and ``processes.md`` (``processes-quick.*``).
Needs redis-server (``apt-get install redis-server``) and ``pip install -e '.[redis]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from report import fmt, simple_table

import octovid
from octovid._limiter import Limiter
from octovid.testing import WORKLOADS, Simulator

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "tests"))
import servers  # noqa: E402 - tests/servers.py: redis-server on a free port

RATE = 20  # the key's limit at the simulator, and every worker's RateLimit
WORKERS = 4
SEED = 10
PRESET = "grok"
CREATES = frozenset({"create", "videos_create", "native_create"})
# Commands that the scripts run inside Redis: INFO commandstats counts them too.
_INSIDE = frozenset({"time", "hmget", "hset", "pexpire", "zadd", "zremrangebyscore", "zcard",
                     "hincrby"})


# -- the simulator's process ----------------------------------------------------------------


async def serve(spec: dict[str, Any]) -> None:
    """Serve one simulator until SIGTERM, then write its request log to ``spec['log']``."""
    scale = spec["scale"]
    simulator = Simulator(workload=PRESET, time_scale=scale, seed=SEED, api_key=spec["key"],
                          rate_limit=(RATE, 1.0 * scale), port=0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with simulator:
        print(simulator.url, flush=True)
        await stop.wait()
    log = [[r.at, r.status, r.route] for r in simulator.requests if r.route != "cdn"]
    await asyncio.to_thread(Path(spec["log"]).write_text, json.dumps(log))


# -- a worker's process ---------------------------------------------------------------------


class _Notes(logging.Handler):
    """Keeps octovid's warnings, with the instant they came."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.notes: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append((time.monotonic(), record.getMessage()))


async def work(spec: dict[str, Any]) -> dict[str, Any]:
    """Run this worker's share of the batch; report grants, outcomes and CPU."""
    notes = _Notes()
    logging.getLogger("octovid").addHandler(notes)
    scale = spec["scale"]
    limit = octovid.RateLimit(RATE, redis=spec["redis"])
    default = octovid.PollPolicy()
    poll = octovid.PollPolicy(initial=default.initial / scale,
                              max_interval=default.max_interval / scale,
                              refresh=default.refresh / scale, deadline=None)
    requests = [octovid.request_from_dict(body) for body in spec["bodies"]]
    samples: list[tuple[float, int]] = []
    async with octovid.Client(spec["key"], spec["url"], rate_limit=limit, poll=poll) as client:
        limiter = client._limiter

        async def sample() -> None:
            while True:
                samples.append((time.monotonic(), limiter.granted))
                await asyncio.sleep(0.1)

        await asyncio.sleep(max(0.0, spec["start"] - time.monotonic()))
        cpu, started = time.process_time(), time.monotonic()
        sampler = asyncio.ensure_future(sample())
        jobs = client.submit_many(requests)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(octovid.gather(jobs, return_exceptions=True),
                                   spec["timeout"])
        ended = time.monotonic()
        cpu = time.process_time() - cpu
        sampler.cancel()
        samples.append((ended, limiter.granted))
        outcomes: dict[str, int] = {}
        for job in jobs:
            if not job.done():
                outcome = "hung"
            elif (exc := job.exception()) is None:
                outcome = "completed"
            elif isinstance(exc, octovid.TaskFailedError):
                outcome = "failed task"  # the workload's own failures: a true outcome
            else:
                outcome = f"error: {type(exc).__name__}: {exc}"[:200]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            job.cancel()
        stats = client.stats
        return {
            "granted": limiter.granted, "cpu": cpu, "started": started, "ended": ended,
            "samples": samples, "outcomes": outcomes, "notes": notes.notes,
            "requests": stats.requests, "rate_limited": stats.rate_limited,
        }


# -- the parent ------------------------------------------------------------------------------


async def _spawn(mode: str, spec: dict[str, Any], errors: Path) -> asyncio.subprocess.Process:
    """A process of this file in ``mode``, its spec on stdin, its stderr to ``errors`` (a pipe
    nobody reads would stall it); the group's own Redis only."""
    env = {k: v for k, v in os.environ.items() if k != "OCTOVID_REDIS_URL"}
    with errors.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, mode, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
        )
    assert process.stdin is not None
    process.stdin.write(json.dumps(spec).encode())
    process.stdin.write_eof()
    await process.stdin.drain()
    return process


async def _redis_info(url: str) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
        cpu = await client.info("cpu")
    finally:
        await client.aclose()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {"calls": calls, "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            "at": time.monotonic()}


async def run_group(name: str, *, jobs: int, scale: float, outage: tuple[float, float] | None,
                    shared: bool, workdir: Path, start_in: float) -> dict[str, Any]:
    """One group: its simulator, its redis-server (if shared), its 4 workers."""
    key = f"sk-bench-{name}"
    redis = servers.RedisServer(workdir / f"redis-{name}") if shared else None
    if redis is not None:
        redis.start()
    log_path = workdir / f"log-{name}.json"
    sim = await _spawn("--serve", {"key": key, "scale": scale, "log": str(log_path)},
                       workdir / f"sim-{name}.err")
    assert sim.stdout is not None
    url = (await sim.stdout.readline()).decode().strip()
    bodies = WORKLOADS[PRESET].bodies(jobs, seed=SEED)
    start = time.monotonic() + start_in
    before = idle = None
    if redis is not None:
        idle = await _redis_info(redis.url)
    workers = [
        await _spawn("--worker", {
            "key": key, "url": url, "redis": redis.url if redis else None, "scale": scale,
            "bodies": bodies[index::WORKERS], "start": start, "timeout": 900.0,
        }, workdir / f"worker-{name}-{index}.err")
        for index in range(WORKERS)
    ]
    if redis is not None:
        await asyncio.sleep(max(0.0, start - time.monotonic() - 0.2))
        before = await _redis_info(redis.url)
    window: tuple[float, float, float] | None = None
    if outage is not None and redis is not None:
        await asyncio.sleep(max(0.0, start + outage[0] - time.monotonic()))
        stopped = time.monotonic()
        redis.stop()
        await asyncio.sleep(outage[1])
        redis.start()
        restarted = time.monotonic()
        await asyncio.sleep(3.0)  # the workers rejoin: the transition counts as the outage's
        window = (stopped, restarted, time.monotonic())
        before = None  # counters restart with the server
    reports = []
    for index, worker in enumerate(workers):
        out, _ = await worker.communicate()
        if worker.returncode != 0:
            err = (workdir / f"worker-{name}-{index}.err").read_text()
            raise RuntimeError(f"a worker of {name} failed:\n{err[-3000:]}")
        reports.append(json.loads(out))
    after = await _redis_info(redis.url) if redis is not None else None
    if redis is not None:
        redis.stop()
    sim.send_signal(signal.SIGTERM)
    await sim.communicate()
    log = json.loads(log_path.read_text())
    return figures(name, jobs, scale, reports, log=log, redis=(idle, before, after),
                   window=window)


def _granted_at(samples: list[list[float]], at: float) -> float:
    """A worker's grants by ``at``, from its samples."""
    count = 0.0
    for t, granted in samples:
        if t > at:
            break
        count = granted
    return count


def _most_in_window(times: list[float], per: float) -> int:
    best, low = 0, 0
    for high, t in enumerate(times):
        while times[low] <= t - per:
            low += 1
        best = max(best, high - low + 1)
    return best


def figures(name: str, jobs: int, scale: float, reports: list[dict[str, Any]], *,
            log: list[list[Any]], redis: tuple[dict[str, Any] | None, ...],
            window: tuple[float, float, float] | None) -> dict[str, Any]:
    """Every figure of one group."""
    log.sort()
    times = [at for at, _, _ in log]
    accepted = [at for at, status, _ in log if status != 429]
    creates = [at for at, status, route in log if route in CREATES and status == 200]
    first, last = times[0], max(creates)
    span = last - first
    in_span = sum(1 for at in accepted if first <= at <= last)
    grants = sum(r["granted"] for r in reports)
    shares = [
        _granted_at(r["samples"], last) - _granted_at(r["samples"], first) for r in reports
    ]
    outcomes: dict[str, int] = {}
    for report in reports:
        for outcome, count in report["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    result: dict[str, Any] = {
        "group": name, "jobs": jobs, "workers": WORKERS, "limit": RATE, "time_scale": scale,
        "requests": len(log), "requests_per_job": len(log) / jobs,
        "r429": sum(1 for _, status, _ in log if status == 429),
        "demand_span_s": span,
        "aggregate_rate": in_span / span if span > 0 else math.nan,
        "aggregate_of_limit": in_span / span / RATE if span > 0 else math.nan,
        "most_in_one_second": _most_in_window(times, 1.0),
        "shares": [share / max(sum(shares), 1) for share in shares],
        "grants": grants,
        "client_cpu_per_grant_us": sum(r["cpu"] for r in reports) / max(grants, 1) * 1e6,
        "outcomes": outcomes,
        "failed_or_hung": sum(c for o, c in outcomes.items() if o not in
                              ("completed", "failed task")),
        "wall_s": max(r["ended"] for r in reports) - min(r["started"] for r in reports),
        "warnings": sorted({text.split(" (")[0] for r in reports for _, text in r["notes"]}),
    }
    _, before, after = redis
    if before is not None and after is not None:
        client_calls = {c: after["calls"].get(c, 0) - before["calls"].get(c, 0)
                        for c in after["calls"] if c not in _INSIDE and c != "info"}
        busy = after["cpu"] - before["cpu"]  # its idle cron included (10 Hz)
        result["redis_round_trips_per_grant"] = sum(client_calls.values()) / max(grants, 1)
        result["redis_commands"] = {c: n for c, n in client_calls.items() if n}
        result["redis_cpu_per_grant_us"] = max(busy, 0.0) / max(grants, 1) * 1e6
    if window is not None:
        low, restarted, high = window
        during = [at for at in times if low <= at <= high]
        result["outage_s"] = restarted - low
        result["outage_window_s"] = high - low
        result["outage_rate"] = len(during) / (high - low)
        result["outage_most_in_one_second"] = _most_in_window(during, 1.0)
        result["outage_above_limit"] = max(0, result["outage_most_in_one_second"] - RATE)
        result["outage_r429"] = sum(1 for at, status, _ in log
                                    if low <= at <= high and status == 429)
        rejoined = [at for r in reports for at, text in r["notes"] if "answers again" in text]
        result["rejoined_after_s"] = max(rejoined) - restarted if rejoined else math.nan
    return result


def markdown(results: dict[str, Any]) -> str:
    """The tables of one run."""
    groups = results["groups"]
    names = [g for g in ("shared", "local", "outage") if g in groups]

    def row(label: str, key: str, kind: str) -> list[str]:
        return [label, *(fmt(groups[g].get(key), kind) for g in names)]

    rows = [
        row("jobs (4 workers)", "jobs", "int"),
        row("429s", "r429", "int"),
        row("gateway rate while demand exceeds the limit (req/s)", "aggregate_rate", "2f"),
        row("... of the limit (20/s)", "aggregate_of_limit", "pct"),
        row("most requests in any 1 s", "most_in_one_second", "int"),
        row("requests per job", "requests_per_job", "2f"),
        ["each process's share of grants (demand span)",
         *(" / ".join(f"{s:.0%}" for s in groups[g]["shares"]) for g in names)],
        row("Redis round trips per grant", "redis_round_trips_per_grant", "3f"),
        row("Redis CPU per grant (us)", "redis_cpu_per_grant_us", "1f"),
        row("client CPU per grant (us, whole process)", "client_cpu_per_grant_us", "0f"),
        row("jobs failed (not by the task) or hung", "failed_or_hung", "int"),
        row("wall time (s)", "wall_s", "0f"),
    ]
    text = [results["header"], "", simple_table(["figure", *names], rows)]
    if "outage" in groups:
        o = groups["outage"]
        text += ["", f"Outage: Redis stopped for {o['outage_s']:.1f} s "
                 f"({results['outage'][0]:g} s into the run); its figures span the outage "
                 f"and the 3 s after the restart ({o['outage_window_s']:.1f} s).", "",
                 simple_table(["figure", "outage"], [
                     ["jobs failed or hung", fmt(o["failed_or_hung"], "int")],
                     ["gateway rate during the outage (req/s)", fmt(o["outage_rate"], "2f")],
                     ["most requests in any 1 s during it", fmt(o["outage_most_in_one_second"],
                                                                 "int")],
                     ["requests above the limit in any 1 s", fmt(o["outage_above_limit"],
                                                                  "int")],
                     ["429s during it", fmt(o["outage_r429"], "int")],
                     ["shared again (s after the restart, last worker)",
                      fmt(o["rejoined_after_s"], "1f")],
                 ])]
    cost = results["cost"]
    text += ["", f"The cost of one grant, {cost['grants']:,} grants back to back in one "
             "process (the limiter alone, no HTTP):", "",
             simple_table(["figure", "local RateLimit(...)", "RateLimit(..., redis=URL)"], [
                 ["client CPU per grant (us)", fmt(cost["local_client_us"], "1f"),
                  fmt(cost["shared_client_us"], "1f")],
                 ["Redis CPU per grant (us)", "-", fmt(cost["redis_us"], "1f")],
                 ["EVALSHA per grant", "-", fmt(cost["evalsha_per_grant"], "3f")],
             ])]
    shared = groups.get("shared", {})
    text += ["", "Targets (issue 10): " + "; ".join([
        f"0 429s at equal limits: {shared.get('r429')}",
        f"aggregate >= 95% of the limit: {fmt(shared.get('aggregate_of_limit'), 'pct')}",
        "each process >= 15% of grants: "
        + " / ".join(f"{s:.0%}" for s in shared.get("shares", [])),
        f"<= 1 Redis round trip per grant: {fmt(shared.get('redis_round_trips_per_grant'), '3f')}",
        "outage: 0 failed or hung: "
        f"{groups['outage']['failed_or_hung'] if 'outage' in groups else '-'}",
    ]) + "."]
    return "\n".join(text) + "\n"


async def grant_cost(workdir: Path, grants: int) -> dict[str, Any]:
    """CPU per grant of the limiter alone, shared on Redis or not, and Redis's CPU per grant:
    ``grants`` grants back to back in this process, at a rate that never makes them wait."""
    redis = servers.RedisServer(workdir / "redis-cost")
    redis.start()
    try:
        costs: dict[str, Any] = {}
        for name, url in (("local", None), ("shared", redis.url)):
            limiter = Limiter(octovid.RateLimit(1e6, redis=url), 1, key="sk-bench-cost")
            await limiter.start()
            before = await _redis_info(redis.url)
            cpu = time.process_time()
            for _ in range(grants):
                (await limiter.acquire()).release()
            costs[f"{name}_client_us"] = (time.process_time() - cpu) / grants * 1e6
            after = await _redis_info(redis.url)
            if url is not None:
                costs["redis_us"] = (after["cpu"] - before["cpu"]) / grants * 1e6
                costs["evalsha_per_grant"] = (
                    after["calls"]["evalsha"] - before["calls"].get("evalsha", 0)
                ) / grants
            limiter.close()
            await limiter.disconnect()
        costs["grants"] = grants
        client = aioredis.Redis.from_url(redis.url)
        costs["redis_version"] = (await client.info("server"))["redis_version"]
        await client.aclose()
        return costs
    finally:
        redis.stop()


async def measure(quick: bool) -> dict[str, Any]:
    """The three groups, one after the other (side by side, their processes would jostle on
    two cores and the jitter of their sends would show as 429s), then the cost of a grant."""
    scale = 40.0 if quick else 20.0
    jobs = {"shared": 80, "local": 80, "outage": 140} if quick else (
        {"shared": 2000, "local": 2000, "outage": 1000})
    outage = (3.0, 10.0) if quick else (20.0, 10.0)
    groups = []
    with tempfile.TemporaryDirectory(prefix="octovid-processes-") as tmp:
        workdir = Path(tmp)
        for name in ("shared", "local", "outage"):
            group = await run_group(name, jobs=jobs[name], scale=scale, shared=name != "local",
                                    outage=outage if name == "outage" else None,
                                    workdir=workdir, start_in=2.0)
            print(f"{name}: {group['r429']} 429s, {group['aggregate_of_limit']:.1%} of the "
                  f"limit, shares {' / '.join(f'{s:.0%}' for s in group['shares'])}, "
                  f"{group['failed_or_hung']} failed or hung, {group['wall_s']:.0f} s",
                  flush=True)
            groups.append(group)
        cost = await grant_cost(workdir, 2000 if quick else 20000)
    command = "python benchmarks/processes.py" + (" --quick" if quick else "")
    header = (
        f"Run of {time.strftime('%Y-%m-%d')}, CPython {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, octovid {octovid.__version__}, "
        f"redis-server {cost['redis_version']}; `{command}`. Preset {PRESET}, time scale "
        f"{scale:g} (durations and poll intervals; rates are real-time), seed {SEED}; the "
        "groups ran one after the other."
    )
    return {"header": header, "command": command, "outage": list(outage),
            "groups": {g["group"]: g for g in groups}, "cost": cost}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        asyncio.run(serve(json.loads(sys.stdin.read())))
        return
    if argv[:1] == ["--worker"]:
        print(json.dumps(asyncio.run(work(json.loads(sys.stdin.read())))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="240 jobs a group, under a minute")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.quick))
    name = "processes-quick" if args.quick else "processes"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = markdown(results)
    (args.out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
