"""octovid.testing.Simulator's routes beside the unified one, over real HTTP.

The OpenAI-format route's families (Kling, Seedance and the others), the native route's two
shapes, the Grok remix, /content and the result URLs for every route, the same faults and
limits on every route, and the workloads of those routes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.resources
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
import pytest

from octovid.testing import (
    EXTRA_JOBS,
    JOBS,
    ROUTE_WORKLOADS,
    WORKLOADS,
    Simulator,
    Workload,
    kind_of,
)

AUTH = {"Authorization": "Bearer sim-key"}
SAMPLE = importlib.resources.files("octovid.testing").joinpath("sample.mp4").read_bytes()
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
TIMEOUT_ZH = "任务超时（1440分钟）"  # noqa: RUF001 - as the gateway writes it, fullwidth brackets
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
GROK = {"model": "grok-video-3", "prompt": "p"}
KLING = {"model": "kling-v2-1", "prompt": "p"}
SEEDANCE = {"model": "doubao-seedance-1-0-pro", "prompt": "p"}
SEEDANCE_2 = {"model": "seedance-2", "prompt": "p"}

Launch = Callable[..., Awaitable[Simulator]]


@attrs.frozen
class Reply:
    status: int  # 0: the connection was closed without an answer
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def sim(launch: Launch) -> Simulator:
    """A simulator whose tasks take 10 s: a test finishes them with sim.finish."""
    return await launch(duration=(10.0, 10.0), seed=1)


async def fetch(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] = AUTH,
    **kwargs: Any,
) -> Reply:
    """One request; a closed connection is a Reply with status 0."""
    try:
        async with http.request(method, url, headers=headers, **kwargs) as response:
            return Reply(response.status, response.headers, await response.read())
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return Reply(0, {}, b"")


CREATE_PATHS = {
    "create": "/v1/video/create",
    "remix": "/v1/video/remix",
    "videos_create": "/v1/videos",
    "native_create": "/v1/video/generations",
}


async def post(http: aiohttp.ClientSession, sim: Simulator, path: str, body: Any) -> Any:
    reply = await fetch(http, "POST", sim.url + path, json=body)
    assert reply.status == 200, reply.body
    return reply.json()


async def get(http: aiohttp.ClientSession, sim: Simulator, path: str) -> Any:
    reply = await fetch(http, "GET", sim.url + path)
    assert reply.status == 200, reply.body
    return reply.json()


async def videos(http: aiohttp.ClientSession, sim: Simulator, body: Any) -> str:
    """Create on /v1/videos; the task id."""
    return str((await post(http, sim, "/v1/videos", body))["id"])


async def video(http: aiohttp.ClientSession, sim: Simulator, task_id: str) -> Any:
    return await get(http, sim, f"/v1/videos/{quote(task_id, safe='')}")


def data_uri(content: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(content).decode()}"


def summary(content: bytes, kind: str = "image/png") -> dict[str, Any]:
    return {
        "content_type": kind,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


# The OpenAI-format route: Kling


async def test_kling_create_has_equal_ids_and_seconds(sim, http):
    """Kling on /v1/videos: an 18-digit id equal to task_id, queued, created_at in seconds."""
    answer = await post(http, sim, "/v1/videos", {**KLING, "seconds": "5"})
    assert re.fullmatch(r"[1-9][0-9]{17}", answer["id"])
    assert answer == {
        "id": answer["id"],
        "task_id": answer["id"],
        "object": "video",
        "model": "kling-v2-1",
        "status": "queued",
        "progress": 0,
        "created_at": int(sim.tasks[answer["id"]].wall_created),
    }


async def test_kling_query_times_are_milliseconds_and_completed_at_is_copied(launch, http):
    """Kling's query: created_at and completed_at in ms, completed_at the update time early on."""
    clock = FakeClock()
    sim = await launch(clock=clock, duration=(100.0, 100.0))
    task_id = await videos(http, sim, {"model": "kling-v2-5-turbo", "prompt": "p", "seconds": 10})
    task = sim.tasks[task_id]
    clock.advance(40.0)
    running = await video(http, sim, task_id)
    assert running == {
        "id": task_id,
        "object": "video",
        "model": "kling-v2-5-turbo",
        "status": "in_progress",
        "progress": 40,
        "created_at": int(task.wall_created * 1000),
        "completed_at": int((task.wall_created + 40.0) * 1000),
        "seconds": "10",
    }
    assert running["created_at"] > 1e11
    sim.finish(task_id)
    done = await video(http, sim, task_id)
    assert (done["status"], done["progress"]) == ("completed", 100)
    assert done["metadata"]["url"].startswith(sim.cdn_url + "/v/")
    assert done["completed_at"] == int(task.wall_terminal_at * 1000)


async def test_kling_failure_has_a_stringified_integer_code(sim, http):
    """A failed Kling video: status failed, error {message, code "1301"}."""
    task_id = await videos(http, sim, KLING)
    sim.finish(task_id, fail="content policy violation")
    answer = await video(http, sim, task_id)
    assert answer["status"] == "failed"
    assert answer["error"] == {"message": "content policy violation", "code": "1301"}
    assert "metadata" not in answer


@pytest.mark.parametrize(
    "model",
    ["kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master", "kling-v2-6"],
)
def test_kling_models_are_known_by_name(model):
    """Kling's model names are a family; kling-v2 (no such model) is none."""
    assert (kind_of(model), kind_of("kling-v2"), kind_of("kling-v9-ultra")) == ("kling", None, None)


# The OpenAI-format route: Seedance and the others


async def test_seedance_video_has_coarse_progress_an_empty_error_and_copied_seconds(launch, http):
    """Seedance on /v1/videos: task_ ids, 10/50/100 progress, an empty error, completed_at in s."""
    clock = FakeClock()
    sim = await launch(clock=clock, duration=(100.0, 100.0))
    created = await post(http, sim, "/v1/videos", {**SEEDANCE, "size": "1280x720"})
    task_id = created["id"]
    assert re.fullmatch(r"task_[0-9A-Za-z]{32}", task_id)
    assert (created["task_id"], created["status"], created["model"]) == (
        task_id,
        "queued",
        "doubao-seedance-1-0-pro",
    )
    task = sim.tasks[task_id]
    seen = []
    for at in (5.0, 60.0):
        clock.now = task.created + at
        seen.append(await video(http, sim, task_id))
    assert [(a["status"], a["progress"]) for a in seen] == [("queued", 10), ("in_progress", 50)]
    assert seen[1] == {
        "id": task_id,
        "task_id": task_id,
        "object": "video",
        "model": "doubao-seedance-1-0-pro",
        "status": "in_progress",
        "progress": 50,
        "created_at": int(task.wall_created),
        "completed_at": int(task.wall_created + 60.0),
        "size": "1280x720",
        "error": {"message": "", "code": ""},
    }
    sim.finish(task_id, fail="upstream generation error")
    failed = await video(http, sim, task_id)
    assert (failed["status"], failed["progress"]) == ("failed", 100)
    assert failed["error"] == {
        "message": "upstream generation error",
        "code": "InternalServiceError",
    }


async def test_grok_jimeng_vidu_veo_on_the_videos_route(sim, http):
    """Other families on /v1/videos: converted objects; Grok's empty error, Jimeng's int code."""
    ids = {
        model: await videos(http, sim, {"model": model, "prompt": "p"})
        for model in ("grok-video-3", "jimeng-video-3.0", "viduq2-pro", "veo3.1-fast")
    }
    running = {model: await video(http, sim, task_id) for model, task_id in ids.items()}
    assert {model: answer["status"] for model, answer in running.items()} == dict.fromkeys(
        ids, "queued"
    )
    assert running["grok-video-3"]["error"] == {"message": "", "code": ""}
    assert all("error" not in running[m] for m in ("jimeng-video-3.0", "viduq2-pro", "veo3.1-fast"))
    assert all("completed_at" not in answer for answer in running.values())
    for task_id in ids.values():
        sim.finish(task_id, fail="content policy violation")
    codes = {
        model: (await video(http, sim, task_id))["error"]["code"] for model, task_id in ids.items()
    }
    assert codes == {
        "grok-video-3": "task_failed",
        "jimeng-video-3.0": 50500,
        "viduq2-pro": "task_failed",
        "veo3.1-fast": "task_failed",
    }


async def test_unknown_on_the_videos_route_is_the_gateways_word_for_not_started(launch, http):
    """Within unknown_for, converted families say unknown on /v1/videos; Sora's own says queued."""
    sim = await launch(unknown_for=60.0, duration=(100.0, 100.0))
    kling = await videos(http, sim, KLING)
    sora = await videos(http, sim, {"model": "sora-2", "prompt": "p"})
    assert (await video(http, sim, kling))["status"] == "unknown"
    assert (await video(http, sim, sora))["status"] == "queued"


async def test_kling_and_seedance_are_not_served_on_the_unified_route(sim, http):
    """The unified create answers 503 model_not_found for Kling and Seedance models."""
    for body in (KLING, SEEDANCE, SEEDANCE_2):
        reply = await fetch(http, "POST", sim.url + "/v1/video/create", json=body)
        assert (reply.status, reply.json()["error"]["code"]) == (503, "model_not_found")
    reply = await fetch(
        http, "POST", sim.url + "/v1/videos", json={"model": "kling-v2", "prompt": "p"}
    )
    assert (reply.status, reply.json()["error"]["code"]) == (503, "model_not_found")
    assert sim.tasks == {}


# The OpenAI-format route: validation and what the client sent


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("seconds", "0", "invalid_request"),
        ("seconds", "61", "invalid_request"),
        ("seconds", "4.5", "invalid_request"),
        ("seconds", "four", "invalid_request"),
        ("seconds", -4, "invalid_request"),
        ("seconds", True, "invalid_request"),
        ("size", "1280", "invalid_size"),
        ("size", "1280x0", "invalid_size"),
        ("size", "1280*720", "invalid_size"),
        ("size", "99999x720", "invalid_size"),
        ("size", "720P", "invalid_size"),
        ("size", 1280, "invalid_size"),
    ],
)
async def test_videos_create_refuses_impossible_seconds_and_sizes(launch, http, field, value, code):
    """/v1/videos answers 400 in the task shape for an impossible seconds or size; no quota."""
    sim = await launch(quota=1)
    reply = await fetch(
        http, "POST", sim.url + "/v1/videos", json={"model": "sora-2", "prompt": "p", field: value}
    )
    assert reply.status == 400
    assert reply.json() == {"code": code, "message": reply.json()["message"], "data": None}
    assert repr(value) in reply.json()["message"]
    assert sim.tasks == {}
    assert (await fetch(http, "POST", sim.url + "/v1/videos", json=KLING)).status == 200


async def test_videos_create_takes_string_or_int_seconds_and_wxh_sizes(sim, http):
    """seconds "8" or 8 and sizes like 1792x1024 are accepted and echoed as strings."""
    first = await post(
        http, sim, "/v1/videos", {"prompt": "p", "seconds": "12", "size": "1792x1024"}
    )
    second = await post(http, sim, "/v1/videos", {"prompt": "p", "seconds": 8})
    assert (first["seconds"], first["size"], second["seconds"]) == ("12", "1792x1024", "8")


async def test_json_data_uri_images_are_decoded_and_summarised(sim, http):
    """Data URIs in a JSON body are decoded; the task's body keeps their type, size and SHA-256."""
    jpeg = b"\xff\xd8\xff\xe0" + b"x" * 100
    body = {
        "model": "kling-v2-1",
        "prompt": "data: is just text in a prompt",
        "images": [data_uri(PNG), "https://example.com/b.png"],
        "input_reference": data_uri(jpeg, "image/jpeg"),
    }
    task_id = await videos(http, sim, body)
    assert sim.tasks[task_id].body == {
        "model": "kling-v2-1",
        "prompt": "data: is just text in a prompt",
        "images": [summary(PNG), "https://example.com/b.png"],
        "input_reference": summary(jpeg, "image/jpeg"),
    }
    assert list(sim.creates_per_body().values()) == [1]
    unified = await post(http, sim, "/v1/video/create", {**GROK, "images": [data_uri(PNG)]})
    assert sim.tasks[unified["id"]].body["images"] == [summary(PNG)]


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64,not*base64",
        "data:image/png;base64,",
        "data:image/png,iVBORw0KGgo=",
        "data:text/plain;base64,aGVsbG8=",
        "data:;base64,aGVsbG8=",
        "data:image/png;base64,iVBORw0KGgo",
    ],
)
@pytest.mark.parametrize("path", ["/v1/videos", "/v1/video/create", "/v1/video/generations"])
async def test_a_malformed_data_uri_is_a_400(launch, http, uri, path):
    """A data URI that is not base64 media is 400 invalid_request; no task, no quota spent."""
    sim = await launch(quota=1)
    body = {**GROK, "images": ["https://example.com/a.png", uri]}
    reply = await fetch(http, "POST", sim.url + path, json=body)
    assert (reply.status, reply.json()["code"], reply.json()["data"]) == (
        400,
        "invalid_request",
        None,
    )
    assert "images[1]" in reply.json()["message"]
    assert sim.tasks == {}
    assert (await fetch(http, "POST", sim.url + path, json=GROK)).status == 200


async def test_multipart_input_reference_is_summarised_with_a_data_uri_field(sim, http):
    """A multipart create keeps its file's name, type, size and hash; a data URI field too."""
    form = aiohttp.FormData()
    form.add_field("model", "kling-v2-master")
    form.add_field("prompt", "p")
    form.add_field("seconds", "5")
    form.add_field("input_reference", PNG, filename="first.png", content_type="image/png")
    form.add_field("image_tail", data_uri(PNG))
    reply = await fetch(http, "POST", sim.url + "/v1/videos", data=form)
    assert reply.status == 200
    assert sim.tasks[reply.json()["id"]].body == {
        "model": "kling-v2-master",
        "prompt": "p",
        "seconds": "5",
        "input_reference": {"filename": "first.png", **summary(PNG)},
        "image_tail": summary(PNG),
    }


# The native route's two shapes


async def test_seedance_2_native_create_is_a_bare_task_id_and_queries_the_plain_shape(sim, http):
    """Seedance 2 on the native route: {task_id} alone, then lower-case bare answers."""
    created = await post(http, sim, "/v1/video/generations", {**SEEDANCE_2, "size": "720x1280"})
    task_id = created["task_id"]
    assert created == {"task_id": task_id}
    assert re.fullmatch(r"cgt-\d{14}-[0-9a-z]{5}", task_id)
    path = f"/v1/video/generations/{task_id}"
    assert await get(http, sim, path) == {"task_id": task_id, "status": "queued", "format": "mp4"}
    sim.finish(task_id)
    done = await get(http, sim, path)
    assert done == {
        "task_id": task_id,
        "status": "succeeded",
        "url": done["url"],
        "format": "mp4",
        "metadata": {
            "duration": 5.0,
            "fps": 24,
            "width": 720,
            "height": 1280,
            "seed": done["metadata"]["seed"],
        },
    }
    assert done["url"].startswith(sim.cdn_url + "/v/")
    sim.finish(task_id, fail="content policy violation")
    failed = await get(http, sim, path)
    assert failed == {
        "task_id": task_id,
        "status": "failed",
        "format": "mp4",
        "error": {"code": 400, "message": "content policy violation"},
    }


async def test_native_shape_option_imposes_one_shape(launch, http):
    """native_shape="plain" or "wrapped" answers every family's native requests in that shape."""
    plain = await launch(native_shape="plain", duration=(10.0, 10.0))
    created = await post(http, plain, "/v1/video/generations", {"model": "sora-2", "prompt": "p"})
    assert created == {"task_id": created["task_id"]} and re.fullmatch(UUID, created["task_id"])
    answer = await get(http, plain, f"/v1/video/generations/{created['task_id']}")
    assert answer["status"] == "queued"
    wrapped = await launch(native_shape="wrapped", duration=(10.0, 10.0))
    created = await post(http, wrapped, "/v1/video/generations", SEEDANCE_2)
    task_id = created["data"]["task_id"]
    assert created == {"code": "success", "message": "", "data": {"task_id": task_id}}
    answer = await get(http, wrapped, f"/v1/video/generations/{task_id}")
    assert (answer["code"], answer["data"]["status"], answer["data"]["id"]) == (
        "success",
        "SUBMITTED",
        48200,
    )
    assert "native shape wrapped" in wrapped.describe()
    with pytest.raises(ValueError):
        Simulator(native_shape="bare")  # type: ignore[arg-type]


async def test_native_statuses_through_a_tasks_life(launch, http):
    """Wrapped: NOT_START, QUEUED through a queue, IN_PROGRESS, SUCCESS; plain: processing."""
    clock = FakeClock()
    workload = WORKLOADS["mixed"].with_jobs(
        "grok", patterns={"queued_then_rising": 1.0}, unknown_for=1.0, refresh=0.0
    )
    sim = await launch(workload=workload, clock=clock, seed=2)
    task_id = (await post(http, sim, "/v1/video/generations", GROK))["data"]["task_id"]
    task = sim.tasks[task_id]
    assert task.queued_for > 5.0
    words = []
    for at in (0.5, task.queued_for / 2, task.queued_for + 1.0, task.terminal_at - task.created):
        clock.now = task.created + at
        data = (await get(http, sim, f"/v1/video/generations/{task_id}"))["data"]
        words.append((data["status"], data["start_time"] > 0, data["finish_time"] > 0))
    end = {"completed": "SUCCESS", "failed": "FAILURE"}[task.outcome]
    assert [word for word, _, _ in words] == ["NOT_START", "QUEUED", "IN_PROGRESS", end]
    assert [(started, finished) for _, started, finished in words] == [
        (False, False),
        (False, False),
        (True, False),
        (True, True),
    ]
    plain = await launch(native_shape="plain", unknown_for=10.0, clock=clock)
    task_id = (await post(http, plain, "/v1/video/generations", SEEDANCE_2))["task_id"]
    assert (await get(http, plain, f"/v1/video/generations/{task_id}"))["status"] == "processing"


# Remix


async def test_remix_makes_a_new_grok_task_from_an_earlier_one(sim, http):
    """POST /v1/video/remix: a new Grok task in Grok's create shape, queried on the unified one."""
    source = await post(http, sim, "/v1/video/create", GROK)
    remix = await post(
        http, sim, "/v1/video/remix", {"task_id": source["id"], "prompt": "make it rain"}
    )
    assert re.fullmatch(f"grok:{UUID}", remix["id"])
    assert set(remix) == {"id", "status", "status_update_time", "task_id", "created_at"}
    assert (remix["status"], remix["id"] != source["id"]) == ("processing", True)
    task = sim.tasks[remix["id"]]
    assert (task.family, task.model, task.route, task.remixed_from) == (
        "grok",
        "grok-video-3",
        "remix",
        source["id"],
    )
    assert task.body == {"task_id": source["id"], "prompt": "make it rain"}
    assert (await get(http, sim, f"/v1/video/query?id={quote(remix['id'])}"))[
        "status"
    ] == "processing"
    by_bare_id = await post(
        http,
        sim,
        "/v1/video/remix",
        {"task_id": source["task_id"], "prompt": "q", "model": "grok-video-3-pro"},
    )
    assert sim.tasks[by_bare_id["id"]].model == "grok-video-3-pro"
    assert sim.tasks[by_bare_id["id"]].remixed_from == source["id"]
    assert [r.route for r in sim.requests] == ["create", "remix", "query", "remix"]
    assert [r.task_id for r in sim.requests] == [
        source["id"],
        remix["id"],
        remix["id"],
        by_bare_id["id"],
    ]


async def test_remix_errors(launch, http):
    """Remix: 400 task_not_exist for an unknown task, 400 for a non-Grok task or model."""
    sim = await launch(quota=1)
    sora = (await post(http, sim, "/v1/video/create", {"model": "sora-2", "prompt": "p"}))["id"]
    sim_grok = await launch()
    grok = (await post(http, sim_grok, "/v1/video/create", GROK))["id"]
    cases = [
        (sim, {"task_id": "grok:nope", "prompt": "p"}, "task_not_exist"),
        (sim, {"task_id": sora, "prompt": "p"}, "invalid_request"),
        (sim, {"prompt": "p"}, "invalid_request"),
        (sim_grok, {"task_id": grok, "prompt": "p", "model": "sora-2"}, "invalid_request"),
        (sim_grok, {"task_id": grok}, "invalid_request"),
    ]
    for where, body, code in cases:
        reply = await fetch(http, "POST", where.url + "/v1/video/remix", json=body)
        assert (reply.status, reply.json()["code"], reply.json()["data"]) == (400, code, None)
    assert len(sim.tasks) == len(sim_grok.tasks) == 1
    out = await fetch(
        http, "POST", sim.url + "/v1/video/remix", json={"task_id": sora, "prompt": "p"}
    )
    assert "remix is only supported for grok tasks" in out.json()["message"]


# /content and result URLs, for every route


async def test_content_serves_the_video_of_a_task_of_every_route(sim, http):
    """/v1/videos/{id}/content: 400 naming the status before the end, the bytes after, any route."""
    source = await post(http, sim, "/v1/video/create", GROK)
    ids = [
        source["id"],
        (await post(http, sim, "/v1/video/remix", {"task_id": source["id"], "prompt": "p"}))["id"],
        await videos(http, sim, KLING),
        (await post(http, sim, "/v1/video/generations", SEEDANCE_2))["task_id"],
        (await post(http, sim, "/v1/video/generations", GROK))["data"]["task_id"],
    ]
    paths = [f"/v1/videos/{quote(task_id, safe='')}/content" for task_id in ids]
    early = [await fetch(http, "GET", sim.url + path) for path in paths]
    assert {(reply.status, reply.json()["error"]["message"]) for reply in early} == {
        (400, "Task is not completed yet, current status: SUBMITTED")
    }
    for task_id in ids:
        sim.finish(task_id)
    done = [await fetch(http, "GET", sim.url + path) for path in paths]
    assert [(reply.status, reply.body) for reply in done] == [(200, SAMPLE)] * 5
    assert [r.route for r in sim.requests[-5:]] == ["content"] * 5
    assert [r.task_id for r in sim.requests[-5:]] == ids
    missing = await fetch(http, "GET", sim.url + "/v1/videos/task_nope/content")
    assert (missing.status, missing.json()["error"]["message"]) == (404, "Task not found")


async def test_content_before_start_names_not_start(launch, http):
    """/content of a task not started yet says NOT_START."""
    sim = await launch(unknown_for=60.0)
    task_id = await videos(http, sim, KLING)
    reply = await fetch(http, "GET", f"{sim.url}/v1/videos/{task_id}/content")
    assert (
        reply.json()["error"]["message"] == "Task is not completed yet, current status: NOT_START"
    )


async def test_result_url_proxy_is_the_gateways_own_content_route(launch, http):
    """result_url="proxy": every route's result URL is {gateway}/v1/videos/{id}/content."""
    sim = await launch(result_url="proxy", duration=(0.0, 0.0))
    grok = (await post(http, sim, "/v1/video/create", GROK))["id"]
    kling = await videos(http, sim, KLING)
    native = (await post(http, sim, "/v1/video/generations", GROK))["data"]["task_id"]
    plain = (await post(http, sim, "/v1/video/generations", SEEDANCE_2))["task_id"]
    urls = [
        (await get(http, sim, f"/v1/video/query?id={quote(grok)}"))["video_url"],
        (await video(http, sim, kling))["metadata"]["url"],
        (await get(http, sim, f"/v1/video/generations/{native}"))["data"]["result_url"],
        (await get(http, sim, f"/v1/video/generations/{plain}"))["url"],
    ]
    assert urls == [
        f"{sim.url}/v1/videos/{quote(task_id, safe='')}/content"
        for task_id in (grok, kling, native, plain)
    ]
    assert (await fetch(http, "GET", urls[0])).body == SAMPLE
    assert (await fetch(http, "GET", urls[0], headers={})).status == 401  # it needs the key
    assert "result URLs grok proxy" in sim.describe()


async def test_result_url_per_family(launch, http):
    """result_url={"veo": "path"}: Veo's results are the gateway path, the others the CDN's."""
    sim = await launch(result_url={"veo": "path"}, duration=(0.0, 0.0))
    veo = (await post(http, sim, "/v1/video/create", {"model": "veo3.1", "prompt": "p"}))["id"]
    sora = (await post(http, sim, "/v1/video/create", {"model": "sora-2", "prompt": "p"}))["id"]
    veo_url = (await get(http, sim, f"/v1/video/query?id={veo}"))["video_url"]
    sora_url = (await get(http, sim, f"/v1/video/query?id={quote(sora)}"))["video_url"]
    assert veo_url == f"/v1/videos/{veo}/content"
    assert sora_url.startswith(sim.cdn_url + "/v/")
    for bad in ("s3", {"kling2": "cdn"}, {"veo": "s3"}):
        with pytest.raises(ValueError):
            Simulator(result_url=bad)  # type: ignore[arg-type]


async def test_reason_in_url_puts_the_failure_text_in_the_result_slot(launch, http):
    """reason_in_url: a failed task's URL slot holds its reason, the gateway's timeout text."""
    sim = await launch(reason_in_url=1.0, failure_rate=1.0, duration=(0.0, 0.0), seed=3)
    unified = {}
    for model in ("veo3.1", "sora-2", "grok-video-3", "viduq2-pro", "jimeng-video-3.0"):
        created = await post(http, sim, "/v1/video/create", {"model": model, "prompt": "p"})
        unified[model] = await get(
            http, sim, f"/v1/video/query?id={quote(created.get('id') or created['task_id'])}"
        )
    assert [unified[m]["video_url"] for m in ("veo3.1", "sora-2", "grok-video-3")] == [
        TIMEOUT_ZH
    ] * 3
    assert unified["viduq2-pro"]["url"] == TIMEOUT_ZH
    assert unified["jimeng-video-3.0"]["data"] == {"fail_reason": TIMEOUT_ZH, "url": TIMEOUT_ZH}
    assert unified["grok-video-3"]["fail_reason"] == TIMEOUT_ZH
    kling = await video(http, sim, await videos(http, sim, KLING))
    assert (kling["metadata"], kling["error"]["message"]) == ({"url": TIMEOUT_ZH}, TIMEOUT_ZH)
    native = (await post(http, sim, "/v1/video/generations", GROK))["data"]["task_id"]
    data = (await get(http, sim, f"/v1/video/generations/{native}"))["data"]
    assert (data["status"], data["result_url"], data["fail_reason"], data["data"]) == (
        "FAILURE",
        TIMEOUT_ZH,
        TIMEOUT_ZH,
        {},
    )
    plain = (await post(http, sim, "/v1/video/generations", SEEDANCE_2))["task_id"]
    assert (await get(http, sim, f"/v1/video/generations/{plain}"))["url"] == TIMEOUT_ZH
    sim.finish(plain, fail="content policy violation")
    assert (await get(http, sim, f"/v1/video/generations/{plain}"))[
        "url"
    ] == "content policy violation"


async def test_reason_in_url_share_and_its_absence(launch, http):
    """reason_in_url is that share of tasks; without it a failed task's URL slot is empty."""
    sim = await launch(reason_in_url=0.3, failure_rate=1.0, duration=(0.0, 0.0), seed=4)
    for _ in range(300):
        await post(http, sim, "/v1/video/create", GROK)
    flagged = sum(task.reason_in_url for task in sim.tasks.values())
    assert 60 <= flagged <= 120
    assert all((task.reason == TIMEOUT_ZH) == task.reason_in_url for task in sim.tasks.values())
    assert sim.conditions.describe() == "reason_in_url=0.3"
    plain = await launch(failure_rate=1.0, duration=(0.0, 0.0))
    task_id = (await post(http, plain, "/v1/video/create", GROK))["id"]
    assert (await get(http, plain, f"/v1/video/query?id={task_id}"))["video_url"] is None


# The same faults and limits on every route


async def source_for(http: aiohttp.ClientSession, sim: Simulator) -> str:
    """A Grok task to remix, created past the random conditions (a scripted no-op fault)."""
    sim.inject("create")
    return str((await post(http, sim, "/v1/video/create", GROK))["id"])


def body_for(route: str, source: str | None) -> dict[str, Any]:
    return {"task_id": source, "prompt": "p"} if route == "remix" else GROK


@pytest.mark.parametrize("route", list(CREATE_PATHS))
async def test_drops_on_every_create_route(sim, http, route, caplog):
    """drop="before" creates nothing, drop="after" creates the task: on every create route."""
    source = await source_for(http, sim) if route == "remix" else None
    before = len(sim.tasks)
    sim.inject(route, drop="before")  # type: ignore[arg-type]
    sim.inject(route, drop="after")  # type: ignore[arg-type]
    url = sim.url + CREATE_PATHS[route]
    replies = [await fetch(http, "POST", url, json=body_for(route, source)) for _ in range(3)]
    assert [reply.status for reply in replies] == [0, 0, 200]
    records = [record for record in sim.requests if record.route == route]
    assert [record.status for record in records] == [0, 0, 200]
    assert records[0].task_id in (None, source)
    assert records[1].task_id in sim.tasks and sim.tasks[records[1].task_id].route == route
    assert len(sim.tasks) == before + 2
    assert sim.faults_served["injected"] == 2 + (route == "remix")


@pytest.mark.parametrize("route", list(CREATE_PATHS))
async def test_slow_creates_are_accepted_first_on_every_create_route(launch, http, route):
    """A slow create (slow_rate) is accepted before its delay, on every create route."""
    sim = await launch(slow_rate=1.0, slow_delay=12.0, time_scale=40.0)
    source = await source_for(http, sim) if route == "remix" else None
    before = len(sim.tasks)
    with pytest.raises(TimeoutError):
        async with http.post(
            sim.url + CREATE_PATHS[route],
            json=body_for(route, source),
            headers=AUTH,
            timeout=aiohttp.ClientTimeout(total=0.1),
        ):
            pass
    assert len(sim.tasks) == before + 1
    await asyncio.sleep(0.3)
    assert sim.faults_served["slow"] == 1


@pytest.mark.parametrize(
    ("condition", "statuses", "served"),
    [
        ({"sporadic_429": 1.0}, {429}, "sporadic_429"),
        ({"error_rate": 1.0}, {502, 503}, "error"),
        ({"drop_before_rate": 1.0}, {0}, "drop_before"),
        ({"drop_after_rate": 1.0}, {0}, "drop_after"),
    ],
)
async def test_random_conditions_on_every_create_route(launch, http, condition, statuses, served):
    """Sporadic 429s, 5xx and drops spoil creates on every create route alike."""
    sim = await launch(seed=5, **condition)
    source = await source_for(http, sim)
    seen = set()
    for route, path in CREATE_PATHS.items():
        for _ in range(5):
            seen.add(
                (await fetch(http, "POST", sim.url + path, json=body_for(route, source))).status
            )
    assert seen == statuses
    assert sim.faults_served[served] == 20
    created = {task.route for task in sim.tasks.values() if task.id != source}
    assert created == (set(CREATE_PATHS) if served == "drop_after" else set())


@pytest.mark.parametrize(
    ("condition", "statuses", "served"),
    [({"sporadic_429": 1.0}, {429}, "sporadic_429"), ({"error_rate": 1.0}, {502, 503}, "error")],
)
async def test_random_conditions_on_every_query_route(launch, http, condition, statuses, served):
    """Sporadic 429s and 5xx spoil queries of the unified, OpenAI-format and native routes."""
    sim = await launch(seed=6, **condition)
    paths = ["/v1/video/query?id=x", "/v1/videos/x", "/v1/video/generations/x"]
    replies = [await fetch(http, "GET", sim.url + path) for path in paths for _ in range(5)]
    assert {reply.status for reply in replies} == statuses
    assert sim.faults_served[served] == 15
    assert [r.route for r in sim.requests[::5]] == ["query", "videos_query", "native_query"]


def every_route(source: str) -> list[tuple[str, str, Any]]:
    """A request of each route beside the unified ones, about the Grok task ``source``."""
    return [
        ("POST", "/v1/video/remix", {"task_id": source, "prompt": "p"}),
        ("POST", "/v1/videos", KLING),
        ("GET", "/v1/videos/x", None),
        ("POST", "/v1/video/generations", SEEDANCE_2),
        ("GET", "/v1/video/generations/x", None),
        ("GET", f"/v1/videos/{source}/content", None),
    ]


async def test_rate_limit_and_storms_on_every_route(launch, http):
    """The key's limit and a storm refuse remix, /v1/videos, native and /content alike."""
    clock = FakeClock()
    sim = await launch(clock=clock, rate_limit=(2, 10.0))
    source = (await post(http, sim, "/v1/video/create", GROK))["id"]
    limited = []
    for method, path, body in every_route(source):
        clock.advance(10.0)
        await fetch(http, "GET", sim.url + "/v1/video/query?id=x")  # one of the two
        first = await fetch(http, method, sim.url + path, json=body)
        second = await fetch(http, method, sim.url + path, json=body)
        limited.append((first.status, second.status))
    # /content serves the source, done by then: the limit counts it like any other request
    assert limited == [(200, 429), (200, 429), (400, 429), (200, 429), (400, 429), (200, 429)]
    assert sim.faults_served["limit_429"] == 6
    stormy = await launch()
    source = (await post(http, stormy, "/v1/video/create", GROK))["id"]
    stormy.storm(10.0)
    stormed = [
        (await fetch(http, m, stormy.url + p, json=b)).status for m, p, b in every_route(source)
    ]
    assert stormed == [429] * 6
    assert stormy.faults_served["storm_429"] == 6
    assert len(stormy.tasks) == 1


async def test_not_found_for_hides_a_new_task_from_remix_too(launch, http):
    """Within not_found_for, remixing a fresh Grok task answers 400 task_not_exist."""
    clock = FakeClock()
    sim = await launch(clock=clock, not_found_for=5.0)
    source = (await post(http, sim, "/v1/video/create", GROK))["id"]
    body = {"task_id": source, "prompt": "p"}
    early = await fetch(http, "POST", sim.url + "/v1/video/remix", json=body)
    assert (early.status, early.json()["code"]) == (400, "task_not_exist")
    clock.advance(5.0)
    assert (await fetch(http, "POST", sim.url + "/v1/video/remix", json=body)).status == 200
    assert sim.faults_served["not_found"] == 1


async def test_stuck_tasks_of_every_route_never_finish(launch, http):
    """stuck_rate tasks of /v1/videos, native and remix run forever."""
    clock = FakeClock()
    sim = await launch(clock=clock, stuck_rate=1.0, duration=(10.0, 10.0), seed=7)
    source = (await post(http, sim, "/v1/video/create", GROK))["id"]
    remix = (await post(http, sim, "/v1/video/remix", {"task_id": source, "prompt": "p"}))["id"]
    kling = await videos(http, sim, KLING)
    native = (await post(http, sim, "/v1/video/generations", SEEDANCE_2))["task_id"]
    clock.advance(10_000.0)
    assert (await get(http, sim, f"/v1/video/query?id={quote(remix)}"))["status"] == "processing"
    assert (await video(http, sim, kling))["status"] == "in_progress"
    assert (await get(http, sim, f"/v1/video/generations/{native}"))["status"] == "processing"
    assert sim.faults_served["stuck"] == 4


async def test_injected_faults_by_the_new_route_names(sim, http):
    """inject("remix"), inject("videos_query"), inject("native_create") spoil only their route."""
    source = (await post(http, sim, "/v1/video/create", GROK))["id"]
    sim.inject("remix", status=503, code="fail_to_fetch_task", message="busy")
    sim.inject("videos_query", status=502, body="html")
    sim.inject("native_create", status=429, body="empty", retry_after=2.0)
    remix = await fetch(
        http, "POST", sim.url + "/v1/video/remix", json={"task_id": source, "prompt": "p"}
    )
    assert remix.json() == {"code": "fail_to_fetch_task", "message": "busy", "data": None}
    assert (await fetch(http, "GET", sim.url + "/v1/video/query?id=x")).status == 400
    assert (await fetch(http, "GET", sim.url + "/v1/videos/x")).status == 502
    native = await fetch(http, "POST", sim.url + "/v1/video/generations", json=SEEDANCE_2)
    assert (native.status, native.headers["Retry-After"], native.body) == (429, "2", b"")
    assert (
        await fetch(http, "POST", sim.url + "/v1/video/generations", json=SEEDANCE_2)
    ).status == 200
    with pytest.raises(ValueError):
        sim.inject("videos_query", drop="after")
    sim.inject("remix", drop="after")  # a create route: allowed


# Introspection


async def test_request_records_and_tasks_name_their_route(sim, http):
    """sim.requests names each route; each SimTask the route it was created on."""
    source = (await post(http, sim, "/v1/video/create", GROK))["id"]
    remix = (await post(http, sim, "/v1/video/remix", {"task_id": source, "prompt": "p"}))["id"]
    kling = await videos(http, sim, KLING)
    native = (await post(http, sim, "/v1/video/generations", SEEDANCE_2))["task_id"]
    await get(http, sim, f"/v1/video/query?id={quote(remix)}")
    await video(http, sim, kling)
    await get(http, sim, f"/v1/video/generations/{native}")
    await fetch(http, "GET", f"{sim.url}/v1/videos/{kling}/content")
    assert [record.route for record in sim.requests] == [
        "create",
        "remix",
        "videos_create",
        "native_create",
        "query",
        "videos_query",
        "native_query",
        "content",
    ]
    assert {task_id: task.route for task_id, task in sim.tasks.items()} == {
        source: "create",
        remix: "remix",
        kling: "videos_create",
        native: "native_create",
    }
    assert [task.row_id for task in sim.tasks.values()] == [48200, 48201, 48202, 48203]


# Workloads of the other routes


def test_route_presets_and_their_names():
    """ROUTE_WORKLOADS: openai/kling, /seedance, /sora, /mixed and native/seedance, +conditions."""
    bases = ["openai/kling", "openai/seedance", "openai/sora", "openai/mixed", "native/seedance"]
    assert set(ROUTE_WORKLOADS) == set(bases) | {
        f"{base}+{c}" for base in bases for c in ("sporadic-429", "storms", "faults")
    }
    assert {ROUTE_WORKLOADS[base].route for base in bases} == {"openai", "native"}
    assert ROUTE_WORKLOADS["openai/kling+faults"] == ROUTE_WORKLOADS[
        "openai/kling"
    ].with_conditions("faults")
    kinds = {kind_of(model) for model, _ in ROUTE_WORKLOADS["openai/mixed"].models}
    assert kinds == set(JOBS) - {"veo"} | set(EXTRA_JOBS)
    assert not set(ROUTE_WORKLOADS) & set(WORKLOADS)


def test_extra_jobs_for_kling_and_seedance():
    """Kling takes 1-5 min (tail 15), Seedance 30 s-3 min (tail 6), both refreshed every 15 s."""
    table = {kind: (jobs.typical, jobs.tail, jobs.refresh) for kind, jobs in EXTRA_JOBS.items()}
    assert table == {"kling": ((60, 300), 900, 15), "seedance": ((30, 180), 360, 15)}
    for jobs in EXTRA_JOBS.values():
        rng = random.Random(1)
        durations = sorted(jobs.draw_duration(rng) for _ in range(20_000))
        assert durations[2000] == pytest.approx(jobs.typical[0], rel=0.06)
        assert durations[18000] == pytest.approx(jobs.typical[1], rel=0.06)
        assert durations[-1] <= jobs.tail
    assert WORKLOADS["mixed"].jobs_for("kling-v2-1") == EXTRA_JOBS["kling"]


def test_bodies_for_each_route():
    """Workload.bodies(route=...) writes unified, OpenAI-format or native bodies."""
    kling = ROUTE_WORKLOADS["openai/kling"]
    body = kling.bodies(2, seed=1)[0]
    assert body == {"model": body["model"], "prompt": "openai/kling job 0"}
    assert body["model"] in dict(kling.models)
    mixed = WORKLOADS["mixed"]
    assert mixed.bodies(3, seed=2, route="openai") == [
        {"model": body["model"], "prompt": body["prompt"]} for body in mixed.bodies(3, seed=2)
    ]
    assert mixed.bodies(1, seed=2)[0]["images"] == []
    assert set(ROUTE_WORKLOADS["native/seedance"].bodies(1)[0]) == {"model", "prompt"}
    with pytest.raises(ValueError, match="unified route serves no kling"):
        kling.bodies(1, route="unified")
    with pytest.raises(ValueError):
        Workload(name="x", models={"kling-v2-1": 1.0})  # the unified route has no Kling
    with pytest.raises(ValueError):
        Workload(name="x", models={"sora-2": 1.0}, route="grpc")  # type: ignore[arg-type]
    assert Workload(name="x", models={"kling-v2-1": 1.0}, route="native").route == "native"


async def test_a_route_workload_runs_on_its_route(launch, http):
    """Simulator(workload="openai/kling") draws Kling plans for the bodies it gives /v1/videos."""
    clock = FakeClock()
    sim = await launch(workload="openai/kling", time_scale=10.0, clock=clock, seed=8)
    assert sim.workload is ROUTE_WORKLOADS["openai/kling"]
    for body in sim.workload.bodies(100, seed=8):
        await post(http, sim, "/v1/videos", body)
    tasks = list(sim.tasks.values())
    assert {task.family for task in tasks} == {"kling"}
    assert all(task.duration * 10 <= EXTRA_JOBS["kling"].tail for task in tasks)
    assert {task.pattern for task in tasks} <= {p for p, _ in EXTRA_JOBS["kling"].patterns}
    assert all(task.refresh == 1.5 for task in tasks)
    with pytest.raises(ValueError, match="unknown workload 'openai/hailuo'"):
        Simulator(workload="openai/hailuo")


def test_command_line_takes_route_workloads_and_shapes():
    """python -m octovid.testing takes --workload openai/kling, --native-shape, --result-url."""
    from octovid.testing._standalone import _parser

    parser = _parser("sim")
    args = parser.parse_args(
        ["--workload", "openai/kling+faults", "--native-shape", "plain", "--result-url", "proxy"]
    )
    assert (args.workload, args.native_shape, args.result_url) == (
        "openai/kling+faults",
        "plain",
        "proxy",
    )
    assert (parser.parse_args([]).native_shape, parser.parse_args([]).result_url) == (None, "cdn")
    with pytest.raises(SystemExit):
        parser.parse_args(["--workload", "kling"])
