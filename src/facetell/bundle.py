"""Model bundles: weights as safetensors plus JSON, so loading never unpickles anything.

A bundle is a folder (or a .zip of one) holding `model.safetensors`, `config.json`
(architecture, crop recipes, normalisation, labels), and optionally `calibration.json`,
`metrics.json`, `MODEL_CARD.md` and `model.onnx`. Serving reads its preprocessing from the
bundle, so it can never drift from training.

`training_images.safetensors` holds the first 8 bytes of the SHA-256 of every image file the
model was trained on (train split) and validated on (val split), so `evaluate` and `calibrate`
can say when they are given those images again, byte for byte: their numbers flatter the model.

`model.onnx` is the same weights exported for ONNX Runtime, tied to them by the safetensors
file's SHA-256 in config.json; `reference.safetensors` (facetell.familiarity) holds those
weights' embeddings of a sample of training faces, tied to them the same way in its metadata.
Inference runs the export without importing torch (torch and torchvision alone take ~3 s to
import on a 2-core CPU); the torch model is built only when something needs it (training,
Grad-CAM, a bundle without a matching export).

A model reads one crop per recipe in `Bundle.recipes`, stacked along the channel axis (3 per
recipe), so an ensemble can feed each member the crop it was trained on through one tensor.
Weights may be stored as float16 (`weights_dtype`) to halve the files; they are always computed
in float32, by torch and ONNX Runtime alike.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import operator
import os
import threading
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from safetensors import SafetensorError

from facetell import __version__
from facetell.errors import FacetellError
from facetell.faces import CropRecipe
from facetell.familiarity import REFERENCE_FILE, Reference

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT_VERSION = 1
REPO_DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"
# where setup.py packs models/default into a wheel (a non-editable install has no repository)
PACKAGED_BUNDLE = Path(__file__).resolve().parent / "_bundle"
# What a bundle argument may say for the shipped model, wherever facetell is installed
SHIPPED_NAME = "default"
LABELS = ("real", "ai")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_NAME_LENGTH = 100


def model_name_problem(name: str) -> str | None:
    """Why a model name cannot be used, or None. The name is in every result and names the run
    folder (runs/NAME), so it must be one printable folder name: '' made runs/ itself the run,
    '..' the folder above it."""
    if not name.strip():
        return "a model name cannot be empty (it is in every result)"
    if name in {".", ".."} or any(mark in name for mark in "/\\") or not name.isprintable():
        return "a model name is one folder name: no / or \\, not . or .., no control characters"
    if len(name) > MAX_NAME_LENGTH:
        return f"a model name has at most {MAX_NAME_LENGTH} characters, not {len(name)}"
    return None


# Held while a bundle builds its torch module: server threads asking at once for the first
# heat map each built their own copy (4 threads, 4 modules), and one request could hook the
# layers of one copy while running another.
_BUILD_LOCK = threading.Lock()


class BundleError(FacetellError):
    """A bundle folder is missing, incomplete or of an unknown format."""


TRAINING_IMAGES_FILE = "training_images.safetensors"
# Every file a bundle may hold: what a bundle written over another must not leave behind.
BUNDLE_FILES = (
    "config.json",
    "model.safetensors",
    "model.onnx",
    "calibration.json",
    "metrics.json",
    "MODEL_CARD.md",
    REFERENCE_FILE,
    TRAINING_IMAGES_FILE,
)
SPLITS_FITTED_ON = ("train", "val")


@dataclass(frozen=True)
class TrainingImages:
    """Fingerprints of the image files a model was fitted on, per split (train, val).

    A fingerprint is the first 8 bytes of the file's SHA-256: 8,000 images cost 64 KB in the
    bundle, and a chance collision between two of them is about 1 in 10^11.
    """

    train: frozenset[bytes] = frozenset()
    val: frozenset[bytes] = frozenset()

    @staticmethod
    def fingerprint(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()[:8]

    @classmethod
    def of_files(cls, train: Iterable[Path], val: Iterable[Path]) -> TrainingImages:
        def fingerprints(paths: Iterable[Path]) -> frozenset[bytes]:
            return frozenset(cls.fingerprint(path.read_bytes()) for path in paths)

        return cls(train=fingerprints(train), val=fingerprints(val))

    def __or__(self, other: TrainingImages) -> TrainingImages:
        return TrainingImages(train=self.train | other.train, val=self.val | other.val)

    def split_of(self, fingerprint: bytes | None) -> str | None:
        """The split the model saw this image in (train or val); None if it never saw it."""
        if fingerprint in self.train:
            return "train"
        return "val" if fingerprint in self.val else None

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        def table(prints: frozenset[bytes]) -> np.ndarray:
            rows = np.frombuffer(b"".join(sorted(prints)), dtype=np.uint8)
            return rows.reshape(len(prints), 8)

        return save({split: table(getattr(self, split)) for split in SPLITS_FITTED_ON})

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingImages:
        from safetensors.numpy import load

        tables = load(data)
        return cls(
            **{s: frozenset(map(bytes, tables[s].astype(np.uint8))) for s in SPLITS_FITTED_ON}
        )


@dataclass
class Bundle:
    """A model with everything needed to preprocess for it and read its output.

    Loaded bundles keep the raw safetensors bytes and build the torch module on first use of
    `model`; bundles made in memory (training, ensembles) pass `module`.
    """

    architecture: str
    model_kwargs: dict[str, Any]
    crop: CropRecipe
    extra_crops: tuple[CropRecipe, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str = "facetell-model"
    version: str = __version__
    calibration: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    weights_dtype: Literal["float32", "float16"] = "float32"
    path: Path | None = None
    module: nn.Module | None = None
    weights: bytes | None = None
    onnx: bytes | None = None
    reference: Reference | None = None
    training_images: TrainingImages | None = None

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def recipes(self) -> tuple[CropRecipe, ...]:
        """The crops the model reads, in channel order: `crop` first."""
        return (self.crop, *self.extra_crops)

    @property
    def model(self) -> nn.Module:
        """The torch module, built from the stored weights the first time it is asked for
        (once, however many threads ask at once)."""
        if self.module is None:
            with _BUILD_LOCK:
                if self.module is None:
                    self.module = _torch_model(
                        self.architecture, self.model_kwargs, self.weights, self.path
                    )
        return self.module

    def config(self) -> dict[str, Any]:
        extra_crops = [recipe.model_dump() for recipe in self.extra_crops]
        extra = {"extra_crops": extra_crops} if extra_crops else {}
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "facetell_version": __version__,
            "architecture": self.architecture,
            "model_kwargs": self.model_kwargs,
            "input": {
                "crop": self.crop.model_dump(),
                **extra,
                "mean": list(self.mean),
                "std": list(self.std),
            },
            "weights_dtype": self.weights_dtype,
            "labels": list(LABELS),
            "positive_label": "ai",
            "training": self.training,
        }

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) crops to the float input the model was trained on."""
        import torch

        return torch.from_numpy(self.normalise_array(batch.numpy()))

    def normalise_array(self, batch: np.ndarray) -> np.ndarray:
        """The same for numpy: uint8 (B, 3·R, H, W) to float32, as ONNX Runtime takes it."""
        channels = batch.shape[1]
        mean = np.resize(np.asarray(self.mean, dtype=np.float32), channels).reshape(1, -1, 1, 1)
        std = np.resize(np.asarray(self.std, dtype=np.float32), channels).reshape(1, -1, 1, 1)
        return ((batch.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)

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

    def save_reference(self, folder: Path) -> None:
        """Write only reference.safetensors into an existing bundle folder, tied to its weights."""
        if self.reference is None:
            raise BundleError(f"{folder}: no familiarity reference to save")
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise BundleError(f"{folder}: a reference can only be written into a bundle folder")
        write_whole(folder / REFERENCE_FILE, self.reference.to_bytes(_sha256(weights.read_bytes())))

    def save(self, folder: Path, *, model_card: str | None = None) -> Path:
        """Write the bundle; architectures ONNX can express also get `model.onnx`."""
        from safetensors.torch import save

        folder.mkdir(parents=True, exist_ok=True)
        half = self.weights_dtype == "float16"
        state = {}
        for key, tensor in self.model.state_dict().items():
            if half and tensor.is_floating_point():
                tensor.copy_(tensor.half())  # the live weights too: torch, files and ONNX agree
                tensor = tensor.half()
            state[key] = tensor.detach().contiguous()
        weights = save(state)
        (folder / "model.safetensors").write_bytes(weights)
        config = self.config()
        onnx = export_onnx(
            self.model, self.crop.size, channels=3 * len(self.recipes), fold_constants=not half
        )
        if onnx is not None and half:
            onnx = half_onnx_weights(onnx)
        (folder / "model.onnx").unlink(missing_ok=True)
        if onnx is not None:
            (folder / "model.onnx").write_bytes(onnx)
            config["onnx"] = {"file": "model.onnx", "weights_sha256": _sha256(weights)}
        _write_json(folder / "config.json", config)
        (folder / REFERENCE_FILE).unlink(missing_ok=True)
        if self.reference is not None:
            (folder / REFERENCE_FILE).write_bytes(self.reference.to_bytes(_sha256(weights)))
        (folder / TRAINING_IMAGES_FILE).unlink(missing_ok=True)
        if self.training_images is not None:
            (folder / TRAINING_IMAGES_FILE).write_bytes(self.training_images.to_bytes())
        # a folder's earlier calibration and metrics were another model's: never these weights'
        (folder / "calibration.json").unlink(missing_ok=True)
        if self.calibration is not None:
            _write_json(folder / "calibration.json", self.calibration)
        (folder / "metrics.json").unlink(missing_ok=True)
        if self.metrics:
            _write_json(folder / "metrics.json", self.metrics)
        (folder / "MODEL_CARD.md").unlink(missing_ok=True)  # another model's card
        if model_card is not None:
            (folder / "MODEL_CARD.md").write_text(model_card, encoding="utf-8")
        return folder


@dataclass(frozen=True)
class _Part:
    """One single model of an ensemble being built, with what the ensemble needs of it."""

    module: Any  # the member's torch module
    spec: dict[str, Any]  # architecture, model_kwargs, temperature, weight, source
    crop: CropRecipe


def _parts(member: Bundle, weight: float) -> list[_Part]:
    """A member bundle as the single models it is made of: an ensemble's own members (the
    shipped model's, say), each at its share of the weight, its temperature times the
    ensemble's, so the flat ensemble computes the nested one's logit."""
    temperature = float((member.calibration or {}).get("temperature", 1.0))
    if member.architecture != "ensemble":
        spec = {
            "architecture": member.architecture,
            "model_kwargs": member.model_kwargs,
            "temperature": temperature,
            "weight": weight,
            "source": member.identity,
        }
        return [_Part(member.model, spec, member.crop)]
    inner = member.model_kwargs["members"]
    total = sum(float(s.get("weight", 1.0)) for s in inner)
    recipes = [member.crop, *member.extra_crops]
    return [
        _Part(
            module,
            {
                "architecture": s["architecture"],
                "model_kwargs": s.get("model_kwargs", {}),
                "temperature": float(s.get("temperature", 1.0)) * temperature,
                "weight": weight * float(s.get("weight", 1.0)) / total,
                "source": s.get("source", member.identity),
            },
            recipes[int(s.get("input", 0))],
        )
        for module, s in zip(member.model.members, inner, strict=True)
    ]


def ensemble_bundle(
    members: list[Bundle],
    weights: list[float] | None = None,
    name: str = "facetell-ensemble",
    weights_dtype: Literal["float32", "float16"] = "float32",
) -> Bundle:
    """One bundle whose model averages the members' calibrated logits.

    Members may differ in crop recipe (same size): each distinct recipe becomes one input of
    the ensemble and each member reads its own. They must share normalisation. A member that
    is itself an ensemble joins as its own members.
    """
    first = members[0]
    for index, member in enumerate(members):
        twin = next((m for m in members[:index] if _same_model(m, member)), None)
        if twin is not None:  # an ensemble of one model, weighted by how often it was named
            raise BundleError(
                f"{member.path or member.identity} and {twin.path or twin.identity} are the "
                "same model reading the same crop; name each once (--weight to count one more)"
            )
        if member.crop.size != first.crop.size:
            raise BundleError(
                f"{member.path or member.identity} reads {member.crop.size}-px crops and "
                f"{first.path or first.identity} {first.crop.size}-px ones; an ensemble feeds its "
                f"members crops of one size: retrain one with --set crop.size={first.crop.size}"
            )
        if (member.mean, member.std) != (first.mean, first.std):
            raise BundleError(
                f"{member.path or member.identity} and {first.path or first.identity} normalise "
                "their input differently (mean and std); an ensemble feeds its members one input"
            )
    weights = weights or [1.0] * len(members)
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not sum(weights) > 0:
        raise BundleError(
            f"weights {', '.join(map(str, weights))}: an ensemble's weights are a weighted mean's, "
            "so none may be negative or missing and one must be above 0"
        )
    parts = [part for m, w in zip(members, weights, strict=True) for part in _parts(m, float(w))]
    recipes: list[CropRecipe] = []
    for part in parts:
        if part.crop not in recipes:
            recipes.append(part.crop)
    specs = [{**part.spec, "input": recipes.index(part.crop)} for part in parts]
    from facetell.models import create_model

    # what any member was fitted on: an image one member learnt flatters the ensemble too
    remembered = [m.training_images for m in members if m.training_images is not None]
    model = create_model("ensemble", members=specs)
    for module, part in zip(model.members, parts, strict=True):
        module.load_state_dict(part.module.state_dict())
    return Bundle(
        module=model.eval(),
        architecture="ensemble",
        model_kwargs={"members": specs},
        crop=recipes[0],
        extra_crops=tuple(recipes[1:]),
        mean=first.mean,
        std=first.std,
        name=name,
        weights_dtype=weights_dtype,
        training={"members": [m.identity for m in members]},
        training_images=functools.reduce(operator.or_, remembered) if remembered else None,
    )


def has_embedding(model: nn.Module) -> bool:
    """Whether a model can also give the pooled-feature embedding facetell.familiarity reads."""
    return bool(getattr(model, "has_embedding", False))


def export_onnx(
    model: nn.Module, size: int, channels: int = 3, *, fold_constants: bool = True
) -> bytes | None:
    """The model as an ONNX graph with a dynamic batch axis, or None for models that declare
    `onnx_exportable = False` (the spectrum model's FFT has no ONNX operator); those run on torch.
    Models with an embedding get it as a second output, "embedding", computed in the same pass.

    `fold_constants=False` keeps the stored weights as they are (BatchNorm not folded into the
    convolutions), so rounding them to float16 rounds the very numbers torch loads.
    """
    import torch

    if not getattr(model, "onnx_exportable", True):
        return None
    outputs = ["logit", "embedding"] if has_embedding(model) else ["logit"]

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> Any:
            if len(outputs) == 2:
                return self.model.logit_and_embedding(x)
            return self.model(x)

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            Exported().eval(),
            (torch.zeros(1, channels, size, size),),
            buffer,
            dynamo=False,
            do_constant_folding=fold_constants,
            input_names=["image"],
            output_names=outputs,
            dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=17,
        )
    return buffer.getvalue()


def half_onnx_weights(model: bytes) -> bytes:
    """Store an ONNX graph's float32 weights as float16, each read through a Cast to float32.

    ONNX Runtime folds the casts when it loads the graph, so it still computes in float32;
    only the file halves (what keeps a two-member ensemble under the 25 MB bundle budget).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph_model = onnx.load_from_string(model)
    graph = graph_model.graph
    initializers, casts = [], []
    for tensor in graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            initializers.append(tensor)
            continue
        half = numpy_helper.from_array(
            numpy_helper.to_array(tensor).astype(np.float16), f"{tensor.name}.float16"
        )
        initializers.append(half)
        casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return graph_model.SerializeToString()


def _torch_model(
    architecture: str, model_kwargs: dict[str, Any], weights: bytes | None, path: Path | None
) -> nn.Module:
    from safetensors.torch import load

    from facetell.models import create_model

    if weights is None:
        raise BundleError(f"{path}: the bundle has no weights to build its model from")
    model = create_model(architecture, **model_kwargs)
    try:
        state = load(weights)
    except SafetensorError as error:
        raise damaged(path, "model.safetensors", error) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise BundleError(f"{path}: weights do not fit {architecture}: {first}") from None
    return model.eval()


def damaged(path: Path | None, name: str, error: Exception) -> BundleError:
    """One line for a bundle file that cannot be parsed: which file, why, what to do."""
    if isinstance(error, KeyError):
        reason = f"no {error} entry"
    else:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
    return BundleError(
        f"{path}: {name} is damaged ({reason}); restore the bundle (for the shipped one: "
        "git checkout -- models/default) or rebuild it"
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_whole(path: Path, data: bytes) -> None:
    """Write beside the file, then rename over it: a kill or a full disk mid-write leaves the
    earlier file (hours of training, a fitted calibration), never half of the new one."""
    staged = path.with_name(path.name + ".part")
    try:
        with staged.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the file
        staged.replace(path)
    except OSError as error:  # name the file meant, not its staging copy
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        staged.unlink(missing_ok=True)


def _same_model(a: Bundle, b: Bundle) -> bool:
    """Same weights reading the same crop (one model given twice, by two paths perhaps)."""
    return a.crop == b.crop and a.weights is not None and a.weights == b.weights


def _write_json(path: Path, value: Any) -> None:
    write_whole(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def shipped_bundle_path() -> Path:
    """The bundle shipped with facetell: its copy inside the installed package, or the
    repository's models/default."""
    return PACKAGED_BUNDLE if PACKAGED_BUNDLE.is_dir() else REPO_DEFAULT_BUNDLE


def is_shipped_bundle(path: str | os.PathLike[str]) -> bool:
    """Whether a bundle path is the shipped model, which every predict without --model uses."""
    found = Path(path).resolve()
    return found in (PACKAGED_BUNDLE.resolve(), REPO_DEFAULT_BUNDLE.resolve())


def bundle_path(path: str | os.PathLike[str]) -> Path:
    """A bundle argument as a path. `default` names the shipped model, as models/default does
    only in a checkout of the repository; a file or folder of that name here comes first. A
    training run's folder (runs/mine) stands for the bundle it wrote (runs/mine/bundle)."""
    given = Path(path).expanduser()
    if os.fspath(path) == SHIPPED_NAME and not given.exists():
        return shipped_bundle_path()
    if not (given / "config.json").is_file() and (given / "bundle" / "config.json").is_file():
        return given / "bundle"
    return given


def _bundle_files(path: Path) -> dict[str, bytes]:
    """The files of a bundle folder or .zip by name; refused unless it holds a model."""
    if path.is_file() and path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                files = {Path(name).name: archive.read(name) for name in archive.namelist()
                         if not name.endswith("/")}  # fmt: skip
        except zipfile.BadZipFile as error:
            raise BundleError(f"{path}: not a readable zip archive ({error})") from None
    elif path.is_dir():
        files = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    else:
        files = {}
    if "config.json" not in files or "model.safetensors" not in files:
        folds = sorted(path.glob("*/bundle/config.json")) if path.is_dir() else []
        if folds:  # `train --folds` wrote one run, and bundle, a fold
            raise BundleError(
                f"{path}: holds {len(folds)} training runs, not one model bundle; give one of "
                f"their bundles, such as {folds[0].parent}"
            )
        inner = sorted(p.parent for p in path.glob("*/model.safetensors")) if path.is_dir() else []
        if inner:  # models/ for models/default: a folder of bundles
            which = f"give {inner[0]}" if len(inner) == 1 else f"give one, such as {inner[0]}"
            raise BundleError(f"{path}: a folder of {len(inner)} model bundle(s), not one; {which}")
        if _is_split_file(path):  # `evaluate runs/x/split.json data/`: the bundle forgotten
            raise BundleError(
                f"{path}: a split file, not a model bundle; give the bundle first and the split "
                f"with --split-file {path}"
            )
        raise BundleError(
            f"{path}: not a model bundle (expected a folder with config.json and "
            "model.safetensors, or a .zip of one)"
        )
    return files


def _is_split_file(path: Path) -> bool:
    """Whether a file is the split.json `facetell train` writes (kind, seed, params, rows)."""
    if not (path.is_file() and path.suffix.lower() == ".json"):
        return False
    try:
        held = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(held, dict) and {"kind", "seed", "params", "rows"} <= held.keys()


def copy_bundle(source: Path, folder: Path) -> None:
    """Copy a bundle (a folder or .zip) into a folder, to calibrate the copy; the files of a
    bundle the folder held before go, so no card or reference of another model stays."""
    files = _bundle_files(source)
    folder.mkdir(parents=True, exist_ok=True)
    for name in set(BUNDLE_FILES) - files.keys():
        (folder / name).unlink(missing_ok=True)
    for name, content in files.items():
        write_whole(folder / name, content)


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle folder or .zip exactly as saved; the torch model is built on first use.

    Weights are checked against the architecture when the torch model is built, and the ONNX
    export is used only if it was made from these very weights.
    """
    path = bundle_path(path)
    files = _bundle_files(path)

    def parsed_json(name: str) -> Any:
        try:
            return json.loads(files[name])
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError alike
            raise damaged(path, name, error) from None

    config = parsed_json("config.json")
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        found = config.get("format_version") if isinstance(config, dict) else None
        raise BundleError(f"{path}: bundle format {found} is not supported")
    weights = files["model.safetensors"]
    onnx_spec = config.get("onnx") or {}
    onnx = files.get(onnx_spec.get("file", "model.onnx"))
    if onnx is not None and onnx_spec.get("weights_sha256") != _sha256(weights):
        onnx = None  # exported from other weights: stale, so the torch model answers instead
    reference = None
    if REFERENCE_FILE in files:
        try:
            reference, reference_weights = Reference.from_bytes(files[REFERENCE_FILE])
        except (SafetensorError, KeyError, ValueError) as error:
            raise damaged(path, REFERENCE_FILE, error) from None
        if reference_weights != _sha256(weights):
            reference = None  # features of other weights: meaningless for these

    training_images = None
    if TRAINING_IMAGES_FILE in files:
        try:
            training_images = TrainingImages.from_bytes(files[TRAINING_IMAGES_FILE])
        except (SafetensorError, KeyError, ValueError) as error:
            raise damaged(path, TRAINING_IMAGES_FILE, error) from None

    def optional_json(name: str) -> Any:
        return parsed_json(name) if name in files else None

    calibration, metrics = optional_json("calibration.json"), optional_json("metrics.json")
    try:
        inputs = config["input"]
        return Bundle(
            architecture=config["architecture"],
            model_kwargs=config["model_kwargs"],
            crop=CropRecipe(**inputs["crop"]),
            extra_crops=tuple(CropRecipe(**r) for r in inputs.get("extra_crops", ())),
            mean=tuple(inputs["mean"]),
            std=tuple(inputs["std"]),
            name=config.get("name", "facetell-model"),
            version=config.get("version", "0"),
            calibration=calibration,
            metrics=metrics or {},
            training=config.get("training", {}),
            weights_dtype=config.get("weights_dtype", "float32"),
            path=path,
            weights=weights,
            onnx=onnx,
            reference=reference,
            training_images=training_images,
        )
    except (KeyError, TypeError, ValueError) as error:  # an entry missing or of the wrong shape
        raise damaged(path, "config.json", error) from None
