"""Every route end to end against the simulator: create, watch, download, and resume.

Each family is created on its own route, watched on the route it was created on, and its video
downloaded from the result URL or the gateway's content route.
"""

from __future__ import annotations

import struct
import zlib

import pytest

import octovid
from octovid import Route, Status
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.2, max_interval=0.5, deadline=30, refresh=0.0)


def png(width: int = 64, height: int = 36) -> bytes:
    """A small, valid PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


REQUESTS = {
    "unified-sora": octovid.SoraRequest("a paper boat"),
    "openai-sora": octovid.SoraVideosRequest("a paper boat", seconds="8", size="720x1280"),
    "openai-veo": octovid.VeoVideosRequest("a red fox", seconds="8", size="1280x720"),
    "openai-kling": octovid.KlingRequest("a lantern", model="kling-v2-1"),
    "native-seedance": octovid.SeedanceRequest("a dancer"),
}


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_each_route_creates_watches_and_downloads(tmp_path, name):
    """A task is created on its family's route, polled there only, and its video saved."""
    request = REQUESTS[name]
    async with Simulator(duration=(0.3, 0.6), seed=2) as sim, octovid.Client(
        sim.api_key, sim.url, poll=FAST
    ) as client:
        task = await client.generate(request)
        path = await client.download(task, tmp_path / "out/")
        simulated = sim.tasks[task.id]
    assert task.status is Status.COMPLETED and task.route is request.route
    assert simulated.route is not None
    polled = {r.route for r in sim.requests if r.task_id == task.id and r.route.endswith("query")}
    expected = {Route.UNIFIED: {"query"}, Route.OPENAI: {"videos_query"},
                Route.NATIVE: {"native_query"}}[request.route]
    assert polled == expected
    assert path.stat().st_size > 0


async def test_a_remix_is_created_on_its_route_and_watched_on_the_unified_one():
    """Grok's remix goes to /v1/video/remix with the source id; it is queried as a unified task."""
    async with Simulator(duration=(0.3, 0.5), seed=3) as sim, octovid.Client(
        sim.api_key, sim.url, poll=FAST
    ) as client:
        source = await client.generate(octovid.GrokRequest("a cat"))
        remix = await client.generate(octovid.RemixRequest(source.id, "the same cat, at night"))
    routes = [r.route for r in sim.requests if r.status == 200]
    assert "remix" in routes
    assert remix.status is Status.COMPLETED and remix.id != source.id
    assert {r.route for r in sim.requests if r.task_id == remix.id and "query" in r.route} == {
        "query"}


async def test_a_local_reference_image_goes_as_a_file_part():
    """A local input_reference is uploaded as multipart; the gateway sees its type and size."""
    image = png(720, 1280)
    request = octovid.SoraVideosRequest("a corgi", seconds="8", size="720x1280",
                                        input_reference=image)
    async with Simulator(duration=(0.2, 0.3)) as sim, octovid.Client(
        sim.api_key, sim.url, poll=FAST
    ) as client:
        task = await client.create(request)
        body = sim.tasks[task.id].body
    assert body["input_reference"]["content_type"] == "image/png"
    assert body["input_reference"]["size"] == len(image)


async def test_a_journaled_task_is_resumed_on_its_route(tmp_path):
    """A keyed OpenAI-format task created by one run is watched on that route by the next."""
    path = tmp_path / "j.db"
    request = octovid.KlingRequest("a lantern", model="kling-v2-1")
    async with Simulator(duration=(1.0, 1.0)) as sim:
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            created = await client.submit(request, key="k").created()
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            task = await client.submit(request, key="k")
        queries = {r.route for r in sim.requests if "query" in r.route}
    assert task.id == created.id and task.route is Route.OPENAI
    assert queries == {"videos_query"}
    assert list(sim.creates_per_body().values()) == [1]
