#!/usr/bin/env python3
"""Writes the blocking ``Client`` from the asyncio one: one code path for both clients.

    python scripts/async_to_sync.py           # writes python_client/durable/sync_client.py
    python scripts/async_to_sync.py --check   # exits 1 when that file is not what it would write

The source is ``python_client/durable/aio_client.py``. Lines between ``# async:`` and
``# sync:`` are left out; the commented lines between ``# sync:`` and ``# end`` are
written without their comment mark; every other line is translated word by word
(``async def`` → ``def``, ``await`` dropped, ``AsyncClient`` → ``Client`` ...). The result
goes through ``ruff format``, so it reads like hand-written code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "python_client" / "durable" / "aio_client.py"
TARGET = ROOT / "python_client" / "durable" / "sync_client.py"

# word for word, in this order
WORDS = [
    ("  # noqa: ASYNC109", ""),
    ("# ruff: noqa: I001", ""),
    ("# the markers split the import block: isort is applied to the written Client instead", ""),
    ("AsyncClient", "Client"),
    ("AsyncConnectionPool", "ConnectionPool"),
    ("async def ", "def "),
    ("async with ", "with "),
    ("await ", ""),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("execute_async(", "execute("),
    ("asyncio.sleep(", "time.sleep("),
]

DOCSTRING = '''"""``Client``: enqueue, inspect, cancel and wait for tasks, blocking.

Written by ``scripts/async_to_sync.py`` from ``aio_client.py`` (the asyncio client): do
not edit it, edit that file and run the script. Each method builds a command of
:mod:`durable.commands` and runs it on a pooled autocommit connection.
"""
'''


def translate(source: str) -> str:
    out: list[str] = []
    mode = "both"
    lines = source.splitlines()
    # the module docstring is the generated file's own
    end_doc = next(i for i, line in enumerate(lines) if i > 0 and line.rstrip().endswith('"""'))
    out.extend(DOCSTRING.rstrip("\n").splitlines())
    for number, line in enumerate(lines[end_doc + 1 :], start=end_doc + 2):
        marker = line.strip()
        if marker == "# async:":
            if mode != "both":
                raise SystemExit(f"{SOURCE.name}:{number}: '# async:' inside a block")
            mode = "async"
            continue
        if marker == "# sync:":
            if mode != "async":
                raise SystemExit(f"{SOURCE.name}:{number}: '# sync:' without '# async:'")
            mode = "sync"
            continue
        if marker == "# end":
            if mode != "sync":
                raise SystemExit(f"{SOURCE.name}:{number}: '# end' without '# sync:'")
            mode = "both"
            continue
        if mode == "async":
            continue
        if mode == "sync":
            indent = line[: len(line) - len(line.lstrip())]
            rest = line.lstrip()
            if rest != "#" and not rest.startswith("# "):
                raise SystemExit(f"{SOURCE.name}:{number}: a sync line must be commented out")
            out.append(indent + rest[2:] if rest != "#" else "")
            continue
        for old, new in WORDS:
            line = line.replace(old, new)
        out.append(line)
    if mode != "both":
        raise SystemExit(f"{SOURCE.name}: a block is not closed with '# end'")
    return "\n".join(out) + "\n"


def ruff(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(TARGET), "-"],
        input=code,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def formatted(code: str) -> str:
    """The code with its imports sorted (ruff's isort rules) and formatted."""
    return ruff(ruff(code, "check", "--select", "I", "--fix", "--quiet"), "format")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is not up to date")
    args = parser.parse_args()
    code = formatted(translate(SOURCE.read_text()))
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != code:
            name = TARGET.relative_to(ROOT)
            print(f"{name} is out of date: run python scripts/async_to_sync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
