"""The ``octovid`` command: create, watch and download videos; resumable batches; the demo.

It only composes the public API. Errors are one line on stderr, never a traceback; the exit
status is 0 only when everything asked for was done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import octovid

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
JOURNAL_NAME = ".octovid-journal.db"


class UsageError(Exception):
    """Bad input from the command line or a batch file: reported as one line, exit 2."""


# -- the batch file ------------------------------------------------------------------------


def read_batch(path: Path) -> list[tuple[str, octovid.Request]]:
    """Read a JSONL batch: one request per line, an optional ``key``; blank and # lines skipped.

    Keys default to the hash of the line's request (with a counter for repeated lines), so they
    survive lines being added, removed or reordered.

    Raises:
        UsageError: A line is not a valid request; the message names the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    batch: list[tuple[str, octovid.Request]] = []
    seen: Counter[str] = Counter()
    keys: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{where}: expected a JSON object with model and prompt")
        key = data.pop("key", None)
        if key is not None and (not isinstance(key, str) or not key):
            raise UsageError(f"{where}: key must be a non-empty string")
        try:
            request = octovid.request_from_dict(data)
        except octovid.RequestValidationError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if key is None:
            digest = hashlib.sha256(
                json.dumps(request.to_payload(), sort_keys=True).encode()
            ).hexdigest()[:16]
            seen[digest] += 1
            key = digest if seen[digest] == 1 else f"{digest}#{seen[digest]}"
        if key in keys:
            raise UsageError(f"{where}: the key {key!r} is used twice")
        keys.add(key)
        batch.append((key, request))
    if not batch:
        raise UsageError(f"{path} holds no requests")
    return batch


# -- output --------------------------------------------------------------------------------


class Output:
    """Where results go: human lines on stdout, or JSON lines with ``--json``."""

    def __init__(self, *, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def task(self, task: octovid.Task, **extra: Any) -> None:
        """One task: a JSON line, or a readable line."""
        if self.as_json:
            record = {
                "id": task.id, "status": task.status.value, "raw_status": task.raw_status,
                "progress": task.progress, "video_url": task.video_url, "model": task.model,
                "error": task.error,
                "created_at": task.created_at.isoformat() if task.created_at else None,
                "updated_at": task.updated_at.isoformat() if task.updated_at else None,
                **extra,
            }
            self.line(json.dumps(record, ensure_ascii=False))
            return
        detail = task.error or task.video_url or ""
        progress = "" if task.progress is None else f" {task.progress}%"
        file = f" -> {extra['file']}" if extra.get("file") else ""
        self.line(f"{task.id}  {task.status.value}{progress}  {detail}{file}".rstrip())

    def line(self, text: str) -> None:
        """Print one line."""
        print(text, file=self.stream, flush=True)


def fail(message: str) -> None:
    """Report an error as one line on stderr."""
    print(f"octovid: error: {message}", file=sys.stderr, flush=True)


# -- the batch runner ----------------------------------------------------------------------


class Batch:
    """Runs a journaled batch: submit, watch, download, summarise."""

    def __init__(
        self,
        client: octovid.Client,
        items: list[tuple[str, octovid.Request]],
        out: Path,
        *,
        download: bool,
        deadline: float | None,
        output: Output,
    ) -> None:
        self.client = client
        self.items = items
        self.out = out
        self.download = download
        self.deadline = deadline
        self.output = output
        self.files: dict[str, Path] = {}  # key -> downloaded file
        self.errors: dict[str, str] = {}  # key -> why it did not end well
        self.jobs: list[octovid.Job] = []
        self.unreachable: octovid.TransportError | None = None  # the gateway never answered

    async def run(self) -> int:
        """Submit everything, then handle each job as it finishes. Returns the exit status."""
        keys = [key for key, _ in self.items]
        requests = [request for _, request in self.items]
        self.jobs = self.client.submit_many(requests, keys=keys, deadline=self.deadline)
        with self._display() as refresh:
            pending = [asyncio.ensure_future(self._finish(job)) for job in self.jobs]
            while pending:
                _, still = await asyncio.wait(pending, timeout=0.25)
                pending = list(still)
                refresh()
                if self.unreachable is not None:
                    # Every other create would fail the same way, after its own retries.
                    for waiting in pending:
                        waiting.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    raise self.unreachable
        self._summary()
        ok = sum(1 for job in self.jobs if job.key in self.files)
        return EXIT_OK if ok == len(self.jobs) else EXIT_FAILED

    async def _finish(self, job: octovid.Job) -> None:
        assert job.key is not None
        try:
            task = await job
        except octovid.OctovidError as exc:
            stats = self.client.stats
            if isinstance(exc, octovid.TransportError) and not exc.sent and (
                stats.errors == stats.requests  # not one answer yet: the host is unreachable
            ):
                self.unreachable = exc  # run() reports it, once
                return
            self.errors[job.key] = _reason(exc)
            if self.output.as_json:
                self.output.line(json.dumps({"key": job.key, "id": job.id, "error":
                                             self.errors[job.key]}, ensure_ascii=False))
            return
        if not self.download:
            self.files[job.key] = Path()
            if self.output.as_json:
                self.output.task(task, key=job.key)
            return
        try:
            path = await self._already_downloaded(job.key) or await self.client.download(
                task, _dir(str(self.out))
            )
        except octovid.OctovidError as exc:
            self.errors[job.key] = f"download failed: {_reason(exc)}"
            return
        self.files[job.key] = path
        if self.output.as_json:
            self.output.task(task, key=job.key, file=str(path))

    async def _already_downloaded(self, key: str) -> Path | None:
        """The file an earlier run downloaded for ``key``, if it is still there and intact."""
        journal = self.client.journal
        entry = journal.get(key) if journal is not None else None
        if entry is None or not entry.file or entry.sha256 is None:
            return None
        path = Path(entry.file)
        digest = await asyncio.to_thread(_sha256, path)
        return path if digest == entry.sha256 else None

    def counts(self) -> Counter[str]:
        """Jobs by state: creating, queued, processing, downloaded, failed..."""
        counts: Counter[str] = Counter()
        for job in self.jobs:
            if job.key in self.files:
                counts["done"] += 1
            elif job.key in self.errors:
                counts["failed"] += 1
            elif job.task is None:
                counts["creating"] += 1
            elif job.done():
                counts["downloading"] += 1
            else:
                counts[job.task.status.value] += 1
        return counts

    @contextlib.contextmanager
    def _display(self) -> Iterator[Callable[[], None]]:
        """Live progress: a rich bar on a terminal, periodic lines otherwise, none with --json."""
        total = len(self.jobs)
        if self.output.as_json:
            yield lambda: None
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            yield from _plain_display(self, total)
            return
        console = Console(stderr=True)
        if not console.is_terminal:
            yield from _plain_display(self, total)
            return
        progress = Progress(
            TextColumn("[bold]videos"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=console, transient=False,
        )
        bar = progress.add_task("", total=total)
        with progress:
            def refresh() -> None:
                counts = self.counts()
                progress.update(bar, completed=counts["done"] + counts["failed"],
                                description=_describe(counts, self.client.stats))
            yield refresh
            refresh()

    def _summary(self) -> None:
        if self.output.as_json:
            counts = self.counts()
            self.output.line(json.dumps({"summary": dict(counts), "total": len(self.jobs),
                                         "out": str(self.out)}))
            return
        rows = []
        for job in self.jobs:
            assert job.key is not None
            if job.key in self.files:
                state, detail = "done", str(self.files[job.key])
            else:
                state, detail = "failed", self.errors.get(job.key, "not finished")
            rows.append((job.key, job.id or "-", state, detail))
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            for row in rows:
                self.output.line("  ".join(row))
        else:
            table = Table(title=f"{len(self.files)} of {len(rows)} videos in {self.out}")
            for column in ("key", "task", "state", "file or reason"):
                table.add_column(column, overflow="fold")
            for key, task_id, state, detail in rows:
                style = "green" if state == "done" else "red"
                table.add_row(key, task_id, f"[{style}]{state}[/]", detail)
            Console(file=self.output.stream, soft_wrap=False).print(table)


def _plain_display(batch: Batch, total: int) -> Iterator[Callable[[], None]]:
    last = 0.0

    def refresh() -> None:
        nonlocal last
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            print(f"octovid: {_describe(batch.counts(), batch.client.stats)} of {total}",
                  file=sys.stderr, flush=True)

    yield refresh


def _describe(counts: Counter[str], stats: octovid.Stats) -> str:
    order = ("done", "failed", "downloading", "completed", "processing", "queued", "unknown",
             "creating")
    parts = [f"{counts[name]} {name}" for name in order if counts[name]]
    if stats.rate_limited:
        parts.append(f"{stats.rate_limited} rate-limited, {stats.rate:.2g} req/s")
    return ", ".join(parts)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, octovid.TaskFailedError):
        return f"failed: {exc.task.error} (--retry-failed creates it again)"
    if isinstance(exc, octovid.CreateUncertainError):
        return f"{exc} (or run again with --retry-uncertain)"
    return str(exc) or type(exc).__name__


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while block := file.read(1024 * 1024):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


# -- commands ------------------------------------------------------------------------------


def make_client(args: argparse.Namespace, **overrides: Any) -> octovid.Client:
    """A client from the common options."""
    options: dict[str, Any] = {
        "api_key": args.api_key,
        "base_url": args.base_url,
        "rate_limit": args.rate_limit,
        "max_concurrency": args.max_concurrency,
        "timeout": args.timeout,
    }
    options.update(overrides)
    return octovid.Client(**options)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _request_from_args(args: argparse.Namespace) -> octovid.Request:
    data: dict[str, Any] = {"model": args.model, "prompt": args.prompt}
    if args.image:
        data["images"] = args.image
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects FIELD=VALUE, not {item!r}")
        data[name] = _parse_value(value)
    try:
        return octovid.request_from_dict(data)
    except octovid.RequestValidationError as exc:
        raise UsageError(str(exc)) from None


async def cmd_create(args: argparse.Namespace, output: Output) -> int:
    """Create one task; with --wait, wait for it; with --out, download it."""
    request = _request_from_args(args)
    async with make_client(args) as client:
        task = await client.create(request)
        output.task(task)
        if not (args.wait or args.out):
            return EXIT_OK
        return await _wait_and_fetch(client, [task.id], args, output)


async def cmd_status(args: argparse.Namespace, output: Output) -> int:
    """Query tasks once each."""
    async with make_client(args) as client:
        tasks = await asyncio.gather(*(client.get(task_id) for task_id in args.task_id))
        for task in tasks:
            output.task(task)
    return EXIT_OK


async def cmd_wait(args: argparse.Namespace, output: Output) -> int:
    """Wait for tasks to finish; with --out, download them."""
    async with make_client(args) as client:
        return await _wait_and_fetch(client, args.task_id, args, output)


async def cmd_download(args: argparse.Namespace, output: Output) -> int:
    """Download completed tasks."""
    async with make_client(args) as client:
        status = EXIT_OK
        for task_id in args.task_id:
            try:
                path = await client.download(task_id, _dir(args.out))
            except octovid.DownloadError as exc:
                fail(str(exc))
                status = EXIT_FAILED
                continue
            if output.as_json:
                output.line(json.dumps({"id": task_id, "file": str(path)}))
            else:
                output.line(f"{task_id}  {path}")
        return status


async def _wait_and_fetch(
    client: octovid.Client, task_ids: Sequence[str], args: argparse.Namespace, output: Output
) -> int:
    jobs = [client.watch(task_id, deadline=args.deadline) for task_id in task_ids]
    status = EXIT_OK
    async for job in octovid.as_completed(jobs):
        try:
            task = await job
        except octovid.TaskFailedError as exc:
            output.task(exc.task)
            status = EXIT_FAILED
            continue
        except octovid.OctovidError as exc:
            fail(f"{job.id}: {exc}")
            status = EXIT_FAILED
            continue
        extra: dict[str, Any] = {}
        if args.out:
            extra["file"] = str(await client.download(task, _dir(args.out)))
        output.task(task, **extra)
    return status


async def cmd_batch(args: argparse.Namespace, output: Output) -> int:
    """Run a JSONL batch, journaled, resumable, downloading into --out."""
    items = read_batch(Path(args.file))
    out = Path(args.out)
    journal_path = Path(args.journal) if args.journal else out / JOURNAL_NAME
    journal = octovid.Journal(journal_path)
    try:
        _forget(journal, [key for key, _ in items], uncertain=args.retry_uncertain,
                failed=args.retry_failed)
        async with make_client(args, journal=journal) as client:
            batch = Batch(client, items, out, download=not args.no_download,
                          deadline=args.deadline, output=output)
            return await batch.run()
    finally:
        journal.close()


def _forget(journal: octovid.Journal, keys: list[str], *, uncertain: bool, failed: bool) -> None:
    """Drop the keys the user asked to create again: unanswered creates, failed tasks."""
    if not (uncertain or failed):
        return
    for key in keys:
        entry = journal.get(key)
        if entry is None:
            continue
        if entry.uncertain and uncertain:
            print(f"octovid: creating {key!r} again although an earlier create may have "
                  "been billed (--retry-uncertain)", file=sys.stderr)
            journal.forget(key)
        elif failed and entry.status in (octovid.Status.FAILED, octovid.Status.CANCELLED):
            journal.forget(key)


async def cmd_demo(args: argparse.Namespace, output: Output) -> int:
    """The whole product on the embedded simulator: no key, no network."""
    from octovid.testing import Simulator

    out = Path(args.out)
    batch_file = await asyncio.to_thread(_demo_batch, out)
    async with Simulator(seed=args.seed, duration=(2.0, 6.0)) as sim:
        print(f"octovid demo: a simulated gateway at {sim.url}; videos go to {out}/",
              file=sys.stderr, flush=True)
        items = read_batch(batch_file)
        # A fresh simulator knows no earlier run's tasks: the journal lives in memory.
        async with octovid.Client(
            sim.api_key, sim.url, rate_limit=20, journal=":memory:",
            poll=octovid.PollPolicy(initial=0.5, max_interval=2.0, deadline=120),
        ) as client:
            batch = Batch(client, items, out, download=True, deadline=None, output=output)
            status = await batch.run()
            stats = client.stats
    print(f"octovid demo: {len(items)} videos for {stats.requests} requests to the gateway "
          f"({stats.creates} creates, {stats.polls} polls) and {stats.downloads} downloads",
          file=sys.stderr)
    return status


def _demo_batch(out: Path) -> Path:
    """Copy the packaged sample prompts into ``out``; return the copy."""
    text = resources.files("octovid").joinpath("demo.jsonl").read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    batch_file = out / "demo.jsonl"
    batch_file.write_text(text, encoding="utf-8")
    return batch_file


def cmd_simulate(argv: list[str]) -> int:
    """Run the simulator standalone."""
    from octovid.testing._standalone import main as simulate

    return simulate(argv, prog="octovid simulate")


def _dir(path: str) -> str:
    return path if path.endswith(os.sep) else path + os.sep


# -- argument parsing ----------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument("--api-key", help="the key (default: $OCTOVID_API_KEY)")
    group.add_argument("--base-url", help="the gateway (default: $OCTOVID_BASE_URL or "
                       "https://octopusx.ai)")
    group.add_argument("--rate-limit", type=_positive, default=5.0, metavar="N",
                       help="requests per second for this key, all included (default: 5)")
    group.add_argument("--max-concurrency", type=_count, default=16, metavar="N",
                       help="requests in flight at most (default: 16)")
    group.add_argument("--timeout", type=_positive, default=60.0, metavar="S",
                       help="seconds for one request (default: 60)")
    group.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="log what octovid does (-vv: more)")

    parser = argparse.ArgumentParser(
        prog="octovid",
        description="Create videos on the octopusx gateway: many at once, under one rate "
        "limit, safely resumable.",
        epilog="Try `octovid demo`: the whole thing on a built-in simulator, no key needed.",
    )
    parser.add_argument("--version", action="version", version=f"octovid {octovid.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    create = commands.add_parser(
        "create", parents=[common], help="create one video task",
        description="Create one task and print its id and status (--json for scripts); "
        "--wait waits, --out downloads.",
    )
    create.add_argument("model", help="e.g. sora-2, veo3.1-fast, grok-video-3, viduq2-pro")
    create.add_argument("prompt")
    create.add_argument("--image", action="append", metavar="URL", help="a reference image "
                        "(repeat for more)")
    create.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="a request field, e.g. --set duration=15 (values are JSON if "
                        "they parse, else strings)")
    create.add_argument("--wait", action="store_true", help="wait until it finishes")
    create.add_argument("--out", metavar="DIR", help="download the video into DIR")
    create.add_argument("--deadline", type=_positive, metavar="S", help="give up after S seconds")

    for name, text in (("status", "query tasks once"), ("wait", "wait for tasks to finish"),
                       ("download", "download finished tasks")):
        sub = commands.add_parser(name, parents=[common], help=text, description=text + ".")
        sub.add_argument("task_id", nargs="+", metavar="TASK_ID")
        if name != "status":
            sub.add_argument("--out", metavar="DIR", required=name == "download",
                             help="download the videos into DIR")
        if name == "wait":
            sub.add_argument("--deadline", type=_positive, metavar="S",
                             help="give up after S seconds")

    batch = commands.add_parser(
        "batch", parents=[common], help="run a JSONL file of requests, resumably",
        description="Create, watch and download every request of a JSONL file (one JSON "
        "object per line: model, prompt, the family's fields, an optional key). Progress is "
        "journaled: run the same command again after a crash or Ctrl-C and it resumes, "
        "without creating anything twice.",
    )
    batch.add_argument("file", metavar="FILE.jsonl")
    batch.add_argument("--out", metavar="DIR", required=True, help="where the videos go")
    batch.add_argument("--journal", metavar="PATH",
                       help=f"the journal (default: DIR/{JOURNAL_NAME})")
    batch.add_argument("--deadline", type=_positive, metavar="S",
                       help="give up on a job after S seconds (default: 1 hour)")
    batch.add_argument("--no-download", action="store_true", help="only create and wait")
    batch.add_argument("--retry-failed", action="store_true",
                       help="create again requests whose task failed (a new task, billed)")
    batch.add_argument("--retry-uncertain", action="store_true",
                       help="create again requests whose earlier create went unanswered "
                       "(they may then be billed twice)")

    demo = commands.add_parser(
        "demo", help="run a batch on the built-in simulator (no key, no network)",
        description="Start a simulated gateway in-process, run a batch of sample prompts "
        "across the five model families, download every video and print the summary.",
    )
    demo.add_argument("--out", metavar="DIR", default="octovid-demo",
                      help="where the videos go (default: ./octovid-demo)")
    demo.add_argument("--seed", type=int, default=None, help="make the run repeatable")
    demo.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    demo.add_argument("-v", "--verbose", action="count", default=0)

    commands.add_parser(
        "simulate", add_help=False, help="run the simulated gateway (see `octovid simulate "
        "--help`)",
    )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], Awaitable[int]]] = {
    "create": cmd_create,
    "status": cmd_status,
    "wait": cmd_wait,
    "download": cmd_download,
    "batch": cmd_batch,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        return cmd_simulate(argv[1:])
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    output = Output(as_json=args.json)
    try:
        return _run(COMMANDS[args.command](args, output))
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except octovid.OctovidError as exc:
        fail(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_FAILED


def _run(main: Awaitable[int]) -> int:
    """Run a command; SIGINT and SIGTERM cancel it cleanly (clients close, journals flush)."""

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def stop() -> None:
            # The first signal stops the command; closing the client then waits (at most
            # --timeout) for creates already sent, so that their tasks reach the journal.
            # Another signal must not cut that wait short: a task would be billed and lost.
            nonlocal stopping
            if not stopping:
                stopping = True
                task.cancel()
                print("octovid: stopping; waiting for the answers to creates already sent, so "
                      "that no task is lost (Ctrl-\\ quits at once)", file=sys.stderr, flush=True)
            else:
                print("octovid: still stopping: creates already sent are being recorded",
                      file=sys.stderr, flush=True)

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop)
        try:
            return await main
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    return asyncio.run(guarded())
