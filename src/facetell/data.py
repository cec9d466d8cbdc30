"""Datasets: discover labelled images, describe every file, find duplicates, split reproducibly.

Splits are made over duplicate groups (exact sha256 and near-identical perceptual hash), so a
picture and its re-encoded copy can never sit on both sides of a train/test boundary.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PureWindowsPath

import imagehash
import numpy as np

from facetell.errors import BadImage, DatasetError
from facetell.io import (
    DATASET_LIMITS,
    archive_kind,
    decode,
    exists,
    file_head,
    looks_like_image,
    real_path,
    text_of,
)

LABELS = ("real", "ai")
# The spellings of public detection datasets: CNNDetection's 0_real/1_fake, GenImage's
# nature/ai, Kaggle's "real and fake face detection" training_real/training_fake.
LABEL_ALIASES = {
    "real": "real",
    "0_real": "real",
    "authentic": "real",
    "genuine": "real",
    "nature": "real",
    "training_real": "real",
    "0": "real",
    "ai": "ai",
    "fake": "ai",
    "1_fake": "ai",
    "training_fake": "ai",
    "synthetic": "ai",
    "generated": "ai",
    "1": "ai",
}
# Words a class folder's name may carry around its class ("Real Faces", "fake_images"); a name of
# class words and these alone names that class, so "ai-generated faces" does, "real-vs-fake" not
LABEL_FILLER = frozenset(
    {"face", "faces", "image", "images", "img", "imgs", "photo", "photos", "picture", "pictures"}
)
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
SPLITS = ("train", "val", "test")
MANIFEST_NAMES = ("manifest.csv",)
MANIFEST_SUFFIXES = (".csv", ".tsv")
MANIFEST_SEPARATORS = ",;\t"  # the one a header line uses most separates the columns
# Bits (of 256) within which two perceptual hashes count as one picture. Measured on the shared
# faces: a 0.5x downscaled JPEG q50 copy is at most 30 bits away (median 4); distinct aligned
# faces are 56 or more apart.
PHASH_SIZE = 16
NEAR_DUPLICATE_DISTANCE = 28


@dataclass(frozen=True)
class Sample:
    """One labelled image file; `split` is set only when the folder layout names one."""

    path: Path
    label: str
    source: str
    split: str | None = None

    @property
    def target(self) -> int:
        """1 for AI-generated, 0 for real: the positive class is the one we detect."""
        return int(self.label == "ai")


@dataclass(frozen=True)
class FileRecord:
    """Everything the audit and the splitter need to know about one file."""

    path: str
    label: str
    source: str
    split: str | None = None  # the data's own, from its folders or a manifest's split column
    sha256: str = ""
    format: str = ""
    width: int = 0
    height: int = 0
    n_bytes: int = 0
    jpeg_quality: int | None = None
    jpeg_subsampling: str | None = None
    phash: str = ""
    border_fraction: float = 0.0
    dark_corner_fraction: float = 0.0
    error: str | None = None

    @property
    def bytes_per_pixel(self) -> float:
        return self.n_bytes / max(1, self.width * self.height)


def normalise_label(value: str) -> str | None:
    """Map a folder name or manifest value to 'real'/'ai', any case, with words such as faces or
    images around the class ("Real Faces", "AI_generated"); None when it is neither, or names
    both ("real_vs_fake"). The digits 0 and 1 count alone only: "images_1" names no class."""
    value = value.strip().lower()
    if value in LABEL_ALIASES:
        return LABEL_ALIASES[value]
    words = [word for word in re.split(r"[\s_.\-]+", value) if word and word not in LABEL_FILLER]
    labels = {None if word.isdigit() else LABEL_ALIASES.get(word) for word in words}
    return labels.pop() if len(labels) == 1 else None


def table_rows(text: str) -> tuple[list[str], csv.DictReader[str]]:
    """The columns (stripped, lower case) and rows of a CSV or TSV as spreadsheets save them:
    `Path,Label` headers, and semicolons (Excel where the decimal mark is a comma) or tabs
    between columns; the separator is the one the header line uses most."""
    header = text.split("\n", 1)[0]
    separator = max(MANIFEST_SEPARATORS, key=header.count)
    lines = io.StringIO(text, newline="")
    reader = csv.DictReader(lines, delimiter=separator, skipinitialspace=True)
    columns = [name.strip().lower() for name in reader.fieldnames or []]
    reader.fieldnames = columns
    return columns, reader


def read_manifest(csv_path: Path) -> list[Sample]:
    """Read `path,label[,source][,split]` rows; paths are relative to the CSV's folder.

    A manifest written on Windows (`real\\cam\\1.jpg`) is read with its backslashes as folder
    separators when the path does not exist as written; a `split` column (train, val, test
    and their aliases) is kept, as a train/ or test/ folder would be. What spreadsheets save
    reads too (`table_rows`), with a byte-order mark (Excel's "CSV UTF-8") or as UTF-16
    ("Unicode Text").
    """
    base = csv_path.parent
    samples = []
    listed_on: dict[Path, int] = {}  # each image's real path: the line that first lists it
    text = text_of(csv_path.read_bytes())
    columns, rows = table_rows(text)
    if not {"path", "label"} <= set(columns):
        raise DatasetError(
            f"{csv_path}: a manifest needs the columns path,label[,source][,split]; found {columns}"
        )
    for row in rows:
        line_no = rows.line_num  # the reader's own count: blank lines are skipped, not rows
        label = normalise_label(row["label"] or "")
        if label is None:
            raise DatasetError(
                f"{csv_path}:{line_no}: label {row['label']!r} is neither real nor ai"
            )
        if not (row["path"] or "").strip():
            raise DatasetError(f"{csv_path}:{line_no}: the row names no path")
        path = Path(row["path"])
        path = path if path.is_absolute() else base / path
        if "\\" in row["path"] and not path.exists():
            path = base / PureWindowsPath(row["path"]).as_posix()
        source = (row.get("source") or "").strip() or label
        given_split = (row.get("split") or "").strip()
        split = SPLIT_ALIASES.get(given_split.lower())
        if given_split and split is None:  # "holdout" meant for testing would have trained
            raise DatasetError(
                f"{csv_path}:{line_no}: split {given_split!r} is none of train, val, test "
                f"({', '.join(SPLIT_ALIASES)}); leave it empty for an image of no part"
            )
        if (first := listed_on.setdefault(real_path(path), line_no)) != line_no:
            raise DatasetError(
                f"{csv_path}:{line_no}: {row['path']} is listed again (first on line {first}); "
                "list each image once, under its true label"
            )
        samples.append(Sample(path=path, label=label, source=source, split=split))
    if not samples:
        raise DatasetError(f"{csv_path}: the manifest has no rows below its header")
    return samples


def _sample_from_layout(root: Path, path: Path, *, root_is_class: bool = False) -> Sample | None:
    """Read label, split and source from folder names, wherever the label folder sits."""
    parts = path.relative_to(root).parts[:-1]
    if root_is_class:  # a class folder given itself, my_photos/real/: read as from my_photos/
        root = root.absolute()
        root, parts = root.parent, (root.name, *parts)
    label_index = next(
        (i for i, part in enumerate(parts) if normalise_label(part) is not None), None
    )
    if label_index is None:
        return None
    label = normalise_label(parts[label_index])
    assert label is not None
    split = next((SPLIT_ALIASES[p.lower()] for p in parts if p.lower() in SPLIT_ALIASES), None)

    def named(folders: Sequence[str]) -> str:
        return "/".join(p for p in folders if p.lower() not in SPLIT_ALIASES)

    # folders below the label name its source (real/ffhq/); with none, those above it do,
    # with the class, as GenImage's sdv4/train/ai/ and sdv4/train/nature/ or CNNDetection's
    # progan/airplane/1_fake/ lay out one generator's images of both classes
    above = named(parts[:label_index]) or _dataset_name(root)
    source = named(parts[label_index + 1 :]) or f"{above}-{label}"
    return Sample(path=path, label=label, source=source, split=split)


def split_part_named(folder: str | os.PathLike[str]) -> str | None:
    """The split part a folder's own name is (data/test/: test), or None."""
    return SPLIT_ALIASES.get(Path(folder).name.lower())


def _dataset_name(root: Path) -> str:
    """A dataset folder's name; of data/test/ the dataset's (data), so its sources keep the
    names they had when all of data/ was trained on."""
    root = root.absolute()
    return root.parent.name if split_part_named(root) else root.name


def refuse_repeated_datasets(roots: Sequence[Path]) -> None:
    """One dataset given twice (`--data faces --data ./faces/`), or a folder inside another one
    given (`faces/` and `faces/extra/`, which reading faces/ whole takes in), would count its
    images twice in each number and weight them twice in training."""
    given: dict[Path, Path] = {}  # each dataset's real path: what it was first given as
    for root in roots:
        if (first := given.setdefault(real_path(root), root)) is root:
            continue
        if first == root:
            raise DatasetError(f"{root}: given twice; give each dataset once")
        raise DatasetError(f"{root}: the same dataset as {first}, given before it; give it once")
    folders = {real: root for real, root in given.items() if real.is_dir()}
    for real, root in folders.items():
        outer = next((folders[o] for o in folders if o != real and real.is_relative_to(o)), None)
        if outer is not None:
            raise DatasetError(
                f"{root}: inside {outer}, which is read whole; give {outer} alone, or each of "
                "its folders you mean"
            )


def discover(
    roots: Iterable[str | os.PathLike[str]], skipped: list[Path] | None = None
) -> list[Sample]:
    """Find labelled images under folders (real/ + ai/ layouts) or in manifest CSV files.

    Files in no image format facetell reads (videos, camera RAW files, notes), links whose
    target is gone and images in no class folder are left out and, with `skipped`, listed
    there, so a user learns why a folder gave fewer images than it holds.
    """
    samples: list[Sample] = []
    roots = [Path(root) for root in roots]
    refuse_repeated_datasets(roots)
    given_by: dict[Path, Path] = {}  # each image's real path: the dataset that first gave it
    for root in roots:
        found = _samples_of(root, skipped)
        for sample in found:
            first = given_by.setdefault(real_path(sample.path), root)
            if first is not root:  # a manifest naming images of a folder given beside it
                raise DatasetError(
                    f"{sample.path}: given by {first} and again by {root}; give each image "
                    "once, so it is not counted twice"
                )
        samples += found
    return _sources_of_one_class(samples)


def _samples_of(root: Path, skipped: list[Path] | None) -> list[Sample]:
    """The labelled images one dataset given holds: a manifest CSV, a folder with one, or a
    folder of class folders."""
    if not exists(root):  # also a name longer than the system allows, which raised
        raise DatasetError(f"{root}: no such folder or manifest CSV")
    if root.is_file() and root.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(root)
    if root.is_file():
        archive = archive_kind(file_head(root))
        if archive:
            raise DatasetError(
                f"{root}: {archive}, not a dataset folder; extract it and give the folder"
            )
        hint = "; to judge this one image: facetell predict" if looks_like_image(root) else ""
        raise DatasetError(
            f"{root}: a file, not a dataset; give a folder of real/ and ai/ folders, or a "
            f"manifest CSV (path,label){hint}"
        )
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder or manifest CSV")
    manifest = next((root / n for n in MANIFEST_NAMES if (root / n).is_file()), None)
    if manifest is not None:
        return read_manifest(manifest)
    files = []  # (path, whether it is an image facetell reads)
    for path in sorted(root.rglob("*")):
        broken_link = path.is_symlink() and not path.exists()
        if (path.is_file() or broken_link) and not path.name.startswith("."):
            files.append((path, not broken_link and looks_like_image(path)))
    # with no class folder below it, the folder given may be one: my_photos/real/
    root_is_class = normalise_label(root.absolute().name) is not None and not any(
        _sample_from_layout(root, path) for path, image in files if image
    )
    found = []
    for path, image in files:
        if image and (sample := _sample_from_layout(root, path, root_is_class=root_is_class)):
            found.append(sample)
        elif skipped is not None:  # not an image, or an image in no class folder
            skipped.append(path)
    if not found:
        raise DatasetError(
            f"{root}: found no labelled images; expected real/ and ai/ (or fake/, "
            "synthetic/, 0_real/, 1_fake/) folders, or a manifest.csv with path,label"
        )
    return found


def _sources_of_one_class(samples: list[Sample]) -> list[Sample]:
    """A source name both classes use (real/celeba/ beside ai/celeba/, fakes made from it)
    becomes one per class, celeba-real and celeba-ai: per-source numbers, hold-outs and
    false-positive rates are each about one class, and had merged the two."""
    classes: dict[str, set[str]] = defaultdict(set)
    for sample in samples:
        classes[sample.source].add(sample.label)
    shared = {source for source, labels in classes.items() if len(labels) > 1}
    return [
        replace(sample, source=f"{sample.source}-{sample.label}")
        if sample.source in shared
        else sample
        for sample in samples
    ]


def labelled_both_ways(
    samples: Sequence[Sample], pictures: Sequence[Hashable | None]
) -> list[tuple[Path, Path]]:
    """One (real, AI) pair of paths per picture given under both labels, where `pictures`
    names each sample's picture (a file fingerprint, or a duplicate group that takes
    near-copies in; None: unknown). Trained on, each copy pulls toward its own label; scored,
    one of the two is a mistake whatever the model answers."""
    by_picture: dict[Hashable, dict[str, Path]] = defaultdict(dict)
    for sample, picture in zip(samples, pictures, strict=True):
        if picture is not None:
            by_picture[picture].setdefault(sample.label, sample.path)
    return [(paths["real"], paths["ai"]) for paths in by_picture.values() if len(paths) == 2]


def sample_per_source(samples: Sequence[Sample], per_source: int, seed: int = 0) -> list[Sample]:
    """At most `per_source` samples of every source, seeded, in their original order."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[Sample]] = {}
    for sample in samples:
        by_source.setdefault(sample.source, []).append(sample)
    kept = []
    for source in sorted(by_source):
        group = by_source[source]
        picks = rng.permutation(len(group))[:per_source]
        kept += [group[i] for i in sorted(picks)]
    return kept


def _edge_band(flat_rows: np.ndarray) -> int:
    """How many leading lines are flat (uniform padding), counted from one edge."""
    not_flat = np.flatnonzero(~flat_rows)
    return int(not_flat[0]) if not_flat.size else len(flat_rows)


def framing_features(gray: np.ndarray) -> tuple[float, float]:
    """Fraction of the area in uniform edge bands, and fraction of near-black corners.

    Padding and black corners are typical of one source's crop recipe and are exactly the
    kind of shortcut a classifier picks up instead of the face.
    """
    height, width = gray.shape
    row_flat = gray.std(axis=1) < 3.0
    col_flat = gray.std(axis=0) < 3.0
    top, bottom = _edge_band(row_flat), _edge_band(row_flat[::-1])
    left, right = _edge_band(col_flat), _edge_band(col_flat[::-1])
    inner = max(0, height - top - bottom) * max(0, width - left - right)
    border = 1.0 - inner / float(height * width)
    patch_h, patch_w = max(1, height // 10), max(1, width // 10)
    corners = [
        gray[:patch_h, :patch_w],
        gray[:patch_h, -patch_w:],
        gray[-patch_h:, :patch_w],
        gray[-patch_h:, -patch_w:],
    ]
    dark = sum(float(c.mean()) < 16.0 for c in corners) / 4.0
    return border, dark


def describe_file(sample: Sample) -> FileRecord:
    """Hash and measure one file; a bad file gives a record with `error` set, never a raise."""
    base = FileRecord(
        path=str(sample.path), label=sample.label, source=sample.source, split=sample.split
    )
    try:
        decoded = decode(sample.path, limits=DATASET_LIMITS, reduce_to=128)
    except BadImage as error:
        return FileRecord(**{**asdict(base), "error": str(error)})
    assert decoded.data is not None
    thumbnail = decoded.image.convert("L")
    thumbnail.thumbnail((128, 128))
    border, dark = framing_features(np.asarray(thumbnail, dtype=np.float32))
    width, height = decoded.size
    return FileRecord(
        path=base.path,
        label=sample.label,
        source=sample.source,
        split=sample.split,
        sha256=hashlib.sha256(decoded.data).hexdigest(),
        format=decoded.format or "",
        width=width,
        height=height,
        n_bytes=decoded.n_bytes or 0,
        jpeg_quality=decoded.jpeg_quality,
        jpeg_subsampling=decoded.jpeg_subsampling,
        phash=str(imagehash.phash(decoded.image, hash_size=PHASH_SIZE)),
        border_fraction=round(border, 4),
        dark_corner_fraction=dark,
    )


def build_manifest(
    samples: Sequence[Sample],
    *,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[FileRecord]:
    """Describe every sample, in worker processes; order follows `samples`."""
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(samples) < 64:
        records = []
        for sample in samples:
            records.append(describe_file(sample))
            if on_progress:
                on_progress(1)
        return records
    records = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for record in pool.map(describe_file, samples, chunksize=32):
            records.append(record)
            if on_progress:
                on_progress(1)
    return records


def write_manifest(records: Sequence[FileRecord], path: Path) -> None:
    """Save records as CSV, the same columns `read_manifest` and spreadsheets understand, with
    paths relative to the CSV's folder as `read_manifest` reads them (written as given, paths
    relative to the working folder named no file once the CSV was saved elsewhere). A file name
    whose bytes are not UTF-8 is written as those bytes, so it reads back as the same file."""
    names = [f.name for f in fields(FileRecord)]
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for record in records:
            row = asdict(record)
            row["path"] = os.path.relpath(record.path, path.parent)  # both from the working folder
            writer.writerow(row)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def duplicate_groups(
    records: Sequence[FileRecord], *, max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> np.ndarray:
    """Group id per record: equal sha256, or perceptual hashes within `max_distance` bits.

    Records without a hash (unreadable files) stay alone in their own group.
    """
    n = len(records)
    union = _UnionFind(n)
    first_by_sha: dict[str, int] = {}
    for i, record in enumerate(records):
        if record.sha256:
            union.union(i, first_by_sha.setdefault(record.sha256, i))
    hashed = [i for i, r in enumerate(records) if r.phash]
    if max_distance >= 0 and hashed:
        hashes = np.stack(
            [np.frombuffer(bytes.fromhex(records[i].phash), dtype=np.uint64) for i in hashed]
        )
        block = 256
        for start in range(0, len(hashes), block):
            xor = hashes[start : start + block, None, :] ^ hashes[None, :, :]
            distances = np.bitwise_count(xor).sum(axis=-1)
            rows, cols = np.nonzero(distances <= max_distance)
            for row, col in zip(rows + start, cols, strict=True):
                if row < col:
                    union.union(hashed[row], hashed[col])
    roots = [union.find(i) for i in range(n)]
    _, group_ids = np.unique(roots, return_inverse=True)
    return group_ids.astype(np.int64)


def _group_strata(labels: Sequence[str], sources: Sequence[str], groups: np.ndarray) -> dict:
    """Each duplicate group's stratum: the commonest (label, source) among its members."""
    members: dict[int, Counter] = defaultdict(Counter)
    for label, source, group in zip(labels, sources, groups, strict=True):
        members[int(group)][(label, source)] += 1
    return {group: counts.most_common(1)[0][0] for group, counts in members.items()}


def stratified_split(
    labels: Sequence[str],
    sources: Sequence[str],
    groups: np.ndarray,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[str]:
    """Assign 'train'/'val'/'test' per sample, stratified by label x source, whole groups only."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1: {fractions}")
    groups = np.asarray(groups)
    strata = _group_strata(labels, sources, groups)
    sizes = Counter(int(g) for g in groups)
    by_stratum: dict[tuple[str, str], list[int]] = defaultdict(list)
    for group in sorted(strata):
        by_stratum[strata[group]].append(group)
    rng = np.random.default_rng(seed)
    boundaries = np.cumsum(fractions)
    group_split: dict[int, str] = {}
    for stratum in sorted(by_stratum):
        stratum_groups = by_stratum[stratum]
        rng.shuffle(stratum_groups)
        total = sum(sizes[g] for g in stratum_groups)
        seen = 0
        for group in stratum_groups:
            position = (seen + sizes[group] / 2) / total
            index = min(int(np.searchsorted(boundaries, position, side="right")), 2)
            group_split[group] = SPLITS[index]
            seen += sizes[group]
    return [group_split[int(g)] for g in groups]


def kfold_splits(
    labels: Sequence[str],
    sources: Sequence[str],
    groups: np.ndarray,
    *,
    k: int = 5,
    seed: int = 0,
) -> list[list[str]]:
    """K assignments: fold i is 'test', fold i+1 is 'val' (early stopping), the rest 'train'."""
    if k < 3:
        raise DatasetError(
            f"{k} folds: k-fold needs at least 3 (one fold to test, one to validate, one to train)"
        )
    groups = np.asarray(groups)
    distinct = len(np.unique(groups))
    if k > distinct:  # scikit-learn's ValueError said so in a traceback
        raise DatasetError(
            f"{k} folds: the data has only {distinct} images that are not near-duplicates of "
            "each other, and each fold needs one (use fewer folds)"
        )
    strata = _group_strata(labels, sources, groups)
    stratum_names = sorted(set(strata.values()))
    y = [stratum_names.index(strata[int(g)]) for g in groups]
    from sklearn.model_selection import StratifiedGroupKFold  # 1-2 s to import; splits only

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold_of = np.empty(len(groups), dtype=np.int64)
    for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        fold_of[test_index] = fold
    assignments = []
    for fold in range(k):
        names = np.full(len(groups), "train", dtype=object)
        names[fold_of == fold] = "test"
        names[fold_of == (fold + 1) % k] = "val"
        assignments.append(list(names))
    return assignments


def given_split(
    labels: Sequence[str],
    sources: Sequence[str],
    groups: np.ndarray,
    given: Sequence[str | None],
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[str]:
    """Keep the split a dataset's own train/ val/ test/ folders (or split column) give.

    Images it leaves unassigned, and its training images when it gives no validation or no
    test part (GenImage has train/ and val/ only), are split as `stratified_split` does, into
    training and the parts it lacks, in the proportions `fractions` gives those.
    """
    present = {name for name in given if name}
    lacking = [name for name in SPLITS if name not in present]
    parts = {"train", *lacking} if lacking else set(SPLITS)
    pool = np.array([name is None or (bool(lacking) and name == "train") for name in given])
    shares = [f if name in parts else 0.0 for name, f in zip(SPLITS, fractions, strict=True)]
    assignment = np.array([name or "" for name in given], dtype=object)
    if pool.any():
        assignment[pool] = stratified_split(
            [label for label, drawn in zip(labels, pool, strict=True) if drawn],
            [source for source, drawn in zip(sources, pool, strict=True) if drawn],
            np.asarray(groups)[pool],
            fractions=tuple(share / sum(shares) for share in shares),  # type: ignore[arg-type]
            seed=seed,
        )
    return list(assignment)


def leave_one_source_out(
    labels: Sequence[str],
    sources: Sequence[str],
    groups: np.ndarray,
    holdout: str,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[str]:
    """Hold a whole source out as test (with the real test images); split the rest as usual.

    Any group that touches the held-out source goes to test whole, so no copy of a held-out
    image can leak into training.
    """
    if holdout not in set(sources):
        known = ", ".join(sorted(set(sources)))
        raise DatasetError(f"hold-out source {holdout!r} is not in the data (its sources: {known})")
    for label in sorted({lab for lab, src in zip(labels, sources, strict=True) if src == holdout}):
        if all(src == holdout for lab, src in zip(labels, sources, strict=True) if lab == label):
            shown = "AI" if label == "ai" else label
            raise DatasetError(
                f"hold-out source {holdout!r} is the data's only {shown} source: no {shown} "
                "image would be left to train on (hold out a source of a class that has two "
                "or more)"
            )
    groups = np.asarray(groups)
    held_groups = {int(g) for g, s in zip(groups, sources, strict=True) if s == holdout}
    keep = np.array([int(g) not in held_groups for g in groups])
    rest = stratified_split(
        [lab for lab, k in zip(labels, keep, strict=True) if k],
        [src for src, k in zip(sources, keep, strict=True) if k],
        groups[keep],
        fractions=fractions,
        seed=seed,
    )
    assignment = np.full(len(groups), "test", dtype=object)
    assignment[keep] = rest
    return list(assignment)


def _paths_root(split_path: Path, rows: Sequence[dict]) -> Path:
    """Where a split file's relative paths are found from: the working folder if its first
    path is there, else the nearest folder above the split file that holds it."""
    first = next((Path(row["path"]) for row in rows if not Path(row["path"]).is_absolute()), None)
    if first is None or first.exists():
        return Path()
    above = split_path.absolute().parent
    return next((folder for folder in (above, *above.parents) if (folder / first).exists()), Path())


WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def _path_parts(path: str) -> tuple[str, ...]:
    """A saved path's parts, a Windows one's (C:\\data\\ai\\1.jpg) too."""
    if "\\" in path or WINDOWS_DRIVE.match(path):
        return PureWindowsPath(path).parts
    return Path(path).parts


def _relocated(split_path: Path, rows: list[dict]) -> list[dict]:
    """Rows whose absolute paths are gone (another machine's: /home/alice/faces/ai/1.jpg), made
    relative by dropping the folders before the longest tail (faces/ai/1.jpg) that exists
    from here or from a folder above the split file, for most of them, so a colleague's
    split reads with their data anywhere."""
    absolute = [r for r in rows if Path(r["path"]).is_absolute() or WINDOWS_DRIVE.match(r["path"])]
    if not absolute or exists(Path(absolute[0]["path"])):
        return rows
    above = split_path.absolute().parent
    folders = (Path(), above, *above.parents)
    parts = _path_parts(absolute[0]["path"])
    sample = [_path_parts(row["path"]) for row in absolute[:: max(1, len(absolute) // 50)]]
    for cut in range(1, len(parts) - 1):
        root = next((f for f in folders if exists(f / Path(*parts[cut:]))), None)
        if root is None:
            continue
        moved = [t for t in sample if t[:cut] == parts[:cut] and exists(root / Path(*t[cut:]))]
        if len(moved) >= 0.9 * len(sample):
            return [_dropped(row, parts[:cut]) for row in rows]
    return rows


def _dropped(row: dict, prefix: tuple[str, ...]) -> dict:
    """The row with its path's leading folders `prefix` taken off, if it starts with them."""
    parts = _path_parts(row["path"])
    if parts[: len(prefix)] != prefix:
        return row
    return {**row, "path": str(Path(*parts[len(prefix) :]))}


@dataclass(frozen=True)
class SplitFile:
    """A saved split: how it was made and which sample went where, so a run repeats exactly.

    Its relative paths are as `facetell train` was given them, from the folder it ran in; a
    split file read from elsewhere finds them from the nearest folder above it from which
    they exist (`root`), so `evaluate --split-file` works from any folder."""

    kind: str
    seed: int
    params: dict
    rows: list[dict]
    root: Path = field(default=Path(), compare=False)

    def save(self, path: Path) -> None:
        """One row per line: compact enough to ship beside a bundle, readable in a diff."""
        path.parent.mkdir(parents=True, exist_ok=True)
        head = json.dumps({k: v for k, v in asdict(self).items() if k not in ("rows", "root")})
        head = head[:-1]
        rows = ",\n".join(json.dumps(row, separators=(",", ":")) for row in self.rows)
        path.write_text(f'{head}, "rows": [\n{rows}\n]}}\n', encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SplitFile:
        """Read a split.json, or fail in one line that says what the file is not."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise DatasetError(f"{path}: cannot read the split file ({error.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raw = None
        fields = {"kind", "seed", "params", "rows"}
        if not isinstance(raw, dict) or not fields <= raw.keys():
            raise DatasetError(
                f"{path}: not a split file (the split.json that `facetell train` writes beside "
                "a run, with kind, seed, params and rows)"
            )
        rows = _relocated(path, raw["rows"])
        return cls(raw["kind"], raw["seed"], raw["params"], rows, root=_paths_root(path, rows))

    @classmethod
    def from_assignment(
        cls,
        kind: str,
        seed: int,
        params: dict,
        records: Sequence[FileRecord],
        groups: np.ndarray,
        assignment: Sequence[str],
    ) -> SplitFile:
        rows = [
            {"path": r.path, "label": r.label, "source": r.source, "group": int(g), "split": s}
            for r, g, s in zip(records, groups, assignment, strict=True)
        ]
        return cls(kind=kind, seed=seed, params=params, rows=rows)

    def samples(self, split: str) -> list[Sample]:
        return [
            Sample(self.root / row["path"], row["label"], row["source"], split)
            for row in self.rows
            if row["split"] == split
        ]
