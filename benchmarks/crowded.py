"""Photos of many faces: judging and explaining time, and peak memory, by number of faces.

A class photo or a contact sheet of generated portraits holds dozens of faces, and every one
goes through the model and, with --explain, through Grad-CAM's backward pass. Each count runs
in a fresh process (so peak RSS is that count's own): a grid of N copies of the astronaut's
head (scikit-image, public domain) at 160 px each, judged once to warm up, then timed.

Usage: python benchmarks/crowded.py [--faces 1 8 16 32 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

from PIL import Image
from skimage import data as skimage_data


def grid_of_heads(count: int) -> Image.Image:
    """`count` portraits in a near-square grid, each head 160 px wide."""
    head = Image.fromarray(skimage_data.astronaut()).crop((140, 20, 320, 220))
    head = head.resize((160, 176), Image.Resampling.LANCZOS)
    columns = math.ceil(math.sqrt(count))
    grid = Image.new("RGB", (160 * columns, 176 * math.ceil(count / columns)), "white")
    for index in range(count):
        grid.paste(head, (160 * (index % columns), 176 * (index // columns)))
    return grid


def measure(count: int, repeats: int) -> dict[str, float]:
    """One process, one face count: faces found and judged, predict ms and peak RSS, then
    explain s and the peak RSS with it (Grad-CAM needs torch, predict does not)."""
    from facetell import Detector

    detector = Detector.load()
    photo = grid_of_heads(count)
    result = detector.predict(photo)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        detector.predict(photo)
    predict_ms = (time.perf_counter() - started) * 1000 / repeats
    predict_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from facetell.explain import explain  # imports torch, which predict never needs

    explain(detector, photo)  # warm-up: builds the torch model
    started = time.perf_counter()
    explain(detector, photo)
    return {
        "found": result.faces_found,
        "judged": len(result.faces),
        "predict_ms": predict_ms,
        "predict_rss_mb": predict_rss,
        "explain_s": time.perf_counter() - started,
        "explain_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's own count
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.repeats)))
        return
    print(f"{'faces':>6} {'found':>6} {'judged':>7} {'predict ms':>11} {'ms/face':>8} "
          f"{'RSS MB':>7} {'explain s':>10} {'RSS MB':>7}")  # fmt: skip
    for count in args.faces:
        child = [sys.executable, __file__, "--one", str(count), "--repeats", str(args.repeats)]
        row = json.loads(subprocess.run(child, check=True, capture_output=True).stdout)
        print(f"{count:>6} {row['found']:>6} {row['judged']:>7} {row['predict_ms']:>11.0f} "
              f"{row['predict_ms'] / max(1, row['judged']):>8.1f} {row['predict_rss_mb']:>7.0f} "
              f"{row['explain_s']:>10.1f} {row['explain_rss_mb']:>7.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
