'use strict';
// docs/protocol.md, verb by verb: every field and every error it names, checked against the
// SQL by calling the verbs directly (as the worker role and the client role).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const pg = require('pg');

const { scratchDatabase } = require('../conformance/database');
const { pgConfig } = require('../lib/conninfo');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const EVENT_KEYS = ['kind', 'name', 'outcome', 'result', 'seq'];

let db;
let worker; // pg.Pool as durable_test_worker
let client; // pg.Pool as durable_test_client
let queueNo = 0;

before(async () => {
  db = await scratchDatabase();
  worker = new pg.Pool({ ...pgConfig(db.workerUrl), max: 4 });
  client = new pg.Pool({ ...pgConfig(db.clientUrl), max: 4 });
});

after(async () => {
  if (worker) await worker.end();
  if (client) await client.end();
  if (db) await db.drop();
});

const one = async (pool, sql, params = []) => (await pool.query(sql, params)).rows[0].r;
const w = (sql, params) => one(worker, sql, params);
const sqlstate = (code) => (err) => {
  assert.equal(err.code, code, `${err.code}: ${err.message}`);
  return true;
};

/** A fresh queue with one durable task enqueued; claimed: {queue, task, token, row}. */
async function claimed({ durable = true, input = {}, options = {} } = {}) {
  queueNo += 1;
  const queue = `proto_${queueNo}`;
  await one(client, 'select durable.create_queue($1, $2::jsonb) as r', [queue, JSON.stringify({ backoff: { kind: 'none' } })]);
  const task = await one(client, 'select durable.enqueue($1, $2, $3::jsonb, $4::jsonb) as r', [
    queue,
    'job',
    JSON.stringify(input),
    JSON.stringify({ durable, ...options }),
  ]);
  const row = (await worker.query('select * from durable.claim($1, $2, 1, 30)', [queue, 'proto-worker'])).rows[0];
  return { queue, task, token: row.lease_token, row };
}

const checkpoint = (t, seq, kind, name, result = null, error = null) =>
  w('select durable.checkpoint($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) as r', [
    t.task,
    t.token,
    seq,
    kind,
    name,
    result === null ? null : JSON.stringify(result),
    error === null ? null : JSON.stringify(error),
  ]);

/** Ends the attempt's lease (the clock moved past it, then the reclaim) and claims again. */
async function reclaimAndClaim(t) {
  const c = await client.connect();
  try {
    await c.query('begin');
    await c.query("select set_config('durable.fake_now', (clock_timestamp() + interval '31 seconds')::text, true)");
    await c.query('select durable.reclaim($1)', [t.queue]);
    await c.query('commit');
  } finally {
    c.release();
  }
  const row = (await worker.query('select * from durable.claim($1, $2, 1, 30)', [t.queue, 'proto-worker'])).rows[0];
  assert.ok(row, 'claimed again');
  return { ...t, token: row.lease_token, row };
}

const getTask = (id) => one(client, 'select durable.get_task($1) as r', [id]);

describe('claim', () => {
  it('returns the attempt, a lease token and, for a durable task, its history in the event shape', async () => {
    const t = await claimed({ input: { order: 7 } });
    assert.deepEqual(Object.keys(t.row).sort(), [
      'attempt',
      'durable',
      'history',
      'input',
      'lease_expires_at',
      'lease_token',
      'task_id',
      'task_name',
      'trace_context',
    ]);
    assert.equal(t.row.attempt, 1);
    assert.equal(t.row.trace_context, null); // none stored by the enqueue
    assert.equal(t.row.durable, true);
    assert.deepEqual(t.row.input, { order: 7 });
    assert.deepEqual(t.row.history, []);
    assert.ok(t.row.lease_expires_at instanceof Date);
    const event = await checkpoint(t, 1, 'step', 'a', { v: 1 });
    const again = await reclaimAndClaim(t);
    assert.equal(again.row.attempt, 2);
    assert.deepEqual(again.row.history, [event]);
    assert.deepEqual(Object.keys(again.row.history[0]).sort(), EVENT_KEYS);
  });

  it('gives a plain task no history', async () => {
    const t = await claimed({ durable: false });
    assert.equal(t.row.durable, false);
    assert.equal(t.row.history, null);
  });
});

describe('event_kinds', () => {
  it('lists the nine kinds, the verb of each, its name, arguments and result', async () => {
    const rows = (await worker.query('select * from durable.event_kinds()')).rows;
    assert.deepEqual(
      rows.map((r) => [r.kind, r.verb]),
      [
        ['step', 'checkpoint'],
        ['now', 'checkpoint'],
        ['random', 'checkpoint'],
        ['uuid', 'checkpoint'],
        ['sleep', 'sleep'],
        ['wait', 'wait_event'],
        ['spawn', 'spawn'],
        ['children', 'wait_children'],
        ['patch', 'checkpoint'],
      ],
    );
    for (const r of rows) assert.deepEqual(Object.keys(r).sort(), ['arguments', 'kind', 'name', 'result', 'verb']);
  });
});

describe('checkpoint', () => {
  it('returns the event it recorded: step ok, step error, now, random, uuid', async () => {
    const t = await claimed();
    assert.deepEqual(await checkpoint(t, 1, 'step', 'a', [1, 'x']), {
      seq: 1,
      kind: 'step',
      name: 'a',
      outcome: 'ok',
      result: [1, 'x'],
    });
    assert.deepEqual(await checkpoint(t, 2, 'step', 'b', null, { type: 'Boom', message: 'no' }), {
      seq: 2,
      kind: 'step',
      name: 'b',
      outcome: 'error',
      result: { type: 'Boom', message: 'no' },
    });
    const now = await checkpoint(t, 3, 'now', 'clock');
    assert.deepEqual(Object.keys(now).sort(), EVENT_KEYS);
    assert.ok(!Number.isNaN(Date.parse(now.result)), now.result);
    const random = await checkpoint(t, 4, 'random', 'r');
    assert.ok(random.result >= 0 && random.result < 1);
    const uuid = await checkpoint(t, 5, 'uuid', 'u');
    assert.match(uuid.result, UUID);
    // the same call at a recorded seq: the recorded event, nothing written
    assert.deepEqual(await checkpoint(t, 4, 'random', 'r'), random);
    const history = (await client.query('select * from durable.history($1)', [t.task])).rows;
    assert.equal(history.length, 5);
  });

  it('refuses a value for now, random and uuid (DU001), a non-object error (DU001), a gap (DU021)', async () => {
    const t = await claimed();
    for (const kind of ['now', 'random', 'uuid']) {
      await assert.rejects(checkpoint(t, 1, kind, 'x', 1), sqlstate('DU001'));
    }
    await assert.rejects(checkpoint(t, 1, 'step', 'a', null, 'boom'), sqlstate('DU001'));
    await assert.rejects(checkpoint(t, 1, 'sleep', 'a', 1), sqlstate('DU001'));
    await assert.rejects(checkpoint(t, 2, 'step', 'a', 1), sqlstate('DU021'));
  });

  it('refuses a new event before the re-run checked the recorded ones (DU022)', async () => {
    let t = await claimed();
    await checkpoint(t, 1, 'step', 'a', 1);
    t = await reclaimAndClaim(t);
    await assert.rejects(checkpoint(t, 2, 'step', 'b', 2), sqlstate('DU022'));
    // calling the recorded seq again checks it, one by one
    assert.equal((await checkpoint(t, 1, 'step', 'a', 1)).result, 1);
    assert.equal((await checkpoint(t, 2, 'step', 'b', 2)).result, 2);
  });

  it('answers {"nondeterminism"} for another call at a recorded seq, fails the task, and DU020 after', async () => {
    let t = await claimed();
    await checkpoint(t, 1, 'step', 'a', 1);
    t = await reclaimAndClaim(t);
    const answer = await checkpoint(t, 1, 'step', 'renamed', 1);
    assert.deepEqual(Object.keys(answer), ['nondeterminism']);
    const nd = answer.nondeterminism;
    assert.equal(nd.seq, 1);
    assert.equal(nd.task_id, t.task);
    assert.equal(nd.recorded.kind, 'step');
    assert.equal(nd.recorded.name, 'a');
    assert.equal(nd.presented.kind, 'step');
    assert.equal(nd.presented.name, 'renamed');
    assert.match(nd.message, /non-determinism/);
    const task = await getTask(t.task);
    assert.equal(task.status, 'failed');
    assert.equal(task.error.type, 'NonDeterminismError');
    for (const key of ['message', 'seq', 'recorded', 'presented']) assert.ok(key in task.error, key);
    await assert.rejects(checkpoint(t, 2, 'step', 'b', 2), sqlstate('DU020'));
    await assert.rejects(w('select durable.complete($1, $2, null) as r', [t.task, t.token]), sqlstate('DU020'));
    await assert.rejects(w('select durable.heartbeat($1, $2) as r', [t.task, t.token]), sqlstate('DU020'));
    await assert.rejects(w("select (durable.fail($1, $2, '{}'::jsonb)).status as r", [t.task, t.token]), sqlstate('DU020'));
    await assert.rejects(w('select durable.release($1, $2, 0) as r', [t.task, t.token]), sqlstate('DU020'));
    await assert.rejects(
      w('select durable.replay_check($1, $2, $3::jsonb) as r', [t.task, t.token, '[]']),
      sqlstate('DU020'),
    );
  });
});

describe('replay_check', () => {
  it('returns {"checked": n} and lets the next new event in', async () => {
    let t = await claimed();
    await checkpoint(t, 1, 'step', 'a', 1);
    await checkpoint(t, 2, 'now', 'clock');
    t = await reclaimAndClaim(t);
    const presented = [
      { seq: 1, kind: 'step', name: 'a' },
      { seq: 2, kind: 'now', name: 'clock' },
    ];
    assert.deepEqual(await w('select durable.replay_check($1, $2, $3::jsonb) as r', [t.task, t.token, JSON.stringify(presented)]), {
      checked: 2,
    });
    assert.equal((await checkpoint(t, 3, 'step', 'b', 3)).seq, 3);
  });

  it('compares a spawn by its queue and input, a children wait by its ids (the server hashes them)', async () => {
    let t = await claimed();
    const spawned = await w('select durable.spawn($1, $2, 1, $3, $4, $5::jsonb, $6::jsonb) as r', [
      t.task,
      t.token,
      t.queue,
      'child',
      JSON.stringify({ n: 1 }),
      '{}',
    ]);
    assert.deepEqual(Object.keys(spawned).sort(), EVENT_KEYS);
    assert.deepEqual(Object.keys(spawned.result).sort(), ['queue', 'task_id']);
    assert.equal(spawned.result.queue, t.queue);
    t = await reclaimAndClaim(t);
    const same = [{ seq: 1, kind: 'spawn', name: 'child', queue: t.queue, input: { n: 1 } }];
    assert.deepEqual(await w('select durable.replay_check($1, $2, $3::jsonb) as r', [t.task, t.token, JSON.stringify(same)]), {
      checked: 1,
    });
    const other = [{ seq: 1, kind: 'spawn', name: 'child', queue: t.queue, input: { n: 2 } }];
    const answer = await w('select durable.replay_check($1, $2, $3::jsonb) as r', [t.task, t.token, JSON.stringify(other)]);
    assert.equal(answer.nondeterminism.seq, 1);
    assert.equal((await getTask(t.task)).status, 'failed');
  });

  it('refuses presented calls out of order (DU021) or not objects (DU001)', async () => {
    let t = await claimed();
    await checkpoint(t, 1, 'step', 'a', 1);
    await checkpoint(t, 2, 'step', 'b', 1);
    t = await reclaimAndClaim(t);
    const check = (presented) =>
      w('select durable.replay_check($1, $2, $3::jsonb) as r', [t.task, t.token, JSON.stringify(presented)]);
    await assert.rejects(check([{ seq: 2, kind: 'step', name: 'b' }]), sqlstate('DU021'));
    await assert.rejects(check(['a']), sqlstate('DU001'));
    await assert.rejects(check({ seq: 1 }), sqlstate('DU001'));
  });
});

describe('complete', () => {
  it('returns {"completed": true}', async () => {
    const t = await claimed();
    await checkpoint(t, 1, 'step', 'a', 1);
    assert.deepEqual(await w('select durable.complete($1, $2, $3::jsonb) as r', [t.task, t.token, '{"ok": 1}']), {
      completed: true,
    });
    const task = await getTask(t.task);
    assert.equal(task.status, 'completed');
    assert.deepEqual(task.output, { ok: 1 });
    await assert.rejects(w('select durable.complete($1, $2, null) as r', [t.task, t.token]), sqlstate('DU010'));
  });

  it('answers {"nondeterminism"} when the code finished without going through the history', async () => {
    let t = await claimed();
    await checkpoint(t, 1, 'step', 'a', 1);
    await checkpoint(t, 2, 'step', 'b', 2);
    t = await reclaimAndClaim(t);
    await w('select durable.replay_check($1, $2, $3::jsonb) as r', [t.task, t.token, JSON.stringify([{ seq: 1, kind: 'step', name: 'a' }])]);
    const answer = await w('select durable.complete($1, $2, null) as r', [t.task, t.token]);
    assert.equal(answer.nondeterminism.seq, 2);
    assert.equal(answer.nondeterminism.recorded.name, 'b');
    assert.equal(answer.nondeterminism.presented, null);
    const task = await getTask(t.task);
    assert.equal(task.status, 'failed');
    assert.equal(task.error.type, 'NonDeterminismError');
  });

  it('complete_many says why for each task: completed, duplicate, lease_lost, nondeterminism, unknown_task', async () => {
    const a = await claimed();
    const b = await claimed();
    let c = await claimed();
    await checkpoint(c, 1, 'step', 'a', 1);
    const oldToken = c.token;
    c = await reclaimAndClaim(c);
    const unknown = '00000000-0000-0000-0000-000000000000';
    const rows = (
      await worker.query('select * from durable.complete_many($1::uuid[], $2::uuid[], $3::jsonb[])', [
        [a.task, a.task, b.task, c.task, c.task, unknown],
        [a.token, a.token, oldToken, oldToken, c.token, a.token],
        ['1', '1', '2', '3', '4', '5'],
      ])
    ).rows;
    assert.deepEqual(
      rows.map((r) => [r.ok, r.reason]),
      [
        [true, 'completed'],
        [false, 'duplicate'],
        [false, 'lease_lost'],
        [false, 'lease_lost'],
        [false, 'nondeterminism'],
        [false, 'unknown_task'],
      ],
    );
    assert.equal((await getTask(c.task)).status, 'failed');
  });
});

describe('sleep, wait_event, spawn, wait_children', () => {
  it('sleep: the event once the time has come, else {"suspended": true}', async () => {
    const t = await claimed();
    const over = await w('select durable.sleep($1, $2, 1, $3, $4::float8, null) as r', [t.task, t.token, 'nap', 0]);
    assert.deepEqual(Object.keys(over).sort(), EVENT_KEYS);
    assert.equal(over.kind, 'sleep');
    assert.ok(!Number.isNaN(Date.parse(over.result.until)));
    const parked = await w('select durable.sleep($1, $2, 2, $3, $4::float8, null) as r', [t.task, t.token, 'long', 3600]);
    assert.deepEqual(parked, { seq: 2, kind: 'sleep', name: 'long', suspended: true });
    assert.equal((await getTask(t.task)).status, 'sleeping');
    await assert.rejects(checkpoint(t, 3, 'step', 'x', 1), sqlstate('DU010'));
  });

  it('wait_event: {"suspended": true}, then the emit records {"payload", "timed_out"}; a latch answers at once', async () => {
    const t = await claimed();
    const parked = await w('select durable.wait_event($1, $2, 1, $3, null) as r', [t.task, t.token, 'go']);
    assert.deepEqual(parked, { seq: 1, kind: 'wait', name: 'go', suspended: true });
    assert.equal((await getTask(t.task)).status, 'waiting');
    assert.equal(await one(client, 'select durable.emit_event($1, $2, $3::jsonb) as r', [t.queue, 'go', '{"by": "alice"}']), 1);
    const again = (await worker.query('select * from durable.claim($1, $2, 1, 30)', [t.queue, 'proto-worker'])).rows[0];
    assert.deepEqual(again.history, [
      { seq: 1, kind: 'wait', name: 'go', outcome: 'ok', result: { payload: { by: 'alice' }, timed_out: false } },
    ]);
    // a second wait for the same key, in the same task: the latch is set
    const t2 = { ...t, token: again.lease_token };
    await w('select durable.replay_check($1, $2, $3::jsonb) as r', [t2.task, t2.token, JSON.stringify([{ seq: 1, kind: 'wait', name: 'go' }])]);
    assert.deepEqual(await w('select durable.wait_event($1, $2, 2, $3, 5) as r', [t2.task, t2.token, 'go']), {
      seq: 2,
      kind: 'wait',
      name: 'go',
      outcome: 'ok',
      result: { payload: { by: 'alice' }, timed_out: false },
    });
  });

  it('wait_children: {"suspended": true} until the children end, then [{task_id, status, output, error}] in order', async () => {
    const t = await claimed();
    const spawn = (seq, n) =>
      w('select durable.spawn($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) as r', [
        t.task,
        t.token,
        seq,
        t.queue,
        'child',
        JSON.stringify({ n }),
        '{}',
      ]);
    const c1 = (await spawn(1, 1)).result.task_id;
    const c2 = (await spawn(2, 2)).result.task_id;
    const parked = await w('select durable.wait_children($1, $2, 3, $3::uuid[], $4) as r', [t.task, t.token, [c1, c2], 'kids']);
    assert.deepEqual(parked, { seq: 3, kind: 'children', name: 'kids', suspended: true });
    const children = (await worker.query('select * from durable.claim($1, $2, 2, 30)', [t.queue, 'proto-worker'])).rows;
    assert.equal(children.length, 2);
    for (const child of children) {
      await w('select durable.complete($1, $2, $3::jsonb) as r', [child.task_id, child.lease_token, JSON.stringify(child.input.n)]);
    }
    const again = (await worker.query('select * from durable.claim($1, $2, 1, 30)', [t.queue, 'proto-worker'])).rows[0];
    assert.equal(again.task_id, t.task);
    const waited = again.history[2];
    assert.deepEqual(waited.result, [
      { task_id: c1, status: 'completed', output: 1, error: null },
      { task_id: c2, status: 'completed', output: 2, error: null },
    ]);
  });
});

describe('the errors a worker meets', () => {
  it('DU010 for a lease that is not live, DU011 for a cancelled task, DU004 for an unknown one', async () => {
    const t = await claimed();
    const beat = await w('select durable.heartbeat($1, $2) as r', [t.task, t.token]);
    assert.ok(beat instanceof Date);
    await assert.rejects(w('select durable.heartbeat($1, $2) as r', [t.task, '00000000-0000-0000-0000-000000000000']), sqlstate('DU010'));
    await one(client, 'select durable.cancel($1) as r', [t.task]);
    await assert.rejects(checkpoint(t, 1, 'step', 'a', 1), sqlstate('DU011'));
    await assert.rejects(w('select durable.heartbeat($1, $2) as r', ['00000000-0000-0000-0000-000000000000', t.token]), sqlstate('DU004'));
    await assert.rejects(w('select durable.heartbeat($1, $2) as r', ['not-a-uuid', t.token]), sqlstate('22P02'));
  });

  it('fail returns (status, run_at); release hands the task back without spending an attempt', async () => {
    const t = await claimed({ options: { max_attempts: 2 } });
    const failed = (await worker.query('select * from durable.fail($1, $2, $3::jsonb, true)', [t.task, t.token, '{"type": "Boom", "message": "x"}'])).rows[0];
    assert.deepEqual(Object.keys(failed).sort(), ['run_at', 'status']);
    assert.equal(failed.status, 'pending');
    const again = (await worker.query('select * from durable.claim($1, $2, 1, 30)', [t.queue, 'proto-worker'])).rows[0];
    const runAt = await w('select durable.release($1, $2, 0, $3) as r', [t.task, again.lease_token, 'not mine']);
    assert.ok(runAt instanceof Date);
    const task = await getTask(t.task);
    assert.equal(task.status, 'pending');
    assert.equal(task.failures, 1);
  });
});
