"""Training augmentation: framing that mimics the face pipeline exactly, colour, masking,
tile shuffling, frequency masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import astronaut
from facetell.faces import _reflect_crop
from facetell.train.augment import PatchMask, Reframe, build_augment, reframed
from facetell.train.config import AugmentConfig


@pytest.mark.parametrize(
    ("top", "bottom", "left", "right"), [(50, 0, 30, 20), (0, 90, 0, 0), (17, 17, 95, 95)]
)
def test_reframe_is_the_crop_a_tighter_photo_would_give(top, bottom, left, right):
    photo = astronaut()
    window_left, window_top, side = 96, 64, 320
    crop = _reflect_crop(photo, window_left, window_top, side)
    tighter_photo = photo.crop(
        (
            window_left + left,
            window_top + top,
            window_left + side - right,
            window_top + side - bottom,
        )
    )
    expected = _reflect_crop(tighter_photo, -left, -top, side)
    result = reframed(torch.from_numpy(crop.copy()).permute(2, 0, 1), top, bottom, left, right)
    assert np.array_equal(result.permute(1, 2, 0).numpy(), expected)
    assert not np.array_equal(expected, crop)


def test_reframe_cuts_each_side_half_the_time_within_the_range():
    torch.manual_seed(0)
    # every row its own grey level: a mirrored band changes every row it covers
    rows = torch.arange(100, dtype=torch.uint8).view(1, 100, 1)
    image = rows.expand(3, 100, 100).contiguous()
    reframe = Reframe((0.1, 0.2))
    top_bands = []
    for _ in range(400):
        out = reframe(image)
        assert out.shape == image.shape and out.dtype == torch.uint8
        changed = (out != image).any(dim=(0, 2))
        top_bands.append(int(changed[:50].sum()))
        if top_bands[-1]:
            assert changed[: top_bands[-1]].all()
    top_bands = np.array(top_bands)
    assert 0.4 < (top_bands > 0).mean() < 0.6
    assert top_bands[top_bands > 0].min() >= 10 and top_bands.max() <= 20


def test_reframe_is_off_unless_configured():
    assert AugmentConfig().reframe == 0
    steps = build_augment(AugmentConfig(reframe=0.5), 160).transforms
    assert any(isinstance(step.transforms[0], Reframe) for step in steps if hasattr(step, "p"))


def test_greyscale_and_brightness_follow_their_settings():
    torch.manual_seed(0)
    photo = torch.from_numpy(np.asarray(astronaut().resize((64, 64))).copy()).permute(2, 0, 1)
    only_colour = AugmentConfig.none().model_copy(
        update={"color_jitter": 1.0, "brightness": 0.4, "grayscale": 0.3}
    )
    augment = build_augment(only_colour, 64)
    grey, ratios = 0, []
    for _ in range(300):
        out = augment(photo)
        grey += bool((out[0] == out[1]).all() and (out[1] == out[2]).all())
        ratios.append(out.float().mean().item() / photo.float().mean().item())
    assert 0.2 < grey / 300 < 0.4
    # brightness x [0.6, 1.4], contrast x [0.8, 1.2] about the mean: beyond the old x [0.8, 1.2]
    assert min(ratios) < 0.72 and max(ratios) > 1.25


def test_patch_mask_hides_whole_patches_as_zero_input_after_compression():
    torch.manual_seed(0)
    photo = torch.from_numpy(np.asarray(astronaut().resize((160, 160))).copy()).permute(2, 0, 1)
    masking = AugmentConfig.none().model_copy(
        update={"mask": 1.0, "mask_fraction": (0.2, 0.4), "jpeg": 1.0, "jpeg_quality": (30, 30)}
    )
    augment = build_augment(masking, 160)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    shares = []
    for _ in range(50):
        out = augment(photo)
        normalised = (out.float() / 255 - mean) / std
        hidden = (out == PatchMask.fill).all(dim=0)
        # the hidden pixels normalise to (almost) nothing, and they come in whole 16-px patches
        assert normalised[:, hidden].abs().max() < 0.02
        patches = hidden.view(10, 16, 10, 16).permute(0, 2, 1, 3).reshape(100, 256)
        assert ((patches.sum(1) == 0) | (patches.sum(1) == 256)).all()
        # what is not hidden went through JPEG 30: not the photo's own pixels
        assert not torch.equal(out[:, ~hidden], photo[:, ~hidden])
        shares.append(hidden.float().mean().item())
    assert min(shares) > 0.199 and max(shares) < 0.401 and max(shares) - min(shares) > 0.1
    assert AugmentConfig().mask == 0


def test_tile_shuffle_moves_whole_tiles_and_keeps_every_pixel():
    torch.manual_seed(0)
    photo = torch.from_numpy(np.asarray(astronaut().resize((170, 170))).copy()).permute(2, 0, 1)
    shuffling = AugmentConfig.none().model_copy(update={"shuffle": 1.0, "shuffle_tile": 40})
    augment = build_augment(shuffling, 170)

    def tiles(image: torch.Tensor) -> list[bytes]:
        return [
            image[:, row : row + 40, column : column + 40].numpy().tobytes()
            for row in range(0, 160, 40)
            for column in range(0, 160, 40)
        ]

    orders = set()
    for _ in range(20):
        out = augment(photo)
        # the same 16 tiles, pixel for pixel, in another order; the 10-px rim stays in place
        assert sorted(tiles(out)) == sorted(tiles(photo))
        assert torch.equal(out[:, 160:], photo[:, 160:]) and torch.equal(
            out[:, :, 160:], photo[:, :, 160:]
        )
        orders.add(tuple(tiles(photo).index(tile) for tile in tiles(out)))
    assert len(orders) == 20 and tuple(range(16)) not in orders
    assert AugmentConfig().shuffle == 0


def test_frequency_mask_drops_a_share_of_one_band_and_keeps_the_mean_colour():
    torch.manual_seed(0)
    photo = torch.from_numpy(np.asarray(astronaut().resize((160, 160))).copy()).permute(2, 0, 1)
    masking = AugmentConfig.none().model_copy(
        update={"frequency_mask": 1.0, "frequency_mask_fraction": (0.3, 0.3)}
    )
    augment = build_augment(masking, 160)
    frequency = torch.fft.fftfreq(160)
    radius = torch.sqrt(frequency.view(-1, 1) ** 2 + frequency.view(1, -1) ** 2) / 0.5**0.5
    thirds = [(radius >= low) & (radius < low + 1 / 3) for low in (0, 1 / 3, 2 / 3)]
    thirds[2] |= radius >= 1  # the corner itself

    def energy(image: torch.Tensor) -> list[float]:
        power = torch.fft.fft2(image.float()).abs() ** 2
        return [power[:, band].sum().item() for band in thirds]

    before = energy(photo)
    patterns = set()
    for _ in range(40):
        out = augment(photo)
        assert out.dtype == torch.uint8 and out.shape == photo.shape
        # the mean colour stays, to the rounding of the pixels
        assert (out.float().mean((1, 2)) - photo.float().mean((1, 2))).abs().max() < 0.6
        kept = [after / whole for after, whole in zip(energy(out), before, strict=True)]
        lost = frozenset(band for band, share in enumerate(kept) if share < 0.95)
        # a band that lost frequencies lost some of its energy, never all
        assert all(kept[band] > 0.5 for band in lost)
        patterns.add(lost)
    # one third of the radius (low, middle or high), or all three at once
    assert patterns == {frozenset({0}), frozenset({1}), frozenset({2}), frozenset({0, 1, 2})}
    assert AugmentConfig().frequency_mask == 0


def test_sensor_noise_and_sharpening_follow_their_settings():
    torch.manual_seed(0)
    assert AugmentConfig().noise == AugmentConfig().sharpen == 0
    grey = torch.full((3, 64, 64), 128, dtype=torch.uint8)
    noisy = build_augment(
        AugmentConfig.none().model_copy(update={"noise": 1.0, "noise_sigma": (4.0, 4.0)}), 64
    )(grey)
    assert noisy.dtype == torch.uint8
    assert noisy.float().std().item() == pytest.approx(4.0, abs=0.2)
    photo = torch.from_numpy(np.asarray(astronaut().resize((128, 128))).copy()).permute(2, 0, 1)

    def detail(image: torch.Tensor) -> float:  # mean absolute difference of neighbours
        pixels = image.float()
        return (pixels[:, :, 1:] - pixels[:, :, :-1]).abs().mean().item()

    sharpened = build_augment(
        AugmentConfig.none().model_copy(update={"sharpen": 1.0, "sharpen_factor": (3.0, 3.0)}),
        128,
    )(photo)
    assert detail(sharpened) > 1.3 * detail(photo)
    assert (sharpened.float() - photo.float()).mean().abs().item() < 2  # no change of brightness
