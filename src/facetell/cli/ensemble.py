"""`facetell ensemble`: one bundle from several, the weighted mean of their logits."""

from __future__ import annotations

from pathlib import Path

import typer

from facetell.cli.common import app, bundle_output, console, fail, overwrite_bundle_option
from facetell.errors import FacetellError


@app.command("ensemble")
def ensemble_command(
    members: list[Path] = typer.Argument(..., help="Member bundles (same crop size)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the ensemble bundle."),
    weights: list[float] = typer.Option([], "--weight", help="One per member (default equal)."),
    name: str = typer.Option(
        "facetell-ensemble", help="The bundle's model name (in every result)."
    ),
    half: bool = typer.Option(False, "--half", help="Store weights as float16 (half the size)."),
    overwrite: bool = overwrite_bundle_option(),
) -> None:
    """Combine bundles into one: the weighted mean of their temperature-scaled logits.

    Members trained on different crops each read their own; an ensemble given (`default`)
    joins as its own members. Calibrate the result again (`facetell calibrate`) before
    shipping it."""
    from facetell.bundle import ensemble_bundle, load_bundle, model_name_problem

    if problem := model_name_problem(name):
        raise fail(f"--name {name!r}: {problem}")
    if weights and len(weights) != len(members):
        raise fail(f"{len(weights)} weights for {len(members)} members")
    bundle_output(out, overwrite)
    try:
        bundle = ensemble_bundle(
            [load_bundle(m) for m in members],
            weights or None,
            name,
            weights_dtype="float16" if half else "float32",
        )
        bundle.save(out)
    except FacetellError as error:
        raise fail(str(error)) from None
    models = len(bundle.model_kwargs["members"])  # an ensemble given joins as its members
    of = f"{models} models from {len(members)} bundles" if models > len(members) else models
    console.print(f"ensemble of {of} written to {out}")
