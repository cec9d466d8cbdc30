"""Metrics and calibration against independent computations on synthetic score sets."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm
from sklearn.metrics import log_loss

from conftest import astronaut, gan_faces, run_cli
from facetell.calibrate import (
    Calibration,
    ece_if_calibrated,
    expected_calibration_error,
    false_positive_rates,
    fit_calibration,
    fit_scaling,
    fit_size_correction,
    proportion_interval,
    reliability_curve,
    threshold_for_fpr,
    uncertain_band,
    worst_false_positive_rate,
)
from facetell.evaluate import (
    BOOTSTRAP_KEYS,
    PERTURBATIONS,
    Evaluation,
    ScoredSet,
    auroc,
    auroc_difference_interval,
    auroc_interval,
    classification_metrics,
    compare_auroc,
    metric_intervals,
    perfect_ranking_bound,
    source_pairs,
    sweep_metrics,
)
from facetell.report import describe_comparison


def synthetic_scores(n: int = 600, seed: int = 0, overconfidence: float = 1.0):
    """Labels drawn from calibrated probabilities; logits scaled by `overconfidence`."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 2.0, size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logits))).astype(int)
    return y, true_logits * overconfidence


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def pairwise_auroc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


def manual_average_precision(y, p):
    order = np.argsort(-p, kind="stable")
    hits = y[order]
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_k * hits).sum() / hits.sum())


def brute_force_eer(y, p):
    best = None
    for t in np.unique(p):
        fpr = np.mean(p[y == 0] >= t)
        fnr = np.mean(p[y == 1] < t)
        if best is None or abs(fpr - fnr) < best[0]:
            best = (abs(fpr - fnr), (fpr + fnr) / 2)
    return best[1]


def manual_ece(y, p, bins=15):
    total = 0.0
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        inside = (p > low) & (p <= high) if k else (p >= low) & (p <= high)
        if inside.any():
            total += inside.sum() * abs(p[inside].mean() - y[inside].mean())
    return total / len(y)


def test_precision_and_recall_of_a_class_with_nothing_to_count_are_undefined_not_zero():
    """On real photos alone (a platform measuring its false alarms) the AI row read precision
    0 and recall 0, as if the model had missed every fake; there was none to miss."""
    real_only = classification_metrics(np.zeros(6, int), np.array([0.1, 0.2, 0.3, 0.4, 0.45, 0.9]))
    assert real_only["per_class"]["ai"] == {  # one real face called AI: precision 0 of 1
        "precision": 0.0, "recall": None, "f1-score": 0.0, "support": 0.0
    }  # fmt: skip
    assert real_only["per_class"]["real"]["recall"] == pytest.approx(5 / 6)
    none_called = classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert none_called["per_class"]["ai"]["precision"] is None  # nothing called AI
    assert none_called["per_class"]["ai"]["recall"] == 0.0  # both fakes missed
    json.dumps(real_only, allow_nan=False)  # metrics.json stays valid JSON


def test_every_metric_matches_an_independent_computation():
    y, logits = synthetic_scores()
    p = sigmoid(logits)
    threshold = 0.6
    m = classification_metrics(y, p, threshold=threshold, band=(0.4, 0.7))
    called = p >= threshold
    tp, fp = np.sum(called & (y == 1)), np.sum(called & (y == 0))
    fn, tn = np.sum(~called & (y == 1)), np.sum(~called & (y == 0))
    assert m["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert m["accuracy"] == pytest.approx((tp + tn) / len(y))
    assert m["balanced_accuracy"] == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert m["per_class"]["ai"]["precision"] == pytest.approx(precision)
    assert m["per_class"]["ai"]["recall"] == pytest.approx(recall)
    assert m["per_class"]["ai"]["f1-score"] == pytest.approx(
        2 * precision * recall / (precision + recall)
    )
    assert m["per_class"]["real"]["recall"] == pytest.approx(tn / (tn + fp))
    assert m["auroc"] == pytest.approx(pairwise_auroc(y, p))
    assert m["average_precision"] == pytest.approx(manual_average_precision(y, p))
    assert m["eer"] == pytest.approx(brute_force_eer(y, p), abs=2 / len(y))
    assert m["log_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["ece"] == pytest.approx(manual_ece(y, p))
    assert m["false_positive_rate"] == pytest.approx(fp / (fp + tn))
    inside = (p >= 0.4) & (p <= 0.7)
    assert m["uncertain_fraction"] == pytest.approx(inside.mean())
    assert m["accuracy_when_decided"] == pytest.approx((called == (y == 1))[~inside].mean())
    assert m["confusion_matrix_verdicts"] == [
        [np.sum(~called & ~inside & (y == t)), np.sum(inside & (y == t)),
         np.sum(called & ~inside & (y == t))]
        for t in (0, 1)
    ]  # fmt: skip


def test_every_headline_metric_gets_an_interval_around_it_and_the_same_one_each_time():
    y, logits = synthetic_scores(n=400, seed=4)
    p = sigmoid(logits)
    band = (0.4, 0.7)
    m = classification_metrics(y, p, threshold=0.6, band=band)
    intervals = metric_intervals(y, p, threshold=0.6, band=band, resamples=300)
    assert set(intervals) == set(BOOTSTRAP_KEYS) | {
        "accuracy", "false_positive_rate", "true_positive_rate", "uncertain_fraction",
        "accuracy_when_decided",
    }  # fmt: skip
    for key, (low, high) in intervals.items():
        assert low <= m[key] <= high, key
        assert 0 < high - low < 0.25, key  # 400 images pin every number down to within 0.25
    assert metric_intervals(y, p, threshold=0.6, band=band, resamples=300) == intervals
    skipped = metric_intervals(y, p, threshold=0.6, band=band, resamples=0)
    assert all(skipped[key] is None for key in BOOTSTRAP_KEYS)
    assert skipped["accuracy"] == intervals["accuracy"]  # rates need no resampling


def test_a_calibrated_model_stays_below_its_ece_yardstick_and_an_overconfident_one_does_not():
    """Labels drawn from the probabilities themselves: the true ECE is 0, the measured one is
    not (noise on 300 images), and the yardstick says how much of it noise explains."""
    below = []
    for seed in range(40):
        y, logits = synthetic_scores(n=300, seed=seed)
        m = classification_metrics(y, sigmoid(logits), threshold=0.5)
        below.append(m["ece"] <= m["ece_if_calibrated"])
    assert 0.85 <= np.mean(below) < 1.0  # a 95th percentile: about 38 of 40
    y, logits = synthetic_scores(n=300, seed=0, overconfidence=3.0)
    m = classification_metrics(y, sigmoid(logits), threshold=0.5)
    assert m["ece"] > 1.5 * m["ece_if_calibrated"]
    p = sigmoid(synthetic_scores(n=4800, seed=1)[1])
    ratio = ece_if_calibrated(p) / ece_if_calibrated(p[:300])
    assert 0.15 < ratio < 0.35  # sixteen times the images, a quarter of the noise


def test_reliability_points_of_a_calibrated_model_stay_in_their_bands_and_a_liars_do_not():
    y, logits = synthetic_scores(n=2000, seed=9)
    curve = reliability_curve(y, sigmoid(logits))
    assert curve["count"].sum() == 2000
    inside = (curve["band_low"] <= curve["observed"]) & (curve["observed"] <= curve["band_high"])
    assert inside.mean() >= 0.8  # 95% bands: a point or two of 15 may fall out
    assert np.all(curve["band_low"] <= curve["band_high"])
    p = sigmoid(logits)
    in_bin = (p > 0.6) & (p <= 2 / 3)  # the tenth of 15 bins, as the curve bins them
    assert curve["confidence"][9] == pytest.approx(p[in_bin].mean())
    y, logits = synthetic_scores(n=2000, seed=9, overconfidence=3.0)
    curve = reliability_curve(y, sigmoid(logits))
    inside = (curve["band_low"] <= curve["observed"]) & (curve["observed"] <= curve["band_high"])
    assert inside.mean() <= 0.5


def test_auroc_intervals_cover_the_true_auroc_95_times_in_100_and_narrow_with_more_images():
    """Real scores N(0, 1), AI scores N(1.5, 1): the true AUROC is Φ(1.5 / √2)."""
    true_auroc = norm.cdf(1.5 / np.sqrt(2))
    rng = np.random.default_rng(5)
    widths = {}
    for n_ai, n_real in ((40, 60), (160, 240)):
        covered, width = [], []
        for draw in range(150):
            scores = np.r_[rng.normal(1.5, 1, n_ai), rng.normal(0, 1, n_real)]
            y = np.r_[np.ones(n_ai, dtype=int), np.zeros(n_real, dtype=int)]
            low, high = auroc_interval(y, scores, resamples=400, seed=draw)
            covered.append(low <= true_auroc <= high)
            width.append(high - low)
        assert 0.88 <= np.mean(covered) <= 0.99, (n_ai, np.mean(covered))
        widths[n_ai] = np.mean(width)
    assert 0.4 < widths[160] / widths[40] < 0.6  # four times the images, half the width
    assert auroc_interval(np.array([1, 0, 0]), np.array([0.9, 0.1, 0.2])) is None  # one AI image


def test_a_perfect_ranking_of_few_images_keeps_an_interval_that_holds_the_truth():
    """Resampling perfectly ranked images only gives perfectly ranked images: the bootstrap
    alone said [1, 1] for 10 faces a class, and so missed a true AUROC of 0.998 most times."""
    true_auroc = norm.cdf(4 / np.sqrt(2))
    rng = np.random.default_rng(8)
    y = np.r_[np.ones(10, dtype=int), np.zeros(10, dtype=int)]
    covered, perfect = [], 0
    for draw in range(150):
        scores = np.r_[rng.normal(4, 1, 10), rng.normal(0, 1, 10)]
        low, high = auroc_interval(y, scores, resamples=300, seed=draw)
        covered.append(low <= true_auroc <= high)
        perfect += auroc(y, scores) == 1.0
    assert perfect > 75  # most draws rank every pair right...
    assert np.mean(covered) >= 0.9  # ...and their intervals still hold the truth

    y = np.r_[np.ones(12, dtype=int), np.zeros(12, dtype=int)]
    p_ai = np.r_[np.linspace(0.8, 0.99, 12), np.linspace(0.01, 0.3, 12)]
    intervals = metric_intervals(y, p_ai, threshold=0.5, resamples=200)
    bound, most = 0.025 ** (1 / 12), proportion_interval(0, 12)[1]
    assert intervals["auroc"] == pytest.approx([bound, 1.0])
    assert intervals["average_precision"] == pytest.approx([bound, 1.0])
    assert intervals["eer"] == pytest.approx([0.0, most])  # 0 errors in 12 allow up to 24%
    assert intervals["balanced_accuracy"] == pytest.approx([1 - most, 1.0])
    assert intervals["accuracy"][0] < 1.0


def test_an_auroc_drop_is_measured_on_the_same_images_so_its_interval_is_narrow():
    y, logits = synthetic_scores(n=400, seed=6)
    assert auroc_difference_interval(y, logits, logits.copy(), resamples=300) == [0.0, 0.0]
    noise = np.random.default_rng(60).normal(0, 1, len(logits))
    clean_width = np.diff(auroc_interval(y, logits, resamples=300))[0]
    mild, strong = logits + 0.3 * noise, logits + noise
    low, high = auroc_difference_interval(y, logits, mild, resamples=300)
    assert low < 0 < high  # a cost the luck of the draw could explain
    assert high - low < 0.3 * clean_width  # pairing cancels each image's own difficulty
    drop = auroc(y, logits) - auroc(y, strong)
    low, high = auroc_difference_interval(y, logits, strong, resamples=300)
    assert 0 < low <= drop <= high  # a cost beyond it
    assert high - low < 0.8 * clean_width


def test_a_better_model_is_told_from_a_luckier_one_on_the_same_images():
    y, logits = synthetic_scores(n=500, seed=8)
    noise = np.random.default_rng(80).normal(0, 1, len(y))

    def evaluation(name: str, scores: np.ndarray) -> Evaluation:
        scored = ScoredSet(
            paths=[f"{i}.jpg" for i in range(len(y))], targets=y,
            sources=["generator" if target else "camera" for target in y],
            logits=scores, p_ai=sigmoid(scores), face_widths=np.full(len(y), 100.0),
            labels=[None] * len(y), statuses=["ok"] * len(y), seconds=1.0,
            novelty=np.full(len(y), np.nan), familiar=[None] * len(y), errors=[None] * len(y),
        )  # fmt: skip
        return Evaluation(name, name, True, 0.5, (0.4, 0.6), None, {}, [], [], {}, [], {}, scored)

    blurred, sharp, nudged = (
        evaluation("blurred", logits + noise),
        evaluation("sharp", logits),
        evaluation("nudged", logits + 0.1 * noise),
    )
    better = compare_auroc(blurred, sharp, resamples=300)
    assert better["auroc_difference_interval"][0] > 0 and better["n"] == 500
    # with one source per class, each source against the other class is the whole set
    assert better["by_source"]["generator"] == better["by_source"]["camera"]
    assert better["by_source"]["generator"]["auroc_difference"] == better["auroc_difference"]
    assert "higher beyond the draw of images" in describe_comparison("sharp", better)
    assert "lower beyond" in describe_comparison("blurred", compare_auroc(sharp, blurred, 300))
    luckier = compare_auroc(sharp, nudged, resamples=300)
    assert "the draw of images could explain it" in describe_comparison("nudged", luckier)


def test_a_false_positive_rate_of_zero_still_gets_an_upper_bound_that_shrinks_with_more_reals():
    bounds = {}
    for n_real in (45, 450):
        y = np.r_[np.zeros(n_real, dtype=int), np.ones(50, dtype=int)]
        p = np.r_[np.full(n_real, 0.1), np.full(50, 0.9)]
        (low, high) = metric_intervals(y, p, threshold=0.5, resamples=0)["false_positive_rate"]
        assert low == 0.0 < high
        # a real rate at the upper bound would show no false positive in n_real faces rarely
        assert 0.01 < (1 - high) ** n_real < 0.06
        bounds[n_real] = high
    assert 6 < bounds[45] / bounds[450] < 12


def test_robustness_rows_count_real_faces_called_ai_and_calibration():
    y, logits = synthetic_scores(n=500, seed=11, overconfidence=2.0)
    p = sigmoid(logits)
    row = sweep_metrics(y, p, 0.8)
    assert row["n"] == 500
    assert row["false_positive_rate"] == pytest.approx(np.mean(p[y == 0] >= 0.8))
    assert row["accuracy"] == pytest.approx(np.mean((p >= 0.8) == (y == 1)))
    assert row["ece"] == pytest.approx(manual_ece(y, p))
    assert row["auroc"] == pytest.approx(pairwise_auroc(y, p))
    only_ai = sweep_metrics(np.ones(3, dtype=int), np.array([0.9, 0.2, 0.95]), 0.8)
    assert only_ai["false_positive_rate"] is None and only_ai["accuracy"] == pytest.approx(2 / 3)
    assert sweep_metrics(np.array([], dtype=int), np.array([]), 0.5)["auroc"] is None


def test_robustness_perturbations_repeat_exactly_and_do_what_they_say():
    photo = astronaut()
    pixels = np.asarray(photo, np.float32)
    for name, perturb in PERTURBATIONS.items():
        first, second = perturb(photo.copy()), perturb(photo.copy())
        assert np.array_equal(np.asarray(first), np.asarray(second)), name
    grey = np.asarray(PERTURBATIONS["greyscale"](photo), np.float32)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    noise = np.asarray(PERTURBATIONS["noise_8"](photo), np.float32) - pixels
    assert 6.5 < noise[(pixels > 20).all(axis=2) & (pixels < 235).all(axis=2)].std() < 8.5
    darker = np.asarray(PERTURBATIONS["darker_0.7"](photo), np.float32)
    assert darker.mean() == pytest.approx(0.7 * pixels.mean(), rel=0.02)
    sharpened = np.asarray(PERTURBATIONS["sharpen_2"](photo), np.float32)
    assert np.abs(np.diff(sharpened, axis=1)).mean() > 1.2 * np.abs(np.diff(pixels, axis=1)).mean()


def test_ece_is_zero_for_perfect_bins_and_large_for_lies():
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    assert expected_calibration_error(y, np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must be equal 1-D"):
        expected_calibration_error(y, np.array([0.1, 0.2]))


def test_scaling_fixes_overconfidence_and_keeps_the_ranking():
    y, logits = synthetic_scores(n=4000, seed=1, overconfidence=4.0)
    temperature, bias = fit_scaling(logits, y)
    assert 3.2 < temperature < 4.8 and abs(bias) < 0.2
    before = expected_calibration_error(y, sigmoid(logits))
    after = expected_calibration_error(y, sigmoid(logits / temperature + bias))
    assert before > 0.05 and after < before / 3
    calibration = fit_calibration(logits, y)
    assert calibration.details["ece_after"] < calibration.details["ece_before"]
    raw_auroc = classification_metrics(y, sigmoid(logits))["auroc"]
    scaled_auroc = classification_metrics(y, sigmoid(calibration.scaled_logits(logits)))["auroc"]
    assert scaled_auroc == pytest.approx(raw_auroc, abs=1e-12)


def test_a_few_faces_the_model_separates_give_finite_sure_but_not_certain_probabilities():
    """A user calibrates on their own 8 real and 8 AI faces and the model ranks them perfectly.
    Fitted to labels 0 and 1, the temperature ran to its floor (0.007) and the bias to -882:
    every face then read P(ai) 0 or 1, and the threshold 1.0000. Platt's targets keep it sane."""
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.uniform(-6, -2, 8), rng.uniform(2, 6, 8)])
    y = np.repeat([0, 1], 8)
    temperature, bias = fit_scaling(logits, y)
    p = sigmoid(logits / temperature + bias)
    assert 0.2 < temperature < 5 and abs(bias) < 2
    assert p.min() > 0.01 and p.max() < 0.99  # sure, as 16 faces allow, not certain
    assert p[y == 0].max() < 0.5 < p[y == 1].min()  # still on the right side
    calibration = fit_calibration(logits, y)
    assert 0.5 < calibration.threshold < 0.99
    assert calibration.details["sigmoid_targets"] == pytest.approx([1 / 10, 9 / 10])  # said so
    # where the classes overlap, the fit to the labels themselves is kept
    y_many, logits_many = synthetic_scores(n=4000, seed=1, overconfidence=4.0)

    def hard_label_loss(params: np.ndarray) -> float:  # the fit before Platt's targets
        z = logits_many / params[0] + params[1]
        return float(np.mean(np.logaddexp(0.0, z) - y_many * z))

    hard_temperature, hard_bias = minimize(hard_label_loss, [1.0, 0.0], method="Nelder-Mead").x
    temperature, bias = fit_scaling(logits_many, y_many)
    assert temperature == pytest.approx(hard_temperature, rel=1e-3)
    assert bias == pytest.approx(hard_bias, abs=1e-3)
    assert fit_calibration(logits_many, y_many).details["sigmoid_targets"] is None


def test_the_bias_undoes_logits_that_lean_to_one_class():
    """Logits pushed toward "ai" (as augmentation left the session-29 model's): a temperature
    alone leaves mid-range probabilities too high, the bias brings them back."""
    y, true_logits = synthetic_scores(n=6000, seed=2)
    leaning = 1.5 * true_logits + 1.2
    temperature, bias = fit_scaling(leaning, y)
    assert temperature == pytest.approx(1.5, abs=0.15) and bias == pytest.approx(-0.8, abs=0.15)
    platt = expected_calibration_error(y, sigmoid(leaning / temperature + bias))
    best_temperature_alone = min(
        expected_calibration_error(y, sigmoid(leaning / t)) for t in np.linspace(0.5, 4, 36)
    )
    assert platt < 0.02 < best_temperature_alone
    stored = fit_calibration(leaning, y).to_dict()
    assert stored["bias"] == pytest.approx(bias, abs=1e-3)
    older = {key: value for key, value in stored.items() if key != "bias"}
    assert Calibration.from_dict(older).bias == 0.0  # bundles from before the bias still load


def small_and_large_faces(seed: int):
    """Large faces (200 px) scored honestly; small ones (24-60 px) with a damped, real-leaning
    logit, as the model scores upscaled thumbnails."""
    rng = np.random.default_rng(seed)
    y, true_logits = synthetic_scores(n=6000, seed=seed)
    widths = np.where(rng.random(6000) < 0.5, 200.0, rng.uniform(24, 60, 6000))
    damped = true_logits * 0.5 - 1.0
    return y, np.where(widths < 64, damped, true_logits), widths


def test_size_correction_makes_small_faces_honest_and_leaves_large_ones_alone():
    y, logits, widths = small_and_large_faces(seed=8)
    large, small = widths >= 64, widths < 64
    calibration = fit_calibration(logits[large], y[large])
    correction = fit_size_correction(calibration, logits, y, widths)
    assert correction is not None and correction.offset > 0
    corrected = calibration.with_size_correction(correction)
    p_plain = np.array([calibration.probability(z) for z in logits])
    p_fixed = np.array([corrected.probability(z, w) for z, w in zip(logits, widths, strict=True)])
    before = expected_calibration_error(y[small], p_plain[small])
    after = expected_calibration_error(y[small], p_fixed[small])
    assert before > 0.05 and after < before / 2
    assert correction.details["ece_small_after"] == pytest.approx(after)
    assert np.array_equal(p_plain[large], p_fixed[large])
    # no jump at the reference width, and a face of unknown size is left alone
    assert corrected.probability(3.0, 63.99) == pytest.approx(
        corrected.probability(3.0, 64.0), abs=1e-3
    )
    assert corrected.probability(3.0) == calibration.probability(3.0)
    # below the narrowest faces it was fitted on, it stops growing
    assert 20 < correction.min_width < 30
    assert corrected.probability(-1.0, 5.0) == corrected.probability(-1.0, correction.min_width)
    assert corrected.probability(-1.0, 30.0) < corrected.probability(-1.0, correction.min_width)
    zero_floor = calibration.with_size_correction(replace(correction, min_width=0.0))
    assert 0 < zero_floor.probability(-1.0, 0.0) < 1
    restored = Calibration.from_dict(corrected.to_dict())
    assert restored.probability(1.5, 30.0) == corrected.probability(1.5, 30.0)
    assert correction.jpeg_quality is None  # not given: the logits came from unchanged faces
    reencoded = fit_size_correction(calibration, logits, y, widths, jpeg_quality=85)
    stored = calibration.with_size_correction(reencoded).to_dict()
    assert stored["size_correction"]["jpeg_quality"] == 85
    assert Calibration.from_dict(stored).size_correction == reencoded


def shrunk_and_refitted_log_loss(calibration, logits, y, widths, sources) -> tuple[float, float]:
    """Small faces' log-loss with the optimum shrunk uniformly toward none until it keeps the 2%
    rule (the fit before session 45), and with the correction fit_size_correction now gives."""
    small = widths < 64
    free = fit_size_correction(calibration, logits, y, widths)
    refitted = fit_size_correction(calibration, logits, y, widths, max_fpr=0.02, sources=sources)
    allowed = max(0.02, refitted.details["false_positive_rate_before"])

    def probabilities(correction):
        return sigmoid(calibration.with_size_correction(correction).scaled_logits(logits, widths))

    def shrunk(factor):
        return replace(free, offset=free.offset * factor, slope=free.slope * factor)

    def keeps_rule(factor):
        rate = worst_false_positive_rate(
            y, probabilities(shrunk(factor)), calibration.threshold, sources
        )
        return rate <= allowed

    factor = max(f for f in np.linspace(0, 1, 201) if keeps_rule(f))
    assert 0 < factor < 1  # the optimum breaks the rule
    return tuple(log_loss(y[small], probabilities(c)[small]) for c in (shrunk(factor), refitted))


def test_size_correction_is_refitted_within_the_false_positive_target():
    y, logits, widths = small_and_large_faces(seed=9)
    sources = np.where(y == 1, "ai", np.where(np.arange(len(y)) % 2, "camera", "phone"))
    calibration = fit_calibration(logits, y, max_fpr=0.02, sources=list(sources))
    free = fit_size_correction(calibration, logits, y, widths)
    bound = fit_size_correction(calibration, logits, y, widths, max_fpr=0.02, sources=list(sources))
    assert free is not None and bound is not None
    assert free.details["false_positive_rate_after"] > 0.02
    # the lowest-log-loss correction within the rule, not the optimum, and still a correction
    assert bound.details["optimum"] == pytest.approx({"offset": free.offset, "slope": free.slope})
    assert (bound.offset, bound.slope) != (free.offset, free.slope)
    assert bound.details["ece_small_after"] < 0.8 * bound.details["ece_small_before"]
    # no worse than shrinking the optimum toward none until it keeps the rule (as before session 45)
    shrunk, refitted = shrunk_and_refitted_log_loss(calibration, logits, y, widths, sources)
    assert refitted <= shrunk * 1.01
    p = sigmoid(calibration.with_size_correction(bound).scaled_logits(logits, widths))
    real = y == 0
    rates = [np.mean(p[real & (sources == name)] >= calibration.threshold)
             for name in ("camera", "phone")]  # fmt: skip
    assert max(rates) <= 0.02 + 1e-9
    assert bound.details["true_positive_rate_after"] > bound.details["true_positive_rate_before"]


def test_over_confident_small_faces_are_made_less_sure_within_the_false_positive_target():
    """Small faces scored too surely and leaning real (as the shipped model scores thumbnails):
    the correction within the rule lowers their logit's weight, rather than only shrinking the
    push that calls more of their real faces AI."""
    rng = np.random.default_rng(11)
    y, true_logits = synthetic_scores(n=6000, seed=11)
    widths = np.where(rng.random(6000) < 0.5, 200.0, rng.uniform(24, 60, 6000))
    logits = np.where(widths < 64, 2.0 * true_logits - 2.0, true_logits)
    names = np.where(y == 1, "ai", np.where(np.arange(len(y)) % 2, "camera", "phone"))
    sources, large = list(names), widths >= 64
    calibration = fit_calibration(logits[large], y[large], max_fpr=0.02, sources=list(names[large]))
    bound = fit_size_correction(calibration, logits, y, widths, max_fpr=0.02, sources=sources)
    assert bound.slope < 0 < bound.offset
    assert bound.details["false_positive_rate_after"] <= max(
        0.02, bound.details["false_positive_rate_before"]
    )
    shrunk, refitted = shrunk_and_refitted_log_loss(calibration, logits, y, widths, sources)
    assert refitted < 0.9 * shrunk


def test_size_correction_may_not_raise_one_real_source_to_another_ones_rate():
    """A studio source above the target with large faces (which no correction touches) must not
    license a correction that calls a webcam source of small faces AI as often."""
    rng = np.random.default_rng(12)
    logits = np.concatenate([
        rng.normal(-2.0, 1.2, 1000),  # studio: real, large, ~5% above the threshold
        rng.normal(-4.0, 1.0, 1000),  # webcam: real, small, leaning real
        rng.normal(-1.0, 1.0, 1000),  # AI, small, scored too low
        rng.normal(3.0, 1.0, 1000),  # AI, large
    ])  # fmt: skip
    y = np.r_[np.zeros(2000), np.ones(2000)]
    widths = np.repeat([200.0, 32.0, 32.0, 200.0], 1000)
    sources = np.repeat(["studio", "webcam", "ai", "ai"], 1000)
    calibration = Calibration(1.0, 0.5, (0.4, 0.6), fitted=True)
    free = fit_size_correction(calibration, logits, y, widths)
    bound = fit_size_correction(calibration, logits, y, widths, max_fpr=0.02, sources=list(sources))

    def rates(correction):
        p = sigmoid(calibration.with_size_correction(correction).scaled_logits(logits, widths))
        by_source = false_positive_rates(y, p, 0.5, sources)
        return dict(zip(("studio", "webcam"), by_source, strict=True))

    assert rates(free)["webcam"] > 0.04  # the lowest-log-loss correction: webcam near studio
    assert rates(bound)["webcam"] <= 0.02 < rates(bound)["studio"]
    assert rates(bound)["studio"] == rates(free)["studio"]  # large faces are not corrected
    assert bound.details["true_positive_rate_after"] > bound.details["true_positive_rate_before"]


def test_size_correction_needs_both_classes_among_small_faces():
    y, logits, widths = small_and_large_faces(seed=10)
    only_real_small = (widths >= 64) | (y == 0)
    calibration = fit_calibration(logits, y)
    assert (
        fit_size_correction(
            calibration, logits[only_real_small], y[only_real_small], widths[only_real_small]
        )
        is None
    )


def test_false_positive_target_is_met_by_the_lowest_such_threshold():
    y, logits = synthetic_scores(n=2000, seed=2)
    p = sigmoid(logits)
    for target in (0.01, 0.05, 0.2):
        threshold = threshold_for_fpr(y, p, target)
        assert np.mean(p[y == 0] >= threshold) <= target
        lower = np.max(p[(y == 0) & (p < threshold)])
        assert np.mean(p[y == 0] >= lower) > target


def test_false_positive_target_over_sources_holds_on_every_real_source():
    rng = np.random.default_rng(5)
    # 900 easy real faces, 100 hard ones (an unfamiliar camera), 500 AI faces
    p = np.concatenate([rng.beta(1, 8, 900), rng.beta(4, 3, 100), rng.beta(8, 1, 500)])
    y = np.r_[np.zeros(1000), np.ones(500)]
    sources = ["easy"] * 900 + ["hard"] * 100 + ["ai"] * 500

    def rates(threshold: float) -> list[float]:
        return [np.mean(p[:900] >= threshold), np.mean(p[900:1000] >= threshold)]

    pooled = threshold_for_fpr(y, p, 0.05)
    per_source = threshold_for_fpr(y, p, 0.05, sources)
    assert rates(pooled)[1] > 0.2  # pooling lets the hard source pay
    # a mean over the two would let the easy source's near-zero rate buy the hard one ~10%
    assert max(rates(per_source)) <= 0.05 < rates(pooled)[1]
    assert worst_false_positive_rate(y, p, per_source, sources) == max(rates(per_source))
    real_scores = np.sort(p[:1000])
    next_lower = real_scores[real_scores < per_source].max()
    assert max(rates(next_lower)) > 0.05  # and it is the lowest threshold that meets the target
    calibration = fit_calibration(np.log(p / (1 - p)), y, max_fpr=0.05, sources=sources)
    by_source = calibration.details["false_positive_rate_by_source"]
    assert set(by_source) == {"easy", "hard"}
    assert max(by_source.values()) <= 0.05
    intervals = calibration.details["false_positive_rate_interval_by_source"]
    for source, (low, high) in intervals.items():
        assert low <= by_source[source] <= high
    width = {source: high - low for source, (low, high) in intervals.items()}
    assert width["hard"] > 2 * width["easy"]  # 100 faces say less than 900


def test_uncertain_band_makes_the_answered_faces_accurate_enough():
    y, logits = synthetic_scores(n=3000, seed=3)
    p = sigmoid(logits)
    (low, high), details = uncertain_band(y, p, 0.5, target_accuracy=0.95)
    assert low <= 0.5 <= high
    decided = (p < low) | (p > high)
    assert ((p[decided] >= 0.5) == (y[decided] == 1)).mean() >= 0.95
    assert details["target_met"] and 0.1 < details["coverage"] < 1.0


def test_uncertain_band_with_a_threshold_above_every_score():
    """A strict false-positive target on a small source can put the threshold above every
    face: everything is then called real or uncertain, and the band still meets its target."""
    y, logits = synthetic_scores(n=400, seed=6)
    p = sigmoid(logits)
    threshold = float(np.nextafter(p.max(), 1.0))
    (low, high), details = uncertain_band(y, p, threshold, target_accuracy=0.6)
    assert low <= high == threshold
    decided = p < low
    assert details["accuracy_outside_band"] == pytest.approx(np.mean(y[decided] == 0))
    assert details["coverage"] == pytest.approx(decided.mean())


def test_calibration_verdicts_use_threshold_and_band():
    y, logits = synthetic_scores(n=2000, seed=4)
    calibration = fit_calibration(logits, y, max_fpr=0.05)
    low, high = calibration.uncertain_band
    assert calibration.verdict(min(1.0, high + 0.01)) == "ai"
    assert calibration.verdict(max(0.0, low - 0.01)) == "real"
    assert calibration.verdict((low + high) / 2) == "uncertain"
    assert calibration.details["false_positive_rate"] <= 0.05


def test_a_user_threshold_moves_the_band_by_log_odds_and_leaves_every_verdict_reachable():
    """`predict --threshold 0.3` moved the shipped band (0.499-0.962) by 0.662 in probability,
    to -0.16-0.30: every face below the cut was "uncertain" and none could be "real". A
    stricter cut keeps the band's lower edge: moved by log-odds too, 0.99 had called a face of
    P(ai) 0.7 "real"."""
    shipped = Path(__file__).parents[1] / "models" / "default" / "calibration.json"
    calibration = Calibration.from_dict(json.loads(shipped.read_text()))
    order = {"real": 0, "uncertain": 1, "ai": 2}
    grid = np.linspace(0.0, 1.0, 20_001)
    for threshold in (0.02, 0.3, 0.5, 0.8, 0.99):
        low, high = calibration.band(threshold)
        assert 0.0 < low <= threshold <= high <= 1.0
        ranks = [order[calibration.verdict(p, threshold)] for p in grid]
        assert ranks == sorted(ranks) and set(ranks) == {0, 1, 2}  # real, then uncertain, then ai
        assert calibration.verdict(threshold, threshold) == "uncertain"  # the cut is in the band

        def logit(p: float) -> float:
            return float(np.log(p / (1 - p)))

        calibrated_low = calibration.uncertain_band[0]
        if threshold > calibration.threshold:  # nothing the calibrated band doubts turns "real"
            assert (low, high) == (calibrated_low, threshold)
            assert calibration.verdict(0.7, threshold) == "uncertain"
        else:
            assert logit(low) - logit(threshold) == pytest.approx(
                logit(calibrated_low) - logit(calibration.threshold)
            )
    assert calibration.band(None) == calibration.band(calibration.threshold)
    assert calibration.band(None) == tuple(calibration.uncertain_band)


def test_source_pairs_show_which_real_photos_a_generator_passes_for():
    """A generator scored between two real sources: pooled it looks middling, the pairs say
    it ranks above one (AUROC near 1) and below the other (near 0); faceless images are left out.
    """
    rng = np.random.default_rng(3)
    sources = ["clean"] * 60 + ["soft"] * 40 + ["newgan"] * 50 + ["oldgan"] * 30
    targets = np.array([0] * 100 + [1] * 80)
    p_ai = np.concatenate(
        [
            rng.uniform(0.0, 0.2, 60),  # real photos the model finds obviously real
            rng.uniform(0.5, 0.9, 40),  # real photos it finds suspicious
            rng.uniform(0.2, 0.5, 50),  # an unseen generator in between
            rng.uniform(0.3, 1.0, 30),
        ]
    )
    statuses = ["ok"] * 180
    statuses[5] = statuses[120] = "no_face"
    p_ai[[5, 120]] = np.nan
    scored = ScoredSet(
        paths=[f"{i}.jpg" for i in range(180)],
        targets=targets,
        sources=sources,
        logits=p_ai,
        p_ai=p_ai,
        face_widths=np.full(180, 100.0),
        labels=[None] * 180,
        statuses=statuses,
        seconds=1.0,
        novelty=np.full(180, np.nan),
        familiar=[None] * 180,
        errors=[None] * 180,
    )
    pairs = {(p["ai_source"], p["real_source"]): p for p in source_pairs(scored)}
    assert set(pairs) == {(a, r) for a in ("newgan", "oldgan") for r in ("clean", "soft")}
    assert pairs[("newgan", "clean")]["auroc"] == 1.0
    assert pairs[("newgan", "soft")]["auroc"] == 0.0
    assert (pairs[("newgan", "clean")]["n_ai"], pairs[("newgan", "clean")]["n_real"]) == (49, 59)
    source_array = np.array(sources)
    for (ai_source, real_source), pair in pairs.items():
        fake = p_ai[(source_array == ai_source) & ~np.isnan(p_ai)]
        real = p_ai[(source_array == real_source) & ~np.isnan(p_ai)]
        y = np.array([1] * len(fake) + [0] * len(real))
        assert pair["auroc"] == pytest.approx(pairwise_auroc(y, np.concatenate([fake, real])))
        low, high = pair["auroc_interval"]
        assert low <= pair["auroc"] <= high
    # every resample ranks the pair alike; 49 against 59 still allow an AUROC down to 0.93
    assert pairs[("newgan", "clean")]["auroc_interval"] == [perfect_ranking_bound(49, 59), 1.0]
    inverted = pairs[("newgan", "soft")]
    high = 1 - perfect_ranking_bound(inverted["n_ai"], inverted["n_real"])
    assert inverted["auroc_interval"] == [0.0, pytest.approx(high)]  # ranked below, every pair
    assert 0.1 < np.diff(pairs[("oldgan", "soft")]["auroc_interval"])[0] < 0.5  # 30 against 40


def test_a_split_of_absolute_paths_from_another_machine_reads_with_the_data_here(
    untrained_bundle, tmp_path
):
    """A colleague trained with --data /home/alice/faces: every path in their split.json was
    missing here, wherever the same faces/ folder was."""
    (tmp_path / "faces").mkdir()
    astronaut().save(tmp_path / "faces" / "real.jpg")
    gan_faces(1, size=128)[0].save(tmp_path / "faces" / "fake.png")
    (tmp_path / "elsewhere").mkdir()
    for prefix, separator in (("/home/alice/faces", "/"), ("C:\\Users\\alice\\faces", "\\")):
        split = {"kind": "stratified", "seed": 0, "params": {}, "rows": [
            {"path": f"{prefix}{separator}{name}", "label": label, "source": label, "group": i,
             "split": "test"}
            for i, (name, label) in enumerate([("real.jpg", "real"), ("fake.png", "ai")])
        ]}  # fmt: skip
        (tmp_path / "split.json").write_text(json.dumps(split))
        run = run_cli("evaluate", str(untrained_bundle), "--split-file", "../split.json",
                      "--split", "test", "--out", "report", "--robustness-limit", "0",
                      "--resamples", "0", cwd=tmp_path / "elsewhere")  # fmt: skip
        assert run.returncode == 0, run.stderr.decode()
        report = tmp_path / "elsewhere" / "report"
        rows = list(csv.DictReader((report / "predictions.csv").open(encoding="utf-8-sig")))
        assert sorted((Path(row["path"]).resolve(), row["status"]) for row in rows) == [
            ((tmp_path / "faces" / "fake.png").resolve(), "ok"),
            ((tmp_path / "faces" / "real.jpg").resolve(), "ok"),
        ], prefix


def test_images_a_split_or_manifest_names_that_are_gone_are_named_not_scored(
    untrained_bundle, tmp_path
):
    """Moved data used to read as "no face found in the reference images" (calibrate) and "no
    image could be scored" (evaluate)."""
    (tmp_path / "data").mkdir()
    astronaut().save(tmp_path / "data" / "real.jpg")
    gan_faces(1, size=128)[0].save(tmp_path / "data" / "fake.png")
    split = {"kind": "stratified", "seed": 0, "params": {}, "rows": [
        {"path": f"moved/{name}", "label": label, "source": label, "group": i, "split": "test"}
        for i, (name, label) in enumerate([("real.jpg", "real"), ("fake.png", "ai")])
    ]}  # fmt: skip
    (tmp_path / "split.json").write_text(json.dumps(split))
    bundle = str(untrained_bundle)
    for command, options in {
        "evaluate": ("--out", str(tmp_path / "report")),
        "calibrate": (),
    }.items():
        run = run_cli(command, bundle, "--split-file", str(tmp_path / "split.json"), "--split",
                      "test", *options, cwd=tmp_path)  # fmt: skip
        assert run.returncode == 2
        assert run.stderr.decode().strip() == (
            f"error: {tmp_path / 'split.json'}: none of the 2 images it names exists (the first: "
            "moved/real.jpg); its paths are found from here or from a folder above the split file "
            "(another machine's absolute paths by their last folders)"
        )
        misnamed = run_cli(command, bundle, "--split-file", str(tmp_path / "split.json"),
                           "--split", "validation", *options, cwd=tmp_path)  # fmt: skip
        assert misnamed.stderr.decode().strip() == (
            f"error: {tmp_path / 'split.json'}: no 'validation' split (it holds: test)"
        )
    manifest = tmp_path / "data" / "list.csv"
    manifest.write_text("path,label\nreal.jpg,real\nfake.png,ai\nlost.jpg,real\n")
    run = run_cli("evaluate", bundle, str(manifest), "--out", str(tmp_path / "report"),
                  "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.decode().splitlines()[0] == (
        f"note: 1 of the 3 images the manifest names are missing and left out (the first: "
        f"{tmp_path / 'data' / 'lost.jpg'})"
    )
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["metrics"]["n"] == 2
    swapped = run_cli("evaluate", str(tmp_path / "split.json"), str(tmp_path / "data"))
    assert swapped.stderr.decode() == (  # the split given where the bundle goes
        f"error: {tmp_path / 'split.json'}: a split file, not a model bundle; give the bundle "
        f"first and the split with --split-file {tmp_path / 'split.json'}\n"
    )
