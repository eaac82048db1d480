'use strict';
// The durable context: what a durable task's code calls (docs/protocol.md, "Durable calls").
//
// Every durable call is event `seq` = 1, 2, 3, ... of the task's current history. The
// claim handed over the recorded events (`history`); the code runs from the top again, and
// a call whose seq is recorded gets the recorded outcome instead of running. Such calls
// are only collected ("presented"); the server checks them, in one durable.replay_check,
// before the code's first new call (before any new side effect), or when the code ends,
// or at once when a call visibly differs from the recorded event (another kind or name).
// The server decides every mismatch: it fails the task and answers {"nondeterminism"}.
//
// Every recording verb answers one of three shapes: the event ({seq, kind, name, outcome,
// result}), {seq, kind, name, suspended: true} (the attempt is over: unwind the code), or
// {nondeterminism: {...}} (the task has been failed: stop). One call at a time: await
// each durable call before making the next.

const {
  ChildFailed,
  EventTimeout,
  InvalidArgument,
  NonDeterminismError,
  StepFailed,
  Suspended,
} = require('./errors');

function toJson(value, what) {
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    throw new InvalidArgument(`durable: ${what} is not JSON-serialisable: ${err.message}`);
  }
  if (text === undefined) throw new InvalidArgument(`durable: ${what} is not JSON-serialisable`);
  return text;
}

function errorJson(err) {
  if (err instanceof StepFailed || err instanceof ChildFailed) {
    return { type: err.name, message: err.message, cause: err.error || null };
  }
  if (err instanceof NonDeterminismError) return { type: err.name, message: err.message, ...err.info };
  if (err instanceof Error) return { type: err.name || 'Error', message: err.message, stack: err.stack };
  return { type: 'Error', message: String(err) };
}

const sleepMs = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class ChildHandle {
  constructor(ctx, taskId, queue) {
    this.ctx = ctx;
    this.taskId = taskId;
    this.queue = queue;
  }

  /** Waits for the child (the parent suspends meanwhile): its output, or ChildFailed. */
  async result() {
    const [outcome] = await this.ctx.waitChildren([this], { name: 'result' });
    return outputOf(outcome);
  }
}

function outputOf(outcome) {
  if (!outcome || outcome.status !== 'completed') {
    throw new ChildFailed(outcome && outcome.task_id, outcome && outcome.status, outcome && outcome.error);
  }
  return outcome.output;
}

class DurableContext {
  /**
   * @param {object} o
   * @param {(sql: string, params: any[]) => Promise<any>} o.call runs one verb, returns its one value
   */
  constructor({ call, taskId, leaseToken, queue, taskName, attempt, history, signal }) {
    this._call = call;
    this.taskId = taskId;
    this.leaseToken = leaseToken;
    this.queue = queue;
    this.taskName = taskName;
    this.attempt = attempt;
    this.history = history || [];
    this.signal = signal;
    /** durable calls made so far by the code (the seq of the last one) */
    this.seq = 0;
    /** replayed calls not yet presented to the server */
    this._presented = [];
    this._busy = false;
    /** set when the attempt is over from the server's side: a Suspended or a NonDeterminismError */
    this.ended = null;
  }

  /** True while the code is still going through recorded events. */
  get replaying() {
    return this.seq < this.history.length;
  }

  _throwIfStopped() {
    if (this.ended) throw this.ended;
    if (this.signal && this.signal.aborted) throw this.signal.reason;
  }

  async _verb(sql, params) {
    this._throwIfStopped();
    return this._call(sql, params);
  }

  /** One of the three answers of a recording verb: the event, or an end of the attempt thrown. */
  _answer(answer) {
    if (answer && answer.nondeterminism) {
      this.ended = new NonDeterminismError(answer.nondeterminism);
      throw this.ended;
    }
    if (answer && answer.suspended) {
      this.ended = new Suspended(answer);
      throw this.ended;
    }
    return answer;
  }

  /** Presents the replayed calls not yet checked (durable.replay_check, one round trip). */
  async verify() {
    if (this._presented.length === 0) return;
    const presented = this._presented;
    this._presented = [];
    let answer;
    try {
      answer = await this._verb('select durable.replay_check($1, $2, $3::jsonb) as r', [
        this.taskId,
        this.leaseToken,
        JSON.stringify(presented),
      ]);
    } catch (err) {
      this._presented = presented.concat(this._presented);
      throw err;
    }
    this._answer(answer);
  }

  /**
   * A durable call: `replayed(event, seq)` when its seq is recorded (after a check when the
   * call visibly differs from the event), else `fresh(seq)` once the replayed calls before
   * it are checked.
   */
  async _durable(kind, name, presentedExtra, replayed, fresh) {
    if (this._busy) {
      throw new Error('durable: one durable call at a time: await each call before making the next');
    }
    this._throwIfStopped();
    this._busy = true;
    try {
      this.seq += 1;
      const seq = this.seq;
      if (seq <= this.history.length) {
        const recorded = this.history[seq - 1];
        this._presented.push({ seq, kind, name, ...presentedExtra });
        if (recorded.kind !== kind || recorded.name !== name) {
          await this.verify(); // the server finds the mismatch (and fails the task)
        }
        return await replayed(recorded, seq);
      }
      await this.verify();
      return await fresh(seq);
    } finally {
      this._busy = false;
    }
  }

  _checkpoint(seq, kind, name, result, error) {
    return this._verb('select durable.checkpoint($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) as r', [
      this.taskId,
      this.leaseToken,
      seq,
      kind,
      name,
      result,
      error,
    ]);
  }

  /**
   * Runs `fn` once as step `name` and records its value; a re-run gets the recorded value
   * without calling it. A step whose function still throws after `retry.maxAttempts`
   * tries is recorded as failed: StepFailed now and on every re-run.
   * @param {string} name
   * @param {(info: {attempt: number, signal: AbortSignal}) => any} fn
   * @param {{retry?: {maxAttempts?: number, delay?: number, factor?: number, maxDelay?: number}}} [options]
   */
  step(name, fn, options = {}) {
    return this._durable(
      'step',
      name,
      {},
      (event) => {
        if (event.outcome === 'error') throw new StepFailed(name, event.result);
        return event.result;
      },
      async (seq) => {
        const policy = { maxAttempts: 1, delay: 1, factor: 2, maxDelay: 60, ...(options.retry || {}) };
        for (let tries = 1; ; tries += 1) {
          let value;
          let failure = null;
          try {
            value = await fn({ attempt: tries, signal: this.signal });
          } catch (err) {
            failure = err === null || err === undefined ? new Error(String(err)) : err;
          }
          this._throwIfStopped(); // the lease went meanwhile: record nothing
          if (failure === null) {
            const text = toJson(value, `the result of step "${name}"`);
            // the value as stored: what a re-run gets from the history
            return this._answer(await this._checkpoint(seq, 'step', name, text, null)).result;
          }
          if (tries >= policy.maxAttempts) {
            const error = errorJson(failure);
            const event = this._answer(await this._checkpoint(seq, 'step', name, null, toJson(error, 'a step error')));
            throw new StepFailed(name, event.result, { cause: failure });
          }
          await sleepMs(1000 * Math.min(policy.maxDelay, policy.delay * policy.factor ** (tries - 1)));
        }
      },
    );
  }

  _serverValue(kind, label) {
    return this._durable(
      kind,
      label,
      {},
      (event) => event.result,
      async (seq) => this._answer(await this._checkpoint(seq, kind, label, null, null)).result,
    );
  }

  /** The database clock, recorded: a re-run gets the same time. */
  async now(label = 'now') {
    return new Date(await this._serverValue('now', label));
  }

  /** A number in [0, 1), drawn by the server and recorded. */
  async random(label = 'random') {
    return Number(await this._serverValue('random', label));
  }

  /** A uuid string, drawn by the server and recorded. */
  async uuid(label = 'uuid') {
    return String(await this._serverValue('uuid', label));
  }

  /** Whether the next recorded event (at seq + 1) is a patch marker. */
  _atMarker() {
    return this.seq < this.history.length && this.history[this.seq].kind === 'patch';
  }

  /**
   * Versioning (docs/protocol.md, "Patches"): true where the code takes the new branch of
   * patch `id`. A history the old code wrote (another event recorded here) takes the old
   * branch: false, presenting nothing and taking no seq. A recorded marker is presented
   * (checked at once when its id differs: the server fails the task); no recorded event
   * here records the marker.
   */
  async patched(id) {
    if (this.seq < this.history.length && !this._atMarker()) return false;
    await this._durable(
      'patch',
      id,
      {},
      () => undefined,
      async (seq) => this._answer(await this._checkpoint(seq, 'patch', id, null, null)),
    );
    return true;
  }

  /** Retiring a patch: accepts the marker `patched(id)` recorded here; records nothing. */
  async deprecatePatch(id) {
    if (this._atMarker()) await this._durable('patch', id, {}, () => undefined, async () => undefined);
  }

  /** Sleeps `seconds` on the database clock, holding no worker: the attempt ends here and
   * the code runs again once the time has come. */
  sleep(seconds, { name = 'sleep' } = {}) {
    return this._sleep(name, seconds, null);
  }

  /** Sleeps until `when` (a Date) on the database clock. */
  sleepUntil(when, { name = 'sleep' } = {}) {
    return this._sleep(name, null, when instanceof Date ? when.toISOString() : String(when));
  }

  async _sleep(name, seconds, until) {
    const send = (seq) =>
      this._verb('select durable.sleep($1, $2, $3, $4, $5::float8, $6::timestamptz) as r', [
        this.taskId,
        this.leaseToken,
        seq,
        name,
        seconds,
        until,
      ]);
    await this._durable(
      'sleep',
      name,
      {},
      async (event, seq) => {
        if (seq < this.history.length) return; // later events exist: this sleep was over
        // the last recorded event: whether time remains is the server's to say (it checks
        // this call against the event itself)
        this._presented.pop();
        await this.verify();
        this._answer(await send(seq));
      },
      async (seq) => {
        this._answer(await send(seq));
      },
    );
  }

  /** Waits, holding no worker, for the event `key` (in the scope of the task's queue); its
   * payload. EventTimeout when `timeout` seconds pass first. A key emitted before is a
   * latch: its payload comes at once. */
  async waitForEvent(key, { timeout = null } = {}) {
    const event = await this._durable(
      'wait',
      key,
      {},
      (recorded) => recorded,
      async (seq) =>
        this._answer(
          await this._verb('select durable.wait_event($1, $2, $3, $4, $5::float8) as r', [
            this.taskId,
            this.leaseToken,
            seq,
            key,
            timeout,
          ]),
        ),
    );
    const result = event.result || {};
    if (result.timed_out) throw new EventTimeout(`durable: no event "${key}" within the timeout`);
    return result.payload;
  }

  /** Spawns a child task exactly once (in `queue`, default the task's own); a ChildHandle. */
  async spawn(taskName, input = {}, { queue = null, options = {} } = {}) {
    const target = queue || this.queue;
    const inputText = toJson(input, 'a child input');
    const event = await this._durable(
      'spawn',
      taskName,
      { queue: target, input: JSON.parse(inputText) },
      (recorded) => recorded,
      async (seq) =>
        this._answer(
          await this._verb('select durable.spawn($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) as r', [
            this.taskId,
            this.leaseToken,
            seq,
            target,
            taskName,
            inputText,
            toJson(options, 'spawn options'),
          ]),
        ),
    );
    return new ChildHandle(this, event.result.task_id, event.result.queue);
  }

  /** Waits, holding no worker, until every child ended; their outcomes
   * [{task_id, status, output, error}], in the order given. */
  async waitChildren(handles, { name = 'children' } = {}) {
    const ids = handles.map((h) => String(h instanceof ChildHandle ? h.taskId : h));
    const event = await this._durable(
      'children',
      name,
      { children: ids },
      (recorded) => recorded,
      async (seq) =>
        this._answer(
          await this._verb('select durable.wait_children($1, $2, $3, $4::uuid[], $5) as r', [
            this.taskId,
            this.leaseToken,
            seq,
            ids,
            name,
          ]),
        ),
    );
    return event.result;
  }

  /** The outputs of several children (ChildFailed for the first that did not complete). */
  async gather(handles, { name = 'gather' } = {}) {
    return (await this.waitChildren(handles, { name })).map(outputOf);
  }
}

module.exports = { DurableContext, ChildHandle, toJson, errorJson, outputOf };
