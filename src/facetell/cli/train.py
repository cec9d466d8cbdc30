"""`facetell train` and `facetell models`: train a detector from folders or a manifest."""

from __future__ import annotations

import json
import shlex
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from facetell.cli.common import (
    LoggedProgress,
    app,
    console,
    err_console,
    fail,
    first_names,
    first_pair,
    given_both_ways,
    interrupted_says,
    note_skipped,
    refuse_output_in_class_folder,
    same_bytes,
    writable,
)
from facetell.errors import FacetellError
from facetell.io import printable_name

if TYPE_CHECKING:
    from facetell.train.config import TrainConfig
    from facetell.train.runs import RunResult
    from facetell.train.trainer import EpochRecord


class RichReporter:
    """`train.Reporter` drawn with rich: a bar per stage and epoch with ETA, a row per epoch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.told_imbalance = False  # once, not once per fold or hold-out

    def _task(self, key: str, description: str, total: int) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total)
        task = self.tasks[key]
        self.progress.update(task, description=description, total=total)
        return task

    def stage(self, name: str, done: int, total: int) -> None:
        self.progress.advance(self._task(name, name, total), done)

    def batch(self, description: str, done: int, total: int) -> None:
        task = self._task("batch", description, total)
        self.progress.update(task, completed=done)

    def skipped(self, paths: list[Path]) -> None:
        note_skipped(paths, self.progress.console)

    def unreadable(self, reasons: dict[Path, str]) -> None:
        by_reason: dict[str, list[Path]] = {}
        for path, reason in reasons.items():
            by_reason.setdefault(reason or "unreadable", []).append(path)
        told = "; ".join(f"{first_names(paths)}: {why}" for why, paths in by_reason.items())
        self.progress.console.print(
            f"note: {len(reasons)} image(s) could not be read and were left out: {told}",
            highlight=False,
        )

    def faceless(self, paths: list[Path]) -> None:
        self.progress.console.print(
            f"note: no face was found in {len(paths)} image(s); their centre square was trained "
            f"on instead (not images of faces? then take them out): {first_names(paths)}",
            highlight=False,
        )

    def in_both_classes(self, pairs: list[tuple[Path, Path]]) -> None:
        """Byte-identical files are one image given twice, a labelling slip; a near-copy may be
        a fake made from the photo (a face swap, an edit), which both labels fit."""
        same = [(real, ai) for real, ai in pairs if same_bytes(real, ai)]
        near = [pair for pair in pairs if pair not in same]
        if same:
            self.progress.console.print(given_both_ways(same), highlight=False)
        if near:
            self.progress.console.print(
                f"note: {len(near)} real photo(s) have a near-copy among the AI images, such as "
                f"{first_pair(near)}: a fake made from the photo fits both labels, one picture "
                "re-saved does not (each pair stays in one split; facetell audit lists them all)",
                highlight=False,
            )

    def shortcut(self, warning: str) -> None:
        self.progress.console.print(
            f"warning: {warning}; facetell audit on the data says which facts give it away",
            highlight=False,
        )

    def imbalanced(self, n_real: int, n_ai: int) -> None:
        if self.told_imbalance:
            return
        self.told_imbalance = True
        self.progress.console.print(
            f"note: the training split holds {n_real} real and {n_ai} AI images; --set "
            "class_balance=true draws both classes equally often",
            highlight=False,
        )

    def epoch(self, record: EpochRecord) -> None:
        adversary = ""
        if record.adversary_accuracy is not None:
            adversary = f"  source guessed {record.adversary_accuracy:.3f}"
        self.progress.console.print(
            f"phase {record.phase + 1} {record.kind:<11} epoch {record.epoch:>3}  "
            f"train loss {record.train_loss:.4f}  val loss {record.val_loss:.4f}  "
            f"val AUROC {record.val_auroc:.4f}  val acc {record.val_accuracy:.4f}  "
            f"lr {record.lr:.2e}  {record.seconds:.1f}s{adversary}",
            highlight=False,
        )


@app.command("train")
def train_command(
    config_path: str | None = typer.Argument(
        None,
        metavar="CONFIG",
        help="YAML config, or a shipped recipe by name: default-lite0 (the default; the shipped "
        "model's first member), default-tight (its second), default.",
        show_default=False,
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config key: a.b=value (YAML; a number picks a list item: "
        "phases.1.epochs=5).",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run folder (default: runs/ + the config's name)."
    ),
    data: list[Path] = typer.Option(
        [], help="Dataset folders or manifests (replace the config's)."
    ),
    folds: int | None = typer.Option(None, min=3, help="K-fold cross-validation."),
    holdout_source: str | None = typer.Option(
        None, help="Leave this source (AI or real) out, test only; 'all': each AI source in turn."
    ),
    resume: bool = typer.Option(
        False,
        help="Continue from the run folder's last checkpoint, with the settings the run started "
        "with (--out RUN --resume alone reads them).",
    ),
    overwrite: bool = typer.Option(
        False, help="Replace a run the folder already holds (refused without this or --resume)."
    ),
) -> None:
    """Train a detector; writes checkpoints, history (JSONL + PNG), metrics and a model bundle."""
    from facetell.train.runs import check_run_folder, summarise_runs

    if resume and overwrite:
        raise fail("--resume continues the run folder's run and --overwrite replaces it: give one")
    if config_path is not None and Path(config_path).is_dir():
        # the dataset where the recipe goes (`train faces/`), or a second one after one --data
        command = " ".join(f"--data {shlex.quote(str(path))}" for path in [*data, config_path])
        raise fail(
            f"{printable_name(config_path)}: a folder, not a config; to train on it: "
            f"facetell train {command}"
        )
    try:
        config = _training_config(config_path, data, overrides, folds, holdout_source, out, resume)
        out_dir = out or Path("runs") / config.name
        refuse_output_in_class_folder(out_dir, config.data.paths)
        writable(out_dir, "--out", folder=True)
        # answered before torch is imported (seconds); `train` checks again for API callers
        check_run_folder(config, out_dir, resume=resume, overwrite=overwrite)
        progress = LoggedProgress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        )
        with interrupted_says(lambda: interrupted_training(out_dir)), progress:
            from facetell.train.trainer import train

            results = train(
                config, out_dir, resume=resume, overwrite=overwrite, reporter=RichReporter(progress)
            )
    except FacetellError as error:
        raise fail(str(error)) from None
    console.print(_results_table(config, results))
    note_given_split(results[0][1].metrics)
    note_small_test_splits(results, test_share=config.data.fractions[2])
    if len(results) > 1:
        summary = summarise_runs(results)
        console.print(
            f"test AUROC {summary['test_auroc_mean']:.4f} ± {summary['test_auroc_std']:.4f}, "
            f"accuracy {summary['test_accuracy_mean']:.4f} ± {summary['test_accuracy_std']:.4f}"
        )
    console.print(f"bundle(s) and history under {out_dir}")
    if len(results) == 1:  # one line, to copy
        console.print(_next_steps(results[0][1]), highlight=False, soft_wrap=True)


def _training_config(
    config_path: Path | None,
    data: list[Path],
    overrides: list[str],
    folds: int | None,
    holdout_source: str | None,
    out: Path | None,
    resume: bool,
) -> TrainConfig:
    """The recipe with the command's settings on it (or, for `--out RUN --resume` alone, the
    run's own), refused at once when its data is not there."""
    from facetell.train.config import is_shipped_recipe, load_config, resolve_recipe
    from facetell.train.runs import saved_config

    extra = [*overrides]
    if data:
        extra.append(f"data.paths={json.dumps([str(p) for p in data])}")
    if folds:
        extra.append(f"data.folds={folds}")
    if holdout_source:
        extra.append(f"data.holdout_source={holdout_source}")
    recipe = resolve_recipe(config_path)
    # `train --out runs/x --resume`: the run's own settings, not the default recipe's
    alone = resume and out is not None and not (config_path or extra)
    saved = saved_config(out) if alone else None
    config = saved or load_config(recipe, extra)
    missing = [path for path in config.data.paths if not Path(path).exists()]
    if missing and not data:
        where = (
            f"the data.paths {out} was trained on"
            if saved
            else "the recipe's data.paths"
            if is_shipped_recipe(recipe)
            else f"data.paths of {recipe}, looked for from here and from its folder"
        )
        raise FacetellError(
            f"{missing[0]}: no such folder or manifest CSV ({where}); give your data with "
            "--data DIR"
        )
    return config


def _results_table(config: TrainConfig, results: list[tuple[str, RunResult]]) -> Table:
    """One row per run (one, or one per fold): its validation, test and held-out numbers."""
    table = Table(title=f"facetell train: {config.name} ({config.model})")
    columns = ("run", "val AUROC", "test AUROC", "test images", "test acc", "held-out AUROC")
    for column in (*columns, "seconds"):
        table.add_column(column)

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    for name, result in results:
        metrics = result.metrics
        test = metrics.get("test", {})
        table.add_row(
            name or "main",
            number(metrics.get("val", {}).get("auroc")),
            number(test.get("auroc")),
            str(test.get("n", "-")),
            number(test.get("accuracy")),
            number(metrics.get("holdout_auroc")),
            f"{result.seconds:.0f}",
        )
    return table


def _next_steps(result: RunResult) -> str:
    """The commands that make one run's raw scores probabilities and measure them."""
    bundle = shlex.quote(str(result.bundle_dir))
    split_file = shlex.quote(str(result.out_dir / "split.json"))
    measure = (
        f"facetell evaluate {bundle} --split-file {split_file}"
        if "test" in result.metrics
        else f"facetell evaluate {bundle} on other labelled data (the split has no test part)"
    )
    return (
        f"next: facetell calibrate {bundle} --split-file {split_file} (its P(ai) are raw "
        f"scores until then), then {measure}"
    )


def interrupted_training(out_dir: Path) -> str:
    """What a Ctrl-C kept and the command that goes on from it (without an --overwrite that
    would wipe it): a run checkpoints after every epoch."""
    from facetell.train.runs import earlier_runs

    if not earlier_runs(out_dir):
        return f"training had not begun; nothing was saved in {out_dir}"
    again = [arg for arg in sys.argv[1:] if arg != "--overwrite"]
    again += [] if "--resume" in again else ["--resume"]
    return (
        f"{out_dir} keeps every finished epoch: `{shlex.join(['facetell', *again])}` goes on "
        "from the last"
    )


def note_given_split(metrics: dict[str, Any]) -> None:
    """Say that the data's own train/ val/ test/ folders (or split column) were kept, or that
    --folds or --holdout-source drew their own instead."""
    names = {"train": "training", "val": "validation", "test": "test"}
    if unused := metrics.get("given_unused"):
        drawn = "--holdout-source" if metrics.get("split") == "leave_one_source_out" else "--folds"
        err_console.print(
            f"note: the data's own split ({', '.join(names[part] for part in unused)}) was not "
            f"used: {drawn} draws its own over all of the data",
            highlight=False,
        )
        return
    given = metrics.get("given")
    if metrics.get("split") != "given" or not given:
        return
    lacking = [names[part] for part in ("train", "val", "test") if part not in given]
    pool = "its training images" if "train" in given else "its images in none of them"
    drawn = f"; {' and '.join(lacking)} drawn from {pool}" if lacking else ""
    err_console.print(
        f"note: kept the data's own split ({', '.join(names[part] for part in given)}){drawn}",
        highlight=False,
    )


SMALL_SPLIT = 30  # images of a class below which a split's AUROC swings by tenths


def note_small_test_splits(results: Sequence[tuple[str, RunResult]], test_share: float) -> None:
    """A test AUROC of 1.0 on 4 images says little, and a test split too few images left empty
    gives none; say so where the numbers are read, once for the folds alike."""
    alike: dict[tuple[int, int] | None, list[str]] = defaultdict(list)
    for name, result in results:
        test = result.metrics.get("test")
        if test is None:
            alike[None].append(name)
        elif min(test["n_real"], test["n_ai"]) < SMALL_SPLIT:
            alike[(test["n_real"], test["n_ai"])].append(name)
    folded = any(result.metrics.get("split") == "kfold" for _, result in results)
    for counts, names in alike.items():
        runs = f"{', '.join(names)}: " if any(names) else ""
        if counts is None and test_share == 0:
            err_console.print(
                f"note: {runs}no test split (data.fractions gives it a share of 0), so there are "
                "no test numbers",
                highlight=False,
            )
            continue
        if counts is None:
            said = "the test split is empty: too few images to hold some out, so there are no "
            said, folds = said + "test numbers", "--folds 3 to test every image once"
        else:
            said = (
                f"the test split holds {counts[0]} real and {counts[1]} AI images; with under "
                f"{SMALL_SPLIT} of a class its AUROC and accuracy can move by tenths on another "
                "draw"
            )
            folds = "--folds 5 to average over folds"
        advice = "(more data)" if folded else f"(more data, or {folds})"
        err_console.print(f"note: {runs}{said} {advice}", highlight=False)


@app.command("models")
def models_command(
    pattern: str = typer.Argument(
        "*",
        help="Shell-style name pattern (efficientnet_*); a plain word finds names that hold it "
        "(lite).",
    ),
) -> None:
    """List the registered model architectures: size, ImageNet weights, what each is."""
    import torch

    from facetell.models import BadModelArguments, create_model, model_entries
    from facetell.train.trainer import phases_it_runs

    wildcard = any(character in pattern for character in "*?[")
    entries = model_entries(pattern if wildcard else f"*{pattern}*")
    if not entries:
        raise fail(f"no registered model matches {pattern!r} (try `facetell models`)")
    table = Table(title="facetell models", caption="train one: --set model=NAME in a config")
    for column in ("name", "parameters", "ImageNet weights", "phases", "what it is"):
        table.add_column(column, overflow="fold")
    missing = Text.assemble(("missing", "red"), " (make setup)")
    weights = {True: "installed", False: missing, None: "none needed"}
    for entry in entries:
        try:
            with torch.device("meta"):  # shapes only: no weights drawn or read
                model = create_model(entry.name)
            count = sum(p.numel() for p in model.parameters())
            parameters = f"{count / 1e6:.2f} M" if count >= 10_000 else f"{count:,}"
            phases = ", ".join(phases_it_runs(model))
        except BadModelArguments:  # an ensemble is built from its members' bundles
            parameters, phases = "its members'", "none: facetell ensemble"
        table.add_row(
            entry.name, parameters, weights[entry.weights_installed], phases, entry.summary
        )
    console.print(table)
