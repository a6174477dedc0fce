"""Client: one session with the gateway, one rate limiter, one watcher."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from ._download import Downloader, Progress
from ._errors import (
    ConfigError,
    CreateUncertainError,
    JournalError,
    OctovidError,
    ProtocolError,
    ServerError,
)
from ._events import EventHook, Events, ObservedTransport
from ._gateway import Counters, Gateway
from ._jobs import Job
from ._journal import JobState, Journal, JournalEntry
from ._limiter import Lane, Limiter, RateLimit, Slot
from ._requests import Request
from ._retry import Action, Kind, RetryPolicy, decide, maybe_accepted, retrying
from ._routes import Route
from ._schedule import PollPolicy
from ._task import Status, Task
from ._transport import Transport, gateway_url
from ._watcher import Watcher

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Client", "Stats"]

log = logging.getLogger("octovid")

DEFAULT_BASE_URL = "https://octopusx.ai"
_YIELD_EVERY = 2000  # jobs dispatched between two yields to the loop, after a batch's claims
_CLAIM_CHUNK = 10_000  # keys claimed in one transaction
_LEARNED_KEPT = 256  # completed journal entries per model the watcher learns durations from


@attrs.frozen
class Stats:
    """Counters of one client, as of the moment they were read.

    Attributes:
        requests: Requests sent to the gateway (creates, queries, downloads), retries included.
        creates: Creates the gateway accepted.
        polls: Queries that got an answer.
        downloads: Videos downloaded and verified.
        retries: Attempts that followed a failed one.
        rate_limited: 429 answers.
        errors: Requests that failed (an HTTP error or no answer), 429s included.
        limiter_wait: Seconds spent waiting for the rate limiter, summed over requests.
        rate: The limiter's current rate (requests per second; lower after congestion).
        paused_for: Seconds until the key's requests go again, when a 429 paused them (else 0).
        watching: Task ids being polled now.
        pending: Jobs not yet resolved.
    """

    requests: int = 0
    creates: int = 0
    polls: int = 0
    downloads: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: int = 0
    limiter_wait: float = 0.0
    rate: float = 0.0
    paused_for: float = 0.0
    watching: int = 0
    pending: int = 0


def _rate_limit(value: float | RateLimit) -> RateLimit:
    if not isinstance(value, RateLimit):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"rate_limit must be requests per second or a RateLimit, not {value!r}"
            )
        value = RateLimit(float(value))
    shared = os.environ.get("OCTOVID_REDIS_URL", "").strip()
    if value.redis is None and shared:  # as OCTOVID_API_KEY: the argument first, then this
        try:
            value = attrs.evolve(value, redis=shared)
        except ValueError as exc:
            raise ConfigError(f"OCTOVID_REDIS_URL: {exc}") from None
    return value


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _route(route: object) -> Route:
    if isinstance(route, str) and route in Route._value2member_map_:
        return Route(route)
    allowed = ", ".join(repr(r.value) for r in Route)
    raise ValueError(f"route must be one of {allowed}, not {route!r}")


def _task_id(task_id: object) -> str:
    if not isinstance(task_id, str) or not task_id.strip() or not task_id.isprintable():
        raise ValueError(f"task_id must be a non-empty printable string, not {task_id!r}")
    return task_id.strip()


class Client:
    """A session with the octopusx gateway: create, watch and download video tasks.

    Args:
        api_key: The key; else ``OCTOVID_API_KEY``. A missing key raises ConfigError at first use.
        base_url: The gateway; else ``OCTOVID_BASE_URL``, else ``https://octopusx.ai``.
        rate_limit: Requests per second for everything this client sends with the key, or a
            RateLimit. Every coroutine using this client shares it; with
            ``RateLimit(redis=URL)`` (else ``OCTOVID_REDIS_URL``, if set), every process using
            the key shares it.
        max_concurrency: Requests in flight at most.
        poll: When to poll tasks (PollPolicy); its ``deadline`` is the default job deadline.
        retry: How creates, queries and downloads retry (RetryPolicy).
        timeout: Seconds for one request, answer included.
        journal: A path or a Journal: idempotency keys, task ids and results survive crashes.
        session: An ``aiohttp.ClientSession`` to use; it is not closed by the client. (aiohttp
            resends a GET whose reused connection dropped, which octovid then counts once.)
        on_event: Called with each :class:`~octovid.Event` (a request sent, its answer, a
            429 and a pause, a job's end) on the client's loop; see ``octovid.Event``. It
            must be quick; what it raises is logged and ignored. None (the default) costs
            nothing.

    Use it as ``async with Client() as client:``, or call ``await client.aclose()``.
    """

    __slots__ = (
        "_api_key", "_background", "_base_url", "_closed", "_counters", "_creator",
        "_downloader", "_events", "_gateway", "_journal", "_limiter", "_max_concurrency",
        "_owns_journal", "_poll", "_retry", "_session", "_timeout", "_transport", "_watcher",
    )

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        rate_limit: float | RateLimit = 5.0,
        max_concurrency: int = 16,
        poll: PollPolicy = PollPolicy(),  # noqa: B008 - frozen, so sharing it is safe
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008
        timeout: float = 60.0,
        journal: str | os.PathLike[str] | Journal | None = None,
        session: aiohttp.ClientSession | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("OCTOVID_API_KEY")
        self._api_key = key.strip() if key else None
        self._base_url = gateway_url(
            base_url or os.environ.get("OCTOVID_BASE_URL") or DEFAULT_BASE_URL
        )
        if not isinstance(poll, PollPolicy):
            raise TypeError(f"poll must be an octovid.PollPolicy, not {poll!r}")
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be an octovid.RetryPolicy, not {retry!r}")
        self._timeout = _seconds("timeout", timeout)
        self._limiter = Limiter(_rate_limit(rate_limit), max_concurrency, key=self._api_key)
        limiter = self._limiter
        self._events = None if on_event is None else Events(on_event, lambda: limiter.paused_for)
        self._poll = poll
        self._retry = retry
        self._session = session
        self._max_concurrency = max_concurrency
        self._owns_journal = journal is not None and not isinstance(journal, Journal)
        self._journal = journal if isinstance(journal, Journal) or journal is None else (
            Journal(journal)
        )
        self._transport: Transport | None = None
        self._downloader: Downloader | None = None
        self._counters = Counters()
        self._gateway = Gateway(self._get_transport, self._limiter, self._counters,
                                foreign_concurrency=max_concurrency)
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()  # a batch's claims
        self._creator = _Creator(self._gateway, retry, self._journal, lambda: self._closed)
        self._watcher = Watcher(gateway=self._gateway, creating=self._creator, policy=poll,
                                max_creates=max_concurrency)
        if self._journal is not None:  # what earlier runs saw finish aims the first polls
            _learn_durations(self._watcher, self._journal)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._watcher.watching} watched"
        return f"<Client {self._base_url} {state} {self._limiter!r}>"

    async def __aenter__(self) -> Client:
        await self._limiter.start()  # a shared budget's Redis is reached now, or ConfigError
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching and close what the client owns.

        Every pending job is resolved with CancelledError. Creates already on the wire are
        awaited (up to ``timeout``), so that a task the gateway accepted is not lost, and the
        journal's queued writes are finished.
        """
        if self._closed:
            return
        self._closed = True
        for task in self._background:
            task.cancel()
        await self._watcher.close()  # its jobs end cancelled, as the contract says
        self._limiter.close()  # then direct create() and get() calls still waiting fail
        await self._creator.drain(self._timeout)
        if self._transport is not None:
            await self._transport.close()
        await self._limiter.disconnect()
        if self._journal is not None:
            await self._journal.flush()
            if self._owns_journal:
                await self._journal.aclose()

    @property
    def stats(self) -> Stats:
        """A snapshot of the client's counters."""
        c = self._counters
        return Stats(
            requests=c.requests,
            creates=c.creates,
            polls=c.polls,
            downloads=c.downloads,
            retries=c.retries,
            rate_limited=c.rate_limited,
            errors=c.errors,
            limiter_wait=self._limiter.waited,
            rate=self._limiter.rate,
            paused_for=self._limiter.paused_for,
            watching=self._watcher.watching,
            pending=self._watcher.pending,
        )

    @property
    def base_url(self) -> str:
        """The gateway's base URL."""
        return str(self._base_url)

    @property
    def journal(self) -> Journal | None:
        """The journal, if the client keeps one."""
        return self._journal

    # -- one request -----------------------------------------------------------------------

    async def create(self, request: Request) -> Task:
        """Start a task: one POST to the unified create route.

        It is sent again only when the gateway surely did not accept it (see RetryPolicy).

        Raises:
            CreateUncertainError: The answer was lost after the request was sent: the task
                may exist and be billed. It is not sent again unless the RetryPolicy says so.
            APIError: The gateway refused it (the subclass says why).
        """
        self._check_open()
        self._get_transport()
        return await self._creator.run(_check_request(request))

    async def get(self, task_id: str, *, route: Route | str = Route.UNIFIED) -> Task:
        """Query a task once (retrying transient failures) on the route it was created on."""
        self._check_open()
        self._get_transport()
        task_id = _task_id(task_id)
        family = _route(route)

        async def attempt() -> Task:
            slot = await self._gateway.acquire(Lane.QUERY)
            return (await self._gateway.query(slot, task_id, family))[0]

        return await retrying(
            attempt, kind=Kind.QUERY, policy=self._retry, what=f"query of {task_id}",
            on_retry=self._retried, stopping=lambda: self._closed,
        )

    # -- jobs ------------------------------------------------------------------------------

    def submit(
        self, request: Request, *, key: str | None = None, deadline: float | None = None
    ) -> Job:
        """Create a task and watch it, without waiting: the returned Job resolves later.

        Args:
            request: What to create.
            key: An idempotency key for the journal: a key it already holds is not created
                again; its task is watched (or its result returned) instead.
            deadline: Seconds from now for the whole job; default ``PollPolicy.deadline``.
        """
        return self.submit_many([request], keys=None if key is None else [key],
                                deadline=deadline)[0]

    def submit_many(
        self,
        requests: Iterable[Request],
        *,
        keys: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> list[Job]:
        """Submit many requests at once; jobs come back in the order given, at once.

        Creates share the limiter and the concurrency bound with everything else; a create
        that fails fails only its own job. With ``keys``, the journal's claims of the whole
        batch are one transaction, made off the event loop before any create is sent.
        """
        self._check_open()
        batch = [_check_request(request) for request in requests]
        if keys is not None:
            keys = list(keys)
            if len(keys) != len(batch):
                raise ValueError(f"{len(keys)} keys for {len(batch)} requests")
            if len(set(keys)) != len(keys):
                raise ValueError("keys must be distinct within one call")
        self._get_transport()  # a missing key fails here, before anything is queued
        if keys is not None and self._journal is None:
            raise ConfigError("idempotency keys need a journal: Client(journal='path.db')")
        seconds = self._deadline(deadline)
        jobs = self._watcher.hold(batch, deadline=seconds, keys=keys)
        if self._events is not None:
            for job in jobs:
                job.add_done_callback(self._events.job_done)
        if keys is None:
            self._watcher.release(jobs)
        elif jobs:
            claim = asyncio.ensure_future(self._claim(jobs))
            self._background.add(claim)
            claim.add_done_callback(self._background.discard)
        return jobs

    async def _claim(self, jobs: list[Job]) -> None:
        """Claim a batch's keys in the journal, then create, watch or resolve each job.

        The claims go in chunks of ``_CLAIM_CHUNK`` (one transaction each), so that the first
        creates of a long batch go out while the rest is being claimed.
        """
        assert self._journal is not None
        for start in range(0, len(jobs), _CLAIM_CHUNK):
            chunk = jobs[start:start + _CLAIM_CHUNK]
            try:
                entries = await self._journal.claim(
                    [(job.key, job.request) for job in chunk]  # type: ignore[misc]
                )
            except JournalError as exc:
                for job in jobs[start:]:
                    self._watcher.settle(job, exc)
                return
            await self._dispatch(chunk, entries)

    async def _dispatch(self, jobs: list[Job], entries: list[JournalEntry | JournalError]) -> None:
        watcher = self._watcher
        fresh: list[Job] = []
        for count, (job, entry) in enumerate(zip(jobs, entries, strict=True), 1):
            if job.done():  # cancelled, or past its deadline, while the claims were written
                continue
            if isinstance(entry, JournalError):
                watcher.settle(job, entry)
            elif entry.state in (JobState.QUEUED, JobState.REFUSED) or (
                self._creator.creating(entry.key)
            ):  # never accepted: create it; or being created here: share that create
                fresh.append(job)
            else:
                self._resume(job, entry)
            if not count % _YIELD_EVERY:
                await asyncio.sleep(0)  # a batch of 100,000 must not stall the loop
        watcher.release(fresh)

    def _resume(self, job: Job, entry: JournalEntry) -> None:
        """The job of a key an earlier run sent: watched again, or known already."""
        task = entry.task
        if entry.uncertain or task is None:
            assert job.request is not None
            self._watcher.settle(job, CreateUncertainError(
                f"the create for key {entry.key!r} was sent by an earlier run and never "
                "answered: the task may exist and be billed. Check with the gateway, then "
                "Journal.forget(key) to create it again",
                request=job.request,
            ))
        else:
            self._watcher.adopt(job, task.id, task)

    def watch(
        self, task_id: str, *, deadline: float | None = None, route: Route | str = Route.UNIFIED
    ) -> Job:
        """Watch an existing task, without waiting. Watching one id twice shares its polls.

        ``route`` is the route family the task was created on (where it is queried).
        """
        self._check_open()
        self._get_transport()
        job = self._watcher.watch(_task_id(task_id), deadline=self._deadline(deadline),
                                  route=_route(route))
        if self._events is not None:
            job.add_done_callback(self._events.job_done)
        return job

    async def generate(self, request: Request, *, deadline: float | None = None) -> Task:
        """Create a task and wait for it: returns the COMPLETED task.

        Raises:
            TaskFailedError: The task ended FAILED or CANCELLED.
            WaitTimeoutError: The deadline passed first.
        """
        job = self.submit(request, deadline=deadline)
        try:
            return await job
        except asyncio.CancelledError:
            job.cancel()
            raise

    async def download(
        self,
        task_or_id: Task | str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download a completed task's video, verified, to ``dest``.

        Args:
            task_or_id: The task (a snapshot) or its id.
            dest: A file path, or a directory (existing, or ending with a separator) in which
                the file is named from the task id, made safe.
            progress: Called as ``progress(bytes_done, bytes_total_or_None)`` while streaming.

        Returns:
            The path of the file, written atomically: it exists only once complete.

        Raises:
            DownloadError: The task is not completed, or no source gave a verified video.
        """
        self._check_open()
        if isinstance(task_or_id, Task):
            task = task_or_id
            if task.status is not Status.COMPLETED:
                task = await self.get(task.id, route=task.route)
        else:
            task = await self.get(_task_id(task_or_id))
        downloader = self._get_downloader()
        target = downloader.target(task, dest)
        size, digest = await downloader.download(task, target, progress)
        self._counters.downloads += 1
        if self._journal is not None:
            await self._journal.downloaded(task.id, str(target), size, digest)
        log.info("octovid: downloaded task %s to %s (%d bytes)", task.id, target, size)
        return target

    # -- internals -------------------------------------------------------------------------

    def _get_downloader(self) -> Downloader:
        if self._downloader is None:
            self._downloader = Downloader(self._gateway, self._refresh, self._retry)
        return self._downloader

    async def _refresh(self, task: Task) -> Task:
        return await self.get(task.id, route=task.route)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this octovid.Client is closed")

    def _deadline(self, deadline: float | None) -> float | None:
        if deadline is None:
            return self._poll.deadline
        return _seconds("deadline", deadline)

    def _retried(self) -> None:
        self._counters.retries += 1

    def _get_transport(self) -> Transport:
        if self._transport is None:
            if not self._api_key:
                raise ConfigError(
                    "no API key: pass api_key= to octovid.Client or set OCTOVID_API_KEY"
                )
            if not self._api_key.isprintable() or " " in self._api_key:
                raise ConfigError("the API key holds spaces or control characters")
            if self._events is None:
                self._transport = Transport(
                    self._base_url, self._api_key, timeout=self._timeout, session=self._session
                )
            else:
                self._transport = ObservedTransport(
                    self._base_url, self._api_key, timeout=self._timeout, session=self._session,
                    events=self._events,
                )
        return self._transport


class _Creator:
    """Creates tasks, money first: the watcher's :class:`~octovid._watcher.Creating`.

    A create is retried only when ``_retry`` says it surely was not accepted. Once on the wire
    it runs to its answer even if its caller leaves, so that an accepted task is always
    recorded. With a journal, the key's intent is committed before the create goes out and its
    task id handed to the journal as soon as it comes back. One key is created once per client:
    a second create of a key under way waits for the first one's answer.
    """

    __slots__ = ("_closed", "_exchanges", "_gateway", "_journal", "_keyed", "_policy")

    def __init__(self, gateway: Gateway, policy: RetryPolicy, journal: Journal | None,
                 closed: Callable[[], bool]) -> None:
        self._gateway = gateway
        self._policy = policy
        self._journal = journal
        self._closed = closed
        self._exchanges: set[asyncio.Task[Task]] = set()  # creates on the wire
        self._keyed: dict[str, asyncio.Future[Task]] = {}  # keys being created, their answer

    async def create(self, job: Job) -> Task:
        """Create the task of a job."""
        assert job.request is not None
        return await self.run(job.request, key=job.key, on_created=job._update,
                              abandoned=job.done)

    def observed(self, task: Task) -> None:
        """A watched task changed: the journal records it (queued; it never raises)."""
        if self._journal is not None:
            self._journal.update(task)

    def creating(self, key: str) -> bool:
        """Whether a create of ``key`` is under way in this client."""
        return key in self._keyed

    async def drain(self, seconds: float) -> None:
        """Wait (up to ``seconds``) for the creates on the wire, so no accepted task is lost."""
        if self._exchanges:
            await asyncio.wait(list(self._exchanges), timeout=seconds)

    async def run(
        self,
        request: Request,
        *,
        key: str | None = None,
        on_created: Callable[[Task], None] | None = None,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> Task:
        """Create ``request``, retrying only what the gateway surely did not accept.

        ``abandoned`` says that the caller no longer wants the task: a create not yet on the
        wire is then dropped, at no cost.
        """
        payload = request.to_payload()
        shared: asyncio.Future[Task] | None = None
        if key is not None:
            task = await self._follow(key)
            if task is not None:
                if on_created is not None:
                    on_created(task)
                return task
            # No await since _follow: this create is now the one of its key.
            shared = self._keyed[key] = asyncio.get_running_loop().create_future()
            shared.add_done_callback(functools.partial(_unshare, self._keyed, key))

        def created(task: Task) -> None:
            if on_created is not None:
                on_created(task)
            if shared is not None and not shared.done():
                shared.set_result(task)

        exchange: asyncio.Task[Task] | None = None  # the latest attempt on the wire
        journal = self._journal

        async def attempt() -> Task:
            nonlocal exchange
            slot = await self._gateway.acquire(Lane.CREATE)
            if abandoned():  # unwanted before it was sent: costs nothing
                slot.refund()
                raise asyncio.CancelledError
            if journal is not None and key is not None:
                try:
                    await journal.sending(key)
                except BaseException as exc:
                    slot.refund()  # not sent: a journal that cannot record it forbids it
                    if not isinstance(exc, JournalError):  # cancelled: the intent stands down
                        journal.unsent(key)
                    raise
            exchange = asyncio.ensure_future(self._send(slot, request, payload, key, created))
            self._exchanges.add(exchange)
            exchange.add_done_callback(self._exchanges.discard)
            try:
                return await asyncio.shield(exchange)
            except asyncio.CancelledError:
                exchange.add_done_callback(functools.partial(_report_orphan, key=key))
                raise

        def uncertain(exc: BaseException) -> CreateUncertainError:
            if isinstance(exc, ProtocolError):
                why = f"its answer carries no task id ({exc})"
            elif isinstance(exc, ServerError):
                why = f"a proxy answered ({exc})"
            else:
                why = f"no answer came ({exc})"
            return CreateUncertainError(
                f"the create of {request.model} may have reached the gateway, but {why}: it "
                "may be billed, so it is not sent again", request=request,
            )

        try:
            return await retrying(
                attempt, kind=Kind.CREATE, policy=self._policy, what=f"create ({request.model})",
                on_retry=self._retried, stopping=lambda: self._closed() or abandoned(),
                uncertain=uncertain,
            )
        except asyncio.CancelledError:
            if shared is not None and not shared.done():
                if exchange is not None and not exchange.done():  # its answer settles the key
                    exchange.add_done_callback(
                        functools.partial(_settle_shared, shared, policy=self._policy)
                    )
                else:
                    if key is not None and self._keyed.get(key) is shared:
                        del self._keyed[key]  # at once: a follower may take over right away
                    shared.cancel()
            raise
        except Exception as exc:
            if shared is not None and not shared.done():
                shared.set_exception(exc)
            raise

    def _retried(self) -> None:
        self._gateway.counters.retries += 1

    async def _follow(self, key: str) -> Task | None:
        """The answer of the create of ``key`` this client has under way, or None if none is."""
        while (other := self._keyed.get(key)) is not None:
            if other.cancelled():  # given up before it was sent: the caller's to send
                del self._keyed[key]
                continue
            try:
                return await asyncio.shield(other)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if other.cancelled() and not (me is not None and me.cancelling()):
                    continue
                raise
        return None

    async def _send(
        self, slot: Slot, request: Request, payload: dict[str, Any], key: str | None,
        created: Callable[[Task], None],
    ) -> Task:
        """One create on the wire; the journal learns its outcome at once."""
        journal = self._journal
        try:
            task = await self._gateway.create(slot, request, payload)
        except OctovidError as exc:
            if journal is not None and key is not None:
                if maybe_accepted(exc):
                    journal.uncertain(key, exc)
                else:
                    journal.refused(key, exc)
            raise
        if journal is not None and key is not None:
            with contextlib.suppress(JournalError):  # kept in memory, written again, logged
                await journal.created(key, task)
        log.debug("octovid: created task %s (%s)", task.id, payload.get("model"))
        created(task)
        return task


def _learn_durations(watcher: Watcher, journal: Journal) -> None:
    """Teach the watcher how long the completed tasks of each model in ``journal`` took.

    Read through the journal's iteration alone, the last ``_LEARNED_KEPT`` completed entries
    of each model (the request's) count: from the task's creation to its completion, by the
    recorded answer's own times where it has them (a batch's keys are claimed long before
    their creates go out), else the journal's (but not once the file was downloaded: that
    moves ``updated_at``).
    """
    recent: dict[str, deque[JournalEntry]] = {}
    for entry in journal:
        model = entry.payload.get("model") if entry.status is Status.COMPLETED else None
        if isinstance(model, str) and model:
            if model not in recent:
                recent[model] = deque(maxlen=_LEARNED_KEPT)
            recent[model].append(entry)
    for model, entries in recent.items():
        for entry in entries:
            try:
                task = entry.task
            except ProtocolError:
                task = None
            start = entry.created_at
            if task is not None and task.created_at is not None:
                start = task.created_at.timestamp()
            end = None if entry.file else entry.updated_at
            if task is not None and task.updated_at is not None:
                end = task.updated_at.timestamp()
            if end is not None:
                watcher.learn(model, end - start)


def _check_request(request: object) -> Request:
    if not isinstance(request, Request):
        raise TypeError(
            f"expected an octovid request (VeoRequest, SoraRequest... or VideoRequest), "
            f"not {type(request).__name__}"
        )
    return request


def _report_orphan(exchange: asyncio.Task[Task], *, key: str | None) -> None:
    # The caller of a create was cancelled while it was on the wire; never lose its answer.
    if exchange.cancelled() or exchange.exception() is not None:
        return
    task = exchange.result()
    if key is not None:
        log.info("octovid: task %s of key %r was created after its caller left; the journal "
                 "holds it and submitting the key again watches it", task.id, key)
    else:
        log.warning(
            "octovid: task %s was created although its caller was cancelled; it may be billed: "
            "Client.watch(%r) follows it", task.id, task.id,
        )


def _unshare(keyed: dict[str, asyncio.Future[Task]], key: str, done: asyncio.Future[Task]) -> None:
    if keyed.get(key) is done:
        del keyed[key]
    if not done.cancelled():
        done.exception()  # retrieved: the followers, if any, have their own copy


def _settle_shared(
    shared: asyncio.Future[Task], exchange: asyncio.Task[Task], *, policy: RetryPolicy
) -> None:
    """The answer of a create whose caller left settles the followers of its key."""
    if shared.done():
        return
    if exchange.cancelled():
        shared.cancel()
    elif (exc := exchange.exception()) is None:
        shared.set_result(exchange.result())
    elif decide(exc, Kind.CREATE, attempt=1, schedule=iter([0.0]), policy=policy).action is (
        Action.RETRY
    ):
        shared.cancel()  # not accepted: a follower may send it
    else:
        shared.set_exception(exc)
