#!/usr/bin/env python3
"""Tracing benchmark (not a test): what the OpenTelemetry spans of durable.tracing cost.

Three modes, each in a process of its own (a tracer provider can be set once per process):

* ``absent``: opentelemetry is not importable (as without the ``otel`` extra);
* ``noop``: opentelemetry-api installed, no tracer provider configured (the API's no-op);
* ``sdk``: the SDK's TracerProvider with a SimpleSpanProcessor into an InMemorySpanExporter.

For each: the per-call cost of the worker's tracing work alone, in this process (an
attempt's span started and ended, a durable step's span); then, end to end, through an
in-process Worker with one slot on database ``--url``: N plain tasks claimed and completed
(ms per task, worker start to the last completion), and N durable tasks of S no-op steps
(ms per step, from the difference with the plain tasks). The enqueues are made inside a
span (so the tasks carry a trace context in the noop and sdk modes).

    python bench/tracing_bench.py --url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

MODES = ("absent", "noop", "sdk")


def micro(repeat: int) -> dict[str, float]:
    """Microseconds per attempt span (start and end) and per step span, in this mode."""
    from durable import tracing
    from durable.commands import ClaimedTask

    claimed = ClaimedTask(uuid.uuid4(), "job", {}, 1, uuid.uuid4(), datetime.now(UTC), True, [], None)
    started = time.perf_counter()
    for _ in range(repeat):
        tracing.attempt_span(claimed, "q").end("completed")
    attempt = (time.perf_counter() - started) / repeat * 1e6
    span = tracing.attempt_span(claimed, "q")
    started = time.perf_counter()
    for seq in range(repeat):
        step = span.step("s", seq)
        with step.activate():
            pass
        step.end()
    step_us = (time.perf_counter() - started) / repeat * 1e6
    span.end("completed")
    return {"attempt_span_us": attempt, "step_span_us": step_us}


def end_to_end(url: str, tasks: int, steps: int) -> dict[str, float]:
    from durable import Client, Worker
    from durable.workflow import DurableContext

    queue = f"bench_{uuid.uuid4().hex[:8]}"

    def make_worker() -> Worker:
        worker = Worker(url, queue, concurrency=1, poll_interval=0.01, name=f"bench-{uuid.uuid4().hex[:6]}")

        @worker.task
        def plain(input: dict[str, Any]) -> None:
            return None

        @worker.durable_task
        async def flow(input: dict[str, Any], ctx: DurableContext) -> None:
            for i in range(steps):
                await ctx.step(f"s{i}", _nothing)

        return worker

    results: dict[str, float] = {}
    with Client(url) as client:
        client.create_queue(queue)
        for done, (name, durable) in enumerate((("plain", False), ("flow", True)), start=1):
            tracer = _tracer()
            with tracer.start_as_current_span("bench") if tracer else _nothing_cm():
                client.enqueue_many(
                    queue, [{"task_name": name, "options": {"durable": durable}} for _ in range(tasks)]
                )
            worker = make_worker()
            thread = threading.Thread(target=worker.run, daemon=True)
            started = time.perf_counter()
            thread.start()
            while client.queue_stats(queue).get("completed", 0) < tasks * done:
                time.sleep(0.005)
            results[name] = (time.perf_counter() - started) * 1000
            worker.stop()
            thread.join()
    plain_ms = results["plain"] / tasks
    flow_ms = results["flow"] / tasks
    return {"plain_task_ms": plain_ms, "durable_step_ms": (flow_ms - plain_ms) / max(steps, 1)}


def _nothing() -> None:
    return None


class _nothing_cm:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _tracer() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer("bench")


def child(mode: str, url: str, tasks: int, steps: int, repeat: int) -> None:
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    elif mode == "sdk":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(provider)
    result = micro(repeat)
    result.update(end_to_end(url, tasks, steps))
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL"), help="a migrated database")
    parser.add_argument("-n", "--tasks", type=int, default=300, help="N: tasks of each kind (default 300)")
    parser.add_argument("-s", "--steps", type=int, default=10, help="S: steps per durable task (default 10)")
    parser.add_argument("-r", "--rounds", type=int, default=3, help="rounds of the three modes (default 3)")
    parser.add_argument("--repeat", type=int, default=20000, help="calls of the per-call figures")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url (or DATABASE_URL): a database durable is migrated in")
    if args.child:
        child(args.child, args.url, args.tasks, args.steps, args.repeat)
        return 0
    from durable.migrate import migrate

    migrate(args.url)
    figures: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run(
                [
                    *(sys.executable, __file__, "--child", mode, "--url", args.url),
                    *("-n", str(args.tasks), "-s", str(args.steps), "--repeat", str(args.repeat)),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            figures[mode].append(json.loads(out.strip().splitlines()[-1]))
    keys = ("attempt_span_us", "step_span_us", "plain_task_ms", "durable_step_ms")
    print(f"{'mode':8} " + " ".join(f"{k:>16}" for k in keys) + "   (medians of the rounds)")
    for mode in MODES:
        medians = [sorted(r[k] for r in figures[mode])[len(figures[mode]) // 2] for k in keys]
        print(f"{mode:8} " + " ".join(f"{v:16.3f}" for v in medians))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
