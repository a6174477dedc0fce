"""What the simulated gateway says: route names, status words, ids, timestamps and bodies.

Every answer body of every family and route is built here, from a task and the :class:`View`
a query has of it, as are the error shapes of the task routes and of the auth layer.

Which family answers which shape on which route:

- unified (``/v1/video/create``, ``/v1/video/query``, and ``/v1/video/remix`` for Grok): each
  of Veo, Sora, Grok, Vidu and Jimeng its own shape (:data:`UNIFIED_CREATE`,
  :data:`UNIFIED_QUERY`); Kling and Seedance are not served there.
- OpenAI-format (``/v1/videos``): Sora's answers are OpenAI's own video object, passed through
  (:func:`openai_video`: ``video_<hex>`` ids, no ``unknown``, ``expires_at``, no URL: the bytes
  are at ``/content``). Every other family gets the gateway's conversion
  (:func:`converted_video`): ``id`` equal to ``task_id``, ``unknown`` before the task started,
  ``metadata.url``, ``error {code, message}`` once failed. Kling: an 18-digit id, times in
  milliseconds on query (seconds on create), ``completed_at`` copied from the update time while
  it runs, a stringified integer error code, no ``task_id`` on query. Seedance: ``completed_at``
  copied in seconds, coarse progress (10, 50, 100) and an empty error object while running.
  Grok: an empty error object while running. Jimeng: an integer error code.
- native (``/v1/video/generations``): the "wrapped" shape (:func:`native_task`:
  ``{code, message, data}``, upper-case statuses, an integer row id in ``data.id``, create
  answered ``{code, message, data: {task_id}}``) for every family but Seedance, whose shape is
  "plain" (:func:`native_plain`: bare, lower-case statuses, ``url``, ``format``, ``metadata``,
  ``error {code: int, message}``; create answered with only ``{"task_id"}``). The simulator's
  ``native_shape`` option imposes one shape on every family.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web

from ._tasks import PHASES, Family, Phase, SimTask, View

Route = Literal[
    "create",
    "query",
    "remix",
    "content",
    "videos_create",
    "videos_query",
    "native_create",
    "native_query",
    "cdn",
    "other",
]
"""The name under which a request is recorded, one per route of the two sites."""

CREATE_ROUTES: frozenset[str] = frozenset({"create", "remix", "videos_create", "native_create"})
QUERY_ROUTES: frozenset[str] = frozenset({"query", "videos_query", "native_query"})
REQUEST_ID = "X-Oneapi-Request-Id"
POLL_AFTER = "openai-poll-after-ms"
# "Upstream load saturated, try later", as the gateway words it.
SATURATED = "当前分组上游负载已饱和，请稍后再试"  # noqa: RUF001
_CST = datetime.timezone(datetime.timedelta(hours=8))  # the offset the upstreams report in
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NGINX_PAGE = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class Reply(Exception):
    """Raised by a handler to answer at once with ``response``."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


# Error shapes


def json_response(
    status: int, payload: object, headers: dict[str, str] | None = None
) -> web.Response:
    """A compact JSON answer, non-ASCII kept as is, as the gateway writes it."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def task_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The task routes' error shape."""
    return json_response(status, {"code": code, "message": message, "data": None}, headers)


def gateway_error(
    rid: str, status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The auth and routing layer's error shape."""
    error = {"message": f"{message} (request id: {rid})", "type": "new_api_error", "code": code}
    return json_response(status, {"error": error}, headers)


def nginx_page(status: int, phrase: str) -> web.Response:
    """The error page a proxy in front of the gateway answers with."""
    page = _NGINX_PAGE.format(f"{status} {phrase}")
    return web.Response(status=status, text=page, content_type="text/html")


# Ids and timestamps


def request_id(wall: float) -> str:
    """A fresh ``X-Oneapi-Request-Id``: the local time to the second, then 16 hex digits."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(wall)) + secrets.token_hex(8)


def new_uuid(rng: random.Random) -> str:
    """A version 4 UUID drawn from ``rng``."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_ulid(rng: random.Random, wall: float) -> str:
    """26 lower-case Crockford base32 characters: 48 bits of milliseconds, 80 random bits."""
    value = int(wall * 1000) << 80 | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -5, -5))


def public_id(rng: random.Random) -> str:
    """The gateway's own task id on ``/v1/videos``: ``task_`` and 32 letters and digits."""
    return "task_" + "".join(rng.choices(_ALNUM, k=32))


def kling_id(rng: random.Random) -> str:
    """A Kling task id: 18 digits."""
    return str(rng.randrange(10**17, 10**18))


def seedance_id(rng: random.Random, wall: float) -> str:
    """A Seedance (Volcengine Ark) task id: ``cgt-``, the local time to the second, 5 more."""
    stamp = datetime.datetime.fromtimestamp(math.floor(wall), _CST).strftime("%Y%m%d%H%M%S")
    return f"cgt-{stamp}-" + "".join(rng.choices(_ALNUM[:36].lower(), k=5))


def rfc3339(wall: float) -> str:
    """``2025-11-08T23:07:57.510141923+08:00``: nanoseconds and the +08:00 offset."""
    seconds = math.floor(wall)
    stamp = datetime.datetime.fromtimestamp(seconds, _CST).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{round((wall - seconds) * 1e9) % 1_000_000_000:09d}+08:00"


def _ms(wall: float) -> int:
    return int(wall * 1000)


def _percent(view: View) -> int:
    return int(view.fraction * 100)


def _shown_percent(view: View) -> int:
    """The progress of a route whose shape always has one: 0 until the end if none is known."""
    if view.reported or view.phase in ("completed", "failed"):
        return _percent(view)
    return 0


# What each family or route calls each phase. Sora says "pending" before "queued". OpenAI's own
# video objects (Sora on /v1/videos) have no "unknown", so such a task is queued there; the
# gateway's conversions ("videos") say "unknown" for a task not started. "native" is the
# wrapped native shape (QUEUED too, for a queue phase), "plain" the second native shape, which
# calls a task not started "processing".
_STATUS_TABLE = """
        unknown    queued      running      completed  failed
sora    unknown    queued      in_progress  completed  failed
grok    unknown    processing  processing   completed  failed
vidu    unknown    processing  processing   success    failure
jimeng  unknown    in_queue    running      done       failed
openai  queued     queued      in_progress  completed  failed
videos  unknown    queued      in_progress  completed  failed
native  NOT_START  SUBMITTED   IN_PROGRESS  SUCCESS    FAILURE
plain   processing queued      processing   succeeded  failed
"""
STATUS: dict[str, dict[Phase, str]] = {
    name: dict(zip(PHASES, words, strict=True))
    for name, *words in (line.split() for line in _STATUS_TABLE.strip().splitlines()[1:])
}


# The unified routes, per family


def _veo_status(task: SimTask, view: View) -> str:
    if view.phase == "running":
        steps = ["video_generating", "video_generation_completed"]
        if task.body.get("images"):
            steps.insert(0, "image_downloading")
        if task.body.get("enable_upsample") is True:
            steps += ["video_upsampling", "video_upsampling_completed"]
        return steps[min(int((view.fraction - 0.1) / 0.9 * len(steps)), len(steps) - 1)]
    return {
        "unknown": "unknown",
        "queued": "pending",
        "completed": "completed",
        "failed": "video_generation_failed",
    }[view.phase]


def _veo_create(task: SimTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": "queued",
        "progress": 0,
        "created_at": int(task.wall_created),
        "size": task.body.get("size", "720x1280"),
        "detail": {"input": task.body},
        "status_update_time": int(task.wall_created),
    }


def _veo_query(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    payload = {
        "id": task.upstream_id,
        "status": _veo_status(task, view),
        "video_url": url,
        "enhanced_prompt": "",
        "status_update_time": _ms(view.wall),
    }
    if view.phase == "failed":
        payload["fail_reason"] = task.reason
    return payload


def _sora_create(task: SimTask) -> dict[str, Any]:
    return {"id": task.id, "status": "pending", "status_update_time": _ms(task.wall_created)}


def _sora_query(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    status = STATUS["sora"][view.phase]
    if view.phase == "queued" and view.fraction < 0.05:
        status = "pending"
    payload: dict[str, Any] = {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": status,
        "created_at": int(task.wall_created),
        "size": task.body.get("size") or "small",
        "status_update_time": _ms(view.wall),
        "detail": {"input": task.body},
        "error": {"message": "", "code": ""},
    }
    if view.reported:
        payload["progress"] = str(_percent(view))
    if url is not None:
        payload["video_url"] = url
    if view.phase == "failed":
        payload["error"] = {"message": task.reason, "code": "generation_failed"}
    return payload


def _grok_create(task: SimTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": "processing",
        "status_update_time": int(task.wall_created),
        "task_id": task.upstream_id,
        "created_at": rfc3339(task.wall_created),
    }


def _grok_query(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": task.id,
        "status": STATUS["grok"][view.phase],
        "video_url": url,
        "status_update_time": int(view.wall),
    }
    if view.reported:
        payload["progress"] = _percent(view)
    if view.phase == "failed":
        payload["fail_reason"] = task.reason
    return payload


def _bare_create(task: SimTask) -> dict[str, Any]:
    """Vidu and Jimeng: no ``id``, only ``task_id``."""
    return {"created_at": rfc3339(task.wall_created), "status": "processing", "task_id": task.id}


def _vidu_query(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": task.id, "status": STATUS["vidu"][view.phase]}
    if view.reported:
        payload["progress"] = _percent(view)
    payload["created_at"] = int(task.wall_created)
    if url is not None:
        payload["url"] = url
    if view.phase == "failed":
        payload["data"] = {"error": task.reason}
    return payload


def _jimeng_query(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": task.id, "status": STATUS["jimeng"][view.phase]}
    if view.reported:
        payload["progress"] = f"{_percent(view)}%"
    payload["created_at"] = int(task.wall_created)
    data: dict[str, Any] = {}
    if view.phase == "failed":
        data["fail_reason"] = task.reason
    if url is not None:
        data["url"] = url
    if data:
        payload["data"] = data
    return payload


UNIFIED_CREATE: dict[Family, Callable[[SimTask], dict[str, Any]]] = {
    "veo": _veo_create,
    "sora": _sora_create,
    "grok": _grok_create,
    "vidu": _bare_create,
    "jimeng": _bare_create,
}
"""The unified create answer of each family."""

UNIFIED_QUERY: dict[Family, Callable[[SimTask, View, str | None], dict[str, Any]]] = {
    "veo": _veo_query,
    "sora": _sora_query,
    "grok": _grok_query,
    "vidu": _vidu_query,
    "jimeng": _jimeng_query,
}
"""The unified query answer of each family, given the view and what its result-URL slot holds:
the result URL once completed, the failure reason for a task that carries it there, else None."""


# The OpenAI-format and native routes


def openai_video(task: SimTask, view: View, expires_in: float) -> dict[str, Any]:
    """OpenAI's own video object (Sora on ``/v1/videos``); ``expires_at`` ``expires_in`` s on."""
    completed = view.phase == "completed"
    return {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": STATUS["openai"][view.phase],
        "progress": _shown_percent(view),
        "created_at": int(task.wall_created),
        "completed_at": int(task.wall_terminal_at) if completed else None,
        "expires_at": int(task.wall_created + expires_in) if completed else None,
        "seconds": str(task.body.get("seconds", "4")),
        "size": str(task.body.get("size") or "720x1280"),
        "quality": "standard",
        "error": (
            {"code": "generation_failed", "message": task.reason}
            if view.phase == "failed"
            else None
        ),
        "remixed_from_video_id": task.remixed_from,
    }


_MILLISECONDS: frozenset[Family] = frozenset({"kling"})
_COPIES_UPDATED: frozenset[Family] = frozenset({"kling", "seedance"})
_EMPTY_ERROR: frozenset[Family] = frozenset({"grok", "seedance"})
_ERROR_CODE: dict[Family, str | int] = {
    "kling": "1301",  # Kling's integer codes, stringified by the converter
    "seedance": "InternalServiceError",
    "jimeng": 50500,  # an integer, passed through
}


def converted_create(task: SimTask) -> dict[str, Any]:
    """The gateway's create answer on ``/v1/videos`` for a family it converts: no status word
    of the upstream, ``id`` equal to ``task_id``, ``created_at`` in seconds (Kling's too)."""
    return {
        "id": task.id,
        "task_id": task.id,
        "object": "video",
        "model": task.model,
        "status": "queued",
        "progress": 0,
        "created_at": int(task.wall_created),
    }


def converted_video(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    """The gateway's conversion of a task to an OpenAI video object (every family but Sora).

    ``url`` is what the result-URL slot (``metadata.url``) holds, if anything.
    """
    family, phase = task.family, view.phase
    stamp: Callable[[float], int] = _ms if family in _MILLISECONDS else int
    payload: dict[str, Any] = {"id": task.id}
    if family != "kling":  # Kling's conversion sets the id alone
        payload["task_id"] = task.id
    payload |= {
        "object": "video",
        "model": task.model,
        "status": STATUS["videos"][phase],
        "progress": _seedance_percent(view) if family == "seedance" else _shown_percent(view),
        "created_at": stamp(task.wall_created),
    }
    if family in _COPIES_UPDATED or phase in ("completed", "failed"):
        payload["completed_at"] = stamp(view.wall)  # the update time, even while running
    seconds = task.body.get("seconds", task.body.get("duration"))
    if seconds is not None:
        payload["seconds"] = str(seconds)
    if task.body.get("size"):
        payload["size"] = str(task.body["size"])
    if task.remixed_from is not None:
        payload["remixed_from_video_id"] = task.remixed_from
    if phase == "failed":
        payload["error"] = {"message": task.reason, "code": _ERROR_CODE.get(family, "task_failed")}
    elif family in _EMPTY_ERROR:
        payload["error"] = {"message": "", "code": ""}
    if url is not None:
        payload["metadata"] = {"url": url}
    return payload


# Kling and Seedance are not created on the unified route; a task of theirs created on another
# route and asked about there gets the gateway's conversion.
UNIFIED_QUERY["kling"] = UNIFIED_QUERY["seedance"] = converted_video


def _seedance_percent(view: View) -> int:
    """Seedance's coarse progress, as the gateway maps its statuses: 10, 50, then 100."""
    return {"unknown": 0, "queued": 10, "running": 50}.get(view.phase, 100)


def native_task(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    """The native route's wrapped answer: ``{code, message, data}``, data a task row.

    ``url`` is what the result-URL slot (``data.result_url``) holds, if anything.
    """
    phase = view.phase
    status = STATUS["native"][phase]
    if phase == "queued" and task.pattern == "queued_then_rising":
        status = "QUEUED"
    started = phase in ("running", "completed", "failed")
    completed = phase == "completed"
    data = {
        "id": task.row_id,
        "task_id": task.id,
        "action": "generate" if task.body.get("images") else "textGenerate",
        "status": status,
        "progress": f"{_shown_percent(view)}%",
        "fail_reason": task.reason if phase == "failed" else "",
        "result_url": url or "",
        "submit_time": int(task.wall_created),
        "start_time": int(task.wall_created) if started else 0,
        "finish_time": int(view.wall) if phase in ("completed", "failed") else 0,
        "created_at": int(task.wall_created),
        "updated_at": int(view.wall),
        "data": {"content": {"video_url": url}} if completed and url else {},
    }
    return {"code": "success", "message": "", "data": data}


def _native_error_code(reason: str | None) -> int:
    return 400 if reason and "policy" in reason else 500


def native_plain(task: SimTask, view: View, url: str | None) -> dict[str, Any]:
    """The second native shape: bare, lower-case statuses, ``url``, ``format``, ``metadata``."""
    phase = view.phase
    payload: dict[str, Any] = {"task_id": task.id, "status": STATUS["plain"][phase]}
    if url is not None:
        payload["url"] = url
    payload["format"] = "mp4"
    if phase == "completed":
        width, height = _dimensions(task.body.get("size"))
        payload["metadata"] = {
            "duration": float(task.body.get("duration") or 5),
            "fps": 24,
            "width": width,
            "height": height,
            "seed": task.row_id * 7919 % 2**31,
        }
    elif phase == "failed":
        payload["error"] = {"code": _native_error_code(task.reason), "message": task.reason}
    return payload


def _dimensions(size: object) -> tuple[int, int]:
    if isinstance(size, str):
        width, _, height = size.partition("x")
        if width.isdigit() and height.isdigit():
            return int(width), int(height)
    return 1280, 720
