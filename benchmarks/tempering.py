"""How tempering P(ai) by novelty would move a held-out source's scores, for a grid of settings.

A face's calibrated logit is divided by 1 + slope · max(0, novelty / threshold - start)
(facetell.familiarity). The start and slope cannot be fitted on the faces a model was trained on
(there novelty says little about error), so they are chosen on leave-one-source-out evaluations.
This recomputes each face's P(ai) from an evaluation's `predictions.csv` (its `p_ai`, `novelty`
and `face_width` columns) for every start and slope of a grid, undoing the tempering its bundle
was calibrated with first, and prints the held-out source's AUROC against the other class, its
log-loss, and the AUROC of the seen sources among themselves.

Post hoc: the bundle's temperature, bias and thresholds stay those it was calibrated with, so
the numbers rank settings; the product path (`facetell calibrate --temper-start/--temper-slope`
on a copy, then `facetell evaluate`) measures the one chosen. P(ai) saturated at 0 or 1 in the
CSV is taken as 1e-12 from it.

Usage: python benchmarks/tempering.py EVAL [EVAL ...] [--starts 0.6 0.7 0.8 0.9 1.0]
                                      [--slopes 0 2 5 10 20]
       (EVAL: a folder named holdout-<source> with bundle/calibration.json and
        report/predictions.csv, as `scripts/make_model.py --holdout-source` writes them for
        the ensemble, e.g. runs/s42/ensemble/holdout-sdxl)
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.metrics import log_loss

from facetell.evaluate import auroc
from facetell.familiarity import Familiarity

EPSILON = 1e-12


def load(evaluation: Path) -> tuple[str, Familiarity, dict[str, np.ndarray]]:
    """The held-out source's name, the bundle's familiarity and the scored faces' columns."""
    held_out = evaluation.name.removeprefix("holdout-")
    if held_out == evaluation.name:
        raise SystemExit(f"{evaluation}: expected a folder named holdout-<source>")
    calibration = json.loads((evaluation / "bundle" / "calibration.json").read_text())
    if "familiarity" not in calibration:
        raise SystemExit(f"{evaluation}: the bundle has no familiarity check; calibrate it first")
    with (evaluation / "report" / "predictions.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "ok"]
    columns = {
        "p_ai": np.array([float(row["p_ai"]) for row in rows]),
        "novelty": np.array([float(row["novelty"] or "nan") for row in rows]),
        "width": np.array([float(row["face_width"] or "nan") for row in rows]),
        "ai": np.array([row["truth"] == "ai" for row in rows]),
        "source": np.array([row["source"] for row in rows]),
    }
    return held_out, Familiarity.from_dict(calibration["familiarity"]), columns


def measure(evaluation: Path, starts: list[float], slopes: list[float]) -> None:
    held_out, familiarity, faces = load(evaluation)
    p = np.clip(faces["p_ai"], EPSILON, 1 - EPSILON)
    novelty, width, y = faces["novelty"], faces["width"], faces["ai"]
    # the logit before the bundle's own tempering
    logit = np.log(p / (1 - p)) * familiarity.temperature(novelty, width)
    held = faces["source"] == held_out
    held_is_ai = bool(y[held].all())
    versus = held | (y != held_is_ai)  # the held-out source and every face of the other class
    seen = ~held
    print(
        f"\n{evaluation} (held out: {held_out}, {held.sum()} faces; calibrated with start "
        f"{familiarity.temper_start:g}, slope {familiarity.temper_slope:g})"
    )
    print("start slope  held-out AUROC  held-out log-loss  seen AUROC")
    for start in starts:
        for slope in slopes:
            setting = replace(familiarity, temper_start=start, temper_slope=slope)
            q = 1 / (1 + np.exp(-logit / setting.temperature(novelty, width)))
            held_loss = log_loss(y[held], q[held], labels=[False, True])
            print(
                f"{start:5.2f} {slope:5g}  {auroc(y[versus], q[versus]):14.4f}  "
                f"{held_loss:17.3f}  {auroc(y[seen], q[seen]):10.4f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", nargs="+", type=Path)
    parser.add_argument("--starts", nargs="+", type=float, default=[0.6, 0.7, 0.8, 0.9, 1.0])
    parser.add_argument("--slopes", nargs="+", type=float, default=[0.0, 2.0, 5.0, 10.0, 20.0])
    args = parser.parse_args()
    for evaluation in args.evaluations:
        measure(evaluation, args.starts, args.slopes)


if __name__ == "__main__":
    main()
