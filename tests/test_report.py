"""`facetell calibrate` and `facetell evaluate` end to end, and the report in a real browser."""

from __future__ import annotations

import base64
import csv
import datetime
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from sklearn.metrics import roc_auc_score

from conftest import (
    astronaut,
    cat,
    computed_rgb,
    encode,
    gan_faces,
    info_rows,
    launch_chromium,
    run_cli_telling_imports,
    save_untrained_bundle,
    start_cli,
)
from facetell.calibrate import Calibration
from facetell.evaluate import Evaluation, ScoredSet
from facetell.familiarity import TEMPER_SLOPE
from facetell.inference import Detector
from facetell.report import plot_scores_by_source

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PLOTS = [
    "plot-roc",
    "plot-pr",
    "plot-confusion",
    "plot-reliability",
    "plot-scores-class",
    "plot-scores-source",
    "plot-robustness",
]
TABLES = ["summary-table", "per-class-table", "source-table", "pairs-table", "robustness-table"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    (root / "real" / "nasa").mkdir(parents=True)
    (root / "ai" / "dcgan").mkdir(parents=True)
    photo = astronaut()
    for i in range(16):
        name = f"{i}.jpg" if i < 15 else os.fsdecode(b"15\xe9.jpg")  # not UTF-8: Latin-1 é
        photo.crop((60 + 4 * i, 0, 380 + 4 * i, 320)).save(root / "real" / "nasa" / name)
    for i, face in enumerate(gan_faces(16, seed=21, size=160)):
        face.save(root / "ai" / "dcgan" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def bundle(untrained_bundle, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(untrained_bundle, copy)
    return copy


def facetell(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facetell", *args], capture_output=True, text=True, timeout=600
    )


def test_calibrate_writes_calibration_that_predict_then_uses(bundle, labelled):
    result = facetell("calibrate", str(bundle), str(labelled))
    assert result.returncode == 0, result.stderr
    calibration = json.loads((bundle / "calibration.json").read_text())
    assert calibration["temperature"] > 0
    assert 0 < calibration["threshold"] < 1
    low, high = calibration["uncertain_band"]
    assert low <= calibration["threshold"] <= high
    assert calibration["n"] == 32 and calibration["fitted_on"]["sources"] == ["dcgan", "nasa"]
    assert set(calibration["false_positive_rate_by_source"]) == {"nasa"}
    _, upper = calibration["false_positive_rate_interval_by_source"]["nasa"]
    assert (
        f"nasa {calibration['false_positive_rate_by_source']['nasa']:.4f} (95% up to {upper:.4f})"
        in result.stdout
    )
    assert calibration["ece_after"] <= calibration["ece_before"] + 1e-9
    assert "ECE" in result.stdout
    assert "left out" not in result.stdout  # every image had a face
    assert (  # 16 of each class: a threshold fitted on so few is a rough guess, and said so
        "note: fitted on 16 real and 16 AI faces; with under 100 of a class the temperature, "
        "threshold and band can move far on other images, and the ECE above is measured on these "
        "same faces: calibrate on more held-out images"
    ) in result.stderr.splitlines()
    correction = calibration["size_correction"]  # fitted on 48-160-px copies of the 32 images
    assert correction["details"]["n_small"] > 0 and "small faces (< 64 px" in result.stdout
    assert correction["details"]["ece_small_after"] <= correction["details"]["ece_small_before"]
    # small faces were scored re-encoded as the thumbnails are, and predict re-encodes them alike
    assert correction["jpeg_quality"] == 85 and "re-encoded at JPEG 85" in result.stdout
    assert Detector.load(bundle).small_face_jpeg == (correction["reference_width"], 85)
    predicted = facetell(
        "predict",
        str(labelled / "real" / "nasa" / "0.jpg"),
        "--model",
        str(bundle),
        "--format",
        "jsonl",
    )
    record = json.loads(predicted.stdout)
    assert record["calibrated"] is True
    assert "not calibrated" not in predicted.stderr


def test_calibrate_says_which_images_it_could_not_use(bundle, labelled, tmp_path):
    data = shutil.copytree(labelled, tmp_path / "data")
    cat().save(data / "real" / "nasa" / "cat.jpg")
    (data / "ai" / "dcgan" / "cut-short.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    result = facetell("calibrate", str(copy), str(data), "--no-size-correction", "--no-familiarity")
    assert result.returncode == 0, result.stderr
    said = "left out 2 of 34 images: 1 without a face, 1 unreadable (cut-short.png)"
    assert said in result.stdout.splitlines()


def test_a_picture_given_as_both_real_and_ai_is_named_by_evaluate_and_calibrate(
    bundle, labelled, tmp_path
):
    """A copy of a real photo filed among the AI images too: evaluate scored one of the two a
    mistake whatever the model said, and calibrate fitted both labels, with nothing said."""
    data = shutil.copytree(labelled, tmp_path / "data")
    photo, copy = data / "real" / "nasa" / "3.jpg", data / "ai" / "dcgan" / "copy.jpg"
    shutil.copyfile(photo, copy)
    said = (
        f"note: 1 image(s) are given as both real and AI (the same bytes), such as {photo} "
        f"(real) and {copy} (AI): {{}}; keep each under its true label only"
    )
    evaluated = facetell("evaluate", str(bundle), str(data), "--out", str(tmp_path / "report"),
                         "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert said.format("one of each pair is scored a mistake") in evaluated.stderr.splitlines()
    calibrated = facetell("calibrate", str(bundle), str(data), "--out", str(tmp_path / "fit"),
                          "--no-size-correction", "--no-familiarity")  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stderr
    assert said.format("each pair pulls the fit both ways") in calibrated.stderr.splitlines()
    gan_faces(1, seed=77, size=160)[0].save(copy)  # a picture of one label only: no note
    again = facetell("calibrate", str(bundle), str(data), "--out", str(tmp_path / "fit"),
                     "--overwrite", "--no-size-correction", "--no-familiarity")  # fmt: skip
    assert again.returncode == 0 and "both real and AI" not in again.stderr, again.stderr


def test_evaluate_prints_the_accuracy_of_the_faces_it_decided_and_the_cut(labelled, tmp_path):
    """`accuracy` counts an "uncertain" face by its side of the threshold: a set answered
    "uncertain" throughout read accuracy 1.0000 on the screen, where the report said how
    many were decided and how many of those were right; and no line said at which cut."""
    run = facetell("evaluate", "default", str(labelled), "--out", str(tmp_path / "report"),
                   "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())["metrics"]
    low, high = metrics["intervals"]["accuracy_when_decided"]
    [row] = [line for line in run.stdout.splitlines() if "│ accuracy_when_decided " in line]
    value = metrics["accuracy_when_decided"]
    assert row.split("│")[2].strip() == f"{value:.4f} ({low:.4f}-{high:.4f})"
    assert metrics["uncertain_fraction"] < 1  # some faces were decided
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    (low, high), threshold = report["uncertain_band"], report["threshold"]
    [cut] = [line for line in run.stdout.splitlines() if "│ threshold (uncertain band) " in line]
    assert cut.split("│")[2].strip() == f"{threshold:.4f} ({low:.3f}-{high:.3f})"
    shown = [line for line in run.stdout.splitlines() if " images: real / uncertain / ai " in line]
    verdicts = [[int(n) for n in line.split("│")[2].split(" / ")] for line in shown]
    assert verdicts == metrics["confusion_matrix_verdicts"]  # real images first, then AI ones
    assert [sum(row) for row in verdicts] == [metrics["n_real"], metrics["n_ai"]]
    with (tmp_path / "report" / "predictions.csv").open(newline="", encoding="utf-8-sig") as file:
        rows = [row for row in csv.DictReader(file) if row["status"] == "ok"]
    for source in report["sources"]:  # each source's share answered "uncertain", as predict says
        labels = [row["label"] for row in rows if Path(row["path"]).parent.name == source["source"]]
        assert source["uncertain"] == pytest.approx(labels.count("uncertain") / len(labels))
        [line] = [line for line in run.stdout.splitlines() if f"│ {source['source']} " in line]
        assert line.split("│")[6].strip() == f"{source['uncertain']:.4f}"


def test_a_report_without_mistakes_or_a_sweep_says_so(labelled, tmp_path):
    """The mistakes section of a model that made none ended in an empty gallery, which read
    as a page cut short; so did the robustness section of a run that skipped the sweep."""
    run = facetell("evaluate", "default", str(labelled / "real"), "--out", str(tmp_path / "r"),
                   "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["mistakes"] == [] and metrics["metrics"]["false_positive_rate"] == 0
    page = (tmp_path / "r" / "report.html").read_text()
    mistakes = page[page.index('<section id="mistakes">') :]
    assert "None: every scored face is on the side of the threshold its label says." in mistakes
    assert "mistake-gallery" not in mistakes  # the note had sat in one narrow grid cell
    robustness = page[page.index('<section id="robustness">') : page.index(mistakes)]
    assert "Not measured: this run skipped the sweep" in robustness
    assert "robustness-table" not in robustness and "Drops compare" not in robustness


def scores_by_source_picture(real_scores: list[float], folder: Path) -> np.ndarray:
    """The per-source plot of 40 real faces scored as given and 40 AI faces at 0.98."""
    p_ai = np.array(real_scores + [0.98] * 40)
    n = len(p_ai)
    scored = ScoredSet(
        paths=[f"{i}.jpg" for i in range(n)],
        targets=np.array([0] * 40 + [1] * 40),
        sources=["camera"] * 40 + ["gan"] * 40,
        logits=np.log(p_ai / (1 - p_ai)),
        p_ai=p_ai,
        face_widths=np.full(n, 160.0),
        labels=["real"] * n,
        statuses=["ok"] * n,
        seconds=1.0,
        novelty=np.full(n, np.nan),
        familiar=[None] * n,
        errors=[None] * n,
    )
    evaluation = Evaluation("b", "b", True, 0.96, (0.5, 0.96), None, {}, [], [], {}, [], {}, scored)
    folder.mkdir()
    return np.asarray(Image.open(plot_scores_by_source(evaluation, folder)).convert("RGB"), int)


def test_the_per_source_plot_shows_the_one_real_face_called_ai(tmp_path):
    """A box plot without outliers drew a source whose faces pile at 0 as a line at 0: the one
    real face among 40 that the model called AI, the face a reader looks for, was not drawn."""
    clean = scores_by_source_picture([0.02] * 40, tmp_path / "clean")
    mistaken = scores_by_source_picture([0.02] * 39 + [0.97], tmp_path / "mistaken")
    assert clean.shape == mistaken.shape
    height, width, _ = clean.shape
    changed = np.abs(clean - mistaken).sum(axis=2) > 60
    assert not changed[height // 2 :].any()  # only the first row (camera, above gan) changed
    rows, columns = np.nonzero(changed[:, width // 2 :])  # where 0.97 lies, not 0.02
    assert len(rows) > 0, "the face at 0.97 is not in the picture"
    red, green, blue = mistaken[rows, columns + width // 2].mean(axis=0)
    assert green > red + 20 and green > blue + 20


def gallery_pictures(report: Path) -> list[Image.Image]:
    """The pictures of a report's high-confidence mistakes, in order."""
    page = report.read_text(encoding="utf-8")
    gallery = page[page.index('id="mistake-gallery"') :]
    sources = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', gallery)
    return [Image.open(io.BytesIO(base64.b64decode(source))).convert("RGB") for source in sources]


def test_the_mistakes_gallery_puts_the_surest_first_and_shows_where_the_model_looked(tmp_path):
    """Mistakes were ranked by their distance from the cut (0.96): an AI face at P(ai) 0.40
    came before a real one at 1.000, which the model was far surer of. The gallery showed plain
    pictures, which cannot say what the model saw."""
    data = tmp_path / "labelled the wrong way"
    (data / "real").mkdir(parents=True)
    (data / "ai").mkdir()
    for i, face in enumerate(gan_faces(3, seed=4, size=160)):  # called AI, labelled real
        face.save(data / "real" / f"{i}.png")
    for i in range(3):  # called uncertain or real, labelled AI
        astronaut().crop((30 * i, 0, 30 * i + 420, 420)).save(data / "ai" / f"{i}.jpg")
    reports = {}
    for explain in ("--explain", "--no-explain"):
        reports[explain] = tmp_path / explain
        run = facetell("evaluate", "default", str(data), "--out", str(reports[explain]),
                       "--robustness-limit", "0", "--resamples", "0", explain)  # fmt: skip
        assert run.returncode == 0, run.stderr
    mistakes = json.loads((reports["--explain"] / "metrics.json").read_text())["mistakes"]
    assert {m["truth"] for m in mistakes} == {"real", "ai"}
    given_to_the_wrong_class = [
        m["p_ai"] if m["truth"] == "real" else 1 - m["p_ai"] for m in mistakes
    ]
    assert given_to_the_wrong_class == sorted(given_to_the_wrong_class, reverse=True)
    assert mistakes[0]["truth"] == "real"
    for explain, report in reports.items():
        pictures = gallery_pictures(report / "report.html")
        assert len(pictures) == len(mistakes)
        photo = Image.open(mistakes[0]["path"]).convert("RGB").resize(pictures[0].size)
        changed = np.abs(np.asarray(pictures[0], float) - np.asarray(photo, float)).mean()
        if explain == "--explain":  # the face's heat map and box drawn over the photo
            assert changed > 20, changed
        else:
            assert changed < 5, changed
    page = (reports["--explain"] / "report.html").read_text(encoding="utf-8")
    assert "heat maps: where the model looked" in page
    pairs = page[page.index('id="pairs-table"') : page.index('<section id="robustness">')]
    assert re.search(r"<td>\d\.\d{4}</td>", pairs)  # --resamples 0: no interval, no "(-)"
    assert "(-)" not in pairs


def test_calibrate_fits_familiarity_on_a_reference_of_training_faces(labelled, tmp_path):
    bundle = tmp_path / "bundle"
    save_untrained_bundle(bundle, "mobilenet_v2", 96)
    training = tmp_path / "training"
    training.mkdir()
    photo = astronaut()
    for i in range(10):  # other crops of the photo and other generated faces than `labelled`
        photo.crop((40 + 5 * i, 0, 360 + 5 * i, 320)).save(training / f"photo-{i}.jpg")
    for i, face in enumerate(gan_faces(20, seed=30, size=160)):
        face.save(training / f"gan-{i}.png")
    mistyped = facetell("calibrate", str(bundle), str(labelled), "--reference",
                        str(tmp_path / "trainign"))  # fmt: skip
    assert (mistyped.returncode, mistyped.stderr.strip()) == (  # was "no face found in the ..."
        2,
        f"error: {tmp_path / 'trainign'}: no such file or folder (--reference)",
    )
    result = facetell("calibrate", str(bundle), str(labelled), "--reference", str(training),
                      "--reference-size", "25", "--temper-start", "0.6")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "familiarity: 25 reference faces" in result.stdout
    familiarity = json.loads((bundle / "calibration.json").read_text())["familiarity"]
    # fitted on the 32 images and their five thumbnail copies, each face in its width band
    assert sum(familiarity["details"]["faces_per_band"]) == familiarity["details"]["faces"]
    assert 32 < familiarity["details"]["faces"] <= 32 * 6
    assert len(familiarity["thresholds"]) == len(familiarity["width_edges"]) + 1
    predicted = facetell("predict", str(labelled), "--model", str(bundle), "--format", "jsonl")
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    faces = [face for record in records for face in record["faces"]]
    assert len(faces) >= 30 and all(face["novelty"] >= 0 for face in faces)
    for record in records:
        top = max(record["faces"], key=lambda face: face["p_ai"])
        assert record["familiar"] == top["familiar"]
        band = sum(top["box"][2] >= edge for edge in familiarity["width_edges"])
        assert top["familiar"] == (top["novelty"] <= familiarity["thresholds"][band] + 5e-5)
    # each face's P(ai) is tempered by its novelty, as the stored calibration says
    assert "P(ai) tempered toward 0.5 from 60% of the threshold" in result.stdout
    calibration = Calibration.from_dict(json.loads((bundle / "calibration.json").read_text()))
    assert calibration.familiarity.temper_slope == TEMPER_SLOPE
    assert calibration.familiarity.temper_start == 0.6
    tempered = 0
    for face in faces:
        width, novelty = face["box"][2], face["novelty"]
        p_ai = calibration.probability(face["logit"], width, novelty)
        assert face["p_ai"] == pytest.approx(p_ai, abs=2e-3)
        if calibration.familiarity.temperature(novelty, width) > 1.1:
            tempered += 1
            assert abs(p_ai - 0.5) < abs(calibration.probability(face["logit"], width) - 0.5)
    assert tempered > 0
    # thresholds sit at the 95th percentile of these very faces: few are flagged
    assert sum(not face["familiar"] for face in faces) <= 0.15 * len(faces)
    table = facetell("predict", str(labelled), "--model", str(bundle))
    flagged = sum(not record["familiar"] for record in records)
    assert table.stdout.count("unfamiliar face") == flagged


def test_calibrating_the_shipped_model_on_ones_own_photos_keeps_its_familiarity_check(
    labelled, tmp_path
):
    """With no training images to build a reference from, calibrate dropped the shipped model's
    familiarity check: the copy flagged no face unfamiliar and tempered none, silently."""
    shipped = Calibration.from_dict(Detector.load().bundle.calibration)
    result = facetell("calibrate", "default", str(labelled), "-o", str(tmp_path / "mine"),
                      "--temper-slope", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    faces = shipped.familiarity.details["reference_faces"]
    assert f"familiarity: the bundle's own check kept (a reference of {faces} training faces;" in (
        result.stdout.replace("\n", " ")
    )
    mine = Calibration.from_dict(json.loads((tmp_path / "mine" / "calibration.json").read_text()))
    assert mine.familiarity.thresholds == shipped.familiarity.thresholds
    assert mine.familiarity.temper_slope == 3  # this run's tempering
    assert mine.threshold != shipped.threshold  # fitted on these photos
    predicted = facetell("predict", str(labelled), "--model", str(tmp_path / "mine"), "-f", "jsonl")
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(records) == 32 and all(r["familiar"] in (True, False) for r in records)
    for face in (face for record in records for face in record["faces"]):
        width, novelty = face["box"][2], face["novelty"]
        assert face["p_ai"] == pytest.approx(
            mine.probability(face["logit"], width, novelty), abs=2e-3
        )


def test_the_datas_own_split_parts_are_scored_alone_when_named(labelled, tmp_path):
    """`--split test` without --split-file was ignored: evaluate scored the training images
    too, and calibrate fitted its temperature on them."""
    data = tmp_path / "data"
    for image in sorted(labelled.rglob("*.*")):
        part = ("train", "train", "val", "test")[int(image.stem[:2].rstrip("\xe9")) % 4]
        folder = data / part / image.parent.parent.name / image.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image.name).symlink_to(image)
    bundle = save_untrained_bundle(tmp_path / "bundle", "mobilenet_v2", 96)

    def scored(*args: str) -> list[str]:
        run = facetell("evaluate", str(bundle), *args, "--out", str(tmp_path / "report"),
                       "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
        assert run.returncode == 0, run.stderr
        table = (tmp_path / "report" / "predictions.csv").open(newline="", encoding="utf-8-sig")
        with table:
            return sorted(Path(row["path"]).parts[-4] for row in csv.DictReader(table))

    assert scored(str(data), "--split", "test") == ["test"] * 8
    assert scored(str(data / "test"), "--split", "test") == ["test"] * 8  # the part's own folder
    everything = facetell("evaluate", str(bundle), str(data), "--out", str(tmp_path / "all"),
                          "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert (  # all of it, as before, and the way to score one part
        "note: the data has its own split (train, val, test); all of it is scored (--split test "
        "scores its test part alone)"
    ) in everything.stderr.splitlines()
    for args, message in [
        ((str(labelled), "--split", "test"), "the data names no split (no train/ val/ test/ "
         "folders, no split column); give the run's --split-file, or the folder of that part"),
        ((str(data / "val"), "--split", "test"), "the data names no split"),
        ((str(data), "--split", "holdout"), "a split part is train, val or test"),
    ]:  # fmt: skip
        refused = facetell("evaluate", str(bundle), *args, "--out", str(tmp_path / "refused"))
        assert refused.returncode == 2 and refused.stderr.startswith(
            f"error: --split {args[-1]}: {message}"
        ), refused.stderr
    assert not (tmp_path / "refused").exists()
    calibrated = facetell("calibrate", str(bundle), str(data), "--split", "val",
                          "--no-size-correction", "--reference-size", "20")  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stderr
    fitted = json.loads((bundle / "calibration.json").read_text())
    assert (fitted["n"], fitted["fitted_on"]["split"]) == (8, "val")
    # the reference of training faces comes from the data's own train part, as from a split file
    assert "familiarity: 16 reference faces" in calibrated.stdout


def test_a_source_without_one_scored_face_is_a_row_of_dashes_not_a_crash(labelled, tmp_path):
    """A real source whose photos held no face ended evaluate in a TypeError traceback after
    the report was written; its AUROC had read nan."""
    data = shutil.copytree(labelled, tmp_path / "data", symlinks=True)
    (data / "real" / "pets").mkdir()
    for angle in (0, 90, 180):
        cat().rotate(angle).save(data / "real" / "pets" / f"cat-{angle}.jpg")
    (data / "real" / "pets" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))
    bundle = save_untrained_bundle(tmp_path / "bundle", "mobilenet_v2", 96)
    run = facetell("evaluate", str(bundle), str(data), "--out", str(tmp_path / "report"),
                   "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (  # what the metrics' counts leave out, and where to read why
        f"note: left out 4 of 36 images: 3 without a face, 1 unreadable (cut.jpg); "
        f"{tmp_path / 'report' / 'predictions.csv'} says why for each"
    ) in run.stderr.splitlines()
    with (tmp_path / "report" / "predictions.csv").open(newline="", encoding="utf-8-sig") as table:
        errors = {Path(row["path"]).name: row["error"] for row in csv.DictReader(table)}
    assert errors["cut.jpg"].startswith(f"{data / 'real' / 'pets' / 'cut.jpg'}: ")
    assert errors["cat-0.jpg"] == ""  # no face is a status, not an error
    [row] = [line.split("│")[1:-1] for line in run.stdout.splitlines() if "│ pets" in line]
    assert [cell.strip() for cell in row] == ["pets", "real", "0", "-", "-", "-"]  # of 4
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    [pets] = [row for row in metrics["sources"] if row["source"] == "pets"]
    assert (pets["scored"], pets["auroc_vs_ai"], pets["false_positive_rate"]) == (0, None, None)
    other = save_untrained_bundle(tmp_path / "other", "mobilenet_v2", 96)
    mine = tmp_path / "mine"  # a user's own real photos alone: no AUROC to compare
    shutil.copytree(labelled / "real", mine / "real")
    compared = facetell("evaluate", str(bundle), str(mine), "--compare", str(other), "--out",
                        str(tmp_path / "compared"), "--robustness-limit", "0")  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    assert "nan" not in compared.stdout  # had read "AUROC +nan against …"
    assert (  # two bundles of one name are told apart by their paths
        f"test-untrained@0.1.0 ({other}): AUROC not compared with test-untrained@0.1.0 ({bundle}): "
        "the images both scored hold one class"
    ) in compared.stdout.splitlines()
    both = facetell("evaluate", str(bundle), str(data), "--split-file", str(tmp_path / "s.json"))
    assert both.returncode == 2 and both.stderr.startswith(  # data would have gone unread
        f"error: give data folders or --split-file, not both: {tmp_path / 's.json'} names its "
        f"own images (and {data} would be left unread)"
    )


def test_calibrating_a_model_without_an_embedding_skips_familiarity(labelled, tmp_path):
    bundle = save_untrained_bundle(tmp_path / "spectrum", "spectrum", 64)
    result = facetell("calibrate", str(bundle), str(labelled), "--reference", str(labelled),
                      "--no-size-correction")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "familiarity: not fitted" in result.stdout and "no embedding" in result.stdout
    assert "familiarity" not in json.loads((bundle / "calibration.json").read_text())
    assert not (bundle / "reference.safetensors").exists()
    predicted = facetell("predict", str(labelled / "real"), "--model", str(bundle), "-f", "jsonl")
    record = json.loads(predicted.stdout.splitlines()[0])
    assert record["familiar"] is None and record["faces"][0]["novelty"] is None
    declined = facetell("calibrate", str(bundle), str(labelled), "--no-familiarity",
                        "--no-size-correction")  # fmt: skip
    assert "familiarity: not fitted (--no-familiarity)" in declined.stdout  # said why, not "or"


def test_a_false_positive_target_a_source_is_too_small_for_is_named(labelled, tmp_path):
    """16 real photos cannot show a 2% rate: none may pass, and calibrate says so; at 10% one
    may, and there is nothing to say."""
    bundle = save_untrained_bundle(tmp_path / "bundle", "mobilenet_v2", 96)
    for target, thin in (("0.02", True), ("0.1", False)):
        result = facetell("calibrate", str(bundle), str(labelled), "--max-fpr", target,
                          "--no-size-correction", "--no-familiarity")  # fmt: skip
        assert result.returncode == 0, result.stderr
        details = json.loads((bundle / "calibration.json").read_text())
        assert details["n_real_by_source"] == {"nasa": 16}
        rate = details["false_positive_rate_by_source"]["nasa"]
        assert rate == 0 if thin else rate <= 0.1
        note = "no face of nasa (16 real faces) may be called AI"
        assert (note in " ".join(result.stdout.split())) == thin


def test_calibrating_on_one_class_says_what_it_found_and_what_to_do(labelled, tmp_path):
    """A platform with its users' real selfies alone, and a folder of faceless pictures."""
    bundle = save_untrained_bundle(tmp_path / "bundle", "mobilenet_v2", 96)
    selfies = tmp_path / "selfies"
    shutil.copytree(labelled / "real", selfies / "real")
    faceless = tmp_path / "faceless"
    for label, picture in (("real", skimage.data.chelsea()), ("ai", skimage.data.coffee())):
        (faceless / label).mkdir(parents=True)
        Image.fromarray(picture).save(faceless / label / "picture.jpg")
    runs = [facetell("calibrate", str(bundle), str(folder)) for folder in (selfies, faceless)]
    assert [run.returncode for run in runs] == [2, 2]
    assert [run.stderr.strip() for run in runs] == [
        "error: calibration needs both real and AI images: found 16 real, 0 AI (with real "
        "photos alone, --max-fpr RATE raises the threshold until at most RATE of them are "
        f"called AI; facetell evaluate {bundle} {selfies} shows how many are now)",
        "error: calibration needs both real and AI images with a face: found 0 real, 0 AI "
        "(for photos of faces cropped already, add --no-face-detect)",
    ]
    assert not (bundle / "calibration.json").exists()


def test_real_photos_alone_raise_the_threshold_to_a_false_positive_target(labelled, tmp_path):
    """A platform's own users' photos, one kind of which the model takes for AI (here DCGAN
    faces stand in for it): only the threshold moves, until at most 1 in 8 of each kind is
    called AI; everything else the calibration holds stays. The shipped model, named
    `default` wherever facetell is installed, is calibrated as a copy (--out), never in place:
    every predict without --model answers with it."""
    shipped = Path(__file__).parents[1] / "models" / "default"
    shipped_files = {path.name: path.read_bytes() for path in shipped.iterdir()}
    mine = tmp_path / "mine" / "real"
    shutil.copytree(labelled / "real" / "nasa", mine / "camera")
    shutil.copytree(labelled / "ai" / "dcgan", mine / "webcam")
    before = json.loads((shipped / "calibration.json").read_text())
    for name in ("default", str(shipped)):
        in_place = facetell("calibrate", name, str(mine.parent), "--max-fpr", "0.125")
        assert in_place.returncode == 2
        assert in_place.stderr.strip() == (
            f"error: {name}: the shipped model, which predict uses without --model, is not "
            "calibrated in place; --out my-model calibrates a copy"
        )
    bundle = tmp_path / "bundle"
    run = facetell(
        "calibrate", "default", str(mine.parent), "--max-fpr", "0.125", "-o", str(bundle)
    )
    assert run.returncode == 0, run.stderr
    assert f"written to {bundle / 'calibration.json'}" in run.stdout
    assert {path.name: path.read_bytes() for path in shipped.iterdir()} == shipped_files
    assert (bundle / "model.safetensors").read_bytes() == shipped_files["model.safetensors"]
    after = json.loads((bundle / "calibration.json").read_text())
    card = (bundle / "MODEL_CARD.md").read_text()  # its numbers were the shipped calibration's
    assert card.splitlines()[:3] == [
        shipped_files["MODEL_CARD.md"].decode().splitlines()[0],
        "",
        f"> **Calibrated again** on {datetime.date.today():%Y-%m-%d} by `facetell calibrate`: "
        f"threshold P(ai) ≥ {after['threshold']:.4f}, uncertain band "
        f"{after['uncertain_band'][0]:.3f}-{after['uncertain_band'][1]:.3f}. The numbers below "
        "were measured with the calibration this bundle had before; `facetell evaluate` "
        "measures them again.",
    ]
    assert after["threshold"] > before["threshold"]
    kept = ("temperature", "bias", "size_correction", "familiarity")
    assert {key: after[key] for key in kept} == {key: before[key] for key in kept}
    moved = Calibration.from_dict(before).band(after["threshold"])
    assert after["uncertain_band"] == pytest.approx(list(moved))
    judged = Detector.load(bundle)
    for kind in ("camera", "webcam"):
        called = [judged.predict(path).label for path in sorted((mine / kind).iterdir())]
        assert called.count("ai") <= 16 * 0.125  # 2 of 16 at most, on each kind of photo
    alone = after["real_photos_alone"]
    assert alone["n_real_by_source"] == {"camera": 16, "webcam": 16}
    assert max(alone["false_positive_rate_by_source"].values()) <= 0.125
    # 16 faces a kind cannot show 1 in 8: Wilson's bound for none of n is 1.96² / (n + 1.96²)
    upper = alone["false_positive_rate_interval_by_source"]
    assert min(high for _, high in upper.values()) > 0.125
    assert run.stderr.splitlines()[-1] == (
        "note: these photos cannot show a false-positive rate of at most 0.125: the 95% interval "
        f"of camera (up to {upper['camera'][1]:.4f}, 16 faces), webcam (up to "
        f"{upper['webcam'][1]:.4f}, 16 faces) reaches past it; it takes "
        f"{math.ceil(1.96**2 * 0.875 / 0.125)} faces of a source, none called AI, to show it"
    )
    # `facetell info` tells the raised cut from the calibrated one, and the card's numbers as
    # measured at the old one
    told = info_rows(bundle)
    assert f"AI at P(ai) ≥ {after['threshold']:.4f}; uncertain" in told["calibration"]
    assert told["raised for"] == (
        "a false-positive rate of at most 0.125 on 32 real photos (camera, webcam), from the "
        f"calibrated {before['threshold']:.4f}, set by {before['threshold_rule']}"
    )
    assert told["measured"].endswith(
        f"at threshold {before['threshold']:.4f}, not this one (facetell evaluate measures again)"
    )
    # a looser target starts again from the calibrated threshold and never goes below it
    loose = facetell("calibrate", str(bundle), str(mine.parent), "--max-fpr", "1.0")
    assert "cannot show" not in loose.stderr
    again = json.loads((bundle / "calibration.json").read_text())
    assert again["threshold"] == before["threshold"]
    rewritten = (bundle / "MODEL_CARD.md").read_text()  # one note, of the last fit
    assert rewritten.count("Calibrated again") == 1 and f"{again['threshold']:.4f}" in rewritten
    assert rewritten.split("\n", 3)[3] == shipped_files["MODEL_CARD.md"].decode().split("\n", 1)[1]
    assert again["uncertain_band"] == before["uncertain_band"]
    raw = save_untrained_bundle(tmp_path / "raw", "mobilenet_v2", 96)
    refused = facetell("calibrate", str(raw), str(mine.parent), "--max-fpr", "0.1")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: {raw}: not calibrated; with real photos alone only the threshold of a "
        "calibrated bundle can be set (calibrate it on real and AI images first)"
    )


def test_predict_applies_the_size_correction_to_small_faces_only(bundle, labelled, tmp_path):
    if not (bundle / "calibration.json").exists():
        facetell("calibrate", str(bundle), str(labelled))
    calibration = json.loads((bundle / "calibration.json").read_text())
    correction = calibration["size_correction"]
    thumbnail = tmp_path / "thumbnail.jpg"
    Image.open(labelled / "ai" / "dcgan" / "0.png").resize((56, 56)).save(thumbnail, quality=85)
    large = labelled / "ai" / "dcgan" / "0.png"
    predicted = facetell("predict", str(thumbnail), str(large), "--model", str(bundle),
                         "--format", "jsonl")  # fmt: skip
    faces = [json.loads(line)["faces"][0] for line in predicted.stdout.splitlines()]
    for face in faces:
        logit, width = face["logit"], face["box"][2]
        plain = logit / calibration["temperature"]
        shift = max(0.0, math.log(correction["reference_width"] / width))
        expected = plain + shift * (correction["offset"] + correction["slope"] * logit)
        # the record rounds p_ai to 4 places and the box to whole pixels
        assert face["p_ai"] == pytest.approx(1 / (1 + math.exp(-expected)), abs=0.01)
    small, big = faces
    assert small["box"][2] < 64 <= big["box"][2]
    plain = 1 / (1 + math.exp(-small["logit"] / calibration["temperature"]))
    assert abs(small["p_ai"] - plain) > 0.03


def test_evaluate_writes_a_report_a_browser_renders(bundle, labelled, tmp_path):
    out = tmp_path / "report"
    result = facetell(
        "evaluate", str(bundle), str(labelled), "--out", str(out), "--robustness-limit", "6"
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["n"] + sum(metrics["metrics"]["not_scored"].values()) == 32
    assert set(metrics["robustness"]) >= {"clean", "jpeg_50", "downscale_0.5", "blur_2"}
    for name, values in metrics["robustness"].items():  # drops measured on the same images
        if name != "clean":
            low, high = values["auroc_drop_interval"]
            assert -1 <= low <= high <= 1, name
    assert {row["source"] for row in metrics["sources"]} == {"dcgan", "nasa"}
    # every image's score is in predictions.csv, and the headline numbers come from those scores
    with (out / "predictions.csv").open(newline="", encoding="utf-8-sig") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 32 and {Path(r["path"]).parent.name for r in rows} == {"dcgan", "nasa"}
    assert str(labelled / "real" / "nasa" / "15\\xe9.jpg") in {r["path"] for r in rows}
    scored = [r for r in rows if r["status"] == "ok"]
    assert len(scored) == metrics["metrics"]["n"]
    truth = [r["truth"] == "ai" for r in scored]
    p_ai = [float(r["p_ai"]) for r in scored]
    assert roc_auc_score(truth, p_ai) == pytest.approx(metrics["metrics"]["auroc"], abs=1e-5)
    (pair,) = metrics["source_pairs"]  # one AI and one real source: the pair is the whole set
    assert (pair["ai_source"], pair["real_source"]) == ("dcgan", "nasa")
    assert pair["auroc"] == pytest.approx(metrics["metrics"]["auroc"])
    intervals = metrics["metrics"]["intervals"]
    for key in ("auroc", "average_precision", "accuracy", "false_positive_rate"):
        low, high = intervals[key]
        assert low <= metrics["metrics"][key] <= high, key
    low, high = pair["auroc_interval"]
    assert [round(low, 6), round(high, 6)] == [round(v, 6) for v in intervals["auroc"]]
    nasa = next(row for row in metrics["sources"] if row["source"] == "nasa")
    low, high = nasa["false_positive_rate_interval"]
    assert low <= nasa["false_positive_rate"] <= high and high - low > 0.05  # 16 real images
    dcgan = next(row for row in metrics["sources"] if row["source"] == "dcgan")
    caught, (least, most) = dcgan["accuracy"], dcgan["accuracy_interval"]  # a Wilson interval
    assert least <= caught <= most and most - least > 0.05  # 16 AI images, as many as nasa's
    caught_cell = f"{caught:.4f} ({least:.4f}-{most:.4f})"  # had been the rate alone
    assert any(
        line.strip("│ ").startswith("dcgan") and caught_cell in line
        for line in result.stdout.splitlines()
    )
    auroc_line = next(
        line for line in result.stdout.splitlines() if line.strip("│ ").startswith("auroc")
    )
    assert f"({intervals['auroc'][0]:.4f}-{intervals['auroc'][1]:.4f})" in auroc_line
    worst_line = next(line for line in result.stdout.splitlines() if "worst source" in line)
    assert f"{nasa['false_positive_rate']:.4f} ({low:.4f}-{high:.4f}) nasa" in worst_line
    calibration_file = bundle / "calibration.json"
    correction = (
        json.loads(calibration_file.read_text())["size_correction"]
        if calibration_file.exists()
        else None
    )
    assert metrics["size_correction"] == correction
    for name in ("roc", "pr", "reliability", "confusion", "scores_by_class", "robustness"):
        assert (out / f"{name}.png").stat().st_size > 5_000

    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto((out / "report.html").as_uri())
        for plot in PLOTS:  # drawn at its own shape: a row of plots stretched the shorter ones
            natural, shown = page.eval_on_selector(
                f"#{plot}",
                "img => [[img.naturalWidth, img.naturalHeight], [img.width, img.height]]",
            )
            assert natural[0] > 100, plot
            assert shown[1] / shown[0] == pytest.approx(natural[1] / natural[0], rel=0.02), plot
        for table in TABLES:
            assert page.locator(f"#{table} tbody tr").count() >= 1, table
        assert page.locator("#mistake-gallery figure").count() >= 1
        interval_cells = page.eval_on_selector_all(
            "#summary-table tbody tr",
            "rows => Object.fromEntries(rows.map(r => [r.cells[0].innerText, "
            "r.cells[2].innerText]))",
        )
        low, high = intervals["auroc"]
        assert interval_cells["auroc"] == f"{low:.4f} to {high:.4f}"
        yardstick = metrics["metrics"]["ece_if_calibrated"]
        assert interval_cells["ece"] == f"calibrated: ≤ {yardstick:.4f}"
        small_faces = page.locator("#identity dt", has_text="small faces")
        assert small_faces.count() == (1 if correction else 0)
        if correction:
            note = page.locator("#identity dt:has-text('small faces') + dd").inner_text()
            assert f"re-encoded at JPEG {correction['jpeg_quality']}" in note
        for name, values in metrics["robustness"].items():  # how many each perturbation scored
            row = page.locator("#robustness-table tbody tr", has_text=name).first
            assert row.locator("td").last.inner_text() == str(values["n"]), name
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        audit = Axe().run(page)  # axe-core's WCAG rules: contrast, table headers, alt text...
        assert audit.violations_count == 0, audit.generate_report()
        page.emulate_media(color_scheme="dark")  # the system's dark theme, as the web page's
        assert max(computed_rgb(page)) < 60
        audit = Axe().run(page)
        assert audit.violations_count == 0, audit.generate_report()
        # printed on A4 (794 px less Chromium's margins), every table stays on the paper: on
        # screen a wide one scrolls, which paper cannot
        page.emulate_media(media="print")  # from the dark theme: light paper
        assert min(computed_rgb(page)) > 200
        page.set_viewport_size({"width": 718, "height": 1000})
        past_the_edge = page.eval_on_selector_all(
            "table", "tables => tables.filter(t => t.getBoundingClientRect().right > 718).length"
        )
        assert past_the_edge == 0
        browser.close()
    assert all(url.startswith(("file:", "data:")) for url in requests)  # self-contained


def test_ctrl_c_in_evaluate_says_that_no_report_was_written(bundle, labelled, tmp_path):
    """typer ended a Ctrl-C in silence (exit 130), the progress bar left where it stopped."""
    out = tmp_path / "report"
    evaluating = start_cli("evaluate", str(bundle), str(labelled), "--out", str(out))
    assert "evaluating" in evaluating.stderr.readline()  # the bundle is loaded, scoring begins
    evaluating.send_signal(signal.SIGINT)
    assert evaluating.wait(timeout=60) == 130
    said = evaluating.stderr.read().strip().splitlines()[-1]
    assert said == f"error: interrupted; no report was written to {out}"
    assert not (out / "report.html").exists()


def test_evaluate_on_real_photos_alone_measures_false_positives(bundle, labelled, tmp_path):
    """A platform checks the model on its own real selfies: no AI image, so no AUROC, but
    false positives, a report and strictly valid JSON (NaN is not JSON)."""
    real = tmp_path / "mine" / "real"
    shutil.copytree(labelled / "real" / "nasa", real)
    (real / "IMG_0001.DNG").write_bytes(encode(astronaut(), "TIFF"))  # a phone's RAW copy
    (real / "consent.pdf").write_bytes(b"%PDF-1.4\n")
    out = tmp_path / "report"
    out.mkdir()
    for plot in ("roc.png", "robustness.png"):  # an earlier report's, with both classes
        (out / plot).write_bytes(encode(cat(), "PNG"))
    result = facetell("evaluate", str(bundle), str(tmp_path / "mine"), "--out", str(out),
                      "--robustness-limit", "4")  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: skipped")]
    assert notes == [
        "note: skipped 1 camera RAW file(s) in the folders given: IMG_0001.DNG (export them as "
        "JPEG to use them)",
        "note: skipped 1 file(s) in the folders given that are in no format facetell reads "
        "(JPEG, PNG, WebP, HEIC, AVIF, BMP, TIFF or GIF): consent.pdf",
    ]
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)
    scored = metrics["metrics"]
    assert (scored["n_ai"], scored["auroc"], scored["eer"]) == (0, None, None)
    assert scored["n_real"] == 16 and 0 <= scored["false_positive_rate"] <= 1
    assert metrics["robustness"]["jpeg_50"]["auroc"] is None
    assert metrics["robustness"]["jpeg_50"]["false_positive_rate"] is not None
    page = (out / "report.html").read_text()
    assert "These curves need faces of both classes" in page
    assert not (out / "roc.png").exists() and not (out / "robustness.png").exists()  # no stale


def test_data_given_where_the_bundle_goes_is_told_the_bundle_comes_first(
    labelled, untrained_bundle, tmp_path
):
    """`facetell evaluate my-photos/` reads my-photos/ as the bundle; saying that the data is
    missing would send the user the wrong way."""
    not_a_bundle = (
        f"error: {labelled}: not a model bundle (expected a folder with config.json and "
        "model.safetensors, or a .zip of one); the bundle comes first: facetell"
    )
    evaluated = facetell("evaluate", str(labelled), "--out", str(tmp_path / "report"))
    assert evaluated.returncode == 2  # a usage error
    assert evaluated.stderr.strip() == f"{not_a_bundle} evaluate default {labelled}"
    calibrated = facetell("calibrate", str(labelled))
    assert calibrated.returncode == 2
    assert calibrated.stderr.strip() == f"{not_a_bundle} calibrate BUNDLE {labelled}"
    for command in ("evaluate", "calibrate"):  # the two swapped: the command as it should be
        swapped = facetell(command, str(labelled), str(untrained_bundle))
        assert swapped.returncode == 2
        assert swapped.stderr.strip() == f"{not_a_bundle} {command} {untrained_bundle} {labelled}"


def test_missing_data_is_answered_before_scipy_and_scikit_learn_are_imported(bundle, tmp_path):
    """They take a second to import; evaluate, calibrate and audit had spent it (2.0, 2.1 and
    1.5 s in all) before saying that the data folder is not there."""
    missing = tmp_path / "photos"
    for command in (
        ["evaluate", str(bundle), str(missing), "--out", str(tmp_path / "report")],
        ["calibrate", str(bundle), str(missing), "--out", str(tmp_path / "calibrated")],
        ["audit", str(missing)],
    ):
        answer, imported = run_cli_telling_imports(*command)
        assert (answer.returncode, answer.stderr) == (
            2,
            f"error: {missing}: no such folder or manifest CSV",
        ), command
        assert not imported & {"scipy", "sklearn", "torch"}, command


def test_an_output_inside_a_class_folder_of_the_data_is_refused(bundle, labelled, tmp_path):
    """`-o data/real/report` had put the report's PNG plots among the real photos, for the next
    train or evaluate to read as real faces."""
    data = shutil.copytree(labelled, tmp_path / "data")
    before = sorted(data.rglob("*"))
    for command in (
        ("evaluate", str(bundle), str(data), "-o", str(data / "real" / "report")),
        ("train", "--data", str(data), "-o", str(data / "real" / "nasa" / "run")),
    ):
        refused = facetell(*command)
        assert (refused.returncode, refused.stderr.strip()) == (
            2,
            f"error: {command[-1]}: inside {data / 'real'}, a class folder of the data, where "
            "its images would be read as photos of that class next time; choose an --out "
            "outside it",
        )
    assert sorted(data.rglob("*")) == before  # nothing was written
    beside = facetell("evaluate", str(bundle), str(data), "-o", str(data / "report"),
                      "--robustness-limit", "0")  # fmt: skip
    assert beside.returncode == 0, beside.stderr  # beside the class folders: named, not read


def test_evaluate_at_your_own_threshold_moves_the_band_as_predict_does(labelled, tmp_path):
    """Scored through the Python API at a threshold of one's own, evaluation had kept the
    calibrated band, so 'uncertain' and accuracy when decided were counted against another
    cut; the command line had no --threshold at all."""
    cut = 0.6  # below the shipped one: some of the astronaut crops (P(ai) 0.5-0.7) turn AI
    run = facetell("evaluate", "default", str(labelled), "--threshold", str(cut), "--out",
                   str(tmp_path / "r"), "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    evaluation = json.loads((tmp_path / "r" / "metrics.json").read_text())
    shifted = Detector.load(threshold=cut)
    assert evaluation["threshold"] == cut and shifted.cut == cut
    assert evaluation["uncertain_band"] == list(shifted.band) != list(Detector.load().band)
    with (tmp_path / "r" / "predictions.csv").open(newline="", encoding="utf-8-sig") as table:
        rows = list(csv.DictReader(table))
    real = np.array([float(r["p_ai"]) for r in rows if r["truth"] == "real"])
    low, high = shifted.band
    p_ai = np.array([float(r["p_ai"]) for r in rows])
    metrics = evaluation["metrics"]
    assert 0 < metrics["false_positive_rate"] == np.mean(real >= cut) < 1
    assert metrics["uncertain_fraction"] == np.mean((p_ai >= low) & (p_ai < high))
    # and each door says the cut was given, not the bundle's own
    calibrated = Detector.load().cut
    assert evaluation["calibrated_threshold"] == calibrated
    assert f"0.6000 ({low:.3f}-{high:.3f}), given" in run.stdout
    page = (tmp_path / "r" / "report.html").read_text()
    assert f"P(ai) ≥ 0.6000 (given; the bundle's calibrated cut is {calibrated:.4f})" in page


def test_compare_puts_bundles_side_by_side(bundle, untrained_bundle, labelled, tmp_path):
    out = tmp_path / "compare"
    result = facetell(
        "evaluate",
        str(bundle),
        str(labelled),
        "--compare",
        str(untrained_bundle),
        "--out",
        str(out),
        "--robustness-limit",
        "0",
    )
    assert result.returncode == 0, result.stderr
    evaluations = json.loads((out / "metrics.json").read_text())
    assert len(evaluations) == 2 and evaluations[1]["bundle_path"] == str(untrained_bundle)
    assert evaluations[0]["metrics"]["auroc"] == evaluations[1]["metrics"]["auroc"]  # same weights
    assert evaluations[0]["compared_with_first"] is None
    comparison = evaluations[1]["compared_with_first"]
    assert comparison["auroc_difference"] == 0 and comparison["auroc_difference_interval"] == [0, 0]
    assert comparison["n"] == evaluations[0]["metrics"]["n"]
    assert "the draw of images could explain it" in result.stdout
    assert set(comparison["by_source"]) == {"dcgan", "nasa"}
    assert all(row["auroc_difference"] == 0 for row in comparison["by_source"].values())
    page = (out / "report.html").read_text()
    assert page.count("test-untrained@0.1.0") >= 2
    # both bundles are named test-untrained@0.1.0, so each is labelled with its path too
    assert f'<p class="comparison">test-untrained@0.1.0 ({untrained_bundle}): AUROC +0.0000' in page
    assert 'id="comparison-table"' in page
    assert f"<dt>bundle</dt><dd>test-untrained@0.1.0 ({bundle})</dd>" in page  # path said once
    # the other bundle's cut and per-class rates are there too, and what is the first's alone
    # says so: the page had named one threshold and one per-class table, whose unsaid
    assert (
        f"<dt>compared with</dt><dd>test-untrained@0.1.0 ({untrained_bundle}): P(ai) ≥ 0.5000 "
        'is called AI; 0.350 to 0.650 is answered "uncertain"</dd>'
    ) in page
    per_class = page[page.index('id="per-class-table"') :]
    per_class = per_class[: per_class.index("</table>")]
    for path in (bundle, untrained_bundle):
        assert per_class.count(f"<tr><td>test-untrained@0.1.0 ({path})</td>") == 2
    assert f"<h2>Per source of test-untrained@0.1.0 ({bundle})</h2>" in page
    (tmp_path / "link").symlink_to(bundle)
    for again in (str(bundle), str(tmp_path / "link")):  # an AUROC difference of 0, refused
        twice = facetell("evaluate", str(bundle), str(labelled), "--compare", str(untrained_bundle),
                         "--compare", again, "--out", str(tmp_path / "twice"))  # fmt: skip
        said = "given twice" if again == str(bundle) else f"the same bundle as {bundle}"
        assert (twice.returncode, twice.stderr.strip()) == (
            2,
            f"error: {again}: {said}; --compare another one",
        )
    assert not (tmp_path / "twice").exists()  # refused before anything was written


def test_two_runs_of_one_recipe_are_told_apart_by_their_paths(bundle, labelled, tmp_path):
    copy = tmp_path / "retrained"
    shutil.copytree(bundle, copy)
    out = tmp_path / "compare"
    result = facetell("evaluate", str(bundle), str(labelled), "--compare", str(copy), "--out",
                      str(out), "--robustness-limit", "0", "--resamples", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, second = json.loads((out / "metrics.json").read_text())
    assert first["bundle"] == f"{first['bundle'].split(' (')[0]} ({bundle})"
    assert second["bundle"].endswith(f"({copy})")
    assert second["compared_with_first"]["against"] == first["bundle"]
    assert second["compared_with_first"]["auroc_difference_interval"] is None  # --resamples 0
    assert f"({copy}): AUROC +0.0000 against" in result.stdout


def test_calibrate_replaces_a_bundle_in_out_only_when_asked_and_keeps_none_of_its_files(
    bundle, labelled, tmp_path
):
    """Calibrating again into the same --out was refused with no way but deleting it; the
    earlier bundle's card and familiarity reference must not outlive it there."""
    out = tmp_path / "mine"
    shutil.copytree(bundle, out)
    (out / "MODEL_CARD.md").write_text("# another model\n")
    (out / "reference.safetensors").write_bytes(b"another model's faces")
    args = ["calibrate", str(bundle), str(labelled), "-o", str(out), "--no-size-correction",
            "--no-familiarity"]  # fmt: skip
    refused = facetell(*args)
    assert (refused.returncode, refused.stderr) == (
        2,
        f"error: {out}: holds a model bundle already; --overwrite replaces it, or give another "
        "--out\n",
    )
    assert (out / "MODEL_CARD.md").exists()
    replaced = facetell(*args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert {path.name for path in out.iterdir()} == {
        "calibration.json",  # the fixture's bundle may hold one from an earlier test
        *(path.name for path in bundle.iterdir() if path.is_file()),
    }
    assert Detector.load(out).calibration.fitted


def test_an_infinite_tempering_setting_is_a_usage_error(bundle, labelled):
    """--temper-slope inf met a novelty at the start as inf x 0: NaN, and scikit-learn's
    traceback after every image was scored."""
    for option in ("--temper-slope", "--temper-start"):
        run = facetell("calibrate", str(bundle), str(labelled), option, "inf")
        assert run.returncode == 2 and "Traceback" not in run.stderr
        assert run.stderr.startswith(f"error: Invalid value for '{option}'")
