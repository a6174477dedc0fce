"""Local images in requests: data URIs where a family takes them, file parts for the OpenAI-format
input_reference, clear refusals where a route takes URLs only, and the body limit."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from octovid import RequestValidationError
from octovid._images import MAX_BODY_BYTES, LocalImage, Upload
from octovid._requests import (
    GrokRequest,
    JimengRequest,
    KlingRequest,
    SeedanceRequest,
    SoraRequest,
    SoraVideosRequest,
    VeoRequest,
    VeoVideosRequest,
    VideoRequest,
    ViduRequest,
)

URL = "https://example.com/a.png"


def png(width: int = 4, height: int = 3, padding: int = 0) -> bytes:
    """An RGB PNG of ``width`` x ``height``, followed by ``padding`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\x00" * (3 * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b"") + b"\x00" * padding)


def data_uri(content: bytes) -> str:
    """The PNG data URI of ``content``."""
    return "data:image/png;base64," + base64.b64encode(content).decode()


@pytest.fixture
def frame(tmp_path: Path) -> Path:
    """A 720x1280 PNG file named frame.png."""
    path = tmp_path / "frame.png"
    path.write_bytes(png(720, 1280))
    return path


# --- families that send local images as data URIs -------------------------------------------------


@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda image: GrokRequest("@img1 dances", images=[image, URL]),
         lambda body: body["images"][0]),
        (lambda image: VideoRequest("hailuo-02", "a", images=[image]),
         lambda body: body["images"][0]),
        (lambda image: VideoRequest("hailuo-02", "a", images=[image], route="native"),
         lambda body: body["images"][0]),
        (lambda image: KlingRequest("a", images=[image]), lambda body: body["image"]),
        (lambda image: KlingRequest("a", images=[URL, image]),
         lambda body: body["metadata"]["last_frame_url"]),
        (lambda image: SeedanceRequest("a", images=[image]),
         lambda body: body["content"][1]["image_url"]["url"]),
        (lambda image: SeedanceRequest("a", reference_images=[URL, image]),
         lambda body: body["content"][2]["image_url"]["url"]),
    ],
    ids=["grok", "video", "video-native", "kling-first", "kling-last", "seedance-frame",
         "seedance-reference"],
)
@pytest.mark.parametrize("given", ["path", "bytes"])
def test_local_images_become_data_uris_where_the_family_takes_them(frame, build, where, given):
    """A path or bytes is read at construction and sent as a data URI in the JSON body."""
    image = frame if given == "path" else frame.read_bytes()
    request = build(image)
    body = request.to_payload()
    assert where(body) == data_uri(frame.read_bytes())
    assert request.files() == ()
    assert json.loads(json.dumps(body)) == body


def test_urls_pass_through_beside_local_images(frame):
    """URL strings are sent unchanged next to local images."""
    body = GrokRequest("@img1 @img2", images=[URL, frame]).to_payload()
    assert body["images"][0] == URL
    assert body["images"][1].startswith("data:image/png;base64,")


def test_a_lone_path_is_one_image(frame):
    """images=Path(...) is read as one image, like images=[Path(...)]."""
    assert GrokRequest("a", images=frame) == GrokRequest("a", images=[frame])


def test_local_images_are_held_as_checked_images_not_as_base64(frame):
    """The request holds a LocalImage (the bytes); the base64 text is made by to_payload()."""
    request = GrokRequest("a", images=[frame])
    (image,) = request.images
    assert isinstance(image, LocalImage)
    assert image.content == frame.read_bytes()
    assert not any(isinstance(value, str) for value in request.images)
    assert request.to_payload() == request.to_payload()


def test_a_local_image_is_read_when_the_request_is_built(tmp_path):
    """Changing or removing the file after construction does not change the request."""
    path = tmp_path / "frame.png"
    path.write_bytes(png(2, 2))
    request = GrokRequest("a", images=[path])
    path.unlink()
    assert request.to_payload()["images"] == [data_uri(png(2, 2))]


def test_requests_with_the_same_image_are_equal_whatever_its_origin(frame):
    """A path and its bytes give equal requests, hashing alike."""
    from_path = KlingRequest("a", images=[frame])
    from_bytes = KlingRequest("a", images=[frame.read_bytes()])
    assert from_path.images[0].name == "frame.png"
    assert from_bytes.images[0].name is None
    assert from_path.to_payload() == from_bytes.to_payload()


def test_repr_of_a_request_with_a_large_image_is_short(tmp_path):
    """The repr names the file and its size, never its content."""
    path = tmp_path / "big.png"
    path.write_bytes(png(8, 8, padding=4 * 1024 * 1024))
    request = KlingRequest("a", images=[path])
    assert "LocalImage('big.png', image/png, 4.0 MiB, 8x8)" in repr(request)
    assert len(repr(request)) < 400


# --- errors while reading, naming the field ----------------------------------------------------


def test_a_missing_file_is_refused_naming_the_image_field(tmp_path):
    """A missing file among the images is refused as that image, naming the file."""
    missing = tmp_path / "nope.png"
    with pytest.raises(RequestValidationError) as info:
        GrokRequest("a", images=[URL, missing])
    assert (info.value.field, info.value.value) == ("images[1]", missing)
    assert str(missing) in info.value.allowed


def test_a_file_that_is_not_an_image_is_refused_by_content(tmp_path):
    """A GIF named frame.png is refused as a GIF in the field it was given as."""
    path = tmp_path / "frame.png"
    path.write_bytes(b"GIF89a" + b"\x00" * 10)
    with pytest.raises(RequestValidationError) as info:
        SeedanceRequest("a", reference_images=[path])
    assert info.value.field == "reference_images[0]"
    assert info.value.allowed.endswith("frame.png is a GIF")


def test_bytes_that_spell_a_url_are_refused_as_bytes():
    """A URL given as bytes is refused with a hint to decode it, not read as an image."""
    with pytest.raises(RequestValidationError) as info:
        GrokRequest("a", images=[b"https://example.com/a.png"])
    assert info.value.allowed == "an http(s) URL or a data: URI as a str, not bytes (decode them)"


def test_a_path_as_a_string_is_refused_with_a_hint(frame):
    """A file name given as a str is not a URL: the error says to pass a pathlib.Path."""
    with pytest.raises(RequestValidationError) as info:
        GrokRequest("a", images=[str(frame)])
    assert f"pass pathlib.Path({str(frame)!r})" in info.value.allowed


@pytest.mark.parametrize("value", [3, None, 1.5])
def test_other_image_values_are_refused(value):
    """An image that is neither a string, a path nor bytes is refused."""
    with pytest.raises(RequestValidationError) as info:
        GrokRequest("a", images=[value])
    assert info.value.field == "images[0]"
    assert "pathlib.Path or bytes" in info.value.allowed


# --- routes that take URLs only ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "hint"),
    [
        (VeoRequest, "VeoVideosRequest(input_reference=...)"),
        (SoraRequest, "SoraVideosRequest(input_reference=...)"),
        (ViduRequest, "upload the file and pass its URL"),
        (JimengRequest, "upload the file and pass its URL"),
    ],
)
@pytest.mark.parametrize("given", ["path", "bytes"])
def test_unified_routes_that_take_urls_refuse_local_images(frame, cls, hint, given):
    """Veo, Sora, Vidu and Jimeng on the unified route refuse local images, saying what to do."""
    image = frame if given == "path" else frame.read_bytes()
    with pytest.raises(RequestValidationError) as info:
        cls("a", images=[image])
    assert info.value.field == "images[0]"
    assert info.value.allowed.startswith("an http(s) URL or a data: URI: the unified ")
    assert hint in info.value.allowed
    assert len(str(info.value)) < 400


def test_url_only_routes_still_send_data_uri_strings_as_given():
    """A data: URI given as a string is sent unchanged, as before."""
    uri = data_uri(png())
    assert VeoRequest("a", images=[uri]).to_payload()["images"] == [uri]


# --- the OpenAI-format input_reference -----------------------------------------------------------


@pytest.mark.parametrize("cls", [SoraVideosRequest, VeoVideosRequest])
def test_a_local_input_reference_is_a_multipart_file_part(frame, cls):
    """A local input_reference is sent as the file part input_reference, not in the fields."""
    request = cls("a", input_reference=frame, size="720x1280", seconds="8")
    assert request.files() == (
        Upload("input_reference", "frame.png", frame.read_bytes(), "image/png"),
    )
    payload = request.to_payload()
    assert "input_reference" not in payload
    assert payload["size"] == "720x1280"


@pytest.mark.parametrize("cls", [SoraVideosRequest, VeoVideosRequest])
def test_a_url_input_reference_is_a_json_field(cls):
    """A URL input_reference is sent as a JSON field, with no file parts."""
    request = cls("a", input_reference=URL)
    assert request.to_payload()["input_reference"] == URL
    assert request.files() == ()


def test_bytes_as_input_reference_are_sent_under_a_name_from_their_type():
    """Bytes have no name: the file part is named image.png (from the content's type)."""
    (upload,) = SoraVideosRequest("a", input_reference=png()).files()
    assert (upload.filename, upload.content_type) == ("image.png", "image/png")


def test_sora_input_reference_must_have_the_video_size(frame):
    """A local Sora reference image of other pixels than the size given is refused."""
    with pytest.raises(RequestValidationError) as info:
        SoraVideosRequest("a", input_reference=frame, size="1280x720")
    assert info.value.field == "input_reference"
    assert info.value.allowed == (
        "an image of 1280x720 pixels, the video's size; frame.png is 720x1280"
    )


def test_sora_input_reference_without_a_size_is_not_checked(frame):
    """With no size given, the reference image's pixel size is left to the gateway."""
    request = SoraVideosRequest("a", input_reference=frame)
    assert request.files()[0].filename == "frame.png"


def test_a_bad_input_reference_is_refused_as_such(tmp_path):
    """A missing input_reference file is refused naming input_reference and the file."""
    with pytest.raises(RequestValidationError) as info:
        VeoVideosRequest("a", input_reference=tmp_path / "none.png")
    assert info.value.field == "input_reference"
    assert "none.png" in info.value.allowed


# --- the gateway's body limit --------------------------------------------------------------------


def big_png(tmp_path: Path, name: str, size: int) -> Path:
    """A PNG file of about ``size`` bytes."""
    path = tmp_path / name
    path.write_bytes(png(2, 2, padding=size))
    return path


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda images: GrokRequest("a", images=images), "images"),
        (lambda images: KlingRequest("a", images=images), "images"),
        (lambda images: SeedanceRequest("a", reference_images=images), "reference_images"),
        (lambda images: VideoRequest("hailuo-02", "a", images=images, route="openai"), "images"),
    ],
    ids=["grok", "kling", "seedance", "video"],
)
def test_a_json_body_over_the_limit_is_refused_naming_the_limit(tmp_path, build, field):
    """Two 3.5 MiB images as base64 are over the 8 MiB body limit: refused, naming them."""
    images = [big_png(tmp_path, f"{n}.png", 3_500_000) for n in (1, 2)]
    with pytest.raises(RequestValidationError) as info:
        build(images)
    error = info.value
    assert error.field == field
    assert [image.name for image in error.value] == ["1.png", "2.png"]
    assert "a request body of at most 8.0 MiB" in error.allowed
    assert "base64" in error.allowed
    assert len(str(error)) < 600


def test_a_json_body_under_the_limit_is_accepted_and_measured_exactly(tmp_path):
    """A body just under the limit is accepted; its real size is what was estimated."""
    request = GrokRequest("a", images=[big_png(tmp_path, "a.png", 6_000_000)])
    assert len(json.dumps(request.to_payload())) <= MAX_BODY_BYTES


def test_the_estimate_is_the_real_json_size(tmp_path):
    """The body size computed without encoding equals the length of the JSON sent."""
    images = [big_png(tmp_path, "a.png", 1000), URL, big_png(tmp_path, "b.png", 77)]
    request = GrokRequest("@img1 ünïcode", images=images, extra={"tag": "é"})
    rendered: list[LocalImage] = []

    def measure(image: LocalImage) -> str:
        rendered.append(image)
        return ""

    estimate = len(json.dumps(request._body(measure))) + sum(
        image.data_uri_length for image in rendered
    )
    assert estimate == len(json.dumps(request.to_payload()))


def test_a_multipart_file_is_measured_raw(tmp_path):
    """A 7 MiB input_reference fits the body limit as a file part, though not as base64."""
    path = big_png(tmp_path, "a.png", 7 * 1024 * 1024)
    assert SoraVideosRequest("a", input_reference=path).files()[0].filename == "a.png"
    with pytest.raises(RequestValidationError) as info:
        GrokRequest("a", images=[path])
    assert "9.3 MiB" in info.value.allowed


def test_a_file_over_the_image_limit_is_refused_before_the_body(tmp_path):
    """An image over 10 MiB is refused as that image, naming the file and 10 MiB."""
    path = tmp_path / "huge.png"
    with path.open("wb") as file:
        file.write(png())
        file.truncate(11 * 1024 * 1024)
    with pytest.raises(RequestValidationError) as info:
        SoraVideosRequest("a", input_reference=path)
    assert (info.value.field, info.value.value) == ("input_reference", path)
    assert info.value.allowed == "an image of at most 10.0 MiB; huge.png is 11.0 MiB"


def test_a_huge_extra_is_refused_by_the_body_limit():
    """The limit is on the whole body: a huge extra field is refused as well."""
    extra: dict[str, Any] = {"notes": "x" * (MAX_BODY_BYTES + 1)}
    with pytest.raises(RequestValidationError) as info:
        VideoRequest("hailuo-02", "a", extra=extra)
    assert (info.value.field, info.value.value) == ("request", "<a body of 8.0 MiB>")
    assert "a request body of at most 8.0 MiB" in info.value.allowed
