"""The examples run: the aiohttp app against the simulator, under concurrent requests."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import octovid
from octovid.testing import Simulator

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_aiohttp_app_answers_many_concurrent_requests_and_closes_its_client():
    """Many concurrent creates, status checks and waits are all answered; shutdown closes."""
    example = load("aiohttp_app")
    async with Simulator(duration=(0.5, 1.5), failure_rate=0.2, seed=8) as sim:
        app = example.make_app(
            api_key=sim.api_key, base_url=sim.url, rate_limit=100,
            poll=octovid.PollPolicy(initial=0.2, max_interval=0.5),
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(base) as http:

                async def call(method: str, path: str, **kwargs) -> tuple[int, dict]:
                    async with http.request(method, path, **kwargs) as response:
                        return response.status, await response.json()

                created = await asyncio.gather(*(
                    call("POST", "/videos", json={"model": "sora-2", "prompt": f"clip {i}"})
                    for i in range(20)
                ))
                assert {status for status, _ in created} == {202}
                ids = [body["id"] for _, body in created]
                # 3 waits per task at once, plus status checks while they wait
                waits = [call("GET", f"/videos/{i}/wait?timeout=10") for i in ids * 3]
                checks = [call("GET", f"/videos/{i}") for i in ids]
                answers = await asyncio.gather(*waits, *checks)
                bad = await asyncio.gather(
                    call("POST", "/videos", json={"model": "sora-2", "prompt": "x",
                                                  "duration": 7}),
                    call("GET", "/videos/nope"),
                    call("GET", f"/videos/{ids[0]}/wait?timeout=-1"),
                )
        finally:
            client = app[example.CLIENT]
            await runner.cleanup()
    waited = answers[:60]
    assert all(status == 200 for status, _ in waited)
    assert {body["status"] for _, body in waited} <= {"completed", "failed"}
    assert all(status == 200 for status, _ in answers[60:])
    assert [status for status, _ in bad] == [400, 404, 400]
    assert bad[0][1]["field"] == "duration"
    assert client.stats.pending == 0
    with pytest.raises(RuntimeError, match="closed"):
        await client.get(ids[0])
