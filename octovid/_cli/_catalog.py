"""The models and fields the command line knows, and the checks it makes with them.

The library is permissive (any model of a family's prefix is that family; any other key goes
to ``extra``); the command line is strict, because a misspelt model or field costs money: the
lines before it are created and billed, or the field is silently left at its default. So a
line may name only the models listed here (``--allow-unknown-models`` lets others through) and
only its family's fields (an ``"extra"`` object passes anything as given).

The models are those of the gateway's documentation (PROTOCOL.md, section 2); the fields are
the request classes' own (``tests/test_cli_models.py`` keeps the two in step).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs

import octovid

__all__ = [
    "FAMILIES", "Family", "FieldInfo", "as_json", "check_request", "family_of", "render",
    "request_fields", "select",
]

_CORE = ("model", "prompt", "images", "extra")
_BOOL = "true, false"


@attrs.frozen
class FieldInfo:
    """One field of a family, as the models table shows it.

    Attributes:
        name: The JSON key.
        allowed: What it accepts, in words.
        default: The value sent when it is left out, or "" when it is left out of the body.
        values: The exact values it accepts, when they are a short list (for the tests).
        passthrough: A field of the gateway's that the request class leaves to ``extra``.
    """

    name: str
    allowed: str
    default: str = ""
    values: tuple[object, ...] = ()
    passthrough: bool = False


@attrs.frozen
class Family:
    """A family of models: the request class, its models and its fields."""

    name: str
    request: type[octovid.Request]
    models: tuple[str, ...]
    fields: tuple[FieldInfo, ...]
    images: str
    note: str = ""

    @property
    def field_names(self) -> tuple[str, ...]:
        """Every key a line of this family may hold."""
        return ("model", "prompt", "images", "extra", *(f.name for f in self.fields))


def _choice(name: str, values: Sequence[object], default: str = "", note: str = "") -> FieldInfo:
    allowed = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in values)
    return FieldInfo(name, allowed + (f" ({note})" if note else ""), default, tuple(values))


def _flag(name: str, note: str = "") -> FieldInfo:
    return FieldInfo(name, _BOOL + (f" ({note})" if note else ""), "", (True, False))


FAMILIES: tuple[Family, ...] = (
    Family(
        "Veo", octovid.VeoRequest,
        ("veo3.1-fast", "veo3.1-fast-components", "veo3.1", "veo3.1-pro", "veo3.1-components",
         "veo3-fast", "veo2-fast-frames", "veo2-fast-components"),
        (
            _choice("orientation", ("portrait", "landscape"), "portrait"),
            _choice("size", ("720x1280", "1280x720"), "from orientation"),
            _choice("aspect_ratio", ("9:16", "16:9"), "from orientation"),
            FieldInfo("duration", "whole seconds", "8"),
            _flag("enable_upsample", "landscape only"),
            _flag("enhance_prompt"),
        ),
        "up to 3 (*-frames: 2, first and last frame)",
        "orientation, size and aspect_ratio must agree: portrait = 720x1280 = 9:16, "
        "landscape = 1280x720 = 16:9",
    ),
    Family(
        "Sora", octovid.SoraRequest, ("sora-2", "sora-2-pro"),
        (
            _choice("orientation", ("portrait", "landscape"), "portrait"),
            _choice("size", ("small", "large"), "small"),
            _choice("duration", (10, 15, 25), "10", "sora-2-pro: also longer"),
            _flag("watermark"),
            _flag("private"),
            _choice("style", ("thanksgiving", "comic", "news", "selfie", "nostalgic", "anime")),
            _flag("storyboard"),
        ),
        "reference images",
    ),
    Family(
        "Grok", octovid.GrokRequest, ("grok-video-3", "grok-video-3-pro", "grok-video-3-max"),
        (
            _choice("aspect_ratio", ("16:9", "9:16", "2:3", "3:2", "1:1")),
            _choice("size", ("720P", "1080P")),
            _choice("duration", (6, 10, 15), "", "-pro: 10 only, -max: 15 only"),
        ),
        "up to 6, named @img1, @img2... in the prompt; 2 without names: first and last frame",
    ),
    Family(
        "Vidu", octovid.ViduRequest,
        ("viduq3-pro", "viduq2-pro-fast", "viduq2-pro", "viduq2-turbo", "viduq1",
         "viduq1-classic", "vidu2.0"),
        (
            _choice("aspect_ratio", ("16:9", "9:16", "1:1", "3:4", "4:3"), "",
                    "3:4 and 4:3: viduq2 and viduq3 only"),
            FieldInfo("duration", "whole seconds (5 is typical)"),
            FieldInfo("resolution", "e.g. 540p, 720p, 1080p"),
            FieldInfo("seed", "a whole number >= 0"),
            _flag("audio"),
            _flag("bgm"),
            _flag("off_peak"),
            _flag("watermark"),
            FieldInfo("voice_id", "text", passthrough=True),
            FieldInfo("wm_url", "text", passthrough=True),
            FieldInfo("wm_position", "a whole number", passthrough=True),
            FieldInfo("meta_data", "text", passthrough=True),
            FieldInfo("payload", "text", passthrough=True),
        ),
        "0 (text), 1 (first frame) or 2 (first and last frame)",
        "prompts up to 2000 characters",
    ),
    Family(
        "Jimeng", octovid.JimengRequest, ("jimeng-video-3.0", "jimeng-video-2.0"),
        (
            _choice("aspect_ratio", ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")),
            _choice("size", ("720P", "1080P")),
        ),
        "0, 1 (first frame) or 2 (first and last frame)",
    ),
)

_BY_MODEL = {model: family for family in FAMILIES for model in family.models}
_ALL_MODELS = tuple(_BY_MODEL)


def family_of(model: str) -> Family | None:
    """The family of a known model (exactly as the gateway spells it), else None."""
    return _BY_MODEL.get(model)


def _prefix_family(model: str) -> Family | None:
    """The family the library would build for ``model`` (by the start of its name)."""
    lowered = model.lower()
    return next((f for f in FAMILIES if lowered.startswith(f.request.family)), None)


def _close(word: str, choices: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not matches:
        lowered = {choice.lower(): choice for choice in choices}
        matches = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        return lowered[matches[0]] if matches else None
    return matches[0]


def check_request(data: Mapping[str, Any], *, allow_unknown_models: bool = False) -> list[str]:
    """The problems of one request object (a batch line without its key, or create's fields).

    Unknown models (unless allowed), unknown fields for the model's family, and a missing model
    or prompt; the values themselves are checked by the request classes.
    """
    problems: list[str] = []
    model = data.get("model")
    if model is None or (isinstance(model, str) and not model.strip()):
        problems.append("no model (`octovid models` lists them)")
    elif not isinstance(model, str):
        problems.append(f"model must be a name, not {json.dumps(model)}")
    if "prompt" not in data or data.get("prompt") in (None, ""):
        problems.append("no prompt")
    if not isinstance(model, str) or not model.strip():
        return problems
    route = data.get("route", "unified")
    if route != "unified" or _other_route_model(model):
        return problems + _check_by_class(data, model)
    family = family_of(model)
    if family is None:
        guess = _close(model, _ALL_MODELS)
        if not allow_unknown_models:
            hint = (f"did you mean {guess}?" if guess else
                    "`octovid models` lists the known ones; --allow-unknown-models sends it "
                    "as given")
            problems.append(f"unknown model {model!r} ({hint})")
            family = family_of(guess) if guess else None
        else:
            family = _prefix_family(model)
    if family is None:  # a model of no family: passed through, its fields as given
        return problems
    known = family.field_names
    for name in data:
        if name in known or name == "route":
            continue
        guess = _close(name, [n for n in known if n != "extra"])
        hint = f"did you mean {guess}?" if guess else (
            "`octovid models` lists the fields; put it in \"extra\" to send it as given"
        )
        problems.append(f"unknown field {name!r} for {model} ({hint})")
    return problems


_OTHER_ROUTE_PREFIXES = ("kling", "seedance", "doubao-seedance")


def _other_route_model(model: str) -> bool:
    """A model whose family lives on another route than the unified one (Kling, Seedance)."""
    return model.lower().startswith(_OTHER_ROUTE_PREFIXES)


def _check_by_class(data: Mapping[str, Any], model: str) -> list[str]:
    """The problems of a line on another route: its fields are its request class's own."""
    try:
        request = octovid.request_from_dict(
            {k: v for k, v in data.items() if k in ("model", "prompt", "route", "task_id")}
        )
    except octovid.RequestValidationError as exc:
        return [str(exc)]
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    cls = type(request)
    known = {"model", "prompt", "images", "extra", "route", "task_id", *request_fields(cls)}
    problems = []
    for name in data:
        if name not in known:
            guess = _close(name, sorted(known - {"extra"}))
            hint = f"did you mean {guess}?" if guess else (
                "put it in \"extra\" to send it as given"
            )
            problems.append(f"unknown field {name!r} for {model} ({cls.__name__}; {hint})")
    return problems


def request_fields(cls: type[octovid.Request]) -> tuple[str, ...]:
    """The request class's own fields (beyond model, prompt, images and extra)."""
    fields = attrs.fields(cast("type[attrs.AttrsInstance]", cls))
    return tuple(f.name for f in fields if f.name not in _CORE)


def render(families: Sequence[Family], *, width: int = 100, markdown: bool = False) -> str:
    """The models table: each family's models, then its fields with their allowed values."""
    if markdown:
        return _markdown(families)
    lines: list[str] = []
    for family in families:
        lines.append(f"{family.name}: {', '.join(family.models)}")
        rows = [("prompt", "text (required)", ""), ("images", f"URLs: {family.images}", "")]
        rows += [(f.name, f.allowed, f.default) for f in family.fields]
        name_width = max(len(name) for name, _, _ in rows)
        for name, allowed, default in rows:
            text = allowed + (f"; default {default}" if default else "")
            lines.extend(_wrap(f"  {name.ljust(name_width)}  ", text, width))
        if family.note:
            lines.extend(_wrap("  ", family.note, width))
        lines.append("")
    lines.append("Any other key of a line is refused; put fields the table does not know in "
                 '"extra": {...} to send them as given.')
    return "\n".join(lines)


def _wrap(prefix: str, text: str, width: int) -> list[str]:
    import textwrap

    room = max(20, width - len(prefix))
    chunks = textwrap.wrap(text, room, break_on_hyphens=False) or [""]
    return [prefix + chunks[0], *(" " * len(prefix) + chunk for chunk in chunks[1:])]


def _markdown(families: Sequence[Family]) -> str:
    lines = ["| family | models | field | allowed values | default |",
             "|---|---|---|---|---|"]
    for family in families:
        models = ", ".join(f"`{m}`" for m in family.models)
        rows = [("images", f"URLs: {family.images}", "")]
        rows += [(f.name, f.allowed, f.default) for f in family.fields]
        for index, (name, allowed, default) in enumerate(rows):
            lead = f"{family.name} | {models}" if index == 0 else " | "
            text = allowed.replace("*", "\\*")  # not emphasis
            lines.append(f"| {lead} | `{name}` | {text} | {default} |")
    return "\n".join(lines)


def as_json(families: Sequence[Family]) -> list[dict[str, Any]]:
    """The models table as JSON."""
    return [
        {"family": f.name, "models": list(f.models), "images": f.images, "note": f.note,
         "fields": [{"name": x.name, "allowed": x.allowed, "default": x.default or None}
                    for x in f.fields]}
        for f in families
    ]


def select(word: str | None) -> list[Family]:
    """The families named by ``word`` (a family or a model), all of them for None."""
    if not word:
        return list(FAMILIES)
    lowered = word.lower()
    chosen = [f for f in FAMILIES if f.name.lower() == lowered or lowered in f.models]
    if not chosen:
        chosen = [f for f in FAMILIES if f.request.family and lowered.startswith(
            f.request.family)]
    return chosen
