"""How far a face's score moves when its photo moves by a few pixels.

The face box comes from the detector and the crop from the box, so a photo shifted by a pixel
or two is cut a pixel or two differently, and is resampled at another phase. This scores a
per-source sample of the shipped model's test split with each photo shifted right and down by
0-8 px (the top rows and left columns repeated), and prints per source how far P(ai) moves
across the nine copies, how often the verdict changes, and the AUROC of the unshifted copy
against that of the nine copies' mean logit (test-time averaging over shifts).

Usage: python benchmarks/shift.py [--bundle DIR] [--per-source N] [--max-shift K]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score
from thumbnails import shipped_test_split

from facetell.data import sample_per_source
from facetell.inference import Detector, FaceResult, Result
from facetell.io import decode


def shifted(image: Image.Image, by: int) -> Image.Image:
    """The photo moved right and down by `by` px, its first rows and columns repeated."""
    pixels = np.asarray(image)
    return Image.fromarray(np.pad(pixels, ((by, 0), (by, 0), (0, 0)), mode="edge"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="Model bundle (default: the shipped one).")
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--per-source", type=int, default=50)
    parser.add_argument("--max-shift", type=int, default=8)
    args = parser.parse_args()

    detector = Detector.load(args.bundle)
    samples = sample_per_source(shipped_test_split(args.data), args.per_source, seed=0)
    logits: dict[str, list[list[float]]] = defaultdict(list)
    p_ais: dict[str, list[list[float]]] = defaultdict(list)
    labels: dict[str, list[list[str]]] = defaultdict(list)
    truth: dict[str, bool] = {}
    for sample in samples:
        image = decode(sample.path).image
        copies = [detector.predict(shifted(image, by)) for by in range(args.max_shift + 1)]
        if any(not copy.faces for copy in copies):
            continue  # a copy without a face has no score to compare
        logits[sample.source].append([verdict_face(copy).logit for copy in copies])
        p_ais[sample.source].append([copy.p_ai for copy in copies])  # calibrated, as shown
        labels[sample.source].append([copy.label for copy in copies])
        truth[sample.source] = sample.label == "ai"
    print(f"{'source':<16} {'n':>4} {'P(ai) range: median':>21} {'p90':>6} {'verdict changes':>16}")
    for source in sorted(logits):
        p_ai = np.asarray(p_ais[source])
        spread = p_ai.max(axis=1) - p_ai.min(axis=1)
        changed = np.mean([len(set(row)) > 1 for row in labels[source]])
        print(
            f"{source:<16} {len(spread):>4} {np.median(spread):>21.3f} "
            f"{np.quantile(spread, 0.9):>6.3f} {changed:>16.1%}"
        )
    every = [(truth[s], row) for s in logits for row in logits[s]]
    y = [is_ai for is_ai, _ in every]
    plain = roc_auc_score(y, [row[0] for _, row in every])
    averaged = roc_auc_score(y, [float(np.mean(row)) for _, row in every])
    copies = args.max_shift + 1
    print(f"AUROC, all sources: unshifted {plain:.4f}, mean of {copies} logits {averaged:.4f}")


def verdict_face(result: Result) -> FaceResult:
    """The face an image's verdict rests on: its most AI-like."""
    return max(result.faces, key=lambda face: face.p_ai)


if __name__ == "__main__":
    main()
