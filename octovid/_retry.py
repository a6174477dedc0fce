"""Every retry decision: what is safe to send again, how long to wait, and the backoff wiring.

A query can always be sent again. A create costs money: it is sent again only when the gateway
surely did not accept it (the connection was never made, a 429, a gateway error body), unless
the user asked for ambiguous creates to be retried too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import attrs
import backoff

from ._errors import (
    APIError,
    CreateUncertainError,
    OctovidError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
)

__all__ = ["RetryPolicy", "retryable", "retrying"]

log = logging.getLogger("octovid")

T = TypeVar("T")

_BASE, _CAP = 0.5, 30.0  # exponential backoff: 0.5 s doubling, at most 30 s


def _tries(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, not {value!r}")


def _seconds(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number of seconds >= 0, not {value!r}")


@attrs.frozen
class RetryPolicy:
    """How ``Client.create`` and ``Client.get`` retry transient failures.

    Attributes:
        max_tries: Attempts in all, the first included.
        max_time: Seconds after which no new attempt starts.
        retry_ambiguous_create: Also resend a create whose answer was lost after it was sent.
            It may then be billed twice; off by default.
    """

    max_tries: int = attrs.field(default=6, validator=_tries)
    max_time: float = attrs.field(default=120.0, validator=_seconds)
    retry_ambiguous_create: bool = False


def retryable(exc: BaseException, *, create: bool, policy: RetryPolicy) -> bool:
    """Whether ``exc`` may be followed by another attempt of the same request."""
    if isinstance(exc, CreateUncertainError):
        return policy.retry_ambiguous_create
    if isinstance(exc, RateLimitError):
        return True  # not accepted, whatever the route
    if isinstance(exc, ServerError):
        return not exc.permanent
    if isinstance(exc, TransportError):
        return True  # for a create, an ambiguous loss is a CreateUncertainError (above)
    if isinstance(exc, ProtocolError):
        return not create  # a garbled answer to a query: ask again
    return False


def server_wait(exc: BaseException) -> float | None:
    """The wait the server asked for (``Retry-After``), if any."""
    return exc.retry_after if isinstance(exc, APIError) else None


def _waits() -> Generator[float, BaseException | None, None]:
    """Exponential backoff with equal jitter; a server-given wait is never shortened."""
    attempt = 0
    exc = yield 0.0
    while True:
        ceiling = min(_CAP, _BASE * 2**attempt)
        wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        asked = server_wait(exc) if exc is not None else None
        exc = yield wait if asked is None else max(asked, wait)
        attempt += 1


def retrying(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    create: bool,
    what: str,
    on_retry: Callable[[], None] = lambda: None,
    stopping: Callable[[], bool] = lambda: False,
) -> Awaitable[T]:
    """Run ``fn`` until it succeeds or its failure is not worth another attempt.

    Args:
        fn: One attempt.
        policy: Limits on attempts and time.
        create: Whether the request is a create (money: see ``retryable``).
        what: Names the request in log lines.
        on_retry: Called before each new attempt.
        stopping: When it returns True, no new attempt starts (the client is closing).
    """
    started = time.monotonic()

    def give_up(exc: BaseException) -> bool:
        if stopping() or not retryable(exc, create=create, policy=policy):
            return True
        asked = server_wait(exc)
        # A wait that would end after max_time is not worth starting.
        return asked is not None and time.monotonic() - started + asked > policy.max_time

    def backing_off(details: Any) -> None:
        on_retry()
        log.info(
            "octovid: %s failed (%s); attempt %d in %.1fs",
            what, details["exception"], details["tries"] + 1, details["wait"],
        )

    decorated = backoff.on_exception(
        _waits,
        OctovidError,
        max_tries=policy.max_tries,
        max_time=policy.max_time,
        jitter=None,
        giveup=give_up,
        on_backoff=backing_off,
        raise_on_giveup=True,
        logger=None,  # octovid logs its retries itself, to its own logger
    )(fn)
    result: Awaitable[T] = decorated()
    return result
