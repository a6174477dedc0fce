"""Every route end to end against the simulator: create, watch, download, and resume.

Each family is created on its own route, watched on the route it was created on, and its video
downloaded from the result URL or the gateway's content route.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import struct
import sys
import zlib

import pytest

import octovid
from octovid import Route, Status
from octovid._requests import _FAMILIES, journal_payload
from octovid.testing import Simulator
from octovid.testing._media import sample_video

VIDEO = sample_video()
FAST = octovid.PollPolicy(initial=0.2, max_interval=0.5, deadline=30, refresh=0.0)


def png(width: int = 64, height: int = 36, shade: int = 0x80) -> bytes:
    """A small, valid PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes((shade, 0x40, 0x20)) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


REQUESTS = {
    "unified-sora": octovid.SoraRequest("a paper boat"),
    "openai-sora": octovid.SoraVideosRequest("a paper boat", seconds="8", size="720x1280"),
    "openai-veo": octovid.VeoVideosRequest("a red fox", seconds="8", size="1280x720"),
    "openai-kling": octovid.KlingRequest("a lantern", model="kling-v2-1"),
    "native-seedance": octovid.SeedanceRequest("a dancer"),
}


# A model of each family, and every route each family is served on (PROTOCOL.md section 1).
MODELS = {"veo": "veo3.1-fast", "sora": "sora-2", "grok": "grok-video-3", "vidu": "viduq2",
          "jimeng": "jimeng-video-3.0", "kling": "kling-v2-1",
          "seedance": "doubao-seedance-1-0-pro"}
SERVED = [(family.prefixes[0], route) for family in _FAMILIES for route in family.routes]
QUERY_ROUTE = {Route.UNIFIED: "query", Route.OPENAI: "videos_query", Route.NATIVE: "native_query"}


def served(family: str, route: Route) -> octovid.Request:
    """The request a batch line of ``family``'s model on ``route`` becomes."""
    return octovid.request_from_dict(
        {"model": MODELS[family], "prompt": f"a lighthouse, by {family}", "route": route.value})


def test_every_family_is_served_on_a_route_of_the_matrix():
    """The matrix below covers all seven families and all three routes."""
    assert {family for family, _ in SERVED} == set(MODELS)
    assert {route for _, route in SERVED} == set(Route)


@pytest.mark.parametrize(("family", "route"), SERVED, ids=[f"{f}-{r.value}" for f, r in SERVED])
async def test_each_family_on_each_route_creates_watches_and_downloads(tmp_path, family, route):
    """Each family on each of its routes: created there, polled there only, its video saved."""
    request = served(family, route)
    async with Simulator(duration=(0.2, 0.4), seed=5) as sim, octovid.Client(
        sim.api_key, sim.url, poll=FAST
    ) as client:
        task = await client.generate(request)
        path = await client.download(task, tmp_path / "out/")
    assert request.route is route and task.route is route
    assert task.status is Status.COMPLETED
    polled = {r.route for r in sim.requests if r.task_id == task.id and r.route.endswith("query")}
    assert polled == {QUERY_ROUTE[route]}
    assert path.read_bytes() == VIDEO


_CRASHING_RUN = """
import asyncio, json, os, signal, sys
import octovid

async def main():
    url, key, journal, lines = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    poll = octovid.PollPolicy(initial=30, max_interval=30, deadline=600)
    async with octovid.Client(key, url, poll=poll, journal=journal) as client:
        jobs = [client.submit(octovid.request_from_dict(line), key=f"line-{n}")
                for n, line in enumerate(lines)]
        await asyncio.gather(*(job.created() for job in jobs))
        os.kill(os.getpid(), signal.SIGKILL)  # a crash: no close, no flush

asyncio.run(main())
"""


async def test_every_family_and_route_resumes_after_a_crash(tmp_path):
    """Tasks of every family and route created by a run killed with SIGKILL right after their
    creates answered are found in the journal, watched on their routes and downloaded by the
    next run, and none is created twice."""
    lines = [{"model": MODELS[family], "prompt": f"a lighthouse, by {family}",
              "route": route.value} for family, route in SERVED]
    journal = tmp_path / "journal.db"
    async with Simulator(duration=(1.0, 1.5), seed=6) as sim:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CRASHING_RUN, sim.url, sim.api_key, str(journal),
            json.dumps(lines))
        assert await child.wait() == -9
        created = {r.task_id for r in sim.requests if r.method == "POST" and r.status == 200}
        assert len(created) == len(lines)
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=journal) as client:
            jobs = [client.submit(octovid.request_from_dict(line), key=f"line-{n}")
                    for n, line in enumerate(lines)]
            tasks = await asyncio.gather(*jobs)
            paths = [await client.download(task, tmp_path / "out/") for task in tasks]
        creates = [r for r in sim.requests if r.method == "POST"]
    assert {task.id for task in tasks} == created
    assert len(creates) == len(lines), "a crashed run's task was created again"
    for (family, route), task, path in zip(SERVED, tasks, paths, strict=True):
        assert task.route is route, (family, route)
        assert task.status is Status.COMPLETED, (family, route)
        polled = {r.route for r in sim.requests if r.task_id == task.id and "query" in r.route}
        assert polled == {QUERY_ROUTE[route]}, (family, route)
        assert path.read_bytes() == VIDEO


def test_the_journal_form_of_a_unified_request_is_its_body():
    """A unified request without local images is journaled as its exact body, as before."""
    request = octovid.SoraRequest("a paper boat", images=["https://example.com/a.png"])
    assert journal_payload(request) == request.to_payload()


def test_the_journal_form_names_the_route_and_fingerprints_local_images():
    """A local image is journaled as its type and sha256 (not its bytes), with the route."""
    image = png(720, 1280)
    uploaded = octovid.SoraVideosRequest("a corgi", seconds="8", size="720x1280",
                                         input_reference=image)
    inline = octovid.VideoRequest("viduq2", "a corgi", images=[image], route="openai")
    other = octovid.SoraVideosRequest("a corgi", seconds="8", size="720x1280",
                                      input_reference=png(720, 1280, shade=0x81))
    form = journal_payload(uploaded)
    assert form["route"] == "openai"
    assert form["files"]["input_reference"].startswith("image/png;sha256,")
    assert journal_payload(inline)["images"][0].startswith("image/png;sha256,")
    assert form != journal_payload(other)
    assert len(json.dumps(journal_payload(inline))) < 300 < len(image)


async def test_a_key_reused_with_another_local_image_is_refused(tmp_path):
    """The journal tells two uploads of different images apart: the second is not resumed as
    the first, and it stores no image bytes."""
    path = tmp_path / "j.db"
    first = octovid.SoraVideosRequest("a corgi", seconds="8", size="720x1280",
                                      input_reference=png(720, 1280))
    second = octovid.SoraVideosRequest("a corgi", seconds="8", size="720x1280",
                                       input_reference=png(720, 1280, shade=0x81))
    async with Simulator(duration=(0.2, 0.3)) as sim, octovid.Client(
        sim.api_key, sim.url, poll=FAST, journal=path
    ) as client:
        await client.submit(first, key="k").created()
        with pytest.raises(octovid.JournalError, match="different request"):
            await client.submit(second, key="k")
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT payload FROM jobs WHERE key = 'k'").fetchone()
    assert len(stored) < 400


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
