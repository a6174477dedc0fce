"""The journal on PostgreSQL: one batch run by many workers on many machines.

The same entries and the same order of writes as the SQLite journal (``_journal``): an intent
(``sending``) committed before each create, the task id written as soon as it comes back, an
unanswered create left ``sending`` (uncertain) for good. What PostgreSQL adds is sharing:

* A batch (``octovid_batches``, identified by the sha256 of its file) lists its lines
  (``octovid_batch_lines``); each line gets an outcome (completed, failed, uncertain) once a
  worker has finished it.
* A worker *leases* lines (:meth:`PostgresJournal.lease`: ``SELECT ... FOR UPDATE SKIP LOCKED``
  on the keys' rows, ``owner`` and ``lease_until`` on the database's clock) and renews its leases
  while it lives (:meth:`~PostgresJournal.renew`). The lease is on the key, not on the line, so
  two batches that share a key never work on it at once. A worker killed with SIGKILL renews
  nothing: its lines go to the others once their leases run out.
* The intent is written only for a key nobody sent yet and that no other live worker holds
  (``state IN ('queued', 'refused')``, one row, one atomic UPDATE): two workers can never both
  send the create of one key, whatever their leases say.

psycopg 3 rather than asyncpg: psycopg has both a synchronous and an asyncio API on one driver,
and the journal's interface needs both (``get``, iteration, ``len``, ``forget`` and ``close`` are
synchronous and work outside any event loop, as the SQLite journal's do; the writes run on the
event loop). With asyncpg, every synchronous read would need an event loop of its own in a thread.

Writes go, in order, to one writer task on the caller's event loop, which commits whatever has
queued up in one transaction on its own asyncio connection (reconnecting if the connection was
lost). Reads use a synchronous connection of their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from ._errors import ConfigError, JournalError
from ._journal import (
    JobState,
    Journal,
    JournalEntry,
    LeaseLost,
    _canonical,
    _entry,
    _matched,
    _retrieved,
    _snapshot,
)
from ._requests import journal_payload
from ._task import Task

try:
    import psycopg
except ImportError:  # pragma: no cover - the extra is not installed
    psycopg = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ._requests import Request

__all__ = ["LineOutcome", "PostgresJournal", "Progress", "redact_url"]

log = logging.getLogger("octovid")

_VERSION = 1
_LOCK = 0x6F63746F  # the advisory lock that serialises the schema's creation ("octo")
_COLUMNS = ("key, payload, payload_hash, state, task_id, status, raw, video_url, error, file,"
            " size, sha256, created_at, updated_at, route")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS octovid_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS octovid_jobs (
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
    size         BIGINT,
    sha256       TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL,
    route        TEXT NOT NULL DEFAULT 'unified',
    owner        TEXT,
    lease_until  TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS octovid_jobs_owner ON octovid_jobs (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS octovid_batches (
    batch      TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    lines      INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS octovid_batch_lines (
    batch       TEXT NOT NULL REFERENCES octovid_batches ON DELETE CASCADE,
    key         TEXT NOT NULL,
    number      INTEGER NOT NULL,
    outcome     TEXT,
    error       TEXT,
    finished_by TEXT,
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (batch, key)
);
CREATE INDEX IF NOT EXISTS octovid_batch_open ON octovid_batch_lines (batch, number)
    WHERE outcome IS NULL;
"""


def redact_url(url: str) -> str:
    """The URL with its password (in the address or the query) replaced by ``***``."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, colon, _ = credentials.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, "***" if name == "password" else value)
                           for name, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str) -> list[str]:
    parts = urlsplit(url.strip())
    found = [parts.password] if parts.password else []
    found += [value for name, value in parse_qsl(parts.query) if name == "password" and value]
    return found


@attrs.frozen
class LineOutcome:
    """A finished line of a shared batch, as the worker that finished it recorded it."""

    key: str
    outcome: str  #: ``completed``, ``failed`` or ``uncertain``
    error: str | None
    finished_by: str


@attrs.frozen
class Progress:
    """Where a shared batch stands, for a worker deciding whether to wait or to leave."""

    lines: int
    finished: int
    held: int  #: unfinished lines whose key a live worker holds
    orphans: tuple[str, ...] = ()  #: unfinished lines whose key the journal no longer holds

    @property
    def done(self) -> bool:
        """Every line is finished."""
        return self.finished >= self.lines


_AWrite = Callable[["psycopg.AsyncConnection[Any]"], Awaitable[Any]]
_Item = tuple[_AWrite, "asyncio.Future[Any] | None", str]


def _close_now(connection: psycopg.AsyncConnection[Any]) -> None:
    """Close an asyncio connection from anywhere: its ``close()`` awaits nothing (libpq's
    ``PQfinish``), so the coroutine is run to its end here, without an event loop."""
    coroutine = connection.close()
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()  # pragma: no cover - a future psycopg that awaits in close()
    connection.pgconn.finish()


class _Writer:
    """One task on the event loop that runs the journal's writes in order, in batches."""

    __slots__ = ("_conn", "_conninfo", "_loop", "_queue", "_task", "_unsaved", "path")

    def __init__(self, path: str, conninfo: str) -> None:
        self.path = path
        self._conninfo = conninfo
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._task: asyncio.Task[None] | None = None
        # key -> the write of a task id that failed: tried again with every batch
        self._unsaved: dict[str, _AWrite] = {}

    def submit(self, write: _AWrite, *, wait: bool, what: str) -> asyncio.Future[Any] | None:
        """Queue ``write``; with ``wait``, a future of its result (JournalError if it failed)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._task is None or self._task.done():
            self._start(loop)
        assert self._queue is not None
        future = loop.create_future() if wait else None
        self._queue.put_nowait((write, future, what))
        return future

    def keep(self, key: str, write: _AWrite) -> None:
        """Remember a task id's write that failed, to be tried again."""
        self._unsaved[key] = write

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._conn is not None and loop is not self._loop:
            _close_now(self._conn)  # it belonged to another event loop, now gone
            self._conn = None
        self._loop = loop
        self._queue = asyncio.Queue()
        self._task = loop.create_task(self._run(self._queue), name="octovid-journal")

    async def stop(self) -> None:
        """Finish every queued write, try the unsaved ones a last time, close the connection."""
        if self._task is not None and not self._task.done() and self._queue is not None:
            self._queue.put_nowait(None)
            await asyncio.shield(self._task)
        if self._unsaved:
            await self._retry_unsaved()
            for key in self._unsaved:
                log.error("octovid: the journal %s could not record the task of key %r; it was "
                          "logged above: watch it with Client.watch(task id)", self.path, key)
        self._drop()

    def stop_soon(self) -> None:
        """Stop from the event loop's own thread, without waiting: writes queued still run."""
        if self._task is not None and not self._task.done() and self._queue is not None:
            self._queue.put_nowait(None)
            self._task.add_done_callback(lambda _: self._drop())
        else:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            _close_now(self._conn)
            self._conn = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the writer runs on, if it runs."""
        running = self._task is not None and not self._task.done()
        return self._loop if running else None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                _close_now(self._conn)
            self._conn = None
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=10
            )
        return self._conn

    async def _run(self, items: asyncio.Queue[_Item | None]) -> None:
        while True:
            item = await items.get()
            batch: list[_Item] = []
            while item is not None:
                batch.append(item)
                try:
                    item = items.get_nowait()
                except asyncio.QueueEmpty:
                    break
            if batch:
                await self._write(batch)
            if item is None:
                return

    async def _write(self, batch: list[_Item]) -> None:
        if self._unsaved:
            await self._retry_unsaved()
        try:
            conn = await self._connection()
            async with conn.transaction():  # one transaction for the batch
                results = [await write(conn) for write, _, _ in batch]
        except (psycopg.Error, JournalError, OSError):
            results = None
        if results is not None:
            for (_, future, _), value in zip(batch, results, strict=True):
                _resolve(future, value)
            return
        for write, future, what in batch:  # find the ones that failed; keep the others
            try:
                conn = await self._connection()
                async with conn.transaction():
                    result: Any = await write(conn)
            except (psycopg.Error, JournalError, OSError) as exc:
                result = exc if isinstance(exc, JournalError) else JournalError(
                    f"the journal {self.path} could not record {what}: {_clean(exc, self)}"
                )
            _resolve(future, result)

    async def _retry_unsaved(self) -> None:
        for key, write in list(self._unsaved.items()):
            try:
                conn = await self._connection()
                async with conn.transaction():
                    await write(conn)
            except (psycopg.Error, OSError):
                continue
            del self._unsaved[key]
            log.warning("octovid: the journal %s recorded the task of key %r at last",
                        self.path, key)

    @property
    def secrets(self) -> list[str]:
        """What must never appear in a message."""
        return _secrets_of(self._conninfo)


def _clean(exc: BaseException, writer: _Writer | PostgresJournal) -> str:
    """An error's text, first line only, without the URL's password."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in writer.secrets:
        text = text.replace(secret, "***")
    return text


def _resolve(future: asyncio.Future[Any] | None, result: Any) -> None:
    if future is None:
        if isinstance(result, JournalError):
            log.warning("octovid: %s", result)
        return
    if future.done():
        return
    if isinstance(result, JournalError):
        future.set_exception(result)
    else:
        future.set_result(result)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class PostgresJournal(Journal):
    """A journal on PostgreSQL that many workers share: ``Journal("postgresql://...")``.

    Args:
        url: A ``postgresql://`` (or ``postgres://``) URL; the tables (``octovid_*``) are
            created on first use.

    Raises:
        ConfigError: psycopg is not installed, or the database cannot be reached.
        JournalError: The database holds a journal of a newer octovid.

    Attributes:
        path: The URL without its password.
        owner: This journal's name as a worker (``host:pid:random``), on its leases.
    """

    __slots__ = ("_conninfo", "_db", "_writer", "owner", "path")
    shared = True

    def __init__(self, url: str | os.PathLike[str]) -> None:
        if psycopg is None:  # pragma: no cover - the extra is not installed
            raise ConfigError("a journal on PostgreSQL needs psycopg: "
                              "pip install 'octovid[postgres]'")
        self._conninfo = str(url).strip()
        self.path = redact_url(self._conninfo)
        self.owner = _worker_name()
        try:
            self._db = psycopg.Connection.connect(self._conninfo, autocommit=True,
                                                  connect_timeout=10)
        except psycopg.Error as exc:
            raise ConfigError(
                f"cannot connect to the journal's database {self.path}: {_clean(exc, self)}"
            ) from None
        try:
            self._create_schema()
        except psycopg.Error as exc:
            self._db.close()
            raise JournalError(
                f"cannot open the journal {self.path}: {_clean(exc, self)}"
            ) from None
        except JournalError:
            self._db.close()
            raise
        self._writer = _Writer(self.path, self._conninfo)

    @property
    def secrets(self) -> list[str]:
        """What must never appear in a message."""
        return _secrets_of(self._conninfo)

    def _create_schema(self) -> None:
        with self._db.transaction():
            # Workers starting together: one creates the tables, the others wait for it.
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            self._db.execute(_SCHEMA)
            row = self._db.execute(
                "SELECT value FROM octovid_meta WHERE name = 'version'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > _VERSION:
                raise JournalError(
                    f"{self.path} was written by a newer octovid (journal version {version})"
                )
            self._db.execute(
                "INSERT INTO octovid_meta (name, value) VALUES ('version', %s)"
                " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", (str(_VERSION),),
            )

    def close(self) -> None:
        """Finish the queued writes and close the connections.

        Inside the event loop, prefer ``await journal.aclose()`` (or ``async with``): from the
        loop's own thread ``close()`` cannot wait, and the queued writes finish later on it.
        """
        loop = self._writer.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is loop:
            self._writer.stop_soon()
        elif loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._writer.stop(), loop).result()
        else:
            self._writer._drop()
        self._db.close()

    async def aclose(self) -> None:
        """Finish the queued writes and close the connections, from inside the event loop."""
        await self._writer.stop()
        self._db.close()

    # -- reading ---------------------------------------------------------------------------

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise JournalError(f"the journal {self.path} could not be read: "
                               f"{_clean(exc, self)}") from None

    def get(self, key: str) -> JournalEntry | None:
        """The entry of ``key``, or None."""
        rows = self._read(f"SELECT {_COLUMNS} FROM octovid_jobs WHERE key = %s", (key,))
        return _entry(rows[0]) if rows else None

    def key_of(self, task_id: str) -> str | None:
        """The key whose create returned ``task_id``, or None."""
        rows = self._read("SELECT key FROM octovid_jobs WHERE task_id = %s", (task_id,))
        return str(rows[0][0]) if rows else None

    def __iter__(self) -> Iterator[JournalEntry]:
        rows = self._read(f"SELECT {_COLUMNS} FROM octovid_jobs ORDER BY created_at, key")
        return (_entry(row) for row in rows)

    def __len__(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM octovid_jobs")[0][0])

    def forget(self, key: str) -> None:
        """Drop ``key``: a later submit with it creates a new task (which may be billed)."""
        try:
            self._db.execute("DELETE FROM octovid_jobs WHERE key = %s", (key,))
        except psycopg.Error as exc:
            raise JournalError(f"the journal {self.path} could not forget {key!r}: "
                               f"{_clean(exc, self)}") from None

    # -- writing, on the event loop --------------------------------------------------------

    async def _submit(self, write: _AWrite, what: str) -> Any:
        future = self._writer.submit(write, wait=True, what=what)
        assert future is not None
        return await future

    async def claim(
        self, items: Sequence[tuple[str, Request]]
    ) -> list[JournalEntry | JournalError]:
        """Record each (key, request) that is new, in one transaction; return every entry.

        A key already held for a different request body gets a JournalError in its place.
        """
        for key, _ in items:
            if not isinstance(key, str) or not key:
                raise JournalError(f"an idempotency key must be a non-empty string, not {key!r}")
        now = time.time()
        rows = []
        for key, request in items:
            text = _canonical(journal_payload(request))
            rows.append((key, text, hashlib.sha256(text.encode()).hexdigest(), now, now))

        async def write(conn: psycopg.AsyncConnection[Any]) -> list[JournalEntry | JournalError]:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO octovid_jobs (key, payload, payload_hash, state, created_at,"
                    " updated_at) VALUES (%s, %s, %s, 'queued', %s, %s)"
                    " ON CONFLICT (key) DO NOTHING", rows,
                )
                await cursor.execute(
                    f"SELECT {_COLUMNS} FROM octovid_jobs WHERE key = ANY(%s)",
                    ([row[0] for row in rows],),
                )
                found = {entry.key: entry for entry in map(_entry, await cursor.fetchall())}
            return _matched(rows, found)

        result: list[JournalEntry | JournalError] = await self._submit(
            write, f"{len(items)} claims"
        )
        return result

    async def sending(self, key: str) -> None:
        """Record, and commit, that the create of ``key`` is about to go out.

        Only a key that nobody sent yet, and that no other live worker holds, is marked.

        Raises:
            LeaseLost: Another worker holds the key: the create must not be sent here.
            JournalError: It could not be recorded: the create must not be sent.
        """
        owner, path = self.owner, self.path

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            cursor = await conn.execute(
                "UPDATE octovid_jobs SET state = 'sending', error = NULL, updated_at = %s"
                " WHERE key = %s AND state IN ('queued', 'refused') AND (owner IS NULL"
                " OR owner = %s OR lease_until < now()) RETURNING key",
                (time.time(), key, owner),
            )
            if await cursor.fetchone() is not None:
                return
            row = await (await conn.execute(
                "SELECT state, owner FROM octovid_jobs WHERE key = %s", (key,)
            )).fetchone()
            if row is None:
                raise JournalError(f"the key {key!r} is not in the journal {path}")
            if row[0] in (JobState.QUEUED, JobState.REFUSED):
                raise LeaseLost(f"the key {key!r} is held by another worker ({row[1]})")
            raise LeaseLost(f"the create of {key!r} was sent already ({row[0]})")

        await self._submit(write, f"the create of {key!r}")

    def _queue(self, write: _AWrite, what: str) -> None:
        self._writer.submit(write, wait=False, what=what)

    def _setter(self, key: str, **fields: Any) -> _AWrite:
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = %s" for name in fields)
        values = (*fields.values(), key)
        path = self.path

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            cursor = await conn.execute(f"UPDATE octovid_jobs SET {columns} WHERE key = %s",
                                        values)
            if cursor.rowcount != 1:
                raise JournalError(f"the key {key!r} is not in the journal {path}")

        return write

    def created(self, key: str, task: Task) -> asyncio.Future[None]:
        """Record the task id the gateway returned for ``key``, as soon as possible.

        Returns:
            A future done once the id is committed: a client reports a task created only then,
            so that a process killed right after still leaves the id in the journal. If the
            write fails, the future holds the JournalError, and the id is kept in memory and
            written again (and logged).
        """
        write = self._setter(key, state=JobState.CREATED.value, task_id=task.id,
                             route=task.route.value, **_snapshot(task))

        async def keep_or_write(conn: psycopg.AsyncConnection[Any]) -> None:
            try:
                await write(conn)
            except (psycopg.Error, OSError):
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
        self._queue(self._setter(key, state=JobState.QUEUED.value, error=None),
                    f"the unsent create of {key!r}")

    def refused(self, key: str, error: BaseException) -> None:
        """Record that the gateway refused the create of ``key``: nothing was billed."""
        self._queue(self._setter(key, state=JobState.REFUSED.value, error=str(error)),
                    f"the refusal of {key!r}")

    def uncertain(self, key: str, error: BaseException) -> None:
        """Record that the create of ``key`` was sent and its answer lost."""
        self._queue(self._setter(key, state=JobState.SENDING.value, error=str(error)),
                    f"the lost answer of {key!r}")

    def update(self, task: Task) -> None:
        """Record a new snapshot of a journaled task (ignored for other tasks)."""
        values = (*_snapshot(task).values(), time.time(), task.id)

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE octovid_jobs SET status = %s, raw = %s,"
                " video_url = COALESCE(%s, video_url), error = %s, updated_at = %s"
                " WHERE task_id = %s", values,
            )

        self._queue(write, f"the status of task {task.id}")

    async def downloaded(self, task_id: str, file: str, size: int, sha256: str) -> None:
        """Record the verified file of a journaled task."""
        values = (file, size, sha256, time.time(), task_id)

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE octovid_jobs SET file = %s, size = %s, sha256 = %s, updated_at = %s"
                " WHERE task_id = %s", values,
            )

        await self._submit(write, f"the file of task {task_id}")

    async def flush(self) -> None:
        """Wait until every write queued so far is done."""

        async def nothing(conn: psycopg.AsyncConnection[Any]) -> None:
            return None

        await self._submit(nothing, "a flush")

    # -- a batch shared by many workers ----------------------------------------------------

    async def register(
        self, batch: str, path: str, lines: Sequence[tuple[int, str, Request]]
    ) -> list[JournalEntry | JournalError]:
        """Record a batch and its lines (number, key, request) once; claim every key.

        Every worker of the batch calls it at start; the first one's rows stand.
        """
        now = time.time()

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "INSERT INTO octovid_batches (batch, path, lines, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (batch) DO NOTHING",
                (batch, path, len(lines), now),
            )
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO octovid_batch_lines (batch, key, number) VALUES (%s, %s, %s)"
                    " ON CONFLICT (batch, key) DO NOTHING",
                    [(batch, key, number) for number, key, _ in lines],
                )

        await self._submit(write, f"the lines of batch {batch[:12]}")
        return await self.claim([(key, request) for _, key, request in lines])

    async def lease(self, batch: str, limit: int, seconds: float, skip: Sequence[str] = (),
                    *, sent: bool = False) -> list[tuple[JournalEntry, str | None]]:
        """Lease up to ``limit`` unfinished lines of ``batch`` nobody holds, in file order.

        With ``sent``, only lines whose create was sent (to watch, download or report
        uncertain): a worker busy creating its own lines still takes those over at once.

        Returns:
            Each leased key's entry, and the worker whose lease on it had run out (or None).
        """
        owner = self.owner
        which = " AND j.state IN ('sending', 'created')" if sent else ""

        async def write(
            conn: psycopg.AsyncConnection[Any],
        ) -> list[tuple[JournalEntry, str | None]]:
            cursor = await conn.execute(
                "WITH picked AS (SELECT j.key, j.owner AS was FROM octovid_batch_lines b"
                " JOIN octovid_jobs j ON j.key = b.key"
                " WHERE b.batch = %s AND b.outcome IS NULL AND NOT (b.key = ANY(%s))"
                f" AND (j.owner IS NULL OR j.lease_until < now()){which}"
                " ORDER BY b.number LIMIT %s FOR UPDATE OF j SKIP LOCKED)"
                " UPDATE octovid_jobs AS t SET owner = %s,"
                " lease_until = now() + make_interval(secs => %s)"
                f" FROM picked WHERE t.key = picked.key"
                f" RETURNING {', '.join('t.' + c.strip() for c in _COLUMNS.split(','))},"
                " picked.was",
                (batch, list(skip), limit, owner, seconds),
            )
            return [(_entry(row[:-1]), row[-1]) for row in await cursor.fetchall()]

        result: list[tuple[JournalEntry, str | None]] = await self._submit(
            write, f"the leases of batch {batch[:12]}"
        )
        return result

    async def renew(self, keys: Sequence[str], seconds: float) -> set[str]:
        """Extend this worker's leases of ``keys``; return the keys it still holds."""
        owner = self.owner

        async def write(conn: psycopg.AsyncConnection[Any]) -> set[str]:
            cursor = await conn.execute(
                "UPDATE octovid_jobs SET lease_until = now() + make_interval(secs => %s)"
                " WHERE owner = %s AND key = ANY(%s) RETURNING key",
                (seconds, owner, list(keys)),
            )
            return {str(row[0]) for row in await cursor.fetchall()}

        result: set[str] = await self._submit(write, "the renewal of the leases")
        return result

    async def claim_download(self, key: str, seconds: float) -> bool:
        """Take the download of ``key``'s video: this worker holds the key, nobody has a file."""
        owner = self.owner

        async def write(conn: psycopg.AsyncConnection[Any]) -> bool:
            cursor = await conn.execute(
                "UPDATE octovid_jobs SET lease_until = now() + make_interval(secs => %s)"
                " WHERE key = %s AND owner = %s AND file IS NULL RETURNING key",
                (seconds, key, owner),
            )
            return await cursor.fetchone() is not None

        result: bool = await self._submit(write, f"the download of {key!r}")
        return result

    async def finish(self, batch: str, key: str, outcome: str, error: str | None) -> None:
        """Record a line's outcome (the first one recorded stands) and release its key."""
        owner = self.owner
        now = time.time()

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE octovid_batch_lines SET outcome = %s, error = %s, finished_by = %s,"
                " finished_at = %s WHERE batch = %s AND key = %s AND outcome IS NULL",
                (outcome, error, owner, now, batch, key),
            )
            await conn.execute(
                "UPDATE octovid_jobs SET owner = NULL, lease_until = NULL"
                " WHERE key = %s AND owner = %s", (key, owner),
            )

        await self._submit(write, f"the outcome of {key!r}")

    async def release(self, keys: Sequence[str] | None = None) -> None:
        """Give up this worker's leases (of ``keys``, or all): others may take them at once."""
        owner = self.owner

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            if keys is None:
                await conn.execute("UPDATE octovid_jobs SET owner = NULL, lease_until = NULL"
                                   " WHERE owner = %s", (owner,))
            else:
                await conn.execute("UPDATE octovid_jobs SET owner = NULL, lease_until = NULL"
                                   " WHERE owner = %s AND key = ANY(%s)", (owner, list(keys)))

        await self._submit(write, "the release of the leases")

    async def progress(self, batch: str) -> Progress:
        """How many lines of ``batch`` are finished, and how many live workers hold."""

        async def write(conn: psycopg.AsyncConnection[Any]) -> Progress:
            cursor = await conn.execute(
                "SELECT COUNT(*), COUNT(b.outcome),"
                " COUNT(*) FILTER (WHERE b.outcome IS NULL AND j.owner IS NOT NULL"
                " AND j.lease_until >= now()),"
                " COALESCE(array_agg(b.key) FILTER (WHERE b.outcome IS NULL AND j.key IS NULL),"
                " '{}')"
                " FROM octovid_batch_lines b LEFT JOIN octovid_jobs j ON j.key = b.key"
                " WHERE b.batch = %s", (batch,),
            )
            row = await cursor.fetchone()
            assert row is not None
            return Progress(int(row[0]), int(row[1]), int(row[2]), tuple(row[3]))

        result: Progress = await self._submit(write, f"the progress of batch {batch[:12]}")
        return result

    async def outcomes(self, batch: str) -> dict[str, LineOutcome]:
        """The finished lines of ``batch``: key -> its outcome."""

        async def write(conn: psycopg.AsyncConnection[Any]) -> dict[str, LineOutcome]:
            cursor = await conn.execute(
                "SELECT key, outcome, error, finished_by FROM octovid_batch_lines"
                " WHERE batch = %s AND outcome IS NOT NULL", (batch,),
            )
            return {row[0]: LineOutcome(*row) for row in await cursor.fetchall()}

        result: dict[str, LineOutcome] = await self._submit(write, "the outcomes")
        return result

    async def entries(self, keys: Sequence[str]) -> dict[str, JournalEntry]:
        """The entries of ``keys`` that the journal holds, in one query."""

        async def write(conn: psycopg.AsyncConnection[Any]) -> dict[str, JournalEntry]:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM octovid_jobs WHERE key = ANY(%s)", (list(keys),)
            )
            return {entry.key: entry for entry in map(_entry, await cursor.fetchall())}

        result: dict[str, JournalEntry] = await self._submit(write, "entries")
        return result

