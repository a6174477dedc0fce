"""The gateway's route families: where a task is created, queried and fetched.

A task is queried on the route family it was created on (PROTOCOL.md section 1): the route is a
property of the request that created it, recorded with its task id (in the job and the journal).
"""

from __future__ import annotations

import enum
from urllib.parse import quote

__all__ = ["Route", "content_path", "create_path", "query_path"]


class Route(enum.StrEnum):
    """A route family of the gateway."""

    UNIFIED = "unified"  #: POST /v1/video/create, GET /v1/video/query?id=
    OPENAI = "openai"  #: POST /v1/videos (JSON or multipart), GET /v1/videos/{id}
    NATIVE = "native"  #: POST /v1/video/generations, GET /v1/video/generations/{id}


_CREATE = {
    Route.UNIFIED: "/v1/video/create",
    Route.OPENAI: "/v1/videos",
    Route.NATIVE: "/v1/video/generations",
}


def create_path(route: Route) -> str:
    """The path a request of ``route`` is created on (a remix has its own)."""
    return _CREATE[route]


def query_path(route: Route, task_id: str) -> tuple[str, dict[str, str]]:
    """The path and query parameters that query ``task_id`` on ``route``."""
    if route is Route.UNIFIED:
        return "/v1/video/query", {"id": task_id}
    return f"{_CREATE[route]}/{quote(task_id, safe='')}", {}


def content_path(task_id: str) -> str:
    """The gateway's own copy of a task's video, whatever route created it."""
    return f"/v1/videos/{quote(task_id, safe='')}/content"
