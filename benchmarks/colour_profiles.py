"""How much an embedded colour profile matters: test images stored as Display P3 (iPhones).

Each image of a per-source sample of the shipped model's test split is converted to the values
a camera saving in Display P3 stores, saved as JPEG 90 with or without its profile, and scored;
the logits are compared with the sRGB copy's. With the profile, `io.decode` converts back to
sRGB; without it the P3 values are read as sRGB, as before session 27.

Usage: python benchmarks/colour_profiles.py [--bundle DIR] [--per-source N]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from thumbnails import shipped_test_split

from facetell.data import sample_per_source
from facetell.evaluate import auroc, score_dataset
from facetell.inference import Detector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import display_p3_profile, in_display_p3  # the tests' P3 profile


def saved(quality: int, p3: bool, with_profile: bool) -> Callable[[Image.Image], Image.Image]:
    """The image as the JPEG file a camera would write."""
    profile = display_p3_profile()

    def apply(image: Image.Image) -> Image.Image:
        stored = in_display_p3(image.convert("RGB")) if p3 else image.convert("RGB")
        buffer = io.BytesIO()
        options = {"icc_profile": profile} if with_profile else {}
        stored.save(buffer, "JPEG", quality=quality, **options)
        return Image.open(io.BytesIO(buffer.getvalue()))

    return apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--per-source", type=int, default=30)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    test = sample_per_source(shipped_test_split(args.data), args.per_source)
    detector = Detector.load(args.bundle)
    print(f"{len(test)} test images, JPEG {args.quality}; verdicts at the bundle's threshold")
    conditions = {
        "sRGB": saved(args.quality, p3=False, with_profile=False),
        "Display P3, profile embedded": saved(args.quality, p3=True, with_profile=True),
        "Display P3 values, no profile": saved(args.quality, p3=True, with_profile=False),
    }
    reference = None
    for name, transform in conditions.items():
        started = time.perf_counter()
        scored = score_dataset(detector, test, transform=transform)
        ok = scored.scored
        labels = np.array([label or "" for label in scored.labels])
        line = f"{name:<30} AUROC {auroc(scored.targets[ok], scored.p_ai[ok]):.4f}"
        if reference is None:
            reference = scored
        else:
            both = ok & reference.scored
            moved = np.abs(scored.logits[both] - reference.logits[both])
            reference_labels = np.array([label or "" for label in reference.labels])
            flipped = int(np.sum(labels[both] != reference_labels[both]))
            line += (
                f"  |logit - sRGB| mean {moved.mean():.3f} max {moved.max():.3f}"
                f"  verdicts changed {flipped} of {int(both.sum())}"
            )
        print(f"{line}  {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
