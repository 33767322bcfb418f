"""`infergate dataset ingest`, run as a user runs it (a separate process,
through the public gRPC API with a key): folders and files, a progress bar,
failures listed with a non-zero exit, and an idempotent re-run."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc

from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import bearer, new_key, secure_top

ROOT = Path(__file__).resolve().parents[3]


async def ingest(*args: str, key: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "dataset", "ingest", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "INFERGATE_API_KEY": key},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_folder_is_ingested_with_progress_failures_listed_and_reruns_skip(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path
) -> None:
    top = {
        **secure_top(tmp_path / "data"),
        "dataset": {"snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)}},
    }
    gateway = await start_gateway(top=top)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        key = await new_key(channel, gateway, "acme", "developer")
        docs = tmp_path / "docs"
        (docs / "sub").mkdir(parents=True)
        (docs / "cats.md").write_text("# Cats\n\nCats sleep most of the day.\n")
        (docs / "sub" / "dogs.txt").write_text("Dogs bark at the mail carrier.\n")
        (docs / "photo.png").write_bytes(b"\x89PNG not a document")  # not parsed: left out
        (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
        args = (str(docs), str(tmp_path / "missing.md"), "--collection", "notes", "--create",
                "--address", gateway.address)  # fmt: skip

        code, out, err = await ingest(*args, key=key)
        assert code == 1, err
        assert "2 documents ingested into collections/notes (" in out
        assert "0 unchanged, skipped), 2 failed" in out
        assert "created collections/notes" in err
        assert "ingesting" in err and "B/s" in err  # the progress bar: bytes and rate
        assert f"failed: {docs / 'broken.pdf'}: INVALID_ARGUMENT" in err
        assert f"failed: {tmp_path / 'missing.md'}: no such file" in err
        assert "photo.png" not in out + err

        code, out, _ = await ingest(*args, key=key)  # again: nothing changed
        assert code == 1 and "2 documents ingested" in out and "2 unchanged, skipped" in out

        stub = dataset_pb2_grpc.DatasetStub(channel)
        found = await stub.Search(
            pb.SearchRequest(collection="collections/notes", text="dogs bark", k=1),
            metadata=bearer(key),
        )
        assert found.results[0].chunk.document_id == (docs / "sub" / "dogs.txt").as_posix()

        code, _, err = await ingest(str(docs / "cats.md"), "--collection", "nope",
                                    "--address", gateway.address, key=key)  # fmt: skip
        assert code == 2 and "collections/nope" in err  # no --create: not made
