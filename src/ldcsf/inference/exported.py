"""Exported models: the ONNX file of a checkpoint, checked against PyTorch, and the engines that run it
(ONNX Runtime, OpenVINO), each called like the PyTorch model it came from.

The exported file sits beside its checkpoint (`model.pt` -> `model.onnx`, written by `ldcsf export`
or on first use) and records the SHA-256 of the checkpoint it came from: a file from other weights
is never used, it is remade. Every exported file is checked once against PyTorch on the same input
before it is kept (`EXPORT_TOLERANCE`), so an engine that is not exact for a model fails at export,
not silently in a slide's numbers. Which engine runs is `runtimes.REGISTRY`'s choice.

Beside the file, `model.onnx.json` (`ExportRecord`) keeps the checkpoint's and the file's SHA-256
and the difference the check measured: a later run trusts the file from that record alone, without
importing `onnx` or building the PyTorch model (timm), which is most of a small slide's start-up.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import LoadedCheckpoint
from ..utils.atomic import atomic_path
from ..export_record import (  # noqa: F401 - also imported from here
    RECORD_VERSION, file_sha256, onnx_path_for, read_record, record_path, trusted_export,
)
from .onnx_session import OnnxSession
from .runtime_packages import RuntimeMissingError, check_installed, require_package  # noqa: F401 - also from here

log = logging.getLogger(__name__)

#: Largest |difference| of sigmoid probabilities an exported model may show against PyTorch. fp32
#: engines reorder sums (fused kernels, other GEMM blocking): differences of ~1e-6 are expected.
EXPORT_TOLERANCE = 1e-4
ONNX_OPSET = 17
_SHA_KEY = "ldcsf_checkpoint_sha256"
#: Output names of an exported file: a single model's (presence logits, area logit maps), or an
#: ensemble's members' (K, N, L) logits and (K, N, L, h, w) area logit maps.
SINGLE_OUTPUTS = ("logits", "areas")
MEMBER_OUTPUTS = ("member_logits", "member_areas")


def export_onnx(loaded: LoadedCheckpoint, out: str | Path | None = None, check: bool = True) -> Path:
    """Write the checkpoint's model as ONNX (batch size free), checked against PyTorch; return the path.

    The file is written atomically and carries the checkpoint's SHA-256 in its metadata.
    """
    onnx = require_package("onnx", "onnx")
    out = Path(out) if out is not None else onnx_path_for(loaded.path, loaded.export_dir)
    model = loaded.model.to("cpu").eval()
    with_areas = bool(getattr(model, "has_area_head", False))
    members = int(getattr(model, "ensemble_size", 1)) > 1
    # An ensemble is exported as its members' outputs (K first): their spread is a TSR interval's model part,
    # and their mean, which every other consumer reads, is one cheap average of them (`_ExportedModel`).
    outputs = [*(MEMBER_OUTPUTS if members else SINGLE_OUTPUTS)][:2 if with_areas else 1]
    batch_axis = 1 if members else 0
    side = int(loaded.meta.input_size)
    example = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # Tracing fixes the model's Python-level checks (input size) to the export's: intended here.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript-based exporter: one self-contained file, no onnxscript needed, and it
        # handles timm's Swin (the newer dynamo exporter is slower to run and needs more packages).
        exported_view = _Members(model) if members else _WithAreas(model) if with_areas else model
        torch.onnx.export(
            exported_view.eval(), (example,), str(tmp), input_names=["image"], output_names=outputs,
            dynamic_axes={"image": {0: "batch"}, **{name: {batch_axis: "batch"} for name in outputs}},
            opset_version=ONNX_OPSET, dynamo=False,
        )
        graph = onnx.load(str(tmp))
        for key, value in {_SHA_KEY: file_sha256(loaded.path), "ldcsf_model_name": loaded.meta.model_name,
                           "ldcsf_labels": ",".join(loaded.meta.labels)}.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(graph, str(tmp))
        spec = loaded.meta.input_spec
        difference = check_export(model, OnnxRuntimeModel(tmp), side, out, spec.mean, spec.std) if check else None
    write_record(out, checkpoint_sha256=file_sha256(loaded.path), max_difference=difference,
                 meta=loaded.meta.to_dict(), weights_sha256=loaded.weights_sha256)
    return out


def write_record(onnx_file: Path, checkpoint_sha256: str, max_difference: float | None,
                 meta: dict | None = None, weights_sha256: str = "") -> None:
    """Write the export record beside `onnx_file` (after the file itself: a record never names a missing file).

    With the checkpoint's `meta` and weights digest, a later run reads the checkpoint's meta from
    the record (`checkpoint.load_checkpoint(lazy=True)`) and needs no torch to open the checkpoint.
    """
    from ..utils.atomic import write_json_atomic

    write_json_atomic(record_path(onnx_file), {
        "version": RECORD_VERSION, "checkpoint_sha256": checkpoint_sha256, "onnx_sha256": file_sha256(onnx_file),
        "max_difference": max_difference, "tolerance": EXPORT_TOLERANCE, "opset": ONNX_OPSET,
        "meta": meta, "weights_sha256": weights_sha256,
    })


def check_export(reference: nn.Module, exported: nn.Module, side: int, source: Path, mean, std,
                 batch: int = 3) -> float:
    """Largest probability difference of `exported` against `reference`; ValueError above tolerance.

    A batch size other than the export's example proves the batch dimension is really free. The
    check images are made as tiles are: H&E-like colours (`synthetic_he`), whole grey levels,
    normalised by the input's `mean` and `std`. A model that estimates the stains itself (the
    Macenko view) then meets what it meets on slides: on uniform noise the stains' directions are
    ill-defined and two runtimes' last float digits send them apart.
    """
    levels = synthetic_he(batch, side, torch.Generator().manual_seed(1))
    x = (levels - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(std).reshape(1, 3, 1, 1)
    with torch.inference_mode():
        if int(getattr(reference, "ensemble_size", 1)) > 1:  # every member's outputs must match, not only the mean
            want = torch.cat([torch.sigmoid(t.float()).flatten() for t in reference.forward_members(x) if t is not None])
            got = torch.cat([torch.sigmoid(t.float()).flatten() for t in exported.forward_members(x) if t is not None])
        elif getattr(reference, "has_area_head", False):  # the sub-tile area map must match too
            want = torch.cat([torch.sigmoid(t.float()).flatten(1) for t in reference.forward_with_areas(x)], 1)
            got = torch.cat([torch.sigmoid(t.float()).flatten(1) for t in exported.forward_with_areas(x)], 1)
        else:
            want = torch.sigmoid(reference(x).float())
            got = torch.sigmoid(exported(x).float())
    diff = float((want - got).abs().max())
    if not diff <= EXPORT_TOLERANCE:
        raise ValueError(f"{source}: exported model differs from PyTorch by {diff:.2e} (> {EXPORT_TOLERANCE:g}); not used")
    return diff


def synthetic_he(batch: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """H&E-like RGB images (batch, 3, side, side) in 0-1, on whole grey levels: per pixel random
    haematoxylin and eosin amounts (up to the reference maxima) through the reference stain
    vectors (Beer-Lambert, 240 transmitted), some pixels left as glass."""
    from ..models.macenko import LIGHT, REFERENCE_MAX_CONCENTRATIONS, REFERENCE_STAINS

    amounts = torch.rand(batch, 2, side * side, generator=generator) * torch.tensor(REFERENCE_MAX_CONCENTRATIONS)[:, None]
    amounts = amounts * (torch.rand(batch, 1, side * side, generator=generator) > 0.2)  # glass
    density = torch.tensor(REFERENCE_STAINS) @ amounts  # (batch, 3, pixels)
    levels = torch.round(LIGHT * torch.exp(-density)).clamp(0, 255)
    return levels.reshape(batch, 3, side, side) / 255


def exported_sha(path: str | Path) -> str | None:
    """The checkpoint SHA-256 an exported file records, or None when it records none / is unreadable."""
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - damaged or foreign file: treated as absent
        return None
    return next((p.value for p in graph.metadata_props if p.key == _SHA_KEY), None)


def ensure_onnx(loaded: LoadedCheckpoint) -> Path:
    """The checkpoint's ONNX file, exported now when it is missing, made from other weights, or has
    no record of its check (`trusted_export`)."""
    path = onnx_path_for(loaded.path, loaded.export_dir)
    if trusted_export(path, file_sha256(loaded.path)) is not None:
        return path
    log.info("exporting %s to %s (once; reused while the checkpoint is unchanged)", loaded.path.name, path)
    try:
        return export_onnx(loaded, path)
    except PermissionError as err:
        raise PermissionError(f"{path}: cannot write the exported model beside its checkpoint ({err}); "
                              "run `ldcsf export` where it can be written") from None


class _WithAreas(nn.Module):
    """Export view of a model with an area head: both outputs of one pass, presence logits first."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_areas(images)


class _Members(nn.Module):
    """Export view of an ensemble: each member's presence logits and, with an area head, area logit maps."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, areas = self.model.forward_members(images)
        return (logits,) if areas is None else (logits, areas)


class _ExportedModel(nn.Module):
    """What callers read off a classifier besides calling it (labels, input size), for exported files.

    Files exported from a model with an area head have a second output, the sub-tile area logits:
    `forward_with_areas` returns both, as the PyTorch model's does. A file exported from an ensemble
    holds its members' outputs: `forward_members` returns them and every other call their mean of
    logits, as `HeadEnsemble` does.
    """

    has_area_head = False
    ensemble_size = 1

    def read_outputs(self, names: list[str], shapes: list) -> None:
        """Set `has_area_head` and `ensemble_size` from the file's output names and shapes."""
        self.has_area_head = len(names) == 2
        self.ensemble_size = int(shapes[0][0]) if names[0] == MEMBER_OUTPUTS[0] else 1

    def run(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def _outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.run(images)
        return [out.mean(0) for out in outputs] if self.ensemble_size > 1 else outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._outputs(images)[0]

    def forward_with_areas(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, areas = self._outputs(images)
        return logits, areas

    def forward_members(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's (K, N, L) logits and (K, N, L, h, w) area logit maps or None (an ensemble's file only)."""
        if self.ensemble_size < 2:
            raise ValueError(f"{getattr(self, 'path', 'this exported file')}: not an ensemble's export (no member outputs)")
        outputs = self.run(images)
        return outputs[0], outputs[1] if len(outputs) > 1 else None

    def describe(self, loaded: LoadedCheckpoint) -> "_ExportedModel":
        self.labels = list(loaded.meta.labels)
        self.num_labels = len(self.labels)
        self.img_size = (loaded.meta.input_size, loaded.meta.input_size)
        return self


class OnnxRuntimeModel(_ExportedModel):
    """An ONNX file on ONNX Runtime's CPU engine (`OnnxSession`), called like the PyTorch model it came from."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.engine = OnnxSession(path, int(threads or torch.get_num_threads()))
        self.path, self.session = self.engine.path, self.engine.session
        outputs = self.session.get_outputs()
        self.read_outputs([o.name for o in outputs], [o.shape for o in outputs])

    def run(self, images: torch.Tensor) -> list[torch.Tensor]:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return [torch.from_numpy(out) for out in self.engine.run(array)]


@functools.cache
def _openvino_core():
    """One OpenVINO Core for the process, kept for its lifetime.

    OpenVINO's CPU plugin installs its own signal stack (`sigaltstack`) for each plugin instance
    and puts the previous one back when that instance goes. With a Core per model, models freed
    out of creation order leave the thread pointing at an unmapped stack, and the next signal
    with a Python handler (SIGCHLD from any subprocess, the SIGTERM a scheduler sends) kills the
    process with SIGSEGV. One Core means one plugin instance that never goes.
    """
    ov = require_package("openvino", "openvino", "runtimes")
    return ov.Core()


class OpenVinoModel(_ExportedModel):
    """An ONNX file compiled by OpenVINO for the CPU, in fp32 (OpenVINO would pick bf16 on CPUs
    that have it, which is not exact)."""

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "f32") -> None:
        super().__init__()
        core = _openvino_core()
        config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",  # one stream: the batch is the parallelism
        }
        self.path = Path(path)
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        outputs = self.compiled.outputs
        names = [o.get_any_name() for o in outputs]
        # Only a member output's first dimension is fixed (K); a batch dimension has no length to read.
        self.read_outputs(names, [[o.get_partial_shape()[0].get_length()] if name in MEMBER_OUTPUTS else [None]
                                  for name, o in zip(names, outputs)])

    def run(self, images: torch.Tensor) -> list[torch.Tensor]:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        result = self.request.infer({0: array})
        return [torch.from_numpy(np.array(result[output])) for output in self.compiled.outputs]
