"""`ldcsf export`: write a checkpoint's model as ONNX beside it, for `--runtime onnx` / `openvino`."""

from __future__ import annotations

from collections.abc import Sequence

from ..options import PredictOptions


class _RuntimeNames(Sequence):
    """The names of `ldcsf.inference.runtimes.REGISTRY`, read when argparse first asks (a given
    --runtime, --help, an error): building the parser must not import torch."""

    def _names(self) -> tuple[str, ...]:
        from ..inference.runtimes import RUNTIMES

        return RUNTIMES

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())


#: `--runtime` choices: the runtimes' registry.
RUNTIME_CHOICES = _RuntimeNames()


def add_runtime_argument(parser) -> None:
    """`--runtime`, shared by `slide` and `predict`."""
    action = parser.add_argument(
        "--runtime", default=PredictOptions.runtime,
        help="what runs the model: torch (default; any device), or on the CPU the exported ONNX "
             "file on onnx (ONNX Runtime) or openvino; exported beside the checkpoint on first use")
    # Set after add_argument, which formats the choices once to check them (that would read the registry).
    action.choices = RUNTIME_CHOICES


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint's model to ONNX (for --runtime onnx / openvino)",
        description="Writes CHECKPOINT with the ending .onnx (or --out), checked against PyTorch on the same input; "
                    "`slide` and `predict` reuse it while the checkpoint is unchanged.")
    parser.add_argument("--checkpoint", required=True, help="model.pt or a .ckpt from `ldcsf train`")
    parser.add_argument("--out", default=None, help="ONNX file to write (default: beside the checkpoint)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..checkpoint import load_checkpoint
    from ..inference.exported import EXPORT_TOLERANCE, export_onnx

    loaded = load_checkpoint(args.checkpoint)
    path = export_onnx(loaded, args.out)
    print(f"written: {path} ({loaded.meta.model_name}, {loaded.meta.input_size} px input, any batch size; "
          f"matches PyTorch within {EXPORT_TOLERANCE:g})")
    return 0
