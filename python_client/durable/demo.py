"""``durable demo``: a research agent whose worker is killed mid-run, and resumes.

The agent is a durable task: it plans, calls a flaky search tool a few times, fetches a
page, sleeps (durably) to respect a rate limit, and summarises. Each tool call is a
step, so its result is in the task's event log. The demo starts a worker process, waits
until three steps are recorded, kills the worker with SIGKILL, starts a second worker
and prints the event log: the second worker finishes the run without calling the
recorded tools again. Tool calls are also written to a file, so the demo can show how
many times each one really ran.

Run it with ``durable demo`` (the embedded PostgreSQL is used when no DATABASE_URL is set).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .client import Client
from .connections import resolve_dsn
from .errors import NonRetryableError
from .migrate import migrate
from .worker import Worker
from .workflow import DurableContext, RetryPolicy

QUEUE = "demo-agent"
TOOL_LOG = "DURABLE_DEMO_TOOL_LOG"
LEASE_SECONDS = 3


# --- the tools: slow, and some of them flaky --------------------------------------------


#: the most times a flaky tool fails for one argument: fewer than its step's attempts
#: (FLAKY), so that the demo's task always completes (else one run in a hundred had a step
#: fail five times in a row, the task with it)
MAX_FAILURES = 2


def _tool_call(tool: str, argument: str, *, flaky: bool = False) -> None:
    """Take the time a real tool would; a flaky one fails now and then (at most
    MAX_FAILURES times for one argument, counted in the tool log). Noted for the tally."""
    failed = flaky and random.random() < 0.3 and _failures(tool, argument) < MAX_FAILURES
    with open(os.environ[TOOL_LOG], "a") as log:
        record = {"tool": tool, "argument": argument, "pid": os.getpid(), "failed": failed}
        log.write(json.dumps(record) + "\n")
    time.sleep(0.4)
    if failed:
        raise ConnectionError(f"{tool}: the backend timed out for {argument!r}")


def _failures(tool: str, argument: str) -> int:
    with open(os.environ[TOOL_LOG]) as log:
        calls = [json.loads(line) for line in log if line.strip()]
    return sum(1 for c in calls if c["tool"] == tool and c["argument"] == argument and c["failed"])


def plan(question: str) -> dict[str, Any]:
    _tool_call("plan", question)
    topics = ["durable execution", "SKIP LOCKED", "event sourcing"]
    return {"queries": [f"{topic}" for topic in topics]}


def search(query: str) -> dict[str, Any]:
    _tool_call("search", query, flaky=True)
    return {"query": query, "url": f"https://example.org/{query.replace(' ', '-').lower()}"}


def fetch(url: str) -> str:
    _tool_call("fetch", url, flaky=True)
    return f"contents of {url}"


def summarize(question: str, pages: list[str]) -> str:
    _tool_call("summarize", question)
    if not pages:
        raise NonRetryableError("nothing to summarise")
    return f"checkpoints in the database let long work survive crashes ({len(pages)} page(s) read)"


FLAKY = RetryPolicy(max_attempts=5, delay=0.1, factor=2.0)


def build_worker(dsn: str | None = None) -> Worker:
    worker = Worker(
        dsn, QUEUE, concurrency=2, lease_seconds=LEASE_SECONDS, poll_interval=0.2, shutdown_grace=5
    )

    @worker.durable_task
    async def research_agent(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
        question = str(input["question"])
        the_plan = await ctx.step("plan", plan, question)
        hits = [await ctx.step("search", search, q, retry=FLAKY) for q in the_plan["queries"]]
        pages = [await ctx.step("fetch", fetch, hits[0]["url"], retry=FLAKY)]
        await ctx.sleep(1.0, name="rate-limit")
        answer = await ctx.step("summarize", summarize, question, pages)
        return {"answer": answer, "sources": [h["url"] for h in hits]}

    return worker


# --- the demo ---------------------------------------------------------------------------


def _start_worker(dsn: str, tool_log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DURABLE_DATABASE_URL": dsn, TOOL_LOG: str(tool_log)}
    return subprocess.Popen([sys.executable, "-m", "durable.demo", "worker"], env=env)


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"durable demo: timed out waiting for {what}")
        time.sleep(0.05)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def run_demo(dsn: str | None = None) -> int:
    url = dsn or resolve_dsn(None)
    migrate(url)
    workdir = Path(tempfile.mkdtemp(prefix="durable-demo-"))
    tool_log = workdir / "tool-calls.jsonl"
    tool_log.touch()
    workers: list[subprocess.Popen[bytes]] = []
    with Client(url) as client:
        client.create_queue(QUEUE)
        question = "How do durable engines survive crashes?"
        task_id = client.enqueue(QUEUE, "research_agent", {"question": question}, durable=True)
        print(f"enqueued durable task {task_id} (research_agent) on queue {QUEUE!r}")
        try:
            first = _start_worker(url, tool_log)
            workers.append(first)
            print(f"worker 1 (pid {first.pid}) started")
            _wait_for(lambda: len(client.history(task_id)) >= 3, 60, "three recorded steps")
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            recorded = len(client.history(task_id))
            print(
                f"worker 1 killed with SIGKILL after {recorded} recorded events "
                "(its task comes back when the registry finds it dead or its lease ends)"
            )
            second = _start_worker(url, tool_log)
            workers.append(second)
            print(f"worker 2 (pid {second.pid}) started")
            output = client.wait(task_id, timeout=120)
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=15)
        info = client.get_task(task_id)
        events = client.history(task_id)

    print("\nevent log of", task_id)
    print(f"  {'seq':>3}  {'kind':<6} {'name':<11} {'attempt':>7}  result")
    for e in events:
        print(f"  {e.seq:>3}  {e.kind:<6} {e.name:<11} {e.attempt:>7}  {_short(e.result)}")
    print("\nattempts:", ", ".join(f"#{a.attempt} {a.outcome}" for a in info.attempts))
    calls = [json.loads(line) for line in tool_log.read_text().splitlines()]
    worker_of = {proc.pid: n for n, proc in enumerate(workers, start=1)}
    print("\ntool calls, in order (a failed call is retried by its step; a recorded step is never called")
    print("again; the step in flight when worker 1 was killed runs again on worker 2):")
    for c in calls:
        outcome = "failed" if c["failed"] else "ok"
        print(f"  worker {worker_of.get(c['pid'], '?')}: {c['tool']}({_short(c['argument'], 40)}) {outcome}")
    pids = {c["pid"] for c in calls}
    print(f"\nstatus: {info.status}; {len(pids)} worker processes made tool calls")
    print("answer:", output["answer"])
    return 0 if info.status == "completed" else 1


def _run_worker() -> None:
    build_worker().run()


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        _run_worker()
    else:
        raise SystemExit(run_demo())
