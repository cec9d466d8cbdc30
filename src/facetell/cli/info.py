"""`facetell info`: what a model bundle is and how it was fitted, before it judges anything."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from facetell.cli.common import TableOrJson, app, console, fail
from facetell.errors import FacetellError

if TYPE_CHECKING:
    from facetell.calibrate import Calibration
    from facetell.inference import Detector


@app.command("info")
def info_command(
    bundle: Path = typer.Argument(
        Path("default"), help="Model bundle: a folder or .zip ('default': the shipped one)."
    ),
    output_format: TableOrJson = typer.Option(
        TableOrJson.table,
        "--format",
        "-f",
        help="json: the facts GET /api/v1/model answers, calibration and metrics whole.",
    ),
) -> None:
    """Describe a model bundle: architecture, calibration, training data and measured numbers."""
    from facetell.inference import Detector

    try:
        detector = Detector.load(bundle)
    except FacetellError as error:
        raise fail(str(error)) from None
    if output_format is TableOrJson.json:
        print(json.dumps(detector.describe(), indent=2))
        return
    table = Table(show_header=False, box=None, title=detector.model_name, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for fact, value in _facts(detector):
        table.add_row(fact, value)
    console.print(table, highlight=False)


def _facts(detector: Detector) -> list[tuple[str, str]]:
    """The table's rows, each a sentence a reader can act on; rows without a fact are left out."""
    bundle = detector.bundle
    members = bundle.model_kwargs.get("members", [])
    architecture = bundle.architecture
    if members:
        architecture += f" of {' + '.join(member['architecture'] for member in members)}"
    faces = getattr(detector.face_detector, "name", None)
    recipes = [bundle.crop, *bundle.extra_crops]
    crops = "; ".join(
        f"{recipe.size} px, margin {recipe.margin}, border {recipe.border}" for recipe in recipes
    )
    remembered = bundle.training_images
    rows = [
        ("bundle", str(bundle.path)),
        ("architecture", f"{architecture}, run by {detector.runtime}"),
        ("faces", f"found by {faces}" if faces else "not detected: each image is one face"),
        ("crops", crops),
        *_calibration_facts(detector.calibration),
        (
            "trained on",
            f"{len(remembered.train)} training and {len(remembered.val)} validation images; "
            "evaluate and calibrate say when they are given any of them again"
            if remembered is not None
            else "",
        ),
        ("measured", _measured(bundle.metrics, detector.calibration.threshold)),
        ("model card", _card(bundle.path)),
    ]
    return [(fact, value) for fact, value in rows if value]


def _card(path: Path | None) -> str:
    """Where the bundle's MODEL_CARD.md is: in its folder, or inside its .zip."""
    if path is None:
        return ""
    if path.is_dir():
        return str(path / "MODEL_CARD.md") if (path / "MODEL_CARD.md").is_file() else ""
    with zipfile.ZipFile(path) as archive:
        inside = [name for name in archive.namelist() if Path(name).name == "MODEL_CARD.md"]
    return f"{inside[0]} inside {path}" if inside else ""


def _calibration_facts(calibration: Calibration) -> list[tuple[str, str]]:
    """What turns a logit into P(ai) and a verdict: the fit, the small-face correction and the
    familiarity check."""
    if not calibration.fitted:
        return [("calibration", "none: P(ai) is the raw sigmoid; run facetell calibrate")]
    details = calibration.details
    low, high = calibration.uncertain_band
    rule = f", set by {details['threshold_rule']}" if "threshold_rule" in details else ""
    raised = details.get("real_photos_alone")  # the cut moved up since, for a user's photos
    fitted_on = details.get("fitted_on", {})
    where = fitted_on.get("split_file") or ", ".join(fitted_on.get("data", [])) or "?"
    split = f"the {fitted_on['split']} split of " if fitted_on.get("split") else ""
    rows = [
        (
            "calibration",
            f"temperature {calibration.temperature:.3f}, bias {calibration.bias:+.3f}; AI at "
            f"P(ai) ≥ {calibration.threshold:.4f}{'' if raised else rule}; "
            f"uncertain {low:.3f}-{high:.3f}",
        ),
        (
            "fitted on",
            f"{details['n']} faces ({details['n_real']} real, {details['n_ai']} AI) of "
            f"{split}{where}"
            if "n" in details
            else "",
        ),
    ]
    if raised:
        photos = raised["fitted_on"]
        rows.append(
            (
                "raised for",
                f"a false-positive rate of at most {raised['max_fpr']:g} on {photos['images']} "
                f"real photos ({', '.join(photos['sources'])}), from the calibrated "
                f"{raised['calibrated_threshold']:.4f}{rule}",
            )
        )
    if correction := calibration.size_correction:
        rows.append(
            (
                "small faces",
                f"P(ai) of faces under {correction.reference_width:g} px corrected by their width"
                + (
                    f", judged on a JPEG {correction.jpeg_quality} copy when lossless"
                    if correction.jpeg_quality
                    else ""
                ),
            )
        )
    if familiarity := calibration.familiarity:
        reference = familiarity.details.get("reference_faces", "?")
        tempered = (
            f"; P(ai) tempered toward 0.5 from {familiarity.temper_start:.0%} of that, "
            f"slope {familiarity.temper_slope:g}"
            if familiarity.temper_slope
            else "; P(ai) not tempered"
        )
        thresholds = " / ".join(f"{value:.3f}" for value in familiarity.thresholds)
        rows.append(
            (
                "familiarity",
                f"unfamiliar above novelty {thresholds} (by face width, edges "
                f"{', '.join(f'{edge:g}' for edge in familiarity.width_edges)} px) against "
                f"{reference} training faces{tempered}",
            )
        )
    return rows


def _measured(metrics: dict[str, Any], threshold: float) -> str:
    """The headline numbers the bundle carries: of `facetell evaluate` when it wrote them (at
    the threshold it had then, which a later calibration may have moved), else of training's
    own test (or validation) split, before calibration."""
    if "metrics" in metrics:
        numbers, where = metrics["metrics"], ", by facetell evaluate"
        then = metrics.get("threshold")
        if isinstance(then, float) and abs(then - threshold) > 5e-5:
            where += f" at threshold {then:.4f}, not this one (facetell evaluate measures again)"
    elif split := next((s for s in ("test", "val") if s in metrics), None):
        numbers, where = metrics[split], f" of training's {split} split, before calibration"
    else:
        return ""
    names = {
        "auroc": "AUROC",
        "accuracy": "accuracy",
        "ece": "ECE",
        "false_positive_rate": "false-positive rate",
        "uncertain_fraction": "uncertain",
    }
    shown = [
        f"{word} {numbers[key]:.4f}"
        for key, word in names.items()
        if isinstance(numbers.get(key), int | float)
    ]
    return f"{', '.join(shown)} on {numbers.get('n', '?')} images{where}" if shown else ""
