"""Calibration: turn a model's logit into an honest probability and a three-way verdict.

`calibration.json` in a bundle holds a temperature and a bias (p = sigmoid(logit / T + b),
Platt scaling: a model trained with augmentation can lean its logits to one class, which a
temperature alone cannot undo), the decision threshold on p, and the "uncertain" band around
it where held-out accuracy was too low to answer. A bundle without one still works, with
T = 1, b = 0 and a default band, and says so; an older one without a bias reads as b = 0.

Small faces get a size correction on top: the model sees them upscaled and blurred, ranks them
nearly as well, but scores them too low, real and AI alike (on the default model, ECE
0.06-0.10 on 48-64-px thumbnails against 0.02 at full size). It is fitted on thumbnail copies of the
calibration set and vanishes at the reference width, so large faces keep the plain scaling.

Unfamiliar faces get a temperature of their own on top (facetell.familiarity): the further a
face is from the training faces, the closer to 0.5 its P(ai). The bundle-wide temperature, bias,
threshold and band are fitted with it in place, so they describe the probabilities users see.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from facetell.familiarity import Familiarity

DEFAULT_BAND = (0.35, 0.65)
_OWN_KEYS = (
    "temperature", "bias", "threshold", "uncertain_band", "size_correction", "familiarity"
)  # fmt: skip
# The copies the size correction is fitted on: the hidden benchmark's kind of thumbnail, at sizes
# that put faces from about 25 px wide to beyond the reference width.
THUMBNAIL_SIZES = (48, 64, 96, 128, 160)
THUMBNAIL_QUALITY = 85
# Faces narrower than this are "small": corrected, and re-encoded at THUMBNAIL_QUALITY first.
SMALL_FACE_WIDTH = 64.0
# Offsets and slopes tried (each) when the lowest-log-loss size correction breaks the FPR rule.
CONSTRAINED_GRID = 41
CONFIDENCE_LEVEL = 0.95  # of every interval facetell reports


@dataclass(frozen=True)
class SizeCorrection:
    """For a face w px wide, u = max(0, ln(reference_width / w)) and the scaled logit gains
    u · (offset + slope · logit): zero at and above the reference width, growing as the face
    shrinks, so there is no jump between "small" and "large". Faces narrower than the
    narrowest it was fitted on (min_width) get that face's correction, not an extrapolation.

    With `jpeg_quality`, a face narrower than the reference width in a photo that was never
    a JPEG is judged on the photo re-encoded once at that quality, as the JPEG thumbnails the
    correction was fitted on were: small lossless faces score higher, real ones too, and the
    only small lossless training source is a generated one (docs/results.md, "Small lossless
    faces"). Small faces from JPEG files keep their pixels."""

    reference_width: float
    offset: float
    slope: float
    min_width: float = 1.0
    jpeg_quality: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def shrinkage(self, width: np.ndarray | float) -> np.ndarray:
        floor = max(self.min_width, 1.0)  # a degenerate 0-px box must not divide by zero
        return np.maximum(0.0, np.log(self.reference_width / np.maximum(width, floor)))

    def shift(self, logit: np.ndarray | float, width: np.ndarray | float) -> np.ndarray:
        """What the correction adds to logit / T for faces this wide (NaN width: nothing)."""
        width = np.nan_to_num(np.asarray(width, dtype=float), nan=self.reference_width)
        return self.shrinkage(width) * (self.offset + self.slope * np.asarray(logit))


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = DEFAULT_BAND
    fitted: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    size_correction: SizeCorrection | None = None
    bias: float = 0.0
    familiarity: Familiarity | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Calibration:
        if not raw:
            return cls()
        correction = raw.get("size_correction")
        familiarity = raw.get("familiarity")
        return cls(
            temperature=float(raw["temperature"]),
            bias=float(raw.get("bias", 0.0)),
            threshold=float(raw["threshold"]),
            uncertain_band=tuple(raw["uncertain_band"]),  # type: ignore[arg-type]
            fitted=True,
            details={k: v for k, v in raw.items() if k not in _OWN_KEYS},
            size_correction=SizeCorrection(**correction) if correction else None,
            familiarity=Familiarity.from_dict(familiarity) if familiarity else None,
        )

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw.pop("fitted")
        details = raw.pop("details")
        if raw["size_correction"] is None:
            raw.pop("size_correction")
        raw.pop("familiarity")
        if self.familiarity is not None:
            raw["familiarity"] = self.familiarity.to_dict()
        return {**raw, "uncertain_band": list(self.uncertain_band), **details}

    def with_size_correction(self, correction: SizeCorrection | None) -> Calibration:
        return replace(self, size_correction=correction)

    def with_familiarity(self, familiarity: Familiarity | None) -> Calibration:
        return replace(self, familiarity=familiarity)

    def scaled_logits(
        self,
        logits: np.ndarray | float,
        widths: np.ndarray | float | None = None,
        novelty: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """logit / T + b, plus the size correction for faces of these widths (px in the photo),
        divided by each face's own temperature when its novelty is given."""
        z = np.asarray(logits, dtype=float) / self.temperature + self.bias
        if self.size_correction is not None and widths is not None:
            z = z + self.size_correction.shift(logits, widths)
        if self.familiarity is not None and novelty is not None:
            z = z / self.familiarity.temperature(novelty, widths)
        return z

    def probability(
        self, logit: float, face_width: float | None = None, novelty: float | None = None
    ) -> float:
        """P(ai) after Platt scaling (and the size correction for a face this wide, and the
        temperature of a face this unfamiliar); numerically safe for large logits."""
        z = float(self.scaled_logits(logit, face_width, novelty))
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def cut(self, threshold: float | None = None) -> float:
        """The threshold in force: the user's, or the calibrated one."""
        return self.threshold if threshold is None else threshold

    def band(self, threshold: float | None = None) -> tuple[float, float]:
        """The uncertain band in force. A lower user threshold moves it along with the cut, by
        the same log-odds, so it keeps its width in evidence and stays within 0-1 (moved by the
        same probability, a threshold of 0.3 put the band at -0.16-0.30: no face was "real").
        A higher one stretches it up to the cut and keeps its lower edge: moved, a cut of 0.99
        called a face of P(ai) 0.7 "real", where held-out faces like it were mostly AI."""
        cut = self.cut(threshold)
        if cut == self.threshold:
            return self.uncertain_band
        shift = _logit(cut) - _logit(self.threshold)

        def moved(edge: float) -> float:
            return cut if edge == self.threshold else float(_sigmoid(_logit(edge) + shift))

        low, high = self.uncertain_band
        if cut > self.threshold:
            return low, max(moved(high), cut)
        return min(moved(low), cut), max(moved(high), cut)  # a cut of 0 stays inside

    def verdict(self, p_ai: float, threshold: float | None = None) -> str:
        """'ai', 'real', or 'uncertain' inside the band (a user threshold moves the band too)."""
        low, high = self.band(threshold)
        if low <= p_ai <= high:
            return "uncertain"
        return "ai" if p_ai >= self.cut(threshold) else "real"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)  # a threshold of 0 or 1 is allowed: keep it finite
    return float(np.log(p / (1 - p)))


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=int)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.shape != y_score.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must be equal 1-D")
    if len(y_true) == 0:
        raise ValueError("no samples")
    if not set(np.unique(y_true)) <= {0, 1}:
        raise ValueError("y_true must hold 0 (real) and 1 (ai) only")
    return y_true, y_score


def _ece_bins(y_prob: np.ndarray, n_bins: int) -> np.ndarray:
    """Each probability's bin of `n_bins` equal-width ones (right edges inclusive)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.digitize(y_prob, edges[1:-1], right=True), 0, n_bins - 1)


def expected_calibration_error(y_true, y_prob, *, n_bins: int = 15) -> float:
    """ECE: the sample-weighted gap between confidence and accuracy over equal-width bins
    of P(ai) (the binary reliability-diagram form)."""
    y_true, y_prob = _check(y_true, y_prob)
    gaps = np.bincount(_ece_bins(y_prob, n_bins), weights=y_prob - y_true, minlength=n_bins)
    return float(np.abs(gaps).sum() / len(y_true))


def _calibrated_ai_counts(
    y_prob: np.ndarray, bins: np.ndarray, n_bins: int, draws: int, seed: int
) -> np.ndarray:
    """AI labels per bin (draws x bins) when each image's label is drawn from its own P(ai):
    what a perfectly calibrated model's bins would hold (consistency resampling, Bröcker and
    Smith 2007)."""
    rng = np.random.default_rng(seed)
    one_hot = np.eye(n_bins)[bins]  # images x bins
    chunk = max(1, 4_000_000 // len(y_prob))  # draws at a time: memory stays bounded
    batches = []
    for start in range(0, draws, chunk):
        labels = rng.random((min(chunk, draws - start), len(y_prob))) < y_prob
        batches.append(labels @ one_hot)
    return np.concatenate(batches)


def ece_if_calibrated(
    y_prob, *, quantile: float = 0.95, draws: int = 1000, seed: int = 0, n_bins: int = 15
) -> float:
    """The ECE that perfectly calibrated probabilities would still show on these images, at the
    given quantile. A measured ECE below it is within the noise of a finite set."""
    y_prob = np.asarray(y_prob, dtype=float)
    bins = _ece_bins(y_prob, n_bins)
    stated = np.bincount(bins, weights=y_prob, minlength=n_bins)
    counts = _calibrated_ai_counts(y_prob, bins, n_bins, draws, seed)
    eces = np.abs(stated - counts).sum(axis=1) / len(y_prob)
    return float(np.quantile(eces, quantile))


def reliability_curve(
    y_true, y_prob, *, n_bins: int = 15, draws: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per non-empty bin of the reliability diagram: mean stated P(ai), observed share of AI,
    count, and the 95% band a perfectly calibrated model's observed share would fall in
    (consistency bars), so a point outside its band is miscalibration rather than the noise of
    a few images."""
    y_true, y_prob = _check(y_true, y_prob)
    bins = _ece_bins(y_prob, n_bins)
    used = np.unique(bins)
    count = np.bincount(bins, minlength=n_bins)[used]

    def share(labels: np.ndarray) -> np.ndarray:
        return np.bincount(bins, weights=labels, minlength=n_bins)[used] / count

    calibrated = _calibrated_ai_counts(y_prob, bins, n_bins, draws, seed)[:, used] / count
    low, high = np.quantile(calibrated, [0.025, 0.975], axis=0)
    return {
        "confidence": share(y_prob),
        "observed": share(y_true),
        "count": count,
        "band_low": low,
        "band_high": high,
    }


def proportion_interval(successes: int, trials: int) -> list[float] | None:
    """Wilson score interval of a rate. Unlike a bootstrap it does not collapse to [0, 0] when
    nothing was seen: 0 of 45 real faces called AI still allows a rate of up to 7.9%."""
    from scipy.stats import binomtest

    if trials == 0:
        return None
    interval = binomtest(int(successes), int(trials)).proportion_ci(CONFIDENCE_LEVEL, "wilson")
    return [float(interval.low), float(interval.high)]


def trials_to_bound(rate: float) -> int:
    """How many faces, none of them called AI, it takes for the Wilson interval to show a
    false-positive rate of at most `rate` (189 for 2%): fewer cannot show it, however clean."""

    def shown(trials: int) -> bool:
        interval = proportion_interval(0, trials)
        return interval is not None and interval[1] <= rate

    enough = math.ceil(4 / rate)  # Wilson's bound with none seen is z² / (n + z²), z² < 4
    return bisect.bisect_left(range(enough + 1), True, key=shown)


def equal_error_rate(y_true, y_score) -> tuple[float, float]:
    """(EER, threshold): where the false-positive and false-negative rates meet on the ROC."""
    from sklearn.metrics import roc_curve

    y_true, y_score = _check(y_true, y_score)
    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    # interpolate between the two ROC points that straddle the crossing
    j = min(i + 1, len(fpr) - 1)
    d_i, d_j = fpr[i] - fnr[i], fpr[j] - fnr[j]
    w = 0.0 if d_i == d_j or np.sign(d_i) == np.sign(d_j) else d_i / (d_i - d_j)
    eer = float((fpr[i] + w * (fpr[j] - fpr[i]) + fnr[i] + w * (fnr[j] - fnr[i])) / 2)
    threshold = float(thresholds[i]) if np.isfinite(thresholds[i]) else float(thresholds[j])
    return eer, threshold


def sigmoid_targets(y_true: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """What a sigmoid is fitted to: the labels, unless the logits separate the classes, when
    fitting to 0 and 1 has no best temperature (a user's 8 + 8 faces the model ranked perfectly
    drove it to its floor, 0.007, and every P(ai) to 0 or 1). Then Platt's (1999) targets,
    (n_ai + 1) / (n_ai + 2) and 1 / (n_real + 2), as scikit-learn's sigmoid calibration uses:
    no more certainty than that many faces can show. On faces that overlap they would cost
    calibration (the shipped model's val ECE 0.019 → 0.022, its temperature 0.74 → 0.82), so
    the labels are kept there."""
    y_true = np.asarray(y_true, dtype=float)
    if logits[y_true == 0].max(initial=-np.inf) >= logits[y_true == 1].min(initial=np.inf):
        return y_true
    n_ai = int((y_true == 1).sum())
    return np.where(y_true == 1, (n_ai + 1) / (n_ai + 2), 1 / (len(y_true) - n_ai + 2))


def fit_scaling(logits, y_true, face_temperatures=None) -> tuple[float, float]:
    """Temperature T and bias b minimising the log-loss of sigmoid(logit / T + b) (Platt
    scaling; `sigmoid_targets` says against what), each face's result divided by its own
    temperature if given. The ranking is kept; the bias moves where the probabilities cross
    0.5."""
    from scipy.optimize import minimize

    y_true, logits = _check(y_true, logits)
    divisor = 1.0 if face_temperatures is None else np.asarray(face_temperatures, dtype=float)
    targets = sigmoid_targets(y_true, logits)

    def temperature(log_t: float) -> float:
        return float(np.exp(np.clip(log_t, -5.0, 5.0)))

    def nll(params: np.ndarray) -> float:
        z = (logits / temperature(params[0]) + params[1]) / divisor
        # log(1 + e^z) - t z, stable for large |z|
        return float(np.mean(np.logaddexp(0.0, z) - targets * z))

    log_t, bias = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-6}).x
    return temperature(log_t), float(bias)


def threshold_for_fpr(y_true, y_prob, max_fpr: float, sources=None) -> float:
    """The lowest P(ai) threshold whose false-positive rate on real faces is at most max_fpr.

    With `sources`, the rate must hold on every real source on its own. A mean over sources
    lets an easy one buy slack for a hard one: UTKFace is never called AI, so a 2% mean over it
    and two FFHQ sources allowed FFHQ faces 3%, and the shipped model and three hold-out models
    of its recipe then called 2.2-4.8% of one real source's test faces AI.
    """
    y_true, y_prob = _check(y_true, y_prob)
    is_real = y_true == 0
    if not is_real.any():
        raise ValueError("a false-positive target needs real images in the calibration set")
    real_scores = y_prob[is_real]
    real_sources = np.asarray(sources if sources is not None else ["all"] * len(y_true))[is_real]
    return max(
        _threshold_for_rate(real_scores[real_sources == name], max_fpr)
        for name in np.unique(real_sources)
    )


def _threshold_for_rate(real_scores: np.ndarray, max_fpr: float) -> float:
    """Just above the highest real score that must stay real; at most max_fpr of them lie above."""
    descending = np.sort(real_scores)[::-1]
    allowed = int(np.floor(max_fpr * len(descending) + 1e-9))
    # everything strictly above the first real score that must stay real is called AI
    return float(np.nextafter(descending[min(allowed, len(descending) - 1)], 1.0))


def false_positive_rates(y_true, y_prob, threshold: float, sources=None) -> np.ndarray:
    """The share of real faces called AI in each real source, in sorted source order (all real
    faces as one source without `sources`)."""
    y_true, y_prob = _check(y_true, y_prob)
    is_real = y_true == 0
    names = np.asarray(sources if sources is not None else ["all"] * len(y_true))[is_real]
    called = y_prob[is_real] >= threshold
    return np.array([called[names == name].mean() for name in np.unique(names)])


def worst_false_positive_rate(y_true, y_prob, threshold: float, sources=None) -> float:
    """The false-positive rate of the real source where it is highest: the rate
    `threshold_for_fpr` holds to its target."""
    return float(false_positive_rates(y_true, y_prob, threshold, sources).max())


def fit_size_correction(
    calibration: Calibration,
    logits,
    y_true,
    widths,
    *,
    reference_width: float = SMALL_FACE_WIDTH,
    jpeg_quality: int | None = None,
    max_fpr: float | None = None,
    sources: list[str] | None = None,
    novelty=None,
) -> SizeCorrection | None:
    """The size correction with the lowest log-loss on faces narrower than the reference width.

    `jpeg_quality` records how those faces were re-encoded before their logits were taken
    (`Detector(small_face_jpeg=...)`), so inference re-encodes them alike. With `novelty`, each
    face's probability is tempered by the calibration's familiarity, as at inference.

    With `max_fpr`, a correction that calls more of any real source's faces AI at the calibrated
    threshold than max_fpr (or than no correction does there, if that is more) is replaced by
    the lowest-log-loss one that does not, searched over a grid of offsets between none and the
    optimum's and slopes between the one that halves the weight of the narrowest face's logit
    and the optimum's (or none), a grid that holds the optimum shrunk toward none. Small faces'
    probabilities can then be made honest by making them less sure, which calls no more real
    faces AI, rather than only by pushing them all up less. None when the small faces lack real
    or AI examples.
    """
    from scipy.optimize import minimize

    y_true, logits = _check(y_true, logits)
    widths = np.asarray(widths, dtype=float)
    novelty = np.full(len(widths), np.nan) if novelty is None else np.asarray(novelty, dtype=float)
    small = widths < reference_width
    if len(set(y_true[small])) < 2:
        return None
    # the 1st percentile: a handful of mis-sized boxes should not set how far it reaches
    floor = float(np.percentile(widths[small], 1))
    base = SizeCorrection(reference_width, 0.0, 0.0, floor, jpeg_quality)

    def probabilities(
        correction: SizeCorrection, rows: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        corrected = calibration.with_size_correction(correction)
        return _sigmoid(corrected.scaled_logits(logits[rows], widths[rows], novelty[rows]))

    small_targets = sigmoid_targets(y_true[small], logits[small])

    def nll(correction: SizeCorrection) -> float:
        p = np.clip(probabilities(correction, small), 1e-12, 1 - 1e-12)
        return float(-np.mean(small_targets * np.log(p) + (1 - small_targets) * np.log(1 - p)))

    def rates(correction: SizeCorrection) -> np.ndarray:
        return false_positive_rates(
            y_true, probabilities(correction), calibration.threshold, sources
        )

    offset, slope = minimize(
        lambda params: nll(replace(base, offset=params[0], slope=params[1])),
        np.zeros(2),
        method="Nelder-Mead",
    ).x
    optimum = best = replace(base, offset=float(offset), slope=float(slope))
    uncorrected_rates = rates(base)
    # each source may reach the target, or stay where no correction leaves it if that is higher
    allowed = np.maximum(max_fpr, uncorrected_rates) if max_fpr is not None else None

    def keeps_rule(correction: SizeCorrection) -> bool:
        return allowed is None or bool(np.all(rates(correction) <= allowed + 1e-12))

    if not keeps_rule(optimum):
        # the steepest slope halves the narrowest face's logit weight, 1/T + u · slope, so faces
        # of one width keep their order
        steepest = -0.5 / (calibration.temperature * float(base.shrinkage(floor)))
        candidates = (
            replace(base, offset=candidate_offset, slope=candidate_slope)
            for candidate_offset in np.linspace(0.0, optimum.offset, CONSTRAINED_GRID)
            for candidate_slope in np.linspace(steepest, max(optimum.slope, 0.0), CONSTRAINED_GRID)
        )
        best = min(filter(keeps_rule, candidates), key=nll, default=base)  # none always keeps it
    before, after = probabilities(base), probabilities(best)
    details = {
        "n": len(y_true),
        "n_small": int(small.sum()),
        # the lowest-log-loss correction, before the false-positive rule
        "optimum": {"offset": optimum.offset, "slope": optimum.slope},
        "ece_small_before": expected_calibration_error(y_true[small], before[small]),
        "ece_small_after": expected_calibration_error(y_true[small], after[small]),
        # of the worst real source
        "false_positive_rate_before": float(uncorrected_rates.max()),
        "false_positive_rate_after": float(rates(best).max()),
        "true_positive_rate_before": float((before[y_true == 1] >= calibration.threshold).mean()),
        "true_positive_rate_after": float((after[y_true == 1] >= calibration.threshold).mean()),
    }
    return replace(best, details=details)


def uncertain_band(
    y_true, y_prob, threshold: float, *, target_accuracy: float = 0.95, grid: int = 60
) -> tuple[tuple[float, float], dict[str, float]]:
    """The narrowest band around the threshold outside of which held-out accuracy meets the
    target; faces scoring inside it are answered "uncertain" instead of guessed."""
    y_true, y_prob = _check(y_true, y_prob)

    def edges(scores: np.ndarray) -> np.ndarray:
        # a threshold above every score (a strict false-positive target) leaves one side empty
        return np.unique(np.quantile(scores, np.linspace(0, 1, grid))) if scores.size else scores

    lows = np.concatenate([[threshold], edges(y_prob[y_prob < threshold])[::-1]])
    highs = np.concatenate([[threshold], edges(y_prob[y_prob >= threshold])])
    predicted = y_prob >= threshold
    correct = predicted == y_true.astype(bool)
    best: tuple[float, float, float, float] | None = None
    for low in lows:
        for high in highs:
            decided = (y_prob < low) | (y_prob > high)
            if decided.sum() == 0:
                continue
            accuracy = correct[decided].mean()
            coverage = decided.mean()
            if accuracy >= target_accuracy and (best is None or coverage > best[3]):
                best = (float(low), float(high), float(accuracy), float(coverage))
    if best is None:  # the target is out of reach: abstain on the middle half
        low, high = np.quantile(y_prob, [0.25, 0.75])
        low, high = min(low, threshold), max(high, threshold)
        decided = (y_prob < low) | (y_prob > high)
        best = (float(low), float(high), float(correct[decided].mean()), float(decided.mean()))
    low, high, accuracy, coverage = best
    return (low, high), {
        "target_accuracy": target_accuracy,
        "accuracy_outside_band": accuracy,
        "coverage": coverage,
        "target_met": accuracy >= target_accuracy,
    }


def _rates_by_source(called_ai: np.ndarray, real_sources: np.ndarray) -> dict[str, dict]:
    """Each real source's share of faces called AI, its 95% interval and its face count, as
    calibration.json records them; `called_ai` and `real_sources` are per real face."""
    names, counts = np.unique(real_sources, return_counts=True)
    called = [int(called_ai[real_sources == name].sum()) for name in names]
    rows = list(zip(map(str, names), called, map(int, counts), strict=True))
    return {
        "false_positive_rate_by_source": {name: float(k / n) for name, k, n in rows},
        "false_positive_rate_interval_by_source": {
            name: proportion_interval(k, n) for name, k, n in rows
        },
        "n_real_by_source": {name: n for name, _, n in rows},
    }


def threshold_for_real_photos(
    calibration: Calibration,
    p_ai,
    max_fpr: float,
    *,
    sources: list[str] | None = None,
    fitted_on: dict[str, Any] | None = None,
) -> Calibration:
    """The calibration with its threshold raised until at most `max_fpr` of these real faces
    (of each source, with `sources`) are called AI, and the uncertain band stretched up to it
    (`Calibration.band`); temperature, bias, small-face correction and familiarity are kept.

    For a platform with its own users' real photos and no AI ones: the rate it can bear is
    held on the photos it will actually see. The threshold never falls below the calibrated
    one, since with no AI images nothing shows what a lower one would cost."""
    earlier = calibration.details.get("real_photos_alone")
    if earlier:  # set on real photos before: start again from the calibrated threshold and band
        calibration = replace(
            calibration,
            threshold=earlier["calibrated_threshold"],
            uncertain_band=tuple(earlier["calibrated_uncertain_band"]),
        )
    p_ai = np.asarray(p_ai, dtype=float)
    no_ai = np.zeros(len(p_ai), dtype=int)
    threshold = max(calibration.threshold, threshold_for_fpr(no_ai, p_ai, max_fpr, sources))
    real_sources = np.asarray(sources if sources is not None else ["all"] * len(p_ai))
    details = {
        **calibration.details,
        "real_photos_alone": {
            "max_fpr": max_fpr,
            "calibrated_threshold": calibration.threshold,
            "calibrated_uncertain_band": list(calibration.uncertain_band),
            **_rates_by_source(p_ai >= threshold, real_sources),
            "fitted_on": fitted_on or {},
        },
    }
    return replace(
        calibration,
        threshold=threshold,
        uncertain_band=calibration.band(threshold),
        details=details,
    )


def fit_calibration(
    logits,
    y_true,
    *,
    max_fpr: float | None = None,
    sources: list[str] | None = None,
    target_accuracy: float = 0.95,
    fitted_on: dict[str, Any] | None = None,
    face_temperatures=None,
) -> Calibration:
    """Temperature and bias by NLL, threshold at the equal-error point (or a false-positive target,
    on every real source when `sources` is given), and the uncertain band, all with each
    face's own temperature (`Familiarity.temperature`) applied when given; the details record
    what it was fitted on, the ECE it reached and each real source's false-positive rate."""
    y_true, logits = _check(y_true, logits)
    temperature, bias = fit_scaling(logits, y_true, face_temperatures)
    raw = _sigmoid(logits)
    divisor = 1.0 if face_temperatures is None else np.asarray(face_temperatures, dtype=float)
    p = _sigmoid(Calibration(temperature, bias=bias).scaled_logits(logits) / divisor)
    if max_fpr is None:
        _, threshold = equal_error_rate(y_true, p)
        rule = "equal_error_rate"
    else:
        threshold = threshold_for_fpr(y_true, p, max_fpr, sources)
        rule = f"max_fpr={max_fpr}" + (" (every real source)" if sources else "")
    band, band_details = uncertain_band(y_true, p, threshold, target_accuracy=target_accuracy)
    called_ai = p >= threshold
    targets = sigmoid_targets(y_true, logits)
    real_sources = np.asarray(sources)[y_true == 0] if sources is not None else np.array([])
    details = {
        "threshold_rule": rule,
        "n": len(y_true),
        "n_real": int((y_true == 0).sum()),
        "n_ai": int((y_true == 1).sum()),
        "ece_before": expected_calibration_error(y_true, raw),
        "ece_after": expected_calibration_error(y_true, p),
        # Platt's (real, AI) targets when the faces were separated, else None (the labels)
        "sigmoid_targets": None
        if np.array_equal(targets, y_true)
        else [
            float(targets[y_true == 0].max(initial=0.0)),
            float(targets[y_true == 1].min(initial=1.0)),
        ],
        "false_positive_rate": float(called_ai[y_true == 0].mean())
        if (y_true == 0).any()
        else None,
        "true_positive_rate": float(called_ai[y_true == 1].mean()) if (y_true == 1).any() else None,
        **_rates_by_source(called_ai[y_true == 0], real_sources),
        "band": band_details,
        "fitted_on": fitted_on or {},
    }
    return Calibration(temperature, threshold, band, fitted=True, details=details, bias=bias)
