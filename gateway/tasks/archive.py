"""ResultStore implementations: the local data directory and S3-compatible
object storage. Objects are `{prefix}{tenant}/{task id}.json`, each a task
record with its result."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway import s3
from gateway.tasks.config import ArchiveConfig
from gateway.tasks.errors import QueueUnavailable
from gateway.tasks.model import Task
from gateway.tasks.queue import ResultStore

# Tenant names and ids become path segments: keep them from escaping the prefix.
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _name(tenant: str, task_id: str) -> str:
    return f"{_SAFE.sub('_', tenant)}/{_SAFE.sub('_', task_id)}.json"


def build_archive(config: ArchiveConfig, data_dir: Path) -> ResultStore:
    if config.backend == "s3":
        return S3ResultStore(config)
    return LocalResultStore(data_dir / "tasks" / "results")


class LocalResultStore:
    """Files under a directory, each written whole (temp file + rename), so a
    reader never sees half a result."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, task: Task) -> str:
        return await asyncio.to_thread(self._put, task)

    def _put(self, task: Task) -> str:
        path = (self.root / _name(task.tenant, task.id)).resolve()
        uri = path.as_uri()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
            f.write(replace(task, result_uri=uri).to_json())
        os.replace(f.name, path)
        return uri

    async def get(self, tenant: str, task_id: str) -> Task | None:
        path = self.root / _name(tenant, task_id)
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return Task.from_json(raw)

    async def aclose(self) -> None:
        return None


class S3ResultStore:
    """An S3 bucket (AWS, MinIO, moto...). boto3 is synchronous: calls run in
    threads. Errors reaching the server raise QueueUnavailable."""

    def __init__(self, config: ArchiveConfig) -> None:
        self._bucket = config.bucket
        self._prefix = config.prefix
        self._client: Any = s3.client(config.endpoint_url, config.region)

    def _key(self, tenant: str, task_id: str) -> str:
        return self._prefix + _name(tenant, task_id)

    async def put(self, task: Task) -> str:
        key = self._key(task.tenant, task.id)
        uri = f"s3://{self._bucket}/{key}"
        await self._call(
            self._client.put_object,
            Bucket=self._bucket,
            Key=key,
            Body=replace(task, result_uri=uri).to_json(),
            ContentType="application/json",
        )
        return uri

    async def get(self, tenant: str, task_id: str) -> Task | None:
        from botocore.exceptions import ClientError

        try:
            reply = await self._call(
                self._client.get_object, Bucket=self._bucket, Key=self._key(tenant, task_id)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise QueueUnavailable(f"result archive: {exc}") from exc
        body = await asyncio.to_thread(reply["Body"].read)
        return Task.from_json(body)

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(method, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise
            raise QueueUnavailable(f"result archive: {exc}") from exc
        except BotoCoreError as exc:
            raise QueueUnavailable(f"result archive: {exc}") from exc

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)
