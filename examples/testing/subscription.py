"""A subscription workflow that lives for a month: the application the example test tests.

Welcome mail, a 10-day trial, a reminder, 10 days of grace, then up to 10 days for the
payment event; no payment: the subscription is cancelled.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durable import EventTimeout, Worker
from durable.workflow import DurableContext

worker = Worker(queue="subscriptions", concurrency=4)

#: what was "sent" (a stand-in for a mail service, so a test can look)
outbox: list[tuple[str, str]] = []


def send_email(user: str, subject: str) -> str:
    outbox.append((user, subject))
    return f"{subject} -> {user}"


@worker.durable_task
async def subscription(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
    user = input["user"]
    await ctx.step("welcome", send_email, user, "welcome")
    await ctx.sleep(timedelta(days=10), name="trial")
    await ctx.step("reminder", send_email, user, "your trial ends in 10 days")
    await ctx.sleep(timedelta(days=10), name="grace")
    try:
        payment = await ctx.wait_for_event(f"paid:{user}", timeout=timedelta(days=10))
    except EventTimeout:
        await ctx.step("cancel", send_email, user, "subscription cancelled")
        return {"status": "cancelled", "at": (await ctx.now()).isoformat()}
    await ctx.step("activate", send_email, user, f"welcome to {payment['plan']}")
    return {"status": "active", "plan": payment["plan"]}
