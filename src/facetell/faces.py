"""Faces: where in the image the model looks, and the canonical crop it is given.

The crop recipe travels inside every model bundle, so training and inference cut faces the
same way. Until a face detector backend is configured the recipe is "centre square".
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field


class CropRecipe(BaseModel):
    """How to turn a decoded image into the square, fixed-size input of a model.

    `resize=True` scales the square to `size` (semantic models); `resize=False` keeps native
    pixels, centre-cropping or reflect-padding to `size`, for artifact models whose signal a
    resampling filter would erase.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["center_square"] = "center_square"
    size: int = Field(224, ge=16, le=1024)
    resize: bool = True


def _fit_native(square: np.ndarray, size: int) -> np.ndarray:
    side = square.shape[0]
    if side >= size:
        start = (side - size) // 2
        return square[start : start + size, start : start + size]
    before = (size - side) // 2
    after = size - side - before
    return np.pad(square, ((before, after), (before, after), (0, 0)), mode="reflect")


def canonical_crop(image: Image.Image, recipe: CropRecipe) -> Image.Image:
    """Cut the recipe's square from an RGB image and bring it to `recipe.size`."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if recipe.resize:
        if side == recipe.size:
            return square
        return square.resize((recipe.size, recipe.size), Image.Resampling.BICUBIC)
    return Image.fromarray(_fit_native(np.asarray(square), recipe.size))
