#!/usr/bin/env python3
"""Static checks of the functions in schema ``durable``, on a scratch database.

Creates a scratch database on the server, migrates it, installs the ``plpgsql_check``
extension, and then:

* runs ``plpgsql_check_function_tb`` over every PL/pgSQL function of schema ``durable``
  (trigger functions with the table their trigger is on, ``durable.tasks`` when none),
  with every optional class of warning switched on;
* checks that every function of schema ``durable`` (any language) has a COMMENT and
  pins its ``search_path`` (``SET search_path = ...`` in ``pg_proc.proconfig``).

It prints every finding and exits 1 when there is any, 0 when there is none, 2 when it
cannot run (no server, no plpgsql_check). The scratch database is dropped at the end.

Which findings fail, and why: all of them. plpgsql_check has five classes of finding
and this script turns every one on and accepts none:

* ``error``: the function cannot work as written (unknown column, wrong arity, ...).
* ``warning``: almost always a bug (a dead branch, a variable that shadows a column, a
  function that can end without RETURN).
* ``warning extra``: unused variables and parameters, variables never assigned. Cheap to
  fix in a code base this size, and an unused parameter in a public verb usually means
  an option that silently does nothing.
* ``performance``: hidden casts ("target type is different type than source type") and
  volatility mismatches. These sit on the hot paths (enqueue, claim, complete); a cast
  can also keep an index from being used. Fix the types, do not silence the check.
* ``security``: SQL injection through dynamic SQL; always worth a look.
* ``compatibility`` is on too: it is silent on this code and should stay so.

A finding that really is a false positive is silenced in the function itself, next to
the code it is about (plpgsql_check's in-code pragmas), never by loosening this script.

Usage: scripts/plpgsql_check.py [URL]   (default: $DATABASE_URL, else the local
PostgreSQL 15 at postgresql://postgres@127.0.0.1:5432/postgres). The server needs the
plpgsql_check extension (Debian: postgresql-15-plpgsql-check).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from durable.migrate import migrate

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SCHEMA = "durable"
# trigger functions that no trigger uses yet are checked as if on this table
DEFAULT_TRIGGER_TABLE = "durable.tasks"

# every PL/pgSQL function of the schema, with the table of (one of) its triggers
PLPGSQL_FUNCTIONS = """
select p.oid,
       p.oid::regprocedure::text as signature,
       p.prorettype = 'pg_catalog.trigger'::regtype as is_trigger,
       (select min(tg.tgrelid::regclass::text) from pg_catalog.pg_trigger tg where tg.tgfoid = p.oid)
           as trigger_table,
       -- the transition tables of its statement-level trigger, if any
       (select min(tg.tgoldtable) from pg_catalog.pg_trigger tg where tg.tgfoid = p.oid) as old_table,
       (select min(tg.tgnewtable) from pg_catalog.pg_trigger tg where tg.tgfoid = p.oid) as new_table
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
join pg_catalog.pg_language l on l.oid = p.prolang
where n.nspname = %(schema)s and l.lanname = 'plpgsql'
order by signature
"""

CHECK_FUNCTION = """
select level, sqlstate, lineno, statement, message, detail, hint, query, position, context
from plpgsql_check_function_tb(
    %(oid)s::regprocedure,
    relid => %(relid)s::regclass,
    oldtable => %(old_table)s,
    newtable => %(new_table)s,
    fatal_errors => false,
    other_warnings => true,
    extra_warnings => true,
    performance_warnings => true,
    security_warnings => true,
    compatibility_warnings => true
)
"""

# every function and procedure of the schema (any language), with what it lacks
UNDOCUMENTED_OR_UNPINNED = """
select p.oid::regprocedure::text as signature,
       obj_description(p.oid, 'pg_proc') is null
           or btrim(obj_description(p.oid, 'pg_proc')) = '' as no_comment,
       not exists (
           select 1 from unnest(coalesce(p.proconfig, '{}')) as c (setting)
           where c.setting = 'search_path=pg_catalog, durable, pg_temp'
       ) as no_search_path
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname = %(schema)s
order by signature
"""


def _format_finding(signature: str, row: dict[str, Any]) -> str:
    where = f"line {row['lineno']}" if row["lineno"] is not None else "function"
    if row["statement"]:
        where += f" ({row['statement']})"
    lines = [f"{signature}: {row['level']}: {where}: {row['message']} [{row['sqlstate']}]"]
    for key in ("detail", "hint", "context"):
        if row[key]:
            lines.append(f"    {key}: {row[key]}")
    if row["query"]:
        query = " ".join(str(row["query"]).split())
        lines.append(f"    query: {query}")
    return "\n".join(lines)


def check(url: str) -> list[str]:
    """Every finding on the migrated database at ``url``, as printable text."""
    findings: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        conn.execute("create extension if not exists plpgsql_check")
        functions = conn.execute(PLPGSQL_FUNCTIONS, {"schema": SCHEMA}).fetchall()
        if not functions:
            findings.append(f"schema {SCHEMA} has no PL/pgSQL function: did the migration run?")
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            for oid, signature, is_trigger, trigger_table, old_table, new_table in functions:
                relid = (trigger_table or DEFAULT_TRIGGER_TABLE) if is_trigger else 0
                # regclass of 0 is "no relation"; pass it as text the cast understands
                cur.execute(
                    CHECK_FUNCTION,
                    {"oid": oid, "relid": str(relid), "old_table": old_table, "new_table": new_table},
                )
                findings.extend(_format_finding(signature, row) for row in cur.fetchall())
        print(f"plpgsql_check: checked {len(functions)} PL/pgSQL functions of schema {SCHEMA}")

        rows = conn.execute(UNDOCUMENTED_OR_UNPINNED, {"schema": SCHEMA}).fetchall()
        for signature, no_comment, no_search_path in rows:
            if no_comment:
                findings.append(f"{signature}: no COMMENT ON FUNCTION (every function is documented)")
            if no_search_path:
                findings.append(
                    f"{signature}: no SET search_path (every function pins it: "
                    "set search_path = pg_catalog, durable, pg_temp)"
                )
        print(f"plpgsql_check: checked comments and search_path of {len(rows)} functions of schema {SCHEMA}")
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("DURABLE_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_URL,
        help="a server with the plpgsql_check extension (default: $DATABASE_URL or %(default)s)",
    )
    args = parser.parse_args(argv)
    name = f"durable_plpgsql_check_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(args.url, autocommit=True)
    except psycopg.Error as exc:
        print(f"plpgsql_check: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 2
    with admin:
        available = admin.execute(
            "select count(*) from pg_catalog.pg_available_extensions where name = 'plpgsql_check'"
        ).fetchone()
        if not available or not available[0]:
            version = admin.execute("show server_version").fetchone()
            print(
                f"plpgsql_check: the server (PostgreSQL {version[0] if version else '?'}) has no "
                "plpgsql_check extension; install postgresql-NN-plpgsql-check",
                file=sys.stderr,
            )
            return 2
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        try:
            url = make_conninfo(args.url, dbname=name)
            migrate(url)
            findings = check(url)
        finally:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    for finding in findings:
        print(finding)
    if findings:
        print(f"plpgsql_check: {len(findings)} finding(s)", file=sys.stderr)
        return 1
    print("plpgsql_check: no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
