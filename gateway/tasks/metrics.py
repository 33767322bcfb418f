"""Task metrics (Prometheus). Under `serve --workers N` or several worker
processes each process counts its own; gauges say how they combine."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)

SUBMITTED = Counter("infergate_tasks_submitted", "Tasks accepted, by type", ["type"])
QUEUE_DEPTH = Gauge(
    "infergate_tasks_queue_depth", "Tasks waiting for a worker", multiprocess_mode="max"
)
IN_FLIGHT = Gauge(
    "infergate_tasks_in_flight",
    "Tasks running on this process's workers",
    multiprocess_mode="livesum",
)
RETRIES = Counter("infergate_tasks_retries", "Failed attempts scheduled to retry", ["type"])
DEAD_LETTERS = Counter("infergate_tasks_dead_letters", "Tasks that ran out of attempts", ["type"])
FINISHED = Counter(
    "infergate_tasks_finished", "Tasks finished, by type and state", ["type", "state"]
)
LATENCY = Histogram(
    "infergate_task_seconds", "Submit to finish, by type", ["type"], buckets=_BUCKETS
)
