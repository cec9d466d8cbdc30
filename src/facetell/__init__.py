"""facetell: tell real face photographs from AI-generated faces.

`from facetell import Detector` is the one-line entry point. The inference module (and with it
numpy, Pillow and ONNX Runtime) is imported on first use, so `import facetell` stays instant for
the CLI's `--help` and `--version`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# torch's OpenMP threads spin for a while after each operation. Beside facetell's other threads
# and processes (images decoded ahead, ONNX Runtime, training's loader workers, a second
# request's heat map) that spinning steals the cores the work needs: on two cores a heat map
# took 227 ms instead of 158, a training epoch 169 s instead of 153 (docs/benchmarks.md). Idle
# OpenMP threads sleep instead, unless the user set the policy. OpenMP reads it once, as torch
# loads: a program that imported torch before facetell keeps its own.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["Detector", "FaceResult", "Result", "__version__"]

if TYPE_CHECKING:
    from facetell.inference import Detector, FaceResult, Result


def __getattr__(name: str) -> Any:
    if name in {"Detector", "FaceResult", "Result"}:
        from facetell import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'facetell' has no attribute {name!r}")
