"""Synthetic fakes: an autoencoder trained on real faces re-draws them for the AI class."""

from __future__ import annotations

import numpy as np

from conftest import astronaut, smooth_photo
from facetell.faces import CropRecipe, RetinaFaceDetector, canonical_crop, main_face
from facetell.train.config import SyntheticConfig
from facetell.train.synthesize import RedrawAutoencoder, redraw, synthetic_fakes

SIZE = 64


def real_crops() -> np.ndarray:
    """The astronaut's face crop, mirrored and shifted, plus photo-like textures: 24 crops."""
    image = astronaut()
    face = main_face(RetinaFaceDetector().detect(image))
    crop = np.asarray(canonical_crop(image, CropRecipe(kind="face", size=SIZE), face))
    faces = [np.roll(crop, shift, axis=1) for shift in range(0, 48, 4)]
    faces += [f[:, ::-1] for f in faces[:6]]
    textures = [np.asarray(smooth_photo(seed, SIZE)) for seed in range(6)]
    return np.stack(faces + textures).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_redrawn_faces_keep_the_face_but_not_its_pixels():
    crops = real_crops()
    losses: list[float] = []
    config = SyntheticConfig(fraction=0.5, width=16, epochs=30, batch_size=8, lr=5e-3)
    drawn, chosen = synthetic_fakes(crops, config, on_epoch=lambda _, loss: losses.append(loss))
    assert drawn.shape == (12, SIZE, SIZE, 3) and drawn.dtype == np.uint8
    assert len(set(chosen.tolist())) == 12 and chosen.max() < len(crops)
    assert losses[-1] < 0.5 * losses[0]  # it learned to draw these faces
    original = crops[chosen]
    # close to the photo it came from, far from the others, yet not a copy of it
    assert psnr(drawn, original) > 18.0
    assert psnr(drawn, original) > psnr(drawn, np.roll(original, 1, axis=0)) + 3.0
    assert np.abs(drawn.astype(int) - original).mean() > 1.0
    again, again_chosen = synthetic_fakes(crops, config)  # seeded: a run can be repeated
    np.testing.assert_array_equal(again_chosen, chosen)
    np.testing.assert_array_equal(again, drawn)


def test_sides_the_decoder_does_not_divide_are_kept():
    model = RedrawAutoencoder(width=8, latent=4, downsample=8).eval()
    crops = np.random.default_rng(0).integers(0, 256, size=(3, 50, 70, 3), dtype=np.uint8)
    assert redraw(model, crops).shape == crops.shape


def test_crops_smaller_than_a_patch_of_a_side_the_decoder_does_not_divide_are_learnt_from():
    """62-px crops, under the 64-px patch, were taken whole, and the decoder drew 64 px back:
    training stopped with a tensor-size error once every face had been cut."""
    crops = real_crops()[:, :62, :62]
    losses: list[float] = []
    config = SyntheticConfig(fraction=0.25, width=8, epochs=2, batch_size=8)
    drawn, chosen = synthetic_fakes(crops, config, on_epoch=lambda _, loss: losses.append(loss))
    assert drawn.shape == (6, 62, 62, 3) and len(losses) == 2
    assert psnr(drawn, crops[chosen]) > 10.0  # a drawing of those faces, if a rough one
