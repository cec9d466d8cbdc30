"""Bias audit: how each class and source differs in things that are not faces.

The shortcut score is the cross-validated AUROC of a classifier that sees only file metadata
(size, format, compression, framing). Near 0.5 the data is clean; near 1.0 a face model can
score well without looking at a face, and its numbers on this data mean little.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

from facetell.data import SPLITS, FileRecord

SHORTCUT_WARNING = 0.7
SHORTCUT_FOLDS = 5  # cross-validation folds of the shortcut score: it needs as many images a class
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_SUBSAMPLING_CODES = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
FEATURE_NAMES = (
    "log2_width",
    "log2_height",
    "aspect",
    *(f"is_{f.lower()}" for f in _FORMATS),
    "jpeg_quality",
    "chroma_subsampling",
    "bytes_per_pixel",
    "border_fraction",
    "dark_corner_fraction",
)


@dataclass(frozen=True)
class GroupStats:
    """Metadata of one class or one source, summarised as a reviewer reads it."""

    label: str
    source: str
    n: int
    formats: dict[str, int]
    median_width: float
    median_height: float
    min_side: int
    max_side: int
    distinct_sizes: int
    jpeg_quality_median: float | None
    jpeg_quality_range: tuple[int, int] | None
    subsampling: dict[str, int]
    bytes_per_pixel_median: float
    border_fraction_mean: float
    dark_corner_fraction_mean: float
    duplicates_within: int
    duplicates_across_classes: int
    shortcut_auroc: float | None


@dataclass(frozen=True)
class AuditReport:
    n_images: int
    n_unreadable: int
    unreadable: list[str]
    by_class: list[GroupStats]
    by_source: list[GroupStats]
    duplicate_groups: int
    cross_class_groups: list[list[str]]
    shortcut_score: float | None
    feature_importance: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    # groups whose images come from more than one dataset or split: a leak between them
    cross_origin_groups: list[list[str]] = field(default_factory=list)
    # the data's own train/ val/ test/ folders (or split column): images per part and class
    own_split: dict[str, dict[str, int]] = field(default_factory=dict)


def metadata_features(records: Sequence[FileRecord]) -> np.ndarray:
    """The non-face facts a shortcut-learning classifier could use, one row per record."""
    rows = []
    for r in records:
        quality = r.jpeg_quality if r.jpeg_quality is not None else 101  # lossless above all
        subsampling = _SUBSAMPLING_CODES.get(r.jpeg_subsampling or "", -1)
        rows.append(
            [
                np.log2(max(r.width, 1)),
                np.log2(max(r.height, 1)),
                r.width / max(r.height, 1),
                *(float(r.format == f) for f in _FORMATS),
                quality,
                subsampling,
                r.bytes_per_pixel,
                r.border_fraction,
                r.dark_corner_fraction,
            ]
        )
    return np.asarray(rows, dtype=np.float64)


def shortcut_predictions(
    records: Sequence[FileRecord], groups: np.ndarray, *, folds: int = SHORTCUT_FOLDS, seed: int = 0
) -> np.ndarray | None:
    """Out-of-fold P(ai) from metadata alone; None when a class spans fewer images, or groups
    of near-duplicates (kept within one fold), than there are folds."""
    y = np.array([r.label == "ai" for r in records], dtype=int)
    groups = np.asarray(groups)
    if any(len(np.unique(groups[y == label])) < folds for label in (0, 1)):
        return None
    # A forest needs no scaling and still splits on a dozen images per class.
    model = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(
        model,
        metadata_features(records),
        y,
        groups=groups,
        cv=splitter,
        method="predict_proba",
    )[:, 1]


def shortcut_score(
    records: Sequence[FileRecord], groups: np.ndarray, *, seed: int = 0
) -> float | None:
    """The cross-validated AUROC of real against AI from the readable files' metadata alone
    (None: too few images of a class to cross-validate)."""
    readable = [i for i, r in enumerate(records) if r.error is None]
    good = [records[i] for i in readable]
    scores = shortcut_predictions(good, np.asarray(groups)[readable], seed=seed)
    if scores is None:
        return None
    return round(float(roc_auc_score([r.label == "ai" for r in good], scores)), 3)


def shortcut_warning(score: float | None) -> str | None:
    """What a shortcut score above the warning line means, for audit and train alike."""
    if score is None or score <= SHORTCUT_WARNING:
        return None
    return (
        f"shortcut score {score:.2f} > {SHORTCUT_WARNING}: file size, format and compression "
        "alone separate the classes; a face model trained here can learn them instead of "
        "faces (re-encode uniformly, augment with JPEG/resize, judge by leave-one-source-out)"
    )


def _feature_importance(records: Sequence[FileRecord], seed: int) -> dict[str, float]:
    """Single-feature AUROC distance from chance: which facts alone give the classes away."""
    y = np.array([r.label == "ai" for r in records], dtype=int)
    features = metadata_features(records)
    importance = {}
    for name, column in zip(FEATURE_NAMES, features.T, strict=True):
        if np.ptp(column) == 0:
            continue
        auroc = roc_auc_score(y, column)
        importance[name] = round(float(max(auroc, 1 - auroc)), 3)
    return dict(sorted(importance.items(), key=lambda kv: -kv[1]))


def _summarise(
    label: str,
    source: str,
    members: Sequence[int],
    records: Sequence[FileRecord],
    groups: np.ndarray,
    group_labels: dict[int, set[str]],
    scores: np.ndarray | None,
    y: np.ndarray,
) -> GroupStats:
    rs = [records[i] for i in members]
    widths = np.array([r.width for r in rs])
    heights = np.array([r.height for r in rs])
    qualities = [r.jpeg_quality for r in rs if r.jpeg_quality is not None]
    group_sizes = Counter(int(groups[i]) for i in members)
    within = sum(size for size in group_sizes.values() if size > 1)
    across = sum(1 for i in members if len(group_labels[int(groups[i])]) > 1)
    shortcut = None
    if scores is not None:
        other = np.flatnonzero(y != (label == "ai"))
        ids = np.concatenate([np.asarray(members), other])
        truth = np.concatenate([np.full(len(members), label == "ai"), y[other].astype(bool)])
        if len(set(truth)) == 2:
            shortcut = round(float(roc_auc_score(truth, scores[ids])), 3)
    return GroupStats(
        label=label,
        source=source,
        n=len(rs),
        formats=dict(Counter(r.format for r in rs).most_common()),
        median_width=float(np.median(widths)),
        median_height=float(np.median(heights)),
        min_side=int(np.minimum(widths, heights).min()),
        max_side=int(np.maximum(widths, heights).max()),
        distinct_sizes=len({(r.width, r.height) for r in rs}),
        jpeg_quality_median=float(np.median(qualities)) if qualities else None,
        jpeg_quality_range=(min(qualities), max(qualities)) if qualities else None,
        subsampling=dict(Counter(r.jpeg_subsampling or "n/a" for r in rs).most_common()),
        bytes_per_pixel_median=round(float(np.median([r.bytes_per_pixel for r in rs])), 4),
        border_fraction_mean=round(float(np.mean([r.border_fraction for r in rs])), 4),
        dark_corner_fraction_mean=round(float(np.mean([r.dark_corner_fraction for r in rs])), 4),
        duplicates_within=within,
        duplicates_across_classes=across,
        shortcut_auroc=shortcut,
    )


def audit(
    records: Sequence[FileRecord],
    groups: np.ndarray,
    *,
    seed: int = 0,
    origins: Sequence[str] | None = None,
) -> AuditReport:
    """Summarise every class and source, find cross-class duplicates, score the shortcuts.

    `origins` names where each record comes from (its dataset, and split if it has one): a
    duplicate group that spans two of them is an image on both sides of a train/test line.
    """
    readable = [i for i, r in enumerate(records) if r.error is None]
    good = [records[i] for i in readable]
    good_groups = np.asarray(groups)[readable]
    y = np.array([r.label == "ai" for r in good], dtype=int)

    group_labels: dict[int, set[str]] = defaultdict(set)
    group_members: dict[int, list[int]] = defaultdict(list)
    for i, (record, group) in enumerate(zip(good, good_groups, strict=True)):
        group_labels[int(group)].add(record.label)
        group_members[int(group)].append(i)
    cross = [
        [good[i].path for i in members]
        for group, members in group_members.items()
        if len(group_labels[group]) > 1
    ]
    across_origins = []
    if origins is not None:
        good_origins = [origins[i] for i in readable]
        across_origins = [
            [good[i].path for i in members]
            for members in group_members.values()
            if len({good_origins[i] for i in members}) > 1
        ]
    scores = shortcut_predictions(good, good_groups, seed=seed) if good else None
    shortcut = round(float(roc_auc_score(y, scores)), 3) if scores is not None else None

    by_label: dict[str, list[int]] = defaultdict(list)
    by_source: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, record in enumerate(good):
        by_label[record.label].append(i)
        by_source[(record.label, record.source)].append(i)
    context = (good, good_groups, group_labels, scores, y)
    class_rows = [_summarise(lab, "(all)", m, *context) for lab, m in sorted(by_label.items())]
    source_rows = [_summarise(lab, src, m, *context) for (lab, src), m in sorted(by_source.items())]

    warnings = [text] if (text := shortcut_warning(shortcut)) else []
    if cross:
        warnings.append(
            f"{len(cross)} duplicate group(s) hold images labelled both real and ai: check "
            "the labels (listed under cross_class_groups)"
        )
    if across_origins:
        leaked = {path for group in across_origins for path in group}
        spanned = sorted({origins[i] for i, r in enumerate(records) if r.path in leaked})
        first, second = across_origins[0][:2]
        warnings.append(
            f"{len(across_origins)} duplicate group(s) span {', '.join(spanned)}: the same or a "
            "near-identical image on both sides, so a model trained on one side is flattered "
            f"when scored on the other (e.g. {first} and {second}; every group under "
            "cross_origin_groups in --format json)"
        )
    own_split = _own_split(good)
    warnings += _own_split_warnings(own_split)
    unreadable = [r.error for r in records if r.error is not None]
    if unreadable:  # each error names its file and why; the JSON lists every one
        shown = "; ".join(error for error in unreadable[:3] if error)
        more = ", …" if len(unreadable) > 3 else ""
        warnings.append(
            f"{len(unreadable)} file(s) could not be read and were left out: {shown}{more}"
        )
    return AuditReport(
        n_images=len(records),
        n_unreadable=len(unreadable),
        unreadable=[u for u in unreadable if u],
        by_class=class_rows,
        by_source=source_rows,
        duplicate_groups=sum(1 for m in group_members.values() if len(m) > 1),
        cross_class_groups=cross,
        cross_origin_groups=across_origins,
        shortcut_score=shortcut,
        feature_importance=_feature_importance(good, seed) if len(set(y)) == 2 else {},
        warnings=warnings,
        own_split=own_split,
    )


def _own_split(records: Sequence[FileRecord]) -> dict[str, dict[str, int]]:
    """Images per class in each part of the split the data brings (empty if it brings none)."""
    counts = Counter((r.split, r.label) for r in records if r.split)
    parts = sorted({part for part, _ in counts}, key=SPLITS.index)
    return {part: {label: counts[(part, label)] for label in ("real", "ai")} for part in parts}


CLASS_NAMES = {"real": "real", "ai": "AI"}  # as a sentence writes them


def _own_split_warnings(own_split: dict[str, dict[str, int]]) -> list[str]:
    """A part of the data's own split with one class only: training refuses it (train, val),
    and no AUROC can be measured on it (test)."""
    what_follows = {
        "train": "`facetell train` refuses it (the model would never see that class)",
        "val": "`facetell train` refuses it (validation needs both classes)",
        "test": "no AUROC or true-positive rate can be measured on it",
    }
    return [
        f"the data's own {part} part holds no {CLASS_NAMES[label]} image: "
        f"{what_follows[part]}; add some"
        + ("" if part == "train" else ", or take the part away to have it drawn from training")
        for part, counts in own_split.items()
        for label, count in counts.items()
        if count == 0
    ]
