"""The commands: create, status, wait, download, batch, models, demo.

They compose the public API and the batch engine (``octovid._batch``); what they show is
``_display``'s, what they say about errors ``_messages``'.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import octovid
from octovid._batch import (
    BatchFile,
    BatchRun,
    JournalLock,
    LineResult,
    Plan,
    State,
    created_elsewhere,
    default_journal,
    describe_invalid,
    local_images,
    make_plan,
    read_batch,
    register_journal,
    registered_journals,
)
from octovid._journal import is_postgres_url

from . import _catalog
from ._display import BatchProgress, TaskProgress, summary_lines, terminal_size
from ._messages import describe

__all__ = [
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Failure", "Output",
    "UsageError", "cmd_batch", "cmd_create", "cmd_demo", "cmd_download", "cmd_models",
    "cmd_status", "cmd_wait",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_BASE_URL = "https://octopusx.ai"
LEGACY_JOURNAL = ".octovid-journal.db"  # where earlier versions kept a batch's journal
T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the command line: one line, exit 2, nothing sent."""


class Failure(Exception):
    """A command that could not be done: one line, exit 1."""


def note(text: str) -> None:
    """A line for the user on stderr (what a command is about to do, or did)."""
    print(f"octovid: {text}", file=sys.stderr, flush=True)


class Output:
    """Where results go: readable lines on stdout, or JSON lines with ``--json``."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        #: prints a line instead of ``print``, while a live display holds the terminal
        self.printer: Callable[[str], None] | None = None

    def task(self, task: octovid.Task, *, model: str | None = None, **extra: Any) -> None:
        """One task: a JSON line, or a readable line."""
        if self.as_json:
            record = {
                "id": task.id, "status": task.status.value, "raw_status": task.raw_status,
                "progress": task.progress, "video_url": task.video_url,
                "model": task.model or model, "error": task.error,
                "created_at": task.created_at.isoformat() if task.created_at else None,
                "updated_at": task.updated_at.isoformat() if task.updated_at else None,
                **extra,
            }
            self.json(record)
            return
        detail = task.error or task.video_url or ""
        progress = "" if task.progress is None or task.terminal else f" {task.progress}%"
        file = f" -> {extra['file']}" if extra.get("file") else ""
        self.line(f"{task.id}  {task.status.value}{progress}  {detail}{file}".rstrip())

    def json(self, record: Any) -> None:
        """One JSON line."""
        self.line(json.dumps(record, ensure_ascii=False))

    def line(self, text: str) -> None:
        """Print one line on stdout."""
        if self.printer is not None:
            self.printer(text)
        else:
            print(text, file=sys.stdout, flush=True)


# -- the connection ------------------------------------------------------------------------


def api_key(args: argparse.Namespace) -> str:
    """The key from --api-key or the environment.

    Raises:
        UsageError: There is none, or it cannot be a key.
    """
    key = args.api_key if args.api_key is not None else os.environ.get("OCTOVID_API_KEY", "")
    key = key.strip()
    if not key:
        raise UsageError("no API key: pass --api-key KEY or set OCTOVID_API_KEY")
    if not key.isprintable() or " " in key:
        raise UsageError("the API key holds spaces or control characters")
    return key


def base_url(args: argparse.Namespace) -> str:
    """The gateway from --base-url or the environment, checked.

    Raises:
        UsageError: It is not an http(s) URL with a host.
    """
    given, source = args.base_url, "--base-url"
    if not given:
        given, source = os.environ.get("OCTOVID_BASE_URL", ""), "OCTOVID_BASE_URL"
    url = given.strip() or DEFAULT_BASE_URL
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        parts = urlsplit("bad:")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{source} {given!r} is not an http:// or https:// URL with a host, "
                         "e.g. https://octopusx.ai")
    return url.rstrip("/")


async def reachable(url: str, seconds: float) -> None:
    """Make sure something listens at the gateway's address, within a few seconds.

    A TCP connection only: nothing is sent, so nothing is paid for or counted against the
    rate limit. The client's own retries would take about 15 s to give up on a refused
    connection.

    Raises:
        Failure: Nothing answers there.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    limit = min(seconds, 5.0)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
    except ConnectionRefusedError:
        why = "connection refused"
    except socket.gaierror:
        why = "host not found"
    except TimeoutError:
        why = f"no answer within {limit:g} s"
    except OSError as exc:
        why = exc.strerror or str(exc)
    else:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise Failure(f"cannot connect to {parts.scheme}://{host}:{port} ({why}); check --base-url "
                  "or OCTOVID_BASE_URL")


def _poll(args: argparse.Namespace) -> octovid.PollPolicy:
    initial = getattr(args, "poll_interval", None)
    if initial is None:
        return octovid.PollPolicy()
    # Asked to poll this often: neither the gateway's refresh period nor the families' usual
    # durations hold the polls back.
    default = octovid.PollPolicy()
    return octovid.PollPolicy(initial=initial, max_interval=max(default.max_interval, initial),
                              refresh=min(default.refresh, initial), priors=False)


def make_client(args: argparse.Namespace, **options: Any) -> octovid.Client:
    """A client from the common options (the key and gateway checked already)."""
    return octovid.Client(
        api_key(args), base_url(args), rate_limit=args.rate_limit,
        max_concurrency=args.max_concurrency, timeout=args.timeout, poll=_poll(args),
        **options,
    )


async def connect(args: argparse.Namespace, **options: Any) -> octovid.Client:
    """A client, once the key is there and the gateway answers."""
    api_key(args)
    await reachable(base_url(args), args.timeout)
    return make_client(args, **options)


# -- one task ------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def request_from_args(args: argparse.Namespace) -> octovid.Request:
    """The request of ``create``, checked as strictly as a batch line."""
    data: dict[str, Any] = {"model": args.model, "prompt": args.prompt}
    if args.image:
        data["images"] = args.image
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects FIELD=VALUE, not {item!r}")
        data[name] = _parse_value(value)
    problems = _catalog.check_request(data, allow_unknown_models=args.allow_unknown_models)
    if problems:
        raise UsageError("; ".join(problems))
    try:
        return octovid.request_from_dict(local_images(data, Path.cwd()))
    except octovid.RequestValidationError as exc:
        raise UsageError(describe_invalid(exc)) from None


async def cmd_create(args: argparse.Namespace, output: Output) -> int:
    """Create one task; with --wait, wait for it; with --out, download it."""
    request = request_from_args(args)
    async with await connect(args) as client:
        task = await client.create(request)
        output.task(task, model=request.model)
        if not (args.wait or args.out):
            return EXIT_OK
        return await _wait_and_fetch(client, [task.id], args, output,
                                     models={task.id: request.model})


async def cmd_status(args: argparse.Namespace, output: Output) -> int:
    """Query tasks once each."""
    async with await connect(args) as client:
        answers = await asyncio.gather(*(client.get(task_id) for task_id in args.task_id),
                                       return_exceptions=True)
    status = EXIT_OK
    for task_id, answer in zip(args.task_id, answers, strict=True):
        if isinstance(answer, octovid.Task):
            output.task(answer)
        elif isinstance(answer, octovid.OctovidError | ValueError):
            _fail_one(task_id, answer, output)
            status = EXIT_FAILED
        else:
            raise answer
    return status


def _fail_one(task_id: str, exc: BaseException, output: Output) -> None:
    message = describe(exc, task_id=task_id)
    if output.as_json:
        output.json({"id": task_id, "error": message})
    else:
        print(f"octovid: error: {message}", file=sys.stderr, flush=True)


async def cmd_wait(args: argparse.Namespace, output: Output) -> int:
    """Wait for tasks to finish, showing their progress; with --out, download them."""
    async with await connect(args) as client:
        return await _wait_and_fetch(client, args.task_id, args, output)


async def cmd_download(args: argparse.Namespace, output: Output) -> int:
    """Download completed tasks."""
    status = EXIT_OK
    async with await connect(args) as client:
        for task_id in args.task_id:
            try:
                path = await client.download(task_id, _dest(args.out))
            except (octovid.OctovidError, ValueError) as exc:
                _fail_one(task_id, exc, output)
                status = EXIT_FAILED
                continue
            if output.as_json:
                output.json({"id": task_id, "file": str(path)})
            else:
                output.line(f"{task_id}  {path}")
    return status


def _dest(out: str) -> str:
    """A download destination: a video file name as given, anything else a directory."""
    if out.lower().endswith((".mp4", ".webm", ".mov", ".m4v")):
        return out
    return out if out.endswith(("/", os.sep)) else out + os.sep


async def _show(job: octovid.Job, progress: TaskProgress) -> None:
    with contextlib.suppress(Exception):
        async for task in job.updates():
            progress.update(task)


async def _wait_and_fetch(
    client: octovid.Client, task_ids: Sequence[str], args: argparse.Namespace, output: Output,
    *, models: dict[str, str] | None = None,
) -> int:
    models = models or {}
    progress = TaskProgress(quiet=args.quiet or output.as_json)
    try:
        jobs = [client.watch(task_id, deadline=args.deadline) for task_id in task_ids]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    status = EXIT_OK
    with progress.shown() as printer:
        output.printer = printer
        shows = [asyncio.ensure_future(_show(job, progress)) for job in jobs]
        try:
            async for job in octovid.as_completed(jobs):
                assert job.id is not None
                try:
                    task = await job
                except octovid.TaskFailedError as exc:
                    output.task(exc.task, model=models.get(job.id))
                    status = EXIT_FAILED
                    continue
                except octovid.OctovidError as exc:
                    _fail_one(job.id, exc, output)
                    status = EXIT_FAILED
                    continue
                extra: dict[str, Any] = {}
                if args.out:
                    try:
                        extra["file"] = str(await client.download(task, _dest(args.out)))
                    except octovid.OctovidError as exc:
                        _fail_one(job.id, exc, output)
                        status = EXIT_FAILED
                        continue
                output.task(task, model=models.get(job.id), **extra)
        finally:
            output.printer = None
            for show in shows:
                show.cancel()
            await asyncio.gather(*shows, return_exceptions=True)
    return status


# -- batches -------------------------------------------------------------------------------


def _read(args: argparse.Namespace, path: Path) -> BatchFile:
    check = functools.partial(_catalog.check_request,
                              allow_unknown_models=getattr(args, "allow_unknown_models", False))
    return read_batch(path, check=check)


async def cmd_batch(args: argparse.Namespace, output: Output) -> int:
    """Run a JSONL batch: checked, planned, journaled, resumable, downloading into --out."""
    url = base_url(args)
    batch = await asyncio.to_thread(_read, args, Path(args.file))
    if not args.dry_run:
        api_key(args)
        await reachable(url, args.timeout)
    if is_postgres_url(args.journal):
        return await _batch_shared(args, output, batch)
    journal_path, out = _places(args, url)
    with JournalLock(journal_path):
        journal = await asyncio.to_thread(octovid.Journal, journal_path)
        try:
            plan = await asyncio.to_thread(make_plan, batch, journal,
                                           retry_failed=args.retry_failed,
                                           retry_uncertain=args.retry_uncertain)
            elsewhere = await asyncio.to_thread(_elsewhere, plan, journal_path, url, out)
            if elsewhere and not args.create_again:
                raise UsageError(_elsewhere_message(plan, elsewhere))
            _say_plan(args, output, plan, journal_path)
            if args.dry_run:
                return EXIT_OK
            register_journal(journal_path, url)
            async with make_client(args, journal=journal) as client:
                results = await _run_batch(args, output, client, plan, out)
        finally:
            journal.close()
    return _summarise(args, output, results, out)


async def _batch_shared(args: argparse.Namespace, output: Output, batch: BatchFile) -> int:
    """One worker of a batch shared on PostgreSQL: no lock, every worker runs the same file."""
    for flag in ("retry_failed", "retry_uncertain"):
        if getattr(args, flag):
            raise UsageError(f"--{flag.replace('_', '-')} does not work with a postgresql:// "
                             "journal yet: run it once with a SQLite journal, or forget the "
                             "keys with octovid.Journal(URL).forget(key)")
    journal = await asyncio.to_thread(octovid.Journal, args.journal)
    out = _places(args, args.journal)[1]
    try:
        plan = await asyncio.to_thread(make_plan, batch, journal)
        _say_plan(args, output, plan, journal.path)
        if args.dry_run:
            return EXIT_OK
        async with make_client(args, journal=journal) as client:
            results = await _run_batch(args, output, client, plan, out)
    finally:
        await journal.aclose()
    return _summarise(args, output, results, out)


def _places(args: argparse.Namespace, url: str) -> tuple[Path, Path]:
    """The journal and the output directory of a batch."""
    journal = Path(args.journal).expanduser() if args.journal else default_journal(url)
    return journal, Path(args.out).expanduser()


def _elsewhere(plan: Plan, journal_path: Path, url: str, out: Path) -> dict[str, int]:
    """Lines to create that another journal of this gateway holds as created."""
    if not plan.count(State.CREATE):
        return {}
    paths = registered_journals(url)
    legacy = out / LEGACY_JOURNAL
    if legacy.is_file():
        paths.append(legacy)
    mine = journal_path.resolve()
    found: dict[str, int] = {}
    for path in paths:
        if path.resolve() == mine:
            continue
        try:
            other = octovid.Journal(path)
        except octovid.JournalError:
            continue
        try:
            found.update(created_elsewhere(plan, [other]))
        finally:
            other.close()
    return found


def _elsewhere_message(plan: Plan, elsewhere: dict[str, int]) -> str:
    count = max(elsewhere.values())
    path, _ = max(elsewhere.items(), key=lambda item: item[1])
    create = plan.count(State.CREATE)
    return (f"{plan.batch.path}: {count} of the {create} lines to create were already created "
            f"by an earlier run, whose journal is {path}; nothing was sent. To go on with "
            f"those tasks, add --journal {path}; to create them anew (billed again), add "
            "--create-again")


def _say_plan(args: argparse.Namespace, output: Output, plan: Plan, journal: Path | str) -> None:
    """Say what the run will do, before it does anything."""
    if output.as_json:
        counts = {state.name.lower(): plan.count(state) for state in State}
        output.json({"plan": counts, "lines": len(plan.states), "journal": str(journal)})
    if args.quiet and not args.dry_run:
        return
    where = f" (journal {journal})" if args.verbose or args.dry_run else ""
    note(f"{plan.batch.path}: {plan.describe()}{where}")
    again_failed = again_uncertain = 0
    entries = {line.key: entry for line, entry in zip(plan.batch.lines, plan.entries,
                                                        strict=True)}
    for key in plan.forget:
        entry = entries[key]
        if entry is not None and entry.uncertain:
            again_uncertain += 1
        else:
            again_failed += 1
    failed = plan.count(State.FAILED) - plan.kept_for_policy
    if failed and not args.retry_failed:
        note(f"{failed} failed before: kept failed (--retry-failed creates them again)")
    if plan.kept_for_policy:
        note(f"{plan.kept_for_policy} refused for their prompt: kept failed, even with "
             "--retry-failed; change the prompt to try again (a changed line is a new request)")
    if plan.count(State.UNCERTAIN):
        note(f"{plan.count(State.UNCERTAIN)} uncertain (sent before, never answered): not "
             "created again (--retry-uncertain creates them again; they may be billed twice)")
    if again_failed:
        note(f"creating {again_failed} failed lines again (--retry-failed)")
    if again_uncertain:
        note(f"creating {again_uncertain} uncertain lines again although an earlier create may "
             "have been billed (--retry-uncertain)")


async def _drive(work: Coroutine[Any, Any, T], refresh: Callable[[], None]) -> T:
    """Run ``work``, refreshing a display four times a second; cancelling cancels it."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait([task], timeout=0.25)
            refresh()
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
    return task.result()


async def _run_batch(args: argparse.Namespace, output: Output, client: octovid.Client,
                     plan: Plan, out: Path) -> list[LineResult]:
    on_result = (lambda result: output.json(result.record())) if output.as_json else None
    run = BatchRun(client, plan, out, download=not args.no_download, deadline=args.deadline,
                   on_result=on_result, lease=getattr(args, "lease", 30.0))
    progress = BatchProgress(run.snapshot, quiet=args.quiet or output.as_json)
    with progress.shown() as refresh:
        return await _drive(run.run(), refresh)


def _summarise(args: argparse.Namespace, output: Output, results: list[LineResult],
               out: Path) -> int:
    ok = all(result.status == "completed" for result in results)
    manifest = out / "manifest.jsonl"
    if output.as_json:
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        output.json({"summary": counts, "total": len(results), "out": str(out),
                     "manifest": str(manifest)})
    else:
        size = terminal_size(sys.stdout)
        width, height = size if size is not None else (100, None)
        for line in summary_lines(results, where=str(out), manifest=str(manifest),
                                  downloaded=not getattr(args, "no_download", False),
                                  width=width, height=height):
            output.line(line)
    return EXIT_OK if ok else EXIT_FAILED


# -- models and the demo -------------------------------------------------------------------


async def cmd_models(args: argparse.Namespace, output: Output) -> int:
    """List the model families, their models and their fields."""
    families = _catalog.select(args.name)
    if not families:
        names = ", ".join(f.name.lower() for f in _catalog.FAMILIES)
        raise UsageError(f"no family or model {args.name!r} (families: {names})")
    if output.as_json:
        for record in _catalog.as_json(families):
            output.json(record)
        return EXIT_OK
    size = terminal_size(sys.stdout)
    output.line(_catalog.render(families, width=size[0] if size else 100,
                                markdown=args.markdown))
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace, output: Output) -> int:
    """The whole product on the embedded simulator: no key, no network."""
    from octovid.testing import Simulator

    out = Path(args.out)
    batch_file = await asyncio.to_thread(_demo_batch, out)
    batch = await asyncio.to_thread(_read, args, batch_file)
    async with Simulator(seed=args.seed, duration=(2.0, 6.0)) as sim:
        note(f"demo: a simulated gateway at {sim.url}; videos go to {out}/")
        # A fresh simulator knows no earlier run's tasks: the journal lives in memory.
        journal = octovid.Journal(":memory:")
        try:
            plan = make_plan(batch, journal)
            async with octovid.Client(
                sim.api_key, sim.url, rate_limit=20, journal=journal,
                poll=octovid.PollPolicy(initial=0.5, max_interval=2.0, deadline=120),
            ) as client:
                results = await _run_batch(_demo_args(args), output, client, plan, out)
                stats = client.stats
        finally:
            journal.close()
    status = _summarise(args, output, results, out)
    note(f"demo: {len(results)} videos for {stats.requests} requests to the gateway "
         f"({stats.creates} creates, {stats.polls} polls) and {stats.downloads} downloads")
    return status


def _demo_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "no_download": False, "deadline": None})


def _demo_batch(out: Path) -> Path:
    """Copy the packaged sample prompts into ``out``; return the copy."""
    text = resources.files("octovid").joinpath("demo.jsonl").read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    batch_file = out / "demo.jsonl"
    batch_file.write_text(text, encoding="utf-8")
    return batch_file
