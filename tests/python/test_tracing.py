"""OpenTelemetry spans of the worker and the trace context carried with tasks (durable.tracing).

The SDK's tracer provider is set once for the process (OpenTelemetry allows one), with an
in-memory exporter each test clears; the worker runs in a thread of this process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, NonRetryableError, Worker, tracing
from durable.commands import ClaimedTask
from durable.workflow import DurableContext, SyncDurableContext

StartWorker = Callable[[Worker], ThreadedWorker]
_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans ended during the test (the SDK provider is set the first time)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def make_worker(worker_url: str) -> Worker:
    return Worker(worker_url, "q", poll_interval=0.05, name=f"traced-{uuid.uuid4().hex[:6]}")


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def attempts_of(exporter: InMemorySpanExporter, task_id: uuid.UUID) -> list[ReadableSpan]:
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes is not None and s.attributes.get("durable.task_id") == str(task_id)
    ]
    return sorted(found, key=lambda s: int(str(s.attributes and s.attributes["durable.attempt"])))


def span_of(exporter: InMemorySpanExporter, task_id: uuid.UUID) -> ReadableSpan:
    """The span of the task's one attempt, once ended."""
    (attempt,) = wait_until(lambda: attempts_of(exporter, task_id), 30, "the attempt's span")
    return attempt


def outcomes(attempts: Sequence[ReadableSpan]) -> list[Any]:
    return [s.attributes and s.attributes.get("durable.outcome") for s in attempts]


def test_an_enqueue_inside_a_span_makes_the_attempt_span_its_child(
    spans: InMemorySpanExporter, worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    @worker.task
    def add(input: dict[str, Any]) -> int:
        # the attempt's span is current in the task's thread
        with trace.get_tracer("test").start_as_current_span("inside"):
            return int(input["a"]) + 1

    client.create_queue("q")
    with trace.get_tracer("test").start_as_current_span("request") as request:
        task_id = client.enqueue("q", "add", {"a": 1})
        batch = client.enqueue_many("q", [{"task_name": "add", "input": {"a": 2}}])
    untraced = client.enqueue("q", "add", {"a": 3})
    assert client.get_task(task_id).trace_context is not None
    assert client.get_task(untraced).trace_context is None
    start_worker(worker)
    for tid in (task_id, *batch, untraced):
        span_of(spans, tid)
    context = request.get_span_context()
    for tid in (task_id, *batch):
        (attempt,) = attempts_of(spans, tid)
        assert attempt.name == "durable.task add"
        assert attempt.context is not None and attempt.context.trace_id == context.trace_id
        assert attempt.parent is not None and attempt.parent.span_id == context.span_id
        assert attempt.attributes is not None
        assert dict(attempt.attributes) == {
            "durable.task_id": str(tid),
            "durable.queue": "q",
            "durable.task_name": "add",
            "durable.attempt": 1,
            "durable.durable": False,
            "durable.outcome": "completed",
        }
        assert attempt.status.status_code == StatusCode.UNSET
    (alone,) = attempts_of(spans, untraced)
    assert alone.context is not None and alone.context.trace_id != context.trace_id
    (inside,) = [s for s in named(spans, "inside") if s.parent and s.parent.span_id == alone.context.span_id]
    assert inside.context is not None and inside.context.trace_id == alone.context.trace_id


def test_a_durable_workflow_is_one_trace_with_its_steps_sleep_and_child(
    spans: InMemorySpanExporter, worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    @worker.durable_task
    async def flow(input: dict[str, Any], ctx: DurableContext) -> Any:
        a = await ctx.step("a", lambda: 1)
        await ctx.sleep(0.2)
        child = await ctx.spawn("kid", {"n": a}, durable=True)
        return await child.result()

    @worker.durable_task
    def kid(input: dict[str, Any], ctx: SyncDurableContext) -> Any:
        return ctx.step("double", lambda: input["n"] * 2)

    client.create_queue("q")
    with trace.get_tracer("test").start_as_current_span("request") as request:
        task_id = client.enqueue("q", "flow", {}, durable=True)
    start_worker(worker)
    assert client.wait(task_id, timeout=30) == 2
    wait_until(lambda: outcomes(attempts_of(spans, task_id))[-1:] == ["completed"], 30, "the last span")
    trace_id = request.get_span_context().trace_id
    attempts = attempts_of(spans, task_id)
    # 1: step a, then the sleep suspends; 2: spawn, then the wait suspends; 3: completes
    assert outcomes(attempts) == ["suspended", "suspended", "completed"]
    assert all(s.context is not None and s.context.trace_id == trace_id for s in attempts)
    first, second, third = attempts
    assert first.context is not None and second.context is not None
    # a new step is a span under its attempt's span
    (step,) = named(spans, "durable.step a")
    assert step.parent is not None and step.parent.span_id == first.context.span_id
    assert step.attributes is not None
    assert (step.attributes["durable.seq"], step.attributes["durable.replayed"]) == (1, False)
    # the sleep is an event of the attempt that suspended at it
    (sleep,) = [e for e in first.events if e.name == "durable.sleep"]
    assert sleep.attributes is not None and sleep.attributes["durable.suspended"] is True
    # recorded steps come back as events marked replayed
    replayed = [e for e in second.events if e.name == "durable.step"]
    assert [e.attributes and e.attributes["durable.replayed"] for e in replayed] == [True]
    (wait,) = [e for e in second.events if e.name == "durable.wait_children"]
    assert wait.attributes is not None and wait.attributes["durable.suspended"] is True
    assert not [e for e in third.events if e.name == "durable.wait_children"]  # replayed
    # the child's attempt: in the same trace, a child of the attempt that spawned it
    child_id = uuid.UUID(str(client.history(task_id)[2].result["task_id"]))
    (kid_attempt,) = attempts_of(spans, child_id)
    assert kid_attempt.context is not None and kid_attempt.context.trace_id == trace_id
    assert kid_attempt.parent is not None and kid_attempt.parent.span_id == second.context.span_id
    (double,) = named(spans, "durable.step double")
    assert double.parent is not None and double.parent.span_id == kid_attempt.context.span_id


def test_a_failed_attempt_has_an_error_status_and_its_exception(
    spans: InMemorySpanExporter, worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    @worker.task
    async def boom(input: dict[str, Any]) -> None:
        raise NonRetryableError("no luck")

    @worker.durable_task
    async def step_boom(input: dict[str, Any], ctx: DurableContext) -> None:
        await ctx.step("bad", _raise)

    client.create_queue("q")
    plain = client.enqueue("q", "boom")
    durable = client.enqueue("q", "step_boom", durable=True, max_attempts=1)
    start_worker(worker)
    for task_id in (plain, durable):
        attempt = span_of(spans, task_id)
        assert outcomes([attempt]) == ["failed"]
        assert attempt.status.status_code == StatusCode.ERROR
        assert [e.name for e in attempt.events if e.name == "exception"] == ["exception"]
    (step,) = named(spans, "durable.step bad")
    assert step.status.status_code == StatusCode.ERROR


def _raise() -> None:
    raise ValueError("bad step")


@pytest.mark.parametrize("absent", ["no provider", "not installed"])
def test_without_a_provider_or_opentelemetry_nothing_breaks(
    absent: str,
    monkeypatch: pytest.MonkeyPatch,
    worker_url: str,
    client: Client,
    start_worker: StartWorker,
) -> None:
    if absent == "no provider":  # the API's default: a tracer whose spans are not recorded
        monkeypatch.setattr(tracing, "_tracer", trace.NoOpTracer)
    else:
        monkeypatch.setattr(tracing, "_trace", None)
    worker = make_worker(worker_url)

    @worker.durable_task
    async def flow(input: dict[str, Any], ctx: DurableContext) -> Any:
        a = await ctx.step("a", lambda: 1)
        child = await ctx.spawn("kid", {"n": a})
        return await child.result()

    @worker.task
    def kid(input: dict[str, Any]) -> int:
        return int(input["n"]) * 2

    client.create_queue("q")
    task_id = client.enqueue("q", "flow", {}, durable=True)
    assert tracing.attempt_span(client_claimed(task_id), "q") is tracing.NO_SPAN
    start_worker(worker)
    assert client.wait(task_id, timeout=30) == 2
    assert client.get_task(task_id).trace_context is None


def client_claimed(task_id: uuid.UUID) -> ClaimedTask:
    """A claimed task without a trace context."""
    return ClaimedTask(task_id, "flow", {}, 1, uuid.uuid4(), datetime.now(UTC), True, [], None)


_UNCONFIGURED = """
import uuid
from datetime import UTC, datetime
from durable import tracing
from durable.commands import ClaimedTask

parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
def claimed(trace_context):
    return ClaimedTask(uuid.uuid4(), "t", {}, 1, uuid.uuid4(), datetime.now(UTC), trace_context=trace_context)
assert tracing.attempt_span(claimed(None), "q") is tracing.NO_SPAN
span = tracing.attempt_span(claimed({"traceparent": parent}), "q")
assert span is not tracing.NO_SPAN
carrier = span.carrier()
assert carrier is not None and carrier["traceparent"].split("-")[1] == parent.split("-")[1], carrier
print("ok")
"""


def test_without_a_tracer_provider_an_attempt_makes_no_span_but_carries_its_trace() -> None:
    # in a process of its own: this module sets the SDK's provider, once per process
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _UNCONFIGURED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
