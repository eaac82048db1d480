"""Where the tests' pgTAP comes from, and the check made before any test runs.

The template database of a test session gets pgTAP from, in order:

1. the server's extension (``CREATE EXTENSION pgtap``): a server of DATABASE_URL may have
   it; the embedded server and the Docker image the tests start have not;
2. a plain ``pgtap.sql``: ``DURABLE_PGTAP_SQL`` when set, else the newest
   ``*/extension/pgtap.sql`` under ``/usr/share/postgresql`` (the Debian package
   ``postgresql-NN-pgtap``; any NN does for any server). ``DURABLE_PGTAP_SHARE`` names
   another folder to look in than ``/usr/share/postgresql`` (the tests of this check use
   an empty one).

``missing()`` says, in one line, what to do when neither is there; scripts/test runs this
file before pytest (``python tests/pgtap_setup.py``: exit status 0 when the tests have a
pgTAP, else 1 and that line on stderr), and the conftest checks again once it has collected
tests that need it, so that a run stops at once instead of failing a hundred tests.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psycopg

DEFAULT_SHARE = "/usr/share/postgresql"
DEFAULT_PACKAGE = "postgresql-15-pgtap"


def _configured_url() -> str | None:
    # as durable.server.configured_url (this file also runs as a script, before the package
    # may be importable)
    for name in ("DURABLE_DATABASE_URL", "DATABASE_URL"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def share_dir() -> Path:
    return Path(os.environ.get("DURABLE_PGTAP_SHARE") or DEFAULT_SHARE)


def pgtap_sql_file() -> Path | None:
    """The plain pgtap.sql to load when the server has no pgTAP extension, if there is one."""
    explicit = os.environ.get("DURABLE_PGTAP_SQL")
    if explicit:
        path = Path(explicit)
        return path if path.is_file() else None

    def version(path: Path) -> tuple[int, str]:
        major = path.parent.parent.name
        return (int(major), major) if major.isdigit() else (-1, major)

    found = sorted(share_dir().glob("*/extension/pgtap.sql"), key=version)
    return found[-1] if found else None


def server_has_pgtap(url: str) -> bool | None:
    """Whether the server of ``url`` offers the pgtap extension (None: it did not answer)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("select count(*) from pg_available_extensions where name = 'pgtap'").fetchone()
    except psycopg.Error:
        return None
    return bool(row and row[0])


def missing(who: str, package: str = DEFAULT_PACKAGE) -> str | None:
    """None when the tests have a pgTAP; else one line, starting with ``who``, saying what to run.

    A server of DATABASE_URL that does not answer counts as having it: the tests will say
    what is wrong with it.
    """
    explicit = os.environ.get("DURABLE_PGTAP_SQL")
    if explicit and not Path(explicit).is_file():
        return f"{who}: pgTAP is missing: DURABLE_PGTAP_SQL={explicit} is not a file"
    if pgtap_sql_file() is not None:
        return None
    url = _configured_url()
    if url is not None and server_has_pgtap(url) is not False:
        return None
    server = "the server of DATABASE_URL" if url else "the embedded (or Docker) test server"
    return (
        f"{who}: pgTAP is missing (no pgtap extension on {server}, "
        f"no {share_dir()}/*/extension/pgtap.sql): "
        f"run `sudo apt-get install {package}` or set DURABLE_PGTAP_SQL=/path/to/pgtap.sql"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 when the tests have a pgTAP, else 1 (and why).")
    parser.add_argument("--who", default="scripts/test", help="the program named in the message")
    parser.add_argument("--package", default=DEFAULT_PACKAGE, help="the Debian package to suggest")
    parser.add_argument("--quiet", action="store_true", help="no message, the exit status only")
    args = parser.parse_args(argv)
    problem = missing(args.who, args.package)
    if problem is None:
        return 0
    if not args.quiet:
        print(problem, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
