"""How unfamiliar an unseen source's faces are to a model, next to how it scores them.

Leave-one-source-out runs show the classifier ranking an unseen generator's faces below FFHQ
photos (docs/results.md). This asks whether the model's own features at least know that those
faces are unlike anything it was trained on: a face's novelty is its mean cosine distance to the
k nearest training faces in the pooled backbone features (what the head reads). For each
hold-out run it prints, on the run's test split, the AUROC of novelty and of the classifier's
logit for the held-out source against the seen test faces of the other class (pooled and per
source), and what a "too unfamiliar" flag set at a quantile of the validation faces' novelty would
catch: the share of held-out faces flagged, of those the raw logit gets wrong (logit > 0 means
AI), and of seen test faces.

Crops come from the training crop cache (`facetell train` builds it), so the numbers are those
of the crops the run trained on. `--bank` keeps a seeded sample of the training faces, stored as
int8, to measure what a reference small enough to ship in a bundle loses. `--thumbnail 64`
also scores the test split's faces found in the hidden set's second copy (centre-cropped to
that many pixels, JPEG 85), against the reference of full-size training crops: a flag that
fires on every small copy of a familiar source would be of no use there.

A two-member ensemble is measured by joining its members' runs of the same hold-out with "+":
each face's feature is the members' unit features side by side, scaled so that a dot product is
the mean of the members' cosine similarities, and its logit is the mean of the members' logits.

Usage: python benchmarks/novelty.py RUN [RUN ...] [--k 10] [--bank 500] (0: every training face)
                                   [--thumbnail 64]
       (RUN: a hold-out run folder with bundle/, split.json and config.yaml, or several such
        folders of one hold-out joined by "+", e.g. runs/lite0/holdout-sdxl+runs/tight/holdout-sdxl)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from facetell.bundle import Bundle, has_embedding, load_bundle
from facetell.data import SplitFile, discover
from facetell.errors import BadImage
from facetell.evaluate import auroc, thumbnail_copy
from facetell.faces import main_face
from facetell.familiarity import Reference
from facetell.inference import Detector
from facetell.io import decode
from facetell.train.config import load_config
from facetell.train.crops import cached_crops

QUANTILES = (0.95, 0.98, 0.99)


def embed(bundle: Bundle, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings and raw logits of uint8 (N, H, W, 3) crops, from the torch model (a run's
    bundle may predate the ONNX export's embedding output)."""
    batch = torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        logits, embeddings = bundle.model.logit_and_embedding(bundle.normalise(batch))
    return embeddings.numpy(), logits.numpy()


def run_features(run: Path, batch: int = 128) -> tuple[np.ndarray, np.ndarray, SplitFile, Bundle]:
    """Unit-length pooled features and raw logits of every split row, in row order."""
    config = load_config(run / "config.yaml")
    samples = discover(config.data.paths)
    crops, _ = cached_crops(samples, config.crop, Path(config.cache_dir).expanduser())
    position = {str(sample.path): i for i, sample in enumerate(samples)}
    split = SplitFile.load(run / "split.json")
    rows = np.array([position[row["path"]] for row in split.rows])
    bundle = load_bundle(run / "bundle")
    if bundle.architecture == "ensemble" or not has_embedding(bundle.model):
        raise SystemExit(
            f"{run / 'bundle'}: {bundle.architecture} has no pooled features of one crop to "
            "compare (use the run of a single-backbone family such as efficientnet_lite0 or "
            'mobilenet_v2, and join the members of an ensemble with "+")'
        )
    parts = [
        embed(bundle, crops[rows[start : start + batch]]) for start in range(0, len(rows), batch)
    ]
    features, logits = (np.concatenate(column) for column in zip(*parts, strict=True))
    return features, logits, split, bundle


def thumbnail_features(
    bundle: Bundle, paths: list[str], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unit features and logit of each image's main face in its thumbnail copy (NaN: none)."""
    detector = Detector(bundle)
    shrink = thumbnail_copy(size, 85)
    features = np.full((len(paths), bundle.model.feature_dim), np.nan, dtype=np.float32)
    logits = np.full(len(paths), np.nan, dtype=np.float32)
    for index, path in enumerate(paths):
        try:
            image = shrink(decode(path).image)
        except BadImage:
            continue
        face = main_face(detector.face_detector.detect(image))
        if face is not None:
            embedding, logit = embed(bundle, detector.crop(image, face)[None])
            features[index], logits[index] = embedding[0], logit[0]
    return features, logits


def reference_bank(features: np.ndarray, size: int, k: int, seed: int = 0) -> Reference:
    """A seeded sample of the training rows stored as a bundle stores them (int8), or every
    row in float32 when `size` is 0."""
    if not size:
        return Reference(features, k=k)
    picked = np.random.default_rng(seed).choice(len(features), size, replace=False)
    return Reference.from_embeddings(features[picked], k=k)


def print_block(
    title: str,
    scores: np.ndarray,
    logits: np.ndarray,
    thresholds: dict[float, float],
    held: np.ndarray,
    others: np.ndarray,
    seen: np.ndarray,
    sources: np.ndarray,
    wrong: np.ndarray,
    held_is_ai: bool,
) -> None:
    """AUROCs of novelty and logit for held-out vs seen faces of the other class, and flags."""
    print(title)
    sign = 1.0 if held_is_ai else -1.0  # a held-out real source should score low P(ai)
    for name, values in (("novelty", scores), ("logit", sign * logits)):
        # each AUROC ranks the held-out faces (positives) against one set of the other class
        pairs = [f"all {auroc(held[held | others], values[held | others]):.3f}"]
        for source in sorted(set(sources[others])):
            pair = held | (others & (sources == source))
            pairs.append(f"{source} {auroc(held[pair], values[pair]):.3f}")
        print(f"  AUROC {name:8s} held-out vs seen {'real' if held_is_ai else 'AI'}: ", end="")
        print(", ".join(pairs))
    print_flags("val", scores, thresholds, held, seen, wrong)


def print_flags(
    fitted_on: str,
    scores: np.ndarray,
    thresholds: dict[float, float],
    held: np.ndarray,
    seen: np.ndarray,
    wrong: np.ndarray,
) -> None:
    """What a flag at each threshold marks: held-out faces, those of them the raw logit gets
    wrong, and seen test faces."""
    for quantile, threshold in thresholds.items():
        flagged = scores > threshold
        print(
            f"  flag at {fitted_on} q{quantile:.2f}: held-out flagged {flagged[held].mean():6.1%}, "
            f"its wrong answers ({wrong[held].mean():.1%} of it) flagged "
            f"{flagged[held & wrong].mean():6.1%}; seen test faces flagged "
            f"{flagged[seen].mean():5.1%}"
        )


def member_features(
    runs: list[Path],
) -> tuple[np.ndarray, np.ndarray, SplitFile, list[Bundle]]:
    """Joined unit features and mean logits of one hold-out's member runs (split rows checked)."""
    parts = [run_features(run) for run in runs]
    split = parts[0][2]
    for run, part in zip(runs[1:], parts[1:], strict=True):
        if part[2].rows != split.rows:
            raise SystemExit(
                f"{run}: its split.json differs from {runs[0]}'s; join runs of one hold-out"
            )
    scale = 1.0 / np.sqrt(len(parts))
    features = np.concatenate([part[0] for part in parts], axis=1) * scale
    logits = np.mean([part[1] for part in parts], axis=0)
    return features, logits, split, [part[3] for part in parts]


def report(runs: list[Path], k: int, size: int, thumbnail: int | None) -> None:
    """Print one hold-out's numbers for a bank of all training faces (0) or a sample."""
    features, logits, split, bundles = member_features(runs)
    run = "+".join(str(path) for path in runs)
    held_out = split.params["holdout"]
    column = {key: np.array([row[key] for row in split.rows]) for key in ("split", "source")}
    label = np.array([row["label"] for row in split.rows])
    reference = reference_bank(features[column["split"] == "train"], size, k)
    scores = reference.novelty(features)
    val_scores = scores[column["split"] == "val"]
    thresholds = {q: float(np.quantile(val_scores, q)) for q in QUANTILES}
    test = column["split"] == "test"
    held = column["source"] == held_out
    held_is_ai = bool((label[held] == "ai").all())
    # the held-out source against the seen sources of the other class
    others = test & ~held & (label == ("real" if held_is_ai else "ai"))
    context = {"held": held, "others": others, "seen": test & ~held,
               "sources": column["source"], "held_is_ai": held_is_ai}  # fmt: skip
    faces = f"{held.sum()} faces; bank {len(reference.embeddings)}, k {reference.k}"
    print(f"\n{run} (held out: {held_out}, {faces})")
    wrong = (logits > 0) != (label == "ai")
    print_block("  training crops:", scores, logits, thresholds, wrong=wrong, **context)
    if thumbnail is None:
        return
    scored = test | (column["split"] == "val")
    paths = [row["path"] for row, keep in zip(split.rows, scored, strict=True) if keep]
    small, small_logits = np.full_like(features, np.nan), np.full_like(logits, np.nan)
    parts = [thumbnail_features(bundle, paths, thumbnail) for bundle in bundles]
    small[scored] = np.concatenate([part[0] for part in parts], axis=1) / np.sqrt(len(parts))
    small_logits[scored] = np.mean([part[1] for part in parts], axis=0)  # NaN unless all found
    found = ~np.isnan(small_logits)
    small_scores = np.where(found, reference.novelty(np.nan_to_num(small)), np.nan)
    small_wrong = (small_logits > 0) != (label == "ai")
    context = {key: value & found if key in ("held", "others", "seen") else value
               for key, value in context.items()}  # fmt: skip
    title = f"  {thumbnail}-px JPEG-85 copies (a face found in {found[test].mean():.1%}):"
    print_block(title, small_scores, small_logits, thresholds, wrong=small_wrong, **context)
    # a shipped flag would fit its threshold on thumbnail copies of the validation faces too
    small_val = small_scores[(column["split"] == "val") & found]
    fitted = {q: float(np.quantile(small_val, q)) for q in QUANTILES}
    print(f"  the same, thresholds at quantiles of {len(small_val)} validation thumbnails:")
    print_flags(
        "thumbnail val", small_scores, fitted, context["held"], context["seen"], small_wrong
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help='run folder, or member runs joined by "+"')
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--bank", type=int, default=0, help="int8 sample of training faces")
    parser.add_argument("--thumbnail", type=int, default=None, help="also score N-px copies")
    args = parser.parse_args()
    torch.set_num_threads(2)
    for run in args.runs:
        report([Path(part) for part in run.split("+")], args.k, args.bank, args.thumbnail)


if __name__ == "__main__":
    main()
