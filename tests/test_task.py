"""Task.from_response: every response shape of PROTOCOL.md section 3, normalised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import octovid
from octovid import ProtocolError, Status, Task

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


# --- properties -----------------------------------------------------------------------------

KEYS = st.sampled_from([
    "id", "task_id", "status", "progress", "created_at", "status_update_time", "video_url",
    "url", "data", "metadata", "error", "fail_reason", "content", "result_url", "message",
    "model", "updated_at",
]) | st.text(max_size=8)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.sampled_from([
        "50%", "0", "completed", "FAILURE", "video_generation_completed", VIDEO,
        "2025-11-08T23:07:57.510141923+08:00", 1762010621323, 1762780400, 0, "",
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
    assert task.error is None or task.status in (Status.FAILED, Status.CANCELLED)


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
