"""One batch run by many workers on a PostgreSQL journal: takeovers, exactly-once creates."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import fresh_database

import octovid
from octovid._batch import BatchRun, make_plan, read_batch
from octovid._journal_postgres import PostgresJournal
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.3, deadline=60)


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for this test alone."""
    with fresh_database(postgres_url) as url:
        yield url


def write_batch(path: Path, count: int) -> Path:
    """A batch file of ``count`` lines of three families."""
    families = [
        '{"model": "sora-2", "prompt": "clip %d"}',
        '{"model": "grok-video-3", "prompt": "clip %d", "duration": 6}',
        '{"model": "viduq2-pro", "prompt": "clip %d", "key": "vidu-%d"}',
    ]
    path.write_text("\n".join(families[i % 3].replace("%d", str(i)) for i in range(count)) + "\n")
    return path


def creates_per_task_body(sim: Simulator) -> Counter[int]:
    """How many tasks each distinct body created: {1: n} when every line was created once."""
    return Counter(sim.creates_per_body().values())


def downloads_per_task(sim: Simulator) -> Counter[str]:
    """Complete downloads from the simulator's CDN, per task."""
    return Counter(r.task_id for r in sim.requests
                   if r.route == "cdn" and r.status == 200 and r.task_id)


async def worker(sim: Simulator, batch: Path, out: Path, database: str, *extra: str,
                 lease: float = 2.0) -> asyncio.subprocess.Process:
    """Start ``python -m octovid batch`` as one worker of the shared batch."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "octovid", "--api-key", sim.api_key, "--base-url", sim.url,
        "--rate-limit", "20", "--json", "batch", str(batch), "--poll-interval", "0.2",
        "--out", str(out), "--journal", database, "--lease", str(lease), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OCTOVID_API_KEY": ""},
    )


async def test_three_workers_one_killed_create_each_line_once_and_lose_nothing(
    tmp_path, database
):
    """Three workers, one SIGKILLed mid-run: every line created once, downloaded, finished."""
    batch = write_batch(tmp_path / "batch.jsonl", 24)
    async with Simulator(seed=5, duration=(1.0, 2.0)) as sim:
        outs = [tmp_path / f"out-{n}" for n in range(3)]
        workers = [await worker(sim, batch, out, database) for out in outs]
        while len(sim.tasks) < 8:  # noqa: ASYNC110 - the simulator has no event to wait on
            await asyncio.sleep(0.02)
        workers[0].send_signal(signal.SIGKILL)
        await workers[0].wait()
        finished = [await asyncio.wait_for(w.communicate(), 60) for w in workers[1:]]
        creates = creates_per_task_body(sim)
        downloads = downloads_per_task(sim)
        tasks = set(sim.tasks)
    for w, (_, err) in zip(workers[1:], finished, strict=True):
        assert w.returncode == 0, err.decode()
    assert creates == {1: 24}  # each line created exactly once, none twice
    with PostgresJournal(database) as journal:
        entries = list(journal)
    assert len(entries) == 24 and {e.task_id for e in entries} == tasks
    assert all(e.file and e.sha256 for e in entries)  # every video downloaded and verified
    files = [Path(e.file) for e in entries if e.file]
    assert all(path.is_file() for path in files)
    assert set(downloads) == tasks
    killed_in_flight = sum(1 for count in downloads.values() if count > 1)
    assert killed_in_flight <= 1  # at most the one the killed worker was streaming
    # every surviving worker's manifest lists every line, completed
    for out in outs[1:]:
        records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert [r["status"] for r in records] == ["completed"] * 24


async def test_a_worker_waits_for_the_lines_of_others_and_leaves_when_all_are_finished(
    tmp_path, database
):
    """A worker with nothing left to lease stays until the other's lines finish, then exits."""
    batch = write_batch(tmp_path / "batch.jsonl", 6)
    async with Simulator(seed=3, duration=(2.0, 2.0)) as sim:
        first = await worker(sim, batch, tmp_path / "a", database)
        while len(sim.tasks) < 6:  # noqa: ASYNC110 - the simulator has no event to wait on
            await asyncio.sleep(0.02)
        second = await worker(sim, batch, tmp_path / "b", database)
        (_, err_b), (_, err_a) = await asyncio.gather(
            asyncio.wait_for(second.communicate(), 60), asyncio.wait_for(first.communicate(), 60)
        )
        creates = creates_per_task_body(sim)
    assert first.returncode == 0, err_a.decode()
    assert second.returncode == 0, err_b.decode()
    assert creates == {1: 6}
    assert not list((tmp_path / "b").glob("*.mp4"))  # the first worker held every line
    records = [json.loads(line) for line in (tmp_path / "b" / "manifest.jsonl").read_text()
               .splitlines()]
    assert [r["status"] for r in records] == ["completed"] * 6
    assert all(r["file"] and str(tmp_path / "a") in r["file"] for r in records)


async def test_an_uncertain_create_is_finished_uncertain_and_never_sent_again(
    tmp_path, database
):
    """A create whose answer was lost ends uncertain; no worker, then or later, sends it again."""
    batch = write_batch(tmp_path / "batch.jsonl", 3)
    async with Simulator(seed=1, duration=(0.5, 0.5)) as sim:
        sim.inject("create", drop="after", times=1)
        results = []
        for name in ("a", "b"):  # the second run of the batch finds it finished
            journal = PostgresJournal(database)
            async with journal, octovid.Client(sim.api_key, sim.url, rate_limit=20, poll=FAST,
                                               journal=journal) as client:
                parsed = read_batch(batch)
                run = BatchRun(client, make_plan(parsed, journal), tmp_path / name, lease=2.0)
                results.append(await run.run())
        creates = sum(sim.creates_per_body().values())
        sent = sum(1 for r in sim.requests if r.method == "POST")
    assert sent == creates == 3  # the dropped answer's task exists, once; nothing sent again
    for run_results in results:
        assert sorted(r.status for r in run_results) == ["completed", "completed", "uncertain"]


async def test_a_worker_stopped_with_ctrl_c_hands_its_lines_over_at_once(tmp_path, database):
    """SIGINT releases the worker's leases: another finishes its lines without waiting a lease."""
    batch = write_batch(tmp_path / "batch.jsonl", 6)
    async with Simulator(seed=2, duration=(1.0, 1.0)) as sim:
        first = await worker(sim, batch, tmp_path / "a", database, lease=60.0)
        while len(sim.tasks) < 3:  # noqa: ASYNC110 - the simulator has no event to wait on
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGINT)
        await asyncio.wait_for(first.communicate(), 30)
        loop = asyncio.get_running_loop()
        started = loop.time()
        second = await worker(sim, batch, tmp_path / "b", database, lease=60.0)
        _, err = await asyncio.wait_for(second.communicate(), 40)
        took = loop.time() - started
        creates = creates_per_task_body(sim)
    assert first.returncode == 130
    assert second.returncode == 0, err.decode()
    assert took < 30  # far less than the 60 s lease the first worker held
    assert creates == {1: 6}


async def test_an_unreachable_database_stops_the_command_without_its_password(tmp_path):
    """A journal URL nobody answers at: exit 1, one line naming it, the password hidden."""
    batch = write_batch(tmp_path / "batch.jsonl", 2)
    async with Simulator() as sim:
        w = await worker(sim, batch, tmp_path / "out", "postgresql://me:hunter22@127.0.0.1:9/j")
        _, err = await asyncio.wait_for(w.communicate(), 30)
        sent = [r for r in sim.requests if r.method == "POST"]
    text = err.decode()
    assert w.returncode == 1
    assert "postgresql://me:***@127.0.0.1:9/j" in text and "hunter22" not in text
    assert "Traceback" not in text
    assert sent == []


async def test_a_dry_run_on_a_shared_journal_sends_nothing(tmp_path, database):
    """--dry-run with a postgresql:// journal says what a run would do and sends nothing."""
    batch = write_batch(tmp_path / "batch.jsonl", 4)
    async with Simulator() as sim:
        w = await worker(sim, batch, tmp_path / "out", database, "--dry-run")
        out, err = await asyncio.wait_for(w.communicate(), 30)
        sent = list(sim.requests)
    assert w.returncode == 0, err.decode()
    assert json.loads(out.decode().splitlines()[0])["plan"]["create"] == 4
    assert sent == []
