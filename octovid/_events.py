"""Events: what a client did, told as it happens to one callable, ``Client(on_event=...)``.

Four kinds of event are told, each a frozen value:

* :class:`RequestSent`: a request leaves for the gateway (or for a CDN, for a download).
* :class:`Answered`: its answer came (``status``), or none did (``status`` is None).
* :class:`RateLimited`: the answer was a 429; :class:`Paused`: the limiter then paused every
  request of the key (the key-wide ``Retry-After``, or a storm of 429s).
* :class:`JobFinished`: a job ended: completed, failed, timed out, errored or cancelled.

The hook is called on the client's event loop, in order, and must be quick (count, log, put
on a queue). An exception it raises is logged once per client and otherwise ignored: a hook
never breaks a request, the watcher or a job. A client without a hook builds none of this:
its transport and its jobs are the plain ones.

The events are made here, by :class:`ObservedTransport` (a :class:`Transport` that tells the
hook of each exchange) and :meth:`Events.job_done` (a done callback of each job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs
from yarl import URL

from ._errors import APIError, RateLimitError, TaskFailedError, WaitTimeoutError
from ._task import Status
from ._transport import Answer, Body, Transport

if TYPE_CHECKING:
    import aiohttp

    from ._jobs import Job
    from ._requests import Upload

__all__ = [
    "Answered",
    "Event",
    "EventHook",
    "Events",
    "JobFinished",
    "ObservedTransport",
    "Paused",
    "RateLimited",
    "RequestSent",
]

log = logging.getLogger("octovid")

RequestKind = Literal["create", "query", "download"]
Outcome = Literal["completed", "failed", "timeout", "error", "cancelled"]


@attrs.frozen
class Event:
    """The base class of every event; ``name`` says which kind it is."""

    name: ClassVar[str] = "event"


@attrs.frozen
class RequestSent(Event):
    """A request leaves for the gateway (or a CDN, for a download).

    Attributes:
        kind: ``"create"``, ``"query"`` or ``"download"``.
        method: The HTTP method.
        url: The URL without its query string (no key, no signature is ever in it).
    """

    name: ClassVar[str] = "request"
    kind: RequestKind
    method: str
    url: str


@attrs.frozen
class Answered(Event):
    """The answer of a request came, or none did.

    Attributes:
        kind: ``"create"``, ``"query"`` or ``"download"``.
        method: The HTTP method.
        url: The URL without its query string.
        status: The HTTP status; None when no answer came (a refused connection, a timeout).
        seconds: From sending to the answer's headers (or to the failure).
        error: The name of the error raised for it (``"RateLimitError"``...), or None.
    """

    name: ClassVar[str] = "answer"
    kind: RequestKind
    method: str
    url: str
    status: int | None
    seconds: float
    error: str | None = None


@attrs.frozen
class RateLimited(Event):
    """The gateway answered 429 Too Many Requests.

    Attributes:
        kind: The kind of request refused.
        retry_after: The ``Retry-After`` it sent, in seconds, or None.
    """

    name: ClassVar[str] = "rate_limited"
    kind: RequestKind
    retry_after: float | None


@attrs.frozen
class Paused(Event):
    """After a 429, every request of the key waits: the limiter paused them.

    Attributes:
        seconds: How long the pause lasts from now.
    """

    name: ClassVar[str] = "pause"
    seconds: float


@attrs.frozen
class JobFinished(Event):
    """A job ended.

    Attributes:
        outcome: ``"completed"``, ``"failed"`` (the task ended FAILED or CANCELLED on the
            gateway), ``"timeout"`` (its deadline passed), ``"error"`` (an error of octovid's
            or the gateway's, e.g. ``CreateUncertainError``) or ``"cancelled"`` (here: by
            ``job.cancel()`` or the client's closing).
        task_id: The task's id, None if it was never created.
        model: The model, when known.
        status: The task's last known status, when known.
        seconds: From the job's start to its end.
        error: The exception's class name when it did not complete, else None.
    """

    name: ClassVar[str] = "job"
    outcome: Outcome
    task_id: str | None
    model: str | None
    status: Status | None
    seconds: float
    error: str | None = None


EventHook = Callable[[Event], object]


class Events:
    """One client's hook: every call of it is guarded, so that it never raises into octovid."""

    __slots__ = ("_failed", "_hook", "_pause_ends", "_paused_for")

    def __init__(self, hook: EventHook, paused_for: Callable[[], float]) -> None:
        if not callable(hook):
            raise TypeError(f"on_event must be a callable taking one event, not {hook!r}")
        self._hook = hook
        self._paused_for = paused_for  # the limiter's pause, read once it has heard a 429
        self._pause_ends = -math.inf  # loop time the last pause told of ends
        self._failed = False

    def __repr__(self) -> str:
        return f"<Events hook={self._hook!r}>"

    def emit(self, event: Event) -> None:
        """Tell the hook of ``event``; an exception it raises is logged (once) and dropped."""
        try:
            self._hook(event)
        except Exception:
            if not self._failed:
                self._failed = True
                log.exception("octovid: the on_event hook raised (reported once; its later "
                              "errors are ignored too)")

    def rate_limited(self, kind: RequestKind, exc: RateLimitError) -> None:
        """A 429: tell it, then, once the limiter has heard it, any pause it made."""
        self.emit(RateLimited(kind, exc.retry_after))
        asyncio.get_running_loop().call_soon(self._check_pause)

    def _check_pause(self) -> None:
        seconds = self._paused_for()
        if seconds <= 0:
            return
        ends = asyncio.get_running_loop().time() + seconds
        if ends > self._pause_ends + 0.001:  # a new pause, or one made longer
            self._pause_ends = ends
            self.emit(Paused(seconds))

    def job_done(self, job: Job) -> None:
        """The done callback of each job of a client with a hook."""
        task = job.task
        error: BaseException | None
        if job.cancelled():
            outcome: Outcome = "cancelled"
            error = asyncio.CancelledError()
        else:
            error = job.exception()
            if error is None:
                outcome = "completed"
            elif isinstance(error, TaskFailedError):
                outcome, task = "failed", error.task
            elif isinstance(error, WaitTimeoutError):
                outcome = "timeout"
            else:
                outcome = "error"
        model = task.model if task is not None else None
        if model is None and job.request is not None:
            model = job.request.model
        self.emit(JobFinished(
            outcome=outcome,
            task_id=job.id,
            model=model,
            status=task.status if task is not None else None,
            seconds=job.elapsed,
            error=None if error is None else type(error).__name__,
        ))


def _where(url: URL) -> str:
    return str(url.with_query(None).with_fragment(None))


class ObservedTransport(Transport):
    """The transport of a client with a hook: each exchange is told as it happens."""

    __slots__ = ("_events",)

    def __init__(
        self,
        base_url: URL,
        api_key: str,
        *,
        timeout: float,
        session: aiohttp.ClientSession | None = None,
        events: Events,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, session=session)
        self._events = events

    def _failed(self, kind: RequestKind, method: str, where: str, started: float,
                exc: Exception) -> None:
        events = self._events
        status = exc.status if isinstance(exc, APIError) else None
        seconds = asyncio.get_running_loop().time() - started
        events.emit(Answered(kind, method, where, status, seconds, type(exc).__name__))
        if isinstance(exc, RateLimitError):
            events.rate_limited(kind, exc)

    async def request(
        self,
        method: str,
        url: URL,
        *,
        payload: Mapping[str, Any] | None = None,
        files: Sequence[Upload] = (),
        sent: Callable[[], None] | None = None,
        known: bytes | None = None,
    ) -> Answer:
        kind: RequestKind = "create" if method == "POST" else "query"
        where = _where(url)
        events = self._events
        events.emit(RequestSent(kind, method, where))
        started = asyncio.get_running_loop().time()
        try:
            answer = await super().request(method, url, payload=payload, files=files, sent=sent,
                                           known=known)
        except Exception as exc:
            self._failed(kind, method, where, started, exc)
            raise
        events.emit(Answered(kind, method, where, answer.status,
                             asyncio.get_running_loop().time() - started))
        return answer

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: URL,
        *,
        offset: int = 0,
        read_timeout: float | None = None,
        sent: Callable[[], None] | None = None,
    ) -> AsyncIterator[Body]:
        where = _where(url)
        events = self._events
        events.emit(RequestSent("download", "GET", where))
        started = asyncio.get_running_loop().time()
        answered = False
        try:
            async with super().stream(
                url, offset=offset, read_timeout=read_timeout, sent=sent
            ) as body:
                answered = True
                events.emit(Answered("download", "GET", where, body.status,
                                     asyncio.get_running_loop().time() - started))
                yield body
        except Exception as exc:
            if not answered:  # an error while reading the body was answered already
                self._failed("download", "GET", where, started, exc)
            raise
