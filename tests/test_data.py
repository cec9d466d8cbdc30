"""Datasets: discovery from common layouts, per-file facts, duplicates and leak-free splits."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli, smooth_photo
from facetell.data import (
    FileRecord,
    SplitFile,
    build_manifest,
    discover,
    duplicate_groups,
    kfold_splits,
    leave_one_source_out,
    read_manifest,
    stratified_split,
    write_manifest,
)
from facetell.errors import DatasetError


def write_images(folder: Path, n: int, seed: int, fmt: str = "JPEG", size: int = 64) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"JPEG": ".jpg", "PNG": ".png"}[fmt]
    for i in range(n):
        smooth_photo(seed * 1000 + i, size).save(folder / f"{i:03d}{suffix}", format=fmt)


def refusal(*roots: str | Path) -> str:
    """The one line `discover` refuses these datasets with."""
    with pytest.raises(DatasetError) as refused:
        discover(roots)
    return str(refused.value)


@pytest.mark.parametrize(
    ("real_dir", "ai_dir"),
    [
        ("real", "ai"),
        ("Real", "Fake"),
        ("0_real", "1_fake"),
        ("REAL", "synthetic"),
        ("real", "generated"),
        ("nature", "ai"),
        ("training_real", "training_fake"),
        ("Real Faces", "Fake Faces"),  # words around the class had made no class folder
        ("real_images", "AI-generated"),
    ],
)
def test_label_folders_are_recognised_in_any_common_spelling(tmp_path, real_dir, ai_dir):
    write_images(tmp_path / real_dir, 2, seed=1)
    write_images(tmp_path / ai_dir, 3, seed=2)
    (tmp_path / "README.md").write_text("not an image")
    labels = Counter(sample.label for sample in discover([tmp_path]))
    assert labels == {"real": 2, "ai": 3}


def test_a_folder_name_of_both_classes_or_a_number_is_no_class_folder(tmp_path):
    """140k Real and Fake Faces keeps its classes under real_vs_fake/: that folder is neither
    class, nor is images_1/ (a batch), so the class folders below them count."""
    write_images(tmp_path / "real_vs_fake" / "train" / "real" / "images_1", 2, seed=1)
    write_images(tmp_path / "real_vs_fake" / "train" / "fake faces" / "images_0", 3, seed=2)
    found = {(s.label, s.source, s.split) for s in discover([tmp_path])}
    assert found == {("real", "images_1", "train"), ("ai", "images_0", "train")}


def test_a_class_folder_given_itself_is_read_as_its_class(tmp_path, monkeypatch):
    """`evaluate default my_photos/real` (a platform's own photos, a class folder alone) was
    refused as holding no labelled images; its images are read as they are when my_photos/
    is given, and a folder only named like a class, holding class folders, stays a dataset."""
    write_images(tmp_path / "faces" / "real" / "phones", 2, seed=1)
    write_images(tmp_path / "faces" / "real", 1, seed=2)
    write_images(tmp_path / "faces" / "Fake Images", 2, seed=3)
    whole = {s.path: s for s in discover([tmp_path / "faces"])}
    for folder in (tmp_path / "faces" / "real", tmp_path / "faces" / "Fake Images"):
        samples = discover([folder])
        assert samples == [whole[sample.path] for sample in samples]
        assert len(samples) == sum(path.is_relative_to(folder) for path in whole)
    assert {s.source for s in discover([tmp_path / "faces" / "real"])} == {"phones", "faces-real"}
    monkeypatch.chdir(tmp_path / "faces" / "real")
    assert Counter(s.label for s in discover(["."])) == {"real": 3}
    write_images(tmp_path / "generated" / "real", 1, seed=4)  # named like a class, holding them
    write_images(tmp_path / "generated" / "ai", 1, seed=5)
    write_images(tmp_path / "generated" / "unsorted", 1, seed=6)
    skipped: list[Path] = []
    found = discover([tmp_path / "generated"], skipped)
    assert Counter(s.label for s in found) == {"real": 1, "ai": 1}
    assert skipped == [tmp_path / "generated" / "unsorted" / "000.jpg"]


def test_split_level_and_nested_sources_are_read_from_the_path(tmp_path):
    write_images(tmp_path / "train" / "fake" / "stylegan", 2, seed=1)
    write_images(tmp_path / "val" / "fake" / "sdxl" / "batch1", 1, seed=2)
    write_images(tmp_path / "real" / "test" / "phones", 1, seed=3)
    found = {(s.label, s.source, s.split) for s in discover([tmp_path])}
    assert found == {
        ("ai", "stylegan", "train"),
        ("ai", "sdxl/batch1", "val"),
        ("real", "phones", "test"),
    }


def test_folders_above_the_label_name_the_source_when_none_are_below_it(tmp_path):
    """GenImage keeps each generator's images of both classes under its own folder: all of
    them had been one source named after the root, so no generator could be held out."""
    write_images(tmp_path / "GenImage" / "sdv4" / "train" / "ai", 2, seed=1)
    write_images(tmp_path / "GenImage" / "sdv4" / "train" / "nature", 1, seed=2)
    write_images(tmp_path / "GenImage" / "midjourney" / "val" / "ai", 1, seed=3)
    write_images(tmp_path / "GenImage" / "midjourney" / "val" / "nature", 1, seed=4)
    write_images(tmp_path / "cnndetection" / "progan" / "airplane" / "1_fake", 1, seed=5)
    write_images(tmp_path / "flat" / "real", 1, seed=6)  # nothing above or below: the root's
    write_images(tmp_path / "kaggle" / "test" / "ai", 1, seed=7)  # its test/ given alone
    roots = ["GenImage", "cnndetection", "flat", "kaggle/test"]
    found = Counter((s.label, s.source, s.split) for s in discover(tmp_path / r for r in roots))
    assert found == {
        ("ai", "sdv4-ai", "train"): 2,
        ("real", "sdv4-real", "train"): 1,
        ("ai", "midjourney-ai", "val"): 1,
        ("real", "midjourney-real", "val"): 1,
        ("ai", "progan/airplane-ai", None): 1,
        ("real", "flat-real", None): 1,
        ("ai", "kaggle-ai", None): 1,  # as when all of kaggle/ is read
    }


def test_a_source_name_both_classes_use_becomes_one_per_class(tmp_path):
    """real/celeba/ beside ai/celeba/ (fakes made from it) had been one source: evaluate's
    per-source row counted both classes, calling half its "real" faces AI."""
    write_images(tmp_path / "faces" / "real" / "celeba", 2, seed=1)
    write_images(tmp_path / "faces" / "ai" / "celeba", 1, seed=2)
    write_images(tmp_path / "faces" / "ai" / "sdxl", 1, seed=3)
    write_images(tmp_path / "mine", 2, seed=4)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,source\nmine/000.jpg,ai,mine\nmine/001.jpg,real,mine\n")
    found = Counter((s.label, s.source) for s in discover([tmp_path / "faces", manifest]))
    assert found == {
        ("real", "celeba-real"): 2,
        ("ai", "celeba-ai"): 1,
        ("ai", "sdxl"): 1,
        ("ai", "mine-ai"): 1,
        ("real", "mine-real"): 1,
    }


def test_manifest_csv_paths_are_relative_to_the_csv(tmp_path):
    write_images(tmp_path / "imgs", 2, seed=1)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,source\nimgs/000.jpg,Fake,gen-x\nimgs/001.jpg,real,\n")
    samples = discover([manifest])
    assert [(s.path, s.label, s.source) for s in samples] == [
        (tmp_path / "imgs/000.jpg", "ai", "gen-x"),
        (tmp_path / "imgs/001.jpg", "real", "real"),
    ]


def test_a_manifest_written_on_windows_with_a_split_column_reads_here(tmp_path):
    write_images(tmp_path / "imgs" / "sub", 3, seed=1)
    manifest = tmp_path / "list.csv"
    manifest.write_bytes(
        b"path,label,source,split\r\nimgs\\sub\\000.jpg,ai,gen,Training\r\n"
        b"imgs\\sub\\001.jpg,real,cam,valid\r\nimgs/sub/002.jpg,real,cam,\r\n"
    )
    samples = discover([manifest])
    assert [(s.path, s.split) for s in samples] == [
        (tmp_path / "imgs/sub/000.jpg", "train"),
        (tmp_path / "imgs/sub/001.jpg", "val"),
        (tmp_path / "imgs/sub/002.jpg", None),
    ]
    assert all(sample.path.is_file() for sample in samples)


def test_a_split_value_that_names_no_part_is_refused_not_trained_on(tmp_path):
    """ "holdout" (or any word not a split) read as no part: the images meant for testing were
    drawn into training. "dev" is validation."""
    write_images(tmp_path / "imgs", 2, seed=1)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,split\nimgs/000.jpg,ai,dev\nimgs/001.jpg,real,holdout\n")
    assert refusal(manifest) == (
        f"{manifest}:3: split 'holdout' is none of train, val, test (train, training, val, "
        "valid, validation, dev, test, testing); leave it empty for an image of no part"
    )
    manifest.write_text("path,label,split\nimgs/000.jpg,ai,dev\nimgs/001.jpg,real,\n")
    assert [s.split for s in discover([manifest])] == ["val", None]


def test_a_manifest_a_spreadsheet_saved_reads_as_the_plain_one(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark and keeps `Path,Label` capitalised;
    where the decimal mark is a comma it separates columns with semicolons; its "Unicode
    Text" and PowerShell 5 write UTF-16. Each was refused as lacking the path and label
    columns, and a .tsv was "a file, not a dataset"."""
    write_images(tmp_path / "imgs", 2, seed=1)
    rows = [("Path", "Label", "Source"), ("imgs/000.jpg", "Fake", "gen-x")]
    rows.append(("imgs/001.jpg", "real", "cam"))
    plain = [(tmp_path / "imgs/000.jpg", "ai", "gen-x"), (tmp_path / "imgs/001.jpg", "real", "cam")]
    for name, separator, start in [
        ("excel.csv", ",", "\ufeff"),
        ("europe.csv", ";", "\ufeff"),
        ("spaced.csv", ", ", ""),
        ("sheet.tsv", "\t", ""),
        ("unicode-text.tsv", "\t", "utf-16"),  # Excel's "Unicode Text"
        ("powershell.csv", ",", "utf-16-be"),
    ]:
        manifest = tmp_path / name
        text = "\r\n".join(separator.join(row) for row in rows) + "\r\n"
        if start.startswith("utf-16"):  # with its byte-order mark, as Windows writes it
            mark = "\ufeff" if start == "utf-16-be" else ""
            manifest.write_bytes((mark + text).encode(start))
        else:
            manifest.write_text(start + text, encoding="utf-8")
        assert [(s.path, s.label, s.source) for s in discover([manifest])] == plain, name


def test_a_manifest_row_without_a_path_is_named_not_read_as_the_folder(tmp_path):
    """`,real` read as the path "." and reached the audit as "is a folder, not an image file"."""
    write_images(tmp_path / "imgs", 1, seed=1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nimgs/000.jpg,ai\n ,real\n")
    with pytest.raises(DatasetError, match=r"m.csv:3: the row names no path$"):
        discover([manifest])


def test_a_saved_manifest_keeps_the_split_the_folders_gave(tmp_path):
    """`audit --save-manifest` dropped the train/ test/ folders' split, so a run from the saved
    manifest drew a split of its own over the images set aside for testing."""
    write_images(tmp_path / "data" / "train" / "real", 2, seed=1)
    write_images(tmp_path / "data" / "test" / "ai", 2, seed=2)
    manifest = tmp_path / "saved.csv"
    write_manifest(build_manifest(discover([tmp_path / "data"]), workers=1), manifest)
    assert sorted((s.path.parts[-3], s.split) for s in read_manifest(manifest)) == [
        ("test", "test"),
        ("test", "test"),
        ("train", "train"),
        ("train", "train"),
    ]


def test_unlabelled_folder_and_bad_labels_give_clear_errors(tmp_path):
    write_images(tmp_path / "pictures", 1, seed=1)
    with pytest.raises(DatasetError, match="found no labelled images"):
        discover([tmp_path])
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\npictures/000.jpg,maybe\n")
    with pytest.raises(DatasetError, match=r"m.csv:2: label 'maybe' is neither real nor ai"):
        discover([manifest])
    manifest.write_text("path,label\n")  # a header alone read as 0 images and a blank table
    with pytest.raises(DatasetError, match=r"m.csv: the manifest has no rows below its header$"):
        discover([manifest])


def test_manifest_describes_each_file_and_keeps_bad_ones_as_errors(tmp_path):
    write_images(tmp_path / "real", 2, seed=1)
    smooth_photo(5, 80).save(tmp_path / "real" / "q60.jpg", quality=60)
    (tmp_path / "real" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    records = {Path(r.path).name: r for r in build_manifest(discover([tmp_path]), workers=1)}
    assert records["broken.jpg"].error and "broken.jpg" in records["broken.jpg"].error
    q60 = records["q60.jpg"]
    assert (q60.width, q60.height, q60.format, q60.jpeg_quality) == (80, 80, "JPEG", 60)
    assert q60.n_bytes == (tmp_path / "real" / "q60.jpg").stat().st_size
    assert len({r.sha256 for r in records.values() if not r.error}) == 3


def test_a_file_name_that_is_not_utf8_round_trips_through_a_manifest(tmp_path):
    """A Latin-1 archive's "José.jpg" is the bytes 4a 6f 73 e9: the saved manifest names that
    very file, so it can be read back and trained on."""
    write_images(tmp_path / "data" / "real", 1, seed=1)
    (tmp_path / "data" / "real" / "000.jpg").rename(
        tmp_path / "data" / "real" / os.fsdecode(b"Jos\xe9.jpg")
    )
    write_images(tmp_path / "data" / "ai", 1, seed=2)
    manifest = tmp_path / "data" / "manifest.csv"
    write_manifest(build_manifest(discover([tmp_path / "data"]), workers=1), manifest)
    assert b"real/Jos\xe9.jpg" in manifest.read_bytes()
    [real] = [sample for sample in read_manifest(manifest) if sample.label == "real"]
    assert real.path == tmp_path / "data" / "real" / os.fsdecode(b"Jos\xe9.jpg")
    assert real.path.is_file()


def test_exact_and_reencoded_copies_share_a_group_distinct_photos_do_not(tmp_path):
    folder = tmp_path / "real"
    write_images(folder, 6, seed=7, size=128)
    original = folder / "000.jpg"
    (folder / "copy.jpg").write_bytes(original.read_bytes())
    from PIL import Image

    with Image.open(original) as image:
        image.resize((64, 64)).save(folder / "small_q50.jpg", quality=50)
    records = build_manifest(discover([tmp_path]), workers=1)
    groups = duplicate_groups(records)
    by_name = {Path(r.path).name: g for r, g in zip(records, groups, strict=True)}
    assert by_name["000.jpg"] == by_name["copy.jpg"] == by_name["small_q50.jpg"]
    assert len(set(groups)) == 6


def _records(labels, sources):
    return [
        FileRecord(path=f"/x/{i}.jpg", label=lab, source=src)
        for i, (lab, src) in enumerate(zip(labels, sources, strict=True))
    ]


def test_stratified_split_follows_the_fractions_within_each_source():
    labels = ["real"] * 600 + ["ai"] * 400
    sources = ["a"] * 300 + ["b"] * 300 + ["c"] * 400
    groups = np.arange(1000)
    assignment = stratified_split(labels, sources, groups, fractions=(0.6, 0.2, 0.2), seed=3)
    for source in "abc":
        counts = Counter(s for s, src in zip(assignment, sources, strict=True) if src == source)
        total = sum(counts.values())
        assert abs(counts["train"] / total - 0.6) < 0.02
        assert abs(counts["test"] / total - 0.2) < 0.02
    assert assignment == stratified_split(
        labels, sources, groups, fractions=(0.6, 0.2, 0.2), seed=3
    )
    assert assignment != stratified_split(
        labels, sources, groups, fractions=(0.6, 0.2, 0.2), seed=4
    )


def test_leave_one_source_out_puts_the_whole_source_in_test_only():
    labels = ["real"] * 100 + ["ai"] * 100
    sources = ["r"] * 100 + ["g1"] * 50 + ["g2"] * 50
    groups = np.arange(200)
    groups[0] = groups[150]  # a real image duplicated into the held-out source
    assignment = leave_one_source_out(labels, sources, groups, "g2", seed=0)
    assert {a for a, s in zip(assignment, sources, strict=True) if s == "g2"} == {"test"}
    assert assignment[0] == "test"
    assert {"train", "val", "test"} <= {
        a for a, s in zip(assignment, sources, strict=True) if s == "g1"
    }
    with pytest.raises(DatasetError) as caught:  # `train` prints it as one line
        leave_one_source_out(labels, sources, groups, "nope")
    assert str(caught.value) == "hold-out source 'nope' is not in the data (its sources: g1, g2, r)"
    with pytest.raises(DatasetError) as caught:  # had cut every face, then found no AI to train
        leave_one_source_out(labels, ["r"] * 100 + ["g1"] * 100, groups, "g1")
    assert str(caught.value) == (
        "hold-out source 'g1' is the data's only AI source: no AI image would be left to train "
        "on (hold out a source of a class that has two or more)"
    )
    with pytest.raises(DatasetError) as caught:  # scikit-learn's ValueError was a traceback
        kfold_splits(labels, sources, groups % 7, k=10)
    assert str(caught.value) == (
        "10 folds: the data has only 7 images that are not near-duplicates of each other, and "
        "each fold needs one (use fewer folds)"
    )


def test_split_file_round_trips_exactly(tmp_path):
    labels, sources = ["real", "ai"] * 10, ["r", "g"] * 10
    records = _records(labels, sources)
    groups = np.arange(20)
    assignment = stratified_split(labels, sources, groups, seed=1)
    split = SplitFile.from_assignment(
        "stratified", 1, {"fractions": [0.7, 0.15, 0.15]}, records, groups, assignment
    )
    split.save(tmp_path / "split.json")
    again = SplitFile.load(tmp_path / "split.json")
    assert again == split
    lines = (tmp_path / "split.json").read_text().splitlines()
    assert len(lines) == len(split.rows) + 2  # one row per line, the shape shipped with a bundle
    assert [str(s.path) for s in again.samples("test")] == [
        r.path for r, a in zip(records, assignment, strict=True) if a == "test"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xd8\xff\xe0 a JPEG", "not a split file"),
        (b'{"rows": []}', "not a split file"),
        (b"[1, 2]", "not a split file"),
        (None, "cannot read the split file (No such file or directory)"),
    ],
)
def test_a_file_that_is_not_a_split_is_one_line(tmp_path, content, expected):
    path = tmp_path / "split.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError) as caught:
        SplitFile.load(path)
    assert str(caught.value).startswith(f"{path}: {expected}") and "\n" not in str(caught.value)


def _groups_cross_splits(groups, assignment) -> bool:
    sides = defaultdict(set)
    for group, side in zip(groups, assignment, strict=True):
        sides[int(group)].add(side)
    return any(len(s) > 1 for s in sides.values())


dataset = st.integers(min_value=12, max_value=120).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(["real", "ai"]), min_size=n, max_size=n),
        st.lists(st.sampled_from(["s1", "s2", "s3"]), min_size=n, max_size=n),
        st.lists(st.integers(min_value=0, max_value=n // 2), min_size=n, max_size=n),
        st.integers(min_value=0, max_value=2**16),
    )
)


@settings(max_examples=150, deadline=None)
@given(dataset)
def test_no_duplicate_group_ever_crosses_a_split(data):
    labels, sources, raw_groups, seed = data
    groups = np.asarray(raw_groups)
    assert not _groups_cross_splits(groups, stratified_split(labels, sources, groups, seed=seed))
    held = sources[0]  # unless it is the only source of a class it holds, which is refused
    pairs = list(zip(labels, sources, strict=True))
    classes = {label for label, source in pairs if source == held}
    if all(any(s != held for label, s in pairs if label == c) for c in classes):
        assignment = leave_one_source_out(labels, sources, groups, held, seed=seed)
        assert not _groups_cross_splits(groups, assignment)
    if len(set(raw_groups)) >= 3:
        for assignment in kfold_splits(labels, sources, groups, k=3, seed=seed):
            assert not _groups_cross_splits(groups, assignment)


def test_a_split_file_finds_its_images_from_any_folder(tmp_path, monkeypatch):
    """Split paths are as `facetell train` was given them, from the folder it ran in: read
    from anywhere else, `evaluate --split-file` found none of its images ("no image could be
    scored")."""
    project = tmp_path / "project"
    write_images(project / "data" / "real", 2, seed=1)
    rows = [
        {"path": f"data/real/00{i}.jpg", "label": "real", "source": "cam", "group": i,
         "split": "test"}
        for i in range(2)
    ]  # fmt: skip
    split_path = project / "runs" / "a" / "split.json"
    SplitFile(kind="stratified", seed=0, params={}, rows=rows).save(split_path)
    assert "root" not in json.loads(split_path.read_text())  # the file itself is unchanged
    monkeypatch.chdir(project)  # where train ran: the paths stay exactly as written
    assert [str(s.path) for s in SplitFile.load(split_path).samples("test")] == [
        "data/real/000.jpg",
        "data/real/001.jpg",
    ]
    monkeypatch.chdir(tmp_path)
    found = SplitFile.load(Path("project/runs/a/split.json")).samples("test")
    assert [s.path.resolve() for s in found] == [
        (project / "data" / "real" / f"00{i}.jpg").resolve() for i in range(2)
    ]
    assert all(s.path.is_file() for s in found)


def test_one_dataset_given_twice_is_refused_not_counted_twice(tmp_path):
    """`--data faces --data ./faces/` (or faces/ and faces/extra/) read images twice: twice in
    each number, twice the weight in training."""
    write_images(tmp_path / "faces" / "real", 2, seed=1)
    write_images(tmp_path / "faces" / "ai", 2, seed=2)
    (tmp_path / "link").symlink_to(tmp_path / "faces")
    with pytest.raises(DatasetError, match=r"faces: given twice; give each dataset once$"):
        discover([tmp_path / "faces", f"{tmp_path}/faces/"])
    assert refusal(tmp_path / "faces", tmp_path / "link") == (
        f"{tmp_path / 'link'}: the same dataset as {tmp_path / 'faces'}, given before it; give "
        "it once"
    )
    write_images(tmp_path / "faces" / "extra" / "ai", 2, seed=3)
    # faces/ read whole takes extra/ in already
    assert refusal(tmp_path / "faces" / "extra", tmp_path / "faces") == (
        f"{tmp_path / 'faces' / 'extra'}: inside {tmp_path / 'faces'}, which is read whole; give "
        f"{tmp_path / 'faces'} alone, or each of its folders you mean"
    )
    audit = run_cli("audit", "faces", "link", cwd=tmp_path)
    assert (audit.returncode, audit.stderr.decode()) == (
        2,
        "error: link: the same dataset as faces, given before it; give it once\n",
    )


def test_an_image_listed_twice_is_refused_with_both_places(tmp_path):
    """A manifest row repeating an image (under one label or both), or a manifest naming
    images of a folder given beside it, counted the image twice in every number."""
    write_images(tmp_path / "faces" / "real", 2, seed=1)
    write_images(tmp_path / "faces" / "ai", 2, seed=2)
    manifest = tmp_path / "more.csv"
    manifest.write_text(
        "path,label\nfaces/real/000.jpg,real\n\nfaces/real/001.jpg,real\n./faces/real/000.jpg,ai\n"
    )
    assert refusal(manifest) == (
        f"{manifest}:5: ./faces/real/000.jpg is listed again (first on line 2); list each image "
        "once, under its true label"
    )
    manifest.write_text("path,label\nfaces/ai/001.jpg,ai\n")
    assert refusal(tmp_path / "faces", manifest) == (
        f"{tmp_path / 'faces' / 'ai' / '001.jpg'}: given by {tmp_path / 'faces'} and again by "
        f"{manifest}; give each image once, so it is not counted twice"
    )
    write_images(tmp_path / "other" / "ai", 1, seed=3)
    manifest.write_text("path,label\nother/ai/000.jpg,ai\n")
    assert len(discover([tmp_path / "faces", manifest])) == 5
