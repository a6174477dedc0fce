"""What the command line shows: the progress line, the live task display and the summary."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

import octovid
from octovid._batch import LineResult, Snapshot
from octovid._cli._display import (
    BatchProgress,
    TaskProgress,
    progress_text,
    summary_lines,
)

BUSY = Snapshot(total=30, counts={"completed": 11, "failed": 2, "processing": 10, "queued": 5,
                                  "creating": 2}, elapsed=130, rate=0.05, paused_for=12.3,
                rate_limited=4)
IDS = ["sora-2:task_01k9008rq2bmsk8v1zy3w0x3a5", "video_8b82c3e1-5b7e-4c4e-9d8e-0f3c2b1a9e77",
       "grok:48a6d0a1-7e3b-4f7c-9a2e-5b1c3d4e6f70"]


def terminal(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=width, color_system=None), buffer


def results(count: int, failed: int = 0) -> list[LineResult]:
    out = []
    for number in range(1, count + 1):
        task_id = IDS[number % 3] + f"-{number}"
        if number <= failed:
            out.append(LineResult(number, f"k{number}", "sora-2", "p", "failed", task_id,
                                  error="upstream generation error: the provider gave up "
                                        "after three attempts at rendering the clip"))
        else:
            out.append(LineResult(number, f"k{number}", "sora-2", "p", "completed", task_id,
                                  file=f"/videos/{number:04d}-k{number}.mp4"))
    return out


# -- the progress line ---------------------------------------------------------------------


def test_the_progress_line_fits_80_columns_with_rate_times_and_the_pause():
    """At 80 columns: done/total, failures, rate, elapsed, remaining, the pause, and a bar."""
    text, bar = progress_text(BUSY, 80)
    assert text == "13/30  2 failed  3.0/min  2:10  ~5:40 left  paused 12 s: rate limited"
    assert bar >= 10
    assert len(text) + 1 + bar <= 80


def test_status_counts_give_way_first_on_narrow_terminals():
    """Counts show when there is room, go first when there is not; the pause stays longest."""
    wide, _ = progress_text(BUSY, 160)
    narrow, bar = progress_text(BUSY, 40)
    assert "2 creating  5 queued  10 processing" in wide
    assert narrow == "13/30  paused 12 s: rate limited"
    assert bar == 0


@pytest.mark.parametrize("width", [40, 80, 120])
def test_the_live_line_is_one_line_of_the_terminals_width(width):
    """On a terminal, the live display is one line, within the width, the pause visible."""
    console, buffer = terminal(width)
    progress = BatchProgress(lambda: BUSY, console=console)
    with progress.shown() as refresh:
        refresh()
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    last = drawn.split("\r")[-1].strip("\n").splitlines()
    assert len(last) == 1
    assert len(last[0]) <= width
    assert "paused 12 s: rate limited" in last[0]
    assert "13/30" in last[0]


def test_plain_progress_comes_at_intervals_and_at_a_pause():
    """Off a terminal: nothing at first, a line when a pause begins, then every `every` s."""
    stream = io.StringIO()
    snapshots = [BUSY]
    calm = Snapshot(total=30, counts={"completed": 30}, elapsed=200, rate=0.1, paused_for=0,
                    rate_limited=4)
    progress = BatchProgress(lambda: snapshots[-1], stream=stream, every=0.2)
    with progress.shown() as refresh:
        refresh()  # a pause began: said at once
        refresh()  # the same pause: not again
        snapshots.append(calm)
        refresh()  # too soon
        time.sleep(0.25)
        refresh()
    assert stream.getvalue().splitlines() == [
        "octovid: 13/30  2 failed  2 creating  5 queued  10 processing  3.0/min  2:10  "
        "~5:40 left  paused 12 s: rate limited",
        "octovid: 30/30  6.0/min  3:20",
    ]


def test_a_short_plain_run_prints_no_progress():
    """A batch that ends within the first interval leaves the summary alone on screen."""
    stream = io.StringIO()
    calm = Snapshot(total=1, counts={"completed": 1}, elapsed=1, rate=None, paused_for=0,
                    rate_limited=0)
    with BatchProgress(lambda: calm, stream=stream, every=10).shown() as refresh:
        refresh()
    assert stream.getvalue() == ""


def task(status: str, progress: int | None) -> octovid.Task:
    return octovid.Task.from_response({"id": IDS[0], "status": status, "progress": progress})


def test_task_progress_off_a_terminal_is_a_line_per_change():
    """wait and create --wait: one plain line each time status or progress changes."""
    stream = io.StringIO()
    shown = TaskProgress(stream=stream)
    with shown.shown() as printer:
        for snapshot in (task("queued", 0), task("queued", 0), task("processing", 40),
                         task("completed", 100)):
            shown.update(snapshot)
    assert printer is None
    assert [line.rsplit("  ", 1)[0] for line in stream.getvalue().splitlines()] == [
        f"octovid: {IDS[0]} queued 0%", f"octovid: {IDS[0]} processing 40%",
        f"octovid: {IDS[0]} completed 100%",
    ]


def test_task_progress_on_a_terminal_shows_the_id_whole():
    """On a terminal the live display shows id, status and progress on one line."""
    console, buffer = terminal(80)
    shown = TaskProgress(console=console)
    with shown.shown():
        shown.update(task("processing", 40))
        time.sleep(0.6)
    assert any(IDS[0] in line and "processing" in line and "40%" in line
               for line in buffer.getvalue().replace("\r", "\n").splitlines())


# -- the summary ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", [50, 80, 120])
def test_the_summary_never_breaks_an_id_and_fits_the_width(width):
    """Ids stay whole on one line at 50, 80 and 120 columns; only reasons wrap."""
    lines = summary_lines(results(6, failed=3), where="videos", manifest="videos/manifest.jsonl",
                          downloaded=True, width=width)
    ids = [result.task_id for result in results(6, failed=3)[:3]]
    for task_id in ids:
        assert sum(task_id in line for line in lines) == 1
    assert all(len(line) <= width for line in lines[1:] if line.strip() not in ids)


def test_the_summary_is_a_total_then_only_what_did_not_complete():
    """One line of totals; then the failures only, in line order; then what to do."""
    lines = summary_lines(results(5, failed=2), where="videos", manifest="videos/manifest.jsonl",
                          downloaded=True, width=100)
    assert lines[0] == "5 lines: 3 completed, 2 failed; videos in videos, list in " \
                       "videos/manifest.jsonl"
    listed = [line for line in lines[1:] if line.lstrip()[:1].isdigit()]
    assert [line.split()[0] for line in listed] == ["1", "2"]
    assert all("completed" not in line for line in lines[1:])
    assert lines[-1] == "--retry-failed creates failed lines again (billed again)"


def test_ten_thousand_videos_summarise_in_one_line():
    """10,000 completed jobs print one line, not a 20,005-line table."""
    lines = summary_lines(results(10_000), where="v", manifest="v/manifest.jsonl",
                          downloaded=True, width=80)
    assert lines == ["10000 lines: 10000 completed; videos in v, list in v/manifest.jsonl"]


def test_many_failures_are_capped_to_the_terminal_height():
    """On a 30-line terminal, 5,000 failures list a screenful and point at the manifest."""
    lines = summary_lines(results(10_000, failed=5_000), where="v", manifest="v/manifest.jsonl",
                          downloaded=True, width=200, height=30)
    assert len(lines) <= 30
    assert "... and 4976 more: all of them in v/manifest.jsonl" in lines


def test_policy_refusals_are_told_apart_in_the_advice():
    """A content-policy failure is not worth --retry-failed: the advice says to change it."""
    refused = LineResult(1, "k", "sora-2", "p", "failed", IDS[0],
                         error="content policy violation", policy=True)
    lines = summary_lines([refused], where="v", manifest="m", downloaded=True, width=200)
    assert lines[-1] == ("--retry-failed creates failed lines again (billed again); except 1 "
                         "refused for its prompt: change the prompt (a changed line is a new "
                         "request)")
