"""What the command line shows: live progress, the live state of tasks, the batch summary.

On a terminal, progress is one live line drawn with rich (when installed); elsewhere (a pipe, a
log file, CI), plain lines at intervals. The summary is plain text laid out for the terminal's
width: ids and paths are never broken, only reasons wrap.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

import octovid
from octovid._batch import LineResult, Snapshot

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

__all__ = [
    "BatchProgress",
    "TaskProgress",
    "clock",
    "progress_parts",
    "progress_text",
    "summary_lines",
]

_MIN_BAR, _MAX_BAR = 10, 40
_ESSENTIAL = 2  # parts of this priority or less stay as long as anything does
_ORDER = ("creating", "queued", "processing", "downloading")


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _rate(per_second: float) -> str:
    if per_second >= 1:
        return f"{per_second:.1f}/s"
    return f"{per_second * 60:.1f}/min"


def progress_parts(s: Snapshot) -> list[tuple[int, str]]:
    """The pieces of a progress line, in display order, each with its priority (0 = last to go).

    Status counts give way first, then the rate, the elapsed and the remaining time; the count
    done, failures and a rate-limit pause stay as long as anything does.
    """
    counts = s.counts
    parts: list[tuple[int, str]] = [(0, f"{s.finished}/{s.total}")]
    bad = counts.get("failed", 0) + counts.get("uncertain", 0)
    if bad:
        parts.append((2, f"{bad} failed" if not counts.get("uncertain") else f"{bad} not done"))
    running = [f"{counts[name]} {name}" for name in _ORDER if counts.get(name)]
    for index, text in enumerate(running):
        parts.append((7 + index, text))
    if s.rate:
        parts.append((6, _rate(s.rate)))
    parts.append((5, clock(s.elapsed)))
    remaining = s.remaining
    if remaining and s.finished < s.total:
        parts.append((4, f"~{clock(remaining)} left"))
    if s.paused_for >= 0.5:
        parts.append((1, f"paused {s.paused_for:.0f} s: rate limited"))
    return parts


def progress_text(s: Snapshot, width: int) -> tuple[str, int]:
    """The text of a progress line that fits ``width`` columns, and the room left for a bar.

    Returns:
        (text, bar width); the bar width is 0 when there is no room for a bar.
    """
    parts = progress_parts(s)

    def text(chosen: set[int]) -> str:
        return "  ".join(parts[i][1] for i in range(len(parts)) if i in chosen)

    def fit(reserve: int, keep: int) -> set[int] | None:
        """Drop the least important parts until the rest fits; None if a kept one must go."""
        chosen = set(range(len(parts)))
        while len(text(chosen)) + reserve > width:
            worst = max(chosen, key=lambda i: parts[i][0])
            if parts[worst][0] <= keep or len(chosen) == 1:
                return None
            chosen.discard(worst)
        return chosen

    # The count, failures and a pause matter more than the bar: below them, the bar goes.
    chosen = fit(1 + _MIN_BAR, keep=_ESSENTIAL)
    if chosen is not None:
        line = text(chosen)
        return line, min(_MAX_BAR, width - len(line) - 1)
    chosen = fit(0, keep=0) or {0}
    return text(chosen)[:width], 0


class _Line:
    """The live progress line, drawn for the console's width at each refresh."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self._bar = (0, _MAX_BAR)  # (console width, bar width): the bar only ever shrinks

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        s = self.snapshot
        if s is None:
            return
        width = options.max_width
        line, bar = progress_text(s, width)
        if bar:  # a bar that changes length at each refresh is hard to read
            bar = min(bar, self._bar[1]) if self._bar[0] == width else bar
            self._bar = (width, bar)
        if not bar:
            yield Text(line, no_wrap=True, overflow="crop")
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=bar, no_wrap=True)
        grid.add_column(no_wrap=True)
        pause = "paused" in line
        grid.add_row(ProgressBar(total=max(1, s.total), completed=s.finished, width=bar),
                     Text(line, style="yellow" if pause else ""))
        yield grid


class BatchProgress:
    """Shows a batch's progress: a live line on a terminal, plain lines every ``every`` s."""

    def __init__(self, snapshot: Callable[[], Snapshot], *, quiet: bool = False,
                 every: float = 10.0, stream: IO[str] | None = None,
                 console: Console | None = None) -> None:
        self._snapshot = snapshot
        self._quiet = quiet
        self._every = every
        self._stream = stream or sys.stderr
        self._console = console
        self._last = time.monotonic()  # the first plain line comes after `every` seconds
        self._paused = False
        self._printed = ""

    @contextlib.contextmanager
    def shown(self) -> Iterator[Callable[[], None]]:
        """Show progress while the block runs; yields the function that refreshes it."""
        if self._quiet:
            yield lambda: None
            return
        console = self._console or _console(self._stream)
        if console is None:
            yield self._plain
            self._plain(final=True)
            return
        from rich.live import Live

        line = _Line()

        def refresh() -> None:
            line.snapshot = self._snapshot()

        refresh()
        with Live(line, console=console, refresh_per_second=4, transient=False,
                  redirect_stdout=_same_terminal(), redirect_stderr=True):
            yield refresh
            refresh()

    def _plain(self, *, final: bool = False) -> None:
        s = self._snapshot()
        now = time.monotonic()
        pausing = s.paused_for >= 0.5
        started_pause = pausing and not self._paused
        self._paused = pausing
        if final and not self._printed:
            return  # a short run: the summary says it all
        if not (final or started_pause or now - self._last >= self._every):
            return
        self._last = now
        text = "  ".join(text for _, text in progress_parts(s))
        if text != self._printed:
            print(f"octovid: {text}", file=self._stream, flush=True)
            self._printed = text


def _same_terminal() -> bool:
    """Whether stdout is a terminal too: what is printed there must pass above a live display."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _console(stream: IO[str]) -> Console | None:
    """A rich console for ``stream`` if it is a terminal and rich is installed."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    console = Console(file=stream)
    return console if console.is_terminal and not console.is_dumb_terminal else None


class TaskProgress:
    """The live state of a few tasks (``create --wait``, ``wait``).

    On a terminal, one live line per task (id, status, progress, time); elsewhere, one plain
    line on ``stream`` each time a task's status or progress changes.
    """

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None,
                 console: Console | None = None) -> None:
        self._quiet = quiet
        self._stream = stream or sys.stderr
        self._console = console
        self._tasks: dict[str, tuple[str, int | None]] = {}
        self._first: dict[str, float] = {}  # task id -> when it was first seen
        self._started = time.monotonic()
        self._live = False

    def update(self, task: octovid.Task) -> None:
        """A new snapshot of a task."""
        seen = (task.status.value, task.progress)
        if self._tasks.get(task.id) == seen:
            return
        self._tasks[task.id] = seen
        self._first.setdefault(task.id, time.monotonic())
        if self._quiet or self._live:
            return  # a live display draws it at its next refresh
        progress = f" {task.progress}%" if task.progress is not None else ""
        print(f"octovid: {task.id} {seen[0]}{progress}  {clock(self._elapsed(task.id))}",
              file=self._stream, flush=True)

    def _elapsed(self, task_id: str) -> float:
        return time.monotonic() - self._first.get(task_id, self._started)

    def _render(self) -> Any:
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, justify="right")
        grid.add_column(no_wrap=True, justify="right")
        for task_id, (status, progress) in list(self._tasks.items())[-20:]:
            grid.add_row(task_id, status, "" if progress is None else f"{progress}%",
                         clock(self._elapsed(task_id)))
        return grid

    @contextlib.contextmanager
    def shown(self) -> Iterator[Callable[[str], None] | None]:
        """Show the tasks live while the block runs (on a terminal).

        Yields a function that prints a line of results above the live display, unbroken,
        when the results go to the same terminal; None when they may be printed as usual.
        """
        console = None if self._quiet else (self._console or _console(self._stream))
        if console is None:
            yield None
            return
        from rich.live import Live

        def above(text: str) -> None:
            console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)

        with Live(console=console, refresh_per_second=2, transient=True,
                  get_renderable=self._render, redirect_stdout=False, redirect_stderr=True):
            self._live = True
            try:
                yield above if _same_terminal() else None
            finally:
                self._live = False


# -- the summary ---------------------------------------------------------------------------

_HINTS = {
    "failed": "--retry-failed creates failed lines again (billed again)",
    "uncertain": "uncertain lines may exist and be billed: check with the gateway; "
                 "--retry-uncertain creates them again (they may then be billed twice)",
    "unfinished": "run the same command again to go on waiting for unfinished lines",
}


def terminal_size(stream: IO[str]) -> tuple[int, int] | None:
    """(columns, lines) when ``stream`` is a terminal, else None."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    size = shutil.get_terminal_size((100, 40))
    return size.columns, size.lines


def summary_lines(
    results: Sequence[LineResult], *, where: str, manifest: str, downloaded: bool,
    width: int = 100, height: int | None = None,
) -> list[str]:
    """The summary: a one-line total, then the lines that did not complete, and what to do.

    Ids and file names are never broken: the reason column wraps, and below about 60 columns
    each line that did not complete takes two lines. ``height`` caps the rows listed (the
    manifest has them all).
    """
    total = len(results)
    by_status: dict[str, int] = {}
    for result in results:
        by_status[result.status] = by_status.get(result.status, 0) + 1
    parts = [f"{by_status[s]} {s}" for s in ("completed", "failed", "uncertain", "unfinished")
             if by_status.get(s)]
    head = f"{total} {'line' if total == 1 else 'lines'}: {', '.join(parts)}"
    if downloaded:
        head += f"; videos in {where}, list in {manifest}"
    else:
        head += f" (not downloaded: --no-download); list in {manifest}"
    lines = [head]
    bad = [r for r in results if r.status != "completed"]
    if not bad:
        return lines
    shown = bad if height is None else bad[: max(3, height - 6)]
    number = max(4, *(len(str(r.line)) for r in shown))
    state = max(len(r.status) for r in shown)
    ident = max(len(r.task_id or "-") for r in shown)
    fixed = number + state + ident + 6
    lines.append("")
    if width - fixed >= 24:
        room = width - fixed
        lines.append(f"{'line'.rjust(number)}  {'status'.ljust(state)}  "
                     f"{'task id'.ljust(ident)}  reason")
        for r in shown:
            reason = textwrap.wrap(_reason(r), room, break_on_hyphens=False) or [""]
            lines.append(f"{str(r.line).rjust(number)}  {r.status.ljust(state)}  "
                         f"{(r.task_id or '-').ljust(ident)}  {reason[0]}")
            lines.extend(" " * fixed + more for more in reason[1:])
    else:
        for r in shown:
            head = f"line {r.line}  {r.status}"
            task_id = r.task_id or "-"
            if len(head) + 2 + len(task_id) <= width:
                lines.append(f"{head}  {task_id}")
            else:  # the id on a line of its own, whole, to be read and copied
                lines.extend((head, f"  {task_id}"))
            lines.extend(textwrap.wrap(_reason(r), max(20, width - 4), initial_indent="    ",
                                       subsequent_indent="    ", break_on_hyphens=False))
    if len(shown) < len(bad):
        lines.append(f"... and {len(bad) - len(shown)} more: all of them in {manifest}")
    lines.append("")
    policy = sum(1 for r in bad if r.policy)
    for status in ("failed", "uncertain", "unfinished"):
        if by_status.get(status):
            hint = _HINTS[status]
            if status == "failed" and policy:
                hint += (f"; except {policy} refused for {'its' if policy == 1 else 'their'} "
                         "prompt: change the prompt (a changed line is a new request)")
            lines.extend(textwrap.wrap(hint, max(40, width), break_on_hyphens=False,
                                       break_long_words=False))
    return lines


def _reason(result: LineResult) -> str:
    return result.error or "no reason given"
