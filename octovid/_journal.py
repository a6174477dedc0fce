"""The journal: a SQLite file that makes batches safe to kill and run again.

For each idempotency key it keeps the request body (and its hash), the task id once the gateway
returned it, the latest status, the result, and the downloaded file. The order of writes is
what makes it safe:

1. ``queued``: the key is known; nothing was sent. A new run creates it.
2. ``sending``: written just before the create goes out. If the process dies now, nobody knows
   whether the gateway accepted it: a new run reports it as uncertain and does not create it
   again unless told to (``forget``).
3. ``created``: the task id, written as soon as the answer arrives. From here on a new run
   watches that task instead of creating another.
4. ``refused``: the gateway refused the create (nothing billed); a new run may create it again.

Writes are committed at once (WAL mode), so a killed process loses nothing it had written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ._errors import JournalError
from ._task import Status, Task

__all__ = ["Journal", "JournalEntry", "payload_hash"]

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
    updated_at   REAL NOT NULL
);
"""
_VERSION = 1


def payload_hash(payload: Mapping[str, Any]) -> str:
    """The sha256 of a request body in canonical JSON: equal bodies, equal hashes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@attrs.frozen
class JournalEntry:
    """What the journal holds for one key."""

    key: str
    payload: Mapping[str, Any] = attrs.field(eq=False, repr=False)
    payload_hash: str = attrs.field(repr=False)
    state: str
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

    @property
    def uncertain(self) -> bool:
        """The create was sent and never answered: it may exist and be billed."""
        return self.state == "sending"

    @property
    def task(self) -> Task | None:
        """The last snapshot recorded, rebuilt from the answer's body."""
        if self.task_id is None:
            return None
        if self.raw:
            return Task.from_response(self.raw, task_id=self.task_id)
        status = self.status or Status.UNKNOWN
        return Task(id=self.task_id, status=status, raw_status=status.value,
                    video_url=self.video_url, error=self.error)


class Journal:
    """A SQLite journal of idempotency keys, task ids, results and files.

    Args:
        path: The database file (created if missing); ``":memory:"`` for a throwaway one.
    """

    __slots__ = ("_db", "_lock", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _VERSION:
                raise JournalError(
                    f"{self.path} was written by a newer octovid (journal version {version})"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> JournalEntry | None:
        """The entry of ``key``, or None."""
        row = self._db.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._entry(row)

    def key_of(self, task_id: str) -> str | None:
        """The key whose create returned ``task_id``, or None."""
        row = self._db.execute("SELECT key FROM jobs WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def __iter__(self) -> Iterator[JournalEntry]:
        rows = self._db.execute("SELECT * FROM jobs ORDER BY created_at, key").fetchall()
        return (self._entry(row) for row in rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    # -- writing ---------------------------------------------------------------------------

    def claim(self, key: str, payload: Mapping[str, Any]) -> JournalEntry:
        """Record ``key`` for ``payload`` if new; return its entry.

        Raises:
            JournalError: The key is already held for a different request body.
        """
        if not isinstance(key, str) or not key:
            raise JournalError(f"an idempotency key must be a non-empty string, not {key!r}")
        digest = payload_hash(payload)
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO jobs (key, payload, payload_hash, state, created_at,"
                " updated_at) VALUES (?, ?, ?, 'queued', ?, ?)",
                (key, json.dumps(payload, ensure_ascii=False), digest, now, now),
            )
            entry = self.get(key)
        assert entry is not None
        if entry.payload_hash != digest:
            raise JournalError(
                f"the key {key!r} was used before for a different request "
                f"({_describe(entry.payload)}); use another key, or forget this one"
            )
        return entry

    def sending(self, key: str) -> None:
        """The create of ``key`` is about to go out."""
        self._set(key, state="sending", error=None)

    def created(self, key: str, task: Task) -> None:
        """The gateway accepted the create of ``key``: keep the task id, at once."""
        self._set(key, state="created", task_id=task.id, **_snapshot(task))

    def refused(self, key: str, error: BaseException) -> None:
        """The gateway refused the create of ``key``: nothing was billed."""
        self._set(key, state="refused", error=str(error))

    def uncertain(self, key: str, error: BaseException) -> None:
        """The create of ``key`` was sent and its answer lost."""
        self._set(key, state="sending", error=str(error))

    def update(self, task: Task) -> None:
        """Record a new snapshot of a journaled task (ignored for other tasks)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, raw = ?, video_url = COALESCE(?, video_url),"
                " error = ?, updated_at = ? WHERE task_id = ?",
                (*_snapshot(task).values(), time.time(), task.id),
            )

    def downloaded(self, task_id: str, file: str, size: int, sha256: str) -> None:
        """Record the verified file of a journaled task."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET file = ?, size = ?, sha256 = ?, updated_at = ? WHERE task_id = ?",
                (file, size, sha256, time.time(), task_id),
            )

    def forget(self, key: str) -> None:
        """Drop ``key``: a later submit with it creates a new task (which may be billed)."""
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE key = ?", (key,))

    def _set(self, key: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET {columns} WHERE key = ?", (*fields.values(), key)
            )
        if cursor.rowcount != 1:
            raise JournalError(f"the key {key!r} is not in the journal {self.path}")

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> JournalEntry:
        (key, payload, digest, state, task_id, status, raw, video_url, error, file, size,
         sha256, created_at, updated_at) = row
        return JournalEntry(
            key=key,
            payload=json.loads(payload),
            payload_hash=digest,
            state=state,
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
