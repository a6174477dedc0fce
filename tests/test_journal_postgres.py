"""The journal on PostgreSQL: its start, its versions, and the leases that workers share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from databases import fresh_database

import octovid
from octovid import Status, Task
from octovid._journal import JobState, LeaseLost
from octovid._journal_postgres import PostgresJournal, redact_url
from octovid.testing import Simulator

BATCH = "b" * 64


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for this test alone."""
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture
async def workers(database: str) -> AsyncIterator[list[PostgresJournal]]:
    """Four journals on one database, as four workers on four machines would hold."""
    journals = [PostgresJournal(database) for _ in range(4)]
    yield journals
    for journal in journals:
        await journal.aclose()


def lines(count: int) -> list[tuple[int, str, octovid.Request]]:
    """A batch's lines: (number, key, request)."""
    return [(n, f"line-{n}", octovid.SoraRequest(f"clip {n}")) for n in range(1, count + 1)]


def test_the_url_picks_the_journal():
    """Journal() of a postgresql:// or postgres:// URL is a PostgresJournal; a path SQLite."""
    with pytest.raises(octovid.ConfigError):
        octovid.Journal("postgres://nobody@127.0.0.1:9/x")
    assert issubclass(PostgresJournal, octovid.Journal)


def test_an_unreachable_database_is_a_config_error_without_the_password():
    """A database that cannot be reached fails at once, naming it, never showing the password."""
    with pytest.raises(octovid.ConfigError) as caught:
        octovid.Journal("postgresql://worker:s3cr3t-pw@127.0.0.1:9/jobs?password=s3cr3t-pw")
    message = str(caught.value)
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in repr(caught.value)
    assert "postgresql://worker:***@127.0.0.1:9/jobs" in message
    assert "Connection refused" in message


def test_a_password_is_redacted_in_the_path():
    """The journal's path and repr show the URL without its password."""
    assert redact_url("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_url("postgres://h/d?password=pw&sslmode=require") == (
        "postgres://h/d?password=***&sslmode=require"
    )
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


async def test_the_schema_is_created_once_and_a_newer_one_refused(database):
    """Tables come on first use, several journals starting at once; a newer version is refused."""
    journals = await asyncio.gather(*(asyncio.to_thread(PostgresJournal, database)
                                      for _ in range(4)))
    for journal in journals:
        await journal.aclose()
    with psycopg.connect(database, autocommit=True) as db:
        version = db.execute("SELECT value FROM octovid_meta WHERE name = 'version'").fetchone()
        assert version == ("1",)
        db.execute("UPDATE octovid_meta SET value = '99' WHERE name = 'version'")
    with pytest.raises(octovid.JournalError, match="newer"):
        PostgresJournal(database)


async def test_leases_are_exclusive_under_concurrency(workers):
    """Four workers leasing at once from one batch each get lines no other worker got."""
    await workers[0].register(BATCH, "b.jsonl", lines(200))
    got: list[list[str]] = [[] for _ in workers]

    async def take(n: int) -> None:
        while leased := await workers[n].lease(BATCH, 7, 30.0):
            got[n].extend(entry.key for entry, _ in leased)

    await asyncio.gather(*(take(n) for n in range(4)))
    every = [key for keys in got for key in keys]
    assert len(every) == len(set(every)) == 200
    assert all(got)  # each worker got some


async def test_a_lease_that_runs_out_goes_to_another_worker(workers):
    """A lease not renewed passes to the next worker, who learns whose it was; the first
    worker's renewal then finds it gone and its create is refused."""
    first, second = workers[:2]
    await first.register(BATCH, "b.jsonl", lines(3))
    leased = await first.lease(BATCH, 10, 0.5)
    assert [entry.key for entry, _ in leased] == ["line-1", "line-2", "line-3"]
    assert await second.lease(BATCH, 10, 0.5) == []  # held
    await asyncio.sleep(0.7)
    taken = await second.lease(BATCH, 10, 30.0)
    assert {(entry.key, was) for entry, was in taken} == {
        (f"line-{n}", first.owner) for n in (1, 2, 3)
    }
    assert await first.renew(["line-1", "line-2", "line-3"], 30.0) == set()
    with pytest.raises(LeaseLost, match="another worker"):
        await first.sending("line-1")
    await second.sending("line-1")  # the holder may send it


async def test_renewal_keeps_a_lease(workers):
    """A worker that renews its lease keeps its lines past the first lease's end."""
    first, second = workers[:2]
    await first.register(BATCH, "b.jsonl", lines(2))
    await first.lease(BATCH, 10, 0.5)
    for _ in range(4):
        await asyncio.sleep(0.25)
        assert await first.renew(["line-1", "line-2"], 0.5) == {"line-1", "line-2"}
    assert await second.lease(BATCH, 10, 0.5) == []


async def test_one_create_per_key_whoever_asks(workers):
    """Many workers marking one key's create at once: exactly one may send it."""
    await workers[0].claim([("k", octovid.SoraRequest("once"))])
    outcomes = await asyncio.gather(*(journal.sending("k") for journal in workers),
                                    return_exceptions=True)
    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(outcome, LeaseLost) for outcome in outcomes if outcome is not None)


async def test_an_uncertain_key_is_never_sent_again(workers):
    """A key left 'sending' (its answer lost) cannot be marked for sending by anyone."""
    first, second = workers[:2]
    await first.claim([("k", octovid.SoraRequest("lost"))])
    await first.sending("k")
    first.uncertain("k", TimeoutError("no answer"))
    await first.flush()
    for journal in (first, second):
        with pytest.raises(LeaseLost, match="sent already"):
            await journal.sending("k")
    entry = second.get("k")
    assert entry is not None and entry.uncertain and entry.error == "no answer"


async def test_the_first_outcome_stands_and_progress_counts_lines(workers):
    """A line's first recorded outcome stands and frees its key; progress counts the rest."""
    first, second = workers[:2]
    await first.register(BATCH, "b.jsonl", lines(3))
    await first.lease(BATCH, 2, 30.0)
    progress = await second.progress(BATCH)
    assert (progress.lines, progress.finished, progress.held, progress.done) == (3, 0, 2, False)
    await first.finish(BATCH, "line-1", "completed", None)
    await second.finish(BATCH, "line-1", "failed", "late")
    outcomes = await second.outcomes(BATCH)
    assert outcomes["line-1"].outcome == "completed"
    assert outcomes["line-1"].finished_by == first.owner
    assert (await second.progress(BATCH)).finished == 1
    assert [entry.key for entry, _ in await second.lease(BATCH, 5, 30.0)] == ["line-3"]
    await first.release()
    assert [entry.key for entry, _ in await second.lease(BATCH, 5, 30.0)] == ["line-2"]


async def test_a_client_on_postgres_resumes_a_key_without_creating_it_again(database):
    """The task of a key created by one worker is watched, not created, by another."""
    request = octovid.SoraRequest("made once")
    async with Simulator(duration=(0.5, 0.5)) as sim:
        poll = octovid.PollPolicy(initial=0.1, max_interval=0.3, deadline=30)
        async with octovid.Client(sim.api_key, sim.url, poll=poll, journal=database) as one:
            created = await one.submit(request, key="clip").created()
        async with octovid.Client(sim.api_key, sim.url, poll=poll, journal=database) as two:
            task = await two.submit(request, key="clip")
    assert task.id == created.id and task.status is Status.COMPLETED
    assert list(sim.creates_per_body().values()) == [1]


async def test_writes_after_a_lost_connection_go_through_a_new_one(database):
    """A write whose connection was cut (a database restart) is made again on a new one."""
    async with PostgresJournal(database) as journal:
        await journal.claim([("k", octovid.SoraRequest("reconnect"))])
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        await journal.sending("k")  # the batch failed on the cut connection; then tried alone
        journal.created("k", Task(id="t-k", status=Status.QUEUED, raw_status="queued"))
        await journal.flush()
    async with PostgresJournal(database) as reopened:
        entry = reopened.get("k")
    assert entry is not None and entry.state is JobState.CREATED and entry.task_id == "t-k"
