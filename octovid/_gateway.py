"""The gateway as the rest of octovid sees it: one object between the parts and the wire.

:class:`Gateway` owns the routes, the feed of every request to the limiter (granted, going out,
on the wire, answered, and what a 429 says about the key's budget), the request counters, and
the decoding of answers into Tasks. The watcher and the downloader reach the gateway through it
alone, typed by the protocols they declare; the transport beneath it is the only user of aiohttp.

Every request goes out on a limiter slot, and its answer (or its lack of one) is reported to the
limiter before the slot is released: that is what lets the limiter see congestion.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from yarl import URL

from ._errors import APIError, RateLimitError, TransportError
from ._limiter import Lane, Limiter, Slot
from ._retry import throttle_of
from ._routes import Route, content_path, query_path
from ._task import Task, answer_text, restamp, task_from_answer
from ._transport import Answer, Body, Transport

if TYPE_CHECKING:
    from ._requests import Request, Upload

__all__ = ["Counters", "Gateway"]

_URLS = 4096  # the query URLs kept, of the tasks polled last (Gateway._query_url)


class Counters:
    """What one client sent and got; read through ``Client.stats``."""

    __slots__ = ("creates", "downloads", "errors", "polls", "rate_limited", "requests", "retries")

    def __init__(self) -> None:
        self.requests = self.creates = self.polls = self.downloads = 0
        self.retries = self.rate_limited = self.errors = 0


class Gateway:
    """Routes, limiter feed, counters and decoding for one client's gateway."""

    __slots__ = ("_connect", "_foreign", "_limiter", "_made", "_urls", "counters")

    def __init__(
        self,
        connect: Callable[[], Transport],
        limiter: Limiter,
        counters: Counters,
        *,
        foreign_concurrency: int,
    ) -> None:
        self._connect = connect  # the transport, made on first use (a missing key fails then)
        self._made: Transport | None = None
        self._urls: OrderedDict[str, tuple[Route, URL]] = OrderedDict()  # task id -> its query
        self._limiter = limiter
        self._foreign = asyncio.Semaphore(foreign_concurrency)  # downloads from CDNs
        self.counters = counters

    def __repr__(self) -> str:
        return f"<Gateway requests={self.counters.requests} {self._limiter!r}>"

    @property
    def _transport(self) -> Transport:
        transport = self._made
        if transport is None:
            transport = self._made = self._connect()
        return transport

    # -- requests on a slot ----------------------------------------------------------------

    async def acquire(self, lane: Lane) -> Slot:
        """Wait for the limiter's leave to send one request in ``lane``."""
        return await self._limiter.acquire(lane)

    def try_acquire(self, lane: Lane) -> Slot | None:
        """A slot in ``lane`` now if one is free and nobody waits for it, else None."""
        return self._limiter.try_acquire(lane)

    def saturated(self) -> bool:
        """Whether every place in flight is taken and nobody waits for one."""
        return self._limiter.saturated

    def creates_waiting(self) -> bool:
        """Whether creates are waiting for the limiter: the budget is contended."""
        return self._limiter.waiting_in(Lane.CREATE) > 0

    async def create(
        self, slot: Slot, request: Request, payload: Mapping[str, Any] | None = None
    ) -> Task:
        """Send one create of ``request`` on ``slot`` (released on return), on its route.

        Raises:
            APIError, TransportError: as the transport does.
            ProtocolError: The answer carries no task id.
        """
        url = self._transport.url(request.create_path)
        body = request.to_payload() if payload is None else payload
        answer = await self._exchange(slot, "POST", url, body, request.files())
        task = task_from_answer(answer.text, answer.body, route=request.route)
        self.counters.creates += 1
        return task

    async def query(
        self, slot: Slot, task_id: str, route: Route = Route.UNIFIED,
        previous: Task | None = None,
    ) -> tuple[Task, float | None]:
        """Query ``task_id`` once on ``slot`` (released on return), on its ``route``.

        An answer byte for byte the one ``previous`` was read from is ``previous`` again:
        most polls find nothing new, and reading an answer costs more than comparing it.

        Returns:
            The snapshot, and the seconds the server suggests before the next poll, if any.
        """
        if previous is not None and (previous.id != task_id or previous.route is not route):
            previous = None
        known = answer_text(previous)
        answer = await self._exchange(slot, "GET", self._query_url(task_id, route), known=known)
        self.counters.polls += 1
        if previous is not None:
            if answer.same:
                return previous, answer.poll_after
            if answer.stamps is not None:
                task = restamp(previous, answer.text, *answer.stamps)
                if task is not None:
                    return task, answer.poll_after
        body = answer.body if answer.stamps is None else self._transport.decode(answer.text)
        task = task_from_answer(answer.text, body, task_id=task_id, route=route)
        return task, answer.poll_after

    def _query_url(self, task_id: str, route: Route) -> URL:
        """The URL that queries ``task_id`` on ``route``: the last one's, if it is among the
        ``_URLS`` tasks polled last.

        Reusing it saves more than building it: aiohttp reads a URL's host, port and path
        once per URL object, and keeps them there (yarl keeps the last 128 URLs it built;
        too few for a batch). Kept for every task, the URLs would make the garbage
        collector's full collections longer (by about a sixth, 30,000 watched).
        """
        urls = self._urls
        known = urls.get(task_id)
        if known is not None and known[0] is route:
            urls.move_to_end(task_id)
            return known[1]
        path, query = query_path(route, task_id)
        url = self._transport.url(path, **query)
        urls[task_id] = (route, url)
        if len(urls) > _URLS:
            urls.popitem(last=False)
        return url

    async def _exchange(
        self, slot: Slot, method: str, url: URL, payload: Mapping[str, Any] | None = None,
        files: Sequence[Upload] = (), *, known: bytes | None = None,
    ) -> Answer:
        # ``with slot, self._fed(slot)``, written out: a generator context manager a request
        # cost more than this function's own work on a poll.
        try:
            self.counters.requests += 1
            slot.sending()
            try:
                answer = await self._transport.request(
                    method, url, payload=payload, files=files, sent=slot.sent, known=known
                )
            except (APIError, TransportError) as exc:
                self._failed(slot, exc)
                raise
            self._limiter.answered(slot)
            return answer
        finally:
            slot.release()

    @contextlib.contextmanager
    def _fed(self, slot: Slot) -> Iterator[None]:
        """Count a request going out on ``slot``, and tell the limiter of a refusal."""
        self.counters.requests += 1
        slot.sending()
        try:
            yield
        except (APIError, TransportError) as exc:
            self._failed(slot, exc)
            raise

    def _failed(self, slot: Slot, exc: APIError | TransportError) -> None:
        """Count a failed request; an answer (an APIError) goes to the limiter."""
        self.counters.errors += 1
        if isinstance(exc, APIError):
            if isinstance(exc, RateLimitError):
                self.counters.rate_limited += 1
            self._limiter.answered(slot, throttle_of(exc))

    # -- downloads -------------------------------------------------------------------------

    def content_url(self, task_id: str) -> URL:
        """The gateway route that serves a task's bytes."""
        return self._transport.url(content_path(task_id))

    def resolve(self, reference: str) -> URL | None:
        """An absolute http(s) URL for a result URL the gateway gave, else None."""
        return self._transport.resolve(reference)

    def same_origin(self, url: URL) -> bool:
        """Whether ``url`` is the gateway's: the key goes there, and the limiter paces it."""
        return self._transport.same_origin(url)

    @contextlib.asynccontextmanager
    async def open(self, url: URL, *, offset: int = 0) -> AsyncIterator[Body]:
        """Open a download of ``url`` from byte ``offset``.

        The gateway's own URLs go through the limiter like every request with the key; other
        hosts (CDNs) get no key and are bounded by a semaphore of their own.
        """
        if not self.same_origin(url):
            async with self._foreign, self._transport.stream(url, offset=offset) as body:
                yield body
            return
        with await self.acquire(Lane.QUERY) as slot, self._fed(slot):
            async with self._transport.stream(url, offset=offset, sent=slot.sent) as body:
                self._limiter.answered(slot)
                yield body
