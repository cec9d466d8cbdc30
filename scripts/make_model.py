"""Rebuild the shipped model (models/default) from the shared data with one command.

Steps, each a facetell command: train configs/default.yaml (face crops, robustness
augmentation) → calibrate on the run's validation split (threshold for a 2% false-positive
rate on real faces) → evaluate on its test split (report in runs/default-report; it shows
thumbnails of the shared images, so it stays out of the repository) → copy the bundle with its
test metrics and the existing MODEL_CARD.md to models/default. `--loso` adds the
leave-one-source-out runs whose AUROCs the card reports.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACETELL = [sys.executable, "-m", "facetell"]


def run(*args: str) -> None:
    print("+ facetell " + " ".join(args), flush=True)
    subprocess.run([*FACETELL, *args], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--runs", default="runs/default")
    parser.add_argument("--loso", action="store_true", help="also hold out each AI source")
    parser.add_argument("--skip-train", action="store_true", help="reuse an existing run")
    args = parser.parse_args()
    started = time.perf_counter()
    run_dir = ROOT / args.runs
    if not args.skip_train:
        run("train", "configs/default.yaml", "--data", args.data, "--out", str(run_dir))
    bundle = run_dir / "bundle"
    split = run_dir / "split.json"
    run("calibrate", str(bundle), "--split-file", str(split), "--split", "val", "--max-fpr", "0.02")
    report = run_dir.with_name(run_dir.name + "-report")
    run(
        "evaluate",
        str(bundle),
        "--split-file",
        str(split),
        "--split",
        "test",
        "--out",
        str(report),
        "--robustness-limit",
        "350",
    )
    if args.loso:
        run(
            "train",
            "configs/default.yaml",
            "--data",
            args.data,
            "--holdout-source",
            "all",
            "--out",
            str(run_dir.with_name(run_dir.name + "-loso")),
        )
    target = ROOT / "models" / "default"
    card = target / "MODEL_CARD.md"
    card_text = card.read_text() if card.is_file() else None
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target)
    if card_text is not None:
        card.write_text(card_text)
    metrics = json.loads((report / "metrics.json").read_text())
    (target / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    print(
        f"models/default rebuilt in {time.perf_counter() - started:.0f} s; now update "
        f"MODEL_CARD.md from {report / 'metrics.json'} and docs/results.md"
    )


if __name__ == "__main__":
    main()
