"""Faces found in large photos: recall by face width, extra faces and detection time.

Each sampled portrait is scaled so that its face is W pixels wide and pasted into a large
canvas (scikit-image's rocket photo, enlarged: no faces of its own), as a face far from the
camera sits in a phone or DSLR photo. A face counts as found when a detected box overlaps the
pasted one (IoU > 0.5). Run with the detail look (the default detector) and without it. Then
the other way round: each portrait enlarged 2-4x, a close-up whose one face must stay one face.

Usage: python benchmarks/large_photos.py [DATA] [--per-source N] [--widths 40 60 ...]
       [--canvas 4000x3000 6000x4000 ...] [--enlarge 2 3 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

from PIL import Image
from skimage import data as skimage_data

from facetell.data import discover, sample_per_source
from facetell.faces import RetinaFaceDetector, box_iou, main_face
from facetell.io import decode

SOURCES = ("ffhq-1024", "sdxl", "boredhumans", "utkface")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/faces")
    parser.add_argument("--per-source", type=int, default=10)
    parser.add_argument("--widths", type=int, nargs="+", default=[40, 60, 80, 120, 160, 240])
    parser.add_argument(
        "--canvas", nargs="+", default=["1400x1050", "2000x1500", "4000x3000", "6000x4000"]
    )
    parser.add_argument("--enlarge", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args()
    samples = [s for s in discover([args.data]) if s.source in SOURCES]
    portraits = [decode(s.path).image for s in sample_per_source(samples, args.per_source)]
    detectors = {
        "whole look only": RetinaFaceDetector(detail_max_side=None),
        "with detail look": RetinaFaceDetector(),
    }
    faces = [main_face(detectors["whole look only"].detect(p)) for p in portraits]
    pairs = [(p, f) for p, f in zip(portraits, faces, strict=True) if f is not None]
    print(f"{len(pairs)} portraits from {', '.join(SOURCES)}; canvas: scikit-image rocket")
    print(f"{'canvas':>10} {'detector':>17} " + " ".join(f"{w:>5}px" for w in args.widths)
          + f" {'extra':>6} {'median ms':>10}")  # fmt: skip
    rocket = Image.fromarray(skimage_data.rocket())
    for canvas_size in args.canvas:
        width, height = (int(v) for v in canvas_size.split("x"))
        background = rocket.resize((width, height), Image.Resampling.BILINEAR)
        for name, detector in detectors.items():
            found = dict.fromkeys(args.widths, 0)
            extra, times = 0, []
            for face_width in args.widths:
                for portrait, face in pairs:
                    scale = face_width / face.box[2]
                    pasted = portrait.resize(
                        (round(portrait.width * scale), round(portrait.height * scale)),
                        Image.Resampling.LANCZOS,
                    )
                    canvas = background.copy()
                    left, top = width // 3, height // 3
                    canvas.paste(pasted, (left, top))
                    x, y, w, h = face.box
                    expected = (left + x * scale, top + y * scale, w * scale, h * scale)
                    started = time.perf_counter()
                    detected = detector.detect(canvas)
                    times.append((time.perf_counter() - started) * 1000)
                    hits = [d for d in detected if box_iou(d.box, expected) > 0.5]
                    found[face_width] += bool(hits)
                    extra += len(detected) - len(hits)
            recall = " ".join(f"{found[w] / len(pairs):>6.0%}" for w in args.widths)
            print(f"{canvas_size:>10} {name:>17} {recall} {extra:>6} "
                  f"{statistics.median(times):>10.0f}")  # fmt: skip
    print(f"{'enlarged':>10} {'detector':>17} {'portraits with one face':>24} {'extra faces':>12}")
    for factor in args.enlarge:
        for name, detector in detectors.items():
            counts = [
                len(detector.detect(p.resize((p.width * factor, p.height * factor))))
                for p, _ in pairs
            ]
            one = sum(c == 1 for c in counts)
            extra = sum(max(0, c - 1) for c in counts)
            print(f"{f'{factor}x':>10} {name:>17} {one:>20}/{len(pairs)} {extra:>12}")


if __name__ == "__main__":
    main()
