"""What the subcommands share: device options, and the tables a person reads in a terminal.

Library functions return rows and numbers; only the CLI turns them into text.
"""

from __future__ import annotations

import math

from ..utils.workers import default_num_workers


def add_device_arguments(parser) -> None:
    """Lightning's device options, shared by train, evaluate and predict."""
    group = parser.add_argument_group("devices")
    group.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto (default: auto)")
    group.add_argument("--devices", default=None, help="number of devices, a list like 0,1, or auto")
    group.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, fsdp, ... (default: auto)")
    group.add_argument("--num-nodes", type=int, default=1, help="machines in a multi-node run (default: 1)")
    group.add_argument("--precision", default="32-true", help="32-true, 16-mixed or bf16-mixed (default: 32-true)")
    group.add_argument("--num-workers", type=int, default=default_num_workers(),
                       help="data loading processes per device (default: up to 4, one core left to the model)")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def device_options(args):
    """The prediction `DeviceOptions` of parsed evaluate/predict arguments."""
    from ..evaluation.inference import DeviceOptions

    return DeviceOptions(accelerator=args.accelerator, devices=args.devices or 1, strategy=args.strategy,
                         num_nodes=args.num_nodes, precision=args.precision, batch_size=args.batch_size,
                         num_workers=args.num_workers, progress=args.progress)


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
