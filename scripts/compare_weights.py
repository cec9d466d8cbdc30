"""Score several weight files of one run on its own split, from the crop cache.

A run's metrics.json holds only the weights it kept. To see what a different checkpoint would
have given (the weights a run started from with `init_from`, its running weight average, its
best epoch) on validation, test and every test source, load each into the run's model and
score the cached crops of its split; no face detection, no calibration.

Usage: python scripts/compare_weights.py RUN_DIR NAME=WEIGHTS.safetensors [NAME=... ...]
e.g.   python scripts/compare_weights.py runs/swa/sdxl/holdout-sdxl \
           start=runs/full-sdxl/default-lite0/holdout-sdxl/checkpoints/best.safetensors \
           average=runs/swa/sdxl/holdout-sdxl/checkpoints/average.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path
from tempfile import TemporaryDirectory

from facetell.evaluate import per_source_metrics, summary_metrics
from facetell.train.config import load_config
from facetell.train.crops import make_splits, prepare_data
from facetell.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (config.yaml, split.json)")
    parser.add_argument("weights", nargs="+", help="NAME=path to a .safetensors weights file")
    args = parser.parse_args()
    config = load_config(args.run / "config.yaml")
    named = dict(item.split("=", 1) for item in args.weights)
    data = prepare_data(config.model_copy(update={"init_from": None}))
    [(_, split)] = make_splits(config, data.samples, data.groups)
    holdout = split.params.get("holdout")
    print(
        f"{args.run}: test sources, AUROC against the other class"
        + (f"; held out {holdout}" if holdout else "")
    )
    for name, path in named.items():
        with TemporaryDirectory() as scratch:
            trainer = Trainer(
                config.model_copy(update={"init_from": path}), data, split, Path(scratch)
            )
            val_targets = data.targets[trainer.index["val"]]
            test_targets = data.targets[trainer.index["test"]]
            val = summary_metrics(val_targets, trainer.predict("val"))["auroc"]
            test_logits = trainer.predict("test")
            test = summary_metrics(test_targets, test_logits)["auroc"]
            sources = [data.sources[i] for i in trainer.index["test"]]
            per_source = per_source_metrics(test_targets, test_logits, sources)
        rows = " ".join(
            f"{source}={row.get('auroc_vs_real', row.get('auroc_vs_ai')):.4f}"
            for source, row in sorted(per_source.items())
        )
        print(f"{name:>10}  val {val:.4f}  test {test:.4f}  {rows}", flush=True)


if __name__ == "__main__":
    main()
