"""The command line of ``python -m octovid.testing``: one simulator, served until a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ._simulator import Simulator
from ._workloads import CONDITIONS, ROUTE_WORKLOADS, WORKLOADS


def _rate_limit(text: str) -> tuple[int, float]:
    requests, _, window = text.partition("/")
    try:
        limit = int(requests), float(window or "1")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N/WINDOW, e.g. 10/1, not {text!r}") from None
    return limit


def _workload(text: str) -> str:
    if text not in WORKLOADS and text not in ROUTE_WORKLOADS:
        raise argparse.ArgumentTypeError(f"unknown workload {text!r}")
    return text


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an imitation of the octopusx video gateway on this machine.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add("--port", type=int, default=8000, help="gateway port, 0 for any (default: %(default)s)")
    add("--api-key", default="sim-key", help="key to accept, '' for any (default: %(default)s)")
    add("--seed", type=int, help="seed durations, outcomes and ids")
    add(
        "--duration",
        nargs=2,
        type=float,
        default=(1.0, 3.0),
        metavar=("MIN", "MAX"),
        help="seconds a task takes, drawn uniformly (default: 1 3)",
    )
    add("--failure-rate", type=float, default=0.0, help="fraction of tasks that fail")
    add("--refresh", type=float, default=0.0, help="gateway state refresh period, seconds")
    add("--unknown-for", type=float, default=0.0, help='seconds a new task reports "unknown"')
    add("--rate-limit", type=_rate_limit, metavar="N/WINDOW", help="requests per window per key")
    add("--retry-after", type=float, help="send Retry-After with 429s, seconds")
    add("--url-ttl", type=float, help="seconds a result URL stays valid")
    bases = ", ".join(name for name in (*WORKLOADS, *ROUTE_WORKLOADS) if "+" not in name)
    add(
        "--workload",
        type=_workload,
        metavar="NAME",
        help=f"a real-world workload: {bases}, optionally with +{', +'.join(CONDITIONS)} "
        "(in place of --duration, --failure-rate, --refresh and --unknown-for)",
    )
    add(
        "--time-scale",
        type=_positive,
        default=1.0,
        metavar="X",
        help="divide every duration by X, so minutes run in seconds (default: 1)",
    )
    add("--poll-after-ms", type=int, help="send openai-poll-after-ms on GET /v1/videos/{id}")
    add(
        "--native-shape",
        choices=("wrapped", "plain"),
        help="the native route's answers for every model (default: plain for Seedance, "
        "wrapped for the others)",
    )
    add(
        "--result-url",
        choices=("cdn", "proxy", "path"),
        default="cdn",
        help="result URLs on the CDN, the gateway's own /v1/videos/{id}/content, or that path "
        "(default: %(default)s)",
    )
    return parser


async def _serve(simulator: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still interrupts
            loop.add_signal_handler(signum, stop.set)
    async with simulator:
        print(
            f"octovid simulator listening on {simulator.url} (api key: {simulator.api_key})",
            flush=True,
        )
        if simulator.workload is not None:
            print(f"octovid simulator running {simulator.describe()}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None, *, prog: str = "python -m octovid.testing") -> int:
    """Run the simulator from the command line until SIGINT or SIGTERM; return the exit code."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.workload is not None:
        given = [
            flag
            for flag, value, default in (
                ("--duration", tuple(args.duration), (1.0, 3.0)),
                ("--failure-rate", args.failure_rate, 0.0),
                ("--refresh", args.refresh, 0.0),
                ("--unknown-for", args.unknown_for, 0.0),
            )
            if value != default
        ]
        if given:
            parser.error(f"--workload draws its own tasks: drop {', '.join(given)}")
    try:
        simulator = Simulator(
            api_key=args.api_key or None,
            host=args.host,
            port=args.port,
            seed=args.seed,
            duration=tuple(args.duration),
            failure_rate=args.failure_rate,
            refresh=args.refresh,
            unknown_for=args.unknown_for,
            rate_limit=args.rate_limit,
            retry_after=args.retry_after,
            url_ttl=args.url_ttl,
            workload=args.workload,
            time_scale=args.time_scale,
            poll_after_ms=args.poll_after_ms,
            native_shape=args.native_shape,
            result_url=args.result_url,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(simulator))
    except KeyboardInterrupt:  # where no signal handler could be installed
        pass
    except OSError as exc:  # e.g. the port is taken
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    return 0
