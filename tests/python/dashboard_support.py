"""Helpers of the dashboard tests: the app served by uvicorn in a thread, a headless Chromium,
and the tasks the pages show (run by a real in-process Worker)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from pyclient_support import wait_until
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from durable import Client, Worker
from durable.dashboard.app import create_app
from durable.errors import NonRetryableError
from durable.workflow import SyncDurableContext

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(database_url: str, token: str | None = None, operator_url: str | None = None) -> Iterator[str]:
    """The dashboard on a free port of 127.0.0.1, in a thread; yields its base URL."""
    port = free_port()
    app = create_app(database_url, operator_url, token=token)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "the dashboard to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def need_chromium() -> None:
    """Fails (in CI) or skips (elsewhere) when Chromium or its driver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        message = f"missing {', '.join(missing)}: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def browser() -> Iterator[webdriver.Chrome]:
    need_chromium()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1300"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Shop:
    """The tasks of the pages: ids by role."""

    order: uuid.UUID  # durable, completed: three steps, two children
    flaky: uuid.UUID  # durable, failed at its first attempt (a retry completes it)
    approval: uuid.UUID  # durable, waiting for the event "approved"
    letter: uuid.UUID  # plain, pending in queue "mail", which no worker serves
    worker: str


def make_worker(worker_url: str, name: str) -> Worker:
    worker = Worker(worker_url, "shop", poll_interval=0.1, name=name, heartbeat_interval=0.5)

    @worker.durable_task
    def order(input: dict[str, Any], ctx: SyncDurableContext) -> dict[str, Any]:
        total = ctx.step("reserve", lambda: {"items": input["items"]})
        ctx.step("charge", lambda: {"charged": len(total["items"]) * 5})
        notes = [ctx.spawn("notify", {"to": who}) for who in ("buyer", "seller")]
        sent = ctx.gather(*notes)
        ctx.step("ship", lambda: "shipped")
        return {"sent": sent}

    @worker.task
    def notify(input: dict[str, Any]) -> str:
        return f"told {input['to']}"

    @worker.durable_task
    def flaky(input: dict[str, Any], ctx: SyncDurableContext) -> str:
        ctx.step("try", lambda: "tried")
        if ctx.attempt == 1:
            raise NonRetryableError("card <declined>")
        return "fine"

    @worker.durable_task
    def approve(input: dict[str, Any], ctx: SyncDurableContext) -> Any:
        ctx.step("ask", lambda: "asked")
        return ctx.wait_for_event("approved")

    return worker


def fill(client: Client) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    client.create_queue("shop", concurrency_limit=5, backoff={"kind": "none"})
    client.create_queue("mail")
    items = {"items": ["tea", "cup"]}
    order = client.enqueue("shop", "order", items, durable=True, idempotency_key="order-7")
    flaky = client.enqueue("shop", "flaky", {}, durable=True)
    approval = client.enqueue("shop", "approve", {}, durable=True)
    letter = client.enqueue("mail", "letter", {"to": "<b>bob</b>"})
    wait_until(lambda: client.get_task(order).status == "completed", 60, "the order to complete")
    wait_until(lambda: client.get_task(flaky).status == "failed", 60, "flaky to fail")
    wait_until(lambda: client.get_task(approval).status == "waiting", 60, "the approval to wait")
    return order, flaky, approval, letter


def wait_for_page(driver: webdriver.Chrome, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in driver.page_source:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on {driver.current_url}")
        time.sleep(0.05)


def wait_for_done(driver: webdriver.Chrome, text: str, timeout: float = 10) -> None:
    """Until the page an action redirected to says it was done (its flash: base.html), which
    the page before it may not: a word such as "cancelled" is on every task page already."""
    deadline = time.monotonic() + timeout
    while not any(text in e.text for e in driver.find_elements(By.ID, "done")):
        if time.monotonic() > deadline:
            raise AssertionError(f"no flash saying {text!r} on {driver.current_url}")
        time.sleep(0.05)
