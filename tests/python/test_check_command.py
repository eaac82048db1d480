"""``durable check MODULE:WORKER``: the histories an old version of a worker module left
unfinished, checked as a reader against changed versions of the module: the bad changes
(reordered steps, a renamed step, a changed spawn input, a renamed sleep) exit 1 naming
the task and the event, the good one (patches done right, a task name it no longer
serves) exits 0; the check writes nothing. And ``durable patch-usage``."""

from __future__ import annotations

import functools
import importlib
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, Worker
from durable.cli import main

#: the old module; the changed versions replace parts of it
OLD = """
from durable import Worker


def build(dsn=None):
    worker = Worker(dsn, queue="deploy", poll_interval=0.05)

    @worker.durable_task
    async def order(input, ctx):
        n = input["n"]
        await ctx.step("fetch", lambda: n)
        await ctx.spawn("child", {"n": n})
        await ctx.step("charge", lambda: 10 * n)
        await ctx.wait_for_event(f"go-{n}")
        return "shipped"

    @worker.task
    def child(input):
        return input

    @worker.durable_task
    def nap(input, ctx):
        ctx.step("a", lambda: 1)
        ctx.sleep(3600, name="nap")
        return ctx.step("b", lambda: 2)

    @worker.durable_task
    async def legacy(input, ctx):
        await ctx.step("x", lambda: 1)
        await ctx.wait_for_event("never")

    return worker


worker = build()
"""

#: name -> (what is replaced, by what)
CHANGES: dict[str, list[tuple[str, str]]] = {
    # patches done right, and legacy no longer served by this worker
    "good": [
        (
            '        await ctx.step("fetch", lambda: n)\n',
            '        await ctx.step("fetch", lambda: n)\n'
            '        if await ctx.patched("audit"):\n'
            '            await ctx.step("audit", lambda: "audited")\n',
        ),
        (
            '        await ctx.wait_for_event(f"go-{n}")\n',
            '        await ctx.wait_for_event(f"go-{n}")\n'
            '        if await ctx.patched("express"):\n'
            '            await ctx.step("courier", lambda: 1)\n',
        ),
        ("    @worker.durable_task\n    async def legacy", "    async def legacy"),
    ],
    "reordered": [
        (
            '        await ctx.spawn("child", {"n": n})\n        await ctx.step("charge", lambda: 10 * n)\n',
            '        await ctx.step("charge", lambda: 10 * n)\n        await ctx.spawn("child", {"n": n})\n',
        )
    ],
    "renamed": [('ctx.step("fetch", lambda: n)', 'ctx.step("fetch_order", lambda: n)')],
    "spawn_input": [('ctx.spawn("child", {"n": n})', 'ctx.spawn("child", {"n": n, "rush": True})')],
    "sleep": [('ctx.sleep(3600, name="nap")', 'ctx.sleep(3600, name="doze")')],
    # the good one with the id of its first patch changed (a mistake once it is deployed)
    "patch_renamed": [
        (
            '        await ctx.step("fetch", lambda: n)\n',
            '        await ctx.step("fetch", lambda: n)\n'
            '        if await ctx.patched("audit-2"):\n'
            '            await ctx.step("audit", lambda: "audited")\n',
        )
    ],
    # a step added without a patch, after the recorded history: nothing recorded changes
    "appended": [
        (
            '        return "shipped"\n',
            '        await ctx.step("notify", lambda: 1)\n        return "shipped"\n',
        )
    ],
}


@pytest.fixture
def reader_url(admin_url: str, db_url: str) -> Iterator[str]:
    """The test's database as a login role of its own granted durable_reader only."""
    role = f"durable_check_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login in role durable_reader").format(sql.Identifier(role)))
    try:
        yield make_conninfo(admin_url, user=role)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The module versions in a folder on sys.path, each under a name of this test's own:
    version -> module name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    suffix = uuid.uuid4().hex[:8]
    names = {}
    for version, changes in {"old": [], **CHANGES}.items():
        text = OLD
        for before, after in changes:
            assert before in text, f"{version}: {before!r} is not in the old module"
            text = text.replace(before, after)
        name = f"deploy_{version}_{suffix}"
        (tmp_path / f"{name}.py").write_text(text)
        names[version] = name
    yield names
    for name in names.values():
        sys.modules.pop(name, None)


def check(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, Any]:
    code = main(["--database-url", url, "check", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if "--json" in argv else out + err


def histories(
    modules: dict[str, str],
    worker_url: str,
    client: Client,
    start_worker: Callable[[Worker], ThreadedWorker],
) -> dict[str, uuid.UUID]:
    """Runs the old module until its tasks wait or sleep (and one order completes)."""
    build = importlib.import_module(modules["old"]).build
    client.create_queue("deploy")
    ids = {
        "order": client.enqueue("deploy", "order", {"n": 1}, durable=True),
        "done": client.enqueue("deploy", "order", {"n": 2}, durable=True),
        "nap": client.enqueue("deploy", "nap", {}, durable=True),
        "legacy": client.enqueue("deploy", "legacy", {}, durable=True),
    }
    old = start_worker(build(worker_url))
    wanted = {"order": "waiting", "done": "waiting", "nap": "sleeping", "legacy": "waiting"}

    def reached(key: str) -> bool:
        return client.get_task(ids[key]).status == wanted[key]

    for key in wanted:
        wait_until(functools.partial(reached, key), what=f"{key} {wanted[key]}")
    client.emit_event("deploy", "go-2", None)
    wait_until(lambda: client.get_task(ids["done"]).status == "completed", what="done completed")
    old.stop()
    return ids


def test_durable_check_finds_the_bad_changes_and_passes_the_good_ones(
    modules: dict[str, str],
    worker_url: str,
    reader_url: str,
    admin_url: str,
    client: Client,
    start_worker: Callable[[Worker], ThreadedWorker],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = histories(modules, worker_url, client, start_worker)
    with psycopg.connect(admin_url) as admin:
        before = admin.execute("select count(*), max(seq) from durable.events").fetchone()

    # the old code itself and the good changes: exit 0
    for version in ("old", "good", "appended"):
        code, report = check(capsys, reader_url, f"{modules[version]}:worker", "--json")
        assert code == 0, (version, report)
        assert report["ok"] and report["problems"] == 0 and report["checked"] == 3
    code, report = check(capsys, reader_url, f"{modules['good']}:worker", "--json")
    outcomes = {t["task_name"]: (t["outcome"], t["checked"], t["recorded"]) for t in report["tasks"]}
    assert outcomes == {
        "order": ("ok", 3, 3),  # the patch "audit" took the old branch; the history ends at the wait
        "nap": ("ok", 2, 2),  # the pending sleep presented
        "legacy": ("unknown task name", 0, 1),
    }
    assert report["unknown_task_names"] == ["legacy"]

    # the bad ones: exit 1, the task, the event and the difference
    expected = {
        "reordered": ("order", 2, ("spawn", "child"), ("step", "charge")),
        "renamed": ("order", 1, ("step", "fetch"), ("step", "fetch_order")),
        "spawn_input": ("order", 2, ("spawn", "child"), ("spawn", "child")),
        "sleep": ("nap", 2, ("sleep", "nap"), ("sleep", "doze")),
    }
    for version, (task_name, seq, recorded, presented) in expected.items():
        code, report = check(capsys, reader_url, f"{modules[version]}:worker", "--json")
        assert code == 1 and not report["ok"], (version, report)
        [bad] = [t for t in report["tasks"] if t["outcome"] != "ok" and t["outcome"] != "unknown task name"]
        assert bad["task_id"] == str(ids[task_name]) and bad["task_name"] == task_name, version
        assert bad["outcome"] == "nondeterminism"
        m = bad["mismatch"]
        assert m["seq"] == seq, version
        assert (m["recorded"]["kind"], m["recorded"]["name"]) == recorded, version
        assert (m["presented"]["kind"], m["presented"]["name"]) == presented, version
        if version == "spawn_input":
            assert m["recorded"]["input_hash"] != m["presented"]["input_hash"]
            assert "with other arguments" in m["message"]

    # the finished task too, when asked: the reordered code fails on both orders
    code, report = check(
        capsys, reader_url, f"{modules['reordered']}:worker", "--include-finished-since", "1h", "--json"
    )
    assert code == 1 and report["checked"] == 4
    assert sorted(t["task_id"] for t in report["tasks"] if t["outcome"] == "nondeterminism") == sorted(
        [str(ids["order"]), str(ids["done"])]
    )

    # the tables
    code, out = check(capsys, reader_url, f"{modules['renamed']}:worker")
    assert code == 1
    assert str(ids["order"]) in out and 'step "fetch"' in out and 'step "fetch_order"' in out
    code, out = check(capsys, reader_url, f"{modules['good']}:worker", "--queue", "deploy")
    assert code == 0 and "replays all 3 histories" in out

    # nothing was written, and the tasks are where they were
    with psycopg.connect(admin_url) as admin:
        assert admin.execute("select count(*), max(seq) from durable.events").fetchone() == before
    assert client.get_task(ids["order"]).status == "waiting"
    assert client.get_task(ids["nap"]).status == "sleeping"


def test_durable_check_usage_errors(capsys: pytest.CaptureFixture[str], reader_url: str) -> None:
    assert main(["--database-url", reader_url, "check", "no_such_module_here:worker"]) == 2
    assert "cannot import module" in capsys.readouterr().err
    assert (
        main(["--database-url", reader_url, "check", "json:dumps", "--include-finished-since", "soon"]) == 2
    )
    assert "not a duration" in capsys.readouterr().err


def test_durable_patch_usage(
    modules: dict[str, str],
    worker_url: str,
    reader_url: str,
    client: Client,
    start_worker: Callable[[Worker], ThreadedWorker],
    capsys: pytest.CaptureFixture[str],
) -> None:
    histories(modules, worker_url, client, start_worker)
    # the patched code takes over: the old order resumes past its wait and records "express"
    good = start_worker(importlib.import_module(modules["good"]).build(worker_url))
    fresh = client.enqueue("deploy", "order", {"n": 3}, durable=True)
    wait_until(lambda: client.get_task(fresh).status == "waiting", what="a new order waits")
    good.stop()
    assert main(["--database-url", reader_url, "patch-usage", "audit", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    # the new order holds the marker; the old one (and the finished one) began before it
    assert (row["task_name"], row["with_marker"], row["old_histories"]) == ("order", 1, 1)
    assert main(["--database-url", reader_url, "patch-usage", "audit", "--queue", "deploy"]) == 0
    out = capsys.readouterr().out
    assert "1 unfinished histories may take the old branch" in out and "keep the call" in out

    # the new order's marker, met by code whose patch id changed: the check fails there
    code, report = check(capsys, reader_url, f"{modules['patch_renamed']}:worker", "--json")
    assert code == 1
    [bad] = [t for t in report["tasks"] if t["outcome"] == "nondeterminism"]
    assert bad["task_id"] == str(fresh) and bad["mismatch"]["seq"] == 2
    assert 'recorded patch "audit", the code did patch "audit-2"' in bad["mismatch"]["message"]
