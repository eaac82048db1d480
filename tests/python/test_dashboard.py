"""The dashboard in a real headless Chromium (Selenium): every page shows what the database
holds, and retry, fork and cancel go through the UI (click, confirm); /metrics parses; the
token rule (refused without one off loopback, 401 without it)."""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from importlib.machinery import ModuleSpec
from pathlib import Path

import psycopg
import pytest
from dashboard_support import Shop, browser, fill, make_worker, serving, wait_for_done, wait_for_page
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pyclient_support import ThreadedWorker, wait_until
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from durable import Client, Worker
from durable.cli import main
from durable.dashboard import queries, routes
from durable.dashboard.auth import check_bind, is_local

# the README's screenshot, written again only on request (DURABLE_UPDATE_SCREENSHOTS=1), so
# that a test run leaves the checkout as it was
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard-task.png"
UPDATE_SCREENSHOTS = os.environ.get("DURABLE_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture
def shop(db_url: str, worker_url: str, start_worker: Callable[[Worker], ThreadedWorker]) -> Shop:
    start_worker(make_worker(worker_url, "dash-worker"))
    with Client(db_url) as client:
        order, flaky, approval, letter = fill(client)
    return Shop(order, flaky, approval, letter, "dash-worker")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def confirm(driver: WebDriver) -> None:
    """Accepts the page's confirmation dialog."""
    driver.switch_to.alert.accept()


def listed(driver: WebDriver) -> list[str]:
    """The task ids of a tasks page."""
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "tr.task td:first-child")]


def test_every_page_and_the_actions_in_a_browser(
    shop: Shop, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(db_url) as base, browser() as driver, Client(db_url) as client:
        # queues: counts, running against the limit, the chart
        driver.get(base + "/")
        rows = {r.get_attribute("data-queue"): r for r in driver.find_elements(By.CSS_SELECTOR, "tr.queue")}
        assert set(rows) == {"mail", "shop"}
        assert rows["mail"].find_element(By.CSS_SELECTOR, ".pending-count").text == "1"
        assert rows["shop"].find_element(By.CSS_SELECTOR, ".running-count").text.endswith("/ 5")
        assert rows["shop"].find_element(By.CSS_SELECTOR, ".completed-count").text == "3"  # order, 2 notes
        assert rows["shop"].find_element(By.CSS_SELECTOR, ".failed-count").text == "1"
        assert rows["shop"].find_elements(By.CSS_SELECTOR, "svg.chart rect.completed")
        assert rows["shop"].find_elements(By.CSS_SELECTOR, "svg.chart rect.failed")
        driver.save_screenshot(str(tmp_path / "queues.png"))

        # tasks: every task, then filtered
        driver.get(base + "/tasks")
        assert len(driver.find_elements(By.CSS_SELECTOR, "tr.task")) == 6
        assert "<b>bob</b>" not in driver.page_source  # (the input is not listed, and escaped anyway)
        driver.save_screenshot(str(tmp_path / "tasks.png"))
        driver.get(base + "/tasks?status=failed")
        assert listed(driver) == [str(shop.flaky)]
        driver.get(base + "/tasks?queue=mail")
        assert listed(driver) == [str(shop.letter)]
        driver.get(base + "/tasks?idempotency_key=order-7")
        assert listed(driver) == [str(shop.order)]
        driver.get(base + "/tasks?task_name=notify")
        assert len(driver.find_elements(By.CSS_SELECTOR, "tr.task")) == 2
        driver.get(f"{base}/tasks?parent={shop.order}")
        assert len(driver.find_elements(By.CSS_SELECTOR, "tr.task")) == 2
        # pages (of 2 here): "older" walks every task once, newest first
        monkeypatch.setattr(queries, "PAGE_SIZE", 2)
        monkeypatch.setattr(routes, "PAGE_SIZE", 2)
        driver.get(base + "/tasks")
        seen = listed(driver)
        while driver.find_elements(By.ID, "next"):
            driver.find_element(By.ID, "next").click()
            seen += listed(driver)
        assert seen == [str(t.task_id) for t in client.list_tasks()]
        assert len(seen) == 6
        monkeypatch.undo()
        driver.get(base + "/tasks?task_id=nope")
        assert "not a task id: nope" in driver.page_source
        # search by id: straight to the task
        driver.get(base + "/tasks")
        driver.find_element(By.NAME, "task_id").send_keys(str(shop.approval))
        driver.find_element(By.CSS_SELECTOR, "#filters button").click()
        wait_for_page(driver, "waits for")
        assert driver.find_element(By.ID, "task-id").text == str(shop.approval)
        assert "the event approved" in driver.find_element(By.ID, "waiting-for").text
        driver.save_screenshot(str(tmp_path / "task-waiting.png"))

        # the order: attempts, the timeline, its children, the output in <details>
        driver.get(f"{base}/tasks/{shop.order}")
        assert driver.find_element(By.ID, "status").text == "completed"
        events = driver.find_elements(By.CSS_SELECTOR, "tr.event")
        names = [e.find_elements(By.TAG_NAME, "td")[4].text for e in events]
        assert names[:2] == ["reserve", "charge"] and names[-1] == "ship"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#children li.child")) == 2
        assert len(driver.find_elements(By.CSS_SELECTOR, "#attempts tr")) >= 2
        output = driver.find_element(By.ID, "output")
        assert "told buyer" not in output.text  # closed
        output.find_element(By.TAG_NAME, "summary").click()
        assert "told buyer" in output.text
        driver.save_screenshot(str(tmp_path / "task.png"))
        if UPDATE_SCREENSHOTS:
            driver.save_screenshot(str(DOCS_SCREENSHOT))

        # a child links back to its parent
        driver.find_element(By.CSS_SELECTOR, "#children li.child a").click()
        wait_for_page(driver, "parent")
        assert driver.find_element(By.ID, "parent").text == str(shop.order)

        # fork the order at event 2 (picked in the timeline), confirmed
        driver.get(f"{base}/tasks/{shop.order}")
        driver.find_element(By.CSS_SELECTOR, "button.fork-at[data-seq='2']").click()
        confirm(driver)
        wait_for_done(driver, "forked from")
        fork_id = driver.find_element(By.ID, "task-id").text
        fork = client.get_task(fork_id)
        assert str(fork.forked_from) == str(shop.order)
        assert fork.forked_at_seq == 2

        # retry the failed task, confirmed: it runs again and completes
        driver.get(f"{base}/tasks/{shop.flaky}")
        assert "card <declined>" in driver.find_element(By.ID, "task-error").text
        driver.save_screenshot(str(tmp_path / "task-failed.png"))
        driver.find_element(By.ID, "retry").click()
        confirm(driver)
        wait_for_done(driver, "retried")
        wait_until(lambda: client.get_task(shop.flaky).status == "completed", 30, "the retry to complete")

        # cancel the pending letter; dismissing the confirmation first does nothing
        driver.get(f"{base}/tasks/{shop.letter}")
        driver.find_element(By.ID, "cancel").click()
        driver.switch_to.alert.dismiss()
        assert client.get_task(shop.letter).status == "pending"
        driver.find_element(By.ID, "cancel").click()
        confirm(driver)
        wait_for_done(driver, "cancelled")
        assert client.get_task(shop.letter).status == "cancelled"

        # emit the event the approval waits for, from its page
        driver.get(f"{base}/tasks/{shop.approval}")
        driver.find_element(By.CSS_SELECTOR, "#emit input[name=payload]").send_keys('{"by": "ann"}')
        driver.find_element(By.CSS_SELECTOR, "#emit button").click()
        confirm(driver)
        wait_for_done(driver, "1 woke")
        assert client.wait(shop.approval, timeout=30) == {"by": "ann"}

        # workers: the in-process worker, alive, its slots
        driver.get(base + "/workers")
        cells = driver.find_element(By.CSS_SELECTOR, "tr.worker").find_elements(By.TAG_NAME, "td")
        assert cells[0].text == shop.worker and cells[1].text == "alive" and cells[3].text == "10"
        driver.save_screenshot(str(tmp_path / "workers.png"))

        # an unknown task
        driver.get(f"{base}/tasks/00000000-0000-0000-0000-000000000000")
        assert "No such task" in driver.page_source
        for name in ("queues", "tasks", "task", "workers"):
            assert (tmp_path / f"{name}.png").stat().st_size > 0


def test_metrics_are_prometheus_text(shop: Shop, db_url: str) -> None:
    with serving(db_url) as base:
        status, text = get(base + "/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("durable_queue_tasks", (("queue", "mail"), ("status", "pending")))] == 1
    assert samples[("durable_queue_tasks", (("queue", "shop"), ("status", "waiting")))] == 1
    assert samples[("durable_queue_finished_in_window", (("outcome", "completed"), ("queue", "shop")))] == 3
    assert samples[("durable_queue_finished_in_window", (("outcome", "failed"), ("queue", "shop")))] == 1
    assert samples[("durable_queue_concurrency_limit", (("queue", "shop"),))] == 5
    assert samples[("durable_queue_oldest_pending_seconds", (("queue", "mail"),))] > 0
    assert samples[("durable_queue_window_minutes", ())] == 15


def test_a_token_is_required_when_one_is_set(db_url: str) -> None:
    with serving(db_url, token="s3cret") as base:
        assert get(base + "/")[0] == 401
        assert get(base + "/metrics", {"Authorization": "Bearer nope"})[0] == 401
        assert get(base + "/metrics", {"Authorization": "Bearer s3cret"})[0] == 200
        basic = base64.b64encode(b"anyone:s3cret").decode()
        assert get(base + "/", {"Authorization": f"Basic {basic}"})[0] == 200
        wrong = base64.b64encode(b"anyone:s3cre").decode()
        assert get(base + "/", {"Authorization": f"Basic {wrong}"})[0] == 401


def test_actions_need_the_csrf_token(shop: Shop, db_url: str) -> None:
    with serving(db_url) as base, Client(db_url) as client:
        url = f"{base}/tasks/{shop.letter}/cancel"
        request = urllib.request.Request(url, data=b"csrf=guess", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        assert client.get_task(shop.letter).status == "pending"


@pytest.fixture
def reader_url(admin_url: str, db_url: str) -> Iterator[str]:
    """The test's database as a login role of its own granted durable_reader only."""
    role = f"durable_dash_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login in role durable_reader").format(sql.Identifier(role)))
    try:
        yield make_conninfo(admin_url, user=role)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def post_form(base: str, path: str, fields: dict[str, str]) -> tuple[int, str]:
    """Posts a form of the dashboard (with its CSRF token, read from a page); follows the redirect."""
    csrf = re.search(r'name="csrf" value="([^"]+)"', get(base + "/")[1])
    assert csrf is not None
    data = urllib.parse.urlencode({"csrf": csrf.group(1), **fields}).encode()
    with urllib.request.urlopen(urllib.request.Request(base + path, data=data), timeout=10) as response:
        return response.status, response.read().decode()


def test_a_reader_url_reads_every_page_and_only_the_operator_url_acts(
    shop: Shop, db_url: str, reader_url: str
) -> None:
    pages = ["/", "/tasks", f"/tasks/{shop.order}", f"/tasks/{shop.approval}", "/workers", "/metrics"]
    with serving(reader_url) as base, Client(db_url) as client:
        assert [get(base + page)[0] for page in pages] == [200] * len(pages)
        assert str(shop.order) in get(base + "/tasks")[1]
        # the actions of a read-only dashboard are refused, and say so
        status, html = post_form(base, f"/tasks/{shop.letter}/cancel", {})
        assert status == 200 and 'id="error"' in html and "cancel:" in html
        assert client.get_task(shop.letter).status == "pending"
    with serving(reader_url, operator_url=db_url) as base, Client(db_url) as client:
        status, html = post_form(base, f"/tasks/{shop.letter}/cancel", {})
        assert status == 200 and 'id="done"' in html
        assert client.get_task(shop.letter).status == "cancelled"


def test_a_bind_off_loopback_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    assert is_local("127.0.0.1") and is_local("::1") and is_local("localhost")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.5")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(ValueError, match="needs a token"):
        check_bind("0.0.0.0", None)
    monkeypatch.delenv("DURABLE_DASHBOARD_TOKEN", raising=False)
    assert main(["--database-url", db_url, "dashboard", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "needs a token" in capsys.readouterr().err


def test_without_the_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "starlette" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert main(["dashboard"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "durable: the dashboard needs starlette: pip install 'durable[dashboard]'"
