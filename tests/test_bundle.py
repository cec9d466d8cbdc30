"""Bundles run on ONNX Runtime when they carry an export of their own weights, else on torch."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from conftest import astronaut, cat, gan_faces, info_rows, run_cli, save_untrained_bundle
from facetell.bundle import Bundle, BundleError, ensemble_bundle, load_bundle
from facetell.calibrate import Calibration
from facetell.faces import CropRecipe
from facetell.inference import Detector
from facetell.models import create_model


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


def test_info_states_what_a_bundles_own_files_hold(untrained_bundle, tmp_path):
    """`facetell info` reads the shipped model's threshold, band, training counts, measured
    numbers and card from its files; a bundle never calibrated says so and what to run; a .zip
    reads as its folder does; a folder that is no bundle is one line."""
    shipped = Path(__file__).parents[1] / "models" / "default"
    calibration = json.loads((shipped / "calibration.json").read_text())
    measured = json.loads((shipped / "metrics.json").read_text())["metrics"]
    remembered = load_bundle(shipped).training_images
    rows = info_rows()
    assert (
        rows["architecture"] == "ensemble of efficientnet_lite0 + mobilenet_v2, run by onnxruntime"
    )
    low, high = calibration["uncertain_band"]
    assert f"AI at P(ai) ≥ {calibration['threshold']:.4f}" in rows["calibration"]
    assert f"uncertain {low:.3f}-{high:.3f}" in rows["calibration"]
    assert rows["fitted on"].endswith("of the val split of models/default-split.json")
    assert rows["trained on"].startswith(
        f"{len(remembered.train)} training and {len(remembered.val)} validation images"
    )
    assert f"AUROC {measured['auroc']:.4f}" in rows["measured"]
    assert rows["measured"].endswith(f"on {measured['n']} images, by facetell evaluate")
    assert rows["model card"] == str(shipped.resolve() / "MODEL_CARD.md")
    assert {"small faces", "familiarity"} <= rows.keys()
    shared = tmp_path / "shared.zip"  # a bundle as it is passed on: its card is inside
    with zipfile.ZipFile(shared, "w") as zipped:
        for file in shipped.iterdir():
            zipped.write(file, f"default/{file.name}")
    assert info_rows(shared)["model card"] == f"default/MODEL_CARD.md inside {shared}"

    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in untrained_bundle.iterdir():
            zipped.write(file, f"untrained/{file.name}")
    for given in (untrained_bundle, archive):
        rows = info_rows(given)
        assert rows["architecture"] == "mobilenet_v2, run by onnxruntime"
        assert rows["calibration"] == "none: P(ai) is the raw sigmoid; run facetell calibrate"
        assert not {"trained on", "model card", "familiarity"} & rows.keys()
    wrong = run_cli("info", str(tmp_path))
    assert wrong.returncode == 2 and len(wrong.stderr.decode().strip().splitlines()) == 1
    assert "not a model bundle" in wrong.stderr.decode()


def test_threads_asking_at_once_for_the_torch_model_get_one_module():
    """Server requests that each want the first heat map: each used to build its own module."""
    bundle = load_bundle(Path(__file__).parents[1] / "models" / "default")
    start = threading.Barrier(6)
    modules = []

    def ask() -> None:
        start.wait()
        modules.append(bundle.model)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(modules) == 6 and all(module is bundle.model for module in modules)


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
    """`import facetell` alone loads no numerical library (the CLI's --help stays instant);
    `from facetell import Detector` brings in the inference stack, and predicting never torch."""
    code = (
        "import sys; import facetell; bare = 'numpy' in sys.modules or 'onnxruntime' in "
        "sys.modules; from skimage import data; from facetell import Detector; "
        "result = Detector.load().predict(data.astronaut()); "
        "print(bare, result.status, len(result.faces), 'torch' in sys.modules, "
        "'torchvision' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert output == ["False", "ok", "1", "False", "False"]


def test_onnx_sessions_sleep_between_runs(untrained_bundle):
    """Detector and classifier alternate with Pillow crops on two cores: an ONNX Runtime worker
    left spinning after a run slows the next stage (docs/benchmarks.md, session 10)."""
    detector = Detector.load(untrained_bundle)
    sessions = (detector.session, detector.face_detector._session)
    for session in sessions:
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert detector.predict(astronaut()).status == "ok"


def test_a_threshold_variant_shares_the_loaded_model(untrained_bundle):
    detector = Detector.load(untrained_bundle)
    strict, lenient = detector.with_threshold(1.0), detector.with_threshold(0.0)
    assert strict.session is detector.session and lenient.face_detector is detector.face_detector
    strict_result, lenient_result = strict.predict(astronaut()), lenient.predict(astronaut())
    assert strict_result.p_ai == lenient_result.p_ai
    assert (strict_result.label, lenient_result.label) == ("uncertain", "ai")  # P(ai) 0.51
    assert detector.threshold is None
    calibrated = Calibration.from_dict(load_bundle(untrained_bundle).calibration).threshold
    assert repr(detector) == (  # what a notebook shows: the model and the cut it answers with
        f"Detector('{detector.model_name}', threshold={calibrated:.4g} (calibrated), "
        "detect_faces=True, max_faces=64, runtime='onnxruntime')"
    )
    assert repr(strict).startswith(f"Detector('{detector.model_name}', threshold=1 (given), ")


def test_a_calibration_the_disk_cuts_short_leaves_the_earlier_one_whole(untrained_bundle, tmp_path):
    """`facetell calibrate` rewrites calibration.json in a bundle in place (checkpoints alike):
    a full disk (here a 4 KB file-size limit) or a kill mid-write left half a file, and the
    bundle could not load."""
    bundle = shutil.copytree(untrained_bundle, tmp_path / "bundle")
    calibrated = load_bundle(bundle)
    calibrated.calibration = Calibration(threshold=0.7).to_dict()
    calibrated.save_calibration(bundle)
    earlier = (bundle / "calibration.json").read_bytes()
    script = (
        "import resource, signal, sys\n"
        "from facetell.bundle import load_bundle\n"
        "bundle = load_bundle(sys.argv[1])\n"
        "bundle.calibration = {**bundle.calibration, 'fitted_on': 'x' * 100_000}\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    bundle.save_calibration(bundle.path)\n"
        "except OSError as error:\n"
        "    print(error.filename, error.strerror)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(bundle)], capture_output=True, text=True, check=True
    )
    assert (bundle / "calibration.json").read_bytes() == earlier
    assert done.stdout == f"{bundle / 'calibration.json'} File too large\n"
    assert not list(bundle.glob("*.part"))
    assert Detector.load(bundle).predict(astronaut()).status == "ok"


def ensemble_of_two_crops(tmp_path) -> tuple[Path, Path, Path]:
    """A mirrored-margin member and a tight inside-crop member (ImageNet features, seeded random
    heads, so logits differ by face), ensembled with float16 weights."""
    folders = []
    for seed, crop in enumerate(
        [
            CropRecipe(kind="face", size=96),
            CropRecipe(kind="face", size=96, margin=0.05, border="inside"),
        ]
    ):
        torch.manual_seed(seed)
        member = Bundle(
            module=create_model("mobilenet_v2", pretrained=True),
            architecture="mobilenet_v2",
            model_kwargs={},
            crop=crop,
            name=f"test-member-{seed}",
        )
        folders.append(member.save(tmp_path / f"member-{seed}"))
    members = [load_bundle(folder) for folder in folders]
    combined = ensemble_bundle(members, [1.0, 3.0], weights_dtype="float16")
    return folders[0], folders[1], combined.save(tmp_path / "ensemble")


def test_an_ensemble_replaces_a_bundle_only_when_asked_and_never_keeps_its_calibration(
    tmp_path,
):
    """`facetell ensemble a b --out x` into x of an earlier run: its calibration.json stayed and
    calibrated the new weights with another model's temperature and threshold."""
    wide, tight, _ = ensemble_of_two_crops(tmp_path)
    calibrated = tmp_path / "calibrated"
    shutil.copytree(wide, calibrated)
    (calibrated / "calibration.json").write_text(json.dumps({"temperature": 3.0, "threshold": 0.9}))
    (calibrated / "MODEL_CARD.md").write_text("# the earlier run's model\n")
    command = [sys.executable, "-m", "facetell", "ensemble", str(wide), str(tight), "--out"]
    refused = subprocess.run([*command, str(calibrated)], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: {calibrated}: holds a model bundle already; --overwrite replaces it, or give "
        "another --out"
    )
    assert load_bundle(calibrated).architecture == "mobilenet_v2"  # untouched
    replaced = subprocess.run(
        [*command, str(calibrated), "--overwrite"], capture_output=True, text=True
    )
    assert replaced.returncode == 0, replaced.stderr
    bundle = load_bundle(calibrated)
    assert bundle.architecture == "ensemble" and bundle.calibration is None
    assert not (calibrated / "MODEL_CARD.md").exists()  # its card vouched for another model
    assert not Detector.load(calibrated).calibration.fitted


def test_ensemble_members_read_their_own_crops_from_half_size_files(tmp_path):
    wide, tight, folder = ensemble_of_two_crops(tmp_path)
    detector = Detector.load(folder)
    assert detector.runtime == "onnxruntime"
    wide_detector, tight_detector = Detector.load(wide), Detector.load(tight)
    assert detector.recipes == (wide_detector.recipes[0], tight_detector.recipes[0])
    crops = real_crops(detector)
    assert crops[0].shape == (96, 96, 6)
    wide_crops, tight_crops = real_crops(wide_detector), real_crops(tight_detector)
    np.testing.assert_array_equal(np.stack(crops)[..., :3], np.stack(wide_crops))
    np.testing.assert_array_equal(np.stack(crops)[..., 3:], np.stack(tight_crops))
    expected = 0.25 * wide_detector.logits(wide_crops) + 0.75 * tight_detector.logits(tight_crops)
    onnx = detector.logits(crops)
    np.testing.assert_allclose(onnx, torch_logits(detector, crops), atol=1e-4, rtol=1e-4)
    spread = np.ptp(expected)
    assert spread > 1e-3  # distinct faces, distinct logits: the comparison below means something
    assert np.abs(onnx - expected).max() < 0.01 * spread  # float16 storage moves logits little
    for name in ("model.safetensors", "model.onnx"):
        members = (wide / name).stat().st_size + (tight / name).stat().st_size
        assert (folder / name).stat().st_size < 0.55 * members


def test_ensemble_heat_map_places_each_members_map_in_its_own_crop(tmp_path):
    """Outside the tight member's square the overlay is the wide member's alone; inside, both
    maps are averaged; beyond the wide square the photo is untouched."""
    from facetell.explain import explain
    from facetell.faces import crop_square

    wide, _, folder = ensemble_of_two_crops(tmp_path)
    detector = Detector.load(folder)
    photo = astronaut()
    overlay = np.asarray(explain(detector, photo).overlay, np.int16)
    wide_only = np.asarray(explain(Detector.load(wide), photo).overlay, np.int16)
    [face] = detector.prepare(photo).faces
    width, height = photo.size

    def square(recipe: CropRecipe, grow: float) -> np.ndarray:
        """The photo pixels a crop came from (a square turned by its levelling angle), widened
        or narrowed by `grow` px: the map's edge pixels are interpolated."""
        left, top, side, angle = crop_square(face, recipe, width, height)
        cx, cy, half = left + side / 2, top + side / 2, side / 2 + grow
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
        polygon = [(cx + dx * cos - dy * sin, cy + dx * sin + dy * cos) for dx, dy in corners]
        mask = Image.new("1", (width, height))
        ImageDraw.Draw(mask).polygon(polygon, fill=1)
        return np.asarray(mask)

    wide_recipe, tight_recipe = detector.recipes
    wide_square, tight_square = square(wide_recipe, -2), square(tight_recipe, -2)
    beyond_wide, beyond_tight = ~square(wide_recipe, 2), ~square(tight_recipe, 2)
    x, y, w, h = (round(v) for v in face.box)
    drawn = np.ones((height, width), bool)  # the box outline, the verdict above it, the caption
    drawn[y + 4 : y + h - 4, x + 4 : x + w - 4] = False
    drawn[: max(y - 14, 0)] = drawn[y + h + 4 :] = False
    drawn[:, : max(x - 4, 0)] = drawn[:, x + w + 4 :] = False
    drawn[max(y - 14, 0) : y, x : x + 80] = True
    drawn[height - 16 :] = True
    changed = np.any(overlay != np.asarray(photo, np.int16), axis=2)
    assert not changed[beyond_wide & ~drawn].any()
    assert changed[wide_square & ~drawn].mean() > 0.9
    differs = np.abs(overlay - wide_only).max(axis=2) > 2
    assert differs[wide_square & beyond_tight & ~drawn].mean() < 0.01
    assert differs[tight_square & ~drawn].mean() > 0.5


def test_an_ensemble_given_as_a_member_joins_as_its_own_members(tmp_path):
    """`facetell ensemble default mine` was refused ("itself multi-input; ensemble its
    members"), and the shipped model's members are packed inside it, out of reach."""
    mine = save_untrained_bundle(tmp_path / "mine", "mobilenet_v2", 160)
    run = run_cli("ensemble", "default", str(mine), "--weight", "3", "--weight", "1",
                  "-o", str(tmp_path / "joined"))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.decode().strip() == (
        f"ensemble of 3 models from 2 bundles written to {tmp_path / 'joined'}"
    )
    shipped, own, joined = Detector.load(), Detector.load(mine), Detector.load(tmp_path / "joined")
    assert joined.recipes == shipped.recipes  # mine reads the wide crop, as its first member
    for photo in (astronaut(), gan_faces(1, seed=5, size=160)[0]):
        [face], [own_face], [joined_face] = (d.predict(photo).faces for d in (shipped, own, joined))
        # the shipped model's logit over its temperature, as any member of an ensemble counts
        expected = 0.75 * face.logit / shipped.calibration.temperature + 0.25 * own_face.logit
        assert joined_face.logit == pytest.approx(expected, abs=2e-3)
        assert abs(face.logit / shipped.calibration.temperature - own_face.logit) > 0.1


def test_ensemble_members_need_crops_of_one_size(tmp_path):
    small = load_bundle(save_untrained_bundle(tmp_path / "small", "mobilenet_v2", 64))
    large = load_bundle(save_untrained_bundle(tmp_path / "large", "mobilenet_v2", 96))
    with pytest.raises(BundleError) as refused:
        ensemble_bundle([small, large])
    assert str(refused.value) == (  # which reads what, and the way to make them fit
        f"{tmp_path / 'large'} reads 96-px crops and {tmp_path / 'small'} 64-px ones; an "
        "ensemble feeds its members crops of one size: retrain one with --set crop.size=64"
    )


def test_ensemble_weights_must_make_a_weighted_mean(untrained_bundle):
    """--weight 1 --weight -1 (or 0 and 0) wrote a bundle whose every P(ai) was NaN, read "real"."""
    member = load_bundle(untrained_bundle)
    wider = dataclasses.replace(member, crop=member.crop.model_copy(update={"margin": 0.4}))
    for weights in ([1.0, -1.0], [0.0, 0.0], [math.nan, 1.0]):
        with pytest.raises(BundleError, match="none may be negative or missing and one must be"):
            ensemble_bundle([member, wider], weights)
    assert ensemble_bundle([member, wider], [0.0, 2.0]).model_kwargs["members"][1]["weight"] == 2


def test_an_ensemble_name_that_is_no_folder_name_is_refused(untrained_bundle, tmp_path):
    """--name '' wrote a bundle whose every result read "@0.1.0" (in CSV, "'@0.1.0")."""
    out = tmp_path / "out"
    for name, problem in {
        "": "a model name cannot be empty (it is in every result)",
        "a/b": "a model name is one folder name: no / or \\, not . or .., no control characters",
    }.items():
        run = run_cli("ensemble", str(untrained_bundle), str(untrained_bundle), "-o", str(out),
                      "--name", name)  # fmt: skip
        assert (run.returncode, run.stderr.decode()) == (2, f"error: --name {name!r}: {problem}\n")
    assert not out.exists()


def test_one_model_named_twice_is_refused_but_one_model_on_two_crops_is_not(
    untrained_bundle, tmp_path
):
    """`facetell ensemble a a` wrote one model under another name, its weights counted twice;
    reading two crops of a face, one model is two voices. (One member alone stays allowed:
    `make model` with one recipe ships it renamed and in float16 that way.)"""
    twin = shutil.copytree(untrained_bundle, tmp_path / "copy")
    done = run_cli("ensemble", str(untrained_bundle), str(twin), "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        f"error: {twin} and {untrained_bundle} are the same model reading the same crop; name "
        "each once (--weight to count one more)"
    )
    assert not (tmp_path / "out" / "config.json").exists()
    member = load_bundle(untrained_bundle)
    wider = dataclasses.replace(member, crop=member.crop.model_copy(update={"margin": 0.4}))
    assert ensemble_bundle([member, wider]).extra_crops == (wider.crop,)


def test_a_model_that_answers_nan_gives_an_error_record_not_a_real_verdict(tmp_path):
    """A bundle damaged into NaN weights: its faces' comparisons all fail, and NaN read as
    "real" (below every threshold); JSON lines would then hold NaN, which is not JSON."""
    bundle = load_bundle(save_untrained_bundle(tmp_path / "sound", "mobilenet_v2", 96))
    with torch.no_grad():
        next(iter(bundle.model.parameters())).fill_(math.nan)
    broken = bundle.save(tmp_path / "broken")
    photo, cat_photo = tmp_path / "astronaut.jpg", tmp_path / "cat.jpg"
    astronaut().save(photo)
    cat().save(cat_photo)
    run = subprocess.run(
        [sys.executable, "-m", "facetell", "predict", str(photo), str(cat_photo), "--model",
         str(broken), "-f", "jsonl"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    first, second = (
        json.loads(line, parse_constant=pytest.fail) for line in run.stdout.split("\n")[:2]
    )
    assert (first["status"], first["error_kind"], first["p_ai"]) == ("error", "model_output", None)
    assert first["error"] == (
        f"{photo}: the model gave NaN or infinity for a face, not a score (its bundle is broken: "
        "re-create it, or use the shipped model)"
    )
    assert second["status"] == "no_face"  # the photo with no face is still answered


def test_a_built_wheel_carries_the_default_model(tmp_path):
    """`pip install .` (not editable) has no repository around it: the wheel must bring
    models/default, and `facetell predict` from anywhere must judge with it; `default` names
    it, and calibrate leaves it alone; its training recipes come along for `facetell train`."""
    repo = Path(__file__).resolve().parents[1]
    pip = [sys.executable, "-m", "pip", "--quiet"]
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    # built from a copy: setuptools leaves build/ and egg-info in the tree it builds from
    source = shutil.copytree(repo, tmp_path / "source", ignore=shutil.ignore_patterns(
        ".*", "build", "runs", "*artifacts", "*.egg-info", "__pycache__"))  # fmt: skip
    build = ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run([*pip, *build], check=True, capture_output=True)
    [wheel] = wheels.glob("facetell-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {Path(name).name for name in archive.namelist() if "/_bundle/" in name}
    shipped = {p.name for p in (repo / "models" / "default").iterdir() if p.is_file()}
    assert packed == shipped
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    astronaut().save(tmp_path / "astronaut.jpg", quality=95)
    installed = {"cwd": tmp_path, "capture_output": True, "check": True}
    installed["env"] = {**os.environ, "PYTHONPATH": str(target), "FACETELL_MODEL": ""}
    where = "import facetell.inference as d; print(d.default_bundle_path())"
    bundle = subprocess.run([sys.executable, "-c", where], **installed).stdout.decode().strip()
    assert Path(bundle) == target / "facetell" / "_bundle"
    recipes = (
        "from facetell.train.config import shipped_recipes; print(*shipped_recipes().values())"
    )
    packed_recipes = subprocess.run([sys.executable, "-c", recipes], **installed).stdout.split()
    assert [Path(path.decode()) for path in packed_recipes] == [
        target / "facetell" / "_recipes" / path.name
        for path in sorted((repo / "configs").glob("*.yaml"))
    ]  # `facetell train` finds the shipped recipes without the repository
    predict = [sys.executable, "-m", "facetell", "predict", "astronaut.jpg", "--format", "jsonl"]
    record = json.loads(subprocess.run(predict, **installed).stdout)
    in_repo = Detector.load().predict(str(tmp_path / "astronaut.jpg"))
    assert record["model"] == in_repo.model
    assert record["p_ai"] == pytest.approx(in_repo.p_ai, abs=1e-4)  # JSON keeps 4 digits
    named = json.loads(subprocess.run([*predict, "--model", "default"], **installed).stdout)
    assert named == {**record, "ms": named["ms"], "speed": named["speed"]}  # models/default: none
    in_place = [sys.executable, "-m", "facetell", "calibrate", "default", "photos"]
    refused = subprocess.run(in_place, **{**installed, "check": False})
    assert refused.returncode == 2
    assert refused.stderr.decode().strip() == (
        "error: default: the shipped model, which predict uses without --model, is not "
        "calibrated in place; --out my-model calibrates a copy"
    )


def test_calibrate_out_naming_the_shipped_models_folder_is_refused_as_in_place(tmp_path):
    """`calibrate default photos --out models/default` rewrote the shipped model's calibration,
    which every predict without --model answers with, as if --out were a copy."""
    from facetell.bundle import REPO_DEFAULT_BUNDLE

    before = (REPO_DEFAULT_BUNDLE / "calibration.json").read_bytes()
    run = run_cli("calibrate", "default", str(tmp_path), "--out", str(REPO_DEFAULT_BUNDLE))
    assert (run.returncode, run.stderr.decode()) == (
        2,
        "error: default: the shipped model, which predict uses without --model, is not "
        "calibrated in place; --out my-model calibrates a copy\n",
    )
    assert (REPO_DEFAULT_BUNDLE / "calibration.json").read_bytes() == before


def test_the_shipped_bundle_fits_its_25_mb_budget():
    from facetell.bundle import REPO_DEFAULT_BUNDLE

    files = list(REPO_DEFAULT_BUNDLE.iterdir())
    assert {"model.safetensors", "model.onnx", "reference.safetensors"} <= {f.name for f in files}
    assert sum(file.stat().st_size for file in files) <= 25_000_000


def test_the_shipped_bundle_remembers_the_images_it_was_trained_and_validated_on(shared_faces):
    from facetell.bundle import REPO_DEFAULT_BUNDLE, TrainingImages

    split = json.loads((REPO_DEFAULT_BUNDLE.parent / "default-split.json").read_text())
    rows = split["rows"]
    remembered = load_bundle(REPO_DEFAULT_BUNDLE).training_images
    assert len(remembered.train) == sum(row["split"] == "train" for row in rows)
    assert len(remembered.val) == sum(row["split"] == "val" for row in rows)
    root = REPO_DEFAULT_BUNDLE.parents[1]  # the split's paths are relative to the checkout
    for row in rows[::97]:
        fingerprint = TrainingImages.fingerprint((root / row["path"]).read_bytes())
        assert remembered.split_of(fingerprint) == (
            None if row["split"] == "test" else row["split"]
        )


@pytest.mark.parametrize(
    "damaged_file",
    [
        "config.json",
        "calibration.json",
        "model.onnx",
        "model.safetensors",
        "reference.safetensors",
        "training_images.safetensors",
    ],
)
def test_a_damaged_file_of_the_shipped_bundle_fails_the_load_in_one_line(tmp_path, damaged_file):
    """A truncated download or a bad merge: the load names the file instead of a traceback,
    and never reaches the first image."""
    from facetell.inference import default_bundle_path

    folder = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), folder)
    target = folder / damaged_file
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(BundleError) as caught:
        Detector.load(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder}: {damaged_file} is damaged (") and "\n" not in message
    assert message.endswith(
        "restore the bundle (for the shipped one: git checkout -- models/default) or rebuild it"
    )


def test_a_file_named_zip_that_is_not_one_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "model.zip"
    fake.write_text("not a zip")
    with pytest.raises(BundleError, match=r"model\.zip: not a readable zip archive"):
        Detector.load(fake)


def test_a_config_missing_an_entry_is_named_in_one_line(tmp_path):
    from facetell.inference import default_bundle_path

    folder = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), folder)
    config = json.loads((folder / "config.json").read_text())
    del config["input"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"config\.json is damaged \(no 'input' entry\); restore"):
        Detector.load(folder)


def test_a_folder_of_bundles_names_the_bundles_inside(untrained_bundle, tmp_path):
    """`--model models` (the folder the shipped bundle sits in) read "not a model bundle", with
    the bundle one level down left for the user to find."""
    shutil.copytree(untrained_bundle, tmp_path / "models" / "mine")
    refused = run_cli("predict", "x.jpg", "--model", str(tmp_path / "models"))
    assert (refused.returncode, refused.stderr.decode().strip()) == (
        2,
        f"error: {tmp_path / 'models'}: a folder of 1 model bundle(s), not one; give "
        f"{tmp_path / 'models' / 'mine'}",
    )
    shutil.copytree(untrained_bundle, tmp_path / "models" / "also")
    with pytest.raises(BundleError) as two:
        Detector.load(tmp_path / "models")
    assert str(two.value) == (
        f"{tmp_path / 'models'}: a folder of 2 model bundle(s), not one; give one, such as "
        f"{tmp_path / 'models' / 'also'}"
    )
