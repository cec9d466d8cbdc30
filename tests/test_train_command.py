"""`facetell train` as a user runs it: run folders, Ctrl-C, notes and refusals before any work."""

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
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import (
    PLANTED_SIZE,
    config_for,
    info_rows,
    run_cli,
    run_cli_telling_imports,
    smooth_photo,
    start_cli,
)
from facetell.bundle import BundleError, load_bundle
from facetell.errors import FacetellError
from facetell.inference import Detector
from facetell.models import ModelEntry, create_model, list_models
from facetell.train.config import load_config, resolve_recipe
from facetell.train.crops import (
    make_splits,
    prepare_data,
)
from facetell.train.trainer import train


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


def test_train_warns_when_file_facts_alone_separate_the_classes(tmp_path):
    """Real photos as JPEG and fakes as small PNGs: the audit's shortcut score flagged such data,
    but train, where a model learns the shortcut, said nothing."""
    fast = ["model=spectrum", "model_kwargs={}",
            f"crop={{kind: center_square, size: {PLANTED_SIZE}}}",
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
    fast = ["model=spectrum", "model_kwargs={}",
            f"crop={{kind: center_square, size: {PLANTED_SIZE}}}",
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
               "--set", f"crop={{kind: center_square, size: {PLANTED_SIZE}}}",
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
