"""Bundles run on ONNX Runtime when they carry an export of their own weights, else on torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file

from conftest import astronaut, gan_faces, save_untrained_bundle
from facetell.bundle import load_bundle
from facetell.detector import Detector


def real_crops(detector: Detector) -> list[np.ndarray]:
    images = [astronaut(), *gan_faces(6, seed=3, size=128)]
    return [crop for image in images for crop in detector.prepare(image).crops]


def torch_logits(detector: Detector, crops: list[np.ndarray]) -> np.ndarray:
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
    with torch.no_grad():
        return detector.model(detector.bundle.normalise(batch)).numpy()


def test_onnx_export_answers_like_the_torch_model(untrained_bundle):
    assert (untrained_bundle / "model.onnx").is_file()  # every save exports
    detector = Detector.load()  # the shipped model: trained weights, so logits differ by image
    assert detector.runtime == "onnxruntime"
    crops = real_crops(detector)
    assert len(crops) >= 7
    onnx = detector.logits(crops)
    reference = torch_logits(detector, crops)
    assert onnx.shape == (len(crops),)
    assert np.std(reference) > 1e-3  # distinct inputs give distinct logits
    np.testing.assert_allclose(onnx, reference, atol=1e-4, rtol=1e-4)
    single = detector.logits(crops[:1])  # dynamic batch axis: batch 1 works as well
    np.testing.assert_allclose(single, reference[:1], atol=1e-4)


def test_an_export_of_other_weights_is_ignored(untrained_bundle, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(untrained_bundle, changed)
    bundle = load_bundle(untrained_bundle)
    state = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    state["head.1.bias"] += 5.0
    save_file(state, str(changed / "model.safetensors"))  # model.onnx left from the old weights
    detector = Detector.load(changed)
    assert detector.runtime == "torch"
    crops = real_crops(detector)
    original = Detector.load(untrained_bundle).logits(crops)
    np.testing.assert_allclose(detector.logits(crops), original + 5.0, atol=1e-3)


def test_zipped_bundle_runs_on_onnx_too(untrained_bundle, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in untrained_bundle.iterdir():
            zipped.write(file, f"untrained/{file.name}")
    zipped_detector = Detector.load(archive)
    assert zipped_detector.runtime == "onnxruntime"
    crops = real_crops(zipped_detector)
    np.testing.assert_allclose(
        zipped_detector.logits(crops), Detector.load(untrained_bundle).logits(crops), atol=1e-6
    )


def test_models_without_an_onnx_operator_run_on_torch(tmp_path):
    folder = save_untrained_bundle(tmp_path / "spectrum", "spectrum", 64)
    assert not (folder / "model.onnx").exists()
    detector = Detector.load(folder)
    assert detector.runtime == "torch"
    assert np.isfinite(detector.logits(real_crops(detector))).all()


def test_predicting_with_the_shipped_model_never_imports_torch():
    code = (
        "import sys; from skimage import data; from facetell.detector import Detector; "
        "result = Detector.load().predict(data.astronaut()); "
        "print(result.status, len(result.faces), 'torch' in sys.modules, "
        "'torchvision' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert output == ["ok", "1", "False", "False"]


def test_a_threshold_variant_shares_the_loaded_model(untrained_bundle):
    detector = Detector.load(untrained_bundle)
    strict, lenient = detector.with_threshold(1.0), detector.with_threshold(0.0)
    assert strict.session is detector.session and lenient.face_detector is detector.face_detector
    strict_result, lenient_result = strict.predict(astronaut()), lenient.predict(astronaut())
    assert strict_result.p_ai == lenient_result.p_ai
    assert (strict_result.label, lenient_result.label) == ("real", "ai")
    assert detector.threshold is None
