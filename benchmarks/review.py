"""What `predict --report` costs: wall time, peak RSS and page size against plain `predict`.

The review page draws each photo's boxes on a 480-px copy and cuts each face's thumbnail, so it
adds work per image; its cards spool to a temporary file, so memory should not grow with the
number of images. A folder of 1024 x 1024 JPEGs (the astronaut, scikit-image, public domain,
each shifted a little so no two files are alike) is judged in a fresh process per run.

Usage: python benchmarks/review.py [--images 50 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data as skimage_data


def make_folder(folder: Path, count: int) -> None:
    photo = Image.fromarray(skimage_data.astronaut()).resize((1100, 1100), Image.Resampling.LANCZOS)
    for index in range(count):
        shift = index % 76
        photo.crop((shift, shift, shift + 1024, shift + 1024)).save(
            folder / f"photo_{index:04d}.jpg", quality=90
        )


def run(folder: Path, out: Path, report: bool) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `facetell predict` on the folder, in its own
    process (`os.wait4` gives that one child's peak)."""
    command = [sys.executable, "-m", "facetell", "predict", str(folder), "-f", "jsonl"]
    command += ["-o", str(out / "records.jsonl")]
    if report:
        command += ["--report", str(out / "review.html")]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        "images | predict s | --report s | added ms/image | peak RSS MB (plain / report) "
        "| page KB/image"
    )
    for count in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            folder, out = Path(tmp) / "photos", Path(tmp) / "out"
            folder.mkdir()
            out.mkdir()
            make_folder(folder, count)
            plain = [run(folder, out, report=False) for _ in range(args.repeats)]
            plain_rss = max(rss for _, rss in plain)
            with_report = [run(folder, out, report=True) for _ in range(args.repeats)]
            report_rss = max(rss for _, rss in with_report)
            plain_s = statistics.median(s for s, _ in plain)
            report_s = statistics.median(s for s, _ in with_report)
            size_kb = (out / "review.html").stat().st_size / 1024
            added = (report_s - plain_s) * 1000 / count
            print(
                f"{count} | {plain_s:.1f} | {report_s:.1f} | {added:.1f} | "
                f"{plain_rss:.0f} / {report_rss:.0f} | {size_kb / count:.0f}"
            )


if __name__ == "__main__":
    main()
