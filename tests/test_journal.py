"""The journal: its states on disk, and Client.submit(key=...) resuming from it."""

from __future__ import annotations

import sqlite3

import pytest

import octovid
from octovid import Journal, Status, Task
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.3, deadline=30)
PAYLOAD = {"model": "sora-2", "prompt": "x", "images": []}


def test_claim_is_idempotent_and_refuses_another_body(tmp_path):
    """Claiming a key twice for one body is a no-op; for another body it is an error."""
    with Journal(tmp_path / "j.db") as journal:
        first = journal.claim("k", PAYLOAD)
        again = journal.claim("k", dict(reversed(list(PAYLOAD.items()))))
        assert first.state == again.state == "queued"
        with pytest.raises(octovid.JournalError, match="different request"):
            journal.claim("k", {**PAYLOAD, "prompt": "y"})
        assert len(journal) == 1


def test_states_survive_reopening(tmp_path):
    """What is written is on disk at once: a new Journal on the file reads it back."""
    path = tmp_path / "j.db"
    journal = Journal(path)
    journal.claim("a", PAYLOAD)
    journal.sending("a")
    journal.claim("b", {**PAYLOAD, "prompt": "b"})
    journal.sending("b")
    journal.created("b", Task(id="t-b", status=Status.QUEUED, raw_status="queued"))
    journal.update(Task.from_response({"id": "t-b", "status": "completed", "video_url": "u"}))
    journal.downloaded("t-b", "/out/t-b.mp4", 10, "ab" * 32)
    # no close(): as if the process were killed here
    reopened = Journal(path)
    a, b = reopened.get("a"), reopened.get("b")
    assert a is not None and a.uncertain and a.task_id is None
    assert b is not None and b.state == "created" and b.task_id == "t-b"
    assert b.status is Status.COMPLETED and b.video_url == "u" and b.size == 10
    assert b.task is not None and b.task.status is Status.COMPLETED
    assert reopened.key_of("t-b") == "b"
    assert [entry.key for entry in reopened] == ["a", "b"]
    reopened.forget("a")
    assert reopened.get("a") is None
    journal.close()
    reopened.close()


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


async def test_a_key_is_created_once_across_clients(tmp_path):
    """A second client on the same journal watches the key's task instead of creating it."""
    path = tmp_path / "j.db"
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


async def test_unanswered_create_is_not_repeated_by_a_new_run(tmp_path):
    """A key whose create went unanswered is reported uncertain, not created again."""
    path = tmp_path / "j.db"
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


async def test_refused_create_may_be_created_by_a_new_run(tmp_path):
    """A create the gateway refused billed nothing: the next run creates it."""
    path = tmp_path / "j.db"
    request = octovid.ViduRequest("refused first")
    async with Simulator(quota=0) as broke, octovid.Client(
        broke.api_key, broke.url, journal=path
    ) as client:
        with pytest.raises(octovid.InsufficientQuotaError):
            await client.submit(request, key="v")
    with Journal(path) as journal:
        entry = journal.get("v")
        assert entry is not None and entry.state == "refused"
    async with Simulator() as sim, octovid.Client(
        sim.api_key, sim.url, poll=FAST, journal=path
    ) as client:
        task = await client.submit(request, key="v")
    assert task.status is Status.COMPLETED


async def test_a_key_reused_for_another_request_is_refused(tmp_path):
    """Submitting a known key with a different body raises JournalError before any request."""
    async with Simulator() as sim, octovid.Client(
        sim.api_key, sim.url, journal=tmp_path / "j.db"
    ) as client:
        client.submit(octovid.SoraRequest("first"), key="k").cancel()
        with pytest.raises(octovid.JournalError):
            client.submit(octovid.SoraRequest("second"), key="k")
