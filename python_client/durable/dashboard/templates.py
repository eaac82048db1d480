"""The Jinja2 environment of the dashboard's templates (``templates/``), autoescaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"


def age(seconds: float | None) -> str:
    """A duration for people: 45 ms, 2.4 s, 12 s, 3 m 20 s, 2 h 5 m, 3 d 4 h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s" if seconds % 1 else f"{seconds:.0f} s"
    s = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size} {unit} {(s % size) // sub_size} {sub}"
    return f"{s} s"


def when(value: Any) -> str:
    """A time as UTC, to the second."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def since(start: Any, end: Any) -> str:
    """The time between two times (ISO strings or datetimes), or '-'."""
    if start is None or end is None:
        return "-"
    a = datetime.fromisoformat(start) if isinstance(start, str) else start
    b = datetime.fromisoformat(end) if isinstance(end, str) else end
    return age((b - a).total_seconds())


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=age, when=when, pretty=pretty)
    env.globals.update(since=since)
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
