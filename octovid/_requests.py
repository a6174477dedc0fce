"""The request families of ``POST /v1/video/create`` and their validation.

Each family is a frozen attrs class that checks its fields at construction, so a request that the
gateway would refuse never leaves the process. ``to_payload()`` gives the exact JSON body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, cast

import attrs

from ._errors import RequestValidationError
from ._routes import Route, create_path

__all__ = [
    "GrokRequest",
    "JimengRequest",
    "Request",
    "SoraRequest",
    "Upload",
    "VeoRequest",
    "VideoRequest",
    "ViduRequest",
    "request_from_dict",
]

_CORE_FIELDS = ("model", "prompt", "images")


def _images(value: Iterable[str] | str) -> tuple[str, ...]:
    # A lone string is almost always a mistake for [string]; keep it visible to validation.
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return (value,)  # type: ignore[return-value,unused-ignore]
    return tuple(value)


def _extra(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RequestValidationError("extra", value, "a mapping of extra JSON fields")
    if not all(isinstance(name, str) for name in value):
        raise RequestValidationError("extra", dict(value), "string keys only")
    try:  # a deep copy, and proof that it is JSON
        copied = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RequestValidationError("extra", dict(value), "JSON values only") from exc
    return MappingProxyType(copied)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _fields(cls: type[Request]) -> dict[str, attrs.Attribute[Any]]:
    return attrs.fields_dict(cast("type[attrs.AttrsInstance]", cls))


def _join(values: Collection[object]) -> str:
    return ", ".join(str(v) for v in values)


def _choice(field: str, value: object, allowed: Collection[object]) -> None:
    if value is None:
        return
    kinds = {type(option) for option in allowed}
    if type(value) not in kinds or value not in allowed:  # 10.0 is not 10, [] is not a word
        raise RequestValidationError(field, value, f"one of {_join(allowed)}")


def _flag(field: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise RequestValidationError(field, value, "True, False or None")


def _integer(field: str, value: object, *, minimum: int = 1) -> None:
    if value is not None and (type(value) is not int or value < minimum):
        raise RequestValidationError(field, value, f"an integer >= {minimum}")


@attrs.frozen
class Upload:
    """A file part of a multipart create (the OpenAI-format route's ``input_reference``)."""

    field: str
    filename: str
    content: bytes = attrs.field(repr=lambda content: f"<{len(content)} bytes>")
    content_type: str


class Request:
    """The base of every request family: a body for ``POST /v1/video/create``."""

    __slots__ = ()
    family: ClassVar[str] = ""
    route: ClassVar[Route] = Route.UNIFIED  #: the route family it is created and queried on
    model: str
    prompt: str
    images: tuple[str, ...]
    extra: Mapping[str, Any]

    def to_payload(self) -> dict[str, Any]:
        """Return the exact JSON body of ``POST /v1/video/create`` for this request."""
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "images": list(self.images),
        }
        for name in _fields(type(self)):
            if name not in _CORE_FIELDS and name != "extra":
                value = getattr(self, name)
                if value is not None:
                    payload[name] = value
        payload.update(self._derived())
        payload.update(self.extra)
        return payload

    @property
    def create_path(self) -> str:
        """The gateway path this request is created on."""
        return create_path(self.route)

    def files(self) -> tuple[Upload, ...]:
        """The file parts of a multipart create; none: the body is JSON."""
        return ()

    def _derived(self) -> dict[str, Any]:
        """Values the gateway requires that are derived from the fields; none by default."""
        return {}

    def __attrs_post_init__(self) -> None:
        self._check_common()
        self._validate()

    def _validate(self) -> None:
        """Check the family's own fields."""

    def _check_common(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise RequestValidationError("model", self.model, "a non-empty model name")
        prefix = self.family
        if prefix and not self.model.lower().startswith(prefix):
            other = _family_of(self.model)
            hint = f"octovid.{other.__name__}" if other else "octovid.VideoRequest"
            raise RequestValidationError(
                "model", self.model,
                f"a {prefix} model (e.g. {self._example_model()}); use {hint} for {self.model}",
            )
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RequestValidationError("prompt", self.prompt, "a non-empty string")
        for index, image in enumerate(self.images):
            if not isinstance(image, str) or not image.startswith(
                ("http://", "https://", "data:")
            ):
                raise RequestValidationError(
                    f"images[{index}]", image, "an http(s) URL or a data: URI"
                )
        reserved = [name for name in self.extra if name in _fields(type(self))]
        if reserved:
            raise RequestValidationError(
                "extra", dict(self.extra),
                f"no keys that are fields of their own ({_join(reserved)})",
            )

    def _max_images(self, limit: int, meaning: str) -> None:
        if len(self.images) > limit:
            raise RequestValidationError(
                "images", list(self.images), f"at most {limit} for {self.model} ({meaning})"
            )

    @classmethod
    def _example_model(cls) -> str:
        default = _fields(cls)["model"].default
        return str(default)


# --- Veo ------------------------------------------------------------------------------------

_VEO_SHAPES = {  # orientation -> (size, aspect ratio); the three must agree
    "portrait": ("720x1280", "9:16"),
    "landscape": ("1280x720", "16:9"),
}


@attrs.frozen
class VeoRequest(Request):
    """Veo (``veo3.1-fast``, ``veo3.1``, ``veo2-fast-frames``...).

    ``orientation``, ``size`` and ``aspect_ratio`` describe one shape: give any of them and the
    others are derived (portrait = 720x1280 = 9:16, the default; landscape = 1280x720 = 16:9).
    ``enable_upsample`` needs landscape. ``*-frames`` models take at most 2 images (first and
    last frame), ``*-components`` models at most 3.
    """

    family: ClassVar[str] = "veo"

    prompt: str
    model: str = attrs.field(default="veo3.1-fast", kw_only=True)
    images: tuple[str, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    orientation: str | None = attrs.field(default=None, kw_only=True)
    size: str | None = attrs.field(default=None, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    duration: int | None = attrs.field(default=8, kw_only=True)
    enable_upsample: bool | None = attrs.field(default=None, kw_only=True)
    enhance_prompt: bool | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _validate(self) -> None:
        _choice("orientation", self.orientation, _VEO_SHAPES)
        _choice("size", self.size, [size for size, _ in _VEO_SHAPES.values()])
        _choice("aspect_ratio", self.aspect_ratio, [ratio for _, ratio in _VEO_SHAPES.values()])
        orientation = self._orientation()
        size, ratio = _VEO_SHAPES[orientation]
        for field, value, wanted in (
            ("size", self.size, size), ("aspect_ratio", self.aspect_ratio, ratio)
        ):
            if value is not None and value != wanted:
                raise RequestValidationError(
                    field, value, f"{wanted}, to agree with {orientation} "
                    "(portrait = 720x1280 = 9:16, landscape = 1280x720 = 16:9)"
                )
        _integer("duration", self.duration)
        _flag("enable_upsample", self.enable_upsample)
        _flag("enhance_prompt", self.enhance_prompt)
        if self.enable_upsample and orientation != "landscape":
            raise RequestValidationError(
                "enable_upsample", True, "only with landscape (1280x720, 16:9)"
            )
        model = self.model.lower()
        if "frames" in model:
            self._max_images(2, "first and last frame")
        else:
            self._max_images(3, "reference images")

    def _orientation(self) -> str:
        if isinstance(self.orientation, str) and self.orientation in _VEO_SHAPES:
            return self.orientation
        for orientation, (size, ratio) in _VEO_SHAPES.items():
            if self.size == size or self.aspect_ratio == ratio:
                return orientation
        return "portrait"

    def _derived(self) -> dict[str, Any]:
        orientation = self._orientation()
        size, ratio = _VEO_SHAPES[orientation]
        return {"orientation": orientation, "size": size, "aspect_ratio": ratio,
                "duration": 8 if self.duration is None else self.duration}


# --- Sora -----------------------------------------------------------------------------------

_SORA_STYLES = ("thanksgiving", "comic", "news", "selfie", "nostalgic", "anime")
_SORA_DURATIONS = (10, 15, 25)


@attrs.frozen
class SoraRequest(Request):
    """Sora (``sora-2``, ``sora-2-pro``): 10, 15 or 25 seconds (``sora-2-pro`` also longer)."""

    family: ClassVar[str] = "sora"

    prompt: str
    model: str = attrs.field(default="sora-2", kw_only=True)
    images: tuple[str, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    orientation: str | None = attrs.field(default="portrait", kw_only=True)
    size: str | None = attrs.field(default="small", converter=_lower, kw_only=True)
    duration: int | None = attrs.field(default=10, kw_only=True)
    watermark: bool | None = attrs.field(default=None, kw_only=True)
    private: bool | None = attrs.field(default=None, kw_only=True)
    style: str | None = attrs.field(default=None, converter=_lower, kw_only=True)
    storyboard: bool | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _derived(self) -> dict[str, Any]:
        # The gateway requires these three: None means the default, not "leave it out".
        return {
            "orientation": self.orientation or "portrait",
            "size": self.size or "small",
            "duration": _SORA_DURATIONS[0] if self.duration is None else self.duration,
        }

    def _validate(self) -> None:
        _choice("orientation", self.orientation, ("portrait", "landscape"))
        _choice("size", self.size, ("small", "large"))
        pro = self.model.lower().endswith("-pro")
        _integer("duration", self.duration)
        if self.duration is not None:
            longer_ok = pro and type(self.duration) is int and self.duration > _SORA_DURATIONS[-1]
            if self.duration not in _SORA_DURATIONS and not longer_ok:
                allowed = f"one of {_join(_SORA_DURATIONS)}"
                raise RequestValidationError(
                    "duration", self.duration,
                    allowed + (" or longer" if pro else f" for {self.model} (sora-2-pro: longer)"),
                )
        _choice("style", self.style, _SORA_STYLES)
        for name in ("watermark", "private", "storyboard"):
            _flag(name, getattr(self, name))


# --- Grok -----------------------------------------------------------------------------------

_GROK_FIXED = {"grok-video-3-pro": 10, "grok-video-3-max": 15}
_IMAGE_REF = re.compile(r"@img(\d+)")


@attrs.frozen
class GrokRequest(Request):
    """Grok (``grok-video-3``; ``-pro`` is fixed at 10 s, ``-max`` at 15 s).

    Up to 6 reference images, named in the prompt as ``@img1``, ``@img2``...; two images without
    references are the first and last frame.
    """

    family: ClassVar[str] = "grok"

    prompt: str
    model: str = attrs.field(default="grok-video-3", kw_only=True)
    images: tuple[str, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    size: str | None = attrs.field(default=None, converter=_upper, kw_only=True)
    duration: int | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _validate(self) -> None:
        _choice("aspect_ratio", self.aspect_ratio, ("16:9", "9:16", "2:3", "3:2", "1:1"))
        _choice("size", self.size, ("720P", "1080P"))
        _integer("duration", self.duration)
        fixed = _GROK_FIXED.get(self.model.lower())
        if fixed is not None:
            _choice("duration", self.duration, (fixed,))
        else:
            _choice("duration", self.duration, (6, 10, 15))
        self._max_images(6, "reference images")
        for match in _IMAGE_REF.finditer(self.prompt):
            if not 1 <= int(match.group(1)) <= len(self.images):
                raise RequestValidationError(
                    "prompt", match.group(0),
                    f"image references @img1..@img{len(self.images)} for {len(self.images)} images",
                )


# --- Vidu -----------------------------------------------------------------------------------

_VIDU_RATIOS = ("16:9", "9:16", "1:1")
_VIDU_WIDE_RATIOS = ("3:4", "4:3")  # viduq2 and viduq3 only
_RESOLUTION = re.compile(r"\d{3,4}p")


@attrs.frozen
class ViduRequest(Request):
    """Vidu (``viduq3-pro``, ``viduq2-pro``, ``viduq1``, ``vidu2.0``...).

    0 images (text), 1 (image to video) or 2 (first and last frame); prompts up to 2000 characters.
    Other Vidu fields (``voice_id``, ``wm_url``, ``wm_position``, ``meta_data``, ``payload``)
    go in ``extra``.
    """

    family: ClassVar[str] = "vidu"

    prompt: str
    model: str = attrs.field(default="viduq2-pro", kw_only=True)
    images: tuple[str, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    duration: int | None = attrs.field(default=None, kw_only=True)
    resolution: str | None = attrs.field(default=None, converter=_lower, kw_only=True)
    seed: int | None = attrs.field(default=None, kw_only=True)
    audio: bool | None = attrs.field(default=None, kw_only=True)
    bgm: bool | None = attrs.field(default=None, kw_only=True)
    off_peak: bool | None = attrs.field(default=None, kw_only=True)
    watermark: bool | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _validate(self) -> None:
        if len(self.prompt) > 2000:
            raise RequestValidationError(
                "prompt", self.prompt[:40] + "…", f"at most 2000 characters, not {len(self.prompt)}"
            )
        self._max_images(2, "first and last frame")
        ratios: tuple[str, ...] = _VIDU_RATIOS
        if self.model.lower().startswith(("viduq2", "viduq3")):
            ratios += _VIDU_WIDE_RATIOS
        if self.aspect_ratio in _VIDU_WIDE_RATIOS and ratios == _VIDU_RATIOS:
            raise RequestValidationError(
                "aspect_ratio", self.aspect_ratio,
                f"one of {_join(ratios)} for {self.model} (3:4 and 4:3 need viduq2 or viduq3)",
            )
        _choice("aspect_ratio", self.aspect_ratio, ratios)
        _integer("duration", self.duration)
        if self.resolution is not None and not (
            isinstance(self.resolution, str) and _RESOLUTION.fullmatch(self.resolution)
        ):
            raise RequestValidationError("resolution", self.resolution, "e.g. 540p, 720p, 1080p")
        _integer("seed", self.seed, minimum=0)
        for name in ("audio", "bgm", "off_peak", "watermark"):
            _flag(name, getattr(self, name))


# --- Jimeng ---------------------------------------------------------------------------------


@attrs.frozen
class JimengRequest(Request):
    """Jimeng (``jimeng-video-3.0``, ``jimeng-video-2.0``): 0, 1 or 2 images (first, last frame)."""

    family: ClassVar[str] = "jimeng"

    prompt: str
    model: str = attrs.field(default="jimeng-video-3.0", kw_only=True)
    images: tuple[str, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    size: str | None = attrs.field(default=None, converter=_upper, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _validate(self) -> None:
        self._max_images(2, "first and last frame")
        _choice("aspect_ratio", self.aspect_ratio, ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9"))
        _choice("size", self.size, ("720P", "1080P"))


# --- anything else --------------------------------------------------------------------------


@attrs.frozen
class VideoRequest(Request):
    """Any other model: ``model``, ``prompt``, ``images`` and ``extra`` are sent as given."""

    model: str
    prompt: str
    images: tuple[str, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )


_FAMILIES: tuple[type[Request], ...] = (
    VeoRequest, SoraRequest, GrokRequest, ViduRequest, JimengRequest
)


def _family_of(model: str) -> type[Request] | None:
    lowered = model.lower()
    return next((family for family in _FAMILIES if lowered.startswith(family.family)), None)


def request_from_dict(data: Mapping[str, Any]) -> Request:
    """Build the request family matching ``data["model"]`` from a JSON-like mapping.

    Keys that are fields of the family become those fields; any other key goes to ``extra``
    (merged with an explicit ``"extra"`` mapping, if given). Models of no known family become a
    :class:`VideoRequest`.

    Raises:
        RequestValidationError: ``data`` is not a mapping, has no model, or a field is invalid.
    """
    if not isinstance(data, Mapping):
        raise RequestValidationError("request", data, "a JSON object with model and prompt")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise RequestValidationError("model", model, "a non-empty model name")
    if "prompt" not in data:
        raise RequestValidationError("prompt", None, "a non-empty string")
    cls: type[Request] = _family_of(model) or VideoRequest
    fields = _fields(cls)
    extra = data.get("extra", {})
    if not isinstance(extra, Mapping):
        raise RequestValidationError("extra", extra, "a mapping of extra JSON fields")
    kwargs: dict[str, Any] = {}
    extra = dict(extra)
    for name, value in data.items():
        if name == "extra":
            continue
        if name in fields:
            kwargs[name] = value
        else:
            extra[name] = value
    try:
        return cast("Any", cls)(**kwargs, extra=extra)  # type: ignore[no-any-return]
    except TypeError as exc:  # a required field is missing or a keyword is wrong
        raise RequestValidationError("request", dict(data), str(exc)) from exc
