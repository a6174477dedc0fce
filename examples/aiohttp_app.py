"""octovid inside an async web app: one Client for the app's lifetime.

Routes:

* ``POST /videos`` with a JSON request (``{"model": "sora-2", "prompt": "..."}``): creates the
  task and answers ``202 {"id": ..., "status": ...}`` as soon as the gateway has accepted it.
* ``GET /videos/{id}``: the task's current status.
* ``GET /videos/{id}/wait?timeout=30``: waits up to ``timeout`` seconds for the task to finish,
  without blocking any other request; 200 when it ended, 202 with the last status otherwise.

Every handler shares the client's rate limiter and its one watcher: a thousand clients waiting
on a thousand videos cost one poll per video, not one per waiting request.

Run it with ``OCTOVID_API_KEY=... python examples/aiohttp_app.py``, or against the simulator:
``octovid simulate --port 8000`` and ``OCTOVID_BASE_URL=http://127.0.0.1:8000
OCTOVID_API_KEY=sim-key python examples/aiohttp_app.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

import octovid

CLIENT = web.AppKey("octovid_client", octovid.Client)
MAX_WAIT = 300.0


def describe(task: octovid.Task) -> dict[str, Any]:
    """The JSON view of a task."""
    return {"id": task.id, "status": task.status.value, "progress": task.progress,
            "video_url": task.video_url, "error": task.error}


async def create_video(request: web.Request) -> web.Response:
    """POST /videos: create a task; answer once the gateway has accepted it."""
    try:
        video = octovid.request_from_dict(await request.json())
    except json.JSONDecodeError:
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    except octovid.RequestValidationError as exc:
        return web.json_response({"error": str(exc), "field": exc.field}, status=400)
    job = request.app[CLIENT].submit(video)
    try:
        task = await job.created()
    except octovid.OctovidError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(describe(task), status=202)


async def get_video(request: web.Request) -> web.Response:
    """GET /videos/{id}: the task's current status."""
    try:
        task = await request.app[CLIENT].get(request.match_info["id"])
    except octovid.TaskNotFoundError:
        return web.json_response({"error": "no such task"}, status=404)
    except octovid.OctovidError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(describe(task))


async def wait_video(request: web.Request) -> web.Response:
    """GET /videos/{id}/wait?timeout=S: wait for the task to end, at most S seconds.

    The task is asked for once first: one that has ended is answered at once (a watch would
    share the polls of this app's other watchers of it, which may be due later).
    """
    try:
        timeout = min(MAX_WAIT, float(request.query.get("timeout", "30")))
    except ValueError:
        return web.json_response({"error": "timeout must be a number of seconds"}, status=400)
    if not timeout > 0:
        return web.json_response({"error": "timeout must be positive"}, status=400)
    client = request.app[CLIENT]
    try:
        latest = await client.get(request.match_info["id"])
    except octovid.TaskNotFoundError:
        return web.json_response({"error": "no such task"}, status=404)
    except octovid.OctovidError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    if latest.terminal:
        return web.json_response(describe(latest))
    job = client.watch(latest.id, deadline=timeout)
    try:
        task = await job
    except octovid.TaskFailedError as exc:
        return web.json_response(describe(exc.task))
    except octovid.WaitTimeoutError as exc:
        return web.json_response(describe(exc.task or latest), status=202)
    except octovid.TaskNotFoundError:
        return web.json_response({"error": "no such task"}, status=404)
    except octovid.OctovidError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    finally:
        job.cancel()  # if the caller went away, stop watching for it
    return web.json_response(describe(task))


def make_app(**client_options: Any) -> web.Application:
    """The application; ``client_options`` go to ``octovid.Client`` (default: environment)."""

    async def client_context(app: web.Application) -> AsyncIterator[None]:
        async with octovid.Client(**client_options) as client:
            app[CLIENT] = client
            yield

    app = web.Application()
    app.cleanup_ctx.append(client_context)
    app.router.add_post("/videos", create_video)
    app.router.add_get("/videos/{id}", get_video)
    app.router.add_get("/videos/{id}/wait", wait_video)
    return app


if __name__ == "__main__":
    web.run_app(make_app())
