"""The octovid command, run as a subprocess against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from importlib import resources
from pathlib import Path

import pytest

from octovid.testing import Simulator

VIDEO = resources.files("octovid.testing").joinpath("sample.mp4").read_bytes()


async def octovid(*args: str, env: dict[str, str] | None = None,
                  timeout: float = 60) -> tuple[int, str, str]:
    """Run ``python -m octovid ARGS``; return (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "octovid", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OCTOVID_API_KEY": "", **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def until(condition) -> None:
    """Wait until ``condition()`` holds (it watches a simulator in this same loop)."""
    while not condition():  # noqa: ASYNC110 - the simulator has no event to wait on
        await asyncio.sleep(0.02)


def connect(sim: Simulator) -> list[str]:
    return ["--api-key", sim.api_key, "--base-url", sim.url, "--rate-limit", "50"]


def write_batch(path: Path, count: int) -> Path:
    families = [
        '{"model": "sora-2", "prompt": "clip %d"}',
        '{"model": "veo3.1-fast", "prompt": "clip %d", "orientation": "landscape"}',
        '{"model": "grok-video-3", "prompt": "clip %d", "duration": 6}',
        '{"model": "viduq2-pro", "prompt": "clip %d"}',
        '{"model": "jimeng-video-3.0", "prompt": "clip %d", "key": "jimeng-%d"}',
    ]
    lines = ["# a comment, then a blank line", ""]
    lines += [families[i % 5].replace("%d", str(i)) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "command", [[], ["create"], ["status"], ["wait"], ["download"], ["batch"], ["demo"],
                ["simulate"]],
)
async def test_help_is_clear(command):
    """octovid --help and each command's --help exit 0 and describe themselves."""
    status, out, err = await octovid(*command, "--help")
    assert status == 0, err
    assert out.startswith("usage:")
    if command in ([], ["batch"]):
        assert "resum" in out  # the batch promise is stated up front


async def test_batch_creates_downloads_and_summarises(tmp_path):
    """A batch downloads every video, prints a summary and exits 0."""
    batch = write_batch(tmp_path / "batch.jsonl", 5)
    out = tmp_path / "videos"
    async with Simulator(duration=(0.3, 0.8)) as sim:
        status, stdout, stderr = await octovid("batch", str(batch), "--out", str(out),
                                               *connect(sim))
        creates = sim.creates_per_body()
    assert status == 0, stderr
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == 5 and all(v.read_bytes() == VIDEO for v in videos)
    assert "5 of 5 videos" in stdout
    assert "jimeng-4" in stdout
    assert sorted(creates.values()) == [1] * 5
    assert (out / ".octovid-journal.db").exists()


async def test_batch_json_lines(tmp_path):
    """With --json every finished job is one JSON line, then a summary line."""
    batch = write_batch(tmp_path / "batch.jsonl", 3)
    async with Simulator(duration=(0.2, 0.4)) as sim:
        status, stdout, _ = await octovid("batch", str(batch), "--out", str(tmp_path / "o"),
                                          "--json", *connect(sim))
    records = [json.loads(line) for line in stdout.splitlines()]
    assert status == 0
    assert {r["status"] for r in records[:-1]} == {"completed"}
    assert all(Path(r["file"]).is_file() for r in records[:-1])
    assert records[-1] == {"summary": {"done": 3}, "total": 3, "out": str(tmp_path / "o")}


async def test_batch_killed_halfway_resumes_without_paying_twice(tmp_path):
    """A batch killed with SIGKILL and run again finishes every video, each created once."""
    batch = write_batch(tmp_path / "batch.jsonl", 10)
    out = tmp_path / "videos"
    async with Simulator(seed=11, duration=(1.0, 3.0)) as sim:
        args = [sys.executable, "-m", "octovid", "batch", str(batch), "--out", str(out),
                *connect(sim), "--rate-limit", "8"]
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await until(lambda: len(sim.creates_per_body()) >= 5)  # halfway through the creates
        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed_with = len(sim.creates_per_body())
        status, _, stderr = await octovid("batch", str(batch), "--out", str(out), *connect(sim))
        creates = sim.creates_per_body()
    assert 5 <= killed_with < 10
    assert status == 0, stderr
    assert len(list(out.glob("*.mp4"))) == 10
    assert sorted(creates.values()) == [1] * 10
    assert not list(out.glob("*.part"))


async def test_interrupted_batch_leaves_a_consistent_journal(tmp_path):
    """Ctrl-C stops cleanly: exit 130, a one-line message, every created task journaled."""
    batch = write_batch(tmp_path / "batch.jsonl", 6)
    out = tmp_path / "videos"
    async with Simulator(duration=(5.0, 5.0)) as sim:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "octovid", "batch", str(batch), "--out", str(out),
            *connect(sim), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        await until(lambda: len(sim.creates_per_body()) >= 3)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        created = {task.id for task in sim.tasks.values()}
    assert process.returncode == 130
    assert "run the same command again to resume" in err.decode()
    assert "Traceback" not in err.decode()
    with sqlite3.connect(out / ".octovid-journal.db") as db:
        journaled = {row[0] for row in db.execute("SELECT task_id FROM jobs") if row[0]}
    assert journaled == created


async def test_a_second_ctrl_c_does_not_lose_creates_on_the_wire(tmp_path):
    """Ctrl-C twice while creates are unanswered still journals them; a re-run pays nothing."""
    batch = write_batch(tmp_path / "batch.jsonl", 3)
    out = tmp_path / "videos"
    async with Simulator(duration=(1.0, 1.0)) as sim:
        sim.inject("create", delay=2.0, times=3)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "octovid", "batch", str(batch), "--out", str(out),
            *connect(sim), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        await until(lambda: len(sim.tasks) == 3)  # all three created, none answered yet
        process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 130, err.decode()
        assert "still stopping" in err.decode()
        status, _, err = await octovid("batch", str(batch), "--out", str(out), *connect(sim))
        assert status == 0, err
        creates = sim.creates_per_body()
    assert sorted(creates.values()) == [1, 1, 1]


async def test_failed_tasks_are_created_again_only_with_retry_failed(tmp_path):
    """A re-run keeps failed tasks failed (nothing billed); --retry-failed creates them anew."""
    batch = write_batch(tmp_path / "batch.jsonl", 3)
    out = tmp_path / "videos"
    run = ["batch", str(batch), "--out", str(out)]
    async with Simulator(duration=(0.2, 0.4), failure_rate=1.0) as sim:
        status, summary, _ = await octovid(*run, *connect(sim))
        assert status == 1
        assert "--retry-failed" in summary
        again, _, _ = await octovid(*run, *connect(sim))
        assert again == 1
        assert sorted(sim.creates_per_body().values()) == [1, 1, 1]
        retried, _, _ = await octovid(*run, "--retry-failed", *connect(sim))
        creates = sim.creates_per_body()
    assert retried == 1  # they fail again on this gateway, but they were tried again
    assert sorted(creates.values()) == [2, 2, 2]


async def test_bad_line_is_reported_with_its_number_and_nothing_is_created(tmp_path):
    """A bad JSONL line is one error naming file and line; no request is sent."""
    batch = write_batch(tmp_path / "batch.jsonl", 4)
    lines = batch.read_text().splitlines()
    lines.insert(4, '{"model": "sora-2", "prompt": "x", "duration": 12}')
    batch.write_text("\n".join(lines) + "\n")
    async with Simulator() as sim:
        status, _, err = await octovid("batch", str(batch), "--out", str(tmp_path / "o"),
                                       *connect(sim))
        assert sim.requests == []
    assert status == 2
    assert err.strip().splitlines() == [
        f"octovid: error: {batch}:5: duration=12 is not allowed: one of 10, 15, 25 for sora-2 "
        "(sora-2-pro: longer)"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [("not json", "not JSON"), ("[1, 2]", "expected a JSON object"),
     ('{"prompt": "no model"}', "model=None")],
)
async def test_each_kind_of_bad_line_is_named(tmp_path, line, message):
    """Invalid JSON, a non-object and a missing model each name their line."""
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"model": "sora-2", "prompt": "fine"}\n' + line + "\n")
    status, _, err = await octovid("batch", str(batch), "--out", str(tmp_path),
                                   "--api-key", "k", "--base-url", "http://127.0.0.1:9")
    assert status == 2
    assert f"{batch}:2: " in err and message in err


async def test_missing_key_is_one_clear_line(tmp_path):
    """Without a key the command fails with one line naming the fix, no traceback."""
    status, _, err = await octovid("status", "some-id")
    assert status == 1
    assert err.strip() == ("octovid: error: no API key: pass api_key= to octovid.Client or "
                           "set OCTOVID_API_KEY")


@pytest.mark.parametrize("command", ["status", "batch"])
async def test_unreachable_host_is_one_clear_line(tmp_path, command):
    """An unreachable gateway gives one line naming the host, no traceback, no table."""
    if command == "status":
        args = ["status", "x"]
    else:
        batch = write_batch(tmp_path / "batch.jsonl", 20)
        args = ["batch", str(batch), "--out", str(tmp_path / "out"), "--json"]
    status, out, err = await octovid(*args, "--api-key", "k", "--base-url", "http://127.0.0.1:9")
    assert status == 1
    assert len(err.strip().splitlines()) == 1
    assert "cannot connect to http://127.0.0.1:9" in err
    assert out == ""


async def test_create_wait_download_and_status(tmp_path):
    """create --wait --out creates, waits and downloads; status reports the task."""
    async with Simulator(duration=(0.3, 0.5)) as sim:
        status, out, err = await octovid(
            "create", "sora-2", "a corgi", "--set", "duration=15", "--wait",
            "--out", str(tmp_path), *connect(sim),
        )
        assert status == 0, err
        task_id = out.split()[0]
        status, out, _ = await octovid("status", task_id, "--json", *connect(sim))
        body = next(iter(sim.tasks.values())).body
    assert status == 0
    assert json.loads(out)["status"] == "completed"
    assert body["duration"] == 15
    assert [p.read_bytes() for p in tmp_path.glob("*.mp4")] == [VIDEO]


async def test_demo_runs_on_the_embedded_simulator(tmp_path):
    """octovid demo downloads a video per sample prompt, with no key and no network."""
    status, out, err = await octovid("demo", "--out", str(tmp_path / "demo"), "--seed", "1",
                                     timeout=120)
    assert status == 0, err
    videos = list((tmp_path / "demo").glob("*.mp4"))
    assert len(videos) == 8 and all(v.read_bytes() == VIDEO for v in videos)
    assert "8 of 8 videos" in out
