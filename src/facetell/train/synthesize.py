"""Synthetic fakes: real training faces re-drawn by a small autoencoder trained on them.

Four generators are too few to learn what "generated" looks like in general. Every latent
image generator ends in a learned decoder that draws pixels from a compressed code; a face
that went through such a decoder carries its traces (smoothed stochastic detail, up-sampling
patterns) while keeping the real photo's content, framing and compression history. Re-drawn
real faces, labelled AI, are therefore a contrast that no dataset shortcut explains, in the
spirit of autoencoder-simulated GAN artifacts (Zhang et al., 2019) and of reconstruction-aligned
training sets (Rajan et al., 2025). The autoencoder is trained per run on that run's real
training crops only, so nothing of the validation or test faces leaks into it. Measured on the
shared data it costs more than it gains (held out, real UTKFace photos and DCGAN faces are
ranked worse: docs/results.md), so training configs leave it off unless they set it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from facetell.train.config import SyntheticConfig


class RedrawAutoencoder(nn.Module):
    """Strided-conv encoder to a low-resolution code; nearest-neighbour up-sampling + conv
    decoder, the decoder form of latent-diffusion VAEs. Inputs and outputs are in [0, 1]."""

    def __init__(self, width: int = 32, latent: int = 8, downsample: int = 4) -> None:
        super().__init__()
        stages = downsample.bit_length() - 1
        if 2**stages != downsample:
            raise ValueError(f"downsample must be a power of two, not {downsample}")
        channels = [width * 2**i for i in range(stages + 1)]
        encoder: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in itertools.pairwise(channels):
            encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
        encoder.append(nn.Conv2d(channels[-1], latent, 1))
        decoder: list[nn.Module] = [nn.Conv2d(latent, channels[-1], 3, padding=1), nn.SiLU()]
        for c_in, c_out in itertools.pairwise(channels[::-1]):
            decoder += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.SiLU(),
            ]
        decoder.append(nn.Conv2d(channels[0], 3, 3, padding=1))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.downsample = downsample

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(images)))


def _as_float(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0


def _patches(crops: np.ndarray, side: int, generator: torch.Generator) -> torch.Tensor:
    """A random square of each crop, flipped half the time."""
    height, width = crops.shape[1:3]
    tops = torch.randint(0, height - side + 1, (len(crops),), generator=generator).tolist()
    lefts = torch.randint(0, width - side + 1, (len(crops),), generator=generator).tolist()
    flips = (torch.rand(len(crops), generator=generator) < 0.5).tolist()
    squares = [
        crop[top : top + side, left : left + side, :][:, :: -1 if flip else 1]
        for crop, top, left, flip in zip(crops, tops, lefts, flips, strict=True)
    ]
    return _as_float(np.stack(squares))


def train_redrawer(
    crops: np.ndarray,
    config: SyntheticConfig,
    *,
    on_epoch: Callable[[int, float], None] | None = None,
) -> RedrawAutoencoder:
    """Fit the autoencoder to random patches of uint8 crops (N, H, W, 3) with an L1 loss."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = RedrawAutoencoder(config.width, config.latent, config.downsample)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * -(-len(crops) // config.batch_size)
    # crops smaller than a patch are taken whole, to a side the decoder draws back at its size
    side = min(config.patch, *crops.shape[1:3]) // config.downsample * config.downsample
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(crops), generator=generator).numpy()
        losses = []
        for start in range(0, len(order), config.batch_size):
            chosen = np.sort(order[start : start + config.batch_size])
            batch = _patches(crops[chosen], side, generator)
            loss = nn.functional.l1_loss(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        if on_epoch is not None:
            on_epoch(epoch + 1, float(np.mean(losses)))
    return model.eval()


@torch.no_grad()
def redraw(model: RedrawAutoencoder, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The autoencoder's drawing of each uint8 crop, as uint8 crops of the same shape.

    Sides that the decoder's factor does not divide are reflect-padded and cut back.
    """
    height, width = crops.shape[1:3]
    factor = model.downsample
    pad_h, pad_w = -height % factor, -width % factor
    out = np.empty_like(crops)
    for start in range(0, len(crops), batch_size):
        batch = _as_float(crops[start : start + batch_size])
        if pad_h or pad_w:
            batch = nn.functional.pad(batch, (0, pad_w, 0, pad_h), mode="reflect")
        drawn = model(batch)[:, :, :height, :width]
        out[start : start + batch_size] = (
            (drawn * 255.0).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        )
    return out


def synthetic_fakes(
    crops: np.ndarray,
    config: SyntheticConfig,
    *,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train on every given real crop, re-draw a seeded `fraction` of them.

    Returns the re-drawn crops and the positions (into `crops`) they were drawn from.
    """
    model = train_redrawer(crops, config, on_epoch=on_epoch)
    rng = np.random.default_rng(config.seed)
    count = max(1, round(config.fraction * len(crops)))
    chosen = np.sort(rng.choice(len(crops), size=count, replace=False))
    return redraw(model, crops[chosen]), chosen
