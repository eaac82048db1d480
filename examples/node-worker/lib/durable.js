'use strict';
// durable's reference worker for Node.js (worker protocol v1, docs/protocol.md).
//
//   const { Worker, Client } = require('durable-node-worker');
//   const worker = new Worker({ connectionString: process.env.DATABASE_URL, queue: 'orders' });
//   worker.durableTask('processOrder', async (input, ctx) => {
//     const charge = await ctx.spawn('chargePayment', { order: input.order });
//     const receipt = await charge.result();
//     await ctx.step('log', () => console.log('charged', receipt));
//     return { receipt };
//   });
//   worker.task('chargePayment', async (input) => ({ paid: true }));
//   await worker.start();

const { Worker } = require('./worker');
const { Client } = require('./client');
const { DurableContext, ChildHandle } = require('./context');
const errors = require('./errors');
const conninfo = require('./conninfo');

module.exports = { Worker, Client, DurableContext, ChildHandle, errors, conninfo, ...errors };
