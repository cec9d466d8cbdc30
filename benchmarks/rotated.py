"""How the verdicts hold when photos are turned: sideways or upside down with no EXIF tag.

Phones record orientation in EXIF, which `io` applies; a photo whose tag was stripped (edited,
screenshotted, re-uploaded) reaches the model turned by 90, 180 or 270 degrees. This scores a
per-source sample of the shipped model's test split turned by each angle, each re-saved as one
JPEG quality, and compares every face's logit with the upright copy's.

Usage: python benchmarks/rotated.py [--bundle DIR] [--per-source N] [--angles 90 180 ...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from PIL import Image
from thumbnails import shipped_test_split

from facetell.data import sample_per_source
from facetell.evaluate import auroc, jpeg_copy, score_dataset
from facetell.inference import Detector


def turned_copy(angle: int, quality: int) -> Callable[[Image.Image], Image.Image]:
    """Turned counter-clockwise by a multiple of 90 degrees, then re-saved (Pillow turns by
    quarter turns with lossless transposes)."""
    save = jpeg_copy(quality)
    return lambda image: save(image.rotate(angle, expand=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/faces")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--per-source", type=int, default=30)
    parser.add_argument("--angles", type=int, nargs="+", default=[90, 180, 270])
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    test = sample_per_source(shipped_test_split(args.data), args.per_source)
    detector = Detector.load(args.bundle)
    print(f"{len(test)} test images, JPEG {args.quality}; verdicts at the bundle's threshold")
    upright = None
    for angle in [0, *args.angles]:
        started = time.perf_counter()
        scored = score_dataset(detector, test, transform=turned_copy(angle, args.quality))
        ok = scored.scored
        labels = np.array([label or "" for label in scored.labels])
        real = scored.targets == 0
        line = (
            f"{angle:>3} deg  faces found {ok.mean():.3f}  "
            f"AUROC {auroc(scored.targets[ok], scored.p_ai[ok]):.4f}  "
            f"real called AI {np.mean(labels[real & ok] == 'ai'):.3f}  "
            f"AI called AI {np.mean(labels[~real & ok] == 'ai'):.3f}"
        )
        if upright is None:
            upright = scored
        else:
            both = ok & upright.scored
            moved = np.abs(scored.logits[both] - upright.logits[both])
            line += f"  |logit - upright| mean {moved.mean():.3f} max {moved.max():.3f}"
        print(f"{line}  {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
