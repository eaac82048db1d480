"""OpenTelemetry spans of the worker, and the trace context carried with a task (README, "Tracing").

``opentelemetry-api`` is optional (``pip install durable[otel]``). Without it every helper
here is a no-op: :data:`NO_SPAN` stands for every span, and :func:`current_carrier` gives
nothing to store. With it, spans go to the tracer provider the application configured;
with none configured, the API's no-op tracer makes spans that are not recorded, and an
attempt that has no trace to join gets :data:`NO_SPAN` too (nothing more is done for it).

- a span per attempt, ``durable.task <task_name>``, started when the task is claimed and
  ended when its outcome is known (attribute ``durable.outcome``: completed, failed,
  retrying, suspended, released, cancelled, lost), a child of the trace context stored
  with the task (:func:`attempt_span`);
- a span per new durable step, ``durable.step <name>``, a child of its attempt's span; a
  step served from the recorded history is no span but an event ``durable.step`` of the
  attempt's span, with ``durable.replayed`` true;
- events of the attempt's span for its sleeps, event waits and children waits;
- the W3C trace context (``traceparent``, ``tracestate``) of the caller of an enqueue, or
  of the attempt that spawns a child, stored with the task (the enqueue option
  ``trace_context``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import trace as _trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed: every helper is a no-op
    _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .commands import ClaimedTask

#: attribute values OpenTelemetry takes
Attributes = Mapping[str, str | bool | int | float]
#: a trace context as stored with a task: {"traceparent": ..., "tracestate": ...}
Carrier = dict[str, str]

_NOTHING = contextlib.nullcontext()
#: the attempt outcomes that are failures (the span's status is then ERROR)
_FAILURES = frozenset({"failed", "retrying"})


class NoSpan:
    """A span that does nothing: what every helper gives when nothing is traced."""

    __slots__ = ()

    def event(self, name: str, attributes: Attributes) -> None:
        """Add an event to the span."""

    def step(self, name: str, seq: int) -> NoSpan:
        """Start the span of new durable step ``name`` (event ``seq``), a child of this one."""
        return self

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` on the span and set its status to ERROR."""

    def end(self, outcome: str | None = None, detail: str | None = None) -> None:
        """End the span (once), with the attempt's ``outcome`` when given."""

    def carrier(self) -> Carrier | None:
        """This span's trace context, to store with a task it creates; None when none."""
        return None

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A context manager making this span the current one (the parent of spans made inside)."""
        return _NOTHING

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, to run in another thread with the current context (this span active)."""
        return fn


NO_SPAN = NoSpan()


class _Span(NoSpan):
    """An OpenTelemetry span (opentelemetry-api is installed)."""

    __slots__ = ("_ended", "_span")

    def __init__(self, span: Any) -> None:
        self._span = span
        self._ended = False

    def event(self, name: str, attributes: Attributes) -> None:
        self._span.add_event(name, dict(attributes))

    def step(self, name: str, seq: int) -> NoSpan:
        parent = _trace.set_span_in_context(self._span)
        span = _tracer().start_span(
            f"durable.step {name}",
            context=parent,
            attributes={"durable.step": name, "durable.seq": seq, "durable.replayed": False},
        )
        return _Span(span)

    def fail(self, exc: BaseException) -> None:
        self._span.record_exception(exc)
        self._span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def end(self, outcome: str | None = None, detail: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if outcome is not None:
            self._span.set_attribute("durable.outcome", outcome)
            if outcome in _FAILURES:
                self._span.set_status(_trace.Status(_trace.StatusCode.ERROR, detail))
        self._span.end()

    def carrier(self) -> Carrier | None:
        return _inject(_trace.set_span_in_context(self._span))

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        with _trace.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        return self._active()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return functools.partial(contextvars.copy_context().run, fn)


def _tracer() -> Any:
    # the API's proxy: it follows a tracer provider configured later
    return _trace.get_tracer("durable")


def _inject(context: Any) -> Carrier | None:
    carrier: Carrier = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)
    return carrier or None


def current_carrier() -> Carrier | None:
    """The trace context of the caller's current span, to store with a task it enqueues;
    None when there is none (or opentelemetry is not installed)."""
    if _trace is None or not _trace.get_current_span().get_span_context().is_valid:
        return None
    return _inject(None)


def with_trace_context(options: dict[str, Any], carrier: Carrier | None) -> dict[str, Any]:
    """Enqueue ``options`` with ``carrier`` as their trace_context, unless they have one."""
    if carrier is None or options.get("trace_context") is not None:
        return options
    return {**options, "trace_context": carrier}


def attempt_span(claimed: ClaimedTask, queue: str) -> NoSpan:
    """Start the span of a claimed attempt, a child of the trace context stored with its task."""
    if _trace is None:
        return NO_SPAN
    if not claimed.trace_context and isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider):
        # no tracer provider configured (the API's proxy stands in) and no trace to join:
        # the span would be neither recorded nor valid, so none is made (0.8 µs an attempt
        # instead of 3.0)
        return NO_SPAN
    parent = None
    if claimed.trace_context:
        parent = TraceContextTextMapPropagator().extract(claimed.trace_context)
    span = _tracer().start_span(
        f"durable.task {claimed.task_name}",
        context=parent,
        kind=_trace.SpanKind.CONSUMER,
        attributes={
            "durable.task_id": str(claimed.task_id),
            "durable.queue": queue,
            "durable.task_name": claimed.task_name,
            "durable.attempt": claimed.attempt,
            "durable.durable": claimed.durable,
        },
    )
    if not span.is_recording() and not span.get_span_context().is_valid:
        return NO_SPAN  # no tracer provider, no trace to join: nothing to do for this attempt
    return _Span(span)
