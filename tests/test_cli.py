"""The octovid command, run as a subprocess against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from octovid.testing import Simulator

VIDEO = resources.files("octovid.testing").joinpath("sample.mp4").read_bytes()


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch) -> Path:
    """Each test's own data directory: its journals are its own."""
    home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.delenv("OCTOVID_BASE_URL", raising=False)
    return home


def journal_file(home: Path) -> Path:
    """The one journal the batches of a test wrote."""
    (path,) = (home / "octovid" / "journals").glob("*.db")
    return path


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


def connect(sim: Simulator, *, poll: bool = True) -> list[str]:
    """The options that point a command at ``sim`` (global: they may come first)."""
    options = ["--api-key", sim.api_key, "--base-url", sim.url, "--rate-limit", "50"]
    return [*options, "--poll-interval", "0.2"] if poll else options


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
    "command", [[], ["create"], ["status"], ["wait"], ["download"], ["batch"], ["models"], ["demo"],
                ["simulate"]],
)
async def test_help_is_clear(command):
    """octovid --help and each command's --help exit 0 and describe themselves."""
    status, out, err = await octovid(*command, "--help")
    assert status == 0, err
    assert out.startswith("usage:")
    if command in ([], ["batch"]):
        assert "resum" in out  # the batch promise is stated up front


async def test_batch_creates_downloads_and_summarises(tmp_path, data_home):
    """A batch downloads every video as 0007-<key>.mp4, prints a one-line total and exits 0."""
    batch = write_batch(tmp_path / "batch.jsonl", 5)
    out = tmp_path / "videos"
    async with Simulator(duration=(0.3, 0.8)) as sim:
        status, stdout, stderr = await octovid("batch", str(batch), "--out", str(out),
                                               *connect(sim))
        creates = sim.creates_per_body()
    assert status == 0, stderr
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == 5 and all(v.read_bytes() == VIDEO for v in videos)
    assert [v.name[:5] for v in videos] == ["0003-", "0004-", "0005-", "0006-", "0007-"]
    assert (out / "0007-jimeng-4.mp4").is_file()
    assert stdout.splitlines() == [
        f"5 lines: 5 completed; videos in {out}, list in {out / 'manifest.jsonl'}"
    ]
    assert stderr.splitlines()[0] == f"octovid: {batch}: 5 lines: 5 to create"
    assert sorted(creates.values()) == [1] * 5
    assert journal_file(data_home).is_file()
    assert not (out / ".octovid-journal.db").exists()


async def test_batch_json_lines(tmp_path):
    """With --json: the plan, one line per batch line (its number, key, prompt), a summary."""
    batch = write_batch(tmp_path / "batch.jsonl", 3)
    out = tmp_path / "o"
    async with Simulator(duration=(0.2, 0.4)) as sim:
        status, stdout, _ = await octovid("batch", str(batch), "--out", str(out),
                                          "--json", *connect(sim))
    records = [json.loads(line) for line in stdout.splitlines()]
    assert status == 0
    assert records[0]["plan"] == {"create": 3, "running": 0, "done": 0, "failed": 0,
                                  "uncertain": 0}
    lines = sorted(records[1:-1], key=lambda r: r["line"])
    assert [(r["line"], r["prompt"], r["model"]) for r in lines] == [
        (3, "clip 0", "sora-2"), (4, "clip 1", "veo3.1-fast"), (5, "clip 2", "grok-video-3")
    ]
    assert {r["status"] for r in lines} == {"completed"}
    assert all(len(r["key"]) == 16 and r["id"] for r in lines)
    assert all(Path(r["file"]).name.startswith(f"{r['line']:04d}-{r['key']}") for r in lines)
    assert records[-1] == {"summary": {"completed": 3}, "total": 3, "out": str(out),
                           "manifest": str(out / "manifest.jsonl")}


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
        def between_creates() -> bool:
            answered = sum(1 for r in sim.requests if r.method == "POST")
            return len(sim.tasks) >= 5 and answered == len(sim.tasks)

        # Halfway through the creates, between two of them: a kill during a create would
        # rightly leave it uncertain (not created again), and this test about a video short.
        await until(between_creates)
        await asyncio.sleep(0.02)  # the answer reaches the journal; the next create is 125 ms off
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


async def test_interrupted_batch_leaves_a_consistent_journal(tmp_path, data_home):
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
    with sqlite3.connect(journal_file(data_home)) as db:
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
    """A re-run keeps failed tasks failed; --retry-failed creates them anew, unless refused
    for their prompt (content policy), which would fail again."""
    batch = write_batch(tmp_path / "batch.jsonl", 3)
    out = tmp_path / "videos"
    run = ["batch", str(batch), "--out", str(out)]
    async with Simulator(duration=(5.0, 5.0)) as sim:

        async def fail_all() -> None:
            await until(lambda: len(sim.tasks) == 3)
            reasons = ["content policy violation", "upstream generation error",
                       "upstream task timed out"]
            for task, reason in zip(sim.tasks.values(), reasons, strict=True):
                sim.finish(task.id, fail=reason)

        status, summary, _ = (await asyncio.gather(octovid(*run, *connect(sim)), fail_all()))[0]
        assert status == 1
        assert "--retry-failed" in summary
        assert "content policy violation" in summary
        again, _, err = await octovid(*run, *connect(sim))
        assert again == 1
        assert "3 lines: 3 failed" in err
        assert sorted(sim.creates_per_body().values()) == [1, 1, 1]
        retried, _, err = await octovid(*run, "--retry-failed", *connect(sim))
        policy = next(json.dumps(t.body, sort_keys=True, separators=(",", ":"))
                      for t in sim.tasks.values() if t.reason == "content policy violation")
        creates = sim.creates_per_body()
    assert "1 refused for their prompt: kept failed" in err
    assert "creating 2 failed lines again (--retry-failed)" in err
    assert retried == 1  # the content-policy line is still failed
    assert creates.pop(policy) == 1
    assert sorted(creates.values()) == [2, 2]


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
     ('{"prompt": "no model"}', "no model (`octovid models` lists them)"),
     ('{"model": "sora-2"}', "no prompt")],
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
    """Without a key the command fails with one line naming the option, in shell words."""
    status, _, err = await octovid("status", "some-id")
    assert status == 2
    assert err.strip() == "octovid: error: no API key: pass --api-key KEY or set OCTOVID_API_KEY"


@pytest.mark.parametrize("command", ["status", "batch"])
async def test_unreachable_host_is_one_clear_line(tmp_path, command):
    """A refused connection is one plain line within seconds: no aiohttp names, no table."""
    if command == "status":
        args = ["status", "x"]
    else:
        batch = write_batch(tmp_path / "batch.jsonl", 20)
        args = ["batch", str(batch), "--out", str(tmp_path / "out"), "--json"]
    started = time.monotonic()
    status, out, err = await octovid(*args, "--api-key", "k", "--base-url", "http://127.0.0.1:9")
    took = time.monotonic() - started
    assert status == 1
    assert err.strip().splitlines() == [
        "octovid: error: cannot connect to http://127.0.0.1:9 (connection refused); check "
        "--base-url or OCTOVID_BASE_URL"
    ]
    assert out == ""
    assert took < 5  # not the client's 15 s of retries


async def test_create_wait_download_and_status(tmp_path):
    """create --wait --out creates, waits and downloads; status reports the task."""
    async with Simulator(duration=(0.3, 0.5)) as sim:
        status, out, err = await octovid(
            "create", "sora-2", "a corgi", "--set", "duration=15", "--wait",
            "--out", str(tmp_path), *connect(sim),
        )
        assert status == 0, err
        task_id = out.split()[0]
        status, out, _ = await octovid("status", task_id, "--json", *connect(sim, poll=False))
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
    assert out.splitlines()[0].startswith("8 lines: 8 completed; videos in ")


async def test_simulate_prints_the_exports_logs_each_request_and_a_tally(tmp_path):
    """octovid simulate: the export line first, a log line per request, a tally on Ctrl-C."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "octovid", "simulate", "--port", "0", "--duration", "0.1", "0.2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    head = []
    while not head or not head[-1].startswith("export "):
        head.append((await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip())
    exports = dict(item.split("=", 1) for item in head[-1].split()[1:])
    status, out, err = await octovid("create", "sora-2", "a corgi", "--json",
                                     env=exports)
    task_id = json.loads(out)["id"]
    await octovid("status", task_id, env=exports)
    process.send_signal(signal.SIGINT)
    rest, log = await asyncio.wait_for(process.communicate(), 20)
    assert status == 0, err
    assert head[0].startswith("octovid simulator listening on http://127.0.0.1:")
    assert set(exports) == {"OCTOVID_BASE_URL", "OCTOVID_API_KEY"}
    logged = log.decode().splitlines()
    assert logged[0].endswith(f'"POST /v1/video/create" 200  {task_id}')
    assert logged[1].endswith(f" 200  {task_id}")
    assert '"GET /v1/video/query?id=' in logged[1]
    assert rest.decode().strip().splitlines()[-1] == (
        "octovid simulator: stopped after 2 requests (1 create, 1 query); 1 task (1 completed)"
    )
    assert process.returncode == 0
