"""NPR: a small residual network trained from scratch on up-sampling traces.

After Tan et al., "Rethinking the Up-Sampling Operations in CNN-based Generative Network for
Generalizable Deepfake Detection" (CVPR 2024): generators up-sample with nearest or transposed
convolutions, which leaves correlations between neighbouring pixels. The input is the
neighbouring-pixel residual x - up(down(x)), and the network is a ResNet cut after its second
stage. Resizing the input would erase that signal, so its crop recipe crops at native resolution.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from facetell.models.registry import register_model


def neighbouring_pixel_residual(x: torch.Tensor) -> torch.Tensor:
    """x minus its nearest-neighbour 2x down-then-up copy (zero on every 2x2 block's corner)."""
    down = x[..., ::2, ::2]
    up = down.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return x - up[..., : x.shape[-2], : x.shape[-1]]


def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample),
        BasicBlock(out_channels, out_channels),
    )


class NPRDetector(nn.Module):
    def __init__(self, width: int = 64, residual_gain: float = 4.0) -> None:
        super().__init__()
        self.residual_gain = residual_gain
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.stage1 = _stage(width, width, stride=1)
        self.stage2 = _stage(width, width * 2, stride=2)
        self.head = nn.Linear(width * 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = neighbouring_pixel_residual(x) * self.residual_gain
        features = self.stage2(self.stage1(self.stem(residual)))
        return self.head(nn.functional.adaptive_avg_pool2d(features, 1).flatten(1)).squeeze(1)


@register_model(
    "npr",
    summary="NPR: a small ResNet from scratch on neighbouring-pixel residuals (native-resolution "
    "crops)",
)
def build_npr(width: int = 64, residual_gain: float = 4.0) -> NPRDetector:
    return NPRDetector(width=width, residual_gain=residual_gain)
