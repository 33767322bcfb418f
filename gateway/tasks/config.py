"""The `tasks:` section of the config file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.tasks.states import RetryPolicy
from router.config import Frozen


class ArchiveConfig(Frozen):
    """Where finished tasks and their results go to outlive the hot store.
    S3 credentials come from the usual AWS chain (environment, ~/.aws)."""

    backend: Literal["local", "s3"] = "local"
    bucket: str = ""
    endpoint_url: str | None = Field(default=None, description="an S3-compatible server")
    region: str = "us-east-1"
    prefix: str = "tasks/"

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> ArchiveConfig:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("bucket is required with backend: s3")
        return self


class TasksConfig(Frozen):
    backend: Literal["memory", "redis"] = Field(
        default="memory", description="memory: in the gateway process; redis: shared by workers"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "infergate:tasks:"
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    jitter: float = Field(
        default=0.5, ge=0, le=1, description="share of a delay taken off at random"
    )
    visibility_timeout_s: float = Field(
        default=60, gt=0, description="a silent worker's task is taken over after this"
    )
    task_timeout_s: float = Field(default=600, gt=0, description="one attempt's limit")
    ttl_s: float = Field(
        default=7 * 86400, gt=0, description="records and results in the hot store"
    )
    max_payload_bytes: int = Field(default=1 << 20, ge=1024)
    in_process_workers: int | None = Field(
        default=None,
        ge=0,
        description="tasks the gateway runs at once itself (default: 4 with memory, 0 with redis)",
    )
    archive: ArchiveConfig = ArchiveConfig()

    @model_validator(mode="after")
    def _memory_needs_workers(self) -> TasksConfig:
        if self.backend == "memory" and self.in_process_workers == 0:
            raise ValueError("in_process_workers must be >= 1 with backend: memory")
        return self

    @property
    def concurrency(self) -> int:
        if self.in_process_workers is not None:
            return self.in_process_workers
        return 4 if self.backend == "memory" else 0

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base_s, self.backoff_max_s, self.jitter)
