"""Load test of the REST API on loopback: latency and throughput at 1, 4 and 16 clients.

Usage: python benchmarks/load.py [--model BUNDLE] [--requests 48] [--seconds 60]
                                 [--side 256] [--explain] [--clients 1 4 16] [--open-page]
Starts `facetell serve` on a free 127.0.0.1 port, sends a bounded number of requests (one
JPEG face, `--side` px square, each) per concurrency level, stops by itself, and prints p50/p95
latency, throughput, mean response size and how many requests were turned away with 503 (the
concurrency gate). `--explain` asks for the heat map, as the web page does with every upload.
First it times the server's first request; `--open-page` opens the web page 2 s before it, as
a visitor who then picks a photo does.
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
    parser.add_argument("--side", type=int, default=256, help="px of the square face photo")
    parser.add_argument("--explain", action="store_true", help="ask for heat maps")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--open-page", action="store_true", help="GET / 2 s before the first")
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
        face = Image.fromarray(data.astronaut()).crop((96, 0, 416, 320))
        face = face.resize((args.side, args.side), Image.Resampling.LANCZOS)
        url = f"{base}/api/v1/predict" + ("?explain=true" if args.explain else "")
        buffer = io.BytesIO()
        face.save(buffer, "JPEG", quality=90)
        body = buffer.getvalue()
        headers = {"content-type": "image/jpeg"}
        with httpx.Client(timeout=60) as client:
            if args.open_page:
                client.get(f"{base}/")
                time.sleep(2)
            started = time.perf_counter()
            client.post(url, content=body, headers=headers)  # the first, and the warm-up
            print(f"first request: {(time.perf_counter() - started) * 1000:.0f} ms")
            columns = ("clients", "requests", "ok", "503", "p50 ms", "p95 ms", "req/s", "KB")
            print(" ".join(f"{c:>8}" for c in columns))
            for clients in args.clients:
                deadline = time.monotonic() + args.seconds

                def one(_: int, deadline: float = deadline) -> tuple[int, float, int]:
                    if time.monotonic() > deadline:
                        return 0, 0.0, 0
                    started = time.perf_counter()
                    response = client.post(url, content=body, headers=headers)
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    return response.status_code, elapsed_ms, len(response.content)

                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=clients) as pool:
                    outcomes = [o for o in pool.map(one, range(args.requests)) if o[0]]
                elapsed = time.perf_counter() - started
                ok = [ms for code, ms, _ in outcomes if code == 200]
                sizes = [size for code, _, size in outcomes if code == 200]
                busy = sum(1 for code, _, _ in outcomes if code == 503)
                p50, p95 = np.percentile(ok, [50, 95]) if ok else (float("nan"),) * 2
                print(
                    f"{clients:>7} {len(outcomes):>8} {len(ok):>5} {busy:>5} {p50:>8.1f} "
                    f"{p95:>8.1f} {len(ok) / elapsed:>7.2f} {np.mean(sizes) / 1024:>8.0f}"
                )
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
