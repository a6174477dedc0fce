"""The OpenAI-format (Sora, Veo, Kling) and native (Seedance) families: their exact bodies and
their validation, fields that must agree included."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from octovid import RequestValidationError
from octovid._requests import (
    KlingRequest,
    Request,
    SeedanceRequest,
    SoraVideosRequest,
    VeoVideosRequest,
)

A = "https://example.com/a.png"
B = "https://example.com/b.png"
V = "https://example.com/motion.mp4"
S = "https://example.com/voice.mp3"

# --- exact bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "payload"),
    [
        (SoraVideosRequest("a cat"), {"model": "sora-2", "prompt": "a cat"}),
        (VeoVideosRequest("a cat"), {"model": "veo_3_1-fast", "prompt": "a cat"}),
        (KlingRequest("a cat"), {"model": "Kling-3.0-Omni", "prompt": "a cat"}),
        (SeedanceRequest("a cat"), {"model": "doubao-seedance-2-0-260128",
                                    "content": [{"type": "text", "text": "a cat"}]}),
    ],
    ids=["sora", "veo", "kling", "seedance"],
)
def test_defaults_give_the_minimal_body(request_, payload):
    """With only a prompt, each new family sends its default model and nothing else."""
    assert request_.to_payload() == payload


def test_the_gateway_example_for_sora_on_v1_videos_is_reproduced():
    """The documented OpenAI-format Sora body (docs.octopusx.ai) is reproduced exactly."""
    metadata = {"output_config": {"aspect_ratio": "9:16", "audio_generation": "Disabled",
                                  "resolution": "720P"}}
    request = SoraVideosRequest(
        "Cat nodding its head to music, heavy rain", size="720x1280", seconds="10",
        input_reference="data:image/png;base64,BASE64_IMAGE", extra={"metadata": metadata},
    )
    assert request.to_payload() == {
        "model": "sora-2", "prompt": "Cat nodding its head to music, heavy rain",
        "size": "720x1280", "seconds": "10",
        "input_reference": "data:image/png;base64,BASE64_IMAGE", "metadata": metadata,
    }


def test_the_gateway_example_for_kling_is_reproduced():
    """The documented Kling body: seconds and metadata.output_config's resolution and ratio."""
    prompt = "Cyberpunk city night scene, the camera slowly pushes in"
    request = KlingRequest(prompt, seconds="5", resolution="720p", aspect_ratio="16:9")
    assert request.to_payload() == {
        "model": "Kling-3.0-Omni", "prompt": prompt, "seconds": "5",
        "metadata": {"output_config": {"aspect_ratio": "16:9", "resolution": "720P"}},
    }


def test_kling_sends_every_field_under_its_wire_name():
    """Kling's first frame is image, its last frame and its options are in metadata."""
    camera = {"type": "simple", "config": {"zoom": 5}}
    request = KlingRequest(
        "a fox", model="kling-v2-master", images=[A, B], seconds=10, negative_prompt="blur",
        mode="PRO", cfg_scale=0.5, camera_control=camera,
        extra={"metadata": {"scene_type": "outdoor", "output_config": {"fps": 30}}},
    )
    assert request.to_payload() == {
        "model": "kling-v2-master", "prompt": "a fox", "seconds": "10", "image": A,
        "metadata": {"last_frame_url": B, "negative_prompt": "blur", "mode": "pro",
                     "cfg_scale": 0.5, "camera_control": camera, "scene_type": "outdoor",
                     "output_config": {"fps": 30}},
    }


def test_kling_merges_output_config_from_extra_with_its_own():
    """metadata.output_config from extra joins the one the fields make."""
    request = KlingRequest("a", aspect_ratio="1:1",
                           extra={"metadata": {"output_config": {"audio_generation": "Enabled"}}})
    assert request.to_payload()["metadata"] == {
        "output_config": {"aspect_ratio": "1:1", "audio_generation": "Enabled"}
    }


def test_veo_videos_sends_its_fields():
    """VeoVideosRequest sends seconds, size, input_reference and enable_upsample as given."""
    request = VeoVideosRequest("dance", model="veo_3_1", seconds=8, size="1280X720",
                               input_reference=A, enable_upsample=True)
    assert request.to_payload() == {
        "model": "veo_3_1", "prompt": "dance", "seconds": "8", "size": "1280x720",
        "input_reference": A, "enable_upsample": True,
    }


def test_seedance_sends_content_with_roles_and_metadata():
    """The prompt and the media go in content with their roles; the options in metadata."""
    request = SeedanceRequest(
        "fruit tea ad", reference_images=[A, B], reference_videos=[V], reference_audios=S,
        duration=8, resolution="720P", ratio="adaptive", seed=-1, camera_fixed=False,
        watermark=False, generate_audio=True, return_last_frame=True,
        extra={"metadata": {"service_tier": "flex"}, "callback_url": "https://hook.example/x"},
    )
    assert request.to_payload() == {
        "model": "doubao-seedance-2-0-260128",
        "content": [
            {"type": "text", "text": "fruit tea ad"},
            {"type": "image_url", "image_url": {"url": A}, "role": "reference_image"},
            {"type": "image_url", "image_url": {"url": B}, "role": "reference_image"},
            {"type": "video_url", "video_url": {"url": V}, "role": "reference_video"},
            {"type": "audio_url", "audio_url": {"url": S}, "role": "reference_audio"},
        ],
        "metadata": {"duration": 8, "resolution": "720p", "ratio": "adaptive", "seed": -1,
                     "camera_fixed": False, "watermark": False, "generate_audio": True,
                     "return_last_frame": True, "service_tier": "flex"},
        "callback_url": "https://hook.example/x",
    }


@pytest.mark.parametrize(
    ("images", "roles"), [([A], ["first_frame"]), ([A, B], ["first_frame", "last_frame"])]
)
def test_seedance_images_are_the_first_and_last_frame(images, roles):
    """One image is the first frame; two are the first and the last frame."""
    content = SeedanceRequest("a", images=images, duration=5).to_payload()["content"]
    assert [item.get("role") for item in content[1:]] == roles
    assert [item["image_url"]["url"] for item in content[1:]] == images


def test_seedance_takes_asset_references():
    """asset:// references from the gateway's media library are images too."""
    request = SeedanceRequest("a", reference_images=["asset://abc123"])
    assert request.to_payload()["content"][1]["image_url"] == {"url": "asset://abc123"}


@pytest.mark.parametrize(
    ("cls", "kwargs", "sent"),
    [
        (SoraVideosRequest, {"seconds": 12}, "12"),
        (SoraVideosRequest, {"seconds": "8"}, "8"),
        (SoraVideosRequest, {"model": "sora-2-pro", "seconds": 25}, "25"),
        (VeoVideosRequest, {"seconds": 6}, "6"),
        (KlingRequest, {"model": "Kling-3.0-Omni", "seconds": 3}, "3"),
        (KlingRequest, {"model": "kling-v2-6", "seconds": "10"}, "10"),
    ],
)
def test_seconds_are_a_string_on_the_wire(cls, kwargs, sent):
    """An int or str number of seconds is sent as a string."""
    assert cls("a", **kwargs).to_payload()["seconds"] == sent


@pytest.mark.parametrize(
    ("model", "size"),
    [("sora-2", "720x1280"), ("sora-2", "1280x720"), ("sora-2-pro", "1024x1792"),
     ("sora-2-pro", "1792x1024"), ("SORA-2-PRO", "1792X1024")],
)
def test_sora_videos_accepts_its_sizes(model, size):
    """Sora takes 720x1280 and 1280x720; sora-2-pro also 1024x1792 and 1792x1024."""
    assert SoraVideosRequest("a", model=model, size=size).to_payload()["size"] == size.lower()


# --- refused values -----------------------------------------------------------------------------

FLAG = ["True", "False"]

INVALID: list[tuple[type[Request], dict[str, Any], str, list[str]]] = [
    # Sora on /v1/videos
    (SoraVideosRequest, {"size": "1920x1080"}, "size", ["720x1280", "1792x1024"]),
    (SoraVideosRequest, {"size": "1792x1024"}, "size", ["720x1280, 1280x720 for sora-2",
                                                        "sora-2-pro"]),
    (SoraVideosRequest, {"size": "large"}, "size", ["WxH", "SoraRequest"]),
    (SoraVideosRequest, {"seconds": "20"}, "seconds", ["4, 8, 10, 12, 15", "sora-2-pro"]),
    (SoraVideosRequest, {"seconds": "25"}, "seconds", ["4, 8, 10, 12, 15", "also 25"]),
    (SoraVideosRequest, {"seconds": 8.0}, "seconds", ["4, 8"]),
    (SoraVideosRequest, {"seconds": True}, "seconds", ["4, 8"]),
    (SoraVideosRequest, {"input_reference": "frame.png"}, "input_reference",
     ["http(s)", "pathlib.Path('frame.png')"]),
    (SoraVideosRequest, {"model": "veo_3_1"}, "model", ["sora", "VeoVideosRequest"]),
    (SoraVideosRequest, {"size": "1280x720",
                         "extra": {"metadata": {"output_config": {"aspect_ratio": "9:16"}}}},
     "extra", ["16:9", "size 1280x720"]),
    (SoraVideosRequest, {"extra": {"metadata": {"output_config": {"aspect_ratio": "16:9"}}}},
     "extra", ["9:16", "size 720x1280"]),
    (SoraVideosRequest, {"extra": {"seconds": "4"}}, "extra", ["seconds"]),
    # Veo on /v1/videos
    (VeoVideosRequest, {"size": "1920x1080"}, "size", ["720x1280, 1280x720"]),
    (VeoVideosRequest, {"seconds": "10"}, "seconds", ["4, 6, 8"]),
    (VeoVideosRequest, {"enable_upsample": True}, "enable_upsample", ["1280x720", "default"]),
    (VeoVideosRequest, {"size": "720x1280", "enable_upsample": True}, "enable_upsample",
     ["1280x720"]),
    (VeoVideosRequest, {"enable_upsample": "yes"}, "enable_upsample", FLAG),
    (VeoVideosRequest, {"model": "sora-2"}, "model", ["veo", "SoraVideosRequest"]),
    # Kling
    (KlingRequest, {"seconds": "16"}, "seconds", ["3, 4", "15", "Kling-3.0-Omni"]),
    (KlingRequest, {"model": "Kling-2.6", "seconds": "15"}, "seconds", ["5, 10", "Kling-2.6"]),
    (KlingRequest, {"model": "kling-v1", "seconds": 7}, "seconds", ["5, 10"]),
    (KlingRequest, {"images": [A, B, A]}, "images", ["at most 2", "first and last frame"]),
    (KlingRequest, {"aspect_ratio": "4:3"}, "aspect_ratio", ["16:9, 9:16, 1:1"]),
    (KlingRequest, {"resolution": "4k"}, "resolution", ["720P, 1080P"]),
    (KlingRequest, {"mode": "turbo"}, "mode", ["std, pro"]),
    (KlingRequest, {"cfg_scale": 1.5}, "cfg_scale", ["0 to 1"]),
    (KlingRequest, {"cfg_scale": "0.5"}, "cfg_scale", ["0 to 1"]),
    (KlingRequest, {"cfg_scale": float("nan")}, "cfg_scale", ["0 to 1"]),
    (KlingRequest, {"negative_prompt": "x" * 2501}, "negative_prompt", ["2500"]),
    (KlingRequest, {"negative_prompt": ""}, "negative_prompt", ["non-empty"]),
    (KlingRequest, {"prompt": "x" * 2501}, "prompt", ["2500"]),
    (KlingRequest, {"camera_control": "zoom"}, "camera_control", ["simple"]),
    (KlingRequest, {"camera_control": {"type": "simple", "speed": 1}}, "camera_control",
     ["simple"]),
    (KlingRequest, {"camera_control": {"type": "orbit"}}, "camera_control.type",
     ["simple, down_back"]),
    (KlingRequest, {"camera_control": {"type": "down_back", "config": {"zoom": 1}}},
     "camera_control.config", ["only simple"]),
    (KlingRequest, {"camera_control": {"type": "simple"}}, "camera_control.config",
     ["horizontal, vertical, pan, tilt, roll, zoom"]),
    (KlingRequest, {"camera_control": {"type": "simple", "config": {"spin": 1}}},
     "camera_control.config", ["horizontal"]),
    (KlingRequest, {"camera_control": {"type": "simple", "config": {"zoom": 11}}},
     "camera_control.config.zoom", ["-10 to 10"]),
    (KlingRequest, {"camera_control": {"type": "simple", "config": {"zoom": 1, "pan": 2}}},
     "camera_control.config", ["exactly one", "zoom, pan"]),
    (KlingRequest, {"camera_control": {"type": "simple", "config": {"zoom": 0}}},
     "camera_control.config", ["exactly one", "none"]),
    (KlingRequest, {"images": [A], "extra": {"image": B}}, "extra", ["image"]),
    (KlingRequest, {"negative_prompt": "blur",
                    "extra": {"metadata": {"negative_prompt": "noise"}}}, "extra",
     ["negative_prompt"]),
    (KlingRequest, {"aspect_ratio": "1:1",
                    "extra": {"metadata": {"output_config": {"aspect_ratio": "16:9"}}}},
     "extra", ["output_config", "aspect_ratio"]),
    (KlingRequest, {"negative_prompt": "blur", "extra": {"metadata": "x"}}, "extra",
     ["mapping"]),
    (KlingRequest, {"model": "veo3.1"}, "model", ["kling", "VeoVideosRequest"]),
    # Seedance
    (SeedanceRequest, {"images": [A, B, A]}, "images", ["at most 2"]),
    (SeedanceRequest, {"reference_images": [A] * 10}, "reference_images", ["at most 9"]),
    (SeedanceRequest, {"model": "doubao-seedance-1-0-lite-i2v", "reference_images": [A] * 5},
     "reference_images", ["at most 4"]),
    (SeedanceRequest, {"reference_videos": [V] * 4}, "reference_videos", ["at most 3"]),
    (SeedanceRequest, {"reference_videos": ["motion.mp4"]}, "reference_videos[0]", ["http(s)"]),
    (SeedanceRequest, {"model": "doubao-seedance-1-5-pro-251215", "reference_videos": [V]},
     "reference_videos", ["Seedance 2.0"]),
    (SeedanceRequest, {"images": [A], "reference_images": [B]}, "images",
     ["reference_images", "cannot be combined"]),
    (SeedanceRequest, {"images": [A], "reference_videos": [V]}, "images", ["reference_videos"]),
    (SeedanceRequest, {"reference_audios": [S]}, "reference_audios", ["image or video"]),
    (SeedanceRequest, {"duration": 3}, "duration", ["4 to 15", "-1"]),
    (SeedanceRequest, {"duration": 16}, "duration", ["4 to 15"]),
    (SeedanceRequest, {"duration": 5.0}, "duration", ["integer"]),
    (SeedanceRequest, {"model": "doubao-seedance-1-0-pro-250528", "duration": 15}, "duration",
     ["2 to 12"]),
    (SeedanceRequest, {"model": "doubao-seedance-1-0-pro-250528", "duration": -1}, "duration",
     ["2 to 12"]),
    (SeedanceRequest, {"resolution": "2k"}, "resolution", ["480p, 720p, 1080p"]),
    (SeedanceRequest, {"model": "doubao-seedance-2-0-fast-260128", "resolution": "1080p"},
     "resolution", ["480p or 720p", "fast"]),
    (SeedanceRequest, {"ratio": "2:1"}, "ratio", ["adaptive", "21:9"]),
    (SeedanceRequest, {"seed": -2}, "seed", ["-1 to 4294967295"]),
    (SeedanceRequest, {"seed": 2**32}, "seed", ["-1 to 4294967295"]),
    (SeedanceRequest, {"camera_fixed": "no"}, "camera_fixed", FLAG),
    (SeedanceRequest, {"model": "doubao-seedance-1-0-pro-250528", "generate_audio": True},
     "generate_audio", ["1.5 or 2.0"]),
    (SeedanceRequest, {"duration": 5, "extra": {"metadata": {"duration": 6}}}, "extra",
     ["duration"]),
    (SeedanceRequest, {"extra": {"content": []}}, "extra", ["content"]),
    (SeedanceRequest, {"model": "kling-v2"}, "model", ["seedance", "KlingRequest"]),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "field", "allowed"),
    INVALID,
    ids=[f"{row[0].__name__}-{row[2]}-{i}" for i, row in enumerate(INVALID)],
)
def test_invalid_values_are_refused_naming_field_and_allowed_values(cls, kwargs, field, allowed):
    """An invalid request raises RequestValidationError naming the field, value and allowed."""
    arguments = {"prompt": "a cat surfing", **kwargs}
    with pytest.raises(RequestValidationError) as info:
        cls(**arguments)
    error = info.value
    assert error.field == field
    assert str(error).startswith(f"{field}={error.value!r} is not allowed: ")
    for fragment in allowed:
        assert fragment in error.allowed


@pytest.mark.parametrize(
    ("model", "seconds"),
    [("Kling-3.0-Omni", "15"), ("kling-v3", "3"), ("Kling-2.5", "5"), ("kling-v1-6", "10")],
)
def test_kling_accepts_its_durations(model, seconds):
    """Kling takes 5 or 10 seconds, Kling 3.0 any from 3 to 15."""
    assert KlingRequest("a", model=model, seconds=seconds).seconds == seconds


@pytest.mark.parametrize(
    "camera",
    [{"type": "forward_up"}, {"type": "left_turn_forward", "config": None},
     {"type": "simple", "config": {"pan": -10, "zoom": 0}}],
)
def test_kling_accepts_its_camera_controls(camera):
    """A simple camera with one movement, and the other types without a config, are accepted."""
    assert KlingRequest("a", camera_control=camera).to_payload()["metadata"]["camera_control"] == (
        camera
    )


@pytest.mark.parametrize(
    ("model", "duration"),
    [("doubao-seedance-2-0-260128", 4), ("doubao-seedance-2-0-260128", 15),
     ("seedance-2.0", -1), ("doubao-seedance-1-0-pro-250528", 2),
     ("doubao-seedance-1-5-pro-251215", 12), ("seedance_2_0_fast", 15),
     ("doubao-seedance-pro", 2), ("doubao-seedance-pro", 15), ("doubao-seedance-pro", -1)],
)
def test_seedance_accepts_its_durations(model, duration):
    """Seedance 2.0 takes 4 to 15 seconds or -1, earlier versions 2 to 12, unversioned both."""
    assert SeedanceRequest("a", model=model, duration=duration).to_payload()["metadata"] == {
        "duration": duration
    }


def test_seedance_audio_with_a_reference_video_is_accepted():
    """Reference audio beside a reference video (no image) is accepted."""
    request = SeedanceRequest("a", reference_videos=[V], reference_audios=[S])
    assert [item["role"] for item in request.to_payload()["content"][1:]] == [
        "reference_video", "reference_audio"
    ]


def test_kling_camera_control_is_a_read_only_copy():
    """The camera_control given is copied: changing the original does not change the request."""
    camera: dict[str, Any] = {"type": "simple", "config": {"zoom": 5}}
    request = KlingRequest("a", camera_control=camera)
    camera["config"]["zoom"] = 9
    assert request.to_payload()["metadata"]["camera_control"] == {
        "type": "simple", "config": {"zoom": 5}
    }
    with pytest.raises(TypeError):
        request.camera_control["type"] = "down_back"  # type: ignore[index]


@pytest.mark.parametrize("cls", [SoraVideosRequest, VeoVideosRequest, KlingRequest,
                                 SeedanceRequest])
def test_new_families_are_frozen_and_equal_by_value(cls):
    """The new families are frozen; two built alike are equal and hash alike."""
    one, two = cls("a", extra={"tag": "x"}), cls("a", extra={"tag": "x"})
    assert one == two
    assert hash(one) == hash(two)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        one.prompt = "b"  # type: ignore[misc]
