"""End-to-end ingestion of a 100-page PDF: parse -> chunk -> embed -> index -> commit.

    python -m bench.ingest [--pages 100] [--data-dir data]

The PDF is written here with fpdf2: seeded English-like prose, about 330 words
(~450 tokens) a page in paragraphs of 3-7 sentences. Ingestion goes through
indexer.Datasets exactly as IngestFile does, with all-MiniLM-L6-v2 from
`{data-dir}/models/all-MiniLM-L6-v2` (else the hashed embedder, said so).
Reported: seconds, chunks, peak RSS of the process and its growth during the
ingest once the model is warm (ONNX Runtime's arena for a full batch of
254-token inputs is a few hundred MiB and is counted apart); the baseline in
the same run is parsing and chunking alone (no model).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from pathlib import Path

from fpdf import FPDF

from bench.retrieval import embedder_for
from indexer.chunker import Chunker
from indexer.datasets import Datasets
from indexer.documents import DocumentInput
from indexer.parse import parse_file

WORDS = (
    "the a of to and in is for on with as by at from that this it be are was were has "
    "gateway model request token stream index vector search query document chunk tenant "
    "latency throughput cache breaker deployment provider config reload metric health "
    "server client network storage memory process thread batch queue worker result archive "
    "weather river city market price garden music film health school history science "
    "quickly slowly carefully always never often rarely large small new old first last"
).split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
    return " ".join(words).capitalize() + "."


def write_pdf(path: Path, pages: int, seed: int = 7) -> Path:
    rng = random.Random(seed)
    pdf = FPDF()
    pdf.set_font("Helvetica", size=10)
    pdf.set_auto_page_break(False)
    for number in range(1, pages + 1):
        pdf.add_page()
        text = f"Section {number}\n\n" + "\n\n".join(
            " ".join(sentence(rng) for _ in range(rng.randint(3, 7))) for _ in range(4)
        )
        pdf.multi_cell(0, 4.5, text)
    pdf.output(str(path))
    return path


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as root:
        pdf = write_pdf(Path(root) / "book.pdf", args.pages)
        size = pdf.stat().st_size
        embedder, name = embedder_for(args.data_dir)
        chunker = Chunker(embedder.tokenizer, embedder.max_tokens, 512, 64)
        start = time.perf_counter()
        sections = list(parse_file(pdf, pdf.name))
        parsed = time.perf_counter() - start
        drafts = list(chunker.chunks(sections))
        chunked = time.perf_counter() - start
        datasets = Datasets(Path(root) / "datasets", embedder, name)
        await datasets.create("bench", "books")
        cold = peak_mib()
        # Warm the model on texts of the same shape, so that the growth below is
        # the pipeline's own, not ONNX Runtime's first allocation of its arena.
        await embedder.embed([d.text for d in drafts[:128]])
        before = peak_mib()
        start = time.perf_counter()
        document = DocumentInput("book", path=pdf, filename=pdf.name)
        result = (await datasets.upsert("bench", "books", [document]))[0]
        seconds = time.perf_counter() - start
        after = peak_mib()
        await datasets.aclose()
    tokens = sum(d.tokens for d in drafts)
    print(f"embedder: {name}; PDF {size} bytes")
    print("| step | seconds | pages | chunks | tokens | peak RSS MiB (growth) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| parse only (baseline) | {parsed:.2f} | {len(sections)} | | | |")
    counts = f"{len(sections)} | {len(drafts)} | {tokens}"
    print(f"| parse + chunk (baseline) | {chunked:.2f} | {counts} | |")
    print(
        f"| ingest end to end | {seconds:.2f} | {result.pages} | {result.chunks} | {tokens} "
        f"| {after:.0f} (+{after - before:.0f}) |"
    )
    print(f"chunk size {chunker.size} tokens, overlap {chunker.overlap}")
    print(
        f"peak RSS before the model's first batch: {cold:.0f} MiB; after warming it: {before:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
