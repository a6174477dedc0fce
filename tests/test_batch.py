"""The batch engine: reading and checking files, plans from the journal, runs on the simulator."""

from __future__ import annotations

import asyncio
import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest

import octovid
from octovid._batch import (
    BatchFileError,
    BatchRun,
    BatchStopped,
    JournalBusy,
    JournalLock,
    State,
    created_elsewhere,
    default_journal,
    file_name,
    make_plan,
    policy_failure,
    read_batch,
)
from octovid.testing import Simulator

VIDEO = resources.files("octovid.testing").joinpath("sample.mp4").read_bytes()
FAST = octovid.PollPolicy(initial=0.1, max_interval=0.5)


def write(path: Path, *lines: str, bom: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def client(sim: Simulator, journal: octovid.Journal, **options) -> octovid.Client:
    return octovid.Client(sim.api_key, sim.url, rate_limit=50, poll=FAST, journal=journal,
                          **options)


# -- reading -------------------------------------------------------------------------------


def test_every_bad_line_is_reported_at_once(tmp_path):
    """All bad lines come back together, each with its file and line number."""
    path = write(tmp_path / "b.jsonl",
                 '{"model": "sora-2", "prompt": "fine"}',
                 "not json",
                 '{"model": "sora-2", "prompt": "x", "duration": 12}',
                 "[1]",
                 '{"model": "sora-2", "prompt": "y", "key": ""}')
    with pytest.raises(BatchFileError) as caught:
        read_batch(path)
    assert caught.value.problems == [
        f"{path}:2: not JSON (Expecting value at column 1)",
        f"{path}:3: duration=12 is not allowed: one of 10, 15, 25 for sora-2 (sora-2-pro: "
        "longer)",
        f"{path}:4: expected a JSON object with model and prompt",
        f"{path}:5: key must be a non-empty string",
    ]


def test_a_byte_order_mark_is_not_an_error(tmp_path):
    """A UTF-8 file saved with a BOM (as Windows editors do) reads like any other."""
    path = write(tmp_path / "b.jsonl", '{"model": "sora-2", "prompt": "bom"}', bom=True)
    batch = read_batch(path)
    assert [line.prompt for line in batch.lines] == ["bom"]


def test_the_check_reports_its_problems_with_the_others(tmp_path):
    """Problems from the caller's check are reported per line, and stop the line."""
    path = write(tmp_path / "b.jsonl", '{"model": "sora-2", "prompt": "a", "odd": 1}',
                 '{"model": "sora-2", "prompt": "b"}')
    with pytest.raises(BatchFileError) as caught:
        read_batch(path, check=lambda data: [f"field {name}" for name in data if name == "odd"])
    assert caught.value.problems == [f"{path}:1: field odd"]


def test_keys_are_request_hashes_numbered_for_repeats_or_the_lines_own(tmp_path):
    """Lines without a key get their request's hash (#2 for a repeat); named keys are kept."""
    path = write(tmp_path / "b.jsonl",
                 "# a comment", "",
                 '{"model": "sora-2", "prompt": "same"}',
                 '{"model": "sora-2", "prompt": "same"}',
                 '{"model": "sora-2", "prompt": "named", "key": "intro"}')
    batch = read_batch(path)
    payload = octovid.SoraRequest("same").to_payload()
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert [(line.number, line.key, line.named) for line in batch.lines] == [
        (3, digest, False), (4, f"{digest}#2", False), (5, "intro", True)
    ]
    assert [file_name(line, batch.width) for line in batch.lines] == [
        f"0003-{digest}.mp4", f"0004-{digest}_2.mp4", "0005-intro.mp4"
    ]


def test_a_key_given_twice_is_refused(tmp_path):
    """Two lines with one key are one problem, naming both lines."""
    path = write(tmp_path / "b.jsonl", '{"model": "sora-2", "prompt": "a", "key": "k"}',
                 '{"model": "sora-2", "prompt": "b", "key": "k"}')
    with pytest.raises(BatchFileError) as caught:
        read_batch(path)
    assert caught.value.problems == [
        f"{path}:2: the key 'k' is also the key of line 1; keys must differ"
    ]


def test_a_line_separator_inside_a_prompt_does_not_split_the_line(tmp_path):
    """Only newlines end a line: U+2028 in a JSON string is part of the prompt."""
    path = write(tmp_path / "b.jsonl", '{"model": "sora-2", "prompt": "one\u2028two"}',
                 '{"model": "sora-2", "prompt": "three"}')
    batch = read_batch(path)
    assert [(line.number, line.prompt) for line in batch.lines] == [
        (1, "one\u2028two"), (2, "three")
    ]


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    """Bytes that are not UTF-8 are reported with their line number."""
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"model": "sora-2", "prompt": "a"}\n{"prompt": "\xff"}\n')
    with pytest.raises(BatchFileError) as caught:
        read_batch(path)
    assert caught.value.problems == [f"{path}:2: not UTF-8 text"]


# -- plans ---------------------------------------------------------------------------------


async def test_a_plan_says_what_each_line_will_do(tmp_path):
    """Done, running, failed, uncertain and new lines are told apart from the journal."""
    lines = [f'{{"model": "sora-2", "prompt": "p{i}", "key": "k{i}"}}' for i in range(5)]
    batch = read_batch(write(tmp_path / "b.jsonl", *lines))
    journal = octovid.Journal(tmp_path / "j.db")
    try:
        entries = await journal.claim([(line.key, line.request) for line in batch.lines[:4]])
        assert all(isinstance(e, octovid.JournalEntry) for e in entries)
        for key, status in (("k0", "completed"), ("k1", "processing"), ("k2", "failed")):
            await journal.sending(key)
            journal.created(key, octovid.Task.from_response(
                {"id": f"t-{key}", "status": status, "error": "upstream error"}))
        await journal.sending("k3")  # sent, never answered
        await journal.flush()
        plan = make_plan(batch, journal)
    finally:
        journal.close()
    assert plan.states == (State.DONE, State.RUNNING, State.FAILED, State.UNCERTAIN,
                           State.CREATE)
    assert plan.describe() == "5 lines: 1 done, 1 running, 1 failed, 1 uncertain, 1 to create"


async def test_retrying_keeps_failures_for_the_prompt(tmp_path):
    """--retry-failed forgets failed lines, except those refused for their prompt."""
    lines = [f'{{"model": "sora-2", "prompt": "p{i}", "key": "k{i}"}}' for i in range(3)]
    batch = read_batch(write(tmp_path / "b.jsonl", *lines))
    journal = octovid.Journal(tmp_path / "j.db")
    try:
        await journal.claim([(line.key, line.request) for line in batch.lines])
        for key, reason in (("k0", "content policy violation"), ("k1", "upstream timed out")):
            await journal.sending(key)
            journal.created(key, octovid.Task.from_response(
                {"id": f"t-{key}", "status": "failed", "fail_reason": reason}))
        await journal.sending("k2")
        await journal.flush()
        plan = make_plan(batch, journal, retry_failed=True, retry_uncertain=True)
    finally:
        journal.close()
    assert plan.states == (State.FAILED, State.CREATE, State.CREATE)
    assert plan.forget == ("k1", "k2")
    assert plan.kept_for_policy == 1


def test_policy_failures_are_recognised():
    """Refusals of the prompt are told from failures worth another try."""
    assert [policy_failure(r) for r in (
        "content policy violation", "Your prompt was flagged by our safety system",
        "内容违规", "upstream generation error", "task timed out (1440 minutes)", None,
    )] == [True, True, True, False, False, False]


async def test_a_key_held_for_another_request_is_refused_before_anything(tmp_path):
    """A named key the journal holds for another request is a problem of its line."""
    journal = octovid.Journal(tmp_path / "j.db")
    try:
        await journal.claim([("intro", octovid.SoraRequest("a dog"))])
        batch = read_batch(write(tmp_path / "b.jsonl",
                                 '{"model": "sora-2", "prompt": "a cat", "key": "intro"}'))
        with pytest.raises(BatchFileError) as caught:
            make_plan(batch, journal)
    finally:
        journal.close()
    assert caught.value.problems == [
        f"{tmp_path / 'b.jsonl'}:1: the key 'intro' was used before for another request "
        "(sora-2: 'a dog'); give this line a new key"
    ]


async def test_lines_another_journal_created_are_found(tmp_path):
    """created_elsewhere counts the lines to create that another journal sent or created."""
    batch = read_batch(write(tmp_path / "b.jsonl", '{"model": "sora-2", "prompt": "a"}',
                             '{"model": "sora-2", "prompt": "b"}'))
    other = octovid.Journal(tmp_path / "other.db")
    mine = octovid.Journal(tmp_path / "mine.db")
    try:
        first = batch.lines[0]
        await other.claim([(first.key, first.request), (batch.lines[1].key,
                                                          batch.lines[1].request)])
        await other.sending(first.key)
        await other.flush()  # the second line is only queued there: never sent
        found = created_elsewhere(make_plan(batch, mine), [other])
    finally:
        other.close()
        mine.close()
    assert found == {str(tmp_path / "other.db"): 1}


def test_journals_are_one_per_gateway_in_the_data_directory(tmp_path, monkeypatch):
    """The default journal depends on the gateway only, and lives under $XDG_DATA_HOME."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    one = default_journal("https://octopusx.ai")
    assert one == default_journal("https://OCTOPUSX.ai/")
    assert one == default_journal("https://octopusx.ai:443")
    assert one != default_journal("http://127.0.0.1:8000")
    assert one.parent == tmp_path / "octovid" / "journals"
    assert one.name.startswith("octopusx.ai-443-")


def test_one_journal_serves_one_batch_at_a_time(tmp_path):
    """A second batch on a journal in use is refused; the lock goes with the first."""
    path = tmp_path / "j.db"
    with JournalLock(path):
        with pytest.raises(JournalBusy, match="another octovid batch"):
            JournalLock(path).__enter__()
    with JournalLock(path):
        pass


# -- runs ----------------------------------------------------------------------------------


async def run_batch(sim: Simulator, path: Path, out: Path, journal_path: Path,
                    **options) -> tuple[BatchRun, list]:
    batch = read_batch(path)
    journal = octovid.Journal(journal_path)
    try:
        async with client(sim, journal, **options) as c:
            run = BatchRun(c, make_plan(batch, journal), out)
            results = await run.run()
    finally:
        journal.close()
    return run, results


async def test_videos_are_named_after_their_line_and_listed_in_the_manifest(tmp_path):
    """Each video is 0007-<key>.mp4; manifest.jsonl says line, key, prompt, id, file, sha256."""
    path = write(tmp_path / "b.jsonl", "# prompts", '{"model": "sora-2", "prompt": "a fox"}',
                 '{"model": "grok-video-3", "prompt": "a cat", "key": "cat"}')
    out = tmp_path / "out"
    async with Simulator(duration=(0.1, 0.3)) as sim:
        _, results = await run_batch(sim, path, out, tmp_path / "j.db")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["line"], r["prompt"], r["status"]) for r in records] == [
        (2, "a fox", "completed"), (3, "a cat", "completed")
    ]
    assert records[1]["key"] == "cat"
    assert Path(records[1]["file"]) == out / "0003-cat.mp4"
    assert Path(records[0]["file"]) == out / f"0002-{records[0]['key']}.mp4"
    for record in records:
        assert hashlib.sha256(Path(record["file"]).read_bytes()).hexdigest() == record["sha256"]
        assert record["id"] and record["model"] in ("sora-2", "grok-video-3")
    assert [r.record() for r in results] == records
    assert sorted(p.name for p in out.iterdir()) == [
        f"0002-{records[0]['key']}.mp4", "0003-cat.mp4", "manifest.jsonl"
    ]


async def test_a_wrong_key_stops_the_run_at_the_first_refusal(tmp_path):
    """A 401 stops the batch: one BatchStopped, the other lines not created, all unfinished."""
    path = write(tmp_path / "b.jsonl",
                 *(f'{{"model": "sora-2", "prompt": "take {i}"}}' for i in range(40)))
    out = tmp_path / "out"
    async with Simulator(api_key="the-right-key") as sim:
        journal = octovid.Journal(tmp_path / "j.db")
        try:
            async with octovid.Client("a-wrong-key", sim.url, rate_limit=50, journal=journal,
                                      max_concurrency=4) as c:
                run = BatchRun(c, make_plan(read_batch(path), journal), out)
                with pytest.raises(BatchStopped) as caught:
                    await run.run()
        finally:
            journal.close()
        creates = [r for r in sim.requests if r.method == "POST"]
    assert isinstance(caught.value.cause, octovid.AuthenticationError)
    assert 1 <= len(creates) <= 8  # the ones already on their way when the first 401 came
    assert not sim.tasks
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 40
    assert {r["status"] for r in records} == {"unfinished"}


async def test_an_exhausted_balance_stops_the_run(tmp_path):
    """A quota error (403) stops the batch: lines after it are not sent."""
    path = write(tmp_path / "b.jsonl",
                 *(f'{{"model": "sora-2", "prompt": "take {i}"}}' for i in range(20)))
    async with Simulator(quota=3, duration=(0.1, 0.2)) as sim:
        with pytest.raises(BatchStopped) as caught:
            await run_batch(sim, path, tmp_path / "out", tmp_path / "j.db", max_concurrency=2)
        creates = [r for r in sim.requests if r.method == "POST"]
    assert isinstance(caught.value.cause, octovid.InsufficientQuotaError)
    assert len(sim.tasks) == 3
    assert len(creates) <= 6


async def test_a_run_into_another_directory_copies_instead_of_creating(tmp_path):
    """Running a finished file into a new --out creates and downloads nothing: files are copied."""
    path = write(tmp_path / "b.jsonl", '{"model": "sora-2", "prompt": "a"}',
                 '{"model": "viduq2-pro", "prompt": "b"}')
    journal = tmp_path / "j.db"
    async with Simulator(duration=(0.1, 0.2)) as sim:
        await run_batch(sim, path, tmp_path / "first", journal)
        sent = len(sim.requests)
        _, results = await run_batch(sim, path, tmp_path / "second", journal)
        assert len(sim.requests) == sent
    assert [r.status for r in results] == ["completed", "completed"]
    assert all(Path(r.file).parent == tmp_path / "second" for r in results if r.file)
    assert all(Path(r.file).read_bytes() == VIDEO for r in results if r.file)


async def test_a_rate_limit_pause_shows_in_the_snapshot(tmp_path):
    """While the key is paused by a 429's Retry-After, the snapshot says for how long."""
    path = write(tmp_path / "b.jsonl", '{"model": "sora-2", "prompt": "a"}')
    async with Simulator() as sim:
        sim.inject("create", status=429, retry_after=4)
        journal = octovid.Journal(tmp_path / "j.db")
        try:
            async with client(sim, journal) as c:
                run = BatchRun(c, make_plan(read_batch(path), journal), tmp_path / "out")
                running = asyncio.ensure_future(run.run())
                while not sim.rate_limited:  # noqa: ASYNC110 - the simulator has no event
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.1)
                snapshot = run.snapshot()
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        finally:
            journal.close()
    assert 2.0 < snapshot.paused_for <= 4.0
    assert snapshot.rate_limited == 1
    assert snapshot.counts == {"creating": 1}
