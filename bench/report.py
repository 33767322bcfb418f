"""Turn a locust run's HDR histograms into a percentile table and a PNG.

python -m bench.report bench/out   # writes latency.png and latency.md there
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hdrh.histogram import HdrHistogram

PERCENTILES = (50, 90, 99, 99.9)


def load(directory: Path) -> dict[str, HdrHistogram]:
    return {
        path.stem.replace("_", " "): HdrHistogram.decode(path.read_bytes())
        for path in sorted(directory.glob("*.hdr"))
    }


def table(histograms: dict[str, HdrHistogram]) -> str:
    head = "| call | count | " + " | ".join(f"p{p:g} ms" for p in PERCENTILES) + " | max ms |"
    rows = [head, "|---|---:|" + "---:|" * (len(PERCENTILES) + 1)]
    for name, h in histograms.items():
        if not h.get_total_count():
            continue
        cells = [f"{h.get_value_at_percentile(p) / 1000:.3f}" for p in PERCENTILES]
        rows.append(
            f"| {name} | {h.get_total_count()} | {' | '.join(cells)} | "
            f"{h.get_max_value() / 1000:.3f} |"
        )
    return "\n".join(rows) + "\n"


def plot(histograms: dict[str, HdrHistogram], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recorded = {n: h for n, h in histograms.items() if h.get_total_count()}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, h in recorded.items():
        values, counts = [], []
        for item in h.get_recorded_iterator():
            values.append(item.value_iterated_to / 1000)
            counts.append(item.count_at_value_iterated_to)
        low, high = max(min(values), 1e-3), max(values)
        bins = [low * (high / low) ** (i / 40) for i in range(41)] if high > low else 10
        axes[0].hist(values, bins=bins, weights=counts, histtype="step", label=name)
        ps = (50, 75, 90, 95, 99, 99.5, 99.9, 99.99)
        axes[1].plot(
            [1 / (1 - p / 100) for p in ps],
            [h.get_value_at_percentile(p) / 1000 for p in ps],
            marker="o",
            label=name,
        )
    axes[0].set(xscale="log", xlabel="latency (ms)", ylabel="calls", title="Latency histogram")
    axes[1].set(xscale="log", xlabel="percentile", ylabel="latency (ms)", title="By percentile")
    axes[1].set_xticks([2, 10, 100, 1000, 10000], ["50", "90", "99", "99.9", "99.99"])
    for ax in axes:
        ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    directory = parser.parse_args(argv).directory
    histograms = load(directory)
    if not any(h.get_total_count() for h in histograms.values()):
        raise SystemExit(f"{directory}: no recorded calls in *.hdr")
    text = table(histograms)
    (directory / "latency.md").write_text(text)
    plot(histograms, directory / "latency.png")
    print(text, end="")
    print(f"wrote {directory / 'latency.png'}")


if __name__ == "__main__":
    main()
