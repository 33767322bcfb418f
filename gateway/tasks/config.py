"""The `tasks:` section of the config file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.tasks.states import RetryPolicy
from router.config import Frozen

# How much longer than its attempt a worker may hold a task's message, at most:
# the wait in the worker's inbox (a poll, under a second; up to the --grace,
# 30 s by default, for one that arrived as the worker was told to stop), then
# writing the usage records, the result and the archive copy (the clients'
# timeouts: Redis 5 s a try, S3 60 s). The broker must not take it back sooner.
BROKER_MARGIN_S = 120.0


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


class RabbitMQConfig(Frozen):
    """The broker of `backend: rabbitmq`: it carries the work; the task state
    stays in Redis (`redis_url`, `key_prefix`)."""

    url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        pattern=r"^amqps?://",
        description="amqp:// or amqps://, with the virtual host as the path",
    )
    queue: str = Field(
        default="infergate.tasks",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="the work queue; also {queue}.dead, {queue}.retry.{ms}ms, {queue}.dead-letter",
    )
    prefetch: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="unacknowledged tasks per worker process (at most its concurrency); "
        "0: as many as it runs at once",
    )
    consumer_timeout_s: float = Field(
        default=1800,
        gt=0,
        description="the broker's consumer_timeout (rabbitmq.conf, 30 min by default): "
        "it closes the channel of a delivery held longer: task_timeout_s + 120 s must stay below",
    )

    @field_validator("queue")
    @classmethod
    def _not_the_brokers(cls, queue: str) -> str:
        if queue.startswith("amq."):
            raise ValueError("amq.* names are reserved by the broker")
        return queue


class TasksConfig(Frozen):
    backend: Literal["memory", "redis", "rabbitmq"] = Field(
        default="memory",
        description="memory: in the gateway process; redis or rabbitmq: shared by workers",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis: the work and the state; rabbitmq: the state (records, results)",
    )
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
        description="tasks the gateway runs at once itself (default: 4 with memory, else 0)",
    )
    rabbitmq: RabbitMQConfig = RabbitMQConfig()
    archive: ArchiveConfig = ArchiveConfig()

    @model_validator(mode="after")
    def _memory_needs_workers(self) -> TasksConfig:
        if self.backend == "memory" and self.in_process_workers == 0:
            raise ValueError("in_process_workers must be >= 1 with backend: memory")
        return self

    @model_validator(mode="after")
    def _attempts_fit_the_broker(self) -> TasksConfig:
        limit = self.rabbitmq.consumer_timeout_s
        if self.backend == "rabbitmq" and self.task_timeout_s + BROKER_MARGIN_S > limit:
            raise ValueError(
                f"task_timeout_s ({self.task_timeout_s:g}) + {BROKER_MARGIN_S:g} s must not "
                f"exceed rabbitmq.consumer_timeout_s ({limit:g}): the broker would take a task "
                "back from its worker while it runs or records its outcome (raise "
                "consumer_timeout in rabbitmq.conf, then here)"
            )
        return self

    @model_validator(mode="after")
    def _prefetch_fits_the_workers(self) -> TasksConfig:
        check_prefetch(self, self.concurrency)
        return self

    @property
    def concurrency(self) -> int:
        if self.in_process_workers is not None:
            return self.in_process_workers
        return 4 if self.backend == "memory" else 0

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base_s, self.backoff_max_s, self.jitter)


def check_prefetch(config: TasksConfig, concurrency: int) -> None:
    """A fixed prefetch above what a process runs at once would leave tasks
    waiting in its inbox, held from the other workers, their time counting
    towards the broker's consumer_timeout."""
    prefetch = config.rabbitmq.prefetch
    if config.backend == "rabbitmq" and concurrency and prefetch > concurrency:
        raise ValueError(
            f"rabbitmq.prefetch ({prefetch}) must not exceed the tasks a worker runs at once "
            f"({concurrency}); 0 follows it"
        )
