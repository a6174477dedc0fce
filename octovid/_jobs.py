"""Job: one future per watched task, and helpers to wait for many.

A Job is resolved exactly once, by the watcher: with the COMPLETED task, or with an exception
(TaskFailedError, WaitTimeoutError, an APIError, JournalError, CancelledError). Awaiting a job
is shielded: if the awaiting coroutine is cancelled (``asyncio.wait_for``, a web request going
away), the job goes on; only ``job.cancel()`` stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

from ._task import Task

if TYPE_CHECKING:
    from ._requests import Request

__all__ = ["Job", "as_completed", "gather"]

_END = object()  # ends an updates() stream


class _Waiters:
    """What only some jobs need: awaiters, callbacks, listeners. Made on first need."""

    __slots__ = ("callbacks", "created", "future", "listeners")

    def __init__(self) -> None:
        self.future: asyncio.Future[Task] | None = None
        self.created: asyncio.Future[Task] | None = None
        self.callbacks: list[Callable[[Job], object]] = []
        self.listeners: list[asyncio.Queue[Any]] = []


class Job:
    """The future of one task: awaitable, with the latest snapshot always at hand.

    Jobs come from ``Client.submit``, ``Client.submit_many`` and ``Client.watch``. A Job is
    lean (no asyncio future until something awaits it, no lists until something listens), so
    that a batch of 100,000 is built in a blink; only the watcher resolves it.
    """

    __slots__ = (
        "__weakref__", "_hook", "_id", "_loop", "_outcome", "_started", "_task", "_waiters",
        "deadline", "key", "request",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        request: Request | None = None,
        task_id: str | None = None,
        key: str | None = None,
        deadline: float | None = None,
        started: float | None = None,
        hook: Callable[[Job], None] | None = None,
    ) -> None:
        self._loop = loop
        self._outcome: Task | BaseException | None = None  # None while pending
        self._waiters: _Waiters | None = None
        self._id = task_id
        self._task: Task | None = None
        self._started = loop.time() if started is None else started
        self._hook = hook  # told once if the job is cancelled (the watcher's)
        self.request = request  #: the request this job created, None for a watched task
        self.key = key  #: the idempotency key, if any
        self.deadline = deadline  #: the loop time the job gives up, or None

    def _need(self) -> _Waiters:
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = _Waiters()
        return waiters

    def __repr__(self) -> str:
        outcome = self._outcome
        if isinstance(outcome, asyncio.CancelledError):
            state = "cancelled"
        elif isinstance(outcome, Task):
            state = "completed"
        elif outcome is not None:
            state = f"failed {type(outcome).__name__}"
        elif self._task is not None:
            state = f"{self._task.status} {self._task.progress or 0}%"
        else:
            state = "creating" if self._id is None else "watching"
        return f"<Job {self._id or '(not created yet)'} {state}>"

    def __await__(self) -> Generator[Any, None, Task]:
        return asyncio.shield(self._get_future()).__await__()

    @property
    def id(self) -> str | None:
        """The task id; None until the create has answered."""
        return self._id

    @property
    def task(self) -> Task | None:
        """The latest snapshot of the task, or None before the first answer."""
        return self._task

    @property
    def elapsed(self) -> float:
        """Seconds since the job started."""
        return self._loop.time() - self._started

    def done(self) -> bool:
        """Whether the job has its outcome."""
        return self._outcome is not None

    def result(self) -> Task:
        """The COMPLETED task; raises like ``asyncio.Future.result()`` otherwise."""
        outcome = self._outcome
        if outcome is None:
            raise asyncio.InvalidStateError("the job is not done yet")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def exception(self) -> BaseException | None:
        """The job's error, or None if it completed; raises like ``Future.exception()``."""
        outcome = self._outcome
        if outcome is None:
            raise asyncio.InvalidStateError("the job is not done yet")
        if isinstance(outcome, asyncio.CancelledError):
            raise outcome
        return outcome if isinstance(outcome, BaseException) else None

    def cancelled(self) -> bool:
        """Whether the job was cancelled (by ``cancel()`` or the client's closing)."""
        return isinstance(self._outcome, asyncio.CancelledError)

    def cancel(self) -> bool:
        """Stop watching this task here. The task goes on on the gateway (it has no cancel).

        Returns:
            False if the job was already done.
        """
        if self._outcome is not None:
            return False
        hook = self._hook
        self._finish(asyncio.CancelledError())
        if hook is not None:
            hook(self)
        return True

    def add_done_callback(self, fn: Callable[[Job], object]) -> None:
        """Call ``fn(job)`` once the job is done (soon, if it already is)."""
        if self._outcome is not None:
            self._loop.call_soon(fn, self)
        else:
            self._need().callbacks.append(fn)

    async def created(self) -> Task:
        """Wait for the first snapshot: the create's answer, or the first poll of a watch.

        Raises what the job raises if it ends before that.
        """
        if self._task is not None:
            return self._task
        waiters = self._need()
        if waiters.created is None:
            waiters.created = self._loop.create_future()
            waiters.created.add_done_callback(_retrieve)
            if self._outcome is not None:
                _settle(waiters.created, self._outcome)
        return await asyncio.shield(waiters.created)

    async def updates(self) -> AsyncIterator[Task]:
        """Yield each change of status or progress, ending with the terminal snapshot.

        If the job ends without one (deadline, error, cancellation), that error is raised.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if self._task is not None:
            queue.put_nowait(self._task)
        if self._outcome is not None:
            queue.put_nowait(_END)
        else:
            self._need().listeners.append(queue)
        try:
            while (item := await queue.get()) is not _END:
                yield item
        finally:
            if self._waiters is not None and queue in self._waiters.listeners:
                self._waiters.listeners.remove(queue)
        if isinstance(self._outcome, Task):
            return
        if self._task is not None and self._task.terminal:
            return  # it ended FAILED or CANCELLED: that snapshot was the last one
        self.result()  # raises the job's error

    # -- used by the watcher ---------------------------------------------------------------

    def _get_future(self) -> asyncio.Future[Task]:
        waiters = self._need()
        if waiters.future is None:
            waiters.future = self._loop.create_future()
            waiters.future.add_done_callback(_retrieve)
            if self._outcome is not None:
                _settle(waiters.future, self._outcome)
        return waiters.future

    def _update(self, task: Task) -> None:
        """Take a new snapshot; tell listeners if its status or progress changed."""
        old = self._task
        self._task = task
        if self._id is None:
            self._id = task.id
        waiters = self._waiters
        if waiters is None:
            return
        if waiters.created is not None and not waiters.created.done():
            waiters.created.set_result(task)
        if waiters.listeners and (
            old is None or (old.raw_status, old.progress) != (task.raw_status, task.progress)
        ):
            for queue in waiters.listeners:
                queue.put_nowait(task)

    def _finish(self, outcome: Task | BaseException) -> bool:
        """Resolve the job, exactly once. Returns False if it was already done."""
        if self._outcome is not None:
            return False
        self._hook = None
        if isinstance(outcome, Task):
            self._update(outcome)
        self._outcome = outcome
        waiters = self._waiters
        if waiters is None:
            return True
        if waiters.future is not None:
            _settle(waiters.future, outcome)
        if waiters.created is not None:
            _settle(waiters.created, outcome)
        for queue in waiters.listeners:
            queue.put_nowait(_END)
        waiters.listeners.clear()
        callbacks, waiters.callbacks = waiters.callbacks, []
        for fn in callbacks:
            self._loop.call_soon(fn, self)
        return True


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A job nobody awaits must not log "exception was never retrieved": its outcome is kept.
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Task], outcome: Task | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


async def as_completed(
    jobs: Iterable[Job], *, timeout: float | None = None  # noqa: ASYNC109 - the contract's name
) -> AsyncIterator[Job]:
    """Yield jobs as they finish, first finished first.

    Raises:
        TimeoutError: ``timeout`` seconds passed before every job finished. The jobs go on.
    """
    pending = list(jobs)
    done: asyncio.Queue[Job] = asyncio.Queue()
    for job in pending:
        job.add_done_callback(done.put_nowait)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    for count in range(len(pending)):
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            job = await asyncio.wait_for(done.get(), remaining)
        except TimeoutError:
            raise TimeoutError(
                f"{len(pending) - count} of {len(pending)} jobs still running after {timeout}s"
            ) from None
        yield job


async def gather(
    jobs: Iterable[Job], *, return_exceptions: bool = False
) -> list[Task | BaseException]:
    """Wait for every job; return their tasks in the order given.

    With ``return_exceptions=False`` the first error is raised (the other jobs go on);
    with True, errors take their job's place in the list.
    """
    results = await asyncio.gather(
        *(asyncio.shield(job._get_future()) for job in jobs), return_exceptions=return_exceptions
    )
    return list(results)
