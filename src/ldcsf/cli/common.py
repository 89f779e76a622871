"""What the subcommands share: device options, and the tables a person reads in a terminal.

Library functions return rows and numbers; only the CLI turns them into text.
"""

from __future__ import annotations

import math

from ..options import PredictOptions
from .dataclass_args import add_field_argument, field_default, from_args


def add_device_arguments(parser, options=PredictOptions) -> None:
    """Lightning's device options, shared by train, evaluate and predict; defaults from `options`' fields.

    `--devices` stays None when not given (`devices_or_default`): its default is the command's.
    """
    group = parser.add_argument_group("devices")
    add_field_argument(group, options, "--accelerator", help="cpu, gpu, mps or auto")
    group.add_argument("--devices", default=None, help="number of devices, a list like 0,1, or auto "
                                                       f"(default: {field_default(options, 'devices')})")
    add_field_argument(group, options, "--strategy", help="auto, ddp, ddp_spawn, fsdp, ...")
    add_field_argument(group, options, "--num-nodes", type=int, help="machines in a multi-node run")
    add_field_argument(group, options, "--precision", help="32-true, 16-mixed or bf16-mixed (or 32, 16, bf16)")
    add_field_argument(group, options, "--num-workers", type=int,
                       help="data loading processes per device (default here: %(default)s; up to 4, one core left to the model)")
    add_field_argument(group, options, "--no-progress", dest="progress", action="store_false", help="hide progress bars")


def devices_or_default(args, options) -> object:
    """`--devices` as given, else the default of the command's options (train: auto, evaluate/predict: 1)."""
    return args.devices or field_default(options, "devices")


def device_options(args) -> PredictOptions:
    """The `PredictOptions` of parsed evaluate/predict arguments (fields by name)."""
    return from_args(PredictOptions, args, devices=devices_or_default(args, PredictOptions))


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (what a person reads in a terminal)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def print_report(report, title: str = "") -> None:
    """A metrics report: the per-label table, then the summary metrics."""
    from ..evaluation.metrics import LABEL_METRICS, SUMMARY_METRICS

    if title:
        print(title)
    print(format_table(["label", *LABEL_METRICS], report.table_rows()))
    print()
    print(format_table(["summary", "value"], [[m, _summary_value(report.summary[m])] for m in SUMMARY_METRICS]))


def _summary_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return str(int(value)) if float(value).is_integer() and value > 1 else f"{value:.4f}"


#: --checkpoint's help where the shipped model stands in for it.
CHECKPOINT_HELP = ("model.pt or a .ckpt from `ldcsf train` (default: the model that ships with ldcsf, "
                   "see `ldcsf models` and docs/model_card.md)")


def checkpoint_or_shipped(checkpoint: str | None):
    """The --checkpoint path as given, or the shipped model (read and checked; its PyTorch model is
    built on first use, which a run on its exported file never makes) when there is none."""
    if checkpoint is not None:
        return checkpoint
    import sys

    from ..shipped import load_shipped, read_card, shipped_label

    print(f"no --checkpoint: using the shipped model {shipped_label(read_card())} (weights for research use "
          "only, not for clinical or commercial use; see docs/model_card.md)", file=sys.stderr)
    return load_shipped(lazy=True)
