"""Task.from_response: every response shape of PROTOCOL.md sections 3 and 6, normalised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import octovid
from octovid import ProtocolError, Status, Task
from octovid._routes import Route
from octovid._task import answer_text, restamp, status_of, task_from_answer

VIDEO = "https://cdn.example.com/videos/8b8232a3.mp4"

# The example bodies of PROTOCOL.md section 3, written out in full.
VEO_CREATE = {
    "id": "video_8b8232a3-847b-40e2-a3a3-912813b7ac60",
    "object": "video",
    "model": "veo3.1-fast-components",
    "status": "queued",
    "progress": 0,
    "created_at": 1768489641,
    "size": "1280x720",
    "detail": {
        "input": {
            "aspect_ratio": "16:9",
            "images": ["https://example.com/frame-1.png", "https://example.com/frame-2.png"],
            "model": "veo3.1-fast-components",
            "prompt": "The cow flew into the sky",
        }
    },
    "status_update_time": 1768489641,
}
VEO_QUERY = {
    "id": "task_01k6x1m8q3v7c2b9n4d5f6g7h8",
    "status": "pending",
    "video_url": None,
    "enhanced_prompt": "",
    "status_update_time": 1759763621142,
}
SORA_CREATE = {
    "id": "sora-2:task_01k9008rhbefnt3rb1g9szxdwr",
    "status": "pending",
    "status_update_time": 1762010621323,
}
SORA_QUERY = {
    "id": "sora-2:task_01k9008rhbefnt3rb1g9szxdwr",
    "object": "video",
    "model": "sora-2",
    "status": "pending",
    "progress": "0",
    "created_at": 1762010621,
    "size": "large",
    "status_update_time": 1762010621323,
    "detail": {
        "input": {
            "images": [],
            "model": "sora-2",
            "orientation": "portrait",
            "prompt": "make animate",
            "size": "large",
            "duration": 15,
        }
    },
}
GROK_CREATE = {
    "id": "grok:48a6f0c2-5d1e-4b7a-9c3f-2e8d6a1b0c4f",
    "status": "processing",
    "status_update_time": 1762780400,
    "task_id": "4803c2d1-9a7b-4e6f-8d5c-3b2a1f0e9d8c",
    "created_at": "2025-11-08T23:07:57.510141923+08:00",
}
GROK_QUERY = {
    "id": "grok:05c8e1a4-2b3d-4f6e-8a9b-7c0d1e2f3a4b",
    "status": "processing",
    "video_url": None,
    "status_update_time": 1762780400,
    "progress": 50,
}
VIDU_CREATE = {
    "created_at": "2025-11-08T23:07:57.510141923+08:00",
    "status": "processing",
    "task_id": "4803c2d1-9a7b-4e6f-8d5c-3b2a1f0e9d8c",
}
VIDU_QUERY = {
    "id": "4803c2d1-9a7b-4e6f-8d5c-3b2a1f0e9d8c",
    "status": "processing",
    "progress": 50,
    "created_at": 1774494511,
}
NATIVE_RUNNING = {
    "code": "success",
    "message": "",
    "data": {
        "task_id": "cgt-20251108230757-x7k2p",
        "status": "IN_PROGRESS",
        "progress": "50%",
        "fail_reason": "",
        "result_url": "",
        "data": {"content": {"video_url": ""}},
    },
}
NATIVE_DONE = {
    "code": "success",
    "message": "",
    "data": {
        "task_id": "cgt-20251108230757-x7k2p",
        "status": "SUCCESS",
        "progress": "100%",
        "fail_reason": "",
        "result_url": VIDEO,
        "data": {"content": {"video_url": VIDEO}},
    },
}
NATIVE_FAILED = {
    "code": "success",
    "message": "",
    "data": {
        "task_id": "cgt-20251108230757-x7k2p",
        "status": "FAILURE",
        "progress": "100%",
        "fail_reason": "the input image did not pass moderation",
        "result_url": None,
        "data": None,
    },
}

GROK_CREATED = datetime(2025, 11, 8, 15, 7, 57, 510141, tzinfo=UTC)  # 23:07:57.510141923+08:00


@pytest.mark.parametrize(
    ("body", "task_id", "expected"),
    [
        (VEO_CREATE, None, Task(
            id="video_8b8232a3-847b-40e2-a3a3-912813b7ac60", status=Status.QUEUED,
            raw_status="queued", progress=0, model="veo3.1-fast-components",
            created_at=datetime(2026, 1, 15, 15, 7, 21, tzinfo=UTC),
            updated_at=datetime(2026, 1, 15, 15, 7, 21, tzinfo=UTC),
        )),
        (VEO_QUERY, "video_8b8232a3-847b-40e2-a3a3-912813b7ac60", Task(
            id="video_8b8232a3-847b-40e2-a3a3-912813b7ac60", status=Status.QUEUED,
            raw_status="pending",
            updated_at=datetime(2025, 10, 6, 15, 13, 41, 142000, tzinfo=UTC),
        )),
        (SORA_CREATE, None, Task(
            id="sora-2:task_01k9008rhbefnt3rb1g9szxdwr", status=Status.QUEUED,
            raw_status="pending",
            updated_at=datetime(2025, 11, 1, 15, 23, 41, 323000, tzinfo=UTC),
        )),
        (SORA_QUERY, "sora-2:task_01k9008rhbefnt3rb1g9szxdwr", Task(
            id="sora-2:task_01k9008rhbefnt3rb1g9szxdwr", status=Status.QUEUED,
            raw_status="pending", progress=0, model="sora-2",
            created_at=datetime(2025, 11, 1, 15, 23, 41, tzinfo=UTC),
            updated_at=datetime(2025, 11, 1, 15, 23, 41, 323000, tzinfo=UTC),
        )),
        (GROK_CREATE, None, Task(
            id="grok:48a6f0c2-5d1e-4b7a-9c3f-2e8d6a1b0c4f", status=Status.PROCESSING,
            raw_status="processing", created_at=GROK_CREATED,
            updated_at=datetime(2025, 11, 10, 13, 13, 20, tzinfo=UTC),
        )),
        (GROK_QUERY, None, Task(
            id="grok:05c8e1a4-2b3d-4f6e-8a9b-7c0d1e2f3a4b", status=Status.PROCESSING,
            raw_status="processing", progress=50,
            updated_at=datetime(2025, 11, 10, 13, 13, 20, tzinfo=UTC),
        )),
        (VIDU_CREATE, None, Task(
            id="4803c2d1-9a7b-4e6f-8d5c-3b2a1f0e9d8c", status=Status.PROCESSING,
            raw_status="processing", created_at=GROK_CREATED,
        )),
        (VIDU_QUERY, None, Task(
            id="4803c2d1-9a7b-4e6f-8d5c-3b2a1f0e9d8c", status=Status.PROCESSING,
            raw_status="processing", progress=50,
            created_at=datetime(2026, 3, 26, 3, 8, 31, tzinfo=UTC),
        )),
        (NATIVE_RUNNING, None, Task(
            id="cgt-20251108230757-x7k2p", status=Status.PROCESSING, raw_status="IN_PROGRESS",
            progress=50,
        )),
        (NATIVE_DONE, None, Task(
            id="cgt-20251108230757-x7k2p", status=Status.COMPLETED, raw_status="SUCCESS",
            progress=100, video_url=VIDEO,
        )),
        (NATIVE_FAILED, None, Task(
            id="cgt-20251108230757-x7k2p", status=Status.FAILED, raw_status="FAILURE",
            progress=100, error="the input image did not pass moderation",
        )),
    ],
    ids=["veo-create", "veo-query", "sora-create", "sora-query", "grok-create", "grok-query",
         "vidu-create", "vidu-query", "native-running", "native-done", "native-failed"],
)
def test_protocol_examples_normalise_exactly(body, task_id, expected):
    """Each example body of PROTOCOL.md section 3 gives exactly the expected Task."""
    task = Task.from_response(body, task_id=task_id)
    assert task == expected
    assert task.raw is body


# --- id -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "task_id", "ident"),
    [
        (GROK_CREATE, None, "grok:48a6f0c2-5d1e-4b7a-9c3f-2e8d6a1b0c4f"),  # id over task_id
        (VIDU_CREATE, None, "4803c2d1-9a7b-4e6f-8d5c-3b2a1f0e9d8c"),  # only task_id
        ({"id": "", "task_id": "t-1"}, None, "t-1"),  # an empty id is no id
        ({"id": None, "task_id": "t-1"}, None, "t-1"),
        (VEO_QUERY, "video_8b82", "video_8b82"),  # the argument wins over the query's own id
        (GROK_CREATE, "mine", "mine"),
        ({"status": "pending"}, "sora-2:task_1", "sora-2:task_1"),  # no id in the body at all
        ({"id": 12345}, None, "12345"),  # numeric ids become strings
    ],
)
def test_the_task_id_rule(body, task_id, ident):
    """The id is ``task_id=`` if given, else the body's ``id``, else its ``task_id``."""
    assert Task.from_response(body, task_id=task_id).id == ident


@pytest.mark.parametrize(
    "body",
    [{}, {"status": "processing"}, {"id": "", "task_id": ""}, {"id": None},
     {"id": {"nested": "x"}}, {"code": "success", "message": "", "data": {"status": "SUCCESS"}}],
)
def test_a_body_without_an_id_is_a_protocol_error(body):
    """With no id, no task_id and no ``task_id=``, from_response raises ProtocolError."""
    with pytest.raises(ProtocolError) as info:
        Task.from_response(body)
    assert "task id" in str(info.value)
    assert info.value.body == json.dumps(body, ensure_ascii=False)


@pytest.mark.parametrize("body", [["id", "x"], "video_1", None, 42, b'{"id": "x"}'])
def test_a_non_object_body_is_a_protocol_error(body):
    """A list, string, None or number body raises ProtocolError naming the type received."""
    with pytest.raises(ProtocolError) as info:
        Task.from_response(body, task_id="x")
    assert type(body).__name__ in str(info.value)


# --- status ---------------------------------------------------------------------------------

WORDS = {
    Status.QUEUED: ["pending", "queued", "submitted", "not_start", "in_queue"],
    Status.PROCESSING: ["processing", "in_progress", "running", "image_downloading",
                        "video_generating", "video_upsampling"],
    Status.COMPLETED: ["completed", "succeeded", "success", "succeed", "done"],
    Status.FAILED: ["failed", "failure", "error", "video_generation_failed",
                    "video_upsampling_failed"],
    Status.CANCELLED: ["cancelled", "canceled"],
    Status.UNKNOWN: ["unknown"],
}


@pytest.mark.parametrize(
    ("word", "status"), [(word, status) for status, words in WORDS.items() for word in words]
)
def test_every_status_word_maps_in_any_case(word, status):
    """Each status word of PROTOCOL.md maps to its Status in lower, upper and title case."""
    for written in (word, word.upper(), word.title()):
        task = Task.from_response({"id": "t", "status": written})
        assert (task.status, task.raw_status) == (status, written)


@pytest.mark.parametrize(
    ("word", "status"),
    [("SUBMITTED", Status.QUEUED), ("IN_PROGRESS", Status.PROCESSING),
     ("SUCCESS", Status.COMPLETED), ("FAILURE", Status.FAILED)],
)
def test_native_status_words(word, status):
    """The native route's upper-case words map inside its ``{code, message, data}`` wrapper."""
    body = {"code": "success", "message": "", "data": {"task_id": "n-1", "status": word}}
    assert Task.from_response(body).status is status


@pytest.mark.parametrize("word", ["video_generation_completed", "video_upsampling_completed"])
def test_veo_completed_steps_need_a_result(word):
    """A Veo ``*_completed`` step is PROCESSING without a result URL and COMPLETED with one."""
    waiting = Task.from_response({"id": "v", "status": word, "video_url": None})
    done = Task.from_response({"id": "v", "status": word, "video_url": VIDEO})
    assert (waiting.status, waiting.terminal) == (Status.PROCESSING, False)
    assert (done.status, done.terminal, done.video_url) == (Status.COMPLETED, True, VIDEO)


@pytest.mark.parametrize("word", ["rendering", "paused", "video_thinking", "???", ""])
def test_unknown_status_words_are_unknown_and_not_terminal(word):
    """A status never seen maps to UNKNOWN, is kept as written, and is not terminal."""
    task = Task.from_response({"id": "t", "status": word})
    assert (task.status, task.raw_status, task.terminal) == (Status.UNKNOWN, word, False)


@pytest.mark.parametrize("value", [None, 7, True, ["done"], {"state": "done"}])
def test_a_missing_or_non_text_status_is_unknown(value):
    """A status that is absent, null or not text is UNKNOWN."""
    assert Task.from_response({"id": "t", "status": value}).status is Status.UNKNOWN
    assert Task.from_response({"id": "t"}).status is Status.UNKNOWN


def test_status_members():
    """Status is a StrEnum of exactly the six documented values."""
    assert {s.name: str(s) for s in Status} == {
        "QUEUED": "queued", "PROCESSING": "processing", "COMPLETED": "completed",
        "FAILED": "failed", "CANCELLED": "cancelled", "UNKNOWN": "unknown",
    }


@pytest.mark.parametrize(
    ("status", "terminal"),
    [(Status.QUEUED, False), (Status.PROCESSING, False), (Status.UNKNOWN, False),
     (Status.COMPLETED, True), (Status.FAILED, True), (Status.CANCELLED, True)],
)
def test_terminal_statuses(status, terminal):
    """Only COMPLETED, FAILED and CANCELLED are terminal, on Status and on Task."""
    assert status.terminal is terminal
    assert Task(id="t", status=status).terminal is terminal


# --- progress -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "progress"),
    [
        ({"progress": 50}, 50),
        ({"progress": "0"}, 0),
        ({"progress": "50%"}, 50),
        ({"progress": " 75 % "}, 75),
        ({"progress": 33.7}, 33),
        ({}, None),
        ({"progress": None}, None),
        ({"progress": "soon"}, None),
        ({"progress": True}, None),
        ({"progress": 150}, 100),
        ({"progress": -5}, 0),
        ({"status": "completed"}, 100),
        ({"status": "completed", "progress": 90}, 90),
        ({"status": "failed"}, None),
        ({"data": {"progress": "40%"}}, 40),
    ],
)
def test_progress_forms(fields, progress):
    """Progress is read from an int, "0", "50%" or absent; a completed task without one is 100."""
    assert Task.from_response({"id": "t", **fields}).progress == progress


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        (1762780400, datetime(2025, 11, 10, 13, 13, 20, tzinfo=UTC)),
        (1762780400000, datetime(2025, 11, 10, 13, 13, 20, tzinfo=UTC)),
        (1762010621323, datetime(2025, 11, 1, 15, 23, 41, 323000, tzinfo=UTC)),
        ("1762780400", datetime(2025, 11, 10, 13, 13, 20, tzinfo=UTC)),
        ("2025-11-08T23:07:57.510141923+08:00", GROK_CREATED),
        ("2025-11-08T15:07:57Z", datetime(2025, 11, 8, 15, 7, 57, tzinfo=UTC)),
        ("2025-11-08T10:07:57-05:00", datetime(2025, 11, 8, 15, 7, 57, tzinfo=UTC)),
        ("2025-11-08T15:07:57", datetime(2025, 11, 8, 15, 7, 57, tzinfo=UTC)),  # naive = UTC
        (0, None),
        ("0", None),
        (None, None),
        ("", None),
        ("yesterday", None),
        (True, None),
        (-1, None),
    ],
)
def test_timestamps_become_aware_utc_instants(value, instant):
    """created_at and status_update_time: epoch s or ms (above 1e11) or RFC 3339; 0 is not yet."""
    task = Task.from_response({"id": "t", "created_at": value, "status_update_time": value})
    assert task.created_at == instant
    assert task.updated_at == instant
    if instant is not None:
        assert task.created_at.utcoffset() == timedelta(0)


def test_seconds_and_milliseconds_give_the_same_instant():
    """Grok's seconds and Sora's milliseconds for one moment normalise to one instant."""
    seconds = Task.from_response({"id": "g", "status_update_time": 1762780400})
    millis = Task.from_response({"id": "s", "status_update_time": 1762780400 * 1000})
    assert seconds.updated_at == millis.updated_at == datetime.fromtimestamp(1762780400, UTC)


def test_absent_timestamps_are_none():
    """A body without timestamps has created_at and updated_at None."""
    task = Task.from_response({"id": "t", "completed_at": 0, "finish_time": 0})
    assert (task.created_at, task.updated_at) == (None, None)


# --- result URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"video_url": VIDEO},
        {"url": VIDEO},
        {"metadata": {"url": VIDEO}},
        {"data": {"url": VIDEO}},
        {"data": {"result_url": VIDEO}},
        {"data": {"data": {"content": {"video_url": VIDEO}}}},
        {"video_url": None, "data": {"result_url": VIDEO}},
        {"video_url": "", "metadata": {"url": VIDEO}},
    ],
    ids=["video_url", "url", "metadata.url", "data.url", "data.result_url",
         "data.data.content.video_url", "null-then-data", "empty-then-metadata"],
)
def test_the_result_url_is_found_in_each_place(fields):
    """The result URL is read wherever a family puts it."""
    task = Task.from_response({"id": "t", "status": "completed", **fields})
    assert (task.video_url, task.status) == (VIDEO, Status.COMPLETED)


@pytest.mark.parametrize(
    "fields",
    [{}, {"video_url": None}, {"video_url": ""}, {"video_url": "   "}, {"video_url": 3},
     {"url": None, "metadata": {"url": ""}, "data": {"result_url": None}},
     {"data": {"data": {"content": {"video_url": ""}}}}],
)
def test_no_result_url_is_none(fields):
    """A null, empty or missing result URL is None."""
    assert Task.from_response({"id": "t", "status": "processing", **fields}).video_url is None


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": "failed", "error": {"message": "content policy", "code": "blocked"}},
         "content policy"),
        ({"status": "failed", "error": {"message": "", "code": "blocked"}}, "blocked"),
        ({"status": "failed", "error": "upstream timeout"}, "upstream timeout"),
        ({"status": "failure", "fail_reason": "bad prompt"}, "bad prompt"),
        ({"data": {"status": "FAILURE", "fail_reason": "refused"}}, "refused"),
        ({"status": "error", "data": {"error": "nsfw"}}, "nsfw"),
        ({"status": "failed", "data": {"error": {"message": "quota"}}}, "quota"),
        ({"status": "cancelled", "fail_reason": "24 h limit"}, "24 h limit"),
    ],
)
def test_failure_reasons_are_read_from_each_place(fields, reason):
    """A failed task's reason comes from error.message, fail_reason, data.* or error codes."""
    task = Task.from_response({"id": "t", **fields})
    assert task.status in (Status.FAILED, Status.CANCELLED)
    assert task.error == reason


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"status": "failed"}, "failed"),
        ({"status": "failed", "error": {"message": "", "code": ""}}, "failed"),
        ({"status": "video_generation_failed", "fail_reason": ""}, "video_generation_failed"),
        ({"status": "CANCELED"}, "CANCELED"),
    ],
)
def test_a_failure_without_a_reason_gets_a_default_one(fields, word):
    """A FAILED or CANCELLED task with no reason still has an error naming the status."""
    task = Task.from_response({"id": "t", **fields})
    assert task.error
    assert repr(word) in task.error


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "processing", "error": {"message": "", "code": ""}},
        {"status": "completed", "video_url": VIDEO, "error": {"message": "", "code": ""}},
        {"status": "completed", "error": {"message": "leftover", "code": "x"}},
        {"status": "queued", "fail_reason": "stale"},
        {"status": "unknown", "error": "transient"},
    ],
)
def test_error_is_none_unless_failed_or_cancelled(fields):
    """An empty error object is not a failure, and Task.error is None unless FAILED/CANCELLED."""
    task = Task.from_response({"id": "t", **fields})
    assert task.status not in (Status.FAILED, Status.CANCELLED)
    assert task.error is None


# --- odd values -----------------------------------------------------------------------------


def test_raw_is_the_body_as_given():
    """``raw`` is the very mapping that was passed, unknown keys included."""
    body = {"id": "t", "status": "queued", "detail": {"input": {"prompt": "x"}}, "extra": [1]}
    task = Task.from_response(body)
    assert task.raw is body
    assert task.raw["detail"] == {"input": {"prompt": "x"}}


def test_raw_is_not_part_of_equality():
    """Two snapshots with the same facts are equal even if their raw bodies differ."""
    one = Task.from_response({"id": "t", "status": "queued", "object": "video"})
    two = Task.from_response({"id": "t", "status": "queued", "detail": {}})
    assert one == two


@pytest.mark.parametrize(
    "text",
    [
        '{"id": "t", "progress": 1' + "0" * 400 + "}",
        '{"id": "t", "created_at": 1' + "0" * 400 + "}",
        '{"id": "t", "status_update_time": "0001-01-01T00:00:00+08:00"}',
        '{"id": "t", "created_at": "9999-12-31T23:59:59-08:00"}',
    ],
    ids=["huge-progress", "huge-created_at", "year-1-with-offset", "year-9999-with-offset"],
)
def test_out_of_range_numbers_and_dates_do_not_crash(text):
    """Valid JSON with a huge integer or an unrepresentable date still gives a Task."""
    task = Task.from_response(json.loads(text))
    assert task.id == "t"
    assert task.progress is None or 0 <= task.progress <= 100
    assert task.created_at is None or task.created_at.tzinfo is not None


# --- route shapes beyond section 3 (PROTOCOL.md section 6) ---------------------------------

CREATED = datetime(2025, 11, 1, 15, 23, 41, tzinfo=UTC)  # 1762010621
CREATED_MS = datetime(2025, 11, 1, 15, 23, 41, 323000, tzinfo=UTC)  # 1762010621323
TIMEOUT_ZH = "任务超时（1440分钟）"  # noqa: RUF001 - as the gateway writes it, fullwidth brackets
TIMEOUT_EN = "task timed out (1440 minutes)"


def test_jimeng_create_and_query():
    """Jimeng answers like Vidu: a bare task_id on create, a completed query with video_url."""
    created = Task.from_response({**VIDU_CREATE, "task_id": "j-1"})
    done = Task.from_response(
        {"id": "j-1", "status": "succeeded", "video_url": VIDEO, "created_at": 1762010621},
        task_id="j-1",
    )
    assert (created.id, created.status, created.created_at) == ("j-1", Status.PROCESSING,
                                                                GROK_CREATED)
    assert (done.status, done.video_url, done.progress, done.created_at) == (
        Status.COMPLETED, VIDEO, 100, CREATED)


def test_veo_query_completed_and_failed_without_reason():
    """Veo ends ``completed`` with its video_url, or failed with no reason field at all."""
    done = Task.from_response({**VEO_QUERY, "status": "completed", "video_url": VIDEO})
    failed = Task.from_response({**VEO_QUERY, "status": "video_generation_failed"})
    assert (done.status, done.video_url, done.error) == (Status.COMPLETED, VIDEO, None)
    assert (failed.status, failed.video_url) == (Status.FAILED, None)
    assert failed.error == "the gateway reported 'video_generation_failed' without a reason"


OPENAI_QUEUED = {
    "id": "video_68f0a1b2c3d4", "object": "video", "model": "sora-2", "status": "queued",
    "progress": 0, "created_at": 1762010621, "seconds": "4", "size": "720x1280", "error": None,
}
OPENAI_RUNNING = {**OPENAI_QUEUED, "status": "in_progress", "progress": 35,
                  "error": {"message": "", "code": ""}}
OPENAI_DONE = {**OPENAI_QUEUED, "status": "completed", "progress": 100,
               "completed_at": 1762010921, "expires_at": 1762097021}
OPENAI_FAILED = {**OPENAI_QUEUED, "status": "failed", "progress": 100, "completed_at": 1762010921,
                 "error": {"code": "content_policy_violation", "message": "prompt was refused"}}


@pytest.mark.parametrize(
    ("body", "status", "progress", "error"),
    [
        (OPENAI_QUEUED, Status.QUEUED, 0, None),
        (OPENAI_RUNNING, Status.PROCESSING, 35, None),
        (OPENAI_DONE, Status.COMPLETED, 100, None),
        (OPENAI_FAILED, Status.FAILED, 100, "prompt was refused"),
        ({**OPENAI_QUEUED, "status": "unknown"}, Status.UNKNOWN, 0, None),
    ],
    ids=["queued", "in_progress-empty-error", "completed", "failed", "unknown-not-started"],
)
def test_openai_video_objects(body, status, progress, error):
    """``/v1/videos`` objects: status, progress and error; an empty error is no failure."""
    task = Task.from_response(body)
    assert task == Task(id="video_68f0a1b2c3d4", status=status, raw_status=body["status"],
                        progress=progress, model="sora-2", created_at=CREATED, error=error)
    assert task.video_url is None  # the bytes are at /v1/videos/{id}/content


def test_kling_openai_video_timestamps_are_milliseconds():
    """Kling's ``/v1/videos`` answers carry created_at (and completed_at) in milliseconds."""
    body = {"id": "831922345719271497", "task_id": "831922345719271497", "object": "video",
            "model": "kling-v2-1", "status": "completed", "progress": 100,
            "created_at": 1762010621323, "completed_at": 1762010921323}
    task = Task.from_response(body)
    assert (task.id, task.status, task.created_at, task.updated_at) == (
        "831922345719271497", Status.COMPLETED, CREATED_MS, None)


@pytest.mark.parametrize(
    ("word", "status"),
    [("NOT_START", Status.QUEUED), ("SUBMITTED", Status.QUEUED), ("QUEUED", Status.QUEUED),
     ("IN_PROGRESS", Status.PROCESSING), ("SUCCESS", Status.COMPLETED),
     ("FAILURE", Status.FAILED)],
)
def test_native_task_dto_with_integer_row_id(word, status):
    """The native wrapper's TaskDto: an integer row id, the task id in ``data.task_id``."""
    body = {"code": "success", "message": "", "data": {
        "id": 48213, "task_id": "cgt-2025-x7k2p", "status": word, "progress": "30%",
        "created_at": 1762010621, "updated_at": 1762010621323, "submit_time": 1762010621,
        "finish_time": 0, "fail_reason": "", "result_url": "", "data": None,
    }}
    task = Task.from_response(body)
    assert (task.id, task.status, task.raw_status) == ("cgt-2025-x7k2p", status, word)
    assert (task.created_at, task.updated_at) == (CREATED, CREATED_MS)


@pytest.mark.parametrize(
    ("word", "status", "video_url", "error"),
    [
        ("queued", Status.QUEUED, None, None),
        ("processing", Status.PROCESSING, None, None),
        ("succeeded", Status.COMPLETED, VIDEO, None),
        ("failed", Status.FAILED, None, "the input image did not pass moderation"),
    ],
)
def test_second_native_shape(word, status, video_url, error):
    """The lower-case native shape: ``url``, ``format``, ``metadata`` and an int-coded error."""
    body: dict[str, Any] = {"task_id": "abcd1234efgh", "status": word}
    if word == "succeeded":
        body |= {"url": VIDEO, "format": "mp4", "metadata": {
            "duration": 5.0, "fps": 30, "width": 1280, "height": 720, "seed": 20231234}}
    if word == "failed":
        body["error"] = {"code": 400, "message": "the input image did not pass moderation"}
    task = Task.from_response(body)
    assert (task.id, task.status, task.video_url, task.error) == (
        "abcd1234efgh", status, video_url, error)


@pytest.mark.parametrize(
    ("word", "status"),
    [("Preparing", Status.QUEUED), ("Queueing", Status.QUEUED),
     ("Processing", Status.PROCESSING), ("Success", Status.COMPLETED), ("Fail", Status.FAILED)],
)
def test_hailuo_style_status_words(word, status):
    """Hailuo/MiniMax answers: Preparing, Queueing, Processing, Success, Fail."""
    body = {"task_id": "176843862716480", "status": word, "file_id": "",
            "base_resp": {"status_code": 0, "status_msg": "success"}}
    task = Task.from_response(body)
    assert (task.id, task.status, task.raw_status) == ("176843862716480", status, word)
    no_reason = "the gateway reported 'Fail' without a reason"  # base_resp says "success"
    assert task.error == (no_reason if status is Status.FAILED else None)


def test_hailuo_failure_reason_in_base_resp():
    """A MiniMax ``base_resp`` with a non-zero status_code gives the failure reason."""
    body = {"task_id": "1768", "status": "Fail",
            "base_resp": {"status_code": 1026, "status_msg": "prompt contains sensitive words"}}
    assert Task.from_response(body).error == "prompt contains sensitive words"
    body["base_resp"] = {"status_code": 1026, "status_msg": ""}
    assert Task.from_response(body).error == "error code 1026"


# --- fact 1: what a video URL is --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [VIDEO, "http://cdn.example.com/x.mp4", "HTTPS://CDN.EXAMPLE.COM/X.MP4",
     "/v1/videos/video_8b82/content", "//cdn.example/x.mp4", "https://[::1]:8443/x.mp4"],
)
def test_a_video_url_is_absolute_http_or_a_gateway_path(url):
    """An http(s) URL with a host, a path on the gateway or a protocol-relative URL is kept."""
    task = Task.from_response({"id": "t", "status": "completed", "video_url": f" {url} "})
    assert task.video_url == url


@pytest.mark.parametrize(
    "text",
    [TIMEOUT_ZH, TIMEOUT_EN, "cdn.example.com/x.mp4", "ftp://cdn.example.com/x.mp4",
     "data:video/mp4;base64,AAAA", "https://", "https:///x.mp4", "//", "http://[::1/x.mp4",
     "javascript:alert(1)", "null", "NULL"],
)
def test_text_that_is_no_url_is_never_the_video_url(text):
    """A result field holding no http(s) URL or gateway path gives video_url None, even done."""
    task = Task.from_response({"id": "t", "status": "completed", "video_url": text})
    assert (task.status, task.video_url) == (Status.COMPLETED, None)


@pytest.mark.parametrize(
    "word", ["queued", "processing", "unknown", "failed", "cancelled", "in_progress", ""]
)
def test_only_a_completed_task_has_a_video_url(word):
    """A URL in a result field of a task that is not COMPLETED is no video_url."""
    body = {"id": "t", "status": word, "video_url": VIDEO, "data": {"result_url": VIDEO}}
    task = Task.from_response(body)
    assert task.status is not Status.COMPLETED
    assert task.video_url is None


# --- fact 2: failure text in result fields, success URLs in fail_reason -----------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"video_url": TIMEOUT_ZH},
        {"url": TIMEOUT_ZH},
        {"result_url": TIMEOUT_ZH},
        {"metadata": {"url": TIMEOUT_ZH}},
        {"data": {"result_url": TIMEOUT_ZH}},
        {"data": {"url": TIMEOUT_ZH}},
        {"data": {"data": {"content": {"video_url": TIMEOUT_ZH}}}},
        {"video_url": None, "metadata": {"url": TIMEOUT_ZH}, "error": {"message": "", "code": ""}},
    ],
    ids=["video_url", "url", "result_url", "metadata.url", "data.result_url", "data.url",
         "data.data.content.video_url", "after-empty-error"],
)
def test_failure_text_in_a_result_field_is_the_error(fields):
    """A failed task's non-URL text in a result field is its error, and no video_url."""
    task = Task.from_response({"id": "t", "status": "failed", **fields})
    assert (task.status, task.error, task.video_url) == (Status.FAILED, TIMEOUT_ZH, None)


def test_failure_text_in_a_native_result_url():
    """A native FAILURE whose ``data.result_url`` holds the timeout text reports that text."""
    body = {"code": "success", "message": "", "data": {
        "id": 7, "task_id": "n-1", "status": "FAILURE", "fail_reason": "",
        "result_url": TIMEOUT_EN}}
    task = Task.from_response(body)
    assert (task.id, task.error, task.video_url) == ("n-1", TIMEOUT_EN, None)


def test_a_reason_field_wins_over_text_in_a_result_field():
    """fail_reason, error and the like come before a failure text found in a result field."""
    body = {"id": "t", "status": "failed", "video_url": TIMEOUT_ZH, "fail_reason": "refused"}
    assert Task.from_response(body).error == "refused"
    body = {"id": "t", "status": "cancelled", "url": VIDEO, "metadata": {"url": TIMEOUT_EN}}
    assert Task.from_response(body).error == TIMEOUT_EN  # the URL is no reason


@pytest.mark.parametrize(
    "fields",
    [{"metadata": {"fail_reason": "nsfw"}}, {"metadata": {"error": {"message": "nsfw"}}},
     {"metadata": {"message": "nsfw"}}, {"data": {"message": "nsfw"}}, {"message": "nsfw"}],
)
def test_more_reason_fields(fields):
    """metadata.*, data.message and the top-level message are reason fields too."""
    assert Task.from_response({"id": "t", "status": "failed", **fields}).error == "nsfw"


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({"fail_reason": VIDEO}, VIDEO),
        ({"data": {"status": "SUCCESS", "fail_reason": VIDEO}}, VIDEO),
        ({"fail_reason": "/v1/videos/t/content"}, "/v1/videos/t/content"),
        ({"fail_reason": VIDEO, "video_url": "https://other.example/y.mp4"},
         "https://other.example/y.mp4"),
        ({"fail_reason": "all good"}, None),
    ],
    ids=["fail_reason", "native-data.fail_reason", "gateway-path", "another-url-wins", "text"],
)
def test_a_success_url_in_fail_reason_of_a_completed_task(fields, url):
    """Older data: a COMPLETED task with no other URL has the URL kept in fail_reason."""
    task = Task.from_response({"id": "t", "status": "success", **fields})
    assert (task.status, task.video_url, task.error) == (Status.COMPLETED, url, None)


# --- fact 3: completion is read from the status, never from a timestamp ------------------------


@pytest.mark.parametrize("word", ["processing", "in_progress", "queued", "unknown", "IN_PROGRESS"])
def test_completed_at_and_finish_time_never_end_a_task(word):
    """A running task with completed_at and finish_time filled stays running; they are unread."""
    body = {"id": "t", "status": word, "progress": 40, "completed_at": 1762010921,
            "finish_time": 1762010921, "updated_at": 1762010621}
    task = Task.from_response(body)
    assert not task.terminal
    assert task.status is status_of(word)
    assert task.updated_at == CREATED  # from updated_at, not from completed_at


# --- fact 4: milliseconds above 1e11, for every timestamp read ---------------------------------


@pytest.mark.parametrize(
    ("fields", "created", "updated"),
    [
        ({"created_at": 1762010621323}, CREATED_MS, None),
        ({"updated_at": 1762010621323}, None, CREATED_MS),
        ({"status_update_time": 1762010621323}, None, CREATED_MS),
        ({"created_at": "1762010621323", "updated_at": 1762010621}, CREATED_MS, CREATED),
        ({"data": {"task_id": "t", "created_at": 1762010621323, "updated_at": 1762010621}},
         CREATED_MS, CREATED),
        ({"created_at": 1762010621, "data": {"created_at": 1}}, CREATED, None),
    ],
    ids=["created_at", "updated_at", "status_update_time", "string-ms", "native-data",
         "top-level-first"],
)
def test_every_timestamp_above_1e11_is_milliseconds(fields, created, updated):
    """created_at, updated_at and status_update_time, top-level or in data: ms above 1e11."""
    task = Task.from_response({"id": "t", **fields})
    assert (task.created_at, task.updated_at) == (created, updated)


# --- fact 5: integer error codes, the native wrapper's codes ----------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"code": 0, "message": "upstream refused"}, "upstream refused"),
        ({"code": "0", "message": "upstream refused"}, "upstream refused"),
        ({"code": 1301, "message": ""}, "error code 1301"),
        ({"code": "1301", "message": ""}, "1301"),
        ({"code": 0, "message": ""}, None),
        ({"code": "0", "message": "success"}, None),
        ({"code": 500}, "error code 500"),
        (500, "error code 500"),
    ],
)
def test_integer_error_codes(error, reason):
    """Error objects with integer or stringified codes; code 0 and "success" are no reason."""
    task = Task.from_response({"id": "t", "status": "failed", "error": error})
    assert task.error == (reason or "the gateway reported 'failed' without a reason")


@pytest.mark.parametrize("code", ["success", 0, "0"])
def test_the_native_wrapper_with_any_success_code(code):
    """The native wrapper, code "success" or 0: data is read, its "success" is no reason."""
    body = {"code": code, "message": "success", "data": {
        "id": 12, "task_id": "cgt-1", "status": "FAILURE", "fail_reason": ""}}
    task = Task.from_response(body)
    assert (task.id, task.status) == ("cgt-1", Status.FAILED)
    assert task.error == "the gateway reported 'FAILURE' without a reason"


@pytest.mark.parametrize(
    ("body", "ident"),
    [
        ({"code": 0, "data": {"id": 12, "task_id": "cgt-1"}}, "cgt-1"),
        ({"id": 12, "task_id": "cgt-1", "status": "SUCCESS"}, "cgt-1"),
        ({"id": 12, "data": {"task_id": "cgt-1"}}, "cgt-1"),
        ({"id": 12, "status": "queued"}, "12"),
    ],
    ids=["wrapped", "unwrapped", "id-and-data.task_id", "only-a-number"],
)
def test_an_integer_row_id_never_beats_a_task_id(body, ident):
    """An integer ``id`` is a database row: a task_id wins; alone it is the id, as a string."""
    assert Task.from_response(body).id == ident


# --- fact 6: status words, Veo steps -----------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [("NOT_START", Status.QUEUED), ("QUEUED", Status.QUEUED), ("queueing", Status.QUEUED),
     ("preparing", Status.QUEUED), ("succeeded", Status.COMPLETED), ("Fail", Status.FAILED),
     ("unknown", Status.UNKNOWN)],
)
def test_section_6_status_words(word, status):
    """The words of PROTOCOL.md section 6 map as documented; ``unknown`` stays not terminal."""
    assert status_of(word) is status
    assert Task.from_response({"id": "t", "status": word}).status is status


@pytest.mark.parametrize(
    ("word", "upsample", "status"),
    [
        ("video_generation_completed", True, Status.PROCESSING),
        ("video_generation_completed", "true", Status.PROCESSING),
        ("video_upsampling", True, Status.PROCESSING),
        ("video_upsampling_completed", True, Status.COMPLETED),
        ("completed", True, Status.COMPLETED),
        ("video_generation_completed", False, Status.COMPLETED),
        ("video_generation_completed", "false", Status.COMPLETED),
        ("video_generation_completed", None, Status.COMPLETED),
    ],
)
def test_veo_steps_wait_for_upsampling_when_asked(word, upsample, status):
    """With detail.input.enable_upsample, video_generation_completed is a step, not the end."""
    body: dict[str, Any] = {"id": "v", "status": word, "video_url": VIDEO}
    if upsample is not None:
        body["detail"] = {"input": {"prompt": "x", "enable_upsample": upsample}}
    task = Task.from_response(body)
    assert task.status is status
    assert task.video_url == (VIDEO if status is Status.COMPLETED else None)


# --- fact 7: create answers without a status ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "ident"),
    [
        ({"task_id": "cgt-20260301-seed2"}, "cgt-20260301-seed2"),
        ({"id": "831922345719271497", "task_id": "831922345719271497"}, "831922345719271497"),
    ],
    ids=["seedance-2", "kling-omni"],
)
def test_a_create_answer_without_a_status_is_accepted_and_unknown(body, ident):
    """``{"task_id"}`` alone, or ``id`` equal to ``task_id``: an accepted task, status UNKNOWN."""
    task = Task.from_response(body)
    assert task == Task(id=ident, status=Status.UNKNOWN)
    assert not task.terminal


# --- properties -----------------------------------------------------------------------------

KEYS = st.sampled_from([
    "id", "task_id", "status", "progress", "created_at", "status_update_time", "video_url",
    "url", "data", "metadata", "error", "fail_reason", "content", "result_url", "message",
    "model", "updated_at", "detail", "input", "enable_upsample", "base_resp", "code",
    "status_msg", "completed_at",
]) | st.text(max_size=8)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.sampled_from([
        "50%", "0", "completed", "FAILURE", "video_generation_completed", VIDEO,
        "2025-11-08T23:07:57.510141923+08:00", 1762010621323, 1762780400, 0, "",
        "/v1/videos/t/content", "//cdn.example/x.mp4", TIMEOUT_ZH, TIMEOUT_EN, "SUCCESS",
        "video_upsampling_completed", "success",
    ])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=10)


def check_invariants(task: Task, body: dict[str, Any]) -> None:
    """The invariants every Task from from_response keeps."""
    assert isinstance(task.id, str)
    assert task.id
    assert isinstance(task.status, Status)
    assert task.raw is body
    assert task.progress is None or 0 <= task.progress <= 100
    for instant in (task.created_at, task.updated_at):
        assert instant is None or instant.utcoffset() == timedelta(0)
    assert task.terminal is task.status.terminal
    failed = task.status in (Status.FAILED, Status.CANCELLED)
    assert (task.error is not None) is failed
    assert task.error is None or (isinstance(task.error, str) and task.error)
    assert task.video_url is None or task.status is Status.COMPLETED
    assert task.video_url is None or task.video_url.lower().startswith(("http://", "https://", "/"))
    assert task.video_url is None or not any(ch.isspace() for ch in task.video_url)


@given(OBJECTS)
def test_any_json_object_gives_a_task_or_a_protocol_error(body):
    """Any JSON object gives a sound Task, or ProtocolError when it has no id; nothing else."""
    try:
        task = Task.from_response(body)
    except octovid.ProtocolError:
        data = body["data"] if isinstance(body.get("data"), dict) else {}
        ids = (body.get("id"), body.get("task_id"), data.get("task_id"))
        assert not any(isinstance(ident, str) and ident.strip() for ident in ids)
        return
    check_invariants(task, body)


@given(OBJECTS)
def test_any_json_object_with_a_task_id_gives_that_task(body):
    """With ``task_id=`` given, any JSON object gives a sound Task with exactly that id."""
    task = Task.from_response(body, task_id="x")
    assert task.id == "x"
    check_invariants(task, body)


NOT_URLS = st.text(min_size=1).map(str.strip).filter(
    lambda text: text and text.lower() != "null" and not text.startswith("/") and "://" not in text
)


@given(NOT_URLS, st.sampled_from(["video_url", "url", "result_url"]))
def test_any_text_in_a_result_field_of_a_failed_task_is_its_error(text, field):
    """Whatever non-URL text sits in a result field is a failed task's error, never its URL."""
    failed = Task.from_response({"id": "t", "status": "failed", field: text})
    done = Task.from_response({"id": "t", "status": "completed", field: text})
    assert (failed.error, failed.video_url) == (text, None)
    assert (done.status, done.video_url, done.error) == (Status.COMPLETED, None, None)


def test_restamp_keeps_every_field_but_the_stamp_and_the_body():
    """A restamped snapshot is the previous one in every field but updated_at and raw."""
    old, new = 1762010621, 1762010636
    text = b'{"id":"t1","status":"in_progress","progress":40,"status_update_time":%d}'
    previous = task_from_answer(
        text % old,
        {"id": "t1", "status": "in_progress", "progress": 40, "status_update_time": old,
         "model": "sora-2", "created_at": old - 60, "video_url": None},
        route=Route.OPENAI,
    )
    again = restamp(previous, text % new, old, new)
    assert again is not None
    assert again.updated_at == datetime.fromtimestamp(new, UTC)
    assert answer_text(again) == text % new
    for field in attrs.fields(Task):
        if field.name not in ("updated_at", "raw"):
            assert getattr(again, field.name) == getattr(previous, field.name), field.name
    assert restamp(previous, text % new, old + 1, new) is None  # not the stamp it was read from
