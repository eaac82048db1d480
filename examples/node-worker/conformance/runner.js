'use strict';
// The conformance runner of the Node worker: plays one scenario of tests/conformance
// (the format: tests/conformance/README.md) with a real Worker of this library.

const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert/strict');

const { Worker, Client, ChildFailed, EventTimeout, StepFailed } = require('../lib/durable');

const SCENARIOS = path.resolve(__dirname, '../../../tests/conformance/scenarios');
const AWAIT_TIMEOUT_MS = 30000;
const LEASE_SECONDS = 30;

function loadScenarios(dir = SCENARIOS) {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));
}

// ------------------------------------------------------------------ matchers

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function typeOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Why `actual` does not match `expected` (tests/conformance/README.md, "Matchers"), or null. */
function mismatch(expected, actual, where, aliases) {
  if (expected !== null && typeof expected === 'object' && !Array.isArray(expected)) {
    if ('$any' in expected) return actual === undefined ? `${where}: missing` : null;
    if ('$type' in expected) {
      const t = expected.$type;
      const ok =
        (t === 'uuid' && typeof actual === 'string' && UUID.test(actual)) ||
        (t === 'timestamp' && typeof actual === 'string' && !Number.isNaN(Date.parse(actual))) ||
        (t === 'integer' && Number.isInteger(actual)) ||
        typeOf(actual) === t;
      return ok ? null : `${where}: ${JSON.stringify(actual)} is not of type ${t}`;
    }
    if ('$range' in expected) {
      const [lo, hi] = expected.$range;
      return typeof actual === 'number' && actual >= lo && actual < hi
        ? null
        : `${where}: ${JSON.stringify(actual)} is not in [${lo}, ${hi})`;
    }
    if ('$contains' in expected) {
      return typeof actual === 'string' && actual.includes(expected.$contains)
        ? null
        : `${where}: ${JSON.stringify(actual)} does not contain ${JSON.stringify(expected.$contains)}`;
    }
    if ('$task' in expected) {
      const id = aliases.get(expected.$task);
      return typeof actual === 'string' && id !== undefined && actual.toLowerCase() === String(id).toLowerCase()
        ? null
        : `${where}: ${JSON.stringify(actual)} is not the id of task ${expected.$task} (${id})`;
    }
    if (typeOf(actual) !== 'object') return `${where}: expected an object, got ${JSON.stringify(actual)}`;
    for (const [key, value] of Object.entries(expected)) {
      const why = mismatch(value, actual[key], `${where}.${key}`, aliases);
      if (why) return why;
    }
    return null;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${where}: expected an array, got ${JSON.stringify(actual)}`;
    if (actual.length !== expected.length) {
      return `${where}: expected ${expected.length} elements, got ${actual.length}: ${JSON.stringify(actual)}`;
    }
    for (let i = 0; i < expected.length; i += 1) {
      const why = mismatch(expected[i], actual[i], `${where}[${i}]`, aliases);
      if (why) return why;
    }
    return null;
  }
  if (typeof expected === 'number' && typeof actual === 'number') {
    return expected === actual ? null : `${where}: expected ${expected}, got ${actual}`;
  }
  return expected === actual ? null : `${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

function expectMatch(expected, actual, where, aliases) {
  const why = mismatch(expected, actual, where, aliases);
  if (why) assert.fail(why);
}

function deepEqual(a, b) {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ the scenario

class ScenarioError extends Error {}

function userError(type, message) {
  const err = new Error(message || type);
  err.name = type;
  return err;
}

function substitute(value, kept) {
  if (Array.isArray(value)) return value.map((v) => substitute(v, kept));
  if (value !== null && typeof value === 'object') {
    if ('$value' in value && Object.keys(value).length === 1) {
      if (!(value.$value in kept)) throw new ScenarioError(`no value kept under "${value.$value}"`);
      return kept[value.$value];
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, kept)]));
  }
  return value;
}

const until = async (what, condition) => {
  const deadline = Date.now() + AWAIT_TIMEOUT_MS;
  for (let pause = 5; ; pause = Math.min(pause * 2, 50)) {
    if (await condition()) return;
    if (Date.now() > deadline) assert.fail(`timed out after ${AWAIT_TIMEOUT_MS / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
};

class Run {
  constructor(scenario, { workerConninfo, clientConninfo, log = () => {} }) {
    this.s = scenario;
    this.queue = scenario.queue || `conf_${scenario.name}`;
    this.workerConninfo = workerConninfo;
    this.clientConninfo = clientConninfo;
    this.log = log;
    this.code = Object.fromEntries(Object.entries(scenario.tasks).map(([name, t]) => [name, t.code]));
    this.effects = new Map();
    this.fired = new WeakSet(); // one-shot hooks (crash, pause) already fired
    this.counts = new WeakMap(); // raise and fail_times counters per op
    this.crashes = 0;
    this.hung = []; // the attempts that crashed: let go at the end
    this.pauses = new Map(); // name -> {reached, ended, resume}
    this.aliases = new Map();
    this.completedTraces = new Map(); // task id -> the calls of the last attempt that ran to its end
  }

  effect(name) {
    this.effects.set(name, (this.effects.get(name) || 0) + 1);
  }

  once(op) {
    if (this.fired.has(op)) return false;
    this.fired.add(op);
    return true;
  }

  count(op) {
    const n = (this.counts.get(op) || 0) + 1;
    this.counts.set(op, n);
    return n;
  }

  /** The worker stops dead: this attempt never goes on, nor sends anything. */
  crash(signal) {
    this.crashes += 1;
    return new Promise((resolve, reject) => {
      this.hung.push(reject);
      if (signal) signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }

  pause(name, reachedHere) {
    const p = this.pauses.get(name) || {};
    p.reached = true;
    reachedHere.push(name);
    const released = new Promise((resolve) => {
      p.resume = resolve;
    });
    this.pauses.set(name, p);
    return released;
  }

  /** The task function of task `name` (its code as it is when the attempt starts). */
  taskFunction(name, durable) {
    return async (input, ctx) => {
      const code = this.code[name];
      const reachedHere = [];
      try {
        return durable ? await this.runDurable(code, ctx, reachedHere) : await this.runPlain(code, ctx, reachedHere);
      } finally {
        for (const p of reachedHere) this.pauses.get(p).ended = true;
      }
    };
  }

  async runCommon(op, ctx, reachedHere) {
    if ('effect' in op) {
      this.effect(op.effect);
      return true;
    }
    if ('raise' in op) {
      if (op.times === undefined || this.count(op) <= op.times) throw userError(op.raise.type, op.raise.message);
      return true;
    }
    if ('crash' in op && !('step' in op)) {
      if (this.once(op)) await this.crash(ctx.signal);
      return true;
    }
    if ('pause' in op) {
      if (this.once(op)) await this.pause(op.pause, reachedHere);
      return true;
    }
    return false;
  }

  async runPlain(code, ctx, reachedHere) {
    for (const op of code) {
      if ('return' in op) return op.return;
      if (!(await this.runCommon(op, ctx, reachedHere))) throw new ScenarioError(`not an op of a plain task: ${JSON.stringify(op)}`);
    }
    return null;
  }

  async runDurable(code, ctx, reachedHere) {
    const kept = {};
    const trace = [];
    const handles = {};
    const caught = (err, ...types) => {
      if (types.some((t) => err instanceof t)) return { caught: err.name };
      throw err;
    };
    for (const op of code) {
      if ('return' in op) {
        this.completedTraces.set(ctx.taskId, trace);
        return substitute(op.return, kept);
      }
      if ('step' in op) {
        const fn = async ({ signal }) => {
          this.effect(op.step);
          if (op.crash && this.once(op)) await this.crash(signal);
          if (op.fail_times && this.count(op) <= op.fail_times) throw userError('Flaky', `failure of ${op.step}`);
          if (op.error) throw userError(op.error.type, op.error.message);
          return op.value;
        };
        const retry = op.retry ? { maxAttempts: op.retry.max_attempts, delay: 0 } : undefined;
        let value;
        try {
          value = await ctx.step(op.step, fn, { retry });
        } catch (err) {
          if (!op.catch) throw err;
          value = caught(err, StepFailed);
        }
        kept[op.as || op.step] = value;
        trace.push({ kind: 'step', value });
      } else if ('now' in op) {
        const value = await ctx.now();
        kept[op.as || 'now'] = value.toISOString();
        trace.push({ kind: 'now', value });
      } else if ('random' in op) {
        const value = await ctx.random();
        kept[op.as || 'random'] = value;
        trace.push({ kind: 'random', value });
      } else if ('uuid' in op) {
        const value = await ctx.uuid();
        kept[op.as || 'uuid'] = value;
        trace.push({ kind: 'uuid', value });
      } else if ('patched' in op) {
        const value = await ctx.patched(op.patched);
        kept[op.as || op.patched] = value;
        if (value) trace.push({ kind: 'patch' });
      } else if ('deprecate_patch' in op) {
        const before = ctx.seq;
        await ctx.deprecatePatch(op.deprecate_patch);
        if (ctx.seq > before) trace.push({ kind: 'patch' }); // it accepted a recorded marker
      } else if ('sleep' in op) {
        await ctx.sleep(op.sleep, { name: op.name || 'sleep' });
        trace.push({ kind: 'sleep' });
      } else if ('wait' in op) {
        let value;
        let timedOut = false;
        try {
          value = await ctx.waitForEvent(op.wait, { timeout: op.timeout === undefined ? null : op.timeout });
        } catch (err) {
          if (!(err instanceof EventTimeout) || !('on_timeout' in op || op.catch)) throw err;
          timedOut = true;
          value = 'on_timeout' in op ? op.on_timeout : caught(err, EventTimeout);
        }
        kept[op.as || op.wait] = value;
        trace.push({ kind: 'wait', value, timedOut });
      } else if ('spawn' in op) {
        const def = this.s.tasks[op.spawn];
        if (!def) throw new ScenarioError(`no task ${op.spawn} in the scenario`);
        const options = { ...(op.options || {}), ...(def.durable ? { durable: true } : {}) };
        const handle = await ctx.spawn(op.spawn, op.input || {}, { options });
        if (op.as) {
          handles[op.as] = handle;
          this.aliases.set(op.as, handle.taskId);
        }
        trace.push({ kind: 'spawn', value: handle.taskId });
      } else if ('wait_children' in op) {
        const value = await ctx.waitChildren(
          op.wait_children.map((a) => handles[a]),
          { name: op.name || 'children' },
        );
        kept[op.as || op.name || 'children'] = value;
        trace.push({ kind: 'children', value });
      } else if ('result' in op) {
        let value;
        let failed = false;
        try {
          value = await handles[op.result].result();
        } catch (err) {
          if (!op.catch) throw err;
          failed = true;
          value = caught(err, ChildFailed);
        }
        kept[op.as || op.result] = value;
        trace.push({ kind: 'result', value, failed });
      } else if (!(await this.runCommon(op, ctx, reachedHere))) {
        throw new ScenarioError(`unknown op ${JSON.stringify(op)}`);
      }
    }
    this.completedTraces.set(ctx.taskId, trace);
    return null;
  }

  id(alias) {
    const id = this.aliases.get(alias);
    if (id === undefined) throw new ScenarioError(`no task is called ${alias}`);
    return id;
  }

  async play() {
    this.client = new Client(this.clientConninfo);
    this.worker = new Worker({
      connectionString: this.workerConninfo,
      queue: this.queue,
      concurrency: 8,
      leaseSeconds: LEASE_SECONDS,
      pollInterval: 0.05,
    });
    this.worker.on('warning', (err) => this.log(`worker warning: ${err && err.message}`));
    try {
      await this.client.createQueue(this.queue, this.s.queue_options || { backoff: { kind: 'none' } });
      for (const [name, def] of Object.entries(this.s.tasks)) {
        const fn = this.taskFunction(name, def.durable);
        if (def.durable) this.worker.durableTask(name, fn);
        else this.worker.task(name, fn);
      }
      await this.worker.start();
      for (const [i, action] of this.s.actions.entries()) {
        try {
          await this.act(action);
        } catch (err) {
          err.message = `action ${i + 1} ${JSON.stringify(action).slice(0, 120)}: ${err.message}`;
          throw err;
        }
      }
    } finally {
      for (const reject of this.hung) reject(new Error('the scenario ended'));
      for (const p of this.pauses.values()) if (p.resume) p.resume();
      await this.worker.stop({ grace: 2 });
      await this.client.close();
    }
  }

  async act(a) {
    const c = this.client;
    if ('enqueue' in a) {
      const def = this.s.tasks[a.enqueue];
      const options = { ...(a.options || {}), ...(def.durable ? { durable: true } : {}) };
      this.aliases.set(a.as || a.enqueue, await c.enqueue(this.queue, a.enqueue, a.input || {}, options));
    } else if ('await' in a) {
      const w = a.await;
      if ('task' in w) {
        const wanted = [].concat(w.status);
        let last;
        await until(`task ${w.task} to be ${wanted.join(' or ')} (it is ${last})`, async () => {
          if (!this.aliases.has(w.task)) return false; // a child not spawned yet
          last = (await c.getTask(this.id(w.task))).status;
          return wanted.includes(last);
        });
      } else if ('crashes' in w) {
        await until(`${w.crashes} crashes`, () => this.crashes >= w.crashes);
      } else if ('paused' in w) {
        await until(`pause ${w.paused}`, () => (this.pauses.get(w.paused) || {}).reached);
      } else if ('ended' in w) {
        await until(`the code paused at ${w.ended} to end`, () => (this.pauses.get(w.ended) || {}).ended);
      } else {
        throw new ScenarioError(`unknown await ${JSON.stringify(w)}`);
      }
    } else if ('expire_lease' in a) {
      await this.expireLease(this.id(a.expire_lease));
    } else if ('deploy' in a) {
      for (const [name, code] of Object.entries(a.deploy)) this.code[name] = code;
    } else if ('emit' in a) {
      await c.emitEvent(this.queue, a.emit, a.payload === undefined ? null : a.payload);
    } else if ('resume' in a) {
      const p = this.pauses.get(a.resume);
      if (!p || !p.resume) throw new ScenarioError(`nothing paused at ${a.resume}`);
      p.resume();
    } else if ('cancel' in a) {
      await c.cancel(this.id(a.cancel));
    } else if ('retry' in a) {
      await c.retry(this.id(a.retry));
    } else if ('replay' in a) {
      await c.replay(this.id(a.replay));
    } else if ('fork' in a) {
      this.aliases.set(a.as, await c.fork(this.id(a.fork), a.at));
    } else if ('expect' in a) {
      await this.check(a.expect);
    } else {
      throw new ScenarioError(`unknown action ${JSON.stringify(a)}`);
    }
  }

  /** The lease of the task runs out: the clock of this session moves past every lease, and
   * the reclaim ends it (the task keeps its history and its place in the queue). */
  async expireLease(taskId) {
    const before = await this.client.getTask(taskId);
    assert.equal(before.status, 'running', `expire_lease: the task is ${before.status}, not running`);
    const conn = await this.client.pool.connect();
    try {
      await conn.query('begin');
      await conn.query(
        "select set_config('durable.fake_now', (clock_timestamp() + make_interval(secs => $1))::text, true)",
        [LEASE_SECONDS + 1],
      );
      await conn.query('select durable.reclaim($1)', [this.queue]);
      await conn.query('commit');
    } catch (err) {
      await conn.query('rollback').catch(() => {});
      throw err;
    } finally {
      conn.release();
    }
    const after = await this.client.getTask(taskId);
    assert.equal(after.lost_leases, before.lost_leases + 1, 'expire_lease: the reclaim did not end the lease');
  }

  async check(expect) {
    for (const [alias, e] of Object.entries(expect.tasks || {})) {
      const id = this.id(alias);
      const task = await this.client.getTask(id);
      const where = `task ${alias}`;
      if ('status' in e) expectMatch(e.status, task.status, `${where}.status`, this.aliases);
      if ('output' in e) expectMatch(e.output, task.output, `${where}.output`, this.aliases);
      if ('error' in e) expectMatch(e.error, task.error, `${where}.error`, this.aliases);
      if ('attempts' in e) expectMatch(e.attempts, task.attempt, `${where}.attempts`, this.aliases);
      const history = await this.client.history(id);
      if ('history' in e) {
        const actual = history.map((ev) => [ev.kind, ev.name, ev.outcome, ev.result]);
        expectMatch(e.history, actual, `${where}.history`, this.aliases);
        history.forEach((ev, i) => assert.equal(ev.seq, i + 1, `${where}: events are numbered 1, 2, 3, ...`));
      }
      if ('all_generations' in e) {
        const all = await this.client.history(id, { allGenerations: true });
        expectMatch(e.all_generations, all.length, `${where}.all_generations`, this.aliases);
      }
      if (e.returns_match_history) this.checkReturns(where, id, history);
    }
    for (const [name, n] of Object.entries(expect.effects || {})) {
      expectMatch(n, this.effects.get(name) || 0, `effects.${name}`, this.aliases);
    }
  }

  /** In the last attempt that ran its code to the end, each durable call returned the recorded value. */
  checkReturns(where, id, history) {
    const trace = this.completedTraces.get(id);
    assert.ok(trace, `${where}: no attempt ran its code to the end`);
    assert.equal(trace.length, history.length, `${where}: the code made ${trace.length} calls, the history has ${history.length}`);
    trace.forEach((call, i) => {
      const ev = history[i];
      const at = `${where}: call ${i + 1} (${call.kind})`;
      const same = (ok, got) => assert.ok(ok, `${at} returned ${JSON.stringify(got)}, recorded ${JSON.stringify(ev.result)}`);
      switch (call.kind) {
        case 'step':
          if (call.value && call.value.caught) same(ev.outcome === 'error', call.value);
          else same(ev.outcome === 'ok' && deepEqual(call.value, ev.result), call.value);
          break;
        case 'now':
          same(Math.abs(call.value.getTime() - Date.parse(ev.result)) < 1, call.value);
          break;
        case 'random':
          same(call.value === ev.result, call.value);
          break;
        case 'uuid':
          same(String(call.value).toLowerCase() === String(ev.result).toLowerCase(), call.value);
          break;
        case 'sleep':
          same(ev.kind === 'sleep', null);
          break;
        case 'patch':
          same(ev.kind === 'patch', null);
          break;
        case 'wait':
          same(call.timedOut ? ev.result.timed_out === true : deepEqual(call.value, ev.result.payload), call.value);
          break;
        case 'spawn':
          same(call.value === ev.result.task_id, call.value);
          break;
        case 'children':
          same(deepEqual(call.value, ev.result), call.value);
          break;
        case 'result':
          same(call.failed ? ev.result[0].status !== 'completed' : deepEqual(call.value, ev.result[0].output), call.value);
          break;
        default:
          assert.fail(`${at}: unknown kind`);
      }
    });
  }
}

/** Plays one scenario; throws (an assertion error) when an expectation fails. */
async function runScenario(scenario, options) {
  await new Run(scenario, options).play();
}

module.exports = { runScenario, loadScenarios, mismatch, SCENARIOS };
