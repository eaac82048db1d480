'use strict';
// processOrder (examples/process-order.js): its worker is killed (SIGKILL) after the
// payment; the next worker completes the order and never charges again.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const { scratchDatabase } = require('../conformance/database');
const { Client } = require('../lib/durable');

const SCRIPT = path.join(__dirname, '..', 'examples', 'process-order.js');

let db;
let client;
let dir;
const procs = [];

before(async () => {
  db = await scratchDatabase();
  client = new Client(db.clientUrl);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-orders-'));
});

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  if (client) await client.close();
  if (db) await db.drop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function startWorker(env) {
  const proc = spawn(process.execPath, [SCRIPT], {
    env: { ...process.env, DATABASE_URL: db.workerUrl, DURABLE_DATABASE_URL: db.workerUrl, ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  proc.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  procs.push(proc);
  return proc;
}

const lines = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

test('processOrder: the worker is killed after the payment; the next one never charges again', async () => {
  const ledger = path.join(dir, 'ledger');
  await client.createQueue('orders', { backoff: { kind: 'none' } });
  const first = startWorker({ LEDGER: ledger, LEASE_SECONDS: '2', KILL_AFTER_PAYMENT: '1' });
  const order = await client.enqueue('orders', 'processOrder', { id: 'A-1', amount: 25 }, { durable: true });

  const { signal } = await first.exited;
  assert.equal(signal, 'SIGKILL');
  const charged = lines(ledger).filter((l) => l.startsWith('charge'));
  assert.equal(charged.length, 1, `one charge before the kill: ${lines(ledger)}`);
  assert.equal(lines(ledger).filter((l) => l.startsWith('email')).length, 0);
  const killed = await client.getTask(order);
  assert.equal(killed.status, 'running', 'the dead worker still holds the lease');
  const before = (await client.history(order)).map((e) => [e.kind, e.name]);
  assert.deepEqual(before, [
    ['spawn', 'chargePayment'],
    ['children', 'result'],
  ]);

  // the next worker: it reclaims the lease once it runs out (2 s) and goes on from the log
  const second = startWorker({ LEDGER: ledger });
  const done = await client.waitFor(order, ['completed', 'failed'], { timeout: 30 });
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.deepEqual(done.output, { order: 'A-1', receipt: { receipt: 'rcpt-A-1', amount: 25 }, emailed: true });
  assert.equal(done.lost_leases, 1);
  assert.deepEqual(
    lines(ledger).map((l) => l.split(' ')[0]),
    ['charge', 'killing', 'email'],
    'charged once, emailed once',
  );
  const history = (await client.history(order)).map((e) => [e.seq, e.kind, e.name, e.outcome]);
  assert.deepEqual(history, [
    [1, 'spawn', 'chargePayment', 'ok'],
    [2, 'children', 'result', 'ok'],
    [3, 'spawn', 'sendConfirmationEmail', 'ok'],
    [4, 'children', 'result', 'ok'],
  ]);
  second.kill('SIGTERM');
  const { code } = await second.exited;
  assert.equal(code, 0);
});
