"""The review page of a `predict` run: one self-contained HTML file (pictures inlined, no
scripts, no network) that a journalist or moderator can pass on as it is.

It lists every image most AI-like first, then shows each one as judged: the photo with its
numbered face boxes, each face's crop, verdict and P(ai), its metadata clues, its heat map when
one was drawn, and the error line of a file that could not be read.
"""

from __future__ import annotations

import dataclasses
import html
import io
import itertools
import math
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TextIO
from urllib.parse import quote

from PIL import Image, ImageDraw, ImageFont

from facetell import __version__
from facetell.inference import Detector, FaceResult, Result, stated_percent
from facetell.pages import BASE_STYLE, LIGHT, NO_SCRIPTS, image_data_uri

PHOTO_SIDE = 480  # px, the longest side of each photo as shown
FACE_SIDE = 112  # px, the longest side of each face's crop as shown
FACE_MARGIN = 0.2  # of the box's size, added on each side of a face's crop
# Cards per file of a saved page, about 12 MB: headless Chromium opened 200 cards in 0.5 s,
# 5,000 in 11.5 s and 1.6 GB (docs/benchmarks.md, benchmarks/review_open.py).
PER_FILE = 200
PART_TITLE = "facetell review: images "  # a later file's title, how a rerun knows its own
VERDICT_COLOURS = {label: LIGHT[label] for label in ("ai", "uncertain", "real")}  # face boxes
STATUS_WORDS = {"no_face": "no face", "error": "unreadable"}

_STYLE = (
    BASE_STYLE
    + """
h2{margin-top:32px}td{vertical-align:top}td.num{white-space:nowrap}.path{overflow-wrap:anywhere}
td.path{min-width:16em}.counts span{display:inline-block;margin:0 8px 6px 0;padding:2px 10px;
border-radius:12px;background:var(--head)}.verdict{font-weight:700;text-transform:uppercase}
.v-none{color:var(--muted)}
article{background:var(--surface);border:1px solid var(--line);margin:16px 0;padding:12px 16px}
article h3{margin:0 0 8px;font-size:16px}.card{display:flex;flex-wrap:wrap;gap:16px;
align-items:flex-start}.pictures{display:flex;flex-direction:column;gap:8px;max-width:100%}
.facts{flex:1 1 300px;max-width:100%}.facts table{width:auto}
figure img{max-width:100%;border:1px solid var(--line)}
nav.parts a,nav.parts strong{display:inline-block;margin:0 10px 4px 0}
figcaption{color:var(--muted)}td img{display:block}.declares{color:var(--ai);font-weight:700}
ul.clues{margin:6px 0;padding-left:20px;font-size:14px}.error{color:var(--bad)}
"""
    + "".join(f".v-{label}{{color:var(--{label})}}" for label in VERDICT_COLOURS)
)


@dataclass(frozen=True)
class _Row:
    """One line of the summary table, kept in memory while the cards go to disk."""

    index: int
    path: str
    status: str
    label: str | None
    p_ai: float | None
    faces: str
    detail: str
    declared_ai: bool


def _fit(image: Image.Image, side: int) -> Image.Image:
    """A copy at most `side` px long (never enlarged). A box reduction by the whole factor
    comes first (`reducing_gap=1`): a 1024-px photo takes 11 ms instead of 30, a 12 MP one
    25 ms instead of 84, which a 480-px picture to look at cannot tell apart."""
    scale = min(1.0, side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=1.0)


def _scaled(box: tuple[int, int, int, int], factor: float) -> tuple[int, int, int, int]:
    x, y, w, h = (round(v * factor) for v in box)
    return x, y, w, h


def boxed_photo(image: Image.Image, faces: tuple[FaceResult, ...]) -> Image.Image:
    """The photo at most `PHOTO_SIDE` px long with each face's box in its verdict's colour,
    numbered as the card's face table numbers them."""
    shown = _fit(image, PHOTO_SIDE)
    scale = shown.width / image.width
    draw = ImageDraw.Draw(shown)
    font = ImageFont.load_default(size=max(12, round(max(shown.size) / 32)))
    for number, face in enumerate(faces, start=1):
        x, y, w, h = (v * scale for v in face.box)
        colour = VERDICT_COLOURS[face.label]
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=3)  # JPEG keeps 3 px
        tag = draw.textbbox((x, y), str(number), font=font)  # a filled tag reads on any photo
        draw.rectangle((x, y, tag[2] + 4, tag[3] + 2), fill=colour)
        draw.text((x + 2, y), str(number), fill="white", font=font)
    return shown


def face_thumbnail(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The face's box widened by `FACE_MARGIN` a side, clipped to the photo, at most
    `FACE_SIDE` px long: for a person to look at, not the model's aligned crop."""
    x, y, w, h = box
    left, top = max(0, x - FACE_MARGIN * w), max(0, y - FACE_MARGIN * h)
    right = max(left + 1, min(image.width, x + w * (1 + FACE_MARGIN)))  # never 0 px wide
    bottom = max(top + 1, min(image.height, y + h * (1 + FACE_MARGIN)))
    return _fit(image.crop((round(left), round(top), round(right), round(bottom))), FACE_SIDE)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _verdict_html(label: str | None, status: str) -> str:
    word = label or STATUS_WORDS.get(status, status)
    return f'<span class="verdict v-{label or "none"}">{_e(word)}</span>'


def _percent(p_ai: float | None) -> str:
    return "" if p_ai is None else _e(stated_percent(p_ai))


def _detail(result: Result) -> str:
    """The summary's last cell: the error, or the unfamiliar flag and the kinds of clue."""
    if result.error:
        return result.error
    kinds = ", ".join(sorted({clue["kind"] for clue in result.metadata.get("clues", [])}))
    parts = [
        "unfamiliar face" if result.familiar is False else "",
        "declares AI" if result.metadata.get("declared_ai") else "",
        kinds,
    ]
    return "; ".join(part for part in parts if part)


def declares_ai_in_metadata(images: int) -> str:
    """A tally's words for images whose metadata declares them AI-made."""
    return "declares AI in its metadata" if images == 1 else "declare AI in their metadata"


def page_part(path: Path, number: int) -> Path:
    """The file of a review page saved in parts that holds part `number`: the page itself for
    1, then review-2.html, review-3.html, ... beside it."""
    return path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")


def page_part_number(path: Path, candidate: Path) -> int | None:
    """Which part of the page saved at `path` a file of that folder is named as, or None."""
    named = re.fullmatch(rf"{re.escape(path.stem)}(?:-([0-9]+))?{re.escape(path.suffix)}",
                         candidate.name)  # fmt: skip
    return None if named is None else int(named.group(1) or 1)


class ReviewPage:
    """Collects judged images into one HTML page: `save` writes it to a file, `write` to any
    text stream, each as many times as wanted (leave a `with` block to free the cards).

    Each image's card goes to `spool` as it arrives: by default a temporary file, so a folder
    of 10,000 photos costs disk, not memory; the server passes an in-memory one, since what
    users upload to it never touches its disk.
    """

    def __init__(self, detector: Detector, spool: TextIO | None = None) -> None:
        self.model = detector.model_name
        self.calibrated = detector.calibration.fitted
        self.threshold, self.band = detector.cut, detector.band
        self.started = datetime.now(UTC)
        # open for the page's whole life; leaving the `with` block closes it
        self._cards = spool or tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._rows: list[_Row] = []
        self._card_lengths: list[int] = []  # characters, to read the cards back file by file
        self._earlier = 0  # images an earlier run judged (`predict --resume`)

    @property
    def images(self) -> int:
        """Images on the page so far."""
        return len(self._rows)

    def __enter__(self) -> ReviewPage:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._cards.close()

    def add(
        self,
        result: Result,
        image: Image.Image | None = None,
        heat_map: Image.Image | None = None,
        *,
        earlier: bool = False,
        faces_without_details: int | None = None,
        image_scale: float = 1.0,
    ) -> None:
        """One judged input: its result, its upright photo (None: unreadable) and its heat-map
        overlay, if one was drawn. `earlier`: judged by the run `predict --resume` continues;
        `faces_without_details`: how many faces were judged when the result no longer holds
        them (that run wrote CSV); `image_scale`: the photo is a copy this fraction of the
        judged image's size (the web page sends small copies), so boxes are drawn to scale
        and sizes stated in the judged image's pixels."""
        index = len(self._rows) + 1
        if earlier:
            self._earlier += 1
        judged = len(result.faces) if faces_without_details is None else faces_without_details
        faces = str(judged) if judged >= result.faces_found else f"{judged} of {result.faces_found}"
        faces = "" if result.status == "error" else faces  # unread: not "0 faces"
        self._rows.append(
            _Row(index, result.path, result.status, result.label, result.p_ai, faces,
                 _detail(result), bool(result.metadata.get("declared_ai")))
        )  # fmt: skip
        card = self._card(
            index,
            result,
            image,
            heat_map,
            no_face_details=faces_without_details is not None,
            image_scale=image_scale,
        )
        self._cards.write(card)
        self._card_lengths.append(len(card))

    def _card(
        self,
        index: int,
        result: Result,
        image: Image.Image | None,
        heat_map: Image.Image | None,
        *,
        no_face_details: bool = False,
        image_scale: float = 1.0,
    ) -> str:
        declared = (  # the strongest evidence there is, so it heads the card
            ' · <span class="declares">its metadata declares it AI-generated</span>'
            if result.metadata.get("declared_ai")
            else ""
        )
        head = (
            f'<article id="image-{index}"><h3>{index}. <span class="path">{_e(result.path)}'
            f"</span> · {_verdict_html(result.label, result.status)} {_percent(result.p_ai)}"
            f"{declared}</h3>"
        )
        if result.status == "error":
            return f'{head}<p class="error">{_e(result.error)}</p></article>\n'
        pictures = []
        on_copy = tuple(_scaled(face.box, image_scale) for face in result.faces)
        if image is not None:
            pairs = zip(result.faces, on_copy, strict=True)
            drawn = tuple(dataclasses.replace(face, box=box) for face, box in pairs)
            photo = boxed_photo(image, drawn)
            meta = result.metadata
            width, height = (  # the judged image's, which the record states
                (meta.get("width"), meta.get("height")) if image_scale != 1 else image.size
            )
            pictures.append(
                f'<figure><img src="{image_data_uri(photo, quality=80)}" width="{photo.width}" '
                f'height="{photo.height}" alt="the photo, faces boxed"><figcaption>'
                f"{width} &times; {height} px</figcaption></figure>"
            )
        if heat_map is not None and result.status == "ok":  # no face: no map on it
            shown = _fit(heat_map, PHOTO_SIDE)
            pictures.append(
                f'<figure><img src="{image_data_uri(shown, quality=80)}" width="{shown.width}" '
                f'height="{shown.height}" alt="heat map"><figcaption>where the model looked '
                "(an aid to judgement, not proof)</figcaption></figure>"
            )
        if result.status == "no_face":
            facts = "<p>No face found: nothing was judged.</p>"
        elif no_face_details:
            facts = (
                '<p class="note">Judged by the run this one resumed, whose CSV keeps no face '
                "boxes or per-face verdicts (--format jsonl keeps them).</p>"
            )
        else:
            facts = self._faces_table(result, image, on_copy)
        return (
            f'{head}<div class="card"><div class="pictures">{"".join(pictures)}</div>'
            f'<div class="facts">{facts}{self._clues(result)}</div></div></article>\n'
        )

    def _faces_table(
        self,
        result: Result,
        image: Image.Image | None,
        on_copy: tuple[tuple[int, int, int, int], ...],
    ) -> str:
        """Faces most AI-like first, each under the number its box carries on the photo;
        `on_copy`: each face's box in the pixels of `image`."""
        numbered = sorted(enumerate(result.faces, start=1), key=lambda pair: -pair[1].p_ai)
        rows = []
        for number, face in numbered:
            crop = ""
            if image is not None:
                thumb = face_thumbnail(image, on_copy[number - 1])
                crop = (
                    f'<img src="{image_data_uri(thumb, quality=90)}" width="{thumb.width}" '
                    f'height="{thumb.height}" alt="face {number}">'
                )
            notes = [f"{face.box[2]} &times; {face.box[3]} px"]  # numbers and fixed words only
            if face.familiar is False:
                notes.append("unfamiliar: unlike the training faces, trust P(ai) less")
            rows.append(
                f"<tr><td class=num>{number}</td><td>{crop}</td>"
                f"<td>{_verdict_html(face.label, 'ok')}</td>"
                f"<td class=num>{_percent(face.p_ai)}</td><td>{'; '.join(notes)}</td></tr>"
            )
        cut = ""
        if result.faces_found > len(result.faces):
            cut = (
                f'<p class="note">{result.faces_found} faces found; the {len(result.faces)} '
                "most face-like were judged.</p>"
            )
        return (
            f'{cut}<div class="scroll"><table><tr><th>face</th><th>crop</th><th>verdict</th>'
            f"<th>P(ai)</th><th>notes</th></tr>{''.join(rows)}</table></div>"
        )

    @staticmethod
    def _clues(result: Result) -> str:
        metadata = result.metadata
        facts = [f"{metadata.get('format') or 'unknown'} file"]
        if metadata.get("jpeg_quality"):
            facts.append(f"JPEG quality ≈ {metadata['jpeg_quality']}")
        if metadata.get("frames", 1) > 1:
            facts.append(f"{metadata['frames']} frames, the first judged")
        items = [
            f'<li class="{"declares" if clue["declares_ai"] else ""}">{_e(clue["kind"])} · '
            f"{_e(clue['key'])}: {_e(clue['value'])}"
            f"{' (declares AI)' if clue['declares_ai'] else ''}</li>"
            for clue in metadata.get("clues", [])
        ]
        if not items:
            return f"<p>{_e(', '.join(facts))}. No metadata clues.</p>"
        return f'<p>{_e(", ".join(facts))}.</p><ul class="clues">{"".join(items)}</ul>'

    def write(self, handle: TextIO, note: str | None = None) -> None:
        """The page so far as one document (summary, then every card); `note` goes at the top,
        e.g. that the run was interrupted."""
        handle.write(self._head(note, lambda index: f"#image-{index}"))
        self._cards.seek(0)
        shutil.copyfileobj(self._cards, handle)
        self._cards.seek(0, io.SEEK_END)
        handle.write("</main></body></html>\n")

    def save(self, path: Path, note: str | None = None, *, per_file: int = PER_FILE) -> list[Path]:
        """Write the page to `path`, whole or not at all: a reader never opens half a page.

        Past `per_file` images (0: no limit) the cards go on in `<stem>-2<suffix>`, `-3`, …
        beside it, `per_file` to a file: a browser that opens 200 cards at once struggles with
        thousands. `path` keeps the summary of every image, linked to the file its card is in,
        and every file links to the others. Returns the files written, `path` first.
        """
        total = len(self._rows)
        per_file = per_file if 0 < per_file < total else max(total, 1)  # all in one file
        count = max(1, math.ceil(total / per_file))
        files = [page_part(path, k) for k in range(1, count + 1)]
        links = [_e(quote(target.name)) for target in files]

        def href(index: int) -> str:
            part = (index - 1) // per_file
            return f"{links[part] if part else ''}#image-{index}"

        staged = [target.with_name(target.name + ".part") for target in files]
        path.parent.mkdir(parents=True, exist_ok=True)  # else the error named a .part file
        self._cards.seek(0)
        try:
            for part, partial in enumerate(staged):
                first, last = part * per_file + 1, min(total, (part + 1) * per_file)
                nav = self._parts_nav(links, per_file, total, part) if count > 1 else ""
                head = self._head(note, href) if part == 0 else self._part_head(first, last)
                with partial.open("w", encoding="utf-8") as handle:
                    handle.write(head + nav)
                    handle.write(self._cards.read(sum(self._card_lengths[first - 1 : last])))
                    handle.write(f"{nav}</main></body></html>\n")
        except BaseException:
            for partial in staged:
                partial.unlink(missing_ok=True)
            raise
        finally:
            self._cards.seek(0, io.SEEK_END)
        for partial, target in zip(staged, files, strict=True):
            partial.replace(target)
        self._remove_later_parts(path, count + 1)
        return files

    @staticmethod
    def _remove_later_parts(path: Path, first: int) -> None:
        """The files past this page's last of an earlier, longer page saved at `path`: nothing
        links to them any more, and beside the new page they read as part of it."""
        for number in itertools.count(first):
            stale = page_part(path, number)
            try:
                with stale.open("rb") as handle:
                    head = handle.read(2048)
            except OSError:
                return
            if PART_TITLE.encode() not in head:  # a file of the user's own: left alone
                return
            stale.unlink()

    @staticmethod
    def _parts_nav(links: list[str], per_file: int, total: int, current: int) -> str:
        """Links to every file of a page saved in parts, the one being read in bold."""
        items = []
        for part, link in enumerate(links):
            span = f"images {part * per_file + 1}&ndash;{min(total, (part + 1) * per_file)}"
            if part == 0:
                span += " and the summary"
            here = part == current
            items.append(f"<strong>{span}</strong>" if here else f'<a href="{link}">{span}</a>')
        return f'<nav class="parts">This review is in {len(links)} files: {"".join(items)}</nav>'

    def _part_head(self, first: int, last: int) -> str:
        """The top of a later file of a page saved in parts: its cards and a way back."""
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8">{NO_SCRIPTS}'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{PART_TITLE}{first}&ndash;{last} of {len(self._rows)}</title>"
            f"<style>{_STYLE}</style></head><body><main><h1>facetell review: images "
            f"{first}&ndash;{last} of {len(self._rows)}</h1>"
            f'<p class="lead">Judged on {self.started:%Y-%m-%d %H:%M} UTC by {_e(self.model)} '
            f"(facetell {__version__}). The first file has the summary and how to read it.</p>"
        )

    def _head(self, note: str | None, href: Callable[[int], str]) -> str:
        counts = Counter(row.label or STATUS_WORDS[row.status] for row in self._rows)
        order = ["ai", "uncertain", "real", *STATUS_WORDS.values()]
        chips = "".join(f"<span>{counts[key]} {key}</span>" for key in order if counts[key])
        declared = sum(row.declared_ai for row in self._rows)
        if declared:  # the strongest evidence there is, whatever the verdicts say
            chips += f'<span class="declares">{declared} {declares_ai_in_metadata(declared)}</span>'
        judged = sorted(
            (row for row in self._rows if row.p_ai is not None), key=lambda row: -row.p_ai
        )
        rest = [row for row in self._rows if row.p_ai is None]
        summary = "".join(
            f'<tr><td class=num>{row.index}</td><td class="path"><a href="{href(row.index)}">'
            f"{_e(row.path)}</a></td><td>{_verdict_html(row.label, row.status)}</td>"
            f"<td class=num>{_percent(row.p_ai)}</td><td class=num>{_e(row.faces)}</td>"
            f"<td>{_e(row.detail)}</td></tr>"
            for row in [*judged, *rest]
        )
        low, high = self.band  # the verdict reads the band first, then the threshold
        calibration = (
            "P(ai) is the calibrated probability that a face is AI-generated."
            if self.calibrated
            else "This model is not calibrated: P(ai) is a raw score, not a probability."
        ) + (
            f" A face is called uncertain from {max(low, 0):.1%} to {min(high, 1):.1%}, AI above "
            f"that (the threshold is {self.threshold:.1%}) and real below."
        )
        warning = f'<p class="note">{_e(note)}</p>' if note else ""
        resumed = ""
        if self._earlier:
            resumed = f", the first {self._earlier} by the run this one resumed"
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8">{NO_SCRIPTS}'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>facetell review: {len(self._rows)} images</title><style>{_STYLE}</style>"
            f"</head><body><main><h1>facetell review</h1>"
            f'<p class="lead">{len(self._rows)} image(s) judged on '
            f"{self.started:%Y-%m-%d %H:%M} UTC by {_e(self.model)} (facetell {__version__})"
            f"{resumed}.</p>"
            f'{warning}<p class="counts">{chips}</p><h2>How to read this</h2><p>{calibration} '
            "An image's verdict is that of its most AI-like face. An unfamiliar face looks "
            "unlike the faces the model learnt from, so its P(ai) deserves less trust. "
            "Metadata clues never change a score: a clue that declares AI is strong evidence, "
            "but metadata is easily stripped, so its absence proves nothing. A heat map shows "
            "where the model looked; it is an aid to judgement, not proof. Every verdict is "
            "evidence to weigh, not a finding.</p>"
            '<h2>Images, most AI-like first</h2><div class="scroll"><table><tr><th>#</th>'
            "<th>file</th><th>verdict</th><th>P(ai)</th><th>faces</th><th>clues / error</th></tr>"
            f"{summary}</table></div><h2>Each image</h2>"
        )
