"""The examples run against the simulator: the aiohttp and FastAPI apps, Prometheus metrics."""

from __future__ import annotations

import asyncio
import importlib.util
import json
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


async def test_aiohttp_wait_answers_a_finished_task_at_once_though_its_create_still_watches():
    """/wait of a task that ended answers 200 with it, not 202, while the app's own job of
    that task has its next poll far away (the default schedule)."""
    example = load("aiohttp_app")
    async with Simulator(duration=(0.1, 0.2)) as sim:
        app = example.make_app(api_key=sim.api_key, base_url=sim.url)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession(base) as http:
                async with http.post("/videos", json={"model": "sora-2", "prompt": "x"}) as r:
                    created = await r.json()
                await asyncio.sleep(0.5)  # finished on the gateway; the app polls in 15 s
                async with http.get(f"/videos/{created['id']}/wait?timeout=2") as r:
                    status, body = r.status, await r.json()
        finally:
            await runner.cleanup()
    assert created["status"] == "queued"
    assert (status, body["status"]) == (200, "completed")
    assert body["video_url"]


# -- FastAPI ----------------------------------------------------------------------------------

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.3, refresh=0.0)


def sse_events(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a text/event-stream body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_fastapi_app_submits_reports_waits_and_streams_against_the_simulator():
    """Through FastAPI's test client: 202 on submit, status, a wait that ends (200) or times
    out (202), SSE updates ending in 'completed', 400/404 for bad input; lifespan closes."""
    from fastapi.testclient import TestClient

    example = load("fastapi_app")
    with Simulator(duration=(0.3, 0.6), seed=2).run_in_thread() as sim:
        app = example.make_app(api_key=sim.api_key, base_url=sim.url, rate_limit=50, poll=FAST)
        with TestClient(app) as http:
            created = http.post("/videos", json={"model": "grok-video-3", "prompt": "a cat"})
            assert created.status_code == 202
            task_id = created.json()["id"]
            status = http.get(f"/videos/{task_id}")
            with http.stream("GET", f"/videos/{task_id}/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = sse_events(stream.read().decode())
            waited = http.get(f"/videos/{task_id}/wait", params={"timeout": 5})
            stuck = http.post("/videos", json={"model": "sora-2", "prompt": "stuck"}).json()
            sim.stall(stuck["id"])
            timed_out = http.get(f"/videos/{stuck['id']}/wait", params={"timeout": 0.5})
            late = sse_events(http.get(f"/videos/{stuck['id']}/events",
                                       params={"timeout": 0.5}).text)
            bad = http.post("/videos", json={"model": "sora-2", "prompt": "x", "duration": 7})
            missing = http.get("/videos/sora-2:task_nope/wait")
            bad_route = http.get(f"/videos/{task_id}", params={"route": "nowhere"})
            negative = http.get(f"/videos/{task_id}/wait", params={"timeout": -1})
            client = app.state.octovid
        assert status.status_code == 200 and status.json()["id"] == task_id
        assert [name for name, _ in events][-1] == "completed"
        assert {name for name, _ in events[:-1]} == {"update"}
        assert events[-1][1]["video_url"] and events[-1][1]["progress"] == 100
        assert (waited.status_code, waited.json()["status"]) == (200, "completed")
        assert timed_out.status_code == 202
        assert timed_out.json()["status"] in {"queued", "processing"}
        assert [name for name, _ in late] == ["update", "timeout"]
        assert (bad.status_code, bad.json()["field"]) == (400, "duration")
        assert missing.status_code == 404
        assert bad_route.status_code == 400 and "route" in bad_route.json()["detail"]
        assert negative.status_code == 422
        assert client.stats.pending == 0
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(client.get(task_id))


# -- Prometheus -------------------------------------------------------------------------------


async def test_prometheus_metrics_count_what_the_client_counted(launch):
    """Requests, answers by status, 429s, the pause and job outcomes match the client's stats."""
    from prometheus_client import CollectorRegistry

    example = load("prometheus_metrics")
    registry = CollectorRegistry()
    metrics = example.OctovidMetrics(registry)
    sim = await launch(duration=(0.1, 0.2))
    sim.inject("create", status=429, retry_after=1.0)
    with octovid.testing.instant_retries():
        async with octovid.Client(api_key=sim.api_key, base_url=sim.url, rate_limit=50,
                                  poll=FAST, on_event=metrics) as client:
            jobs = client.submit_many([octovid.GrokRequest(f"cat {i}") for i in range(3)])
            jobs.append(client.submit(octovid.VideoRequest("no-such-model", "x")))
            await octovid.gather(jobs, return_exceptions=True)
            await asyncio.sleep(0)
            stats = client.stats

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    sent = sum(value("octovid_requests_total", kind=k) for k in ("create", "query"))
    assert sent == stats.requests
    assert value("octovid_answers_total", kind="create", status="429") == 1
    assert value("octovid_rate_limited_total", kind="create") == stats.rate_limited == 1
    assert value("octovid_pauses_total") == 1
    assert 0.5 < value("octovid_paused_seconds_total") <= 1.0
    assert value("octovid_jobs_total", outcome="completed", model="grok-video-3") == 3
    assert value("octovid_jobs_total", outcome="error", model="no-such-model") == 1
    assert value("octovid_job_seconds_count", outcome="completed") == 3
    assert value("octovid_requests_in_flight", kind="query") == 0
    assert value("octovid_request_seconds_count", kind="query") == stats.polls


def test_prometheus_example_runs_from_the_command_line(monkeypatch, capsys):
    """`python examples/prometheus_metrics.py --jobs 2` generates two videos, prints metrics."""
    example = load("prometheus_metrics")
    with Simulator(duration=(0.1, 0.2)).run_in_thread() as sim:
        monkeypatch.setenv("OCTOVID_BASE_URL", sim.url)
        monkeypatch.setenv("OCTOVID_API_KEY", sim.api_key)
        example.main(["--jobs", "2", "--port", "0"])
    out = capsys.readouterr().out
    assert 'octovid_jobs_total{model="veo3.1-fast",outcome="completed"} 2.0' in out
    assert out.rstrip().endswith("# 2 of 2 videos generated")
