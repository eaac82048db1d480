'use strict';
// The scenario of the guide durable grew from: a durable task processOrder charges the
// payment, then sends the confirmation email, each as a child task. Kill its worker after
// the payment and start another: the next worker goes on from the log and never charges
// again (test/process-order.test.js does exactly that, with SIGKILL).
//
//   DATABASE_URL=... node examples/process-order.js                 # a worker of queue "orders"
//   DATABASE_URL=... node examples/process-order.js enqueue A-1 25  # an order (a producer's role)
//
// Environment: QUEUE (default orders), LEDGER (a file where each charge and each email is
// written as a line: the side effects), LEASE_SECONDS (default 30), and the demo switch
// KILL_AFTER_PAYMENT=1: the worker kills itself (SIGKILL) once the payment is recorded.

const fs = require('node:fs');
const { Worker, Client } = require('../lib/durable');

const queue = process.env.QUEUE || 'orders';
const ledger = process.env.LEDGER || null;

function record(line) {
  if (ledger) fs.appendFileSync(ledger, `${line}\n`);
  console.log(`[${process.pid}] ${line}`);
}

function buildWorker(connectionString) {
  const worker = new Worker({
    connectionString,
    queue,
    concurrency: 4,
    leaseSeconds: Number(process.env.LEASE_SECONDS || 30),
    pollInterval: 0.2,
  });

  worker.durableTask('processOrder', async (order, ctx) => {
    const charge = await ctx.spawn('chargePayment', { order: order.id, amount: order.amount });
    const receipt = await charge.result(); // the parent waits, holding no worker
    if (process.env.KILL_AFTER_PAYMENT === '1') {
      record(`killing the worker after the payment of order ${order.id}`);
      process.kill(process.pid, 'SIGKILL');
      await new Promise(() => {}); // (never reached)
    }
    const email = await ctx.spawn('sendConfirmationEmail', { order: order.id, receipt });
    await email.result();
    return { order: order.id, receipt, emailed: true };
  });

  // plain tasks: a retry runs them again (a real payment API takes an idempotency key: the
  // child's task id, which stays the same for every attempt)
  worker.task('chargePayment', async (input, ctx) => {
    record(`charge order ${input.order} amount ${input.amount} (task ${ctx.taskId})`);
    return { receipt: `rcpt-${input.order}`, amount: input.amount };
  });

  worker.task('sendConfirmationEmail', async (input) => {
    record(`email order ${input.order} receipt ${input.receipt.receipt}`);
    return { sent: true };
  });

  return worker;
}

async function main() {
  const url = process.env.DURABLE_DATABASE_URL || process.env.DATABASE_URL;
  if (!url) throw new Error('set DATABASE_URL');
  if (process.argv[2] === 'enqueue') {
    const client = new Client(url);
    const id = await client.enqueue(
      queue,
      'processOrder',
      { id: process.argv[3] || 'A-1', amount: Number(process.argv[4] || 25) },
      { durable: true },
    );
    console.log(id);
    await client.close();
    return;
  }
  const worker = buildWorker(url);
  worker.on('warning', (err) => console.error(`warning: ${err && err.message}`));
  const stop = () => worker.stop({ grace: 5 }).then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await worker.start();
  console.log(`[${process.pid}] worker ${worker.name} on queue ${queue}`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { buildWorker };
