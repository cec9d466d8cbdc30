"""Model bundles: weights as safetensors plus JSON, so loading never unpickles anything.

A bundle is a folder (or a .zip of one) holding `model.safetensors`, `config.json`
(architecture, crop recipe, normalisation, labels), and optionally `calibration.json`,
`metrics.json` and `MODEL_CARD.md`. Serving reads its preprocessing from the bundle, so it can
never drift from training.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from facetell import __version__
from facetell.errors import FacetellError
from facetell.faces import CropRecipe
from facetell.models import create_model

FORMAT_VERSION = 1
LABELS = ("real", "ai")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BundleError(FacetellError):
    """A bundle folder is missing, incomplete or of an unknown format."""


@dataclass
class Bundle:
    """A loaded model with everything needed to preprocess for it and read its output."""

    model: nn.Module
    architecture: str
    model_kwargs: dict[str, Any]
    crop: CropRecipe
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str = "facetell-model"
    version: str = __version__
    calibration: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.version}"

    def config(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "facetell_version": __version__,
            "architecture": self.architecture,
            "model_kwargs": self.model_kwargs,
            "input": {
                "crop": self.crop.model_dump(),
                "mean": list(self.mean),
                "std": list(self.std),
            },
            "labels": list(LABELS),
            "positive_label": "ai",
            "training": self.training,
        }

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) crops to the float input the model was trained on."""
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (batch.float() / 255.0 - mean) / std

    def without_calibration(self) -> Bundle:
        """The same model answering with raw logits (what calibration is fitted on)."""
        return dataclasses.replace(self, calibration=None)

    def save_calibration(self, folder: Path) -> None:
        """Write only calibration.json into an existing bundle folder."""
        if self.calibration is None:
            raise BundleError(f"{folder}: no calibration to save")
        if not (folder / "config.json").is_file():
            raise BundleError(f"{folder}: calibration can only be written into a bundle folder")
        _write_json(folder / "calibration.json", self.calibration)

    def save(self, folder: Path, *, model_card: str | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        _write_json(folder / "config.json", self.config())
        if self.calibration is not None:
            _write_json(folder / "calibration.json", self.calibration)
        if self.metrics:
            _write_json(folder / "metrics.json", self.metrics)
        if model_card is not None:
            (folder / "MODEL_CARD.md").write_text(model_card, encoding="utf-8")
        return folder


def ensemble_bundle(
    members: list[Bundle], weights: list[float] | None = None, name: str = "facetell-ensemble"
) -> Bundle:
    """One bundle whose model averages the members' calibrated logits.

    Members must share crop recipe and normalisation: the ensemble feeds them one tensor.
    """
    first = members[0]
    for member in members[1:]:
        if (member.crop, member.mean, member.std) != (first.crop, first.mean, first.std):
            raise BundleError(
                f"{member.identity} and {first.identity} need different inputs (crop recipe or "
                "normalisation); an ensemble feeds every member the same crop"
            )
    weights = weights or [1.0] * len(members)
    specs = [
        {
            "architecture": m.architecture,
            "model_kwargs": m.model_kwargs,
            "temperature": float((m.calibration or {}).get("temperature", 1.0)),
            "weight": float(w),
            "source": m.identity,
        }
        for m, w in zip(members, weights, strict=True)
    ]
    model = create_model("ensemble", members=specs)
    for module, member in zip(model.members, members, strict=True):
        module.load_state_dict(member.model.state_dict())
    return Bundle(
        model=model.eval(),
        architecture="ensemble",
        model_kwargs={"members": specs},
        crop=first.crop,
        mean=first.mean,
        std=first.std,
        name=name,
        training={"members": [m.identity for m in members]},
    )


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_bundle(path: str | Path) -> Bundle:
    """Restore a bundle folder or .zip exactly as saved; weights are checked against the model."""
    path = Path(path)
    if path.is_file() and path.suffix == ".zip":
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as archive:
            archive.extractall(tmp)
            inner = next((p.parent for p in Path(tmp).rglob("config.json")), Path(tmp))
            bundle = load_bundle(inner)
            bundle.path = path
            return bundle
    config = _read_json(path / "config.json") if path.is_dir() else None
    if config is None or not (path / "model.safetensors").is_file():
        raise BundleError(
            f"{path}: not a model bundle (expected a folder with config.json and "
            "model.safetensors, or a .zip of one)"
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {config.get('format_version')} is not supported")
    model = create_model(config["architecture"], **config["model_kwargs"])
    try:
        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise BundleError(f"{path}: weights do not fit {config['architecture']}: {first}") from None
    model.eval()
    inputs = config["input"]
    return Bundle(
        model=model,
        architecture=config["architecture"],
        model_kwargs=config["model_kwargs"],
        crop=CropRecipe(**inputs["crop"]),
        mean=tuple(inputs["mean"]),
        std=tuple(inputs["std"]),
        name=config.get("name", "facetell-model"),
        version=config.get("version", "0"),
        calibration=_read_json(path / "calibration.json"),
        metrics=_read_json(path / "metrics.json") or {},
        training=config.get("training", {}),
        path=path,
    )
