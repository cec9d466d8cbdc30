"""Run folders: what a run writes, the settings it started with, and when an earlier run in the
folder is continued, replaced or refused (all before torch is imported)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from facetell.errors import FacetellError
from facetell.train.config import TrainConfig, parse_yaml


@dataclass
class RunResult:
    out_dir: Path
    bundle_dir: Path
    metrics: dict[str, Any]
    seconds: float


def plot_history(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss, accuracy and AUROC per epoch, phases marked: the picture of a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(history) + 1)
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, [h["train_loss"] for h in history], "o-", label="train")
    axes[0].plot(steps, [h["val_loss"] for h in history], "o-", label="validation")
    axes[0].set_title("loss (BCE)")
    axes[0].legend()
    axes[1].plot(steps, [h["val_accuracy"] for h in history], "o-", color="C2")
    axes[1].set_title("validation accuracy")
    axes[2].plot(steps, [h["val_auroc"] for h in history], "o-", color="C3")
    axes[2].set_title("validation AUROC")
    boundaries = [
        i + 0.5 for i in range(1, len(history)) if history[i]["phase"] != history[i - 1]["phase"]
    ]
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        for boundary in boundaries:
            axis.axvline(boundary, color="grey", linestyle="--", linewidth=1)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summarise_runs(results: Sequence[tuple[str, RunResult]]) -> dict[str, Any]:
    """Mean ± std of test AUROC/accuracy over folds, and each held-out source's AUROC."""
    summary: dict[str, Any] = {"runs": {}}
    aurocs, accuracies = [], []
    for name, result in results:
        test = result.metrics.get("test", {})
        summary["runs"][name or "main"] = {
            "test_auroc": test.get("auroc"),
            "test_accuracy": test.get("accuracy"),
            "holdout_auroc": result.metrics.get("holdout_auroc"),
            "seconds": result.seconds,
        }
        if test:
            aurocs.append(test["auroc"])
            accuracies.append(test["accuracy"])
    if aurocs:
        summary["test_auroc_mean"] = float(np.mean(aurocs))
        summary["test_auroc_std"] = float(np.std(aurocs))
        summary["test_accuracy_mean"] = float(np.mean(accuracies))
        summary["test_accuracy_std"] = float(np.std(accuracies))
    return summary


# What `fit` and `train` write into a run folder: removed by `overwrite`, nothing else is.
RUN_FILES = ("config.yaml", "split.json", "history.jsonl", "history.png", "metrics.json")
RUN_FOLDERS = ("checkpoints", "bundle")


def earlier_runs(out_dir: Path) -> list[Path]:
    """Run folders an earlier `train` left in out_dir: itself, or its folds and held-out runs."""
    candidates = [out_dir, *sorted(out_dir.glob("fold-*")), *sorted(out_dir.glob("holdout-*"))]
    return [path for path in candidates if (path / "config.yaml").is_file()]


# Settings that say how a run is computed on this machine, not what it learns: a resumed run
# may change them (fewer loader workers on a busier machine, another cache folder).
MACHINE_SETTINGS = ("workers", "threads", "cache_dir")


def saved_config(out_dir: Path) -> TrainConfig | None:
    """The settings the run in out_dir started with (its first run's config.yaml), if any."""
    runs = earlier_runs(out_dir)
    if not runs:
        return None
    path = runs[0] / "config.yaml"
    try:
        return TrainConfig.model_validate(parse_yaml(path.read_text(encoding="utf-8"), str(path)))
    except (OSError, UnicodeDecodeError, ValidationError) as error:
        why = f"cannot read the run's settings ({error}); --overwrite starts again"
        raise FacetellError(f"{path}: {why}") from None


def changed_settings(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted names of the settings whose values differ between two config dumps."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            changed
            for key in dict.fromkeys([*before, *after])
            for changed in changed_settings(before.get(key), after.get(key), f"{prefix}{key}.")
        ]
    return [] if before == after else [prefix.removesuffix(".")]


def refuse_a_changed_resume(config: TrainConfig, out_dir: Path) -> None:
    """A resumed run must go on as it started: another model failed to load its checkpoint with
    a traceback, and other phases or data quietly trained a mix of two recipes."""
    saved = saved_config(out_dir)
    if saved is None:
        return
    changed = [
        name
        for name in changed_settings(saved.model_dump(mode="json"), config.model_dump(mode="json"))
        if name not in MACHINE_SETTINGS
    ]
    if changed:
        raise FacetellError(
            f"{out_dir}: --resume goes on with the settings the run started with, and this "
            f"command changes {', '.join(changed)}; give them as they were (or --resume alone "
            "with --out), or --overwrite to start again"
        )


def clear_earlier_runs(out_dir: Path) -> None:
    """Remove what earlier runs wrote into out_dir (RUN_FILES, RUN_FOLDERS), nothing else."""
    for run_dir in earlier_runs(out_dir):
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
        if run_dir != out_dir and not any(run_dir.iterdir()):
            run_dir.rmdir()
    (out_dir / "summary.json").unlink(missing_ok=True)


def check_run_folder(config: TrainConfig, out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse what would lose or mix up training: an earlier run in out_dir that is neither
    continued (`resume`) nor replaced (`overwrite`), a resume with no run to continue (a
    mistyped --out) or with other settings (two recipes mixed). Changes nothing: `train`
    replaces a run only once every other check has passed."""
    earlier = earlier_runs(out_dir)
    if resume and not earlier:
        raise FacetellError(
            f"{out_dir}: no training run there to resume; drop --resume to start one"
        )
    if resume:
        refuse_a_changed_resume(config, out_dir)
    elif earlier and not overwrite:
        unfinished = [path for path in earlier if not (path / "metrics.json").is_file()]
        if unfinished:
            state, advice = "an unfinished", "--resume continues it, --overwrite starts again"
        else:
            state, advice = "a finished", "--overwrite replaces it"
        raise FacetellError(
            f"{out_dir}: holds {state} training run; {advice}, or give another --out"
        )
