"""Benchmark: one watcher under one limiter, against the coroutine-per-task approach.

For each workload, a fresh simulator (in this process, for its request log) serves tasks that
last a few seconds and report progress, behind a per-key rate limit. Each client runs in its
own subprocess, so that its CPU time and peak memory are its own:

* ``octovid``: ``Client.submit_many`` at the default PollPolicy, paced at the gateway's limit.
* ``naive``: what users write today: a coroutine per task that creates, then polls at a fixed
  interval, all under ``asyncio.gather``, with no shared limiter (a 429 is retried after 1 s).

Figures, per workload and client: requests per task, the rate achieved while demand exceeds
the limit (against the limit), 429s, detection delay (the gateway's completion to the client
knowing it, p50 and p95), client CPU seconds per 1,000 requests and per task, and peak memory.

    python benchmarks/watch.py              # 1,000 and 10,000 tasks (about 10 minutes)
    python benchmarks/watch.py --quick      # 1,000 tasks only

Results go to ``benchmarks/results/watch.json`` and ``benchmarks/results/watch.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

import octovid
from octovid.testing import Simulator

RESULTS = Path(__file__).parent / "results"
FAMILIES = (octovid.VeoRequest, octovid.SoraRequest, octovid.GrokRequest, octovid.ViduRequest,
            octovid.JimengRequest)
NAIVE_INTERVAL = 5.0  # the naive poller's fixed interval: octovid's initial interval


def requests_for(count: int) -> list[octovid.Request]:
    return [FAMILIES[i % len(FAMILIES)](f"benchmark clip {i}") for i in range(count)]


# -- the clients (run in a subprocess each) -----------------------------------------------


async def run_octovid(url: str, key: str, count: int, rate: float) -> dict[str, Any]:
    resolved: dict[str, float] = {}
    async with octovid.Client(key, url, rate_limit=rate, max_concurrency=64) as client:
        jobs = client.submit_many(requests_for(count), deadline=3600)
        for job in jobs:
            job.add_done_callback(lambda j: resolved.__setitem__(j.id or "?", time.time()))
        results = await octovid.gather(jobs, return_exceptions=True)
        stats = client.stats
    errors = [r for r in results if not isinstance(r, octovid.Task)]
    return {"resolved": resolved, "errors": len(errors), "requests": stats.requests}


async def run_naive(url: str, key: str, count: int, rate: float) -> dict[str, Any]:
    del rate  # the naive approach does not know about rates
    resolved: dict[str, float] = {}
    sent = 0
    headers = {"Authorization": f"Bearer {key}"}

    async def one(request: octovid.Request, session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while True:  # create; retry after 1 s on 429 or 5xx
            sent += 1
            async with session.post(f"{url}/v1/video/create", json=request.to_payload(),
                                    headers=headers) as response:
                if response.status == 200:
                    body = await response.json()
                    break
            await asyncio.sleep(1.0)
        task_id = body.get("id") or body.get("task_id")
        while True:  # poll at a fixed interval until the task ends
            await asyncio.sleep(NAIVE_INTERVAL)
            sent += 1
            async with session.get(f"{url}/v1/video/query", params={"id": task_id},
                                   headers=headers) as response:
                if response.status != 200:
                    continue
                body = await response.json()
            if octovid.Task.from_response(body, task_id=task_id).terminal:
                resolved[task_id] = time.time()
                return

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(request, session) for request in requests_for(count)))
    return {"resolved": resolved, "errors": count - len(resolved), "requests": sent}


def worker(args: argparse.Namespace) -> None:
    baseline = resource.getrusage(resource.RUSAGE_SELF)
    run = run_octovid if args.worker == "octovid" else run_naive
    result = asyncio.run(run(args.url, args.key, args.tasks, args.rate))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = (usage.ru_utime + usage.ru_stime) - (baseline.ru_utime + baseline.ru_stime)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["baseline_rss_mb"] = baseline.ru_maxrss / 1024
    json.dump(result, sys.stdout)


# -- the orchestrator ----------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(approach: str, tasks: int, rate: int, duration: tuple[float, float]) -> dict:
    simulator = Simulator(seed=42, duration=duration, rate_limit=(rate, 1.0))
    with simulator.run_in_thread() as sim:
        started = time.time()
        process = subprocess.run(
            [sys.executable, __file__, "--worker", approach, "--url", sim.url, "--key",
             sim.api_key, "--tasks", str(tasks), "--rate", str(rate)],
            capture_output=True, text=True, check=True,
        )
        wall = time.time() - started
        client = json.loads(process.stdout)
        log = [r for r in sim.requests if r.route != "cdn"]
        done_at = {task.id: task.wall_terminal_at for task in sim.tasks.values()}
        creates = [r.wall for r in log if r.route == "create" and r.status == 200]
        limited = sum(1 for r in log if r.status == 429)
        peak_window = sim.max_rate(1.0)
    delays = [client["resolved"][i] - done_at[i] for i in client["resolved"] if i in done_at]
    # While creates are still queued, demand exceeds the limit: the rate achieved then.
    busy = [r for r in log if r.wall <= max(creates)]
    busy_rate = len(busy) / max(1e-9, max(creates) - log[0].wall)
    return {
        "approach": approach,
        "tasks": tasks,
        "limit": rate,
        "resolved": len(client["resolved"]),
        "errors": client["errors"],
        "requests": len(log),
        "requests_per_task": len(log) / tasks,
        "rate_limited": limited,
        "busy_rate": busy_rate,
        "busy_rate_vs_limit": busy_rate / rate,
        "peak_1s_window": peak_window,
        "delay_p50": percentile(delays, 0.50),
        "delay_p95": percentile(delays, 0.95),
        "delay_mean": statistics.fmean(delays),
        "cpu_s": client["cpu"],
        "cpu_s_per_1000_requests": client["cpu"] / max(1, client["requests"]) * 1000,
        "cpu_ms_per_task": client["cpu"] / tasks * 1000,
        "peak_rss_mb": client["peak_rss_mb"],
        "rss_growth_mb": client["peak_rss_mb"] - client["baseline_rss_mb"],
        "kb_per_task": (client["peak_rss_mb"] - client["baseline_rss_mb"]) * 1024 / tasks,
        "wall_s": wall,
    }


COLUMNS = [
    ("tasks", "tasks", "{:,}"), ("approach", "client", "{}"),
    ("requests_per_task", "req/task", "{:.2f}"),
    ("busy_rate_vs_limit", "rate/limit", "{:.0%}"), ("rate_limited", "429s", "{:,}"),
    ("delay_p50", "delay p50", "{:.1f}s"), ("delay_p95", "delay p95", "{:.1f}s"),
    ("cpu_s_per_1000_requests", "CPU/1k req", "{:.2f}s"),
    ("cpu_ms_per_task", "CPU/task", "{:.1f}ms"), ("peak_rss_mb", "peak RSS", "{:.0f}MB"),
    ("kb_per_task", "KB/task", "{:.1f}"), ("wall_s", "wall", "{:.0f}s"),
]


def table(rows: list[dict]) -> str:
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |"
            for row in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tasks only")
    parser.add_argument("--worker", choices=["octovid", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    workloads = [(1_000, 50)] if args.quick else [(1_000, 50), (10_000, 200)]
    duration = (5.0, 20.0)  # seconds from create to completion, progress rising linearly
    rows = []
    for tasks, rate in workloads:
        for approach in ("octovid", "naive"):
            print(f"running {approach} on {tasks:,} tasks at {rate}/s...", file=sys.stderr,
                  flush=True)
            rows.append(measure(approach, tasks, rate, duration))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(), "octovid": octovid.__version__,
            "job_duration_s": duration, "naive_interval_s": NAIVE_INTERVAL,
            "date": time.strftime("%Y-%m-%d")}
    (RESULTS / "watch.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    text = table(rows)
    (RESULTS / "watch.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
