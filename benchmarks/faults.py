"""Benchmark: the failure path under WORKLOADS.md's 429s and faults, beside the code it replaced.

Each scenario runs a fresh ``octovid.testing.Simulator`` in this process (for its request log and
its ground truth) and the client in a subprocess of its own: octovid as it is, and, in the same
run, the baseline (octovid at ``--baseline``, by default d241c3b, the last commit before the
failure-path rework, extracted with ``git archive``), on the same seed.

Scenarios (WORKLOADS.md "Rate limits and 429s" and "Other faults"):

* ``sporadic``: 3% and 5% of requests answered 429 at random (upstream saturation, the
  gateway's codes and bodies, 40% of them with ``Retry-After: 1``), no real limit; 64
  coroutines query one task for 20 s at a configured 40/s and 200/s, adaptive on and off.
  Figure: the rate the gateway saw, against the configured rate.
* ``limit``: a real limit (sliding window) at half the configured rate (20/s under 40/s,
  100/s under 200/s), 45 s. Figures from 15 s on: goodput against the limit, 429s per request.
* ``storm``: a 1.5 s storm (every request 429) with 16 requests in flight at 40/s, adaptive on
  and off. Figure: seconds from the storm's end to the first second at half the rate, and the
  rate over the 3 s after it.
* ``faults``: the run of the issue: 240 jobs of the ``mixed`` workload (five families),
  time-scaled 40x, a key limit of 40 requests/s, 40 s deadlines, 5% of creates saturated (40%
  with Retry-After), a 1.5 s storm, 3% 5xx (half HTML), dropped connections before and after
  create, stuck tasks. Figures: jobs resolved with their true outcome, duplicate creates,
  requests above the limit (429s of the real limit), the gateway's count against octovid's.
* ``batch``: ``submit_many`` of 100,000 keyed requests with a journal: how long the call takes,
  the event loop's longest stall until every claim is written and every job dispatched, and
  whether 50,000 finished jobs that the caller dropped are freed. (octovid only.)

    python benchmarks/faults.py            # everything, about 12 minutes
    python benchmarks/faults.py --quick    # shorter runs, about 5 minutes
    python benchmarks/faults.py --only storm,limit

Results go to ``benchmarks/results/faults.json`` and ``benchmarks/results/faults.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
SCALE = 40.0  # the faults scenario's time scale

# -- the client side (run in a subprocess, with whichever octovid is on sys.path) -----------


async def hammer(spec: dict[str, Any]) -> dict[str, Any]:
    """Query one long task from 64 coroutines for ``seconds``: demand above any rate."""
    import octovid

    limit = octovid.RateLimit(spec["rate"], adaptive=spec["adaptive"])
    async with octovid.Client(spec["key"], spec["url"], rate_limit=limit,
                              max_concurrency=spec.get("concurrency", 64)) as client:
        task = await client.create(octovid.GrokRequest("a long task"))
        loop = asyncio.get_running_loop()
        stop = loop.time() + spec["seconds"]
        failures = 0

        async def worker() -> None:
            nonlocal failures
            while loop.time() < stop:
                try:
                    await client.get(task.id)
                except octovid.OctovidError:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(spec.get("concurrency", 64))))
        stats = client.stats
    return {"requests": stats.requests, "failures": failures, "rate": stats.rate}


async def jobs(spec: dict[str, Any]) -> dict[str, Any]:
    """Submit every body at once, wait for every job, report each job's outcome."""
    import octovid

    scale = spec["scale"]
    policy = octovid.PollPolicy(initial=5.0 / scale, max_interval=30.0 / scale,
                                deadline=spec["deadline"])
    async with octovid.Client(spec["key"], spec["url"], rate_limit=spec["rate"],
                              max_concurrency=32, poll=policy) as client:
        requests = [octovid.request_from_dict(body) for body in spec["bodies"]]
        submitted = client.submit_many(requests)
        results = await octovid.gather(submitted, return_exceptions=True)
        stats = client.stats
    outcomes = []
    for job, result in zip(submitted, results, strict=True):
        kind = "completed" if isinstance(result, octovid.Task) else type(result).__name__
        outcomes.append({"id": job.id, "outcome": kind})
    return {"outcomes": outcomes, "requests": stats.requests, "retries": stats.retries}


def client_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = asyncio.run({"hammer": hammer, "jobs": jobs}[spec["mode"]](spec))
    print(json.dumps(result))


# -- the harness ---------------------------------------------------------------------------


@contextlib.contextmanager
def baseline_tree(revision: str | None) -> Iterator[Path | None]:
    """A directory holding octovid at ``revision`` (git archive), or None without git."""
    if revision is None or shutil.which("git") is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="octovid-baseline-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "octovid"],
                                 capture_output=True, check=False)
        if archive.returncode:
            print(f"no baseline: git archive {revision} failed", file=sys.stderr)
            yield None
            return
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield Path(tmp)


async def run_client(spec: dict[str, Any], tree: Path | None) -> dict[str, Any]:
    """Run the client side in a subprocess; ``tree`` puts another octovid first on the path."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", json.dumps(spec), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"client failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def gateway(sim: Any) -> list[Any]:
    return [r for r in sim.requests if r.route != "cdn"]


def per_second(records: list[Any], start: float, end: float, *, ok: bool = False) -> float:
    hits = [r for r in records if start <= r.at < end and (not ok or r.status == 200)]
    return len(hits) / (end - start)


async def sporadic(tree: Path | None, quick: bool) -> list[dict[str, Any]]:
    from octovid.testing import Simulator

    seconds = 10.0 if quick else 20.0
    rows = []
    for rate in (40, 200):
        for q in (0.03, 0.05):
            for adaptive in (True, False):
                async with Simulator(sporadic_429=q, sporadic_retry_after=0.4,
                                     duration=(3600.0, 3600.0), seed=11) as sim:
                    spec = {"mode": "hammer", "key": sim.api_key, "url": sim.url, "rate": rate,
                            "adaptive": adaptive, "seconds": seconds}
                    result = await run_client(spec, tree)
                    queries = [r for r in gateway(sim) if r.route == "query"]
                    span = queries[-1].at - queries[0].at
                    rows.append({
                        "rate": rate, "sporadic": q, "adaptive": adaptive,
                        "achieved": len(queries) / span / rate,
                        "429s": sim.rate_limited, "requests": len(gateway(sim)),
                        "client_requests": result["requests"],
                    })
    return rows


async def limit(tree: Path | None, quick: bool) -> list[dict[str, Any]]:
    from octovid.testing import Simulator

    seconds = 30.0 if quick else 45.0
    rows = []
    for rate in (40, 200):
        real = rate // 2
        async with Simulator(rate_limit=(real, 1.0), rate_limit_body="empty",
                             duration=(3600.0, 3600.0), seed=12) as sim:
            spec = {"mode": "hammer", "key": sim.api_key, "url": sim.url, "rate": rate,
                    "adaptive": True, "seconds": seconds}
            await run_client(spec, tree)
            queries = [r for r in gateway(sim) if r.route == "query"]
            start = queries[0].at + 15.0
            end = queries[-1].at
            sent = per_second(queries, start, end)
            good = per_second(queries, start, end, ok=True)
            rows.append({"rate": rate, "limit": real, "goodput": good / real,
                         "refused": 1 - good / sent if sent else 0.0})
    return rows


async def storm(tree: Path | None, quick: bool) -> list[dict[str, Any]]:
    from octovid.testing import Simulator

    rows = []
    for adaptive in (True, False):
        async with Simulator(duration=(3600.0, 3600.0), seed=13) as sim:
            spec = {"mode": "hammer", "key": sim.api_key, "url": sim.url, "rate": 40,
                    "adaptive": adaptive, "seconds": 14.0, "concurrency": 16}
            client = asyncio.ensure_future(run_client(spec, tree))
            await _first_query(sim)
            await asyncio.sleep(4.0)
            sim.storm(1.5)
            end = time.monotonic() + 1.5
            await client
            ok = [r for r in gateway(sim) if r.status == 200 and r.at >= end]
            second = end
            while second < end + 8 and per_second(ok, second, second + 1.0) < 20:
                second += 0.1
            rows.append({"adaptive": adaptive, "storm_429s": sim.faults_served["storm_429"],
                         "flowing_after": second - end,
                         "rate_after": per_second(ok, end, end + 3.0)})
    return rows


async def _first_query(sim: Any) -> None:
    """Return once the client's first query reached the simulator."""
    for _ in range(600):
        if any(r.route == "query" for r in sim.requests):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the client sent no query within 30 s")


async def faults(tree: Path | None, quick: bool) -> dict[str, Any]:
    from octovid.testing import WORKLOADS, Simulator

    # One storm of 1.5 real seconds, 5 s into the run (in workload seconds: x SCALE).
    workload = WORKLOADS["mixed+faults"].with_conditions(storms=((5 * SCALE, 1.5 * SCALE),))
    count, deadline = (120, 40.0) if quick else (240, 40.0)
    async with Simulator(workload=workload, time_scale=SCALE, seed=14,
                         rate_limit=(40, SCALE)) as sim:
        bodies = workload.bodies(count, seed=14)
        for i, body in enumerate(bodies):
            body["prompt"] = f"{body['prompt']} #{i}"  # each create body unique: count twins
        spec = {"mode": "jobs", "key": sim.api_key, "url": sim.url, "rate": 40.0,
                "scale": SCALE, "deadline": deadline, "bodies": bodies}
        result = await run_client(spec, tree)
    return judge(sim, result, deadline)


def judge(sim: Any, result: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Compare each job's outcome with the simulator's truth."""
    first = min(r.at for r in sim.requests)
    slack = 30.0 / SCALE + 1.0  # a poll interval and a request's round trip
    lost = []
    for outcome in result["outcomes"]:
        task = sim.tasks.get(outcome["id"]) if outcome["id"] else None
        kind = outcome["outcome"]
        if task is None:  # no task id: only a create whose answer was lost may end so
            ok = kind == "CreateUncertainError"
        elif task.terminal_at - first + slack <= deadline:  # it ended in time at the gateway
            ok = kind == ("completed" if task.outcome == "completed" else "TaskFailedError")
        else:
            ok = kind in ("WaitTimeoutError", "completed", "TaskFailedError")
        if not ok:
            lost.append(outcome)
    creates = sim.creates_per_body()
    return {
        "jobs": len(result["outcomes"]),
        "true_outcome": len(result["outcomes"]) - len(lost),
        "lost": lost[:10],
        "outcomes": _tally(result["outcomes"]),
        "duplicate_creates": sum(n - 1 for n in creates.values()),
        "above_limit": sim.faults_served["limit_429"],
        "gateway_requests": len(gateway(sim)),
        "client_requests": result["requests"],
        "faults": dict(sim.faults_served),
    }


def _tally(outcomes: list[dict[str, Any]]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for outcome in outcomes:
        tally[outcome["outcome"]] = tally.get(outcome["outcome"], 0) + 1
    return tally


async def batch(quick: bool) -> dict[str, Any]:
    """submit_many of 100,000 keyed requests: the call, the loop's stalls, freed jobs."""
    import octovid
    from octovid.testing import Simulator

    count = 100_000
    requests = [octovid.SoraRequest(f"line {i}") for i in range(count)]
    keys = [f"line-{i}" for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        async with Simulator(duration=(3600.0, 3600.0)) as sim, octovid.Client(
            sim.api_key, sim.url, rate_limit=2, journal=Path(tmp, "batch.db")
        ) as client:
            stalls = Heartbeat()
            beat = asyncio.ensure_future(stalls.run())
            start = time.perf_counter()
            submitted = client.submit_many(requests, keys=keys)
            call = time.perf_counter() - start
            assert client.journal is not None
            await client.journal.flush()  # the claims are written
            await asyncio.sleep(1.0)  # and the jobs dispatched
            claimed = time.perf_counter() - start
            refs = weakref.WeakSet(submitted[: count // 2])
            for job in submitted[: count // 2]:
                job.cancel()
            del submitted[: count // 2]
            gc.collect()
            await asyncio.sleep(0.5)
            freed = count // 2 - len(refs)
            for job in submitted:
                job.cancel()
            beat.cancel()
    return {"jobs": count, "call_ms": call * 1000, "claims_s": claimed,
            "longest_stall_ms": stalls.longest * 1000, "freed": freed, "dropped": count // 2}


class Heartbeat:
    """Measures how late the event loop runs a 10 ms sleep: its longest stall."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.longest = max(self.longest, loop.time() - before - 0.01)


# -- report --------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = [f"octovid failure-path benchmark, {platform.python_version()}, "
             f"{platform.machine()}, baseline {results['baseline']}", ""]
    now, old = results["octovid"], results.get("old", {})
    if "sporadic" in now:
        lines += ["### Sporadic 429s, no real limit: rate achieved / configured", "",
                  "| configured | sporadic 429s | adaptive | octovid | baseline |",
                  "|---|---|---|---|---|"]
        for i, row in enumerate(now["sporadic"]):
            base = old.get("sporadic", [{}] * (i + 1))[i].get("achieved")
            lines.append(f"| {row['rate']}/s | {row['sporadic']:.0%} | {row['adaptive']} | "
                         f"{row['achieved']:.0%} | {_pct(base)} |")
        lines.append("")
    if "limit" in now:
        lines += ["### A real limit at half the configured rate (from 15 s on)", "",
                  "| configured | limit | goodput / limit | 429s / requests | "
                  "baseline goodput | baseline 429s |", "|---|---|---|---|---|---|"]
        for i, row in enumerate(now["limit"]):
            base = old.get("limit", [{}] * (i + 1))[i]
            lines.append(f"| {row['rate']}/s | {row['limit']}/s | {row['goodput']:.0%} | "
                         f"{row['refused']:.1%} | {_pct(base.get('goodput'))} | "
                         f"{_pct(base.get('refused'), 1)} |")
        lines.append("")
    if "storm" in now:
        lines += ["### A 1.5 s storm, 16 requests in flight, 40/s", "",
                  "| adaptive | storm 429s | flowing again after | rate over the next 3 s | "
                  "baseline: flowing after | baseline rate |", "|---|---|---|---|---|---|"]
        for i, row in enumerate(now["storm"]):
            base = old.get("storm", [{}] * (i + 1))[i]
            lines.append(f"| {row['adaptive']} | {row['storm_429s']} | "
                         f"{row['flowing_after']:.1f} s | {row['rate_after']:.1f}/s | "
                         f"{_num(base.get('flowing_after'), ' s')} | "
                         f"{_num(base.get('rate_after'), '/s')} |")
        lines.append("")
    if "faults" in now:
        f, b = now["faults"], old.get("faults", {})
        lines += ["### All faults at once (mixed workload, 40x, 40/s limit, 40 s deadlines)", "",
                  "| | octovid | baseline |", "|---|---|---|",
                  f"| jobs with their true outcome | {f['true_outcome']} of {f['jobs']} | "
                  f"{b.get('true_outcome', '-')} of {b.get('jobs', '-')} |",
                  f"| duplicate creates | {f['duplicate_creates']} | "
                  f"{b.get('duplicate_creates', '-')} |",
                  f"| requests above the limit (limit 429s) | {f['above_limit']} | "
                  f"{b.get('above_limit', '-')} |",
                  f"| gateway's requests / octovid's count | {f['gateway_requests']} / "
                  f"{f['client_requests']} | {b.get('gateway_requests', '-')} / "
                  f"{b.get('client_requests', '-')} |",
                  f"| outcomes | {_outcomes(f)} | {_outcomes(b)} |", ""]
    if "batch" in now:
        b = now["batch"]
        lines += ["### submit_many of 100,000 keyed requests with a journal", "",
                  f"- the call returned in {b['call_ms']:.0f} ms; claims written and jobs "
                  f"dispatched {b['claims_s']:.1f} s later",
                  f"- the event loop's longest stall meanwhile: {b['longest_stall_ms']:.0f} ms",
                  f"- finished jobs the caller dropped, freed: {b['freed']:,} of "
                  f"{b['dropped']:,}", ""]
    return "\n".join(lines)


def _pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _num(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def _outcomes(result: dict[str, Any]) -> str:
    outcomes = result.get("outcomes")
    return ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) if outcomes else "-"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    chosen = set(args.only.split(",")) if args.only else {
        "sporadic", "limit", "storm", "faults", "batch"}
    results: dict[str, Any] = {"baseline": args.baseline, "octovid": {}, "old": {}}
    with baseline_tree(args.baseline) as old_tree:
        trees = [("octovid", None)] + ([("old", old_tree)] if old_tree else [])
        for name, scenario in (("sporadic", sporadic), ("limit", limit), ("storm", storm),
                               ("faults", faults)):
            if name not in chosen:
                continue
            for label, tree in trees:
                print(f"{name}: {label}...", file=sys.stderr, flush=True)
                results[label][name] = await scenario(tree, args.quick)
    if "batch" in chosen:
        print("batch...", file=sys.stderr, flush=True)
        results["octovid"]["batch"] = await batch(args.quick)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(sys.argv[2])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--only", help="comma-separated scenarios")
    parser.add_argument("--baseline", default="d241c3b",
                        help="the git revision to compare with (default d241c3b); '' for none")
    arguments = parser.parse_args()
    arguments.baseline = arguments.baseline or None
    outcome = asyncio.run(main(arguments))
    text = table(outcome)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if arguments.quick else ""
    (RESULTS / f"faults{suffix}.json").write_text(json.dumps(outcome, indent=2, default=str))
    (RESULTS / f"faults{suffix}.md").write_text(text + "\n")
