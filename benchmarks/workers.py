"""Benchmark: one batch run by 4 workers sharing a PostgreSQL journal, one killed halfway.

What it measures: the same batch file (lines of a WORKLOADS.md preset, time-scaled) run by
``python -m octovid batch FILE --journal postgresql://...`` in 4 processes against one
simulator; when half the lines are created, one worker is killed with SIGKILL. Then: creates
per line (0 duplicates), lines lost (0), complete downloads per video and files verified
against the journal's sha256 (once each), and for the killed worker's lines the time from the
kill to another worker taking them over, against ``lease + one poll interval`` (the idle
workers look for lines every ``min(1 s, lease / 6)``), and to their being finished.

How: a throw-away PostgreSQL (``tests/servers.py``'s PostgresServer, which runs it as the
``postgres`` user when started as root) on a free port; the simulator in this process, keeping
the request log; a watcher here samples the journal's leases every 50 ms to see takeovers.

    python benchmarks/workers.py            # 400 lines of veo-fast, lease 5 s
    python benchmarks/workers.py --quick    # 120 lines, lease 3 s: under a minute
    python benchmarks/workers.py --lines 200 --workload grok --lease 4

Results: ``benchmarks/results/workers.json`` and ``workers.md`` (``workers-quick.*`` for
``--quick``). Needs ``pip install -e '.[postgres]'`` and PostgreSQL's server binaries
(``apt-get install postgresql``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from report import percentile, simple_table

from octovid.testing import WORKLOADS, Simulator

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "tests"))
import servers  # noqa: E402 - the test servers' helpers, next to this folder
from databases import admin  # noqa: E402

SEED = 10
WORKERS = 4


async def start_worker(sim: Simulator, batch: Path, out: Path, database: str, *, lease: float,
                       rate: float, poll: float, log: Path) -> asyncio.subprocess.Process:
    """One worker: ``python -m octovid batch`` on the shared journal."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "octovid", "--api-key", sim.api_key, "--base-url", sim.url,
        "--rate-limit", str(rate), "--max-concurrency", "16", "--quiet", "batch", str(batch),
        "--out", str(out), "--journal", database, "--lease", str(lease),
        "--poll-interval", str(poll),
        stdout=asyncio.subprocess.DEVNULL, stderr=log.open("wb"),
        env={**os.environ, "OCTOVID_API_KEY": ""},
    )


async def watch_leases(database: str, killed: str, since: list[float],
                       taken: dict[str, float], stop: asyncio.Event) -> None:
    """Sample the leases: when each key of the killed worker is first held by another."""
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as db:
        while not stop.is_set():
            if since:
                cursor = await db.execute(
                    "SELECT key FROM octovid_jobs WHERE owner IS NOT NULL AND owner NOT LIKE %s"
                    " AND key = ANY(%s)",
                    (f"%:{killed}:%", [key for key in taken if not taken[key]]),
                )
                now = time.time()
                for (key,) in await cursor.fetchall():
                    taken[key] = now
            await asyncio.sleep(0.05)


def verified(file: str | None, digest: str | None) -> bool:
    """Whether ``file`` exists and its sha256 is the journal's."""
    path = Path(file) if file else None
    return bool(path and digest and path.is_file()
                and hashlib.sha256(path.read_bytes()).hexdigest() == digest)


async def run(args: argparse.Namespace, workdir: Path, server_url: str) -> dict[str, Any]:
    workload = WORKLOADS[args.workload]
    bodies = workload.bodies(args.lines, seed=SEED)
    batch = workdir / "batch.jsonl"
    batch.write_text("".join(json.dumps({**body, "key": f"line-{n:04d}"}) + "\n"
                             for n, body in enumerate(bodies, 1)))
    with admin(server_url) as db:
        db.execute("CREATE DATABASE octovid_bench")
    database = server_url.rsplit("/", 1)[0] + "/octovid_bench"
    idle = min(1.0, args.lease / 6)
    async with Simulator(workload=workload, time_scale=args.scale, seed=SEED) as sim:
        started = time.time()
        outs = [workdir / f"out-{n}" for n in range(WORKERS)]
        procs = [await start_worker(sim, batch, out, database, lease=args.lease, rate=args.rate,
                                    poll=args.poll, log=workdir / f"worker-{n}.log")
                 for n, out in enumerate(outs)]
        while len(sim.tasks) < args.lines // 2:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
        victim = procs[1]
        victim.send_signal(signal.SIGKILL)
        killed_at = time.time()
        await victim.wait()
        with psycopg.connect(database, autocommit=True) as db:
            rows = db.execute("SELECT key, state FROM octovid_jobs WHERE owner LIKE %s",
                              (f"%:{victim.pid}:%",)).fetchall()
        held: dict[str, str] = dict(rows)
        taken: dict[str, float] = dict.fromkeys(held, 0.0)
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(watch_leases(database, str(victim.pid), [killed_at],
                                                     taken, stop))
        codes = [await proc.wait() for n, proc in enumerate(procs) if n != 1]
        ended = time.time()
        stop.set()
        await watcher
        creates = Counter(sim.creates_per_body().values())
        downloads = Counter(r.task_id for r in sim.requests
                            if r.route == "cdn" and r.status in (200, 206) and r.task_id)
        ready = {task.id: task.wall_terminal_at for task in sim.tasks.values()}
        after: dict[str, dict[str, float]] = {}  # task -> its first poll and download after kill
        for r in sim.requests:
            if r.task_id and r.wall >= killed_at:
                kind = "download" if r.route == "cdn" else "poll"
                after.setdefault(r.task_id, {}).setdefault(kind, r.wall - killed_at)
        requests = len([r for r in sim.requests if r.route != "cdn"])
    with psycopg.connect(database, autocommit=True) as db:
        jobs = db.execute("SELECT key, task_id, status, file, sha256 FROM octovid_jobs").fetchall()
        lines = db.execute("SELECT key, outcome, finished_by, finished_at FROM octovid_batch_lines"
                           ).fetchall()
    outcomes = Counter(outcome for _, outcome, _, _ in lines)
    finished_at = {key: at for key, _, _, at in lines}
    by_key = {key: (task_id, status, file, digest) for key, task_id, status, file, digest in jobs}
    files = sum(1 for _, _, file, digest in by_key.values() if verified(file, digest))
    takeover = [taken[key] - killed_at for key in held if taken[key]]
    finish = [finished_at[key] - killed_at for key in held if finished_at.get(key)]
    # lines whose video was ready at the gateway before the kill: only the takeover and the
    # download stand between them and their end
    ready_before = [key for key in held if (task := by_key[key][0]) and ready.get(task, 1e18)
                    <= killed_at]
    ready_finish = [finished_at[key] - killed_at for key in ready_before if finished_at.get(key)]
    bound = args.lease + idle
    steps = {key: {"taken": taken[key] - killed_at if taken[key] else None,
                   **after.get(by_key[key][0] or "", {}),
                   "finished": finished_at[key] - killed_at if finished_at.get(key) else None}
             for key in ready_before}
    return {
        "workload": args.workload, "lines": args.lines, "workers": WORKERS,
        "time_scale": args.scale, "lease": args.lease, "idle_poll": idle, "bound": bound,
        "rate_per_worker": args.rate, "poll_interval": args.poll, "wall": ended - started,
        "killed_after": killed_at - started,
        "exit_codes": codes,
        "duplicate_creates": sum(n - 1 for n, count in creates.items() for _ in range(count)),
        "tasks": sum(creates.values()), "lost": args.lines - sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "videos_verified": files,
        "downloads_once": sum(1 for count in downloads.values() if count == 1),
        "downloads_twice_or_more": sum(1 for count in downloads.values() if count > 1),
        "requests_per_line": requests / args.lines,
        "killed_held": len(held), "killed_held_states": dict(Counter(held.values())),
        "takeover_max": max(takeover, default=float("nan")),
        "takeover_p50": percentile(takeover, 0.5),
        "finished_max": max(finish, default=float("nan")),
        "ready_lines": len(ready_before),
        "ready_finished_max": max(ready_finish, default=float("nan")),
        "within_bound": bool(takeover) and max(takeover) <= bound,
        "ready_poll_after_takeover_max": max(
            (v["poll"] - v["taken"] for v in steps.values()
             if v.get("poll") is not None and v.get("taken") is not None), default=float("nan")),
        "ready_steps": steps,  # per line ready before the kill: seconds after it of each step
    }


def markdown(result: dict[str, Any], command: str) -> str:
    r = result
    rows = [
        ("lines / workers / killed", f"{r['lines']} / {r['workers']} / 1 (SIGKILL at "
                                     f"{r['killed_after']:.1f} s, half the lines created)"),
        ("workload, time scale", f"{r['workload']}, /{r['time_scale']:g}"),
        ("each worker: --rate-limit, --poll-interval",
         f"{r['rate_per_worker']:g}/s, {r['poll_interval']:g} s"),
        ("tasks created / duplicate creates", f"{r['tasks']} / {r['duplicate_creates']}"),
        ("lines lost (no outcome)", str(r["lost"])),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))),
        ("videos verified (file matches sha256)", str(r["videos_verified"])),
        ("videos downloaded once / more than once",
         f"{r['downloads_once']} / {r['downloads_twice_or_more']}"),
        ("killed worker's lines (by state)", f"{r['killed_held']} "
         f"({', '.join(f'{k} {v}' for k, v in sorted(r['killed_held_states'].items()))})"),
        ("takeover after the kill: p50 / max", f"{r['takeover_p50']:.2f} s / "
                                               f"{r['takeover_max']:.2f} s"),
        ("bound: lease + one poll interval", f"{r['lease']:g} + {r['idle_poll']:.2f} = "
                                             f"{r['bound']:.2f} s"),
        ("killed lines finished, max after the kill", f"{r['finished_max']:.2f} s"),
        ("of them ready at the gateway before the kill: finished max",
         f"{r['ready_lines']} lines, {r['ready_finished_max']:.2f} s"),
        ("of them: first poll after the takeover, max",
         f"{r['ready_poll_after_takeover_max']:.2f} s"),
        ("gateway requests per line", f"{r['requests_per_line']:.2f}"),
        ("wall time", f"{r['wall']:.1f} s"),
        ("surviving workers' exit codes", " ".join(map(str, r["exit_codes"]))),
    ]
    return "\n".join([
        "# workers: one batch, 4 workers, one PostgreSQL journal, one worker killed", "",
        f"`{command}` on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores.", "",
        simple_table(("figure", "value"), rows), "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="120 lines, lease 3 s")
    parser.add_argument("--lines", type=int)
    parser.add_argument("--workload", default="veo-fast", choices=sorted(WORKLOADS))
    parser.add_argument("--scale", type=float, default=30.0, help="time scale (default 30)")
    parser.add_argument("--lease", type=float)
    parser.add_argument("--rate", type=float, default=10.0, help="each worker's rate limit")
    parser.add_argument("--poll", type=float, default=0.5,
                        help="each worker's --poll-interval (default 0.5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.lines = args.lines or (120 if args.quick else 400)
    args.lease = args.lease or (3.0 if args.quick else 5.0)
    command = "python benchmarks/workers.py" + (" --quick" if args.quick else "")
    with tempfile.TemporaryDirectory(prefix="octovid-workers-") as tmp:
        workdir = Path(tmp)
        server = servers.PostgresServer(workdir / "postgres")
        server.start()
        try:
            result = asyncio.run(run(args, workdir, server.url))
        finally:
            server.stop()
    name = "workers-quick" if args.quick else "workers"
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(result, command)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(text)
    print(text)
    ok = (result["duplicate_creates"] == 0 and result["lost"] == 0 and result["within_bound"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
