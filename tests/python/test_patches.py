"""ctx.patched and ctx.deprecate_patch: what the client presents and records for each kind
of history, against scripted answers (no database); then end to end, an old history and a
new run through a real worker, and a patch id changed under a marker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pyclient_support import ThreadedWorker, wait_until
from test_event_log import Database, context, event, run

from durable import Client, Worker
from durable.errors import NonDeterminismError
from durable.workflow import DurableContext, SyncDurableContext


def scripted(replay_answer: Mapping[str, Any] | None = None) -> Database:
    def answer(name: str, params: tuple[Any, ...]) -> Mapping[str, Any]:
        if name == "replay_check":
            return replay_answer or {"checked": len(json.loads(params[2]))}
        if name == "checkpoint":  # the event, with the result it was given
            return event(
                params[2], params[3], params[4], None if params[5] is None else json.loads(params[5])
            )
        if name == "complete":
            return {"completed": True}
        raise AssertionError(f"unexpected verb {name}")

    return Database(answer)


def presented(db: Database) -> list[dict[str, Any]]:
    checks = [params for name, params in db.sent if name == "replay_check"]
    assert checks, "nothing was presented"
    return list(json.loads(checks[-1][2]))


async def patched_code(ctx: DurableContext) -> list[str]:
    """fetch; a patch "audit" whose new branch adds a step; then ship."""
    done = [await ctx.step("fetch", lambda: 1)]
    if await ctx.patched("audit"):
        done.append(await ctx.step("audit", lambda: "audited"))
    done.append(await ctx.step("ship", lambda: "shipped"))
    return done


def test_a_new_run_records_the_marker_and_takes_the_new_branch() -> None:
    db = scripted()
    ctx = context(db)
    assert run(patched_code(ctx)) == [1, "audited", "shipped"]
    assert [(p[0], p[1][2:5]) for p in db.sent] == [
        ("checkpoint", (1, "step", "fetch")),
        ("checkpoint", (2, "patch", "audit")),
        ("checkpoint", (3, "step", "audit")),
        ("checkpoint", (4, "step", "ship")),
    ]
    assert db.sent[1][1][5:] == (None, None), "a marker is recorded with no result"


def test_a_history_of_the_old_code_takes_the_old_branch_presenting_nothing_for_the_patch() -> None:
    db = scripted()
    ctx = context(db, [event(1, "step", "fetch", 1), event(2, "step", "ship", "shipped")])
    assert run(patched_code(ctx)) == [1, "shipped"]
    assert db.sent == [], "a replay to the end sends nothing until completion"
    run(ctx.complete("null"))
    assert presented(db) == [
        {"seq": 1, "kind": "step", "name": "fetch"},
        {"seq": 2, "kind": "step", "name": "ship"},
    ]


def test_a_recorded_marker_is_presented_and_takes_the_new_branch() -> None:
    db = scripted()
    history = [
        event(1, "step", "fetch", 1),
        event(2, "patch", "audit", None),
        event(3, "step", "audit", "audited"),
        event(4, "step", "ship", "shipped"),
    ]
    ctx = context(db, history)
    assert run(patched_code(ctx)) == [1, "audited", "shipped"]
    run(ctx.complete("null"))
    assert presented(db)[1] == {"seq": 2, "kind": "patch", "name": "audit"}


def test_a_history_ending_at_the_patch_records_the_marker_there() -> None:
    db = scripted()
    ctx = context(db, [event(1, "step", "fetch", 1)])
    assert run(patched_code(ctx)) == [1, "audited", "shipped"]
    assert next(p[1][2:5] for p in db.sent if p[0] == "checkpoint") == (2, "patch", "audit")
    assert presented(db) == [{"seq": 1, "kind": "step", "name": "fetch"}]


def test_a_marker_of_another_id_is_presented_at_once_and_the_database_finds_the_mismatch() -> None:
    mismatch = {
        "nondeterminism": {
            "seq": 2,
            "recorded": {"kind": "patch", "name": "audit-1", "input_hash": None},
            "presented": {"kind": "patch", "name": "audit", "input_hash": None},
            "message": 'non-determinism ... recorded patch "audit-1", the code did patch "audit"',
        }
    }
    db = scripted(mismatch)
    ctx = context(db, [event(1, "step", "fetch", 1), event(2, "patch", "audit-1", None)])
    with pytest.raises(NonDeterminismError, match='recorded patch "audit-1"'):
        run(patched_code(ctx))
    assert db.verbs() == ["replay_check"]
    assert presented(db)[1] == {"seq": 2, "kind": "patch", "name": "audit"}


async def deprecated_code(ctx: DurableContext) -> list[str]:
    """The second deploy: the old branch is gone, the marker is accepted."""
    done = [await ctx.step("fetch", lambda: 1)]
    await ctx.deprecate_patch("audit")
    done.append(await ctx.step("audit", lambda: "audited"))
    return done


def test_deprecate_patch_consumes_a_recorded_marker_and_records_none() -> None:
    db = scripted()
    history = [event(1, "step", "fetch", 1), event(2, "patch", "audit", None), event(3, "step", "audit", "a")]
    ctx = context(db, history)
    assert run(deprecated_code(ctx)) == [1, "a"]
    run(ctx.complete("null"))
    assert [p["kind"] for p in presented(db)] == ["step", "patch", "step"]

    fresh = scripted()
    assert run(deprecated_code(context(fresh))) == [1, "audited"]
    assert [p[1][3] for p in fresh.sent] == ["step", "step"], "a new run records no marker"


def test_the_sync_context_takes_the_same_branches() -> None:
    def code(ctx: SyncDurableContext) -> list[Any]:
        done = [ctx.step("fetch", lambda: 1)]
        if ctx.patched("audit"):
            done.append(ctx.step("audit", lambda: "audited"))
        ctx.deprecate_patch("other")
        return done

    def sent(history: list[dict[str, Any]]) -> tuple[list[Any], Database]:
        db = scripted()
        inner = context(db, history)

        def sync_call(command: Any) -> Any:
            return asyncio.run(db.call(command))

        return code(SyncDurableContext(inner, sync_call)), db

    assert sent([event(1, "step", "fetch", 1), event(2, "step", "x", 2)])[0] == [1]
    new, db = sent([])
    assert new == [1, "audited"] and [p[1][3] for p in db.sent] == ["step", "patch", "step"]


# ---------------------------------------------------------------------------------------
# end to end


def order_worker(dsn: str, version: int) -> Worker:
    """The task "order" in three versions: 1 without the patch, 2 with it, 3 with its id
    changed (a mistake); each ships, then waits for the event "confirm-N"."""
    worker = Worker(dsn, queue="patches", poll_interval=0.05)

    @worker.durable_task(name="order")
    async def order(input: dict[str, Any], ctx: DurableContext) -> list[Any]:
        done = [await ctx.step("fetch", lambda: "fetched")]
        if version > 1 and await ctx.patched("express" if version == 2 else "express-2"):
            done.append(await ctx.step("ship", lambda: "by courier"))
        else:
            done.append(await ctx.step("ship", lambda: "by post"))
        await ctx.wait_for_event(f"confirm-{input['n']}")
        return done

    return worker


def test_old_histories_take_the_old_branch_new_runs_the_new_one_and_a_changed_id_fails(
    worker_url: str, client: Client, start_worker: Callable[[Worker], ThreadedWorker]
) -> None:
    client.create_queue("patches", backoff={"kind": "none"})

    def status(task: uuid.UUID, *wanted: str) -> None:
        wait_until(lambda: client.get_task(task).status in wanted, what=f"task {task}: {wanted}")

    old = client.enqueue("patches", "order", {"n": 1}, durable=True)
    v1 = start_worker(order_worker(worker_url, 1))
    status(old, "waiting")
    v1.stop()

    # the patched code: the old history goes down the old branch, a new run the new one
    v2 = start_worker(order_worker(worker_url, 2))
    new = client.enqueue("patches", "order", {"n": 2}, durable=True)
    status(new, "waiting")
    client.emit_event("patches", "confirm-1", None)
    status(old, "completed")
    v2.stop()
    assert client.get_task(old).output == ["fetched", "by post"]
    assert [(e.kind, e.name) for e in client.history(old)] == [
        ("step", "fetch"),
        ("step", "ship"),
        ("wait", "confirm-1"),
    ]
    assert [(e.kind, e.name) for e in client.history(new)] == [
        ("step", "fetch"),
        ("patch", "express"),
        ("step", "ship"),
    ]

    # the history holding the marker "express", replayed by code whose patch id changed
    v3 = start_worker(order_worker(worker_url, 3))
    client.emit_event("patches", "confirm-2", None)
    status(new, "failed")
    v3.stop()
    error = client.get_task(new).error
    assert error is not None and error["type"] == "NonDeterminismError"
    assert 'recorded patch "express", the code did patch "express-2"' in error["message"]
