"""`facetell calibrate`: fit temperature, threshold, band, familiarity and size correction."""

from __future__ import annotations

import datetime
import glob
import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from facetell.bundle import Bundle, bundle_path, copy_bundle, is_shipped_bundle, write_whole
from facetell.calibrate import (
    SMALL_FACE_WIDTH,
    THUMBNAIL_QUALITY,
    THUMBNAIL_SIZES,
    Calibration,
    SizeCorrection,
    fit_calibration,
    fit_size_correction,
)
from facetell.cli.common import (
    app,
    bundle_output,
    console,
    describe_not_scored,
    err_console,
    expand_inputs,
    fail,
    interrupted_says,
    load_named_first,
    no_face_detect_option,
    note_labelled_both_ways,
    overwrite_bundle_option,
    progress_bar,
    select_samples,
)
from facetell.data import Sample, SplitFile, discover
from facetell.errors import FacetellError
from facetell.familiarity import (
    DEFAULT_REFERENCE_SIZE,
    REFERENCE_THUMBNAIL,
    TEMPER_SLOPE,
    TEMPER_START,
    Familiarity,
    Reference,
    fit_familiarity,
    reference_embeddings,
    sample_indices,
)
from facetell.inference import Detector
from facetell.io import DATASET_LIMITS

if TYPE_CHECKING:
    from facetell.evaluate import ScoredSet


@app.command("calibrate")
def calibrate_command(
    bundle: Path = typer.Argument(
        ...,
        help="Model bundle to calibrate, written in place unless --out is given ('default': the "
        "shipped model, calibrated only with --out).",
    ),
    data: list[Path] = typer.Argument(None, help="Held-out labelled data (not training data)."),
    split_file: Path | None = typer.Option(None, help="Use one split of a saved split.json."),
    split: str | None = typer.Option(
        None,
        help="Which split: of --split-file (default: val), or of the data's own train/ val/ "
        "test/ folders or split column (default: all of the data); the train part of either "
        "gives the familiarity reference.",
        show_default=False,
    ),
    limit: int | None = typer.Option(None, min=10, help="Fit on a seeded sample of this many."),
    no_face_detect: bool = no_face_detect_option(),
    max_fpr: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Threshold for this false-positive rate on real faces "
        "(default: the equal-error point). Given real photos alone (your users'), only the "
        "threshold of the calibrated bundle moves: up, until at most this rate of them is "
        "called AI.",
        rich_help_panel="Threshold and band",
    ),
    per_source: bool = typer.Option(
        True,
        "--per-source/--pooled",
        help="With --max-fpr: the rate must hold on every real source on its own (an unseen "
        "source may be as hard as the hardest), or on all real faces as one.",
        rich_help_panel="Threshold and band",
    ),
    target_accuracy: float = typer.Option(
        0.95,
        min=0.5,
        max=1.0,
        help="Accuracy the answered (not uncertain) faces must reach.",
        rich_help_panel="Threshold and band",
    ),
    size_correction: bool = typer.Option(
        True,
        "--size-correction/--no-size-correction",
        help="Also fit the small-face correction on thumbnail copies of the same images "
        f"({', '.join(map(str, THUMBNAIL_SIZES))} px, JPEG {THUMBNAIL_QUALITY}; scores each "
        f"image {1 + len(THUMBNAIL_SIZES)} times).",
        rich_help_panel="Small and unfamiliar faces",
    ),
    familiarity: bool = typer.Option(
        True,
        "--familiarity/--no-familiarity",
        help="Also store the embeddings of a sample of training faces (the split file's train "
        f"split, or --reference; every second one as a {REFERENCE_THUMBNAIL}-px thumbnail copy) "
        "and fit the novelty above which a face is flagged unfamiliar.",
        rich_help_panel="Small and unfamiliar faces",
    ),
    reference: list[Path] = typer.Option(
        None,
        help="Training images to sample the familiarity reference from (folders or files).",
        rich_help_panel="Small and unfamiliar faces",
    ),
    reference_size: int = typer.Option(
        DEFAULT_REFERENCE_SIZE,
        min=20,
        help="How many training faces the reference keeps.",
        rich_help_panel="Small and unfamiliar faces",
    ),
    temper_start: float = typer.Option(
        TEMPER_START,
        min=0.0,
        max=100.0,  # finite: 100 times the flag's threshold is never reached, in effect
        help="With the familiarity check: the share of its width band's novelty threshold "
        "from which a face's P(ai) is tempered toward 0.5.",
        rich_help_panel="Small and unfamiliar faces",
    ),
    temper_slope: float = typer.Option(
        TEMPER_SLOPE,
        min=0.0,
        max=1000.0,  # finite: an infinite slope times a novelty at the start is NaN
        help="With the familiarity check: how fast an unfamiliar face's P(ai) is tempered toward "
        "0.5 as its novelty grows (0: not at all).",
        rich_help_panel="Small and unfamiliar faces",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the calibrated bundle to this folder, a copy made once the fit is done; "
        "the bundle given stays as it was.",
        show_default=False,
        rich_help_panel="Output",
    ),
    overwrite: bool = overwrite_bundle_option("Output"),
) -> None:
    """Fit temperature, threshold and uncertain band on held-out data.

    Writes calibration.json into the bundle (or its copy in --out), and reference.safetensors
    for the familiarity check."""
    size_correction = size_correction and not no_face_detect
    target = calibration_target(bundle, out, overwrite=overwrite)
    try:
        detector = load_named_first(
            bundle, data, "calibrate BUNDLE", detect_faces=not no_face_detect
        )
        samples = select_samples(data or [], split_file, split, limit, default_split="val")
        # scipy and scikit-learn: a second, spent once the model and the data are found
        from facetell.evaluate import fingerprints_of

        fingerprints = fingerprints_of(samples)
        note_labelled_both_ways(samples, fingerprints, "each pair pulls the fit both ways")
        warn_if_trained_on(detector, fingerprints)
        labels = Counter(sample.target for sample in samples)
        if max_fpr is not None and labels[0] and not labels[1]:
            calibrate_on_real_photos(
                detector, bundle, target, samples, max_fpr, per_source=per_source
            )
            return
        both_classes(labels, "images", bundle, data)
        # small faces are re-encoded as the thumbnails are, so one correction fits both
        raw = Detector(
            detector.bundle.without_calibration(),
            detect_faces=not no_face_detect,
            face_detector=detector.face_detector,
            limits=DATASET_LIMITS,
            small_face_jpeg=(SMALL_FACE_WIDTH, THUMBNAIL_QUALITY) if size_correction else None,
        )
        copies = THUMBNAIL_SIZES if size_correction else ()
        asked_familiarity, familiarity = familiarity, familiarity and raw.gives_embedding
        temper = (temper_start, temper_slope)
        own_split_of = data if data and split is not None and split_file is None else []
        references = (
            _reference_paths(reference, split_file, reference_size, own_split_of)
            if familiarity
            else []
        )
        # no training images to build a new reference from: the bundle's own check stays
        kept = None if references or not familiarity else _kept_familiarity(detector, *temper)
        with interrupted_says(lambda: f"{bundle} is unchanged"):
            scored, thumbnails = _score_held_out(raw, samples, references, copies)
        ok = scored.scored
        both_classes(Counter(scored.targets[ok].tolist()), "images with a face", bundle, data)
        fitted_on = {
            "data": [str(p) for p in (data or [])],
            "split_file": str(split_file) if split_file else None,
            "split": split or ("val" if split_file else None),
            "sources": sorted(set(scored.sources)),
            "not_scored": int((~ok).sum()),
        }
        calibration = _fit_all(
            scored,
            thumbnails,
            raw.bundle.reference if references else None,
            max_fpr=max_fpr,
            per_source=per_source,
            target_accuracy=target_accuracy,
            temper=temper,
            fitted_on=fitted_on,
            kept_familiarity=kept,
        )
        if references:
            detector.bundle.reference = raw.bundle.reference
        detector.bundle.calibration = calibration.to_dict()
        save_calibrated(detector.bundle, bundle, target, reference=bool(references))
    except FacetellError as error:
        raise fail(str(error)) from None
    console.print(
        _describe_calibration(calibration)
        + describe_not_scored(scored)
        + _describe_size_correction(calibration.size_correction, size_correction)
        + (
            _describe_kept_familiarity(calibration.familiarity, scored)
            if kept
            else _describe_familiarity(calibration.familiarity, familiarity, asked_familiarity)
        )
        + _describe_thin_sources(calibration.details, max_fpr)
        + f"written to {target / 'calibration.json'}",
        highlight=False,
    )
    note_small_fit(calibration.details)


def _score_held_out(
    raw: Detector, samples: Sequence[Sample], references: Sequence[str], copies: Sequence[int]
) -> tuple[ScoredSet, list[ScoredSet]]:
    """Score the held-out images at full size and as each thumbnail copy, under one progress
    bar. The familiarity reference is embedded first and set on `raw`, since every face's
    novelty is measured against it."""
    from facetell.evaluate import score_dataset, thumbnail_copy

    with progress_bar() as progress:
        task = progress.add_task(
            "scoring", total=len(references) + len(samples) * (1 + len(copies))
        )

        def advance(n: int) -> None:
            progress.advance(task, n)

        if references:
            thumbnail = thumbnail_copy(REFERENCE_THUMBNAIL, THUMBNAIL_QUALITY)
            raw.bundle.reference = Reference.from_embeddings(
                reference_embeddings(raw, references, thumbnail=thumbnail, on_progress=advance)
            )
        scored = score_dataset(raw, samples, on_progress=advance)
        thumbnails = [
            score_dataset(
                raw, samples, transform=thumbnail_copy(size, THUMBNAIL_QUALITY), on_progress=advance
            )
            for size in copies
        ]
    return scored, thumbnails


def _fit_all(
    scored: ScoredSet,
    thumbnails: list[ScoredSet],
    reference: Reference | None,
    *,
    max_fpr: float | None,
    per_source: bool,
    target_accuracy: float,
    temper: tuple[float, float],
    fitted_on: dict[str, Any],
    kept_familiarity: Familiarity | None = None,
) -> Calibration:
    """Familiarity first (its tempering changes the logits the temperature is fitted to), then
    temperature, threshold and band on the full-size faces, then the small-face correction on
    the thumbnails' faces. Without a new reference, `kept_familiarity` (the bundle's) tempers."""
    ok = scored.scored
    fitted = (
        kept_familiarity
        if reference is None
        else _fit_familiarity(reference, [scored, *thumbnails], per_source, *temper)
    )
    calibration = fit_calibration(
        scored.logits[ok],
        scored.targets[ok],
        max_fpr=max_fpr,
        sources=[s for s, keep in zip(scored.sources, ok, strict=True) if keep]
        if per_source
        else None,
        target_accuracy=target_accuracy,
        fitted_on=fitted_on,
        face_temperatures=None
        if fitted is None
        else fitted.temperature(scored.novelty[ok], scored.face_widths[ok]),
    ).with_familiarity(fitted)
    if thumbnails:
        calibration = calibration.with_size_correction(
            _fit_size_correction(calibration, thumbnails, max_fpr, per_source)
        )
    return calibration


def _describe_calibration(calibration: Calibration) -> str:
    """The fitted numbers and what they do on the faces they were fitted to."""
    details = calibration.details
    upper = {k: v[1] for k, v in details["false_positive_rate_interval_by_source"].items()}
    low, high = calibration.uncertain_band
    target = details["band"]["target_accuracy"]
    band = (
        f"uncertain band {low:.3f}-{high:.3f}"
        if high > low or not details["band"]["target_met"]
        else f"no uncertain band (accuracy met {target:.0%} without one)"
    )
    return (
        f"temperature {calibration.temperature:.3f}, bias {calibration.bias:+.3f}, "
        f"threshold P(ai) ≥ {calibration.threshold:.4f} ({details['threshold_rule']}), {band}\n"
        f"ECE {details['ece_before']:.4f} before → {details['ece_after']:.4f} after; "
        f"false-positive rate {details['false_positive_rate']:.4f}"
        + "".join(
            f", {source} {rate:.4f} (95% up to {upper[source]:.4f})"
            for source, rate in details["false_positive_rate_by_source"].items()
        )
        + f", true-positive rate {details['true_positive_rate']:.4f}; "
        f"accuracy outside the band {details['band']['accuracy_outside_band']:.4f} "
        f"on {details['band']['coverage']:.1%} of {details['n']} images\n"
        + _describe_targets(details)
    )


def warn_if_trained_on(detector: Detector, fingerprints: Sequence[bytes | None]) -> None:
    """Calibration fitted on training images is too sure of itself and, on real photos the
    model learnt, sets its threshold too low for the photos it will meet."""
    from facetell.evaluate import seen_in_training

    seen = seen_in_training(detector.bundle.training_images, fingerprints)
    if seen and seen["train"]:
        err_console.print(
            f"note: {seen['train']} of these {len(fingerprints)} images are ones "
            f"{detector.model_name} was trained on, byte for byte; fitted on them, its P(ai) "
            "comes out too sure and its threshold too low: calibrate on held-out images (the "
            "run's split.json, --split val)",
            highlight=False,
        )


def calibration_target(bundle: Path, out: Path | None, *, overwrite: bool) -> Path:
    """Where calibrate writes, checked before any image is scored: --out, else the bundle
    itself. The shipped model is never rewritten in place: every predict without --model
    answers with it, and a calibration fitted on one platform's photos would move them all."""
    source = bundle_path(bundle)
    if out is None or out.resolve() == source.resolve():  # --out naming the bundle's own folder
        if is_shipped_bundle(source):
            raise fail(
                f"{bundle}: the shipped model, which predict uses without --model, is not "
                "calibrated in place; --out my-model calibrates a copy"
            )
        return source
    return bundle_output(out, overwrite)


def save_calibrated(fitted: Bundle, bundle: Path, target: Path, *, reference: bool) -> None:
    """Write a fitted calibration (and familiarity reference) into the target, a copy of the
    bundle made now when the target is another folder."""
    source = bundle_path(bundle)
    if target.resolve() != source.resolve():
        copy_bundle(source, target)
    if reference:
        fitted.save_reference(target)
    fitted.save_calibration(target)
    if (target / "MODEL_CARD.md").is_file():
        note_recalibration(target / "MODEL_CARD.md", fitted.calibration or {})


RECALIBRATED = "> **Calibrated again**"


def note_recalibration(card: Path, calibration: dict[str, Any]) -> None:
    """Say at the top of a bundle's model card (the shipped model's, copied) that its
    calibration.json was fitted again, and to what: the card's numbers were measured with the
    calibration it had, and must not vouch for this one. A later fit replaces the note."""
    low, high = calibration.get("uncertain_band", (0.0, 0.0))
    note = (
        f"{RECALIBRATED} on {datetime.date.today():%Y-%m-%d} by `facetell calibrate`: threshold "
        f"P(ai) ≥ {calibration.get('threshold', 0.5):.4f}, uncertain band {low:.3f}-{high:.3f}. "
        "The numbers below were measured with the calibration this bundle had before; "
        "`facetell evaluate` measures them again.\n"
    )
    title, _, body = card.read_text(encoding="utf-8").partition("\n")
    body = re.sub(rf"^\n{re.escape(RECALIBRATED)}[^\n]*\n", "", body)
    write_whole(card, f"{title}\n\n{note}{body}".encode())


def calibrate_on_real_photos(
    detector: Detector,
    bundle: Path,
    target: Path,
    samples: Sequence[Sample],
    max_fpr: float,
    *,
    per_source: bool,
) -> None:
    """`calibrate BUNDLE MY-REAL-PHOTOS --max-fpr RATE`: the threshold alone, raised until at
    most RATE of a platform's own real photos are called AI (`threshold_for_real_photos`)."""
    from facetell.calibrate import threshold_for_real_photos
    from facetell.evaluate import score_dataset

    if not detector.calibration.fitted:
        raise FacetellError(
            f"{bundle}: not calibrated; with real photos alone only the threshold of a calibrated "
            "bundle can be set (calibrate it on real and AI images first)"
        )
    with progress_bar() as progress:
        task = progress.add_task("scoring", total=len(samples))
        scored = score_dataset(detector, samples, on_progress=lambda n: progress.advance(task, n))
    ok = scored.scored
    if not ok.any():
        raise FacetellError(
            f"no face found in any of the {len(samples)} real photos (for photos of faces cropped "
            "already, add --no-face-detect)"
        )
    sources = [source for source, keep in zip(scored.sources, ok, strict=True) if keep]
    calibration = threshold_for_real_photos(
        detector.calibration,
        scored.p_ai[ok],
        max_fpr,
        sources=sources if per_source else None,
        fitted_on={
            "sources": sorted(set(scored.sources)),
            "images": len(samples),
            "not_scored": int((~ok).sum()),
        },
    )
    detector.bundle.calibration = calibration.to_dict()
    save_calibrated(detector.bundle, bundle, target, reference=False)
    alone = calibration.details["real_photos_alone"]
    upper = alone["false_positive_rate_interval_by_source"]
    rates = ", ".join(
        f"{name} {rate:.4f} (95% up to {upper[name][1]:.4f}; {alone['n_real_by_source'][name]})"
        for name, rate in alone["false_positive_rate_by_source"].items()
    )
    low, high = calibration.uncertain_band
    console.print(
        f"threshold P(ai) ≥ {calibration.threshold:.4f} (calibrated: "
        f"{alone['calibrated_threshold']:.4f}), uncertain band {low:.3f}-{high:.3f}; real faces "
        f"called AI: {rates}; temperature, bias, small-face correction and familiarity kept\n"
        f"written to {target / 'calibration.json'}",
        highlight=False,
    )
    if unshown := _describe_unshown_rate(alone, max_fpr):
        err_console.print(unshown, highlight=False)


def _describe_targets(details: dict[str, Any]) -> str:
    """Why ECE can rise: faces the model separates are fitted to Platt's targets, not 0 and 1."""
    targets = details.get("sigmoid_targets")
    if not targets:
        return ""
    return (
        "the model ranks every AI face above every real one here, so P(ai) was fitted to "
        f"{targets[1]:.3f} for AI and {targets[0]:.3f} for real, not 1 and 0 (Platt's targets: "
        f"as sure as {details['n_ai']} AI and {details['n_real']} real faces can make it); ECE, "
        "measured against 1 and 0, rises by design\n"
    )


def _describe_unshown_rate(alone: dict[str, Any], max_fpr: float) -> str:
    """The real sources too few to show that at most --max-fpr of their faces are called AI:
    a threshold that calls none of 6 photos AI still allows a rate of up to 39%."""
    from facetell.calibrate import trials_to_bound

    upper = alone["false_positive_rate_interval_by_source"]
    short = [name for name, interval in upper.items() if interval and interval[1] > max_fpr]
    if not short:
        return ""
    names = ", ".join(
        f"{name} (up to {upper[name][1]:.4f}, {alone['n_real_by_source'][name]} faces)"
        for name in short
    )
    needed = (
        f"; it takes {trials_to_bound(max_fpr)} faces of a source, none called AI, to show it"
        if max_fpr > 0
        else ""
    )
    return (
        f"note: these photos cannot show a false-positive rate of at most {max_fpr}: the 95% "
        f"interval of {names} reaches past it{needed}"
    )


def both_classes(
    counts: Counter[int], what: str, bundle: Path, data: Sequence[Path] | None
) -> None:
    """Refuse a calibration set without both classes (before scoring it, where the labels
    already show it), saying what it held and what to do instead."""
    if counts[0] and counts[1]:
        return
    where = " ".join(str(path) for path in data) if data else "DATA"
    if counts[0]:
        hint = (
            "with real photos alone, --max-fpr RATE raises the threshold until at most RATE of "
            f"them are called AI; facetell evaluate {bundle} {where} shows how many are now"
        )
    elif counts[1]:
        hint = "add real photos of the kind you will judge"
    else:
        hint = "for photos of faces cropped already, add --no-face-detect"
    raise FacetellError(
        f"calibration needs both real and AI {what}: found {counts[0]} real, {counts[1]} AI "
        f"({hint})"
    )


SMALL_FIT = 100  # faces of a class below which a fitted threshold and band swing widely


def note_small_fit(details: dict[str, Any]) -> None:
    """A threshold fitted on a dozen faces may land anywhere on the next dozen, and a
    temperature fitted on them can even raise their ECE: say so where the numbers are read."""
    real, ai = details["n_real"], details["n_ai"]
    if min(real, ai) < SMALL_FIT:
        err_console.print(
            f"note: fitted on {real} real and {ai} AI faces; with under {SMALL_FIT} of a class "
            "the temperature, threshold and band can move far on other images, and the ECE "
            "above is measured on these same faces: calibrate on more held-out images",
            highlight=False,
        )


def _describe_thin_sources(details: dict[str, Any], max_fpr: float | None) -> str:
    """Names the real sources too small for the false-positive target to allow any of their
    faces to be called AI: each one's single highest score then sets the threshold."""
    if not max_fpr:
        return ""
    thin = {name: n for name, n in details["n_real_by_source"].items() if n * max_fpr < 1}
    if not thin:
        return ""
    names = ", ".join(f"{name} ({n} real faces)" for name, n in thin.items())
    return (
        f"note: at --max-fpr {max_fpr} no face of {names} may be called AI, so the highest-scoring "
        "one sets the threshold; more of that source's photos would make it less fragile\n"
    )


def _reference_paths(
    reference: Sequence[Path] | None,
    split_file: Path | None,
    size: int,
    own_split_of: Sequence[Path] = (),
) -> list[str]:
    """A seeded sample of the training images the familiarity reference is built from, equal
    numbers per source: the split file's train split, the train part of the data's own split
    (`own_split_of`, when one of its parts is calibrated on), or image files under --reference
    (labelled or not; each folder of images counts as a source)."""
    if reference:
        gone = [path for path in reference if not path.exists() and not glob.has_magic(str(path))]
        if gone:
            raise FacetellError(f"{gone[0]}: no such file or folder (--reference)")
        pool = [item for item in expand_inputs([str(path) for path in reference])
                if isinstance(item, str)]  # fmt: skip
        if not pool:
            raise FacetellError(f"{reference[0]}: no images found for the familiarity reference")
        sources = [str(Path(path).parent) for path in pool]
    elif split_file is not None or own_split_of:
        samples = (
            SplitFile.load(split_file).samples("train")
            if split_file is not None
            else [sample for sample in discover(own_split_of) if sample.split == "train"]
        )
        pool, sources = [str(s.path) for s in samples], [s.source for s in samples]
    else:
        return []
    return [pool[i] for i in sample_indices(sources, size)]


def _kept_familiarity(
    detector: Detector, temper_start: float, temper_slope: float
) -> Familiarity | None:
    """The bundle's familiarity check with this run's tempering, when it has one to keep.

    Calibrating the shipped model on one's own photos gives no training images to compare faces
    with; dropping the check would silently end the unfamiliar flag and its tempering, which a
    face from an unseen camera or generator needs whatever data the threshold was fitted on."""
    own = (detector.bundle.calibration or {}).get("familiarity")
    if own is None or detector.bundle.reference is None:
        return None
    return replace(Familiarity.from_dict(own), temper_start=temper_start, temper_slope=temper_slope)


def _describe_kept_familiarity(familiarity: Familiarity, scored: ScoredSet) -> str:
    """What the kept check is and how many of these faces it flags."""
    measured = scored.scored & ~np.isnan(scored.novelty)
    flagged = scored.novelty[measured] > familiarity.threshold(scored.face_widths[measured])
    share = f"{flagged.mean():.0%} of these {measured.sum()}" if measured.any() else "none of these"
    return (
        f"familiarity: the bundle's own check kept (a reference of "
        f"{familiarity.details.get('reference_faces', '?')} training faces; --split-file or "
        f"--reference fits a new one): it flags {share} faces as unfamiliar\n"
    ) + _describe_tempering(familiarity)


def _describe_tempering(familiarity: Familiarity) -> str:
    return (
        f"unfamiliar faces' P(ai) tempered toward 0.5 from {familiarity.temper_start:.0%} of "
        f"the threshold, slope {familiarity.temper_slope:g}\n"
        if familiarity.temper_slope > 0
        else "unfamiliar faces' P(ai) not tempered (--temper-slope 0)\n"
    )


def _describe_familiarity(familiarity: Familiarity | None, possible: bool, asked: bool) -> str:
    if familiarity is None:
        if not asked:
            why = "--no-familiarity"
        elif not possible:
            why = "the model gives no embedding to compare faces by"
        else:
            why = "give --split-file (its train split) or --reference"
        return f"familiarity: not fitted ({why})\n"
    bands = ", ".join(
        f"{label} {threshold:.4f}"
        for label, threshold in zip(
            _band_labels(familiarity.width_edges), familiarity.thresholds, strict=True
        )
    )
    d = familiarity.details
    by_source = ", ".join(f"{k} {v:.1%}" for k, v in d["flagged_by_source"].items())
    return (
        f"familiarity: {d['reference_faces']} reference faces (every second from a "
        f"{d['reference_thumbnail']}-px thumbnail copy), k {d['k']}; novelty thresholds "
        f"(flagging {familiarity.flagged_share:.0%} of {d['faces']} held-out faces, by face width) "
        f"{bands}"
        + (f"; flagged by source: {by_source}" if by_source else "")
        + "\n"
        + _describe_tempering(familiarity)
    )


def _band_labels(edges: tuple[float, ...]) -> list[str]:
    """'<64 px', '64-128 px', '≥128 px' for edges (64, 128)."""
    labels = [f"<{edges[0]:.0f} px"]
    labels += [f"{low:.0f}-{high:.0f} px" for low, high in itertools.pairwise(edges)]
    return [*labels, f"≥{edges[-1]:.0f} px"]


def _fit_familiarity(
    reference: Reference,
    scored: list[ScoredSet],
    per_source: bool,
    temper_start: float,
    temper_slope: float,
) -> Familiarity:
    """Novelty thresholds from the held-out faces of every copy (full size and thumbnails)."""
    novelty = np.concatenate([s.novelty for s in scored])
    measured = ~np.isnan(novelty)
    widths = np.concatenate([s.face_widths for s in scored])[measured]
    sources = np.concatenate([s.sources for s in scored])[measured]
    details = {"reference_faces": len(reference.embeddings), "k": reference.k,
               "reference_thumbnail": REFERENCE_THUMBNAIL,
               "faces": int(measured.sum())}  # fmt: skip
    return fit_familiarity(
        novelty[measured],
        widths,
        sources if per_source else None,
        temper_start=temper_start,
        temper_slope=temper_slope,
        details=details,
    )


def _fit_size_correction(
    calibration: Calibration, thumbnails: list[ScoredSet], max_fpr: float | None, per_source: bool
) -> SizeCorrection | None:
    """The small-face correction from the faces of every thumbnail copy, pooled."""
    ok = np.concatenate([t.scored for t in thumbnails])

    def pooled(key: str) -> np.ndarray:
        return np.concatenate([getattr(t, key) for t in thumbnails])[ok]

    sources = np.concatenate([t.sources for t in thumbnails])[ok]
    return fit_size_correction(
        calibration,
        pooled("logits"),
        pooled("targets"),
        pooled("face_widths"),
        reference_width=SMALL_FACE_WIDTH,
        jpeg_quality=THUMBNAIL_QUALITY,
        max_fpr=max_fpr,
        sources=list(sources) if per_source else None,
        novelty=pooled("novelty"),
    )


def _describe_size_correction(correction: SizeCorrection | None, asked: bool) -> str:
    if correction is None:
        lacking = "small faces: no size correction (the thumbnails lacked real or AI faces)\n"
        return lacking if asked else ""
    d = correction.details
    return (
        f"small faces (< {correction.reference_width:.0f} px, {d['n_small']} of {d['n']} "
        f"thumbnail faces): ECE {d['ece_small_before']:.4f} → {d['ece_small_after']:.4f}; on all "
        f"thumbnails, worst real source's false-positive rate {d['false_positive_rate_before']:.4f}"
        f" → {d['false_positive_rate_after']:.4f}, true-positive rate "
        f"{d['true_positive_rate_before']:.4f} → {d['true_positive_rate_after']:.4f}\n"
        f"small faces in images that are not JPEG files: re-encoded at JPEG "
        f"{correction.jpeg_quality} first\n"
    )
