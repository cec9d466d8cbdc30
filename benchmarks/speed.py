"""Speed and memory of the inference pipeline on this machine; prints one line per number.

Usage: python benchmarks/speed.py [--model BUNDLE] [--repeats 30]
Measures: per-face classification (model only, batch 1), end-to-end time for a 1024x1024 photo
(decode + faces + crop + model + calibration, batch 1; and a PNG with a second, small face),
batched face throughput, streamed image throughput, cold start (import + load in a fresh
process), a whole `facetell predict` command, `facetell serve`'s start until /readyz answers
and peak RSS.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from facetell.inference import Detector


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(name: str, times_ms: list[float]) -> None:
    print(
        f"{name:<42} median {statistics.median(times_ms):8.1f} ms   "
        f"p90 {np.percentile(times_ms, 90):8.1f} ms   (n={len(times_ms)})"
    )


def server_start_seconds(model: str | None) -> float:
    """From launching `facetell serve` until /readyz answers 200."""
    command = [sys.executable, "-m", "facetell", "serve", "--port", "0"]
    if model:
        command += ["--model", model]
    started = time.perf_counter()
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()  # "facetell is serving on http://127.0.0.1:PORT"
        address = line.split("serving on ")[1].split()[0]
        while True:
            try:
                with urllib.request.urlopen(f"{address}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:  # not listening yet
                time.sleep(0.02)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    detector = Detector.load(args.model)
    print(f"model {detector.model_name}, classifier on {detector.runtime}")

    photo = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    jpeg_1024 = buffer.getvalue()
    crop = detector.prepare(photo).crops[0]

    report(
        "per-face classification (batch 1)", timed(lambda: detector.logits([crop]), args.repeats)
    )
    report(
        "end-to-end 1024x1024 JPEG (batch 1)",
        timed(lambda: detector.predict(jpeg_1024), args.repeats),
    )
    stages = detector.predict(jpeg_1024).speed
    print("  stages: " + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items()))
    # a lossless photo with a second, 34-px face: that face is cut from a JPEG re-encoding
    group = photo.copy()
    group.paste(photo.resize((240, 240)), (784, 784))
    buffer = io.BytesIO()
    group.save(buffer, "PNG")
    png_group = buffer.getvalue()
    report(
        "end-to-end 1024x1024 PNG, 2 faces, 1 small",
        timed(lambda: detector.predict(png_group), args.repeats),
    )
    stages = detector.predict(png_group).speed
    print("  stages: " + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items()))

    batch = [crop] * 32
    batch_ms = timed(lambda: detector.logits(batch), max(5, args.repeats // 5))
    print(
        f"{'batched faces (32 per batch)':<42} {32_000 / statistics.median(batch_ms):8.1f} faces/s"
    )

    small = Image.fromarray(data.astronaut()).resize((256, 256))
    images = [small] * 64
    started = time.perf_counter()
    list(detector.stream(images))
    seconds = time.perf_counter() - started
    print(f"{'streamed 256x256 images (Detector.stream)':<42} {64 / seconds:8.1f} images/s")

    model_arg = f"{args.model!r}" if args.model else "None"
    # VmHWM, not ru_maxrss: Linux carries a forked child's ru_maxrss (the parent's RSS at fork)
    # across exec, so ru_maxrss would report this benchmark process's peak instead.
    code = (
        "import re, time; t=time.perf_counter(); from facetell.inference import Detector; "
        "from skimage import data; "
        f"d=Detector.load({model_arg}); s=time.perf_counter()-t; d.predict(data.astronaut()); "
        "status=open('/proc/self/status').read(); "
        "print(s, int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) / 1024)"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(3)
    ]
    cold = statistics.median(float(r[0]) for r in runs)
    fresh_rss = max(float(r[1]) for r in runs)
    print(f"{'cold start (import + load, fresh process)':<42} median {cold:8.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.jpg"
        path.write_bytes(jpeg_1024)
        command = [sys.executable, "-m", "facetell", "predict", str(path), "--format", "jsonl"]
        if args.model:
            command += ["--model", args.model]
        cli_seconds = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            cli_seconds.append(time.perf_counter() - started)
    print(
        f"{'`facetell predict` one 1024² JPEG, whole command':<42} median "
        f"{statistics.median(cli_seconds):8.2f} s"
    )
    start = statistics.median(server_start_seconds(args.model) for _ in range(3))
    print(f"{'`facetell serve` until /readyz answers':<42} median {start:8.2f} s")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak RSS (this benchmark process)':<42} {own:8.0f} MB")
    print(f"{'peak RSS (fresh process: load + 1 photo)':<42} {fresh_rss:8.0f} MB")


if __name__ == "__main__":
    main()
