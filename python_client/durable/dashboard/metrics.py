"""``/metrics``: a Prometheus collector that calls ``durable.queue_metrics`` on each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .queries import QueueMetrics


class QueueCollector(Collector):
    """Gauges per queue: tasks by status, the oldest pending age, tasks finished in the window."""

    def __init__(self, read: Callable[[], list[QueueMetrics]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        rows = self.read()
        tasks = GaugeMetricFamily(
            "durable_queue_tasks", "Unfinished tasks by status", labels=["queue", "status"]
        )
        oldest = GaugeMetricFamily(
            "durable_queue_oldest_pending_seconds",
            "How long the oldest ready pending task has waited (0: none)",
            labels=["queue"],
        )
        finished = GaugeMetricFamily(
            "durable_queue_finished_in_window",
            "Tasks that ended in the window (durable_queue_window_minutes) by outcome",
            labels=["queue", "outcome"],
        )
        last_minute = GaugeMetricFamily(
            "durable_queue_finished_last_minute",
            "Tasks that ended in the last whole minute by outcome",
            labels=["queue", "outcome"],
        )
        window = GaugeMetricFamily("durable_queue_window_minutes", "The window of the finished counts")
        limit = GaugeMetricFamily(
            "durable_queue_concurrency_limit", "The queue's concurrency_limit option", labels=["queue"]
        )
        for r in rows:
            for status in ("pending", "running", "sleeping", "waiting"):
                tasks.add_metric([r.queue, status], getattr(r, status))
            oldest.add_metric([r.queue], r.oldest_pending_seconds or 0.0)
            finished.add_metric([r.queue, "completed"], r.completed)
            finished.add_metric([r.queue, "failed"], r.failed)
            finished.add_metric([r.queue, "cancelled"], r.cancelled)
            whole = -2 if len(r.completed_per_minute) > 1 else -1
            last_minute.add_metric([r.queue, "completed"], r.completed_per_minute[whole])
            last_minute.add_metric([r.queue, "failed"], r.failed_per_minute[whole])
            if r.concurrency_limit is not None:
                limit.add_metric([r.queue], r.concurrency_limit)
        window.add_metric([], rows[0].window_minutes if rows else 0)
        yield from (tasks, oldest, finished, last_minute, window, limit)


def registry(read: Callable[[], list[QueueMetrics]]) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding the queue collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(QueueCollector(read))
    return reg
