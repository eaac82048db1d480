"""Exceptions, one per SQLSTATE of the SQL API (class DU), and the mapping between them.

The SQLSTATEs are the contract; the table "Errors (SQLSTATEs)" of README.md lists them all.
"""

from __future__ import annotations

from typing import Final

import psycopg

#: the ``type`` of the error of a step or a task whose result JSON cannot hold: a failure
#: without retry (the function would only return such a value again)
RESULT_NOT_SERIALIZABLE: Final = "ResultNotSerializable"


class DurableError(Exception):
    """Base of every error this package raises."""

    sqlstate: str | None = None
    #: the DETAIL of the database error, when there was one
    detail: str | None = None


class MigrationError(DurableError):
    """The schema cannot be brought up to date (for example, an applied migration was edited)."""


class InvalidArgument(DurableError):
    """DU001: a bad option, a JSON value of the wrong type, an empty name, a value out of range."""

    sqlstate = "DU001"


class UnknownQueue(DurableError):
    """DU002: no queue of that name; create it with ``create_queue`` first."""

    sqlstate = "DU002"


class PayloadTooLarge(DurableError):
    """DU003: a JSON payload over ``durable.max_payload_bytes()``."""

    sqlstate = "DU003"


class UnknownTask(DurableError):
    """DU004: no task with that id."""

    sqlstate = "DU004"


class LeaseLost(DurableError):
    """DU010: the lease token is not the task's live lease (expired, reclaimed, or ended)."""

    sqlstate = "DU010"


class TaskCancelled(DurableError):
    """DU011: the task was cancelled while this attempt ran; the attempt must stop."""

    sqlstate = "DU011"


class InvalidTransition(DurableError):
    """DU012: the verb makes no sense in the task's current state."""

    sqlstate = "DU012"


class TaskFailed(DurableError):
    """Raised by ``Client.wait`` for a task that ended failed or cancelled."""

    def __init__(self, task_id: str, status: str, error: object) -> None:
        super().__init__(f"task {task_id} ended {status}: {error}")
        self.task_id = task_id
        self.status = status
        self.error = error


class WaitTimeout(DurableError):
    """``Client.wait`` gave up before the task ended."""


class NonRetryableError(Exception):
    """Raise it (or a subclass) from a task function to fail the task at once, without retries.

    The worker reports the failure with ``retryable = false``, so the task ends ``failed``
    whatever its ``max_attempts``. It is raised by user code, so it is not a ``DurableError``.
    """


class EventsImmutable(DurableError):
    """DU013: the event log is append-only."""

    sqlstate = "DU013"


class NonDeterminismError(DurableError):
    """DU020: the code no longer matches the recorded history of a durable task.

    The message names the event (seq), what was recorded and what the code did;
    ``detail`` holds the same as JSON. The task is failed without retry.
    """

    sqlstate = "DU020"


class HistoryGap(DurableError):
    """DU021: an event was recorded out of order (its seq is not the next one)."""

    sqlstate = "DU021"


class ReplayNotChecked(DurableError):
    """DU022: a new event before the re-run presented the recorded events (``replay_check``)."""

    sqlstate = "DU022"


class WorkerNameInUse(DurableError):
    """DU023: a live registered worker already has this name (``register_worker``)."""

    sqlstate = "DU023"


class InvalidCron(DurableError):
    """DU030: a malformed cron expression (the message says which field and item)."""

    sqlstate = "DU030"


class UnknownTimeZone(DurableError):
    """DU031: a time zone that is not an IANA name PostgreSQL knows."""

    sqlstate = "DU031"


class UnknownSchedule(DurableError):
    """DU032: the queue has no schedule of that name."""

    sqlstate = "DU032"


class CronNeverFires(DurableError):
    """DU033: a cron expression that can never fire (``0 0 30 2 *``)."""

    sqlstate = "DU033"


class DebounceKeyHeld(DurableError):
    """DU040: a debounced enqueue whose key is held by a pending task of another task name
    (a debounced enqueue replaces the holder's input, never its name)."""

    sqlstate = "DU040"


class NotATestDatabase(DurableError):
    """DU055: a test clock verb in a database not marked as a test database
    (``durable migrate --test-clock``): the real clock never moves."""

    sqlstate = "DU055"


class PermissionDenied(DurableError):
    """42501: the role may not call this verb (it lacks the group role), or its queue grants
    do not cover the queue (see the README, "Security")."""

    sqlstate = "42501"


class StepFailed(DurableError):
    """A step of a durable task failed after its retries; the failure is recorded in the log.

    A re-run raises it again from the log instead of running the step: a retry of the task
    keeps the failure. To run the step again, replay the task or fork it before the step.
    """

    def __init__(self, step: str, error: dict[str, object]) -> None:
        super().__init__(f"step {step!r} failed: {error.get('type')}: {error.get('message')}")
        self.step = step
        self.error = error


class ChildFailed(DurableError):
    """A child task awaited by a durable task did not complete (failed or cancelled)."""

    def __init__(self, task_id: str, status: str, error: object) -> None:
        super().__init__(f"child task {task_id} ended {status}: {error}")
        self.task_id = task_id
        self.status = status
        self.error = error


class NotAwaited(DurableError):
    """A durable task's code ended (returned or raised) leaving a durable call it made never
    awaited: the call never ran. The attempt fails, without retry, instead of completing."""


class EventTimeout(DurableError):
    """``wait_for_event`` gave up: no event came within its timeout (the timeout is recorded)."""


_BY_SQLSTATE: dict[str, type[DurableError]] = {
    cls.sqlstate: cls
    for cls in (
        InvalidArgument,
        UnknownQueue,
        PayloadTooLarge,
        UnknownTask,
        LeaseLost,
        TaskCancelled,
        InvalidTransition,
        EventsImmutable,
        NonDeterminismError,
        HistoryGap,
        ReplayNotChecked,
        WorkerNameInUse,
        InvalidCron,
        UnknownTimeZone,
        UnknownSchedule,
        CronNeverFires,
        DebounceKeyHeld,
        NotATestDatabase,
        PermissionDenied,
    )
    if cls.sqlstate
}


def from_sqlstate(sqlstate: str, message: str, detail: str | None = None) -> DurableError:
    """The durable exception for an error a batch verb reports in a row instead of raising
    it (``durable.checkpoint_many``): its SQLSTATE, message and detail."""
    cls = _BY_SQLSTATE.get(sqlstate)
    error = cls(message) if cls is not None else DurableError(f"{message} (SQLSTATE {sqlstate})")
    error.detail = detail
    return error


def from_psycopg(exc: psycopg.Error) -> Exception:
    """The durable exception for a database error, or the error itself when it is not ours."""
    state = exc.sqlstate
    if state is None:
        return exc
    if state == "22P02":  # invalid_text_representation: a malformed uuid, number or JSON
        error: DurableError = InvalidArgument(str(exc.diag.message_primary or exc))
    elif state in _BY_SQLSTATE:
        error = _BY_SQLSTATE[state](str(exc.diag.message_primary or exc))
    else:
        return exc
    error.__cause__ = exc
    error.detail = exc.diag.message_detail
    return error
