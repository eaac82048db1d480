"""The schedule verbs (``durable.create_schedule`` and its kin, ``durable.cron_next``) as
:class:`~durable.commands.Command` objects, without I/O; the clients and the command line
run them. The rules (cron, time zones, catch-up, ticks) are in plpgsql/schedules.sql.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict

from .commands import Command, Seconds, scalar, to_json, to_seconds

CatchUp = Literal["skip", "once", "all"]


class ScheduleOptions(TypedDict, total=False):
    """The options of ``durable.create_schedule`` (its COMMENT says each)."""

    tz: str
    input: Mapping[str, Any]
    enqueue_options: Mapping[str, Any]
    catch_up: CatchUp
    catch_up_max: int
    catch_up_grace: Seconds
    paused: bool


def schedule_options(options: ScheduleOptions) -> dict[str, Any]:
    """The options as JSON values (seconds as numbers, mappings as dicts)."""
    result: dict[str, Any] = {}
    for key, value in options.items():
        if key == "catch_up_grace":
            result[key] = to_seconds(value)  # type: ignore[arg-type]
        elif isinstance(value, Mapping):
            result[key] = dict(value)
        else:
            result[key] = value
    return result


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A row of ``durable.list_schedules()``."""

    queue: str
    name: str
    task_name: str
    cron: str
    tz: str
    input: dict[str, Any]
    enqueue_options: dict[str, Any]
    catch_up: str
    catch_up_max: int
    catch_up_grace: float
    paused: bool
    next_run_at: datetime
    last_tick_at: datetime | None
    last_task_id: uuid.UUID | None
    last_error: dict[str, Any] | None
    ticks: int
    created_at: datetime
    updated_at: datetime


def create_schedule(
    name: str, queue: str, task_name: str, cron: str, options: ScheduleOptions
) -> Command[datetime]:
    """Create (or replace) a schedule; returns its next tick."""
    return Command(
        "select durable.create_schedule(%s, %s, %s, %s, %s::jsonb)",
        (name, queue, task_name, cron, to_json(schedule_options(options), "schedule options")),
        scalar,
    )


def pause_schedule(name: str, queue: str) -> Command[bool]:
    """Pause a schedule; False when it was paused already."""
    return Command("select durable.pause_schedule(%s, %s)", (name, queue), lambda rows: bool(scalar(rows)))


def resume_schedule(name: str, queue: str) -> Command[datetime]:
    """Resume a schedule from now; returns its next tick."""
    return Command("select durable.resume_schedule(%s, %s)", (name, queue), scalar)


def delete_schedule(name: str, queue: str) -> Command[bool]:
    """Delete a schedule; False when there was none of that name."""
    return Command("select durable.delete_schedule(%s, %s)", (name, queue), lambda rows: bool(scalar(rows)))


def list_schedules(queue: str | None = None) -> Command[list[ScheduleRow]]:
    """The schedules of one queue, or of every queue the caller may read."""
    return Command(
        "select queue, name, task_name, cron, tz, input, enqueue_options, catch_up, catch_up_max,"
        " catch_up_grace, paused, next_run_at, last_tick_at, last_task_id, last_error, ticks,"
        " created_at, updated_at from durable.list_schedules(%s)",
        (queue,),
        lambda rows: [ScheduleRow(*row) for row in rows],
    )


def cron_next(cron: str, tz: str, after: datetime) -> Command[datetime | None]:
    """The first firing of a cron expression strictly after ``after`` (``durable.cron_next``)."""
    return Command("select durable.cron_next(%s, %s, %s)", (cron, tz, after), scalar)
