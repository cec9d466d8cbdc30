"""`facetell predict`: judge images and write a table, CSV or JSON lines, resumably."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path, PureWindowsPath
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from facetell.bundle import write_whole
from facetell.cli.common import (
    WriteFailed,
    app,
    console,
    err_console,
    expand_inputs,
    fail,
    first_names,
    no_face_detect_option,
    not_written_by_us,
    note_skipped,
    progress_bar,
    threshold_option,
    warn_if_uncalibrated,
    writable,
    write_failed,
    writing,
)
from facetell.data import MANIFEST_SUFFIXES, table_rows
from facetell.errors import FacetellError
from facetell.forensics import metadata_clues
from facetell.inference import MAX_FACES, RECORDED_PRECISION, Detector, Result, stated_percent
from facetell.io import (
    CSV_FILE_ENCODING,
    DEFAULT_LIMITS,
    DecodeLimits,
    NamedImage,
    decode,
    exists,
    is_url,
    printable_name,
    real_path,
    text_of,
)
from facetell.review import PER_FILE, ReviewPage, declares_ai_in_metadata, page_part_number

if TYPE_CHECKING:
    from PIL import Image


class PredictFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"
    json = "json"  # one array, for tools that read a whole file; jsonl streams and resumes

    @property
    def file_encoding(self) -> str:
        """How a file of this format is written: a CSV with a byte-order mark, for Excel."""
        return CSV_FILE_ENCODING if self is PredictFormat.csv else "utf-8"

    @property
    def resumable(self) -> bool:
        """Whether --resume can go on in a file of this format: one record a line or a row."""
        return self in (PredictFormat.jsonl, PredictFormat.csv)


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


def is_own_output(path: Path, output: Path | None, report: Path | None) -> bool:
    """Whether a file in a folder given is this run's own -o file, review page or one of the
    page's later files: written there by the run before, it is no input left out."""
    if output is not None and real_path(path) == real_path(output):
        return True
    if report is None or real_path(path.parent) != real_path(report.parent):
        return False
    return page_part_number(report, path) is not None


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
        write_whole(output, kept.getvalue().encode(output_format.file_encoding))
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


def settled_outputs(
    output: Path | None,
    output_format: PredictFormat | None,
    report: Path | None,
    explain_dir: Path | None,
    *,
    resume: bool,
) -> tuple[Path | None, PredictFormat, Path | None]:
    """predict's output file (None: standard output), its format and the review page's file,
    each checked writable before any work, so a mistyped path costs one line, not a run."""
    if output is not None and str(output) == "-":  # as inputs and --files-from read "-"
        output = None
    if output and output.suffix.lower() in SPREADSHEET_SUFFIXES:
        raise fail(
            f"{output}: facetell writes no spreadsheet file; name it "
            f"{output.with_suffix('.csv')}, which spreadsheets open"
        )
    output_format = output_format or FORMAT_OF_SUFFIX.get(
        output.suffix.lower() if output else "", PredictFormat.table
    )
    if resume and (output is None or not output_format.resumable):
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
    return output, output_format, report


class RecordSink:
    """Where predict's records go, in the format asked for. A JSON line or CSV row reaches the
    file as soon as its image is judged, so a killed run keeps every record but a torn last
    one, for --resume, and `tail -f` follows the run; the table alone is drawn at the end. A
    failed write raises WriteFailed, naming the file."""

    def __init__(
        self, output: Path | None, output_format: PredictFormat, model: str, *, appending: bool
    ) -> None:
        self.output = output
        self.format = output_format
        # a CSV file gets its byte-order mark when it is made (Python writes none when it appends)
        encoding = output_format.file_encoding
        mode = "a" if appending else "w"
        self.handle = output.open(mode, encoding=encoding, newline="") if output else sys.stdout
        self.csv = csv.writer(self.handle) if output_format is PredictFormat.csv else None
        if self.csv and not appending:
            self.csv.writerow(CSV_COLUMNS)
        self.separator = "[\n"  # --format json: what goes before the next record of the array
        self.table = Table(title=f"facetell predict ({model})")
        for column in ("path", "verdict", "P(ai)", "faces", "clues / error", "ms"):
            self.table.add_column(column, overflow="fold")

    def write(self, record: dict[str, Any]) -> None:
        with writing(self.output or "standard output"):
            if self.format is PredictFormat.jsonl:
                self.handle.write(json.dumps(record) + "\n")
                self.handle.flush()
            elif self.format is PredictFormat.json:
                self.handle.write(self.separator + json.dumps(record))
                self.separator = ",\n"
            elif self.csv:
                self.csv.writerow(_csv_row(record))
                self.handle.flush()
            else:
                self.table.add_row(*_table_row(record))

    def close(self) -> None:
        """Draw the table or end the JSON array (a stopped run's too: still JSON), then close."""
        with writing(self.output or "standard output"):
            if self.format is PredictFormat.table:
                Console(file=self.handle, width=console.width, markup=False).print(self.table)
            elif self.format is PredictFormat.json:
                self.handle.write("[]\n" if self.separator == "[\n" else "\n]\n")
            if self.output:
                self.handle.close()

    def abandon(self) -> None:
        """Close the file after a write failed, whatever closing it says."""
        if self.output:
            with suppress(OSError):
                self.handle.close()


@app.command("predict")
def predict_command(
    inputs: list[str] = typer.Argument(
        None, help="Images, folders, globs, http(s) URLs, or - for stdin.", show_default=False
    ),
    no_face_detect: bool = no_face_detect_option(),
    files_from: list[Path] = typer.Option(
        [],
        "--files-from",
        help="A text file listing inputs, one a line (files, folders, globs or URLs; a relative "
        "path is looked for from here, then from the list's folder; - reads the list from "
        "stdin). Blank lines are skipped. Of a .csv or .tsv with a path column (a manifest, "
        "an earlier run's results), that column.",
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
    model: Path | None = typer.Option(
        None,
        help="Model bundle: a folder or .zip (default: the shipped one, also named default).",
        rich_help_panel="Model",
    ),
    threshold: float | None = threshold_option("Model"),
    output_format: PredictFormat | None = typer.Option(
        None,
        "--format",
        "-f",
        help="Default: as --output's name ends (.csv, .jsonl, .ndjson or .json), else table.",
        rich_help_panel="Output",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write to a file (-: standard output, as without it).",
        rich_help_panel="Output",
    ),
    explain_dir: Path | None = typer.Option(
        None,
        "--explain",
        help="Save heat-map overlays (JPEG) into this folder (never read as inputs, even "
        "inside a folder given).",
        rich_help_panel="Output",
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Also write a review page, self-contained HTML: every photo, its faces, verdicts "
        "and clues (and heat maps with --explain), most AI-like first.",
        rich_help_panel="Output",
    ),
    report_per_file: int = typer.Option(
        PER_FILE,
        min=0,
        help="Images per file of the review page: later ones go on in NAME-2.html, NAME-3.html"
        ", …, linked from the first (0: all in one file, however large).",
        rich_help_panel="Output",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a run that stopped: skip the images --output already holds a result for, "
        "try its errors again and append the rest (--format jsonl or csv). A review page shows "
        "every image the file holds.",
        rich_help_panel="Output",
    ),
) -> None:
    """Judge images: is each face a real photograph or AI-generated?"""
    output, output_format, report = settled_outputs(
        output, output_format, report, explain_dir, resume=resume
    )
    resumable = output_format.resumable
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
    listed = listed_inputs(inputs or [], files_from)
    skipped: list[Path] = []
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
    sink = RecordSink(output, output_format, detector.model_name, appending=appending)
    counts: Counter[str] = Counter()
    crowded = 0  # images with more faces than --max-faces
    declared = 0  # images whose metadata declares them AI-made, whatever the model said
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
                    sink.write(record)
                    counts[record["label"] or record["status"]] += 1
                    crowded += record["faces_found"] > len(record["faces"])
                    declared += bool(record["metadata"].get("declared_ai"))
                    progress.advance(task)
                    if stop.is_set():  # Ctrl-C: this image's outputs are all written; stop
                        interrupted = True
                        break
            except KeyboardInterrupt:  # a second Ctrl-C: at once, with what was written
                interrupted = True
            except WriteFailed as failure:
                sink.abandon()
                raise write_failed(
                    failure, sum(counts.values()), len(sources), output, resumable
                ) from None
    try:
        sink.close()
    except WriteFailed as failure:
        raise write_failed(failure, sum(counts.values()), len(sources), output, resumable) from None
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.most_common())
    if declared:  # the strongest evidence there is, so the tally counts it too
        summary += f"; {declared} {declares_ai_in_metadata(declared)}"
    done = sum(counts.values())
    pages: list[Path] = []  # the review page's files
    if page and report:
        stopped = None
        if interrupted:
            stopped = interruption_notice(page.images, len(earlier), len(sources), output)
        pages = save_review_page(page, report, stopped, per_file=report_per_file)
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
    low, high = detector.band
    cut = f" (AI at P(ai) ≥ {detector.cut:.4f}, uncertain {low:.3f}-{high:.3f})"
    where = where_the_page_is(pages, len(earlier))
    err_console.print(f"{len(sources)} image(s): {summary or 'none'}{cut}{where}", highlight=False)


def listed_inputs(inputs: list[str], files_from: list[Path]) -> list[str]:
    """The inputs named on the command line, then those of each --files-from list, refusing a
    second read of stdin (the first read empties it) and a run with nothing to judge."""
    stdin = Path("-")
    if "-" in inputs and stdin in files_from:
        raise fail("stdin can hold the list (--files-from -) or an image (-), not both")
    if inputs.count("-") > 1 or files_from.count(stdin) > 1:
        raise fail("stdin can be read once: give - (or --files-from -) once")
    try:
        listed = [*inputs, *(line for path in files_from for line in read_list(path))]
    except FacetellError as error:
        raise fail(str(error)) from None
    if not listed and files_from:  # `find` that found nothing, say
        lists = ", ".join("stdin" if path == stdin else str(path) for path in files_from)
        raise fail(f"{lists}: names no input (empty, or blank lines only); nothing to judge")
    if not listed:
        raise fail("give images, folders, globs or URLs to judge, or --files-from LIST")
    return listed


def interruption_notice(shown: int, earlier: int, new: int, output: Path | None) -> str:
    """What an interrupted review page says at its top, so a reader knows it is not the
    whole batch: `earlier` images came from --resume's output file, `new` were to be judged."""
    if shown < earlier:  # stopped while the earlier run's cards were redrawn
        return (
            f"Interrupted: this page shows {shown} of the {earlier} images "
            f"{output} holds; none was judged this time."
        )
    return f"Interrupted: {shown} of {earlier + new} images were judged."


def save_review_page(
    page: ReviewPage, report: Path, stopped: str | None, *, per_file: int
) -> list[Path]:
    """Write the review page's files, failing in one line if the disk refuses them."""
    with page:
        try:
            return page.save(report, stopped, per_file=per_file)
        except OSError as error:  # checked writable at the start; a disk can fill since
            reason = (error.strerror or str(error)).lower()
            raise fail(f"{report}: cannot write the review page ({reason})") from None


def where_the_page_is(pages: list[Path], earlier: int) -> str:
    """The run's last line's account of the review page: its first file, how many more hold
    its cards, and the images of an earlier run it also shows."""
    if not pages:
        return ""
    where = f"; review page: {pages[0]}"
    if len(pages) > 1:
        where += f" (its cards go on in {len(pages) - 1} more file(s), to {pages[-1].name})"
    if earlier:
        where += f", with the {earlier} judged before"
    return where


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
