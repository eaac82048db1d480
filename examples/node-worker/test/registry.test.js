'use strict';
// The worker registry (docs/protocol.md, "Worker registry"): a Node worker registers under
// its claim name at start, heartbeats, registers again when its entry is gone, and
// unregisters at stop; a second live worker cannot take its name (DU023).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const pg = require('pg');

const { scratchDatabase } = require('../conformance/database');
const { pgConfig } = require('../lib/conninfo');
const { Worker } = require('../lib/durable');

let db;
let workerPool; // as the worker role: durable.workers() shows the worker role what it may read

before(async () => {
  db = await scratchDatabase();
  workerPool = new pg.Pool({ ...pgConfig(db.workerUrl), max: 2 });
});

after(async () => {
  if (workerPool) await workerPool.end();
  if (db) await db.drop();
});

const entry = async (queue, name) =>
  (await workerPool.query('select * from durable.workers($1) where name = $2', [queue, name])).rows[0];

/** Waits (up to 10 s) until check() is true. */
async function until(check, what) {
  const deadline = Date.now() + 10000;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('a worker registers at start, heartbeats, and unregisters at stop', async () => {
  const w = new Worker({ connectionString: db.workerUrl, queue: 'reg_a', name: 'node-reg-a', heartbeatSeconds: 0.2 });
  w.task('job', async () => null);
  await w.start();
  try {
    const first = await entry('reg_a', 'node-reg-a');
    assert.ok(first, 'registered at start');
    assert.equal(first.alive, true);
    assert.deepEqual(first.task_names, ['job']);
    assert.equal(first.slots, 10);
    await until(async () => {
      const now = await entry('reg_a', 'node-reg-a');
      return now && now.last_seen_at > first.last_seen_at;
    }, 'a registry heartbeat');
  } finally {
    await w.stop();
  }
  assert.equal(await entry('reg_a', 'node-reg-a'), undefined, 'unregistered at stop');
});

test('a worker whose entry is gone registers again', async () => {
  const w = new Worker({ connectionString: db.workerUrl, queue: 'reg_b', name: 'node-reg-b', heartbeatSeconds: 0.2 });
  w.task('job', async () => null);
  const warnings = [];
  w.on('warning', (err) => warnings.push(err));
  await w.start();
  try {
    const token = w._registryToken;
    // its entry removed as if it had been found dead and deleted
    await workerPool.query('select durable.unregister_worker($1, $2) as r', ['node-reg-b', token]);
    assert.equal(await entry('reg_b', 'node-reg-b'), undefined);
    await until(async () => (await entry('reg_b', 'node-reg-b')) !== undefined, 'registering again');
    assert.notEqual(w._registryToken, token, 'a new token');
    assert.ok(warnings.some((err) => /registering again/.test(err.message)), 'it said so');
  } finally {
    await w.stop();
  }
});

test('a second live worker cannot take the name (DU023)', async () => {
  const a = new Worker({ connectionString: db.workerUrl, queue: 'reg_c', name: 'node-reg-c' });
  a.task('job', async () => null);
  await a.start();
  try {
    const b = new Worker({ connectionString: db.workerUrl, queue: 'reg_c', name: 'node-reg-c' });
    b.task('job', async () => null);
    await assert.rejects(b.start(), (err) => {
      assert.equal(err.sqlstate || err.code, 'DU023', err.message);
      return true;
    });
    await b.pool.end();
  } finally {
    await a.stop();
  }
});
