"""The ``octovid`` command: parsing, dispatch, exit statuses, signals and logging.

Errors are one line on stderr, never a traceback. Exit statuses: 0 when everything asked for
was done, 1 when something failed, 2 for bad input (nothing was sent), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import IO

import octovid
from octovid._batch import BatchFileError, BatchStopped, JournalBusy

from . import _commands
from ._commands import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Failure, UsageError
from ._messages import LogFilter, describe

__all__ = ["build_parser", "main"]

_MAX_PROBLEMS = 20  # bad lines listed at most; the count says how many more


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not 0 < value < float("inf"):
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


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after its name.

    After the name (``defaults=False``) they default to nothing, so that they do not undo
    the same options given before it.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output (before or after the command)")
    group.add_argument("--api-key", metavar="KEY", default=default(None),
                       help="the key (default: $OCTOVID_API_KEY)")
    group.add_argument("--base-url", metavar="URL", default=default(None),
                       help="the gateway (default: $OCTOVID_BASE_URL or https://octopusx.ai)")
    group.add_argument("--rate-limit", type=_positive, default=default(5.0), metavar="N",
                       help="requests per second for this key, all included (default: 5)")
    group.add_argument("--redis", metavar="URL", default=default(None),
                       help="share the key's rate budget with every process using this Redis "
                       "(default: $OCTOVID_REDIS_URL)")
    group.add_argument("--max-concurrency", type=_count, default=default(16), metavar="N",
                       help="requests in flight at most (default: 16)")
    group.add_argument("--timeout", type=_positive, default=default(60.0), metavar="S",
                       help="seconds for one request (default: 60)")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="print JSON lines instead of text")
    group.add_argument("-q", "--quiet", action="store_true", default=default(False),
                       help="no progress display")
    group.add_argument("-v", "--verbose", action="count", default=default(0),
                       help="log what octovid does (-vv: more)")


def _add_poll(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-interval", type=_positive, metavar="S",
                        help="seconds before a task's first poll; later polls back off from it "
                        "(default: 5; the gateway refreshes tasks about every 15 s)")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="octovid",
        description="Create videos on the octopusx gateway: many at once, under one rate "
        "limit, checked before anything is paid for, safely resumable.",
        epilog="Try `octovid demo`: the whole thing on a built-in simulator, no key needed. "
        "`octovid COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"octovid {octovid.__version__}")
    _add_common(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=description)
        _add_common(sub, defaults=False)
        return sub

    create = command(
        "create", "create one video task",
        "Create one task and print its id and status (--json for scripts); --wait waits, "
        "showing its progress, --out downloads. The model and fields are checked first "
        "(`octovid models` lists them).",
    )
    create.add_argument("model", help="e.g. sora-2, veo3.1-fast, grok-video-3, viduq2-pro")
    create.add_argument("prompt")
    create.add_argument("--image", action="append", metavar="URL|FILE",
                        help="a reference image: a URL, or a local PNG, JPEG or WebP file "
                        "(repeat for more)")
    create.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="a request field, e.g. --set duration=15 (values are JSON if "
                        "they parse, else text)")
    create.add_argument("--wait", action="store_true", help="wait until it finishes")
    create.add_argument("--out", metavar="DIR", help="download the video into DIR (waits)")
    create.add_argument("--deadline", type=_positive, metavar="S", help="give up after S seconds")
    create.add_argument("--allow-unknown-models", action="store_true",
                        help="send a model the models table does not list, as given")
    _add_poll(create)

    status = command("status", "query tasks once", "Query tasks once and print their status.")
    status.add_argument("task_id", nargs="+", metavar="TASK_ID")

    wait = command("wait", "wait for tasks to finish",
                   "Wait for tasks to finish, showing their status and progress; --out "
                   "downloads them.")
    wait.add_argument("task_id", nargs="+", metavar="TASK_ID")
    wait.add_argument("--out", metavar="DIR", help="download the videos into DIR")
    wait.add_argument("--deadline", type=_positive, metavar="S", help="give up after S seconds")
    _add_poll(wait)

    download = command("download", "download finished tasks", "Download finished tasks.")
    download.add_argument("task_id", nargs="+", metavar="TASK_ID")
    download.add_argument("--out", metavar="DIR", required=True,
                          help="download the videos into DIR")

    batch = command(
        "batch", "run a JSONL file of requests, resumably",
        "Create, watch and download every request of a JSONL file (one JSON object per line: "
        "model, prompt, the family's fields, an optional key). Every line is checked before "
        "anything is sent. Progress is journaled: run the same command again after a crash or "
        "Ctrl-C and it resumes, without creating anything twice, whatever --out you give.",
    )
    batch.add_argument("file", metavar="FILE.jsonl")
    batch.add_argument("--out", metavar="DIR", required=True,
                       help="where the videos (0007-<key>.mp4) and manifest.jsonl go")
    batch.add_argument("--journal", metavar="PATH|URL",
                       help="the journal (default: one per gateway, in "
                       "$XDG_DATA_HOME/octovid/journals/); a postgresql:// URL shares the "
                       "batch between workers that run this command on the same file")
    batch.add_argument("--lease", type=_positive, metavar="S", default=30.0,
                       help="with a postgresql:// journal: seconds before the lines of a "
                       "worker that died go to the others (default: %(default)g)")
    batch.add_argument("--deadline", type=_positive, metavar="S",
                       help="give up on a job after S seconds (default: 1 hour)")
    batch.add_argument("--no-download", action="store_true", help="only create and wait")
    batch.add_argument("--dry-run", action="store_true",
                       help="check the file and say what a run would do; send nothing")
    batch.add_argument("--retry-failed", action="store_true",
                       help="create again lines whose task failed (a new task, billed), "
                       "except those refused for their prompt")
    batch.add_argument("--retry-uncertain", action="store_true",
                       help="create again lines whose earlier create went unanswered "
                       "(they may then be billed twice)")
    batch.add_argument("--create-again", action="store_true",
                       help="create lines that another journal shows created (billed again)")
    batch.add_argument("--allow-unknown-models", action="store_true",
                       help="send models the models table does not list, as given")
    _add_poll(batch)

    models = command(
        "models", "list the model families, their models and fields",
        "List each model family's models and fields with their allowed values: what a batch "
        "line or `create --set` may hold.",
    )
    models.add_argument("name", nargs="?", metavar="FAMILY_OR_MODEL",
                        help="only this family (e.g. sora, or a model of it)")
    models.add_argument("--markdown", action="store_true", help="print a Markdown table")

    demo = commands.add_parser(
        "demo", help="run a batch on the built-in simulator (no key, no network)",
        description="Start a simulated gateway in-process, run a batch of sample prompts "
        "across the five model families, download every video and print the summary.",
    )
    demo.add_argument("--out", metavar="DIR", default="octovid-demo",
                      help="where the videos go (default: ./octovid-demo)")
    demo.add_argument("--seed", type=int, default=None, help="make the run repeatable")
    demo.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                      help="print JSON lines instead of text")
    demo.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    demo.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)

    commands.add_parser(
        "simulate", add_help=False,
        help="serve the simulated gateway, logging each request (see `octovid simulate "
        "--help`)",
    )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, _commands.Output], Awaitable[int]]] = {
    "create": _commands.cmd_create,
    "status": _commands.cmd_status,
    "wait": _commands.cmd_wait,
    "download": _commands.cmd_download,
    "batch": _commands.cmd_batch,
    "models": _commands.cmd_models,
    "demo": _commands.cmd_demo,
}


def fail(message: str) -> None:
    """Report an error: one line on stderr (each line of a multi-line message prefixed)."""
    for line in message.splitlines() or [""]:
        print(f"octovid: error: {line}", file=sys.stderr, flush=True)


_VALUED = frozenset({"--api-key", "--base-url", "--rate-limit", "--max-concurrency",
                     "--timeout", "--redis"})


def _simulate_argv(argv: list[str]) -> list[str] | None:
    """The simulator's arguments, if the command is ``simulate`` (global options before it)."""
    at = 0
    while at < len(argv):
        item = argv[at]
        if item == "simulate":
            return argv[at + 1:]
        if not item.startswith("-"):
            return None  # another command
        at += 2 if item in _VALUED else 1
    return None


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (a live display may have wrapped it)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """octovid's log lines on stderr, in the command line's words, for the command's time."""
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(
        "%(message)s" if not verbose else "%(asctime)s %(message)s", datefmt="%H:%M:%S"
    ))
    handler.addFilter(LogFilter())
    log = logging.getLogger("octovid")
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    simulate = _simulate_argv(argv)
    if simulate is not None:
        from ._simulate import main as serve

        return serve(simulate)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    output = _commands.Output(as_json=args.json)
    try:
        _shared_rate(args)
        with _logging(args.verbose):
            return _run(COMMANDS[args.command](args, output))
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED
    except BatchFileError as exc:
        problems = exc.problems
        shown = problems[:_MAX_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more problems; nothing was sent")
        elif len(problems) > 1:
            shown.append(f"{len(problems)} problems; nothing was sent")
        fail("\n".join(shown))
        return EXIT_USAGE
    except UsageError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except BatchStopped as exc:
        fail(f"{describe(exc.cause)}; stopped, nothing more was sent")
        return EXIT_FAILED
    except (Failure, JournalBusy) as exc:
        fail(str(exc))
        return EXIT_FAILED
    except octovid.OctovidError as exc:
        fail(describe(exc))
        return EXIT_FAILED
    except OSError as exc:
        fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_FAILED


def _shared_rate(args: argparse.Namespace) -> None:
    """``--redis URL`` (else ``$OCTOVID_REDIS_URL``, which the client reads): the key's budget
    shared on Redis; a bad URL is bad input."""
    url = getattr(args, "redis", None)
    if url is None or getattr(args, "rate_limit", None) is None:
        return
    try:
        args.rate_limit = octovid.RateLimit(args.rate_limit, redis=url)
    except ValueError as exc:
        raise UsageError(f"--redis: {exc}") from None


def _run(command: Awaitable[int]) -> int:
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
            return await command
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    return asyncio.run(guarded())
