"""CPU per request with and without an ``on_event`` hook (and, optionally, another source tree).

Usage: ``python benchmarks/events_overhead.py [--rounds 9] [--requests 3000] [--baseline DIR]``.
The simulator runs in a process of its own; each round runs ``Client.get`` ``--requests``
times, 50 at once, in a fresh process per configuration, and reports the client process's CPU
time per request. ``--baseline DIR`` adds a run of the octovid found in DIR (e.g. a checkout
of main) with no hook. Prints the median, minimum and maximum of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

import octovid


async def _measure(url: str, requests: int, hook: bool) -> float:
    options = {"on_event": lambda event: None} if hook else {}
    async with octovid.Client(api_key="sim-key", base_url=url, rate_limit=1e6,
                              max_concurrency=64, **options) as client:
        task = await client.create(octovid.GrokRequest("x"))
        for _ in range(200):  # warm up: connections, caches
            await client.get(task.id)
        cpu = time.process_time()
        for _ in range(requests // 50):
            await asyncio.gather(*(client.get(task.id) for _ in range(50)))
        return (time.process_time() - cpu) / requests * 1e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--baseline", help="another source tree to measure, without a hook")
    parser.add_argument("--child", nargs=2, metavar=("URL", "HOOK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, hook = args.child
        print(f"{asyncio.run(_measure(url, args.requests, hook == '1')):.1f}")
        return
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "octovid.testing", "--port", str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        server.stdout.readline()  # listening
        url = f"http://127.0.0.1:{port}"
        configs = [("no hook", "0", None), ("no-op hook", "1", None)]
        if args.baseline:
            configs.insert(0, (f"{args.baseline}, no hook", "0", args.baseline))
        figures: dict[str, list[float]] = {name: [] for name, _, _ in configs}
        for _ in range(args.rounds):
            for name, hook, tree in configs:
                env = dict(os.environ)
                if tree:
                    env["PYTHONPATH"] = tree
                out = subprocess.run(
                    [sys.executable, __file__, "--requests", str(args.requests),
                     "--child", url, hook], env=env, capture_output=True, text=True, check=True,
                ).stdout
                figures[name].append(float(out))
        for name, values in figures.items():
            print(f"{name}: median {statistics.median(values):.0f} us/request "
                  f"(min {min(values):.0f}, max {max(values):.0f}, {len(values)} rounds)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
