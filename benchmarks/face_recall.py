"""Face detection recall per source: the share of images in which at least one face is found.

Usage: python benchmarks/face_recall.py [DATA ...] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from facetell.data import discover
from facetell.errors import BadImage
from facetell.faces import RetinaFaceDetector
from facetell.io import decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", default=["../shared/data/faces"])
    parser.add_argument("--limit", type=int, default=None, help="images per source at most")
    args = parser.parse_args()
    detector = RetinaFaceDetector(threads=1)
    by_source = defaultdict(list)
    for sample in discover(args.data):
        by_source[(sample.label, sample.source)].append(sample)

    def faces_found(path) -> int:
        try:
            return len(detector.detect(decode(path).image))
        except BadImage:
            return -1

    started = time.perf_counter()
    print(f"{'label':<6} {'source':<16} {'images':>7} {'found':>7} {'recall':>8} {'multi':>6}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for (label, source), samples in sorted(by_source.items()):
            counts = list(pool.map(faces_found, [s.path for s in samples[: args.limit]]))
            found = sum(c > 0 for c in counts)
            print(
                f"{label:<6} {source:<16} {len(counts):>7} {found:>7} "
                f"{found / len(counts):>8.2%} {sum(c > 1 for c in counts):>6}",
                flush=True,
            )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
