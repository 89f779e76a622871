"""`ldcsf evaluate`: score a checkpoint on a manifest split; print and save metrics."""

from __future__ import annotations

from .train import add_device_arguments


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="score a checkpoint on a labelled manifest",
                                   description="Writes OUT/metrics.json, OUT/metrics.csv and OUT/predictions.csv.")
    parser.add_argument("--checkpoint", required=True, help="model.pt or a .ckpt from `ldcsf train`")
    parser.add_argument("--data", required=True, help="manifest CSV")
    parser.add_argument("--split", default="test", help="split to score, or 'all' for every row (default: test)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--strict", action="store_true", help="stop on an unreadable image instead of skipping it")
    add_device_arguments(parser)
    parser.set_defaults(func=run)


def device_options(args):
    from ..evaluation.inference import DeviceOptions

    return DeviceOptions(accelerator=args.accelerator, devices=args.devices or 1, strategy=args.strategy,
                         num_nodes=args.num_nodes, precision=args.precision, batch_size=args.batch_size,
                         num_workers=args.num_workers, progress=args.progress)


def run(args) -> int:
    from ..evaluation.evaluate import evaluate

    result = evaluate(args.checkpoint, args.data, args.out, split=args.split, strict=args.strict,
                      options=device_options(args))
    if result.is_global_zero:
        print_report(result.report, title=f"{args.data} [{args.split}]")
        print(f"written: {result.out_dir / 'metrics.json'}, metrics.csv, predictions.csv")
    return 0


def print_report(report, title: str = "") -> None:
    """Per-label table, then the summary metrics."""
    from ..evaluation.metrics import LABEL_METRICS, SUMMARY_METRICS
    from .models import format_table

    if title:
        print(title)
    print(format_table(["label", *LABEL_METRICS], report.table_rows()))
    print()
    print(format_table(["summary", "value"], [[m, _fmt(report.summary[m])] for m in SUMMARY_METRICS]))


def _fmt(value) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return str(int(value)) if float(value).is_integer() and value > 1 else f"{value:.4f}"
