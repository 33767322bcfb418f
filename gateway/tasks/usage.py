"""Usage records for the model calls that task handlers make.

An RPC's usage is recorded by the access interceptor; a task's Router calls
run later, in a worker, outside any RPC. Each call becomes one record with the
task's tenant, no app and no key, and `task:<type>` as its method, so that
QueryUsage totals include batch work. Only a worker given a recorder records:
the gateway's in-process workers use the App layer's, and `infergate worker`
opens the configured store for its own (see gateway/tasks/cli.py).
"""

from __future__ import annotations

import time

from gateway.apps.model import UsageRecord
from gateway.apps.usage import UsageRecorder
from gateway.tasks.handlers import ModelCall, UsageSink
from gateway.tasks.model import Task


def usage_sink(recorder: UsageRecorder | None) -> UsageSink | None:
    """A sink that queues a record per call on `recorder` (None: none records)."""
    if recorder is None:
        return None

    def record(task: Task, call: ModelCall) -> None:
        recorder.record(
            UsageRecord(
                int(time.time() * 1000), task.tenant, "", "", call.model, call.deployment,
                f"task:{task.type}", call.input_tokens, call.output_tokens, call.latency_ms,
                call.status,
            )
        )  # fmt: skip

    return record
