"""What spoils a gateway answer: the key's rate limit, storms, random conditions, scripted faults.

:class:`Conditions` is the frozen description of the random conditions (sporadic 429s, 5xx,
dropped connections, slow answers, tasks unknown for a while, stuck tasks); :class:`Spoiler`
draws them, one draw a request. :class:`RateLimit` is the key's sliding-window budget,
:class:`Storms` the spans in which every request gets a 429, and :class:`Script` the faults
queued by ``Simulator.inject``. Each decision costs O(1).
"""

from __future__ import annotations

import collections
import heapq
import math
import random
from collections.abc import Iterable
from http import HTTPStatus
from typing import Literal, get_args

import attrs
from aiohttp import web

from ._shapes import (
    CREATE_ROUTES,
    QUERY_ROUTES,
    SATURATED,
    gateway_error,
    nginx_page,
    task_error,
)

FaultRoute = Literal[
    "create",
    "query",
    "remix",
    "content",
    "videos_create",
    "videos_query",
    "native_create",
    "native_query",
    "cdn",
    "any",
]
"""The routes a fault can target: ``"any"`` is every gateway route (not the CDN)."""

Spoil = Literal["sporadic_429", "error", "drop_before", "drop_after", "slow"]
"""The random conditions drawn per request; "drop_after" only on creates."""

LimitBody = Literal["json", "task", "empty"]
_CONCURRENCY = "token_concurrency_limit_reached"


# Retry-After and the bodies of 429s


def retry_after(seconds: float, time_scale: float) -> str:
    """A ``Retry-After`` value: ``seconds`` rounded up to whole seconds, then time-scaled.

    Written as an integer when whole, else as a decimal (``0.025``): the whole seconds a real
    gateway would send, in the seconds of a time-scaled run.
    """
    value = math.ceil(seconds) / time_scale
    if value == int(value):
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def too_many(kind: LimitBody, rid: str, headers: dict[str, str]) -> web.Response:
    """A 429 of the key's limit or of a storm, with the body ``kind``."""
    if kind == "json":
        return gateway_error(rid, 429, SATURATED, _CONCURRENCY, headers)
    if kind == "task":
        return task_error(429, "fail_to_fetch_task", SATURATED, headers)
    return web.Response(status=429, headers=headers)


class RateLimit:
    """The key's budget: ``limit`` requests per ``window`` seconds, as a sliding-window log."""

    __slots__ = ("_limit", "_logs", "_window")

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._logs: collections.defaultdict[str, collections.deque[float]] = (
            collections.defaultdict(collections.deque)
        )

    def admit(self, key: str, now: float) -> bool:
        """Count a request of ``key`` at ``now`` and return True, or return False if over."""
        log = self._logs[key]
        while log and log[0] <= now - self._window:
            log.popleft()
        if len(log) < self._limit:
            log.append(now)
            return True
        return False


class Storms:
    """Spans of time in which every gateway request is answered 429."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, float]] = []  # (start, end), the earliest start first

    def add(self, start: float, duration: float) -> None:
        """Add a storm from instant ``start``, lasting ``duration`` seconds."""
        heapq.heappush(self._heap, (start, start + duration))

    def active(self, now: float) -> bool:
        """Whether a storm is raging at ``now`` (instants never go back)."""
        heap = self._heap
        # The earliest-starting storm that has not ended yet decides: if it has not started,
        # no other has. Storms that ended behind it are dropped when they come to the top.
        while heap and heap[0][1] <= now:
            heapq.heappop(heap)
        return bool(heap) and heap[0][0] <= now


# The random conditions


def _storms(value: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    return tuple((float(start), float(duration)) for start, duration in value)


def _probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1, not {value}")


def _not_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, not {value}")


@attrs.frozen(kw_only=True)
class Conditions:
    """The random faults of a gateway, per request; all off by default.

    Durations are in the workload's seconds: the simulator divides them by its ``time_scale``.

    Attributes:
        sporadic_429: the probability that a create or query (any family, any route; not the
            CDN or ``/content``) is refused with an upstream 429 whatever the request rate:
            ``fail_to_fetch_task`` ("upstream load saturated") or
            ``token_concurrency_limit_reached``, about half each, in the task routes' shape.
            A refused create creates nothing.
        sporadic_429_creates_only: limit sporadic 429s to creates.
        sporadic_retry_after: the fraction of sporadic 429s that carry ``Retry-After``.
        sporadic_retry_after_value: the seconds they ask for (rounded up to whole seconds).
        storms: ``(start, duration)`` pairs: from ``start`` seconds after the simulator starts,
            every gateway request answered within ``duration`` seconds gets a 429, whose body
            is the rate limit's.
        error_rate: the probability of a 502 or 503 (half each), half of them a JSON
            ``do_request_failed`` body, half a proxy's nginx HTML page.
        drop_before_rate: the probability that the connection is closed before anything is
            done.
        drop_after_rate: (creates only) the probability that the task is created, and its
            quota taken, then the connection closed without an answer.
        slow_rate: the probability that the answer comes ``slow_delay`` seconds late; a slow
            create creates its task first.
        slow_delay: the lateness of a slow answer, beyond a typical client timeout.
        not_found_for: queries for a task within this many seconds of its create answer 400
            ``task_not_exist``.
        stuck_rate: the fraction of tasks that never finish: running forever, progress frozen.
        reason_in_url: the fraction of failed tasks whose result-URL slot (``video_url``,
            ``url``, ``data.url``, ``metadata.url``, ``data.result_url``) holds the failure
            reason; a task drawn for it that fails by itself fails by the gateway's 24 h
            timeout, its reason the gateway's Chinese "task timed out (1440 minutes)".

    At most one of sporadic_429, error_rate, the drops and slow_rate spoils a request: one draw
    decides, so each is the exact probability on the routes it applies to, and their sum must
    not exceed 1.
    """

    sporadic_429: float = attrs.field(default=0.0, validator=_probability)
    sporadic_429_creates_only: bool = False
    sporadic_retry_after: float = attrs.field(default=0.0, validator=_probability)
    sporadic_retry_after_value: float = attrs.field(default=1.0, validator=_not_negative)
    storms: tuple[tuple[float, float], ...] = attrs.field(default=(), converter=_storms)
    error_rate: float = attrs.field(default=0.0, validator=_probability)
    drop_before_rate: float = attrs.field(default=0.0, validator=_probability)
    drop_after_rate: float = attrs.field(default=0.0, validator=_probability)
    slow_rate: float = attrs.field(default=0.0, validator=_probability)
    slow_delay: float = attrs.field(default=30.0, validator=_not_negative)
    not_found_for: float = attrs.field(default=0.0, validator=_not_negative)
    stuck_rate: float = attrs.field(default=0.0, validator=_probability)
    reason_in_url: float = attrs.field(default=0.0, validator=_probability)

    def __attrs_post_init__(self) -> None:
        spoiled = (
            self.sporadic_429
            + self.error_rate
            + self.drop_before_rate
            + self.drop_after_rate
            + self.slow_rate
        )
        if spoiled > 1 + 1e-9:
            raise ValueError(
                "sporadic_429, error_rate, drop_before_rate, drop_after_rate and slow_rate "
                f"add up to {spoiled:g}, more than 1"
            )
        for start, duration in self.storms:
            if start < 0 or duration <= 0:
                raise ValueError(f"a storm is (start >= 0, duration > 0), not {(start, duration)}")

    def describe(self) -> str:
        """The conditions that are on, as ``name=value`` pairs; "no faults" if none."""
        default = Conditions()
        on = [
            f"{field.name}={_format(getattr(self, field.name))}"
            for field in attrs.fields(Conditions)
            if getattr(self, field.name) != getattr(default, field.name)
        ]
        return " ".join(on) or "no faults"


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join("/".join(f"{part:g}" for part in span) for span in value) + "]"
    return str(value)


class Spoiler:
    """Draws, for each request of a task route, which random condition spoils it, if any."""

    __slots__ = ("_conditions", "_creates", "_queries", "_rng")

    def __init__(self, conditions: Conditions, rng: random.Random) -> None:
        c = self._conditions = conditions
        self._rng = rng
        sporadic: tuple[tuple[Spoil, float], ...] = (("sporadic_429", c.sporadic_429),)
        common: tuple[tuple[Spoil, float], ...] = (
            ("error", c.error_rate),
            ("drop_before", c.drop_before_rate),
            ("slow", c.slow_rate),
        )
        creates = (*sporadic, *common, ("drop_after", c.drop_after_rate))
        queries = common if c.sporadic_429_creates_only else (*sporadic, *common)
        self._creates = tuple((kind, p) for kind, p in creates if p > 0)
        self._queries = tuple((kind, p) for kind, p in queries if p > 0)

    def draw(self, route: str) -> Spoil | None:
        """The condition that spoils this request of ``route``, or None; no draw if all off."""
        if route in CREATE_ROUTES:
            bins = self._creates
        elif route in QUERY_ROUTES:
            bins = self._queries
        else:
            return None
        if not bins:
            return None
        draw = self._rng.random()
        for kind, probability in bins:
            if draw < probability:
                return kind
            draw -= probability
        return None

    def sporadic_429(self, time_scale: float) -> web.Response:
        """An upstream 429 in the task routes' shape, with a ``Retry-After`` now and then."""
        rng, c = self._rng, self._conditions
        headers = {}
        if c.sporadic_retry_after and rng.random() < c.sporadic_retry_after:
            headers["Retry-After"] = retry_after(c.sporadic_retry_after_value, time_scale)
        if rng.random() < 0.5:
            return task_error(429, "fail_to_fetch_task", SATURATED, headers)
        return task_error(429, _CONCURRENCY, _CONCURRENCY, headers)

    def error(self) -> web.Response:
        """A 502 or 503: the gateway's JSON ``do_request_failed``, or a proxy's HTML page."""
        status = self._rng.choice((502, 503))
        return error_response(status, "html" if self._rng.random() < 0.5 else "json")


def error_response(
    status: int, body: Literal["json", "html", "empty"], code: str = "", message: str = ""
) -> web.Response:
    """An error status with a task-shaped JSON body, an nginx page or nothing."""
    phrase = HTTPStatus(status).phrase
    if body == "html":
        return nginx_page(status, phrase)
    if body == "empty":
        return web.Response(status=status)
    return task_error(status, code or "do_request_failed", message or phrase)


# Scripted faults


@attrs.define
class Fault:
    """A fault scripted by ``Simulator.inject``."""

    status: int | None
    body: Literal["json", "html", "empty"]
    code: str
    message: str
    drop: Literal["before", "after"] | None
    delay: float  # seconds, already time-scaled
    truncate: int | None
    times: int  # requests left to spoil
    retry_after: str | None = None  # the Retry-After header of the answer, already scaled


class Script:
    """The faults queued by ``Simulator.inject``, per route, used in order."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: collections.defaultdict[str, collections.deque[Fault]] = (
            collections.defaultdict(collections.deque)
        )

    def add(
        self,
        route: FaultRoute,
        *,
        status: int | None,
        body: Literal["json", "html", "empty"],
        code: str,
        message: str,
        drop: Literal["before", "after"] | None,
        delay: float,
        truncate: int | None,
        times: int,
        retry_after: str | None = None,
    ) -> None:
        """Queue a fault after checking that it can happen on ``route`` (else ValueError)."""
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
        if drop == "after" and route not in CREATE_ROUTES | {"any"}:
            raise ValueError('drop="after" is for create routes')
        if truncate is not None and (route not in ("content", "cdn") or truncate < 0):
            raise ValueError("truncate is a number of bytes, for the content and cdn routes")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        if delay < 0:
            raise ValueError(f"delay must not be negative, not {delay}")
        if retry_after is not None and status is None:
            raise ValueError("retry_after goes with a status")
        self._queues[route].append(
            Fault(status, body, code, message, drop, delay, truncate, times, retry_after)
        )

    def take(self, route: str) -> Fault | None:
        """The fault for this request of ``route``: its own first, then those for "any"."""
        for target in (route,) if route == "cdn" else (route, "any"):
            queue = self._queues.get(target)
            if queue:
                fault = queue[0]
                fault.times -= 1
                if not fault.times:
                    queue.popleft()
                return fault
        return None
