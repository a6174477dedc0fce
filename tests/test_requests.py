"""Request families (PROTOCOL.md section 2): validation at construction, exact JSON bodies."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from octovid import (
    GrokRequest,
    JimengRequest,
    Request,
    RequestValidationError,
    SoraRequest,
    VeoRequest,
    VideoRequest,
    ViduRequest,
    request_from_dict,
)
from octovid._requests import KlingRequest, SeedanceRequest

A = "https://example.com/a.png"
B = "https://example.com/b.png"
PNG = "data:image/png;base64,iVBORw0KGgo="
FRAMES = ["https://example.com/frame-1.png", "https://example.com/frame-2.png"]

# The request bodies of the two seed documents (shared/seeds/*.txt), verbatim.
SEED_VEO = {
    "prompt": "The cow flew into the sky",
    "model": "veo3.1-fast-components",
    "images": FRAMES,
    "orientation": "landscape",
    "size": "1280x720",
    "duration": 8,
    "aspect_ratio": "16:9",
    "enable_upsample": False,
}
SEED_SORA = {
    "images": [],
    "model": "sora-2",
    "orientation": "portrait",
    "prompt": "make animate",
    "size": "large",
    "duration": 15,
    "watermark": False,
    "private": True,
    "storyboard": False,
}


def build(cls: type[Request], **kwargs: Any) -> Request:
    """Construct ``cls`` with a valid prompt unless one is given."""
    kwargs.setdefault("prompt", "a cat surfing")
    if cls is VideoRequest:
        kwargs.setdefault("model", "kling-v2")
    return cls(**kwargs)


# --- exact payloads -------------------------------------------------------------------------


def test_seed_veo_request_reproduces_the_seed_body():
    """The Veo seed's request body is reproduced exactly by a VeoRequest."""
    request = VeoRequest(
        "The cow flew into the sky",
        model="veo3.1-fast-components",
        images=FRAMES,
        orientation="landscape",
        size="1280x720",
        duration=8,
        aspect_ratio="16:9",
        enable_upsample=False,
    )
    assert request.to_payload() == SEED_VEO


def test_seed_sora_request_reproduces_the_seed_body():
    """The Sora seed's request body is reproduced exactly by a SoraRequest."""
    request = SoraRequest(
        "make animate",
        model="sora-2",
        images=[],
        orientation="portrait",
        size="large",
        duration=15,
        watermark=False,
        private=True,
        storyboard=False,
    )
    assert request.to_payload() == SEED_SORA


@pytest.mark.parametrize("body", [SEED_VEO, SEED_SORA], ids=["veo", "sora"])
def test_seed_bodies_load_and_reproduce_through_request_from_dict(body):
    """request_from_dict on a seed body gives a request whose payload is that body."""
    request = request_from_dict(body)
    assert request.to_payload() == body
    assert dict(request.extra) == {}


@pytest.mark.parametrize(
    ("request_", "payload"),
    [
        (
            VeoRequest("a cat"),
            {"model": "veo3.1-fast", "prompt": "a cat", "images": [], "orientation": "portrait",
             "size": "720x1280", "aspect_ratio": "9:16", "duration": 8},
        ),
        (
            SoraRequest("a cat"),
            {"model": "sora-2", "prompt": "a cat", "images": [], "orientation": "portrait",
             "size": "small", "duration": 10},
        ),
        (GrokRequest("a cat"), {"model": "grok-video-3", "prompt": "a cat", "images": []}),
        (ViduRequest("a cat"), {"model": "viduq2-pro", "prompt": "a cat", "images": []}),
        (JimengRequest("a cat"), {"model": "jimeng-video-3.0", "prompt": "a cat", "images": []}),
        (VideoRequest("kling-v2", "a cat"), {"model": "kling-v2", "prompt": "a cat", "images": []}),
    ],
    ids=["veo", "sora", "grok", "vidu", "jimeng", "video"],
)
def test_defaults_give_the_minimal_body(request_, payload):
    """Each family with only a prompt sends its default model and default fields, nothing else."""
    assert request_.to_payload() == payload


@pytest.mark.parametrize(
    ("request_", "payload"),
    [
        (
            GrokRequest("@img1 walks to @img2", model="grok-video-3", images=[A, B],
                        aspect_ratio="3:2", size="1080p", duration=15),
            {"model": "grok-video-3", "prompt": "@img1 walks to @img2", "images": [A, B],
             "aspect_ratio": "3:2", "size": "1080P", "duration": 15},
        ),
        (
            ViduRequest("a fox", model="viduq3-pro", images=[A], aspect_ratio="4:3", duration=5,
                        resolution="1080P", seed=0, audio=True, bgm=False, off_peak=True,
                        watermark=False, extra={"voice_id": "v1", "wm_position": 3}),
            {"model": "viduq3-pro", "prompt": "a fox", "images": [A], "aspect_ratio": "4:3",
             "duration": 5, "resolution": "1080p", "seed": 0, "audio": True, "bgm": False,
             "off_peak": True, "watermark": False, "voice_id": "v1", "wm_position": 3},
        ),
        (
            JimengRequest("a fox", model="jimeng-video-2.0", images=[A, B], aspect_ratio="21:9",
                          size="720p"),
            {"model": "jimeng-video-2.0", "prompt": "a fox", "images": [A, B],
             "aspect_ratio": "21:9", "size": "720P"},
        ),
        (
            SoraRequest("a fox", model="sora-2-pro", orientation="landscape", size="LARGE",
                        duration=25, style="Anime", watermark=True),
            {"model": "sora-2-pro", "prompt": "a fox", "images": [], "orientation": "landscape",
             "size": "large", "duration": 25, "style": "anime", "watermark": True},
        ),
        (
            VeoRequest("a fox", model="veo3.1", size="1280x720", duration=6,
                       enable_upsample=True, enhance_prompt=False),
            {"model": "veo3.1", "prompt": "a fox", "images": [], "orientation": "landscape",
             "size": "1280x720", "aspect_ratio": "16:9", "duration": 6, "enable_upsample": True,
             "enhance_prompt": False},
        ),
        (
            VideoRequest("kling-v2", "a fox", images=[PNG], extra={"mode": "pro", "cfg": 0.5}),
            {"model": "kling-v2", "prompt": "a fox", "images": [PNG], "mode": "pro", "cfg": 0.5},
        ),
    ],
    ids=["grok", "vidu", "jimeng", "sora-pro", "veo-landscape", "video"],
)
def test_full_requests_give_the_exact_body(request_, payload):
    """Every field given lands in the body under its wire name, normalised where documented."""
    assert request_.to_payload() == payload


@pytest.mark.parametrize(
    ("request_", "payload"),
    [
        (GrokRequest("a", aspect_ratio=None, size=None, duration=None),
         {"model": "grok-video-3", "prompt": "a", "images": []}),
        (JimengRequest("a", aspect_ratio=None, size=None),
         {"model": "jimeng-video-3.0", "prompt": "a", "images": []}),
        (ViduRequest("a", seed=None, audio=None, watermark=False, bgm=False),
         {"model": "viduq2-pro", "prompt": "a", "images": [], "watermark": False, "bgm": False}),
        (ViduRequest("a", seed=0), {"model": "viduq2-pro", "prompt": "a", "images": [], "seed": 0}),
        (VeoRequest("a", enable_upsample=None, enhance_prompt=False),
         {"model": "veo3.1-fast", "prompt": "a", "images": [], "orientation": "portrait",
          "size": "720x1280", "aspect_ratio": "9:16", "duration": 8, "enhance_prompt": False}),
    ],
    ids=["grok", "jimeng", "vidu-keeps-false", "vidu-keeps-zero", "veo"],
)
def test_none_fields_are_omitted_but_false_is_kept(request_, payload):
    """Fields left None are left out of the body; False and 0 are values and are sent."""
    assert request_.to_payload() == payload


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (VeoRequest, {"duration": None}, "duration"),
        (SoraRequest, {"orientation": None}, "orientation"),
        (SoraRequest, {"size": None}, "size"),
        (SoraRequest, {"duration": None}, "duration"),
    ],
)
def test_fields_the_gateway_requires_are_never_omitted(cls, kwargs, key):
    """A field the seed marks required is either sent (its default) or None is refused."""
    try:
        handled = key in build(cls, **kwargs).to_payload()
    except RequestValidationError as error:
        handled = error.field == key  # refusing None is as good a fix as sending the default
    assert handled


def test_extra_is_passed_through_unchanged():
    """Keys of ``extra`` appear in the body with their values as given; no "extra" key."""
    extra = {"callback_url": "https://hook.example/x", "meta": {"tags": ["a", 1, None]}, "n": 2}
    payload = VideoRequest("kling-v2", "a", extra=extra).to_payload()
    assert payload == {"model": "kling-v2", "prompt": "a", "images": [], **extra}
    assert json.loads(json.dumps(payload)) == payload


# --- Veo ------------------------------------------------------------------------------------

LANDSCAPE = {"orientation": "landscape", "size": "1280x720", "aspect_ratio": "16:9"}
PORTRAIT = {"orientation": "portrait", "size": "720x1280", "aspect_ratio": "9:16"}


@pytest.mark.parametrize(
    ("given", "shape"),
    [
        ({}, PORTRAIT),
        ({"orientation": "portrait"}, PORTRAIT),
        ({"size": "720x1280"}, PORTRAIT),
        ({"aspect_ratio": "9:16"}, PORTRAIT),
        ({"orientation": "landscape"}, LANDSCAPE),
        ({"size": "1280x720"}, LANDSCAPE),
        ({"aspect_ratio": "16:9"}, LANDSCAPE),
        ({"size": "1280x720", "aspect_ratio": "16:9"}, LANDSCAPE),
        (LANDSCAPE, LANDSCAPE),
    ],
)
def test_veo_shape_is_derived_from_whichever_field_is_given(given, shape):
    """Veo's orientation, size and aspect_ratio are all sent, derived from any one of them."""
    payload = VeoRequest("a", **given).to_payload()
    assert {key: payload[key] for key in shape} == shape


@pytest.mark.parametrize(
    "given",
    [{"size": "1280x720", "aspect_ratio": "9:16"}, {"size": "720x1280", "aspect_ratio": "16:9"}],
)
def test_veo_size_and_ratio_that_disagree_are_rejected(given):
    """A Veo size and aspect_ratio of different shapes are refused, naming both shapes."""
    with pytest.raises(RequestValidationError) as info:
        VeoRequest("a", **given)
    assert info.value.field in given
    assert info.value.value == given[info.value.field]
    assert "portrait = 720x1280 = 9:16" in str(info.value)
    assert "landscape = 1280x720 = 16:9" in str(info.value)


@pytest.mark.parametrize(
    ("model", "count"),
    [("veo2-fast-frames", 2), ("veo2-fast-components", 3), ("veo3.1-fast-components", 3)],
)
def test_veo_accepts_its_image_limit(model, count):
    """``*-frames`` Veo models take 2 images, ``*-components`` models 3."""
    images = [f"https://example.com/{i}.png" for i in range(count)]
    assert VeoRequest("a", model=model, images=images).images == tuple(images)


def test_veo_enable_upsample_with_landscape_is_sent():
    """enable_upsample=True is accepted with a landscape shape and sent."""
    payload = VeoRequest("a", aspect_ratio="16:9", enable_upsample=True).to_payload()
    assert (payload["enable_upsample"], payload["orientation"]) == (True, "landscape")


def test_veo_enable_upsample_false_is_allowed_in_portrait():
    """enable_upsample=False needs no landscape shape."""
    assert VeoRequest("a", enable_upsample=False).to_payload()["enable_upsample"] is False


# --- Sora, Grok, Vidu, Jimeng: accepted values ------------------------------------------------


@pytest.mark.parametrize(
    ("model", "duration"),
    [("sora-2", 10), ("sora-2", 15), ("sora-2", 25), ("sora-2-pro", 25), ("sora-2-pro", 35)],
)
def test_sora_accepts_its_durations(model, duration):
    """Sora takes 10, 15 or 25 seconds; sora-2-pro also longer."""
    assert SoraRequest("a", model=model, duration=duration).to_payload()["duration"] == duration


@pytest.mark.parametrize(
    "style", ["thanksgiving", "comic", "news", "selfie", "nostalgic", "anime", "COMIC"]
)
def test_sora_accepts_each_style_in_any_case(style):
    """Every documented Sora style is accepted, sent in lower case."""
    assert SoraRequest("a", style=style).to_payload()["style"] == style.lower()


@pytest.mark.parametrize(
    ("kwargs", "sent"),
    [
        *[({"aspect_ratio": r}, {"aspect_ratio": r}) for r in ("16:9", "9:16", "2:3", "3:2")],
        ({"aspect_ratio": "1:1"}, {"aspect_ratio": "1:1"}),
        ({"size": "720p"}, {"size": "720P"}),
        ({"size": "720P"}, {"size": "720P"}),
        ({"size": "1080p"}, {"size": "1080P"}),
        *[({"duration": d}, {"duration": d}) for d in (6, 10, 15)],
        ({"model": "grok-video-3-pro", "duration": 10}, {"duration": 10}),
        ({"model": "grok-video-3-max", "duration": 15}, {"duration": 15}),
        ({"model": "GROK-VIDEO-3-MAX", "duration": 15}, {"duration": 15}),
        ({"model": "grok-video-3-pro"}, {}),
    ],
)
def test_grok_accepts_its_values(kwargs, sent):
    """Grok's aspect ratios, sizes (any case, sent upper) and durations are accepted."""
    payload = GrokRequest("a", **kwargs).to_payload()
    assert {key: payload.get(key) for key in ("aspect_ratio", "size", "duration")} == {
        "aspect_ratio": None, "size": None, "duration": None, **sent
    }


def test_grok_accepts_six_images_and_their_references():
    """Grok takes up to 6 images, referenced as @img1..@img6."""
    images = [f"https://example.com/{i}.png" for i in range(6)]
    prompt = " ".join(f"@img{i}" for i in range(1, 7))
    assert GrokRequest(prompt, images=images).to_payload()["images"] == images


@pytest.mark.parametrize(
    ("model", "ratio"),
    [("viduq2-pro", "3:4"), ("viduq2-turbo", "4:3"), ("viduq3-pro", "3:4"), ("viduq1", "1:1"),
     ("vidu2.0", "9:16"), ("viduq1-classic", "16:9")],
)
def test_vidu_accepts_its_ratios(model, ratio):
    """Vidu takes 16:9, 9:16 and 1:1 everywhere, and 3:4, 4:3 on viduq2 and viduq3."""
    assert ViduRequest("a", model=model, aspect_ratio=ratio).to_payload()["aspect_ratio"] == ratio


@pytest.mark.parametrize(
    ("given", "sent"), [("720p", "720p"), ("1080P", "1080p"), ("540p", "540p")]
)
def test_vidu_resolution_is_sent_lower_case(given, sent):
    """A Vidu resolution such as 1080P is accepted and sent as 1080p."""
    assert ViduRequest("a", resolution=given).to_payload()["resolution"] == sent


def test_vidu_accepts_a_2000_character_prompt_and_two_images():
    """Vidu's limits are inclusive: 2000 characters, 2 images."""
    request = ViduRequest("x" * 2000, images=[A, B])
    assert (len(request.prompt), request.images) == (2000, (A, B))


@pytest.mark.parametrize("ratio", ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9"])
def test_jimeng_accepts_each_ratio(ratio):
    """Every documented Jimeng aspect ratio is accepted."""
    assert JimengRequest("a", aspect_ratio=ratio).to_payload()["aspect_ratio"] == ratio


@pytest.mark.parametrize("image", [A, "http://example.com/a.png", "data:image/png;base64,AAAA"])
def test_images_may_be_http_urls_or_data_uris(image):
    """Images are http(s) URLs or data: URIs, sent as a list."""
    assert VeoRequest("a", images=(image,)).to_payload()["images"] == [image]


# --- rejected values --------------------------------------------------------------------------

FAMILIES = [VeoRequest, SoraRequest, GrokRequest, ViduRequest, JimengRequest, VideoRequest]
FLAG = ["True", "False"]
TWO_IMAGES = [A, B]
THREE_IMAGES = [A, B, "https://example.com/c.png"]

INVALID = [
    # Veo
    (VeoRequest, {"orientation": "square"}, "orientation", ["portrait", "landscape"]),
    (VeoRequest, {"orientation": "Landscape"}, "orientation", ["portrait", "landscape"]),
    (VeoRequest, {"size": "1920x1080"}, "size", ["720x1280", "1280x720"]),
    (VeoRequest, {"aspect_ratio": "1:1"}, "aspect_ratio", ["9:16", "16:9"]),
    (VeoRequest, {"orientation": "landscape", "size": "720x1280"}, "size", ["1280x720"]),
    (VeoRequest, {"orientation": "portrait", "aspect_ratio": "16:9"}, "aspect_ratio", ["9:16"]),
    (VeoRequest, {"enable_upsample": True}, "enable_upsample", ["landscape"]),
    (VeoRequest, {"size": "720x1280", "enable_upsample": True}, "enable_upsample", ["landscape"]),
    (VeoRequest, {"orientation": "landscape", "enable_upsample": "yes"}, "enable_upsample", FLAG),
    (VeoRequest, {"enhance_prompt": 1}, "enhance_prompt", FLAG),
    (VeoRequest, {"duration": 0}, "duration", ["integer", ">= 1"]),
    (VeoRequest, {"duration": "8"}, "duration", ["integer"]),
    (VeoRequest, {"model": "veo2-fast-frames", "images": THREE_IMAGES}, "images", ["2"]),
    (VeoRequest, {"model": "veo2-fast-components", "images": [*THREE_IMAGES, A]}, "images", ["3"]),
    # Sora
    (SoraRequest, {"orientation": "square"}, "orientation", ["portrait", "landscape"]),
    (SoraRequest, {"size": "medium"}, "size", ["small", "large"]),
    (SoraRequest, {"duration": 12}, "duration", ["10, 15, 25"]),
    (SoraRequest, {"duration": 35}, "duration", ["10, 15, 25", "sora-2-pro"]),
    (SoraRequest, {"model": "sora-2-pro", "duration": 12}, "duration", ["10, 15, 25", "longer"]),
    (SoraRequest, {"style": "noir"}, "style",
     ["thanksgiving", "comic", "news", "selfie", "nostalgic", "anime"]),
    (SoraRequest, {"watermark": "no"}, "watermark", FLAG),
    (SoraRequest, {"private": 1}, "private", FLAG),
    (SoraRequest, {"storyboard": "true"}, "storyboard", FLAG),
    # Grok
    (GrokRequest, {"aspect_ratio": "4:3"}, "aspect_ratio", ["16:9", "9:16", "2:3", "3:2", "1:1"]),
    (GrokRequest, {"size": "480p"}, "size", ["720P", "1080P"]),
    (GrokRequest, {"duration": 8}, "duration", ["6, 10, 15"]),
    (GrokRequest, {"model": "grok-video-3-pro", "duration": 15}, "duration", ["10"]),
    (GrokRequest, {"model": "grok-video-3-max", "duration": 10}, "duration", ["15"]),
    (GrokRequest, {"images": [*THREE_IMAGES, *THREE_IMAGES, A]}, "images", ["6"]),
    (GrokRequest, {"prompt": "@img1 meets @img3", "images": TWO_IMAGES}, "prompt",
     ["@img1", "@img2"]),
    (GrokRequest, {"prompt": "@img1 dances"}, "prompt", ["0 images"]),
    (GrokRequest, {"prompt": "@img0 dances", "images": [A]}, "prompt", ["@img1"]),
    # Vidu
    (ViduRequest, {"images": THREE_IMAGES}, "images", ["2"]),
    (ViduRequest, {"prompt": "x" * 2001}, "prompt", ["2000"]),
    (ViduRequest, {"model": "viduq1", "aspect_ratio": "3:4"}, "aspect_ratio",
     ["16:9", "9:16", "1:1", "viduq2", "viduq3"]),
    (ViduRequest, {"model": "vidu2.0", "aspect_ratio": "4:3"}, "aspect_ratio",
     ["16:9", "9:16", "1:1"]),
    (ViduRequest, {"model": "viduq2-pro", "aspect_ratio": "21:9"}, "aspect_ratio",
     ["16:9", "9:16", "1:1", "3:4", "4:3"]),
    (ViduRequest, {"resolution": "hd"}, "resolution", ["720p", "1080p"]),
    (ViduRequest, {"resolution": "720"}, "resolution", ["720p"]),
    (ViduRequest, {"resolution": 720}, "resolution", ["720p"]),
    (ViduRequest, {"seed": -1}, "seed", [">= 0"]),
    (ViduRequest, {"seed": 1.0}, "seed", ["integer"]),
    (ViduRequest, {"seed": True}, "seed", ["integer"]),
    (ViduRequest, {"seed": "7"}, "seed", ["integer"]),
    (ViduRequest, {"duration": 0}, "duration", [">= 1"]),
    (ViduRequest, {"audio": "yes"}, "audio", FLAG),
    (ViduRequest, {"bgm": 1}, "bgm", FLAG),
    (ViduRequest, {"off_peak": "false"}, "off_peak", FLAG),
    (ViduRequest, {"watermark": 0}, "watermark", FLAG),
    # Jimeng
    (JimengRequest, {"aspect_ratio": "2:3"}, "aspect_ratio",
     ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9"]),
    (JimengRequest, {"size": "4k"}, "size", ["720P", "1080P"]),
    (JimengRequest, {"images": THREE_IMAGES}, "images", ["2"]),
    # wrong family
    (VeoRequest, {"model": "sora-2"}, "model", ["veo", "SoraRequest"]),
    (SoraRequest, {"model": "veo3.1"}, "model", ["sora", "VeoRequest"]),
    (GrokRequest, {"model": "viduq1"}, "model", ["grok", "ViduRequest"]),
    (ViduRequest, {"model": "jimeng-video-3.0"}, "model", ["vidu", "JimengRequest"]),
    (JimengRequest, {"model": "grok-video-3"}, "model", ["jimeng", "GrokRequest"]),
    (VeoRequest, {"model": "kling-v2"}, "model", ["veo", "VideoRequest"]),
    (VideoRequest, {"model": ""}, "model", ["model name"]),
    (VideoRequest, {"model": "   "}, "model", ["model name"]),
    # prompt, images and extra, for every family
    *[(cls, {"prompt": p}, "prompt", ["non-empty"]) for cls in FAMILIES for p in ("", "  ")],
    *[(cls, {"prompt": None}, "prompt", ["non-empty"]) for cls in (VeoRequest, VideoRequest)],
    *[(cls, {"images": ["ftp://example.com/a.png"]}, "images[0]", ["http(s)", "data:"])
      for cls in FAMILIES],
    (SoraRequest, {"images": [A, "/tmp/b.png"]}, "images[1]", ["http(s)", "data:"]),
    (VideoRequest, {"images": [b"https://example.com/a.png"]}, "images[0]", ["http(s)"]),
    (VeoRequest, {"images": "example.com/a.png"}, "images[0]", ["http(s)"]),
    (VeoRequest, {"extra": {"duration": 5}}, "extra", ["duration"]),
    (SoraRequest, {"extra": {"size": "large", "x": 1}}, "extra", ["size"]),
    (VideoRequest, {"extra": {"prompt": "other"}}, "extra", ["prompt"]),
    (ViduRequest, {"extra": {"seed": 1}}, "extra", ["seed"]),
    (GrokRequest, {"extra": {"when": object()}}, "extra", ["JSON"]),
    (JimengRequest, {"extra": {"x": float("nan")}}, "extra", ["JSON"]),
    (VideoRequest, {"extra": {"x": {1, 2}}}, "extra", ["JSON"]),
    (VideoRequest, {"extra": [("a", 1)]}, "extra", ["mapping"]),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "field", "allowed"),
    INVALID,
    ids=[f"{row[0].__name__}-{row[2]}-{i}" for i, row in enumerate(INVALID)],
)
def test_invalid_values_are_rejected_naming_field_and_allowed_values(cls, kwargs, field, allowed):
    """An invalid request raises RequestValidationError (a ValueError) naming field and allowed."""
    with pytest.raises(RequestValidationError) as info:
        build(cls, **kwargs)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.field == field
    message = str(error)
    assert field in message
    assert repr(error.value) in message
    for fragment in allowed:
        assert fragment in error.allowed
        assert fragment in message


@pytest.mark.parametrize(
    ("cls", "kwargs", "value"),
    [
        (SoraRequest, {"duration": 12}, 12),
        (GrokRequest, {"aspect_ratio": "4:3"}, "4:3"),
        (ViduRequest, {"seed": -1}, -1),
        (VeoRequest, {"images": ["ftp://x"]}, "ftp://x"),
        (JimengRequest, {"size": "4k"}, "4K"),
    ],
)
def test_validation_error_carries_the_value_given(cls, kwargs, value):
    """``RequestValidationError.value`` is the (normalised) value that was refused."""
    with pytest.raises(RequestValidationError) as info:
        build(cls, **kwargs)
    assert info.value.value == value
    assert str(info.value).startswith(f"{info.value.field}={value!r}")


BAD_NUMBERS = [
    pytest.param(VeoRequest, {"duration": 10.0}, id="veo-float"),
    pytest.param(VeoRequest, {"duration": True}, id="veo-bool"),
    pytest.param(ViduRequest, {"duration": 5.0}, id="vidu-float"),
    pytest.param(ViduRequest, {"duration": True}, id="vidu-bool"),
    pytest.param(SoraRequest, {"duration": True}, id="sora-bool"),
    pytest.param(GrokRequest, {"duration": True}, id="grok-bool"),
    pytest.param(SoraRequest, {"duration": 10.0}, id="sora-float"),
    pytest.param(GrokRequest, {"duration": 10.0}, id="grok-float"),
    pytest.param(GrokRequest, {"model": "grok-video-3-max", "duration": 15.0}, id="grok-max-float"),
]


@pytest.mark.parametrize(("cls", "kwargs"), BAD_NUMBERS)
def test_floats_and_bools_are_not_integers(cls, kwargs):
    """A float or bool where an int is required is rejected, even when it equals an allowed int."""
    with pytest.raises(RequestValidationError) as info:
        build(cls, **kwargs)
    assert info.value.field == "duration"


def test_veo_unhashable_orientation_is_a_validation_error():
    """An unhashable orientation is refused as orientation, not with a TypeError."""
    with pytest.raises(RequestValidationError) as info:
        VeoRequest("a", orientation=["landscape"])
    assert info.value.field == "orientation"


# --- request_from_dict ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "cls"),
    [
        ("veo3.1-fast", VeoRequest),
        ("VEO2-fast-frames", VeoRequest),
        ("sora-2-pro", SoraRequest),
        ("Sora-2", SoraRequest),
        ("grok-video-3-max", GrokRequest),
        ("viduq1", ViduRequest),
        ("Vidu2.0", ViduRequest),
        ("jimeng-video-2.0", JimengRequest),
        ("kling-v2", KlingRequest),
        ("Kling-2.6", KlingRequest),
        ("seedance-2", SeedanceRequest),
        ("doubao-seedance-1-5-pro-251215", SeedanceRequest),
        ("hailuo-02", VideoRequest),
        ("wan2.5-t2v", VideoRequest),
    ],
)
def test_request_from_dict_picks_the_family_by_model_prefix(model, cls):
    """The family is chosen by the model's prefix, in any case; unknown models -> VideoRequest."""
    request = request_from_dict({"model": model, "prompt": "a"})
    assert type(request) is cls
    assert request.model == model


def test_request_from_dict_moves_unknown_keys_into_extra_and_merges_extra():
    """Keys that are not fields go to ``extra``, merged with an explicit "extra" mapping."""
    request = request_from_dict({
        "model": "viduq2-pro", "prompt": "a", "seed": 3, "voice_id": "v1",
        "extra": {"wm_url": "https://example.com/wm.png"},
    })
    assert request == ViduRequest(
        "a", seed=3, extra={"voice_id": "v1", "wm_url": "https://example.com/wm.png"}
    )
    assert request.to_payload() == {
        "model": "viduq2-pro", "prompt": "a", "images": [], "seed": 3, "voice_id": "v1",
        "wm_url": "https://example.com/wm.png",
    }


def test_request_from_dict_unknown_model_keeps_every_key():
    """A VideoRequest built from a dict sends every key it was given."""
    data = {"model": "hailuo-02", "prompt": "a", "images": [A], "mode": "pro", "duration": 5}
    request = request_from_dict(data)
    assert dict(request.extra) == {"mode": "pro", "duration": 5}
    assert request.to_payload() == data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (["model", "veo3.1"], "request"),
        ("veo3.1", "request"),
        (None, "request"),
        ({"prompt": "a"}, "model"),
        ({"model": "", "prompt": "a"}, "model"),
        ({"model": 3, "prompt": "a"}, "model"),
        ({"model": "veo3.1"}, "prompt"),
        ({"model": "veo3.1", "prompt": ""}, "prompt"),
        ({"model": "veo3.1", "prompt": "a", "extra": ["x"]}, "extra"),
        ({"model": "veo3.1", "prompt": "a", "extra": {"size": "1280x720"}}, "extra"),
        ({"model": "sora-2", "prompt": "a", "duration": 12}, "duration"),
        ({"model": "grok-video-3", "prompt": "a", "size": "4K"}, "size"),
    ],
)
def test_request_from_dict_rejects_bad_input(data, field):
    """A non-mapping, a missing model or prompt, or a bad field raises RequestValidationError."""
    with pytest.raises(RequestValidationError) as info:
        request_from_dict(data)
    assert info.value.field == field


# --- value semantics --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", FAMILIES)
def test_requests_are_frozen(cls):
    """Requests cannot be changed after construction."""
    request = build(cls)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.prompt = "something else"  # type: ignore[misc]
    assert request.prompt == "a cat surfing"


@pytest.mark.parametrize("cls", FAMILIES)
def test_equal_requests_are_equal_and_hash_alike(cls):
    """Two requests built alike are equal, hash alike (extra included) and dedupe in a set."""
    one = build(cls, images=[A], extra={"tag": "x"})
    two = build(cls, images=(A,), extra={"tag": "x"})
    assert one == two
    assert hash(one) == hash(two)
    assert len({one, two}) == 1


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (VeoRequest("a"), VeoRequest("b")),
        (VeoRequest("a", extra={"x": 1}), VeoRequest("a", extra={"x": 2})),
        (SoraRequest("a"), SoraRequest("a", duration=15)),
        (VideoRequest("m", "a"), VideoRequest("n", "a")),
    ],
)
def test_different_requests_are_not_equal(one, two):
    """Requests that differ in any field, extra included, are not equal."""
    assert one != two
    assert len({one, two}) == 2


# --- round trip (property) --------------------------------------------------------------------

IMAGE = st.sampled_from([A, B, "data:image/png;base64,AAAA"])
PROMPT = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and "@img" not in s)
EXTRA = st.dictionaries(
    st.sampled_from(["callback_url", "tag", "n", "flags"]),
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.lists(st.integers()),
    max_size=3,
)


def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    """None or one of ``values``."""
    return st.none() | st.sampled_from(values)


VALID_REQUESTS = st.one_of(
    st.builds(
        VeoRequest, PROMPT, model=st.sampled_from(["veo3.1-fast", "veo3.1", "veo2-fast-frames"]),
        images=st.lists(IMAGE, max_size=2), orientation=maybe(["portrait", "landscape"]),
        duration=st.sampled_from([4, 8]), enhance_prompt=maybe([True, False]), extra=EXTRA,
    ),
    st.builds(
        SoraRequest, PROMPT, model=st.sampled_from(["sora-2", "sora-2-pro"]),
        images=st.lists(IMAGE, max_size=2), orientation=st.sampled_from(["portrait", "landscape"]),
        size=st.sampled_from(["small", "large"]), duration=st.sampled_from([10, 15, 25]),
        watermark=maybe([True, False]), private=maybe([True, False]),
        style=maybe(["comic", "anime"]), storyboard=maybe([True, False]), extra=EXTRA,
    ),
    st.builds(
        GrokRequest, PROMPT, images=st.lists(IMAGE, max_size=6),
        aspect_ratio=maybe(["16:9", "9:16", "2:3", "3:2", "1:1"]), size=maybe(["720P", "1080P"]),
        duration=maybe([6, 10, 15]), extra=EXTRA,
    ),
    st.builds(
        ViduRequest, PROMPT, model=st.sampled_from(["viduq2-pro", "viduq1"]),
        images=st.lists(IMAGE, max_size=2), aspect_ratio=maybe(["16:9", "9:16", "1:1"]),
        duration=maybe([4, 5, 8]), resolution=maybe(["720p", "1080p"]),
        seed=st.none() | st.integers(min_value=0), audio=maybe([True, False]), extra=EXTRA,
    ),
    st.builds(
        JimengRequest, PROMPT, images=st.lists(IMAGE, max_size=2),
        aspect_ratio=maybe(["16:9", "21:9", "1:1"]), size=maybe(["720P", "1080P"]), extra=EXTRA,
    ),
    st.builds(
        VideoRequest, st.sampled_from(["hailuo-02", "wan2.5-t2v"]), PROMPT,
        images=st.lists(IMAGE, max_size=3), extra=EXTRA,
    ),
)


@given(VALID_REQUESTS)
def test_request_from_dict_round_trips_the_payload(request_):
    """request_from_dict(req.to_payload()) is the same family and gives the same JSON body."""
    payload = request_.to_payload()
    again = request_from_dict(json.loads(json.dumps(payload)))
    assert type(again) is type(request_)
    assert again.to_payload() == payload
