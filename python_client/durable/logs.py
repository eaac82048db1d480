"""Logging set-up for durable's processes: text lines or one JSON object per line.

::

    import durable.logs

    durable.logs.configure("INFO", "json")

:func:`configure` puts one handler on the root logger, writing to standard error, so the
task functions' own logs come out in the same format. In ``json`` each line is an object
with ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, then every field
the call passed with ``extra=`` (the worker's lines carry ``queue``, ``task_id``,
``task_name``, ``attempt``, ``outcome``, ``duration_ms``, ...), and ``exception`` when
there is one. Only the standard library's :mod:`logging` is used.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

#: the formats :func:`configure` knows
FORMATS: Final = ("text", "json")
#: the format of a text line
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: what every LogRecord has: anything else on a record came with ``extra=``
_RECORD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line: time, level, logger, message, the fields
    given with ``extra=`` (values JSON cannot hold are written as their ``str``), and the
    exception or stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs (so that a second call replaces it)."""


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name.isdigit():
        return int(name)
    levels = logging.getLevelNamesMapping()
    if name not in levels:
        raise ValueError(
            f"unknown log level {level!r}: one of {', '.join(sorted(levels, key=levels.__getitem__))}"
        )
    return levels[name]


def configure(
    level: str | int = "INFO", fmt: str = "text", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Log at ``level`` and above (a name such as ``"INFO"``, any case, or a number) to
    ``stream`` (standard error), as ``text`` lines or ``json`` objects, one per line.

    Sets the root logger's level and puts one handler on it; calling it again replaces the
    handler it put there (other handlers are left alone). Returns the handler.
    Raises ValueError for an unknown level or format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(FORMATS)}")
    number = _level(level)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    return handler
