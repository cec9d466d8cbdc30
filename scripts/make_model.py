"""Rebuild the shipped model (models/default) from the shared data with one command.

The shipped model is an ensemble of two members that read different crops of the same face:
configs/default-lite0.yaml (EfficientNet-Lite0, mirrored margin 0.3, framing augmentation) and
configs/default-tight.yaml (MobileNetV2, tight crops that never mirror). Steps, each a facetell
command: train each member → calibrate each on the validation split (its temperature weighs its
vote) → `facetell ensemble --half` (float16 weights keep the bundle under 25 MB) → calibrate the
ensemble on the validation split (threshold for a 2% false-positive rate in every real source, the
small-face correction on 48-160-px thumbnail copies, and the familiarity reference of 500
training faces with its novelty thresholds; members need only their temperature) →
evaluate it on the test split beside the model it replaces (report in runs/default-report; it
shows thumbnails of the shared images, so it stays out of the repository) → copy the bundle with
its test metrics and the existing MODEL_CARD.md to models/default, and the split to
models/default-split.json, so the card's numbers can be measured again without training → print
how the rebuilt model differs from the replaced one (paired AUROC interval, ECE, the threshold's
rates). A replaced model trained on another split is not compared: it may have trained on these
test images. `--target` ships elsewhere. Both members are trained with seed 0 on
the same data, so they share one split.

`--holdout-source NAME` (or `all`) measures the recipe instead of shipping it: each member is
trained without that source, the members are ensembled and calibrated exactly as above, and the
ensemble is evaluated on the held-out split; models/default is left alone. `--member NAME=CONFIG`
(repeatable) replaces the shipped members, and `--set` passes overrides to every training, so a
candidate ensemble can be held out with shortened phases before anyone trains it at full length.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from facetell.data import SplitFile

ROOT = Path(__file__).resolve().parents[1]
FACETELL = [sys.executable, "-m", "facetell"]
MEMBERS = {
    "default-lite0": "configs/default-lite0.yaml",
    "default-tight": "configs/default-tight.yaml",
}


def run(*args: str) -> None:
    print("+ facetell " + " ".join(args), flush=True)
    step = subprocess.run([*FACETELL, *args], cwd=ROOT)
    if step.returncode:  # facetell has printed why; a traceback of this script adds nothing
        raise SystemExit(f"make_model: `facetell {args[0]}` failed (exit {step.returncode})")


def calibrate(bundle: Path, split: Path, *, full: bool) -> None:
    """Members need only their temperature; the ensemble also gets the small-face correction
    and the familiarity reference (500 faces of the train split) and thresholds."""
    run("calibrate", str(bundle), "--split-file", str(split), "--split", "val", "--max-fpr", "0.02",
        "--size-correction" if full else "--no-size-correction",
        "--familiarity" if full else "--no-familiarity")  # fmt: skip


def evaluate(
    bundle: Path, split: Path, report: Path, *, robustness_limit: int, compare: Path | None = None
) -> None:
    extra = ["--compare", str(compare)] if compare else []
    run("evaluate", str(bundle), "--split-file", str(split), "--split", "test",
        "--out", str(report), "--robustness-limit", str(robustness_limit), *extra)  # fmt: skip


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
        calibrate(run_dir / "bundle", split, full=False)
    bundle = out / "bundle"
    run(
        "ensemble",
        *(str(run_dir / "bundle") for run_dir in member_runs),
        "--out",
        str(bundle),
        "--half",
        "--name",
        "facetell-default",
        "--overwrite",
    )
    calibrate(bundle, split, full=True)
    return bundle, split


def parse_members(specs: list[str]) -> dict[str, str]:
    """NAME=CONFIG pairs, in the order given; the shipped two members when none are given."""
    if not specs:
        return dict(MEMBERS)
    members = {}
    for spec in specs:
        name, sep, config = spec.partition("=")
        if not sep or not name or not config:
            raise SystemExit(f"--member takes NAME=CONFIG, got {spec!r}")
        members[name] = config
    return members


def train_members(
    members: dict[str, str], runs: Path, data: str, overrides: list[str], holdout: str | None
) -> None:
    extra = [arg for value in overrides for arg in ("--set", value)]
    if holdout:
        extra += ["--holdout-source", holdout]
    for name, config in members.items():
        run("train", config, "--data", data, "--out", str(runs / name), "--overwrite", *extra)


def measure_holdouts(members: dict[str, str], runs: Path, holdout: str) -> None:
    """Ensemble the member runs of each source every member held out; evaluate; print AUROCs."""
    pattern = "holdout-*" if holdout == "all" else f"holdout-{holdout}"
    held_by_member = [{path.name for path in (runs / m).glob(pattern)} for m in members]
    held = sorted(set.intersection(*held_by_member))
    if not held:
        raise SystemExit(f"no {pattern} run that every member has under {runs}")
    results = {}
    for name in held:
        ensemble_dir = runs / "ensemble" / name
        bundle, split = build_ensemble([runs / member / name for member in members], ensemble_dir)
        report = ensemble_dir / "report"
        evaluate(bundle, split, report, robustness_limit=0)
        metrics = json.loads((report / "metrics.json").read_text())
        held_out = name.removeprefix("holdout-")
        row = next(row for row in metrics["sources"] if row["source"] == held_out)
        # the pooled AUROC can hide that an unseen generator passes for one kind of real photo
        row["auroc_by_source"] = {
            pair["real_source" if pair["ai_source"] == held_out else "ai_source"]: pair["auroc"]
            for pair in metrics["source_pairs"]
            if held_out in (pair["ai_source"], pair["real_source"])
        }
        results[held_out] = row
    (runs / "ensemble" / f"holdout-{holdout}.json").write_text(json.dumps(results, indent=2))
    for source, row in results.items():
        auroc = row.get("auroc_vs_real", row.get("auroc_vs_ai"))
        low, high = row["auroc_interval"]
        called_ai = row["accuracy"] if row["label"] == "ai" else row["false_positive_rate"]
        pairs = ", ".join(f"{other} {value:.3f}" for other, value in row["auroc_by_source"].items())
        unfamiliar = "" if row["unfamiliar"] is None else f", {row['unfamiliar']:.1%} unfamiliar"
        print(
            f"held out {source}: AUROC {auroc:.3f} (95% interval {low:.3f}-{high:.3f}) vs the "
            f"other class ({pairs}), {called_ai:.1%} called AI{unfamiliar}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--runs", default="runs", help="folder for the training runs")
    parser.add_argument("--member", action="append", default=[], help="NAME=CONFIG, repeatable")
    parser.add_argument("--set", action="append", default=[], help="training override a.b=v")
    parser.add_argument("--holdout-source", help="measure with this source (or all) held out")
    parser.add_argument("--skip-train", action="store_true", help="reuse existing runs")
    parser.add_argument("--target", default="models/default", help="where the bundle is shipped")
    parser.add_argument("--robustness-limit", type=int, default=350, help="images per perturbation")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = ROOT / args.runs
    members = parse_members(args.member)
    if not args.skip_train:
        train_members(members, runs, args.data, args.set, args.holdout_source)
    if args.holdout_source:
        measure_holdouts(members, runs, args.holdout_source)
        print(f"hold-out runs measured in {time.perf_counter() - started:.0f} s")
        return
    bundle, split = build_ensemble([runs / name for name in members], runs / "default-ensemble")
    report = runs / "default-report"
    target = ROOT / args.target
    target_split = target.with_name(f"{target.name}-split.json")
    previous = comparable_previous(target, target_split, split)
    evaluate(bundle, split, report, robustness_limit=args.robustness_limit, compare=previous)
    evaluations = json.loads((report / "metrics.json").read_text())
    metrics = evaluations[0] if isinstance(evaluations, list) else evaluations
    card = target / "MODEL_CARD.md"
    card_text = card.read_text() if card.is_file() else None
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target)
    if card_text is not None:
        card.write_text(card_text)
    SplitFile.load(split).save(target_split)
    (target / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    print(f"{args.target} rebuilt in {time.perf_counter() - started:.0f} s")
    if previous is not None:
        print(describe_change(metrics, evaluations[1]))
        if target.is_relative_to(ROOT):
            paths = " ".join(str(path.relative_to(ROOT)) for path in (target, target_split))
            print(f"the model it replaced is still in git: git checkout -- {paths}")
    print(f"now update MODEL_CARD.md from {report / 'metrics.json'} and docs/results.md")


def comparable_previous(target: Path, target_split: Path, split: Path) -> Path | None:
    """The bundle about to be replaced, if its test numbers can be set beside the new ones: a
    model trained on another split may have trained on these test images, so it is left out."""
    if not (target / "config.json").is_file():
        return None
    if not target_split.is_file() or split_key(target_split) != split_key(split):
        print(f"{target} was trained on another split: it is replaced without a comparison")
        return None
    return target


def split_key(path: Path) -> set[tuple[str, str, str, str]]:
    """Which image went to which split, whatever folder the data was read from."""
    rows = SplitFile.load(path).rows
    return {(row["label"], row["source"], Path(row["path"]).name, row["split"]) for row in rows}


def describe_change(new: dict, previous: dict) -> str:
    """The rebuilt model against the one it replaces, on the same test images: AUROC with the
    paired interval, and the rates the threshold promises."""
    comparison = previous["compared_with_first"]  # previous minus new: turn it round
    low, high = comparison["auroc_difference_interval"] or (float("nan"),) * 2
    gain, low, high = 0.0 - comparison["auroc_difference"], 0.0 - high, 0.0 - low  # no "-0.0000"
    change = [f"AUROC {gain:+.4f} (95% interval {low:+.4f} to {high:+.4f})"]
    for key in ("ece", "false_positive_rate", "true_positive_rate", "accuracy"):
        change.append(f"{key} {previous['metrics'][key]:.4f} -> {new['metrics'][key]:.4f}")
    return f"against the model it replaces, on {comparison['n']} test images: " + "; ".join(change)


if __name__ == "__main__":
    main()
