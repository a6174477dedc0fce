"""The journal: a SQLite file that makes batches safe to kill and run again.

(:class:`Journal` is the interface; :class:`SQLiteJournal` this file's journal, and
``_journal_postgres`` the one on PostgreSQL that many workers share.)

For each idempotency key it keeps the request body (and its hash), the task id once the gateway
returned it, the latest status, the result, and the downloaded file. The order of writes is
what makes it safe (:class:`JobState`):

1. ``queued``: the key is known; nothing was sent. A new run creates it.
2. ``sending``: written, and committed, before the create goes out. If the process dies now,
   nobody knows whether the gateway accepted it: a new run reports it as uncertain and does not
   create it again unless told to (``forget``).
3. ``created``: the task id, written as soon as the answer arrives. From here on a new run
   watches that task instead of creating another.
4. ``refused``: the gateway refused the create (nothing billed); a new run may create it again.

Nothing here blocks the event loop: writes go, in order, to one writer thread, which commits
whatever has queued up in one transaction (a batch of 100,000 claims is one transaction). A
write that fails is reported as a :class:`JournalError`, never as an answer of the gateway; a
task id that could not be written is kept in memory, written again with every later batch and
at close, and logged, so that it is never lost. Reads (``get``, iteration) use a connection of
their own, which WAL mode lets read while the writer writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import attrs

from ._errors import JournalError
from ._requests import Request, journal_payload
from ._routes import Route
from ._task import Status, Task

__all__ = [
    "JobState", "Journal", "JournalEntry", "LeaseLost", "SQLiteJournal", "is_postgres_url",
    "payload_hash",
]

log = logging.getLogger("octovid")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key          TEXT PRIMARY KEY,
    payload      TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    state        TEXT NOT NULL,
    task_id      TEXT UNIQUE,
    status       TEXT,
    raw          TEXT,
    video_url    TEXT,
    error        TEXT,
    file         TEXT,
    size         INTEGER,
    sha256       TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    route        TEXT NOT NULL DEFAULT 'unified'
);
"""
_VERSION = 2  # 2: the route family of each task
_IN_CHUNK = 500  # keys per SELECT ... IN (...): below SQLite's limit on variables


class JobState(enum.StrEnum):
    """Where a key's create stands; see the module docstring."""

    QUEUED = "queued"
    SENDING = "sending"
    CREATED = "created"
    REFUSED = "refused"


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(payload: Mapping[str, Any]) -> str:
    """The sha256 of a request body in canonical JSON: equal bodies, equal hashes."""
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


@attrs.frozen
class JournalEntry:
    """What the journal holds for one key."""

    key: str
    payload: Mapping[str, Any] = attrs.field(eq=False, repr=False)
    payload_hash: str = attrs.field(repr=False)
    state: JobState
    task_id: str | None = None
    status: Status | None = None
    video_url: str | None = None
    error: str | None = None
    file: str | None = None
    size: int | None = None
    sha256: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    raw: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    route: Route = Route.UNIFIED  #: the route family the task was created on

    @property
    def uncertain(self) -> bool:
        """The create was sent and never answered: it may exist and be billed."""
        return self.state is JobState.SENDING

    @property
    def task(self) -> Task | None:
        """The last snapshot recorded, rebuilt from the answer's body."""
        if self.task_id is None:
            return None
        if self.raw:
            return Task.from_response(self.raw, task_id=self.task_id, route=self.route)
        status = self.status or Status.UNKNOWN
        return Task(id=self.task_id, status=status, raw_status=status.value,
                    video_url=self.video_url, error=self.error, route=self.route)


_Write = Callable[[sqlite3.Connection], Any]


class _Writer:
    """One thread that runs the journal's writes in order, batching what has queued up."""

    __slots__ = ("_connect", "_db", "_queue", "_thread", "_unsaved", "path")

    def __init__(self, path: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self.path = path
        self._connect = connect
        self._db: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[
            tuple[_Write, asyncio.Future[Any] | None, str] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # key -> the write of a task id that failed: tried again with every batch
        self._unsaved: dict[str, _Write] = {}

    def submit(self, write: _Write, *, wait: bool, what: str) -> asyncio.Future[Any] | None:
        """Queue ``write``; with ``wait``, a future of its result (JournalError if it failed)."""
        future = asyncio.get_running_loop().create_future() if wait else None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="octovid-journal",
                                            daemon=True)
            self._thread.start()
        self._queue.put((write, future, what))
        return future

    def keep(self, key: str, write: _Write) -> None:
        """Remember a task id's write that failed, to be tried again."""
        self._unsaved[key] = write

    def close(self) -> None:
        """Finish every queued write, try the unsaved ones a last time, stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._unsaved:
            db = self._db or self._connect()
            self._retry_unsaved(db)
            for key in self._unsaved:
                log.error("octovid: the journal %s could not record the task of key %r; it was "
                          "logged above: watch it with Client.watch(task id)", self.path, key)
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run(self) -> None:
        self._db = db = self._connect()
        while True:
            item = self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(db, batch)
            if item is None:
                return

    def _write(self, db: sqlite3.Connection,
               batch: list[tuple[_Write, asyncio.Future[Any] | None, str]]) -> None:
        if self._unsaved:
            self._retry_unsaved(db)
        try:
            with db:  # one transaction for the batch
                results = [write(db) for write, _, _ in batch]
        except (sqlite3.Error, JournalError):
            results = None
        if results is not None:
            for (_, future, _), value in zip(batch, results, strict=True):
                _resolve(future, value)
            return
        for write, future, what in batch:  # find the one that failed; keep the others
            try:
                with db:
                    result: Any = write(db)
            except (sqlite3.Error, JournalError) as exc:
                result = exc if isinstance(exc, JournalError) else JournalError(
                    f"the journal {self.path} could not record {what}: {exc}"
                )
            _resolve(future, result)

    def _retry_unsaved(self, db: sqlite3.Connection) -> None:
        for key, write in list(self._unsaved.items()):
            try:
                with db:
                    write(db)
            except sqlite3.Error:
                continue
            del self._unsaved[key]
            log.warning("octovid: the journal %s recorded the task of key %r at last",
                        self.path, key)


def _matched(
    rows: Sequence[tuple[Any, ...]], found: Mapping[str, JournalEntry]
) -> list[JournalEntry | JournalError]:
    """Each claimed row's entry, or a JournalError where its key holds another request."""
    out: list[JournalEntry | JournalError] = []
    for key, _, digest, *_ in rows:
        entry = found[key]
        if entry.payload_hash != digest:
            out.append(JournalError(
                f"the key {key!r} was used before for a different request "
                f"({_describe(entry.payload)}); use another key, or forget this one"
            ))
        else:
            out.append(entry)
    return out


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # logged where it was kept; nobody need wait for it


def _resolve(future: asyncio.Future[Any] | None, result: Any) -> None:
    if future is None:
        if isinstance(result, JournalError):
            log.warning("octovid: %s", result)
        return

    def settle() -> None:
        if future.done():
            return
        if isinstance(result, JournalError):
            future.set_exception(result)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        future.get_loop().call_soon_threadsafe(settle)


class Journal:
    """A journal of idempotency keys, task ids, results and files.

    ``Journal(path)`` is a SQLite file (created if missing; ``":memory:"`` for a throwaway one),
    for batches on one machine. ``Journal("postgresql://user@host/db")`` (or ``postgres://``)
    is a journal on PostgreSQL that many workers on many machines share for one batch (it needs
    ``pip install 'octovid[postgres]'``). Both keep the same entries behind the same methods.

    Reading (``get``, ``key_of``, iteration, ``len``) and ``forget`` are synchronous and quick;
    the writes the client makes are coroutines or queued, and run off the event loop.
    """

    __slots__ = ()
    path: str
    #: Whether many workers may share it for one batch (leases, outcomes): PostgreSQL's.
    shared: bool = False

    def __new__(cls, path: str | os.PathLike[str], *args: Any, **options: Any) -> Journal:
        kind: type[Journal] = cls
        if cls is Journal:
            if is_postgres_url(path):
                from ._journal_postgres import PostgresJournal  # noqa: PLC0415 - optional

                kind = PostgresJournal
            else:
                kind = SQLiteJournal
        return super().__new__(kind)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Finish the queued writes and close the journal."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Finish the queued writes and close the journal, from inside the event loop."""
        await self.flush()
        await asyncio.to_thread(self.close)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> JournalEntry | None:
        """The entry of ``key``, or None."""
        raise NotImplementedError

    def key_of(self, task_id: str) -> str | None:
        """The key whose create returned ``task_id``, or None."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[JournalEntry]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def forget(self, key: str) -> None:
        """Drop ``key``: a later submit with it creates a new task (which may be billed)."""
        raise NotImplementedError

    # -- writing, off the event loop -------------------------------------------------------

    async def claim(
        self, items: Sequence[tuple[str, Request]]
    ) -> list[JournalEntry | JournalError]:
        """Record each (key, request) that is new, in one transaction; return every entry.

        A key already held for a different request body gets a JournalError in its place.
        """
        raise NotImplementedError

    async def sending(self, key: str) -> None:
        """Record, and commit, that the create of ``key`` is about to go out.

        Raises:
            JournalError: It could not be recorded: the create must not be sent.
        """
        raise NotImplementedError

    def created(self, key: str, task: Task) -> asyncio.Future[None]:
        """Record the task id the gateway returned for ``key``, as soon as possible.

        Returns:
            A future done once the id is committed: a client reports a task created only then,
            so that a process killed right after still leaves the id in the journal. If the
            write fails, the future holds the JournalError, and the id is kept in memory and
            written again (and logged).
        """
        raise NotImplementedError

    def unsent(self, key: str) -> None:
        """Record that the create of ``key`` was not sent after all (its caller left first)."""
        raise NotImplementedError

    def refused(self, key: str, error: BaseException) -> None:
        """Record that the gateway refused the create of ``key``: nothing was billed."""
        raise NotImplementedError

    def uncertain(self, key: str, error: BaseException) -> None:
        """Record that the create of ``key`` was sent and its answer lost."""
        raise NotImplementedError

    def update(self, task: Task) -> None:
        """Record a new snapshot of a journaled task (ignored for other tasks)."""
        raise NotImplementedError

    async def downloaded(self, task_id: str, file: str, size: int, sha256: str) -> None:
        """Record the verified file of a journaled task."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Wait until every write queued so far is done."""
        raise NotImplementedError


class LeaseLost(JournalError):
    """Another worker holds the key now (this worker's lease ran out): it does not send it."""


def is_postgres_url(path: object) -> bool:
    """Whether a journal's location is a PostgreSQL URL (``postgresql://``, ``postgres://``)."""
    return isinstance(path, str) and path.strip().lower().startswith(
        ("postgresql://", "postgres://")
    )


class SQLiteJournal(Journal):
    """A SQLite journal: :class:`Journal` of a file path, for batches on one machine.

    Args:
        path: The database file (created if missing); ``":memory:"`` for a throwaway one.
    """

    __slots__ = ("_db", "_file", "_scratch", "_writer", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        # ":memory:" is a file that goes with the journal: the reader and the writer share it.
        self._scratch = tempfile.mkdtemp(prefix="octovid-") if self.path == ":memory:" else None
        self._file = str(Path(self._scratch, "journal.db")) if self._scratch else self.path
        if self._scratch is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _VERSION:
                raise JournalError(
                    f"{self.path} was written by a newer octovid (journal version {version})"
                )
            self._db.executescript(_SCHEMA)
            if version == 1:  # the tasks of version 1 were all created on the unified route
                self._db.execute(
                    "ALTER TABLE jobs ADD COLUMN route TEXT NOT NULL DEFAULT 'unified'"
                )
            self._db.execute(f"PRAGMA user_version={_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        self._writer = _Writer(self.path, self._connect)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._file, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def close(self) -> None:
        """Finish the queued writes and close the database."""
        self._writer.close()
        self._db.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> JournalEntry | None:
        """The entry of ``key``, or None."""
        row = self._db.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else _entry(row)

    def key_of(self, task_id: str) -> str | None:
        """The key whose create returned ``task_id``, or None."""
        row = self._db.execute("SELECT key FROM jobs WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def __iter__(self) -> Iterator[JournalEntry]:
        rows = self._db.execute("SELECT * FROM jobs ORDER BY created_at, key").fetchall()
        return (_entry(row) for row in rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def forget(self, key: str) -> None:
        """Drop ``key``: a later submit with it creates a new task (which may be billed)."""
        try:
            self._db.execute("DELETE FROM jobs WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            raise JournalError(f"the journal {self.path} could not forget {key!r}: {exc}") \
                from exc

    # -- writing, off the event loop -------------------------------------------------------

    async def claim(
        self, items: Sequence[tuple[str, Request]]
    ) -> list[JournalEntry | JournalError]:
        """Record each (key, request) that is new, in one transaction; return every entry.

        A key already held for a different request body gets a JournalError in its place.
        """
        for key, _ in items:
            if not isinstance(key, str) or not key:
                raise JournalError(f"an idempotency key must be a non-empty string, not {key!r}")

        def write(db: sqlite3.Connection) -> list[JournalEntry | JournalError]:
            now = time.time()
            rows = []
            payloads = []
            for key, request in items:
                payload = journal_payload(request)
                payloads.append(payload)
                text = _canonical(payload)
                rows.append((key, text, hashlib.sha256(text.encode()).hexdigest(), now, now))
            cursor = db.executemany(
                "INSERT OR IGNORE INTO jobs (key, payload, payload_hash, state, created_at,"
                " updated_at) VALUES (?, ?, ?, 'queued', ?, ?)", rows,
            )
            if cursor.rowcount == len(rows):  # all new (a first run): nothing to read back
                return [
                    JournalEntry(key=key, payload=payload, payload_hash=digest,
                                 state=JobState.QUEUED, created_at=now, updated_at=now)
                    for (key, _, digest, _, _), payload in zip(rows, payloads, strict=True)
                ]
            found: dict[str, JournalEntry] = {}
            keys = [row[0] for row in rows]
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start:start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT * FROM jobs WHERE key IN ({marks})"
                for row in db.execute(query, chunk).fetchall():
                    found[row[0]] = _entry(row)
            return _matched(rows, found)

        future = self._writer.submit(write, wait=True, what=f"{len(items)} claims")
        assert future is not None
        result: list[JournalEntry | JournalError] = await future
        return result

    async def sending(self, key: str) -> None:
        """Record, and commit, that the create of ``key`` is about to go out.

        Raises:
            JournalError: It could not be recorded: the create must not be sent.
        """
        write = self._setter(key, state=JobState.SENDING, error=None)
        future = self._writer.submit(write, wait=True, what=f"the create of {key!r}")
        assert future is not None
        await future

    def created(self, key: str, task: Task) -> asyncio.Future[None]:
        """Record the task id the gateway returned for ``key``, as soon as possible.

        Returns:
            A future done once the id is committed: a client reports a task created only then,
            so that a process killed right after still leaves the id in the journal. If the
            write fails, the future holds the JournalError, and the id is kept in memory and
            written again (and logged).
        """
        write = self._setter(key, state=JobState.CREATED, task_id=task.id, route=task.route.value,
                             **_snapshot(task))

        def keep_or_write(db: sqlite3.Connection) -> None:
            try:
                write(db)
            except sqlite3.Error:
                log.warning("octovid: the journal %s could not record task %s of key %r; it "
                            "is kept in memory and written again later", self.path, task.id, key)
                self._writer.keep(key, write)
                raise

        future = self._writer.submit(keep_or_write, wait=True, what=f"task {task.id} of {key!r}")
        assert future is not None
        future.add_done_callback(_retrieved)
        return future

    def unsent(self, key: str) -> None:
        """Record that the create of ``key`` was not sent after all (its caller left first)."""
        write = self._setter(key, state=JobState.QUEUED, error=None)
        self._writer.submit(write, wait=False, what=f"the unsent create of {key!r}")

    def refused(self, key: str, error: BaseException) -> None:
        """Record that the gateway refused the create of ``key``: nothing was billed."""
        write = self._setter(key, state=JobState.REFUSED, error=str(error))
        self._writer.submit(write, wait=False, what=f"the refusal of {key!r}")

    def uncertain(self, key: str, error: BaseException) -> None:
        """Record that the create of ``key`` was sent and its answer lost."""
        write = self._setter(key, state=JobState.SENDING, error=str(error))
        self._writer.submit(write, wait=False, what=f"the lost answer of {key!r}")

    def update(self, task: Task) -> None:
        """Record a new snapshot of a journaled task (ignored for other tasks)."""
        values = (*_snapshot(task).values(), time.time(), task.id)

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET status = ?, raw = ?, video_url = COALESCE(?, video_url),"
                " error = ?, updated_at = ? WHERE task_id = ?", values,
            )

        self._writer.submit(write, wait=False, what=f"the status of task {task.id}")

    async def downloaded(self, task_id: str, file: str, size: int, sha256: str) -> None:
        """Record the verified file of a journaled task."""
        values = (file, size, sha256, time.time(), task_id)

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET file = ?, size = ?, sha256 = ?, updated_at = ? WHERE task_id = ?",
                values,
            )

        future = self._writer.submit(write, wait=True, what=f"the file of task {task_id}")
        assert future is not None
        await future

    async def flush(self) -> None:
        """Wait until every write queued so far is done."""
        future = self._writer.submit(lambda db: None, wait=True, what="a flush")
        assert future is not None
        await future

    def _setter(self, key: str, **fields: Any) -> _Write:
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        values = (*fields.values(), key)
        path = self.path

        def write(db: sqlite3.Connection) -> None:
            cursor = db.execute(f"UPDATE jobs SET {columns} WHERE key = ?", values)
            if cursor.rowcount != 1:
                raise JournalError(f"the key {key!r} is not in the journal {path}")

        return write


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    (key, payload, digest, state, task_id, status, raw, video_url, error, file, size,
     sha256, created_at, updated_at, route) = row
    return JournalEntry(
        key=key,
        payload=json.loads(payload),
        payload_hash=digest,
        state=JobState(state),
        task_id=task_id,
        status=Status(status) if status else None,
        video_url=video_url,
        error=error,
        file=file,
        size=size,
        sha256=sha256,
        created_at=created_at,
        updated_at=updated_at,
        raw=json.loads(raw) if raw else None,
        route=Route(route),
    )


def _snapshot(task: Task) -> dict[str, Any]:
    try:
        raw = json.dumps(dict(task.raw), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        raw = None
    return {"status": task.status.value, "raw": raw, "video_url": task.video_url,
            "error": task.error}


def _describe(payload: Mapping[str, Any]) -> str:
    prompt = str(payload.get("prompt", ""))
    prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    return f"{payload.get('model')}: {prompt!r}"
