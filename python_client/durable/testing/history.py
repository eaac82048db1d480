"""Assertions on the event log of a durable task, without I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..workflow_commands import Event

#: an expected event: (kind, name) or (kind, name, result); ``...`` matches anything
Expected = tuple[Any, Any] | tuple[Any, Any, Any]


def _matches(event: Event, expected: Expected) -> bool:
    wanted = (event.kind, event.name, event.result)[: len(expected)]
    return all(e is ... or e == w for e, w in zip(expected, wanted, strict=True))


def _shown(event: Event, width: int) -> str:
    return repr((event.kind, event.name, event.result)[:width])


def history_mismatch(events: Sequence[Event], expected: Sequence[Expected]) -> str | None:
    """Why ``events`` is not ``expected`` (None when it is): the first event that differs,
    or the events missing or left over, with the whole log."""
    problem = None
    for event, want in zip(events, expected, strict=False):
        if not _matches(event, want):
            problem = f"event {event.seq} is {_shown(event, len(want))}, expected {want!r}"
            break
    else:
        if len(events) < len(expected):
            problem = f"the log ends after {len(events)} events; expected next {expected[len(events)]!r}"
        elif len(events) > len(expected):
            extra = events[len(expected)]
            problem = f"{len(events) - len(expected)} more events than expected, from {_shown(extra, 2)}"
    if problem is None:
        return None
    log = "\n".join(
        f"  {e.seq}: {e.kind} {e.name!r} {e.outcome} {e.result!r} at {e.recorded_at}" for e in events
    )
    return f"{problem}; the log:\n{log}"


def assert_history(events: Sequence[Event], expected: Sequence[Expected]) -> None:
    """Assert that the event log is ``expected``: one (kind, name) or (kind, name, result)
    per event, in order, ``...`` matching anything (kinds: step, now, random, uuid, sleep,
    wait, spawn, children)."""
    problem = history_mismatch(events, expected)
    if problem is not None:
        raise AssertionError(problem)
