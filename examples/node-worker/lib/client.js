'use strict';
// A small producer/operator client: the verbs around the worker protocol that a test or an
// application calls (enqueue, events, the restarts, reading a task).

const pg = require('pg');
const { pgConfig } = require('./conninfo');
const { callVerb } = require('./worker');
const { fromPg } = require('./errors');

const json = (value) => (value === undefined ? null : JSON.stringify(value));

class Client {
  /** @param {string | {pool: pg.Pool}} connection a libpq URL or key=value string, or {pool} */
  constructor(connection) {
    this._ownPool = typeof connection === 'string';
    this.pool = this._ownPool ? new pg.Pool({ ...pgConfig(connection), max: 4 }) : connection.pool;
  }

  call(sql, params = []) {
    return callVerb(this.pool, sql, params);
  }

  createQueue(queue, options = {}) {
    return this.call('select durable.create_queue($1, $2::jsonb) as r', [queue, json(options)]);
  }

  enqueue(queue, taskName, input = {}, options = {}) {
    return this.call('select durable.enqueue($1, $2, $3::jsonb, $4::jsonb) as r', [
      queue,
      taskName,
      json(input),
      json(options),
    ]);
  }

  emitEvent(queue, key, payload = null) {
    return this.call('select durable.emit_event($1, $2, $3::jsonb) as r', [queue, key, json(payload)]);
  }

  cancel(taskId, reason = null) {
    return this.call('select durable.cancel($1, $2) as r', [taskId, reason]);
  }

  retry(taskId) {
    return this.call('select durable.retry($1) as r', [taskId]);
  }

  replay(taskId) {
    return this.call('select durable.replay($1) as r', [taskId]);
  }

  fork(taskId, atSeq) {
    return this.call('select durable.fork($1, $2) as r', [taskId, atSeq]);
  }

  getTask(taskId) {
    return this.call('select durable.get_task($1) as r', [taskId]);
  }

  /** The event log: [{generation, seq, kind, name, outcome, result, attempt, recorded_at}]. */
  async history(taskId, { allGenerations = false } = {}) {
    try {
      const res = await this.pool.query(
        'select generation, seq, kind, name, outcome, result, attempt, recorded_at from durable.history($1, $2)',
        [taskId, allGenerations],
      );
      return res.rows;
    } catch (err) {
      throw fromPg(err);
    }
  }

  /** Waits until the task's status is one of `statuses`; the task. */
  async waitFor(taskId, statuses, { timeout = 30 } = {}) {
    const wanted = [].concat(statuses);
    const deadline = Date.now() + timeout * 1000;
    for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
      const task = await this.getTask(taskId);
      if (task && wanted.includes(task.status)) return task;
      if (Date.now() > deadline) {
        throw new Error(`task ${taskId} is ${task && task.status} after ${timeout} s, not ${wanted.join(' or ')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  async close() {
    if (this._ownPool) await this.pool.end();
  }
}

module.exports = { Client };
