"""The bias audit finds the shortcuts that are planted, and stays quiet when there are none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import smooth_photo
from facetell.audit import audit
from facetell.data import build_manifest, discover, duplicate_groups
from facetell.errors import ImageTooLarge
from facetell.io import decode


def make_dataset(root: Path, *, confounded: bool, n: int = 30) -> None:
    """Real and AI folders; `confounded` gives each class its own size and format."""
    (root / "real" / "cam").mkdir(parents=True)
    (root / "ai" / "gen").mkdir(parents=True)
    for i in range(n):
        smooth_photo(i, 120).save(root / "real" / "cam" / f"{i}.jpg", quality=75)
        fake = smooth_photo(10_000 + i, 64 if confounded else 120)
        if confounded:
            fake.save(root / "ai" / "gen" / f"{i}.png")
        else:
            fake.save(root / "ai" / "gen" / f"{i}.jpg", quality=75)


def run_audit(root: Path):
    records = build_manifest(discover([root]), workers=1)
    return audit(records, duplicate_groups(records))


def test_planted_size_and_format_shortcut_is_flagged(tmp_path):
    make_dataset(tmp_path, confounded=True)
    report = run_audit(tmp_path)
    assert report.shortcut_score > 0.95
    assert any("shortcut score" in w for w in report.warnings)
    ai = next(row for row in report.by_source if row.source == "gen")
    assert ai.formats == {"PNG": 30} and ai.median_width == 64
    assert ai.jpeg_quality_median is None
    real = next(row for row in report.by_source if row.source == "cam")
    assert real.jpeg_quality_median == 75


def test_the_table_keeps_every_fact_whole_in_a_narrower_terminal(tmp_path):
    """Squeezed into 120 columns the one wide table had cut its cells ("64-5…", "(75-…"); a
    terminal narrower than the table gets it as two tables instead."""
    make_dataset(tmp_path, confounded=True, n=12)
    command = [sys.executable, "-m", "facetell", "audit", str(tmp_path)]
    tables = {}
    for columns in ("100", "250"):
        env = {**os.environ, "COLUMNS": columns}
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0, run.stderr
        tables[columns] = run.stdout
    assert tables["250"].count("facetell audit") == 1  # wide enough for one table
    assert tables["100"].count("facetell audit") == 2
    for shown in tables.values():
        assert "…" not in shown
        assert "120-120 (1 size)" in shown and "75 (75-75)" in shown and "dups in/x-class" in shown


def test_a_phone_photo_past_predicts_pixel_limit_is_part_of_the_data(tmp_path):
    """A 65 MP photo (a phone's 108 or 200 MP mode makes larger) had been left out of the
    user's own data as unreadable: predict's limit guards against strangers' files, not one's
    own. predict keeps its limit."""
    make_dataset(tmp_path, confounded=False, n=6)
    phone = tmp_path / "real" / "cam" / "phone.jpg"
    smooth_photo(99, 120).resize((8200, 8000)).save(phone, quality=90)
    report = run_audit(tmp_path)
    assert (report.n_images, report.n_unreadable) == (13, 0)
    with pytest.raises(ImageTooLarge, match="8200x8000 pixels is over the 64,000,000 pixel"):
        decode(phone)


def test_matched_classes_score_near_chance(tmp_path):
    make_dataset(tmp_path, confounded=False)
    report = run_audit(tmp_path)
    assert report.shortcut_score < 0.75
    assert not any("shortcut" in w for w in report.warnings)


def test_a_duplicate_across_classes_is_reported(tmp_path):
    make_dataset(tmp_path, confounded=False, n=10)
    copy = tmp_path / "ai" / "gen" / "stolen.jpg"
    copy.write_bytes((tmp_path / "real" / "cam" / "3.jpg").read_bytes())
    report = run_audit(tmp_path)
    assert len(report.cross_class_groups) == 1
    assert {Path(p).name for p in report.cross_class_groups[0]} == {"3.jpg", "stolen.jpg"}
    assert any("both real and ai" in w for w in report.warnings)


def test_a_class_of_fewer_originals_than_folds_gets_no_score_rather_than_a_crash(tmp_path):
    """Each class must span five groups of near-duplicates to cross-validate; with every image
    one group (--near-duplicate-bits 128) scikit-learn's ValueError ended the audit."""
    make_dataset(tmp_path, confounded=True, n=12)
    records = build_manifest(discover([tmp_path]), workers=1)
    report = audit(records, duplicate_groups(records, max_distance=128))
    assert report.shortcut_score is None
    assert [len(g) for g in report.cross_class_groups] == [24]
    run = subprocess.run(
        [sys.executable, "-m", "facetell", "audit", str(tmp_path), "--near-duplicate-bits", "129"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 2 and "129 is not in the range 0<=x<=128" in run.stderr


def test_a_manifest_the_disk_refuses_is_one_line_naming_it(tmp_path):
    """A full disk under --save-manifest ended the audit with OSError's traceback."""
    make_dataset(tmp_path, confounded=False, n=6)
    command = [sys.executable, "-m", "facetell", "audit", str(tmp_path)]
    run = subprocess.run([*command, "--save-manifest", "/dev/full"], capture_output=True, text=True)
    assert (run.returncode, run.stderr.strip().splitlines()[-1]) == (
        2,
        "error: /dev/full: cannot write (no space left on device); free space or write elsewhere",
    )


def test_cli_json_output_carries_the_shortcut_score(tmp_path):
    make_dataset(tmp_path, confounded=True, n=12)
    result = subprocess.run(
        [sys.executable, "-m", "facetell", "audit", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["shortcut_score"] > 0.9
    assert {row["source"] for row in report["by_source"]} == {"cam", "gen"}
    assert "warning: shortcut score" in result.stderr


def test_cli_names_the_files_it_leaves_out(tmp_path):
    """A dataset folder that gives fewer images than it holds says which and why: a link whose
    target is gone, and an image in no class folder, had been left out without a word."""
    make_dataset(tmp_path, confounded=False, n=6)
    (tmp_path / "real" / "cam" / "DSC_0001.nef").write_bytes(b"MM\x00*" + bytes(64))
    (tmp_path / "ai" / "gen" / "prompt.txt").write_text("a portrait, 85 mm")
    (tmp_path / "ai" / "gen" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))
    (tmp_path / "real" / "cam" / "moved.jpg").symlink_to(tmp_path / "library" / "moved.jpg")
    (tmp_path / "unsorted").mkdir()  # in no class folder
    smooth_photo(7, 120).save(tmp_path / "unsorted" / "maybe.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "facetell", "audit", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert (report["n_images"], report["n_unreadable"]) == (13, 1)
    [error] = report["unreadable"]
    assert error.startswith(f"{tmp_path / 'ai' / 'gen' / 'cut.jpg'}: ")
    assert (  # which file, and why: the warning had given a count alone
        f"warning: 1 file(s) could not be read and were left out: {error}"
    ) in result.stderr.splitlines()
    assert [line for line in result.stderr.splitlines() if line.startswith("note:")] == [
        "note: skipped 1 link(s) in the folders given whose target is gone: moved.jpg (restore "
        "their targets to use them)",
        "note: skipped 1 image(s) in no class folder (real/ or ai/, or fake/, 0_real/, 1_fake/, "
        "…): unsorted/maybe.jpg (move them into one to use them)",
        "note: skipped 1 camera RAW file(s) in the folders given: DSC_0001.nef (export them as "
        "JPEG to use them)",
        "note: skipped 1 file(s) in the folders given that are in no format facetell reads "
        "(JPEG, PNG, WebP, HEIC, AVIF, BMP, TIFF or GIF): prompt.txt",
    ]


def test_a_shortcut_score_too_few_images_allow_says_why_it_is_missing(tmp_path):
    """3 images a class cannot be cross-validated in 5 folds; a bare "-" had said nothing."""
    make_dataset(tmp_path, confounded=True, n=3)
    result = subprocess.run(
        [sys.executable, "-m", "facetell", "audit", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "Shortcut score (cross-validated AUROC from metadata alone): - (it needs 5 distinct "
        "images of each class, near-duplicates counted once)"
    ) in " ".join(result.stdout.split())


def test_a_saved_manifest_reads_back_wherever_it_was_saved(tmp_path):
    """`audit data --save-manifest reports/m.csv` wrote data/… paths, which a manifest reads
    relative to its own folder: reports/data/…, none of which exists."""
    make_dataset(tmp_path / "data", confounded=False, n=4)

    def audit_json(*args: str) -> dict:
        run = subprocess.run([sys.executable, "-m", "facetell", "audit", *args, "--format", "json"],
                             capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
        return json.loads(run.stdout)

    first = audit_json("data", "--save-manifest", "reports/m.csv")
    again = audit_json("reports/m.csv")
    assert (first["n_images"], first["n_unreadable"]) == (8, 0)
    assert (again["n_images"], again["n_unreadable"]) == (8, 0)


def test_a_manifest_is_never_saved_over_an_image_or_the_manifest_audited(tmp_path):
    """`--save-manifest photo.jpg` replaced the photo with CSV, and `audit m.csv
    --save-manifest m.csv` the user's manifest with the audit's."""
    make_dataset(tmp_path / "data", confounded=False, n=4)
    photo = next((tmp_path / "data").rglob("*.jpg"))
    kept = photo.read_bytes()
    command = [sys.executable, "-m", "facetell", "audit"]
    subprocess.run([*command, "data", "--save-manifest", "m.csv"], cwd=tmp_path, check=True)
    manifest = (tmp_path / "m.csv").read_bytes()
    for data, target, what in (("data", str(photo), "an image"), ("m.csv", "m.csv", "an input")):
        run = subprocess.run([*command, data, "--save-manifest", target], cwd=tmp_path,
                             capture_output=True, text=True)  # fmt: skip
        assert (run.returncode, run.stderr) == (
            2,
            f"error: {target}: {what}; --save-manifest there would overwrite it with the "
            "manifest (name a new file)\n",
        )
    assert photo.read_bytes() == kept and (tmp_path / "m.csv").read_bytes() == manifest


def test_an_image_on_both_sides_of_two_datasets_or_splits_is_named(tmp_path):
    """A test set that holds a training image flatters whatever is trained on the other."""
    make_dataset(tmp_path / "mine", confounded=False, n=6)
    make_dataset(tmp_path / "theirs", confounded=False, n=6)  # the same seeds: the same images
    for index in range(6, 12):  # and six of their own
        smooth_photo(500 + index, 120).save(tmp_path / "theirs" / "real" / "cam" / f"{index}.jpg")
    kaggle = tmp_path / "kaggle"
    for split, seeds in [("train", [0, 1, 2]), ("test", [2, 3])]:
        (kaggle / split / "real" / "cam").mkdir(parents=True)
        (kaggle / split / "ai" / "gen").mkdir(parents=True)
        for seed in seeds:
            smooth_photo(seed, 120).save(kaggle / split / "real" / "cam" / f"{seed}.jpg")
            smooth_photo(900 + 10 * seed, 120).save(kaggle / split / "ai" / "gen" / f"{seed}.jpg")

    def audited(*datasets: str) -> tuple[dict, list[str]]:
        run = subprocess.run([sys.executable, "-m", "facetell", "audit", *datasets, "-f", "json"],
                             capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
        return json.loads(run.stdout), run.stderr.splitlines()

    report, warnings = audited("mine", "theirs")
    assert len(report["cross_origin_groups"]) == 12  # every image of "mine" is also in "theirs"
    assert all({Path(path).parts[0] for path in group} == {"mine", "theirs"}
               for group in report["cross_origin_groups"])  # fmt: skip
    spanned = "warning: 12 duplicate group(s) span mine, theirs: the same or a near-identical"
    assert any(line.startswith(spanned) for line in warnings)
    report, warnings = audited("kaggle")
    assert sorted(sorted(group) for group in report["cross_origin_groups"]) == [
        ["kaggle/test/ai/gen/2.jpg", "kaggle/train/ai/gen/2.jpg"],
        ["kaggle/test/real/cam/2.jpg", "kaggle/train/real/cam/2.jpg"],
    ]
    assert any("span kaggle (test), kaggle (train)" in line for line in warnings)
    assert report["own_split"] == {"train": {"real": 3, "ai": 3}, "test": {"real": 2, "ai": 2}}
    assert audited("mine")[0]["cross_origin_groups"] == []  # duplicates within one side are not
    assert audited("mine")[0]["own_split"] == {}


def test_a_part_of_the_datas_own_split_without_one_class_is_warned_of(tmp_path):
    """train refuses a validation part without AI images; the audit is where to learn it."""
    for part, n_ai in (("train", 4), ("val", 0), ("test", 2)):
        make_dataset(tmp_path / "data" / part, confounded=False, n=4)
        for fake in sorted((tmp_path / "data" / part / "ai" / "gen").iterdir())[n_ai:]:
            fake.unlink()
    run = subprocess.run([sys.executable, "-m", "facetell", "audit", "data"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert (
        "The data's own split: train 4 real + 4 AI, val 4 real + 0 AI, test 4 real + 2 AI"
        in run.stdout.splitlines()
    )
    assert run.stderr.splitlines()[-1] == (  # after the duplicates the parts share
        "warning: the data's own val part holds no AI image: `facetell train` refuses it "
        "(validation needs both classes); add some, or take the part away to have it drawn from "
        "training"
    )


def test_cli_names_a_missing_folder_or_a_single_file_in_one_line(tmp_path):
    def audit_of(path: Path) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "facetell", "audit", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        return result.stderr.strip()

    assert (
        audit_of(tmp_path / "nope") == f"error: {tmp_path / 'nope'}: no such folder or manifest CSV"
    )
    photo = tmp_path / "photo.jpg"
    smooth_photo(0, 64).save(photo)
    notes = tmp_path / "labels.txt"
    notes.write_text("a.jpg,real\n")
    assert audit_of(photo) == (
        f"error: {photo}: a file, not a dataset; give a folder of real/ and ai/ folders, or a "
        "manifest CSV (path,label); to judge this one image: facetell predict"
    )
    assert audit_of(notes).endswith("a file, not a dataset; give a folder of real/ and ai/ "
                                     "folders, or a manifest CSV (path,label)")  # fmt: skip
    downloaded = shutil.make_archive(str(tmp_path / "faces"), "zip", tmp_path, "photo.jpg")
    assert audit_of(Path(downloaded)) == (
        f"error: {downloaded}: a ZIP archive, not a dataset folder; extract it and give the folder"
    )


def test_shared_faces_audit_shows_the_known_traps(shared_faces):
    records = build_manifest(discover([shared_faces]), workers=2)
    report = audit(records, duplicate_groups(records))
    assert report.n_images > 8000 and report.n_unreadable == 0
    assert report.shortcut_score > 0.9
    quality = {row.source: row.jpeg_quality_median for row in report.by_source}
    assert quality["utkface"] == 75 and quality["boredhumans"] == 90 and quality["sdxl"] == 95
    assert quality["dcgan-digiface"] is None  # PNG
    sizes = {row.source: row.median_width for row in report.by_source}
    assert sizes["dcgan-digiface"] == 64 and sizes["ffhq-1024"] == 1024
    assert np.isclose(sum(row.n for row in report.by_class), report.n_images)


def test_a_negative_seed_is_a_usage_error_not_numpys_traceback(tmp_path):
    make_dataset(tmp_path, confounded=True, n=6)
    command = [sys.executable, "-m", "facetell", "audit", str(tmp_path), "--seed", "-1"]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: Invalid value for '--seed'")
