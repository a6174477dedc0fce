"""Batches: a JSONL file of requests, run through a journal so that nothing is paid for twice.

Three steps, each usable on its own:

1. :func:`read_batch` reads and checks *every* line before anything is sent, and reports every
   bad line at once (:class:`BatchFileError`). Each line gets a key: its own ``"key"``, or the
   hash of its request, so that lines may be added, removed or reordered between runs.
2. :func:`make_plan` asks the journal what became of each key (:class:`Plan`): done, running,
   failed, uncertain, or to create. It creates nothing and sends nothing; it refuses keys that
   the journal holds for another request. :func:`created_elsewhere` finds lines to create that
   another journal (an earlier run elsewhere) already created.
3. :class:`BatchRun` creates what the plan says, watches everything, downloads each video as
   ``0007-<key>.mp4`` and writes ``manifest.jsonl``. The first authentication or quota error,
   or a gateway that cannot be reached, stops the whole run (:class:`BatchStopped`): every
   other line would fail the same way.

Where journals live: one journal per gateway in the user's data directory
(:func:`default_journal`), whatever the batch file or the output directory, so that running a
file again, from elsewhere or into another directory, finds what an earlier run created. A
SQLite journal is used by one batch at a time (:class:`JournalLock`).

Many workers, one batch: on a shared journal (PostgreSQL), every worker running the same file
leases lines from the journal a few at a time, renews its leases while it lives, and records
each line's outcome; a line is created, watched and downloaded by the worker that holds it. A
worker killed leaves its lines to the others once its leases run out; every worker runs until
every line of the batch is finished, whoever finished it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import urlsplit

import attrs

from ._client import Client
from ._errors import (
    AuthenticationError,
    CreateUncertainError,
    InsufficientQuotaError,
    OctovidError,
    RequestValidationError,
    TaskFailedError,
    TransportError,
    WaitTimeoutError,
)
from ._jobs import Job
from ._journal import JobState, Journal, JournalEntry, LeaseLost, payload_hash
from ._requests import Request, journal_payload, request_from_dict
from ._task import Status, Task

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from ._journal_postgres import PostgresJournal

__all__ = [
    "FINISHED",
    "MANIFEST",
    "BatchFile",
    "BatchFileError",
    "BatchRun",
    "BatchStopped",
    "JournalBusy",
    "JournalLock",
    "Line",
    "LineResult",
    "Plan",
    "Snapshot",
    "State",
    "created_elsewhere",
    "data_dir",
    "default_journal",
    "describe_invalid",
    "file_name",
    "make_plan",
    "policy_failure",
    "read_batch",
    "register_journal",
    "registered_journals",
]

log = logging.getLogger("octovid")
_LEASE_GAP = 0.1  # seconds between two lease rounds of a busy worker, at least

MANIFEST = "manifest.jsonl"
_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# Words of a refusal that trying again will not mend: the prompt itself was refused.
_POLICY_WORDS = re.compile(
    r"content.?polic|moderat|safety|unsafe|sensitive|prohibit|violat|not allowed|nsfw"
    r"|违规|敏感|审核|安全",
    re.IGNORECASE,
)


class BatchFileError(ValueError):
    """A batch file that cannot be run as it is.

    Attributes:
        problems: One line per problem, each naming the file and line (``file:7: ...``).
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class BatchStopped(OctovidError):
    """The run stopped at once: every line left would fail the same way.

    Attributes:
        cause: The error that stopped it (an authentication or quota error, or a gateway that
            cannot be reached).
    """

    def __init__(self, cause: OctovidError) -> None:
        self.cause = cause
        super().__init__(str(cause))


class JournalBusy(OctovidError):
    """Another batch is using the journal."""


# -- the file ------------------------------------------------------------------------------


@attrs.frozen
class Line:
    """One request of a batch file.

    Attributes:
        number: The line number in the file, from 1.
        key: The idempotency key: the line's ``"key"``, or the hash of its request.
        request: The request.
        named: Whether the key was given in the file (not a hash).
    """

    number: int
    key: str
    request: Request
    named: bool = False

    @property
    def prompt(self) -> str:
        """The line's prompt."""
        return self.request.prompt


@attrs.frozen
class BatchFile:
    """A checked batch file: its lines, in file order."""

    path: Path
    lines: tuple[Line, ...]
    digest: str = ""  #: the sha256 of the file's bytes: the batch's name in a shared journal

    @property
    def width(self) -> int:
        """Digits of the line numbers in file names (at least 4): ``0007-<key>.mp4``."""
        return max(4, len(str(self.lines[-1].number))) if self.lines else 4


def describe_invalid(exc: RequestValidationError) -> str:
    """A validation error in the words of a JSON file (``true``, ``null``, not Python's)."""
    try:
        shown = str(exc.value) if isinstance(exc.value, Path) else exc.value  # a local image
        value = json.dumps(shown, ensure_ascii=False)
    except (TypeError, ValueError):
        value = repr(exc.value)
    if len(value) > 60:
        value = value[:59] + "…"
    allowed = exc.allowed.replace("True, False or None", "true or false")
    return f"{exc.field}={value} is not allowed: {allowed}"


_IMAGE_FIELDS = ("images", "reference_images", "input_reference")


def local_images(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make the image strings of a request's object that are not URLs local files' paths.

    A value with a scheme (``https://``, ``asset://``) or a ``data:`` URI is sent as given;
    any other string names a file, relative to ``folder`` (a batch file's own folder), read
    and checked like a ``pathlib.Path`` given to the request.
    """
    for name in _IMAGE_FIELDS:
        value = data.get(name)
        if isinstance(value, str):
            data[name] = _local_image(value, folder)
        elif isinstance(value, list):
            data[name] = [_local_image(item, folder) if isinstance(item, str) else item
                          for item in value]
    return data


def _local_image(value: str, folder: Path) -> str | Path:
    if "://" in value or value.startswith("data:"):
        return value
    return folder / Path(value).expanduser()


def _content_key(request: Request) -> str:
    # The format of earlier versions: journals they wrote keep their keys.
    text = json.dumps(journal_payload(request), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_batch(
    path: str | os.PathLike[str],
    *,
    check: Callable[[Mapping[str, Any]], Sequence[str]] | None = None,
) -> BatchFile:
    """Read a JSONL batch file: one JSON object per line; blank lines and ``#`` lines skipped.

    Each object holds ``model``, ``prompt``, the family's fields and an optional ``key``. A
    UTF-8 byte order mark is ignored. Lines without a key get the hash of their request (with
    ``#2``, ``#3``... for repeats of one request).

    Args:
        path: The file.
        check: More checks of each line's object (without its key), each problem one string
            (the command line refuses unknown models and fields this way).

    Raises:
        BatchFileError: With every problem of every line, before anything is sent.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BatchFileError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BatchFileError([f"{path}:{line}: not UTF-8 text"]) from None
    problems: list[str] = []
    lines: list[Line] = []
    repeats: Counter[str] = Counter()
    where_key: dict[str, int] = {}
    for number, raw_line in enumerate(text.split("\n"), start=1):
        content = raw_line.rstrip("\r")
        if not content.strip() or content.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            problems.append(f"{where}: not JSON (nested too deeply)")
            continue
        if not isinstance(data, dict):
            problems.append(f"{where}: expected a JSON object with model and prompt")
            continue
        key = data.pop("key", None)
        found: list[str] = []
        if key is not None and (not isinstance(key, str) or not key.strip()):
            found.append("key must be a non-empty string")
        found.extend(check(data) if check is not None else ())
        request: Request | None = None
        if not found:
            try:
                request = request_from_dict(local_images(data, path.parent))
            except RequestValidationError as exc:
                found.append(describe_invalid(exc))
        if found or request is None:
            problems.extend(f"{where}: {problem}" for problem in found)
            continue
        named = key is not None
        if key is None:
            digest = _content_key(request)
            repeats[digest] += 1
            key = digest if repeats[digest] == 1 else f"{digest}#{repeats[digest]}"
        if key in where_key:
            problems.append(f"{where}: the key {key!r} is also the key of line "
                            f"{where_key[key]}; keys must differ")
            continue
        where_key[key] = number
        lines.append(Line(number, key, request, named))
    if not problems and not lines:
        problems.append(f"{path} holds no requests")
    if problems:
        raise BatchFileError(problems)
    return BatchFile(path, tuple(lines), hashlib.sha256(raw).hexdigest())


# -- the plan ------------------------------------------------------------------------------


class State(enum.StrEnum):
    """What a plan does with a line."""

    CREATE = "to create"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  #: failed before, kept failed (nothing is billed)
    UNCERTAIN = "uncertain"  #: sent before and never answered: it may exist and be billed


def policy_failure(reason: str | None) -> bool:
    """Whether a task's failure reason says the prompt was refused (it would fail again)."""
    return bool(reason) and _POLICY_WORDS.search(reason or "") is not None


@attrs.frozen
class Plan:
    """What a run of a batch file will do with each line, from the journal, before anything.

    Attributes:
        batch: The batch file.
        states: One state per line, in file order.
        entries: The journal's entry of each line's key (None for keys it does not hold).
        forget: Keys to drop from the journal before the run, to be created anew
            (``retry_failed``, ``retry_uncertain``).
        kept_for_policy: Failed lines kept failed although ``retry_failed`` was asked for:
            their prompt was refused and would be refused again.
    """

    batch: BatchFile
    states: tuple[State, ...]
    entries: tuple[JournalEntry | None, ...] = attrs.field(repr=False)
    forget: tuple[str, ...] = ()
    kept_for_policy: int = 0

    def count(self, state: State) -> int:
        """Lines in ``state``."""
        return sum(1 for s in self.states if s is state)

    def keys(self, state: State) -> list[str]:
        """Keys of the lines in ``state``."""
        return [line.key for line, s in zip(self.batch.lines, self.states, strict=True)
                if s is state]

    def describe(self) -> str:
        """One line: ``30 lines: 13 done, 4 running, 13 to create``."""
        total = len(self.states)
        parts = [f"{self.count(state)} {state.value}" for state in
                 (State.DONE, State.RUNNING, State.FAILED, State.UNCERTAIN, State.CREATE)
                 if self.count(state)]
        noun = "line" if total == 1 else "lines"
        return f"{total} {noun}: " + ", ".join(parts)


def make_plan(
    batch: BatchFile, journal: Journal, *, retry_failed: bool = False,
    retry_uncertain: bool = False,
) -> Plan:
    """Read from the journal what became of each line; send nothing, change nothing.

    Raises:
        BatchFileError: A line's key is held by the journal for another request.
    """
    states: list[State] = []
    entries: list[JournalEntry | None] = []
    forget: list[str] = []
    problems: list[str] = []
    kept = 0
    for line in batch.lines:
        entry = journal.get(line.key)
        entries.append(entry)
        if entry is None:
            states.append(State.CREATE)
            continue
        if entry.payload_hash != payload_hash(journal_payload(line.request)):
            prompt = str(entry.payload.get("prompt", ""))
            prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
            problems.append(
                f"{batch.path}:{line.number}: the key {line.key!r} was used before for another "
                f"request ({entry.payload.get('model')}: {prompt!r}); give this line a new key"
            )
            states.append(State.CREATE)
            continue
        state = _state_of(entry)
        if state is State.UNCERTAIN and retry_uncertain:
            forget.append(line.key)
            state = State.CREATE
        elif state is State.FAILED and retry_failed:
            if policy_failure(entry.error):
                kept += 1
            else:
                forget.append(line.key)
                state = State.CREATE
        states.append(state)
    if problems:
        raise BatchFileError(problems)
    return Plan(batch, tuple(states), tuple(entries), tuple(forget), kept)


def _state_of(entry: JournalEntry) -> State:
    if entry.state in (JobState.QUEUED, JobState.REFUSED):
        return State.CREATE  # never accepted: nothing was billed
    if entry.state is JobState.SENDING or entry.task_id is None:
        return State.UNCERTAIN
    if entry.status is Status.COMPLETED:
        return State.DONE
    if entry.status in (Status.FAILED, Status.CANCELLED):
        return State.FAILED
    return State.RUNNING


def created_elsewhere(plan: Plan, journals: Sequence[Journal]) -> dict[str, int]:
    """Lines the plan would create that one of ``journals`` already created (or sent).

    Returns:
        Journal path -> the number of such lines found there (each line counted once).
    """
    found: Counter[str] = Counter()
    for line in (line for line, state in zip(plan.batch.lines, plan.states, strict=True)
                 if state is State.CREATE):
        digest = payload_hash(journal_payload(line.request))
        for journal in journals:
            entry = journal.get(line.key)
            if (entry is not None and entry.payload_hash == digest
                    and entry.state in (JobState.SENDING, JobState.CREATED)):
                found[journal.path] += 1
                break
    return dict(found)


# -- where journals live -------------------------------------------------------------------


def data_dir() -> Path:
    """octovid's data directory: ``$XDG_DATA_HOME/octovid``, else ``~/.local/share/octovid``.

    On Windows, ``%LOCALAPPDATA%\\octovid``.
    """
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "octovid"
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "octovid"


def default_journal(base_url: str) -> Path:
    """The journal of every batch sent to ``base_url``: one per gateway, in :func:`data_dir`."""
    parts = urlsplit(base_url.strip().rstrip("/"))
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "gateway").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    canonical = f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    name = _KEY_CHARS.sub("_", f"{host}-{port}").strip("._") or "gateway"
    return data_dir() / "journals" / f"{name}-{digest}.db"


def _registry() -> Path:
    return data_dir() / "journals.jsonl"


def register_journal(journal: str | os.PathLike[str], base_url: str) -> None:
    """Note that ``journal`` holds tasks of ``base_url``, for :func:`registered_journals`."""
    path = str(Path(journal).resolve())
    record = {"journal": path, "base_url": base_url}
    if record in _read_registry():
        return
    registry = _registry()
    with contextlib.suppress(OSError):
        registry.parent.mkdir(parents=True, exist_ok=True)
        with registry.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


def registered_journals(base_url: str) -> list[Path]:
    """Journals that earlier batches used with ``base_url`` and that still exist."""
    paths = []
    for record in _read_registry():
        if record.get("base_url") == base_url:
            path = Path(str(record.get("journal", "")))
            if path.is_file() and path not in paths:
                paths.append(path)
    return paths


def _read_registry() -> list[dict[str, Any]]:
    try:
        text = _registry().read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


class JournalLock:
    """Holds a journal for one batch at a time (an advisory lock on ``<journal>.lock``).

    Two batches on one journal could both create a line they share; and two batches with one
    key share its rate limit anyway. A no-op where ``fcntl`` is missing (Windows).
    """

    __slots__ = ("_file", "path")

    def __init__(self, journal: str | os.PathLike[str]) -> None:
        self.path = Path(f"{journal}.lock")
        self._file: TextIO | None = None

    def __enter__(self) -> JournalLock:
        if sys.platform == "win32" or str(self.path) == ":memory:.lock":
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip()
            file.close()
            raise JournalBusy(
                f"another octovid batch{f' (pid {holder})' if holder else ''} is using the "
                f"journal {str(self.path)[:-5]}: wait for it to finish"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        self._file = file
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            self._file.close()  # closing releases the lock
            self._file = None


# -- the run -------------------------------------------------------------------------------


def file_name(line: Line, width: int, suffix: str = ".mp4") -> str:
    """The file name of a line's video: ``0007-<key>.mp4``, the key made safe."""
    key = _KEY_CHARS.sub("_", line.key).strip("._")[:120] or "video"
    return f"{line.number:0{width}d}-{key}{suffix}"


@attrs.frozen
class LineResult:
    """What became of one line, as written to the manifest.

    ``status`` is ``completed`` (and downloaded, unless downloads were off), ``failed``,
    ``uncertain`` (a create that may exist and be billed) or ``unfinished`` (still running
    when the run ended: its deadline, an interruption, a stop).
    """

    line: int
    key: str
    model: str
    prompt: str
    status: str
    task_id: str | None = None
    file: str | None = None
    sha256: str | None = None
    video_url: str | None = None
    error: str | None = None
    policy: bool = False  #: failed because the prompt was refused

    def record(self) -> dict[str, Any]:
        """The manifest's JSON object for this line."""
        return {
            "line": self.line, "key": self.key, "model": self.model, "prompt": self.prompt,
            "status": self.status, "id": self.task_id, "file": self.file, "sha256": self.sha256,
            "video_url": self.video_url, "error": self.error,
        }


@attrs.frozen
class Snapshot:
    """Where a run stands, for a progress display.

    ``counts`` maps ``creating``, ``queued``, ``processing``, ``downloading`` (running lines)
    and ``completed``, ``failed``, ``uncertain``, ``unfinished`` (finished ones) to lines.
    """

    total: int
    counts: Mapping[str, int]
    elapsed: float
    rate: float | None  #: lines finished per second lately, None before there is a measure
    paused_for: float  #: seconds the key's requests are paused for (a 429 cool-down)
    rate_limited: int  #: 429 answers so far

    @property
    def finished(self) -> int:
        """Lines with their outcome."""
        return sum(self.counts.get(name, 0) for name in FINISHED)

    @property
    def remaining(self) -> float | None:
        """Seconds left at the recent rate, None while unknown."""
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        return None if not self.rate else left / self.rate


FINISHED = ("completed", "failed", "uncertain", "unfinished")


class BatchRun:
    """Runs a plan: creates, watches, downloads and records every line.

    Args:
        client: A client whose journal is the plan's journal.
        plan: What to do (:func:`make_plan`).
        out: Where videos (``0007-<key>.mp4``) and ``manifest.jsonl`` go.
        download: Whether to download the videos.
        deadline: Seconds for each job; None for the client's default.
        on_result: Called with each line's result as it is known.
        lease: On a shared journal: seconds a worker's hold on a line lasts without renewal
            (renewed every third of it); a worker killed leaves its lines for this long.
        window: On a shared journal: lines a worker leases at most before they are created.

    On a shared journal (:attr:`Journal.shared`) the run is one worker of many: it works on the
    lines it leases and returns when every line of the batch is finished, by it or by others.
    """

    __slots__ = (
        "_client", "_deadline", "_done_at", "_download", "_fatal", "_jobs", "_lease",
        "_on_result", "_started", "_window", "out", "plan", "results", "takeovers",
    )

    def __init__(
        self, client: Client, plan: Plan, out: str | os.PathLike[str], *, download: bool = True,
        deadline: float | None = None, on_result: Callable[[LineResult], None] | None = None,
        lease: float = 30.0, window: int = 32,
    ) -> None:
        self._client = client
        self.plan = plan
        self.out = Path(out).absolute()
        self._download = download
        self._deadline = deadline
        self._on_result = on_result
        self.results: dict[str, LineResult] = {}  # key -> outcome
        self._jobs: dict[str, Job] = {}  # key -> its job, once submitted
        self._fatal: OctovidError | None = None
        self._started = time.monotonic()
        self._done_at: list[float] = []
        if not 0 < lease < float("inf"):
            raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
        if window < 1:
            raise ValueError(f"window must be at least 1 line, not {window!r}")
        self._lease = float(lease)
        self._window = window
        #: key -> (the worker whose lease ran out, when this one took the line over)
        self.takeovers: dict[str, tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"<BatchRun {len(self.results)}/{len(self.plan.states)} finished>"

    @property
    def manifest(self) -> Path:
        """The manifest's path."""
        return self.out / MANIFEST

    async def run(self) -> list[LineResult]:
        """Run every line to its outcome; return the results in file order.

        The manifest is written however the run ends (interrupted included).

        Raises:
            BatchStopped: An authentication or quota error, or a gateway that cannot be
                reached: the lines not yet created were not sent.
        """
        self._started = time.monotonic()
        try:
            await self._run()
        finally:
            await asyncio.shield(asyncio.to_thread(self._write_manifest))
        return self.ordered()

    def ordered(self) -> list[LineResult]:
        """The results known so far, in file order; lines without one are ``unfinished``."""
        out = []
        for line in self.plan.batch.lines:
            result = self.results.get(line.key)
            if result is None:
                job = self._jobs.get(line.key)
                if job is None or job.id is None:
                    why = ("not created: the run stopped at the first error" if self._fatal
                           else "the run ended before it was created")
                else:
                    why = "still running when the run ended"
                result = self._result(line, "unfinished", task_id=job.id if job else None,
                                      error=why)
            out.append(result)
        return out

    def snapshot(self) -> Snapshot:
        """Where the run stands now."""
        counts: Counter[str] = Counter()
        for line in self.plan.batch.lines:
            result = self.results.get(line.key)
            if result is not None:
                counts[result.status] += 1
                continue
            job = self._jobs.get(line.key)
            if job is None or job.task is None:
                counts["creating"] += 1
            elif job.done():
                counts["downloading"] += 1
            elif job.task.status in (Status.QUEUED, Status.UNKNOWN):
                counts["queued"] += 1
            else:
                counts["processing"] += 1
        now = time.monotonic()
        recent = [at for at in self._done_at if now - at <= 60.0]
        span = min(60.0, now - self._started)
        rate = len(recent) / span if recent and span >= 5.0 else None
        stats = self._client.stats
        return Snapshot(len(self.plan.states), dict(counts), now - self._started, rate,
                        stats.paused_for, stats.rate_limited)

    # -- internals -------------------------------------------------------------------------

    def _result(self, line: Line, status: str, **fields: Any) -> LineResult:
        return LineResult(line.number, line.key, line.request.model, line.prompt, status,
                          **fields)

    def _finish(self, result: LineResult, *, known: bool = False) -> None:
        self.results[result.key] = result
        if not known:  # lines known before the run do not count towards its rate
            self._done_at.append(time.monotonic())
        if self._on_result is not None:
            self._on_result(result)

    async def _run(self) -> None:
        plan, journal = self.plan, self._client.journal
        assert journal is not None, "a batch runs with a journal"
        if journal.shared:
            await self._run_shared(cast("PostgresJournal", journal))
            return
        for key in plan.forget:
            journal.forget(key)
        submit: list[Line] = []
        for line, state, entry in zip(plan.batch.lines, plan.states, plan.entries, strict=True):
            if state is State.UNCERTAIN:
                assert entry is not None
                self._finish(self._result(
                    line, "uncertain", task_id=entry.task_id,
                    error="an earlier create was sent and never answered: it may exist and be "
                          "billed",
                ), known=True)
            elif state is State.FAILED:
                assert entry is not None
                self._finish(self._result(line, "failed", task_id=entry.task_id,
                                          error=entry.error or "no reason given",
                                          policy=policy_failure(entry.error)), known=True)
            elif state is State.DONE and entry is not None and not self._download:
                self._finish(self._result(line, "completed", task_id=entry.task_id,
                                          video_url=entry.video_url), known=True)
            elif state is State.DONE and entry is not None and (
                kept := await self._kept_file(line, entry)
            ) is not None:
                self._finish(self._result(line, "completed", task_id=entry.task_id,
                                          file=kept[0], sha256=kept[1],
                                          video_url=entry.video_url), known=True)
            else:
                submit.append(line)
        if not submit:
            return
        jobs = self._client.submit_many(
            [line.request for line in submit], keys=[line.key for line in submit],
            deadline=self._deadline,
        )
        self._jobs.update((line.key, job) for line, job in zip(submit, jobs, strict=True))
        pending = {asyncio.ensure_future(self._follow(line, job))
                   for line, job in zip(submit, jobs, strict=True)}
        try:
            while pending:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if self._fatal is not None:
                    break
        finally:
            for waiting in pending:
                waiting.cancel()
            for job in jobs:
                job.cancel()  # creates not yet sent are dropped; those on the wire finish
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self._fatal is not None:
            raise BatchStopped(self._fatal)

    # -- one worker of many --------------------------------------------------------------

    async def _run_shared(self, journal: PostgresJournal) -> None:
        """Lease lines, run them, record their outcomes; until the whole batch is finished."""
        batch = self.plan.batch
        by_key = {line.key: line for line in batch.lines}
        entries = await journal.register(batch.digest, str(batch.path),
                                         [(line.number, line.key, line.request)
                                          for line in batch.lines])
        problems = [f"{batch.path}:{line.number}: {entry}"
                    for line, entry in zip(batch.lines, entries, strict=True)
                    if isinstance(entry, Exception)]
        if problems:
            raise BatchFileError(problems)
        held: dict[str, asyncio.Task[None]] = {}  # key -> the task running its line here
        given_up: set[str] = set()  # unfinished here (a deadline, a lost lease): not again
        idle = min(1.0, self._lease / 6)  # how often a worker with nothing to do looks again
        last = -math.inf  # the loop's time of the last lease round
        heartbeat = asyncio.ensure_future(self._heartbeat(journal, held, given_up))
        loop = asyncio.get_running_loop()
        try:
            while self._fatal is None:
                if held and loop.time() - last < _LEASE_GAP:
                    await asyncio.sleep(_LEASE_GAP)  # lines ending in a burst: one lease round
                last = loop.time()
                waiting = sum(1 for key in held
                              if (job := self._jobs.get(key)) is None or job.id is None)
                # Lines to create, as many as the window has room for; lines created already
                # (a dead worker's, to watch and download) whatever the window.
                leased = await journal.lease(batch.digest, self._window, self._lease,
                                             skip=[*held, *given_up], sent=True)
                if waiting < self._window:
                    leased += await journal.lease(
                        batch.digest, self._window - waiting, self._lease,
                        skip=[*held, *given_up, *(entry.key for entry, _ in leased)],
                    )
                self._start_lines(journal, [(by_key[entry.key], entry, was)
                                            for entry, was in leased], held, given_up)
                if not held and not leased:
                    progress = await journal.progress(batch.digest)
                    if progress.orphans:  # forgotten while the batch ran: claimed again
                        await journal.claim([(key, by_key[key].request)
                                             for key in progress.orphans if key in by_key])
                        continue
                    if progress.done or not progress.held:
                        break  # finished; or what is left, this worker gave up already
                if held:
                    await asyncio.wait(list(held.values()), timeout=idle,
                                       return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(idle)
                for key in [key for key, task in held.items() if task.done()]:
                    task = held.pop(key)
                    if not task.cancelled() and (error := task.exception()) is not None:
                        raise error  # its outcome could not be recorded: the journal is gone
        finally:
            heartbeat.cancel()
            for task in held.values():
                task.cancel()
            for job in self._jobs.values():
                job.cancel()  # creates not yet sent are dropped; those on the wire finish
            await asyncio.gather(heartbeat, *held.values(), return_exceptions=True)
            with contextlib.suppress(OctovidError):
                await asyncio.shield(journal.release())  # the others may take them at once
        if self._fatal is not None:
            raise BatchStopped(self._fatal)
        await self._results_of_others(journal)

    def _start_lines(
        self, journal: PostgresJournal, leased: list[tuple[Line, JournalEntry, str | None]],
        held: dict[str, asyncio.Task[None]], given_up: set[str],
    ) -> None:
        """Start the leased lines: finished from the journal, or submitted in one call."""
        submit: list[Line] = []
        now = time.time()
        for line, entry, was in leased:
            if was is not None:
                self.takeovers[line.key] = (was, now)
            state = _state_of(entry)
            if state is State.RUNNING and entry.task_id is not None and was is not None:
                # Taken from a worker that died: its snapshot is a lease old, so ask at once.
                job = self._client.watch(entry.task_id, deadline=self._deadline,
                                         route=entry.route)
                self._jobs[line.key] = job
                held[line.key] = asyncio.ensure_future(
                    self._shared_line(journal, line, entry, job, given_up)
                )
            elif state is State.CREATE or (state is State.DONE and self._download):
                submit.append(line)
            else:
                held[line.key] = asyncio.ensure_future(
                    self._shared_line(journal, line, entry, None, given_up)
                )
        if not submit:
            return
        jobs = self._client.submit_many([line.request for line in submit],
                                        keys=[line.key for line in submit],
                                        deadline=self._deadline)
        entries = {entry.key: entry for _, entry, _ in leased}
        for line, job in zip(submit, jobs, strict=True):
            self._jobs[line.key] = job
            held[line.key] = asyncio.ensure_future(
                self._shared_line(journal, line, entries[line.key], job, given_up)
            )

    async def _shared_line(self, journal: PostgresJournal, line: Line, entry: JournalEntry,
                           job: Job | None, given_up: set[str]) -> None:
        """Run one leased line to its outcome and record it; or give it back unfinished."""
        if job is None:
            state = _state_of(entry)
            if state is State.UNCERTAIN:
                self._finish(self._result(
                    line, "uncertain", task_id=entry.task_id,
                    error="its create was sent and never answered: it may exist and be billed",
                ))
            elif state is State.FAILED:
                self._finish(self._result(line, "failed", task_id=entry.task_id,
                                          error=entry.error or "no reason given",
                                          policy=policy_failure(entry.error)))
            else:
                self._finish(self._result(line, "completed", task_id=entry.task_id,
                                          video_url=entry.video_url))
        elif _state_of(entry) is State.DONE and (
            kept := await self._kept_file(line, entry)
        ) is not None:
            job.cancel()
            self._finish(self._result(line, "completed", task_id=entry.task_id, file=kept[0],
                                      sha256=kept[1], video_url=entry.video_url))
        else:
            await self._follow(line, job)
        result = self.results.get(line.key)
        if result is not None and result.status != "unfinished":
            await asyncio.shield(journal.finish(self.plan.batch.digest, line.key,
                                                result.status, result.error))
        else:
            given_up.add(line.key)
            await asyncio.shield(journal.release([line.key]))

    async def _heartbeat(self, journal: PostgresJournal, held: dict[str, asyncio.Task[None]],
                         given_up: set[str]) -> None:
        """Renew this worker's leases every third of a lease; drop the lines it lost."""
        while True:
            await asyncio.sleep(self._lease / 3)
            keys = [key for key, task in held.items() if not task.done()]
            if not keys:
                continue
            try:
                kept = await journal.renew(keys, self._lease)
            except OctovidError as exc:  # tried again at the next beat, within the lease
                log.warning("octovid: could not renew the leases of %d lines: %s", len(keys), exc)
                continue
            for key in keys:
                task = held.get(key)
                if key not in kept and task is not None and not task.done():
                    log.warning("octovid: the lease of line %r ran out and another worker took "
                                "it: this worker lets it go", key)
                    given_up.add(key)
                    job = self._jobs.get(key)
                    if job is not None:
                        job.cancel()

    async def _results_of_others(self, journal: PostgresJournal) -> None:
        """The outcomes the other workers recorded, for the manifest."""
        others = [line for line in self.plan.batch.lines if line.key not in self.results]
        if not others:
            return
        outcomes = await journal.outcomes(self.plan.batch.digest)
        entries = await journal.entries([line.key for line in others])
        for line in others:
            outcome, entry = outcomes.get(line.key), entries.get(line.key)
            if outcome is None:
                continue
            self._finish(self._result(
                line, outcome.outcome, task_id=entry.task_id if entry else None,
                file=entry.file if entry else None, sha256=entry.sha256 if entry else None,
                video_url=entry.video_url if entry else None, error=outcome.error,
                policy=outcome.outcome == "failed" and policy_failure(outcome.error),
            ), known=True)

    async def _follow(self, line: Line, job: Job) -> None:
        try:
            task: Task = await job
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
            return  # the job was cancelled: the run is ending
        except LeaseLost:
            return  # another worker holds the line now: its outcome is that worker's
        except OctovidError as exc:
            if self._fatal is None and self._stops_everything(exc):
                self._fatal = exc
                return
            self._finish(self._failure(line, job, exc))
            return
        if not self._download:
            self._finish(self._result(line, "completed", task_id=task.id,
                                      video_url=task.video_url))
            return
        target = self.out / file_name(line, self.plan.batch.width, _suffix(task))
        shared = self._client.journal
        if shared is not None and shared.shared and not await cast(
            "PostgresJournal", shared
        ).claim_download(line.key, self._lease):
            entry = await asyncio.to_thread(shared.get, line.key)
            if entry is not None and entry.file and entry.sha256:  # another worker's file
                self._finish(self._result(line, "completed", task_id=task.id, file=entry.file,
                                          sha256=entry.sha256, video_url=task.video_url))
            return  # else the line is another worker's now
        try:
            path = await self._client.download(task, target)
        except OctovidError as exc:
            if self._fatal is None and isinstance(exc, AuthenticationError):
                self._fatal = exc
                return
            self._finish(self._result(line, "failed", task_id=task.id, video_url=task.video_url,
                                      error=f"download failed: {exc}"))
            return
        journal = self._client.journal
        entry = await asyncio.to_thread(journal.get, line.key) if journal is not None else None
        self._finish(self._result(line, "completed", task_id=task.id, file=str(path),
                                  sha256=entry.sha256 if entry is not None else None,
                                  video_url=task.video_url))

    def _stops_everything(self, exc: OctovidError) -> bool:
        if isinstance(exc, AuthenticationError | InsufficientQuotaError):
            return True
        stats = self._client.stats
        # Not one answer yet, and a connection that could not be made: nobody is there.
        return (isinstance(exc, TransportError) and not exc.sent
                and stats.errors >= stats.requests and not self.results)

    def _failure(self, line: Line, job: Job, exc: OctovidError) -> LineResult:
        if isinstance(exc, TaskFailedError):
            reason = exc.task.error or "no reason given"
            return self._result(line, "failed", task_id=exc.task.id, error=reason,
                                policy=policy_failure(reason))
        if isinstance(exc, CreateUncertainError):
            return self._result(line, "uncertain", task_id=job.id, error=str(exc))
        if isinstance(exc, WaitTimeoutError):
            state = f" (last status {exc.task.raw_status})" if exc.task is not None else ""
            return self._result(line, "unfinished", task_id=job.id,
                                error=f"still running after {exc.elapsed:.0f} s{state}")
        return self._result(line, "failed", task_id=job.id, error=str(exc))

    async def _kept_file(self, line: Line, entry: JournalEntry) -> tuple[str, str] | None:
        """The video an earlier run downloaded for ``line``, in ``out`` (copied if elsewhere)."""
        if not entry.file or not entry.sha256 or entry.task_id is None:
            return None
        source = Path(entry.file)
        target = self.out / file_name(line, self.plan.batch.width, source.suffix or ".mp4")
        if await asyncio.to_thread(_sha256, source) != entry.sha256:
            return None
        if await asyncio.to_thread(_inside, source, self.out):
            return str(source), entry.sha256
        size = await asyncio.to_thread(_copy, source, target, entry.sha256)
        if size is None:
            return None
        journal = self._client.journal
        if journal is not None:
            await journal.downloaded(entry.task_id, str(target), size, entry.sha256)
        return str(target), entry.sha256

    def _write_manifest(self) -> None:
        """Write ``manifest.jsonl`` atomically: one JSON object per line of the batch."""
        self.out.mkdir(parents=True, exist_ok=True)
        # A name of its own: workers sharing a batch may share the output directory.
        part = self.manifest.with_name(f"{self.manifest.name}.{os.getpid()}.part")
        with part.open("w", encoding="utf-8") as file:
            for result in self.ordered():
                file.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
        part.replace(self.manifest)


def _suffix(task: Task) -> str:
    if task.video_url:
        suffix = Path(urlsplit(task.video_url).path).suffix.lower()
        if suffix in (".mp4", ".webm", ".mov", ".m4v"):
            return suffix
    return ".mp4"


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while block := file.read(1024 * 1024):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


def _copy(source: Path, target: Path, sha256: str) -> int | None:
    """Copy a verified video into place atomically; its size, or None if it does not verify."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        shutil.copyfile(source, part)
        if _sha256(part) != sha256:
            part.unlink(missing_ok=True)
            return None
        part.replace(target)
        return target.stat().st_size
    except OSError:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        return None

