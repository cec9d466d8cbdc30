"""Spectrum: the azimuthal profile of the log-magnitude spectrum and a logistic regression.

After Durall et al. (2020): up-sampling leaves excess high-frequency energy. Cheap and
interpretable, but brittle under compression, so it is a baseline and an ensemble member. The
linear layer is fitted by scikit-learn and stored as ordinary weights, so the model is an
`nn.Module` like the others and saves to safetensors.
"""

from __future__ import annotations

import torch
from torch import nn

from facetell.models.closed_form import StandardisedLogistic
from facetell.models.registry import register_model


def azimuthal_profile(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Mean log-magnitude per radial frequency band of the grey image: (B, bins)."""
    gray = x.mean(dim=1)
    spectrum = torch.fft.fftshift(torch.fft.fft2(gray, norm="ortho"), dim=(-2, -1))
    log_magnitude = torch.log(spectrum.abs() + 1e-8)
    height, width = gray.shape[-2:]
    ys = torch.arange(height, dtype=torch.float32) - height // 2
    xs = torch.arange(width, dtype=torch.float32) - width // 2
    radius = torch.sqrt(ys[:, None] ** 2 + (xs[None, :] * height / width) ** 2)
    band = torch.clamp((radius / (height / 2) * bins).long(), max=bins - 1).flatten()
    counts = torch.bincount(band, minlength=bins).clamp(min=1).to(x.dtype)
    flat = log_magnitude.flatten(1)
    sums = torch.zeros(flat.shape[0], bins, dtype=x.dtype).index_add_(1, band, flat)
    return sums / counts


class SpectrumDetector(StandardisedLogistic, nn.Module):
    onnx_exportable = False  # ONNX has no 2-D FFT operator; bundles of it run on torch

    def __init__(self, bins: int = 64) -> None:
        super().__init__()
        self.bins = bins
        self.register_buffer("feature_mean", torch.zeros(bins))
        self.register_buffer("feature_std", torch.ones(bins))
        self.linear = nn.Linear(bins, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return azimuthal_profile(x, self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.read_out(self.features(x))


@register_model(
    "spectrum",
    summary="azimuthal log-spectrum profile and a logistic regression (a fitted baseline)",
)
def build_spectrum(bins: int = 64) -> SpectrumDetector:
    return SpectrumDetector(bins=bins)
