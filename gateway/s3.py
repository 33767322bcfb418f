"""One S3 client recipe for what the gateway keeps in object storage (task
results, dataset snapshots): AWS or any S3-compatible server (MinIO, moto).
Credentials come from the usual AWS chain (environment, ~/.aws)."""

from __future__ import annotations

from typing import Any


def client(endpoint_url: str | None, region: str) -> Any:
    """A boto3 S3 client (synchronous: call it from a thread)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
    )
