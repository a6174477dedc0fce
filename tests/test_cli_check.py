"""The command line, in process: checks before anything is paid for, the models table, resume,
messages in the shell's words. The simulator runs in a thread; ``main()`` runs as the command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import octovid
from octovid._batch import JournalLock, default_journal
from octovid._cli import main
from octovid._cli._catalog import FAMILIES, check_request, request_fields
from octovid._cli._messages import LogFilter, describe
from octovid.testing import Simulator


@pytest.fixture(autouse=True)
def environment(tmp_path, monkeypatch) -> Path:
    """No key or gateway from the environment; each test's own data directory."""
    home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    for name in ("OCTOVID_API_KEY", "OCTOVID_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator with quick tasks, in a thread."""
    with Simulator(duration=(0.1, 0.3)).run_in_thread() as sim:
        yield sim


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``octovid ARGS`` in process; return (exit status, stdout, stderr)."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def to(sim: Simulator) -> list[str]:
    """The options of a create, wait or batch against ``sim`` (its tasks are quick)."""
    return ["--api-key", sim.api_key, "--base-url", sim.url, "--rate-limit", "50",
            "--poll-interval", "0.2"]


def lines(path: Path, *rows: str) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


GOOD = '{"model": "sora-2", "prompt": "a corgi"}'


# -- money first: nothing is sent for a bad file --------------------------------------------


def test_a_misspelt_model_is_refused_before_the_lines_before_it_are_paid_for(
    tmp_path, capsys, sim
):
    """soar-2 on line 2: exit 2 with a did-you-mean, and line 1 is not created either."""
    batch = lines(tmp_path / "p.jsonl", GOOD, '{"model": "soar-2", "prompt": "x"}')
    status, out, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"), *to(sim))
    assert status == 2
    assert err.splitlines() == [
        f"octovid: error: {batch}:2: unknown model 'soar-2' (did you mean sora-2?)"
    ]
    assert out == ""
    assert sim.requests == []


def test_a_family_model_spelt_another_way_is_refused(tmp_path, capsys, sim):
    """veo-3.1-fast is not sent as a Veo request: it is refused, naming veo3.1-fast."""
    batch = lines(tmp_path / "p.jsonl", '{"model": "veo-3.1-fast", "prompt": "x"}')
    status, _, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"), *to(sim))
    assert status == 2
    assert "unknown model 'veo-3.1-fast' (did you mean veo3.1-fast?)" in err
    assert sim.requests == []


def test_a_misspelt_field_is_refused_instead_of_sent_with_the_default(tmp_path, capsys, sim):
    """"durration" is an unknown field of sora-2, with a did-you-mean; nothing is sent."""
    batch = lines(tmp_path / "p.jsonl", '{"model": "sora-2", "prompt": "x", "durration": 10}')
    status, _, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"), *to(sim))
    assert status == 2
    assert err.splitlines() == [
        f"octovid: error: {batch}:1: unknown field 'durration' for sora-2 (did you mean "
        "duration?)"
    ]
    assert sim.requests == []


def test_every_bad_line_of_a_file_is_reported_at_once(tmp_path, capsys):
    """Three bad lines, three errors and a count, not only the first."""
    batch = lines(tmp_path / "p.jsonl", '{"model": "soar-2", "prompt": "a"}', GOOD,
                  '{"model": "sora-2", "prompt": "b", "stlye": "anime"}', "{oops",
                  '{"model": "grok-video-3", "prompt": "c", "duration": 7}')
    status, _, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"),
                         "--api-key", "k", "--base-url", "http://127.0.0.1:9")
    assert status == 2
    assert err.splitlines() == [
        f"octovid: error: {batch}:1: unknown model 'soar-2' (did you mean sora-2?)",
        f"octovid: error: {batch}:3: unknown field 'stlye' for sora-2 (did you mean style?)",
        f"octovid: error: {batch}:4: not JSON (Expecting property name enclosed in double "
        "quotes at column 2)",
        f"octovid: error: {batch}:5: duration=7 is not allowed: one of 6, 10, 15",
        "octovid: error: 4 problems; nothing was sent",
    ]


def test_unknown_models_are_sent_as_given_only_when_allowed(tmp_path, capsys, sim):
    """--allow-unknown-models sends a model of no family as is (a VideoRequest)."""
    batch = lines(tmp_path / "p.jsonl", '{"model": "hailuo-02", "prompt": "x", "mode": "pro"}')
    refused, _, _ = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"), *to(sim))
    status, out, _ = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"), *to(sim),
                         "--allow-unknown-models")
    creates = [r for r in sim.requests if r.method == "POST"]
    assert refused == 2
    assert len(creates) == 1
    assert status == 1  # the simulator serves no such model
    assert "HTTP 503 model_not_found" in out


def test_a_wrong_key_stops_the_batch_with_one_line(tmp_path, capsys, sim):
    """30 lines and a wrong key: one error line, no table of 401s, exit 1."""
    batch = lines(tmp_path / "p.jsonl",
                  *(f'{{"model": "sora-2", "prompt": "take {i}"}}' for i in range(30)))
    status, out, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"),
                           "--api-key", "wrong", "--base-url", sim.url)
    assert status == 1
    assert out == ""
    assert err.splitlines()[0] == f"octovid: {batch}: 30 lines: 30 to create"
    (error,) = err.splitlines()[1:]
    assert error.startswith("octovid: error: HTTP 401: Invalid token")
    assert error.endswith("check --api-key or OCTOVID_API_KEY; stopped, nothing more was sent")
    assert not sim.tasks


def test_create_checks_its_model_and_fields_too(capsys):
    """create soar-2 and --set durration=... are refused with the same words as batch lines."""
    common = ["--api-key", "k", "--base-url", "http://127.0.0.1:9"]
    model = run(capsys, "create", "soar-2", "x", *common)
    field = run(capsys, "create", "sora-2", "x", "--set", "durration=10", *common)
    value = run(capsys, "create", "sora-2", "x", "--set", "watermark=yes", *common)
    assert model[0] == field[0] == value[0] == 2
    assert model[2] == "octovid: error: unknown model 'soar-2' (did you mean sora-2?)\n"
    assert field[2] == ("octovid: error: unknown field 'durration' for sora-2 (did you mean "
                        "duration?)\n")
    assert value[2] == 'octovid: error: watermark="yes" is not allowed: true or false\n'


def test_a_dry_run_says_what_it_would_do_and_sends_nothing(tmp_path, capsys):
    """--dry-run checks the file and prints the plan without a key or a gateway."""
    batch = lines(tmp_path / "p.jsonl", GOOD, '{"model": "sora-2", "prompt": "b"}')
    status, out, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"),
                           "--dry-run")
    assert status == 0
    assert out == ""
    assert err.startswith(f"octovid: {batch}: 2 lines: 2 to create (journal ")


# -- resume is visible, and nothing is billed twice ----------------------------------------


def test_a_rerun_says_what_is_done_running_and_left(tmp_path, capsys, sim):
    """The plan line of a second run counts the lines done, still running and to create."""
    batch = lines(tmp_path / "p.jsonl", GOOD)
    out = str(tmp_path / "o")
    first = run(capsys, "batch", str(batch), "--out", out, *to(sim), "--poll-interval", "0.1")
    assert first[0] == 0, first[2]
    lines(batch, GOOD, '{"model": "sora-2", "prompt": "b"}', '{"model": "sora-2", "prompt": "c"}')
    status, stdout, err = run(capsys, "batch", str(batch), "--out", out, *to(sim),
                              "--deadline", "0.3", "--poll-interval", "5")
    assert err.splitlines()[0] == f"octovid: {batch}: 3 lines: 1 done, 2 to create"
    assert status == 1
    for task in sim.tasks.values():
        if task.body["prompt"] != "a corgi":
            sim.stall(task.id)  # still running on the gateway, whatever the next run sees
    again = run(capsys, "batch", str(batch), "--out", out, *to(sim), "--deadline", "0.3",
                "--poll-interval", "5")
    assert again[2].splitlines()[0] == f"octovid: {batch}: 3 lines: 1 done, 2 running"
    assert "unfinished" in stdout
    assert sorted(sim.creates_per_body().values()) == [1, 1, 1]


def test_the_same_file_into_another_out_creates_nothing(tmp_path, capsys, sim):
    """A second --out gets the videos of the first run (copied), with no create sent."""
    batch = lines(tmp_path / "p.jsonl", GOOD, '{"model": "viduq2-pro", "prompt": "b"}')
    common = [*to(sim), "--poll-interval", "0.1"]
    first = run(capsys, "batch", str(batch), "--out", str(tmp_path / "one"), *common)
    second = run(capsys, "batch", str(batch), "--out", str(tmp_path / "two"), *common)
    assert (first[0], second[0]) == (0, 0)
    assert second[2].splitlines()[0] == f"octovid: {batch}: 2 lines: 2 done"
    assert sorted(sim.creates_per_body().values()) == [1, 1]
    assert sorted(p.name[:5] for p in (tmp_path / "two").glob("*.mp4")) == ["0001-", "0002-"]


def test_lines_created_in_another_journal_are_not_billed_again_silently(tmp_path, capsys, sim):
    """A file run with --journal A, then with the default journal: told, exit 2, no create."""
    batch = lines(tmp_path / "p.jsonl", GOOD)
    other = tmp_path / "elsewhere.db"
    common = ["--out", str(tmp_path / "o"), *to(sim), "--poll-interval", "0.1"]
    assert run(capsys, "batch", str(batch), *common, "--journal", str(other))[0] == 0
    status, _, err = run(capsys, "batch", str(batch), *common)
    assert status == 2
    assert err.splitlines() == [
        f"octovid: error: {batch}: 1 of the 1 lines to create were already created by an "
        f"earlier run, whose journal is {other}; nothing was sent. To go on with those tasks, "
        f"add --journal {other}; to create them anew (billed again), add --create-again"
    ]
    assert list(sim.creates_per_body().values()) == [1]
    again = run(capsys, "batch", str(batch), *common, "--create-again")
    assert again[0] == 0
    assert list(sim.creates_per_body().values()) == [2]


def test_a_journal_in_use_is_refused(tmp_path, capsys, sim, environment):
    """A second batch on the journal of a running one stops with one line, sending nothing."""
    batch = lines(tmp_path / "p.jsonl", GOOD)
    with JournalLock(default_journal(sim.url)):
        status, _, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"),
                             *to(sim))
    assert status == 1
    assert err.startswith("octovid: error: another octovid batch (pid ")
    assert [r for r in sim.requests if r.method == "POST"] == []


def test_a_file_with_a_byte_order_mark_runs(tmp_path, capsys, sim):
    """A batch file saved with a UTF-8 BOM is read like any other."""
    batch = tmp_path / "p.jsonl"
    batch.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
    status, out, err = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"),
                           *to(sim), "--poll-interval", "0.1")
    assert status == 0, err
    assert out.startswith("1 line: 1 completed;")


def test_no_download_does_not_claim_videos_it_did_not_download(tmp_path, capsys, sim):
    """--no-download's summary says so, and the output folder holds only the manifest."""
    batch = lines(tmp_path / "p.jsonl", GOOD)
    out = tmp_path / "o"
    status, stdout, _ = run(capsys, "batch", str(batch), "--out", str(out), *to(sim),
                            "--no-download", "--poll-interval", "0.1")
    assert status == 0
    assert stdout.splitlines() == [
        f"1 line: 1 completed (not downloaded: --no-download); list in {out / 'manifest.jsonl'}"
    ]
    assert [p.name for p in out.iterdir()] == ["manifest.jsonl"]


def test_json_output_names_the_model(tmp_path, capsys, sim):
    """--json lines of create and batch carry the request's model, never null."""
    _, out, _ = run(capsys, "create", "sora-2", "x", "--json", *to(sim))
    batch = lines(tmp_path / "p.jsonl", GOOD)
    _, lines_out, _ = run(capsys, "batch", str(batch), "--out", str(tmp_path / "o"), "--json",
                          *to(sim), "--poll-interval", "0.1")
    records = [json.loads(line) for line in lines_out.splitlines()]
    assert json.loads(out)["model"] == "sora-2"
    assert records[1]["model"] == "sora-2"
    assert (records[1]["line"], records[1]["prompt"]) == (1, "a corgi")


# -- the command line itself ---------------------------------------------------------------


def test_global_options_may_come_before_the_command(capsys, sim):
    """octovid --api-key K --base-url U create ... is accepted, as after the command."""
    before = run(capsys, "--api-key", sim.api_key, "--base-url", sim.url, "--json", "create",
                 "sora-2", "x")
    after = run(capsys, "create", "sora-2", "y", "--api-key", sim.api_key, "--base-url",
                sim.url, "--json")
    assert (before[0], after[0]) == (0, 0)
    assert len(sim.tasks) == 2
    assert json.loads(before[1])["status"] == "queued"


def test_octovid_alone_prints_the_help(capsys):
    """With no command, octovid prints its whole help (the commands), not just usage."""
    status, out, _ = run(capsys)
    assert status == 0
    assert out.startswith("usage: octovid")
    for command in ("create", "status", "wait", "download", "batch", "models", "demo",
                    "simulate"):
        assert f"    {command}" in out


def test_models_lists_families_models_and_fields(capsys):
    """octovid models shows each family's models, and each field with its allowed values."""
    status, out, _ = run(capsys, "models")
    assert status == 0
    for family in FAMILIES:
        assert f"{family.name}: {', '.join(family.models)}" in out
    assert "  duration     10, 15, 25 (sora-2-pro: also longer); default 10" in out
    assert "  style        thanksgiving, comic, news, selfie, nostalgic, anime" in out
    assert "  aspect_ratio  16:9, 4:3, 1:1, 3:4, 9:16, 21:9" in out


def test_models_of_one_family_as_json_and_markdown(capsys):
    """models sora --json is the Sora family; --markdown is a table for the README."""
    _, out, _ = run(capsys, "models", "sora-2-pro", "--json")
    (record,) = [json.loads(line) for line in out.splitlines()]
    _, table, _ = run(capsys, "models", "--markdown")
    missing = run(capsys, "models", "kling")
    assert record["family"] == "Sora"
    assert record["models"] == ["sora-2", "sora-2-pro"]
    assert {"name": "size", "allowed": "small, large", "default": "small"} in record["fields"]
    assert table.startswith("| family | models | field | allowed values | default |\n")
    assert "| Grok | `grok-video-3`, `grok-video-3-pro`, `grok-video-3-max` | `images` |" in table
    assert missing[0] == 2
    assert "no family or model 'kling'" in missing[2]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_models_table_matches_the_request_classes(family):
    """Each family's fields are its class's; listed values and models are accepted as such."""
    own = tuple(f.name for f in family.fields if not f.passthrough)
    assert sorted(own) == sorted(request_fields(family.request))
    for model in family.models:
        assert type(octovid.request_from_dict({"model": model, "prompt": "x"})) is (
            family.request
        )
        assert check_request({"model": model, "prompt": "x"}) == []
    for field in family.fields:
        for value in field.values:
            data = {"model": family.models[0], "prompt": "x", field.name: value}
            if field.name == "enable_upsample":
                data["orientation"] = "landscape"
            assert check_request(data) == []
            request = octovid.request_from_dict(data)
            assert attrs.asdict(request)[field.name] in (value, str(value).upper(),
                                                         str(value).lower())
        if field.values and all(isinstance(v, str) for v in field.values):
            with pytest.raises(octovid.RequestValidationError):
                octovid.request_from_dict({"model": family.models[-1], "prompt": "x",
                                           field.name: "nonsense"})


# -- messages ------------------------------------------------------------------------------


def test_waiting_too_long_advises_octovid_wait_not_python(capsys, sim):
    """A deadline passed: one line advising `octovid wait ID`, no Client.watch(...)."""
    _, created, _ = run(capsys, "create", "sora-2", "x", "--json", *to(sim))
    task_id = json.loads(created)["id"]
    sim.stall(task_id)
    status, _, err = run(capsys, "wait", task_id, "--deadline", "0.3", *to(sim), "-q")
    assert status == 1
    (line,) = err.splitlines()
    assert line.startswith(f"octovid: error: gave up waiting for task {task_id} after ")
    assert line.endswith(f"it may still finish: octovid wait {task_id}")


def test_waiting_for_an_unknown_id_says_so_once(capsys, sim):
    """wait on a bad id prints one error line, not the watcher's warning as well."""
    status, _, err = run(capsys, "wait", "no-such-task", *to(sim))
    assert status == 1
    (line,) = err.splitlines()
    assert line.startswith("octovid: error: HTTP 400 task_not_exist")
    assert line.endswith("The gateway does not know task 'no-such-task': check the id")


def test_create_wait_shows_the_task_progress_as_plain_lines(capsys):
    """Off a terminal, create --wait prints a line on stderr at each change of status."""
    with Simulator(duration=(1.5, 1.5)).run_in_thread() as sim:
        status, out, err = run(capsys, "create", "sora-2", "x", "--wait", *to(sim),
                               "--poll-interval", "0.3")
    assert status == 0
    task_id = out.split()[0]
    shown = [line for line in err.splitlines() if line.startswith(f"octovid: {task_id} ")]
    assert len(shown) >= 3
    assert shown[-1].startswith(f"octovid: {task_id} completed 100%")
    assert any(" processing " in line and "%" in line for line in shown)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (octovid.AuthenticationError(401, "Invalid token"), "check --api-key or OCTOVID_API_KEY"),
        (octovid.InsufficientQuotaError(403, "quota", code="insufficient_user_quota"),
         "top it up"),
        (octovid.RateLimitError(429, "slow down"), "lower --rate-limit"),
        (octovid.APIError(404, "Invalid URL (GET /v1/video/query)"), "check --base-url"),
        (octovid.WaitTimeoutError("t-1", None, 12.0), "octovid wait t-1"),
        (octovid.TransportError("cannot connect to http://h:1: ClientConnectorError Cannot "
                                "connect to host h:1 ssl:default [Connect call failed]",
                                sent=False), "cannot connect to http://h:1 (connection refused)"),
        (octovid.ConfigError("base_url 'x' must be an http:// or https:// URL"), "--base-url"),
    ],
)
def test_errors_speak_the_command_lines_words(error, words):
    """Advice names options and commands, never api_key=, Client.watch or RetryPolicy."""
    text = describe(error)
    assert words in text
    for python in ("api_key", "Client.", "RetryPolicy", "Journal.", "ClientConnectorError",
                   "ssl:default"):
        assert python not in text


def test_the_librarys_log_lines_are_translated_and_not_doubled():
    """Client.watch(...) in a log line becomes `octovid wait ID`; a give-up is not repeated."""
    import logging

    logging.getLogger("octovid").setLevel(logging.WARNING)
    keep = logging.LogRecord("octovid", logging.WARNING, "", 0,
                             "octovid: task %s was created after its job ended (%s); it is "
                             "not watched: Client.watch(%r) resumes it", ("t-1", "job", "t-1"),
                             None)
    drop = logging.LogRecord("octovid", logging.WARNING, "", 0,
                             "octovid: giving up on task %s: %s", ("t-1", "HTTP 400"), None)
    log_filter = LogFilter()
    assert log_filter.filter(keep)
    assert keep.getMessage().endswith("not watched: `octovid wait t-1` resumes it")
    assert not log_filter.filter(drop)


def test_lines_for_other_routes_are_checked_against_their_request_class():
    """Kling, Seedance and route=openai lines pass with their own fields; misspelt ones do not."""
    from octovid._cli._catalog import check_request

    assert check_request({"model": "kling-v2-1", "prompt": "x", "seconds": 5}) == []
    assert check_request({"model": "seedance-2", "prompt": "x"}) == []
    assert check_request({"model": "sora-2", "prompt": "x", "route": "openai",
                          "size": "720x1280", "seconds": "8"}) == []
    assert check_request({"model": "sora-2", "prompt": "x", "route": "unified",
                          "duration": 10}) == []
    [problem] = check_request({"model": "kling-v2-1", "prompt": "x", "secnds": 5})
    assert "unknown field 'secnds'" in problem and "did you mean seconds?" in problem
