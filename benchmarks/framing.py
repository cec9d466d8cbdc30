"""How far a model's score moves when the same face comes from a tighter or a wider photo.

A face crop square (1.6x the face box) often reaches past the photo, and the face pipeline
mirrors the photo into that part: 58% of a UTKFace crop on average, 11% of an SDXL one. A model
that keys on the mirrored share has learned how each source framed its faces, not what made
them. This scores a per-source sample of the shipped model's test split three ways: as is;
"tight", the photo cut to 1.1x the face box (UTKFace's framing: most of the crop is mirrored);
and "wide", the photo pasted into a canvas three times its size filled with a blurred
enlargement of itself (no crop square reaches past it).

Usage: python benchmarks/framing.py [--bundle DIR] [--per-source N]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter
from thumbnails import shipped_test_split

from facetell.data import sample_per_source
from facetell.evaluate import score_dataset
from facetell.faces import FaceDetector, main_face
from facetell.inference import Detector


def tight_photo(faces: FaceDetector) -> Callable[[Image.Image], Image.Image]:
    """The photo cut to 1.1x its main face's box: UTKFace-like framing."""

    def apply(image: Image.Image) -> Image.Image:
        face = main_face(faces.detect(image))
        if face is None:
            return image
        x, y, width, height = face.box
        half = max(width, height) * 0.55
        cx, cy = x + width / 2, y + height / 2
        left, top = round(max(0, cx - half)), round(max(0, cy - half))
        right, bottom = round(min(image.width, cx + half)), round(min(image.height, cy + half))
        return image.crop((left, top, right, bottom))

    return apply


def wide_photo(image: Image.Image) -> Image.Image:
    """The photo in the middle of a canvas three times its size, filled with its blurred self."""
    canvas = image.resize((image.width * 3, image.height * 3), Image.Resampling.BILINEAR)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=image.width / 8))
    canvas.paste(image, (image.width, image.height))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--per-source", type=int, default=40)
    args = parser.parse_args()
    test = sample_per_source(shipped_test_split(args.data), args.per_source)
    detector = Detector.load(args.bundle)
    conditions = {"as is": None, "tight": tight_photo(detector.face_detector), "wide": wide_photo}
    scores = {name: score_dataset(detector, test, transform=t) for name, t in conditions.items()}
    sources = np.array(scores["as is"].sources)
    print(f"{len(test)} test images; mean logit and share called AI at the bundle's threshold")
    print(f"{'source':<16}" + "".join(f"{name:>22}" for name in conditions))
    for source in sorted(set(sources)):
        cells = []
        for scored in scores.values():
            mask = (sources == source) & scored.scored
            called = np.mean([scored.labels[i] == "ai" for i in np.flatnonzero(mask)])
            cells.append(f"{scored.logits[mask].mean():+8.2f} ({called:4.0%} AI)")
        print(f"{source:<16}" + "".join(f"{cell:>22}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
