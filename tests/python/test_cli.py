"""The ``durable`` command, called in-process against a real database (the worker command
runs in test_worker_process.py): every command, its errors (the one line and the exit
status), and the timeline of ``task show`` on a known history."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from durable import Client
from durable.cli import load_worker, main
from durable.cli.render import duration, preview, timeline_rows
from durable.workflow_commands import Event


@pytest.fixture(autouse=True)
def _database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # as the client role; monkeypatch puts the environment back
    monkeypatch.setenv("DURABLE_DATABASE_URL", db_url)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("durable ")


def test_migrate_reports_nothing_to_do_on_a_migrated_database(
    admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # as the superuser: migrating is the owner's (a member of durable_owner), not a client's
    code, out, _ = run(capsys, "--database-url", admin_url, "migrate")
    assert code == 0 and "migrations applied: none" in out


def test_queue_create_enqueue_tasks_and_queues(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "queue", "create", "cli", "--option", "concurrency_limit=3", "-o", "retention=600"
    )
    assert code == 0 and '"concurrency_limit": 3' in out and '"retention": 600' in out
    code, out, _ = run(
        capsys, "enqueue", "cli", "send", '{"to": "x"}', "--priority", "3", "--idempotency-key", "k1"
    )
    assert code == 0
    first = uuid.UUID(out.strip())
    code, out, _ = run(capsys, "enqueue", "cli", "send", '{"to": "y"}', "--idempotency-key", "k1")
    assert uuid.UUID(out.strip()) == first, "an idempotent repeat returns the first task"
    debounce = ["--debounce-key", "d", "--debounce-delay", "60", "--debounce-max-delay", "120"]
    code, out, _ = run(capsys, "enqueue", "cli-d", "batch", '{"n": 1}', "--create-queue", *debounce)
    debounced = uuid.UUID(out.strip())
    code, out, _ = run(capsys, "enqueue", "cli-d", "batch", '{"n": 2}', *debounce)
    assert code == 0 and uuid.UUID(out.strip()) == debounced, "a debounced repeat returns the pending task"
    code, _, err = run(capsys, "enqueue", "cli-d", "batch", "--debounce-delay", "5")
    assert code == 2 and "--debounce-key" in err
    with Client() as c:
        assert c.get_task(debounced).input == {"n": 2}
    code, out, _ = run(capsys, "enqueue", "cli", "plan", "--durable", "--delay", "3600")
    later = uuid.UUID(out.strip())

    code, out, _ = run(capsys, "tasks", "--queue", "cli", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["task_id"] for r in rows] == [str(later), str(first)], "newest first"
    assert rows[0]["durable"] is True and rows[1]["priority"] == 3
    code, out, _ = run(capsys, "tasks", "--queue", "cli", "--limit", "1")
    assert str(later) in out and str(first) not in out and f"--before {later}" in out
    code, out, _ = run(capsys, "tasks", "--queue", "cli", "--before", str(later), "--json")
    assert [r["task_id"] for r in json.loads(out)] == [str(first)]
    code, out, _ = run(capsys, "tasks", "--name", "plan", "--status", "pending", "--json")
    assert [r["task_id"] for r in json.loads(out)] == [str(later)]

    code, out, _ = run(capsys, "queues", "--json")
    cli = next(q for q in json.loads(out) if q["queue"] == "cli")
    assert (cli["pending"], cli["options"]["concurrency_limit"]) == (2, 3)
    code, out, _ = run(capsys, "queues")
    assert code == 0 and "cli" in out and "pending" in out
    code, out, _ = run(capsys, "stats", "cli", "--json")
    assert json.loads(out)["pending"] == 2


def test_task_show_history_cancel_retry(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(db_url) as client:
        client.create_queue("shows")
        task_id = client.enqueue("shows", "job", {"n": 1}, durable=True)
    code, out, _ = run(capsys, "task", "show", str(task_id))
    assert code == 0 and str(task_id) in out and "pending" in out and "event log: empty" in out
    code, out, _ = run(capsys, "task", "show", str(task_id), "--json")
    assert json.loads(out)["status"] == "pending" and json.loads(out)["events"] == []
    code, out, _ = run(capsys, "task", "history", str(task_id))
    assert code == 0 and "no events" in out
    code, out, _ = run(capsys, "cancel", str(task_id), "--reason", "not needed")
    assert code == 0 and "cancelled" in out
    code, out, _ = run(capsys, "cancel", str(task_id))
    assert "already cancelled" in out
    code, out, _ = run(capsys, "retry", str(task_id))
    assert code == 0 and "will run again" in out
    code, out, _ = run(capsys, "task", "show", str(task_id), "--json")
    assert json.loads(out)["status"] == "pending"


def test_emit_wakes_nobody_and_says_so(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(db_url) as client:
        client.create_queue("ev")
    code, out, _ = run(capsys, "emit", "approved", '{"by": "alice"}', "--queue", "ev")
    assert code == 0 and "0 task(s) woken" in out


def test_workers_lists_none(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "workers")
    assert code == 0 and "no registered workers" in out


def test_purge_deletes_finished_tasks(
    db_url: str, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(db_url) as client:
        client.create_queue("old")
        ids = client.enqueue_many("old", [{"task_name": "job"} for _ in range(3)])
        for task_id in ids:
            client.cancel(task_id)
    code, out, _ = run(capsys, "purge", "old")
    assert code == 0 and "3 finished task(s) of old deleted" in out
    with psycopg.connect(admin_url) as conn:
        assert conn.execute("select count(*) from durable.all_tasks where queue = 'old'").fetchone() == (0,)


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["enqueue", "nc", "x"], 1, "queue 'nc' does not exist: create it with `durable queue create nc`"),
        (["stats", "nosuchqueue"], 1, "queue 'nosuchqueue' does not exist"),
        (["enqueue", "nc", "x", '{"a": 1'], 2, "INPUT is not valid JSON"),
        (["enqueue", "nc", "x", "[1, 2]"], 2, "INPUT must be a JSON object"),
        (["emit", "k", "{nope", "--queue", "q"], 2, "PAYLOAD is not valid JSON"),
        (["task", "show", "not-a-uuid"], 2, "'not-a-uuid' is not a task id"),
        (["task", "show", str(uuid.UUID(int=7))], 1, "no task 00000000-0000-0000-0000-000000000007"),
        (["tasks", "--status", "done"], 2, "unknown status 'done'"),
        (["queue", "create", "q", "--option", "concurrency_limit"], 2, "--option takes KEY=VALUE"),
        (["queue", "create", "q", "--option", "nope=1"], 1, "unknown key(s) 'nope' in queue options"),
        (["worker", "no_such_module_xyz:worker"], 2, "cannot import module 'no_such_module_xyz'"),
        (["--log-level", "loud", "queues"], 2, "--log-level: unknown level 'loud'"),
    ],
)
def test_mistakes_get_one_line_and_a_status(
    argv: list[str], status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("durable: ") and "durable: durable:" not in lines[0], err
    assert message in lines[0], err
    assert "Traceback" not in err


def test_a_database_that_does_not_exist_fails_at_once(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = psycopg.conninfo.make_conninfo(db_url, dbname="durable_no_such_database")
    started = datetime.now(UTC)
    code, _, err = run(capsys, "--database-url", url, "queues")
    assert code == 1 and datetime.now(UTC) - started < timedelta(seconds=10)
    assert err.count("does not exist") == 1 and "cannot connect to the database" in err


def test_an_unmigrated_database_says_to_migrate(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"durable_bare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"'.encode())
    try:
        url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
        code, _, err = run(capsys, "--database-url", url, "queues")
        assert code == 1 and "not migrated" in err and "durable migrate" in err
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'drop database "{name}" with (force)'.encode())


def test_timeline_of_a_known_history() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    events = [
        Event(1, 1, "step", "plan", "ok", ["a", "b"], 1, t0 + timedelta(milliseconds=120)),
        Event(1, 2, "sleep", "nap", "ok", None, 1, t0 + timedelta(seconds=3, milliseconds=120)),
        Event(
            1,
            3,
            "step",
            "search",
            "error",
            {"type": "Timeout", "message": "x" * 200},
            2,
            t0 + timedelta(minutes=2),
        ),
    ]
    rows = timeline_rows(events, t0)
    assert rows[0] == ("1", "step", "plan", "1", "120 ms", "ok", '["a","b"]')
    assert rows[1] == ("2", "sleep", "nap", "1", "3.0 s", "ok", "")
    assert rows[2][:6] == ("3", "step", "search", "2", "1 min 56 s", "error")
    assert rows[2][6].startswith('{"type":"Timeout"') and rows[2][6].endswith("…") and len(rows[2][6]) == 60
    assert (duration(0.0123), duration(7200 + 180)) == ("12 ms", "2 h 03 min")
    assert preview({"a": [1, 2]}) == '{"a":[1,2]}'


def test_demo_kills_its_worker_and_the_second_one_finishes_without_repeating_steps(
    admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # as the superuser: the demo runs everything on one URL, and it starts by migrating,
    # which neither login role may (its worker and client calls are the roles' own verbs)
    code, out, _ = run(capsys, "--database-url", admin_url, "--log-level", "warning", "demo")
    assert code == 0
    assert "worker 1 killed with SIGKILL" in out
    assert "status: completed; 2 worker processes made tool calls" in out
    assert "#1 lease_expired" in out and "completed" in out
    # the plan step was recorded before the kill: worker 1 ran it once, worker 2 never
    assert out.count(": plan(") == 1 and "worker 1: plan(" in out
    log = out.split("event log of", 1)[1].split("attempts:", 1)[0]
    kinds = [line.split()[1] for line in log.splitlines()[2:] if line.strip()]
    assert kinds == ["step", "step", "step", "step", "step", "sleep", "step"]


def test_a_flaky_demo_tool_fails_at_most_max_failures_times_for_one_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (fewer failures than its step's attempts: the demo's task always completes)
    from durable import demo

    tool_log = tmp_path / "tools.jsonl"
    tool_log.touch()  # (as run_demo makes it)
    monkeypatch.setenv(demo.TOOL_LOG, str(tool_log))
    monkeypatch.setattr("durable.demo.random.random", lambda: 0.0)  # every call would fail
    monkeypatch.setattr("durable.demo.time.sleep", lambda seconds: None)
    outcomes = []
    for _ in range(demo.FLAKY.max_attempts):
        try:
            demo.search("q")
            outcomes.append("ok")
        except ConnectionError:
            outcomes.append("failed")
    assert outcomes == ["failed"] * demo.MAX_FAILURES + ["ok"] * (demo.FLAKY.max_attempts - demo.MAX_FAILURES)
    assert demo.FLAKY.max_attempts > demo.MAX_FAILURES
    with pytest.raises(ConnectionError):
        demo.search("another query")  # counted per argument


def test_load_worker_rejects_what_is_not_a_worker() -> None:
    with pytest.raises(SystemExit):
        load_worker("json")
    with pytest.raises(SystemExit):
        load_worker("os:getcwd")
    assert load_worker("durable.demo:build_worker").queue == "demo-agent"


def test_server_status_start_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "pgdata")
    code, out, _ = run(capsys, "server", "status", "--data-dir", data)
    assert code == 3 and "not running" in out
    code, out, _ = run(capsys, "server", "start", "--data-dir", data)
    assert code == 0 and out.startswith("postgresql://")
    try:
        code, out, _ = run(capsys, "server", "status", "--data-dir", data)
        assert code == 0 and "running, pid" in out
    finally:
        code, out, _ = run(capsys, "server", "stop", "--data-dir", data)
    assert code == 0 and "stopped" in out
    code, out, _ = run(capsys, "server", "status", "--data-dir", data)
    assert code == 3


def test_a_usage_mistake_shows_the_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "tasks", "--bogus")
    assert code == 2 and "No such option: --bogus" in err and "Usage: durable tasks" in err


def test_schedules_create_list_pause_resume_delete(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "queue", "create", "cli-sched")[0] == 0
    code, out, _ = run(capsys, "schedules")
    assert code == 0 and "no schedules" in out
    code, out, err = run(
        capsys,
        "schedule",
        "create",
        "nightly",
        "--queue",
        "cli-sched",
        "--task",
        "report",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--input",
        '{"kind": "daily"}',
        "--catch-up",
        "all",
        "--catch-up-max",
        "4",
    )
    assert code == 0 and out.startswith("schedule nightly on cli-sched: next tick "), (out, err)
    code, out, _ = run(capsys, "schedules", "--queue", "cli-sched", "--json")
    [row] = json.loads(out)
    assert (row["name"], row["cron"], row["tz"], row["input"], row["catch_up"], row["catch_up_max"]) == (
        "nightly",
        "30 2 * * *",
        "Europe/Berlin",
        {"kind": "daily"},
        "all",
        4,
    )
    code, out, _ = run(capsys, "schedules")
    assert code == 0 and "nightly" in out and "Europe/Berlin" in out and "running" in out
    code, out, _ = run(capsys, "schedule", "pause", "nightly", "--queue", "cli-sched")
    assert code == 0 and "paused" in out
    code, out, _ = run(capsys, "schedules", "-q", "cli-sched")
    assert "paused" in out
    code, out, _ = run(capsys, "schedule", "resume", "nightly", "--queue", "cli-sched")
    assert code == 0 and "running, next tick" in out
    code, out, _ = run(capsys, "schedule", "delete", "nightly", "--queue", "cli-sched")
    assert code == 0 and "deleted" in out
    code, _, err = run(capsys, "schedule", "delete", "nightly", "--queue", "cli-sched")
    assert code == 1 and "no schedule 'nightly'" in err


def test_schedule_mistakes_get_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "queue", "create", "cli-sched-bad")[0] == 0
    base = ("schedule", "create", "x", "--queue", "cli-sched-bad", "--task", "t")
    code, _, err = run(capsys, *base, "--cron", "0 0 * * 9")
    assert code == 1 and "day-of-week item '9' has a value outside 0-7" in err
    code, _, err = run(capsys, *base, "--cron", "@daily", "--tz", "Nowhere/Town")
    assert code == 1 and "unknown time zone 'Nowhere/Town'" in err
    code, _, err = run(capsys, *base, "--cron", "@daily", "--catch-up", "sometimes")
    assert code == 2 and "--catch-up takes skip, once or all" in err
    code, _, err = run(capsys, *base, "--cron", "@daily", "--input", "[1]")
    assert code == 2 and "--input must be a JSON object" in err
    code, _, err = run(capsys, "schedule", "pause", "x", "--queue", "cli-sched-bad")
    assert code == 1 and "no schedule 'x' on queue 'cli-sched-bad'" in err
