"""`facetell audit`: every fact about a dataset that is not a face, per class and source."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from facetell.cli.common import (
    TableOrJson,
    app,
    console,
    err_console,
    fail,
    interrupted_says,
    labelled_line,
    not_written_by_us,
    note_skipped,
    progress_bar,
    writable,
    writing,
)
from facetell.data import (
    NEAR_DUPLICATE_DISTANCE,
    Sample,
    build_manifest,
    discover,
    duplicate_groups,
    refuse_repeated_datasets,
)
from facetell.data import write_manifest as save_manifest_csv
from facetell.errors import FacetellError
from facetell.io import real_path

if TYPE_CHECKING:
    from facetell.audit import AuditReport


# one table, or two in a terminal narrower than the one: (title, facts) of each
WHOLE = "facetell audit: what differs between classes and sources besides faces"
FILE_FACTS = ("n", "formats", "median size", "sides", "JPEG q", "chroma")
OTHER_FACTS = ("bytes/px", "border", "dark corners", "dups in/x-class", "shortcut")
HALVES = (
    ("facetell audit: the files of each class and source", FILE_FACTS),
    ("facetell audit: what else tells them apart", OTHER_FACTS),
)


def _audit_table(title: str, facts: tuple[str, ...], rows: list[dict[str, str]]) -> Table:
    """Rows per class, a line, then rows per source."""
    table = Table(title=title)
    columns = ("class", "source", *facts)
    for column in columns:
        table.add_column(column, no_wrap=column == "source", overflow="fold")
    classes = sum(row["source"] == "(all)" for row in rows)
    for index, row in enumerate(rows):
        table.add_row(*(row[column] for column in columns), end_section=index == classes - 1)
    return table


def _render_audit(report: AuditReport) -> None:
    from facetell.audit import SHORTCUT_FOLDS

    rows = []
    for row in [*report.by_class, *report.by_source]:
        quality = "lossless"
        if row.jpeg_quality_median is not None and row.jpeg_quality_range is not None:
            low, high = row.jpeg_quality_range
            quality = f"{row.jpeg_quality_median:.0f} ({low}-{high})"
        sizes = f"{row.distinct_sizes} size" + ("s" if row.distinct_sizes != 1 else "")
        rows.append(
            {
                "class": row.label,
                "source": row.source,
                "n": str(row.n),
                "formats": ", ".join(f"{k} {v}" for k, v in row.formats.items()),
                "median size": f"{row.median_width:.0f}x{row.median_height:.0f}",
                "sides": f"{row.min_side}-{row.max_side} ({sizes})",
                "JPEG q": quality,
                "chroma": ", ".join(row.subsampling),
                "bytes/px": f"{row.bytes_per_pixel_median:.3f}",
                "border": f"{row.border_fraction_mean:.3f}",
                "dark corners": f"{row.dark_corner_fraction_mean:.2f}",
                "dups in/x-class": f"{row.duplicates_within} / {row.duplicates_across_classes}",
                "shortcut": "-" if row.shortcut_auroc is None else f"{row.shortcut_auroc:.3f}",
            }
        )
    whole = _audit_table(WHOLE, FILE_FACTS + OTHER_FACTS, rows)
    natural = Measurement.get(console, console.options.update_width(10_000), whole).maximum
    if natural <= console.width:
        console.print(whole)
    else:  # squeezed into a narrower terminal every cell was cut ("64-5…"): two tables instead
        for title, facts in HALVES:
            console.print(_audit_table(title, facts, rows))
    score = (
        f"{report.shortcut_score:.3f}"
        if report.shortcut_score is not None
        else "- (it needs both classes)"
        if len({row.label for row in report.by_class}) < 2
        else f"- (it needs {SHORTCUT_FOLDS} distinct images of each class, near-duplicates "
        "counted once)"
    )
    console.print(
        Text.assemble(
            f"{report.n_images} images, {report.n_unreadable} unreadable, "
            f"{report.duplicate_groups} duplicate groups, "
            f"{len(report.cross_class_groups)} crossing classes, "
            f"{len(report.cross_origin_groups)} crossing datasets or splits. ",
            ("Shortcut score", "bold"),
            " (cross-validated AUROC from metadata alone): ",
            (score, "bold"),
        )
    )
    if report.own_split:
        console.print(
            "The data's own split: "
            + ", ".join(
                f"{part} {counts['real']} real + {counts['ai']} AI"
                for part, counts in report.own_split.items()
            ),
            highlight=False,
        )
    top = list(report.feature_importance.items())[:5]
    if top:
        console.print(
            "Most revealing single facts (AUROC alone): "
            + ", ".join(f"{name} {auc:.2f}" for name, auc in top)
        )
    for warning in report.warnings:
        err_console.print(labelled_line("warning:", "bold yellow", warning))


@app.command("audit")
def audit_command(
    data: list[Path] = typer.Argument(..., help="Dataset folders (real/ + ai/) or manifest CSVs."),
    output_format: TableOrJson = typer.Option(
        TableOrJson.table, "--format", "-f", help="A table to read, or JSON for scripts."
    ),
    workers: int = typer.Option(2, min=1, help="Processes that hash and measure images."),
    near_duplicate_bits: int = typer.Option(
        NEAR_DUPLICATE_DISTANCE,
        min=0,
        max=128,  # unrelated images differ in about half the bits
        help="Perceptual-hash bits (of 256) within which images are one.",
    ),
    save_manifest: Path | None = typer.Option(
        None, help="Also write the per-file manifest (sha256, size, JPEG quality...) as CSV."
    ),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed of the cross-validation folds."),
) -> None:
    """Audit datasets for shortcuts: per class and source, every fact that is not a face."""
    if save_manifest:
        given = {real_path(path) for path in data}  # `audit faces.csv --save-manifest faces.csv`
        input_file = real_path(save_manifest) in given
        if what := "an input" if input_file else not_written_by_us(save_manifest):
            raise fail(
                f"{save_manifest}: {what}; --save-manifest there would overwrite it with the "
                "manifest (name a new file)"
            )
        writable(save_manifest, "--save-manifest")
    skipped: list[Path] = []
    samples: list[Sample] = []
    origins: list[str] = []  # each image's dataset, and split if it has one
    try:
        refuse_repeated_datasets(data)
        for root in data:
            found = discover([root], skipped)
            samples += found
            origins += [f"{root}" + (f" ({s.split})" if s.split else "") for s in found]
    except FacetellError as error:
        raise fail(str(error)) from None
    note_skipped(skipped, err_console)
    with interrupted_says(lambda: "nothing was written"), progress_bar() as progress:
        task = progress.add_task("hashing images", total=len(samples))
        records = build_manifest(
            samples, workers=workers, on_progress=lambda n: progress.advance(task, n)
        )
    groups = duplicate_groups(records, max_distance=near_duplicate_bits)
    from facetell.audit import audit  # scikit-learn: a second, spent once the data is found

    report = audit(records, groups, seed=seed, origins=origins)
    if save_manifest:
        with writing(save_manifest):
            save_manifest_csv(records, save_manifest)
    if output_format is TableOrJson.json:
        console.print_json(json.dumps(asdict(report)))
        for warning in report.warnings:
            err_console.print(labelled_line("warning:", "bold yellow", warning))
    else:
        _render_audit(report)
