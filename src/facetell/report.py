"""The evaluation report: PNG plots and one self-contained HTML page (images inlined, no
scripts, no network), readable by someone who has never seen facetell."""

from __future__ import annotations

import csv
import html
import json
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import precision_recall_curve, roc_curve

from facetell.calibrate import SizeCorrection, reliability_curve
from facetell.evaluate import Evaluation, describe_seen
from facetell.io import CSV_FILE_ENCODING, DATASET_LIMITS, decode, printable, printable_name
from facetell.pages import BASE_STYLE, NO_SCRIPTS, data_uri, image_data_uri

_STYLE = (
    BASE_STYLE
    + """
h2{margin-top:36px}.plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
img.plot{max-width:100%;background:#fff;border:1px solid var(--line)}.grid{display:grid;
grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:12px}figure{
background:var(--surface);border:1px solid var(--line);padding:6px}figure img{width:100%}
.bad{color:var(--bad)}.good{color:var(--good)}dl{display:grid;
grid-template-columns:max-content auto;gap:4px 16px}
dt{font-weight:600}#summary-table td:last-child{min-width:16em}
"""
)

EXPLANATIONS = {
    "accuracy": "share of images on the right side of the threshold (an 'uncertain' one "
    "counts as the side its P(ai) is on)",
    "balanced_accuracy": "mean of the accuracy on real and on AI images",
    "auroc": "chance that a random AI image scores above a random real one (1 = perfect)",
    "average_precision": "area under the precision-recall curve for the AI class",
    "eer": "error rate where false alarms and misses are equally frequent",
    "log_loss": "penalty for confident wrong probabilities (lower is better)",
    "brier": "mean squared error of the probabilities (lower is better)",
    "ece": "expected calibration error: gap between stated and observed confidence (15 bins)",
    "false_positive_rate": "share of real faces called AI",
    "true_positive_rate": "share of AI faces called AI (recall of the AI class)",
    "uncertain_fraction": "share of images answered 'uncertain'",
    "accuracy_when_decided": "accuracy on the images not answered 'uncertain'",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _plt().close(figure)
    return path


def plot_roc_pr(evaluations: Sequence[Evaluation], folder: Path) -> tuple[Path | None, Path | None]:
    """ROC and precision-recall curves of every bundle that scored faces of both classes; none
    when no bundle did (a set of real photos alone, to measure false positives)."""
    both = [e for e in evaluations if len(set(e.scored.targets[e.scored.scored])) == 2]
    if not both:
        return None, None
    plt = _plt()
    roc_figure, roc_axis = plt.subplots(figsize=(5.2, 4.6))
    pr_figure, pr_axis = plt.subplots(figsize=(5.2, 4.6))
    for evaluation in both:
        ok = evaluation.scored.scored
        y, p = evaluation.scored.targets[ok], evaluation.scored.p_ai[ok]
        fpr, tpr, _ = roc_curve(y, p)
        # a name made unique by its path can be wider than the plot: wrap it inside the legend
        name = textwrap.fill(evaluation.bundle, 44)
        roc_axis.plot(fpr, tpr, label=f"{name} (AUROC {evaluation.metrics['auroc']:.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        ap = evaluation.metrics["average_precision"]
        pr_axis.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    roc_axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc_axis.set(
        xlabel="false-positive rate (real called AI)",
        ylabel="true-positive rate",
        title="ROC curve",
    )
    pr_axis.set(xlabel="recall (AI found)", ylabel="precision", title="Precision-recall curve")
    for axis in (roc_axis, pr_axis):
        axis.legend(fontsize=8, loc="lower right" if axis is roc_axis else "lower left")
        axis.grid(alpha=0.3)
    return _save(roc_figure, folder / "roc.png"), _save(pr_figure, folder / "pr.png")


def plot_reliability(evaluation: Evaluation, folder: Path, n_bins: int = 15) -> Path:
    plt = _plt()
    ok = evaluation.scored.scored
    curve = reliability_curve(
        evaluation.scored.targets[ok], evaluation.scored.p_ai[ok], n_bins=n_bins
    )
    centres, observed = curve["confidence"], curve["observed"]
    figure, (axis, hist) = plt.subplots(2, 1, figsize=(5.2, 5.6), height_ratios=[3, 1])
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    axis.errorbar(
        centres,
        centres,
        # a bin of one or two faces can have its whole band on one side of its mean
        yerr=np.maximum(0, [centres - curve["band_low"], curve["band_high"] - centres]),
        fmt="none",
        ecolor="grey",
        alpha=0.6,
        capsize=3,
        label="95% of a calibrated model's points",
    )
    axis.plot(centres, observed, "o-", label=f"model (ECE {evaluation.metrics['ece']:.3f})")
    axis.set(ylabel="observed share of AI", title="Reliability diagram")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    hist.bar(centres, curve["count"], width=1 / n_bins * 0.9, color="C1")
    hist.set(xlabel="stated P(ai)", ylabel="images", xlim=(0, 1))
    return _save(figure, folder / "reliability.png")


def plot_confusion(evaluation: Evaluation, folder: Path) -> Path:
    """Truth against verdict, each row as shares of its class. With an uncertain band the
    verdicts are the three users see: "uncertain" counted as the real verdict it is not
    would make a cautious model look blind to fakes."""
    plt = _plt()
    metrics = evaluation.metrics
    counts = np.array(metrics.get("confusion_matrix_verdicts", metrics["confusion_matrix"]))
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    verdicts = ["real", "uncertain", "ai"] if counts.shape[1] == 3 else ["real", "ai"]
    figure, axis = plt.subplots(figsize=(1.3 * len(verdicts) + 1.8, 3.8))
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (row, col), value in np.ndenumerate(counts):
        colour = "white" if share[row, col] > 0.5 else "black"
        axis.text(
            col, row, f"{value}\n{share[row, col]:.1%}", ha="center", va="center", color=colour
        )
    low, high = evaluation.band
    title = f"Verdicts: AI at P(ai) ≥ {evaluation.threshold:.3f}"
    if len(verdicts) == 3:
        title += f",\nuncertain {low:.3f}-{high:.3f}"
    axis.set(
        xticks=range(len(verdicts)),
        yticks=[0, 1],
        xticklabels=verdicts,
        yticklabels=["real", "ai"],
        xlabel="verdict",
        ylabel="truth",
        title=title,
    )
    return _save(figure, folder / "confusion.png")


def plot_histograms(evaluation: Evaluation, folder: Path) -> tuple[Path, Path]:
    plt = _plt()
    scored = evaluation.scored
    ok = scored.scored
    bins = np.linspace(0, 1, 31)
    figure, axis = plt.subplots(figsize=(6, 3.6))
    for target, name, colour in ((0, "real", "C2"), (1, "ai", "C3")):
        axis.hist(
            scored.p_ai[ok & (scored.targets == target)],
            bins=bins,
            alpha=0.6,
            label=name,
            color=colour,
        )
    axis.axvline(evaluation.threshold, color="black", linestyle="--", label="threshold")
    axis.axvspan(*evaluation.band, color="orange", alpha=0.15, label="uncertain band")
    axis.set(xlabel="P(ai)", ylabel="images", title="Scores per class")
    axis.legend(fontsize=8)
    return _save(figure, folder / "scores_by_class.png"), plot_scores_by_source(evaluation, folder)


def plot_scores_by_source(evaluation: Evaluation, folder: Path) -> Path:
    """Every scored image as one dot on its source's row, coloured by its class.

    Dots, not boxes: a calibrated model piles each source's scores at 0 or 1, so a box plot
    collapses onto the edge and hides the few faces that crossed the threshold, the ones a
    reader of this plot is looking for. The vertical jitter is seeded: one report, one picture.
    """
    plt = _plt()
    scored = evaluation.scored
    ok = scored.scored
    sources = np.asarray(scored.sources)
    names = sorted(set(scored.sources))
    figure, axis = plt.subplots(figsize=(7, 0.55 * len(names) + 1.4))
    jitter = np.random.default_rng(0)
    for row, source in enumerate(names):
        mask = ok & (sources == source)
        opacity = float(np.clip(150 / max(mask.sum(), 1), 0.12, 0.8))  # dense rows stay legible
        for target, colour in ((0, "C2"), (1, "C3")):
            scores = scored.p_ai[mask & (scored.targets == target)]
            heights = row + jitter.uniform(-0.3, 0.3, len(scores))
            axis.scatter(scores, heights, s=9, color=colour, alpha=opacity, linewidths=0)
    axis.axvspan(*evaluation.band, color="orange", alpha=0.15)
    axis.axvline(evaluation.threshold, color="black", linestyle="--")
    axis.legend(
        handles=[
            plt.Line2D([], [], marker="o", linestyle="", color=colour, label=name)
            for name, colour in (("real", "C2"), ("ai", "C3"))
        ],
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    axis.set(
        xlabel="P(ai)",
        xlim=(-0.02, 1.02),
        ylim=(len(names) - 0.5, -0.5),
        yticks=range(len(names)),
        yticklabels=names,
        title="Scores per source (one dot per image)",
    )
    return _save(figure, folder / "scores_by_source.png")


def plot_robustness(evaluations: Sequence[Evaluation], folder: Path) -> Path | None:
    """AUROC after each perturbation; none without a sweep, or on one class alone (no AUROC:
    the sweep's table still has accuracy and false positives)."""
    rows = [row for e in evaluations for row in e.robustness.values()]
    if not any(row.get("auroc") is not None for row in rows):
        return None
    plt = _plt()
    names = list(next(e.robustness for e in evaluations if e.robustness))
    figure, axis = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(evaluations)
    for k, evaluation in enumerate(evaluations):
        values = [evaluation.robustness.get(n, {}).get("auroc") or 0 for n in names]
        axis.bar(np.arange(len(names)) + k * width, values, width, label=evaluation.bundle)
    axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=35, ha="right")
    axis.set(ylabel="AUROC", ylim=(0.4, 1.0), title="Robustness: AUROC after each perturbation")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, folder / "robustness.png")


def _thumbnail_uri(path: str, size: int = 160) -> str:
    try:
        image = decode(path, limits=DATASET_LIMITS, reduce_to=size).image
    except Exception:  # a vanished file must not cost the whole report
        image = Image.new("RGB", (size, size), "grey")
    image.thumbnail((size, size))
    return image_data_uri(image, quality=85)


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _interval(interval: Sequence[float] | None, digits: int = 4) -> str:
    """A 95% interval as text, "-" when there is none."""
    return "-" if not interval else f"{interval[0]:.{digits}f} to {interval[1]:.{digits}f}"


def _with_interval(value: float | None, interval: Sequence[float] | None) -> str:
    """A value with its 95% interval beside it, or alone when there is none ("-": no value)."""
    if value is None:
        return "-"
    return _number(value) + (f" ({_interval(interval, 3)})" if interval else "")


def _interval_cell(metrics: dict[str, Any], key: str) -> str:
    """A headline metric's 95% interval; for ECE, the yardstick of a calibrated model."""
    if key == "ece" and "ece_if_calibrated" in metrics:
        return f"calibrated: ≤ {metrics['ece_if_calibrated']:.4f}"
    return _interval(metrics.get("intervals", {}).get(key))


def describe_comparison(bundle: str, comparison: dict[str, Any] | None) -> str:
    """One sentence: how much higher a bundle ranks than the first, and whether the draw of
    images could explain it."""
    if comparison is None:
        return ""
    difference, interval = comparison["auroc_difference"], comparison["auroc_difference_interval"]
    if difference is None:
        return (
            f"{bundle}: AUROC not compared with {comparison['against']}: the images both scored "
            "hold one class"
        )
    if interval is None:
        return f"{bundle}: AUROC {difference:+.4f} against {comparison['against']}"
    low, high = interval
    verdict = (
        "the draw of images could explain it"
        if low <= 0 <= high
        else ("higher beyond the draw of images" if low > 0 else "lower beyond the draw of images")
    )
    return (
        f"{bundle}: AUROC {difference:+.4f} (95% interval {low:+.4f} to {high:+.4f}) against "
        f"{comparison['against']} on the {comparison['n']} images both scored: {verdict}"
    )


def _bundle_with_path(evaluation: Evaluation) -> str:
    """Its name and where it was loaded from (a name made unique by its path already says so)."""
    suffix = f"({evaluation.bundle_path})"
    return (
        evaluation.bundle if evaluation.bundle.endswith(suffix) else f"{evaluation.bundle} {suffix}"
    )


def _cut(evaluation: Evaluation) -> str:
    """What its verdicts meant: the threshold and the band."""
    low, high = evaluation.band
    given = evaluation.calibrated_threshold
    whose = "" if given is None else f" (given; the bundle's calibrated cut is {given:.4f})"
    return (
        f"P(ai) ≥ {evaluation.threshold:.4f}{whose} is called AI; {low:.3f} to {high:.3f} is "
        'answered "uncertain"'
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    cells = []
    for row in rows:
        tds = "".join(
            f'<td class="num">{_number(v)}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{_number(v)}</td>"
            for v in row
        )
        cells.append(f"<tr>{tds}</tr>")
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(cells)}</tbody></table></div>"
    )


def _size_correction_note(correction: SizeCorrection | None) -> str:
    if correction is None:
        return ""
    d = correction.details
    reencoded = (
        f"; in images that are not JPEG files they are re-encoded at JPEG "
        f"{correction.jpeg_quality} first"
        if correction.jpeg_quality is not None
        else ""
    )
    return (
        f"<dt>small faces</dt><dd>faces narrower than {correction.reference_width:.0f} px get a "
        f"size-corrected P(ai) (fitted on {d['n']} thumbnail faces: ECE "
        f"{d['ece_small_before']:.3f} → {d['ece_small_after']:.3f} on the small ones){reencoded}"
        "</dd>"
    )


def _figure(path: Path | None, alt: str, figure_id: str) -> str:
    if path is None:
        return ""
    source = data_uri(path.read_bytes(), "image/png")
    return f'<img class="plot" id="{figure_id}" src="{source}" alt="{html.escape(alt)}">'


def write_predictions(evaluations: Sequence[Evaluation], path: Path) -> Path:
    """One row per image and bundle, so any other metric or plot can be made from the scores."""
    columns = ["bundle", "path", "source", "truth", "status", "label", "p_ai", "face_width",
               "novelty", "familiar", "error"]  # fmt: skip
    with path.open("w", newline="", encoding=CSV_FILE_ENCODING) as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for evaluation in evaluations:
            scored = evaluation.scored
            for i, image_path in enumerate(scored.paths):
                writer.writerow(
                    [
                        printable_name(evaluation.bundle),
                        printable_name(image_path),
                        printable_name(scored.sources[i]),
                        "ai" if scored.targets[i] else "real",
                        scored.statuses[i],
                        scored.labels[i] or "",
                        "" if np.isnan(scored.p_ai[i]) else repr(float(scored.p_ai[i])),
                        "" if np.isnan(scored.face_widths[i]) else f"{scored.face_widths[i]:g}",
                        "" if np.isnan(scored.novelty[i]) else f"{scored.novelty[i]:.4f}",
                        "" if scored.familiar[i] is None else str(scored.familiar[i]).lower(),
                        scored.errors[i] or "",
                    ]
                )
    return path


def _pairs_table(evaluation: Evaluation) -> str:
    """AI sources down, real sources across: each pair's AUROC alone, with its 95% interval."""
    ai_sources = sorted({p["ai_source"] for p in evaluation.pairs})
    real_sources = sorted({p["real_source"] for p in evaluation.pairs})
    if not ai_sources or not real_sources:
        return ""

    cells = {
        (p["ai_source"], p["real_source"]): _with_interval(p["auroc"], p.get("auroc_interval"))
        for p in evaluation.pairs
    }
    rows = [[a, *[cells[(a, r)] for r in real_sources]] for a in ai_sources]
    return _table(["AI source", *real_sources], rows, "pairs-table")


def _summary_tables(evaluations: Sequence[Evaluation]) -> tuple[str, str]:
    """The headline metrics with their intervals and meanings, and precision/recall per class:
    a column pair, or a row block, per bundle."""
    keys = [
        "accuracy",
        "balanced_accuracy",
        "auroc",
        "average_precision",
        "eer",
        "log_loss",
        "brier",
        "ece",
        "false_positive_rate",
        "true_positive_rate",
        "uncertain_fraction",
        "accuracy_when_decided",
    ]
    summary = _table(
        [
            "metric",
            *[column for e in evaluations for column in (e.bundle, "95% interval")],
            "what it means",
        ],
        [
            [
                k,
                *[
                    cell
                    for e in evaluations
                    for cell in (e.metrics.get(k), _interval_cell(e.metrics, k))
                ],
                EXPLANATIONS[k],
            ]
            for k in keys
        ],
        "summary-table",
    )
    compared = len(evaluations) > 1
    per_class = _table(
        [*(["bundle"] if compared else []), "class", "precision", "recall", "F1", "support"],
        [
            [
                *([e.bundle] if compared else []),
                name,
                m["precision"],
                m["recall"],
                m["f1-score"],
                int(m["support"]),
            ]
            for e in evaluations
            for name, m in e.metrics["per_class"].items()
        ],
        "per-class-table",
    )
    return summary, per_class


def _sources_table(evaluation: Evaluation) -> str:
    """Each source's accuracy, share answered "uncertain", AUROC against the other class,
    false-positive rate and share of unfamiliar faces; intervals beside their values, so the
    table still fits a printed page."""
    return _table(
        [
            "source",
            "class",
            "images",
            "scored",
            "no face",
            "accuracy (95% interval)",
            "uncertain",
            "AUROC vs other class (95% interval)",
            "false-positive rate (95% interval)",
            "unfamiliar",
        ],
        [
            [
                r["source"],
                r["label"],
                r["n"],
                r["scored"],
                r["no_face"],
                _with_interval(r["accuracy"], r.get("accuracy_interval")),
                r.get("uncertain"),
                _with_interval(
                    r.get("auroc_vs_real", r.get("auroc_vs_ai")), r.get("auroc_interval")
                ),
                _with_interval(r.get("false_positive_rate"), r.get("false_positive_rate_interval")),
                r.get("unfamiliar"),
            ]
            for r in evaluation.sources
        ],
        "source-table",
    )


def _robustness_table(evaluations: Sequence[Evaluation]) -> str:
    """A row per perturbation, seven columns per bundle ("" when no sweep was run)."""
    main = evaluations[0]
    robust_rows = []
    for name in main.robustness:
        row: list[Any] = [name]
        for evaluation in evaluations:
            values = evaluation.robustness.get(name, {})
            row += [
                values.get("auroc"),
                values.get("auroc_drop"),
                _interval(values.get("auroc_drop_interval"), 3),
                values.get("accuracy"),
                values.get("false_positive_rate"),
                values.get("ece"),
                values.get("n"),  # images still scored: a perturbation can hide the face
            ]
        robust_rows.append(row)
    robust_headers = ["perturbation"]
    for evaluation in evaluations:
        robust_headers += [
            f"AUROC {evaluation.bundle}",
            "AUROC drop",
            "95% interval (same images)",
            "accuracy",
            "real called AI",
            "ECE",
            "scored",
        ]
    return _table(robust_headers, robust_rows, "robustness-table") if robust_rows else ""


def _mistakes_gallery(evaluation: Evaluation) -> tuple[str, str]:
    """The high-confidence mistakes as a grid of pictures, and the sentence that says they show
    heat maps (empty when evaluate drew none)."""
    # with its heat map where evaluate drew one, else the plain picture
    heat_note = (
        " Each photo shows its faces' heat maps: where the model looked, an aid to judgement, "
        "not proof."
        if evaluation.mistake_heatmaps
        else ""
    )
    pictures = [
        evaluation.mistake_heatmaps.get(m["path"]) or _thumbnail_uri(m["path"])
        for m in evaluation.mistakes
    ]
    gallery = (
        '<div class="grid" id="mistake-gallery">'
        + "".join(
            f'<figure><img src="{picture}" alt="{html.escape(m["path"])}">'
            f"<figcaption>truth <b>{m['truth']}</b>, P(ai) {m['p_ai']:.3f}"
            f"<br>{html.escape(m['source'])}"
            f"<br><small>{html.escape(Path(m['path']).name)}</small></figcaption></figure>"
            for m, picture in zip(evaluation.mistakes, pictures, strict=True)
        )
        + "</div>"
        if evaluation.mistakes
        # an empty gallery had read as a page cut short; the note is no grid cell
        else "<p>None: every scored face is on the side of the threshold its label says.</p>"
    )
    return heat_note, gallery


def _comparisons(evaluations: Sequence[Evaluation]) -> str:
    """Each compared bundle's AUROC difference from the first, in words and per source."""
    compared = [e for e in evaluations[1:] if e.comparison]
    comparisons = "".join(
        f'<p class="comparison">{html.escape(describe_comparison(e.bundle, e.comparison))}</p>'
        for e in compared
    )
    if compared:
        comparisons += _table(
            ["source", *[f"{e.bundle}: AUROC difference, 95% interval" for e in compared]],
            [
                [
                    source,
                    *[
                        f"{_number(e.comparison['by_source'][source]['auroc_difference'])} "
                        f"({_interval(e.comparison['by_source'][source]['auroc_difference_interval'])})"
                        for e in compared
                    ],
                ]
                for source in compared[0].comparison["by_source"]
            ],
            "comparison-table",
        )
    return comparisons


# What write_report may write: an earlier report's plot this one does not draw (a robustness
# sweep, ROC curves of two classes) must not stay beside it as if it were this one's.
REPORT_FILES = (
    "metrics.json",
    "predictions.csv",
    "report.html",
    "roc.png",
    "pr.png",
    "reliability.png",
    "confusion.png",
    "scores_by_class.png",
    "scores_by_source.png",
    "robustness.png",
)


def write_report(evaluations: Sequence[Evaluation], folder: Path, data: Sequence[str]) -> Path:
    """Write metrics.json, predictions.csv, every plot as PNG, and report.html into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        (folder / name).unlink(missing_ok=True)
    main = evaluations[0]
    write_predictions(evaluations, folder / "predictions.csv")
    (folder / "metrics.json").write_text(
        json.dumps(
            [e.to_dict() for e in evaluations] if len(evaluations) > 1 else main.to_dict(),
            indent=2,
            default=float,
        ),
        encoding="utf-8",
    )
    roc, pr = plot_roc_pr(evaluations, folder)
    reliability = plot_reliability(main, folder)
    confusion = plot_confusion(main, folder)
    by_class, by_source = plot_histograms(main, folder)
    robustness = plot_robustness(evaluations, folder)

    summary, per_class = _summary_tables(evaluations)
    # the sections drawn for the first bundle alone say so when others were compared
    whose = f" of {html.escape(main.bundle)}" if len(evaluations) > 1 else ""
    compared_with = "".join(
        f"<dt>compared with</dt><dd>{html.escape(_bundle_with_path(e))}: {_cut(e)}</dd>"
        for e in evaluations[1:]
    )
    sources = _sources_table(main)
    robust_table = _robustness_table(evaluations)
    robust_section = (
        f"""<p>The same images after common re-encodings
and edits; a small drop means the verdict survives what social networks, screenshots, cameras
in low light and black-and-white filters do. "Real called
AI" is the share of real faces at or above the threshold, ECE the calibration error, both on the
perturbed copies. Drops compare the images scored both ways (a face a perturbation hides counts
in "scored" instead); their 95% interval draws the same images for both, so it is narrow.</p>
{robust_table}{_figure(robustness, "Robustness", "plot-robustness")}"""
        if robust_table
        else '<p class="note">Not measured: this run skipped the sweep (<code>--robustness-limit '
        "0</code>). Without that option, evaluate scores up to 400 of the images again after "
        "each re-encoding and edit (JPEG, resizing, blur, a screenshot, greyscale, noise, "
        "thumbnails).</p>"
    )
    heat_note, gallery = _mistakes_gallery(main)
    calibration_note = (
        ""
        if main.calibrated
        else '<p class="note">This bundle is <b>not calibrated</b>: probabilities are raw sigmoid '
        "scores and the threshold is 0.5. Run <code>facetell calibrate</code> on held-out data.</p>"
    )
    seen_notes = "".join(
        f'<p class="note"><b>{html.escape(e.bundle)}</b>: {html.escape(note)}. Run evaluate '
        "with <code>--exclude-seen</code> to leave them out.</p>"
        for e in evaluations
        if (note := describe_seen(e.seen_in_training, e.timing["images"]))
    )
    comparisons = _comparisons(evaluations)
    not_scored = main.metrics["not_scored"]
    timing = main.timing
    one_class = (
        ""
        if roc
        else "<p>These curves need faces of both classes; these images gave faces of one "
        "(on real photos alone the false-positive rate is the number to read).</p>"
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">{NO_SCRIPTS}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>facetell evaluation: {html.escape(main.bundle)}</title><style>{_STYLE}</style></head>
<body><main>
<h1>facetell evaluation report</h1>
<p class="lead">How well <b>{html.escape(", ".join(e.bundle for e in evaluations))}</b> tells real
face photographs from AI-generated ones on {html.escape(", ".join(data))}. Each image's score is
P(ai) of its most AI-like face, through the same pipeline as <code>facetell predict</code>.</p>
{calibration_note}{seen_notes}
<section id="identity"><h2>Model and data</h2><dl>
<dt>bundle</dt><dd>{html.escape(_bundle_with_path(main))}</dd>
<dt>threshold</dt><dd>{_cut(main)}</dd>{compared_with}
{_size_correction_note(main.size_correction)}
<dt>images</dt><dd>{main.metrics["n"]} scored ({main.metrics["n_real"]} real,
{main.metrics["n_ai"]} AI); {not_scored["no_face"]} without a face and {not_scored["error"]}
unreadable were left out</dd>
<dt>speed</dt><dd>{timing["images_per_second"]:.1f} images/s ({timing["images"]} images in
{timing["seconds"]:.1f} s, decoding, face detection and model)</dd>
<dt>generated</dt><dd>{datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}</dd></dl></section>
<section id="summary"><h2>Summary</h2>{comparisons}<p>Each 95% interval says how far the number
could move on another set of the same kinds of images: rates get a Wilson interval, the others a
bootstrap with real and AI images resampled apart (empty when the bootstrap was skipped), and a
perfect ranking, which every resample repeats, the bound its image count allows. ECE
gets a yardstick instead: even perfectly calibrated probabilities show some ECE on a finite set,
and 95 times in 100 no more than the value given (labels drawn from the probabilities
themselves); a measured ECE below it is within that noise.
Near-duplicates that share a split make them a little too narrow; a new kind of camera or
generator can move the numbers further than any interval here.</p>{summary}{per_class}</section>
<section id="curves"><h2>ROC and precision-recall</h2>
<div class="plots">{_figure(roc, "ROC curve", "plot-roc")}
{_figure(pr, "Precision-recall curve", "plot-pr")}</div>{one_class}</section>
<section id="calibration"><h2>Confusion matrix and calibration{whose}</h2><p>The confusion
matrix counts the verdicts users see, "uncertain" among them; accuracy, precision and recall above
count an uncertain face on the side of the threshold its P(ai) lies. The reliability
diagram shows whether probabilities are honest: when the model says 80%, about 80% of such
images should be AI (points on the diagonal). The grey bars show where 95% of a perfectly
calibrated model's points would fall with as many images in each bin: a point outside its bar
is miscalibration, one inside it may be the noise of a few images.</p>
<div class="plots">{_figure(confusion, "Confusion matrix", "plot-confusion")}
{_figure(reliability, "Reliability diagram", "plot-reliability")}</div></section>
<section id="scores"><h2>Score distributions{whose}</h2>
<div class="plots">{_figure(by_class, "Scores per class", "plot-scores-class")}
{_figure(by_source, "Scores per source", "plot-scores-source")}</div></section>
<section id="sources"><h2>Per source{whose}</h2><p>AUROC of each AI source is measured against all
real images; each real source's false-positive rate is the share of its faces called AI.
"Uncertain" is the share of its images answered "uncertain". "Unfamiliar" is the share of its
faces unlike the model's training faces (empty when the model has no familiarity reference):
a few percent for a source it was trained on (5% on average over the
validation sources), more for an unseen camera or generator, whose scores deserve less trust.</p>
{sources}<p>AUROC of each AI source against each real source alone: which real photos a
generator's faces are mistaken for. Every image's score is in <code>predictions.csv</code>.</p>
{_pairs_table(main)}</section>
<section id="robustness"><h2>Robustness</h2>{robust_section}</section>
<section id="mistakes"><h2>High-confidence mistakes{whose}</h2><p>The wrong answers the model was
surest of: the first place to look for label noise, shortcuts or blind spots.{heat_note}</p>
{gallery}</section>
</main></body></html>"""
    path = folder / "report.html"
    path.write_text(printable(page), encoding="utf-8")  # file names not in UTF-8
    return path
