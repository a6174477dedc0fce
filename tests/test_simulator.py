"""octovid.testing.Simulator: functional tests with a raw aiohttp client on loopback."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import importlib.metadata
import importlib.resources
import io
import json
import logging
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs
import pytest

from octovid.testing import Simulator

pytest_plugins = ["pytester"]

AUTH = {"Authorization": "Bearer sim-key"}
SAMPLE = importlib.resources.files("octovid.testing").joinpath("sample.mp4").read_bytes()
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
ULID = r"[0-9a-hjkmnp-tv-z]{26}"
RFC3339_NANOS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+08:00"
S3_EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
)
SATURATED = "当前分组上游负载已饱和，请稍后再试"  # noqa: RUF001

Launch = Callable[..., Awaitable[Simulator]]


@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


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
    async with http.request(method, url, headers=headers, **kwargs) as response:
        return Reply(response.status, response.headers, await response.read())


async def create(
    http: aiohttp.ClientSession, sim: Simulator, body: Any, path: str = "/v1/video/create"
) -> Any:
    reply = await fetch(http, "POST", sim.url + path, json=body)
    assert reply.status == 200, reply.body
    return reply.json()


async def query(http: aiohttp.ClientSession, sim: Simulator, task_id: str) -> Any:
    reply = await fetch(http, "GET", sim.url + "/v1/video/query", params={"id": task_id})
    assert reply.status == 200, reply.body
    return reply.json()


def now_s() -> int:
    return int(time.time())


# Section 3: the shapes of each family


async def test_veo_create_shape(sim, http):
    """Veo create: video_<uuid> id, queued, progress 0, times in seconds, input echoed."""
    body = {"model": "veo3.1-fast", "prompt": "a cat", "images": [], "size": "1280x720", "x": 1}
    answer = await create(http, sim, body)
    assert re.fullmatch(f"video_{UUID}", answer["id"])
    assert answer == {
        "id": answer["id"],
        "object": "video",
        "model": "veo3.1-fast",
        "status": "queued",
        "progress": 0,
        "created_at": answer["created_at"],
        "size": "1280x720",
        "detail": {"input": body},
        "status_update_time": answer["created_at"],
    }
    assert abs(answer["created_at"] - now_s()) <= 2


async def test_veo_query_has_another_id_no_progress_and_milliseconds(sim, http):
    """Veo query: a task_<ulid> id unlike the create id, no progress, update time in ms."""
    task_id = (await create(http, sim, {"model": "veo3-fast", "prompt": "p"}))["id"]
    answer = await query(http, sim, task_id)
    assert re.fullmatch(f"task_{ULID}", answer["id"])
    assert answer == {
        "id": answer["id"],
        "status": "pending",
        "video_url": None,
        "enhanced_prompt": "",
        "status_update_time": answer["status_update_time"],
    }
    assert abs(answer["status_update_time"] - time.time() * 1000) < 2000
    assert (await query(http, sim, task_id))["id"] == answer["id"]
    reply = await fetch(http, "GET", sim.url + "/v1/video/query", params={"id": answer["id"]})
    assert (reply.status, reply.json()["code"]) == (400, "task_not_exist")


async def test_veo_completion_and_failure(sim, http):
    """Veo ends completed with a video_url, or video_generation_failed with fail_reason."""
    done = (await create(http, sim, {"model": "veo3.1", "prompt": "p"}))["id"]
    failed = (await create(http, sim, {"model": "veo3.1", "prompt": "p"}))["id"]
    sim.finish(done)
    sim.finish(failed, fail="content policy violation")
    answer = await query(http, sim, done)
    assert answer["status"] == "completed"
    assert answer["video_url"].startswith(sim.cdn_url + "/v/")
    answer = await query(http, sim, failed)
    assert answer["status"] == "video_generation_failed"
    assert answer["fail_reason"] == "content policy violation"
    assert answer["video_url"] is None


async def test_sora_create_shape(sim, http):
    """Sora create: <model>:task_<ulid>, pending, update time in milliseconds, nothing else."""
    answer = await create(http, sim, {"model": "sora-2-pro", "prompt": "p"})
    assert re.fullmatch(f"sora-2-pro:task_{ULID}", answer["id"])
    assert answer == {
        "id": answer["id"],
        "status": "pending",
        "status_update_time": answer["status_update_time"],
    }
    assert answer["status_update_time"] > 1e11


async def test_sora_query_shape_with_an_empty_error(sim, http):
    """Sora query: string progress, int created_at, ms update time, an empty error object."""
    body = {"model": "sora-2", "prompt": "p", "size": "large", "watermark": False}
    task_id = (await create(http, sim, body))["id"]
    answer = await query(http, sim, task_id)
    assert answer == {
        "id": task_id,
        "object": "video",
        "model": "sora-2",
        "status": "pending",
        "progress": "0",
        "created_at": answer["created_at"],
        "size": "large",
        "status_update_time": answer["status_update_time"],
        "detail": {"input": body},
        "error": {"message": "", "code": ""},
    }
    assert abs(answer["created_at"] - now_s()) <= 2
    assert answer["status_update_time"] > 1e11
    sim.finish(task_id)
    answer = await query(http, sim, task_id)
    assert (answer["status"], answer["progress"]) == ("completed", "100")
    assert answer["video_url"].startswith(sim.cdn_url)
    assert answer["error"] == {"message": "", "code": ""}


async def test_sora_failure_reason_is_in_error(sim, http):
    """A failed Sora task carries its reason in error.message, code generation_failed."""
    task_id = (await create(http, sim, {"model": "sora-2", "prompt": "p"}))["id"]
    sim.finish(task_id, fail="upstream generation error")
    answer = await query(http, sim, task_id)
    assert answer["status"] == "failed"
    assert answer["error"] == {"message": "upstream generation error", "code": "generation_failed"}
    assert "video_url" not in answer
    assert answer["size"] == "small"


async def test_grok_create_shape(sim, http):
    """Grok create: grok:<uuid> and a different bare task_id, seconds, RFC 3339 created_at."""
    answer = await create(http, sim, {"model": "grok-video-3", "prompt": "p"})
    assert set(answer) == {"id", "status", "status_update_time", "task_id", "created_at"}
    assert re.fullmatch(f"grok:{UUID}", answer["id"])
    assert re.fullmatch(UUID, answer["task_id"])
    assert answer["id"] != f"grok:{answer['task_id']}"
    assert answer["status"] == "processing"
    assert abs(answer["status_update_time"] - now_s()) <= 2
    assert re.fullmatch(RFC3339_NANOS, answer["created_at"])
    created = datetime.datetime.fromisoformat(answer["created_at"][:26] + "+08:00")
    assert abs(created.timestamp() - time.time()) < 2


async def test_grok_query_accepts_both_ids(sim, http):
    """Grok query answers for grok:<uuid> and the bare task_id alike, with an int progress."""
    created = await create(http, sim, {"model": "grok-video-3-pro", "prompt": "p"})
    by_id = await query(http, sim, created["id"])
    by_task_id = await query(http, sim, created["task_id"])
    assert by_id == by_task_id
    assert by_id == {
        "id": created["id"],
        "status": "processing",
        "video_url": None,
        "status_update_time": created["status_update_time"],
        "progress": 0,
    }
    assert sim.tasks[created["id"]].polls == 2
    sim.finish(created["task_id"], fail="content policy violation")
    answer = await query(http, sim, created["id"])
    assert (answer["status"], answer["fail_reason"]) == ("failed", "content policy violation")


async def test_vidu_create_has_only_task_id_and_query_has_url(sim, http):
    """Vidu: create has no id; query says success with a top-level url, failure in data.error."""
    answer = await create(http, sim, {"model": "viduq2-pro", "prompt": "p", "images": []})
    assert set(answer) == {"created_at", "status", "task_id"}
    assert re.fullmatch(RFC3339_NANOS, answer["created_at"])
    assert answer["status"] == "processing"
    task_id = answer["task_id"]
    assert re.fullmatch(UUID, task_id)
    answer = await query(http, sim, task_id)
    assert answer == {
        "id": task_id,
        "status": "processing",
        "progress": 0,
        "created_at": answer["created_at"],
    }
    assert abs(answer["created_at"] - now_s()) <= 2
    sim.finish(task_id)
    answer = await query(http, sim, task_id)
    assert (answer["status"], answer["progress"]) == ("success", 100)
    assert answer["url"].startswith(sim.cdn_url)
    assert "video_url" not in answer
    failed = (await create(http, sim, {"model": "vidu2.0", "prompt": "p"}))["task_id"]
    sim.finish(failed, fail="upstream generation error")
    answer = await query(http, sim, failed)
    assert answer["status"] == "failure"
    assert answer["data"] == {"error": "upstream generation error"}


async def test_jimeng_percent_progress_and_data_url(sim, http):
    """Jimeng: in_queue, "N%" progress; done with data.url, failed with data.fail_reason."""
    answer = await create(http, sim, {"model": "jimeng-video-3.0", "prompt": "p"})
    assert set(answer) == {"created_at", "status", "task_id"}
    task_id = answer["task_id"]
    answer = await query(http, sim, task_id)
    assert (answer["id"], answer["status"], answer["progress"]) == (task_id, "in_queue", "0%")
    assert isinstance(answer["created_at"], int)
    sim.finish(task_id)
    answer = await query(http, sim, task_id)
    assert (answer["status"], answer["progress"]) == ("done", "100%")
    assert answer["data"]["url"].startswith(sim.cdn_url)
    failed = (await create(http, sim, {"model": "jimeng-video-2.0", "prompt": "p"}))["task_id"]
    sim.finish(failed, fail="content policy violation")
    answer = await query(http, sim, failed)
    assert (answer["status"], answer["data"]) == (
        "failed",
        {"fail_reason": "content policy violation"},
    )


async def test_each_family_walks_its_status_words(launch, http):
    """Every family reports its own status words, in order, from create to completion."""
    sim = await launch(duration=(1.0, 1.0))
    bodies = {
        "veo, images, upsample": {
            "model": "veo3.1-fast",
            "prompt": "p",
            "images": ["https://example.com/first.png"],
            "size": "1280x720",
            "enable_upsample": True,
        },
        "veo": {"model": "veo3.1-fast", "prompt": "p", "images": []},
        "sora": {"model": "sora-2", "prompt": "p"},
        "grok": {"model": "grok-video-3", "prompt": "p"},
        "vidu": {"model": "viduq1", "prompt": "p"},
        "jimeng": {"model": "jimeng-video-3.0", "prompt": "p"},
    }
    ids = {}
    for name, body in bodies.items():
        answer = await create(http, sim, body)
        ids[name] = answer.get("id") or answer["task_id"]
    statuses: dict[str, list[str]] = {name: [] for name in ids}
    progress: list[int] = []
    deadline = time.monotonic() + 1.3
    while time.monotonic() < deadline:
        answers = await asyncio.gather(*(query(http, sim, task_id) for task_id in ids.values()))
        for name, answer in zip(ids, answers, strict=True):
            if statuses[name][-1:] != [answer["status"]]:
                statuses[name].append(answer["status"])
        progress.append(answers[3]["progress"])
        await asyncio.sleep(0.01)
    assert statuses == {
        "veo, images, upsample": [
            "pending",
            "image_downloading",
            "video_generating",
            "video_generation_completed",
            "video_upsampling",
            "video_upsampling_completed",
            "completed",
        ],
        "veo": ["pending", "video_generating", "video_generation_completed", "completed"],
        "sora": ["pending", "queued", "in_progress", "completed"],
        "grok": ["processing", "completed"],
        "vidu": ["processing", "success"],
        "jimeng": ["in_queue", "running", "done"],
    }
    assert progress == sorted(progress)
    assert progress[0] < 10
    assert progress[-1] == 100


async def test_result_urls_point_at_the_cdn(sim, http):
    """Result URLs are signed links to <cdn_url>/v/<quoted id>.mp4 on another port."""
    task_id = (await create(http, sim, {"model": "sora-2", "prompt": "p"}))["id"]
    sim.finish(task_id)
    url = (await query(http, sim, task_id))["video_url"]
    match = re.fullmatch(r"(http://[^/]+)/v/([^/?]+)\.mp4\?expires=(\d+)&sig=([0-9a-f]+)", url)
    assert match is not None
    assert match[1] == sim.cdn_url != sim.url
    assert match[2] == task_id.replace(":", "%3A")
    assert int(match[3]) > time.time()


async def test_unknown_for_reports_unknown_after_create(launch, http):
    """Within unknown_for seconds of a create, queries say "unknown" in the family's shape."""
    sim = await launch(duration=(0.05, 0.05), unknown_for=0.2)
    grok = await create(http, sim, {"model": "grok-video-3", "prompt": "p"})
    jimeng = (await create(http, sim, {"model": "jimeng-video-3.0", "prompt": "p"}))["task_id"]
    answer = await query(http, sim, grok["id"])
    assert (answer["id"], answer["status"], answer["progress"]) == (grok["id"], "unknown", 0)
    assert (await query(http, sim, jimeng))["progress"] == "0%"
    task = sim.tasks[grok["id"]]
    assert task.terminal_at - task.created == pytest.approx(0.2)
    await asyncio.sleep(task.terminal_at - time.monotonic() + 0.02)
    assert (await query(http, sim, grok["id"]))["status"] == "completed"
    assert (await query(http, sim, jimeng))["status"] == "done"


async def test_refresh_shows_the_state_of_the_last_tick(launch, http):
    """With refresh, queries see the state as of the last refresh tick since creation."""
    sim = await launch(duration=(0.3, 0.3), refresh=0.2)
    created = await create(http, sim, {"model": "sora-2", "prompt": "p"})
    task = sim.tasks[created["id"]]
    assert task.terminal_at - task.created == pytest.approx(0.4)

    async def query_at(elapsed: float) -> Any:
        await asyncio.sleep(task.created + elapsed - time.monotonic())
        return await query(http, sim, task.id)

    first = await query_at(0.05)
    assert (first["progress"], first["status_update_time"]) == (
        "0",
        created["status_update_time"],
    )
    second = await query_at(0.25)
    assert (second["status"], second["progress"]) == ("in_progress", "66")
    assert second["status_update_time"] == pytest.approx(created["status_update_time"] + 200, abs=1)
    third = await query_at(0.35)
    assert third == second
    assert (await query_at(0.45))["status"] == "completed"


# Section 4: errors


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "sim-key"}, {"Authorization": ""}],
)
async def test_bad_key_is_401_invalid_token(sim, http, headers):
    """A missing or wrong key answers 401 in the new_api_error shape, with the request id."""
    reply = await fetch(
        http, "POST", sim.url + "/v1/video/create", headers=headers, json={"model": "sora-2"}
    )
    assert reply.status == 401
    rid = reply.headers["X-Oneapi-Request-Id"]
    assert reply.json() == {
        "error": {
            "message": f"Invalid token (request id: {rid})",
            "type": "new_api_error",
            "code": "",
        }
    }
    assert sim.tasks == {}
    assert sim.requests[-1].authorization is bool(headers)


async def test_any_key_is_accepted_without_api_key(launch, http):
    """api_key=None accepts any non-empty bearer key, and not an empty one."""
    sim = await launch(api_key=None)
    good = await fetch(
        http, "GET", sim.url + "/v1/video/query?id=x", headers={"Authorization": "Bearer k"}
    )
    empty = await fetch(
        http, "GET", sim.url + "/v1/video/query?id=x", headers={"Authorization": "Bearer "}
    )
    assert (good.status, empty.status) == (400, 401)


async def test_request_ids_are_fresh(sim, http):
    """Every gateway answer carries a fresh X-Oneapi-Request-Id."""
    replies = [await fetch(http, "GET", sim.url + "/v1/video/query") for _ in range(3)]
    rids = {reply.headers["X-Oneapi-Request-Id"] for reply in replies}
    assert len(rids) == 3
    assert all(re.fullmatch(r"\d{14}[0-9a-f]{16}", rid) for rid in rids)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"prompt": "p"}', "missing_model"),
        (b'{"model": "", "prompt": "p"}', "missing_model"),
        (b'{"model": "sora-2"}', "invalid_request"),
        (b'{"model": "sora-2", "prompt": ""}', "invalid_request"),
        (b'{"model": "veo3.1", "prompt": "p", "size": "1024x1024"}', "invalid_size"),
    ],
)
async def test_bad_create_bodies_are_400(sim, http, data, code):
    """Bad JSON, a missing model or prompt and a bad Veo size are 400s in the task shape."""
    reply = await fetch(http, "POST", sim.url + "/v1/video/create", data=data)
    assert reply.status == 400
    answer = reply.json()
    assert (answer["code"], answer["data"]) == (code, None)
    assert answer["message"]
    assert sim.tasks == {}


async def test_body_over_8_mib_is_413(sim, http):
    """A body over 8 MiB is refused with 413 read_request_body_failed."""
    data = io.BytesIO(b'{"model": "sora-2", "prompt": "' + b"a" * (9 * 1024 * 1024) + b'"}')
    reply = await fetch(http, "POST", sim.url + "/v1/video/create", data=data)
    assert reply.status == 413
    assert reply.json()["code"] == "read_request_body_failed"


async def test_unknown_model_is_503_model_not_found(sim, http):
    """A model of no family answers 503 model_not_found in the new_api_error shape."""
    reply = await fetch(
        http, "POST", sim.url + "/v1/video/create", json={"model": "kling-v2", "prompt": "p"}
    )
    assert reply.status == 503
    rid = reply.headers["X-Oneapi-Request-Id"]
    assert reply.json() == {
        "error": {
            "message": f"No available channel for model kling-v2 under group default "
            f"(request id: {rid})",
            "type": "new_api_error",
            "code": "model_not_found",
        }
    }


async def test_quota_runs_out_with_403(launch, http):
    """Past quota creates, a create answers 403 insufficient_user_quota and creates nothing."""
    sim = await launch(quota=1)
    await create(http, sim, {"model": "sora-2", "prompt": "p"})
    reply = await fetch(
        http, "POST", sim.url + "/v1/video/create", json={"model": "sora-2", "prompt": "p"}
    )
    assert reply.status == 403
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("new_api_error", "insufficient_user_quota")
    assert error["message"].startswith("user quota is not enough (request id: ")
    assert len(sim.tasks) == 1


async def test_query_without_id_or_with_an_unknown_one_is_400(sim, http):
    """A query without id is 400 invalid_request; an unknown id is 400 task_not_exist."""
    missing = await fetch(http, "GET", sim.url + "/v1/video/query")
    unknown = await fetch(http, "GET", sim.url + "/v1/video/query", params={"id": "sora-2:x"})
    assert (missing.status, missing.json()["code"]) == (400, "invalid_request")
    assert unknown.status == 400
    assert unknown.json() == {"code": "task_not_exist", "message": "task_not_exist", "data": None}
    assert sim.requests[-1].task_id == "sora-2:x"


async def test_unknown_path_is_404_invalid_url(sim, http):
    """A path the gateway does not serve is a 404 naming the method and path."""
    reply = await fetch(http, "DELETE", sim.url + "/v1/video/create")
    assert reply.status == 404
    assert reply.json()["error"]["message"] == "Invalid URL (DELETE /v1/video/create)"
    assert sim.requests[-1].route == "other"


# The video: /content and the CDN


async def test_sample_video_is_a_small_faststart_mp4(sim):
    """The default video is a small H.264 MP4 with its moov box before mdat."""
    assert 1000 < len(SAMPLE) < 20_000
    assert SAMPLE[4:8] == b"ftyp"
    assert b"avc1" in SAMPLE
    assert SAMPLE.index(b"moov") < SAMPLE.index(b"mdat")


async def test_content_errors(launch, http):
    """/content: unknown task 404 Task not found; unfinished 400 naming the status."""
    sim = await launch(duration=(0.2, 0.2))
    unknown = await fetch(http, "GET", sim.url + "/v1/videos/nope/content")
    assert unknown.status == 404
    assert unknown.json() == {
        "error": {"message": "Task not found", "type": "invalid_request_error"}
    }
    running = (await create(http, sim, {"model": "grok-video-3", "prompt": "p"}))["id"]
    failed = (await create(http, sim, {"model": "grok-video-3", "prompt": "p"}))["id"]
    sim.stall(running)
    sim.finish(failed, fail="content policy violation")
    await asyncio.sleep(0.05)
    replies = [
        await fetch(http, "GET", f"{sim.url}/v1/videos/{task_id}/content")
        for task_id in (running, failed)
    ]
    assert [(reply.status, reply.json()["error"]["message"]) for reply in replies] == [
        (400, "Task is not completed yet, current status: IN_PROGRESS"),
        (400, "Task is not completed yet, current status: FAILURE"),
    ]


async def test_content_streams_the_video_with_ranges(sim, http):
    """/content serves video/mp4 with Content-Length, and 206 for a Range, for any route's task."""
    task_id = (await create(http, sim, {"model": "vidu2.0", "prompt": "p"}))["task_id"]
    sim.finish(task_id)
    url = f"{sim.url}/v1/videos/{task_id}/content"
    whole = await fetch(http, "GET", url)
    assert (whole.status, whole.body) == (200, SAMPLE)
    assert whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers["Content-Length"] == str(len(SAMPLE))
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert "X-Oneapi-Request-Id" in whole.headers
    tail = await fetch(http, "GET", url, headers={**AUTH, "Range": "bytes=100-"})
    assert (tail.status, tail.body) == (206, SAMPLE[100:])
    assert tail.headers["Content-Range"] == f"bytes 100-{len(SAMPLE) - 1}/{len(SAMPLE)}"
    part = await fetch(http, "GET", url, headers={**AUTH, "Range": "bytes=0-9"})
    assert (part.status, part.body, part.headers["Content-Length"]) == (206, SAMPLE[:10], "10")
    beyond = await fetch(http, "GET", url, headers={**AUTH, "Range": f"bytes={len(SAMPLE)}-"})
    assert (beyond.status, beyond.headers["Content-Range"]) == (416, f"bytes */{len(SAMPLE)}")
    assert sim.requests[-2].range == "bytes=0-9"


async def test_cdn_serves_without_a_key(sim, http):
    """The CDN serves the video with Range support and records that no key was sent."""
    task_id = (await create(http, sim, {"model": "grok-video-3", "prompt": "p"}))["id"]
    sim.finish(task_id)
    url = (await query(http, sim, task_id))["video_url"]
    whole = await fetch(http, "GET", url, headers={})
    assert (whole.status, whole.body, whole.headers["Content-Type"]) == (200, SAMPLE, "video/mp4")
    assert "X-Oneapi-Request-Id" not in whole.headers
    part = await fetch(http, "GET", url, headers={"Range": "bytes=-16"})
    assert (part.status, part.body) == (206, SAMPLE[-16:])
    records = [record for record in sim.requests if record.route == "cdn"]
    assert [(r.status, r.authorization, r.task_id) for r in records] == [
        (200, False, task_id),
        (206, False, task_id),
    ]


async def test_cdn_urls_expire_with_403_xml(launch, http):
    """With url_ttl, a result URL answers 403 S3-style XML after its expires second."""
    sim = await launch(duration=(0.0, 0.0), url_ttl=0.5)
    task_id = (await create(http, sim, {"model": "sora-2", "prompt": "p"}))["id"]
    url = (await query(http, sim, task_id))["video_url"]
    expires = int(re.search(r"expires=(\d+)", url)[1])  # type: ignore[index]
    assert (await fetch(http, "GET", url, headers={})).status == 200
    await asyncio.sleep(expires - time.time() + 0.01)
    expired = await fetch(http, "GET", url, headers={})
    assert expired.status == 403
    assert expired.headers["Content-Type"] == "application/xml"
    assert expired.body.decode() == S3_EXPIRED
    fresh = (await query(http, sim, task_id))["video_url"]
    assert fresh != url
    assert (await fetch(http, "GET", fresh, headers={})).status == 200


async def test_cdn_refuses_bad_signatures(sim, http):
    """A CDN URL with a wrong signature, or an unknown path, answers 403 AccessDenied."""
    task_id = (await create(http, sim, {"model": "sora-2", "prompt": "p"}))["id"]
    sim.finish(task_id)
    url = (await query(http, sim, task_id))["video_url"]
    forged = await fetch(http, "GET", url[:-4] + "0000", headers={})
    elsewhere = await fetch(http, "GET", sim.cdn_url + "/index.html", headers={})
    for reply in (forged, elsewhere):
        assert reply.status == 403
        assert b"<Code>AccessDenied</Code>" in reply.body


# Rate limiting


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("json", {"type": "new_api_error", "code": "token_concurrency_limit_reached"}),
        ("task", {"code": "fail_to_fetch_task", "message": SATURATED, "data": None}),
        ("empty", None),
    ],
)
async def test_rate_limit_answers_429(launch, http, kind, expected):
    """Over the limit, 429 with the chosen body and a rounded-up Retry-After if configured."""
    sim = await launch(rate_limit=(2, 10.0), rate_limit_body=kind, retry_after=1.2)
    replies = [await fetch(http, "GET", sim.url + "/v1/video/query?id=x") for _ in range(3)]
    assert [reply.status for reply in replies] == [400, 400, 429]
    limited = replies[2]
    assert limited.headers["Retry-After"] == "2"
    if kind == "json":
        rid = limited.headers["X-Oneapi-Request-Id"]
        expected = {"error": {"message": f"{SATURATED} (request id: {rid})", **expected}}
    assert (limited.json() if limited.body else None) == expected
    assert sim.rate_limited == 1


async def test_rate_limit_is_a_sliding_window_per_key(launch, http):
    """The limit slides, does not count refused requests, is per key, and sends no Retry-After."""
    sim = await launch(api_key=None, rate_limit=(2, 0.3))
    url = sim.url + "/v1/video/query?id=x"

    async def statuses(count: int, key: str = "a") -> list[int]:
        headers = {"Authorization": f"Bearer {key}"}
        return [(await fetch(http, "GET", url, headers=headers)).status for _ in range(count)]

    assert await statuses(2) == [400, 400]
    await asyncio.sleep(0.2)
    limited = await fetch(http, "GET", url, headers={"Authorization": "Bearer a"})
    assert limited.status == 429
    assert "Retry-After" not in limited.headers
    assert await statuses(2, key="b") == [400, 400]
    await asyncio.sleep(0.15)
    assert await statuses(3) == [400, 400, 429]
    assert sim.rate_limited == 2


# Fault injection


async def test_injected_502_html_page(sim, http):
    """An injected 502 with body="html" is an nginx error page, once."""
    sim.inject("query", status=502, body="html")
    reply = await fetch(http, "GET", sim.url + "/v1/video/query?id=x")
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"<center><h1>502 Bad Gateway</h1></center>" in reply.body
    assert b"<center>nginx</center>" in reply.body
    assert (await fetch(http, "GET", sim.url + "/v1/video/query?id=x")).status == 400


async def test_injected_json_and_empty_statuses(sim, http):
    """Injected statuses use the task shape or an empty body, for `times` requests of the route."""
    sim.inject("any", status=503, code="fail_to_fetch_task", message="busy", times=2)
    sim.inject("create", status=500, body="empty")
    body = {"model": "sora-2", "prompt": "p"}
    empty = await fetch(http, "POST", sim.url + "/v1/video/create", json=body)
    assert (empty.status, empty.body) == (500, b"")
    replies = [await fetch(http, "GET", sim.url + "/v1/video/query?id=x") for _ in range(3)]
    assert [reply.status for reply in replies] == [503, 503, 400]
    assert replies[0].json() == {"code": "fail_to_fetch_task", "message": "busy", "data": None}
    assert sim.tasks == {}


async def test_drop_before_create_creates_nothing(sim, http, caplog):
    """drop="before" closes the connection unanswered; no task, no server traceback."""
    sim.inject("create", drop="before")
    body = {"model": "sora-2", "prompt": "p"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(http, "POST", sim.url + "/v1/video/create", json=body)
    assert sim.tasks == {}
    assert sim.creates_per_body() == {}
    assert [(r.route, r.status) for r in sim.requests] == [("create", 0)]
    await create(http, sim, body)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_drop_after_create_keeps_the_task(sim, http, caplog):
    """drop="after" creates the task as usual, then closes the connection unanswered."""
    sim.inject("create", drop="after")
    body = {"model": "grok-video-3", "prompt": "p"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(http, "POST", sim.url + "/v1/video/create", json=body)
    [task] = sim.tasks.values()
    assert task.body == body
    assert sim.creates_per_body() == {'{"model":"grok-video-3","prompt":"p"}': 1}
    assert (sim.requests[0].status, sim.requests[0].task_id) == (0, task.id)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_dropped_get_needs_two_drops_to_reach_aiohttp(sim, http):
    """aiohttp resends a GET once after a disconnect: two drops surface as an error."""
    sim.inject("query", drop="before", times=2)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await fetch(http, "GET", sim.url + "/v1/video/query?id=x")
    assert [(r.route, r.status) for r in sim.requests] == [("query", 0), ("query", 0)]


async def test_delayed_create_is_accepted_before_the_delay(sim, http):
    """A delayed create creates its task first: a client that times out does not know."""
    sim.inject("create", delay=0.3)
    with pytest.raises(TimeoutError):
        await fetch(
            http,
            "POST",
            sim.url + "/v1/video/create",
            json={"model": "sora-2", "prompt": "p"},
            timeout=aiohttp.ClientTimeout(total=0.1),
        )
    assert len(sim.tasks) == 1


async def test_delay_and_latency_slow_answers(launch, http):
    """latency delays every gateway answer; an injected delay adds to it once."""
    sim = await launch(latency=0.1)
    sim.inject("query", delay=0.15)
    url = sim.url + "/v1/video/query?id=x"
    timings = []
    for _ in range(2):
        started = time.monotonic()
        assert (await fetch(http, "GET", url)).status == 400
        timings.append(time.monotonic() - started)
    assert timings[0] >= 0.25
    assert 0.1 <= timings[1] < 0.25


@pytest.mark.parametrize("route", ["content", "cdn"])
async def test_truncated_download(sim, http, route):
    """truncate=n sends the full Content-Length, then n bytes, then closes the connection."""
    task_id = (await create(http, sim, {"model": "sora-2", "prompt": "p"}))["id"]
    sim.finish(task_id)
    if route == "cdn":
        url, headers = (await query(http, sim, task_id))["video_url"], {}
    else:
        url, headers = f"{sim.url}/v1/videos/{task_id}/content", AUTH
    sim.inject(route, truncate=100)
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(SAMPLE))
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert (await fetch(http, "GET", url, headers=headers)).body == SAMPLE


def test_inject_rejects_impossible_faults():
    """inject refuses faults that cannot happen on the route."""
    sim = Simulator()
    with pytest.raises(ValueError):
        sim.inject("query", drop="after")
    with pytest.raises(ValueError):
        sim.inject("create", truncate=10)
    with pytest.raises(ValueError):
        sim.inject("create", status=502, drop="before")
    with pytest.raises(ValueError):
        sim.inject("upload", status=502)  # type: ignore[arg-type]


# The OpenAI-format and native routes


async def test_openai_json_create_and_query(sim, http):
    """POST /v1/videos answers an OpenAI video object; GET follows it to completed."""
    answer = await create(http, sim, {"prompt": "p", "seconds": 8}, path="/v1/videos")
    assert re.fullmatch(r"video_[0-9a-f]{32}", answer["id"])
    assert answer == {
        "id": answer["id"],
        "object": "video",
        "model": "sora-2",
        "status": "queued",
        "progress": 0,
        "created_at": answer["created_at"],
        "completed_at": None,
        "expires_at": None,
        "seconds": "8",
        "size": "720x1280",
        "quality": "standard",
        "error": None,
        "remixed_from_video_id": None,
    }
    sim.finish(answer["id"])
    done = (await fetch(http, "GET", f"{sim.url}/v1/videos/{answer['id']}")).json()
    assert (done["status"], done["progress"]) == ("completed", 100)
    assert done["completed_at"] >= done["created_at"]
    assert done["expires_at"] == done["created_at"] + 86400
    content = await fetch(http, "GET", f"{sim.url}/v1/videos/{answer['id']}/content")
    assert content.body == SAMPLE


async def test_openai_failed_video_has_an_error(sim, http):
    """A failed OpenAI-format video has status failed and error {code, message}."""
    task_id = (await create(http, sim, {"model": "sora-2", "prompt": "p"}, path="/v1/videos"))["id"]
    sim.finish(task_id, fail="content policy violation")
    answer = (await fetch(http, "GET", f"{sim.url}/v1/videos/{task_id}")).json()
    assert answer["status"] == "failed"
    assert answer["error"] == {"code": "generation_failed", "message": "content policy violation"}
    unknown = await fetch(http, "GET", f"{sim.url}/v1/videos/video_nope")
    assert (unknown.status, unknown.json()["code"]) == (400, "task_not_exist")


async def test_openai_multipart_create(sim, http):
    """POST /v1/videos accepts multipart/form-data with an input_reference file."""
    form = aiohttp.FormData()
    form.add_field("model", "sora-2-pro")
    form.add_field("prompt", "a cat")
    form.add_field("seconds", "8")
    form.add_field("size", "1280x720")
    form.add_field("input_reference", b"\x89PNG", filename="ref.png", content_type="image/png")
    reply = await fetch(http, "POST", sim.url + "/v1/videos", data=form)
    assert reply.status == 200
    answer = reply.json()
    assert (answer["model"], answer["seconds"], answer["size"]) == ("sora-2-pro", "8", "1280x720")
    assert sim.tasks[answer["id"]].body == {
        "model": "sora-2-pro",
        "prompt": "a cat",
        "seconds": "8",
        "size": "1280x720",
        "input_reference": {
            "filename": "ref.png",
            "content_type": "image/png",
            "size": 4,
            "sha256": hashlib.sha256(b"\x89PNG").hexdigest(),
        },
    }


async def test_native_routes_wrap_in_code_message_data(sim, http):
    """The native routes wrap answers in {code, message, data}: a task row, upper-case status."""
    answer = await create(
        http, sim, {"model": "sora-2", "prompt": "p"}, path="/v1/video/generations"
    )
    assert answer == {
        "code": "success",
        "message": "",
        "data": {"task_id": answer["data"]["task_id"]},
    }
    task_id = answer["data"]["task_id"]
    assert re.fullmatch(UUID, task_id)
    url = f"{sim.url}/v1/video/generations/{task_id}"
    created = int(sim.tasks[task_id].wall_created)
    answer = (await fetch(http, "GET", url)).json()
    assert answer["data"]["updated_at"] - created in (0, 1)  # the state's time, seconds
    assert answer == {
        "code": "success",
        "message": "",
        "data": {
            "id": 48200,
            "task_id": task_id,
            "action": "textGenerate",
            "status": "SUBMITTED",
            "progress": "0%",
            "fail_reason": "",
            "result_url": "",
            "submit_time": created,
            "start_time": 0,
            "finish_time": 0,
            "created_at": created,
            "updated_at": answer["data"]["updated_at"],
            "data": {},
        },
    }
    sim.finish(task_id)
    data = (await fetch(http, "GET", url)).json()["data"]
    assert (data["status"], data["progress"], data["start_time"]) == ("SUCCESS", "100%", created)
    assert data["finish_time"] >= created
    assert data["result_url"].startswith(sim.cdn_url)
    assert data["data"] == {"content": {"video_url": data["result_url"]}}
    sim.finish(task_id, fail="upstream generation error")
    data = (await fetch(http, "GET", url)).json()["data"]
    assert (data["status"], data["fail_reason"]) == ("FAILURE", "upstream generation error")


# Task life and introspection


async def test_finish_and_stall(launch, http):
    """finish makes a task terminal at once; a stalled task never finishes."""
    sim = await launch(duration=(0.2, 0.2))
    stalled = (await create(http, sim, {"model": "grok-video-3", "prompt": "p"}))["id"]
    sim.stall(stalled)
    await asyncio.sleep(0.25)
    answer = await query(http, sim, stalled)
    assert (answer["status"], answer["progress"]) == ("processing", 99)
    sim.finish(stalled)
    assert (await query(http, sim, stalled))["status"] == "completed"
    with pytest.raises(KeyError):
        sim.finish("grok:nope")


async def test_seed_makes_runs_reproducible(launch, http):
    """The same seed gives the same ids, durations and outcomes."""
    plans = []
    for _ in range(2):
        sim = await launch(seed=42, duration=(1.0, 9.0), failure_rate=0.5)
        for _ in range(5):
            await create(http, sim, {"model": "grok-video-3", "prompt": "p"})
        plans.append([(t.id, t.duration, t.outcome, t.reason) for t in sim.tasks.values()])
    assert plans[0] == plans[1]
    assert {outcome for _, _, outcome, _ in plans[0]} == {"completed", "failed"}
    assert all((reason is None) == (outcome == "completed") for _, _, outcome, reason in plans[0])


async def test_duration_can_depend_on_the_model(launch, http):
    """A duration callable gets the model and the simulator's random generator."""
    sim = await launch(duration=lambda model, rng: 0.5 if "fast" in model else 60.0)
    fast = (await create(http, sim, {"model": "veo3-fast", "prompt": "p"}))["id"]
    slow = (await create(http, sim, {"model": "veo3.1", "prompt": "p"}))["id"]
    assert (sim.tasks[fast].duration, sim.tasks[slow].duration) == (0.5, 60.0)


async def test_polls_after_terminal_are_counted(sim, http):
    """Each task counts its queries, and those answered after its terminal state showed."""
    task_id = (await create(http, sim, {"model": "vidu2.0", "prompt": "p"}))["task_id"]
    await query(http, sim, task_id)
    sim.finish(task_id)
    for _ in range(3):
        await query(http, sim, task_id)
    task = sim.tasks[task_id]
    assert (task.polls, task.polls_after_terminal) == (4, 3)
    assert task.terminal_at <= time.monotonic()
    assert task.wall_terminal_at <= time.time()


async def test_creates_per_body_counts_identical_bodies(sim, http):
    """creates_per_body keys bodies by canonical JSON, whatever the key order."""
    for data in ('{"prompt": "p", "model": "sora-2"}', '{"model": "sora-2", "prompt": "p"}'):
        await fetch(http, "POST", sim.url + "/v1/video/create", data=data)
    await create(http, sim, {"model": "sora-2", "prompt": "q"})
    assert sim.creates_per_body() == {
        '{"model":"sora-2","prompt":"p"}': 2,
        '{"model":"sora-2","prompt":"q"}': 1,
    }


async def test_max_rate_counts_the_busiest_window(sim, http):
    """max_rate is the most gateway arrivals within any window, CDN excluded."""
    for _ in range(4):
        await fetch(http, "GET", sim.url + "/v1/video/query?id=x")
        await fetch(http, "GET", sim.cdn_url + "/v/x.mp4", headers={})
    await asyncio.sleep(0.3)
    for _ in range(2):
        await fetch(http, "GET", sim.url + "/v1/video/query?id=x")
    assert sim.max_rate(0.2) == 4
    assert sim.max_rate(5.0) == 6
    assert sim.max_rate(5.0, routes={"create"}) == 0


async def test_request_records(sim, http):
    """Each request is recorded with its times, route, status, task and headers seen."""
    before = time.monotonic()
    task_id = (await create(http, sim, {"model": "sora-2", "prompt": "p"}))["id"]
    [record] = sim.requests
    assert before <= record.at <= time.monotonic()
    assert abs(record.wall - time.time()) < 2
    assert (record.method, record.path, record.route) == ("POST", "/v1/video/create", "create")
    assert (record.status, record.task_id, record.authorization, record.range) == (
        200,
        task_id,
        True,
        None,
    )


# Running it: a thread, the command line, the pytest plugin


def test_run_in_thread_serves_sync_code():
    """run_in_thread serves from its own loop in a thread, and stops on exit."""
    with Simulator(duration=(0.0, 0.0)).run_in_thread() as sim:
        request = urllib.request.Request(
            sim.url + "/v1/video/create",
            data=b'{"model": "jimeng-video-3.0", "prompt": "p"}',
            headers={**AUTH, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            task_id = json.load(response)["task_id"]
        assert list(sim.tasks) == [task_id]
        url = sim.url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_standalone_cli_serves_until_a_signal(signum):
    """python -m octovid.testing prints its URL and key, serves, and exits 0 on a signal."""
    command = [sys.executable, "-m", "octovid.testing", "--port", "0", "--api-key", "cli-key"]
    command += ["--duration", "0.1", "0.2", "--rate-limit", "10/1", "--seed", "3"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.fullmatch(
                r"octovid simulator listening on (http://127\.0\.0\.1:\d+) \(api key: cli-key\)\n",
                line,
            )
            assert match is not None, line
            request = urllib.request.Request(
                match[1] + "/v1/video/create",
                data=b'{"model": "vidu2.0", "prompt": "p"}',
                headers={"Authorization": "Bearer cli-key", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert json.load(response)["status"] == "processing"
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0
    assert stderr == ""


def test_pytest_plugin_fixture_and_marker(pytester):
    """The octovid_simulator fixture serves sync tests, configured by its marker."""
    pytester.makepyfile(
        """
        import json
        import urllib.request

        import pytest


        @pytest.mark.octovid_simulator(api_key="marked", duration=(0.0, 0.0))
        def test_marked(octovid_simulator):
            assert octovid_simulator.api_key == "marked"
            request = urllib.request.Request(
                octovid_simulator.url + "/v1/video/create",
                data=b'{"model": "grok-video-3", "prompt": "p"}',
                headers={"Authorization": "Bearer marked"},
            )
            with urllib.request.urlopen(request) as response:
                assert json.load(response)["status"] == "processing"
            assert len(octovid_simulator.tasks) == 1


        def test_default(octovid_simulator):
            assert octovid_simulator.api_key == "sim-key"
            assert octovid_simulator.tasks == {}
        """
    )
    installed = importlib.metadata.entry_points(group="pytest11", name="octovid")
    plugin = [] if installed else ["-p", "octovid.testing._plugin"]
    # Without pytest-asyncio, to show the fixture does not need it.
    result = pytester.runpytest(*plugin, "-p", "no:asyncio", "--strict-markers")
    result.assert_outcomes(passed=2)
