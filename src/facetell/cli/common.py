"""What every command shares: the typer app, its consoles, one-line failures, safe writes, progress
and the input helpers more than one command uses."""

from __future__ import annotations

import errno
import filecmp
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn
from rich.text import Text

from facetell import __version__
from facetell.data import (
    SPLIT_ALIASES,
    SPLITS,
    Sample,
    SplitFile,
    discover,
    labelled_both_ways,
    normalise_label,
    split_part_named,
)
from facetell.errors import FacetellError
from facetell.inference import Detector
from facetell.io import (
    DATASET_LIMITS,
    FORMATS_READ,
    FRAMES_HINT,
    RAW_SUFFIXES,
    VIDEO_SUFFIXES,
    NamedImage,
    binary_kind,
    file_head,
    image_files,
    is_url,
    looks_like_image,
    printable_name,
    real_path,
)

if TYPE_CHECKING:
    from facetell.evaluate import ScoredSet

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


class TableOrJson(StrEnum):
    """--format of the commands that print one report: a table to read, or JSON for scripts."""

    table = "table"
    json = "json"


# One declaration of each option several commands take; `panel` names the group a command's
# help lists it under (None: the plain "Options").
def no_face_detect_option(panel: str | None = None) -> Any:
    return typer.Option(
        False,
        "--no-face-detect",
        help="Take the whole image as the face (for pre-cropped faces).",
        rich_help_panel=panel,
    )


def threshold_option(panel: str | None = None) -> Any:
    return typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="P(ai) at or above which a face is called AI (default: the bundle's calibrated one).",
        rich_help_panel=panel,
    )


# calibrate and ensemble write a bundle into --out; both replace one there only when asked
def overwrite_bundle_option(panel: str | None = None) -> Any:
    return typer.Option(
        False,
        help="Replace a bundle --out already holds (refused without this).",
        rich_help_panel=panel,
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


def same_bytes(first: Path, second: Path) -> bool:
    try:
        return filecmp.cmp(first, second, shallow=False)
    except OSError:  # gone since it was read: nothing to compare
        return False


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


def describe_not_scored(scored: ScoredSet) -> str:
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
