"""Faces found, AUROC and call rates when every test image is re-saved as the hidden set does it.

The hidden benchmark re-saves each image as one JPEG quality, once at native size and once as a
small centre-cropped thumbnail of a size it does not state. This scores a per-source sample of
the shipped model's test split at native size and at several thumbnail sizes. Given a
leave-one-source-out run's split file (whose test split holds every image of the held-out
source) and that run's bundle, it shows how the hold-out fares under the hidden set's re-saving.

Usage: python benchmarks/thumbnails.py [--bundle DIR] [--split-file RUN/split.json]
       [--per-source N] [--sizes 48 64 ...] [--original] [--min-face-fraction F]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from facetell.data import SplitFile, sample_per_source
from facetell.evaluate import (
    ScoredSet,
    auroc,
    jpeg_copy,
    score_dataset,
    source_pairs,
    source_table,
    thumbnail_copy,
)
from facetell.faces import RetinaFaceDetector
from facetell.inference import Detector
from facetell.train.config import load_config
from facetell.train.crops import grouped_samples, make_splits

ROOT = Path(__file__).resolve().parents[1]


def shipped_test_split(data: str) -> list:
    """The test split `make model` evaluates on: its first member's config, seed and groups."""
    config = load_config(ROOT / "configs" / "default-lite0.yaml", [f"data.paths=[{data}]"])
    samples, _, groups = grouped_samples(config)
    [(_, split)] = make_splits(config, samples, groups)
    return split.samples("test")


def ai_source_lines(scored: ScoredSet, threshold: float) -> list[str]:
    """Per AI source: AUROC against all real faces and each real source alone; share called AI."""
    pairs = source_pairs(scored)
    lines = []
    for row in source_table(scored, threshold):
        if row["label"] != "ai":
            continue
        against = " ".join(
            f"{pair['real_source']}={pair['auroc']:.3f}"
            for pair in pairs
            if pair["ai_source"] == row["source"] and pair["auroc"] is not None
        )
        called = "n/a" if row["accuracy"] is None else f"{row['accuracy']:.3f}"  # none scored
        lines.append(
            f"    {row['source']:<16} vs real {row['auroc_vs_real']:.3f}  [{against}]"
            f"  called AI {called}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument(
        "--split-file", default=None, help="score this split file's test split (a hold-out run's)"
    )
    parser.add_argument("--per-source", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 64, 96, 128, 256])
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument(
        "--original", action="store_true", help="score the files as they are, before the copies"
    )
    parser.add_argument(
        "--min-face-fraction",
        type=float,
        default=RetinaFaceDetector().min_face_fraction,
        help="face floor in small images as a share of the short side (1.0: a flat 20 px)",
    )
    args = parser.parse_args()
    split = (
        SplitFile.load(Path(args.split_file)).samples("test")
        if args.split_file
        else shipped_test_split(args.data)
    )
    test = sample_per_source(split, args.per_source)
    faces = RetinaFaceDetector(min_face_fraction=args.min_face_fraction)
    detector = Detector.load(args.bundle, face_detector=faces)
    conditions = {"original files": None} if args.original else {}
    conditions[f"native, JPEG {args.quality}"] = jpeg_copy(args.quality)
    for side in args.sizes:
        conditions[f"{side} px, JPEG {args.quality}"] = thumbnail_copy(side, args.quality)
    print(f"{len(test)} test images; verdicts at the bundle's threshold")
    for name, transform in conditions.items():
        started = time.perf_counter()
        scored = score_dataset(detector, test, transform=transform)
        ok = scored.scored
        labels = np.array([label or "" for label in scored.labels])
        real = scored.targets == 0
        found: dict[str, list[bool]] = defaultdict(list)
        for source, flag in zip(scored.sources, ok, strict=True):
            found[source].append(bool(flag))
        per_source = " ".join(f"{s}={np.mean(f):.2f}" for s, f in sorted(found.items()))
        print(
            f"{name:<18} faces found {ok.mean():.3f}  "
            f"AUROC {auroc(scored.targets[ok], scored.p_ai[ok]):.4f}  "
            f"real called AI {np.mean(labels[real & ok] == 'ai'):.3f}  "
            f"AI called AI {np.mean(labels[~real & ok] == 'ai'):.3f}  "
            f"[found: {per_source}]  {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        print("\n".join(ai_source_lines(scored, detector.calibration.threshold)), flush=True)


if __name__ == "__main__":
    main()
