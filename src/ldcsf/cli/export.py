"""`ldcsf export`: write a checkpoint's model as ONNX beside it, for `--runtime onnx` / `openvino`."""

from __future__ import annotations

from ..inference.runtimes import RUNTIME_CHOICES  # noqa: F401 - read without torch: the parser stays quick to build
from ..options import PredictOptions


def add_runtime_argument(parser) -> None:
    """`--runtime`, shared by `slide` and `predict`."""
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=PredictOptions.runtime,
                        help="what runs the model: auto (default: on a CPU the exported ONNX file on ONNX Runtime "
                             "when it is installed and gives PyTorch's probabilities within 1e-5, else PyTorch), "
                             "torch (any device), or on the CPU onnx (ONNX Runtime) or openvino; the ONNX file is "
                             "exported once, beside the checkpoint (the shipped model's in ~/.cache/ldcsf)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint's model to ONNX (for --runtime onnx / openvino)",
        description="Writes CHECKPOINT with the ending .onnx (or --out), checked against PyTorch on the same input, "
                    "with its record (model.onnx.json); `slide` and `predict` reuse it while the checkpoint is "
                    "unchanged. Without --checkpoint: the shipped model, into ~/.cache/ldcsf/shipped.")
    parser.add_argument("--checkpoint", default=None,
                        help="model.pt or a .ckpt from `ldcsf train` (default: the shipped model)")
    parser.add_argument("--out", default=None, help="ONNX file to write (default: beside the checkpoint)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..checkpoint import LoadedCheckpoint, load_checkpoint
    from ..inference.exported import EXPORT_TOLERANCE, export_onnx
    from .common import checkpoint_or_shipped

    chosen = checkpoint_or_shipped(args.checkpoint)
    loaded = chosen if isinstance(chosen, LoadedCheckpoint) else load_checkpoint(chosen)
    path = export_onnx(loaded, args.out)
    print(f"written: {path} ({loaded.meta.model_name}, {loaded.meta.input_size} px input, any batch size; "
          f"matches PyTorch within {EXPORT_TOLERANCE:g})")
    return 0
