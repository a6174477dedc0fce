"""Verified, resumable downloads of result videos.

A video is streamed to ``<name>.part`` next to its destination and renamed into place only
once it is complete and verified: the status, the content type (an error page is never saved
as a video), the first bytes, and the length. A cut-off download resumes with HTTP Range,
retried as ``_retry.decide`` says. An expired result URL is asked for again; failing that, the
gateway's content route serves the bytes. The downloader reaches the gateway through the
:class:`Fetching` protocol (the client's Gateway), which sends the key to the gateway's own
origin only: result URLs on a CDN get no header.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from yarl import URL

from ._errors import APIError, DownloadError, OctovidError, TransportError
from ._retry import Action, Kind, RetryPolicy, decide, waits
from ._task import Status, Task
from ._text import snippet
from ._transport import NotVideo, SourceGone

if TYPE_CHECKING:
    from ._transport import Body

__all__ = ["Downloader", "Fetching", "safe_name"]

log = logging.getLogger("octovid")

Progress = Callable[[int, int | None], object]

_VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v")
_BINARY_TYPES = ("application/octet-stream", "binary/octet-stream", "application/binary")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pdin")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Fetching(Protocol):
    """What the downloader needs of the gateway."""

    def content_url(self, task_id: str) -> URL:
        """The gateway route that serves a task's bytes."""

    def resolve(self, reference: str) -> URL | None:
        """An absolute http(s) URL for a result URL, else None."""

    def open(self, url: URL, *, offset: int = 0) -> AbstractAsyncContextManager[Body]:
        """Open a download of ``url`` from byte ``offset``."""


def safe_name(task_id: str) -> str:
    """A file name made from a task id: no separators, no leading dots, no ``..``."""
    name = _UNSAFE.sub("_", task_id).strip("._") or "video"
    name = re.sub(r"\.{2,}", ".", name)
    return name[:180]


class Downloader:
    """Downloads result videos for one client."""

    __slots__ = ("_gateway", "_policy", "_refresh")

    def __init__(
        self,
        gateway: Fetching,
        refresh: Callable[[Task], Awaitable[Task]],
        policy: RetryPolicy,
    ) -> None:
        self._gateway = gateway
        self._refresh = refresh  # a fresh snapshot of a task, for a new result URL
        self._policy = policy

    def target(self, task: Task, dest: str | os.PathLike[str]) -> Path:
        """Where the video of ``task`` goes: ``dest`` itself, or a safe name inside it."""
        path = Path(dest)
        if path.is_dir() or str(dest).endswith((os.sep, "/")):
            source = self._gateway.resolve(task.video_url) if task.video_url else None
            suffix = Path(source.path).suffix.lower() if source is not None else ""
            name = safe_name(task.id) + (suffix if suffix in _VIDEO_SUFFIXES else ".mp4")
            target = path / name
            if target.resolve().parent != path.resolve():  # belt and braces: stay inside dest
                raise DownloadError(f"refusing to write {name!r} outside {path}")
            return target
        return path

    async def download(
        self, task: Task, target: Path, progress: Progress | None = None
    ) -> tuple[int, str]:
        """Download ``task``'s video to ``target``; return (size, sha256).

        Raises:
            DownloadError: The video could not be fetched and verified from any source.
        """
        if task.status is not Status.COMPLETED:
            raise DownloadError(
                f"task {task.id} is {task.raw_status or task.status}, not completed: "
                "there is nothing to download yet"
            )
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        content = self._gateway.content_url(task.id)
        given = self._gateway.resolve(task.video_url) if task.video_url else None
        sources = [given] if given is not None else []
        sources.append(content)
        refreshed = False
        failures = 0
        schedule = waits()
        while True:
            url = sources[0]
            try:
                size, digest = await self._fetch(url, part, progress)
                break
            except (SourceGone, NotVideo) as exc:
                log.info("octovid: %s", exc)
                if url == content:
                    raise DownloadError(f"the video of task {task.id} is not available: {exc}") \
                        from None
                sources.pop(0)
                if not refreshed:  # a signed URL may have expired: ask for a fresh one
                    refreshed = True
                    fresh = await self._refresh(task)
                    again = self._gateway.resolve(fresh.video_url) if fresh.video_url else None
                    if again is not None and again != url:
                        sources.insert(0, again)
            except OctovidError as exc:
                failures += 1
                verdict = decide(exc, Kind.DOWNLOAD, attempt=failures, schedule=schedule,
                                 policy=self._policy)
                if verdict.action is not Action.RETRY or failures >= self._policy.max_tries:
                    if isinstance(exc, APIError) and verdict.action is not Action.RETRY:
                        raise DownloadError(
                            f"the gateway refused the video of task {task.id}: {exc}"
                        ) from exc
                    raise DownloadError(
                        f"the download of task {task.id} failed {failures} times; "
                        f"the partial file {part} is kept and resumes next time: {exc}"
                    ) from exc
                log.info("octovid: download of %s interrupted (%s); resuming in %.1fs",
                         task.id, exc, verdict.wait)
                await asyncio.sleep(verdict.wait)
        await asyncio.to_thread(os.replace, part, target)
        return size, digest

    async def _fetch(self, url: URL, part: Path, progress: Progress | None) -> tuple[int, str]:
        # File I/O runs in a thread: a slow disk must not stall every other request.
        offset = await asyncio.to_thread(_size, part)
        async with self._gateway.open(url, offset=offset) as body:
            status = body.status
            if status == 416:
                if not offset:
                    raise NotVideo(f"{_where(url)}: HTTP 416 for a download from the start")
                total = _total(body.content_range)  # asked beyond the end: the part may be whole
                if total == offset:
                    return await asyncio.to_thread(_verify, part, total)
                await asyncio.to_thread(part.unlink)
                raise _short(f"the partial file did not match ({offset} of {total} bytes)")
            kind = body.kind
            if not (kind.startswith("video/") or kind in _BINARY_TYPES):
                head = await body.read(2048)
                raise NotVideo(
                    f"{_where(url)} sent {kind or 'no content type'} instead of a video: "
                    f"{snippet(head, 120)}"
                )
            if status == 206:
                start = _start(body.content_range)
                if start != offset:
                    await asyncio.to_thread(part.unlink, missing_ok=True)
                    raise _short(f"the server resumed at byte {start}, not {offset}")
            elif offset:  # the server ignored Range: start over
                offset = 0
            total = None if body.length is None else offset + body.length
            done = offset
            file = await asyncio.to_thread(open, part, "ab" if offset else "wb")
            try:
                async for chunk in body.chunks():
                    if done == 0:
                        _check_magic(chunk, kind, url)
                    await asyncio.to_thread(file.write, chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            finally:
                await asyncio.to_thread(_close_synced, file)
        if total is not None and done != total:
            raise _short(f"got {done} of {total} bytes")
        if done == 0:
            raise NotVideo(f"{_where(url)} sent an empty body")
        return await asyncio.to_thread(_verify, part, done)


def _short(message: str) -> TransportError:
    """A body cut short: a transient failure, resumed from what was written."""
    return TransportError(message, sent=True)


def _check_magic(head: bytes, kind: str, url: URL) -> None:
    if head.lstrip()[:1] in (b"<", b"{"):
        raise NotVideo(f"{_where(url)} sent a page as {kind}: {snippet(head[:200], 120)}")
    known = head[4:8] in _MP4_BOXES or head.startswith(b"\x1aE\xdf\xa3")
    if kind in _BINARY_TYPES and not known:
        raise NotVideo(f"{_where(url)} sent {kind} bytes that are not a video")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _close_synced(file: BinaryIO) -> None:
    try:
        file.flush()
        os.fsync(file.fileno())
    finally:
        file.close()


def _verify(part: Path, size: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(part, "rb") as file:
        while block := file.read(1024 * 1024):
            digest.update(block)
    actual = part.stat().st_size
    if actual != size:
        raise _short(f"the file holds {actual} bytes, expected {size}")
    return size, digest.hexdigest()


def _start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(?:\d+|\*)", content_range or "")
    return int(match.group(1)) if match else None


def _total(content_range: str | None) -> int | None:
    match = re.match(r"bytes (?:\*|\d+-\d+)/(\d+)", content_range or "")
    return int(match.group(1)) if match else None


def _where(url: URL) -> str:
    return f"{url.scheme}://{url.host}{url.path}"
