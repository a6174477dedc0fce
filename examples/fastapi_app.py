"""octovid inside a FastAPI app: one Client for the app's lifetime, owned by its lifespan.

Routes:

* ``POST /videos`` with a JSON request (``{"model": "sora-2", "prompt": "..."}``): creates the
  task and answers ``202 {"id": ..., "status": ...}`` as soon as the gateway has accepted it.
* ``GET /videos/{id}``: the task's current status.
* ``GET /videos/{id}/wait?timeout=30``: waits up to ``timeout`` seconds for the task to end,
  without blocking any other request; 200 when it ended, 202 with the last status otherwise.
* ``GET /videos/{id}/events``: the task's updates as server-sent events (``update`` for each
  change of status or progress, then one of ``completed``, ``failed``, ``timeout``, ``error``).

Each takes ``?route=openai`` or ``?route=native`` for a task created on those routes (the
answers say ``route``). Every handler shares the client's rate limiter and its one watcher.

Run it with ``pip install -e ".[examples]"``, then ``octovid simulate`` in one terminal, and in
another the ``export`` line it prints, then ``uvicorn examples.fastapi_app:app``; or
``OCTOVID_API_KEY=... uvicorn examples.fastapi_app:app`` against the real gateway.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

import octovid

MAX_WAIT = 300.0
Route = Annotated[str, Query(description="the route the task was created on")]


def describe(task: octovid.Task) -> dict[str, Any]:
    """The JSON view of a task."""
    return {"id": task.id, "status": task.status.value, "progress": task.progress,
            "video_url": task.video_url, "error": task.error, "route": task.route.value}


def client_of(request: Request) -> octovid.Client:
    """The app's one client (a dependency of every route)."""
    client: octovid.Client = request.app.state.octovid
    return client


ClientDep = Annotated[octovid.Client, Depends(client_of)]


async def latest(client: octovid.Client, task_id: str, route: str) -> octovid.Task:
    """The task's state now; 400, 404 or 502 as an HTTPException when it cannot be had."""
    try:
        return await client.get(task_id, route=route)
    except ValueError as exc:  # a bad route or id
        raise HTTPException(400, str(exc)) from exc
    except octovid.TaskNotFoundError as exc:
        raise HTTPException(404, "no such task") from exc
    except octovid.OctovidError as exc:
        raise HTTPException(502, str(exc)) from exc


def make_app(**client_options: Any) -> FastAPI:
    """The application; ``client_options`` go to ``octovid.Client`` (default: environment)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with octovid.Client(**client_options) as client:
            app.state.octovid = client
            yield

    app = FastAPI(title="videos", lifespan=lifespan)

    @app.post("/videos", status_code=202)
    async def create_video(client: ClientDep, body: Annotated[dict[str, Any], Body()]) -> Any:
        """Create a task; answer once the gateway has accepted it."""
        try:
            video = octovid.request_from_dict(body)
        except octovid.RequestValidationError as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        job = client.submit(video)
        try:
            task = await job.created()
        except octovid.OctovidError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return describe(task)

    @app.get("/videos/{task_id}")
    async def get_video(client: ClientDep, task_id: str, route: Route = "unified") -> Any:
        """The task's current status."""
        return describe(await latest(client, task_id, route))

    @app.get("/videos/{task_id}/wait")
    async def wait_video(
        client: ClientDep, task_id: str, route: Route = "unified",
        seconds: Annotated[float, Query(gt=0, alias="timeout")] = 30.0,
    ) -> Any:
        """Wait for the task to end, at most ``timeout`` seconds (and ``MAX_WAIT``)."""
        now = await latest(client, task_id, route)
        if now.terminal:  # ended already: no need to wait for a poll
            return describe(now)
        job = client.watch(now.id, deadline=min(seconds, MAX_WAIT), route=route)
        try:
            return describe(await job)
        except octovid.TaskFailedError as exc:
            return describe(exc.task)
        except octovid.WaitTimeoutError as exc:
            return JSONResponse(describe(exc.task or now), status_code=202)
        except octovid.OctovidError as exc:
            raise HTTPException(502, str(exc)) from exc
        finally:
            job.cancel()  # if the caller went away, stop watching for it

    @app.get("/videos/{task_id}/events")
    async def video_events(
        client: ClientDep, task_id: str, route: Route = "unified",
        seconds: Annotated[float, Query(gt=0, alias="timeout")] = MAX_WAIT,
    ) -> StreamingResponse:
        """The task's updates as server-sent events, until it ends or ``timeout`` passes."""
        first = await latest(client, task_id, route)  # 404 before the stream starts
        return StreamingResponse(
            _events(client, first, route, min(seconds, MAX_WAIT)),
            media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
        )

    return app


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _events(
    client: octovid.Client, first: octovid.Task, route: str, deadline: float
) -> AsyncIterator[str]:
    """Each update of the task, then how it ended."""
    yield _sse("update", describe(first))
    if first.terminal:
        yield _sse(first.status.value, describe(first))
        return
    job = client.watch(first.id, deadline=deadline, route=route)
    last = first
    try:
        async for task in job.updates():
            if task.status != last.status or task.progress != last.progress:
                yield _sse("update", describe(task))
            last = task
        yield _sse(last.status.value, describe(last))  # completed, failed or cancelled
    except octovid.WaitTimeoutError:
        yield _sse("timeout", describe(last))
    except octovid.OctovidError as exc:
        yield _sse("error", {"id": first.id, "error": str(exc)})
    finally:
        job.cancel()  # the browser went away, or the task ended: stop watching for it


app = make_app()  # uvicorn examples.fastapi_app:app; the client is made at startup
