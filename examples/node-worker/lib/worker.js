'use strict';
// The worker: claims tasks of one queue and runs the functions registered for them
// (docs/protocol.md). Every rule is in SQL; this is the loop around the verbs:
//
//   claim     durable.claim(queue, worker, free slots, lease_seconds, registered names),
//             after each claim that came back short: wait for NOTIFY durable (payload: the
//             queue), the next sleeper's wake time (durable.next_wake) or poll_interval
//   registry durable.register_worker at start (the claim's name; its token), then
//             durable.worker_heartbeat every heartbeat_seconds (registering again when it
//             answers false), durable.unregister_worker at stop: a worker killed without
//             stopping is found dead after dead_after_seconds and the next claim of its
//             queue takes its tasks back at once, without waiting out their leases
//   heartbeat durable.heartbeat every lease_seconds / 3 for each running attempt; DU010
//             (lease lost) or DU011 (cancelled) aborts the attempt's signal: its code's
//             next durable call throws, and nothing is reported for it
//   run       a plain task: fn(input, {taskId, attempt, signal}); a durable task:
//             fn(input, ctx) with a DurableContext over the claimed history
//   report    complete(task, token, output) or fail(task, token, error, retryable); a
//             durable task's replayed calls are checked (replay_check) first. Nothing is
//             reported for a suspended attempt, nor after {"nondeterminism"}: the server
//             already failed the task.
//
// Not here, unlike the Python worker: batched completions and checkpoints, sending reports
// again across a database outage (a report that fails is left to the lease), concurrent
// durable calls.

const { EventEmitter } = require('node:events');
const os = require('node:os');
const crypto = require('node:crypto');
const pg = require('pg');

const { pgConfig } = require('./conninfo');
const { DurableContext, toJson, errorJson } = require('./context');
const {
  ChildFailed,
  LeaseLost,
  NonDeterminismError,
  NonRetryableError,
  PayloadTooLarge,
  StepFailed,
  Suspended,
  TaskCancelled,
  fromPg,
} = require('./errors');

/** Runs a verb that returns one value (select durable.x(...) as r): that value. */
async function callVerb(pool, sql, params) {
  try {
    const res = await pool.query(sql, params);
    return res.rows.length ? res.rows[0].r : null;
  } catch (err) {
    throw fromPg(err);
  }
}

const FINAL = [NonRetryableError, StepFailed, ChildFailed, NonDeterminismError, PayloadTooLarge];

class Worker extends EventEmitter {
  /**
   * @param {object} o
   * @param {string} [o.connectionString] a libpq URL or key=value string (host=/dir: a Unix socket)
   * @param {pg.Pool} [o.pool] a pool of your own instead (not closed by stop())
   * @param {string} o.queue
   * @param {number} [o.concurrency=10] attempts run at once
   * @param {number} [o.leaseSeconds=30]
   * @param {number} [o.pollInterval=1] seconds between claims when idle (without NOTIFY)
   * @param {boolean} [o.listen=true] LISTEN durable for new work
   * @param {string} [o.name] the worker's name in the claims and the registry
   * @param {number} [o.heartbeatSeconds=2] the registry heartbeat
   * @param {number} [o.deadAfterSeconds] dead after this long without a heartbeat (server default: 3 heartbeats)
   */
  constructor({
    connectionString,
    pool,
    queue,
    concurrency = 10,
    leaseSeconds = 30,
    pollInterval = 1,
    listen = true,
    name,
    poolSize = 4,
    heartbeatSeconds = 2,
    deadAfterSeconds = null,
  }) {
    super();
    if (!queue) throw new Error('a worker needs a queue');
    this.queue = queue;
    this.concurrency = concurrency;
    this.leaseSeconds = leaseSeconds;
    this.pollInterval = pollInterval;
    this.listen = listen;
    this.name = name || `${os.hostname()}-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
    this.heartbeatSeconds = heartbeatSeconds;
    this.deadAfterSeconds = deadAfterSeconds;
    this._registryToken = null;
    this._config = connectionString ? pgConfig(connectionString) : null;
    this._ownPool = !pool;
    this.pool = pool || new pg.Pool({ ...this._config, max: Math.max(poolSize, 2) });
    this.pool.on('error', (err) => this.emit('warning', err));
    this._functions = new Map();
    this._attempts = new Map(); // lease token -> attempt
    this._stopping = false;
    this._started = false;
    this._wakeUp = null;
    this.stats = { claimed: 0, completed: 0, failed: 0, suspended: 0, stopped: 0 };
  }

  /** Registers a plain task: fn(input, {taskId, taskName, attempt, signal}). */
  task(name, fn) {
    return this._register(name, fn, false);
  }

  /** Registers a durable task: fn(input, ctx), ctx a DurableContext. Enqueue with {"durable": true}. */
  durableTask(name, fn) {
    return this._register(name, fn, true);
  }

  _register(name, fn, durable) {
    if (this._functions.has(name)) throw new Error(`a task named "${name}" is already registered`);
    this._functions.set(name, { fn, durable });
    return this;
  }

  /** Attempts running now. */
  get running() {
    return this._attempts.size;
  }

  call(sql, params) {
    return callVerb(this.pool, sql, params);
  }

  /** Starts claiming (returns at once; the loop runs until stop()). */
  async start() {
    if (this._started) throw new Error('this worker is already running');
    if (this._functions.size === 0) throw new Error('no task functions are registered on this worker');
    this._started = true;
    await this.call('select durable.ensure_queue($1) as r', [this.queue]);
    await this._registerWorker();
    this._registryBeats = setInterval(() => this._registryBeat(), this.heartbeatSeconds * 1000);
    if (this.listen && this._config) await this._startListening();
    this._heartbeats = setInterval(() => this._beat(), Math.max(100, (this.leaseSeconds * 1000) / 3));
    this._loopDone = this._loop();
    return this;
  }

  /** Enters the worker in the registry (DU023 when a live worker has its name). */
  async _registerWorker() {
    this._registryToken = await this.call(
      'select durable.register_worker($1, $2::text[], $3::text[], $4, $5, $6, $7, $8) as r',
      [
        this.name,
        [this.queue],
        [...this._functions.keys()],
        this.concurrency,
        os.hostname().slice(0, 255) || null,
        process.pid,
        this.heartbeatSeconds,
        this.deadAfterSeconds,
      ],
    );
  }

  /** The registry heartbeat; registers again when the entry is gone (found dead, or taken over). */
  async _registryBeat() {
    if (this._stopping || this._registryBusy) return;
    this._registryBusy = true;
    try {
      const alive =
        this._registryToken !== null &&
        (await this.call('select durable.worker_heartbeat($1, $2) as r', [this.name, this._registryToken]));
      if (!alive) {
        this.emit('warning', new Error(`worker ${this.name}: not registered any more; registering again`));
        await this._registerWorker();
      }
    } catch (err) {
      this.emit('warning', err);
    } finally {
      this._registryBusy = false;
    }
  }

  async _startListening() {
    const client = new pg.Client(this._config);
    client.on('error', (err) => {
      this.emit('warning', err);
      this._listener = null; // polling goes on
    });
    client.on('notification', (msg) => {
      if (!msg.payload || msg.payload === this.queue) this._wake();
    });
    try {
      await client.connect();
      await client.query('listen durable');
      this._listener = client;
    } catch (err) {
      this.emit('warning', err);
      client.end().catch(() => {});
    }
  }

  _wake() {
    const wake = this._wakeUp;
    this._wakeUp = null;
    if (wake) wake();
  }

  _idle(seconds) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._wakeUp = null;
        resolve();
      }, Math.max(5, seconds * 1000));
      this._wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  async _loop() {
    while (!this._stopping) {
      const free = this.concurrency - this._attempts.size;
      if (free > 0) {
        let rows;
        try {
          const res = await this.pool.query(
            'select * from durable.claim($1, $2, $3, $4, $5::text[])',
            [this.queue, this.name, free, this.leaseSeconds, [...this._functions.keys()]],
          );
          rows = res.rows;
        } catch (err) {
          this.emit('warning', fromPg(err));
          if (!this._stopping) await this._idle(this.pollInterval);
          continue;
        }
        for (const row of rows) this._start(row);
        if (rows.length === free) continue; // more may be ready
      }
      if (this._stopping) break;
      await this._idle(await this._nextPoll(free > 0));
    }
  }

  /** Seconds until the next claim: poll_interval, or sooner when a sleeper of the queue is due. */
  async _nextPoll(slotsFree) {
    if (!slotsFree) return this.pollInterval; // a slot freed wakes the loop
    try {
      const due = await this.call(
        'select extract(epoch from durable.next_wake($1) - durable.current_time())::float8 as r',
        [this.queue],
      );
      if (due !== null) return Math.min(this.pollInterval, Math.max(0.005, due));
    } catch (err) {
      this.emit('warning', err);
    }
    return this.pollInterval;
  }

  _start(row) {
    this.stats.claimed += 1;
    const controller = new AbortController();
    const attempt = { row, controller };
    this._attempts.set(row.lease_token, attempt);
    attempt.done = this._run(attempt)
      .catch((err) => this.emit('warning', err))
      .finally(() => {
        this._attempts.delete(row.lease_token);
        this._wake();
      });
  }

  async _beat() {
    for (const attempt of [...this._attempts.values()]) {
      if (attempt.controller.signal.aborted) continue;
      const { task_id: task, lease_token: token } = attempt.row;
      this.call('select durable.heartbeat($1, $2) as r', [task, token]).catch((err) => {
        if (err instanceof LeaseLost || err instanceof TaskCancelled) {
          this.stats.stopped += 1;
          attempt.controller.abort(err); // its code's next durable call throws; nothing is reported
        } else {
          this.emit('warning', err);
        }
      });
    }
  }

  async _run(attempt) {
    const { row, controller } = attempt;
    const signal = controller.signal;
    const registered = this._functions.get(row.task_name);
    if (!registered) {
      await this._report(row, 'select durable.release($1, $2, 60, $3) as r', [
        `worker ${this.name} has no function "${row.task_name}"`,
      ]);
      return;
    }
    if (registered.durable !== row.durable) {
      await this._fail(row, {
        type: 'NonRetryableError',
        message: `task "${row.task_name}" was enqueued with durable=${row.durable}, but its function is registered as ${registered.durable ? 'durable' : 'plain'}`,
      }, false);
      return;
    }
    let ctx = null;
    let output;
    try {
      if (registered.durable) {
        ctx = new DurableContext({
          call: (sql, params) => this.call(sql, params),
          taskId: row.task_id,
          leaseToken: row.lease_token,
          queue: this.queue,
          taskName: row.task_name,
          attempt: row.attempt,
          history: row.history,
          signal,
        });
        output = await registered.fn(row.input, ctx);
      } else {
        output = await registered.fn(row.input, {
          taskId: row.task_id,
          taskName: row.task_name,
          attempt: row.attempt,
          signal,
        });
      }
    } catch (err) {
      if (signal.aborted || err instanceof LeaseLost || err instanceof TaskCancelled) return;
      if (ctx && ctx.ended) {
        // suspended, or failed by the server on a non-determinism: the attempt is over
        if (ctx.ended instanceof Suspended) this.stats.suspended += 1;
        return;
      }
      if (ctx) {
        // a mismatch earlier in the history explains the failure: check before reporting it
        try {
          await ctx.verify();
        } catch (checkErr) {
          if (!(checkErr instanceof NonDeterminismError)) this.emit('warning', checkErr);
          return;
        }
      }
      await this._fail(row, errorJson(err), !FINAL.some((cls) => err instanceof cls));
      return;
    }
    if (signal.aborted) return;
    if (ctx && ctx.ended) return; // the code swallowed the end of its attempt
    let text;
    try {
      if (ctx) await ctx.verify(); // every replayed call checked, or complete says nondeterminism
      text = output === undefined ? null : toJson(output, `the output of task "${row.task_name}"`);
    } catch (err) {
      if (err instanceof NonDeterminismError || err instanceof LeaseLost || err instanceof TaskCancelled) return;
      await this._fail(row, { type: 'ResultNotSerializable', message: err.message }, false);
      return;
    }
    const answer = await this._report(row, 'select durable.complete($1, $2, $3::jsonb) as r', [text]);
    if (answer && answer.completed) this.stats.completed += 1;
    else if (answer && answer.nondeterminism) this.emit('nondeterminism', row.task_id, answer.nondeterminism);
  }

  async _fail(row, error, retryable) {
    this.stats.failed += 1;
    let text;
    try {
      text = toJson(error, 'an error');
    } catch {
      text = JSON.stringify({ type: String(error.type), message: String(error.message) });
    }
    return this._report(row, 'select durable.fail($1, $2, $3::jsonb, $4) as r', [text, retryable]);
  }

  /** A verb that ends the attempt; a dead lease (DU010, DU011) means there is nothing to report. */
  async _report(row, sql, extra) {
    try {
      return await this.call(sql, [row.task_id, row.lease_token, ...extra]);
    } catch (err) {
      if (err instanceof LeaseLost || err instanceof TaskCancelled) return null;
      this.emit('warning', err); // left to the lease
      return null;
    }
  }

  /**
   * Stops: no more claims; running attempts get `grace` seconds to end, the rest are
   * handed back (durable.release, no attempt spent) and their signals aborted.
   */
  async stop({ grace = 30 } = {}) {
    if (!this._started || this._stopping) return;
    this._stopping = true;
    this._wake();
    await this._loopDone;
    const running = [...this._attempts.values()];
    if (running.length) {
      let timer;
      await Promise.race([
        Promise.all(running.map((a) => a.done)),
        new Promise((resolve) => {
          timer = setTimeout(resolve, grace * 1000);
        }),
      ]);
      clearTimeout(timer);
    }
    for (const attempt of this._attempts.values()) {
      attempt.controller.abort(new LeaseLost('durable: the worker stopped'));
      await this._report(attempt.row, 'select durable.release($1, $2, 0, $3) as r', ['worker shutdown']);
    }
    clearInterval(this._heartbeats);
    clearInterval(this._registryBeats);
    if (this._registryToken !== null) {
      await this.call('select durable.unregister_worker($1, $2) as r', [this.name, this._registryToken]).catch(
        (err) => this.emit('warning', err),
      );
      this._registryToken = null;
    }
    if (this._listener) await this._listener.end().catch(() => {});
    if (this._ownPool) await this.pool.end();
  }
}

module.exports = { Worker, callVerb };
