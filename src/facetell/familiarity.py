"""Familiarity: is a face like the faces the model was trained on?

Held-out runs show the classifier ranking an unseen generator's faces below real photos, while
its own pooled features still notice that those faces are unlike its training data (novelty
AUROC 0.86-0.94 against 0.75-0.87 for the logit; docs/results.md, "How unfamiliar an unseen
source looks"). So every face gets a novelty: its mean cosine distance to the k most similar of a
fixed sample of training faces, in the features the classifier's head reads. Above a threshold
fitted on held-out faces of the same size the face is flagged as unfamiliar.

Half the reference faces come from small thumbnail copies of their images. A small face is far
from every full-size face whatever its source, so against full-size faces alone an unseen
small-face generator was hardly flagged (12% of held-out DCGAN's faces) while a seen source's
64-px thumbnails were (43% of SDXL's); against faces of its own size too, 26% and 13%
(docs/results.md, "A reference of faces of every size").

Unseen real photo sources are as unfamiliar as unseen generators, so the flag means "treat this
score with extra caution", never "AI". What it does to P(ai) is make it less sure: a face whose
novelty passes TEMPER_START of its band's threshold has its calibrated logit divided by a
temperature that grows with the novelty, so the answer moves toward 0.5 and, far enough, into the
uncertain band. Held out, the classifier is most often confidently wrong on exactly these faces;
tempered, held-out sources rank better against the rest (docs/results.md, "Less sure of
unfamiliar faces").

The reference is `reference.safetensors` in the bundle (int8, tied to the weights' SHA-256 as the
ONNX export is); the thresholds live in calibration.json, fitted by `facetell calibrate`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facetell.errors import FacetellError
from facetell.io import transformed

if TYPE_CHECKING:
    from PIL import Image

    from facetell.inference import Detector, Prepared
    from facetell.io import ImageSource

REFERENCE_FILE = "reference.safetensors"
DEFAULT_K = 10
DEFAULT_REFERENCE_SIZE = 500
DEFAULT_FLAGGED_SHARE = 0.05
# Every second reference image is judged as a thumbnail copy this many pixels a side.
REFERENCE_THUMBNAIL = 64
# Thresholds are fitted per face-width band: a small face's crop is upscaled and blurred, so it
# is further from full-size training faces even when its source is familiar. With thumbnails in
# the reference the bands' thresholds come out close; the bands keep what remains out of the flag.
WIDTH_EDGES = (64.0, 128.0)
MIN_FACES_PER_BAND = 50
# A face's temperature is 1 + TEMPER_SLOPE · max(0, novelty / threshold - TEMPER_START). Chosen
# on held-out sources (it cannot be fitted on faces the model has seen: there, novelty says
# little about error), checked on held-out models it was not chosen on.
TEMPER_START = 0.7
TEMPER_SLOPE = 5.0


@dataclass(frozen=True)
class Reference:
    """Unit-length embeddings of a seeded sample of training faces, stored as int8."""

    embeddings: np.ndarray
    k: int = DEFAULT_K

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, k: int = DEFAULT_K) -> Reference:
        """Round unit rows to int8 and keep them as read back, so scores match a loaded bundle."""
        stored = np.round(np.clip(embeddings, -1.0, 1.0) * 127).astype(np.int8)
        return cls(stored.astype(np.float32) / 127, k=min(k, len(stored)))

    def novelty(self, queries: np.ndarray) -> np.ndarray:
        """Mean cosine distance of each query row to its k most similar reference rows."""
        queries = np.asarray(queries, dtype=np.float32)
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float32)
        similarity = queries @ self.embeddings.T
        nearest = np.partition(similarity, -self.k, axis=1)[:, -self.k :]
        return 1.0 - nearest.mean(axis=1)

    def to_bytes(self, weights_sha256: str) -> bytes:
        from safetensors.numpy import save

        stored = np.round(self.embeddings * 127).astype(np.int8)
        metadata = {"k": str(self.k), "weights_sha256": weights_sha256}
        return save({"embeddings": stored}, metadata=metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[Reference, str]:
        """The reference and the SHA-256 of the weights whose features it holds."""
        from safetensors.numpy import load

        tensors = load(data)
        metadata = _metadata(data)
        return (
            cls(tensors["embeddings"].astype(np.float32) / 127, k=int(metadata["k"])),
            metadata.get("weights_sha256", ""),
        )


def _metadata(data: bytes) -> dict[str, str]:
    """A safetensors file's string metadata: its JSON header (after an 8-byte little-endian
    length) holds it under __metadata__; safetensors reads it only from a file on disk."""
    header_length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_length]).get("__metadata__", {})


@dataclass(frozen=True)
class Familiarity:
    """Novelty thresholds by face width: `thresholds[i]` holds for widths below `width_edges[i]`
    (the last for anything wider). A face above its band's threshold is unfamiliar."""

    width_edges: tuple[float, ...]
    thresholds: tuple[float, ...]
    flagged_share: float
    details: dict[str, Any]
    temper_start: float = TEMPER_START
    temper_slope: float = 0.0  # what a bundle calibrated before tempering existed reads as

    def threshold(self, width: np.ndarray | float | None) -> np.ndarray:
        """Each width's band threshold (NaN or None: the widest band's)."""
        width = np.asarray(np.nan if width is None else width, dtype=float)
        width = np.nan_to_num(width, nan=np.inf)
        return np.asarray(self.thresholds)[np.searchsorted(self.width_edges, width, side="right")]

    def familiar(self, novelty: float, width: float | None) -> bool:
        return bool(novelty <= self.threshold(width))

    def temperature(
        self, novelty: np.ndarray | float, width: np.ndarray | float | None
    ) -> np.ndarray:
        """What a face's calibrated logit is divided by: 1 while its novelty is below
        temper_start of its threshold, then growing linearly (NaN novelty: 1)."""
        relative = np.nan_to_num(np.asarray(novelty, dtype=float) / self.threshold(width))
        return 1.0 + self.temper_slope * np.maximum(0.0, relative - self.temper_start)

    def to_dict(self) -> dict[str, Any]:
        return {
            "width_edges": list(self.width_edges),
            "thresholds": list(self.thresholds),
            "flagged_share": self.flagged_share,
            "temper_start": self.temper_start,
            "temper_slope": self.temper_slope,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Familiarity:
        return cls(
            width_edges=tuple(float(w) for w in raw["width_edges"]),
            thresholds=tuple(float(t) for t in raw["thresholds"]),
            flagged_share=float(raw["flagged_share"]),
            details=raw.get("details", {}),
            temper_start=float(raw.get("temper_start", TEMPER_START)),
            temper_slope=float(raw.get("temper_slope", 0.0)),
        )


def fit_familiarity(
    novelty: np.ndarray,
    widths: np.ndarray,
    sources: np.ndarray | list[str] | None = None,
    *,
    flagged_share: float = DEFAULT_FLAGGED_SHARE,
    width_edges: tuple[float, ...] = WIDTH_EDGES,
    temper_start: float = TEMPER_START,
    temper_slope: float = TEMPER_SLOPE,
    details: dict[str, Any] | None = None,
) -> Familiarity:
    """Each width band's threshold flags `flagged_share` of held-out faces of that width, so
    about that share of familiar faces of any size are flagged. With `sources`, it is the mean
    of the sources' flagged shares that is held there (each source weighs the same, as an
    unseen one would; one large source cannot set the threshold for the rest). A band with
    fewer than MIN_FACES_PER_BAND faces takes the threshold of all faces. From `temper_start`
    of its threshold up, a face's P(ai) is tempered toward 0.5, `temper_slope` setting how
    fast (0: not at all)."""
    novelty = np.asarray(novelty, dtype=float)
    widths = np.nan_to_num(np.asarray(widths, dtype=float), nan=np.inf)
    if sources is None:
        groups = np.zeros(len(novelty), dtype=int)
    else:
        groups = np.unique(np.asarray(sources), return_inverse=True)[1]
    band = np.searchsorted(width_edges, widths, side="right")
    overall = _balanced_threshold(novelty, groups, flagged_share)
    thresholds, counts = [], []
    for index in range(len(width_edges) + 1):
        members = band == index
        counts.append(int(members.sum()))
        enough = members.sum() >= MIN_FACES_PER_BAND
        thresholds.append(
            _balanced_threshold(novelty[members], groups[members], flagged_share)
            if enough
            else overall
        )
    flagged = novelty > np.array(thresholds)[band]
    by_source = {}
    if sources is not None:
        names = np.asarray(sources)
        by_source = {str(n): float(flagged[names == n].mean()) for n in np.unique(names)}
    return Familiarity(
        width_edges=tuple(width_edges),
        thresholds=tuple(thresholds),
        flagged_share=flagged_share,
        details={"faces_per_band": counts, "flagged_by_source": by_source, **(details or {})},
        temper_start=temper_start,
        temper_slope=temper_slope,
    )


def _balanced_threshold(values: np.ndarray, groups: np.ndarray, share: float) -> float:
    """The lowest threshold at which the groups' mean share of values above it is <= share."""
    candidates = np.unique(values)
    exceed = np.zeros(len(candidates))
    present = np.unique(groups)
    for group in present:
        ordered = np.sort(values[groups == group])
        exceed += 1.0 - np.searchsorted(ordered, candidates, side="right") / len(ordered)
    exceed /= len(present)
    return float(candidates[np.argmax(exceed <= share)])


def reference_embeddings(
    detector: Detector,
    items: Iterable[ImageSource],
    *,
    thumbnail: Callable[[Image.Image], Image.Image] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The embedding of each image's most AI-like face (images without a face are skipped),
    computed exactly as at inference: decode, faces, crops, model. With `thumbnail`, every
    second image is judged as the copy it makes (see REFERENCE_THUMBNAIL)."""

    def prepare(position_and_item: tuple[int, ImageSource]) -> Prepared:
        position, item = position_and_item
        if thumbnail is not None and position % 2 == 1:
            item = transformed(item, thumbnail)
        return detector.prepare(item)

    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for prepared in pool.map(prepare, enumerate(items)):
            if prepared.crops:
                logits, embeddings = detector.run_model(prepared.crops)
                if embeddings is None:
                    raise FacetellError(
                        f"{detector.model_name}: the model gives no embedding to compare faces "
                        "by (familiarity needs a pooled-backbone family or an ensemble of them)"
                    )
                rows.append(embeddings[int(np.argmax(logits))])
            if on_progress:
                on_progress(1)
    if not rows:
        raise FacetellError("no face found in the reference images")
    return np.stack(rows)


def sample_indices(sources: list[str], size: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of about `size` row indices, in order, with as many rows of each source
    as it has to give up to an equal share (so a rare source's faces have near neighbours too).
    """
    rng = np.random.default_rng(seed)
    names = np.asarray(sources)
    groups = sorted(set(sources))
    per_source = max(1, size // len(groups)) if groups else 0
    picked = []
    for name in groups:
        rows = np.flatnonzero(names == name)
        picked.append(rng.choice(rows, min(per_source, len(rows)), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=int)
