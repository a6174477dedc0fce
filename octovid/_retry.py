"""Every failure decision of octovid, in one place.

For any failed request (a create, a query, the watcher's poll, a download) :func:`decide` says
what to do next: retry it (and after how long), give up, or report a create as uncertain. And
:func:`throttle_of` says what a 429 tells the limiter about the key's budget. Nothing else in
octovid classifies failures.

Money first: a query or a download can always be sent again; a create is sent again only when
the gateway surely did not accept it (the connection was never made, a 429, a JSON error of the
gateway itself, which refunds the quota), unless ``RetryPolicy(retry_ambiguous_create=True)``.
A create whose answer was lost after it was sent, or answered by a proxy's page, or answered
"success" without a task id, is uncertain: it may exist and be billed.

One backoff schedule serves every retry: exponential (0.5 s doubling, capped), with full jitter
(``backoff.expo`` and ``backoff.full_jitter``), on the event loop's clock; a server's
``Retry-After`` is never shortened. :func:`set_testing` removes every wait, for test suites
(as ``stamina.set_testing`` does).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import attrs
import backoff

from ._errors import (
    APIError,
    AuthenticationError,
    OctovidError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TaskNotFoundError,
    TransportError,
)

__all__ = [
    "Action",
    "Kind",
    "RetryPolicy",
    "Throttle",
    "Verdict",
    "decide",
    "maybe_accepted",
    "parse_retry_after",
    "retrying",
    "set_testing",
    "throttle_of",
    "waits",
]

log = logging.getLogger("octovid")

T = TypeVar("T")

BASE, CAP = 0.5, 30.0  # the backoff schedule: 0.5 s doubling, at most CAP (or the caller's cap)
RETRY_AFTER_MAX = 300.0  # the longest Retry-After obeyed: a proxy's "come back tomorrow" is not
PROTOCOL_STRIKES = 3  # consecutive unreadable answers to a poll before its task is failed
NOT_FOUND_GRACE = 30.0  # seconds after our own create during which task_not_exist is transient
# Answers that no amount of waiting will mend, although their status says "server error".
PERMANENT_SERVER_CODES = frozenset({"model_not_found"})
# 429 codes that speak of one upstream or one gate, not of the key's request budget.
UPSTREAM_429_CODES = frozenset({"fail_to_fetch_task", "token_concurrency_limit_reached"})

_TESTING: dict[str, bool] = {"on": False}


def set_testing(enabled: bool) -> None:
    """Make every retry wait zero seconds (for test suites); the decisions stay the same."""
    _TESTING["on"] = bool(enabled)


def _tries(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, not {value!r}")


def _seconds(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number of seconds >= 0, not {value!r}")


@attrs.frozen
class RetryPolicy:
    """How creates, queries and downloads retry transient failures.

    The watcher's polls are not bound by it: a poll is retried until its job's deadline.

    Attributes:
        max_tries: Attempts in all, the first included.
        max_time: Seconds after which no new attempt starts.
        retry_ambiguous_create: Also resend a create whose answer was lost after it was sent.
            It may then be billed twice; off by default.
    """

    max_tries: int = attrs.field(default=6, validator=_tries)
    max_time: float = attrs.field(default=120.0, validator=_seconds)
    retry_ambiguous_create: bool = False


class Kind(enum.Enum):
    """What the failed request was."""

    CREATE = "create"  #: a create: money
    QUERY = "query"  #: one query of a task (``Client.get``)
    POLL = "poll"  #: the watcher's query of a watched task: retried until the job's deadline
    DOWNLOAD = "download"  #: a video download


class Action(enum.Enum):
    """What to do after a failure."""

    RETRY = "retry"
    GIVE_UP = "give up"
    UNCERTAIN = "uncertain"  #: a create that may have been accepted: never resent on its own


@attrs.frozen
class Verdict:
    """The decision about one failure: the action, and the seconds to wait before a retry."""

    action: Action
    wait: float = 0.0


@attrs.frozen
class Throttle:
    """What a 429 says about the key's budget.

    Attributes:
        retry_after: Seconds the server asked to wait, capped at 300, or None.
        key_wide: Whether the pause asked for is the key's (an answer of the gateway's or a
            proxy's rate limit), not one upstream's or one gate's (``fail_to_fetch_task``,
            ``token_concurrency_limit_reached``): only a key-wide ``Retry-After`` pauses every
            request of the key.
    """

    retry_after: float | None
    key_wide: bool


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds) or (seconds < 0 and value.lstrip().startswith("-")):
        return None  # a negative delta is not a Retry-After; a date in the past means now
    return max(0.0, seconds)


def throttle_of(exc: BaseException) -> Throttle | None:
    """The budget signal of a failure: a Throttle for a 429, None for anything else."""
    if not isinstance(exc, RateLimitError):
        return None
    asked = exc.retry_after
    if asked is not None and asked > RETRY_AFTER_MAX:
        log.warning("octovid: a 429 asked to wait %.0fs; waiting %.0fs only",
                    asked, RETRY_AFTER_MAX)
        asked = RETRY_AFTER_MAX
    return Throttle(asked, key_wide=exc.code not in UPSTREAM_429_CODES)


def permanent(exc: ServerError) -> bool:
    """Whether waiting cannot mend a 5xx (``model_not_found``: no channel serves the model)."""
    return exc.code in PERMANENT_SERVER_CODES


def waits(cap: float = CAP) -> Iterator[float]:
    """The one backoff schedule: full-jittered waits, 0.5 s doubling up to ``cap``."""
    ceilings = backoff.expo(base=2, factor=BASE, max_value=cap)
    next(ceilings)  # backoff's generators are primed before use
    for ceiling in ceilings:
        yield 0.0 if _TESTING["on"] else backoff.full_jitter(ceiling)


def _transient(exc: BaseException, kind: Kind, *, attempt: int, age: float | None) -> bool:
    """Whether another attempt may succeed; for a create, whether it was surely not accepted."""
    if isinstance(exc, RateLimitError):
        return True  # refused before anything was done, whatever the route
    if isinstance(exc, ServerError):
        return not permanent(exc)
    if isinstance(exc, TaskNotFoundError):
        # The gateway may not know, for a few seconds, a task it has just created.
        return kind is Kind.POLL and age is not None and age < NOT_FOUND_GRACE
    if isinstance(exc, AuthenticationError | PermissionDeniedError | APIError):
        return False
    if isinstance(exc, ProtocolError):
        return kind is not Kind.POLL or attempt < PROTOCOL_STRIKES
    return isinstance(exc, TransportError)


def maybe_accepted(exc: BaseException) -> bool:
    """Whether a failed create may have been accepted (and billed) by the gateway."""
    if isinstance(exc, TransportError):
        return exc.sent
    if isinstance(exc, ServerError):
        return not exc.from_gateway and not permanent(exc)  # a proxy's page: it may have passed
    return isinstance(exc, ProtocolError)  # a success answer without a readable task id


def decide(
    exc: BaseException,
    kind: Kind,
    *,
    attempt: int,
    schedule: Iterator[float],
    policy: RetryPolicy | None = None,
    age: float | None = None,
) -> Verdict:
    """Decide what follows a failed request.

    Args:
        exc: The failure.
        kind: What the request was.
        attempt: Consecutive failures of this request so far, this one included.
        schedule: The request's backoff schedule (:func:`waits`); a retry takes its next wait.
        policy: The RetryPolicy (for creates: whether ambiguous ones may be resent).
        age: Seconds since our own create of the task (polls), if we made it.

    A retry waits at least what the server asked for (``Retry-After``, up to 300 s).
    """
    if kind is Kind.CREATE and maybe_accepted(exc):
        if policy is None or not policy.retry_ambiguous_create:
            return Verdict(Action.UNCERTAIN)
    elif not _transient(exc, kind, attempt=attempt, age=age):
        return Verdict(Action.GIVE_UP)
    wait = next(schedule)
    throttle = throttle_of(exc)
    if throttle is not None and throttle.retry_after is not None and not _TESTING["on"]:
        wait = max(wait, throttle.retry_after)
    return Verdict(Action.RETRY, wait)


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    kind: Kind,
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[], None] = lambda: None,
    stopping: Callable[[], bool] = lambda: False,
    uncertain: Callable[[BaseException], BaseException] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds or :func:`decide` says to stop.

    Args:
        attempt: One attempt of the request.
        kind: What the request is.
        policy: Limits on attempts and time (on the loop's clock).
        what: Names the request in log lines.
        on_retry: Called before each new attempt.
        stopping: When it returns True, no new attempt starts (the client is closing).
        uncertain: For creates: turns an ambiguous failure into the error to raise.

    Raises:
        The last failure, or ``uncertain(failure)`` for an ambiguous create.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    schedule = waits()
    failures = 0
    while True:
        try:
            return await attempt()
        except OctovidError as exc:
            failures += 1
            verdict = decide(exc, kind, attempt=failures, schedule=schedule, policy=policy)
            if verdict.action is Action.UNCERTAIN:
                if uncertain is None:
                    raise
                raise uncertain(exc) from exc
            late = loop.time() - started + verdict.wait > policy.max_time
            if (verdict.action is Action.GIVE_UP or failures >= policy.max_tries or late
                    or stopping()):
                raise
            on_retry()
            log.info("octovid: %s failed (%s); attempt %d in %.1fs",
                     what, exc, failures + 1, verdict.wait)
        await asyncio.sleep(verdict.wait)
        if stopping():
            raise RuntimeError("this octovid.Client is closed")
