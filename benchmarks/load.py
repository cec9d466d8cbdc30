"""Load test of the REST API on loopback: latency and throughput at 1, 4 and 16 clients.

Usage: python benchmarks/load.py [--model BUNDLE] [--requests 48] [--seconds 60]
Starts `facetell serve` on a free 127.0.0.1 port, sends a bounded number of requests (one
256x256 JPEG face each) per concurrency level, stops by itself, and prints p50/p95 latency,
throughput and how many requests were turned away with 503 (the concurrency gate).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image
from skimage import data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--requests", type=int, default=48, help="per concurrency level")
    parser.add_argument("--seconds", type=float, default=60, help="time cap per level")
    parser.add_argument("--max-concurrency", type=int, default=None, help="server's gate")
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "facetell", "serve", "--port", str(port)]
    if args.model:
        command += ["--model", args.model]
    if args.max_concurrency:
        command += ["--max-concurrency", str(args.max_concurrency)]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        face = Image.fromarray(data.astronaut()).crop((96, 0, 416, 320)).resize((256, 256))
        buffer = io.BytesIO()
        face.save(buffer, "JPEG", quality=90)
        body = buffer.getvalue()
        headers = {"content-type": "image/jpeg"}
        columns = ("clients", "requests", "ok", "503", "p50 ms", "p95 ms", "req/s")
        print(" ".join(f"{c:>8}" for c in columns))
        with httpx.Client(timeout=60) as client:
            client.post(f"{base}/api/v1/predict", content=body, headers=headers)  # warm-up
            for clients in (1, 4, 16):
                deadline = time.monotonic() + args.seconds

                def one(_: int, deadline: float = deadline) -> tuple[int, float]:
                    if time.monotonic() > deadline:
                        return 0, 0.0
                    started = time.perf_counter()
                    response = client.post(f"{base}/api/v1/predict", content=body, headers=headers)
                    return response.status_code, (time.perf_counter() - started) * 1000

                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=clients) as pool:
                    outcomes = [o for o in pool.map(one, range(args.requests)) if o[0]]
                elapsed = time.perf_counter() - started
                ok = [ms for code, ms in outcomes if code == 200]
                busy = sum(1 for code, _ in outcomes if code == 503)
                p50, p95 = np.percentile(ok, [50, 95]) if ok else (float("nan"),) * 2
                print(
                    f"{clients:>7} {len(outcomes):>8} {len(ok):>5} {busy:>5} {p50:>8.1f} "
                    f"{p95:>8.1f} {len(ok) / elapsed:>7.2f}"
                )
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
