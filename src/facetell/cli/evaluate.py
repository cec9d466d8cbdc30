"""`facetell evaluate`: score bundles on labelled data and write the report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from facetell.bundle import bundle_path
from facetell.cli.common import (
    app,
    console,
    describe_not_scored,
    err_console,
    fail,
    interrupted_says,
    load_named_first,
    no_face_detect_option,
    note_labelled_both_ways,
    progress_bar,
    refuse_output_in_class_folder,
    select_samples,
    threshold_option,
    writable,
    writing,
)
from facetell.data import Sample
from facetell.errors import FacetellError
from facetell.inference import Detector
from facetell.io import DATASET_LIMITS

if TYPE_CHECKING:
    from facetell.evaluate import Evaluation


def _stage_progress(progress: Progress) -> Callable[[str, int, int], None]:
    tasks: dict[str, TaskID] = {}

    def advance(stage: str, n: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.advance(tasks[stage], n)

    return advance


def _with_interval(metrics: dict[str, Any], key: str) -> str:
    """The value and its 95% interval, as "0.9821 (0.9768-0.9869)"; ECE with what a perfectly
    calibrated model could still show on the same images."""
    value = metrics.get(key)
    if value is None:
        return "-"
    if key == "ece":
        return f"{value:.4f} (calibrated: ≤ {metrics['ece_if_calibrated']:.4f})"
    return _value_and_interval(value, metrics.get("intervals", {}).get(key))


def _value_and_interval(value: float, interval: Sequence[float] | None) -> str:
    return f"{value:.4f}" + (f" ({interval[0]:.4f}-{interval[1]:.4f})" if interval else "")


def _worst_real_source(evaluation: Evaluation) -> str:
    """The real source with the highest false-positive rate, the rate the calibration's
    --max-fpr rule holds on each source, as "0.0061 (0.0011-0.0335) ffhq-140k"."""
    rows = [r for r in evaluation.sources if r.get("false_positive_rate") is not None]
    if not rows:
        return "-"
    worst = max(rows, key=lambda row: row["false_positive_rate"])
    rate = _value_and_interval(
        worst["false_positive_rate"], worst.get("false_positive_rate_interval")
    )
    return f"{rate} {worst['source']}"


def _sources_table(evaluation: Evaluation) -> Table:
    """Each source of the first bundle's evaluation: how well it is told from the other
    class, and how often its faces are called AI (for a real source, its false-positive rate)."""
    table = Table(
        title=f"by source: {evaluation.bundle}",
        caption="AUROC of each source against every image of the other class",
    )
    for column in ("source", "class", "scored", "AUROC (95% interval)", "called AI", "uncertain"):
        table.add_column(column)
    for row in evaluation.sources:
        real = row["label"] == "real"
        auroc = row.get("auroc_vs_ai" if real else "auroc_vs_real")
        ranked = "-" if auroc is None else _value_and_interval(auroc, row.get("auroc_interval"))
        rate = row.get("false_positive_rate" if real else "accuracy")  # None: none scored
        interval = row.get("false_positive_rate_interval" if real else "accuracy_interval")
        called_ai = "-" if rate is None else _value_and_interval(rate, interval)
        uncertain = "-" if row.get("uncertain") is None else f"{row['uncertain']:.4f}"
        table.add_row(row["source"], row["label"], str(row["scored"]), ranked, called_ai, uncertain)
    return table


@app.command("evaluate")
def evaluate_command(
    bundle: Path = typer.Argument(..., help="Model bundle to evaluate."),
    data: list[Path] = typer.Argument(None, help="Labelled dataset folders or manifests."),
    split_file: Path | None = typer.Option(None, help="Score one split of a saved split.json."),
    split: str | None = typer.Option(
        None,
        help="Which split: of --split-file (default: test), or of the data's own train/ val/ "
        "test/ folders or split column (default: all of the data).",
        show_default=False,
    ),
    limit: int | None = typer.Option(None, min=1, help="Score a seeded sample of this many."),
    no_face_detect: bool = no_face_detect_option(),
    exclude_seen: bool = typer.Option(
        False,
        "--exclude-seen",
        help="Leave out the images a bundle was trained or validated on (byte-identical files; "
        "bundles record them), which flatter it.",
    ),
    compare: list[Path] = typer.Option(
        [], help="More bundles to put side by side.", rich_help_panel="Model"
    ),
    threshold: float | None = threshold_option("Model"),
    out: Path = typer.Option(
        Path("report"),
        "--out",
        "-o",
        help="Folder for report.html, metrics and plots.",
        rich_help_panel="Report",
    ),
    robustness_limit: int = typer.Option(
        400, min=0, help="Images in the robustness sweep (0 skips it).", rich_help_panel="Report"
    ),
    resamples: int = typer.Option(
        1000,
        min=0,
        help="Bootstrap draws for the 95% intervals of AUROC, AP, EER, balanced accuracy, "
        "robustness drops and --compare differences (0 leaves those out; rates always get a "
        "Wilson interval).",
        rich_help_panel="Report",
    ),
    explain: bool = typer.Option(
        True,
        help="Draw the heat maps of the high-confidence mistakes into the report's gallery "
        "(imports torch: a few seconds).",
        rich_help_panel="Report",
    ),
) -> None:
    """Evaluate bundles on labelled data: metrics, plots, robustness and an HTML report.

    Every metric carries a 95% interval; bundles given with --compare are set beside the first
    with a paired interval for their AUROC difference."""
    refuse_output_in_class_folder(out, data or [])
    refuse_same_bundle_twice([bundle, *compare])
    writable(out, "--out", folder=True)
    try:
        options = {"detect_faces": not no_face_detect, "threshold": threshold}
        detectors = [
            load_named_first(bundle, data, "evaluate default", **options),
            *(Detector.load(path, limits=DATASET_LIMITS, **options) for path in compare),
        ]
        samples = select_samples(data or [], split_file, split, limit, default_split="test")
        # scipy and scikit-learn: a second, spent once the model and the data are found
        from facetell.evaluate import describe_seen, fingerprints_of
        from facetell.report import write_report

        fingerprints = fingerprints_of(samples)
        note_labelled_both_ways(samples, fingerprints, "one of each pair is scored a mistake")
        if exclude_seen:
            samples, fingerprints = leave_out_seen(detectors, samples, fingerprints)
        with interrupted_says(lambda: f"no report was written to {out}"):
            evaluations = _evaluate_each(
                detectors,
                samples,
                fingerprints,
                robustness_limit=robustness_limit,
                resamples=resamples,
                explain=explain,
            )
        with writing(out):
            report = write_report(evaluations, out, [str(p) for p in (data or [split_file])])
    except FacetellError as error:
        raise fail(str(error)) from None
    console.print(_metrics_table(evaluations))
    console.print(_sources_table(evaluations[0]))
    _print_comparisons(evaluations)
    for evaluation in evaluations:
        if note := describe_seen(evaluation.seen_in_training, len(samples)):
            err_console.print(
                f"note: {evaluation.bundle}: {note}; --exclude-seen leaves them out",
                highlight=False,
            )
    if left_out := describe_not_scored(evaluations[0].scored).strip():  # what n leaves out
        err_console.print(
            f"note: {left_out}; {out / 'predictions.csv'} says why for each", highlight=False
        )
    console.print(f"report: {report}")


def refuse_same_bundle_twice(bundles: Sequence[Path]) -> None:
    """A bundle compared with itself has an AUROC difference of 0 by construction: refuse it,
    whether given twice by one name or by two (a folder and its .zip's, a link)."""
    named: dict[Path, Path] = {}  # each bundle's file or folder, by the name it was given
    for given in bundles:
        found = bundle_path(given).resolve()
        if found in named:
            twice = "given twice" if given == named[found] else f"the same bundle as {named[found]}"
            raise fail(f"{given}: {twice}; --compare another one")
        named[found] = given


def _evaluate_each(
    detectors: Sequence[Detector],
    samples: list[Sample],
    fingerprints: list[bytes | None],
    *,
    robustness_limit: int,
    resamples: int,
    explain: bool,
) -> list[Evaluation]:
    """Every bundle on the same samples, then the later ones' paired AUROC differences from
    the first; two runs of one recipe share a name, so theirs gain their paths."""
    from facetell.evaluate import compare_auroc, evaluate_bundle

    evaluations = []
    with progress_bar(transient=False) as progress:
        for detector in detectors:
            progress.console.print(f"evaluating {detector.model_name} on {len(samples)} images")
            evaluations.append(
                evaluate_bundle(
                    detector,
                    samples,
                    robustness_limit=robustness_limit,
                    resamples=resamples,
                    on_progress=_stage_progress(progress),
                    fingerprints=fingerprints,
                    explain_mistakes=explain,
                )
            )
    names = Counter(evaluation.bundle for evaluation in evaluations)
    for evaluation in evaluations:
        if names[evaluation.bundle] > 1:
            evaluation.bundle = f"{evaluation.bundle} ({evaluation.bundle_path})"
    for evaluation in evaluations[1:]:
        evaluation.comparison = compare_auroc(evaluations[0], evaluation, resamples)
    return evaluations


def _metrics_table(evaluations: Sequence[Evaluation]) -> Table:
    """One column per bundle: each metric with its 95% interval, and the cut they are taken at."""
    table = Table(
        title="facetell evaluate",
        caption="in brackets: 95% interval; for ECE, the 95th percentile a perfectly calibrated "
        "model would show on these images",
    )
    table.add_column("metric")
    for evaluation in evaluations:
        table.add_column(evaluation.bundle)
    for key in (
        "accuracy",
        "balanced_accuracy",
        "auroc",
        "average_precision",
        "eer",
        "ece",
        "false_positive_rate",
        "true_positive_rate",
        "uncertain_fraction",
        "accuracy_when_decided",  # accuracy counts an uncertain face by its side of the threshold
    ):
        table.add_row(key, *[_with_interval(e.metrics, key) for e in evaluations])
    table.add_row("false_positive_rate, worst source", *map(_worst_real_source, evaluations))
    for row, truth in enumerate(("real", "AI")):  # the verdicts users see, uncertain among them
        table.add_row(
            f"{truth} images: real / uncertain / ai",
            *[_verdict_counts(e.metrics, row) for e in evaluations],
        )
    table.add_row(  # the cut the rates and accuracies above are taken at
        "threshold (uncertain band)",
        *[
            f"{e.threshold:.4f} ({e.band[0]:.3f}-{e.band[1]:.3f})"
            + ("" if e.calibrated_threshold is None else ", given")
            for e in evaluations
        ],
    )
    return table


def _verdict_counts(metrics: dict[str, Any], row: int) -> str:
    """One row of the verdict matrix as "616 / 42 / 1"; "-" without an uncertain band."""
    matrix = metrics.get("confusion_matrix_verdicts")
    return " / ".join(map(str, matrix[row])) if matrix else "-"


def _print_comparisons(evaluations: Sequence[Evaluation]) -> None:
    """Each compared bundle's AUROC difference from the first, pooled and by source."""
    from facetell.report import describe_comparison

    for evaluation in evaluations[1:]:
        comparison = describe_comparison(evaluation.bundle, evaluation.comparison)
        console.print(comparison, highlight=False, soft_wrap=True)
        for source, row in evaluation.comparison["by_source"].items():
            difference, interval = row["auroc_difference"], row["auroc_difference_interval"]
            within = f" ({interval[0]:+.4f} to {interval[1]:+.4f})" if interval else ""
            console.print(
                f"  {source}: " + ("-" if difference is None else f"{difference:+.4f}{within}"),
                highlight=False,
            )


def leave_out_seen(
    detectors: Sequence[Detector], samples: list[Sample], fingerprints: list[bytes | None]
) -> tuple[list[Sample], list[bytes | None]]:
    """The samples no bundle was trained or validated on, so compared bundles still score
    the same images; says how many were left out."""
    records = [d.bundle.training_images for d in detectors if d.bundle.training_images]
    if len(records) < len(detectors):
        silent = next(d for d in detectors if d.bundle.training_images is None)
        err_console.print(
            f"note: {silent.model_name} ({silent.bundle.path}) records no training images "
            "(made before facetell kept them), so --exclude-seen cannot leave out what it saw",
            highlight=False,
        )
    kept = [
        i for i, fingerprint in enumerate(fingerprints)
        if all(record.split_of(fingerprint) is None for record in records)
    ]  # fmt: skip
    if not kept:
        raise FacetellError(
            f"all {len(samples)} images are ones the model was trained or validated on; "
            "evaluate on images it never saw (a run's split.json --split test)"
        )
    if len(kept) < len(samples):
        err_console.print(
            f"note: left out {len(samples) - len(kept)} of {len(samples)} images that a bundle "
            "was trained or validated on",
            highlight=False,
        )
    return [samples[i] for i in kept], [fingerprints[i] for i in kept]
