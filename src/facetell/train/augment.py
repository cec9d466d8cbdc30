"""Training augmentation, identical for both classes: the nuisances a face goes through online.

Framing first (how much of the crop is mirrored), then geometry, then colour, then (optionally)
what a camera adds, sensor noise and then sharpening, then the degradations in the order the web
applies them: resampling, blur, and JPEG compression, then (optionally) frequencies dropped,
patches hidden or tiles shuffled. Framing, compression, size and sharpness must never be a
signal, so the model sees every class at every framing and quality.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from facetell.io import jpeg_roundtrip
from facetell.train.config import AugmentConfig


class Reframe(nn.Module):
    """Pretend the photo ended closer to the face: cut bands off some sides of the crop and
    mirror the rest into them, exactly as the face pipeline fills a crop square that reaches
    past the image. How much of a crop is mirrored depends on how the source framed its faces
    (UTKFace 58% on average, SDXL 11%); seen on every class, it stops being a signal.
    """

    def __init__(self, cut: tuple[float, float]) -> None:
        super().__init__()
        self.cut = cut

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        bands = []
        for side_length in (height, height, width, width):
            cut = float(torch.empty(1).uniform_(*self.cut)) if torch.rand(1) < 0.5 else 0.0
            bands.append(round(side_length * cut))
        return reframed(image, *bands)


def reframed(image: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """The crop as if the photo had ended `top`/`bottom`/`left`/`right` pixels inside it."""
    if not any((top, bottom, left, right)):
        return image
    height, width = image.shape[-2:]
    kept = image[..., top : height - bottom, left : width - right].numpy()
    pad = [(0, 0)] * (kept.ndim - 2) + [(top, bottom), (left, right)]
    return torch.from_numpy(np.pad(kept, pad, mode="symmetric"))


class SensorNoise(nn.Module):
    """Add Gaussian noise of a random standard deviation, per pixel and channel, as a small
    sensor at high ISO does."""

    def __init__(self, sigma: tuple[float, float]) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        sigma = float(torch.empty(1).uniform_(*self.sigma))
        noisy = image.float() + torch.randn(image.shape) * sigma
        return noisy.round().clamp(0, 255).to(torch.uint8)


class Sharpen(nn.Module):
    """Sharpen by a random factor (torchvision's adjust_sharpness: 1 leaves the crop as it is),
    as phone cameras and photo editors do."""

    def __init__(self, factor: tuple[float, float]) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        factor = float(torch.empty(1).uniform_(*self.factor))
        return v2.functional.adjust_sharpness(image, factor)


class DownUp(nn.Module):
    """Downscale by a random factor then back up: what thumbnails and re-uploads do."""

    def __init__(self, scale: tuple[float, float]) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        factor = float(torch.empty(1).uniform_(*self.scale))
        small = (max(8, round(height * factor)), max(8, round(width * factor)))
        down = v2.functional.resize(image, list(small), antialias=True)
        return v2.functional.resize(down, [height, width], antialias=True)


class JpegCompress(nn.Module):
    """Re-encode with Pillow's libjpeg at a random quality (what uploads and re-saves do)."""

    def __init__(self, quality: tuple[int, int]) -> None:
        super().__init__()
        self.quality = quality

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        quality = int(torch.randint(self.quality[0], self.quality[1] + 1, (1,)))
        pixels = Image.fromarray(image.permute(1, 2, 0).numpy())
        decoded = np.asarray(jpeg_roundtrip(pixels, quality))
        return torch.from_numpy(decoded.copy()).permute(2, 0, 1)


class PatchMask(nn.Module):
    """Fill a random share of the crop's grid of square patches with the ImageNet mean colour,
    which normalises to zero: hidden patches carry no evidence either way. Applied after the
    degradations, so the hidden patches' edges are not compressed into the rest of the crop.
    """

    # torchvision's ImageNet mean in uint8 units
    fill = torch.tensor([124, 116, 104], dtype=torch.uint8).view(3, 1, 1)

    def __init__(self, fraction: tuple[float, float], patch: int) -> None:
        super().__init__()
        self.fraction = fraction
        self.patch = patch

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        rows, columns = -(-height // self.patch), -(-width // self.patch)
        share = float(torch.empty(1).uniform_(*self.fraction))
        hidden = torch.randperm(rows * columns)[: round(share * rows * columns)]
        grid = torch.zeros(rows * columns, dtype=torch.bool)
        grid[hidden] = True
        cells = grid.view(rows, columns)
        pixels = cells.repeat_interleave(self.patch, 0).repeat_interleave(self.patch, 1)
        return torch.where(pixels[:height, :width], self.fill, image)


class TileShuffle(nn.Module):
    """Cut the crop into square tiles and put them back in a random order. Each tile keeps its
    pixels, its scale and its compression; only the face's layout is lost. Crop sides that are
    not a multiple of the tile keep their last partial row and column in place.
    """

    def __init__(self, tile: int) -> None:
        super().__init__()
        self.tile = tile

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        channels, height, width = image.shape
        rows, columns = height // self.tile, width // self.tile
        inner = image[:, : rows * self.tile, : columns * self.tile]
        tiles = inner.reshape(channels, rows, self.tile, columns, self.tile).permute(1, 3, 0, 2, 4)
        tiles = tiles.reshape(rows * columns, channels, self.tile, self.tile)
        shuffled = tiles[torch.randperm(rows * columns)].reshape(
            rows, columns, channels, self.tile, self.tile
        )
        out = image.clone()
        out[:, : rows * self.tile, : columns * self.tile] = shuffled.permute(2, 0, 3, 1, 4).reshape(
            channels, rows * self.tile, columns * self.tile
        )
        return out


class FrequencyMask(nn.Module):
    """Zero a random share of the spatial frequencies in one band, picked at random: low,
    middle or high (thirds of the radius out to the highest frequency) or all of them. The
    same frequencies go in every channel; the mean colour (zero frequency) always stays.
    """

    BANDS = ((0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.0 + 1e-6), (0.0, 1.0 + 1e-6))

    def __init__(self, fraction: tuple[float, float]) -> None:
        super().__init__()
        self.fraction = fraction

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        vertical = torch.fft.fftfreq(height).abs().view(-1, 1)
        horizontal = torch.fft.fftfreq(width).abs().view(1, -1)
        radius = torch.sqrt(vertical**2 + horizontal**2) / (0.5 * 2**0.5)  # 1: the corner
        low, high = self.BANDS[int(torch.randint(len(self.BANDS), (1,)))]
        share = float(torch.empty(1).uniform_(*self.fraction))
        dropped = (radius >= low) & (radius < high) & (torch.rand(height, width) < share)
        dropped[0, 0] = False
        spectrum = torch.fft.fft2(image.float())
        kept = torch.fft.ifft2(spectrum.masked_fill(dropped, 0)).real
        return kept.round().clamp(0, 255).to(torch.uint8)


def build_augment(config: AugmentConfig, size: int) -> nn.Module:
    """A transform from a (3, size, size) uint8 tensor to an augmented one of the same shape."""
    steps: list[nn.Module] = []

    def maybe(probability: float, transform: nn.Module) -> None:
        if probability > 0:
            steps.append(v2.RandomApply([transform], p=probability))

    maybe(config.reframe, Reframe(config.reframe_cut))
    if config.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(config.hflip))
    maybe(
        config.affine,
        v2.RandomAffine(
            degrees=config.max_rotation,
            translate=(config.max_translate, config.max_translate),
        ),
    )
    maybe(config.random_crop, v2.RandomResizedCrop(size, scale=config.crop_scale, antialias=True))
    maybe(config.color_jitter, v2.ColorJitter(config.brightness, 0.2, 0.2, 0.02))
    if config.grayscale > 0:
        steps.append(v2.RandomGrayscale(config.grayscale))
    maybe(config.noise, SensorNoise(config.noise_sigma))
    maybe(config.sharpen, Sharpen(config.sharpen_factor))
    maybe(config.rescale, DownUp(config.rescale_range))
    maybe(config.blur, v2.GaussianBlur(kernel_size=19, sigma=config.blur_sigma))
    maybe(config.jpeg, JpegCompress(config.jpeg_quality))
    maybe(config.frequency_mask, FrequencyMask(config.frequency_mask_fraction))
    maybe(config.mask, PatchMask(config.mask_fraction, config.mask_patch))
    maybe(config.shuffle, TileShuffle(config.shuffle_tile))
    return v2.Compose(steps) if steps else nn.Identity()
