"""Apply the schema: roles, versioned migrations, then the PL/pgSQL functions.

``migrations/NNNN_name.sql`` run once each, in order, and are recorded with a checksum in
``durable.schema_migrations``; editing one that already ran is an error.
``plpgsql/*.sql`` (functions and triggers, all ``CREATE OR REPLACE``) are re-applied
whenever their combined checksum changes, and every function of the schema they no longer
define (an old signature) is dropped. Everything after the roles runs in one
transaction under a transaction-level advisory lock: concurrent migrations wait for each
other, a failed one leaves nothing behind, and no lock outlives its transaction (so
migrating through a transaction-pooling PgBouncer cannot leave one held). Running twice
changes nothing.

Roles (see the README, "Security"): the schema and everything in it belong to the NOLOGIN
role ``durable_owner``; the group roles ``durable_worker``, ``durable_producer``,
``durable_operator`` and ``durable_reader`` are what a deployment grants its login roles.
The migrating role creates them when it may (a superuser, or CREATEROLE as on managed
PostgreSQL), makes itself a member of ``durable_owner`` and creates the objects as that
role. Otherwise :class:`MigrationError` says exactly which statements an administrator
must run first (:func:`role_statements`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql

from .connections import connection_kwargs
from .errors import MigrationError

# pg_advisory_lock key: the bytes "durable!" as a big-endian int64
_LOCK_KEY = int.from_bytes(b"durable!", "big", signed=True)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_PLPGSQL_VERSION = "plpgsql"


@dataclass(frozen=True)
class SqlFile:
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass
class MigrationResult:
    applied: list[str] = field(default_factory=list)
    functions_reloaded: bool = False


def sql_root() -> Path:
    """Where ``migrations/`` and ``plpgsql/`` are: inside the wheel, or the source tree."""
    packaged = Path(str(resources.files("durable"))) / "_sql"
    if (packaged / "migrations").is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2]
    if (source / "migrations").is_dir():
        return source
    raise MigrationError("cannot find the migrations/ and plpgsql/ folders of the durable package")


def _read(folder: Path) -> list[SqlFile]:
    return [SqlFile(p.name, p.read_text()) for p in sorted(folder.glob("*.sql"))]


def migration_files(root: Path | None = None) -> list[SqlFile]:
    files = _read((root or sql_root()) / "migrations")
    for f in files:
        if not _MIGRATION_NAME.match(f.name):
            raise MigrationError(f"migration file name {f.name!r} is not NNNN_name.sql")
    return files


def function_files(root: Path | None = None) -> list[SqlFile]:
    return _read((root or sql_root()) / "plpgsql")


def functions_checksum(files: list[SqlFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.text.encode() + b"\0")
    return digest.hexdigest()


OWNER_ROLE = "durable_owner"
GROUP_ROLES = ("durable_worker", "durable_producer", "durable_operator", "durable_reader")
# group roles that include durable_reader (they read the tasks they make or steer)
_READER_MEMBERS = ("durable_producer", "durable_operator")


def role_statements(migrating_role: str, missing: list[str] | None = None) -> list[str]:
    """The statements an administrator runs so that ``migrating_role`` can migrate."""
    ident = psycopg.sql.Identifier(migrating_role).as_string(None)
    roles = (OWNER_ROLE, *GROUP_ROLES) if missing is None else missing
    statements = [f"create role {name} nologin;" for name in roles]
    statements += [f"grant durable_reader to {member};" for member in _READER_MEMBERS]
    statements.append(f"grant {OWNER_ROLE} to {ident};")
    return statements


def migrate(
    conninfo: str | psycopg.Connection[Any], root: Path | None = None, *, test_clock: bool | None = None
) -> MigrationResult:
    """Bring the database up to date. Safe to call from several processes at once.

    ``test_clock``: True marks the database as a test database, whose
    ``durable.current_time()`` honours a session's ``durable.fake_now``; False unmarks it;
    None leaves it as it is (a new database is not a test database).
    """
    if isinstance(conninfo, str):
        with psycopg.connect(conninfo, **connection_kwargs()) as conn:
            return _migrate(conn, root, test_clock)
    if not conninfo.autocommit:
        raise MigrationError("migrate() needs a connection in autocommit mode")
    return _migrate(conninfo, root, test_clock)


def _ensure_roles(conn: psycopg.Connection[Any]) -> None:
    """Creates the owner and group roles that are missing, when the migrating role may."""
    wanted = [OWNER_ROLE, *GROUP_ROLES]
    rows = conn.execute("select rolname from pg_roles where rolname = any(%s)", (wanted,)).fetchall()
    missing = [name for name in wanted if name not in {r[0] for r in rows}]
    me, may_create = conn.execute(
        "select current_user, rolsuper or rolcreaterole from pg_roles where rolname = current_user"
    ).fetchone() or ("", False)
    if missing:
        if not may_create:
            raise MigrationError(
                f"the roles {', '.join(missing)} do not exist and {me} may not create them "
                "(it is neither a superuser nor CREATEROLE); an administrator must first run:\n  "
                + "\n  ".join(role_statements(me, missing))
            )
        for name in missing:
            try:
                with conn.transaction():
                    conn.execute(
                        psycopg.sql.SQL("create role {} nologin").format(psycopg.sql.Identifier(name))
                    )
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                pass  # another database of this cluster migrating at the same moment made it
    for member in _READER_MEMBERS:
        if not conn.execute("select pg_has_role(%s, 'durable_reader', 'member')", (member,)).fetchone()[0]:  # type: ignore[index]
            with conn.transaction():
                conn.execute(
                    psycopg.sql.SQL("grant durable_reader to {}").format(psycopg.sql.Identifier(member))
                )
    # PostgreSQL 16+ separates administering a role from using it: what migrate needs is the
    # right to SET ROLE to the owner (before 16 every member has it)
    right = "set" if conn.info.server_version >= 160000 else "member"
    if not conn.execute(f"select pg_has_role(current_user, %s, '{right}')", (OWNER_ROLE,)).fetchone()[0]:  # type: ignore[index]
        try:
            with conn.transaction():
                conn.execute(
                    psycopg.sql.SQL("grant {} to {}").format(
                        psycopg.sql.Identifier(OWNER_ROLE), psycopg.sql.Identifier(me)
                    )
                )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise MigrationError(
                f"{me} is not a member of {OWNER_ROLE} and may not make itself one ({exc}); "
                f"an administrator must first run:\n  grant {OWNER_ROLE} to "
                f"{psycopg.sql.Identifier(me).as_string(None)};"
            ) from exc


def _own_everything(conn: psycopg.Connection[Any]) -> None:
    """The schema and every object in it belong to the owner role (a database migrated
    before the roles existed has them owned by whoever migrated it)."""
    schema_owner = conn.execute(
        "select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'durable'"
    ).fetchone()
    if schema_owner is None:
        conn.execute(
            psycopg.sql.SQL("create schema durable authorization {}").format(
                psycopg.sql.Identifier(OWNER_ROLE)
            )
        )
        return
    statements = conn.execute(
        """
        select format('alter schema durable owner to %%I', %(owner)s::text)
        from pg_namespace n where n.nspname = 'durable' and pg_get_userbyid(n.nspowner) <> %(owner)s
        union all
        select format('alter table %%s owner to %%I', c.oid::regclass, %(owner)s::text)
        from pg_class c
        where c.relnamespace = 'durable'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
          and pg_get_userbyid(c.relowner) <> %(owner)s
        union all
        select format('alter routine %%s owner to %%I', p.oid::regprocedure, %(owner)s::text)
        from pg_proc p
        where p.pronamespace = 'durable'::regnamespace and pg_get_userbyid(p.proowner) <> %(owner)s
        """,
        {"owner": OWNER_ROLE},
    ).fetchall()
    for (statement,) in statements:
        conn.execute(statement.encode())


def _drop_obsolete_functions(conn: psycopg.Connection[Any]) -> None:
    """Drops the functions of schema durable that this transaction did not (re)create: the
    files create every function there is, so one they left alone is an old signature (an
    overload left behind would make calls that rely on defaults ambiguous). A function that
    something else still depends on stops the migration with PostgreSQL's error."""
    obsolete = conn.execute(
        # age() of a row this transaction wrote is 0 (negative for its subtransactions)
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'durable'::regnamespace and age(p.xmin) > 0 order by 1"
    ).fetchall()
    for (signature,) in obsolete:
        conn.execute(f"drop function {signature}".encode())


def _migrate(conn: psycopg.Connection[Any], root: Path | None, test_clock: bool | None) -> MigrationResult:
    result = MigrationResult()
    migrations = migration_files(root)
    functions = function_files(root)
    _ensure_roles(conn)
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("set local client_min_messages = warning")
        _own_everything(conn)
        # from here on every object is created by (and belongs to) the owner role
        conn.execute(psycopg.sql.SQL("set local role {}").format(psycopg.sql.Identifier(OWNER_ROLE)))
        conn.execute(
            """
            create table if not exists durable.schema_migrations (
                version text primary key,
                name text not null,
                checksum text not null,
                applied_at timestamptz not null default now()
            )
            """
        )
        rows = conn.execute("select version, name, checksum from durable.schema_migrations").fetchall()
        recorded = {version: (name, checksum) for version, name, checksum in rows}
        for f in migrations:
            version = f.name[:4]
            if version in recorded:
                name, checksum = recorded[version]
                if checksum != f.checksum:
                    raise MigrationError(
                        f"migration {f.name} was edited after it was applied as {name} "
                        f"(checksum {checksum[:12]} in the database, {f.checksum[:12]} on disk); "
                        "add a new migration instead"
                    )
                continue
            conn.execute(f.text.encode())
            conn.execute(
                "insert into durable.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                (version, f.name, f.checksum),
            )
            result.applied.append(f.name)

        bundle = functions_checksum(functions)
        if result.applied or recorded.get(_PLPGSQL_VERSION, ("", ""))[1] != bundle:
            # bodies refer to each other; check them once all exist (as pg_dump does)
            conn.execute("set local check_function_bodies = off")
            for f in functions:
                conn.execute(f.text.encode())
            conn.execute("set local check_function_bodies = on")
            _drop_obsolete_functions(conn)
            conn.execute(
                """
                insert into durable.schema_migrations (version, name, checksum) values (%s, %s, %s)
                on conflict (version) do update set checksum = excluded.checksum, applied_at = now()
                """,
                (_PLPGSQL_VERSION, "plpgsql/*.sql", bundle),
            )
            result.functions_reloaded = True
        if test_clock is not None:
            conn.execute("update durable.settings set test_clock = %s", (test_clock,))
    return result
