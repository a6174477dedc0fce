"""Local image files in batch lines and in ``octovid create --image``.

An image string without a scheme names a file, relative to the batch file's folder (or to the
current directory for ``create``); it is checked before anything is sent and goes as a data URI
or a multipart part, as the family takes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from test_cli import connect, octovid
from test_routes import png

from octovid.testing import Simulator


def seen_as(image: bytes) -> dict[str, object]:
    """How the simulator records an image that arrived as a data URI (or a file part)."""
    return {"content_type": "image/png", "size": len(image),
            "sha256": hashlib.sha256(image).hexdigest()}


def write_lines(path: Path, *lines: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


async def test_a_batch_line_names_local_images_relative_to_its_file(tmp_path, monkeypatch):
    """`"images": ["frames/a.png"]` is read next to the batch file and sent as a data URI; an
    `input_reference` file goes as a multipart part."""
    folder = tmp_path / "project"
    (folder / "frames").mkdir(parents=True)
    image = png(720, 1280)
    (folder / "frames" / "a.png").write_bytes(image)
    batch = write_lines(
        folder / "batch.jsonl",
        {"model": "grok-video-3", "prompt": "@img1 waves", "images": ["frames/a.png"]},
        {"model": "sora-2", "route": "openai", "prompt": "a corgi", "seconds": "8",
         "size": "720x1280", "input_reference": "frames/a.png"},
    )
    monkeypatch.chdir(tmp_path)  # not the batch file's folder
    async with Simulator(duration=(0.2, 0.4)) as sim:
        status, _, stderr = await octovid("batch", str(batch), "--out", str(tmp_path / "out"),
                                          *connect(sim))
        bodies = [task.body for task in sim.tasks.values()]
    assert status == 0, stderr
    grok = next(body for body in bodies if body["model"] == "grok-video-3")
    assert grok["images"] == [seen_as(image)]
    sora = next(body for body in bodies if body["model"] == "sora-2")
    assert sora["input_reference"]["size"] == len(image)


async def test_a_missing_or_wrong_local_image_stops_the_batch_before_any_create(tmp_path):
    """Every bad file of every line is reported, naming the line and the file; nothing sent."""
    (tmp_path / "notes.txt").write_text("not an image")
    batch = write_lines(
        tmp_path / "batch.jsonl",
        {"model": "grok-video-3", "prompt": "a", "images": ["https://example.com/ok.png"]},
        {"model": "grok-video-3", "prompt": "b", "images": ["missing.png"]},
        {"model": "grok-video-3", "prompt": "c", "images": ["notes.txt"]},
    )
    async with Simulator() as sim:
        status, _, stderr = await octovid("batch", str(batch), "--out", str(tmp_path / "out"),
                                          *connect(sim))
        creates = [r for r in sim.requests if r.method == "POST"]
    assert status == 2
    assert f"{batch}:2:" in stderr and "missing.png" in stderr
    assert f"{batch}:3:" in stderr and "notes.txt" in stderr and "PNG, JPEG or WebP" in stderr
    assert creates == []


async def test_create_takes_a_local_image_file(tmp_path, monkeypatch):
    """`octovid create MODEL PROMPT --image frame.png` sends the file from the current folder."""
    image = png(64, 36)
    (tmp_path / "frame.png").write_bytes(image)
    monkeypatch.chdir(tmp_path)
    async with Simulator(duration=(0.2, 0.3)) as sim:
        status, _, stderr = await octovid("create", "grok-video-3", "@img1 waves",
                                          "--image", "frame.png", *connect(sim))
        (task,) = sim.tasks.values()
    assert status == 0, stderr
    assert task.body["images"] == [seen_as(image)]
