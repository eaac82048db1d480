'use strict';
// Connection strings as libpq takes them: a URL (postgresql://user@host:port/db?host=/socket/dir)
// or key=value pairs (host=/socket/dir port=5432 user=postgres dbname=postgres). node-postgres
// takes a config object; these helpers turn either form into one, and back into key=value
// text for tools that speak libpq (psql, psycopg).

/** The parameters of a libpq connection string, as an object of strings. */
function parse(conninfo) {
  const text = String(conninfo || '').trim();
  if (/^postgres(ql)?:\/\//i.test(text)) return parseUrl(text);
  return parseKeyValue(text);
}

function parseUrl(text) {
  // (not WHATWG's URL: it refuses an empty host, as in postgresql://user@/db?host=/socket/dir)
  const m = /^postgres(?:ql)?:\/\/(?:([^@/?#]*)@)?([^/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/i.exec(text);
  if (!m) throw new Error('conninfo: not a postgresql:// URL');
  const [, userinfo, hostspec, db, query] = m;
  const decode = (v) => decodeURIComponent(v.replace(/\+/g, ' '));
  const params = {};
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (user) params.user = decode(user);
    if (colon >= 0 && userinfo.length > colon + 1) params.password = decode(userinfo.slice(colon + 1));
  }
  if (hostspec) {
    const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostspec.split(',')[0]);
    if (hp && hp[1]) params.host = decode(hp[1].replace(/^\[(.*)\]$/, '$1'));
    if (hp && hp[2]) params.port = hp[2];
  }
  if (db) params.dbname = decode(db);
  for (const pair of (query || '').split('&').filter(Boolean)) {
    const eq = pair.indexOf('=');
    params[decode(eq < 0 ? pair : pair.slice(0, eq))] = eq < 0 ? '' : decode(pair.slice(eq + 1));
  }
  return params;
}

function parseKeyValue(text) {
  const params = {};
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i])) i += 1;
  };
  while (true) {
    skipSpace();
    if (i >= text.length) break;
    let key = '';
    while (i < text.length && text[i] !== '=' && !/\s/.test(text[i])) key += text[i++];
    skipSpace();
    if (text[i] !== '=') throw new Error(`conninfo: "=" expected after ${JSON.stringify(key)}`);
    i += 1;
    skipSpace();
    let value = '';
    if (text[i] === "'") {
      i += 1;
      while (i < text.length && text[i] !== "'") {
        if (text[i] === '\\' && i + 1 < text.length) i += 1;
        value += text[i++];
      }
      if (text[i] !== "'") throw new Error('conninfo: unterminated quoted value');
      i += 1;
    } else {
      while (i < text.length && !/\s/.test(text[i])) {
        if (text[i] === '\\' && i + 1 < text.length) i += 1;
        value += text[i++];
      }
    }
    params[key] = value;
  }
  return params;
}

/** key=value text of the parameters (values quoted as libpq wants). */
function format(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => {
      const s = String(v);
      return /^[^\s'\\]+$/.test(s) ? `${k}=${s}` : `${k}='${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;
    })
    .join(' ');
}

/** The same connection string with some parameters replaced (e.g. {dbname, user}), as key=value text. */
function withParams(conninfo, changes) {
  return format({ ...parse(conninfo), ...changes });
}

/** A node-postgres client config for a connection string (a host starting with "/" is a
 * Unix socket directory, as in libpq). */
function pgConfig(conninfo) {
  const p = typeof conninfo === 'string' ? parse(conninfo) : conninfo;
  const config = {};
  if (p.host) config.host = p.host.split(',')[0];
  if (p.port) config.port = Number(p.port.split(',')[0]);
  if (p.user) config.user = p.user;
  if (p.password) config.password = p.password;
  if (p.dbname) config.database = p.dbname;
  if (p.application_name) config.application_name = p.application_name;
  if (p.connect_timeout) config.connectionTimeoutMillis = Number(p.connect_timeout) * 1000;
  if (p.sslmode && !['disable', 'allow', 'prefer'].includes(p.sslmode)) {
    config.ssl = p.sslmode === 'require' ? { rejectUnauthorized: false } : true;
  }
  if (p.options) config.options = p.options;
  return config;
}

module.exports = { parse, format, withParams, pgConfig };
