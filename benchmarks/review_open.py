"""How big a review page a browser opens comfortably: load time and memory by number of cards.

`predict --report` inlines every picture, about 60 KB per photo, so a folder of thousands makes
a page of hundreds of megabytes. This opens pages of N cards in Debian's headless Chromium and
prints the seconds until the page has loaded and the browser's resident memory (all of its
processes) at that point, to choose how many images `--report` puts in one file.

Usage: python benchmarks/review_open.py [--cards 100 200 500 1000 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright
from skimage import data as skimage_data

from facetell import Detector
from facetell.review import ReviewPage

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DISTINCT_PHOTOS = 20


def browser_rss_mb() -> float:
    """Resident memory of every Chromium process (nothing else runs one during the benchmark)."""
    total = 0
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if not str((process / "exe").resolve()).startswith("/usr/lib/chromium"):
                continue
            status = (process / "status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, nargs="+", default=[100, 200, 500, 1000, 2000])
    args = parser.parse_args()
    detector = Detector.load()
    base = Image.fromarray(skimage_data.astronaut()).resize((1100, 1100), Image.Resampling.LANCZOS)
    judged = []
    for index in range(DISTINCT_PHOTOS):  # distinct pictures, so the page holds no repeats
        shift = index * 3
        photo = base.crop((shift, shift, shift + 1024, shift + 1024))
        judged.append(detector.predict_with_image(photo, name=f"photo_{index:04d}.jpg"))
    print("cards | page MB | load s | browser RSS MB")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        for count in args.cards:
            path = Path(tmp) / f"review-{count}.html"
            with ReviewPage(detector) as page:
                for index in range(count):
                    result, image = judged[index % DISTINCT_PHOTOS]
                    page.add(dataclasses.replace(result, path=f"photo_{index:05d}.jpg"), image)
                page.save(path, per_file=0)
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
            )
            tab = browser.new_page()
            started = time.perf_counter()
            tab.goto(path.as_uri(), wait_until="load", timeout=600_000)
            seconds = time.perf_counter() - started
            rss = browser_rss_mb()
            browser.close()
            megabytes = path.stat().st_size / 1e6
            print(f"{count:5d} | {megabytes:7.1f} | {seconds:6.2f} | {rss:14.0f}")


if __name__ == "__main__":
    main()
