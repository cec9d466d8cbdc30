"""Calibration: turn a model's logit into an honest probability and a three-way verdict.

`calibration.json` in a bundle holds a temperature (p = sigmoid(logit / T)), the decision
threshold on p, and the "uncertain" band around it where held-out accuracy was too low to
answer. A bundle without one still works, with T = 1 and a default band, and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_BAND = (0.35, 0.65)


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = DEFAULT_BAND
    fitted: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Calibration:
        if not raw:
            return cls()
        return cls(
            temperature=float(raw["temperature"]),
            threshold=float(raw["threshold"]),
            uncertain_band=tuple(raw["uncertain_band"]),  # type: ignore[arg-type]
            fitted=True,
            details={
                k: v
                for k, v in raw.items()
                if k not in ("temperature", "threshold", "uncertain_band")
            },
        )

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw.pop("fitted")
        details = raw.pop("details")
        return {**raw, "uncertain_band": list(self.uncertain_band), **details}

    def probability(self, logit: float) -> float:
        """P(ai) after temperature scaling; numerically safe for large logits."""
        z = logit / self.temperature
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def verdict(self, p_ai: float, threshold: float | None = None) -> str:
        """'ai', 'real', or 'uncertain' inside the band (a user threshold moves the band too)."""
        cut = self.threshold if threshold is None else threshold
        low, high = self.uncertain_band
        shift = cut - self.threshold
        if low + shift <= p_ai <= high + shift:
            return "uncertain"
        return "ai" if p_ai >= cut else "real"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


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


def expected_calibration_error(y_true, y_prob, *, n_bins: int = 15) -> float:
    """ECE: the sample-weighted gap between confidence and accuracy over equal-width bins
    of P(ai) (the binary reliability-diagram form)."""
    y_true, y_prob = _check(y_true, y_prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(y_prob, edges[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.sum() * abs(y_prob[mask].mean() - y_true[mask].mean())
    return float(total / len(y_true))


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


def fit_temperature(logits, y_true) -> float:
    """The temperature minimising the negative log-likelihood of sigmoid(logit / T)."""
    from scipy.optimize import minimize_scalar

    y_true, logits = _check(y_true, logits)

    def nll(log_t: float) -> float:
        p = np.clip(_sigmoid(logits / np.exp(log_t)), 1e-12, 1 - 1e-12)
        return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))

    return float(np.exp(minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded").x))


def threshold_for_fpr(y_true, y_prob, max_fpr: float, sources=None) -> float:
    """The lowest P(ai) threshold whose false-positive rate on real faces is at most max_fpr.

    With `sources`, the rate is the mean of each real source's own rate, so a large easy source
    cannot buy a threshold that a smaller, harder one (or an unseen one) would not get.
    """
    y_true, y_prob = _check(y_true, y_prob)
    is_real = y_true == 0
    if not is_real.any():
        raise ValueError("a false-positive target needs real images in the calibration set")
    real_sources = np.asarray(sources if sources is not None else ["all"] * len(y_true))[is_real]
    names, inverse, counts = np.unique(real_sources, return_inverse=True, return_counts=True)
    weights = 1.0 / (counts[inverse] * len(names))
    order = np.argsort(-y_prob[is_real], kind="stable")
    descending = y_prob[is_real][order]
    false_positive_rate = np.cumsum(weights[order])  # if the top k reals were called AI
    allowed = int(np.searchsorted(false_positive_rate, max_fpr + 1e-12, side="right"))
    # everything strictly above the first real score that must stay real is called AI
    return float(np.nextafter(descending[min(allowed, len(descending) - 1)], 1.0))


def uncertain_band(
    y_true, y_prob, threshold: float, *, target_accuracy: float = 0.95, grid: int = 60
) -> tuple[tuple[float, float], dict[str, float]]:
    """The narrowest band around the threshold outside of which held-out accuracy meets the
    target; faces scoring inside it are answered "uncertain" instead of guessed."""
    y_true, y_prob = _check(y_true, y_prob)
    below = np.unique(np.quantile(y_prob[y_prob < threshold], np.linspace(0, 1, grid)))
    above = np.unique(np.quantile(y_prob[y_prob >= threshold], np.linspace(0, 1, grid)))
    lows = np.concatenate([[threshold], below[::-1]]) if below.size else np.array([threshold])
    highs = np.concatenate([[threshold], above]) if above.size else np.array([threshold])
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


def fit_calibration(
    logits,
    y_true,
    *,
    max_fpr: float | None = None,
    sources: list[str] | None = None,
    target_accuracy: float = 0.95,
    fitted_on: dict[str, Any] | None = None,
) -> Calibration:
    """Temperature by NLL, threshold at the equal-error point (or a false-positive target,
    averaged over real sources when `sources` is given), and the uncertain band; the details
    record what it was fitted on, the ECE it reached and each real source's false-positive
    rate."""
    y_true, logits = _check(y_true, logits)
    temperature = fit_temperature(logits, y_true)
    raw = _sigmoid(logits)
    p = _sigmoid(logits / temperature)
    if max_fpr is None:
        _, threshold = equal_error_rate(y_true, p)
        rule = "equal_error_rate"
    else:
        threshold = threshold_for_fpr(y_true, p, max_fpr, sources)
        rule = f"max_fpr={max_fpr}" + (" (mean over real sources)" if sources else "")
    band, band_details = uncertain_band(y_true, p, threshold, target_accuracy=target_accuracy)
    called_ai = p >= threshold
    real_sources = np.asarray(sources)[y_true == 0] if sources is not None else np.array([])
    details = {
        "threshold_rule": rule,
        "n": len(y_true),
        "n_real": int((y_true == 0).sum()),
        "n_ai": int((y_true == 1).sum()),
        "ece_before": expected_calibration_error(y_true, raw),
        "ece_after": expected_calibration_error(y_true, p),
        "false_positive_rate": float(called_ai[y_true == 0].mean())
        if (y_true == 0).any()
        else None,
        "true_positive_rate": float(called_ai[y_true == 1].mean()) if (y_true == 1).any() else None,
        "false_positive_rate_by_source": {
            str(name): float(called_ai[y_true == 0][real_sources == name].mean())
            for name in np.unique(real_sources)
        },
        "band": band_details,
        "fitted_on": fitted_on or {},
    }
    return Calibration(temperature, threshold, band, fitted=True, details=details)
