"""Rebuild the shipped model (models/default) from the shared data with one command.

The shipped model is an ensemble of two MobileNetV2 members that read different crops of the
same face: configs/default.yaml (mirrored margin 0.3, framing augmentation) and
configs/default-tight.yaml (tight crops that never mirror). Steps, each a facetell command:
train each member → calibrate each on the validation split (its temperature weighs its vote) →
`facetell ensemble --half` (float16 weights keep the bundle under 25 MB) → calibrate the
ensemble on the validation split (threshold for a 2% false-positive rate on real faces) →
evaluate it on the test split (report in runs/default-report; it shows thumbnails of the shared
images, so it stays out of the repository) → copy the bundle with its test metrics and the
existing MODEL_CARD.md to models/default. Both members are trained with seed 0 on the same data,
so they share one split. `--loso` adds the leave-one-source-out runs of both members and
evaluates their ensembles, whose AUROCs the card reports.
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
MEMBERS = {"default": "configs/default.yaml", "default-tight": "configs/default-tight.yaml"}


def run(*args: str) -> None:
    print("+ facetell " + " ".join(args), flush=True)
    subprocess.run([*FACETELL, *args], check=True, cwd=ROOT)


def calibrate(bundle: Path, split: Path) -> None:
    run("calibrate", str(bundle), "--split-file", str(split), "--split", "val", "--max-fpr", "0.02")


def same_split(splits: list[Path]) -> Path:
    """The members' common split file; members trained on different splits cannot be judged."""
    rows = [json.loads(path.read_text())["rows"] for path in splits]
    if any(r != rows[0] for r in rows[1:]):
        raise SystemExit(f"members were trained on different splits: {splits}")
    return splits[0]


def build_ensemble(member_runs: list[Path], out: Path) -> tuple[Path, Path]:
    """Calibrate each member, ensemble them with float16 weights, calibrate the ensemble."""
    split = same_split([run_dir / "split.json" for run_dir in member_runs])
    for run_dir in member_runs:
        calibrate(run_dir / "bundle", split)
    bundle = out / "bundle"
    run(
        "ensemble",
        *(str(run_dir / "bundle") for run_dir in member_runs),
        "--out",
        str(bundle),
        "--half",
        "--name",
        "facetell-default",
    )
    calibrate(bundle, split)
    return bundle, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--runs", default="runs", help="folder for the training runs")
    parser.add_argument("--loso", action="store_true", help="also hold out each AI source")
    parser.add_argument("--skip-train", action="store_true", help="reuse existing runs")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = ROOT / args.runs
    if not args.skip_train:
        for name, config in MEMBERS.items():
            run("train", config, "--data", args.data, "--out", str(runs / name))
    bundle, split = build_ensemble([runs / name for name in MEMBERS], runs / "default-ensemble")
    report = runs / "default-report"
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
        for name, config in MEMBERS.items():
            run("train", config, "--data", args.data, "--holdout-source", "all",
                "--out", str(runs / f"{name}-loso"))  # fmt: skip
        for held_out in sorted((runs / "default-loso").glob("holdout-*")):
            ensemble_dir = runs / "default-ensemble-loso" / held_out.name
            members = [runs / f"{name}-loso" / held_out.name for name in MEMBERS]
            held_bundle, held_split = build_ensemble(members, ensemble_dir)
            run("evaluate", str(held_bundle), "--split-file", str(held_split), "--split", "test",
                "--out", str(ensemble_dir / "report"), "--robustness-limit", "0")  # fmt: skip
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
