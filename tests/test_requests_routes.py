"""Routes as a property of a request: each family's route and create path, and the choice of
family and route by request_from_dict."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octovid import RequestValidationError
from octovid._requests import (
    GrokRequest,
    JimengRequest,
    KlingRequest,
    RemixRequest,
    Request,
    SeedanceRequest,
    SoraRequest,
    SoraVideosRequest,
    VeoRequest,
    VeoVideosRequest,
    VideoRequest,
    ViduRequest,
    request_from_dict,
)
from octovid._routes import Route

A = "https://example.com/a.png"

ROUTES = [
    (VeoRequest("a"), Route.UNIFIED, "/v1/video/create"),
    (SoraRequest("a"), Route.UNIFIED, "/v1/video/create"),
    (GrokRequest("a"), Route.UNIFIED, "/v1/video/create"),
    (ViduRequest("a"), Route.UNIFIED, "/v1/video/create"),
    (JimengRequest("a"), Route.UNIFIED, "/v1/video/create"),
    (RemixRequest("grok:1", "a"), Route.UNIFIED, "/v1/video/remix"),
    (SoraVideosRequest("a"), Route.OPENAI, "/v1/videos"),
    (VeoVideosRequest("a"), Route.OPENAI, "/v1/videos"),
    (KlingRequest("a"), Route.OPENAI, "/v1/videos"),
    (SeedanceRequest("a"), Route.NATIVE, "/v1/video/generations"),
    (VideoRequest("m", "a"), Route.UNIFIED, "/v1/video/create"),
    (VideoRequest("m", "a", route="openai"), Route.OPENAI, "/v1/videos"),
    (VideoRequest("m", "a", route=Route.NATIVE), Route.NATIVE, "/v1/video/generations"),
]


@pytest.mark.parametrize(
    ("request_", "route", "path"), ROUTES, ids=[type(row[0]).__name__ for row in ROUTES]
)
def test_each_family_knows_its_route_and_create_path(request_, route, path):
    """A request's route and create_path are those of its family (a remix has its own path)."""
    assert (request_.route, request_.create_path) == (route, path)
    assert request_.files() == ()


def test_video_request_refuses_an_unknown_route():
    """VideoRequest's route is one of the three route families, by name or Route."""
    with pytest.raises(RequestValidationError) as info:
        VideoRequest("m", "a", route="sideways")
    assert (info.value.field, info.value.value) == ("route", "sideways")
    assert info.value.allowed == "one of unified, openai, native"


@pytest.mark.parametrize(
    ("request_", "payload"),
    [
        (VideoRequest("m", "a"), {"model": "m", "prompt": "a", "images": []}),
        (VideoRequest("m", "a", route="openai"), {"model": "m", "prompt": "a"}),
        (VideoRequest("m", "a", route="native", images=[A], extra={"duration": 5}),
         {"model": "m", "prompt": "a", "images": [A], "duration": 5}),
    ],
    ids=["unified", "openai", "native"],
)
def test_video_request_sends_images_on_the_unified_route_or_when_given(request_, payload):
    """The pass-through sends "images": [] on the unified route, elsewhere only images given."""
    assert request_.to_payload() == payload


def test_requests_differing_only_in_route_are_different():
    """The route is part of a VideoRequest's value."""
    assert VideoRequest("m", "a") != VideoRequest("m", "a", route="openai")
    assert len({VideoRequest("m", "a"), VideoRequest("m", "a", route="native")}) == 2


# --- remix ------------------------------------------------------------------------------------


def test_remix_sends_the_documented_body_with_its_defaults():
    """A remix sends model, prompt, size (720P), aspect_ratio (3:2) and the task id."""
    assert RemixRequest("grok:48a6", "play with a white cat").to_payload() == {
        "model": "grok-video-3", "prompt": "play with a white cat", "size": "720P",
        "aspect_ratio": "3:2", "task_id": "grok:48a6",
    }


def test_remix_sends_the_fields_given_and_extra():
    """Size (any case), aspect ratio, model and extra keys are sent as given."""
    request = RemixRequest("grok:1", "again", model="grok-video-3-pro", size="1080p",
                           aspect_ratio="1:1", extra={"parent_post_id": "5afc"})
    assert request.to_payload() == {
        "model": "grok-video-3-pro", "prompt": "again", "size": "1080P", "aspect_ratio": "1:1",
        "task_id": "grok:1", "parent_post_id": "5afc",
    }


def test_remix_none_sends_the_required_defaults():
    """None for size or aspect_ratio sends the default: the gateway requires both."""
    payload = RemixRequest("grok:1", "a", size=None, aspect_ratio=None).to_payload()
    assert (payload["size"], payload["aspect_ratio"]) == ("720P", "3:2")


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"task_id": ""}, "task_id", "Grok task"),
        ({"task_id": " grok:1"}, "task_id", "Grok task"),
        ({"task_id": 7}, "task_id", "Grok task"),
        ({"size": "4K"}, "size", "720P, 1080P"),
        ({"aspect_ratio": "16:9"}, "aspect_ratio", "2:3, 3:2, 1:1"),
        ({"model": "sora-2"}, "model", "SoraRequest"),
        ({"prompt": " "}, "prompt", "non-empty"),
        ({"extra": {"task_id": "other"}}, "extra", "task_id"),
    ],
)
def test_remix_refuses_bad_values(kwargs, field, fragment):
    """A remix of no task, a bad size or ratio, or a non-Grok model is refused."""
    arguments: dict[str, Any] = {"task_id": "grok:1", "prompt": "a", **kwargs}
    with pytest.raises(RequestValidationError) as info:
        RemixRequest(**arguments)
    assert info.value.field == field
    assert fragment in info.value.allowed


# --- request_from_dict: family and route --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "cls", "route"),
    [
        ({"model": "veo3.1-fast"}, VeoRequest, Route.UNIFIED),
        ({"model": "veo_3_1-fast", "route": "openai"}, VeoVideosRequest, Route.OPENAI),
        ({"model": "veo3.1", "route": "native"}, VideoRequest, Route.NATIVE),
        ({"model": "sora-2"}, SoraRequest, Route.UNIFIED),
        ({"model": "sora-2", "route": "unified"}, SoraRequest, Route.UNIFIED),
        ({"model": "sora-2-pro", "route": "openai"}, SoraVideosRequest, Route.OPENAI),
        ({"model": "grok-video-3"}, GrokRequest, Route.UNIFIED),
        ({"model": "grok-video-3", "route": "openai"}, VideoRequest, Route.OPENAI),
        ({"model": "grok-video-3", "task_id": "grok:1"}, RemixRequest, Route.UNIFIED),
        ({"model": "viduq2-pro", "route": "openai"}, VideoRequest, Route.OPENAI),
        ({"model": "jimeng-video-3.0", "route": "native"}, VideoRequest, Route.NATIVE),
        ({"model": "Kling-2.6"}, KlingRequest, Route.OPENAI),
        ({"model": "kling-v1", "route": "native"}, VideoRequest, Route.NATIVE),
        ({"model": "doubao-seedance-2-0-260128"}, SeedanceRequest, Route.NATIVE),
        ({"model": "doubao-seedance-1-5-pro_720p", "route": "openai"}, VideoRequest, Route.OPENAI),
        ({"model": "hailuo-02"}, VideoRequest, Route.UNIFIED),
        ({"model": "hailuo-02", "route": "native"}, VideoRequest, Route.NATIVE),
        ({"model": "hailuo-02", "route": Route.OPENAI}, VideoRequest, Route.OPENAI),
    ],
)
def test_request_from_dict_picks_the_family_by_model_and_route(data, cls, route):
    """The model picks the family, ``route`` (else the family's own route) picks the class."""
    request = request_from_dict({"prompt": "a", **data})
    assert type(request) is cls
    assert request.route is route
    assert request.model == data["model"]
    assert "route" not in request.extra
    assert "route" not in request.to_payload()


def test_a_family_on_a_route_without_its_own_class_keeps_its_fields_in_extra():
    """Grok on /v1/videos is passed through: its fields go to extra and are sent as given."""
    data = {"model": "grok-video-3", "prompt": "a", "route": "openai", "seconds": "6",
            "aspect_ratio": "2:3", "size": "720P"}
    request = request_from_dict(data)
    assert request == VideoRequest("grok-video-3", "a", route="openai",
                                   extra={"seconds": "6", "aspect_ratio": "2:3", "size": "720P"})
    assert request.to_payload() == {key: value for key, value in data.items() if key != "route"}


@pytest.mark.parametrize("model", ["kling-v2", "Kling-3.0-Omni", "doubao-seedance-2-0-260128"])
def test_request_from_dict_refuses_a_route_the_model_is_not_served_on(model):
    """Kling and Seedance on the unified route are refused, naming the routes they are on."""
    with pytest.raises(RequestValidationError) as info:
        request_from_dict({"model": model, "prompt": "a", "route": "unified"})
    assert (info.value.field, info.value.value) == ("route", "unified")
    assert f"a route {model} is served on: " in info.value.allowed
    assert "octovid.VideoRequest(" in info.value.allowed


def test_request_from_dict_refuses_an_unknown_route():
    """A route that is none of unified, openai and native is refused, listing the three."""
    with pytest.raises(RequestValidationError) as info:
        request_from_dict({"model": "sora-2", "prompt": "a", "route": "remix"})
    assert (info.value.field, info.value.allowed) == ("route", "one of unified, openai, native")


def test_request_from_dict_builds_the_new_families_from_their_fields():
    """Field names of the new families become fields; other keys go to extra."""
    request = request_from_dict({
        "model": "doubao-seedance-2-0-260128", "prompt": "a", "images": [A], "duration": 5,
        "ratio": "16:9", "frames": 121,
    })
    assert request == SeedanceRequest("a", images=[A], duration=5, ratio="16:9",
                                      extra={"frames": 121})


# --- a wrong family's error names the right one --------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "model", "hint"),
    [
        (VeoRequest, "kling-v2", "use octovid.KlingRequest for kling-v2 (on the openai route)"),
        (SoraVideosRequest, "veo_3_1", "use octovid.VeoVideosRequest for veo_3_1"),
        (KlingRequest, "sora-2", "use octovid.SoraVideosRequest for sora-2"),
        (KlingRequest, "grok-video-3", "use octovid.GrokRequest for grok-video-3 (on the unified"),
        (SeedanceRequest, "hailuo-02", "use octovid.VideoRequest for hailuo-02"),
        (SoraRequest, "doubao-seedance-2-0", "use octovid.SeedanceRequest for doubao-seedance-2-0"),
    ],
)
def test_a_model_of_another_family_is_refused_naming_its_class(cls, model, hint):
    """A model of another family names the class for it, on the same route where there is one."""
    with pytest.raises(RequestValidationError) as info:
        cls("a", model=model)
    assert info.value.field == "model"
    assert hint in info.value.allowed


# --- round trips --------------------------------------------------------------------------------

PROMPT = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and "@img" not in s)
IMAGE = st.sampled_from([A, "https://example.com/b.png", "data:image/png;base64,AAAA"])


def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    """None or one of ``values``."""
    return st.none() | st.sampled_from(values)


NEW_FAMILIES = st.one_of(
    st.builds(SoraVideosRequest, PROMPT, model=st.sampled_from(["sora-2", "sora-2-pro"]),
              input_reference=st.none() | IMAGE, seconds=maybe(["4", "8", "12"]),
              size=maybe(["720x1280", "1280x720"])),
    st.builds(VeoVideosRequest, PROMPT, input_reference=st.none() | IMAGE,
              seconds=maybe(["4", "6", "8"]), size=maybe(["720x1280"])),
    st.builds(KlingRequest, PROMPT, model=st.sampled_from(["Kling-2.6", "kling-v2-master"]),
              seconds=maybe(["5", "10"]), extra=st.just({"image": A})),
    st.builds(RemixRequest, st.sampled_from(["grok:1", "grok:2"]), PROMPT,
              size=maybe(["720P", "1080P"]), aspect_ratio=maybe(["2:3", "3:2", "1:1"])),
    st.builds(VideoRequest, st.sampled_from(["hailuo-02"]), PROMPT,
              images=st.lists(IMAGE, max_size=2), route=st.sampled_from(list(Route))),
)


@given(NEW_FAMILIES)
def test_a_payload_with_its_route_rebuilds_the_same_body(request_: Request):
    """request_from_dict(payload + route) gives a request of the same route and the same body."""
    payload = request_.to_payload()
    again = request_from_dict({**json.loads(json.dumps(payload)), "route": request_.route.value})
    assert again.route is request_.route
    assert again.to_payload() == payload
