"""A training run's settings: typed sections, shipped recipes by name, `--set` overrides.

Kept free of torch, so that a mistyped config, a bad override or a missing dataset is answered
in well under a second instead of after the seconds torch takes to import.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from facetell.bundle import IMAGENET_MEAN, IMAGENET_STD, model_name_problem
from facetell.data import NEAR_DUPLICATE_DISTANCE
from facetell.errors import FacetellError
from facetell.faces import CropRecipe


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"the low end comes first (got {list(pair)})")
    return pair


# A (low, high) range augmentation draws from: checked when the config is read, since a
# reversed or impossible range failed only once training first drew from it, minutes or hours in
Fraction = Annotated[float, Field(gt=0, le=1)]
Share = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Quality = Annotated[int, Field(ge=0, le=100)]  # Pillow's JPEG qualities
Band = Annotated[float, Field(ge=0, lt=0.5)]  # of a side, cut at both ends
FractionRange = Annotated[tuple[Fraction, Fraction], AfterValidator(_ordered)]
ShareRange = Annotated[tuple[Share, Share], AfterValidator(_ordered)]
PositiveRange = Annotated[tuple[Positive, Positive], AfterValidator(_ordered)]
NonNegativeRange = Annotated[tuple[NonNegative, NonNegative], AfterValidator(_ordered)]
QualityRange = Annotated[tuple[Quality, Quality], AfterValidator(_ordered)]
BandRange = Annotated[tuple[Band, Band], AfterValidator(_ordered)]


class AugmentConfig(BaseModel):
    """Each augmentation's probability and range; all zero gives the identity."""

    model_config = ConfigDict(extra="forbid")

    hflip: float = Field(0.5, ge=0, le=1)
    affine: float = Field(0.3, ge=0, le=1)
    max_rotation: float = Field(8.0, ge=0, le=180)
    max_translate: float = Field(0.05, ge=0, le=1)
    color_jitter: float = Field(0.5, ge=0, le=1)
    # brightness factor drawn from [1 - b, 1 + b] when colour jitter applies; greyscale is for
    # data whose real photos include black-and-white ones (off for the shipped recipe)
    brightness: float = Field(0.2, ge=0, lt=1)
    grayscale: float = Field(0.0, ge=0, le=1)
    # a camera's own traces (off by default): sensor noise of this standard deviation (uint8
    # units), then an unsharp-style sharpening of this strength (1 = unchanged), so that how
    # noisy or crisp a face is cannot tell one source's camera or generator from another's
    noise: float = Field(0.0, ge=0, le=1)
    noise_sigma: NonNegativeRange = (1.0, 8.0)
    sharpen: float = Field(0.0, ge=0, le=1)
    sharpen_factor: NonNegativeRange = (1.5, 4.0)
    random_crop: float = Field(0.3, ge=0, le=1)
    crop_scale: FractionRange = (0.7, 1.0)
    rescale: float = Field(0.3, ge=0, le=1)
    rescale_range: FractionRange = (0.25, 1.0)
    blur: float = Field(0.3, ge=0, le=1)
    blur_sigma: PositiveRange = (0.1, 3.0)
    jpeg: float = Field(0.5, ge=0, le=1)
    jpeg_quality: QualityRange = (30, 100)
    reframe: float = Field(0.0, ge=0, le=1)
    reframe_cut: BandRange = (0.05, 0.3)
    # patch masking (off by default): hide a random share of square patches so the decision
    # cannot rest on a few regions (eyes, teeth) whose flaws are one generator's own
    mask: float = Field(0.0, ge=0, le=1)
    mask_fraction: ShareRange = (0.1, 0.5)
    mask_patch: int = Field(16, ge=1)
    # tile shuffling (off by default): cut the crop into square tiles and put them back in a
    # random order, so whole-face content (who, what pose) cannot decide and local traces must;
    # held out it ranked unseen generators no higher (docs/results.md, session 33)
    shuffle: float = Field(0.0, ge=0, le=1)
    shuffle_tile: int = Field(40, ge=1)
    # frequency masking (off by default): drop a random share of the crop's spatial frequencies
    # in one band (low, middle, high or all), so no band of the spectrum, such as one
    # generator's up-sampling peaks, decides alone (Doloriel and Cheung, ICASSP 2024); held out
    # it ranked unseen generators lower against FFHQ photos (docs/results.md, session 67)
    frequency_mask: float = Field(0.0, ge=0, le=1)
    frequency_mask_fraction: ShareRange = (0.1, 0.2)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(hflip=0, affine=0, color_jitter=0, random_crop=0, rescale=0, blur=0, jpeg=0)


class SyntheticConfig(BaseModel):
    """How many real training faces are re-drawn, and how the re-drawing model is trained.

    `fraction` of the real training crops are re-drawn and added to the training split as AI
    images of source `source`; `downsample` is the decoder's up-sampling factor (a power of
    two: 8 as in latent-diffusion VAEs loses more detail than 4), `latent` its code channels.
    The network is fully convolutional, so it learns from random `patch`-pixel squares of the
    crops (a 64-px patch costs a sixth of a 160-px crop) and re-draws whole crops.
    """

    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(0.5, gt=0.0, le=1.0)
    downsample: int = Field(4, ge=2, le=16)
    latent: int = Field(16, ge=1, le=64)
    width: int = Field(32, ge=4, le=256)
    epochs: int = Field(10, ge=1)
    patch: int = Field(64, ge=8)
    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    source: str = "synthetic-redrawn"
    seed: int = Field(0, ge=0)

    # checked here: training met them only after every face was cut, with a traceback
    @field_validator("downsample")
    @classmethod
    def _power_of_two(cls, downsample: int) -> int:
        if downsample & (downsample - 1):
            raise ValueError(f"a power of two (2, 4, 8 or 16), not {downsample}")
        return downsample

    @model_validator(mode="after")
    def _patches_of_whole_codes(self) -> SyntheticConfig:
        if self.patch % self.downsample:
            raise ValueError(
                f"patch {self.patch} is not a multiple of downsample {self.downsample}, so the "
                "decoder cannot draw it back at its size"
            )
        return self


Schedule = Literal["cosine", "plateau", "constant"]
MAX_SEED = 2**32 - 1  # scikit-learn's folds take numpy's legacy seeds, which stop here


class PhaseConfig(BaseModel):
    """One stage of training.

    head: backbone frozen, its pooled features computed once (`views` per image: the clean crop
    plus augmented ones) and a linear head trained on them; finetune: the last
    `trainable_blocks` backbone blocks learn at a low rate; full: every weight learns (from
    scratch); closed_form: a model with `fit(features, targets)` is fitted in one go.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["head", "finetune", "full", "closed_form"]
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    trainable_blocks: int = Field(0, ge=0)
    views: int = Field(2, ge=1)
    cache_features: bool = True
    regularisation: float = Field(1.0, gt=0)
    # finetune / full: from this epoch of the phase on, the weights after every epoch join a
    # running mean (stochastic weight averaging), validated at the phase's end as one more
    # epoch and kept if it is the best (on the shared data it did not help held-out sources:
    # docs/results.md, session 20).
    average_from: int | None = Field(None, ge=1)
    schedule: Schedule | None = None  # this phase's learning-rate schedule (default: the run's)

    @model_validator(mode="after")
    def _averaging_needs_gradient_epochs(self) -> PhaseConfig:
        if self.average_from is not None and self.kind not in ("finetune", "full"):
            raise ValueError(f"average_from needs a finetune or full phase, not {self.kind}")
        return self


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = ["../shared/data/faces"]
    # train, val, test shares; a run needs training and validation images, a test share may be 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    holdout_source: str | None = None
    folds: int = Field(1, ge=1)
    # The split's own seed (None: the run's `seed`), so runs that differ only in training
    # randomness are scored on the same test faces (seed spreads, seed ensembles).
    split_seed: int | None = Field(None, ge=0, le=MAX_SEED)
    near_duplicate_bits: int = Field(NEAR_DUPLICATE_DISTANCE, ge=0, le=128)  # of 256, as audit
    max_per_source: int | None = Field(None, ge=1)

    @field_validator("fractions")
    @classmethod
    def _shares_of_one_whole(
        cls, fractions: tuple[float, float, float]
    ) -> tuple[float, float, float]:
        train, val, test = fractions
        if min(fractions) < 0 or abs(train + val + test - 1) > 1e-6:
            raise ValueError(
                f"three shares (train, val, test) that sum to 1, not {list(fractions)}"
            )
        if train == 0 or val == 0:
            raise ValueError(f"training and validation need a share above 0, not {list(fractions)}")
        return fractions


class AdversaryConfig(BaseModel):
    """Source-adversarial fine-tuning: a small network guesses which source of its class each
    face came from, and a reversed gradient (Ganin & Lempitsky, 2015) teaches the backbone to
    defeat it, so the features stop encoding UTKFace-vs-FFHQ or one generator's style while the
    head still learns real vs AI. Applies to finetune and full phases."""

    model_config = ConfigDict(extra="forbid")

    # Strength of the reversed gradient reaching the backbone, ramped from 0 over each phase
    # as 2 / (1 + exp(-10 p)) - 1 so the adversary first learns what to defeat.
    weight: float = Field(0.3, gt=0)
    hidden: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    # Whose sources must become indistinguishable: "real" alone targets the data's main trap
    # (UTKFace's look as the mark of a real photo, FFHQ's as that of a fake).
    classes: list[Literal["real", "ai"]] = ["real", "ai"]


class TrainConfig(BaseModel):
    """Everything a run depends on; saved resolved beside the run so it can be repeated."""

    model_config = ConfigDict(extra="forbid")

    name: str = "facetell-model"
    model: str
    model_kwargs: dict[str, Any] = {}
    crop: CropRecipe = CropRecipe()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = IMAGENET_STD
    augment: AugmentConfig = AugmentConfig()
    data: DataConfig = DataConfig()
    phases: list[PhaseConfig]
    batch_size: int = Field(64, ge=1)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Schedule = "cosine"
    patience: int = Field(4, ge=1)
    # 0 draws every training image equally often; above 0 the sources of a class are drawn
    # with replacement, each source's share of its class growing as count ** (1 - exponent)
    # (1: equal shares), so one large source (UTKFace: 68% of the real faces) does not set
    # what "real" looks like.
    source_balance: float = Field(0.0, ge=0.0, le=1.0)
    # Draw real and AI training faces equally often (with replacement), whatever their counts:
    # with 20 real faces to each AI one, plain shuffling shows the model few fakes per epoch.
    # The calibration, fitted on held-out faces in their own proportion, sets the prior back.
    class_balance: bool = False
    # Real training faces re-drawn by an autoencoder, added to the training split as AI images
    # (synthesize.py); off unless set.
    synthetic: SyntheticConfig | None = None
    # Off unless set (docs/results.md, session 34).
    adversary: AdversaryConfig | None = None
    # finetune / full phases: each training face is blended with another of the batch, weight
    # lambda ~ Beta(mixup, mixup) per face, and its target blended alike (Zhang et al., 2018), so
    # no single trait of one source can decide a whole face; 0 turns it off (docs/results.md,
    # session 40).
    mixup: float = Field(0.0, ge=0.0)
    # Weights to start from instead of the family's pretrained ones: a run's
    # checkpoints/best.safetensors or a bundle's model.safetensors (same family and kwargs), so
    # new phases can continue a finished run.
    init_from: str | None = None
    seed: int = Field(0, ge=0, le=MAX_SEED)
    workers: int = Field(2, ge=0)
    threads: int = Field(2, ge=1)
    cache_dir: str = "~/.cache/facetell"

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        if problem := model_name_problem(name):
            raise ValueError(problem)
        return name

    @model_validator(mode="after")
    def _mixup_without_adversary(self) -> TrainConfig:
        if self.mixup > 0 and self.adversary is not None:
            raise ValueError(
                "mixup blends faces of two sources, which the source adversary cannot name: "
                "set one of mixup and adversary"
            )
        return self


def parse_yaml(text: str, where: str) -> Any:
    """YAML, or one line saying where it stops parsing."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise FacetellError(f"{where}: not valid YAML{at} ({problem})") from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise FacetellError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), parse_yaml(value, f"override {text!r}")


# The shipped model's training recipes (configs/*.yaml), which setup.py packs into a wheel as
# facetell/_recipes, so `facetell train --data mine/` works without the repository.
REPO_RECIPES = Path(__file__).resolve().parents[3] / "configs"
PACKAGED_RECIPES = Path(__file__).resolve().parents[1] / "_recipes"
DEFAULT_RECIPE = "default-lite0"  # the shipped ensemble's first member


def shipped_recipes() -> dict[str, Path]:
    """The shipped recipes by name (their file names without .yaml)."""
    folder = PACKAGED_RECIPES if PACKAGED_RECIPES.is_dir() else REPO_RECIPES
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def resolve_recipe(config: str | None) -> Path:
    """A YAML config's path, or the shipped recipe of that name (DEFAULT_RECIPE if none)."""
    if config is not None and (Path(config).exists() or config.endswith((".yaml", ".yml"))):
        return Path(config)
    recipes = shipped_recipes()
    name = config or DEFAULT_RECIPE
    if name not in recipes:
        known = ", ".join(recipes) or "none installed"
        raise FacetellError(f"{name}: no such config file or shipped recipe (recipes: {known})")
    return recipes[name]


def _paths_from_config_folder(raw: dict[str, Any], folder: Path) -> None:
    """A config's relative data paths are found from the working folder, or else from the
    config's own folder, as a config kept beside its data is written."""
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("paths"), list):
        return
    data["paths"] = [
        str(folder / entry)
        if isinstance(entry, str) and not Path(entry).exists() and (folder / entry).exists()
        else entry
        for entry in data["paths"]
    ]


def is_shipped_recipe(path: Path | None) -> bool:
    """Whether a config is one of the shipped recipes (not the user's own YAML)."""
    return path is not None and path.resolve() in {p.resolve() for p in shipped_recipes().values()}


def _apply_override(raw: dict[str, Any], keys: list[str], value: Any, override: str) -> None:
    """Set the value at a dotted key; a number after a list's name picks one of its items, so
    `phases.1.epochs=5` changes one phase without writing out the whole list."""
    node: Any = raw
    for depth, key in enumerate(keys, start=1):
        section, last = ".".join(keys[: depth - 1]), depth == len(keys)
        if isinstance(node, list):
            if not (key.isdigit() and int(key) < len(node)):
                raise FacetellError(
                    f"override {override!r}: {section} is a list of {len(node)}; name an item "
                    f"by its number, 0 to {len(node) - 1}"
                )
            key = int(key)
        elif not isinstance(node, dict):
            raise FacetellError(f"override {override!r}: {section} holds a value, not keys")
        if last:
            node[key] = value
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            node = node[key]


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config and apply `a.b=value` overrides (values parsed as YAML)."""
    raw: Any = {}
    if path is not None:
        if path.is_dir():  # `train --data mine/ theirs/`: the second folder became CONFIG
            raise FacetellError(
                f"{path}: a folder, not a config; for several datasets give --data before each "
                f"(--data A --data {path})"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise FacetellError(f"{path}: cannot read config ({error.strerror})") from None
        except UnicodeDecodeError:  # an image or a binary given where the config goes
            raise FacetellError(f"{path}: not a YAML config (not UTF-8 text)") from None
        raw = parse_yaml(text, str(path)) or {}
        if not isinstance(raw, dict):
            raise FacetellError(
                f"{path}: a config is a YAML mapping (key: value lines), not a {type(raw).__name__}"
            )
    recipe_model = raw.get("model")
    overridden: dict[tuple[str, ...], str] = {}
    for override in overrides:
        keys, value = _parse_override(override)
        overridden[tuple(keys)] = override
        _apply_override(raw, keys, value, override)
    given_paths = ("data", "paths") in overridden or ("data",) in overridden
    if path is not None and not is_shipped_recipe(path) and not given_paths:
        _paths_from_config_folder(raw, path.parent)
    if is_shipped_recipe(path) and raw.get("model") != recipe_model and ("name",) not in overridden:
        # a shipped recipe's name names its architecture, and the run folder defaults to it:
        # `--set model=npr` on default-lite0 must neither be called nor overwrite Lite0's run
        raw["name"] = f"{path.stem}-{raw.get('model')}"
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:  # every bad field, on one line
        problems = "; ".join(
            f"{_where(problem['loc'], overridden)}: {_why(problem)}" for problem in error.errors()
        )
        raise FacetellError(f"{path or 'config'}: invalid training config: {problems}") from None


def _why(problem: Any) -> str:
    """pydantic's message, with the keys that are known where an unknown one was given."""
    if problem["type"] != "extra_forbidden":
        return problem["msg"].removeprefix("Value error, ")
    model: Any = TrainConfig
    for key in problem["loc"][:-1]:  # list indices (phases.0) keep the list's item model
        if isinstance(key, str):
            annotation = model.model_fields[key].annotation
            candidates = [annotation, *typing.get_args(annotation)]
            models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
            if not models:
                return problem["msg"]
            model = models[0]
    return f"not a setting here (known: {', '.join(model.model_fields)})"


def _where(location: tuple[int | str, ...], overridden: dict[tuple[str, ...], str]) -> str:
    """A bad field's dotted name, and the --set that gave it its value (the message otherwise
    blamed the config file, which may hold a good value)."""
    name = ".".join(map(str, location)) or "config"
    keys = tuple(map(str, location))
    given = [text for prefix, text in overridden.items() if keys[: len(prefix)] == prefix]
    return f"{name} (--set {given[-1]})" if given else name
