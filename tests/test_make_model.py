"""`make model` end to end on a tiny dataset: train, calibrate, evaluate, ship, and set the rebuilt
model beside the one it replaces."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import astronaut, gan_faces
from facetell.data import SplitFile
from facetell.inference import Detector

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING = [
    "phases=[{kind: head, epochs: 1, lr: 0.01, views: 1}]",
    "data.fractions=[0.5, 0.25, 0.25]",
    "crop.size=64",
    "batch_size=16",
    "workers=0",
]


@pytest.fixture(scope="module")
def tiny_faces(tmp_path_factory) -> Path:
    """30 framings of the astronaut (real) and 30 DCGAN faces made on the spot (AI)."""
    root = tmp_path_factory.mktemp("tiny-faces")
    (root / "real" / "astronaut").mkdir(parents=True)
    (root / "ai" / "dcgan").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(30):
        x, y = rng.integers(0, 60, size=2)
        side = int(rng.integers(380, 450))
        framing = astronaut().crop((x, y, x + side, y + side)).resize((256, 256))
        framing.save(root / "real" / "astronaut" / f"{i}.jpg", quality=int(rng.integers(70, 95)))
    for i, face in enumerate(gan_faces(30, seed=1, size=256)):
        face.save(root / "ai" / "dcgan" / f"{i}.jpg", quality=90)
    return root


def make_model(data: Path, runs: Path, target: Path, *extra: str) -> str:
    overrides = [arg for value in TINY_TRAINING for arg in ("--set", value)]
    command = [sys.executable, "scripts/make_model.py", "--data", str(data), "--runs", str(runs)]
    command += ["--target", str(target), "--member", "tiny=configs/default-lite0.yaml"]
    command += ["--robustness-limit", "0", *overrides, *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_make_model_ships_a_working_bundle_and_compares_it_with_the_one_it_replaces(
    tiny_faces, tmp_path
):
    runs, target = tmp_path / "runs", tmp_path / "models" / "default"
    first = make_model(tiny_faces, runs, target)
    assert "replaces" not in first  # nothing was there to compare with
    metrics = json.loads((target / "metrics.json").read_text())
    shipped_split = SplitFile.load(tmp_path / "models" / "default-split.json")
    assert metrics["metrics"]["n"] == len(shipped_split.samples("test"))
    (target / "MODEL_CARD.md").write_text("# the card a person wrote\n")
    detector = Detector.load(target)
    real, fake = detector.predict(astronaut()), detector.predict(gan_faces(1, seed=7, size=256)[0])
    assert real.status == fake.status == "ok" and real.calibrated
    assert fake.p_ai > real.p_ai
    remembered = detector.bundle.training_images  # so evaluate can tell its own images apart
    assert len(remembered.train) == len(shipped_split.samples("train"))
    assert len(remembered.val) == len(shipped_split.samples("val"))

    second = make_model(tiny_faces, runs, target, "--skip-train")
    line = next(line for line in second.splitlines() if "against the model it replaces" in line)
    test_images = metrics["metrics"]["n"]
    assert f"on {test_images} test images: AUROC +0.0000" in line  # the same runs, rebuilt
    assert (target / "MODEL_CARD.md").read_text() == "# the card a person wrote\n"
    assert isinstance(json.loads((target / "metrics.json").read_text()), dict)


def test_a_model_trained_on_another_split_is_not_compared(tiny_faces, tmp_path):
    """Its test numbers could include images it trained on."""
    spec = importlib.util.spec_from_file_location("make_model", ROOT / "scripts" / "make_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    target = tmp_path / "models" / "default"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    rows = [
        {"path": str(path), "label": path.parts[-3], "source": path.parts[-2], "group": i,
         "split": ("train", "val", "test")[i % 3]}
        for i, path in enumerate(sorted(tiny_faces.rglob("*.jpg")))
    ]  # fmt: skip
    new_split, old_split = tmp_path / "split.json", tmp_path / "models" / "default-split.json"
    SplitFile("stratified", 0, {}, rows).save(new_split)
    moved_root = [{**row, "path": "elsewhere/" + Path(row["path"]).name} for row in rows]
    SplitFile("stratified", 0, {}, moved_root).save(old_split)
    assert script.comparable_previous(target, old_split, new_split) == target  # same split

    rows[2] = {**rows[2], "split": "train"}  # the old model trained on one of these test images
    SplitFile("stratified", 0, {}, rows).save(old_split)
    assert script.comparable_previous(target, old_split, new_split) is None
