"""The simulated gateway: the :class:`Simulator` app, its routes, its tasks, its introspection.

The simulator answers on two sites: the gateway (``url``), with the unified (and remix),
OpenAI-format and native task routes and their error shapes, and a "CDN" (``cdn_url``) that
serves the signed, expiring result URLs (or, by option, the result URLs are the gateway's own
``/v1/videos/{id}/content``). Which family answers which shape on which route: see
``_shapes``. Each task gets its plan (duration, outcome, progress pattern) when it is
created, and every query renders its state at that instant in the shape of the family or route
it is asked on. Time is read through one clock, and every duration is divided by
``time_scale``, so a workload of minutes runs in seconds.

Nothing here binds an event loop before :meth:`Simulator.start`, and every request costs O(1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, get_args

import attrs
from aiohttp import web

from ._faults import (
    Conditions,
    Fault,
    FaultRoute,
    LimitBody,
    RateLimit,
    Script,
    Spoiler,
    Storms,
    error_response,
    too_many,
)
from ._faults import retry_after as _retry_after
from ._media import CDN_PATH, Signer, access_denied, content_path, sample_video, send_video
from ._shapes import (
    CREATE_ROUTES,
    POLL_AFTER,
    REQUEST_ID,
    STATUS,
    UNIFIED_CREATE,
    UNIFIED_QUERY,
    Reply,
    Route,
    converted_create,
    converted_video,
    gateway_error,
    json_response,
    kling_id,
    native_plain,
    native_task,
    new_ulid,
    new_uuid,
    openai_video,
    public_id,
    request_id,
    seedance_id,
    task_error,
)
from ._tasks import (
    FAILURE_REASONS,
    FAMILIES,
    TIMEOUT_REASON,
    UNIFIED_FAMILIES,
    Family,
    Pattern,
    SimTask,
    Steps,
    View,
    draw_steps,
    family_of,
    view,
    visible_after,
)
from ._workloads import Jobs, Workload, kind_of, workload_named

__all__ = ["NativeShape", "RequestRecord", "ResultUrl", "Simulator"]

NativeShape = Literal["wrapped", "plain"]
"""The native route's two answer shapes: "wrapped" ``{code, message, data}`` with upper-case
statuses, or "plain": bare, lower-case statuses, ``url``, ``format``, ``metadata``, ``error``."""

ResultUrl = Literal["cdn", "proxy", "path"]
"""Where a completed task's result URL points: a signed URL on the CDN; the gateway's own
``{gateway}/v1/videos/{id}/content`` ("proxy", which needs the key); or that path alone."""

_MAX_BODY = 8 * 1024 * 1024
_VEO_SIZES = frozenset({"720x1280", "1280x720"})
_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
_SECONDS = re.compile(r"[0-9]{1,3}")
_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64,(.*)", re.DOTALL)
_MEDIA_TYPES = ("image/", "video/", "audio/")
_TEXT_FIELDS = frozenset({"model", "prompt", "negative_prompt", "task_id"})
_FIRST_ROW = 48_200  # the native route's integer row id of the first task
_URL_VALID = 12 * 3600.0  # how long a result URL is valid when url_ttl is None
_EXPIRES_IN = 86400.0  # an OpenAI video's expires_at, after its creation
_DEFAULT_DURATION = (1.0, 3.0)


@attrs.frozen
class RequestRecord:
    """One request as the simulator saw it; ``status`` is 0 if the connection was dropped."""

    at: float  # the simulator's clock on arrival
    wall: float  # the simulator's wall time on arrival
    method: str
    path: str
    route: Route
    status: int
    task_id: str | None  # the task created or asked about, if any
    authorization: bool  # whether an Authorization header was sent
    range: str | None  # the Range header, if any
    raw_path: str = ""  # the path and query exactly as sent, percent-encoding and all


@attrs.define
class _Exchange:
    """What the handling of one request learns, for its record."""

    rid: str  # the request id; "" on the CDN, which sends none
    task_id: str | None = None
    fault: Fault | None = None
    dropped: bool = False


_Handler = Callable[[web.Request, _Exchange], Awaitable[web.StreamResponse]]
_T = TypeVar("_T")


async def _read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 ``invalid_json`` or a 413."""
    body = await _read(request, request.read)
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise Reply(task_error(400, "invalid_json", f"invalid request body: {exc}")) from None
    if not isinstance(value, dict):
        raise Reply(task_error(400, "invalid_json", "request body must be a JSON object"))
    return value


def _check_seconds_and_size(body: dict[str, Any]) -> None:
    """``/v1/videos``: ``seconds`` a whole number 1-60 (a string, or an int), ``size`` WxH."""
    seconds = body.get("seconds")
    if seconds is not None:
        text = str(seconds) if type(seconds) is int else seconds
        if not isinstance(text, str) or not _SECONDS.fullmatch(text) or not 1 <= int(text) <= 60:
            message = f"invalid seconds {seconds!r}: a whole number of seconds, 1 to 60"
            raise Reply(task_error(400, "invalid_request", message))
    size = body.get("size")
    if size is not None:
        match = _SIZE.fullmatch(size) if isinstance(size, str) else None
        if match is None or not all(16 <= int(side) <= 4096 for side in match.groups()):
            message = f"invalid size {size!r}: use WIDTHxHEIGHT, e.g. 1280x720"
            raise Reply(task_error(400, "invalid_size", message))


def _summary(content: bytes, content_type: str) -> dict[str, Any]:
    return {
        "content_type": content_type,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def _decode_data_uri(value: str, where: str) -> dict[str, Any]:
    """A ``data:<type>;base64,...`` media URI's summary (type, size, SHA-256), or a 400."""
    match = _DATA_URI.fullmatch(value)
    content_type = match[1].lower() if match else ""
    if match is None or not content_type.startswith(_MEDIA_TYPES):
        message = f"invalid data URI in {where}: expected data:image/<type>;base64,<data>"
        raise Reply(task_error(400, "invalid_request", message))
    try:
        content = base64.b64decode(match[3], validate=True)
    except (binascii.Error, ValueError):
        content = b""
    if not content:
        raise Reply(task_error(400, "invalid_request", f"invalid base64 data in {where}"))
    return _summary(content, content_type)


def _is_data_uri(value: object) -> bool:
    return isinstance(value, str) and value[:5].lower() == "data:"


def _decode_media(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with each data URI (a field, or an item of a list field) replaced by its summary.

    A body without data URIs is returned as is; text fields (the prompt) are never decoded.
    """
    decoded: dict[str, Any] | None = None
    for key, value in body.items():
        if key in _TEXT_FIELDS:
            continue
        if _is_data_uri(value):
            new: Any = _decode_data_uri(value, key)
        elif isinstance(value, list) and any(_is_data_uri(item) for item in value):
            new = [
                _decode_data_uri(item, f"{key}[{index}]") if _is_data_uri(item) else item
                for index, item in enumerate(value)
            ]
        else:
            continue
        if decoded is None:
            decoded = dict(body)
        decoded[key] = new
    return body if decoded is None else decoded


async def _read_form(request: web.Request) -> dict[str, Any]:
    """A form's fields; a file becomes a summary: name, type, size and SHA-256."""
    form = await _read(request, request.post)
    body: dict[str, Any] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            with value.file:
                content = value.file.read()
            body[name] = {"filename": value.filename, **_summary(content, value.content_type)}
        else:
            body[name] = value.decode() if isinstance(value, bytes) else value
    return body


def _result_urls(choice: ResultUrl | Mapping[str, ResultUrl]) -> dict[str, ResultUrl]:
    """The result URL choice of every family, from one choice or a mapping of families."""
    choices = get_args(ResultUrl)
    if isinstance(choice, str):
        if choice not in choices:
            raise ValueError(f"result_url must be cdn, proxy or path, not {choice!r}")
        return dict.fromkeys(FAMILIES, choice)
    urls: dict[str, ResultUrl] = dict.fromkeys(FAMILIES, "cdn")
    for family, each in choice.items():
        if family not in FAMILIES or each not in choices:
            raise ValueError(f"result_url maps families to cdn, proxy or path, not {choice!r}")
        urls[family] = each
    return urls


async def _read(request: web.Request, read: Callable[[], Awaitable[_T]]) -> _T:
    """Read the body with ``read``, or answer 413 past the gateway's 8 MiB."""
    try:
        return await read()
    except web.HTTPRequestEntityTooLarge:
        message = "read request body failed: http: request body too large"
        raise Reply(task_error(413, "read_request_body_failed", message)) from None


class Simulator:
    """A local imitation of the octopusx gateway, on loopback, with real-world faults.

    Use it as an async context manager, or from synchronous code with :meth:`run_in_thread`::

        async with Simulator(duration=(0.2, 0.5), failure_rate=0.1, seed=1) as sim:
            ...  # point a client at sim.url with sim.api_key

        async with Simulator(workload="sora+faults", time_scale=40, seed=1) as sim:
            ...  # Sora's minutes in seconds, with WORKLOADS.md's faults; sim.describe()

    Args:
        api_key: the bearer key to accept; None accepts any non-empty key.
        host: the address both sites bind to.
        port: the gateway's port (0: any free port). The CDN always takes a free port.
        seed: seeds the durations, outcomes, patterns, ids and every random fault.
        clock: a zero-argument callable returning monotonic seconds, read for every instant
            (durations, refresh ticks, the rate limit's window, storms, URL expiry, request
            records). Wall times in answers follow it from the wall time at :meth:`start`.
        time_scale: divides every duration the simulator is given (task durations, refresh,
            unknown_for, queue phases, latency, slow_delay, not_found_for, storms, the rate
            limit's window, url_ttl, injected delays, Retry-After and poll-after values), so
            that a workload's minutes run in seconds. The wall times in answers (stamps,
            ``created_at``, URL expiry) run at the workload's pace instead, ``time_scale``
            seconds a second from the wall time at start: a 3-minute task's stamps are 3
            minutes apart, for a client whose clocks are scaled the same way.
        workload: a :class:`~octovid.testing.Workload`, or its name in ``WORKLOADS`` or
            ``ROUTE_WORKLOADS``: draws each task's duration, outcome, progress pattern, refresh
            and "unknown" period from the workload's entry for the model's kind (whatever the
            route), and takes the workload's conditions. It excludes ``duration``,
            ``failure_rate``, ``refresh``, ``unknown_for`` and the condition options (change
            those with ``Workload.with_conditions``).
        duration: seconds from create to the terminal state: ``(min, max)`` drawn uniformly,
            or a callable ``(model, rng) -> seconds``.
        failure_rate: the fraction of tasks that end failed, with a reason.
        refresh: the gateway's state refresh period: queries see a task as it was at the last
            tick (every ``refresh`` seconds since its creation; since :meth:`start` for a
            workload's tasks); 0 shows the live state.
        unknown_for: queries within this many seconds of a create report status "unknown".
        rate_limit: ``(requests, window)`` allowed per key over every gateway route, as a
            sliding-window log; requests it refuses do not count. Checked after
            authentication, before anything else.
        rate_limit_body: the body of the limit's and the storms' 429s: "json"
            (``token_concurrency_limit_reached``), "task" (``fail_to_fetch_task``) or "empty".
        retry_after: if set, the limit's and the storms' 429s carry ``Retry-After`` (whole
            seconds, rounded up, then time-scaled).
        latency: seconds added before every gateway answer.
        url_ttl: result URLs expire this many seconds after they are issued (rounded up to the
            whole second of their ``expires``); None: valid for 12 h and never checked.
        quota: the number of creates allowed, then 403 ``insufficient_user_quota``.
        video: the bytes served as every video; by default a 1 s, 96x64 H.264 MP4.
        poll_after_ms: if set, answers of ``GET /v1/videos/{id}`` carry the header
            ``openai-poll-after-ms`` with this value (time-scaled), as the official OpenAI
            client expects.
        native_shape: the shape of every native answer, "wrapped" or "plain" (see
            :data:`NativeShape`); None: "plain" for Seedance, "wrapped" for the others.
        result_url: where completed tasks' result URLs point (see :data:`ResultUrl`): one
            choice for every family, or a mapping from families to choices ("cdn" for the
            families it leaves out).

    The random conditions ``sporadic_429``, ``sporadic_429_creates_only``,
    ``sporadic_retry_after``, ``sporadic_retry_after_value``, ``storms``, ``error_rate``,
    ``drop_before_rate``, ``drop_after_rate``, ``slow_rate``, ``slow_delay``, ``not_found_for``,
    ``stuck_rate`` and ``reason_in_url`` are all off by default: see
    :class:`~octovid.testing.Conditions`.

    Routes and their request names (``RequestRecord.route``, ``inject(route=...)``): "create"
    and "query" (unified; Veo, Sora, Grok, Vidu, Jimeng), "remix" (``POST /v1/video/remix``, a
    new Grok task from an earlier one, queried on the unified route), "videos_create" and
    "videos_query" (``/v1/videos``, every family), "native_create" and "native_query"
    (``/v1/video/generations``, every family), "content" (``/v1/videos/{id}/content``, for a
    task of any route), "cdn" and "other". Every create route takes quota and suffers the
    create faults (drops after create, slow accepted creates); every query route the query
    faults and ``not_found_for``; the rate limit and storms count every gateway request.

    Introspection (``requests``, ``tasks``, ``rate_limited``, ``faults_served``,
    ``creates_per_body``, ``max_rate``, ``describe``) and scripting (``inject``, ``finish``,
    ``stall``, ``storm``) are plain data-structure operations, safe to use from the thread that
    called :meth:`run_in_thread`.
    """

    __slots__ = (
        "_aliases",
        "_api_key",
        "_bodies",
        "_clock",
        "_conditions",
        "_duration",
        "_epoch",
        "_failure_rate",
        "_fault_rng",
        "_host",
        "_jobs",
        "_latency",
        "_limit",
        "_native_shape",
        "_not_found_for",
        "_poll_after",
        "_port",
        "_quota",
        "_rate_limit",
        "_rate_limit_body",
        "_refresh",
        "_result_urls",
        "_retry_after",
        "_rng",
        "_runners",
        "_scale",
        "_script",
        "_seed",
        "_signer",
        "_slow_delay",
        "_spoiler",
        "_storms",
        "_unknown_for",
        "_url_ttl",
        "_urls",
        "_video",
        "_wall_epoch",
        "_workload",
        "faults_served",
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
        clock: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
        workload: Workload | str | None = None,
        duration: tuple[float, float] | Callable[[str, random.Random], float] = _DEFAULT_DURATION,
        failure_rate: float = 0.0,
        refresh: float = 0.0,
        unknown_for: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
        rate_limit_body: LimitBody = "json",
        retry_after: float | None = None,
        latency: float = 0.0,
        url_ttl: float | None = None,
        quota: int | None = None,
        video: bytes | None = None,
        poll_after_ms: int | None = None,
        native_shape: NativeShape | None = None,
        result_url: ResultUrl | Mapping[str, ResultUrl] = "cdn",
        sporadic_429: float = 0.0,
        sporadic_429_creates_only: bool = False,
        sporadic_retry_after: float = 0.0,
        sporadic_retry_after_value: float = 1.0,
        storms: Sequence[tuple[float, float]] = (),
        error_rate: float = 0.0,
        drop_before_rate: float = 0.0,
        drop_after_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_delay: float = 30.0,
        not_found_for: float = 0.0,
        stuck_rate: float = 0.0,
        reason_in_url: float = 0.0,
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
        if not time_scale > 0 or math.isinf(time_scale):
            raise ValueError(f"time_scale must be a positive number, not {time_scale}")
        if poll_after_ms is not None and poll_after_ms < 0:
            raise ValueError(f"poll_after_ms must not be negative, not {poll_after_ms}")
        if native_shape not in (None, *get_args(NativeShape)):
            raise ValueError(f"native_shape must be None, wrapped or plain, not {native_shape!r}")
        result_urls = _result_urls(result_url)
        conditions = Conditions(
            sporadic_429=sporadic_429,
            sporadic_429_creates_only=sporadic_429_creates_only,
            sporadic_retry_after=sporadic_retry_after,
            sporadic_retry_after_value=sporadic_retry_after_value,
            storms=storms,
            error_rate=error_rate,
            drop_before_rate=drop_before_rate,
            drop_after_rate=drop_after_rate,
            slow_rate=slow_rate,
            slow_delay=slow_delay,
            not_found_for=not_found_for,
            stuck_rate=stuck_rate,
            reason_in_url=reason_in_url,
        )
        if isinstance(workload, str):
            workload = workload_named(workload)
        if workload is not None:
            if (duration, failure_rate, refresh, unknown_for) != (_DEFAULT_DURATION, 0, 0, 0):
                raise ValueError(
                    "a workload draws durations, failures, refresh and unknown_for itself"
                )
            if conditions != Conditions():
                raise ValueError(
                    "a workload brings its conditions: change them with "
                    "workload.with_conditions(...)"
                )
            conditions = workload.conditions
        scale = time_scale
        self._api_key = api_key
        self._host = host
        self._port = port
        self._seed = seed
        self._rng = random.Random(seed)
        # Faults draw from their own stream, so that turning them on leaves the tasks' plans.
        self._fault_rng = random.Random(None if seed is None else f"{seed}/faults")
        self._clock = clock
        self._epoch = clock()
        self._wall_epoch = time.time()
        self._scale = scale
        self._workload = workload
        self._jobs: dict[str, Jobs] = {} if workload is None else dict(workload.jobs)
        self._duration = duration
        self._failure_rate = failure_rate
        self._refresh = refresh / scale
        self._unknown_for = unknown_for / scale
        self._rate_limit = rate_limit
        self._limit = None
        if rate_limit is not None:
            self._limit = RateLimit(rate_limit[0], rate_limit[1] / scale)
        self._rate_limit_body: LimitBody = rate_limit_body
        self._retry_after = None if retry_after is None else _retry_after(retry_after, scale)
        self._latency = latency / scale
        self._url_ttl = None if url_ttl is None else url_ttl / scale
        self._quota = quota
        self._video = sample_video() if video is None else video
        self._poll_after = None
        if poll_after_ms is not None:
            scaled = round(poll_after_ms / scale)
            self._poll_after = str(max(scaled, 1) if poll_after_ms else 0)
        self._native_shape: NativeShape | None = native_shape
        self._result_urls = result_urls
        self._conditions = conditions
        self._spoiler = Spoiler(conditions, self._fault_rng)
        self._slow_delay = conditions.slow_delay / scale
        self._not_found_for = conditions.not_found_for / scale
        self._storms = Storms()
        self._script = Script()
        self._signer = Signer()
        self._runners: list[web.AppRunner] = []
        self._urls: list[str] = []
        self._aliases: dict[str, SimTask] = {}
        self._bodies: collections.Counter[str] = collections.Counter()
        self.requests: list[RequestRecord] = []
        """Every request, in the order they were answered (sort by ``at`` for arrivals)."""
        self.tasks: dict[str, SimTask] = {}
        """Every task, by the id its create answer gave."""
        self.rate_limited = 0
        """The number of 429s sent, whatever their cause."""
        self.faults_served: collections.Counter[str] = collections.Counter()
        """The faults served, by kind: "limit_429", "storm_429", "sporadic_429", "error",
        "drop_before", "drop_after", "slow", "not_found", "stuck" (tasks) and "injected"."""

    def __repr__(self) -> str:
        where = self._urls[0] if self._urls else "not started"
        workload = f" workload={self._workload.name}" if self._workload else ""
        return (
            f"<Simulator {where}{workload} tasks={len(self.tasks)} requests={len(self.requests)}>"
        )

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

    @property
    def time_scale(self) -> float:
        """The factor every duration is divided by: multiply a measured time by it."""
        return self._scale

    @property
    def workload(self) -> Workload | None:
        """The workload the tasks are drawn from, if any."""
        return self._workload

    @property
    def conditions(self) -> Conditions:
        """The random conditions in force, in the workload's seconds."""
        return self._conditions

    def _started_urls(self) -> list[str]:
        if not self._urls:
            raise RuntimeError("the simulator is not started")
        return self._urls

    def _wall(self, now: float) -> float:
        """The wall time of the clock's instant ``now``: at the workload's pace, from start."""
        return self._wall_epoch + (now - self._epoch) * self._scale

    # Lifecycle

    async def start(self) -> None:
        """Bind both sites and start serving; scheduled storms count from now."""
        if self._runners:
            raise RuntimeError("the simulator is already started")
        gateway = web.Application(client_max_size=_MAX_BODY)
        routes: list[tuple[str, str, Route, _Handler]] = [
            ("POST", "/v1/video/create", "create", self._create),
            ("GET", "/v1/video/query", "query", self._query),
            ("POST", "/v1/video/remix", "remix", self._remix),
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
        self._epoch, self._wall_epoch = self._clock(), time.time()
        for offset, length in self._conditions.storms:
            self._storms.add(self._epoch + offset / self._scale, length / self._scale)

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
        retry_after: float | None = None,
    ) -> None:
        """Spoil the next ``times`` requests of ``route`` that pass authentication, the limiter
        and any storm.

        Args:
            route: the route to spoil; faults for a route are used before faults for "any".
            status: answer with this status and ``body``: "json" (the task routes' shape, code
                ``code`` or ``do_request_failed``), "html" (an nginx error page) or "empty".
            drop: close the connection without an answer, "before" doing anything, or (creates
                only; "any" drops other routes before) "after" creating the task exactly as a
                normal create would.
            delay: seconds (time-scaled) to wait before answering. A create creates its task
                first.
            truncate: (content and cdn) send the headers with the full ``Content-Length``, then
                only this many bytes of the body, then close the connection.
            times: how many requests to spoil.
            retry_after: with ``status``, the seconds (time-scaled) of a ``Retry-After``.

        A scripted fault takes the place of the random conditions for its request.
        aiohttp's client resends an idempotent request (GET) once when a reused connection
        drops: give a dropped GET ``times=2`` for such a client to see the disconnect.
        """
        self._script.add(
            route,
            status=status,
            body=body,
            code=code,
            message=message,
            drop=drop,
            delay=delay / self._scale,
            truncate=truncate,
            times=times,
            retry_after=None if retry_after is None else _retry_after(retry_after, self._scale),
        )

    def storm(self, duration: float) -> None:
        """Answer every gateway request 429 for the next ``duration`` seconds (time-scaled).

        The refusal is decided when the answer is sent, so requests that arrived just before
        and are still being handled (``latency``, slow answers) are refused too.
        """
        if not duration > 0:
            raise ValueError(f"a storm lasts a positive duration, not {duration}")
        self._storms.add(self._clock(), duration / self._scale)

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
        now = self._clock()
        if now < task.terminal_at:
            task.terminal_at, task.wall_terminal_at = now, self._wall(now)

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

    def describe(self) -> str:
        """One line saying what this simulator runs: workload or options, conditions, scale."""
        if self._workload is not None:
            what = f"workload {self._workload.name}"
        elif callable(self._duration):
            what = f"custom durations, failure rate {self._failure_rate:g}"
        else:
            low, high = self._duration
            what = f"durations {low:g}-{high:g} s, failure rate {self._failure_rate:g}"
            if self._refresh or self._unknown_for:
                what += f", refresh {self._refresh * self._scale:g} s"
                what += f", unknown for {self._unknown_for * self._scale:g} s"
        parts = [what, self._conditions.describe()]
        if self._rate_limit is not None:
            parts.append(f"rate limit {self._rate_limit[0]}/{self._rate_limit[1]:g} s")
        if self._native_shape is not None:
            parts.append(f"native shape {self._native_shape}")
        urls = self._result_urls.items()
        elsewhere = sorted(f"{family} {each}" for family, each in urls if each != "cdn")
        if elsewhere:
            parts.append("result URLs " + ", ".join(elsewhere))
        parts.append(f"time scale {self._scale:g}, seed {self._seed}")
        return "; ".join(parts)

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

    # The request pipeline: record, authenticate, limit, storm, spoil, handle.

    def _endpoint(
        self, route: Route, handler: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._serve(route, handler, request)

        return endpoint

    async def _serve(
        self, route: Route, handler: _Handler, request: web.Request
    ) -> web.StreamResponse:
        at = self._clock()
        wall = self._wall(at)
        x = _Exchange("" if route == "cdn" else request_id(wall))
        status = 500  # what aiohttp answers if the handler raises
        try:
            response = await self._answer(route, handler, request, x)
            if x.rid and not response.prepared:
                response.headers[REQUEST_ID] = x.rid
            status = 0 if x.dropped else response.status
            return response
        finally:
            if status == 429:
                self.rate_limited += 1
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
                    raw_path=request.raw_path,
                )
            )

    async def _answer(
        self, route: Route, handler: _Handler, request: web.Request, x: _Exchange
    ) -> web.StreamResponse:
        if not x.rid:  # the CDN: only scripted faults
            x.fault = self._script.take(route)
            return await self._scripted(route, handler, request, x)
        refusal = self._refuse(request, x.rid)
        if self._latency:
            await asyncio.sleep(self._latency)
        if refusal is not None:
            return refusal
        if self._storms.active(self._clock()):  # decided at answer time
            return self._storm_429(x)
        x.fault = self._script.take(route)
        if x.fault is not None:
            self.faults_served["injected"] += 1
            return await self._scripted(route, handler, request, x)
        spoil = self._spoiler.draw(route)
        if spoil is None:
            return await self._handle(handler, request, x)
        self.faults_served[spoil] += 1
        if spoil == "sporadic_429":
            return self._spoiler.sporadic_429(self._scale)
        if spoil == "error":
            return self._spoiler.error()
        if spoil == "drop_before":
            return self._hang_up(request, x)
        if spoil == "drop_after":
            await self._handle(handler, request, x)  # created and billed; the answer is lost
            return self._hang_up(request, x)
        if route in CREATE_ROUTES:  # slow: the gateway accepts the task before the delay
            response = await self._handle(handler, request, x)
            await asyncio.sleep(self._slow_delay)
            return response
        await asyncio.sleep(self._slow_delay)
        if self._storms.active(self._clock()):
            return self._storm_429(x)
        return await self._handle(handler, request, x)

    async def _scripted(
        self, route: Route, handler: _Handler, request: web.Request, x: _Exchange
    ) -> web.StreamResponse:
        """Answer with the request's scripted fault, if it has one."""
        fault = x.fault
        if fault is None:
            return await self._handle(handler, request, x)
        response = None
        if route in CREATE_ROUTES and fault.status is None and fault.drop != "before":
            # The gateway accepts the task before the delay or the drop: the client cannot know.
            response = await self._handle(handler, request, x)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            answer = error_response(fault.status, fault.body, fault.code, fault.message)
            if fault.retry_after is not None:
                answer.headers["Retry-After"] = fault.retry_after
            return answer
        if fault.drop is not None:
            return self._hang_up(request, x)
        if response is None:
            response = await self._handle(handler, request, x)
        return response

    @staticmethod
    async def _handle(handler: _Handler, request: web.Request, x: _Exchange) -> web.StreamResponse:
        try:
            return await handler(request, x)
        except Reply as reply:
            return reply.response

    def _refuse(self, request: web.Request, rid: str) -> web.Response | None:
        """Answer 401 to a bad key and 429 over the rate limit; None to let a request in."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or self._api_key not in (None, key):
            return gateway_error(rid, 401, "Invalid token", "")
        if self._limit is None or self._limit.admit(key, self._clock()):
            return None
        self.faults_served["limit_429"] += 1
        return self._too_many(rid)

    def _storm_429(self, x: _Exchange) -> web.Response:
        self.faults_served["storm_429"] += 1
        return self._too_many(x.rid)

    def _too_many(self, rid: str) -> web.Response:
        headers = {} if self._retry_after is None else {"Retry-After": self._retry_after}
        return too_many(self._rate_limit_body, rid, headers)

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
        self,
        x: _Exchange,
        body: dict[str, Any],
        route: Route,
        default_model: str | None = None,
    ) -> tuple[Family, str, dict[str, Any]]:
        """Validate a create body of ``route`` and take one unit of quota.

        Returns the family and model to create, and the body to keep: with each data URI
        replaced by its summary (type, size, SHA-256).
        """
        model = body.get("model", default_model)
        if not isinstance(model, str) or not model:
            raise Reply(task_error(400, "missing_model", "model is required"))
        family = family_of(model)
        if family is None or (route == "create" and family not in UNIFIED_FAMILIES):
            message = f"No available channel for model {model} under group default"
            raise Reply(gateway_error(x.rid, 503, message, "model_not_found"))
        prompt = body.get("prompt")
        if prompt is None and isinstance(body.get("content"), list):  # Ark's shape: content[]
            texts = [part.get("text") for part in body["content"]
                     if isinstance(part, dict) and part.get("type") == "text"]
            prompt = next((text for text in texts if isinstance(text, str)), None)
        if not isinstance(prompt, str) or not prompt:
            raise Reply(task_error(400, "invalid_request", "prompt is required"))
        if family == "veo" and body.get("size", "720x1280") not in _VEO_SIZES:
            message = f"invalid size {body['size']!r}: use 720x1280 or 1280x720"
            raise Reply(task_error(400, "invalid_size", message))
        if route == "videos_create":
            _check_seconds_and_size(body)
        body = _decode_media(body)
        if self._quota is not None:
            if self._quota <= 0:
                message = "user quota is not enough"
                raise Reply(gateway_error(x.rid, 403, message, "insufficient_user_quota"))
            self._quota -= 1
        return family, model, body

    def _add_task(
        self,
        x: _Exchange,
        *,
        route: Route,
        task_id: str,
        family: Family,
        model: str,
        body: dict[str, Any],
        upstream_id: str | None = None,
        remixed_from: str | None = None,
    ) -> SimTask:
        """Register a new task, with its drawn plan: duration, outcome, progress pattern."""
        rng, scale = self._rng, self._scale
        now = self._clock()
        wall = self._wall(now)
        kind = kind_of(model) if self._workload else None
        jobs = None if kind is None else self._jobs[kind]
        pattern: Pattern = "linear"
        steps = Steps()
        if jobs is None:
            if callable(self._duration):
                duration = self._duration(model, rng) / scale
            else:
                duration = rng.uniform(*self._duration) / scale
            failed = rng.random() < self._failure_rate
            refresh, unknown_for, ticks_from = self._refresh, self._unknown_for, now
        else:
            duration = jobs.draw_duration(rng) / scale
            failed = rng.random() < jobs.failure_rate
            pattern = jobs.draw_pattern(rng)
            steps = draw_steps(pattern, duration, rng)
            refresh, unknown_for = jobs.refresh / scale, jobs.unknown_for / scale
            ticks_from = self._epoch  # the gateway refreshes every task on one grid
        reason = rng.choice(FAILURE_REASONS) if failed else None
        visible = visible_after(duration, refresh, ticks_from, now, unknown_for)
        task = SimTask(
            id=task_id,
            family=family,
            model=model,
            body=body,
            created=now,
            wall_created=wall,
            duration=duration,
            outcome="failed" if failed else "completed",
            reason=reason,
            terminal_at=now + visible,
            wall_terminal_at=wall + visible * scale, pace=scale,
            upstream_id=upstream_id,
            pattern=pattern,
            refresh=refresh,
            ticks_from=ticks_from,
            unknown_for=unknown_for,
            queued_for=steps.queued_for,
            step_at=steps.step_at,
            step_level=steps.step_level,
            stall_for=steps.stall_for,
            route=route,
            row_id=_FIRST_ROW + len(self.tasks),
            remixed_from=remixed_from,
        )
        conditions = self._conditions
        if conditions.stuck_rate and self._fault_rng.random() < conditions.stuck_rate:
            task.frozen_after = self._fault_rng.uniform(0.2, 0.8) * duration
            task.terminal_at = task.wall_terminal_at = math.inf
            self.faults_served["stuck"] += 1
        if conditions.reason_in_url and self._fault_rng.random() < conditions.reason_in_url:
            task.reason_in_url = True
            if failed:
                task.reason = TIMEOUT_REASON
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
            raise Reply(task_error(400, "task_not_exist", "task_not_exist"))
        x.task_id = task.id
        if self._not_found_for and self._clock() - task.created < self._not_found_for:
            self.faults_served["not_found"] += 1
            raise Reply(task_error(400, "task_not_exist", "task_not_exist"))
        return task

    def _poll(self, task: SimTask) -> View:
        """The state a query sees, counted as a poll."""
        now = self._clock()
        task.polls += 1
        if now >= task.terminal_at:
            task.polls_after_terminal += 1
        return view(task, now)

    def _result_url(self, task: SimTask) -> str:
        """A completed task's result URL: freshly signed on the CDN, or the gateway's own."""
        choice = self._result_urls[task.family]
        if choice != "cdn":
            path = content_path(task.id)
            return path if choice == "path" else self.url + path
        wall = self._wall(self._clock())
        if self._url_ttl is None:
            expires = int(wall + _URL_VALID)
        else:
            expires = math.ceil(wall + self._url_ttl * self._scale)
        return self._signer.url(self.cdn_url, task.id, expires)

    def _slot(self, task: SimTask, seen: View) -> str | None:
        """What a task's result-URL slot holds: the result URL once completed, or the failure
        reason once failed if the task carries it there; None otherwise."""
        if seen.phase == "completed":
            return self._result_url(task)
        if seen.phase == "failed" and task.reason_in_url:
            return task.reason
        return None

    def _native_shape_of(self, family: Family) -> NativeShape:
        if self._native_shape is not None:
            return self._native_shape
        return "plain" if family == "seedance" else "wrapped"

    # Gateway handlers

    async def _create(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        body = await _read_json(request)
        family, model, body = self._admit(x, body, "create")
        rng = self._rng
        upstream_id = None
        if family == "veo":
            wall = self._wall(self._clock())
            task_id, upstream_id = f"video_{new_uuid(rng)}", f"task_{new_ulid(rng, wall)}"
        elif family == "sora":
            task_id = f"{model}:task_{new_ulid(rng, self._wall(self._clock()))}"
        elif family == "grok":
            task_id, upstream_id = f"grok:{new_uuid(rng)}", new_uuid(rng)
        else:
            task_id = new_uuid(rng)
        task = self._add_task(
            x,
            route="create",
            task_id=task_id,
            family=family,
            model=model,
            body=body,
            upstream_id=upstream_id,
        )
        return json_response(200, UNIFIED_CREATE[family](task))

    async def _query(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task_id = request.query.get("id")
        if not task_id:
            raise Reply(task_error(400, "invalid_request", "id is required"))
        task = self._find(x, task_id)
        seen = self._poll(task)
        answer = UNIFIED_QUERY[task.family](task, seen, self._slot(task, seen))
        return json_response(200, answer)

    async def _remix(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        """A new Grok task from an earlier one: ``task_id`` and a prompt, a model if another."""
        body = await _read_json(request)
        source_id = body.get("task_id")
        if not isinstance(source_id, str) or not source_id:
            raise Reply(task_error(400, "invalid_request", "task_id is required"))
        source = self._find(x, source_id)
        if source.family != "grok":
            message = f"remix is only supported for grok tasks, not {source.model}"
            raise Reply(task_error(400, "invalid_request", message))
        model = body.get("model")
        if model is not None and (not isinstance(model, str) or family_of(model) != "grok"):
            message = f"remix needs a grok model, not {model!r}"
            raise Reply(task_error(400, "invalid_request", message))
        family, model, body = self._admit(x, body, "remix", default_model=source.model)
        rng = self._rng
        task = self._add_task(
            x,
            route="remix",
            task_id=f"grok:{new_uuid(rng)}",
            family=family,
            model=model,
            body=body,
            upstream_id=new_uuid(rng),
            remixed_from=source.id,
        )
        return json_response(200, UNIFIED_CREATE[family](task))

    async def _content(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task_id = x.task_id = request.match_info["task_id"]
        task = self._lookup(task_id)
        if task is None:
            error = {"message": "Task not found", "type": "invalid_request_error"}
            return json_response(404, {"error": error})
        x.task_id = task.id
        phase = view(task, self._clock()).phase
        if phase != "completed":
            status = STATUS["native"][phase]
            message = f"Task is not completed yet, current status: {status}"
            return json_response(
                400, {"error": {"message": message, "type": "invalid_request_error"}}
            )
        truncate = x.fault.truncate if x.fault is not None else None
        return await send_video(request, self._video, x.rid, truncate)

    async def _videos_create(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            body = await _read_form(request)
        else:
            body = await _read_json(request)
        family, model, body = self._admit(x, body, "videos_create", default_model="sora-2")
        rng = self._rng
        if family == "sora":
            task_id = f"video_{rng.getrandbits(128):032x}"
        elif family == "kling":
            task_id = kling_id(rng)
        else:
            task_id = public_id(rng)
        task = self._add_task(
            x, route="videos_create", task_id=task_id, family=family, model=model, body=body
        )
        if family != "sora":
            return json_response(200, converted_create(task))
        created = View("queued", 0.0, task.wall_created)
        return json_response(200, openai_video(task, created, _EXPIRES_IN))

    async def _videos_query(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task = self._find(x, request.match_info["task_id"])
        seen = self._poll(task)
        if task.family == "sora":
            video = openai_video(task, seen, _EXPIRES_IN)
        else:
            video = converted_video(task, seen, self._slot(task, seen))
        headers = None if self._poll_after is None else {POLL_AFTER: self._poll_after}
        return json_response(200, video, headers)

    async def _native_create(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        body = await _read_json(request)
        family, model, body = self._admit(x, body, "native_create")
        rng = self._rng
        if family == "seedance":
            task_id = seedance_id(rng, self._wall(self._clock()))
        elif family == "kling":
            task_id = kling_id(rng)
        else:
            task_id = new_uuid(rng)
        task = self._add_task(
            x, route="native_create", task_id=task_id, family=family, model=model, body=body
        )
        if self._native_shape_of(family) == "plain":
            return json_response(200, {"task_id": task.id})
        return json_response(200, {"code": "success", "message": "", "data": {"task_id": task.id}})

    async def _native_query(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        task = self._find(x, request.match_info["task_id"])
        seen = self._poll(task)
        slot = self._slot(task, seen)
        if self._native_shape_of(task.family) == "plain":
            return json_response(200, native_plain(task, seen, slot))
        return json_response(200, native_task(task, seen, slot))

    async def _invalid_url(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        message = f"Invalid URL ({request.method} {request.path})"
        error = {"message": message, "type": "invalid_request_error", "code": ""}
        return json_response(404, {"error": error})

    # The CDN

    async def _cdn(self, request: web.Request, x: _Exchange) -> web.StreamResponse:
        match = CDN_PATH.fullmatch(request.path)
        if request.method != "GET" or match is None:
            return access_denied("Access Denied")
        task_id = x.task_id = match[1]
        expires, signature = request.query.get("expires", ""), request.query.get("sig", "")
        if not self._signer.valid(task_id, expires, signature) or task_id not in self.tasks:
            return access_denied("Access Denied")
        if self._wall(self._clock()) >= int(expires):
            return access_denied("Request has expired")
        truncate = x.fault.truncate if x.fault is not None else None
        return await send_video(request, self._video, x.rid, truncate)
