"""An exported ONNX file on ONNX Runtime's CPU engine, numpy in and out: the part of the ONNX runtime
that needs no torch. `exported.OnnxRuntimeModel` wraps it as a torch module; a small slide's run
without torch (`wholeslide.onnx_prediction`) calls it directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runtime_packages import require_package


class OnnxSession:
    """`run(images)`: float32 (N, 3, H, W) normalised images -> [presence logits (N, L)] and, for a
    file exported with an area head, [..., area logit maps (N, L, h, w)]."""

    def __init__(self, path: str | Path, threads: int) -> None:
        ort = require_package("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()
        self.has_area_head = len(outputs) == 2
        #: an ensemble's file gives its members' outputs (K first), whose mean of logits is the model's
        self.members = int(outputs[0].shape[0]) if outputs[0].name == "member_logits" else 1

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.float32)})
