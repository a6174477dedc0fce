"""Verified, resumable downloads of result videos.

A video is streamed to ``<name>.part`` next to its destination and renamed into place only
once it is complete and verified: the status, the content type (an error page is never saved as
a video), the first bytes, and the length. A cut-off download resumes with HTTP Range. An
expired result URL is asked for again; failing that, the gateway's content route serves the
bytes. The key goes only to the gateway's own origin: result URLs on a CDN get no header.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

from yarl import URL

from ._errors import (
    APIError,
    DownloadError,
    RateLimitError,
    ServerError,
    TransportError,
    snippet,
)
from ._limiter import Lane, Limiter
from ._task import Status, Task

if TYPE_CHECKING:
    from ._transport import Transport

__all__ = ["Downloader", "safe_name"]

log = logging.getLogger("octovid")

Progress = Callable[[int, int | None], object]

_CHUNK = 256 * 1024
_ATTEMPTS = 6  # transient failures survived per download
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v")
_BINARY_TYPES = ("application/octet-stream", "binary/octet-stream", "application/binary")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pdin")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(task_id: str) -> str:
    """A file name made from a task id: no separators, no leading dots, no ``..``."""
    name = _UNSAFE.sub("_", task_id).strip("._") or "video"
    name = re.sub(r"\.{2,}", ".", name)
    return name[:180]


class _Expired(Exception):
    """The URL no longer serves the video (expired signature, gone)."""


class _NotVideo(Exception):
    """The URL answered with something that is not a video."""


class _Short(Exception):
    """The body ended before its announced length."""


class Downloader:
    """Downloads result videos for one client."""

    __slots__ = ("_foreign", "_limiter", "_on_request", "_refresh", "_transport")

    def __init__(
        self,
        transport: Transport,
        limiter: Limiter,
        refresh: Callable[[str], Awaitable[Task]],
        *,
        foreign_concurrency: int,
        on_request: Callable[[], None] = lambda: None,
    ) -> None:
        self._transport = transport
        self._limiter = limiter
        self._refresh = refresh  # a fresh snapshot of a task, for a new result URL
        self._foreign = asyncio.Semaphore(foreign_concurrency)
        self._on_request = on_request

    def content_url(self, task_id: str) -> URL:
        """The gateway route that serves a task's bytes."""
        return self._transport.url(f"/v1/videos/{quote(task_id, safe='')}/content")

    def target(self, task: Task, dest: str | os.PathLike[str]) -> Path:
        """Where the video of ``task`` goes: ``dest`` itself, or a safe name inside it."""
        path = Path(dest)
        if path.is_dir() or str(dest).endswith((os.sep, "/")):
            source = self._transport.resolve(task.video_url) if task.video_url else None
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
        content = self.content_url(task.id)
        given = self._transport.resolve(task.video_url) if task.video_url else None
        sources = [given] if given is not None else []
        sources.append(content)
        refreshed = False
        failures = 0
        while True:
            url = sources[0]
            try:
                size, digest = await self._fetch(url, part, progress)
                break
            except (_Expired, _NotVideo) as exc:
                log.info("octovid: %s: %s", _where(url), exc)
                if url == content:
                    raise DownloadError(f"the video of task {task.id} is not available: {exc}") \
                        from None
                sources.pop(0)
                if not refreshed:  # a signed URL may have expired: ask for a fresh one
                    refreshed = True
                    fresh = await self._refresh(task.id)
                    again = self._transport.resolve(fresh.video_url) if fresh.video_url else None
                    if again is not None and again != url:
                        sources.insert(0, again)
            except (_Short, TransportError, ServerError, RateLimitError) as exc:
                failures += 1
                if failures >= _ATTEMPTS:
                    raise DownloadError(
                        f"the download of task {task.id} failed {failures} times; "
                        f"the partial file {part} is kept and resumes next time: {exc}"
                    ) from exc
                wait = min(30.0, 0.5 * 2**failures)
                log.info("octovid: download of %s interrupted (%s); resuming in %.1fs",
                         task.id, exc, wait)
                await asyncio.sleep(wait)
            except APIError as exc:
                raise DownloadError(f"the gateway refused the video of task {task.id}: {exc}") \
                    from exc
        await asyncio.to_thread(os.replace, part, target)
        return size, digest

    async def _fetch(self, url: URL, part: Path, progress: Progress | None) -> tuple[int, str]:
        if self._transport.same_origin(url):
            slot = await self._limiter.acquire(Lane.QUERY)
            try:
                self._on_request()
                slot.sending()
                return await self._stream(url, part, progress, slot.sent)
            except RateLimitError as exc:
                self._limiter.throttled(exc.retry_after, slot.at)
                raise
            finally:
                slot.release()
        async with self._foreign:
            return await self._stream(url, part, progress)

    async def _stream(
        self,
        url: URL,
        part: Path,
        progress: Progress | None,
        sent: Callable[[], None] | None = None,
    ) -> tuple[int, str]:
        # File I/O runs in a thread: a slow disk must not stall every other request.
        offset = await asyncio.to_thread(_size, part)
        gateway = self._transport.same_origin(url) and url.path.endswith("/content")
        async with self._transport.stream(url, offset=offset, sent=sent) as response:
            status = response.status
            if status == 416 and offset:  # asked beyond the end: the part may be whole
                total = _total(response.headers.get("Content-Range"))
                if total == offset:
                    return await asyncio.to_thread(_verify, part, total)
                await asyncio.to_thread(part.unlink)
                raise _Short(f"the partial file did not match ({offset} of {total} bytes)")
            if status not in (200, 206):
                if gateway:
                    raise await self._transport.error_of(response)
                body = await response.content.read(2048)
                if status in (401, 403, 404, 410):
                    raise _Expired(f"HTTP {status}: {snippet(body, 120)}")
                if status == 429 or status >= 500:
                    raise TransportError(f"{_where(url)} answered HTTP {status}", sent=True)
                raise _NotVideo(f"HTTP {status}: {snippet(body, 120)}")
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not (kind.startswith("video/") or kind in _BINARY_TYPES):
                body = await response.content.read(2048)
                raise _NotVideo(
                    f"sent {kind or 'no content type'} instead of a video: {snippet(body, 120)}"
                )
            if status == 206:
                start = _start(response.headers.get("Content-Range"))
                if start != offset:
                    await asyncio.to_thread(part.unlink, missing_ok=True)
                    raise _Short(f"the server resumed at byte {start}, not {offset}")
            elif offset:  # the server ignored Range: start over
                offset = 0
            length = response.content_length
            total = None if length is None else offset + length
            done = offset
            file = await asyncio.to_thread(open, part, "ab" if offset else "wb")
            try:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    if done == 0:
                        _check_magic(chunk, kind)
                    await asyncio.to_thread(file.write, chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            finally:
                await asyncio.to_thread(_close_synced, file)
        if total is not None and done != total:
            raise _Short(f"got {done} of {total} bytes")
        if done == 0:
            raise _NotVideo("sent an empty body")
        return await asyncio.to_thread(_verify, part, done)


def _check_magic(head: bytes, kind: str) -> None:
    if head.lstrip()[:1] in (b"<", b"{"):
        raise _NotVideo(f"sent a page as {kind}: {snippet(head[:200], 120)}")
    known = head[4:8] in _MP4_BOXES or head.startswith(b"\x1aE\xdf\xa3")
    if kind in _BINARY_TYPES and not known:
        raise _NotVideo(f"sent {kind} bytes that are not a video")


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
        raise _Short(f"the file holds {actual} bytes, expected {size}")
    return size, digest.hexdigest()


def _start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(?:\d+|\*)", content_range or "")
    return int(match.group(1)) if match else None


def _total(content_range: str | None) -> int | None:
    match = re.match(r"bytes (?:\*|\d+-\d+)/(\d+)", content_range or "")
    return int(match.group(1)) if match else None


def _where(url: URL) -> str:
    return f"{url.scheme}://{url.host}{url.path}"
