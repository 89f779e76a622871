"""Where the model's arithmetic runs: PyTorch itself, or an exported ONNX file on ONNX Runtime / OpenVINO.

    model = runtime_model(loaded, "onnx")   # a torch.nn.Module: float (N, 3, H, W) in, logits out

The runtimes are one table, `REGISTRY` (name -> engine class, the packages it needs, where it
runs): `--runtime`'s choices and the table in docs/slides.md are read from it, so a new runtime
is one entry here and its engine class (in `exported.py`, called like the PyTorch model).

On a CPU an inference engine that fuses the whole graph ahead of time can beat eager PyTorch
(benchmarks/runtimes.py measures by how much, per model). ONNX Runtime installs with ldcsf and is
the CPU default (`auto`); OpenVINO is the optional extra `pip install 'ldcsf[runtimes]'`. This
file imports nothing heavy, so the CLI reads the table without loading torch.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from ..checkpoint import LoadedCheckpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """One way to run a checkpoint's model.

    engine: the class in `ldcsf.inference.exported` built from the exported ONNX file and a thread
        count, called like the PyTorch model (named, not imported: reading this table loads no
        engine); None: the PyTorch model itself.
    needs: the Python packages it needs, checked in this order.
    extra: the pip extra that installs them (`pip install 'ldcsf[<extra>]'`); None: ldcsf's own dependencies.
    """

    name: str
    engine: str | None
    needs: tuple[str, ...]
    cpu_only: bool
    description: str
    extra: str | None = None

    def engine_class(self) -> type:
        from . import exported

        return getattr(exported, self.engine)


#: The runtimes, by `--runtime` name; the first is the default.
REGISTRY: dict[str, Runtime] = {runtime.name: runtime for runtime in (
    Runtime("torch", None, (), False, "eager PyTorch"),
    Runtime("onnx", "OnnxRuntimeModel", ("onnxruntime", "onnx"), True, "the exported ONNX file on ONNX Runtime"),
    Runtime("openvino", "OpenVinoModel", ("openvino", "onnx"), True,
            "the exported ONNX file compiled by OpenVINO, fp32", extra="runtimes"),
)}
#: The registry's runtimes.
RUNTIMES = tuple(REGISTRY)
#: The default: the fastest runtime that is exact for this model and installed here (`resolve_runtime`).
AUTO = "auto"
#: `--runtime` choices.
RUNTIME_CHOICES = (AUTO, *RUNTIMES)
#: What `auto` tries on a CPU, in order. ONNX Runtime: 1.7x eager PyTorch on the CPU for ldcsf_swin_mini
#: and Swin-T (benchmarks/results/runtimes.md), probabilities within 1e-7, and no timm to import once
#: the file exists (docs/benchmarks.md, "Fixed cost of one slide"). OpenVINO is as fast but 180 MB
#: installed against ONNX Runtime's 78 MB, so it runs only when asked for.
AUTO_ORDER = ("onnx",)
#: Largest probability difference against PyTorch at which `auto` takes an exported runtime: it
#: must give the same numbers, not merely close ones (explicit choices allow `exported.EXPORT_TOLERANCE`).
AUTO_TOLERANCE = 1e-5


def runs_on_gpu(accelerator: str) -> bool:
    """Whether `accelerator` puts the model on a GPU (or Apple's MPS) here.

    For "auto" on a machine with no GPU driver at all the answer is no without asking torch, whose
    import (0.7 s) is most of a small slide's start-up on an exported runtime.
    """
    accelerator = str(accelerator).lower()
    if accelerator != "auto":
        return accelerator in ("gpu", "cuda", "mps")
    if not _torch_may_find_a_gpu():
        return False
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def cuda_available() -> bool:
    """torch.cuda.is_available(), answered without torch where no GPU driver exists."""
    if not _torch_may_find_a_gpu():
        return False
    import torch

    return torch.cuda.is_available()


def _torch_may_find_a_gpu() -> bool:
    return "torch" in sys.modules or gpu_driver_present()


def gpu_driver_present() -> bool:
    """Whether torch could find a GPU here: on Linux, NVIDIA's, AMD's (ROCm) or WSL's device nodes
    exist; elsewhere (macOS's MPS, Windows) assumed, so torch is asked."""
    import glob
    import os
    import platform

    if platform.system() != "Linux":
        return True
    nodes = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
    return any(os.path.exists(node) for node in nodes) or bool(glob.glob("/dev/nvidia[0-9]*"))


def installed(runtime: Runtime) -> bool:
    """Whether every package `runtime` needs can be imported here (found, not imported)."""
    import importlib.util

    return all(importlib.util.find_spec(package) is not None for package in runtime.needs)


def resolve_runtime(name: str, loaded: LoadedCheckpoint, accelerator: str = "auto",
                    precision: str | None = None) -> str:
    """The registry name that runs `loaded`: `name` itself, or for `auto` the first of `AUTO_ORDER`
    that is installed and exact for this model (within `AUTO_TOLERANCE`, checked once when it is
    exported), else torch. On a GPU `auto` is torch; so it is for a precision other than full
    (`--precision bf16` asks for PyTorch's autocast; the exported engines are fp32). An ensemble's
    exported file holds its members' outputs (the TSR interval's model part), so it runs there too.
    """
    if name != AUTO:
        get_runtime(name)
        return name
    full_precision = precision is None or str(precision) in ("32", "32-true")
    if runs_on_gpu(accelerator) or not full_precision:
        return "torch"
    for candidate in AUTO_ORDER:
        entry = get_runtime(candidate)
        if not installed(entry):
            continue
        if exact_export_on_disk(loaded):  # decided from the record alone: nothing built, no torch
            return candidate
        try:
            engine = runtime_model(loaded, candidate)
        except (ValueError, OSError, ImportError) as err:  # not exportable, not exact, a read-only folder
            log.warning("%s: --runtime auto runs PyTorch (%s: %s)", loaded.path.name, candidate, err)
            continue
        difference = getattr(engine, "max_difference", None)
        if difference is not None and difference <= AUTO_TOLERANCE:
            return candidate
        log.info("%s: --runtime auto runs PyTorch (%s differs by %s)", loaded.path.name, candidate, difference)
    return "torch"


def exact_export_on_disk(loaded: LoadedCheckpoint) -> bool:
    """Whether `loaded` has a trusted exported file whose check against PyTorch met `AUTO_TOLERANCE`."""
    from ..export_record import checkpoint_export

    record = checkpoint_export(loaded)[1]
    difference = None if record is None else record.get("max_difference")
    return difference is not None and difference <= AUTO_TOLERANCE


def get_runtime(name: str) -> Runtime:
    """The registry's entry for `name`; ValueError (one line) for a name it does not hold."""
    if name not in REGISTRY:
        raise ValueError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")
    return REGISTRY[name]


def runtimes_markdown() -> str:
    """The registry as the Markdown table docs/slides.md shows (a test keeps the two equal)."""
    rows = ["| `--runtime` | runs on | needs | what runs the model |", "|---|---|---|---|"]
    for runtime in REGISTRY.values():
        needs = ", ".join(f"`{package}`" for package in runtime.needs)
        needs = f"{needs} (`pip install 'ldcsf[{runtime.extra}]'`)" if runtime.extra else \
            f"{needs} (installed with ldcsf)".strip()
        rows.append(f"| `{runtime.name}` | {'CPU' if runtime.cpu_only else 'any device'} | {needs} | "
                    f"{runtime.description} |")
    return "\n".join(rows)


#: Engines already built in this process, so a cohort checks the export and builds a session once.
_ENGINES: dict[tuple, nn.Module] = {}


def runtime_model(loaded: LoadedCheckpoint, runtime: str = "torch", threads: int | None = None) -> nn.Module:
    """The checkpoint's model on `runtime` (a name in `REGISTRY`), as a torch module."""
    import torch

    from .exported import check_installed, ensure_onnx, read_record

    entry = get_runtime(resolve_runtime(runtime, loaded) if runtime == AUTO else runtime)
    if entry.engine is None:
        return loaded.model
    threads = int(threads or torch.get_num_threads())
    key = (str(Path(loaded.path).resolve()), id(loaded), entry.name, threads)
    if key not in _ENGINES:
        check_installed(entry.needs, entry.name, entry.extra)
        path = ensure_onnx(loaded)
        _ENGINES.clear()  # one engine at a time, freed before the next is built: a session holds the model's memory
        model = entry.engine_class()(path, threads)
        #: what the export's check measured against PyTorch (`resolve_runtime` reads it)
        model.max_difference = (read_record(path) or {}).get("max_difference")
        _ENGINES[key] = model.describe(loaded)
    return _ENGINES[key]


def check_runtime_device(runtime: str, accelerator: str) -> None:
    """A CPU-only runtime refuses a GPU accelerator in one line (`auto` picks one that fits)."""
    if runtime == AUTO or not get_runtime(runtime).cpu_only:
        return
    accelerator = str(accelerator).lower()
    on_gpu = accelerator in ("gpu", "cuda", "mps") or (accelerator == "auto" and cuda_available())
    if on_gpu:
        raise ValueError(f"--runtime {runtime} runs on the CPU; use --accelerator cpu, or --runtime torch on a GPU")


#: What this module held before the exported models got their own (`exported.py`).
_MOVED = ("EXPORT_TOLERANCE", "ONNX_OPSET", "RuntimeMissingError", "onnx_path_for", "file_sha256", "export_onnx",
          "check_export", "exported_sha", "ensure_onnx", "OnnxRuntimeModel", "OpenVinoModel")


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f"ldcsf.inference.runtimes.{name} moved to ldcsf.inference.exported.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(f"{__package__}.exported"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
