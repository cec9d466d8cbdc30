"""ONNX Runtime sessions tuned for a small CPU shared by several stages.

The face detector and the classifier run one after the other, with Pillow work (crops) in
between. ONNX Runtime's worker threads spin for a while after each run by default; on two
cores that spinning steals the CPU from the next stage (end to end 91-95 ms with spinning,
71-77 ms without, docs/benchmarks.md), so every session here sleeps instead.
"""

from __future__ import annotations

import onnxruntime


def onnx_session(model: bytes, *, threads: int = 0) -> onnxruntime.InferenceSession:
    """A CPU session for a serialised model whose idle threads sleep.

    `threads=0` lets ONNX Runtime pick (one per core).
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        model, sess_options=options, providers=["CPUExecutionProvider"]
    )
