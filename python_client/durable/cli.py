"""The ``durable`` command.

    durable migrate                     bring the schema up to date
    durable worker MODULE:WORKER        run the Worker named WORKER in module MODULE
    durable task ID                     print a task and its attempts as JSON
    durable enqueue QUEUE NAME [INPUT]  enqueue a task (INPUT: a JSON object)
    durable stats QUEUE                 task counts by status
    durable demo                        a durable agent whose worker is killed mid-run, and resumes

The database is ``--database-url``, else ``DURABLE_DATABASE_URL``/``DATABASE_URL``, else an
embedded PostgreSQL kept in the user's data directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .client import Client
from .connections import resolve_dsn
from .errors import DurableError
from .migrate import migrate
from .worker import Worker


def _json_default(value: Any) -> Any:
    return str(value)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=_json_default))


def load_worker(target: str) -> Worker:
    """The Worker at ``module:attribute`` (an instance, or a callable returning one)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"durable worker: expected MODULE:WORKER, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise SystemExit(f"durable worker: {target} is not a durable.Worker")
    return obj


def _cmd_migrate(args: argparse.Namespace) -> int:
    result = migrate(resolve_dsn(None), test_clock=args.test_clock)
    applied = ", ".join(result.applied) or "none"
    print(f"migrations applied: {applied}; functions reloaded: {result.functions_reloaded}")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    worker = load_worker(args.target)
    worker.run()
    return 0


def _cmd_task(args: argparse.Namespace) -> int:
    with Client(min_size=1, max_size=1) as client:
        info = client.get_task(args.task_id)
    _print_json(dataclasses.asdict(info))
    return 0


def _cmd_enqueue(args: argparse.Namespace) -> int:
    payload = json.loads(args.input) if args.input else {}
    with Client(min_size=1, max_size=1) as client:
        if args.create_queue:
            client.ensure_queue(args.queue)
        task_id = client.enqueue(
            args.queue,
            args.task_name,
            payload,
            priority=args.priority,
            delay=args.delay,
            max_attempts=args.max_attempts,
            idempotency_key=args.idempotency_key,
        )
    print(task_id)
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    with Client(min_size=1, max_size=1) as client:
        _print_json(client.queue_stats(args.queue))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(resolve_dsn(None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="durable", description="Durable execution in PostgreSQL.")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (default: $DURABLE_DATABASE_URL, $DATABASE_URL)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    migrate_cmd = commands.add_parser(
        "migrate", help="bring the schema up to date (creates the roles when it may)"
    )
    migrate_cmd.add_argument(
        "--test-clock",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mark (or with --no-test-clock unmark) this database as a test database, whose clock "
        "a session may move with durable.fake_now; left as it is by default",
    )
    migrate_cmd.set_defaults(func=_cmd_migrate)

    worker = commands.add_parser("worker", help="run a worker defined in a module")
    worker.add_argument("target", metavar="MODULE:WORKER", help="e.g. myapp.tasks:worker")
    worker.set_defaults(func=_cmd_worker)

    task = commands.add_parser("task", help="print a task as JSON")
    task.add_argument("task_id", metavar="ID")
    task.set_defaults(func=_cmd_task)

    enqueue = commands.add_parser("enqueue", help="enqueue a task and print its id")
    enqueue.add_argument("queue")
    enqueue.add_argument("task_name")
    enqueue.add_argument("input", nargs="?", help="the input, a JSON object")
    enqueue.add_argument("--priority", type=int)
    enqueue.add_argument("--delay", type=float, help="seconds before it may run")
    enqueue.add_argument("--max-attempts", type=int)
    enqueue.add_argument("--idempotency-key")
    enqueue.add_argument("--create-queue", action="store_true", help="create the queue if it is missing")
    enqueue.set_defaults(func=_cmd_enqueue)

    stats = commands.add_parser("stats", help="task counts of a queue by status")
    stats.add_argument("queue")
    stats.set_defaults(func=_cmd_stats)

    commands.add_parser("demo", help="a durable workflow that survives kill -9 of its worker").set_defaults(
        func=_cmd_demo
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.database_url:
        # through the environment, so that worker modules building Worker(None) use it too
        os.environ["DURABLE_DATABASE_URL"] = args.database_url
    try:
        code: int = args.func(args)
    except DurableError as exc:
        print(f"durable: {exc}", file=sys.stderr)
        return 1
    return code
