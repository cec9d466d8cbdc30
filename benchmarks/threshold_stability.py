"""How far the false-positive rule's threshold moves with the draw of the calibration images.

`facetell calibrate --max-fpr` takes the lowest threshold at which every real source's
false-positive rate on the calibration split is within the target. With 45 faces in the
smallest source, a 2% target there allows no false positive at all, so the threshold rests on
the highest few real scores. This resamples the calibration split's faces within each source
(a bootstrap), finds the threshold each resample would give, and applies it to the test split:
the spread of the test false-positive rates (of the worst real source, and of all real faces
as one) and of the true-positive rate is how much of the shipped numbers is the luck of the
draw. Scores are each split's `predictions.csv` from `facetell evaluate`, so the bundle's
temperature, bias, size correction and tempering stay as calibrated (refitting them on each
resample would move the threshold a little more).

Usage: facetell evaluate BUNDLE --split-file SPLIT --split val --robustness-limit 0 --out VAL
       facetell evaluate BUNDLE --split-file SPLIT --split test --robustness-limit 0 --out TEST
       python benchmarks/threshold_stability.py VAL/predictions.csv TEST/predictions.csv \
           [--max-fpr 0.02] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from facetell.calibrate import threshold_for_fpr, worst_false_positive_rate


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets, P(ai) and sources of the scored images in one predictions.csv."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row["status"] == "ok"]
    targets = np.array([row["truth"] == "ai" for row in rows], dtype=int)
    return (
        targets,
        np.array([float(row["p_ai"]) for row in rows]),
        np.array([row["source"] for row in rows]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path, help="predictions.csv of the calibration split")
    parser.add_argument("test", type=Path, help="predictions.csv of the test split")
    parser.add_argument("--max-fpr", type=float, default=0.02)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    y_val, p_val, sources_val = load(args.calibration)
    y_test, p_test, sources_test = load(args.test)

    def on_test(threshold: float) -> tuple[float, float, float]:
        worst = worst_false_positive_rate(y_test, p_test, threshold, list(sources_test))
        pooled = float((p_test[y_test == 0] >= threshold).mean())
        return worst, pooled, float((p_test[y_test == 1] >= threshold).mean())

    threshold = threshold_for_fpr(y_val, p_val, args.max_fpr, list(sources_val))
    worst, pooled, tpr = on_test(threshold)
    print(f"threshold from all {len(y_val)} calibration faces: {threshold:.4f}; on the test split "
          f"false-positive rate {worst:.2%} in the worst real source, {pooled:.2%} over all real "
          f"faces; AI called AI {tpr:.1%}")  # fmt: skip
    rng = np.random.default_rng(0)
    groups = [np.flatnonzero(sources_val == source) for source in np.unique(sources_val)]
    rows = []
    for _ in range(args.resamples):
        drawn = np.concatenate([rng.choice(group, len(group)) for group in groups])
        resampled = threshold_for_fpr(
            y_val[drawn], p_val[drawn], args.max_fpr, list(sources_val[drawn])
        )
        rows.append((resampled, *on_test(resampled)))
    results = np.array(rows)
    print(f"{args.resamples} resamples of the calibration faces within each source:")
    names = (
        "threshold",
        "test FPR, worst real source",
        "test FPR, all real faces",
        "test AI called AI",
    )
    for column, name in enumerate(names):
        values = results[:, column]
        low, median, high = np.quantile(values, [0.05, 0.5, 0.95])
        print(f"  {name:30s} median {median:.4f}, 90% of resamples {low:.4f}-{high:.4f}")
    share = (results[:, 1] > args.max_fpr).mean()
    print(f"  resamples whose threshold breaks the {args.max_fpr:.0%} rule on test: {share:.1%}")


if __name__ == "__main__":
    main()
