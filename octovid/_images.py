"""Local images: files and bytes read once, checked, and sent as data URIs or multipart parts.

A request that takes images accepts, beside URL strings, a :class:`pathlib.Path` (any
``os.PathLike``) or ``bytes``. They are read when the request is built, so a missing file, a file
that is not an image or one over the limit is a :class:`RequestValidationError` before anything
is sent. The type is read from the content (its magic bytes), never from the file name: PNG, JPEG
and WebP are accepted. The base64 text of a data URI is made only when the body is built
(``to_payload()``), so a request keeps one copy of the image, its bytes.
"""

from __future__ import annotations

import base64
import math
import os
import struct
from pathlib import Path
from typing import Any

import attrs

from ._errors import RequestValidationError

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_IMAGE_BYTES",
    "LocalImage",
    "Upload",
    "describe",
    "human_size",
    "is_local",
    "read_image",
]

#: The largest image file octovid sends: 10 MiB, the per-image limit the video providers state
#: (Kling, Sora and Veo channels document 10 MB per reference image).
MAX_IMAGE_BYTES = 10 * 1024 * 1024

#: The largest request body octovid sends. The gateway refuses larger bodies with 413
#: ``read_request_body_failed`` (PROTOCOL.md section 4); base64 grows an image by 4/3, so a
#: JSON body holds images of about 6 MiB in all.
MAX_BODY_BYTES = 8 * 1024 * 1024

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def human_size(size: int) -> str:
    """``size`` bytes in words: ``"512 B"``, ``"12.3 KiB"``, ``"4.0 MiB"``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _sniff(head: bytes) -> str | None:
    """The image type of content starting with ``head``, by its magic bytes; None if unknown."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _other_kind(head: bytes) -> str:
    """What content of no accepted type looks like, for an error message."""
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1aE\xdf\xa3"):
        return "a video"
    if head.lstrip().startswith(b"<"):
        return "text (HTML or SVG?)"
    return "of no image type octovid knows"


def _dimensions(content: bytes, content_type: str) -> tuple[int, int] | None:
    """The width and height read from an image's header; None when the header is not readable."""
    try:
        if content_type == "image/png":
            if content[12:16] != b"IHDR":
                return None
            width, height = struct.unpack(">II", content[16:24])
            return int(width), int(height)
        if content_type == "image/jpeg":
            return _jpeg_dimensions(content)
        if content_type == "image/webp":
            return _webp_dimensions(content)
    except (struct.error, IndexError):
        return None
    return None


# JPEG start-of-frame markers: the ones that carry the frame's size (not DHT, JPG or DAC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_dimensions(content: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(content):
        if content[at] != 0xFF:
            return None
        marker = content[at + 1]
        if marker == 0xFF:  # a fill byte
            at += 1
            continue
        if marker in {0x01, *range(0xD0, 0xD8)}:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", content[at + 2 : at + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", content[at + 5 : at + 9])
            return int(width), int(height)
        if marker == 0xDA or length < 2:  # image data before any frame header: unreadable
            return None
        at += 2 + length
    return None


def _webp_dimensions(content: bytes) -> tuple[int, int] | None:
    chunk, data = content[12:16], content[20:]
    if chunk == b"VP8X":
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        return width, height
    if chunk == b"VP8L" and data[:1] == b"\x2f":
        b1, b2, b3, b4 = data[1:5]
        width = 1 + (b1 | (b2 & 0x3F) << 8)
        height = 1 + (b2 >> 6 | b3 << 2 | (b4 & 0x0F) << 10)
        return width, height
    if chunk == b"VP8 " and data[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[6:10])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    return None


@attrs.frozen(repr=False)
class Upload:
    """One file part of a ``multipart/form-data`` create (e.g. ``input_reference``).

    Attributes:
        field: The form field the file is sent as.
        filename: The file name sent with it.
        content: The file's bytes.
        content_type: Its media type, read from the content (``image/png``...).
    """

    field: str
    filename: str
    content: bytes
    content_type: str

    def __repr__(self) -> str:
        return (
            f"Upload(field={self.field!r}, filename={self.filename!r}, "
            f"{self.content_type}, {human_size(len(self.content))})"
        )


@attrs.frozen(repr=False)
class LocalImage:
    """An image read from a local file or given as bytes, checked and ready to send.

    Equal images compare equal whatever their origin; the repr names the file and its size,
    never the content.

    Attributes:
        name: The file's name (without its directory), or None for bytes given directly.
        content: The image's bytes.
        content_type: ``image/png``, ``image/jpeg`` or ``image/webp``, read from the content.
        width: The width in pixels read from the header, or None where it could not be read.
        height: Likewise, the height.
    """

    name: str | None
    content: bytes
    content_type: str
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        """The image's size in bytes."""
        return len(self.content)

    @property
    def filename(self) -> str:
        """The name to send it under: the file's own, or ``image.png`` (by type) for bytes."""
        return self.name or "image" + _EXTENSIONS.get(self.content_type, "")

    @property
    def data_uri_length(self) -> int:
        """The length of :meth:`data_uri`'s text, computed without encoding the image."""
        return len(f"data:{self.content_type};base64,") + 4 * math.ceil(self.size / 3)

    def data_uri(self) -> str:
        """The image as a ``data:<type>;base64,...`` URI (built anew at each call)."""
        return f"data:{self.content_type};base64," + base64.b64encode(self.content).decode()

    def upload(self, field: str) -> Upload:
        """The image as the multipart file part ``field``."""
        return Upload(field, self.filename, self.content, self.content_type)

    def __repr__(self) -> str:
        shape = f", {self.width}x{self.height}" if self.width and self.height else ""
        origin = repr(self.name) if self.name is not None else "<bytes>"
        return f"LocalImage({origin}, {self.content_type}, {human_size(self.size)}{shape})"


def is_local(value: object) -> bool:
    """Whether ``value`` names a local image (a path or bytes) rather than a URL string."""
    return isinstance(value, os.PathLike | bytes | bytearray | memoryview | LocalImage)


def describe(value: object) -> object:
    """A short stand-in for ``value`` in an error: bytes are summarised, never dumped."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{human_size(len(value))} of bytes>"
    return value


def read_image(value: Any, *, field: str, limit: int = MAX_IMAGE_BYTES) -> LocalImage:
    """Read and check a local image: a path (``os.PathLike``), bytes, or a :class:`LocalImage`.

    Args:
        value: The image as given.
        field: The request field it was given as, for errors (``images[0]``).
        limit: The largest size accepted, in bytes.

    Raises:
        RequestValidationError: the file does not exist or cannot be read, is empty, is over
            ``limit``, or is not a PNG, JPEG or WebP image by its content.
    """
    if isinstance(value, LocalImage):
        return value
    if isinstance(value, os.PathLike):
        path = Path(value)
        name: str | None = path.name
        content = _read_file(path, field=field, limit=limit)
    elif isinstance(value, bytes | bytearray | memoryview):
        name = None
        content = bytes(value)
    else:
        raise RequestValidationError(field, value, "a pathlib.Path or bytes")
    what = f"{name} is" if name is not None else "the bytes given are"
    if len(content) > limit:
        raise RequestValidationError(
            field, describe(value),
            f"an image of at most {human_size(limit)}; {what} {human_size(len(content))}",
        )
    if not content:
        raise RequestValidationError(field, describe(value), f"an image, but {what} empty")
    content_type = _sniff(content[:16])
    if content_type is None:
        raise RequestValidationError(
            field, describe(value),
            f"a PNG, JPEG or WebP image (read from the content, not the name); "
            f"{what} {_other_kind(content[:16])}",
        )
    shape = _dimensions(content, content_type)
    width, height = shape if shape is not None else (None, None)
    return LocalImage(name, content, content_type, width, height)


def _read_file(path: Path, *, field: str, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:  # refused before reading it
                raise RequestValidationError(
                    field, path,
                    f"an image of at most {human_size(limit)}; {path.name} is {human_size(size)}",
                )
            return file.read(limit + 1)
    except FileNotFoundError:
        raise RequestValidationError(
            field, path, f"an existing image file; there is no file {str(path)!r}"
        ) from None
    except IsADirectoryError:
        raise RequestValidationError(
            field, path, f"an image file; {str(path)!r} is a directory"
        ) from None
    except PermissionError:
        raise RequestValidationError(
            field, path, f"a readable image file; {str(path)!r} cannot be read (permission denied)"
        ) from None
    except OSError as exc:
        raise RequestValidationError(
            field, path, f"a readable image file; reading {str(path)!r} failed: {exc.strerror}"
        ) from exc
