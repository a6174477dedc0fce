"""Verified, resumable downloads against the simulator and its CDN."""

from __future__ import annotations

import asyncio
import hashlib
from importlib import resources

import pytest

import octovid
from octovid import Status, Task
from octovid.testing import Simulator

VIDEO = resources.files("octovid.testing").joinpath("sample.mp4").read_bytes()
FAST = octovid.PollPolicy(initial=0.1, max_interval=0.3, deadline=30)


def client_for(sim: Simulator, **options) -> octovid.Client:
    return octovid.Client(sim.api_key, sim.url, rate_limit=50, poll=FAST, **options)


def cdn(sim: Simulator) -> list:
    return [r for r in sim.requests if r.route == "cdn"]


async def completed(client: octovid.Client, sim: Simulator) -> Task:
    task = await client.create(octovid.SoraRequest("a corgi surfing"))
    sim.finish(task.id)
    return await client.get(task.id)


@pytest.fixture
async def sim():
    async with Simulator(seed=9, duration=(0.2, 0.4)) as simulator:
        yield simulator


async def test_download_is_verified_named_safely_and_keyless_on_the_cdn(sim, tmp_path):
    """A result URL on the CDN is fetched without the key; the file is whole and named safely."""
    async with client_for(sim) as client:
        task = await completed(client, sim)
        path = await client.download(task, tmp_path)
        stats = client.stats
    assert path.parent == tmp_path
    assert path.name == task.id.replace(":", "_") + ".mp4"
    assert path.read_bytes() == VIDEO
    assert list(tmp_path.iterdir()) == [path]  # no .part left behind
    assert [r.authorization for r in cdn(sim)] == [False]
    assert stats.downloads == 1


async def test_cut_off_download_resumes_with_range(tmp_path):
    """A body cut off mid-stream is resumed from where it stopped, then verified."""
    big = VIDEO + bytes(range(256)) * 16_000  # 4 MB: the cut comes after data was read
    async with Simulator(video=big) as sim, client_for(sim) as client:
        sim.inject("cdn", truncate=2_000_000)
        task = await completed(client, sim)
        path = await client.download(task, tmp_path / "video.mp4")
    assert path.read_bytes() == big
    first, second = cdn(sim)
    assert first.range is None
    assert second.range is not None
    resumed_at = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 2_000_000


async def test_expired_result_url_is_asked_for_again(tmp_path):
    """An expired signed URL (403 from the CDN) is replaced by a fresh one from the gateway."""
    async with Simulator(duration=(0.1, 0.2), url_ttl=0.3) as sim, client_for(sim) as client:
        task = await completed(client, sim)
        await asyncio.sleep(1.5)  # expiry is rounded up to the whole second
        path = await client.download(task, tmp_path)
    assert path.read_bytes() == VIDEO
    assert [r.status for r in cdn(sim)] == [403, 200]
    assert sim.requests[-2].route == "query"  # the fresh URL came from a new query


async def test_error_page_is_never_saved_as_a_video(sim, tmp_path):
    """A 200 HTML page where a video should be is refused; the real video is fetched instead."""
    sim.inject("cdn", status=200, body="html")
    async with client_for(sim) as client:
        task = await completed(client, sim)
        path = await client.download(task, tmp_path)
    assert path.read_bytes() == VIDEO
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


async def test_falls_back_to_the_content_route_with_the_key(sim, tmp_path):
    """When the CDN keeps failing, the gateway's content route serves the bytes, with the key."""
    sim.inject("cdn", status=404, times=5)
    async with client_for(sim) as client:
        task = await completed(client, sim)
        path = await client.download(task, tmp_path)
    assert path.read_bytes() == VIDEO
    content = [r for r in sim.requests if r.route == "content"]
    assert [(r.status, r.authorization) for r in content] == [(200, True)]
    assert all(not r.authorization for r in cdn(sim))


@pytest.mark.parametrize("where", ["relative", "ftp"])
async def test_a_result_url_that_is_relative_or_not_http_still_downloads(sim, tmp_path, where):
    """A relative result URL is read against the gateway; an ftp:// one yields the content route."""
    async with client_for(sim) as client:
        real = await completed(client, sim)
        url = f"/v1/videos/{real.id}/content" if where == "relative" else "ftp://cdn.example/v.mp4"
        odd = Task(id=real.id, status=Status.COMPLETED, raw_status="completed", video_url=url)
        path = await client.download(odd, tmp_path)
    assert path.read_bytes() == VIDEO
    content = [r for r in sim.requests if r.route == "content"]
    assert [(r.status, r.authorization) for r in content] == [(200, True)]


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ("https://cdn.example/v/x.mp4?sig=1", "https://cdn.example/v/x.mp4?sig=1"),
        ("//cdn.example/x.mp4", "https://cdn.example/x.mp4"),
        ("/v1/videos/a/content", "https://gw.example/v1/videos/a/content"),
        ("ftp://cdn.example/x.mp4", None),
        ("javascript:alert(1)", None),
        ("http://", None),
    ],
)
def test_result_urls_are_read_against_the_gateway(given, resolved):
    """Relative result URLs are joined to the gateway; URLs of other schemes are not fetched."""
    from yarl import URL

    from octovid._transport import Transport

    transport = Transport(URL("https://gw.example"), "k", timeout=5)
    url = transport.resolve(given)
    assert (None if url is None else str(url)) == resolved


async def test_task_id_cannot_escape_the_folder(sim, tmp_path):
    """A task id holding ../ and separators becomes a plain file name inside the folder."""
    out = tmp_path / "out"
    out.mkdir()
    async with client_for(sim) as client:
        real = await completed(client, sim)
        hostile = Task(id="../../etc/../passwd", status=Status.COMPLETED,
                       raw_status="completed", video_url=real.video_url)
        path = await client.download(hostile, out)
    assert path.parent == out
    assert ".." not in path.name and "/" not in path.name
    assert path.read_bytes() == VIDEO
    assert sorted(tmp_path.rglob("*")) == [out, path]


async def test_unfinished_task_cannot_be_downloaded(sim, tmp_path):
    """Downloading a task that is still running raises DownloadError, writing nothing."""
    async with client_for(sim) as client:
        task = await client.create(octovid.SoraRequest("x"))
        sim.stall(task.id)
        with pytest.raises(octovid.DownloadError, match="not completed"):
            await client.download(task.id, tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_progress_reports_bytes_and_total(sim, tmp_path):
    """The progress callback sees the bytes so far and the total."""
    seen: list[tuple[int, int | None]] = []
    async with client_for(sim) as client:
        task = await completed(client, sim)
        await client.download(task, tmp_path / "v.mp4", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(VIDEO), len(VIDEO))


async def test_journal_records_the_file(sim, tmp_path):
    """With a journal, the downloaded file's path, size and sha256 are recorded for its key."""
    journal = octovid.Journal(tmp_path / "journal.db")
    async with client_for(sim, journal=journal) as client:
        job = client.submit(octovid.SoraRequest("x"), key="clip-1")
        task = await job
        path = await client.download(task, tmp_path)
    entry = journal.get("clip-1")
    assert entry is not None and entry.file == str(path)
    assert entry.size == len(VIDEO)
    assert entry.sha256 == hashlib.sha256(VIDEO).hexdigest()
    journal.close()
