'use strict';
// The conformance suite (tests/conformance/scenarios) with the Node reference worker.
//   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres node --test test/
// CONFORMANCE_ONLY=name1,name2 runs only those scenarios.

const { describe, it, before, after } = require('node:test');
const { scratchDatabase } = require('../conformance/database');
const { runScenario, loadScenarios } = require('../conformance/runner');

const only = (process.env.CONFORMANCE_ONLY || '').split(',').filter(Boolean);
const scenarios = loadScenarios().filter((s) => only.length === 0 || only.includes(s.name));

describe('conformance', { concurrency: 8 }, () => {
  let db;
  before(async () => {
    db = await scratchDatabase();
  });
  after(async () => {
    if (db) await db.drop();
  });
  for (const scenario of scenarios) {
    it(scenario.name, async () => {
      await runScenario(scenario, {
        workerConninfo: db.workerUrl,
        clientConninfo: db.clientUrl,
        log: (line) => process.env.CONFORMANCE_VERBOSE && console.error(`[${scenario.name}] ${line}`),
      });
    });
  }
});
