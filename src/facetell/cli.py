"""The `facetell` command line: a thin door that parses, calls the library and renders.

Modules that need torch, scikit-learn or matplotlib are imported inside the commands that use
them, so `facetell predict` starts without paying for training and reporting code.
"""

from __future__ import annotations

import csv
import datetime
import errno
import filecmp
import glob
import io
import ipaddress
import itertools
import json
import logging
import os
import re
import shlex
import signal
import socket
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path, PureWindowsPath
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np
import typer
from rich.console import Console
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

from facetell import __version__
from facetell.bundle import Bundle, bundle_path, copy_bundle, is_shipped_bundle, write_whole
from facetell.calibrate import (
    SMALL_FACE_WIDTH,
    THUMBNAIL_QUALITY,
    THUMBNAIL_SIZES,
    Calibration,
    SizeCorrection,
    fit_calibration,
    fit_size_correction,
)
from facetell.data import (
    MANIFEST_SUFFIXES,
    NEAR_DUPLICATE_DISTANCE,
    SPLIT_ALIASES,
    SPLITS,
    Sample,
    SplitFile,
    build_manifest,
    discover,
    duplicate_groups,
    labelled_both_ways,
    normalise_label,
    refuse_repeated_datasets,
    split_part_named,
    table_rows,
)
from facetell.data import write_manifest as save_manifest_csv
from facetell.errors import FacetellError
from facetell.familiarity import (
    DEFAULT_REFERENCE_SIZE,
    REFERENCE_THUMBNAIL,
    TEMPER_SLOPE,
    TEMPER_START,
    Familiarity,
    Reference,
    fit_familiarity,
    reference_embeddings,
    sample_indices,
)
from facetell.forensics import metadata_clues
from facetell.inference import (
    MAX_FACES,
    RECORDED_PRECISION,
    Detector,
    Result,
    stated_percent,
)
from facetell.io import (
    DATASET_LIMITS,
    DEFAULT_LIMITS,
    FORMATS_READ,
    FRAMES_HINT,
    RAW_SUFFIXES,
    VIDEO_SUFFIXES,
    DecodeLimits,
    NamedImage,
    binary_kind,
    decode,
    exists,
    file_head,
    image_files,
    is_url,
    looks_like_image,
    printable_name,
    real_path,
    text_of,
)
from facetell.review import PER_FILE, ReviewPage, page_part_number

if TYPE_CHECKING:
    from PIL import Image

    from facetell.audit import AuditReport
    from facetell.evaluate import Evaluation, ScoredSet
    from facetell.server.settings import Settings
    from facetell.train import EpochRecord, RunResult

# What a full or read-only disk raises wherever a command writes (a report, a manifest, a run)
STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})
# What a path given on the command line can raise wherever it is first looked at
PATH_ERRORS = frozenset({errno.ENAMETOOLONG, errno.ELOOP})


class Commands(typer.Typer):
    """typer's app, with a write that the disk refuses ended in one line rather than a traceback
    from deep in Pillow or matplotlib (`predict` names the file and how far it got itself), and
    a usage error in one line rather than typer's usage lines and boxed message."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:  # not standalone: click's usage errors come here, to be told in one line
            status = super().__call__(*args, **{**kwargs, "standalone_mode": False})
        except typer.TyperException as error:  # click's: a usage error, a bad value, a file
            code = getattr(error, "exit_code", 1)
            if type(error).__name__ == "NoArgsIsHelpError":  # the help screen, printed already
                raise SystemExit(code) from None
            context = getattr(error, "ctx", None)
            where = f" ({context.command_path} --help shows the usage)" if context else ""
            said = error.format_message() if hasattr(error, "format_message") else str(error)
            message = " ".join(f"{said}{where}".split())
            err_console.print(labelled_line("error:", "bold red", message))
            raise SystemExit(code) from None
        except typer.Abort:
            raise SystemExit(1) from None
        except WriteFailed as failure:  # a command that knows what it was writing
            message = f"{failure}; free space or write elsewhere"
        except OSError as error:
            if error.errno in PATH_ERRORS:  # a path argument no file can have, met anywhere
                reason = (error.strerror or str(error)).lower()
                message = f"{printable_name(str(error.filename))}: {reason} (check the path)"
            elif error.errno in STORAGE_ERRORS:
                full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
                hint = "free space or write elsewhere" if full else "write elsewhere"
                message = f"{WriteFailed(error.filename, error)}; {hint}"
            else:
                raise
        except RuntimeError as error:  # pathlib's resolve() meeting a link that leads to itself
            if not str(error).startswith("Symlink loop from "):
                raise
            looped = printable_name(str(error).removeprefix("Symlink loop from ").strip("'"))
            message = f"{looped}: symlink loop (check the path)"
        else:
            raise SystemExit(status or 0)  # typer.Exit's code, returned when not standalone
        err_console.print(labelled_line("error:", "bold red", message))
        raise SystemExit(2)


app = Commands(
    name="facetell",
    help="Tell real face photographs from AI-generated faces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)
# Piped output (files, CI logs) gets a wide fixed width so tables stay one row per line,
# unless COLUMNS says how wide (`COLUMNS=80 facetell predict x | less` had kept 160).
# No console markup: paths, file names and messages are printed as they are ("[bold]x.jpg"
# had shown as a bold x.jpg, and "a[/]b.jpg" ended in a MarkupError); styles are Text.
console = Console(
    width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160, markup=False
)
err_console = Console(stderr=True, soft_wrap=True, markup=False)


def labelled_line(label: str, style: str, text: str) -> Text:
    """An error or warning line: its label ("error:") styled, the rest as it is."""
    return Text.assemble((label, style), " ", text)


class AuditFormat(StrEnum):
    table = "table"
    json = "json"


# one flag for every command that finds faces; typer reads the same declaration for each
NO_FACE_DETECT = typer.Option(
    False, "--no-face-detect", help="Take the whole image as the face (for pre-cropped faces)."
)
THRESHOLD = typer.Option(
    None,
    min=0.0,
    max=1.0,
    help="P(ai) at or above which a face is called AI (default: the bundle's calibrated one).",
)


# calibrate and ensemble write a bundle into --out; both replace one there only when asked
OVERWRITE_BUNDLE = typer.Option(
    False, help="Replace a bundle --out already holds (refused without this)."
)


def bundle_output(out: Path, overwrite: bool) -> Path:
    """--out checked as a folder for a bundle before any work: one that already holds a bundle
    is refused unless --overwrite."""
    writable(out, "--out", folder=True)
    if (out / "config.json").is_file() and not overwrite:
        raise fail(
            f"{out}: holds a model bundle already; --overwrite replaces it, or give another --out"
        )
    return out


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line and return the exit to raise; outputs made ready for the run and
    still empty go again."""
    err_console.print(labelled_line("error:", "bold red", message))
    _remove_unused_outputs()
    return typer.Exit(code)


# Files and folders `writable` created for this command's outputs. A command that fails
# before writing into them removes them, so a mistyped bundle leaves no empty report/.
_created_for_outputs: list[Path] = []


def _remove_unused_outputs() -> None:
    """Remove what `writable` created and nothing was written into, deepest first."""
    for path in sorted(_created_for_outputs, key=lambda p: len(p.parts), reverse=True):
        with suppress(OSError):
            if path.is_file() and not path.is_symlink() and path.stat().st_size == 0:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    _created_for_outputs.clear()


class WriteFailed(Exception):
    """A write that failed once the run was under way (a disk that filled), with its file."""

    def __init__(self, target: Path | str | None, error: OSError) -> None:
        where = f"{target}: " if target else ""
        super().__init__(f"{where}cannot write ({(error.strerror or str(error)).lower()})")


@contextmanager
def writing(target: Path | str) -> Iterator[None]:
    """Name the file when a write fails: the traceback of a full disk named none. A closed
    pipe (`| head`) stays the quiet end it is."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise WriteFailed(target, error) from None


@contextmanager
def interrupted_says(what_is_left: Callable[[], str]) -> Iterator[None]:
    """A Ctrl-C in a long stage ends the command in one line saying what it leaves behind;
    typer ends it in silence (exit 130). Progress bars inside have stopped by then."""
    try:
        yield
    except KeyboardInterrupt:
        raise fail(f"interrupted; {what_is_left()}", code=130) from None


def write_failed(
    failure: WriteFailed, done: int, total: int, output: Path | None, resumable: bool
) -> typer.Exit:
    """The one line a run that could not write its results ends with, and how to go on."""
    go_on = " (then run the same command with --resume)" if output and resumable else ""
    return fail(f"{failure} after {done} of {total} image(s); free space or write elsewhere{go_on}")


def writable(path: Path, option: str, *, folder: bool = False) -> Path:
    """Check an output location before any work is done, creating missing parent folders, so a
    mistyped path costs one line instead of a finished run's results."""
    parent = path if folder else path.parent
    blocking = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = "" if blocking == path else f"{path}: "
        raise fail(f"{where}{blocking} is a file, not a folder; choose another {option}")
    if not folder and path.is_dir():
        raise fail(f"{path} is a folder; give {option} a file name")
    _created_for_outputs.extend(a for a in (parent, *parent.parents) if not a.exists())
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if not folder:
            if not path.exists():
                _created_for_outputs.append(path)
            path.open("a").close()
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise fail(f"{path}: cannot write there ({reason}); choose another {option}") from None
    return path


PROGRESS_EVERY_S = 60.0  # redirected, a running task says where it is this often


class LoggedProgress(Progress):
    """rich's bars on a terminal. Redirected (a CI log, nohup) they are off, as they left a
    blank line before each message; there a task says where it is every `every_s` seconds
    instead, or an evaluation of 8,000 images said nothing for ten minutes."""

    def __init__(self, *columns: Any, every_s: float = PROGRESS_EVERY_S, **options: Any) -> None:
        super().__init__(*columns, **options)
        self.every_s = every_s
        self.last_said = self.get_time()

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self.say_where(task_id)

    def update(self, task_id: TaskID, **changes: Any) -> None:
        super().update(task_id, **changes)
        self.say_where(task_id)

    def say_where(self, task_id: TaskID) -> None:
        """One line, "scoring: 1200 of 8000 (about 9 min left)", when it is time for one."""
        now = self.get_time()
        if not self.disable or now - self.last_said < self.every_s:
            return  # checked first: this runs on every step of every task
        task = next(task for task in self.tasks if task.id == task_id)
        if not task.visible:
            return
        self.last_said = now
        done = f"{task.completed:.0f}" + ("" if task.total is None else f" of {task.total:.0f}")
        if left := task.time_remaining:
            done += (
                f" (about {left / 60:.0f} min left)"
                if left >= 90
                else f" (about {left:.0f} s left)"
            )
        self.console.print(f"{task.description}: {done}", highlight=False)


def refuse_output_in_class_folder(out: Path, data: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse an --out inside a class folder of the data (data/real/report): the next train or
    evaluate of that data would take its plots for photos of that class."""
    where = out.resolve()
    for root in map(Path, data):
        if not root.is_dir() or not where.is_relative_to(root.resolve()):
            continue
        inside = where.relative_to(root.resolve()).parts
        labelled = next((i for i, part in enumerate(inside) if normalise_label(part)), None)
        if labelled is not None:
            folder = root.joinpath(*inside[: labelled + 1])
            raise fail(
                f"{out}: inside {folder}, a class folder of the data, where its images would be "
                "read as photos of that class next time; choose an --out outside it"
            )


def progress_bar(transient: bool = True) -> LoggedProgress:
    return LoggedProgress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,  # redirected, rich would leave a blank line
    )


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        console.print(f"facetell {__version__}")
        raise typer.Exit()


def _render_audit(report: AuditReport) -> None:
    from facetell.audit import SHORTCUT_FOLDS

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
            f"{row.min_side}-{row.max_side} ({row.distinct_sizes} size"
            + ("s)" if row.distinct_sizes != 1 else ")"),
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
    output_format: AuditFormat = typer.Option(
        AuditFormat.table, "--format", "-f", help="A table to read, or JSON for scripts."
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
    from facetell.audit import audit

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
    report = audit(records, groups, seed=seed, origins=origins)
    if save_manifest:
        with writing(save_manifest):
            save_manifest_csv(records, save_manifest)
    if output_format is AuditFormat.json:
        console.print_json(json.dumps(asdict(report)))
        for warning in report.warnings:
            err_console.print(labelled_line("warning:", "bold yellow", warning))
    else:
        _render_audit(report)


def _same_bytes(first: Path, second: Path) -> bool:
    try:
        return filecmp.cmp(first, second, shallow=False)
    except OSError:  # gone since it was read: nothing to compare
        return False


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
        same = [(real, ai) for real, ai in pairs if _same_bytes(real, ai)]
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
    from facetell.train import (
        is_shipped_recipe,
        load_config,
        resolve_recipe,
        saved_config,
        summarise_runs,
        train,
    )

    if resume and overwrite:
        raise fail("--resume continues the run folder's run and --overwrite replaces it: give one")
    extra = [*overrides]
    if data:
        extra.append(f"data.paths={json.dumps([str(p) for p in data])}")
    if folds:
        extra.append(f"data.folds={folds}")
    if holdout_source:
        extra.append(f"data.holdout_source={holdout_source}")
    try:
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
        out_dir = out or Path("runs") / config.name
        refuse_output_in_class_folder(out_dir, config.data.paths)
        writable(out_dir, "--out", folder=True)
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
            results = train(
                config, out_dir, resume=resume, overwrite=overwrite, reporter=RichReporter(progress)
            )
    except FacetellError as error:
        raise fail(str(error)) from None
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
    console.print(table)
    note_given_split(results[0][1].metrics)
    note_small_test_splits(results, test_share=config.data.fractions[2])
    if len(results) > 1:
        summary = summarise_runs(results)
        console.print(
            f"test AUROC {summary['test_auroc_mean']:.4f} ± {summary['test_auroc_std']:.4f}, "
            f"accuracy {summary['test_accuracy_mean']:.4f} ± {summary['test_accuracy_std']:.4f}"
        )
    console.print(f"bundle(s) and history under {out_dir}")
    if len(results) == 1:  # what makes the bundle's P(ai) probabilities, and how to measure it
        only = results[0][1]
        bundle = shlex.quote(str(only.bundle_dir))
        split_file = shlex.quote(str(only.out_dir / "split.json"))
        measure = (
            f"facetell evaluate {bundle} --split-file {split_file}"
            if "test" in only.metrics
            else f"facetell evaluate {bundle} on other labelled data (the split has no test part)"
        )
        console.print(
            f"next: facetell calibrate {bundle} --split-file {split_file} (its P(ai) are raw "
            f"scores until then), then {measure}",
            highlight=False,
            soft_wrap=True,  # one line, to copy
        )


def interrupted_training(out_dir: Path) -> str:
    """What a Ctrl-C kept and the command that goes on from it (without an --overwrite that
    would wipe it): a run checkpoints after every epoch."""
    from facetell.train import earlier_runs

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

    wildcard = any(character in pattern for character in "*?[")
    entries = model_entries(pattern if wildcard else f"*{pattern}*")
    if not entries:
        raise fail(f"no registered model matches {pattern!r} (try `facetell models`)")
    table = Table(title="facetell models", caption="train one: --set model=NAME in a config")
    for column in ("name", "parameters", "ImageNet weights", "what it is"):
        table.add_column(column, overflow="fold")
    missing = Text.assemble(("missing", "red"), " (make setup)")
    weights = {True: "installed", False: missing, None: "none needed"}
    for entry in entries:
        try:
            with torch.device("meta"):  # shapes only: no weights drawn or read
                count = sum(p.numel() for p in create_model(entry.name).parameters())
            parameters = f"{count / 1e6:.2f} M" if count >= 10_000 else f"{count:,}"
        except BadModelArguments:  # an ensemble is built from its members' bundles
            parameters = "its members'"
        table.add_row(entry.name, parameters, weights[entry.weights_installed], entry.summary)
    console.print(table)


class PredictFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"
    json = "json"  # one array, for tools that read a whole file; jsonl streams and resumes


FORMAT_OF_SUFFIX = {
    ".csv": PredictFormat.csv,
    ".json": PredictFormat.json,
    ".jsonl": PredictFormat.jsonl,
    ".ndjson": PredictFormat.jsonl,
}  # what `-o results.csv` means when no --format is given
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")

CSV_COLUMNS = (
    "path", "status", "label", "p_ai", "familiar", "n_faces", "faces_found", "declared_ai",
    "error", "model", "ms", "explanation", "threshold", "uncertain_low", "uncertain_high",
)  # fmt: skip
# what a CSV said before it named the cut and band; --resume carries such a file on
CSV_COLUMNS_WITHOUT_CUT = CSV_COLUMNS[:-3]


def read_list(path: Path) -> list[str]:
    """The inputs a --files-from list names, one a line, blank lines skipped, or a CSV's `path`
    column (a manifest, or the results of an earlier run); a relative one that is not found
    from here but is from the list's folder is taken from there, so a list kept beside its
    photos works from anywhere, and one with backslashes (written on Windows) is read with
    them as folder separators."""
    try:
        text = text_of(sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes())
    except IsADirectoryError:
        raise FacetellError(
            f"{path}: a folder, not a list of files; give it as an input to judge its images "
            f"(facetell predict {path})"
        ) from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise FacetellError(f"{path}: cannot read the --files-from list ({reason})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if path.suffix.lower() in MANIFEST_SUFFIXES:  # a manifest, or an earlier run's results
        columns, rows = table_rows(text)
        if "path" in columns:
            lines = [row["path"] for row in rows if (row["path"] or "").strip()]
    beside = path.parent if str(path) != "-" else Path()

    def located(line: str) -> str:
        if is_url(line) or Path(line).is_absolute() or exists(Path(line)):
            return line
        if exists(beside / line):
            return str(beside / line)
        if "\\" in line:  # a list written on Windows: photos\\a.jpg
            converted = located(PureWindowsPath(line).as_posix())
            return converted if exists(Path(converted)) else line
        return line

    return [located(line) for line in lines]


def expand_inputs(
    inputs: Sequence[str], skipped: list[Path] | None = None, outputs: Path | None = None
) -> Iterator[str | NamedImage]:
    """Files, folders (recursive, image files only), globs, http(s) addresses, and '-' for one
    image on stdin (its results and errors say "-", as its argument did).

    A name that is none of these is passed on as is, so it becomes a one-line error record.
    Files in folders that are not images (hidden ones aside) are added to `skipped`. A folder
    walk leaves out the `outputs` folder (--explain's): an earlier run's heat maps there are
    no inputs, and --resume would otherwise append verdicts on them.
    """
    left_out = real_path(outputs) if outputs else None
    for raw in inputs:
        if raw == "-":
            yield NamedImage(sys.stdin.buffer.read(), "-")
        elif is_url(raw):  # a query's "?" is no glob
            yield raw
        else:
            yield from image_files(raw, skipped, left_out)


def is_own_output(path: Path, output: Path | None, report: Path | None) -> bool:
    """Whether a file in a folder given is this run's own -o file, review page or one of the
    page's later files: written there by the run before, it is no input left out."""
    if output is not None and real_path(path) == real_path(output):
        return True
    if report is None or real_path(path.parent) != real_path(report.parent):
        return False
    return page_part_number(report, path) is not None


def note_skipped(skipped: Sequence[Path], console: Console) -> None:
    """Say which files in the folders given were left out (in no format facetell reads, links
    whose target is gone, a dataset's images in no class folder): a folder that gives fewer
    images than it holds must say why."""
    broken_links = [path for path in skipped if path.is_symlink() and not path.exists()]
    files = [path for path in skipped if path not in broken_links]
    raw_files = [path for path in files if path.suffix.lower() in RAW_SUFFIXES]
    videos = [path for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
    files = [path for path in files if path not in raw_files and path not in videos]
    unlabelled = [path for path in files if looks_like_image(path)]
    others = [path for path in files if path not in unlabelled]
    notes = (  # the files, what to say of them, and whether their folder is the point
        (broken_links, "link(s) in the folders given whose target is gone: {} (restore their "
         "targets to use them)", False),
        (unlabelled, "image(s) in no class folder (real/ or ai/, or fake/, 0_real/, 1_fake/, "
         "…): {} (move them into one to use them)", True),
        (raw_files, "camera RAW file(s) in the folders given: {} (export them as JPEG to use "
         "them)", False),
        (videos, f"video(s) in the folders given: {{}} ({FRAMES_HINT})", False),
        (others, "file(s) in the folders given that are in no format facetell reads "
         f"({FORMATS_READ}): {{}}", False),
    )  # fmt: skip
    for paths, said, with_folder in notes:
        if paths:
            names = first_names(paths, folder=with_folder)
            console.print(f"note: skipped {len(paths)} " + said.format(names), highlight=False)


def refuse_overwriting_inputs(
    sources: Sequence[str | NamedImage], outputs: dict[str, Path | None]
) -> None:
    """Refuse an output file that is an input, an image or any other file that is not text:
    with `predict -o photos/*.jpg` (its name forgotten) the shell made the first photo the
    output, and `--report photos.zip` had replaced the archive with the page."""
    named = {option: real_path(path) for option, path in outputs.items() if path is not None}
    inputs = {real_path(s) for s in sources if isinstance(s, str) and not is_url(s)}
    for option, path in named.items():
        if what := "an input" if path in inputs else not_written_by_us(path):
            raise fail(
                f"{path}: {what}; {option} there would overwrite it with results (name a new file)"
            )


def not_written_by_us(path: Path) -> str | None:
    """What an existing file no facetell output could be is (an image, an archive, a PDF, other
    binary data), or None: text in any encoding may be an earlier run's, and is replaced."""
    if not path.is_file():
        return None
    if looks_like_image(path):
        return "an image"
    return binary_kind(file_head(path))


def warn_if_uncalibrated(detector: Detector) -> None:
    """Say so before a bundle without calibration.json answers: its P(ai) are raw scores."""
    if not detector.calibration.fitted:
        err_console.print(
            labelled_line(
                "warning:",
                "bold yellow",
                "this model is not calibrated: probabilities are raw sigmoid scores (run "
                "`facetell calibrate`)",
            )
        )


def first_names(paths: Sequence[Path], shown: int = 3, *, folder: bool = False) -> str:
    """The first few file names of a list (with their folder's), for a one-line note."""
    names = ", ".join(
        printable_name(f"{path.parent.name}/{path.name}" if folder else path.name)
        for path in paths[:shown]
    )
    return names + (", …" if len(paths) > shown else "")


def _csv_row(record: dict) -> list[str]:
    low, high = record["uncertain_band"]
    values = {
        **record,
        "n_faces": len(record["faces"]),
        "declared_ai": record["metadata"].get("declared_ai", False),
        "uncertain_low": low,
        "uncertain_high": high,
    }
    return [spreadsheet_safe("" if values.get(c) is None else str(values[c])) for c in CSV_COLUMNS]


def as_written(source: str, output_format: PredictFormat) -> str:
    """An input's path as its record in `output_format` holds it."""
    path = printable_name(source)
    return spreadsheet_safe(path) if output_format is PredictFormat.csv else path


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet shows as text: file names come from whoever sent the files, and one
    named "=HYPERLINK(...).jpg" would otherwise run as a formula (OWASP's CSV injection advice:
    a leading ' before = + - @, tab or carriage return)."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


RESUME_KEYS = frozenset({"path", "status", "model"})  # what --resume reads of a JSON record


def finished_records(output: Path, output_format: PredictFormat) -> list[dict[str, Any]]:
    """What `--resume` keeps: the records `output` holds, in order, as written there (a CSV
    row as its columns by name).

    The file is rewritten first without its error records (they are tried again, so each
    input ends with one record) and without a last line the stopped run left half-written, so
    appended records start on a line of their own.
    """
    try:  # utf-8-sig: an editor's byte-order mark is no part of the header
        with output.open(encoding="utf-8-sig", newline="") as handle:  # CSV lines end in \r\n
            text = handle.read()
    except UnicodeDecodeError:  # re-saved by a spreadsheet in its own code page
        message = f"{output}: not UTF-8 as facetell predict writes; cannot resume it"
        raise FacetellError(message) from None
    whole = text[: text.rfind("\n") + 1]
    kept = io.StringIO()
    records: list[dict[str, Any]] = []
    if output_format is PredictFormat.csv:
        header, *rows = list(csv.reader(io.StringIO(whole))) or [list(CSV_COLUMNS)]
        if header not in (list(CSV_COLUMNS), list(CSV_COLUMNS_WITHOUT_CUT)) or any(
            len(row) != len(header) for row in rows
        ):
            raise FacetellError(f"{output}: not a CSV facetell predict wrote; cannot resume it")
        if len(header) < len(CSV_COLUMNS):  # its rows' cut is unsaid: their verdicts show it
            missing = [""] * (len(CSV_COLUMNS) - len(header))
            header, rows = list(CSV_COLUMNS), [[*row, *missing] for row in rows]
        writer = csv.writer(kept)
        writer.writerow(header)
        for row in rows:
            record = dict(zip(header, row, strict=True))
            if record["status"] != "error":
                writer.writerow(row)
                records.append(record)
    else:
        for number, line in enumerate(whole.splitlines(keepends=True), start=1):
            if not line.strip():  # a blank line (an editor's, or files joined): no record
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not record.keys() >= RESUME_KEYS:
                message = f"{output}: line {number} is no facetell record; cannot resume it"
                raise FacetellError(message)
            if record["status"] != "error":
                kept.write(line)
                records.append(record)
    if kept.getvalue() != text:
        write_whole(output, kept.getvalue().encode("utf-8"))
    return records


class Resumed(NamedTuple):
    """Where `--resume` picks up: the records the output file keeps, and the positions in
    the input list of the images still to judge (positions, so that an image's heat-map file
    keeps the number a run that was never stopped would have given it)."""

    earlier: list[dict[str, Any]]
    to_judge: list[int]


def skip_finished(
    sources: list[str | NamedImage], output: Path, output_format: PredictFormat, detector: Detector
) -> Resumed:
    """For `--resume`: the inputs `output` holds no result for yet (stdin is always judged).
    A file another model judged, or judged at another threshold, is refused: one file, one
    model's verdicts at one cut."""
    model = detector.model_name
    try:
        earlier = finished_records(output, output_format)
    except UnicodeDecodeError:
        raise fail(f"{output}: not a file facetell predict wrote; cannot resume it") from None
    except (FacetellError, OSError) as error:
        raise fail(str(error)) from None
    others = sorted({record["model"] for record in earlier} - {model})
    if others:
        raise fail(
            f"{output}: judged by {others[0]}, not {model}; resume with the model that started "
            "it (--model) or write to another file"
        )
    if why := judged_at_another_threshold(earlier, detector):
        raise fail(f"{output}: {why}, or write to another file")
    finished = {record["path"] for record in earlier}
    to_judge = [
        i
        for i, s in enumerate(sources)
        if isinstance(s, NamedImage) or as_written(s, output_format) not in finished
    ]
    if len(to_judge) < len(sources):
        err_console.print(
            f"resuming: {len(sources) - len(to_judge)} image(s) already judged in {output}; "
            f"{len(to_judge)} to go",
            highlight=False,
        )
    return Resumed(earlier, to_judge)


def judged_at_another_threshold(earlier: list[dict[str, Any]], detector: Detector) -> str | None:
    """How the earlier records show another cut than this run's, or None: one file must not
    mix cuts. Records state theirs; one written before they did (a CSV row, say) shows it by a
    verdict this cut would not give, unless its P(ai), written to 4 decimals, lies that close
    to a band edge."""
    recorded = next((r["threshold"] for r in earlier if r.get("threshold") not in (None, "")), None)
    if recorded is not None and not detector.judges_at(float(recorded)):
        return (
            f"judged at threshold {recorded}, and this run's is {detector.cut:.4f}; resume with "
            f"--threshold {recorded}"
        )
    edges = (*detector.band, detector.cut)
    for record in earlier:
        try:
            p_ai = float(record.get("p_ai"))
        except (TypeError, ValueError):  # no face, or an earlier error
            continue
        if min(abs(p_ai - edge) for edge in edges) <= RECORDED_PRECISION:
            continue
        verdict = detector.calibration.verdict(p_ai, detector.threshold)
        if verdict != record.get("label"):
            return (
                f"{record['path']} reads {record['label']} at P(ai) {record['p_ai']}, which the "
                f"threshold of this run calls {verdict}; resume with the --threshold that "
                "started it"
            )
    return None


class Recalled(NamedTuple):
    """An earlier run's image as the review page shows it; `faces` counts the faces judged
    when the result no longer holds them (a CSV row), else None."""

    result: Result
    image: Image.Image | None
    overlay: Image.Image | None
    faces: int | None


def recalled(
    record: dict[str, Any],
    inputs: dict[str, str],
    output_format: PredictFormat,
    limits: DecodeLimits,
) -> Recalled:
    """An earlier run's record for the review page: the result it wrote, the photo read again
    from the input it names (`inputs`, by path as written; none if it is not among them) and
    the heat map it saved.

    A CSV row keeps no face boxes or clues: its result has no faces (the page says so) and
    its clues are read again from the file, which costs a decode, not the model.
    """
    from PIL import Image, UnidentifiedImageError

    decoded = None
    source = inputs.get(record["path"])
    if source is not None:  # moved or broken since it was judged: its card has no photo
        with suppress(FacetellError):
            decoded = decode(source, limits=limits)
    if output_format is PredictFormat.jsonl:
        result = Result.from_dict(record)
    else:
        flags = {"True": True, "False": False}
        result = Result(
            path=record["path"],
            status=record["status"],
            label=record["label"] or None,
            p_ai=float(record["p_ai"]) if record["p_ai"] else None,
            familiar=flags.get(record["familiar"]),
            faces_found=int(record["faces_found"]),
            metadata=(
                metadata_clues(decoded)
                if decoded
                else {"declared_ai": record["declared_ai"] == "True"}
            ),
            model=record["model"],
        )
    overlay = None
    if record.get("explanation"):
        try:
            with Image.open(record["explanation"]) as saved:
                overlay = saved.convert("RGB")
        except (OSError, UnidentifiedImageError):
            pass  # deleted or overwritten since: the card goes without its heat map
    faces = int(record["n_faces"]) if output_format is PredictFormat.csv else None
    return Recalled(result, decoded.image if decoded else None, overlay, faces)


def _clue_cell(metadata: dict[str, Any]) -> Text | str:
    """The table's word on metadata: what declares AI and where (software: Adobe Firefly), the
    camera the EXIF names, and the other kinds of clue (the records hold every clue)."""
    clues = metadata.get("clues", [])

    def shown(value: Any) -> str:
        text = " ".join(str(value).split())
        return text if len(text) <= 40 else text[:39] + "…"

    parts: list[Text] = []
    declaring = [clue for clue in clues if clue.get("declares_ai")][:1]
    for clue in declaring:
        said = f": {shown(clue['value'])} ({clue['kind']} {clue['key'].replace('_', ' ')})"
        parts.append(Text.assemble(("declares AI", "bold red"), said))
    if not declaring and metadata.get("declared_ai"):
        parts.append(Text("declares AI", "bold red"))
    camera = [c for c in clues if c["kind"] == "exif" and c["key"] in ("make", "model")]
    if camera:
        parts.append(Text("camera: " + " ".join(shown(c["value"]) for c in camera)))
    others = sorted({c["kind"] for c in clues if c not in declaring and c not in camera})
    parts += [Text(", ".join(others))] if others else []
    return Text("; ").join(parts) if parts else ""


def _table_row(record: dict) -> list[str | Text]:
    colours = {"ai": "red", "real": "green", "uncertain": "yellow"}
    label = record["label"]
    verdict = Text(label, colours[label]) if label else record["status"].replace("_", " ")
    p_ai = "" if record["p_ai"] is None else stated_percent(record["p_ai"])
    clue_text = _clue_cell(record["metadata"])
    # the verdict face is unlike the training faces: its P(ai) deserves less trust
    unfamiliar = Text("unfamiliar face", "yellow") if record["familiar"] is False else ""
    frames = record["metadata"].get("frames", 1)
    first_frame = f"first of {frames} frames judged" if frames > 1 else ""
    notes = [text for text in (unfamiliar, first_frame, clue_text) if text]
    detail = record["error"] or Text(", ").join(Text(n) if isinstance(n, str) else n for n in notes)
    faces = "" if record["status"] == "error" else str(len(record["faces"]))  # unread: not 0
    if record["faces_found"] > len(record["faces"]):  # the rest were cut by --max-faces
        faces += f" of {record['faces_found']}"
    return [record["path"], verdict, p_ai, faces, detail, f"{record['ms']:.0f}"]


@app.command("predict")
def predict_command(
    inputs: list[str] = typer.Argument(
        None, help="Images, folders, globs, http(s) URLs, or - for stdin.", show_default=False
    ),
    output_format: PredictFormat | None = typer.Option(
        None,
        "--format",
        "-f",
        help="Default: as --output's name ends (.csv, .jsonl, .ndjson or .json), else table.",
    ),
    model: Path | None = typer.Option(
        None, help="Model bundle: a folder or .zip (default: the shipped one, also named default)."
    ),
    threshold: float | None = THRESHOLD,
    explain_dir: Path | None = typer.Option(
        None,
        "--explain",
        help="Save heat-map overlays (JPEG) into this folder (never read as inputs, even "
        "inside a folder given).",
    ),
    no_face_detect: bool = NO_FACE_DETECT,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file."),
    files_from: list[Path] = typer.Option(
        [],
        "--files-from",
        help="A text file listing inputs, one a line (files, folders, globs or URLs; a relative "
        "path is looked for from here, then from the list's folder; - reads the list from "
        "stdin). Blank lines are skipped. Of a .csv or .tsv with a path column (a manifest, "
        "an earlier run's results), that column.",
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Also write a review page, self-contained HTML: every photo, its faces, verdicts "
        "and clues (and heat maps with --explain), most AI-like first.",
    ),
    report_per_file: int = typer.Option(
        PER_FILE,
        min=0,
        help="Images per file of the review page: later ones go on in NAME-2.html, NAME-3.html"
        ", …, linked from the first (0: all in one file, however large).",
    ),
    max_megapixels: float = typer.Option(
        DEFAULT_LIMITS.max_pixels / 1e6,
        min=1.0,
        max=4295.0,  # 65535 x 65535, the largest JPEG or PNG a viewer opens: no limit, in effect
        help="Refuse larger images (decompression bombs); files may hold 8 bytes per pixel.",
    ),
    max_faces: int = typer.Option(
        MAX_FACES, min=1, help="Judge at most this many faces per image, the most face-like."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a run that stopped: skip the images --output already holds a result for, "
        "try its errors again and append the rest (--format jsonl or csv). A review page shows "
        "every image the file holds.",
    ),
) -> None:
    """Judge images: is each face a real photograph or AI-generated?"""
    if output and output.suffix.lower() in SPREADSHEET_SUFFIXES:
        raise fail(
            f"{output}: facetell writes no spreadsheet file; name it "
            f"{output.with_suffix('.csv')}, which spreadsheets open"
        )
    output_format = output_format or FORMAT_OF_SUFFIX.get(
        output.suffix.lower() if output else "", PredictFormat.table
    )
    resumable = output_format in (PredictFormat.jsonl, PredictFormat.csv)
    if resume and (output is None or not resumable):
        raise fail(
            "--resume needs --output FILE in jsonl or csv (FILE.jsonl, FILE.csv or --format)"
        )
    if report and not report.suffix and not report.is_dir():  # a file manager opens it then
        report = report.with_name(f"{report.name}.html")
    if output and report and real_path(output) == real_path(report):
        raise fail("--output and --report name one file; give each its own")
    if output:
        writable(output, "--output")
    if report:
        writable(report, "--report")
    if explain_dir:
        writable(explain_dir, "--explain", folder=True)
    max_pixels = round(max_megapixels * 1e6)
    limits = DecodeLimits(
        max_pixels=max_pixels, max_bytes=max(DEFAULT_LIMITS.max_bytes, 8 * max_pixels)
    )
    try:
        detector = Detector.load(
            model,
            detect_faces=not no_face_detect,
            threshold=threshold,
            limits=limits,
            max_faces=max_faces,
        )
    except FacetellError as error:
        raise fail(str(error)) from None
    skipped: list[Path] = []
    if "-" in (inputs or []) and Path("-") in files_from:
        raise fail("stdin can hold the list (--files-from -) or an image (-), not both")
    if (inputs or []).count("-") > 1 or files_from.count(Path("-")) > 1:
        raise fail("stdin can be read once: give - (or --files-from -) once")
    try:
        listed = [*(inputs or []), *(line for path in files_from for line in read_list(path))]
    except FacetellError as error:
        raise fail(str(error)) from None
    if not listed and files_from:  # `find` that found nothing, say
        lists = ", ".join("stdin" if path == Path("-") else str(path) for path in files_from)
        raise fail(f"{lists}: names no input (empty, or blank lines only); nothing to judge")
    if not listed:
        raise fail("give images, folders, globs or URLs to judge, or --files-from LIST")
    sources = list(expand_inputs(listed, skipped, outputs=explain_dir))
    note_skipped([path for path in skipped if not is_own_output(path, output, report)], err_console)
    # heat maps an earlier run left in --explain's folder; --resume's records still name theirs
    earlier_maps = set()
    if explain_dir and explain_dir.is_dir() and not resume:
        earlier_maps = {path for path in explain_dir.iterdir() if OVERLAY_NAME.fullmatch(path.name)}
    if not sources:
        raise fail("no images found in the given paths (folders are searched recursively)")
    refuse_overwriting_inputs(sources, {"--output": output, "--report": report})
    earlier: list[dict[str, Any]] = []  # with --resume, the records the output file keeps
    positions = list(range(len(sources)))  # each image's place in the inputs
    if resume and output:
        earlier, positions = skip_finished(sources, output, output_format, detector)
        if not positions:
            err_console.print(f"nothing left to judge: {output} holds every image", highlight=False)
            if not report:
                return
    inputs_by_path = {as_written(s, output_format): s for s in sources if isinstance(s, str)}
    sources = [sources[i] for i in positions]
    warn_if_uncalibrated(detector)
    appending = resume and output is not None and output.stat().st_size > 0
    mode = "a" if appending else "w"
    handle = output.open(mode, encoding="utf-8", newline="") if output else sys.stdout
    writer = csv.writer(handle) if output_format is PredictFormat.csv else None
    if writer and not appending:
        writer.writerow(CSV_COLUMNS)
    separator = "[\n"  # --format json: what goes before the next record of the array
    table = Table(title=f"facetell predict ({detector.model_name})")
    for column in ("path", "verdict", "P(ai)", "faces", "clues / error", "ms"):
        table.add_column(column, overflow="fold")
    counts: Counter[str] = Counter()
    crowded = 0  # images with more faces than --max-faces
    page = ReviewPage(detector) if report else None
    with progress_bar() as progress:
        task = progress.add_task("judging", total=len(sources), visible=len(sources) > 3)
        if explain_dir:
            numbered = zip(positions, sources, strict=True)
            judged = (explain_to(detector, s, explain_dir, i) for i, s in numbered)
        else:
            judged = (Judged(*pair) for pair in detector.stream_with_images(sources))
        interrupted = False
        with stop_between_items() as stop:
            try:
                # the page covers the whole output file, so the earlier run's images first
                if page and earlier:
                    recall = progress.add_task("review page: earlier images", total=len(earlier))
                    for kept in earlier:
                        card = recalled(kept, inputs_by_path, output_format, limits)
                        page.add(card.result, card.image, card.overlay, earlier=True,
                                 faces_without_details=card.faces)  # fmt: skip
                        progress.advance(recall)
                        if stop.is_set():  # nothing new judged yet: stop here too
                            interrupted, judged = True, iter(())
                            break
                for result, image, overlay, overlay_path in judged:
                    record = result.to_dict()
                    if explain_dir:  # where this image's heat map went (None: not an image)
                        saved = None if overlay_path is None else printable_name(str(overlay_path))
                        record["explanation"] = saved
                        earlier_maps.discard(overlay_path)
                    if page:
                        page.add(result, image, overlay)
                    with writing(output or "standard output"):
                        if output_format is PredictFormat.jsonl:
                            handle.write(json.dumps(record) + "\n")
                            handle.flush()
                        elif output_format is PredictFormat.json:
                            handle.write(separator + json.dumps(record))
                            separator = ",\n"
                        elif writer:
                            writer.writerow(_csv_row(record))
                        else:
                            table.add_row(*_table_row(record))
                    counts[record["label"] or record["status"]] += 1
                    crowded += record["faces_found"] > len(record["faces"])
                    progress.advance(task)
                    if stop.is_set():  # Ctrl-C: this image's outputs are all written; stop
                        interrupted = True
                        break
            except KeyboardInterrupt:  # a second Ctrl-C: at once, with what was written
                interrupted = True
            except WriteFailed as failure:
                if output:
                    with suppress(OSError):
                        handle.close()
                raise write_failed(
                    failure, sum(counts.values()), len(sources), output, resumable
                ) from None
    try:
        with writing(output or "standard output"):
            if output_format is PredictFormat.table:
                Console(file=handle, width=console.width, markup=False).print(table)
            elif output_format is PredictFormat.json:  # closed on a stop too: still valid JSON
                handle.write("[]\n" if separator == "[\n" else "\n]\n")
            if output:
                handle.close()
    except WriteFailed as failure:
        raise write_failed(failure, sum(counts.values()), len(sources), output, resumable) from None
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.most_common())
    done = sum(counts.values())
    pages: list[Path] = []  # the review page's files
    if page and report:
        stopped = f"Interrupted: {page.images} of {len(earlier) + len(sources)} images were judged."
        if page.images < len(earlier):  # stopped while the earlier run's cards were redrawn
            stopped = (
                f"Interrupted: this page shows {page.images} of the {len(earlier)} images "
                f"{output} holds; none was judged this time."
            )
        with page:
            try:
                pages = page.save(
                    report, stopped if interrupted else None, per_file=report_per_file
                )
            except OSError as error:  # checked writable at the start; a disk can fill since
                reason = (error.strerror or str(error)).lower()
                raise fail(f"{report}: cannot write the review page ({reason})") from None
    if interrupted:
        where = f"; they are in {output}" if output and done else ""
        if output and resumable:
            where += " (run the same command with --resume to go on)"
        raise fail(
            f"interrupted after {done} of {len(sources)} image(s) ({summary or 'none'}){where}",
            code=130,
        )
    if earlier_maps:
        err_console.print(
            f"note: {explain_dir} also holds {len(earlier_maps)} heat map(s) of an earlier run, "
            f"which no record of this one names: {first_names(sorted(earlier_maps))}",
            highlight=False,
        )
    if crowded:
        err_console.print(
            f"note: {crowded} image(s) held more than {max_faces} faces; the {max_faces} most "
            "face-like of each were judged (raise --max-faces to judge more)",
            highlight=False,
        )
    where = f"; review page: {pages[0]}" if pages else ""
    if len(pages) > 1:
        where += f" (its cards go on in {len(pages) - 1} more file(s), to {pages[-1].name})"
    if pages and earlier:
        where += f", with the {len(earlier)} judged before"
    low, high = detector.band
    cut = f" (AI at P(ai) ≥ {detector.cut:.4f}, uncertain {low:.3f}-{high:.3f})"
    err_console.print(f"{len(sources)} image(s): {summary or 'none'}{cut}{where}", highlight=False)


@contextmanager
def stop_between_items() -> Iterator[threading.Event]:
    """Ctrl-C sets the event the caller checks between items, rather than raising wherever
    the program happens to be: a batch then stops with its records, table and review page in
    step (one raised between two of them had the page one image ahead). A second Ctrl-C
    raises at once. A process started with Ctrl-C ignored (a background job) keeps ignoring it.
    """
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # os.write, not print: this may run while the main thread is inside a print
        os.write(2, b"\nstopping after the image in hand (Ctrl-C again to stop at once)\n")

    signal.signal(signal.SIGINT, ask_to_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class Judged(NamedTuple):
    """One input as `predict` renders it: the result, the upright photo (None: unreadable) and,
    with --explain, its heat-map overlay and the file that overlay was saved to."""

    result: Result
    image: Image.Image | None
    overlay: Image.Image | None = None
    overlay_path: Path | None = None


OVERLAY_NAME = re.compile(r"\d{5}-.+\.jpg")  # what explain_to names a heat map
NAME_MAX = 255  # bytes in a file name on Linux, macOS and Windows file systems alike


def explain_to(detector: Detector, source: str | NamedImage, folder: Path, index: int) -> Judged:
    """Predict with a heat-map overlay saved as <folder>/<index>-<name>.jpg (none when the
    input could not be decoded)."""
    from facetell.explain import OVERLAY_JPEG, explain

    if isinstance(source, NamedImage):
        name = "stdin"
    elif is_url(source):  # the address's last path part, without query or odd characters
        name = re.sub(r"[^\w.-]+", "_", Path(urlsplit(source).path).stem or "download")
    else:
        name = printable_name(Path(source).stem)
    explanation = explain(detector, source)
    if explanation.overlay is None:
        return Judged(explanation.result, None)
    prefix = f"{index:05d}-"
    room = NAME_MAX - len(prefix) - len(".jpg")  # a 255-byte photo name raised ENAMETOOLONG
    name = name.encode()[:room].decode("utf-8", "ignore")  # whole characters only
    overlay_path = folder / f"{prefix}{name}.jpg"
    with writing(overlay_path):
        explanation.overlay.save(overlay_path, "JPEG", **OVERLAY_JPEG)
    return Judged(explanation.result, explanation.image, explanation.overlay, overlay_path)


def select_samples(
    data: Sequence[Path],
    split_file: Path | None,
    split: str | None,
    limit: int | None,
    *,
    default_split: str,
) -> list[Sample]:
    """The images to score: a split of a saved split file, the data's own split part (its
    train/ val/ test/ folders or split column), or everything under `data`."""
    if split_file is not None and data:
        raise FacetellError(
            f"give data folders or --split-file, not both: {split_file} names its own images "
            f"(and {data[0]} would be left unread)"
        )
    if split_file is not None:
        split = split or default_split
        saved = SplitFile.load(split_file)
        samples = saved.samples(split)
        if not samples:
            held = ", ".join(sorted({row["split"] for row in saved.rows})) or "none"
            raise FacetellError(f"{split_file}: no {split!r} split (it holds: {held})")
    elif data:
        skipped: list[Path] = []
        samples = discover(data, skipped)
        note_skipped(skipped, err_console)
        own = sorted({sample.split for sample in samples if sample.split}, key=SPLITS.index)
        if split is not None:
            samples = own_split_part(data, samples, split, own)
        elif own:
            err_console.print(
                f"note: the data has its own split ({', '.join(own)}); all of it is scored "
                f"(--split {default_split} scores its {default_split} part alone)",
                highlight=False,
            )
    else:
        raise FacetellError("give dataset folders or --split-file")
    found = [sample.path.exists() for sample in samples]
    missing = [sample.path for sample, there in zip(samples, found, strict=True) if not there]
    if missing:  # moved data, or a split read from elsewhere: say so, not "no face found"
        named_by = f"{split_file}" if split_file else "the manifest"
        if len(missing) == len(samples):
            where = (
                "its paths are found from here or from a folder above the split file (another "
                "machine's absolute paths by their last folders)"
                if split_file
                else "its relative paths are read from the manifest's folder"
            )
            raise FacetellError(
                f"{named_by}: none of the {len(samples)} images it names exists (the first: "
                f"{missing[0]}); {where}"
            )
        err_console.print(
            f"note: {len(missing)} of the {len(samples)} images {named_by} names are missing "
            f"and left out (the first: {missing[0]})",
            highlight=False,
        )
        samples = [sample for sample, there in zip(samples, found, strict=True) if there]
    if limit is not None and limit < len(samples):
        rng = np.random.default_rng(0)
        samples = [samples[i] for i in sorted(rng.permutation(len(samples))[:limit])]
    return samples


def own_split_part(
    data: Sequence[Path], samples: list[Sample], split: str, own: Sequence[str]
) -> list[Sample]:
    """The samples of one part of the data's own split; one line when it has no such part.
    Folders that are that part themselves (data/test with --split test) are all of it."""
    part = SPLIT_ALIASES.get(split.lower())
    if part is None:
        raise FacetellError(f"--split {split}: a split part is train, val or test")
    if not own and all(split_part_named(root) == part for root in data):
        return samples
    if not own:
        raise FacetellError(
            f"--split {split}: the data names no split (no train/ val/ test/ folders, no split "
            "column); give the run's --split-file, or the folder of that part"
        )
    if part not in own:
        held = ", ".join(own)
        raise FacetellError(f"--split {split}: the data has no {part} part (it has: {held})")
    return [sample for sample in samples if sample.split == part]


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
    for column in ("source", "class", "scored", "AUROC (95% interval)", "called AI"):
        table.add_column(column)
    for row in evaluation.sources:
        real = row["label"] == "real"
        auroc = row.get("auroc_vs_ai" if real else "auroc_vs_real")
        ranked = "-" if auroc is None else _value_and_interval(auroc, row.get("auroc_interval"))
        rate = row.get("false_positive_rate" if real else "accuracy")  # None: none scored
        interval = row.get("false_positive_rate_interval" if real else "accuracy_interval")
        called_ai = "-" if rate is None else _value_and_interval(rate, interval)
        table.add_row(row["source"], row["label"], str(row["scored"]), ranked, called_ai)
    return table


def load_named_first(bundle: Path, data: list[Path] | None, usage: str, **options: Any) -> Detector:
    """The bundle a command takes first. A dataset given alone lands in its place, and one
    given before the bundle swaps them; say that the bundle comes first rather than that the
    data is missing or is not a bundle."""
    try:
        return Detector.load(bundle, limits=DATASET_LIMITS, **options)
    except FacetellError as error:
        if not bundle.exists():
            raise
        if not data:
            raise FacetellError(
                f"{error}; the bundle comes first: facetell {usage} {bundle}"
            ) from None
        bundles = [path for path in data if (path / "config.json").is_file()]
        if not bundles:
            raise
        command = usage.split()[0]
        others = [str(path) for path in data if path != bundles[0]]
        raise FacetellError(
            f"{error}; the bundle comes first: facetell {command} {bundles[0]} "
            f"{' '.join([str(bundle), *others])}"
        ) from None


@app.command("evaluate")
def evaluate_command(
    bundle: Path = typer.Argument(..., help="Model bundle to evaluate."),
    data: list[Path] = typer.Argument(None, help="Labelled dataset folders or manifests."),
    out: Path = typer.Option(
        Path("report"), "--out", "-o", help="Folder for report.html, metrics and plots."
    ),
    compare: list[Path] = typer.Option([], help="More bundles to put side by side."),
    split_file: Path | None = typer.Option(None, help="Score one split of a saved split.json."),
    split: str | None = typer.Option(
        None,
        help="Which split: of --split-file (default: test), or of the data's own train/ val/ "
        "test/ folders or split column (default: all of the data).",
        show_default=False,
    ),
    limit: int | None = typer.Option(None, min=1, help="Score a seeded sample of this many."),
    robustness_limit: int = typer.Option(
        400, min=0, help="Images in the robustness sweep (0 skips it)."
    ),
    resamples: int = typer.Option(
        1000,
        min=0,
        help="Bootstrap draws for the 95% intervals of AUROC, AP, EER, balanced accuracy, "
        "robustness drops and --compare differences (0 leaves those out; rates always get a "
        "Wilson interval).",
    ),
    no_face_detect: bool = NO_FACE_DETECT,
    threshold: float | None = THRESHOLD,
    exclude_seen: bool = typer.Option(
        False,
        "--exclude-seen",
        help="Leave out the images a bundle was trained or validated on (byte-identical files; "
        "bundles record them), which flatter it.",
    ),
) -> None:
    """Evaluate bundles on labelled data: metrics, plots, robustness and an HTML report.

    Every metric carries a 95% interval; bundles given with --compare are set beside the first
    with a paired interval for their AUROC difference."""
    from facetell.evaluate import (
        compare_auroc,
        describe_seen,
        evaluate_bundle,
        fingerprints_of,
    )
    from facetell.report import describe_comparison, write_report

    refuse_output_in_class_folder(out, data or [])
    named: dict[Path, Path] = {}  # each bundle's file or folder, by the name it was given
    for given in (bundle, *compare):
        found = bundle_path(given).resolve()
        if found in named:  # its AUROC difference is 0 by construction
            twice = "given twice" if given == named[found] else f"the same bundle as {named[found]}"
            raise fail(f"{given}: {twice}; --compare another one")
        named[found] = given
    writable(out, "--out", folder=True)
    try:
        options = {"detect_faces": not no_face_detect, "threshold": threshold}
        detectors = [
            load_named_first(bundle, data, "evaluate default", **options),
            *(Detector.load(path, limits=DATASET_LIMITS, **options) for path in compare),
        ]
        samples = select_samples(data or [], split_file, split, limit, default_split="test")
        fingerprints = fingerprints_of(samples)
        note_labelled_both_ways(samples, fingerprints, "one of each pair is scored a mistake")
        if exclude_seen:
            samples, fingerprints = leave_out_seen(detectors, samples, fingerprints)
        evaluations = []
        with (
            interrupted_says(lambda: f"no report was written to {out}"),
            progress_bar(transient=False) as progress,
        ):
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
                    )
                )
        names = Counter(evaluation.bundle for evaluation in evaluations)
        for evaluation in evaluations:  # two runs of one recipe share a name: tell them apart
            if names[evaluation.bundle] > 1:
                evaluation.bundle = f"{evaluation.bundle} ({evaluation.bundle_path})"
        for evaluation in evaluations[1:]:
            evaluation.comparison = compare_auroc(evaluations[0], evaluation, resamples)
        with writing(out):
            report = write_report(evaluations, out, [str(p) for p in (data or [split_file])])
    except FacetellError as error:
        raise fail(str(error)) from None
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
    table.add_row(  # the cut the rates and accuracies above are taken at
        "threshold (uncertain band)",
        *[
            f"{e.threshold:.4f} ({e.band[0]:.3f}-{e.band[1]:.3f})"
            + ("" if e.calibrated_threshold is None else ", given")
            for e in evaluations
        ],
    )
    console.print(table)
    console.print(_sources_table(evaluations[0]))
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
    for evaluation in evaluations:
        if note := describe_seen(evaluation.seen_in_training, len(samples)):
            err_console.print(
                f"note: {evaluation.bundle}: {note}; --exclude-seen leaves them out",
                highlight=False,
            )
    if left_out := _describe_not_scored(evaluations[0].scored).strip():  # what n leaves out
        err_console.print(
            f"note: {left_out}; {out / 'predictions.csv'} says why for each", highlight=False
        )
    console.print(f"report: {report}")


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


@app.command("calibrate")
def calibrate_command(
    bundle: Path = typer.Argument(
        ...,
        help="Model bundle to calibrate, written in place unless --out is given ('default': the "
        "shipped model, calibrated only with --out).",
    ),
    data: list[Path] = typer.Argument(None, help="Held-out labelled data (not training data)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the calibrated bundle to this folder, a copy made once the fit is done; "
        "the bundle given stays as it was.",
        show_default=False,
    ),
    overwrite: bool = OVERWRITE_BUNDLE,
    split_file: Path | None = typer.Option(None, help="Use one split of a saved split.json."),
    split: str | None = typer.Option(
        None,
        help="Which split: of --split-file (default: val), or of the data's own train/ val/ "
        "test/ folders or split column (default: all of the data); the train part of either "
        "gives the familiarity reference.",
        show_default=False,
    ),
    max_fpr: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Threshold for this false-positive rate on real faces "
        "(default: the equal-error point). Given real photos alone (your users'), only the "
        "threshold of the calibrated bundle moves: up, until at most this rate of them is "
        "called AI.",
    ),
    per_source: bool = typer.Option(
        True,
        "--per-source/--pooled",
        help="With --max-fpr: the rate must hold on every real source on its own (an unseen "
        "source may be as hard as the hardest), or on all real faces as one.",
    ),
    target_accuracy: float = typer.Option(
        0.95, min=0.5, max=1.0, help="Accuracy the answered (not uncertain) faces must reach."
    ),
    limit: int | None = typer.Option(None, min=10, help="Fit on a seeded sample of this many."),
    no_face_detect: bool = NO_FACE_DETECT,
    size_correction: bool = typer.Option(
        True,
        "--size-correction/--no-size-correction",
        help="Also fit the small-face correction on thumbnail copies of the same images "
        f"({', '.join(map(str, THUMBNAIL_SIZES))} px, JPEG {THUMBNAIL_QUALITY}; scores each "
        f"image {1 + len(THUMBNAIL_SIZES)} times).",
    ),
    familiarity: bool = typer.Option(
        True,
        "--familiarity/--no-familiarity",
        help="Also store the embeddings of a sample of training faces (the split file's train "
        f"split, or --reference; every second one as a {REFERENCE_THUMBNAIL}-px thumbnail copy) "
        "and fit the novelty above which a face is flagged unfamiliar.",
    ),
    reference: list[Path] = typer.Option(
        None, help="Training images to sample the familiarity reference from (folders or files)."
    ),
    reference_size: int = typer.Option(
        DEFAULT_REFERENCE_SIZE, min=20, help="How many training faces the reference keeps."
    ),
    temper_start: float = typer.Option(
        TEMPER_START,
        min=0.0,
        max=100.0,  # finite: 100 times the flag's threshold is never reached, in effect
        help="With the familiarity check: the share of its width band's novelty threshold "
        "from which a face's P(ai) is tempered toward 0.5.",
    ),
    temper_slope: float = typer.Option(
        TEMPER_SLOPE,
        min=0.0,
        max=1000.0,  # finite: an infinite slope times a novelty at the start is NaN
        help="With the familiarity check: how fast an unfamiliar face's P(ai) is tempered toward "
        "0.5 as its novelty grows (0: not at all).",
    ),
) -> None:
    """Fit temperature, threshold and uncertain band on held-out data.

    Writes calibration.json into the bundle (or its copy in --out), and reference.safetensors
    for the familiarity check."""
    from facetell.evaluate import fingerprints_of, score_dataset, thumbnail_copy

    size_correction = size_correction and not no_face_detect
    target = calibration_target(bundle, out, overwrite=overwrite)
    try:
        detector = load_named_first(
            bundle, data, "calibrate BUNDLE", detect_faces=not no_face_detect
        )
        samples = select_samples(data or [], split_file, split, limit, default_split="val")
        fingerprints = fingerprints_of(samples)
        note_labelled_both_ways(samples, fingerprints, "each pair pulls the fit both ways")
        warn_if_trained_on(detector, fingerprints)
        labels = Counter(sample.target for sample in samples)
        if max_fpr is not None and labels[0] and not labels[1]:
            calibrate_on_real_photos(
                detector, bundle, target, samples, max_fpr, per_source=per_source
            )
            return
        both_classes(labels, "images", bundle, data)
        # small faces are re-encoded as the thumbnails are, so one correction fits both
        raw = Detector(
            detector.bundle.without_calibration(),
            detect_faces=not no_face_detect,
            face_detector=detector.face_detector,
            limits=DATASET_LIMITS,
            small_face_jpeg=(SMALL_FACE_WIDTH, THUMBNAIL_QUALITY) if size_correction else None,
        )
        copies = THUMBNAIL_SIZES if size_correction else ()
        asked_familiarity, familiarity = familiarity, familiarity and raw.gives_embedding
        own_split_of = data if data and split is not None and split_file is None else []
        references = (
            _reference_paths(reference, split_file, reference_size, own_split_of)
            if familiarity
            else []
        )
        with interrupted_says(lambda: f"{bundle} is unchanged"), progress_bar() as progress:
            total = len(references) + len(samples) * (1 + len(copies))
            task = progress.add_task("scoring", total=total)

            def advance(n: int) -> None:
                progress.advance(task, n)

            if references:
                thumbnail = thumbnail_copy(REFERENCE_THUMBNAIL, THUMBNAIL_QUALITY)
                raw.bundle.reference = Reference.from_embeddings(
                    reference_embeddings(raw, references, thumbnail=thumbnail, on_progress=advance)
                )
            scored = score_dataset(raw, samples, on_progress=advance)
            thumbnails = [
                score_dataset(
                    raw,
                    samples,
                    transform=thumbnail_copy(size, THUMBNAIL_QUALITY),
                    on_progress=advance,
                )
                for size in copies
            ]
        ok = scored.scored
        both_classes(Counter(scored.targets[ok].tolist()), "images with a face", bundle, data)
        fitted = (
            _fit_familiarity(
                raw.bundle.reference, [scored, *thumbnails], per_source, temper_start, temper_slope
            )
            if references
            else None
        )
        calibration = fit_calibration(
            scored.logits[ok],
            scored.targets[ok],
            max_fpr=max_fpr,
            sources=[s for s, keep in zip(scored.sources, ok, strict=True) if keep]
            if per_source
            else None,
            target_accuracy=target_accuracy,
            fitted_on={
                "data": [str(p) for p in (data or [])],
                "split_file": str(split_file) if split_file else None,
                "split": split or ("val" if split_file else None),
                "sources": sorted(set(scored.sources)),
                "not_scored": int((~ok).sum()),
            },
            face_temperatures=None
            if fitted is None
            else fitted.temperature(scored.novelty[ok], scored.face_widths[ok]),
        ).with_familiarity(fitted)
        if thumbnails:
            calibration = calibration.with_size_correction(
                _fit_size_correction(calibration, thumbnails, max_fpr, per_source)
            )
        if references:
            detector.bundle.reference = raw.bundle.reference
        detector.bundle.calibration = calibration.to_dict()
        save_calibrated(detector.bundle, bundle, target, reference=bool(references))
    except FacetellError as error:
        raise fail(str(error)) from None
    details = calibration.details
    upper = {k: v[1] for k, v in details["false_positive_rate_interval_by_source"].items()}
    console.print(
        f"temperature {calibration.temperature:.3f}, bias {calibration.bias:+.3f}, "
        f"threshold P(ai) ≥ {calibration.threshold:.4f} "
        f"({details['threshold_rule']}), uncertain band {calibration.uncertain_band[0]:.3f}-"
        f"{calibration.uncertain_band[1]:.3f}\n"
        f"ECE {details['ece_before']:.4f} before → {details['ece_after']:.4f} after; "
        f"false-positive rate {details['false_positive_rate']:.4f}"
        + "".join(
            f", {source} {rate:.4f} (95% up to {upper[source]:.4f})"
            for source, rate in details["false_positive_rate_by_source"].items()
        )
        + f", true-positive rate {details['true_positive_rate']:.4f}; "
        f"accuracy outside the band {details['band']['accuracy_outside_band']:.4f} "
        f"on {details['band']['coverage']:.1%} of {details['n']} images\n"
        + _describe_not_scored(scored)
        + _describe_size_correction(calibration.size_correction, size_correction)
        + _describe_familiarity(calibration.familiarity, familiarity, asked_familiarity)
        + _describe_thin_sources(details, max_fpr)
        + f"written to {target / 'calibration.json'}",
        highlight=False,
    )
    note_small_fit(details)


def _describe_not_scored(scored: ScoredSet) -> str:
    """The images a fit or evaluation could not use, so a set that gave fewer than it holds
    says why, naming the first unreadable ones."""
    statuses = scored.statuses
    counts = Counter(statuses)
    if counts["ok"] == len(statuses):
        return ""
    unread = [Path(path) for path, error in zip(scored.paths, scored.errors, strict=True) if error]
    return (
        f"left out {len(statuses) - counts['ok']} of {len(statuses)} images: "
        f"{counts['no_face']} without a face, {counts['error']} unreadable"
        + (f" ({first_names(unread)})" if unread else "")
        + "\n"
    )


def warn_if_trained_on(detector: Detector, fingerprints: Sequence[bytes | None]) -> None:
    """Calibration fitted on training images is too sure of itself and, on real photos the
    model learnt, sets its threshold too low for the photos it will meet."""
    from facetell.evaluate import seen_in_training

    seen = seen_in_training(detector.bundle.training_images, fingerprints)
    if seen and seen["train"]:
        err_console.print(
            f"note: {seen['train']} of these {len(fingerprints)} images are ones "
            f"{detector.model_name} was trained on, byte for byte; fitted on them, its P(ai) "
            "comes out too sure and its threshold too low: calibrate on held-out images (the "
            "run's split.json, --split val)",
            highlight=False,
        )


def note_labelled_both_ways(
    samples: Sequence[Sample], fingerprints: Sequence[bytes | None], consequence: str
) -> None:
    """A file given as real and again as AI (a copy in both class folders, a manifest slip)."""
    if pairs := labelled_both_ways(samples, fingerprints):
        err_console.print(given_both_ways(pairs, consequence), highlight=False)


def given_both_ways(pairs: Sequence[tuple[Path, Path]], consequence: str = "") -> str:
    """The note on files given as both real and AI, byte for byte (train, evaluate and
    calibrate say it alike), with what it costs where that is not obvious."""
    then = f": {consequence}" if consequence else ""
    return (
        f"note: {len(pairs)} image(s) are given as both real and AI (the same bytes), such as "
        f"{first_pair(pairs)}{then}; keep each under its true label only"
    )


def first_pair(pairs: Sequence[tuple[Path, Path]]) -> str:
    """The first (real, AI) pair of paths, as the notes name it."""
    real, ai = (printable_name(str(path)) for path in pairs[0])
    return f"{real} (real) and {ai} (AI)"


def calibration_target(bundle: Path, out: Path | None, *, overwrite: bool) -> Path:
    """Where calibrate writes, checked before any image is scored: --out, else the bundle
    itself. The shipped model is never rewritten in place: every predict without --model
    answers with it, and a calibration fitted on one platform's photos would move them all."""
    source = bundle_path(bundle)
    if out is None or out.resolve() == source.resolve():  # --out naming the bundle's own folder
        if is_shipped_bundle(source):
            raise fail(
                f"{bundle}: the shipped model, which predict uses without --model, is not "
                "calibrated in place; --out my-model calibrates a copy"
            )
        return source
    return bundle_output(out, overwrite)


def save_calibrated(fitted: Bundle, bundle: Path, target: Path, *, reference: bool) -> None:
    """Write a fitted calibration (and familiarity reference) into the target, a copy of the
    bundle made now when the target is another folder."""
    source = bundle_path(bundle)
    if target.resolve() != source.resolve():
        copy_bundle(source, target)
    if reference:
        fitted.save_reference(target)
    fitted.save_calibration(target)
    if (target / "MODEL_CARD.md").is_file():
        note_recalibration(target / "MODEL_CARD.md", fitted.calibration or {})


RECALIBRATED = "> **Calibrated again**"


def note_recalibration(card: Path, calibration: dict[str, Any]) -> None:
    """Say at the top of a bundle's model card (the shipped model's, copied) that its
    calibration.json was fitted again, and to what: the card's numbers were measured with the
    calibration it had, and must not vouch for this one. A later fit replaces the note."""
    low, high = calibration.get("uncertain_band", (0.0, 0.0))
    note = (
        f"{RECALIBRATED} on {datetime.date.today():%Y-%m-%d} by `facetell calibrate`: threshold "
        f"P(ai) ≥ {calibration.get('threshold', 0.5):.4f}, uncertain band {low:.3f}-{high:.3f}. "
        "The numbers below were measured with the calibration this bundle had before; "
        "`facetell evaluate` measures them again.\n"
    )
    title, _, body = card.read_text(encoding="utf-8").partition("\n")
    body = re.sub(rf"^\n{re.escape(RECALIBRATED)}[^\n]*\n", "", body)
    write_whole(card, f"{title}\n\n{note}{body}".encode())


def calibrate_on_real_photos(
    detector: Detector,
    bundle: Path,
    target: Path,
    samples: Sequence[Sample],
    max_fpr: float,
    *,
    per_source: bool,
) -> None:
    """`calibrate BUNDLE MY-REAL-PHOTOS --max-fpr RATE`: the threshold alone, raised until at
    most RATE of a platform's own real photos are called AI (`threshold_for_real_photos`)."""
    from facetell.calibrate import threshold_for_real_photos
    from facetell.evaluate import score_dataset

    if not detector.calibration.fitted:
        raise FacetellError(
            f"{bundle}: not calibrated; with real photos alone only the threshold of a calibrated "
            "bundle can be set (calibrate it on real and AI images first)"
        )
    with progress_bar() as progress:
        task = progress.add_task("scoring", total=len(samples))
        scored = score_dataset(detector, samples, on_progress=lambda n: progress.advance(task, n))
    ok = scored.scored
    if not ok.any():
        raise FacetellError(
            f"no face found in any of the {len(samples)} real photos (for photos of faces cropped "
            "already, add --no-face-detect)"
        )
    sources = [source for source, keep in zip(scored.sources, ok, strict=True) if keep]
    calibration = threshold_for_real_photos(
        detector.calibration,
        scored.p_ai[ok],
        max_fpr,
        sources=sources if per_source else None,
        fitted_on={
            "sources": sorted(set(scored.sources)),
            "images": len(samples),
            "not_scored": int((~ok).sum()),
        },
    )
    detector.bundle.calibration = calibration.to_dict()
    save_calibrated(detector.bundle, bundle, target, reference=False)
    alone = calibration.details["real_photos_alone"]
    upper = alone["false_positive_rate_interval_by_source"]
    rates = ", ".join(
        f"{name} {rate:.4f} (95% up to {upper[name][1]:.4f}; {alone['n_real_by_source'][name]})"
        for name, rate in alone["false_positive_rate_by_source"].items()
    )
    low, high = calibration.uncertain_band
    console.print(
        f"threshold P(ai) ≥ {calibration.threshold:.4f} (calibrated: "
        f"{alone['calibrated_threshold']:.4f}), uncertain band {low:.3f}-{high:.3f}; real faces "
        f"called AI: {rates}; temperature, bias, small-face correction and familiarity kept\n"
        f"written to {target / 'calibration.json'}",
        highlight=False,
    )
    if unshown := _describe_unshown_rate(alone, max_fpr):
        err_console.print(unshown, highlight=False)


def _describe_unshown_rate(alone: dict[str, Any], max_fpr: float) -> str:
    """The real sources too few to show that at most --max-fpr of their faces are called AI:
    a threshold that calls none of 6 photos AI still allows a rate of up to 39%."""
    from facetell.calibrate import trials_to_bound

    upper = alone["false_positive_rate_interval_by_source"]
    short = [name for name, interval in upper.items() if interval and interval[1] > max_fpr]
    if not short:
        return ""
    names = ", ".join(
        f"{name} (up to {upper[name][1]:.4f}, {alone['n_real_by_source'][name]} faces)"
        for name in short
    )
    needed = (
        f"; it takes {trials_to_bound(max_fpr)} faces of a source, none called AI, to show it"
        if max_fpr > 0
        else ""
    )
    return (
        f"note: these photos cannot show a false-positive rate of at most {max_fpr}: the 95% "
        f"interval of {names} reaches past it{needed}"
    )


def both_classes(
    counts: Counter[int], what: str, bundle: Path, data: Sequence[Path] | None
) -> None:
    """Refuse a calibration set without both classes (before scoring it, where the labels
    already show it), saying what it held and what to do instead."""
    if counts[0] and counts[1]:
        return
    where = " ".join(str(path) for path in data) if data else "DATA"
    if counts[0]:
        hint = (
            "with real photos alone, --max-fpr RATE raises the threshold until at most RATE of "
            f"them are called AI; facetell evaluate {bundle} {where} shows how many are now"
        )
    elif counts[1]:
        hint = "add real photos of the kind you will judge"
    else:
        hint = "for photos of faces cropped already, add --no-face-detect"
    raise FacetellError(
        f"calibration needs both real and AI {what}: found {counts[0]} real, {counts[1]} AI "
        f"({hint})"
    )


SMALL_FIT = 100  # faces of a class below which a fitted threshold and band swing widely


def note_small_fit(details: dict[str, Any]) -> None:
    """A threshold fitted on a dozen faces may land anywhere on the next dozen, and a
    temperature fitted on them can even raise their ECE: say so where the numbers are read."""
    real, ai = details["n_real"], details["n_ai"]
    if min(real, ai) < SMALL_FIT:
        err_console.print(
            f"note: fitted on {real} real and {ai} AI faces; with under {SMALL_FIT} of a class "
            "the temperature, threshold and band can move far on other images, and the ECE "
            "above is measured on these same faces: calibrate on more held-out images",
            highlight=False,
        )


def _describe_thin_sources(details: dict[str, Any], max_fpr: float | None) -> str:
    """Names the real sources too small for the false-positive target to allow any of their
    faces to be called AI: each one's single highest score then sets the threshold."""
    if not max_fpr:
        return ""
    thin = {name: n for name, n in details["n_real_by_source"].items() if n * max_fpr < 1}
    if not thin:
        return ""
    names = ", ".join(f"{name} ({n} real faces)" for name, n in thin.items())
    return (
        f"note: at --max-fpr {max_fpr} no face of {names} may be called AI, so the highest-scoring "
        "one sets the threshold; more of that source's photos would make it less fragile\n"
    )


def _reference_paths(
    reference: Sequence[Path] | None,
    split_file: Path | None,
    size: int,
    own_split_of: Sequence[Path] = (),
) -> list[str]:
    """A seeded sample of the training images the familiarity reference is built from, equal
    numbers per source: the split file's train split, the train part of the data's own split
    (`own_split_of`, when one of its parts is calibrated on), or image files under --reference
    (labelled or not; each folder of images counts as a source)."""
    if reference:
        gone = [path for path in reference if not path.exists() and not glob.has_magic(str(path))]
        if gone:
            raise FacetellError(f"{gone[0]}: no such file or folder (--reference)")
        pool = [item for item in expand_inputs([str(path) for path in reference])
                if isinstance(item, str)]  # fmt: skip
        if not pool:
            raise FacetellError(f"{reference[0]}: no images found for the familiarity reference")
        sources = [str(Path(path).parent) for path in pool]
    elif split_file is not None or own_split_of:
        samples = (
            SplitFile.load(split_file).samples("train")
            if split_file is not None
            else [sample for sample in discover(own_split_of) if sample.split == "train"]
        )
        pool, sources = [str(s.path) for s in samples], [s.source for s in samples]
    else:
        return []
    return [pool[i] for i in sample_indices(sources, size)]


def _describe_familiarity(familiarity: Familiarity | None, possible: bool, asked: bool) -> str:
    if familiarity is None:
        if not asked:
            why = "--no-familiarity"
        elif not possible:
            why = "the model gives no embedding to compare faces by"
        else:
            why = "give --split-file (its train split) or --reference"
        return f"familiarity: not fitted ({why})\n"
    bands = ", ".join(
        f"{label} {threshold:.4f}"
        for label, threshold in zip(
            _band_labels(familiarity.width_edges), familiarity.thresholds, strict=True
        )
    )
    d = familiarity.details
    by_source = ", ".join(f"{k} {v:.1%}" for k, v in d["flagged_by_source"].items())
    return (
        f"familiarity: {d['reference_faces']} reference faces (every second from a "
        f"{d['reference_thumbnail']}-px thumbnail copy), k {d['k']}; novelty thresholds "
        f"(flagging {familiarity.flagged_share:.0%} of {d['faces']} held-out faces, by face width) "
        f"{bands}"
        + (f"; flagged by source: {by_source}" if by_source else "")
        + "\n"
        + (
            f"unfamiliar faces' P(ai) tempered toward 0.5 from {familiarity.temper_start:.0%} of "
            f"the threshold, slope {familiarity.temper_slope:g}\n"
            if familiarity.temper_slope > 0
            else "unfamiliar faces' P(ai) not tempered (--temper-slope 0)\n"
        )
    )


def _band_labels(edges: tuple[float, ...]) -> list[str]:
    """'<64 px', '64-128 px', '≥128 px' for edges (64, 128)."""
    labels = [f"<{edges[0]:.0f} px"]
    labels += [f"{low:.0f}-{high:.0f} px" for low, high in itertools.pairwise(edges)]
    return [*labels, f"≥{edges[-1]:.0f} px"]


def _fit_familiarity(
    reference: Reference,
    scored: list[ScoredSet],
    per_source: bool,
    temper_start: float,
    temper_slope: float,
) -> Familiarity:
    """Novelty thresholds from the held-out faces of every copy (full size and thumbnails)."""
    novelty = np.concatenate([s.novelty for s in scored])
    measured = ~np.isnan(novelty)
    widths = np.concatenate([s.face_widths for s in scored])[measured]
    sources = np.concatenate([s.sources for s in scored])[measured]
    details = {"reference_faces": len(reference.embeddings), "k": reference.k,
               "reference_thumbnail": REFERENCE_THUMBNAIL,
               "faces": int(measured.sum())}  # fmt: skip
    return fit_familiarity(
        novelty[measured],
        widths,
        sources if per_source else None,
        temper_start=temper_start,
        temper_slope=temper_slope,
        details=details,
    )


def _fit_size_correction(
    calibration: Calibration, thumbnails: list[ScoredSet], max_fpr: float | None, per_source: bool
) -> SizeCorrection | None:
    """The small-face correction from the faces of every thumbnail copy, pooled."""
    ok = np.concatenate([t.scored for t in thumbnails])

    def pooled(key: str) -> np.ndarray:
        return np.concatenate([getattr(t, key) for t in thumbnails])[ok]

    sources = np.concatenate([t.sources for t in thumbnails])[ok]
    return fit_size_correction(
        calibration,
        pooled("logits"),
        pooled("targets"),
        pooled("face_widths"),
        reference_width=SMALL_FACE_WIDTH,
        jpeg_quality=THUMBNAIL_QUALITY,
        max_fpr=max_fpr,
        sources=list(sources) if per_source else None,
        novelty=pooled("novelty"),
    )


def _describe_size_correction(correction: SizeCorrection | None, asked: bool) -> str:
    if correction is None:
        lacking = "small faces: no size correction (the thumbnails lacked real or AI faces)\n"
        return lacking if asked else ""
    d = correction.details
    return (
        f"small faces (< {correction.reference_width:.0f} px, {d['n_small']} of {d['n']} "
        f"thumbnail faces): ECE {d['ece_small_before']:.4f} → {d['ece_small_after']:.4f}; on all "
        f"thumbnails, worst real source's false-positive rate {d['false_positive_rate_before']:.4f}"
        f" → {d['false_positive_rate_after']:.4f}, true-positive rate "
        f"{d['true_positive_rate_before']:.4f} → {d['true_positive_rate_after']:.4f}\n"
        f"small faces in images that are not JPEG files: re-encoded at JPEG "
        f"{correction.jpeg_quality} first\n"
    )


def server_settings(flags: dict[str, Any]) -> Settings:
    """`serve`'s settings from its flags and FACETELL_* variables; a bad value is one line
    naming the flag or variable it came from, not pydantic's traceback."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from facetell.server.settings import Settings

    def origin(field: str) -> str:
        return f"--{field.replace('_', '-')}" if field in flags else f"FACETELL_{field.upper()}"

    try:
        return Settings(**flags)
    except ValidationError as error:
        problems = "; ".join(
            f"{origin(str(p['loc'][0]))}: {p['msg'].lower()} (got {p['input']!r})"
            for p in error.errors()
        )
        raise fail(problems) from None
    except SettingsError as error:  # a list or mapping variable that is not JSON
        field = re.search(r'field "(\w+)"', str(error))
        name = origin(field.group(1)) if field else "a FACETELL_ variable"
        raise fail(f"{name}: not JSON, as a list is written: '[\"https://example.org\"]'") from None


def listen(host: str, port: int) -> socket.socket:
    """A listening socket of the family `host` names: `::` and `::1` need IPv6, and `::`
    takes IPv4 connections too, as 0.0.0.0 would."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    dualstack = host == "::" and socket.has_dualstack_ipv6()
    return socket.create_server((host, port), family=family, dualstack_ipv6=dualstack)


@app.command("serve")
def serve_command(
    host: str | None = typer.Option(None, help="Interface (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    model: Path | None = typer.Option(
        None, help="Model bundle: a folder or .zip (default: the shipped one, also named default)."
    ),
    max_upload_mb: float | None = typer.Option(None, help="Largest request body (default 20)."),
    max_concurrency: int | None = typer.Option(None, help="Inferences at once before 503."),
    root_path: str | None = typer.Option(
        None,
        help="The path a reverse proxy serves facetell under (/facetell: the page is at "
        "/facetell/), for the API docs' server address.",
    ),
    no_face_detect: bool = NO_FACE_DETECT,
    access_log: bool = typer.Option(
        False,
        "--access-log",
        help="Log one line per request on stdout, as uvicorn does: client, method, path and "
        "status (off by default: requests say whose photos were judged).",
    ),
) -> None:
    """Serve the web page and the REST API.

    Settings also come from FACETELL_* variables: FACETELL_API_TOKEN turns on bearer tokens,
    FACETELL_CORS_ORIGINS allows origins."""
    import uvicorn

    from facetell.server import create_app
    from facetell.server.app import load_detector

    flags = {
        "host": host,
        "port": port,
        "model": model,
        "max_upload_mb": max_upload_mb,
        "max_concurrency": max_concurrency,
        "root_path": None if root_path is None else root_path.rstrip("/"),
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    if no_face_detect:
        overrides["detect_faces"] = False
    if access_log:
        overrides["access_log"] = True
    settings = server_settings(overrides)
    if model is None:  # FACETELL_MODEL is read, and named when wrong, by Detector.load
        settings.model = None
    try:
        detector = load_detector(settings)  # loaded once, and before binding the port
    except FacetellError as error:
        raise fail(str(error)) from None
    address = f"{settings.host}:{settings.port}"
    try:  # bound here, so a port in use is one line and the server keeps the socket it checked
        listening = listen(settings.host, settings.port)
    except OSError as error:
        known = error.errno is not None and error.errno > 0  # getaddrinfo's are negative
        reason = (os.strerror(error.errno) if known else error.strerror or str(error)).lower()
        hint = {
            errno.EADDRINUSE: "choose another --port or stop what uses it",
            errno.EACCES: "choose a --port above 1023",
        }.get(error.errno, "give --host an address of this machine (0.0.0.0: all of them)")
        raise fail(f"cannot listen on {address} ({reason}); {hint}") from None
    bound_host, bound_port = listening.getsockname()[:2]
    everywhere = ipaddress.ip_address(bound_host).is_unspecified  # 0.0.0.0 or ::
    shown = "127.0.0.1" if everywhere else settings.host
    shown = f"[{shown}]" if ":" in shown else shown  # an IPv6 address in a URL
    err_console.print(
        f"facetell is serving on http://{shown}:{bound_port}"
        + (" and on every other address of this machine" if everywhere else "")
    )
    if not ipaddress.ip_address(bound_host).is_loopback and not settings.api_token:
        err_console.print(
            "note: other machines can reach it with no token; set FACETELL_API_TOKEN to ask one"
        )
    warn_if_uncalibrated(detector)  # after the address line, which scripts read first
    config = uvicorn.Config(
        create_app(settings, detector),
        log_level="warning",  # uvicorn's own start-up lines repeat the address said above
        access_log=settings.access_log,
        root_path=settings.root_path,
    )
    if settings.access_log:  # set after Config, which gives every uvicorn logger log_level
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    uvicorn.Server(config).run(sockets=[listening])


@app.command("ensemble")
def ensemble_command(
    members: list[Path] = typer.Argument(..., help="Member bundles (same crop size)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the ensemble bundle."),
    weights: list[float] = typer.Option([], "--weight", help="One per member (default equal)."),
    name: str = typer.Option(
        "facetell-ensemble", help="The bundle's model name (in every result)."
    ),
    half: bool = typer.Option(False, "--half", help="Store weights as float16 (half the size)."),
    overwrite: bool = OVERWRITE_BUNDLE,
) -> None:
    """Combine bundles into one: the weighted mean of their temperature-scaled logits.

    Members trained on different crops each read their own; an ensemble given (`default`)
    joins as its own members. Calibrate the result again (`facetell calibrate`) before
    shipping it."""
    from facetell.bundle import ensemble_bundle, load_bundle, model_name_problem

    if problem := model_name_problem(name):
        raise fail(f"--name {name!r}: {problem}")
    if weights and len(weights) != len(members):
        raise fail(f"{len(weights)} weights for {len(members)} members")
    bundle_output(out, overwrite)
    try:
        bundle = ensemble_bundle(
            [load_bundle(m) for m in members],
            weights or None,
            name,
            weights_dtype="float16" if half else "float32",
        )
        bundle.save(out)
    except FacetellError as error:
        raise fail(str(error)) from None
    models = len(bundle.model_kwargs["members"])  # an ensemble given joins as its members
    of = f"{models} models from {len(members)} bundles" if models > len(members) else models
    console.print(f"ensemble of {of} written to {out}")
