"""Would averaging each face's score with its mirror image's (flip test-time augmentation) help?

It costs a second model pass per face, so it has to earn it. This scores every test face of a
split as is and mirrored, and prints each source's AUROC against the other class for the plain
logit and for the mean of the two. Give a hold-out run's ensemble and split to measure an
unseen source; without arguments it measures the shipped model on its own test split.

Usage: python benchmarks/flip_tta.py [--bundle DIR --split-file SPLIT.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from thumbnails import shipped_test_split

from facetell.data import SplitFile
from facetell.evaluate import auroc, per_source_metrics
from facetell.inference import Detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--split-file", type=Path, help="its test split (default: the shipped)")
    args = parser.parse_args()
    samples = (
        SplitFile.load(args.split_file).samples("test")
        if args.split_file
        else shipped_test_split(args.data)
    )
    detector = Detector.load(args.bundle)
    kept, plain, averaged = [], [], []
    for sample in samples:
        crops = detector.prepare(str(sample.path)).crops
        if not crops:  # unreadable or no face: not scored, as in `facetell evaluate`
            continue
        logits = detector.logits(crops)
        mirrored = detector.logits([crop[:, ::-1].copy() for crop in crops])
        kept.append(sample)
        plain.append(logits.max())  # an image's score is its most AI-like face's
        averaged.append(((logits + mirrored) / 2).max())
    targets = np.array([s.target for s in kept])
    sources = [s.source for s in kept]
    rows = {
        name: per_source_metrics(targets, np.array(scores), sources)
        for name, scores in (("plain", plain), ("flip-averaged", averaged))
    }
    print(f"{detector.model_name}: {len(kept)} of {len(samples)} test images scored")
    print(f"{'source':<16}{'plain':>8}{'flip-averaged':>15}")
    for source, row in rows["plain"].items():
        key = "auroc_vs_real" if "auroc_vs_real" in row else "auroc_vs_ai"
        print(f"{source:<16}{row[key]:>8.3f}{rows['flip-averaged'][source][key]:>15.3f}")
    print(f"{'all':<16}{auroc(targets, plain):>8.3f}{auroc(targets, averaged):>15.3f}")


if __name__ == "__main__":
    main()
