'use strict';
// A scratch database for the Node tests, on the server of DATABASE_URL (a superuser's
// connection string, URL or key=value; host=/dir is a Unix socket directory):
//
//   create database durable_node_<random>; migrate it as a test database (its clock may be
//   moved with durable.fake_now); the login roles durable_test_worker (durable_worker)
//   and durable_test_client (durable_producer, durable_operator), as tests/conftest.py
//   makes them; drop the database at the end.
//
// The migration runs DURABLE_MIGRATE (a command line; the connection string is given in
// DATABASE_URL), else the checkout's .venv/bin/durable, else `durable` on the PATH, each
// as `... migrate --test-clock`. With DURABLE_TEMPLATE_DB (a migrated test database, as
// the pytest session makes), the database is a copy of it instead.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const pg = require('pg');

const { pgConfig, withParams } = require('../lib/conninfo');

const ROOT = path.resolve(__dirname, '../../..');
const WORKER_ROLE = 'durable_test_worker';
const CLIENT_ROLE = 'durable_test_client';
const LOGIN_ROLES = { [WORKER_ROLE]: ['durable_worker'], [CLIENT_ROLE]: ['durable_producer', 'durable_operator'] };

function serverUrl() {
  const url = process.env.DURABLE_DATABASE_URL || process.env.DATABASE_URL;
  if (!url) throw new Error('set DATABASE_URL to a superuser connection string of a PostgreSQL server');
  return url;
}

function migrateCommand() {
  if (process.env.DURABLE_MIGRATE) return ['sh', ['-c', `${process.env.DURABLE_MIGRATE} migrate --test-clock`]];
  const venv = path.join(ROOT, '.venv', 'bin', 'durable');
  if (fs.existsSync(venv)) return [venv, ['migrate', '--test-clock']];
  return ['durable', ['migrate', '--test-clock']];
}

async function admin(conninfo, fn) {
  const client = new pg.Client(pgConfig(conninfo));
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const ident = (name) => `"${name.replace(/"/g, '""')}"`;

async function createLoginRoles(adminConninfo) {
  await admin(adminConninfo, async (c) => {
    for (const [role, groups] of Object.entries(LOGIN_ROLES)) {
      const exists = await c.query('select 1 from pg_roles where rolname = $1', [role]);
      if (exists.rowCount === 0) {
        try {
          await c.query(`create role ${ident(role)} login nosuperuser nocreatedb nocreaterole`);
        } catch (err) {
          if (!['42710', '23505'].includes(err.code)) throw err; // another test run made it meanwhile
        }
      }
      for (const group of groups) {
        try {
          await c.query(`grant ${ident(group)} to ${ident(role)}`);
        } catch (err) {
          if (!['42710', '23505'].includes(err.code)) throw err;
        }
      }
    }
  });
}

/** A migrated scratch database: {adminUrl, workerUrl, clientUrl, drop()} (key=value strings). */
async function scratchDatabase() {
  const server = serverUrl();
  const name = `durable_node_${crypto.randomBytes(5).toString('hex')}`;
  const template = process.env.DURABLE_TEMPLATE_DB;
  await admin(server, (c) => c.query(`create database ${ident(name)}${template ? ` template ${ident(template)}` : ''}`));
  const adminUrl = withParams(server, { dbname: name });
  try {
    if (!template) {
      const [cmd, args] = migrateCommand();
      execFileSync(cmd, args, {
        env: { ...process.env, DATABASE_URL: adminUrl, DURABLE_DATABASE_URL: adminUrl },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    }
    await createLoginRoles(adminUrl);
  } catch (err) {
    await admin(server, (c) => c.query(`drop database if exists ${ident(name)} with (force)`));
    throw err;
  }
  return {
    name,
    adminUrl,
    workerUrl: withParams(adminUrl, { user: WORKER_ROLE, password: null }),
    clientUrl: withParams(adminUrl, { user: CLIENT_ROLE, password: null }),
    drop: () => admin(server, (c) => c.query(`drop database if exists ${ident(name)} with (force)`)),
  };
}

module.exports = { scratchDatabase, serverUrl, ROOT, WORKER_ROLE, CLIENT_ROLE };
