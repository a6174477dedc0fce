"""Local images (octovid._images): read once, typed by content, sized, encoded on demand."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octovid import RequestValidationError
from octovid._images import (
    MAX_BODY_BYTES,
    MAX_IMAGE_BYTES,
    LocalImage,
    Upload,
    describe,
    human_size,
    read_image,
)


def png(width: int = 4, height: int = 3) -> bytes:
    """A real, decodable RGB PNG of ``width`` x ``height`` black pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\x00" * (3 * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def jpeg(width: int = 640, height: int = 480, *, fill: bool = False) -> bytes:
    """The header segments of a baseline JPEG (APP0, then SOF0) and its end marker."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00" * 3
    return b"\xff\xd8" + app0 + (b"\xff" if fill else b"") + sof0 + b"\xff\xd9"


def webp(kind: bytes, width: int, height: int) -> bytes:
    """A WebP header of chunk ``kind`` (VP8X, VP8L or VP8) for a ``width`` x ``height`` image."""
    if kind == b"VP8X":
        data = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(
            3, "little"
        )
    elif kind == b"VP8L":
        bits = (width - 1) | (height - 1) << 14
        data = b"\x2f" + bits.to_bytes(4, "little")
    else:
        data = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    body = b"WEBP" + kind + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture
def frame(tmp_path: Path) -> Path:
    """A 4x3 PNG file named frame.png."""
    path = tmp_path / "frame.png"
    path.write_bytes(png())
    return path


def test_a_png_file_is_read_with_its_name_type_and_size(frame):
    """A path to a PNG gives a LocalImage with the file's name, bytes, type and pixel size."""
    image = read_image(frame, field="images[0]")
    assert (image.name, image.content_type, image.width, image.height) == (
        "frame.png", "image/png", 4, 3
    )
    assert image.content == frame.read_bytes()
    assert image.size == len(frame.read_bytes())


def test_the_type_comes_from_the_content_not_the_extension(tmp_path):
    """A PNG saved as photo.jpg is a PNG; a JPEG saved as picture.png is a JPEG."""
    as_jpg = tmp_path / "photo.jpg"
    as_jpg.write_bytes(png())
    as_png = tmp_path / "picture.png"
    as_png.write_bytes(jpeg())
    assert read_image(as_jpg, field="f").content_type == "image/png"
    assert read_image(as_png, field="f").content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("content", "content_type", "shape"),
    [
        (png(720, 1280), "image/png", (720, 1280)),
        (jpeg(1280, 720), "image/jpeg", (1280, 720)),
        (jpeg(33, 17, fill=True), "image/jpeg", (33, 17)),
        (webp(b"VP8X", 1792, 1024), "image/webp", (1792, 1024)),
        (webp(b"VP8L", 300, 200), "image/webp", (300, 200)),
        (webp(b"VP8 ", 1024, 1792), "image/webp", (1024, 1792)),
    ],
    ids=["png", "jpeg", "jpeg-fill-byte", "webp-vp8x", "webp-vp8l", "webp-vp8"],
)
def test_type_and_pixel_size_are_read_from_each_format(content, content_type, shape):
    """PNG, JPEG and the three WebP encodings give their type and width x height."""
    image = read_image(content, field="f")
    assert (image.content_type, (image.width, image.height)) == (content_type, shape)


def test_an_unreadable_header_leaves_the_pixel_size_unknown():
    """A JPEG whose scan starts before any frame header is accepted with no pixel size."""
    content = b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 20
    image = read_image(content, field="f")
    assert (image.content_type, image.width, image.height) == ("image/jpeg", None, None)


def test_bytes_are_an_image_without_a_name(frame):
    """Bytes give a nameless LocalImage, sent under a file name made from its type."""
    image = read_image(jpeg(), field="f")
    assert (image.name, image.filename) == (None, "image.jpg")
    assert read_image(frame, field="f").filename == "frame.png"
    assert read_image(bytearray(png()), field="f").filename == "image.png"


def test_a_local_image_is_passed_through():
    """read_image of a LocalImage is that same image."""
    image = read_image(png(), field="f")
    assert read_image(image, field="f") is image


def test_a_missing_file_is_refused_naming_it(tmp_path):
    """A path with no file behind it is refused, naming the field and the file."""
    path = tmp_path / "nope.png"
    with pytest.raises(RequestValidationError) as info:
        read_image(path, field="images[1]")
    assert (info.value.field, info.value.value) == ("images[1]", path)
    assert f"no file {str(path)!r}" in info.value.allowed


def test_a_directory_is_refused(tmp_path):
    """A directory is not an image file."""
    with pytest.raises(RequestValidationError) as info:
        read_image(tmp_path, field="f")
    assert "is a directory" in info.value.allowed


def test_an_unreadable_file_is_refused(frame, monkeypatch):
    """A file that cannot be opened for want of permission is refused as unreadable, named."""

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(RequestValidationError) as info:
        read_image(frame, field="f")
    assert info.value.allowed == (
        f"a readable image file; {str(frame)!r} cannot be read (permission denied)"
    )


def test_an_empty_file_is_refused(tmp_path):
    """An empty file is refused as empty."""
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(RequestValidationError) as info:
        read_image(path, field="f")
    assert info.value.allowed == "an image, but empty.png is empty"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"GIF89a\x01\x00\x01\x00", "a GIF"),
        (b"\x00\x00\x00\x18ftypmp42", "a video"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "text (HTML or SVG?)"),
        (b"hello, world", "of no image type octovid knows"),
    ],
    ids=["gif", "mp4", "svg", "text"],
)
def test_content_of_another_type_is_refused_saying_what_it_is(tmp_path, content, kind):
    """A GIF, a video, markup or anything else is refused, naming the file and what it is."""
    path = tmp_path / "frame.png"
    path.write_bytes(content)
    with pytest.raises(RequestValidationError) as info:
        read_image(path, field="f")
    assert info.value.allowed == (
        f"a PNG, JPEG or WebP image (read from the content, not the name); frame.png is {kind}"
    )


def test_a_file_over_the_limit_is_refused_naming_the_file_and_the_limit(tmp_path):
    """A file over 10 MiB is refused from its size, naming the file, its size and the limit."""
    path = tmp_path / "huge.png"
    with path.open("wb") as file:
        file.write(png())
        file.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(RequestValidationError) as info:
        read_image(path, field="images[0]")
    assert info.value.allowed == "an image of at most 10.0 MiB; huge.png is 10.0 MiB"
    assert info.value.value == path


def test_a_file_at_the_limit_is_accepted(tmp_path):
    """A file of exactly 10 MiB is accepted and read whole."""
    path = tmp_path / "exact.png"
    with path.open("wb") as file:
        file.write(png())
        file.truncate(MAX_IMAGE_BYTES)
    assert read_image(path, field="f").size == MAX_IMAGE_BYTES


def test_bytes_over_the_limit_are_refused_without_dumping_them():
    """Bytes over the limit are refused; the error shows their size, not their content."""
    content = png() + b"\x00" * 2000
    with pytest.raises(RequestValidationError) as info:
        read_image(content, field="f", limit=1024)
    assert info.value.value == f"<{human_size(len(content))} of bytes>"
    assert "the bytes given are 2." in info.value.allowed
    assert len(str(info.value)) < 200


def test_other_values_are_refused():
    """A value that is neither a path nor bytes is refused."""
    with pytest.raises(RequestValidationError) as info:
        read_image(42, field="f")
    assert info.value.allowed == "a pathlib.Path or bytes"


def test_the_data_uri_holds_the_bytes_and_its_length_is_known_in_advance():
    """data_uri() is data:<type>;base64 of the bytes; data_uri_length is its length."""
    image = read_image(png(), field="f")
    uri = image.data_uri()
    prefix, _, encoded = uri.partition(",")
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(encoded) == image.content
    assert image.data_uri_length == len(uri)


@given(st.binary(max_size=300))
def test_data_uri_length_is_exact_for_any_size(tail):
    """data_uri_length equals len(data_uri()) whatever the image's size."""
    image = LocalImage(None, b"\xff\xd8\xff" + tail, "image/jpeg")
    assert image.data_uri_length == len(image.data_uri())


def test_repr_names_the_file_and_its_size_not_the_content(tmp_path):
    """A LocalImage's repr is short: name, type, size and pixel size, whatever its size."""
    path = tmp_path / "frame.png"
    path.write_bytes(png(2, 2) + b"\x00" * (3 * 1024 * 1024))
    image = read_image(path, field="f")
    assert repr(image) == "LocalImage('frame.png', image/png, 3.0 MiB, 2x2)"
    content = jpeg()
    assert repr(read_image(content, field="f")) == (
        f"LocalImage(<bytes>, image/jpeg, {len(content)} B, 640x480)"
    )


def test_upload_is_the_image_as_a_file_part(frame):
    """upload(field) is an Upload with the field, the file name, the bytes and the type."""
    image = read_image(frame, field="f")
    upload = image.upload("input_reference")
    assert upload == Upload("input_reference", "frame.png", frame.read_bytes(), "image/png")
    assert repr(upload) == (
        f"Upload(field='input_reference', filename='frame.png', image/png, "
        f"{human_size(image.size)})"
    )


def test_equal_images_are_equal_and_hash_alike(tmp_path):
    """Two reads of the same file are equal and hash alike; other bytes are not equal."""
    path = tmp_path / "a.png"
    path.write_bytes(png())
    one, two = read_image(path, field="f"), read_image(path, field="f")
    assert one == two
    assert hash(one) == hash(two)
    assert one != read_image(png(5, 5), field="f")


def test_describe_summarises_bytes_and_keeps_other_values():
    """describe() turns bytes into their size and leaves paths and strings as they are."""
    assert describe(b"\x00" * 2048) == "<2.0 KiB of bytes>"
    assert describe(Path("a.png")) == Path("a.png")
    assert describe("https://x/a.png") == "https://x/a.png"


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (MAX_BODY_BYTES, "8.0 MiB")]
)
def test_human_size(size, text):
    """Sizes are written in B, KiB or MiB."""
    assert human_size(size) == text
