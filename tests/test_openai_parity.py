"""octovid and the official ``openai`` client side by side on the OpenAI-format route.

Both talk to the same simulator's ``/v1/videos``: each watches the tasks the other created, and
the two must agree on every task's outcome, its failure reason and its video's bytes.
"""

from __future__ import annotations

import asyncio

import openai
import pytest

import octovid
from octovid import Route, Status
from octovid.testing import Simulator

# The official client deprecates its Videos methods; the gateway still serves the route.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

FAST = octovid.PollPolicy(initial=0.2, max_interval=0.5, deadline=60, refresh=0.0)
PROMPTS = [f"a paper boat, take {n}" for n in range(8)]

# The openai client's terminal statuses, and octovid's for the same task.
SAME = {"completed": Status.COMPLETED, "failed": Status.FAILED}


@pytest.fixture
async def sim():
    """A simulator where a third of the tasks fail, with a short poll-after hint for openai."""
    async with Simulator(duration=(0.3, 0.8), failure_rate=0.35, seed=11,
                         poll_after_ms=100) as simulator:
        yield simulator


def openai_client(sim: Simulator) -> openai.AsyncOpenAI:
    """The official client on the simulator's OpenAI-format route."""
    return openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key=sim.api_key, max_retries=0)


async def test_octovid_sees_the_openai_clients_tasks_as_it_does(sim, tmp_path):
    """Tasks made by openai's create_and_poll end the same in octovid's watch, videos equal."""
    async with openai_client(sim) as theirs:
        videos = await asyncio.gather(*(
            theirs.videos.create_and_poll(model="sora-2", prompt=prompt, seconds="4",
                                          size="720x1280")
            for prompt in PROMPTS
        ))
        async with octovid.Client(sim.api_key, sim.url, poll=FAST) as ours:
            tasks = await asyncio.gather(*(
                ours.watch(video.id, route=Route.OPENAI) for video in videos
            ), return_exceptions=True)
            for video, task in zip(videos, tasks, strict=True):
                if video.status == "completed":
                    assert isinstance(task, octovid.Task) and task.status is Status.COMPLETED
                    path = await ours.download(task, tmp_path / f"{task.id}.mp4")
                    content = await theirs.videos.download_content(video.id)
                    assert path.read_bytes() == content.content
                else:
                    assert video.status == "failed"
                    assert isinstance(task, octovid.TaskFailedError)
                    assert task.task.route is Route.OPENAI
                    assert video.error is not None
                    assert video.error.message in (task.task.error or "")
    assert {video.status for video in videos} == set(SAME), "the seed gives both outcomes"


async def test_the_openai_client_sees_octovids_tasks_as_octovid_does(sim):
    """Tasks made by octovid on /v1/videos read the same through openai's retrieve."""
    async with octovid.Client(sim.api_key, sim.url, poll=FAST) as ours:
        jobs = ours.submit_many(
            octovid.SoraVideosRequest(prompt, seconds="4", size="720x1280")
            for prompt in PROMPTS
        )
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    tasks = [outcome.task if isinstance(outcome, octovid.TaskFailedError) else outcome
             for outcome in outcomes]
    assert all(isinstance(task, octovid.Task) for task in tasks), outcomes
    async with openai_client(sim) as theirs:
        for task in tasks:
            assert isinstance(task, octovid.Task)
            video = await theirs.videos.retrieve(task.id)
            assert SAME[video.status] is task.status
            assert video.model == "sora-2" and video.seconds == "4" and video.size == "720x1280"
            if video.progress is not None and task.progress is not None:
                assert video.progress == task.progress
    assert {task.status for task in tasks if isinstance(task, octovid.Task)} == set(
        SAME.values())
    creates = [r for r in sim.requests if r.method == "POST"]
    assert len(creates) == len(PROMPTS) and {r.route for r in creates} == {"videos_create"}
