"""A synchronous octovid, for scripts and notebooks: the async client on a private loop thread.

::

    import octovid
    import octovid.sync

    with octovid.sync.Client() as client:          # OCTOVID_API_KEY, OCTOVID_BASE_URL
        task = client.generate(octovid.SoraRequest("a paper boat"))
        client.download(task, "videos/")

:class:`Client` takes the arguments of :class:`octovid.Client` and runs one of them on an event
loop of its own, in a thread of its own, as httpx offers ``Client`` beside ``AsyncClient``.
Every method blocks until its answer and re-raises, in the calling thread, what the async
client raised. It may be shared by many threads: they all share its one rate limiter and its one
watcher. It also works where an event loop is already running in the calling thread (Jupyter),
since it never touches that loop. Ctrl-C during a call cancels that call (a create already on
the wire still runs to its answer, so its task is not lost) and raises KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ._client import Client as AsyncClient
from ._client import Stats
from ._download import Progress
from ._jobs import gather
from ._requests import Request
from ._routes import Route
from ._task import Task

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A blocking octovid client; its arguments are those of :class:`octovid.Client`.

    Use it as ``with octovid.sync.Client() as client:``, or call :meth:`close`. Closing stops
    watching (as :meth:`octovid.Client.aclose` does) and ends the thread.
    """

    __slots__ = ("_client", "_closed", "_lock", "_loop", "_thread")

    def __init__(self, api_key: str | None = None, base_url: str | None = None,
                 **options: Any) -> None:
        self._closed = False
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="octovid-sync", daemon=True)
        self._thread.start()

        async def make() -> AsyncClient:
            return AsyncClient(api_key, base_url, **options)

        try:
            self._client = self._call(make())
        except BaseException:
            self._stop()
            raise

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def __repr__(self) -> str:
        if self._closed:
            return "<octovid.sync.Client closed>"
        return f"<octovid.sync.Client of {self._client!r}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A client dropped unclosed ends its thread (its jobs end cancelled, as on close()).
        if not getattr(self, "_closed", True) and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- running on the loop ---------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the client's loop and wait for it in the calling thread."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "octovid.sync.Client was called from its own loop thread (e.g. from a progress "
                "callback); call the async client there instead"
            )
        if self._closed:
            coro.close()
            raise RuntimeError("this octovid.sync.Client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError() from None
        except BaseException:
            future.cancel()  # Ctrl-C (or any other interruption) stops the call on the loop
            raise

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        """Close the async client (every pending job ends cancelled), then end the thread.

        Idempotent, and safe to call from any thread but the client's own.
        """
        with self._lock:
            if self._closed:
                return
            try:
                self._call(self._client.aclose())
            finally:
                self._closed = True
                self._stop()

    # -- the API ---------------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """A snapshot of the client's counters (see :class:`octovid.Stats`)."""
        return self._client.stats

    @property
    def base_url(self) -> str:
        """The gateway's base URL."""
        return self._client.base_url

    def create(self, request: Request) -> Task:
        """Start a task: one create, retried only when safe. See :meth:`octovid.Client.create`."""
        return self._call(self._client.create(request))

    def get(self, task_id: str, *, route: Route | str = Route.UNIFIED) -> Task:
        """Query a task once. See :meth:`octovid.Client.get`."""
        return self._call(self._client.get(task_id, route=route))

    def generate(self, request: Request, *, deadline: float | None = None) -> Task:
        """Create a task and wait for it: the COMPLETED task.

        Raises:
            TaskFailedError: The task ended FAILED or CANCELLED.
            WaitTimeoutError: The deadline passed first.
        """
        return self._call(self._client.generate(request, deadline=deadline))

    def wait(self, task_id: str, *, deadline: float | None = None,
             route: Route | str = Route.UNIFIED) -> Task:
        """Watch an existing task until it ends: the COMPLETED task (raises like generate)."""

        async def wait() -> Task:
            job = self._client.watch(task_id, deadline=deadline, route=route)
            try:
                return await job
            finally:
                job.cancel()  # a no-op once done; stops watching if this call was interrupted

        return self._call(wait())

    def batch(
        self,
        requests: Iterable[Request],
        *,
        keys: Sequence[str] | None = None,
        deadline: float | None = None,
        return_exceptions: bool = True,
    ) -> list[Task | BaseException]:
        """Submit many requests at once and wait for them all; results in the order given.

        Args:
            requests: What to create; they share the rate limiter and one watcher.
            keys: Idempotency keys, with a journal (``Client(journal="batch.db")``): run the
                same batch again after a crash and nothing is created twice.
            deadline: Seconds from now for each job.
            return_exceptions: Each failed job's exception takes its place in the list (the
                default); False raises the first one (the other jobs go on being watched).
        """
        batch = list(requests)

        async def run() -> list[Task | BaseException]:
            jobs = self._client.submit_many(batch, keys=keys, deadline=deadline)
            try:
                return await gather(jobs, return_exceptions=return_exceptions)
            except asyncio.CancelledError:
                for job in jobs:
                    job.cancel()
                raise

        return self._call(run())

    def download(
        self,
        task_or_id: Task | str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download a completed task's video to ``dest``. See :meth:`octovid.Client.download`.

        ``progress`` is called on the client's loop thread.
        """
        return self._call(self._client.download(task_or_id, dest, progress=progress))

    def call(self, function: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run ``await function(async_client)`` on the client's loop; for everything else.

        ``function`` itself is called on the loop too, so it may submit and watch: for example
        ``client.call(lambda c: c.submit(request).created())``.
        """

        async def call() -> T:
            return await function(self._client)

        return self._call(call())
