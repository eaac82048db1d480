"""The conformance suite of the worker protocol (tests/conformance) with the Python client.

Each scenario's tasks become task functions of a real :class:`durable.Worker` (durable
ones ``async def`` durable tasks calling the public :class:`~durable.DurableContext`
methods), running in a thread as the worker role on a database of the test's own; the
script's actions go through a :class:`durable.Client` as the client role. The format and
the rules of a runner: tests/conformance/README.md. The Node worker plays the same files
(examples/node-worker/conformance/runner.js).

A crash is an attempt that hangs (``asyncio.sleep``) and never reports; ``expire_lease``
ends its lease, and the worker cancels the hung code when its heartbeat finds the lease
lost, or when it stops.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from pyclient_support import ThreadedWorker

from durable import (
    ChildFailed,
    Client,
    DurableContext,
    EventTimeout,
    RetryPolicy,
    StepFailed,
    Worker,
)

SCENARIOS = Path(__file__).resolve().parents[1] / "conformance" / "scenarios"
AWAIT_TIMEOUT = 30.0
LEASE_SECONDS = 30

Json = Any
Op = dict[str, Any]


def load(path: Path) -> dict[str, Any]:
    scenario = json.loads(path.read_text())
    assert isinstance(scenario, dict)
    return scenario


# ------------------------------------------------------------------ matchers


def _type_ok(kind: str, actual: Json) -> bool:
    if kind == "uuid":
        if not isinstance(actual, str):
            return False
        try:
            uuid.UUID(actual)
        except ValueError:
            return False
        return True
    if kind == "timestamp":
        if not isinstance(actual, str):
            return False
        try:
            datetime.fromisoformat(actual)
        except ValueError:
            return False
        return True
    if kind == "integer":
        return isinstance(actual, int) and not isinstance(actual, bool)
    if kind == "number":
        return isinstance(actual, int | float) and not isinstance(actual, bool)
    types: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "boolean": bool,
        "object": dict,
        "array": list,
        "null": type(None),
    }
    return isinstance(actual, types[kind])


_MISSING = object()


def mismatch(expected: Json, actual: Json, where: str, aliases: dict[str, str]) -> str | None:
    """Why ``actual`` does not match ``expected`` (tests/conformance/README.md), or None."""
    if isinstance(expected, dict):
        if "$any" in expected:
            return f"{where}: missing" if actual is _MISSING else None
        if "$type" in expected:
            ok = _type_ok(expected["$type"], actual)
            return None if ok else f"{where}: {actual!r} is not of type {expected['$type']}"
        if "$range" in expected:
            lo, hi = expected["$range"]
            ok = isinstance(actual, int | float) and not isinstance(actual, bool) and lo <= actual < hi
            return None if ok else f"{where}: {actual!r} is not in [{lo}, {hi})"
        if "$contains" in expected:
            ok = isinstance(actual, str) and expected["$contains"] in actual
            return None if ok else f"{where}: {actual!r} does not contain {expected['$contains']!r}"
        if "$task" in expected:
            task_id = aliases.get(expected["$task"])
            ok = isinstance(actual, str) and task_id is not None and actual.lower() == task_id.lower()
            return None if ok else f"{where}: {actual!r} is not the id of {expected['$task']} ({task_id})"
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            why = mismatch(value, actual.get(key, _MISSING), f"{where}.{key}", aliases)
            if why:
                return why
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{where}: expected an array, got {actual!r}"
        if len(actual) != len(expected):
            return f"{where}: expected {len(expected)} elements, got {len(actual)}: {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            why = mismatch(e, a, f"{where}[{i}]", aliases)
            if why:
                return why
        return None
    if actual is _MISSING:
        return f"{where}: missing"
    if isinstance(expected, bool) or isinstance(actual, bool) or expected is None or actual is None:
        same = type(expected) is type(actual) and expected == actual
    else:
        same = expected == actual
    return None if same else f"{where}: expected {expected!r}, got {actual!r}"


def expect_match(expected: Json, actual: Json, where: str, aliases: dict[str, str]) -> None:
    why = mismatch(expected, actual, where, aliases)
    assert why is None, why


# ------------------------------------------------------------------ the scenario


class ScenarioError(Exception):
    """The scenario file is wrong (not the client)."""


def user_error(kind: str, message: str | None) -> Exception:
    """An exception whose class is named ``kind`` (the error's type in the task's error)."""
    cls = type(kind, (Exception,), {})
    return cast(Exception, cls(message or kind))


def substitute(value: Json, kept: dict[str, Json]) -> Json:
    if isinstance(value, list):
        return [substitute(v, kept) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$value"}:
            if value["$value"] not in kept:
                raise ScenarioError(f"no value kept under {value['$value']!r}")
            return kept[value["$value"]]
        return {k: substitute(v, kept) for k, v in value.items()}
    return value


def until(what: Callable[[], str], condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + AWAIT_TIMEOUT
    pause = 0.005
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {AWAIT_TIMEOUT} s waiting for {what()}")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class Pause:
    """A pause the code reached (on the worker's loop), released from the test's thread."""

    def __init__(self) -> None:
        self.reached = False
        self.ended = False
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


class Run:
    """One scenario played with a Python worker (in a thread) and a client."""

    def __init__(self, scenario: dict[str, Any], worker_url: str, client_url: str) -> None:
        self.s = scenario
        self.queue: str = scenario.get("queue") or f"conf_{scenario['name']}"
        self.worker_url = worker_url
        self.client_url = client_url
        self.code: dict[str, list[Op]] = {name: t["code"] for name, t in scenario["tasks"].items()}
        self.effects: dict[str, int] = {}
        self.fired: set[int] = set()  # one-shot hooks (crash, pause) already fired, by id(op)
        self.counts: dict[int, int] = {}  # raise and fail_times counters, by id(op)
        self.crashes = 0
        self.pauses: dict[str, Pause] = {}
        self.aliases: dict[str, str] = {}
        self.completed_traces: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()

    # -- the code of the tasks (runs on the worker's event loop) ---------------------------

    def effect(self, name: str) -> None:
        with self.lock:
            self.effects[name] = self.effects.get(name, 0) + 1

    def once(self, op: Op) -> bool:
        with self.lock:
            if id(op) in self.fired:
                return False
            self.fired.add(id(op))
            return True

    def count(self, op: Op) -> int:
        with self.lock:
            self.counts[id(op)] = self.counts.get(id(op), 0) + 1
            return self.counts[id(op)]

    async def crash(self) -> None:
        """The worker stops dead: this attempt never goes on, nor reports anything (the
        worker cancels it once it finds the lease lost, or when it stops)."""
        with self.lock:
            self.crashes += 1
        await asyncio.sleep(3600)
        raise AssertionError("a crashed attempt went on")

    async def pause(self, name: str, reached_here: list[str]) -> None:
        with self.lock:
            p = self.pauses.setdefault(name, Pause())
            p.reached = True
        reached_here.append(name)
        await p.event.wait()

    def task_function(self, name: str, durable: bool) -> Callable[..., Any]:
        if durable:

            async def durable_fn(input: dict[str, Any], ctx: DurableContext) -> Any:
                reached: list[str] = []
                try:
                    return await self.run_durable(self.code[name], ctx, reached)
                finally:
                    for p in reached:
                        self.pauses[p].ended = True

            return durable_fn

        async def plain_fn(input: dict[str, Any]) -> Any:
            reached: list[str] = []
            try:
                for op in self.code[name]:
                    if "return" in op:
                        return op["return"]
                    if not await self.run_common(op, reached):
                        raise ScenarioError(f"not an op of a plain task: {op}")
                return None
            finally:
                for p in reached:
                    self.pauses[p].ended = True

        return plain_fn

    async def run_common(self, op: Op, reached: list[str]) -> bool:
        if "effect" in op:
            self.effect(op["effect"])
        elif "raise" in op:
            if "times" not in op or self.count(op) <= op["times"]:
                raise user_error(op["raise"]["type"], op["raise"].get("message"))
        elif "crash" in op:
            if self.once(op):
                await self.crash()
        elif "pause" in op:
            if self.once(op):
                await self.pause(op["pause"], reached)
        else:
            return False
        return True

    async def run_durable(self, code: list[Op], ctx: DurableContext, reached: list[str]) -> Any:
        kept: dict[str, Json] = {}
        trace: list[dict[str, Any]] = []
        handles: dict[str, Any] = {}
        for op in code:
            if "return" in op:
                self.completed_traces[str(ctx.task_id)] = trace
                return substitute(op["return"], kept)
            if "step" in op:
                value = await self.step(op, ctx)
                kept[str(op.get("as", op["step"]))] = value
                trace.append({"kind": "step", "value": value})
            elif "now" in op:
                now = await ctx.now()
                kept[op.get("as", "now")] = now.isoformat()
                trace.append({"kind": "now", "value": now})
            elif "random" in op:
                number = await ctx.random()
                kept[op.get("as", "random")] = number
                trace.append({"kind": "random", "value": number})
            elif "uuid" in op:
                drawn = str(await ctx.uuid4())
                kept[op.get("as", "uuid")] = drawn
                trace.append({"kind": "uuid", "value": drawn})
            elif "patched" in op:
                taken = await ctx.patched(op["patched"])
                kept[str(op.get("as", op["patched"]))] = taken
                if taken:
                    trace.append({"kind": "patch"})
            elif "deprecate_patch" in op:
                before = ctx.seq
                await ctx.deprecate_patch(op["deprecate_patch"])
                if ctx.seq > before:  # it accepted a recorded marker
                    trace.append({"kind": "patch"})
            elif "sleep" in op:
                await ctx.sleep(op["sleep"], name=op.get("name", "sleep"))
                trace.append({"kind": "sleep"})
            elif "wait" in op:
                timed_out = False
                try:
                    payload = await ctx.wait_for_event(op["wait"], timeout=op.get("timeout"))
                except EventTimeout:
                    if "on_timeout" not in op and not op.get("catch"):
                        raise
                    timed_out = True
                    payload = op.get("on_timeout", {"caught": "EventTimeout"})
                kept[str(op.get("as", op["wait"]))] = payload
                trace.append({"kind": "wait", "value": payload, "timed_out": timed_out})
            elif "spawn" in op:
                child = self.s["tasks"].get(op["spawn"])
                if child is None:
                    raise ScenarioError(f"no task {op['spawn']} in the scenario")
                options = dict(op.get("options", {}))
                if child["durable"]:
                    options["durable"] = True
                handle = await ctx.spawn(op["spawn"], op.get("input", {}), **options)
                if "as" in op:
                    handles[op["as"]] = handle
                    self.aliases[op["as"]] = str(handle.task_id)
                trace.append({"kind": "spawn", "value": str(handle.task_id)})
            elif "wait_children" in op:
                outcomes = await ctx.wait_children(
                    [handles[a] for a in op["wait_children"]], name=op.get("name", "children")
                )
                kept[str(op.get("as", op.get("name", "children")))] = outcomes
                trace.append({"kind": "children", "value": outcomes})
            elif "result" in op:
                failed = False
                try:
                    output = await handles[op["result"]].result()
                except ChildFailed:
                    if not op.get("catch"):
                        raise
                    failed = True
                    output = {"caught": "ChildFailed"}
                kept[str(op.get("as", op["result"]))] = output
                trace.append({"kind": "result", "value": output, "failed": failed})
            elif not await self.run_common(op, reached):
                raise ScenarioError(f"unknown op {op}")
        self.completed_traces[str(ctx.task_id)] = trace
        return None

    async def step(self, op: Op, ctx: DurableContext) -> Json:
        name: str = op["step"]

        async def fn() -> Json:
            self.effect(name)
            if op.get("crash") and self.once(op):
                await self.crash()
            if op.get("fail_times") and self.count(op) <= op["fail_times"]:
                raise user_error("Flaky", f"failure of {name}")
            if "error" in op:
                raise user_error(op["error"]["type"], op["error"].get("message"))
            return op.get("value")

        retry = RetryPolicy(max_attempts=op["retry"]["max_attempts"], delay=0.0) if "retry" in op else None
        try:
            return await ctx.step(name, fn, retry=retry)
        except StepFailed:
            if not op.get("catch"):
                raise
            return {"caught": "StepFailed"}

    # -- the script (runs in the test's thread) ----------------------------------------------

    def id(self, alias: str) -> str:
        if alias not in self.aliases:
            raise ScenarioError(f"no task is called {alias}")
        return self.aliases[alias]

    def play(self) -> None:
        worker = Worker(
            self.worker_url,
            queue=self.queue,
            concurrency=8,
            lease_seconds=LEASE_SECONDS,
            poll_interval=0.05,
            shutdown_grace=0.2,
        )
        for name, task in self.s["tasks"].items():
            if task["durable"]:
                worker.durable_task(name=name)(self.task_function(name, True))
            else:
                worker.task(name=name)(self.task_function(name, False))
        with Client(self.client_url) as client:
            client.create_queue(self.queue, **(self.s.get("queue_options") or {"backoff": {"kind": "none"}}))
            running = ThreadedWorker(worker).start()
            try:
                for i, action in enumerate(self.s["actions"], 1):
                    try:
                        self.act(client, action)
                    except AssertionError as exc:
                        raise AssertionError(f"action {i} {json.dumps(action)[:120]}: {exc}") from exc
            finally:
                for p in self.pauses.values():
                    p.release()
                running.stop()

    def act(self, client: Client, a: dict[str, Any]) -> None:
        if "enqueue" in a:
            task = self.s["tasks"][a["enqueue"]]
            options = dict(a.get("options", {}))
            if task["durable"]:
                options["durable"] = True
            task_id = client.enqueue(self.queue, a["enqueue"], a.get("input", {}), **options)
            self.aliases[a.get("as", a["enqueue"])] = str(task_id)
        elif "await" in a:
            self.wait_for(client, a["await"])
        elif "expire_lease" in a:
            self.expire_lease(client, self.id(a["expire_lease"]))
        elif "deploy" in a:
            self.code.update(a["deploy"])
        elif "emit" in a:
            client.emit_event(self.queue, a["emit"], a.get("payload"))
        elif "resume" in a:
            if a["resume"] not in self.pauses:
                raise ScenarioError(f"nothing paused at {a['resume']}")
            self.pauses[a["resume"]].release()
        elif "cancel" in a:
            client.cancel(self.id(a["cancel"]))
        elif "retry" in a:
            client.retry(self.id(a["retry"]))
        elif "replay" in a:
            client.replay(self.id(a["replay"]))
        elif "fork" in a:
            self.aliases[a["as"]] = str(client.fork(self.id(a["fork"]), a["at"]))
        elif "expect" in a:
            self.check(client, a["expect"])
        else:
            raise ScenarioError(f"unknown action {a}")

    def wait_for(self, client: Client, w: dict[str, Any]) -> None:
        if "task" in w:
            wanted = [w["status"]] if isinstance(w["status"], str) else list(w["status"])
            last: list[str] = ["unknown"]

            def reached() -> bool:
                if w["task"] not in self.aliases:
                    return False  # a child not spawned yet
                last[0] = client.get_task(self.id(w["task"])).status
                return last[0] in wanted

            until(lambda: f"task {w['task']} to be {' or '.join(wanted)} (it is {last[0]})", reached)
        elif "crashes" in w:
            until(lambda: f"{w['crashes']} crashes", lambda: self.crashes >= w["crashes"])
        elif "paused" in w:
            until(lambda: f"pause {w['paused']}", lambda: w["paused"] in self.pauses)
        elif "ended" in w:
            until(
                lambda: f"the code paused at {w['ended']} to end",
                lambda: w["ended"] in self.pauses and self.pauses[w["ended"]].ended,
            )
        else:
            raise ScenarioError(f"unknown await {w}")

    def expire_lease(self, client: Client, task_id: str) -> None:
        """The lease of the task runs out: this session's clock moves past every lease, and
        the reclaim ends it (the task keeps its history and its place in the queue)."""
        before = client.get_task(task_id)
        assert before.status == "running", f"expire_lease: the task is {before.status}, not running"
        with psycopg.connect(self.client_url, autocommit=True) as conn, conn.transaction():
            conn.execute(
                "select set_config('durable.fake_now',"
                " (clock_timestamp() + make_interval(secs => %s))::text, true)",
                (LEASE_SECONDS + 1,),
            )
            conn.execute("select durable.reclaim(%s)", (self.queue,))
        after = client.get_task(task_id)
        assert after.lost_leases == before.lost_leases + 1, "expire_lease: the reclaim did not end the lease"

    def check(self, client: Client, expect: dict[str, Any]) -> None:
        for alias, e in expect.get("tasks", {}).items():
            task_id = self.id(alias)
            task = client.get_task(task_id)
            where = f"task {alias}"
            if "status" in e:
                expect_match(e["status"], task.status, f"{where}.status", self.aliases)
            if "output" in e:
                expect_match(e["output"], task.output, f"{where}.output", self.aliases)
            if "error" in e:
                expect_match(e["error"], task.error, f"{where}.error", self.aliases)
            if "attempts" in e:
                expect_match(e["attempts"], task.attempt, f"{where}.attempts", self.aliases)
            history = client.history(task_id)
            if "history" in e:
                actual = [[ev.kind, ev.name, ev.outcome, ev.result] for ev in history]
                expect_match(e["history"], actual, f"{where}.history", self.aliases)
                assert [ev.seq for ev in history] == list(range(1, len(history) + 1))
            if "all_generations" in e:
                count = len(client.history(task_id, all_generations=True))
                expect_match(e["all_generations"], count, f"{where}.all_generations", self.aliases)
            if e.get("returns_match_history"):
                self.check_returns(where, task_id, [(ev.kind, ev.outcome, ev.result) for ev in history])
        for name, n in expect.get("effects", {}).items():
            expect_match(n, self.effects.get(name, 0), f"effects.{name}", self.aliases)

    def check_returns(self, where: str, task_id: str, history: list[tuple[str, str, Json]]) -> None:
        """In the last attempt that ran its code to the end, each call returned the recorded value."""
        trace = self.completed_traces.get(task_id)
        assert trace is not None, f"{where}: no attempt ran its code to the end"
        assert len(trace) == len(history), f"{where}: {len(trace)} calls, {len(history)} events"
        for i, (call, (kind, outcome, result)) in enumerate(zip(trace, history, strict=True), 1):
            value = call.get("value")
            if call["kind"] == "step":
                caught = isinstance(value, dict) and "caught" in value
                same = outcome == "error" if caught else (outcome == "ok" and value == result)
            elif call["kind"] == "now":
                recorded = datetime.fromisoformat(result)
                same = math.isclose(call["value"].timestamp(), recorded.timestamp(), abs_tol=1e-6)
            elif call["kind"] in ("random", "spawn"):
                same = value == (result["task_id"] if call["kind"] == "spawn" else result)
            elif call["kind"] == "uuid":
                same = str(value).lower() == str(result).lower()
            elif call["kind"] in ("sleep", "patch"):
                same = kind == call["kind"]
            elif call["kind"] == "wait":
                same = result["timed_out"] is True if call["timed_out"] else value == result["payload"]
            elif call["kind"] == "children":
                same = value == result
            else:  # result
                same = result[0]["status"] != "completed" if call["failed"] else value == result[0]["output"]
            assert same, f"{where}: call {i} ({call['kind']}) returned {value!r}, recorded {result!r}"


def _scenarios() -> Iterator[Any]:
    for path in sorted(SCENARIOS.glob("*.json")):
        yield pytest.param(path, id=path.stem)


@pytest.mark.parametrize("path", _scenarios())
def test_conformance(path: Path, worker_url: str, db_url: str) -> None:
    Run(load(path), worker_url, db_url).play()
