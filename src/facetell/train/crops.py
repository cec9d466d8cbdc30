"""What a run trains on: the configured images described, grouped by duplicate, split, and cut
into canonical face crops by the inference pipeline, cached on disk once."""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetell.audit import shortcut_score
from facetell.data import (
    SPLITS,
    FileRecord,
    Sample,
    SplitFile,
    build_manifest,
    discover,
    duplicate_groups,
    given_split,
    kfold_splits,
    leave_one_source_out,
    sample_per_source,
    stratified_split,
)
from facetell.errors import BadImage, FacetellError
from facetell.faces import CropRecipe, RetinaFaceDetector, canonical_crop, main_face
from facetell.io import DATASET_LIMITS, decode
from facetell.train.config import TrainConfig


@dataclass
class PreparedData:
    samples: list[Sample]
    groups: np.ndarray
    crops: np.ndarray  # (N, S, S, 3) uint8, memory-mapped
    valid: np.ndarray  # (N,) bool: decoded fine
    faceless: np.ndarray  # (N,) bool: no face found, the centre square was cropped instead
    targets: np.ndarray  # (N,) int: 1 = ai
    sources: list[str]
    shortcut_score: float | None = None  # real against AI from file metadata alone (audit)


@functools.cache
def _face_detector() -> RetinaFaceDetector:
    """One detector per worker process, single-threaded: the pool supplies the parallelism."""
    return RetinaFaceDetector(threads=1)


# What became of each file in the crop cache, kept beside its crops
UNREADABLE, CROPPED, CENTRE_SQUARE = 0, 1, 2
CACHE_LAYOUT = b"crops and states\n"  # in every cache key: caches of another layout are not read


def _crop_one(job: tuple[str, CropRecipe]) -> tuple[np.ndarray | None, int]:
    """The training crop of one file, by the same recipe inference uses, and what it is.

    A "face" recipe crops the main detected face; an image where none is found (rare in face
    datasets) falls back to its centre square rather than being dropped, and is reported.
    """
    path, recipe = job
    try:
        image = decode(path, limits=DATASET_LIMITS).image
    except BadImage:
        return None, UNREADABLE
    face = main_face(_face_detector().detect(image)) if recipe.kind == "face" else None
    crop = np.asarray(canonical_crop(image, recipe, face), dtype=np.uint8)
    return crop, CENTRE_SQUARE if recipe.kind == "face" and face is None else CROPPED


def why_unreadable(path: Path) -> str:
    """Why a file the crop cache marks unreadable is ("" if it reads now): its decode error's
    reason, asked again as the cache keeps states, not reasons."""
    try:
        decode(path, limits=DATASET_LIMITS)
    except BadImage as error:
        return error.reason
    return ""


def _cache_key(samples: Sequence[Sample], recipe: CropRecipe) -> str:
    """Names the crops by the files' bytes, in order, and the recipe that cut them.

    Bytes, not paths and modification times: a fresh copy or clone of the same data (new
    mtimes, another folder) reuses the crops, and an edited file rebuilds them. Hashing 8,000
    files (183 MB) takes about a second; rebuilding the crops takes minutes.
    """
    digest = hashlib.sha256(CACHE_LAYOUT + recipe.model_dump_json().encode())
    if recipe.kind == "face":
        digest.update(f"{RetinaFaceDetector.name}@{RetinaFaceDetector.revision}\n".encode())
    for sample in samples:
        digest.update(hashlib.sha256(sample.path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def check_crop_cache_folder(config: TrainConfig) -> None:
    """Refuse a config.cache_dir that cannot be made or written, before any work and without
    making it (a refused run leaves nothing behind); it had raised a traceback once every image
    was hashed."""
    folder = Path(config.cache_dir).expanduser()
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        why = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing} is not writable"
    else:
        return
    raise _no_cache_there(folder, why)


def _no_cache_there(folder: Path, why: str) -> FacetellError:
    return FacetellError(
        f"{folder}: cannot keep the crop cache there ({why}); --set cache_dir=DIR names another "
        "folder"
    )


def cached_crops(
    samples: Sequence[Sample],
    recipe: CropRecipe,
    cache_dir: Path,
    *,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical crops of every sample, decoded once and memory-mapped from `cache_dir`, and
    each sample's state (UNREADABLE, CROPPED or CENTRE_SQUARE).

    Decoding and cropping thousands of images costs minutes; every later run with the same
    files and recipe (folds, held-out sources, other families) reads them back in seconds.
    """
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # what the early check cannot see (/proc, a full disk)
        raise _no_cache_there(cache_dir, (error.strerror or str(error)).lower()) from None
    key = _cache_key(samples, recipe)
    crops_path, states_path = cache_dir / f"crops-{key}.npy", cache_dir / f"crops-{key}.states.npy"
    if crops_path.is_file() and states_path.is_file():
        if on_progress:
            on_progress(len(samples))
        return np.load(crops_path, mmap_mode="r"), np.load(states_path)
    size = recipe.size
    # Partial files of their own: two runs started together build the same cache side by side
    # and the last one to finish replaces the first's identical result, never a half-written one.
    token = uuid.uuid4().hex
    partial = crops_path.with_suffix(f".{token}.partial.npy")
    states_partial = states_path.with_suffix(f".{token}.partial.npy")
    crops = np.lib.format.open_memmap(
        partial, mode="w+", dtype=np.uint8, shape=(len(samples), size, size, 3)
    )
    states = np.zeros(len(samples), dtype=np.uint8)
    jobs = [(str(s.path), recipe) for s in samples]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for index, (crop, state) in enumerate(pool.map(_crop_one, jobs, chunksize=16)):
            if crop is not None:
                crops[index] = crop
            states[index] = state
            if on_progress:
                on_progress(1)
    crops.flush()
    del crops
    np.save(states_partial, states)
    partial.replace(crops_path)
    states_partial.replace(states_path)
    return np.load(crops_path, mmap_mode="r"), states


StageProgress = Callable[[str, int, int], None]


def _stage(
    on_progress: StageProgress | None, stage: str, total: int
) -> Callable[[int], None] | None:
    """Turn a (stage, n, total) reporter into the per-item callback one stage takes."""
    if on_progress is None:
        return None
    return lambda n: on_progress(stage, n, total)


def grouped_samples(
    config: TrainConfig,
    *,
    on_progress: StageProgress | None = None,
    skipped: list[Path] | None = None,
) -> tuple[list[Sample], list[FileRecord], np.ndarray]:
    """The configured samples, what each file is (hashes, format, size, compression) and
    their duplicate groups: all that splits are made from."""
    samples = discover(config.data.paths, skipped)
    missing = [sample.path for sample in samples if not sample.path.exists()]
    if missing:  # the split would silently change with the files; a manifest must be fixed
        raise FacetellError(
            f"{len(missing)} of the {len(samples)} images a manifest names are missing (the "
            f"first: {missing[0]}); restore them or remove their rows"
        )
    if config.data.max_per_source is not None:
        samples = sample_per_source(samples, config.data.max_per_source, config.seed)
    records = build_manifest(
        samples,
        workers=config.workers or 1,
        on_progress=_stage(on_progress, "hashing", len(samples)),
    )
    return samples, records, duplicate_groups(records, max_distance=config.data.near_duplicate_bits)


def prepare_data(
    config: TrainConfig,
    *,
    on_progress: StageProgress | None = None,
    skipped: list[Path] | None = None,
) -> PreparedData:
    """Discover, describe, group and crop the configured data (crops cached on disk)."""
    grouped = grouped_samples(config, on_progress=on_progress, skipped=skipped)
    return cropped_data(config, *grouped, on_progress=on_progress)


def cropped_data(
    config: TrainConfig,
    samples: list[Sample],
    records: list[FileRecord],
    groups: np.ndarray,
    *,
    on_progress: StageProgress | None = None,
) -> PreparedData:
    """Grouped samples with their face crops (cut once, then read from the cache on disk)."""
    crops, states = cached_crops(
        samples,
        config.crop,
        Path(config.cache_dir).expanduser(),
        workers=config.workers or 1,
        on_progress=_stage(on_progress, "cropping", len(samples)),
    )
    return PreparedData(
        samples=samples,
        groups=groups,
        crops=crops,
        valid=states != UNREADABLE,
        faceless=states == CENTRE_SQUARE,
        targets=np.array([s.target for s in samples], dtype=np.int64),
        sources=[s.source for s in samples],
        shortcut_score=shortcut_score(records, groups, seed=config.seed),
    )


def make_splits(
    config: TrainConfig, samples: Sequence[Sample], groups: np.ndarray
) -> list[tuple[str, SplitFile]]:
    """The runs a config asks for: one split, K folds, or one held-out source (or each AI one)."""
    labels = [s.label for s in samples]
    sources = [s.source for s in samples]
    params = {"fractions": list(config.data.fractions)}
    holdout = config.data.holdout_source
    seed = config.seed if config.data.split_seed is None else config.data.split_seed

    own = sorted({s.split for s in samples if s.split}, key=SPLITS.index)
    if own and (holdout is not None or config.data.folds > 1):
        params["given_unused"] = own  # these draw their own splits over all of the data

    def split_file(kind: str, assignment: list[str], extra: dict) -> SplitFile:
        records = [_record_stub(s) for s in samples]
        return SplitFile.from_assignment(
            kind, seed, {**params, **extra}, records, groups, assignment
        )

    if holdout is not None:
        names = sorted({s.source for s in samples if s.label == "ai"})
        chosen = names if holdout == "all" else [holdout]
        return [
            (
                f"holdout-{name}",
                split_file(
                    "leave_one_source_out",
                    leave_one_source_out(
                        labels,
                        sources,
                        groups,
                        name,
                        fractions=config.data.fractions,
                        seed=seed,
                    ),
                    {"holdout": name},
                ),
            )
            for name in chosen
        ]
    if config.data.folds > 1:
        assignments = kfold_splits(labels, sources, groups, k=config.data.folds, seed=seed)
        return [
            (f"fold-{i}", split_file("kfold", a, {"k": config.data.folds, "fold": i}))
            for i, a in enumerate(assignments)
        ]
    if own:  # the data's own train/ val/ test/ folders or split column
        given = [s.split for s in samples]
        assignment = given_split(
            labels, sources, groups, given, fractions=config.data.fractions, seed=seed
        )
        return [("", split_file("given", assignment, {"given": own}))]
    assignment = stratified_split(
        labels, sources, groups, fractions=config.data.fractions, seed=seed
    )
    return [("", split_file("stratified", assignment, {}))]


def _record_stub(sample: Sample) -> FileRecord:
    """The split file needs only path, label and source."""
    return FileRecord(path=str(sample.path), label=sample.label, source=sample.source)


def source_balanced_weights(
    targets: np.ndarray, sources: Sequence[str], exponent: float, *, equal_classes: bool = False
) -> np.ndarray:
    """Per-image sampling weights: source s of class c gets a share ∝ n_s ** (1 - exponent).

    Every class keeps its total weight (its image count), so the class prior is unchanged and
    only the mix of sources inside a class moves, unless `equal_classes` gives every class the
    same total; the weights average 1.
    """
    targets = np.asarray(targets)
    sources = np.asarray(sources)
    weights = np.empty(len(targets), dtype=np.float64)
    for label in np.unique(targets):
        in_class = targets == label
        names, counts = np.unique(sources[in_class], return_counts=True)
        shares = counts.astype(np.float64) ** (1.0 - exponent)
        total = len(targets) / len(np.unique(targets)) if equal_classes else in_class.sum()
        per_image = shares / shares.sum() * total / counts
        weights[in_class] = per_image[np.searchsorted(names, sources[in_class])]
    return weights
