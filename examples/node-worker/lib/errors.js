'use strict';
// The errors of the worker protocol (docs/protocol.md, "Errors"), as classes.
//
// Errors raised by the SQL verbs carry a SQLSTATE; fromPg() turns a node-postgres error
// into the class of its SQLSTATE. The others are raised by this library into the task's
// code: StepFailed (a step recorded as failed), ChildFailed (a child that did not
// complete), EventTimeout (a wait that timed out), NonDeterminismError (the code no
// longer matches the history; the server has failed the task).

class DurableError extends Error {
  constructor(message, { code = null, detail = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.code = code;
    this.detail = detail;
  }
}

class InvalidArgument extends DurableError {}
class UnknownQueue extends DurableError {}
class PayloadTooLarge extends DurableError {}
class UnknownTask extends DurableError {}
class LeaseLost extends DurableError {}
class TaskCancelled extends DurableError {}
class InvalidTransition extends DurableError {}
class EventsImmutable extends DurableError {}
class HistoryGap extends DurableError {}
class ReplayNotChecked extends DurableError {}
class PermissionDenied extends DurableError {}

/** The code no longer matches the recorded history. The server has failed the task
 * (not retryable) by the call that found it: the worker only stops running the code.
 * `info` is the protocol's {seq, recorded, presented, ...}. */
class NonDeterminismError extends DurableError {
  constructor(info, options = {}) {
    const seq = info && info.seq !== undefined ? info.seq : '?';
    super(
      (info && info.message) ||
        `durable: non-determinism at event ${seq}: recorded ${describe(info && info.recorded)}, ` +
          `the code did ${describe(info && info.presented)}`,
      { code: 'DU020', ...options },
    );
    this.info = info || {};
  }
}

function describe(call) {
  if (!call) return 'nothing';
  return `${call.kind} "${call.name}"`;
}

/** A step recorded as failed (now, or on an earlier attempt): raised into the code. */
class StepFailed extends DurableError {
  constructor(step, error, options = {}) {
    super(`durable: step "${step}" failed: ${(error && error.message) || JSON.stringify(error)}`, options);
    this.step = step;
    this.error = error;
  }
}

/** A child task that ended without completing (failed or cancelled). */
class ChildFailed extends DurableError {
  constructor(taskId, status, error) {
    super(`durable: child task ${taskId} ${status}${error && error.message ? `: ${error.message}` : ''}`);
    this.taskId = taskId;
    this.status = status;
    this.error = error;
  }
}

/** wait_event's timeout passed before the event came. */
class EventTimeout extends DurableError {}

/** Raise it from a task's code to fail the task without retry. */
class NonRetryableError extends DurableError {}

/** Internal: the attempt is over (the task sleeps or waits); unwinds the code. Not an
 * Error subclass, so `catch (e) { if (e instanceof Error) ... }` in user code lets it by. */
class Suspended {
  constructor(event) {
    this.event = event;
    this.message = `durable: task suspended at event ${event && event.seq} (${event && event.kind})`;
  }
}

const BY_SQLSTATE = {
  DU001: InvalidArgument,
  DU002: UnknownQueue,
  DU003: PayloadTooLarge,
  DU004: UnknownTask,
  DU010: LeaseLost,
  DU011: TaskCancelled,
  DU012: InvalidTransition,
  DU013: EventsImmutable,
  DU021: HistoryGap,
  DU022: ReplayNotChecked,
  42501: PermissionDenied,
  '22P02': InvalidArgument,
};

/** The DurableError of a node-postgres error (by its SQLSTATE); other errors as they are. */
function fromPg(err) {
  if (!err || typeof err.code !== 'string') return err;
  let detail = err.detail || null;
  if (detail) {
    try {
      detail = JSON.parse(detail);
    } catch {
      // a plain-text DETAIL stays text
    }
  }
  if (err.code === 'DU020') {
    const info = detail && typeof detail === 'object' ? { ...detail, message: err.message } : { message: err.message };
    return new NonDeterminismError(info, { cause: err });
  }
  const Cls = BY_SQLSTATE[err.code];
  if (!Cls) return err;
  return new Cls(err.message, { code: err.code, detail, cause: err });
}

module.exports = {
  DurableError,
  InvalidArgument,
  UnknownQueue,
  PayloadTooLarge,
  UnknownTask,
  LeaseLost,
  TaskCancelled,
  InvalidTransition,
  EventsImmutable,
  HistoryGap,
  ReplayNotChecked,
  PermissionDenied,
  NonDeterminismError,
  StepFailed,
  ChildFailed,
  EventTimeout,
  NonRetryableError,
  Suspended,
  fromPg,
};
