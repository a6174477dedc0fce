"""The video the simulator serves: the sample MP4, signed expiring CDN URLs and byte ranges."""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.resources
import re
import secrets
from urllib.parse import quote

from aiohttp import web

from ._shapes import REQUEST_ID

CDN_PATH = re.compile(r"/v/(.+)\.mp4")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CHUNK = 64 * 1024
_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>AccessDenied</Code><Message>{}</Message></Error>"
)


@functools.cache
def sample_video() -> bytes:
    """The default video: 1 s of a test pattern, 96x64, H.264, its moov box first."""
    # sample.mp4 was made once with the ffmpeg of the imageio-ffmpeg wheel:
    #   ffmpeg -f lavfi -i testsrc2=size=96x64:rate=12:duration=1 -c:v libx264 -preset veryslow
    #     -crf 35 -pix_fmt yuv420p -movflags +faststart -an -map_metadata -1
    #     -fflags +bitexact -flags:v +bitexact sample.mp4
    return importlib.resources.files(__package__).joinpath("sample.mp4").read_bytes()


class Signer:
    """Signs and checks the CDN's result URLs with a secret of its own."""

    __slots__ = ("_secret",)

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(16)

    def url(self, cdn_url: str, task_id: str, expires: int) -> str:
        """A signed link to the task's video, valid until the wall second ``expires``."""
        name = quote(task_id, safe="")
        return f"{cdn_url}/v/{name}.mp4?expires={expires}&sig={self._sign(task_id, expires)}"

    def valid(self, task_id: str, expires: str, signature: str) -> bool:
        """Whether ``expires`` and ``signature`` are the ones this signer gave ``task_id``."""
        return expires.isdigit() and hmac.compare_digest(
            signature, self._sign(task_id, int(expires))
        )

    def _sign(self, task_id: str, expires: int) -> str:
        message = f"{task_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]


def content_path(task_id: str) -> str:
    """The gateway's own copy of a task's video: ``/v1/videos/{task_id}/content``."""
    return f"/v1/videos/{quote(task_id, safe='')}/content"


def access_denied(message: str) -> web.Response:
    """The CDN's refusal: a 403 with an S3-style XML error."""
    body = _S3_ERROR.format(message).encode()
    return web.Response(status=403, body=body, content_type="application/xml")


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse ``bytes=N-``, ``bytes=N-M`` or ``bytes=-N`` into a half-open ``(start, end)``.

    Returns None for a header to ignore (malformed, or several ranges), as RFC 9110 allows, and
    an empty range (``start >= end``) for an unsatisfiable one.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # the last N bytes
        return max(size - int(match[2]), 0), size
    start = int(match[1])
    if match[2] == "":
        return start, size
    if int(match[2]) < start:
        return None
    return start, min(int(match[2]) + 1, size)


async def send_video(
    request: web.Request, data: bytes, rid: str, truncate: int | None
) -> web.StreamResponse:
    """Stream ``data``, or the part of it that a ``Range`` header asks for.

    Args:
        request: the request to answer.
        data: the video.
        rid: the gateway's request id for the answer; "" on the CDN, which sends none.
        truncate: if set, send the full ``Content-Length`` but only this many bytes of the
            body, then close the connection.
    """
    headers = {"Accept-Ranges": "bytes"}
    if rid:
        headers[REQUEST_ID] = rid
    start, end, status = 0, len(data), 200
    span = byte_range(request.headers.get("Range", ""), len(data))
    if span is not None:
        start, end = span
        if start >= end:
            headers["Content-Range"] = f"bytes */{len(data)}"
            return web.Response(status=416, headers=headers)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = "video/mp4"
    response.content_length = end - start
    await response.prepare(request)
    stop = end if truncate is None else min(end, start + truncate)
    view = memoryview(data)
    for offset in range(start, stop, _CHUNK):
        await response.write(view[offset : min(offset + _CHUNK, stop)])
    if truncate is not None and request.transport is not None:
        request.transport.close()  # the rest of Content-Length never comes
    else:
        await response.write_eof()
    return response
