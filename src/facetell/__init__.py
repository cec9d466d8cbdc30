"""facetell: tell real face photographs from AI-generated faces.

`from facetell import Detector` is the one-line entry point. The inference module (and with it
numpy, Pillow and ONNX Runtime) is imported on first use, so `import facetell` stays instant for
the CLI's `--help` and `--version`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Detector", "FaceResult", "Result", "__version__"]

if TYPE_CHECKING:
    from facetell.inference import Detector, FaceResult, Result


def __getattr__(name: str) -> Any:
    if name in {"Detector", "FaceResult", "Result"}:
        from facetell import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'facetell' has no attribute {name!r}")
