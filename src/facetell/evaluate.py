"""Metrics on scored images: overall and per source, in scikit-learn's style."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score


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
    """Per source: n, accuracy at the threshold, and for AI sources the AUROC against all reals.

    An AI source's AUROC is measured against every real image in the set, which is the
    leave-one-source-out number: can this generator's faces be told from real ones?
    Real sources get their false-positive rate instead.
    """
    y_true = np.asarray(y_true)
    logits = np.asarray(logits)
    sources = np.asarray(sources)
    predicted = (logits > threshold).astype(int)
    real = y_true == 0
    result: dict[str, dict[str, float]] = {}
    for source in sorted(set(sources)):
        mask = sources == source
        row: dict[str, float] = {
            "n": int(mask.sum()),
            "accuracy": float((predicted[mask] == y_true[mask]).mean()),
        }
        if y_true[mask].all():
            both = mask | real
            row["auroc_vs_real"] = auroc(y_true[both], logits[both])
        elif not y_true[mask].any():
            row["false_positive_rate"] = float(predicted[mask].mean())
        result[source] = row
    return result


def summary_metrics(y_true: np.ndarray, logits: np.ndarray, *, threshold: float = 0.0) -> dict:
    """AUROC and accuracy at the threshold: what training logs after every epoch."""
    y_true = np.asarray(y_true)
    logits = np.asarray(logits)
    return {
        "n": len(y_true),
        "auroc": auroc(y_true, logits),
        "accuracy": float(((logits > threshold).astype(int) == y_true).mean())
        if len(y_true)
        else 0,
    }
