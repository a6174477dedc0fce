"""``octovid simulate``: the simulated gateway, served until Ctrl-C, logging each request.

It starts with the ``export`` line that points octovid at it, logs each request as it is
answered (as ``python -m http.server`` does), and ends with a tally.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from typing import IO

from octovid.testing import RequestRecord, Simulator

__all__ = ["log_line", "main", "tally"]

_LOG_EVERY = 0.1  # seconds between two looks at the simulator's request log


def log_line(record: RequestRecord) -> str:
    """One request, as a log line: time, method and path, status, the task it was about."""
    when = time.strftime("%H:%M:%S", time.localtime(record.wall))
    status = "dropped" if record.status == 0 else str(record.status)
    task = f"  {record.task_id}" if record.task_id else ""
    where = "cdn " if record.route == "cdn" else ""
    return f"[{when}] {where}\"{record.method} {record.raw_path or record.path}\" {status}{task}"


def tally(sim: Simulator) -> str:
    """What the simulator served: requests by kind, tasks by outcome, 429s."""
    kinds: Counter[str] = Counter()
    for record in sim.requests:
        if record.route == "cdn" or record.path.endswith("/content"):
            kinds["download"] += 1
        elif record.method == "POST":
            kinds["create"] += 1
        else:
            kinds["query"] += 1
    outcomes: Counter[str] = Counter(
        task.outcome if time.monotonic() >= task.terminal_at else "running"
        for task in sim.tasks.values()
    )
    served = ", ".join(_count(kinds[k], k) for k in ("create", "query", "download") if kinds[k])
    made = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
    text = _count(len(sim.requests), "request") + (f" ({served})" if served else "")
    text += f"; {_count(len(sim.tasks), 'task')}" + (f" ({made})" if made else "")
    if sim.rate_limited:
        text += f"; {sim.rate_limited} answered 429"
    return text


def _count(number: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number} {noun if number == 1 else plural}"


async def _serve(sim: Simulator, *, quiet: bool, out: IO[str], log: IO[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with sim:
        print(f"octovid simulator listening on {sim.url} (api key: {sim.api_key})", file=out)
        if sim.workload is not None:
            print(f"octovid simulator running {sim.describe()}", file=out)
        print("point octovid at it with:", file=out)
        print(f"export OCTOVID_BASE_URL={sim.url} OCTOVID_API_KEY={sim.api_key}", file=out,
              flush=True)
        seen = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _LOG_EVERY)
            records = sim.requests
            if not quiet:
                for record in records[seen:]:
                    print(log_line(record), file=log)
                log.flush()
            seen = len(records)
        print(f"octovid simulator: stopped after {tally(sim)}", file=out, flush=True)


def main(argv: list[str]) -> int:
    """Serve the simulator until SIGINT or SIGTERM; return the exit status."""
    from octovid.testing._standalone import _parser

    parser = _parser("octovid simulate")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if args.workload is not None:
        given = [flag for flag, value, default in (
            ("--duration", tuple(args.duration), (1.0, 3.0)),
            ("--failure-rate", args.failure_rate, 0.0),
            ("--refresh", args.refresh, 0.0),
            ("--unknown-for", args.unknown_for, 0.0),
        ) if value != default]
        if given:
            parser.error(f"--workload draws its own tasks: drop {', '.join(given)}")
    try:
        sim = Simulator(
            api_key=args.api_key or None, host=args.host, port=args.port, seed=args.seed,
            duration=tuple(args.duration), failure_rate=args.failure_rate,
            refresh=args.refresh, unknown_for=args.unknown_for, rate_limit=args.rate_limit,
            retry_after=args.retry_after, url_ttl=args.url_ttl, workload=args.workload,
            time_scale=args.time_scale, poll_after_ms=args.poll_after_ms,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(sim, quiet=args.quiet, out=sys.stdout, log=sys.stderr))
    except KeyboardInterrupt:  # where no signal handler could be installed
        pass
    except OSError as exc:  # e.g. the port is taken
        print(f"octovid simulate: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
