"""Evaluation: score a dataset with a bundle through the inference pipeline, compute every
metric a reviewer asks for, sweep robustness, and write a self-contained HTML report.

Scoring goes through `Detector` (decode → faces → crop → model → calibration), so the report
measures exactly what users get. Metric functions follow scikit-learn's conventions.
"""

from __future__ import annotations

import io
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from scipy.stats import bootstrap, mannwhitneyu
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    classification_report,
    confusion_matrix,
    log_loss,
    roc_auc_score,
)

from facetell.bundle import SPLITS_FITTED_ON, TrainingImages
from facetell.calibrate import (
    CONFIDENCE_LEVEL,
    SizeCorrection,
    ece_if_calibrated,
    equal_error_rate,
    expected_calibration_error,
    proportion_interval,
)
from facetell.data import Sample, sample_per_source
from facetell.errors import FacetellError
from facetell.inference import Detector
from facetell.io import jpeg_roundtrip, transformed
from facetell.pages import image_data_uri


def auroc(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float:
    """AUROC, or NaN when only one class is present (a fold can lack one)."""
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, y_score))


def per_source_metrics(
    y_true: np.ndarray,
    logits: np.ndarray,
    sources: Sequence[str],
    *,
    threshold: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Per source: n, accuracy at the threshold, and the source's AUROC against the other class.

    An AI source's AUROC is measured against every real image in the set, which is the
    leave-one-source-out number: can this generator's faces be told from real ones? A real
    source gets its false-positive rate and its AUROC against every AI image, the number that
    says whether an unseen kind of real photo still ranks below the fakes.
    """
    y_true = np.asarray(y_true)
    logits = np.asarray(logits)
    sources = np.asarray(sources)
    predicted = (logits > threshold).astype(int)
    result: dict[str, dict[str, float]] = {}
    for source in sorted(set(sources)):
        mask = sources == source
        row: dict[str, float] = {
            "n": int(mask.sum()),
            "accuracy": float((predicted[mask] == y_true[mask]).mean()),
        }
        ai_source, real_source = bool(y_true[mask].all()), not y_true[mask].any()
        if real_source:
            row["false_positive_rate"] = float(predicted[mask].mean())
        if ai_source or real_source:
            row.update(auroc_against_other_class(y_true, logits, mask, ai_source=ai_source))
        result[source] = row
    return result


def auroc_against_other_class(
    y_true: np.ndarray, scores: np.ndarray, mask: np.ndarray, *, ai_source: bool
) -> dict[str, float]:
    """One source's AUROC against every image of the other class, keyed by what it is against
    (None: no image of the source was scored, or none of the other class)."""
    other = y_true == (0 if ai_source else 1)
    both = mask.any() and other.any()
    value = auroc(y_true[mask | other], scores[mask | other]) if both else None
    return {"auroc_vs_real" if ai_source else "auroc_vs_ai": value}


def summary_metrics(y_true: np.ndarray, logits: np.ndarray, *, threshold: float = 0.0) -> dict:
    """AUROC and accuracy at the threshold: what training logs after every epoch."""
    y_true = np.asarray(y_true)
    logits = np.asarray(logits)
    return {
        "n": len(y_true),
        "n_real": int((y_true == 0).sum()),
        "n_ai": int((y_true == 1).sum()),
        "auroc": auroc(y_true, logits),
        "accuracy": float(((logits > threshold).astype(int) == y_true).mean())
        if len(y_true)
        else 0,
    }


# ---------------------------------------------------------------------------------------------
# Scoring a dataset through the inference pipeline


def jpeg_copy(quality: int) -> Callable[[Image.Image], Image.Image]:
    """Re-save as JPEG at one quality, as uploads and benchmarks do."""

    return lambda image: jpeg_roundtrip(image, quality)


def _downscale(factor: float) -> Callable[[Image.Image], Image.Image]:
    def apply(image: Image.Image) -> Image.Image:
        size = (max(16, round(image.width * factor)), max(16, round(image.height * factor)))
        return image.resize(size, Image.Resampling.BICUBIC)

    return apply


def _blur(sigma: float) -> Callable[[Image.Image], Image.Image]:
    return lambda image: image.filter(ImageFilter.GaussianBlur(radius=sigma))


def _greyscale(image: Image.Image) -> Image.Image:
    """A black-and-white photo (archives, filters): no training face is grey."""
    return ImageOps.grayscale(image).convert("RGB")


def _sensor_noise(sigma: float) -> Callable[[Image.Image], Image.Image]:
    """Gaussian noise of `sigma` grey levels, as a phone adds in low light; seeded by the
    pixels, so a sweep repeats exactly."""

    def apply(image: Image.Image) -> Image.Image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        rng = np.random.default_rng(zlib.crc32(pixels.tobytes()))
        noisy = np.rint(pixels + rng.normal(0.0, sigma, pixels.shape))
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    return apply


def _enhanced(
    enhancer: type[ImageEnhance.Brightness | ImageEnhance.Sharpness], factor: float
) -> Callable[[Image.Image], Image.Image]:
    """Brightness or sharpness scaled by `factor`, as exposure and phone processing do."""
    return lambda image: enhancer(image.convert("RGB")).enhance(factor)


def _screenshot(image: Image.Image) -> Image.Image:
    """What a screen capture does: a bilinear resize to display size, saved losslessly."""
    resized = image.resize((round(image.width * 0.8), round(image.height * 0.8)))
    buffer = io.BytesIO()
    resized.save(buffer, "PNG")
    return Image.open(buffer).convert("RGB")


def _centre_crop(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * 0.1), round(h * 0.1), round(w * 0.9), round(h * 0.9)))


def centre_thumbnail(image: Image.Image, size: int) -> Image.Image:
    """The photo's centre square shrunk to `size` pixels a side, before any re-encoding."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC)


def thumbnail_copy(size: int, quality: int = 90) -> Callable[[Image.Image], Image.Image]:
    """The hidden benchmark's second copy: centre-cropped, small, one JPEG quality."""
    return lambda image: jpeg_roundtrip(centre_thumbnail(image, size), quality)


PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_95": jpeg_copy(95),
    "jpeg_75": jpeg_copy(75),
    "jpeg_50": jpeg_copy(50),
    "jpeg_30": jpeg_copy(30),
    "downscale_0.5": _downscale(0.5),
    "downscale_0.25": _downscale(0.25),
    "blur_1": _blur(1.0),
    "blur_2": _blur(2.0),
    "screenshot": _screenshot,
    "centre_crop": _centre_crop,
    "greyscale": _greyscale,
    "noise_8": _sensor_noise(8.0),
    "darker_0.7": _enhanced(ImageEnhance.Brightness, 0.7),
    "sharpen_2": _enhanced(ImageEnhance.Sharpness, 2.0),
    "thumbnail_160_q90": thumbnail_copy(160),
    "thumbnail_64_q90": thumbnail_copy(64),
}


@dataclass
class ScoredSet:
    """Image-level scores of one bundle on one dataset; NaN where no face or unreadable."""

    paths: list[str]
    targets: np.ndarray
    sources: list[str]
    logits: np.ndarray
    p_ai: np.ndarray
    face_widths: np.ndarray
    labels: list[str | None]
    statuses: list[str]
    seconds: float
    novelty: np.ndarray  # of the verdict face; NaN also when the bundle has no reference
    familiar: list[bool | None]  # of the verdict face; None when not measured
    errors: list[str | None]  # why an image could not be read; None when it was

    @property
    def scored(self) -> np.ndarray:
        return np.array([s == "ok" for s in self.statuses])


def score_dataset(
    detector: Detector,
    samples: Sequence[Sample],
    *,
    transform: Callable[[Image.Image], Image.Image] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ScoredSet:
    """Run every sample through the detector (optionally perturbed first)."""

    def items() -> Iterator[Any]:
        for sample in samples:
            path = str(sample.path)
            yield path if transform is None else transformed(path, transform)

    started = time.perf_counter()
    logits, probabilities, widths, labels, statuses, novelty = [], [], [], [], [], []
    familiar: list[bool | None] = []
    errors: list[str | None] = []
    for result in detector.stream(items()):
        if result.status == "ok":
            top = max(result.faces, key=lambda f: f.p_ai)
            logits.append(top.logit)
            probabilities.append(top.p_ai)
            widths.append(top.box[2] if detector.detect_faces else np.nan)
            novelty.append(np.nan if top.novelty is None else top.novelty)
        else:
            logits.append(np.nan)
            probabilities.append(np.nan)
            widths.append(np.nan)
            novelty.append(np.nan)
        labels.append(result.label)
        statuses.append(result.status)
        familiar.append(result.familiar)
        errors.append(result.error)
        if on_progress:
            on_progress(1)
    return ScoredSet(
        paths=[str(s.path) for s in samples],
        targets=np.array([s.target for s in samples]),
        sources=[s.source for s in samples],
        logits=np.array(logits, dtype=float),
        p_ai=np.array(probabilities, dtype=float),
        face_widths=np.array(widths, dtype=float),
        labels=labels,
        statuses=statuses,
        seconds=time.perf_counter() - started,
        novelty=np.array(novelty, dtype=float),
        familiar=familiar,
        errors=errors,
    )


# ---------------------------------------------------------------------------------------------
# Metrics


def rate(flags: np.ndarray) -> float | None:
    """Share of True in a boolean array; None for an empty one."""
    return float(np.mean(flags)) if len(flags) else None


def accuracy_at(y_true: np.ndarray, p_ai: np.ndarray, threshold: float) -> float | None:
    """Accuracy of calling P(ai) >= threshold "ai"; None when there is nothing to judge."""
    return rate((np.asarray(p_ai) >= threshold) == (np.asarray(y_true) == 1))


def sweep_metrics(y_true: np.ndarray, p_ai: np.ndarray, threshold: float) -> dict[str, Any]:
    """One robustness row: ranking, accuracy, real faces called AI, and calibration."""
    y_true, p_ai = np.asarray(y_true), np.asarray(p_ai)
    return {
        "auroc": auroc(y_true, p_ai) if len(set(y_true)) == 2 else None,
        "accuracy": accuracy_at(y_true, p_ai, threshold),
        "false_positive_rate": rate(p_ai[y_true == 0] >= threshold),
        "ece": expected_calibration_error(y_true, p_ai) if len(y_true) else None,
        "n": len(y_true),
    }


def classification_metrics(
    y_true: np.ndarray,
    p_ai: np.ndarray,
    *,
    threshold: float = 0.5,
    band: tuple[float, float] | None = None,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Every headline number for scores `p_ai` of the positive ("ai") class."""
    y_true = np.asarray(y_true, dtype=int)
    p_ai = np.asarray(p_ai, dtype=float)
    predicted = (p_ai >= threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    report = classification_report(
        y_true,
        predicted,
        labels=[0, 1],
        target_names=["real", "ai"],
        output_dict=True,
        zero_division=np.nan,  # no AI images, or none called AI: undefined, not 0
    )
    matrix = confusion_matrix(y_true, predicted, labels=[0, 1])
    eer, eer_threshold = equal_error_rate(y_true, p_ai) if both else (None, None)
    clipped = np.clip(p_ai, 1e-7, 1 - 1e-7)
    metrics: dict[str, Any] = {
        "n": len(y_true),
        "n_real": int((y_true == 0).sum()),
        "n_ai": int((y_true == 1).sum()),
        "threshold": threshold,
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)) if both else None,
        "per_class": {
            name: {k: None if np.isnan(v) else float(v) for k, v in report[name].items()}
            for name in ("real", "ai")
        },
        "auroc": auroc(y_true, p_ai) if both else None,
        "average_precision": float(average_precision_score(y_true, p_ai)) if both else None,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "log_loss": float(log_loss(y_true, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, p_ai)),
        "ece": expected_calibration_error(y_true, p_ai, n_bins=n_bins),
        # what a perfectly calibrated model would still show on these images, 95 times in 100
        "ece_if_calibrated": ece_if_calibrated(p_ai, n_bins=n_bins),
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalised": (matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1))
        .round(4)
        .tolist(),
        "false_positive_rate": rate(predicted[y_true == 0]),
        "true_positive_rate": rate(predicted[y_true == 1]),
    }
    if band is not None:
        undecided = (p_ai >= band[0]) & (p_ai <= band[1])
        decided = ~undecided
        metrics["uncertain_fraction"] = float(undecided.mean())
        metrics["accuracy_when_decided"] = rate(predicted[decided] == y_true[decided])
        # the verdicts users see: rows truth real/ai, columns verdict real/uncertain/ai (the
        # binary matrix above counts an uncertain face on its side of the threshold)
        verdicts = np.where(undecided, 1, 2 * predicted)
        metrics["confusion_matrix_verdicts"] = [
            [int(np.sum((y_true == truth) & (verdicts == verdict))) for verdict in range(3)]
            for truth in (0, 1)
        ]
    return metrics


# ---------------------------------------------------------------------------------------------
# How far each number could move on another draw of the same kind of images

RESAMPLES = 1000
# the metrics whose intervals come from resampling images; rates get a Wilson interval. ECE gets
# none: a measured ECE overstates the true one, and a resampled one more so, so its percentile
# interval can lie wholly above it; `ece_if_calibrated` is its yardstick instead.
BOOTSTRAP_KEYS = ("auroc", "average_precision", "eer", "balanced_accuracy")


def _by_class_bootstrap(
    y_true: np.ndarray,
    scores: np.ndarray,
    statistic: Callable[..., Any],
    resamples: int,
    seed: int,
    *,
    vectorized: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap with real and AI images resampled on their own, so every resample
    keeps the set's class mix (an AUROC with one class missing means nothing)."""
    result = bootstrap(
        (scores[y_true == 1], scores[y_true == 0]),
        statistic,
        n_resamples=resamples,
        confidence_level=CONFIDENCE_LEVEL,
        method="percentile",
        vectorized=vectorized,
        rng=seed,
    )
    return np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)


def _auroc_of(ai: np.ndarray, real: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUROC as the Mann-Whitney U of the AI scores over the real ones (ties count half),
    vectorised over resamples."""
    u = mannwhitneyu(ai, real, axis=axis, method="asymptotic").statistic
    return u / (ai.shape[axis] * real.shape[axis])


def perfect_ranking_bound(n_ai: int, n_real: int) -> float:
    """The lowest AUROC (at 95%) that still makes it likely that every image was ranked right.

    The bootstrap cannot give it: resampling perfectly ranked images only ever gives perfectly
    ranked images, so its interval is [1, 1] however few they are. But m = min(n_ai, n_real)
    disjoint (AI, real) pairs are m independent draws of a pair, each misordered with
    probability 1 - AUROC; all m came out right, which a Clopper-Pearson bound turns into
    AUROC ≥ (2.5%)^(1/m): 0.74 on 12 pairs, 0.93 on 50, 0.996 on 1,000.
    """
    return float(((1 - CONFIDENCE_LEVEL) / 2) ** (1 / min(n_ai, n_real)))


def _auroc_edges(value: float, interval: list[float], n_ai: int, n_real: int) -> list[float]:
    """`interval` widened to the perfect-ranking bound when every pair went one way."""
    low, high = interval
    if value == 1.0:
        low = min(low, perfect_ranking_bound(n_ai, n_real))
    elif value == 0.0:
        high = max(high, 1 - perfect_ranking_bound(n_ai, n_real))
    return [low, high]


def auroc_interval(
    y_true: np.ndarray, scores: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> list[float] | None:
    """Bootstrap interval of AUROC (with the perfect-ranking bound when all pairs went one
    way); None with fewer than two images of a class, or resamples 0."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=float)
    n_ai, n_real = int((y_true == 1).sum()), int((y_true == 0).sum())
    if resamples == 0 or min(n_ai, n_real) < 2:
        return None
    low, high = _by_class_bootstrap(y_true, scores, _auroc_of, resamples, seed, vectorized=True)
    value = float(_auroc_of(scores[y_true == 1], scores[y_true == 0]))
    return _auroc_edges(value, [float(low), float(high)], n_ai, n_real)


def auroc_difference_interval(
    y_true: np.ndarray,
    scores: np.ndarray,
    baseline: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[float] | None:
    """Bootstrap interval of AUROC(scores) - AUROC(baseline), two scorings of the same images
    (clean and perturbed, or two models), the same images drawn for both: each image's own
    difficulty cancels out, so the interval is narrower than two separate ones, most of all for
    a small difference. Real and AI images are drawn apart, as in `_by_class_bootstrap`, which
    cannot pair two scores."""
    y_true = np.asarray(y_true, dtype=int)
    scores, baseline = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    ai, real = np.flatnonzero(y_true == 1), np.flatnonzero(y_true == 0)
    if resamples == 0 or min(len(ai), len(real)) < 2:
        return None
    rng = np.random.default_rng(seed)
    drawn_ai = rng.choice(ai, (resamples, len(ai)))
    drawn_real = rng.choice(real, (resamples, len(real)))
    differences = _auroc_of(scores[drawn_ai], scores[drawn_real]) - _auroc_of(
        baseline[drawn_ai], baseline[drawn_real]
    )
    tail = (1 - CONFIDENCE_LEVEL) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return [float(low), float(high)]


def metric_intervals(
    y_true: np.ndarray,
    p_ai: np.ndarray,
    *,
    threshold: float,
    band: tuple[float, float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """95% intervals of the headline metrics but ECE (keys as in `classification_metrics`), for a
    reader to tell a real difference from the luck of which images were in the set. Images are
    treated as independent; near-duplicates sharing a split make the intervals a little narrow."""
    y_true, p_ai = np.asarray(y_true, dtype=int), np.asarray(p_ai, dtype=float)
    called_ai, is_real = p_ai >= threshold, y_true == 0
    intervals: dict[str, list[float] | None] = {
        "accuracy": proportion_interval((called_ai == (y_true == 1)).sum(), len(y_true)),
        "false_positive_rate": proportion_interval(called_ai[is_real].sum(), is_real.sum()),
        "true_positive_rate": proportion_interval(called_ai[~is_real].sum(), (~is_real).sum()),
    }
    if band is not None:
        decided = (p_ai < band[0]) | (p_ai > band[1])
        right = called_ai[decided] == (y_true[decided] == 1)
        intervals["uncertain_fraction"] = proportion_interval((~decided).sum(), len(y_true))
        intervals["accuracy_when_decided"] = proportion_interval(right.sum(), decided.sum())
    if resamples == 0 or min(is_real.sum(), (~is_real).sum()) < 2:
        return intervals | dict.fromkeys(BOOTSTRAP_KEYS)

    def statistic(ai: np.ndarray, real: np.ndarray) -> np.ndarray:
        y = np.r_[np.ones(len(ai), dtype=int), np.zeros(len(real), dtype=int)]
        p = np.r_[ai, real]
        return np.array(
            [
                _auroc_of(ai, real),
                average_precision_score(y, p),
                equal_error_rate(y, p)[0],
                ((ai >= threshold).mean() + (real < threshold).mean()) / 2,  # balanced accuracy
            ]
        )

    low, high = _by_class_bootstrap(y_true, p_ai, statistic, resamples, seed, vectorized=False)
    booted = {
        key: [float(lo), float(hi)] for key, lo, hi in zip(BOOTSTRAP_KEYS, low, high, strict=True)
    }
    return intervals | _widened_at_the_edges(booted, y_true, p_ai, called_ai)


def _widened_at_the_edges(
    booted: dict[str, list[float]], y_true: np.ndarray, p_ai: np.ndarray, called_ai: np.ndarray
) -> dict[str, list[float]]:
    """Bootstrap intervals that collapsed on a perfect result ([1, 1] for AUROC on 12 faces
    ranked right) widened to what so few images allow: AUROC and AP to the perfect-ranking
    bound (AP of a perfect ranking is 1 as well, and falls with the same misordered pairs);
    EER to the larger Wilson bound of 0 errors in either class (at a threshold between the
    classes both error rates are 0); balanced accuracy, when both class rates are 0 or 1, to
    the mean of their Wilson bounds."""
    is_ai = y_true == 1
    n_ai, n_real = int(is_ai.sum()), int((~is_ai).sum())
    value = float(_auroc_of(p_ai[is_ai], p_ai[~is_ai]))
    widened = dict(booted)
    widened["auroc"] = _auroc_edges(value, booted["auroc"], n_ai, n_real)
    if value == 1.0:
        bound = perfect_ranking_bound(n_ai, n_real)
        widened["average_precision"] = [min(booted["average_precision"][0], bound), 1.0]
        most = max(proportion_interval(0, n)[1] for n in (n_ai, n_real))
        widened["eer"] = [0.0, max(booted["eer"][1], most)]
    rates = [(int(called_ai[is_ai].sum()), n_ai), (int((~called_ai[~is_ai]).sum()), n_real)]
    if all(hits in (0, n) for hits, n in rates):
        bounds = np.array([proportion_interval(hits, n) for hits, n in rates])
        low, high = bounds.mean(axis=0)
        balanced = booted["balanced_accuracy"]
        widened["balanced_accuracy"] = [min(balanced[0], low), max(balanced[1], high)]
    return widened


def source_classes(scored: ScoredSet) -> dict[str, str]:
    """Each source's class ("ai" or "real"), by the majority of its images, sources sorted."""
    sources = np.array(scored.sources)
    return {
        source: "ai" if scored.targets[sources == source].mean() > 0.5 else "real"
        for source in sorted(set(scored.sources))
    }


def source_table(
    scored: ScoredSet,
    threshold: float,
    resamples: int = RESAMPLES,
    band: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Per source: n, faces found, accuracy, the share answered "uncertain" (None without a
    band), AUROC against the other class (with its interval), FPR for reals (with its
    interval), and the share of its faces flagged unfamiliar (None when the bundle cannot
    tell)."""
    ok = scored.scored
    sources = np.array(scored.sources)
    rows = []
    for source, label in source_classes(scored).items():
        mask = sources == source
        used = mask & ok
        predicted = scored.p_ai[used] >= threshold
        right = predicted == (scored.targets[used] == 1)
        measured = [scored.familiar[i] for i in np.flatnonzero(used)]
        flags = [not familiar for familiar in measured if familiar is not None]
        row: dict[str, Any] = {
            "source": source,
            "label": label,
            "n": int(mask.sum()),
            "scored": int(used.sum()),
            "no_face": int(sum(1 for i in np.flatnonzero(mask) if scored.statuses[i] == "no_face")),
            "accuracy": rate(right),
            "accuracy_interval": proportion_interval(right.sum(), len(right)),
            "uncertain": None
            if band is None
            else rate((scored.p_ai[used] >= band[0]) & (scored.p_ai[used] <= band[1])),
            "unfamiliar": rate(np.array(flags)) if flags else None,
        }
        if label == "real":
            row["false_positive_rate"] = rate(predicted)
            row["false_positive_rate_interval"] = proportion_interval(
                predicted.sum(), len(predicted)
            )
        row.update(
            auroc_against_other_class(
                scored.targets[ok], scored.p_ai[ok], mask[ok], ai_source=label == "ai"
            )
        )
        other = ok & (scored.targets == (0 if label == "ai" else 1))
        row["auroc_interval"] = auroc_interval(
            scored.targets[used | other], scored.p_ai[used | other], resamples=resamples
        )
        rows.append(row)
    return rows


def source_pairs(scored: ScoredSet, resamples: int = RESAMPLES) -> list[dict[str, Any]]:
    """AUROC of every AI source against every real source on its own.

    The per-source AUROC pools all real images, so a generator that ranks far above one kind of
    real photo and below another looks middling there; the pairs say which real photos it is
    mistaken for (held-out SDXL ranks above UTKFace's faces and below FFHQ's).
    """
    ok = scored.scored
    sources = np.array(scored.sources)
    kinds = source_classes(scored)
    pairs = []
    for ai_source in (s for s, kind in kinds.items() if kind == "ai"):
        fake = ok & (sources == ai_source) & (scored.targets == 1)
        for real_source in (s for s, kind in kinds.items() if kind == "real"):
            real = ok & (sources == real_source) & (scored.targets == 0)
            both = fake | real
            pairs.append(
                {
                    "ai_source": ai_source,
                    "real_source": real_source,
                    "n_ai": int(fake.sum()),
                    "n_real": int(real.sum()),
                    "auroc": auroc(scored.targets[both], scored.p_ai[both])
                    if fake.any() and real.any()
                    else None,
                    "auroc_interval": auroc_interval(
                        scored.targets[both], scored.p_ai[both], resamples=resamples
                    ),
                }
            )
    return pairs


# ---------------------------------------------------------------------------------------------
# A whole evaluation


@dataclass
class Evaluation:
    """One bundle on one dataset: what the report shows."""

    bundle: str
    bundle_path: str
    calibrated: bool
    threshold: float  # the cut in force: the calibrated one, or one the caller gave
    band: tuple[float, float]
    size_correction: SizeCorrection | None
    metrics: dict[str, Any]
    sources: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    robustness: dict[str, dict[str, float | None]]
    mistakes: list[dict[str, Any]]
    timing: dict[str, float]
    scored: ScoredSet = field(repr=False)
    comparison: dict[str, Any] | None = None  # against the first bundle of an evaluate run
    # how many of the images the bundle was fitted on, by split (None: it records none)
    seen_in_training: dict[str, int] | None = None
    calibrated_threshold: float | None = None  # the bundle's own, when another one was given
    # the mistakes' heat maps (the photo with where the model looked) as data URIs, by path:
    # for the report's gallery, not metrics.json
    mistake_heatmaps: dict[str, str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "bundle_path": self.bundle_path,
            "calibrated": self.calibrated,
            "threshold": self.threshold,
            "calibrated_threshold": self.calibrated_threshold,
            "uncertain_band": list(self.band),
            "size_correction": asdict(self.size_correction) if self.size_correction else None,
            "metrics": self.metrics,
            "sources": self.sources,
            "source_pairs": self.pairs,
            "robustness": self.robustness,
            "mistakes": self.mistakes,
            "timing": self.timing,
            "compared_with_first": self.comparison,
            "seen_in_training": self.seen_in_training,
        }


def compare_auroc(
    first: Evaluation, other: Evaluation, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """How much higher `other` ranks than `first` on the images both scored, with a paired
    interval, over the whole set and for each source against the other class (a held-out
    source's row is the leave-one-source-out comparison): whether a new model is better, or
    was only scored on a luckier draw, is decided here."""
    both = first.scored.scored & other.scored.scored
    targets, sources = first.scored.targets, np.array(first.scored.sources)

    def difference(rows: np.ndarray) -> dict[str, Any]:
        y_true, mine, theirs = targets[rows], other.scored.p_ai[rows], first.scored.p_ai[rows]
        if len(np.unique(y_true)) < 2:  # no AUROC on one class: nothing to compare
            none = {"auroc_difference": None, "auroc_difference_interval": None}
            return {"n": int(rows.sum()), **none}
        return {
            "n": int(rows.sum()),
            "auroc_difference": auroc(y_true, mine) - auroc(y_true, theirs),
            "auroc_difference_interval": auroc_difference_interval(
                y_true, mine, theirs, resamples=resamples
            ),
        }

    by_source = {
        source: difference(
            both & ((sources == source) | (targets == (1 if label == "real" else 0)))
        )
        for source, label in source_classes(first.scored).items()
    }
    return {"against": first.bundle, **difference(both), "by_source": by_source}


def fingerprints_of(samples: Sequence[Sample]) -> list[bytes | None]:
    """Each sample file's fingerprint (None: unreadable), to look up in a bundle's
    `TrainingImages`."""

    def fingerprint(path: Path) -> bytes | None:
        try:
            return TrainingImages.fingerprint(path.read_bytes())
        except OSError:
            return None

    return [fingerprint(sample.path) for sample in samples]


def seen_in_training(
    training_images: TrainingImages | None, fingerprints: Sequence[bytes | None]
) -> dict[str, int] | None:
    """How many of these images the model was fitted on, byte for byte, by split: scores on
    them flatter it. None when the bundle records no training images."""
    if training_images is None:
        return None
    splits = Counter(map(training_images.split_of, fingerprints))
    return {split: splits[split] for split in SPLITS_FITTED_ON}


def describe_seen(seen: dict[str, int] | None, total: int) -> str:
    """What a count of images the model was fitted on means for numbers measured on them."""
    if not seen or not sum(seen.values()):
        return ""
    return (
        f"{sum(seen.values())} of these {total} images are ones it was fitted on, byte for byte "
        f"({seen['train']} from its training split, {seen['val']} from its validation split), "
        "so its numbers here flatter it"
    )


def robustness_subset(samples: Sequence[Sample], limit: int, seed: int = 0) -> list[Sample]:
    """At most `limit` samples, spread evenly over sources, for the (costly) robustness sweep."""
    n_sources = max(1, len({s.source for s in samples}))
    return sample_per_source(samples, max(1, limit // n_sources), seed)


HEATMAP_SIDE = 320  # a gallery cell's picture, sharp at twice its 160 px


def mistake_heatmaps(
    detector: Detector, paths: Sequence[str], on_progress: Callable[[int], None] | None = None
) -> dict[str, str]:
    """Each mistaken photo with its faces' heat maps, boxes and verdicts drawn in, as a JPEG
    data URI: where the model looked when it was surest and wrong, which a plain picture cannot
    say (Grad-CAM needs torch, imported only here)."""
    from facetell.explain import OVERLAY_JPEG, explain

    overlays = {}
    for path in paths:
        overlay = explain(detector, path, max_side=HEATMAP_SIDE, caption=False).overlay
        if overlay is not None:  # gone since it was scored: the report shows a grey square
            overlays[path] = image_data_uri(overlay, "JPEG", **OVERLAY_JPEG)
        if on_progress:
            on_progress(1)
    return overlays


def evaluate_bundle(
    detector: Detector,
    samples: Sequence[Sample],
    *,
    robustness_limit: int = 400,
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    mistakes: int = 12,
    resamples: int = RESAMPLES,
    on_progress: Callable[[str, int, int], None] | None = None,
    fingerprints: Sequence[bytes | None] | None = None,
    explain_mistakes: bool = True,
) -> Evaluation:
    """Score, measure with 95% intervals (`resamples` bootstrap draws; 0 leaves out those that
    need them), sweep robustness, pick the high-confidence mistakes (with their heat maps,
    unless not `explain_mistakes`), and count the images the bundle was fitted on
    (`fingerprints`: the samples', when already computed)."""

    def progress(stage: str, total: int) -> Callable[[int], None] | None:
        return (lambda n: on_progress(stage, n, total)) if on_progress else None

    calibration = detector.calibration
    # the cut and band its verdicts are given at: a threshold the caller set moves the band
    threshold, band = detector.cut, detector.band
    scored = score_dataset(detector, samples, on_progress=progress("scoring", len(samples)))
    ok = scored.scored
    if ok.sum() == 0:
        raise FacetellError("no image could be scored (no faces found, or none readable)")
    metrics = classification_metrics(
        scored.targets[ok], scored.p_ai[ok], threshold=threshold, band=band
    )
    metrics["intervals"] = metric_intervals(
        scored.targets[ok],
        scored.p_ai[ok],
        threshold=threshold,
        band=band,
        resamples=resamples,
    )
    metrics["not_scored"] = {
        "no_face": scored.statuses.count("no_face"),
        "error": scored.statuses.count("error"),
    }
    robustness = (
        robustness_sweep(
            detector,
            samples,
            scored,
            perturbations,
            limit=robustness_limit,
            resamples=resamples,
            progress=progress,
        )
        if robustness_limit > 0 and perturbations
        else {}
    )
    worst = surest_mistakes(scored, threshold, mistakes)
    worst_paths = [scored.paths[i] for i in worst]
    heatmaps = (
        mistake_heatmaps(detector, worst_paths, progress("heat maps of mistakes", len(worst)))
        if explain_mistakes and len(worst)
        else {}
    )
    n_images = len(samples)
    return Evaluation(
        bundle=detector.model_name,
        bundle_path=str(detector.bundle.path),
        calibrated=calibration.fitted,
        threshold=threshold,
        band=band,
        calibrated_threshold=None if detector.threshold is None else calibration.threshold,
        size_correction=calibration.size_correction,
        metrics=metrics,
        sources=source_table(scored, threshold, resamples, band),
        pairs=source_pairs(scored, resamples),
        robustness=robustness,
        mistakes=[
            {
                "path": scored.paths[i],
                "source": scored.sources[i],
                "truth": "ai" if scored.targets[i] else "real",
                "p_ai": float(scored.p_ai[i]),
            }
            for i in worst
        ],
        mistake_heatmaps=heatmaps,
        seen_in_training=None
        if detector.bundle.training_images is None
        else seen_in_training(
            detector.bundle.training_images,
            fingerprints_of(samples) if fingerprints is None else fingerprints,
        ),
        timing={
            "images": n_images,
            "seconds": round(scored.seconds, 2),
            "images_per_second": round(n_images / max(scored.seconds, 1e-9), 2),
        },
        scored=scored,
    )


def robustness_sweep(
    detector: Detector,
    samples: Sequence[Sample],
    scored: ScoredSet,
    perturbations: Sequence[str],
    *,
    limit: int,
    resamples: int,
    progress: Callable[[str, int], Callable[[int], None] | None],
) -> dict[str, dict[str, float | None]]:
    """A seeded subset of at most `limit` samples scored again under each perturbation: its
    metrics, and how far AUROC and accuracy drop (with a paired interval) on the images scored
    both ways. `scored` holds every sample's clean scores."""
    threshold = detector.cut
    subset = robustness_subset(samples, limit)
    index = {s.path: i for i, s in enumerate(samples)}
    rows = [index[s.path] for s in subset]
    base_ok = scored.scored[rows]
    robustness: dict[str, dict[str, float | None]] = {
        "clean": sweep_metrics(scored.targets[rows][base_ok], scored.p_ai[rows][base_ok], threshold)
    }
    for name in perturbations:
        perturbed = score_dataset(
            detector,
            subset,
            transform=PERTURBATIONS[name],
            on_progress=progress(f"robustness: {name}", len(subset)),
        )
        used = perturbed.scored
        row = sweep_metrics(perturbed.targets[used], perturbed.p_ai[used], threshold)
        # drops on the images scored both ways: a face the perturbation hides shows in `n`
        common = base_ok & used
        targets = scored.targets[rows][common]
        before = sweep_metrics(targets, scored.p_ai[rows][common], threshold)
        after = sweep_metrics(targets, perturbed.p_ai[common], threshold)
        for key in ("auroc", "accuracy"):
            both = before[key] is not None and after[key] is not None
            row[f"{key}_drop"] = before[key] - after[key] if both else None
        row["auroc_drop_interval"] = auroc_difference_interval(
            targets, scored.p_ai[rows][common], perturbed.p_ai[common], resamples=resamples
        )
        robustness[name] = row
    return robustness


def surest_mistakes(scored: ScoredSet, threshold: float, limit: int) -> np.ndarray:
    """Indices of the wrongly judged images, the surest first, at most `limit`."""
    wrong = np.flatnonzero(scored.scored & ((scored.p_ai >= threshold) != (scored.targets == 1)))
    # surest first: the probability given to the wrong class (a real face at P(ai) 1.000 before
    # an AI face at 0.40). Distance from the cut had put that AI face first, as the cut is high.
    wrong_class = np.where(scored.targets[wrong] == 1, 1.0 - scored.p_ai[wrong], scored.p_ai[wrong])
    return wrong[np.argsort(-wrong_class, kind="stable")][:limit]
