"""The semantic cache's similarity threshold: precision and recall of "same question"
hits on the labelled pairs in bench/data/semantic_pairs.jsonl, with and without
router/semantic_guard.py, so that the default threshold rests on a measurement.

    python -m bench.semantic_threshold [--data-dir data] [--pairs FILE] [--worst 20]

Each line of the pairs file is {"a", "b", "same", "kind"}: kind "paraphrase"
(same: true, one answer fits both), "near_miss" (similar words, another
question: swapped arguments, other numbers, negation, other names, units,
quantities or opposites) or "unrelated" (same topic, another question). Both
texts are embedded with all-MiniLM-L6-v2 from `{data-dir}/models/all-MiniLM-L6-v2`
(`infergate model fetch`); a pair is a hit when the cosine of the two
(L2-normalised) vectors is at least the threshold, and, with the guard, when
`compatible(a, b)` also holds. Precision = hits on same pairs / all hits;
recall = hits on same pairs / same pairs. The set is about half near-misses,
far harder than live traffic, where most candidates above the threshold are
repeats: read the precision as a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.semantic_guard import conflict

PAIRS = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
MODEL = "all-MiniLM-L6-v2"
THRESHOLDS = [round(0.80 + i / 100, 2) for i in range(20)]
TARGET_PRECISION = 0.99


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: str
    cosine: float
    conflict: str | None  # the guard's verdict: None = compatible
    strict: str | None  # the same with strict=True

    def vetoed(self, guard: str) -> bool:
        return bool(self.strict if guard == "strict" else guard == "guard" and self.conflict)


@dataclass(frozen=True, slots=True)
class Score:
    hits: int
    false_hits: int
    precision: float | None  # None: no hits at all
    recall: float

    @property
    def f1(self) -> float | None:
        p = self.precision
        return None if not p or not self.recall else 2 * p * self.recall / (p + self.recall)


def load(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def cosines(model_dir: Path, rows: list[dict[str, object]]) -> list[float]:
    from indexer.onnx_embedder import OnnxEmbedder

    texts = sorted({str(r[side]) for r in rows for side in ("a", "b")})
    embedder = OnnxEmbedder(model_dir)
    try:
        vectors = await embedder.embed(texts)
    finally:
        await embedder.aclose()
    row_of = {text: i for i, text in enumerate(texts)}
    return [float(np.dot(vectors[row_of[str(r["a"])]], vectors[row_of[str(r["b"])]])) for r in rows]


def score(pairs: list[Pair], threshold: float, guard: str) -> Score:
    """Hits at `threshold` with no guard ("none"), the guard ("guard") or the
    strict guard ("strict")."""
    hits = [p for p in pairs if p.cosine >= threshold and not p.vetoed(guard)]
    true_hits = sum(p.same for p in hits)
    positives = sum(p.same for p in pairs)
    return Score(
        hits=len(hits),
        false_hits=len(hits) - true_hits,
        precision=true_hits / len(hits) if hits else None,
        recall=true_hits / positives if positives else 0.0,
    )


def lowest(pairs: list[Pair], guard: str) -> tuple[float, Score] | None:
    """The lowest threshold of the table whose precision reaches the target."""
    for threshold in THRESHOLDS:
        s = score(pairs, threshold, guard)
        if s.precision is not None and s.precision >= TARGET_PRECISION:
            return threshold, s
    return None


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


GUARDS = {"none": "without the guard", "guard": "with the guard", "strict": "with strict=True"}


def report(pairs: list[Pair], worst: int) -> None:
    kinds = Counter(p.kind for p in pairs)
    print(f"{len(pairs)} pairs: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    print("\n## Cosine by kind, and how many pairs the guard rejects\n")
    print("| kind | pairs | min | median | max | guard rejects | strict rejects |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in sorted(kinds):
        of_kind = [p for p in pairs if p.kind == kind]
        values = [p.cosine for p in of_kind]
        cells = [f"{len(values)}", f"{min(values):.3f}", f"{statistics.median(values):.3f}"]
        cells.append(f"{max(values):.3f}")
        for guard in ("guard", "strict"):
            rejected = sum(p.vetoed(guard) for p in of_kind)
            cells.append(f"{rejected} ({rejected / len(of_kind):.1%})")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("\n## Precision and recall by threshold (hits / false hits / P / R / F1)\n")
    print("| threshold | " + " | ".join(f"{g}: hits | false | P | R | F1" for g in GUARDS) + " |")
    print("|---:|" + "---:|" * 5 * len(GUARDS))
    for threshold in THRESHOLDS:
        cells = []
        for guard in GUARDS:
            s = score(pairs, threshold, guard)
            cells += [str(s.hits), str(s.false_hits), figure(s.precision), figure(s.recall)]
            cells.append(figure(s.f1))
        print(f"| {threshold:.2f} | " + " | ".join(cells) + " |")
    print()
    for guard, label in GUARDS.items():
        found = lowest(pairs, guard)
        if found is None:
            print(f"{label}: no threshold up to 0.99 reaches precision {TARGET_PRECISION}")
        else:
            threshold, s = found
            print(
                f"{label}: lowest threshold with precision >= {TARGET_PRECISION}: "
                f"{threshold:.2f} (precision {figure(s.precision)}, recall {figure(s.recall)}, "
                f"{s.false_hits} false hits of {s.hits})"
            )
    for guard in ("guard", "strict"):
        reasons = Counter(p.vetoed(guard) and (p.strict or p.conflict) for p in pairs if not p.same)
        del reasons[False]
        print(
            f"{GUARDS[guard]}, rejected near-miss and unrelated pairs by check: "
            + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
        )
    misses = sorted((p for p in pairs if not p.same), key=lambda p: -p.cosine)[:worst]
    print(f"\n## The {len(misses)} closest pairs that must not hit\n")
    print("| cosine | kind | guard | a | b |\n|---:|---|---|---|---|")
    for p in misses:
        print(f"| {p.cosine:.3f} | {p.kind} | {p.strict or 'PASSES'} | {p.a} | {p.b} |")
    survivors = sorted(
        (p for p in pairs if not p.same and not p.conflict), key=lambda p: -p.cosine
    )[:worst]
    print(f"\n## The {len(survivors)} closest pairs that must not hit and pass the guard\n")
    print("| cosine | kind | strict | a | b |\n|---:|---|---|---|---|")
    for p in survivors:
        print(f"| {p.cosine:.3f} | {p.kind} | {p.strict or 'PASSES'} | {p.a} | {p.b} |")
    refused = [p for p in pairs if p.same and p.strict]
    print(f"\n## Paraphrases the guard (strict or not) rejects ({len(refused)})\n")
    print("| cosine | guard | strict | a | b |\n|---:|---|---|---|---|")
    for p in sorted(refused, key=lambda p: -p.cosine):
        print(f"| {p.cosine:.3f} | {p.conflict or '-'} | {p.strict} | {p.a} | {p.b} |")
    far = sorted((p for p in pairs if p.same), key=lambda p: p.cosine)[:worst]
    print(f"\n## The {len(far)} least similar paraphrases\n")
    print("| cosine | a | b |\n|---:|---|---|")
    for p in far:
        print(f"| {p.cosine:.3f} | {p.a} | {p.b} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--worst", type=int, default=20, help="rows in the hard-case tables")
    args = parser.parse_args(argv)
    model_dir = args.data_dir / "models" / MODEL
    if not (model_dir / "model.onnx").is_file():
        print(
            f"no embedding model in {model_dir}: run `infergate model fetch` first",
            file=sys.stderr,
        )
        return 2
    rows = load(args.pairs)
    print(f"model: {MODEL} (ONNX) from {model_dir}; pairs: {args.pairs}")
    pairs = [
        Pair(
            a=str(r["a"]),
            b=str(r["b"]),
            same=bool(r["same"]),
            kind=str(r["kind"]),
            cosine=c,
            conflict=conflict(str(r["a"]), str(r["b"])),
            strict=conflict(str(r["a"]), str(r["b"]), strict=True),
        )
        for r, c in zip(rows, asyncio.run(cosines(model_dir, rows)), strict=True)
    ]
    report(pairs, args.worst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
