"""The hidden benchmark rehearsed end to end: re-saved copies on disk, judged by the real CLI.

The hidden set decodes every image and re-saves it as JPEG at one quality, once at native size
and once as a small centre-cropped thumbnail, then runs `facetell predict DIR --format jsonl`.
This does the same with a per-source sample of the shipped model's test split (files named by
number only, so nothing but pixels reaches the model) and scores the JSON lines the CLI prints:
what a model comparison should be decided on, since it is the path the judges take.

With `--split-file` (a hold-out run's split.json and its ensemble's bundle) the sample comes from
that split's test rows, so the held-out source is judged as an unseen one would be. Each line
ends with the share of each source's faces flagged unfamiliar (`familiar: false`), when the
bundle has a familiarity reference. AUROC comes with its 95% bootstrap interval and ECE with the
ECE a perfectly calibrated model would still show on the same images (its 95th percentile), since
400 images leave both far less certain than they look.

With `--compare OTHER` a second bundle judges the same copies, and each copy's line is followed
by its line and its AUROC minus the first's with a paired interval.

Usage: python benchmarks/hidden_set.py [--bundle DIR] [--split-file SPLIT] [--per-source N]
       [--quality Q] [--sizes 96 64 ...] [--keep DIR] [--compare OTHER]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from thumbnails import shipped_test_split

from facetell.calibrate import ece_if_calibrated, expected_calibration_error
from facetell.data import Sample, SplitFile, sample_per_source
from facetell.evaluate import auroc, auroc_difference_interval, auroc_interval, centre_thumbnail
from facetell.io import decode

FACETELL = Path(sys.executable).with_name("facetell")


def write_copies(samples: list[Sample], folder: Path, size: int | None, quality: int) -> None:
    """One JPEG per sample, named by its index: native size when `size` is None."""
    folder.mkdir(parents=True)
    for index, sample in enumerate(samples):
        image = decode(sample.path).image
        if size is not None:
            image = centre_thumbnail(image, size)
        image.save(folder / f"{index:04d}.jpg", "JPEG", quality=quality)


def judge(folder: Path, bundle: str | None) -> dict[int, dict]:
    """The CLI's JSON lines for every copy, keyed by the copy's index."""
    command = [str(FACETELL), "predict", str(folder), "--format", "jsonl"]
    if bundle:
        command += ["--model", bundle]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {int(Path(row["path"]).stem): row for row in rows}


def summarise(samples: list[Sample], rows: dict[int, dict]) -> str:
    """AUROC, ECE and call rates over the copies the CLI found a face in."""
    scored = [i for i, _ in enumerate(samples) if rows[i]["status"] == "ok"]
    targets = np.array([samples[i].target for i in scored])
    p_ai = np.array([rows[i]["p_ai"] for i in scored])
    labels = np.array([rows[i]["label"] for i in scored])
    sources = np.array([samples[i].source for i in scored])
    real_sources = sorted(set(sources[targets == 0]))
    real_rates = [np.mean(labels[sources == s] == "ai") for s in real_sources]
    decided = labels != "uncertain"
    correct = (labels == "ai") == (targets == 1)
    per_real = " ".join(f"{s}={r:.1%}" for s, r in zip(real_sources, real_rates, strict=True))
    low, high = auroc_interval(targets, p_ai)
    return (
        f"faces found {len(scored) / len(samples):.3f}  AUROC {auroc(targets, p_ai):.4f} "
        f"({low:.3f}-{high:.3f})  ECE {expected_calibration_error(targets, p_ai):.3f} "
        f"(calibrated: ≤ {ece_if_calibrated(p_ai):.3f})  "
        f"AI called AI {np.mean(labels[targets == 1] == 'ai'):.1%}  "
        f"real called AI {np.mean(real_rates):.1%} ({per_real})  "
        f"uncertain {np.mean(~decided):.1%}  "
        f"accuracy when decided {np.mean(correct[decided]):.3f}"
        + unfamiliar_shares(rows, scored, sources)
    )


def difference(samples: list[Sample], rows: dict[int, dict], other: dict[int, dict]) -> str:
    """The compared bundle's AUROC minus the first's on the copies both judged, with a paired
    interval: on 400 images the separate intervals overlap for most differences worth having."""
    both = [i for i in range(len(samples)) if rows[i]["status"] == other[i]["status"] == "ok"]
    targets = np.array([samples[i].target for i in both])
    mine, theirs = (np.array([judged[i]["p_ai"] for i in both]) for judged in (other, rows))
    low, high = auroc_difference_interval(targets, mine, theirs)
    return (
        f"AUROC difference {auroc(targets, mine) - auroc(targets, theirs):+.4f} "
        f"({low:+.4f} to {high:+.4f}) on the {len(both)} copies both judged"
    )


def unfamiliar_shares(rows: dict[int, dict], scored: list[int], sources: np.ndarray) -> str:
    """Per source, the share of judged images whose verdict face is flagged unfamiliar."""
    flags = np.array([rows[i]["familiar"] is False for i in scored])
    if all(rows[i]["familiar"] is None for i in scored):
        return ""
    shares = " ".join(f"{s}={flags[sources == s].mean():.1%}" for s in sorted(set(sources)))
    return f"  unfamiliar ({shares})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--split-file", type=Path, help="take the test rows of this split")
    parser.add_argument("--per-source", type=int, default=60)
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 64])
    parser.add_argument("--keep", type=Path, help="write the copies here and keep them")
    parser.add_argument(
        "--compare", help="a second bundle judged on the same copies, with paired AUROC differences"
    )
    args = parser.parse_args()
    test = (
        SplitFile.load(args.split_file).samples("test")
        if args.split_file
        else shipped_test_split(args.data)
    )
    samples = sample_per_source(test, args.per_source)
    root = args.keep or Path(tempfile.mkdtemp(prefix="facetell-hidden-"))
    print(f"{len(samples)} test images, JPEG {args.quality}, judged by `facetell predict`")
    try:
        for size in [None, *args.sizes]:
            name = "native" if size is None else f"{size} px"
            folder = root / ("native" if size is None else f"thumb{size}")
            shutil.rmtree(folder, ignore_errors=True)
            started = time.perf_counter()
            write_copies(samples, folder, size, args.quality)
            rows = judge(folder, args.bundle)
            seconds = time.perf_counter() - started
            print(f"{name:<7} {summarise(samples, rows)}  {seconds:.0f} s", flush=True)
            if args.compare:
                other = judge(folder, args.compare)
                print(f"{'':<7} compared: {summarise(samples, other)}", flush=True)
                print(f"{'':<7} {difference(samples, rows, other)}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
