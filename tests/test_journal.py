"""The journal: its states on disk, and Client.submit(key=...) resuming from it.

The tests taking ``location`` run on both journals, SQLite and PostgreSQL (interface parity).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from databases import fresh_database

import octovid
from octovid import Journal, JournalEntry, Status, Task
from octovid._journal import JobState, SQLiteJournal
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.3, deadline=30)
REQUEST = octovid.SoraRequest("x")


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    """Where a journal lives: a SQLite file, or a fresh PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "j.db")
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


async def test_claim_is_idempotent_and_refuses_another_body(location):
    """Claiming a key twice for one body is a no-op; for another body it is an error."""
    async with Journal(location) as journal:
        [first] = await journal.claim([("k", REQUEST)])
        [again] = await journal.claim([("k", octovid.SoraRequest("x"))])
        [other] = await journal.claim([("k", octovid.SoraRequest("y"))])
        assert isinstance(first, JournalEntry) and isinstance(again, JournalEntry)
        assert first.state is again.state is JobState.QUEUED
        assert isinstance(other, octovid.JournalError) and "different request" in str(other)
        assert len(journal) == 1


async def test_states_survive_reopening(location):
    """What is written is on disk at once: a new Journal on the file reads it back."""
    path = location
    journal = Journal(path)
    await journal.claim([("a", REQUEST), ("b", octovid.SoraRequest("b"))])
    await journal.sending("a")
    await journal.sending("b")
    journal.created("b", Task(id="t-b", status=Status.QUEUED, raw_status="queued"))
    url = "https://cdn.example/t-b.mp4"
    journal.update(Task.from_response({"id": "t-b", "status": "completed", "video_url": url}))
    await journal.downloaded("t-b", "/out/t-b.mp4", 10, "ab" * 32)
    # no close(): as if the process were killed here
    reopened = Journal(path)
    a, b = reopened.get("a"), reopened.get("b")
    assert a is not None and a.uncertain and a.task_id is None
    assert b is not None and b.state is JobState.CREATED and b.task_id == "t-b"
    assert b.status is Status.COMPLETED and b.video_url == url and b.size == 10
    assert b.task is not None and b.task.status is Status.COMPLETED
    assert reopened.key_of("t-b") == "b"
    assert [entry.key for entry in reopened] == ["a", "b"]
    reopened.forget("a")
    assert reopened.get("a") is None
    await journal.aclose()
    await reopened.aclose()


async def test_a_hundred_thousand_claims_are_one_transaction_off_the_loop(tmp_path):
    """submit_many of 100,000 keyed requests returns before the journal holds any of them."""
    path = tmp_path / "j.db"
    requests = [octovid.SoraRequest(f"clip {i}") for i in range(100_000)]
    keys = [f"line-{i}" for i in range(100_000)]
    async with octovid.Client("k", "http://127.0.0.1:9", journal=path) as client:
        jobs = client.submit_many(requests, keys=keys, deadline=3600)
        assert client.journal is not None and len(client.journal) == 0  # nothing yet
        assert len(jobs) == 100_000 and not any(job.done() for job in jobs[:100])
        for _ in range(600):  # the claims go in chunks, one transaction each
            if len(client.journal) == 100_000:
                break
            await asyncio.sleep(0.1)
        assert len(client.journal) == 100_000
        for job in jobs:
            job.cancel()
    with Journal(path) as journal:  # the gateway is unreachable: some were refused, none sent
        assert {entry.state for entry in journal} <= {JobState.QUEUED, JobState.REFUSED}


def _fail_writes(path: Path, when: str) -> None:
    """Make the journal's database refuse updates matching ``when`` (a disk that fills up)."""
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TRIGGER refuse BEFORE UPDATE ON jobs WHEN {when} "
                   "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")


def _mend_writes(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER refuse")


async def test_a_journal_that_cannot_record_the_intent_sends_nothing(tmp_path):
    """The 'sending' write failing is a JournalError, no create is sent, and a rerun creates."""
    path = tmp_path / "j.db"
    request = octovid.GrokRequest("intent")
    Journal(path).close()
    _fail_writes(path, "NEW.state = 'sending'")
    async with Simulator() as sim:
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            with pytest.raises(octovid.JournalError, match="disk I/O error"):
                await client.submit(request, key="g")
        assert [r for r in sim.requests if r.route == "create"] == []
        _mend_writes(path)
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            task = await client.submit(request, key="g")  # not refused as "uncertain"
    assert task.status is Status.COMPLETED
    assert list(sim.creates_per_body().values()) == [1]


async def test_a_task_id_that_cannot_be_written_is_kept_and_written_later(tmp_path, caplog):
    """The 'created' write failing loses nothing: the job goes on and the id is written later."""
    path = tmp_path / "j.db"
    Journal(path).close()
    _fail_writes(path, "NEW.state = 'created'")
    async with Simulator(duration=(1.0, 1.0)) as sim:
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            job = client.submit(octovid.ViduRequest("keep me"), key="v")
            created = await job.created()
            assert client.journal is not None
            await client.journal.flush()
            assert "kept in memory" in caplog.text
            _mend_writes(path)
            task = await job  # the failed write did not stop the job
            await client.journal.flush()  # the next batch writes the kept id
    with Journal(path) as journal:
        entry = journal.get("v")
    assert entry is not None and entry.task_id == created.id == task.id
    assert "recorded the task of key 'v' at last" in caplog.text


async def test_a_failing_status_write_never_stalls_the_watch(tmp_path):
    """Status updates the journal cannot write are logged; polling goes on to the end."""
    path = tmp_path / "j.db"
    Journal(path).close()
    _fail_writes(path, "NEW.state = 'created' AND OLD.state = 'created'")
    async with Simulator(duration=(0.6, 0.6)) as sim:
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            task = await asyncio.wait_for(client.submit(octovid.SoraRequest("x"), key="s"), 10)
    assert task.status is Status.COMPLETED


def test_newer_journal_is_refused(tmp_path):
    """A journal written by a newer version is not touched."""
    path = tmp_path / "j.db"
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(octovid.JournalError, match="newer"):
        Journal(path)


def test_not_a_database_is_a_journal_error(tmp_path):
    """A file that is not SQLite gives a JournalError naming it."""
    path = tmp_path / "j.db"
    path.write_text("hello, not a database " * 100)
    with pytest.raises(octovid.JournalError, match=str(path)):
        Journal(path)


async def test_keys_need_a_journal():
    """submit(key=...) without a journal is a configuration error."""
    async with octovid.Client("k", "http://127.0.0.1:9") as client:
        with pytest.raises(octovid.ConfigError, match="journal"):
            client.submit(octovid.SoraRequest("x"), key="k")


async def test_a_key_is_created_once_across_clients(location):
    """A second client on the same journal watches the key's task instead of creating it."""
    path = location
    request = octovid.SoraRequest("only once")
    async with Simulator(duration=(1.0, 1.0)) as sim:
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            first = client.submit(request, key="clip")
            created = await first.created()
        # the first client is gone with its job unfinished; a new one picks the task up
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            resumed = client.submit(request, key="clip")
            task = await resumed
        # once finished, the journal answers without asking the gateway
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            before = len(sim.requests)
            again = await client.submit(request, key="clip")
            assert len(sim.requests) == before
    assert task.id == created.id == again.id
    assert again.status is Status.COMPLETED
    assert list(sim.creates_per_body().values()) == [1]


async def test_unanswered_create_is_not_repeated_by_a_new_run(location):
    """A key whose create went unanswered is reported uncertain, not created again."""
    path = location
    request = octovid.GrokRequest("lost answer")
    async with Simulator() as sim:
        sim.inject("create", drop="after")
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            with pytest.raises(octovid.CreateUncertainError):
                await client.submit(request, key="g")
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            with pytest.raises(octovid.CreateUncertainError, match="earlier run"):
                await client.submit(request, key="g")
            assert client.journal is not None
            client.journal.forget("g")
            task = await client.submit(request, key="g")
    assert task.status is Status.COMPLETED
    assert list(sim.creates_per_body().values()) == [2]  # only after forget()


async def test_refused_create_may_be_created_by_a_new_run(location):
    """A create the gateway refused billed nothing: the next run creates it."""
    path = location
    request = octovid.ViduRequest("refused first")
    async with Simulator(quota=0) as broke, octovid.Client(
        broke.api_key, broke.url, journal=path
    ) as client:
        with pytest.raises(octovid.InsufficientQuotaError):
            await client.submit(request, key="v")
    async with Journal(path) as journal:
        entry = journal.get("v")
        assert entry is not None and entry.state is JobState.REFUSED
    async with Simulator() as sim, octovid.Client(
        sim.api_key, sim.url, poll=FAST, journal=path
    ) as client:
        task = await client.submit(request, key="v")
    assert task.status is Status.COMPLETED


async def test_a_key_reused_for_another_request_is_refused(location):
    """A known key submitted with a different body fails with JournalError; nothing is sent."""
    async with Simulator() as sim, octovid.Client(
        sim.api_key, sim.url, journal=location
    ) as client:
        first = client.submit(octovid.SoraRequest("first"), key="k")
        await first.created()
        second = client.submit(octovid.SoraRequest("second"), key="k")
        with pytest.raises(octovid.JournalError, match="different request"):
            await second
        first.cancel()
    bodies = [body for body in sim.creates_per_body() if "second" in body]
    assert bodies == []
    assert sum(r.route == "create" for r in sim.requests) == 1


class _SlowJournal(SQLiteJournal):
    """A journal whose 'sending' write is followed by a pause: a window to cancel in."""

    __slots__ = ("writing",)

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = asyncio.Event()

    async def sending(self, key: str) -> None:
        self.writing.set()
        await super().sending(key)
        await asyncio.sleep(0.2)  # the write is done; the create not yet sent


async def test_a_create_cancelled_while_its_intent_is_written_is_not_left_uncertain(tmp_path):
    """A job cancelled during the 'sending' write sends nothing, and its key is created later."""
    path = tmp_path / "j.db"
    request = octovid.SoraRequest("cancelled in time")
    async with Simulator() as sim:
        journal = _SlowJournal(path)
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=journal) as client:
            job = client.submit(request, key="c")
            await journal.writing.wait()
            job.cancel()
            await asyncio.sleep(0.5)
        journal.close()
        assert [r for r in sim.requests if r.route == "create"] == []
        with Journal(path) as reopened:
            entry = reopened.get("c")
            assert entry is not None and entry.state is JobState.QUEUED
        async with octovid.Client(sim.api_key, sim.url, poll=FAST, journal=path) as client:
            task = await client.submit(request, key="c")
    assert task.status is Status.COMPLETED


def test_a_version_one_journal_gains_the_route_of_its_tasks(tmp_path):
    """A journal written before routes were recorded opens with every task on 'unified'."""
    path = tmp_path / "j.db"
    with sqlite3.connect(path) as db:
        db.execute("""CREATE TABLE jobs (key TEXT PRIMARY KEY, payload TEXT NOT NULL,
            payload_hash TEXT NOT NULL, state TEXT NOT NULL, task_id TEXT UNIQUE, status TEXT,
            raw TEXT, video_url TEXT, error TEXT, file TEXT, size INTEGER, sha256 TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL)""")
        db.execute("INSERT INTO jobs VALUES ('k', '{}', 'h', 'created', 't1', 'processing',"
                   " NULL, NULL, NULL, NULL, NULL, NULL, 0, 0)")
        db.execute("PRAGMA user_version=1")
    with Journal(path) as journal:
        entry = journal.get("k")
    assert entry is not None and entry.route == "unified"
    assert entry.task is not None and entry.task.route == "unified"
