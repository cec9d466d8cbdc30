"""The `facetell` command line: a thin door that parses, calls the library and renders."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from facetell import __version__
from facetell.audit import AuditReport, audit
from facetell.data import NEAR_DUPLICATE_DISTANCE, build_manifest, discover, duplicate_groups
from facetell.data import write_manifest as save_manifest_csv
from facetell.errors import FacetellError

app = typer.Typer(
    name="facetell",
    help="Tell real face photographs from AI-generated faces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (files, CI logs) gets a wide fixed width so tables stay one row per line.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)


class AuditFormat(StrEnum):
    table = "table"
    json = "json"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def progress_bar(transient: bool = True) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        console.print(f"facetell {__version__}")
        raise typer.Exit()


def _render_audit(report: AuditReport) -> None:
    table = Table(title="facetell audit: what differs between classes and sources besides faces")
    for column in (
        "class",
        "source",
        "n",
        "formats",
        "median size",
        "sides",
        "JPEG q",
        "chroma",
        "bytes/px",
        "border",
        "dark corners",
        "dups in/x-class",
        "shortcut",
    ):
        table.add_column(column, no_wrap=column in ("source", "median size"))
    for row in [*report.by_class, *report.by_source]:
        quality = "lossless"
        if row.jpeg_quality_median is not None and row.jpeg_quality_range is not None:
            low, high = row.jpeg_quality_range
            quality = f"{row.jpeg_quality_median:.0f} ({low}-{high})"
        table.add_row(
            row.label,
            row.source,
            str(row.n),
            ", ".join(f"{k} {v}" for k, v in row.formats.items()),
            f"{row.median_width:.0f}x{row.median_height:.0f}",
            f"{row.min_side}-{row.max_side} ({row.distinct_sizes} sizes)",
            quality,
            ", ".join(row.subsampling),
            f"{row.bytes_per_pixel_median:.3f}",
            f"{row.border_fraction_mean:.3f}",
            f"{row.dark_corner_fraction_mean:.2f}",
            f"{row.duplicates_within} / {row.duplicates_across_classes}",
            "-" if row.shortcut_auroc is None else f"{row.shortcut_auroc:.3f}",
            end_section=row.source == "(all)" and row is report.by_class[-1],
        )
    console.print(table)
    score = "-" if report.shortcut_score is None else f"{report.shortcut_score:.3f}"
    console.print(
        f"{report.n_images} images, {report.n_unreadable} unreadable, "
        f"{report.duplicate_groups} duplicate groups, "
        f"{len(report.cross_class_groups)} crossing classes. "
        f"[bold]Shortcut score[/] (cross-validated AUROC from metadata alone): [bold]{score}[/]"
    )
    top = list(report.feature_importance.items())[:5]
    if top:
        console.print(
            "Most revealing single facts (AUROC alone): "
            + ", ".join(f"{name} {auc:.2f}" for name, auc in top)
        )
    for warning in report.warnings:
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)


@app.command("audit")
def audit_command(
    data: list[Path] = typer.Argument(..., help="Dataset folders (real/ + ai/) or manifest CSVs."),
    output_format: AuditFormat = typer.Option(AuditFormat.table, "--format", "-f"),
    workers: int = typer.Option(2, min=1, help="Processes that hash and measure images."),
    near_duplicate_bits: int = typer.Option(
        NEAR_DUPLICATE_DISTANCE, help="Perceptual-hash bits (of 256) within which images are one."
    ),
    save_manifest: Path | None = typer.Option(
        None, help="Also write the per-file manifest (sha256, size, JPEG quality...) as CSV."
    ),
    seed: int = typer.Option(0, help="Seed of the cross-validation folds."),
) -> None:
    """Audit datasets for shortcuts: per class and source, every fact that is not a face."""
    try:
        samples = discover(data)
    except FacetellError as error:
        raise fail(str(error)) from None
    with progress_bar() as progress:
        task = progress.add_task("hashing images", total=len(samples))
        records = build_manifest(
            samples, workers=workers, on_progress=lambda n: progress.advance(task, n)
        )
    groups = duplicate_groups(records, max_distance=near_duplicate_bits)
    report = audit(records, groups, seed=seed)
    if save_manifest:
        save_manifest_csv(records, save_manifest)
    if output_format is AuditFormat.json:
        console.print_json(json.dumps(asdict(report)))
        for warning in report.warnings:
            err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    else:
        _render_audit(report)
