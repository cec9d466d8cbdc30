"""Familiarity: novelty against a reference of training faces, and thresholds by face width."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from conftest import astronaut, gan_faces
from facetell.bundle import has_embedding, load_bundle
from facetell.calibrate import Calibration, fit_calibration
from facetell.evaluate import thumbnail_copy
from facetell.familiarity import (
    REFERENCE_THUMBNAIL,
    TEMPER_START,
    Familiarity,
    Reference,
    fit_familiarity,
    reference_embeddings,
)
from facetell.inference import Detector


def unit_rows(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    rows = rng.normal(size=(n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_novelty_is_small_near_reference_faces_and_survives_int8_storage():
    rng = np.random.default_rng(0)
    bank = unit_rows(rng, 200)
    reference = Reference.from_embeddings(bank, k=5)
    near = bank[:20] + 0.05 * rng.normal(size=(20, 64))
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    far = unit_rows(rng, 20)
    assert reference.novelty(near).max() < reference.novelty(far).min()
    loaded, weights_sha = Reference.from_bytes(reference.to_bytes("abc123"))
    assert weights_sha == "abc123" and loaded.k == 5
    np.testing.assert_array_equal(loaded.embeddings, reference.embeddings)
    # int8 rounding moves a cosine distance by far less than the gap between near and far
    exact = 1 - np.sort(far @ bank.T, axis=1)[:, -5:].mean(axis=1)
    np.testing.assert_allclose(reference.novelty(far), exact, atol=0.01)
    assert Reference.from_embeddings(bank[:3], k=10).k == 3  # never more neighbours than rows


def test_each_face_width_gets_the_threshold_of_faces_that_wide():
    rng = np.random.default_rng(1)

    def faces(n: int) -> tuple[np.ndarray, np.ndarray]:
        widths = rng.choice([40.0, 90.0, 300.0], size=n)
        # smaller faces sit further from the full-size training faces, familiar or not
        novelty = rng.normal(0.2, 0.03, n) + np.select([widths < 64, widths < 128], [0.1, 0.04])
        return novelty, widths

    familiarity = fit_familiarity(*faces(3000), flagged_share=0.05)
    small, middle, large = familiarity.thresholds
    assert small > middle > large
    novelty, widths = faces(6000)  # fresh faces of the same sources
    pairs = zip(novelty, widths, strict=True)
    flagged = np.array([not familiarity.familiar(value, width) for value, width in pairs])
    for width in (40.0, 90.0, 300.0):
        assert 0.03 < flagged[widths == width].mean() < 0.07
    assert familiarity.threshold(None) == large  # no face box (--no-face-detect): full size
    # one large, tightly clustered source cannot set the threshold for a small, diverse one
    common, rare = rng.normal(0.15, 0.01, 2000), rng.normal(0.25, 0.04, 200)
    novelty, widths = np.r_[common, rare], np.full(2200, 300.0)
    sources = ["common"] * 2000 + ["rare"] * 200
    pooled = fit_familiarity(novelty, widths)
    balanced = fit_familiarity(novelty, widths, sources)
    assert pooled.details["flagged_by_source"] == {}
    assert np.mean(rare > pooled.thresholds[2]) > 0.3  # pooled: the rare source is mostly flagged
    flagged = balanced.details["flagged_by_source"]
    assert flagged["rare"] <= 0.1 and (flagged["rare"] + flagged["common"]) / 2 <= 0.05
    # a band with too few faces to estimate its threshold takes that of all faces
    novelty = np.r_[rng.normal(0.2, 0.03, 500), 0.9]
    few = fit_familiarity(novelty, np.r_[np.full(500, 300.0), 40.0])
    assert few.details["faces_per_band"] == [1, 0, 500]
    assert few.thresholds[0] == few.thresholds[1] == pytest.approx(np.quantile(novelty, 0.95))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_unfamiliar_faces_get_probabilities_nearer_one_half():
    rng = np.random.default_rng(2)
    # familiar faces: the logit is honest; unfamiliar ones (an unseen source): confidently
    # wrong as often as right, as held-out generators and cameras are
    n_familiar, n_unfamiliar = 3000, 300
    logits = np.r_[rng.normal(0, 3, n_familiar), rng.choice([-5.0, 5.0], n_unfamiliar)]
    y = np.r_[rng.random(n_familiar) < 1 / (1 + np.exp(-logits[:n_familiar])),
              rng.random(n_unfamiliar) < 0.5].astype(int)  # fmt: skip
    novelty = np.r_[rng.normal(0.2, 0.02, n_familiar), rng.normal(0.4, 0.03, n_unfamiliar)]
    widths = np.full(len(y), 300.0)
    familiarity = fit_familiarity(novelty[:n_familiar], widths[:n_familiar], temper_slope=5.0)
    temperatures = familiarity.temperature(novelty, widths)
    threshold = familiarity.thresholds[-1]
    assert familiarity.temperature(threshold * TEMPER_START, 300.0) == 1.0
    assert familiarity.temperature(threshold, 300.0) == pytest.approx(1 + 5 * (1 - TEMPER_START))
    assert familiarity.temperature(np.nan, None) == 1.0  # not measured: left alone
    assert np.all(temperatures[n_familiar:] > 2.5)

    plain = fit_calibration(logits, y, max_fpr=0.05)
    tempered = fit_calibration(logits, y, max_fpr=0.05, face_temperatures=temperatures)
    tempered = tempered.with_familiarity(familiarity)
    p_plain = np.array([plain.probability(z) for z in logits])
    p_tempered = np.array(
        [tempered.probability(z, w, v) for z, w, v in zip(logits, widths, novelty, strict=True)]
    )
    unfamiliar = slice(n_familiar, None)
    assert np.all(np.abs(p_tempered[unfamiliar] - 0.5) < np.abs(p_plain[unfamiliar] - 0.5))
    assert log_loss(y[unfamiliar], p_tempered[unfamiliar]) < 0.8 * log_loss(
        y[unfamiliar], p_plain[unfamiliar]
    )
    assert roc_auc_score(y, p_tempered) > roc_auc_score(y, p_plain) + 0.01
    # untempered, one temperature softens every answer for the unfamiliar faces' sake
    assert tempered.temperature < plain.temperature
    familiar = slice(None, n_familiar)
    assert log_loss(y[familiar], p_tempered[familiar]) < log_loss(y[familiar], p_plain[familiar])
    # a bundle calibrated before tempering existed reads as untempered
    stored = tempered.to_dict()["familiarity"]
    old = {key: value for key, value in stored.items() if not key.startswith("temper_")}
    untempered = replace(tempered, familiarity=Familiarity.from_dict(old))
    assert untempered.probability(4.0, 300.0, 0.5) == untempered.probability(4.0)
    assert Calibration.from_dict(tempered.to_dict()).probability(4.0, 300.0, 0.5) == (
        tempered.probability(4.0, 300.0, 0.5)
    )


def test_the_shipped_model_gives_unit_embeddings_on_onnx_as_torch_does():
    detector = Detector.load()
    assert detector.runtime == "onnxruntime" and detector.bundle.reference is not None
    images = [astronaut(), *gan_faces(4, seed=5, size=128)]
    crops = [crop for image in images for crop in detector.prepare(image).crops]
    logits, embeddings = detector.run_model(crops)
    assert embeddings.shape == (len(crops), detector.bundle.reference.embeddings.shape[1])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    batch = torch.from_numpy(detector.bundle.normalise_array(np.stack(crops).transpose(0, 3, 1, 2)))
    with torch.no_grad():
        torch_logits, torch_embeddings = detector.model.logit_and_embedding(batch)
    np.testing.assert_allclose(logits, torch_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(embeddings, torch_embeddings.numpy(), atol=1e-4)
    assert np.std(embeddings @ embeddings.T) > 0.01  # different faces, different directions


def test_a_reference_of_other_weights_is_ignored(untrained_bundle, tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(untrained_bundle, folder)
    bundle = load_bundle(folder)
    assert has_embedding(bundle.model)
    detector = Detector(bundle)
    faces = [astronaut(), *gan_faces(8, seed=7, size=128)]
    bundle.reference = Reference.from_embeddings(reference_embeddings(detector, faces))
    bundle.save_reference(folder)
    record = Detector.load(folder).predict(astronaut()).to_dict()
    assert 0.0 <= record["faces"][0]["novelty"] < 1.0
    assert record["familiar"] is None  # no thresholds fitted yet: novelty only
    state = {key: value.clone() for key, value in bundle.model.state_dict().items()}
    state["features.0.0.weight"] *= 1.5
    save_file(state, str(folder / "model.safetensors"))
    changed = Detector.load(folder)
    assert changed.bundle.reference is None
    assert changed.predict(astronaut()).faces[0].novelty is None


def test_small_faces_are_measured_against_small_reference_faces_too():
    detector = Detector.load()
    photo = astronaut()
    training = [photo.crop((30 + 8 * i, 0, 350 + 8 * i, 320)) for i in range(8)]
    training += gan_faces(8, seed=40, size=256)
    thumbnail = thumbnail_copy(REFERENCE_THUMBNAIL, 85)
    full_size = Reference.from_embeddings(reference_embeddings(detector, training), k=4)
    both = Reference.from_embeddings(
        reference_embeddings(detector, training, thumbnail=thumbnail), k=4
    )
    assert len(both.embeddings) == len(full_size.embeddings) == len(training)
    # other crops of the same photo, as small copies: unlike every full-size crop of it
    unseen = [photo.crop((34 + 8 * i, 4, 354 + 8 * i, 324)) for i in range(4)]
    crops = [detector.prepare(thumbnail(image)).crops[0] for image in unseen]
    small = detector.run_model(crops)[1]
    assert np.all(both.novelty(small) < full_size.novelty(small) - 0.1)
    # at full size they stay about as near (half the reference is still full size)
    crops = [detector.prepare(image).crops[0] for image in unseen]
    large = detector.run_model(crops)[1]
    assert np.all(both.novelty(large) < full_size.novelty(large) + 0.01)
