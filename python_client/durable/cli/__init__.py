"""The ``durable`` command: a thin terminal front end of the SQL verbs.

Every query it makes is a ``durable.*`` verb any client may call; the command only
renders what they return (Rich tables, or ``--json``) and turns errors into one line that
names the problem and the fix (``--debug`` shows the traceback). Its modules:

* :mod:`.app`: the Typer application, global options, ``main``;
* :mod:`.context`: the database the command uses, the client, friendly errors;
* :mod:`.render`: tables, the task view and its event timeline;
* :mod:`.tasks`, :mod:`.queues`, :mod:`.server`, :mod:`.run`, :mod:`.dashboard`: the commands.
"""

from __future__ import annotations

from .app import app, main
from .run import load_worker

__all__ = ["app", "load_worker", "main"]
