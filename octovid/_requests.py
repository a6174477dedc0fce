"""The request families of the gateway's create routes and their validation.

Each family is a frozen attrs class that checks its fields at construction, so a request that the
gateway would refuse never leaves the process. A request knows its route (``route``: unified,
OpenAI-format or native; PROTOCOL.md section 1) and the path it is created on (``create_path``);
``to_payload()`` gives the exact JSON body and ``files()`` the multipart file parts, if any.

=====================  =========  ==========================  ===================================
family                 route      created on                  images
=====================  =========  ==========================  ===================================
VeoRequest             unified    POST /v1/video/create       URLs (0-3)
SoraRequest            unified    POST /v1/video/create       URLs
GrokRequest            unified    POST /v1/video/create       URLs or local (0-6)
ViduRequest            unified    POST /v1/video/create       URLs (0-2)
JimengRequest          unified    POST /v1/video/create       URLs (0-2)
RemixRequest           unified    POST /v1/video/remix        none (remixes a Grok task)
SoraVideosRequest      openai     POST /v1/videos             input_reference: URL, or local as a
                                                              multipart file part
VeoVideosRequest       openai     POST /v1/videos             likewise
KlingRequest           openai     POST /v1/videos             URLs or local (0-2)
SeedanceRequest        native     POST /v1/video/generations  URLs or local; reference media
VideoRequest           any        that route's create path    URLs or local, sent as given
=====================  =========  ==========================  ===================================

"Local" images are ``pathlib.Path`` or ``bytes`` (see ``_images.py``); where a family takes them
in JSON they become ``data:`` URIs. A ``data:`` URI given as a string is sent as given on every
route, as before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias, cast

import attrs

from ._errors import RequestValidationError
from ._images import (
    MAX_BODY_BYTES,
    LocalImage,
    Upload,
    describe,
    human_size,
    is_local,
    read_image,
)
from ._routes import Route, create_path

__all__ = [
    "GrokRequest",
    "JimengRequest",
    "KlingRequest",
    "LocalImage",
    "RemixRequest",
    "Request",
    "SeedanceRequest",
    "SoraRequest",
    "SoraVideosRequest",
    "Upload",
    "VeoRequest",
    "VeoVideosRequest",
    "VideoRequest",
    "ViduRequest",
    "request_from_dict",
]

#: An image as a request holds it: a URL string (or ``data:`` URI), or a checked local image.
Image: TypeAlias = str | LocalImage
#: An image as it may be given: also a path to a local file, or the image's bytes.
ImageSource: TypeAlias = str | LocalImage | os.PathLike[str] | bytes

_CORE_FIELDS = ("model", "prompt", "images", "extra", "route")
_Render = Callable[[LocalImage], str]


def _images(value: Iterable[ImageSource] | ImageSource) -> tuple[Image, ...]:
    # A lone string (or path, or bytes) is almost always a mistake for [it]; keep it visible
    # to validation. Paths and bytes are read in __attrs_post_init__, once the family is known.
    if isinstance(value, str | bytes | bytearray | memoryview) or not isinstance(value, Iterable):
        return cast("tuple[Image, ...]", (value,))
    return cast("tuple[Image, ...]", tuple(value))


def _urls(value: Iterable[str] | str) -> tuple[str, ...]:
    # Like _images, for media given by URL only (reference videos and audios).
    if isinstance(value, str | bytes | bytearray | memoryview) or not isinstance(value, Iterable):
        return cast("tuple[str, ...]", (value,))
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


def _seconds(value: Any) -> Any:
    # The OpenAI-format routes take seconds as a string; an int is the same duration.
    if type(value) is int:
        return str(value)
    return value


def _route_of(value: Any) -> Route:
    try:
        return Route(value)
    except ValueError:
        raise RequestValidationError(
            "route", value, f"one of {_join(route.value for route in Route)}"
        ) from None


def _frozen_mapping(value: Any) -> Any:
    # A mapping field of its own (camera_control): a JSON-checked, read-only copy.
    if value is None or not isinstance(value, Mapping):
        return value
    try:
        copied = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError):
        return value  # left for _validate to refuse, naming the field
    return MappingProxyType(copied)


_FIELDS: dict[type[Any], Mapping[str, attrs.Attribute[Any]]] = {}


def _fields(cls: type[Request]) -> Mapping[str, attrs.Attribute[Any]]:
    # Each construction reads them: built once a class (fields_dict builds a dict each call).
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = MappingProxyType(
            attrs.fields_dict(cast("type[attrs.AttrsInstance]", cls))
        )
    return fields


def _join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def _choice(field: str, value: object, allowed: Collection[object], why: str = "") -> None:
    if value is None:
        return
    kinds = {type(option) for option in allowed}
    if type(value) not in kinds or value not in allowed:  # 10.0 is not 10, [] is not a word
        raise RequestValidationError(field, value, f"one of {_join(allowed)}{why}")


def _flag(field: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise RequestValidationError(field, value, "True, False or None")


def _integer(field: str, value: object, *, minimum: int = 1, maximum: int | None = None) -> None:
    if value is None:
        return
    if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise RequestValidationError(field, value, f"an integer {bounds}")


def _number(field: str, value: object, low: float, high: float) -> None:
    if value is None:
        return
    if (
        type(value) not in (int, float)
        or not math.isfinite(cast("float", value))
        or not low <= cast("float", value) <= high
    ):
        raise RequestValidationError(field, value, f"a number from {low:g} to {high:g}")


def _text(field: str, value: object, *, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise RequestValidationError(field, value, "a non-empty string")
    if len(value) > limit:
        raise RequestValidationError(
            field, value[:40] + "…", f"at most {limit} characters, not {len(value)}"
        )


_RATIO_OF_SIZE = {  # the aspect ratio each OpenAI-format size has, as the gateway's docs pair them
    "720x1280": "9:16", "1280x720": "16:9", "1024x1792": "9:16", "1792x1024": "16:9",
}


def _form_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Request:
    """The base of every request family: one create on one route of the gateway.

    Attributes:
        family: The model family's name (``"veo"``); models of the family start with it.
        route: The route family the request is created on, and its task queried on.
        create_path: The path of its create.
    """

    __slots__ = ()
    family: ClassVar[str] = ""
    _route: ClassVar[Route] = Route.UNIFIED
    _prefixes: ClassVar[tuple[str, ...]] = ()  # more model prefixes of the family
    _image_fields: ClassVar[tuple[str, ...]] = ("images",)  # fields of images, each a tuple
    _image_field: ClassVar[str | None] = None  # a field of one image (input_reference)
    _schemes: ClassVar[tuple[str, ...]] = ("http://", "https://", "data:")
    #: Whether local images (paths, bytes) are accepted; if not, why (for the error).
    _local: ClassVar[bool] = True
    _local_refused: ClassVar[str] = ""
    model: str
    prompt: str
    extra: Mapping[str, Any]

    @property
    def route(self) -> Route:
        """The route family this request is created on; its task is queried on the same."""
        return self._route

    @property
    def create_path(self) -> str:
        """The path of this request's create (``POST``), e.g. ``/v1/video/create``."""
        return create_path(self.route)

    def to_payload(self) -> dict[str, Any]:
        """Return the exact JSON body of this request's create.

        When :meth:`files` is not empty, these are the form fields sent beside the files.
        """
        return self._body(LocalImage.data_uri)

    def files(self) -> tuple[Upload, ...]:
        """The file parts of a ``multipart/form-data`` create; empty for a JSON create."""
        return ()

    def _body(self, image: _Render) -> dict[str, Any]:
        """The body, rendering each local image with ``image``: the unified shape by default."""
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "images": [_wire(value, image) for value in getattr(self, "images", ())],
        }
        for name in _fields(type(self)):
            if name not in _CORE_FIELDS:
                value = getattr(self, name)
                if value is not None:
                    payload[name] = value
        payload.update(self._derived())
        return self._merge_extra(payload)

    def _derived(self) -> dict[str, Any]:
        """Values the gateway requires that are derived from the fields; none by default."""
        return {}

    def _merge_extra(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with ``extra`` added; a ``metadata`` mapping is merged into its own."""
        for name, value in self.extra.items():
            if name in payload and name == "metadata":
                payload[name] = _merge_metadata(payload[name], value, self.extra)
            elif name in payload:
                raise RequestValidationError(
                    "extra", dict(self.extra),
                    f"no key the request already sends ({name}: {self.family or 'it'} "
                    "sets it from its own fields)",
                )
            else:
                payload[name] = value
        return payload

    def __attrs_post_init__(self) -> None:
        self._check_common()
        self._resolve_images()
        self._validate()
        self._check_body()

    def _validate(self) -> None:
        """Check the family's own fields."""

    def _check_common(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise RequestValidationError("model", self.model, "a non-empty model name")
        prefixes = (self.family, *self._prefixes) if self.family else ()
        if prefixes and not self.model.lower().startswith(prefixes):
            raise RequestValidationError(
                "model", self.model,
                f"a {self.family} model (e.g. {self._example_model()}); "
                f"{_suggestion(self.model, self.route)}",
            )
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RequestValidationError("prompt", self.prompt, "a non-empty string")
        reserved = [name for name in self.extra if name in _fields(type(self))]
        if reserved:
            raise RequestValidationError(
                "extra", dict(self.extra),
                f"no keys that are fields of their own ({_join(reserved)})",
            )

    def _resolve_images(self) -> None:
        # Paths and bytes become LocalImage (read and checked) once, here; URLs are checked.
        for name in self._image_fields:
            values = getattr(self, name)
            if values:
                resolved = tuple(
                    self._image(f"{name}[{index}]", value) for index, value in enumerate(values)
                )
                object.__setattr__(self, name, resolved)
        if self._image_field is not None:
            value = getattr(self, self._image_field)
            if value is not None:
                object.__setattr__(
                    self, self._image_field, self._image(self._image_field, value)
                )

    def _image(self, field: str, value: object) -> Image:
        urls = "an http(s) URL or a data: URI"
        if "asset://" in self._schemes:
            urls = "an http(s) URL, a data: URI or an asset:// reference"
        if isinstance(value, str):
            if value.startswith(self._schemes):
                return value
            hint = ""
            if self._local and not value.startswith(("ftp:", "file:", "www.")):
                hint = f" (for a local file, pass pathlib.Path({value!r}))"
            local = ", or a pathlib.Path or bytes of a local image" if self._local else ""
            raise RequestValidationError(field, value, f"{urls}{local}{hint}")
        if isinstance(value, bytes | bytearray) and value.startswith(
            (b"http:", b"https:", b"data:")
        ):
            raise RequestValidationError(
                field, describe(value), f"{urls} as a str, not bytes (decode them)"
            )
        if is_local(value):
            if not self._local:
                raise RequestValidationError(
                    field, describe(value), f"{urls}: {self._local_refused}"
                )
            return read_image(value, field=field)
        local = ", or a pathlib.Path or bytes of a local image" if self._local else ""
        raise RequestValidationError(field, value, f"{urls}{local}")

    def _check_body(self) -> None:
        # The whole body, measured without encoding any image: the gateway's limit is on bytes.
        # Without local images or extra, a body is its strings (at most 12 bytes of JSON a
        # character: outside the BMP, a surrogate pair of \uXXXX) and a few small values:
        # most requests stop here, unmeasured.
        if not self.extra and 12 * _text_size(self) + 4096 <= MAX_BODY_BYTES:
            return
        rendered: list[LocalImage] = []

        def measure(image: LocalImage) -> str:
            rendered.append(image)
            return ""

        body = self._body(measure)
        files = self.files()
        if files:
            size = sum(
                len(name) + len(_form_text(value)) + 100 for name, value in body.items()
            ) + sum(len(part.content) + len(part.filename) + 200 for part in files)
            images: list[Any] = list(files)
            how = "its files"
        else:
            size = len(json.dumps(body)) + sum(image.data_uri_length for image in rendered)
            images = list(rendered)
            how = "its images as base64 data URIs (4/3 of their size)"
        if size > MAX_BODY_BYTES:
            holding = [
                name for name in (*self._image_fields, self._image_field)
                if name is not None and any(
                    isinstance(value, LocalImage) for value in _as_tuple(getattr(self, name))
                )
            ]
            field = holding[0] if len(holding) == 1 else None
            raise RequestValidationError(
                field or ("images" if images else "request"),
                images or f"<a body of {human_size(size)}>",
                f"a request body of at most {human_size(MAX_BODY_BYTES)} (the gateway refuses "
                f"larger ones); this one would be {human_size(size)} with {how}: send smaller "
                "images, or image URLs",
            )

    def _max_images(self, limit: int, meaning: str, field: str = "images") -> None:
        images = getattr(self, field)
        if len(images) > limit:
            raise RequestValidationError(
                field, list(images), f"at most {limit} for {self.model} ({meaning})"
            )

    @classmethod
    def _example_model(cls) -> str:
        default = _fields(cls)["model"].default
        return str(default)


def journal_payload(request: Request) -> dict[str, Any]:
    """The request as a journal keeps and compares it: its body, with each local image (a data
    URI or a file part) replaced by its type and sha256, and its route when not the unified one.

    Equal requests give equal forms and different images different ones, and a journal need not
    store an image of 20 MB per line. A unified request without local images is its body
    exactly, as journals written before local images and routes compare it.
    """
    form = request._body(_fingerprint)
    files = request.files()
    if files:
        form["files"] = {part.field: _fingerprint(part) for part in files}
    if request.route is not Route.UNIFIED:
        form["route"] = request.route.value
    return form


def _fingerprint(image: LocalImage | Upload) -> str:
    return f"{image.content_type};sha256," + hashlib.sha256(image.content).hexdigest()


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    # Only the keys that have values: an option left None is not sent.
    return {name: value for name, value in values.items() if value is not None}


def _text_size(request: Request) -> int:
    """The characters of a request's strings; a local image counts as over any limit.

    Mappings are left out: ``extra`` is measured apart, and the others are small by validation.
    """
    size = 0
    for name in _fields(type(request)):
        value = getattr(request, name)
        kind = type(value)
        if kind is str:
            size += len(value)
        elif kind is tuple:
            for item in value:
                if type(item) is not str:
                    return MAX_BODY_BYTES + 1
                size += len(item)
        elif kind is LocalImage:
            return MAX_BODY_BYTES + 1
    return size


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def _wire(value: Image, image: _Render) -> str:
    return image(value) if isinstance(value, LocalImage) else value


def _merge_metadata(own: Any, given: Any, extra: Mapping[str, Any]) -> Any:
    """``extra``'s ``metadata`` merged into the family's own; no key may be set twice."""
    if not isinstance(given, Mapping):
        raise RequestValidationError("extra", dict(extra), "a metadata value that is a mapping")
    merged = dict(own)
    for name, value in given.items():
        if name not in merged:
            merged[name] = value
        elif name == "output_config" and isinstance(value, Mapping):
            twice = sorted(set(value) & set(merged[name]))
            if twice:
                raise RequestValidationError(
                    "extra", dict(extra),
                    f"no metadata.output_config keys that are fields of their own ({_join(twice)})",
                )
            merged[name] = {**merged[name], **value}
        else:
            raise RequestValidationError(
                "extra", dict(extra), f"no metadata keys that are fields of their own ({name})"
            )
    return merged


# --- Veo ------------------------------------------------------------------------------------

_VEO_SHAPES = {  # orientation -> (size, aspect ratio); the three must agree
    "portrait": ("720x1280", "9:16"),
    "landscape": ("1280x720", "16:9"),
}


@attrs.frozen
class VeoRequest(Request):
    """Veo on the unified route (``veo3.1-fast``, ``veo3.1``, ``veo2-fast-frames``...).

    ``orientation``, ``size`` and ``aspect_ratio`` describe one shape: give any of them and the
    others are derived (portrait = 720x1280 = 9:16, the default; landscape = 1280x720 = 16:9).
    ``enable_upsample`` needs landscape. ``*-frames`` models take at most 2 images (first and
    last frame), ``*-components`` models at most 3 (the Veo seed, shared/seeds/000_*).

    Images are URLs: the unified Veo route documents a list of image URLs (docs.octopusx.ai,
    "Veo: Create Video"), so a local file is refused; :class:`VeoVideosRequest` takes one.
    """

    family: ClassVar[str] = "veo"
    _local: ClassVar[bool] = False
    _local_refused: ClassVar[str] = (
        "the unified Veo route takes image URLs, not local files; upload the file and pass its "
        "URL, or send it as VeoVideosRequest(input_reference=...)"
    )

    prompt: str
    model: str = attrs.field(default="veo3.1-fast", kw_only=True)
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
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
    """Sora on the unified route (``sora-2``, ``sora-2-pro``): 10, 15 or 25 seconds.

    ``sora-2-pro`` also takes longer durations (the Sora seed, shared/seeds/002_*). Images are
    URLs (docs.octopusx.ai, "Sora: Create Video"); :class:`SoraVideosRequest` takes a local one.
    """

    family: ClassVar[str] = "sora"
    _local: ClassVar[bool] = False
    _local_refused: ClassVar[str] = (
        "the unified Sora route takes image URLs, not local files; upload the file and pass its "
        "URL, or send it as SoraVideosRequest(input_reference=...)"
    )

    prompt: str
    model: str = attrs.field(default="sora-2", kw_only=True)
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
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
    """Grok on the unified route (``grok-video-3``; ``-pro`` is fixed at 10 s, ``-max`` at 15 s).

    Up to 6 reference images, named in the prompt as ``@img1``, ``@img2``...; two images without
    references are the first and last frame. Images may be local files: the route takes "URLs
    or base64" (docs.octopusx.ai, "Grok: Create Video"), so they are sent as data URIs.
    """

    family: ClassVar[str] = "grok"

    prompt: str
    model: str = attrs.field(default="grok-video-3", kw_only=True)
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
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
    """Vidu on the unified route (``viduq3-pro``, ``viduq2-pro``, ``viduq1``, ``vidu2.0``...).

    0 images (text), 1 (image to video) or 2 (first and last frame); prompts up to 2000 characters.
    Other Vidu fields (``voice_id``, ``wm_url``, ``wm_position``, ``meta_data``, ``payload``)
    go in ``extra``. Images are URLs ("a URL list", docs.octopusx.ai, "Vidu: Create Video").
    """

    family: ClassVar[str] = "vidu"
    _local: ClassVar[bool] = False
    _local_refused: ClassVar[str] = (
        "the unified Vidu route takes image URLs, not local files; upload the file and pass "
        "its URL"
    )

    prompt: str
    model: str = attrs.field(default="viduq2-pro", kw_only=True)
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
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
    """Jimeng (``jimeng-video-3.0``, ``jimeng-video-2.0``): 0, 1 or 2 images (first, last frame).

    Images are URLs ("a list of URLs", docs.octopusx.ai, "Jimeng: Create Video").
    """

    family: ClassVar[str] = "jimeng"
    _local: ClassVar[bool] = False
    _local_refused: ClassVar[str] = (
        "the unified Jimeng route takes image URLs, not local files; upload the file and pass "
        "its URL"
    )

    prompt: str
    model: str = attrs.field(default="jimeng-video-3.0", kw_only=True)
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    size: str | None = attrs.field(default=None, converter=_upper, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _validate(self) -> None:
        self._max_images(2, "first and last frame")
        _choice("aspect_ratio", self.aspect_ratio, ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9"))
        _choice("size", self.size, ("720P", "1080P"))


# --- Grok remix -----------------------------------------------------------------------------

_REMIX_RATIOS = ("2:3", "3:2", "1:1")


@attrs.frozen
class RemixRequest(Request):
    """A remix of a Grok task (``POST /v1/video/remix``): the same scene with a new prompt.

    The new task is queried on the unified route. The gateway requires ``size`` (720P or 1080P)
    and ``aspect_ratio`` (2:3, 3:2 or 1:1); None sends the default (720P, 3:2). An upstream
    ``parent_post_id`` may go in ``extra``. Source: docs.octopusx.ai, "Grok: Video Remix
    (Unified Video)".
    """

    family: ClassVar[str] = "grok"
    _image_fields: ClassVar[tuple[str, ...]] = ()

    task_id: str
    prompt: str
    model: str = attrs.field(default="grok-video-3", kw_only=True)
    size: str | None = attrs.field(default="720P", converter=_upper, kw_only=True)
    aspect_ratio: str | None = attrs.field(default="3:2", kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    @property
    def create_path(self) -> str:
        """The remix route, ``/v1/video/remix``: the task to remix is in the body."""
        return "/v1/video/remix"

    def _body(self, image: _Render) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "size": self.size or "720P",
            "aspect_ratio": self.aspect_ratio or _REMIX_RATIOS[1],
            "task_id": self.task_id,
        }
        return self._merge_extra(payload)

    def _validate(self) -> None:
        if (
            not isinstance(self.task_id, str)
            or not self.task_id.strip()
            or self.task_id != self.task_id.strip()
        ):
            raise RequestValidationError(
                "task_id", self.task_id, "the id of the Grok task to remix, as its create gave it"
            )
        _choice("size", self.size, ("720P", "1080P"))
        _choice("aspect_ratio", self.aspect_ratio, _REMIX_RATIOS)


# --- the OpenAI-format route: POST /v1/videos -------------------------------------------------


class _VideosRequest(Request):
    """What the OpenAI-format families share: ``seconds`` and ``size``, one ``input_reference``.

    A local ``input_reference`` is sent as the multipart file part ``input_reference`` (as the
    OpenAI Videos API takes it); a URL or data URI string as a JSON field.
    """

    __slots__ = ()
    _route: ClassVar[Route] = Route.OPENAI
    _image_fields: ClassVar[tuple[str, ...]] = ()
    _image_field: ClassVar[str | None] = "input_reference"
    _sizes: ClassVar[tuple[str, ...]] = ()
    input_reference: Image | None
    seconds: str | None
    size: str | None

    def _body(self, image: _Render) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "prompt": self.prompt}
        if self.seconds is not None:
            payload["seconds"] = self.seconds
        if self.size is not None:
            payload["size"] = self.size
        if isinstance(self.input_reference, str):
            payload["input_reference"] = self.input_reference
        payload.update(self._own())
        return self._merge_extra(payload)

    def _own(self) -> dict[str, Any]:
        """The family's own fields that have values, by wire name."""
        return {}

    def files(self) -> tuple[Upload, ...]:
        """The local ``input_reference``, as the multipart file part ``input_reference``."""
        if isinstance(self.input_reference, LocalImage):
            return (self.input_reference.upload("input_reference"),)
        return ()

    def _check_size_agrees(self) -> None:
        # metadata.output_config.aspect_ratio, if given in extra, must be the size's shape: the
        # gateway's docs pair 720x1280 with 9:16 and derive one from the other.
        metadata = self.extra.get("metadata")
        config = metadata.get("output_config") if isinstance(metadata, Mapping) else None
        ratio = config.get("aspect_ratio") if isinstance(config, Mapping) else None
        size = self.size or self._sizes[0]
        if ratio is not None and ratio != _RATIO_OF_SIZE.get(size):
            raise RequestValidationError(
                "extra", dict(self.extra),
                f"a metadata.output_config.aspect_ratio of {_RATIO_OF_SIZE.get(size)}, to agree "
                f"with size {size} (or no aspect_ratio: the gateway derives it from size)",
            )


_SORA_SIZES = ("720x1280", "1280x720")
_SORA_PRO_SIZES = ("1024x1792", "1792x1024")
_SORA_SECONDS = ("4", "8", "10", "12", "15")


@attrs.frozen
class SoraVideosRequest(_VideosRequest):
    """Sora on the OpenAI-format route (``POST /v1/videos``): ``sora-2``, ``sora-2-pro``.

    ``size`` is ``WxH``: 720x1280 (portrait, the default) or 1280x720; ``sora-2-pro`` also
    1024x1792 and 1792x1024 (OpenAI Videos API). ``seconds`` (a string on the wire; an int is
    accepted) is one of 4, 8 and 12 (OpenAI) or 10 and 15 (the gateway's own example sends 10,
    and its Sora channel takes 10 and 15); ``sora-2-pro`` also 25. ``input_reference`` is the
    first frame: a URL, or a local image, sent as a file part; a local image whose pixel size is
    known must be ``size`` when ``size`` is given (OpenAI: the image must match the video's
    resolution). ``metadata``, ``character_url`` and other channel fields go in ``extra``.
    Sources: OpenAI Videos API; docs.octopusx.ai, "Sora: Sora Video Generation".
    """

    family: ClassVar[str] = "sora"
    _sizes: ClassVar[tuple[str, ...]] = _SORA_SIZES + _SORA_PRO_SIZES

    prompt: str
    model: str = attrs.field(default="sora-2", kw_only=True)
    input_reference: Image | None = attrs.field(default=None, kw_only=True)
    seconds: str | None = attrs.field(default=None, converter=_seconds, kw_only=True)
    size: str | None = attrs.field(default=None, converter=_lower, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _validate(self) -> None:
        pro = self.model.lower().endswith("-pro")
        if self.size in ("small", "large"):
            raise RequestValidationError(
                "size", self.size,
                f"one of {_join(self._sizes)} (WxH); small and large are the unified route's "
                "sizes: use SoraRequest for them",
            )
        if self.size in _SORA_PRO_SIZES and not pro:
            raise RequestValidationError(
                "size", self.size,
                f"one of {_join(_SORA_SIZES)} for {self.model} "
                f"({_join(_SORA_PRO_SIZES)} need sora-2-pro)",
            )
        _choice("size", self.size, self._sizes)
        seconds = (*_SORA_SECONDS, "25") if pro else _SORA_SECONDS
        why = "" if pro else f" for {self.model} (sora-2-pro: also 25)"
        _choice("seconds", self.seconds, seconds, why)
        self._check_size_agrees()
        reference = self.input_reference
        if (
            isinstance(reference, LocalImage)
            and self.size is not None
            and reference.width is not None
            and f"{reference.width}x{reference.height}" != self.size
        ):
            raise RequestValidationError(
                "input_reference", reference,
                f"an image of {self.size} pixels, the video's size; {reference.filename} is "
                f"{reference.width}x{reference.height}",
            )


_VEO_VIDEO_SIZES = ("720x1280", "1280x720")
_VEO_SECONDS = ("4", "6", "8")


@attrs.frozen
class VeoVideosRequest(_VideosRequest):
    """Veo on the OpenAI-format route (``POST /v1/videos``): ``veo_3_1``, ``veo_3_1-fast``.

    ``size`` is 720x1280 (portrait, the gateway's default) or 1280x720; the gateway turns it into
    ``metadata.output_config``'s resolution and aspect ratio, so an aspect ratio given there in
    ``extra`` must agree. ``seconds`` is 4, 6 or 8 (Veo 3.1's durations in the Gemini API; the
    gateway's example sends 8). ``enable_upsample`` needs 1280x720, as on the unified route.
    ``input_reference`` is a URL, or a local image sent as a file part. Sources:
    docs.octopusx.ai, "Veo: Veo Video Generation"; Gemini API, "Generate videos with Veo 3.1".
    """

    family: ClassVar[str] = "veo"
    _sizes: ClassVar[tuple[str, ...]] = _VEO_VIDEO_SIZES

    prompt: str
    model: str = attrs.field(default="veo_3_1-fast", kw_only=True)
    input_reference: Image | None = attrs.field(default=None, kw_only=True)
    seconds: str | None = attrs.field(default=None, converter=_seconds, kw_only=True)
    size: str | None = attrs.field(default=None, converter=_lower, kw_only=True)
    enable_upsample: bool | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _own(self) -> dict[str, Any]:
        return {} if self.enable_upsample is None else {"enable_upsample": self.enable_upsample}

    def _validate(self) -> None:
        _choice("size", self.size, self._sizes, " (WxH)")
        _choice("seconds", self.seconds, _VEO_SECONDS)
        _flag("enable_upsample", self.enable_upsample)
        if self.enable_upsample and self.size != "1280x720":
            raise RequestValidationError(
                "enable_upsample", True,
                f"only with size 1280x720 (landscape), not {self.size or '720x1280 (the default)'}",
            )
        self._check_size_agrees()


# --- Kling (OpenAI-format route) --------------------------------------------------------------

_KLING_RATIOS = ("16:9", "9:16", "1:1")
_KLING_RESOLUTIONS = ("720P", "1080P")
_KLING_CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward",
                       "left_turn_forward")
_KLING_CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")


def _kling_seconds(model: str) -> tuple[str, ...]:
    lowered = model.lower()
    if any(mark in lowered for mark in ("3.0", "-v3", "-o3", "3-0")):
        return tuple(str(n) for n in range(3, 16))  # Kling 3.0: 3 to 15 seconds
    return ("5", "10")


@attrs.frozen
class KlingRequest(Request):
    """Kling on the OpenAI-format route (``POST /v1/videos``, JSON).

    Models: ``Kling-3.0-Omni``, ``Kling-2.6``, ``Kling-2.5`` (the gateway), and the upstream's
    ``kling-v1``... ``kling-v2-6``. 0 images (text), 1 (first frame: ``image``) or 2 (first
    and last frame: ``metadata.last_frame_url``); local images are sent as data URIs (Kling
    takes "URL or Base64" images). ``seconds``: 5 or 10; 3 to 15 on Kling 3.0. ``aspect_ratio``
    (16:9, 9:16, 1:1) and ``resolution`` (720P, 1080P) go in ``metadata.output_config``, as the
    gateway documents them. ``negative_prompt`` (at most 2500 characters), ``mode`` (std, pro),
    ``cfg_scale`` (0 to 1) and ``camera_control`` go in ``metadata``, where the gateway's Kling
    relay reads them; ``camera_control`` is ``{"type": ..., "config": {...}}``: ``simple`` with
    exactly one of horizontal, vertical, pan, tilt, roll, zoom non-zero (each -10 to 10), the
    other types without a config. Other Kling fields (``scene_type``, ``motion_level``,
    ``offpeak``...) go in ``extra["metadata"]``. Sources: docs.octopusx.ai, "Kling: Kling Video
    Generation"; new-api's Kling relay (relay/channel/task/kling); Kling's API reference.
    """

    family: ClassVar[str] = "kling"
    _route: ClassVar[Route] = Route.OPENAI

    prompt: str
    model: str = attrs.field(default="Kling-3.0-Omni", kw_only=True)
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    seconds: str | None = attrs.field(default=None, converter=_seconds, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    resolution: str | None = attrs.field(default=None, converter=_upper, kw_only=True)
    negative_prompt: str | None = attrs.field(default=None, kw_only=True)
    mode: str | None = attrs.field(default=None, converter=_lower, kw_only=True)
    cfg_scale: float | None = attrs.field(default=None, kw_only=True)
    camera_control: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_frozen_mapping, kw_only=True, hash=False
    )
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _body(self, image: _Render) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "prompt": self.prompt}
        if self.seconds is not None:
            payload["seconds"] = self.seconds
        if self.images:
            payload["image"] = _wire(self.images[0], image)
        output = _present(
            {"aspect_ratio": self.aspect_ratio, "resolution": self.resolution}
        )
        metadata = _present({
            "output_config": output or None,
            "last_frame_url": _wire(self.images[1], image) if len(self.images) > 1 else None,
            "negative_prompt": self.negative_prompt,
            "mode": self.mode,
            "cfg_scale": self.cfg_scale,
            "camera_control": dict(self.camera_control) if self.camera_control else None,
        })
        if metadata:
            payload["metadata"] = metadata
        return self._merge_extra(payload)

    def _validate(self) -> None:
        _text("prompt", self.prompt, limit=2500)
        self._max_images(2, "first and last frame")
        _choice("seconds", self.seconds, _kling_seconds(self.model), f" for {self.model}")
        _choice("aspect_ratio", self.aspect_ratio, _KLING_RATIOS)
        _choice("resolution", self.resolution, _KLING_RESOLUTIONS)
        _text("negative_prompt", self.negative_prompt, limit=2500)
        _choice("mode", self.mode, ("std", "pro"))
        _number("cfg_scale", self.cfg_scale, 0, 1)
        self._check_camera()

    def _check_camera(self) -> None:
        camera = self.camera_control
        if camera is None:
            return
        shape = (
            '{"type": "simple", "config": {"zoom": 5}}, or {"type": one of '
            f"{_join(_KLING_CAMERA_TYPES[1:])}}} without a config"
        )
        if not isinstance(camera, Mapping) or set(camera) - {"type", "config"}:
            raise RequestValidationError("camera_control", camera, shape)
        kind, config = camera.get("type"), camera.get("config")
        _choice("camera_control.type", kind, _KLING_CAMERA_TYPES)
        if kind != "simple":
            if config is not None:
                raise RequestValidationError(
                    "camera_control.config", config, f"no config for type {kind} (only simple)"
                )
            return
        if not isinstance(config, Mapping) or set(config) - set(_KLING_CAMERA_AXES):
            raise RequestValidationError(
                "camera_control.config", config,
                f"a mapping of {_join(_KLING_CAMERA_AXES)} to numbers from -10 to 10",
            )
        for axis, value in config.items():
            _number(f"camera_control.config.{axis}", value, -10, 10)
        moving = [axis for axis, value in config.items() if value]
        if len(moving) != 1:
            raise RequestValidationError(
                "camera_control.config", dict(config),
                "exactly one non-zero movement for type simple, not "
                f"{len(moving)} ({_join(moving) or 'none'})",
            )


# --- Seedance (native route) ------------------------------------------------------------------

_SEEDANCE_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive")
_SEEDANCE_RESOLUTIONS = ("480p", "720p", "1080p")


def _seedance_version(model: str) -> str:
    """``"2-0"``, ``"1-5"`` or ``"1-0"`` from the model's name; ``""`` when it names none."""
    lowered = model.lower().replace(".", "-").replace("_", "-")
    for version in ("2-0", "1-5", "1-0"):
        if f"seedance-{version}" in lowered:
            return version
    return "2-0" if "seedance-2" in lowered else ""


@attrs.frozen
class SeedanceRequest(Request):
    """Seedance / Doubao on the native route (``POST /v1/video/generations``).

    Models: ``doubao-seedance-2-0-260128`` (the gateway's example), other ``doubao-seedance-*``
    and ``seedance-*``. The body is the official Seedance shape: ``content`` (the prompt, then
    images, videos and audios, each with a role) and ``metadata`` (duration, resolution,
    ratio, seed, camera_fixed, watermark, generate_audio, return_last_frame; others, such as
    ``frames``, ``draft``, ``service_tier`` or ``callback_url``, in ``extra["metadata"]``).

    ``images`` are the first frame, or the first and last frame (at most 2);
    ``reference_images`` (at most 9 on Seedance 2.0, 4 before) guide the content instead; the two
    cannot be combined. ``reference_videos`` and ``reference_audios`` (URLs, at most 3 each) need
    Seedance 2.0 and no first/last frame; audio needs an image or video beside it. Images may be
    URLs, ``asset://`` references, or local images (sent as data URIs). ``duration``: 4 to 15 on
    2.0 (or -1: the model picks), 2 to 12 before; ``resolution`` 480p, 720p or 1080p (not 1080p on
    the ``fast`` models); ``generate_audio`` needs Seedance 1.5 or 2.0; ``seed`` -1 to 2**32-1.
    A model whose name gives no version (1.0, 1.5, 2.0) gets the widest of these limits.
    Sources: docs.octopusx.ai, "Seedance 2: Create Video"; Volcengine Ark's Seedance API and
    new-api's Seedance request (dto.SeedanceVideoRequest); the providers' Seedance 1.x/2.0 docs
    (durations, ratios, reference limits).
    """

    family: ClassVar[str] = "seedance"
    _route: ClassVar[Route] = Route.NATIVE
    _prefixes: ClassVar[tuple[str, ...]] = ("doubao-seedance",)
    _image_fields: ClassVar[tuple[str, ...]] = ("images", "reference_images")
    _schemes: ClassVar[tuple[str, ...]] = ("http://", "https://", "data:", "asset://")

    prompt: str
    model: str = attrs.field(default="doubao-seedance-2-0-260128", kw_only=True)
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    reference_images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    reference_videos: tuple[str, ...] = attrs.field(default=(), converter=_urls, kw_only=True)
    reference_audios: tuple[str, ...] = attrs.field(default=(), converter=_urls, kw_only=True)
    duration: int | None = attrs.field(default=None, kw_only=True)
    resolution: str | None = attrs.field(default=None, converter=_lower, kw_only=True)
    ratio: str | None = attrs.field(default=None, kw_only=True)
    seed: int | None = attrs.field(default=None, kw_only=True)
    camera_fixed: bool | None = attrs.field(default=None, kw_only=True)
    watermark: bool | None = attrs.field(default=None, kw_only=True)
    generate_audio: bool | None = attrs.field(default=None, kw_only=True)
    return_last_frame: bool | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )

    def _body(self, image: _Render) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": self.prompt}]
        roles = ("first_frame", "last_frame")
        for role, value in zip(roles, self.images, strict=False):
            content.append({"type": "image_url", "image_url": {"url": _wire(value, image)},
                            "role": role})
        for value in self.reference_images:
            content.append({"type": "image_url", "image_url": {"url": _wire(value, image)},
                            "role": "reference_image"})
        for url in self.reference_videos:
            content.append({"type": "video_url", "video_url": {"url": url},
                            "role": "reference_video"})
        for url in self.reference_audios:
            content.append({"type": "audio_url", "audio_url": {"url": url},
                            "role": "reference_audio"})
        payload: dict[str, Any] = {"model": self.model, "content": content}
        metadata = _present({
            name: getattr(self, name)
            for name in ("duration", "resolution", "ratio", "seed", "camera_fixed", "watermark",
                         "generate_audio", "return_last_frame")
        })
        if metadata:
            payload["metadata"] = metadata
        return self._merge_extra(payload)

    def _validate(self) -> None:
        version = _seedance_version(self.model)
        # A model naming no version gets the widest limits: the gateway decides.
        newest = version in ("2-0", "")
        self._max_images(2, "first and last frame")
        self._max_images(9 if newest else 4, "reference images", "reference_images")
        self._max_images(3, "reference videos", "reference_videos")
        self._max_images(3, "reference audios", "reference_audios")
        for name in ("reference_videos", "reference_audios"):
            for index, url in enumerate(getattr(self, name)):
                if not isinstance(url, str) or not url.startswith(self._schemes):
                    raise RequestValidationError(
                        f"{name}[{index}]", describe(url),
                        "an http(s) URL, a data: URI or an asset:// reference",
                    )
            if getattr(self, name) and not newest:
                raise RequestValidationError(
                    name, list(getattr(self, name)),
                    f"none for {self.model} (reference videos and audios need Seedance 2.0)",
                )
        references = [n for n in ("reference_images", "reference_videos", "reference_audios")
                      if getattr(self, n)]
        if self.images and references:
            raise RequestValidationError(
                "images", list(self.images),
                f"no first/last frame beside {_join(references)}: the two modes cannot be "
                "combined (put the frame among reference_images instead)",
            )
        if self.reference_audios and not (self.reference_images or self.reference_videos):
            raise RequestValidationError(
                "reference_audios", list(self.reference_audios),
                "audio beside at least one reference image or video",
            )
        low, high = {"2-0": (4, 15), "": (2, 15)}.get(version, (2, 12))
        duration = self.duration
        if duration is not None and not (
            type(duration) is int and (low <= duration <= high or (newest and duration == -1))
        ):
            raise RequestValidationError(
                "duration", duration,
                f"an integer from {low} to {high}" + (" or -1 (the model picks)" if newest else "")
                + f" for {self.model}",
            )
        _choice("resolution", self.resolution, _SEEDANCE_RESOLUTIONS)
        if self.resolution == "1080p" and "fast" in self.model.lower():
            raise RequestValidationError(
                "resolution", self.resolution, f"480p or 720p for {self.model} (fast: no 1080p)"
            )
        _choice("ratio", self.ratio, _SEEDANCE_RATIOS)
        _integer("seed", self.seed, minimum=-1, maximum=2**32 - 1)
        for name in ("camera_fixed", "watermark", "generate_audio", "return_last_frame"):
            _flag(name, getattr(self, name))
        if self.generate_audio and version == "1-0":
            raise RequestValidationError(
                "generate_audio", True, f"False or None for {self.model} (audio needs 1.5 or 2.0)"
            )


# --- anything else --------------------------------------------------------------------------


@attrs.frozen
class VideoRequest(Request):
    """Any other model, or any model on any route: sent as given, not validated by family.

    ``model``, ``prompt``, ``images`` and ``extra`` are sent as given, on ``route`` (unified by
    default, where ``images`` is always sent; elsewhere only when there are some). Local images
    are sent as data URIs.
    """

    model: str
    prompt: str
    images: tuple[Image, ...] = attrs.field(default=(), converter=_images, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_extra, kw_only=True, hash=False
    )
    route: Route = attrs.field(default=Route.UNIFIED, converter=_route_of, kw_only=True)

    def _body(self, image: _Render) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "prompt": self.prompt}
        if self.images or self.route is Route.UNIFIED:
            payload["images"] = [_wire(value, image) for value in self.images]
        return self._merge_extra(payload)


# --- choosing a family --------------------------------------------------------------------------


@attrs.frozen
class _Family:
    """A model family: its prefixes, and the class that builds it on each route it is served on.

    None for a route means "served there, sent as given" (:class:`VideoRequest`).
    """

    prefixes: tuple[str, ...]
    routes: Mapping[Route, type[Request] | None]
    default: Route


# The routes each family is served on: the unified create serves Veo, Sora, Grok, Vidu and
# Jimeng; /v1/videos serves all seven; the native route is the generic entry point (PROTOCOL.md
# sections 1, 2 and 6; docs.octopusx.ai "videos").
_FAMILIES: tuple[_Family, ...] = (
    _Family(("veo",), {Route.UNIFIED: VeoRequest, Route.OPENAI: VeoVideosRequest,
                       Route.NATIVE: None}, Route.UNIFIED),
    _Family(("sora",), {Route.UNIFIED: SoraRequest, Route.OPENAI: SoraVideosRequest,
                        Route.NATIVE: None}, Route.UNIFIED),
    _Family(("grok",), {Route.UNIFIED: GrokRequest, Route.OPENAI: None, Route.NATIVE: None},
            Route.UNIFIED),
    _Family(("vidu",), {Route.UNIFIED: ViduRequest, Route.OPENAI: None, Route.NATIVE: None},
            Route.UNIFIED),
    _Family(("jimeng",), {Route.UNIFIED: JimengRequest, Route.OPENAI: None, Route.NATIVE: None},
            Route.UNIFIED),
    _Family(("kling",), {Route.OPENAI: KlingRequest, Route.NATIVE: None}, Route.OPENAI),
    _Family(("seedance", "doubao-seedance"), {Route.OPENAI: None, Route.NATIVE: SeedanceRequest},
            Route.NATIVE),
)


def _family_of(model: str) -> _Family | None:
    lowered = model.lower()
    return next((family for family in _FAMILIES if lowered.startswith(family.prefixes)), None)


def _served(family: _Family) -> str:
    return "; ".join(
        f"{route.value} ({'octovid.' + cls.__name__ if cls else 'octovid.VideoRequest'})"
        for route, cls in family.routes.items()
    )


def _suggestion(model: str, route: Route) -> str:
    """Which class builds ``model``: the family's class on ``route``, else on its default."""
    family = _family_of(model)
    if family is None:
        return f"use octovid.VideoRequest for {model}"
    cls = family.routes.get(route) or family.routes.get(family.default)
    if cls is None:
        return f"use octovid.VideoRequest for {model}"
    if cls._route is route:
        return f"use octovid.{cls.__name__} for {model}"
    return (
        f"use octovid.{cls.__name__} for {model} (on the {cls._route.value} route), or "
        "octovid.VideoRequest to send any model as given"
    )


def request_from_dict(data: Mapping[str, Any]) -> Request:
    """Build the request family matching ``data["model"]`` and ``data["route"]`` from a mapping.

    The family is chosen by the model's name; the route is ``data["route"]`` ("unified",
    "openai" or "native") if given, else the family's own (unified for Veo, Sora, Grok, Vidu and
    Jimeng; openai for Kling; native for Seedance). A Grok model with a ``task_id`` is a
    :class:`RemixRequest`. Keys that are fields of the family become those fields; any other
    key goes to ``extra`` (merged with an explicit ``"extra"`` mapping, if given). Models of no
    known family, and families on a route without a class of their own, become a
    :class:`VideoRequest` on that route.

    Raises:
        RequestValidationError: ``data`` is not a mapping, has no model, names a route the model
            is not served on, or a field is invalid.
    """
    if not isinstance(data, Mapping):
        raise RequestValidationError("request", data, "a JSON object with model and prompt")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise RequestValidationError("model", model, "a non-empty model name")
    if "prompt" not in data:
        raise RequestValidationError("prompt", None, "a non-empty string")
    family = _family_of(model)
    given = data.get("route")
    route = _route_of(given) if given is not None else (family.default if family else None)
    cls: type[Request] = VideoRequest
    if family is not None and route is not None:
        if route not in family.routes:
            raise RequestValidationError(
                "route", given,
                f"a route {model} is served on: {_served(family)}; or build "
                f"octovid.VideoRequest({model!r}, prompt, route={route.value!r}) to send it anyway",
            )
        cls = family.routes[route] or VideoRequest
        if cls is GrokRequest and "task_id" in data:
            cls = RemixRequest
    fields = _fields(cls)
    extra = data.get("extra", {})
    if not isinstance(extra, Mapping):
        raise RequestValidationError("extra", extra, "a mapping of extra JSON fields")
    kwargs: dict[str, Any] = {}
    extra = dict(extra)
    for name, value in data.items():
        if name in ("extra", "route"):
            continue
        if name in fields:
            kwargs[name] = value
        else:
            extra[name] = value
    if cls is VideoRequest and route is not None:
        kwargs["route"] = route
    try:
        return cast("Any", cls)(**kwargs, extra=extra)  # type: ignore[no-any-return]
    except TypeError as exc:  # a required field is missing or a keyword is wrong
        raise RequestValidationError("request", dict(data), str(exc)) from exc
