"""The training loop: phases with early stopping, checkpoints and resume, the bundle a run
saves, and `train`, which runs every split a config asks for."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, default_collate

from facetell.audit import shortcut_warning
from facetell.bundle import (
    SHIPPED_NAME,
    SPLITS_FITTED_ON,
    Bundle,
    TrainingImages,
    bundle_path,
    write_whole,
)
from facetell.data import SplitFile, labelled_both_ways
from facetell.errors import FacetellError
from facetell.evaluate import per_source_metrics, summary_metrics
from facetell.models import create_model
from facetell.train.augment import build_augment
from facetell.train.config import AdversaryConfig, PhaseConfig, SyntheticConfig, TrainConfig
from facetell.train.crops import (
    PreparedData,
    check_crop_cache_folder,
    cropped_data,
    grouped_samples,
    make_splits,
    source_balanced_weights,
    why_unreadable,
)
from facetell.train.runs import (
    RunResult,
    check_run_folder,
    clear_earlier_runs,
    plot_history,
    summarise_runs,
)
from facetell.train.synthesize import synthetic_fakes

IMBALANCE = 4  # one class this many times the other's count: training says class_balance helps


class CropDataset(Dataset):
    """Cached uint8 crops → (augmented) normalised tensors with their targets.

    With `item_seed` set, the augmentation of item i is fixed by (item_seed, i), so a view can
    be recomputed identically: the frozen-feature cache and the uncached path see the same pixels.
    """

    def __init__(
        self,
        crops: np.ndarray,
        indices: np.ndarray,
        targets: np.ndarray,
        transform: nn.Module | None,
        mean: Sequence[float],
        std: Sequence[float],
        item_seed: int | None = None,
        source_ids: np.ndarray | None = None,
    ) -> None:
        self.crops = crops
        self.indices = np.asarray(indices)
        self.targets = targets
        self.transform = transform
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.item_seed = item_seed
        self.source_ids = source_ids

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, ...]:
        index = int(self.indices[position])
        image = torch.from_numpy(np.array(self.crops[index])).permute(2, 0, 1)
        if self.transform is not None and self.item_seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.item_seed * 1_000_003 + index)
                image = self.transform(image)
        elif self.transform is not None:
            image = self.transform(image)
        tensor = (image.float() / 255.0 - self.mean) / self.std
        target = torch.tensor(float(self.targets[index]))
        if self.source_ids is None:
            return tensor, target
        return tensor, target, torch.tensor(int(self.source_ids[index]))


def mixup_batch(
    images: torch.Tensor, targets: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each face blended with a randomly paired face of the batch, targets blended alike."""
    weights = torch.distributions.Beta(alpha, alpha).sample((len(images),))
    partners = torch.randperm(len(images))
    image_weights = weights.view(-1, 1, 1, 1).to(images.dtype)
    blended = image_weights * images + (1.0 - image_weights) * images[partners]
    return blended, weights * targets + (1.0 - weights) * targets[partners]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _channels_last_batch(items: list[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
    """Stack a batch in the layout the trainer's model runs fastest in on CPU."""
    images, *labels = default_collate(items)
    return [images.contiguous(memory_format=torch.channels_last), *labels]


class _ReverseGradient(torch.autograd.Function):
    """Identity on the way forward; on the way back the gradient is negated and scaled."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


class SourceAdversary(nn.Module):
    """Guesses which training source of its own class a face's pooled features came from.

    Only sources of the face's class compete (the class is the head's business), so the
    reversed gradient removes what tells sources apart within a class and nothing else.
    """

    def __init__(
        self, feature_dim: int, source_classes: Sequence[int], settings: AdversaryConfig
    ) -> None:
        super().__init__()
        self.settings = settings
        self.net = nn.Sequential(
            nn.Linear(feature_dim, settings.hidden),
            nn.ReLU(),
            nn.Linear(settings.hidden, len(source_classes)),
        )
        classes = torch.tensor(source_classes)
        self.register_buffer("in_class", torch.stack([classes == 0, classes == 1]))

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor, strength: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the source guess, averaged over the batch (its gradient reaches the
        backbone reversed, times `strength`), and which guesses were right. Faces whose source
        is numbered -1 (a class left out of the game) cost nothing and are not guessed."""
        logits = self.net(_ReverseGradient.apply(features, strength))
        logits = logits.masked_fill(~self.in_class[targets.long()], -math.inf)
        counted = sources >= 0
        loss = nn.functional.cross_entropy(logits[counted], sources[counted], reduction="sum")
        return loss / len(sources), logits[counted].argmax(1) == sources[counted]


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class EpochRecord:
    phase: int
    kind: str
    epoch: int
    train_loss: float
    val_loss: float
    val_auroc: float
    val_accuracy: float
    lr: float
    seconds: float
    adversary_accuracy: float | None = None  # share of source guesses the adversary got right

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}


class Reporter:
    """Progress callbacks; the CLI draws a rich bar, tests pass this silent default."""

    def stage(self, name: str, done: int, total: int) -> None: ...

    def batch(self, description: str, done: int, total: int) -> None: ...

    def epoch(self, record: EpochRecord) -> None: ...

    def skipped(self, paths: list[Path]) -> None:
        """Files in the data folders that are no image facetell reads, left out of training."""

    def unreadable(self, reasons: dict[Path, str]) -> None:
        """Image files that could not be decoded, each with why (damaged, truncated, over the
        pixel limit), left out of training."""

    def faceless(self, paths: list[Path]) -> None:
        """Images in which no face was found: their centre square was trained on instead."""

    def in_both_classes(self, pairs: list[tuple[Path, Path]]) -> None:
        """Pictures labelled both real and AI (the same file, or a near-copy), each a (real,
        ai) pair of paths."""

    def shortcut(self, warning: str) -> None:
        """File size, format and compression alone separate the data's classes (audit's
        shortcut score): the model can learn them instead of faces."""

    def imbalanced(self, n_real: int, n_ai: int) -> None:
        """The training split holds one class many times more often than the other, and
        class_balance is off."""


# What a model must have to run a phase of each kind: a backbone to freeze, a closed-form fit
PHASE_NEEDS = {"head": "freeze_backbone", "finetune": "freeze_backbone", "closed_form": "fit"}


def phases_it_runs(model: nn.Module) -> list[str]:
    """The kinds of phase a model can be trained in (`facetell models` lists them)."""
    kinds = typing.get_args(PhaseConfig.model_fields["kind"].annotation)
    return [kind for kind in kinds if kind not in PHASE_NEEDS or hasattr(model, PHASE_NEEDS[kind])]


def model_shapes(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The config's model as tensor shapes alone, no weights drawn or read: an unknown model,
    model_kwargs it rejects or a phase it cannot run is refused before the faces are cut, not
    minutes after."""
    kwargs = {key: value for key, value in config.model_kwargs.items() if key != "pretrained"}
    with torch.device("meta"):
        model = create_model(config.model, **kwargs)
    refuse_what_the_model_cannot_do(config, model)
    return model.state_dict()


def refuse_what_the_model_cannot_do(config: TrainConfig, model: nn.Module) -> None:
    """A phase kind the model has no means for, or a source adversary on a model without pooled
    features: asked by `train` before the faces are cut, and by a Trainer made directly."""
    runs = phases_it_runs(model)
    for number, phase in enumerate(config.phases):
        if phase.kind not in runs:
            raise FacetellError(
                f"phases.{number}: model {config.model!r} cannot run a {phase.kind} phase "
                f"(it runs {', '.join(runs)})"
            )
    if config.adversary is not None and not hasattr(model, "embed"):
        raise FacetellError(
            f"adversary needs a pooled-backbone model (embed + head), not {config.model!r}"
        )


def read_init_weights(
    config: TrainConfig, own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor] | None:
    """config.init_from's weights, checked against the config's model (`own`, its state dict or
    shapes): a run's checkpoint, a bundle (its folder or model.safetensors), or the member of an
    ensemble bundle (the shipped model, `default`) that is of the config's architecture, so
    fine-tuning the shipped model is one --set.
    """
    if config.init_from is None:
        return None
    path = bundle_path(config.init_from)
    if path.is_dir() and (path / "model.safetensors").is_file():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FacetellError(
            f"{path}: init_from weights not found; give a .safetensors file or a bundle folder "
            f"({SHIPPED_NAME!r}: the shipped model's)"
        )
    weights = load_file(str(path))
    bundle_config = path.parent / "config.json"
    if path.name == "model.safetensors" and bundle_config.is_file():
        spec = json.loads(bundle_config.read_text(encoding="utf-8"))
        if spec.get("architecture") == "ensemble":
            weights = _member_weights(path.parent, spec, weights, config)
    misfit = _misfit(own, weights)
    if misfit:
        raise FacetellError(
            f"{path}: init_from weights do not fit model {config.model!r} ({misfit}); "
            "give weights of this architecture"
        )
    return weights


def _member_weights(
    folder: Path, spec: dict[str, Any], weights: dict[str, torch.Tensor], config: TrainConfig
) -> dict[str, torch.Tensor]:
    """The weights of the ensemble member of the config's architecture (of its crop, too, when
    two members share the architecture)."""
    members = spec["model_kwargs"]["members"]
    recipes = [spec["input"]["crop"], *spec["input"].get("extra_crops", [])]
    fitting = [i for i, member in enumerate(members) if member["architecture"] == config.model]
    crop = config.crop.model_dump()
    chosen = [i for i in fitting if recipes[members[i].get("input", 0)] == crop] or fitting
    if len(chosen) != 1:
        described = ", ".join(
            f"{m['architecture']} ({m.get('source', 'member ' + str(i))})"
            for i, m in enumerate(members)
        )
        why = "none is" if not chosen else "several are, none reading the config's crop"
        raise FacetellError(
            f"{folder}: init_from is an ensemble of {described}; {why} of the config's model "
            f"{config.model!r}"
        )
    prefix = f"members.{chosen[0]}."
    return {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}


def _misfit(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """Why weights do not fit a model, in a few words ("" when they do): torch's message
    lists every key and got cut to a dangling "Error(s) in loading state_dict for …:"."""
    missing = [key for key in own if key not in given]
    foreign = sorted(key for key in given if key not in own)
    if missing or foreign:
        parts = [f"{len(missing)} of its {len(own)} tensors missing"] if missing else []
        parts += [f"{len(foreign)} foreign ones such as {foreign[0]!r}"] if foreign else []
        return ", ".join(parts)
    for key, tensor in own.items():
        if tensor.shape != given[key].shape:
            shapes = (tuple(given[key].shape), tuple(tensor.shape))
            return f"{key!r} is {shapes[0]} there, {shapes[1]} here"
    return ""


LAST = "last.safetensors"  # in checkpoints/: where --resume continues from
RUN_STATE = "facetell.run_state"  # LAST's metadata key for the RunState, optimizer and scheduler


@dataclass
class RunState:
    """What a checkpoint must carry for `--resume` to continue exactly where it stopped."""

    phase: int = 0
    epoch: int = 0  # epochs finished in this phase
    best_auroc: float = -math.inf
    best_val_loss: float = math.inf  # breaks AUROC ties (below)
    # Patience counts from the phase's own best: fine-tuning often starts below the frozen head's
    # best and climbs past it, and must not be stopped while it still improves.
    phase_best_auroc: float = -math.inf
    phase_best_val_loss: float = math.inf
    bad_epochs: int = 0
    averaged: int = 0  # epochs in this phase's weight average (checkpoints/average.safetensors)
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False


def improves(auroc: float, loss: float, best_auroc: float, best_loss: float) -> bool:
    """A higher validation AUROC, or the same one (within 1e-4) at a lower loss. Easy data
    ranks every validation image right from the first epoch: AUROC stays 1.0, and without the
    loss the bundle kept those first weights, whatever fine-tuning achieved after them."""
    if auroc > best_auroc + 1e-4:
        return True
    return auroc >= best_auroc - 1e-4 and loss < best_loss


def refuse_a_split_without_both_classes(
    split: SplitFile, targets: np.ndarray, groups: np.ndarray, valid: np.ndarray, out_dir: Path
) -> None:
    """Validation AUROC needs both classes: without one it was NaN every epoch, no best weights
    were ever kept, and the run ended in a traceback after its first phase. `train` asks before
    the faces are cut (every image taken as readable) and each run again after (`valid`: the
    images that decoded)."""
    assignment = np.array([row["split"] for row in split.rows])
    for part, role in (("train", "training"), ("val", "validation")):
        held = np.bincount(targets[(assignment == part) & valid], minlength=2)
        missing = " or ".join(name for name, n in zip(("real", "AI"), held, strict=True) if not n)
        if not missing:
            continue
        total = np.bincount(targets[valid], minlength=2)
        remedy = (
            f"add {missing} images to the data's own {part} part"
            + ("" if part == "train" else ", or take the part away to draw it anew")
            if part in split.params.get("given", ())
            else "add images of the class missing (splits take whole sources' shares, so a few "
            "per source at least)" + _few_distinct(held, targets, groups, valid)
        )
        raise FacetellError(
            f"{out_dir}: the {role} split holds no {missing} images (the data has {total[0]} "
            f"real and {total[1]} AI images that could be read); training needs both classes "
            f"in training and validation: {remedy}"
        )


def _few_distinct(
    held: np.ndarray, targets: np.ndarray, groups: np.ndarray, valid: np.ndarray
) -> str:
    """Why a class with images enough is missing from a part: near-copies form one group, and
    a group stays in one part (eight crops of one photo are one image to a split)."""
    said = ""
    for target, name in enumerate(("real", "AI")):
        of_class = valid & (targets == target)
        n_groups = len(np.unique(groups[of_class]))
        if not held[target] and 0 < n_groups < int(of_class.sum()) and n_groups < 3:
            said += (
                f"; the {int(of_class.sum())} {name} images are near-copies of {n_groups} "
                f"{'image' if n_groups == 1 else 'images'}, and near-copies stay in one split"
            )
    return said


class Trainer:
    """Runs one split of one config; the package docstring lists the steps."""

    def __init__(
        self,
        config: TrainConfig,
        data: PreparedData,
        split: SplitFile,
        out_dir: Path,
        reporter: Reporter | None = None,
        init_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """`init_weights`: config.init_from's, read by `train` before the data (read here when
        not given)."""
        self.config = config
        self.data = data
        self.split = split
        self.out_dir = out_dir
        self.reporter = reporter or Reporter()
        assignment = np.array([row["split"] for row in split.rows])
        self.index = {
            name: np.flatnonzero((assignment == name) & data.valid) for name in ("train", "val")
        }
        self.index["test"] = np.flatnonzero((assignment == "test") & data.valid)
        refuse_a_split_without_both_classes(split, data.targets, data.groups, data.valid, out_dir)
        self.synthetic_count = 0
        if config.synthetic is not None:
            self._add_synthetic_fakes(config.synthetic)
        train = self.index["train"]
        n_ai = int(self.data.targets[train].sum())
        n_real = len(train) - n_ai
        if not config.class_balance and max(n_real, n_ai) >= IMBALANCE * min(n_real, n_ai):
            self.reporter.imbalanced(n_real, n_ai)
        self.train_weights = source_balanced_weights(
            self.data.targets[train],
            [self.data.sources[i] for i in train],
            config.source_balance,
            equal_classes=config.class_balance,
        )
        torch.manual_seed(config.seed)
        self.model = create_model(config.model, **config.model_kwargs)
        refuse_what_the_model_cannot_do(config, self.model)
        if init_weights is None and config.init_from is not None:
            init_weights = read_init_weights(config, self.model.state_dict())
        if init_weights is not None:
            # load_state_dict copies into the model's own dtypes (bundles may hold float16)
            self.model.load_state_dict(init_weights)
        # On CPU, oneDNN runs these depthwise/pointwise convolutions about 1.5x faster in the
        # channels-last layout (benchmarks/train_step.py); batches come in that layout too.
        self.model.to(memory_format=torch.channels_last)
        self.adversary: SourceAdversary | None = None
        self.source_ids: np.ndarray | None = None  # each image's training source, numbered
        if config.adversary is not None:  # drawn aside, so the run's own random stream and
            with torch.random.fork_rng(devices=[]):  # its head phase match a run without it
                torch.manual_seed(config.seed + 1)
                self.adversary, self.source_ids = self._source_adversary(config.adversary)
        self.augment = build_augment(config.augment, config.crop.size)
        self.state = RunState()
        self.checkpoints = out_dir / "checkpoints"

    def _source_adversary(self, settings: AdversaryConfig) -> tuple[SourceAdversary, np.ndarray]:
        """The adversary over this split's training sources of the classes it plays on, and
        every image's source number (-1: a source it does not play on)."""
        train = self.index["train"]
        source_class = {self.data.sources[i]: int(self.data.targets[i]) for i in train}
        playing = {("real", "ai").index(name) for name in settings.classes}
        names = sorted(name for name, label in source_class.items() if label in playing)
        if len(names) < 2:
            raise FacetellError(
                f"adversary needs two or more training sources among {settings.classes}, "
                f"found {names}; add sources or drop the adversary"
            )
        number = {name: k for k, name in enumerate(names)}
        source_ids = np.array([number.get(source, -1) for source in self.data.sources])
        classes = [source_class[name] for name in names]
        return SourceAdversary(self.model.feature_dim, classes, settings), source_ids

    def _add_synthetic_fakes(self, synthetic: SyntheticConfig) -> None:
        """Re-drawn copies of this split's real training faces join its training split as AI
        images; validation and test stay as they are, so every metric still reads real data."""
        train = self.index["train"]
        real = train[self.data.targets[train] == 0]
        if len(real) == 0:
            raise FacetellError("synthetic fakes need real training images to re-draw")

        def on_epoch(epoch: int, loss: float) -> None:
            description = f"re-drawing model epoch {epoch}/{synthetic.epochs} L1 {loss:.4f}"
            self.reporter.batch(description, epoch, synthetic.epochs)

        crops = np.asarray(self.data.crops[real])
        drawn, _ = synthetic_fakes(crops, synthetic, on_epoch=on_epoch)
        first = len(self.data.crops)
        self.data = dataclasses.replace(
            self.data,
            crops=np.concatenate([self.data.crops, drawn]),
            valid=np.concatenate([self.data.valid, np.ones(len(drawn), dtype=bool)]),
            faceless=np.concatenate([self.data.faceless, np.zeros(len(drawn), dtype=bool)]),
            targets=np.concatenate([self.data.targets, np.ones(len(drawn), dtype=np.int64)]),
            sources=[*self.data.sources, *[synthetic.source] * len(drawn)],
        )
        self.index["train"] = np.concatenate([train, np.arange(first, first + len(drawn))])
        self.synthetic_count = len(drawn)

    # -- data loaders ---------------------------------------------------------------------------
    @property
    def _weighted_draws(self) -> bool:
        """Whether training draws faces by `train_weights` instead of shuffling each once."""
        return self.config.source_balance > 0 or self.config.class_balance

    def _loader(
        self,
        split: str,
        *,
        augment: bool,
        shuffle: bool,
        seed: int,
        item_seed: int | None = None,
        with_sources: bool = False,
    ) -> DataLoader:
        dataset = CropDataset(
            self.data.crops,
            self.index[split],
            self.data.targets,
            self.augment if augment else None,
            self.config.mean,
            self.config.std,
            item_seed=item_seed,
            source_ids=self.source_ids if with_sources else None,
        )
        generator = torch.Generator().manual_seed(seed)
        sampler = None
        if shuffle and split == "train" and self._weighted_draws:
            sampler = WeightedRandomSampler(
                self.train_weights.tolist(), len(dataset), generator=generator
            )
        workers = self.config.workers
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=workers,
            worker_init_fn=_worker_init if workers else None,
            generator=generator,
            persistent_workers=False,
            collate_fn=_channels_last_batch,
        )

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, split: str) -> np.ndarray:
        self.model.eval()
        loader = self._loader(split, augment=False, shuffle=False, seed=0)
        return np.concatenate([self.model(x).numpy() for x, _ in loader])

    def _val_scores(self, logits: np.ndarray) -> tuple[float, float, float]:
        targets = self.data.targets[self.index["val"]]
        loss = float(
            nn.functional.binary_cross_entropy_with_logits(
                torch.from_numpy(logits), torch.from_numpy(targets).float()
            )
        )
        summary = summary_metrics(targets, logits)
        return loss, summary["auroc"], summary["accuracy"]

    # -- bookkeeping ----------------------------------------------------------------------------
    def _end_epoch(
        self,
        kind: str,
        train_loss: float,
        val_logits: np.ndarray,
        lr: float,
        started: float,
        adversary_accuracy: float | None = None,
    ) -> bool:
        """Log the epoch, keep the best weights; True when early stopping says stop."""
        val_loss, val_auroc, val_accuracy = self._val_scores(val_logits)
        record = EpochRecord(
            phase=self.state.phase,
            kind=kind,
            epoch=self.state.epoch + 1,
            train_loss=round(train_loss, 5),
            val_loss=round(val_loss, 5),
            val_auroc=round(val_auroc, 5),
            val_accuracy=round(val_accuracy, 5),
            lr=lr,
            seconds=round(time.perf_counter() - started, 2),
            adversary_accuracy=adversary_accuracy,
        )
        self.state.history.append(record.to_dict())
        with (self.out_dir / "history.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record.to_dict()) + "\n")
        self.reporter.epoch(record)
        state = self.state
        state.epoch += 1
        if improves(val_auroc, val_loss, state.best_auroc, state.best_val_loss):
            state.best_auroc = max(val_auroc, state.best_auroc)
            state.best_val_loss = val_loss
            self._save_weights(self.checkpoints / "best.safetensors")
        if improves(val_auroc, val_loss, state.phase_best_auroc, state.phase_best_val_loss):
            state.phase_best_auroc = max(val_auroc, state.phase_best_auroc)
            state.phase_best_val_loss = val_loss
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        return state.bad_epochs >= self.config.patience

    def _end_phase(self) -> None:
        """The next phase starts from the best weights so far, with fresh patience."""
        if self.state.phase + 1 < len(self.config.phases):
            self.model.load_state_dict(load_file(str(self.checkpoints / "best.safetensors")))
        self.state.phase += 1
        self.state.epoch = 0
        self.state.phase_best_auroc = -math.inf
        self.state.phase_best_val_loss = math.inf
        self.state.bad_epochs = 0
        self.state.averaged = 0
        self._save_last(None, None)

    def _save_weights(self, path: Path, module: nn.Module | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = (module or self.model).state_dict()
        write_whole(path, save({k: v.detach().contiguous() for k, v in state.items()}))

    def _checkpointed_modules(self) -> dict[str, nn.Module]:
        """What `last` holds besides the optimizer, by key prefix."""
        modules: dict[str, nn.Module] = {"model": self.model}
        if self.adversary is not None:
            modules["adversary"] = self.adversary
        return modules

    def _save_last(self, optimizer: torch.optim.Optimizer | None, scheduler: Any) -> None:
        """Model and optimizer tensors, with the run's state as JSON in the same file's
        metadata: one file replaced whole, so a kill never pairs one epoch's weights with
        another's state."""
        tensors = {
            f"{prefix}.{k}": v.detach().contiguous().clone()
            for prefix, module in self._checkpointed_modules().items()
            for k, v in module.state_dict().items()
        }
        meta: dict[str, Any] = {"state": self.state.__dict__, "optimizer": None, "scheduler": None}
        if optimizer is not None:
            opt_state = optimizer.state_dict()
            for param_id, values in opt_state["state"].items():
                for name, value in values.items():
                    tensors[f"optimizer.{param_id}.{name}"] = torch.as_tensor(value).contiguous()
            meta["optimizer"] = opt_state["param_groups"]
        if scheduler is not None:
            meta["scheduler"] = scheduler.state_dict()
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        write_whole(self.checkpoints / LAST, save(tensors, metadata={RUN_STATE: json.dumps(meta)}))

    def resume(self) -> None:
        """Restore model (and source adversary), run state and (on the next phase start)
        optimizer from `last`; the history file goes back to the epochs `last` holds."""
        last = self.checkpoints / LAST
        if not last.is_file():
            raise FacetellError(f"{self.out_dir}: no checkpoint to resume from ({LAST})")
        with safe_open(str(last), framework="pt") as stored:
            state = (stored.metadata() or {}).get(RUN_STATE)
            if state is None:  # written before the state moved into the file
                raise FacetellError(f"{last}: no run state to resume from; --overwrite restarts")
            meta = json.loads(state)
            names = stored.keys()  # a safe_open is not iterable itself
            tensors = {name: stored.get_tensor(name) for name in names}
        for prefix, module in self._checkpointed_modules().items():
            module.load_state_dict(
                {
                    k.removeprefix(f"{prefix}."): v
                    for k, v in tensors.items()
                    if k.startswith(f"{prefix}.")
                }
            )
        self.state = RunState(**meta["state"])
        self._resume_meta = (meta, tensors)
        # an epoch logged after `last` was written is run again: log it once
        lines = "".join(json.dumps(record) + "\n" for record in self.state.history)
        write_whole(self.out_dir / "history.jsonl", lines.encode())

    def _restore_optimizer(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        resumed = getattr(self, "_resume_meta", None)
        if resumed is None:
            return
        meta, tensors = resumed
        self._resume_meta = None
        if meta["optimizer"] is None:
            return
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, param_id, name = key.split(".", 2)
                state.setdefault(int(param_id), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]})
        if scheduler is not None and meta["scheduler"] is not None:
            scheduler.load_state_dict(meta["scheduler"])

    # -- phases ---------------------------------------------------------------------------------
    def _optimizer(
        self, parameters: list[nn.Parameter], phase: PhaseConfig, extra_groups: Sequence[dict] = ()
    ):
        optimizer = torch.optim.AdamW(
            [{"params": parameters}, *extra_groups],
            lr=phase.lr,
            weight_decay=self.config.weight_decay,
        )
        schedule = phase.schedule or self.config.schedule
        if schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=phase.epochs)
        elif schedule == "constant":
            scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
        else:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=0.3, patience=1
            )
        return optimizer, scheduler

    def _step_scheduler(self, scheduler: Any, val_auroc: float) -> None:
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_auroc if not math.isnan(val_auroc) else 0.0)
        else:
            scheduler.step()

    def _epoch_seed(self) -> int:
        return self.config.seed * 10_007 + self.state.phase * 1_009 + self.state.epoch

    def _run_gradient_phase(self, phase: PhaseConfig) -> None:
        """finetune / full: minibatch training on augmented crops."""
        if phase.kind == "finetune":
            self.model.freeze_backbone(phase.trainable_blocks)
        else:
            for parameter in self.model.parameters():
                parameter.requires_grad = True
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        extra_groups = []
        if self.adversary is not None:
            lr = self.adversary.settings.lr
            extra_groups.append({"params": list(self.adversary.parameters()), "lr": lr})
        optimizer, scheduler = self._optimizer(parameters, phase, extra_groups)
        self._restore_optimizer(optimizer, scheduler)
        average = self._restore_average()
        while self.state.epoch < phase.epochs:
            started = time.perf_counter()
            torch.manual_seed(self._epoch_seed())
            loader = self._loader(
                "train",
                augment=True,
                shuffle=True,
                seed=self._epoch_seed(),
                with_sources=self.adversary is not None,
            )
            if phase.kind == "finetune":
                self.model.backbone_train_mode(True)
            else:
                self.model.train()
            losses, guessed = [], []
            for step, (images, targets, *sources) in enumerate(loader, start=1):
                optimizer.zero_grad(set_to_none=True)
                progress = (self.state.epoch + step / len(loader)) / phase.epochs
                class_loss, loss, right = self._step_loss(images, targets, sources, progress)
                losses.append(class_loss.item())
                if right is not None:
                    guessed.append(right)
                loss.backward()
                optimizer.step()
                self.reporter.batch(
                    f"phase {self.state.phase + 1} {phase.kind} epoch {self.state.epoch + 1}"
                    f"/{phase.epochs} loss {np.mean(losses):.4f}",
                    step,
                    len(loader),
                )
            val_logits = self.predict("val")
            lr = optimizer.param_groups[0]["lr"]
            adversary_accuracy = float(torch.cat(guessed).float().mean()) if guessed else None
            stop = self._end_epoch(
                phase.kind, float(np.mean(losses)), val_logits, lr, started, adversary_accuracy
            )
            self._step_scheduler(scheduler, self.state.history[-1]["val_auroc"])
            if phase.average_from is not None and self.state.epoch >= phase.average_from:
                average = self._add_to_average(average)
            self._save_last(optimizer, scheduler)
            if stop:
                break
        if average is not None:
            self._validate_average(average)

    def _step_loss(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        sources: list[torch.Tensor],
        progress: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Real-vs-AI loss, the loss to minimise (plus the source adversary's, when set) and
        which source guesses were right. The reversed gradient ramps up over the phase."""
        if self.adversary is None:
            if self.config.mixup > 0:
                images, targets = mixup_batch(images, targets, self.config.mixup)
            loss = nn.functional.binary_cross_entropy_with_logits(self.model(images), targets)
            return loss, loss, None
        features = self.model.embed(images)
        loss = nn.functional.binary_cross_entropy_with_logits(
            self.model.head(features).squeeze(1), targets
        )
        ramp = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
        strength = self.adversary.settings.weight * ramp
        source_loss, right = self.adversary(features, targets, sources[0], strength)
        return loss, loss + source_loss, right

    def _restore_average(self) -> AveragedModel | None:
        """The phase's running weight average, as far as a resumed run had got with it."""
        if self.state.averaged == 0:
            return None
        average = AveragedModel(self.model, use_buffers=True)
        average.module.load_state_dict(load_file(str(self.checkpoints / "average.safetensors")))
        average.n_averaged.fill_(self.state.averaged)
        return average

    def _add_to_average(self, average: AveragedModel | None) -> AveragedModel:
        average = average or AveragedModel(self.model, use_buffers=True)
        average.update_parameters(self.model)
        self.state.averaged = int(average.n_averaged)
        self._save_weights(self.checkpoints / "average.safetensors", average.module)
        return average

    def _validate_average(self, average: AveragedModel) -> None:
        """Score the averaged weights on validation as one more epoch (its train loss: the mean
        over the averaged epochs); `_end_epoch` keeps them if they are the best. Buffers
        (BatchNorm statistics) are averaged with the weights, so no extra pass is needed."""
        started = time.perf_counter()
        self.model.load_state_dict(average.module.state_dict())
        averaged_losses = [h["train_loss"] for h in self.state.history[-self.state.averaged :]]
        self._end_epoch(
            "average", float(np.mean(averaged_losses)), self.predict("val"), 0.0, started
        )

    @torch.no_grad()
    def _embed(self, split: str, views: int, transform: Callable) -> tuple[torch.Tensor, ...]:
        """Features of `views` versions of every image: view 0 clean, the others augmented."""
        self.model.eval()
        features, targets = [], []
        for view in range(views):
            loader = self._loader(
                split,
                augment=view > 0,
                shuffle=False,
                seed=self.config.seed,
                item_seed=self.config.seed * 100 + view,
            )
            for step, (images, batch_targets) in enumerate(loader, start=1):
                features.append(transform(images))
                targets.append(batch_targets)
                self.reporter.batch(f"features view {view + 1}/{views}", step, len(loader))
        return torch.cat(features), torch.cat(targets)

    def _run_head_phase(self, phase: PhaseConfig) -> None:
        """Train only the head on frozen backbone features (cached unless told otherwise)."""
        model = self.model
        model.freeze_backbone(0)
        head_parameters = list(model.head.parameters())
        for parameter in head_parameters:
            parameter.requires_grad = True
        optimizer, scheduler = self._optimizer(head_parameters, phase)
        self._restore_optimizer(optimizer, scheduler)
        val_features, _ = self._embed("val", 1, model.embed)
        if phase.cache_features:
            train_features, train_targets = self._embed("train", phase.views, model.embed)
        else:
            n_train = len(self.index["train"])
            train_targets = torch.from_numpy(self.data.targets[self.index["train"]]).float()
            train_targets = train_targets.repeat(phase.views)
        while self.state.epoch < phase.epochs:
            started = time.perf_counter()
            generator = torch.Generator().manual_seed(self._epoch_seed())
            if self._weighted_draws:
                weights = torch.from_numpy(self.train_weights).repeat(phase.views)
                order = torch.multinomial(weights, len(weights), True, generator=generator)
            else:
                order = torch.randperm(len(train_targets), generator=generator)
            model.head.train()
            losses = []
            for start in range(0, len(order), self.config.batch_size):
                batch = order[start : start + self.config.batch_size]
                if phase.cache_features:
                    features = train_features[batch]
                else:
                    features = self._features_uncached(batch, n_train)
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.binary_cross_entropy_with_logits(
                    model.head(features).squeeze(1), train_targets[batch]
                )
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            model.head.eval()
            with torch.no_grad():
                val_logits = model.head(val_features).squeeze(1).numpy()
            lr = optimizer.param_groups[0]["lr"]
            stop = self._end_epoch("head", float(np.mean(losses)), val_logits, lr, started)
            self._step_scheduler(scheduler, self.state.history[-1]["val_auroc"])
            self._save_last(optimizer, scheduler)
            if stop:
                break

    @torch.no_grad()
    def _features_uncached(self, batch: torch.Tensor, n_train: int) -> torch.Tensor:
        """Recompute the features the cache would hold for these (view, image) positions."""
        self.model.features.eval()  # the head keeps training mode (dropout), as with the cache
        images = []
        for position in batch.tolist():
            view, item = divmod(position, n_train)
            dataset = CropDataset(
                self.data.crops,
                self.index["train"],
                self.data.targets,
                self.augment if view > 0 else None,
                self.config.mean,
                self.config.std,
                item_seed=self.config.seed * 100 + view,
            )
            images.append(dataset[item][0])
        return self.model.embed(torch.stack(images).contiguous(memory_format=torch.channels_last))

    def _run_closed_form_phase(self, phase: PhaseConfig) -> None:
        started = time.perf_counter()
        model = self.model
        features, targets = self._embed("train", phase.views, model.features)
        model.fit(features.numpy(), targets.numpy().astype(int), c=phase.regularisation)
        val_logits = self.predict("val")
        with torch.no_grad():
            train_loss = float(
                nn.functional.binary_cross_entropy_with_logits(
                    model.read_out(features),
                    targets,
                )
            )
        self._end_epoch("closed_form", train_loss, val_logits, 0.0, started)
        self._save_last(None, None)

    # -- the run --------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        started = time.perf_counter()
        torch.set_num_threads(self.config.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.yaml").write_text(
            yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
        self.split.save(self.out_dir / "split.json")
        if not self.state.history:
            (self.out_dir / "history.jsonl").write_text("", encoding="utf-8")
        runners = {
            "head": self._run_head_phase,
            "finetune": self._run_gradient_phase,
            "full": self._run_gradient_phase,
            "closed_form": self._run_closed_form_phase,
        }
        while self.state.phase < len(self.config.phases):
            phase = self.config.phases[self.state.phase]
            runners[phase.kind](phase)
            self._end_phase()
        self.model.load_state_dict(load_file(str(self.checkpoints / "best.safetensors")))
        self.model.eval()
        metrics = self._final_metrics()
        metrics["train_seconds"] = round(time.perf_counter() - started, 1)
        plot_history(self.state.history, self.out_dir / "history.png")
        bundle = self.to_bundle(metrics)
        bundle_dir = bundle.save(self.out_dir / "bundle")
        (self.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        return RunResult(self.out_dir, bundle_dir, metrics, metrics["train_seconds"])

    def _final_metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {"split": self.split.kind, **self.split.params}
        for split in ("val", "test"):
            if len(self.index[split]) == 0:
                continue
            logits = self.predict(split)
            targets = self.data.targets[self.index[split]]
            sources = [self.data.sources[i] for i in self.index[split]]
            metrics[split] = {
                **summary_metrics(targets, logits),
                "per_source": per_source_metrics(targets, logits, sources),
            }
        holdout = self.split.params.get("holdout")
        if holdout and "test" in metrics:
            row = metrics["test"]["per_source"][holdout]
            metrics["holdout_auroc"] = row.get("auroc_vs_real", row.get("auroc_vs_ai"))
        return metrics

    def to_bundle(self, metrics: dict[str, Any]) -> Bundle:
        kwargs = {k: v for k, v in self.config.model_kwargs.items() if k != "pretrained"}
        return Bundle(
            module=self.model,
            architecture=self.config.model,
            model_kwargs=kwargs,
            crop=self.config.crop,
            mean=self.config.mean,
            std=self.config.std,
            name=self.config.name,
            metrics=metrics,
            training={
                "config": self.config.model_dump(mode="json"),
                "split": {"kind": self.split.kind, "seed": self.split.seed, **self.split.params},
                "n_train": len(self.index["train"]),
                "n_synthetic": self.synthetic_count,
                "n_val": len(self.index["val"]),
                "n_test": len(self.index["test"]),
            },
            training_images=TrainingImages.of_files(
                *(self._files_of(split) for split in SPLITS_FITTED_ON)
            ),
        )

    def _files_of(self, split: str) -> list[Path]:
        """The split's image files (synthetic fakes, made in memory, have none)."""
        samples = self.data.samples
        return [samples[i].path for i in self.index[split] if i < len(samples)]


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> list[tuple[str, RunResult]]:
    """Train every run the config asks for (one split, K folds, held-out sources).

    An earlier run in out_dir is continued with `resume`, replaced with `overwrite` once every
    check has passed (a refused command leaves it whole), and otherwise refused before any data
    is read.
    """
    check_run_folder(config, out_dir, resume=resume, overwrite=overwrite)
    reporter = reporter or Reporter()
    # a model that cannot be built, weights that misfit it, a cache folder that cannot be
    # written: each refused before the faces are cut
    init_weights = read_init_weights(config, model_shapes(config))
    check_crop_cache_folder(config)
    skipped: list[Path] = []
    samples, records, groups = grouped_samples(config, on_progress=reporter.stage, skipped=skipped)
    # a hold-out the data lacks, too few images for the folds...: refused before faces are cut
    splits = make_splits(config, samples, groups)
    targets, readable = np.array([s.target for s in samples]), np.ones(len(samples), dtype=bool)
    for name, split in splits:
        run_dir = out_dir / name if name else out_dir
        refuse_a_split_without_both_classes(split, targets, groups, readable, run_dir)
    if overwrite and not resume:  # every check passed: only now does the earlier run go
        clear_earlier_runs(out_dir)
    data = cropped_data(config, samples, records, groups, on_progress=reporter.stage)
    if skipped:
        reporter.skipped(skipped)
    if not data.valid.all():
        left_out = [s.path for s, ok in zip(data.samples, data.valid, strict=True) if not ok]
        reporter.unreadable({path: why_unreadable(path) for path in left_out})
    if data.faceless.any():
        reporter.faceless([data.samples[i].path for i in np.flatnonzero(data.faceless)])
    if crossing := labelled_both_ways(data.samples, data.groups.tolist()):
        reporter.in_both_classes(crossing)
    if warning := shortcut_warning(data.shortcut_score):
        reporter.shortcut(warning)
    results = []
    for name, split in splits:
        run_dir = out_dir / name if name else out_dir
        trainer = Trainer(config, data, split, run_dir, reporter, init_weights)
        if resume and (run_dir / "metrics.json").is_file():
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
            results.append((name, RunResult(run_dir, run_dir / "bundle", metrics, 0.0)))
            continue
        if resume and (run_dir / "checkpoints" / LAST).is_file():
            trainer.resume()
        results.append((name, trainer.fit()))
    if len(results) > 1:
        summary = summarise_runs(results)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return results
