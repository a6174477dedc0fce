"""A local imitation of the octopusx gateway, for tests, benchmarks and demos.

The simulator answers on two sites: the gateway (``url``), with the unified, OpenAI-format and
native task routes and their error shapes, and a "CDN" (``cdn_url``) that serves the signed,
expiring result URLs. Tasks run on real time: each gets a duration and an outcome when it is
created, and every query renders its state in the shape of the family or route it is asked on.

Nothing here binds an event loop before :meth:`Simulator.start`, and every request costs O(1).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import hashlib
import hmac
import importlib.resources
import json
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, get_args
from urllib.parse import quote

import attrs
from aiohttp import web

__all__ = ["RequestRecord", "SimTask", "Simulator"]

Route = Literal[
    "create",
    "query",
    "content",
    "videos_create",
    "videos_query",
    "native_create",
    "native_query",
    "cdn",
    "other",
]
"""The name under which a request is recorded, one per route of the two sites."""

FaultRoute = Literal[
    "create",
    "query",
    "content",
    "videos_create",
    "videos_query",
    "native_create",
    "native_query",
    "cdn",
    "any",
]
"""The routes a fault can target: ``"any"`` is every gateway route (not the CDN)."""

Family = Literal["veo", "sora", "grok", "vidu", "jimeng"]
Outcome = Literal["completed", "failed"]
_Phase = Literal["unknown", "queued", "running", "completed", "failed"]

_FAMILIES: tuple[Family, ...] = get_args(Family)
_PHASES: tuple[_Phase, ...] = get_args(_Phase)
_CREATE_ROUTES = frozenset({"create", "videos_create", "native_create"})
_REQUEST_ID = "X-Oneapi-Request-Id"
_MAX_BODY = 8 * 1024 * 1024
_CHUNK = 64 * 1024
_VEO_SIZES = frozenset({"720x1280", "1280x720"})
_FAILURE_REASONS = (
    "content policy violation",
    "upstream generation error",
    "upstream task timed out",
)
# "Upstream load saturated, try later", as the gateway words it.
_SATURATED = "当前分组上游负载已饱和，请稍后再试"  # noqa: RUF001
_CST = datetime.timezone(datetime.timedelta(hours=8))  # the offset the upstreams report in
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_CDN_PATH = re.compile(r"/v/(.+)\.mp4")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_NGINX_PAGE = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>AccessDenied</Code><Message>{}</Message></Error>"
)


@functools.cache
def _sample_video() -> bytes:
    # sample.mp4 is 1 s of a test pattern, 96x64, H.264, made once with the ffmpeg of the
    # imageio-ffmpeg wheel:
    #   ffmpeg -f lavfi -i testsrc2=size=96x64:rate=12:duration=1 -c:v libx264 -preset veryslow
    #     -crf 35 -pix_fmt yuv420p -movflags +faststart -an -map_metadata -1
    #     -fflags +bitexact -flags:v +bitexact sample.mp4
    return importlib.resources.files(__package__).joinpath("sample.mp4").read_bytes()


@attrs.frozen
class RequestRecord:
    """One request as the simulator saw it; ``status`` is 0 if the connection was dropped."""

    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival
    method: str
    path: str
    route: Route
    status: int
    task_id: str | None  # the task created or asked about, if any
    authorization: bool  # whether an Authorization header was sent
    range: str | None  # the Range header, if any


@attrs.define
class SimTask:
    """A task of the simulator: its plan, and how often it was polled."""

    id: str  # the id the create answer gave
    family: Family
    model: str
    body: dict[str, Any]  # the create body, as sent
    created: float  # time.monotonic()
    wall_created: float  # time.time()
    duration: float  # seconds from create to the terminal state
    outcome: Outcome
    reason: str | None  # the failure reason, if the outcome is "failed"
    terminal_at: float  # time.monotonic() from which queries see the end; inf if stalled
    wall_terminal_at: float  # the same instant in time.time()
    upstream_id: str | None = None  # the other id the gateway reports: Veo query id, Grok task_id
    polls: int = 0  # queries, on any query route
    polls_after_terminal: int = 0  # queries answered once the end was visible


@attrs.frozen
class _View:
    """The state of a task as one query sees it."""

    phase: _Phase
    fraction: float  # of the work done, 0 to 1
    wall: float  # time.time() of the state seen: status_update_time


@attrs.define
class _Fault:
    """A fault scripted by :meth:`Simulator.inject`."""

    status: int | None
    body: Literal["json", "html", "empty"]
    code: str
    message: str
    drop: Literal["before", "after"] | None
    delay: float
    truncate: int | None
    times: int  # requests left to spoil


@attrs.define
class _Exchange:
    """What the handling of one request learns, for its record."""

    rid: str  # the request id; "" on the CDN, which sends none
    task_id: str | None = None
    fault: _Fault | None = None
    dropped: bool = False


class _Reply(Exception):
    """Raised by a handler to answer at once with ``response``."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


_Handler = Callable[[web.Request, _Exchange], Awaitable[web.StreamResponse]]
_T = TypeVar("_T")


def _task_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The task routes' error shape."""
    return _json(status, {"code": code, "message": message, "data": None}, headers)


def _gateway_error(
    rid: str, status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The auth and routing layer's error shape."""
    error = {"message": f"{message} (request id: {rid})", "type": "new_api_error", "code": code}
    return _json(status, {"error": error}, headers)


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def _access_denied(message: str) -> web.Response:
    body = _S3_ERROR.format(message).encode()
    return web.Response(status=403, body=body, content_type="application/xml")


def _request_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(8)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ulid(rng: random.Random) -> str:
    """26 lower-case Crockford base32 characters: 48 bits of milliseconds, 80 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -5, -5))


def _rfc3339(wall: float) -> str:
    """``2025-11-08T23:07:57.510141923+08:00``: nanoseconds and the +08:00 offset."""
    seconds = math.floor(wall)
    stamp = datetime.datetime.fromtimestamp(seconds, _CST).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{round((wall - seconds) * 1e9) % 1_000_000_000:09d}+08:00"


def _ms(wall: float) -> int:
    return int(wall * 1000)


def _percent(view: _View) -> int:
    return int(view.fraction * 100)


def _family(model: str) -> Family | None:
    lowered = model.lower()
    return next((family for family in _FAMILIES if lowered.startswith(family)), None)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse ``bytes=N-``, ``bytes=N-M`` or ``bytes=-N`` into a half-open ``(start, end)``.

    Returns None for a header to ignore (malformed, or several ranges), as RFC 9110 allows, and
    an empty range (``start >= end``) for an unsatisfiable one.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # the last N bytes
        return max(size - int(match[2]), 0), size
    start = int(match[1])
    if match[2] == "":
        return start, size
    if int(match[2]) < start:
        return None
    return start, min(int(match[2]) + 1, size)


# What each family or route calls each phase. Sora says "pending" before "queued"; OpenAI has
# no "unknown", so the gateway reports such a task as queued there.
_STATUS_TABLE = """
        unknown  queued      running      completed  failed
sora    unknown  queued      in_progress  completed  failed
grok    unknown  processing  processing   completed  failed
vidu    unknown  processing  processing   success    failure
jimeng  unknown  in_queue    running      done       failed
openai  queued   queued      in_progress  completed  failed
native  UNKNOWN  SUBMITTED   IN_PROGRESS  SUCCESS    FAILURE
"""
_STATUS: dict[str, dict[_Phase, str]] = {
    name: dict(zip(_PHASES, words, strict=True))
    for name, *words in (line.split() for line in _STATUS_TABLE.strip().splitlines()[1:])
}


def _veo_status(task: SimTask, view: _View) -> str:
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


def _veo_query(task: SimTask, view: _View, url: str | None) -> dict[str, Any]:
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


def _sora_query(task: SimTask, view: _View, url: str | None) -> dict[str, Any]:
    status = _STATUS["sora"][view.phase]
    if view.phase == "queued" and view.fraction < 0.05:
        status = "pending"
    payload = {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": status,
        "progress": str(_percent(view)),
        "created_at": int(task.wall_created),
        "size": task.body.get("size") or "small",
        "status_update_time": _ms(view.wall),
        "detail": {"input": task.body},
        "error": {"message": "", "code": ""},
    }
    if view.phase == "completed":
        payload["video_url"] = url
    elif view.phase == "failed":
        payload["error"] = {"message": task.reason, "code": "generation_failed"}
    return payload


def _grok_create(task: SimTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": "processing",
        "status_update_time": int(task.wall_created),
        "task_id": task.upstream_id,
        "created_at": _rfc3339(task.wall_created),
    }


def _grok_query(task: SimTask, view: _View, url: str | None) -> dict[str, Any]:
    payload = {
        "id": task.id,
        "status": _STATUS["grok"][view.phase],
        "video_url": url,
        "status_update_time": int(view.wall),
        "progress": _percent(view),
    }
    if view.phase == "failed":
        payload["fail_reason"] = task.reason
    return payload


def _bare_create(task: SimTask) -> dict[str, Any]:
    """Vidu and Jimeng: no ``id``, only ``task_id``."""
    return {"created_at": _rfc3339(task.wall_created), "status": "processing", "task_id": task.id}


def _vidu_query(task: SimTask, view: _View, url: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": task.id,
        "status": _STATUS["vidu"][view.phase],
        "progress": _percent(view),
        "created_at": int(task.wall_created),
    }
    if view.phase == "completed":
        payload["url"] = url
    elif view.phase == "failed":
        payload["data"] = {"error": task.reason}
    return payload


def _jimeng_query(task: SimTask, view: _View, url: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": task.id,
        "status": _STATUS["jimeng"][view.phase],
        "progress": f"{_percent(view)}%",
        "created_at": int(task.wall_created),
    }
    if view.phase == "completed":
        payload["data"] = {"url": url}
    elif view.phase == "failed":
        payload["data"] = {"fail_reason": task.reason}
    return payload


_UNIFIED_CREATE: dict[Family, Callable[[SimTask], dict[str, Any]]] = {
    "veo": _veo_create,
    "sora": _sora_create,
    "grok": _grok_create,
    "vidu": _bare_create,
    "jimeng": _bare_create,
}
_UNIFIED_QUERY: dict[Family, Callable[[SimTask, _View, str | None], dict[str, Any]]] = {
    "veo": _veo_query,
    "sora": _sora_query,
    "grok": _grok_query,
    "vidu": _vidu_query,
    "jimeng": _jimeng_query,
}


def _openai_video(task: SimTask, view: _View) -> dict[str, Any]:
    completed = view.phase == "completed"
    return {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": _STATUS["openai"][view.phase],
        "progress": _percent(view),
        "created_at": int(task.wall_created),
        "completed_at": int(task.wall_terminal_at) if completed else None,
        "expires_at": int(task.wall_created) + 86400 if completed else None,
        "seconds": str(task.body.get("seconds", "4")),
        "size": str(task.body.get("size") or "720x1280"),
        "quality": "standard",
        "error": (
            {"code": "generation_failed", "message": task.reason}
            if view.phase == "failed"
            else None
        ),
        "remixed_from_video_id": None,
    }


async def _read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 ``invalid_json`` or a 413."""
    body = await _read(request, request.read)
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise _Reply(_task_error(400, "invalid_json", f"invalid request body: {exc}")) from None
    if not isinstance(value, dict):
        raise _Reply(_task_error(400, "invalid_json", "request body must be a JSON object"))
    return value


async def _read_form(request: web.Request) -> dict[str, Any]:
    """A form's fields; a file becomes a summary: name, type, size and SHA-256."""
    form = await _read(request, request.post)
    body: dict[str, Any] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            with value.file:
                content = value.file.read()
            body[name] = {
                "filename": value.filename,
                "content_type": value.content_type,
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        else:
            body[name] = value.decode() if isinstance(value, bytes) else value
    return body


async def _read(request: web.Request, read: Callable[[], Awaitable[_T]]) -> _T:
    """Read the body with ``read``, or answer 413 past the gateway's 8 MiB."""
    try:
        return await read()
    except web.HTTPRequestEntityTooLarge:
        message = "read request body failed: http: request body too large"
        raise _Reply(_task_error(413, "read_request_body_failed", message)) from None


class Simulator:
    """A local imitation of the octopusx gateway, on loopback, with scripted faults.

    Use it as an async context manager, or from synchronous code with :meth:`run_in_thread`::

        async with Simulator(duration=(0.2, 0.5), failure_rate=0.1, seed=1) as sim:
            ...  # point a client at sim.url with sim.api_key

    Args:
        api_key: the bearer key to accept; None accepts any non-empty key.
        host: the address both sites bind to.
        port: the gateway's port (0: any free port). The CDN always takes a free port.
        seed: seeds the durations, outcomes and ids, for reproducible runs.
        duration: seconds from create to the terminal state: ``(min, max)`` drawn uniformly,
            or a callable ``(model, rng) -> seconds``.
        failure_rate: the fraction of tasks that end failed, with a reason.
        refresh: the gateway's state refresh period: queries see a task as it was at the last
            tick (every ``refresh`` seconds since its creation); 0 shows the live state.
        unknown_for: queries within this many seconds of a create report status "unknown".
        rate_limit: ``(requests, window)`` allowed per key over every gateway route, as a
            sliding-window log; refused requests do not count. Checked after authentication.
        rate_limit_body: the body of a 429: "json" (``token_concurrency_limit_reached``),
            "task" (``fail_to_fetch_task``) or "empty".
        retry_after: if set, 429s carry ``Retry-After`` (whole seconds, rounded up).
        latency: seconds added before every gateway answer.
        url_ttl: result URLs expire this many seconds after they are issued (rounded up to the
            whole second of their ``expires``); None: valid for 12 h and never checked.
        quota: the number of creates allowed, then 403 ``insufficient_user_quota``.
        video: the bytes served as every video; by default a 1 s, 96x64 H.264 MP4.

    Introspection (``requests``, ``tasks``, ``rate_limited``, ``creates_per_body``,
    ``max_rate``) and scripting (``inject``, ``finish``, ``stall``) are plain data-structure
    operations, safe to use from the thread that called :meth:`run_in_thread`.
    """

    __slots__ = (
        "_aliases",
        "_api_key",
        "_bodies",
        "_duration",
        "_failure_rate",
        "_faults",
        "_host",
        "_latency",
        "_port",
        "_quota",
        "_rate_limit",
        "_rate_limit_body",
        "_refresh",
        "_retry_after",
        "_rng",
        "_runners",
        "_secret",
        "_unknown_for",
        "_url_ttl",
        "_urls",
        "_video",
        "_windows",
        "rate_limited",
        "requests",
        "tasks",
    )

    def __init__(
        self,
        *,
        api_key: str | None = "sim-key",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        duration: tuple[float, float] | Callable[[str, random.Random], float] = (1.0, 3.0),
        failure_rate: float = 0.0,
        refresh: float = 0.0,
        unknown_for: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
        rate_limit_body: Literal["json", "task", "empty"] = "json",
        retry_after: float | None = None,
        latency: float = 0.0,
        url_ttl: float | None = None,
        quota: int | None = None,
        video: bytes | None = None,
    ) -> None:
        if isinstance(duration, tuple) and not 0 <= duration[0] <= duration[1]:
            raise ValueError(f"duration must be (min, max) with 0 <= min <= max, not {duration}")
        if not 0 <= failure_rate <= 1:
            raise ValueError(f"failure_rate must be between 0 and 1, not {failure_rate}")
        if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
            raise ValueError(f"rate_limit must be (requests >= 1, window > 0), not {rate_limit}")
        if rate_limit_body not in ("json", "task", "empty"):
            raise ValueError(f"rate_limit_body must be json, task or empty: {rate_limit_body!r}")
        if min(refresh, unknown_for, latency) < 0:
            raise ValueError("refresh, unknown_for and latency must not be negative")
        self._api_key = api_key
        self._host = host
        self._port = port
        self._rng = random.Random(seed)
        self._duration = duration
        self._failure_rate = failure_rate
        self._refresh = refresh
        self._unknown_for = unknown_for
        self._rate_limit = rate_limit
        self._rate_limit_body = rate_limit_body
        self._retry_after = retry_after
        self._latency = latency
        self._url_ttl = url_ttl
        self._quota = quota
        self._video = _sample_video() if video is None else video
        self._secret = secrets.token_bytes(16)
        self._runners: list[web.AppRunner] = []
        self._urls: list[str] = []
        self._aliases: dict[str, SimTask] = {}
        self._bodies: collections.Counter[str] = collections.Counter()
        self._faults: collections.defaultdict[str, collections.deque[_Fault]] = (
            collections.defaultdict(collections.deque)
        )
        self._windows: collections.defaultdict[str, collections.deque[float]] = (
            collections.defaultdict(collections.deque)
        )
        self.requests: list[RequestRecord] = []
        """Every request, in the order they were answered (sort by ``at`` for arrivals)."""
        self.tasks: dict[str, SimTask] = {}
        """Every task, by the id its create answer gave."""
        self.rate_limited = 0
        """The number of 429s sent by the rate limiter."""

    def __repr__(self) -> str:
        where = self._urls[0] if self._urls else "not started"
        return f"<Simulator {where} tasks={len(self.tasks)} requests={len(self.requests)}>"

    @property
    def url(self) -> str:
        """The gateway's base URL, e.g. ``http://127.0.0.1:8000``."""
        return self._started_urls()[0]

    @property
    def cdn_url(self) -> str:
        """The base URL of the CDN that result URLs point at; it never needs a key."""
        return self._started_urls()[1]

    @property
    def api_key(self) -> str:
        """A key the simulator accepts."""
        return "sim-key" if self._api_key is None else self._api_key

    def _started_urls(self) -> list[str]:
        if not self._urls:
            raise RuntimeError("the simulator is not started")
        return self._urls

    # Lifecycle

    async def start(self) -> None:
        """Bind both sites and start serving."""
        if self._runners:
            raise RuntimeError("the simulator is already started")
        gateway = web.Application(client_max_size=_MAX_BODY)
        routes: list[tuple[str, str, Route, _Handler]] = [
            ("POST", "/v1/video/create", "create", self._create),
            ("GET", "/v1/video/query", "query", self._query),
            ("GET", "/v1/videos/{task_id}/content", "content", self._content),
            ("POST", "/v1/videos", "videos_create", self._videos_create),
            ("GET", "/v1/videos/{task_id}", "videos_query", self._videos_query),
            ("POST", "/v1/video/generations", "native_create", self._native_create),
            ("GET", "/v1/video/generations/{task_id}", "native_query", self._native_query),
            ("*", "/{tail:.*}", "other", self._invalid_url),
        ]
        for method, path, route, handler in routes:
            gateway.router.add_route(method, path, self._endpoint(route, handler))
        cdn = web.Application()
        cdn.router.add_route("*", "/{tail:.*}", self._endpoint("cdn", self._cdn))
        host = f"[{self._host}]" if ":" in self._host else self._host
        urls = []
        try:
            for app, port in ((gateway, self._port), (cdn, 0)):
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
                self._runners.append(runner)
                await runner.setup()
                await web.TCPSite(runner, self._host, port).start()
                urls.append(f"http://{host}:{runner.addresses[0][1]}")
        except BaseException:
            await self.close()
            raise
        self._urls = urls

    async def close(self) -> None:
        """Stop serving; a no-op if not started."""
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[Self]:
        """Run the simulator on its own event loop in a background thread, for sync code."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="octovid-simulator", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result()
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.close(), loop).result()
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()

    # Scripting

    def inject(
        self,
        route: FaultRoute,
        *,
        status: int | None = None,
        body: Literal["json", "html", "empty"] = "json",
        code: str = "",
        message: str = "",
        drop: Literal["before", "after"] | None = None,
        delay: float = 0.0,
        truncate: int | None = None,
        times: int = 1,
    ) -> None:
        """Spoil the next ``times`` requests of ``route`` that pass authentication and the limiter.

        Args:
            route: the route to spoil; faults for a route are used before faults for "any".
            status: answer with this status and ``body``: "json" (the task routes' shape, code
                ``code`` or ``do_request_failed``), "html" (an nginx error page) or "empty".
            drop: close the connection without an answer, "before" doing anything, or (creates
                only; "any" drops other routes before) "after" creating the task exactly as a
                normal create would.
            delay: seconds to wait before answering. A create creates its task first.
            truncate: (content and cdn) send the headers with the full ``Content-Length``, then
                only this many bytes of the body, then close the connection.
            times: how many requests to spoil.

        aiohttp's client resends an idempotent request (GET) once when a reused connection
        drops: give a dropped GET ``times=2`` for such a client to see the disconnect.
        """
        if route not in get_args(FaultRoute):
            raise ValueError(f"unknown route {route!r}")
        if status is not None:
            HTTPStatus(status)  # raises ValueError for a status no client would understand
            if drop is not None:
                raise ValueError("status and drop exclude each other")
        if body not in ("json", "html", "empty"):
            raise ValueError(f"body must be json, html or empty, not {body!r}")
        if drop not in (None, "before", "after"):
            raise ValueError(f"drop must be None, 'before' or 'after', not {drop!r}")
        if drop == "after" and route not in _CREATE_ROUTES | {"any"}:
            raise ValueError('drop="after" is for create routes')
        if truncate is not None and (route not in ("content", "cdn") or truncate < 0):
            raise ValueError("truncate is a number of bytes, for the content and cdn routes")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        fault = _Fault(status, body, code, message, drop, delay, truncate, times)
        self._faults[route].append(fault)

    def finish(self, task_id: str, *, fail: str | None = None) -> None:
        """Make a task terminal now: completed, or failed with the reason ``fail``.

        Raises:
            KeyError: no task has this id.
        """
        task = self._task(task_id)
        if fail is None:
            task.outcome, task.reason = "completed", None
        else:
            task.outcome, task.reason = "failed", fail
        now = time.monotonic()
        if now < task.terminal_at:
            task.terminal_at, task.wall_terminal_at = now, time.time()

    def stall(self, task_id: str) -> None:
        """Make a task never finish (until :meth:`finish`); KeyError for an unknown id."""
        task = self._task(task_id)
        task.terminal_at = task.wall_terminal_at = math.inf

    def _task(self, task_id: str) -> SimTask:
        task = self._lookup(task_id)
        if task is None:
            raise KeyError(task_id)
        return task

    # Introspection

    def creates_per_body(self) -> dict[str, int]:
        """The number of tasks created from each body, keyed by its canonical JSON."""
        return dict(self._bodies)

    def max_rate(self, window: float = 1.0, routes: Collection[str] | None = None) -> int:
        """The most gateway requests (of ``routes``, if given) that arrived within ``window`` s."""
        arrivals = sorted(
            record.at
            for record in self.requests
            if record.route != "cdn" and (routes is None or record.route in routes)
        )
        most = first = 0
        for last, at in enumerate(arrivals):
            while at - arrivals[first] >= window:
                first += 1
            most = max(most, last - first + 1)
        return most

    # The request pipeline: record, authenticate, limit, spoil, handle.

    def _endpoint(
        self, route: Route, handler: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._serve(route, handler, request)

        return endpoint

    async def _serve(
        self, route: Route, handler: _Handler, request: web.Request
    ) -> web.StreamResponse:
        at, wall = time.monotonic(), time.time()
        x = _Exchange("" if route == "cdn" else _request_id())
        status = 500  # what aiohttp answers if the handler raises
        try:
            response = await self._answer(route, handler, request, x)
            if x.rid and not response.prepared:
                response.headers[_REQUEST_ID] = x.rid
            status = 0 if x.dropped else response.status
            return response
        finally:
            headers = request.headers
            self.requests.append(
                RequestRecord(
                    at=at,
                    wall=wall,
                    method=request.method,
                    path=request.path,
                    route=route,
                    status=status,
                    task_id=x.task_id,
                    authorization="Authorization" in headers,
                    range=headers.get("Range"),
                )
            )

    async def _answer(
        self, route: Route, handler: _Handler, request: web.Request, x: _Exchange
    ) -> web.StreamResponse:
        if x.rid:  # the gateway, not the CDN
            refusal = self._refuse(request, x.rid)
            if self._latency:
                await asyncio.sleep(self._latency)
            if refusal is not None:
                return refusal
        fault = x.fault = self._take_fault(route)
        if fault is None:
            return await self._handle(handler, request, x)
        response = None
        if route in _CREATE_ROUTES and fault.status is None and fault.drop != "before":
            # The gateway accepts the task before the delay or the drop: the client cannot know.
            response = await self._handle(handler, request, x)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            return self._fault_response(fault)
        if fault.drop is not None:
            return self._hang_up(request, x)
        if response is None:
            response = await self._handle(handler, request, x)
        return response

    @staticmethod
    async def _handle(handler: _Handler, request: web.Request, x: _Exchange) -> web.StreamResponse:
        try:
            return await handler(request, x)
        except _Reply as reply:
            return reply.response

    def _refuse(self, request: web.Request, rid: str) -> web.Response | None:
        """Answer 401 to a bad key and 429 over the rate limit; None to let a request in."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or self._api_key not in (None, key):
            return _gateway_error(rid, 401, "Invalid token", "")
        if self._rate_limit is None:
            return None
        limit, window = self._rate_limit
        now = time.monotonic()
        log = self._windows[key]
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) < limit:
            log.append(now)
            return None
        self.rate_limited += 1
        headers = {}
        if self._retry_after is not None:
            headers["Retry-After"] = str(math.ceil(self._retry_after))
        if self._rate_limit_body == "json":
            return _gateway_error(rid, 429, _SATURATED, "token_concurrency_limit_reached", headers)
        if self._rate_limit_body == "task":
            return _task_error(429, "fail_to_fetch_task", _SATURATED, headers)
        return web.Response(status=429, headers=headers)

    def _take_fault(self, route: Route) -> _Fault | None:
        for target in (route,) if route == "cdn" else (route, "any"):
            queue = self._faults.get(target)
            if queue:
                fault = queue[0]
                fault.times -= 1
                if not fault.times:
                    queue.popleft()
                return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        assert fault.status is not None
        phrase = HTTPStatus(fault.status).phrase
        if fault.body == "html":
            page = _NGINX_PAGE.format(f"{fault.status} {phrase}")
            return web.Response(status=fault.status, text=page, content_type="text/html")
        if fault.body == "empty":
            return web.Response(status=fault.status)
        code = fault.code or "do_request_failed"
        return _task_error(fault.status, code, fault.message or phrase)

    @staticmethod
    def _hang_up(request: web.Request, x: _Exchange) -> web.StreamResponse:
        """Close the connection without an answer.

        aiohttp then fails to send the returned response on the closed transport and treats
        that as a client disconnection: the client sees the connection closed, and aiohttp
        logs nothing above debug level.
        """
        x.dropped = True
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    # Tasks

    def _admit(
        self, x: _Exchange, body: dict[str, Any], default_model: str | None = None
    ) -> tuple[Family, str]:
        """Validate a create body and take one unit of quota: the family and model to create."""
        model = body.get("model", default_model)
        if not isinstance(model, str) or not model:
            raise _Reply(_task_error(400, "missing_model", "model is required"))
        family = _family(model)
        if family is None:
            message = f"No available channel for model {model} under group default"
            raise _Reply(_gateway_error(x.rid, 503, message, "model_not_found"))
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Reply(_task_error(400, "invalid_request", "prompt is required"))
        if family == "veo" and body.get("size", "720x1280") not in _VEO_SIZES:
            message = f"invalid size {body['size']!r}: use 720x1280 or 1280x720"
            raise _Reply(_task_error(400, "invalid_size", message))
        if self._quota is not None:
            if self._quota <= 0:
                message = "user quota is not enough"
                raise _Reply(_gateway_error(x.rid, 403, message, "insufficient_user_quota"))
            self._quota -= 1
        return family, model

    def _add_task(
        self,
        x: _Exchange,
        *,
        task_id: str,
        family: Family,
        model: str,
        body: dict[str, Any],
        upstream_id: str | None = None,
    ) -> SimTask:
        """Register a new task, with its drawn duration and outcome."""
        rng = self._rng
        if callable(self._duration):
            duration = self._duration(model, rng)
        else:
            duration = rng.uniform(*self._duration)
        failed = rng.random() < self._failure_rate
        # A refreshed gateway shows the end at the first tick after it; "unknown" hides it.
        visible_after = duration
        if self._refresh:
            visible_after = math.ceil(duration / self._refresh) * self._refresh
        visible_after = max(visible_after, self._unknown_for)
        created, wall = time.monotonic(), time.time()
        task = SimTask(
            id=task_id,
            family=family,
            model=model,
            body=body,
            created=created,
            wall_created=wall,
            duration=duration,
            outcome="failed" if failed else "completed",
            reason=rng.choice(_FAILURE_REASONS) if failed else None,
            terminal_at=created + visible_after,
            wall_terminal_at=wall + visible_after,
            upstream_id=upstream_id,
        )
        self.tasks[task_id] = task
        if family == "grok" and upstream_id is not None:
            self._aliases[upstream_id] = task
        self._bodies[json.dumps(body, sort_keys=True, separators=(",", ":"))] += 1
        x.task_id = task_id
        return task

    def _lookup(self, task_id: str) -> SimTask | None:
        return self.tasks.get(task_id) or self._aliases.get(task_id)

    def _find(self, x: _Exchange, task_id: str) -> SimTask:
        """The task a query asks about, or a 400 ``task_not_exist``."""
        x.task_id = task_id
        task = self._lookup(task_id)
        if task is None:
            raise _Reply(_task_error(400, "task_not_exist", "task_not_exist"))
        x.task_id = task.id
        return task

    def _view(self, task: SimTask, now: float) -> _View:
        if now >= task.terminal_at:
            return _View(task.outcome, 1.0, task.wall_terminal_at)
        elapsed = now - task.created
        if elapsed < self._unknown_for:
            return _View("unknown", 0.0, task.wall_created)
        if self._refresh:
            elapsed -= elapsed % self._refresh
        fraction = min(elapsed / task.duration if task.duration else 1.0, 0.99)
        phase: _Phase = "queued" if fraction < 0.1 else "running"
        return _View(phase, fraction, task.wall_created + elapsed)

    def _poll(self, task: SimTask) -> _View:
        """The state a query sees, counted as a poll."""
        now = time.monotonic()
        task.polls += 1
        if now >= task.terminal_at:
            task.polls_after_terminal += 1
        return self._view(task, now)

    def _result_url(self, task: SimTask) -> str:
        """A freshly signed CDN URL for a completed task's video."""
        if self._url_ttl is None:
            expires = int(time.time()) + 12 * 3600
        else:
            expires = math.ceil(time.time() + self._url_ttl)
        name = quote(task.id, safe="")
        return f"{self.cdn_url}/v/{name}.mp4?expires={expires}&sig={self._sign(task.id, expires)}"

    def _sign(self, task_id: str, expires: int) -> str:
        message = f"{task_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    # Gateway handlers

    async def _create(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        body = await _read_json(request)
        family, model = self._admit(x, body)
        rng = self._rng
        upstream_id = None
        if family == "veo":
            task_id, upstream_id = f"video_{_uuid(rng)}", f"task_{_ulid(rng)}"
        elif family == "sora":
            task_id = f"{model}:task_{_ulid(rng)}"
        elif family == "grok":
            task_id, upstream_id = f"grok:{_uuid(rng)}", _uuid(rng)
        else:
            task_id = _uuid(rng)
        task = self._add_task(
            x, task_id=task_id, family=family, model=model, body=body, upstream_id=upstream_id
        )
        return _json(200, _UNIFIED_CREATE[family](task))

    async def _query(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task_id = request.query.get("id")
        if not task_id:
            raise _Reply(_task_error(400, "invalid_request", "id is required"))
        task = self._find(x, task_id)
        view = self._poll(task)
        url = self._result_url(task) if view.phase == "completed" else None
        return _json(200, _UNIFIED_QUERY[task.family](task, view, url))

    async def _content(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task_id = x.task_id = request.match_info["task_id"]
        task = self._lookup(task_id)
        if task is None:
            error = {"message": "Task not found", "type": "invalid_request_error"}
            return _json(404, {"error": error})
        x.task_id = task.id
        phase = self._view(task, time.monotonic()).phase
        if phase != "completed":
            status = _STATUS["native"][phase]
            message = f"Task is not completed yet, current status: {status}"
            return _json(400, {"error": {"message": message, "type": "invalid_request_error"}})
        return await self._send_video(request, x)

    async def _videos_create(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            body = await _read_form(request)
        else:
            body = await _read_json(request)
        family, model = self._admit(x, body, default_model="sora-2")
        task_id = f"video_{self._rng.getrandbits(128):032x}"
        task = self._add_task(x, task_id=task_id, family=family, model=model, body=body)
        return _json(200, _openai_video(task, _View("queued", 0.0, task.wall_created)))

    async def _videos_query(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task = self._find(x, request.match_info["task_id"])
        return _json(200, _openai_video(task, self._poll(task)))

    async def _native_create(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        body = await _read_json(request)
        family, model = self._admit(x, body)
        task_id = _uuid(self._rng)
        task = self._add_task(x, task_id=task_id, family=family, model=model, body=body)
        return _json(200, {"code": "success", "message": "", "data": {"task_id": task.id}})

    async def _native_query(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task = self._find(x, request.match_info["task_id"])
        view = self._poll(task)
        url = self._result_url(task) if view.phase == "completed" else None
        data = {
            "task_id": task.id,
            "status": _STATUS["native"][view.phase],
            "progress": f"{_percent(view)}%",
            "fail_reason": task.reason if view.phase == "failed" else "",
            "result_url": url or "",
            "data": {"content": {"video_url": url}} if url else {},
        }
        return _json(200, {"code": "success", "message": "", "data": data})

    async def _invalid_url(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        message = f"Invalid URL ({request.method} {request.path})"
        error = {"message": message, "type": "invalid_request_error", "code": ""}
        return _json(404, {"error": error})

    # The CDN

    async def _cdn(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        match = _CDN_PATH.fullmatch(request.path)
        if request.method != "GET" or match is None:
            return _access_denied("Access Denied")
        task_id = x.task_id = match[1]
        expires, signature = request.query.get("expires", ""), request.query.get("sig", "")
        if (
            not expires.isdigit()
            or not hmac.compare_digest(signature, self._sign(task_id, int(expires)))
            or task_id not in self.tasks
        ):
            return _access_denied("Access Denied")
        if time.time() >= int(expires):
            return _access_denied("Request has expired")
        return await self._send_video(request, x)

    # Bodies

    async def _send_video(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        """Stream the video, or the part of it that a ``Range`` header asks for."""
        data, headers = self._video, {"Accept-Ranges": "bytes"}
        if x.rid:
            headers[_REQUEST_ID] = x.rid
        start, end, status = 0, len(data), 200
        span = _byte_range(request.headers.get("Range", ""), len(data))
        if span is not None:
            start, end = span
            if start >= end:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return web.Response(status=416, headers=headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "video/mp4"
        response.content_length = end - start
        await response.prepare(request)
        truncate = x.fault.truncate if x.fault is not None else None
        stop = end if truncate is None else min(end, start + truncate)
        view = memoryview(data)
        for offset in range(start, stop, _CHUNK):
            await response.write(view[offset : min(offset + _CHUNK, stop)])
        if truncate is not None and request.transport is not None:
            request.transport.close()  # the rest of Content-Length never comes
        else:
            await response.write_eof()
        return response
