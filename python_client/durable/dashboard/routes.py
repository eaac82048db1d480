"""The dashboard's pages (GET, read with the reader connection) and actions (POST, with the
operator connection, each behind a confirmation and the CSRF token)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from durable import Client
from durable.errors import DurableError

from .auth import Csrf
from .charts import HEIGHT, WIDTH, per_minute_bars
from .queries import PAGE_SIZE, Reads
from .templates import render

STATUSES = ("pending", "running", "sleeping", "waiting", "completed", "failed", "cancelled")
FILTERS = ("queue", "status", "task_name", "idempotency_key", "parent")


class Pages:
    """The handlers, bound to the reads, the operator client, the CSRF secret and /metrics."""

    def __init__(self, reads: Reads, operator: Client, csrf: Csrf, registry: CollectorRegistry) -> None:
        self.reads = reads
        self.operator = operator
        self.csrf = csrf
        self.registry = registry

    def routes(self) -> list[Route]:
        return [
            Route("/", self.queues),
            Route("/tasks", self.tasks),
            Route("/tasks/{task_id}", self.task),
            Route("/tasks/{task_id}/{action}", self.act, methods=["POST"]),
            Route("/events", self.emit, methods=["POST"]),
            Route("/workers", self.workers),
            Route("/metrics", self.metrics),
        ]

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.update(
            csrf=self.csrf.token,
            done=request.query_params.get("done"),
            error=request.query_params.get("error"),
        )
        return HTMLResponse(render(name, **context), status_code=status_code)

    # ------------------------------------------------------------------------- pages
    def queues(self, request: Request) -> HTMLResponse:
        rows = self.reads.metrics()
        charts = {r.queue: per_minute_bars(r.completed_per_minute, r.failed_per_minute) for r in rows}
        return self.page(request, "queues.html", rows=rows, charts=charts, width=WIDTH, height=HEIGHT)

    def tasks(self, request: Request) -> Response:
        params = request.query_params
        wanted = params.get("task_id", "").strip()
        if wanted:
            task_id = _uuid(wanted)
            if task_id is None:
                return self.page(
                    request,
                    "tasks.html",
                    400,
                    rows=[],
                    filters={},
                    statuses=STATUSES,
                    problem=f"not a task id: {wanted}",
                    next_page=None,
                    first_page=False,
                )
            return RedirectResponse(f"/tasks/{task_id}", status_code=303)
        filters = {k: params[k].strip() for k in FILTERS if params.get(k, "").strip()}
        problem = None
        if filters.get("status") not in (None, *STATUSES):
            problem = f"unknown status: {filters.pop('status')}"
        if "parent" in filters and _uuid(filters["parent"]) is None:
            problem = f"not a task id: {filters.pop('parent')}"
        before = _uuid(params.get("before", ""))
        try:
            rows = self.reads.tasks(before=before, **filters)
        except (DurableError, psycopg.Error) as exc:
            rows, problem = [], str(exc)
        next_page = None
        if len(rows) == PAGE_SIZE:
            next_page = "/tasks?" + urlencode({**filters, "before": str(rows[-1].task_id)})
        return self.page(
            request,
            "tasks.html",
            rows=rows,
            filters=filters,
            statuses=STATUSES,
            problem=problem,
            next_page=next_page,
            first_page=before is not None,
        )

    def task(self, request: Request) -> HTMLResponse:
        task_id = _uuid(request.path_params["task_id"])
        info = self.reads.task(task_id) if task_id else None
        if task_id is None or info is None:
            return self.page(request, "missing.html", 404, task_id=request.path_params["task_id"])
        children = self.reads.children(task_id) if info["children"] else []
        timeline = self.reads.timeline(task_id, bool(info["durable"]))
        return self.page(
            request,
            "task.html",
            t=info,
            children=children,
            timeline=timeline,
            finished=info["status"] in ("completed", "failed", "cancelled"),
        )

    def workers(self, request: Request) -> HTMLResponse:
        return self.page(request, "workers.html", rows=self.reads.workers())

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------- actions
    async def act(self, request: Request) -> Response:
        form = await _form(request)
        if not self.csrf.valid(form.get("csrf")):
            return Response("403: a form of this dashboard is needed (CSRF token)", status_code=403)
        task_id = _uuid(request.path_params["task_id"])
        action = request.path_params["action"]
        if task_id is None or action not in ("retry", "replay", "cancel", "fork"):
            return Response("404: no such action", status_code=404)
        return await run_in_threadpool(self._act, task_id, action, form)

    def _act(self, task_id: uuid.UUID, action: str, form: dict[str, str]) -> Response:
        back = f"/tasks/{task_id}"
        try:
            if action == "retry":
                self.operator.retry(task_id)
                done = "retried"
            elif action == "replay":
                done = f"replayed (generation {self.operator.replay(task_id)})"
            elif action == "cancel":
                cancelled = self.operator.cancel(task_id, "cancelled from the dashboard")
                done = "cancelled" if cancelled else "was already cancelled"
            else:
                seq = int(form.get("seq", ""))
                fork = self.operator.fork(task_id, seq)
                note = urlencode({"done": f"forked from {task_id} at event {seq}"})
                return RedirectResponse(f"/tasks/{fork}?{note}", 303)
        except (DurableError, psycopg.Error, ValueError) as exc:
            return RedirectResponse(back + "?" + urlencode({"error": f"{action}: {exc}"}), 303)
        return RedirectResponse(back + "?" + urlencode({"done": done}), 303)

    async def emit(self, request: Request) -> Response:
        form = await _form(request)
        if not self.csrf.valid(form.get("csrf")):
            return Response("403: a form of this dashboard is needed (CSRF token)", status_code=403)
        return await run_in_threadpool(self._emit, form)

    def _emit(self, form: dict[str, str]) -> Response:
        queue, key = form.get("queue", ""), form.get("key", "")
        back = form.get("back", "/") if form.get("back", "/").startswith("/tasks/") else "/"
        try:
            text = form.get("payload", "").strip()
            payload = json.loads(text) if text else None
            woke = self.operator.emit_event(queue, key, payload)
        except (DurableError, psycopg.Error, ValueError) as exc:
            return RedirectResponse(back + "?" + urlencode({"error": f"emit: {exc}"}), 303)
        note = urlencode({"done": f"emitted {key} in {queue}: {woke} woke"})
        return RedirectResponse(f"{back}?{note}", 303)


async def _form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (the dashboard's forms send nothing else)."""
    body = await request.body()
    if len(body) > 1_000_000:
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except (ValueError, AttributeError):
        return None
