"""`ldcsf evaluate`: score a checkpoint on a manifest split; print and save metrics."""

from __future__ import annotations

from ..options import PredictOptions
from .common import CHECKPOINT_HELP, add_device_arguments, checkpoint_or_shipped, device_options, print_report
from .dataclass_args import add_field_argument


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="score a checkpoint on a labelled manifest",
                                   description="Writes OUT/metrics.json, OUT/metrics.csv and OUT/predictions.csv.")
    parser.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("--data", required=True, help="manifest CSV")
    parser.add_argument("--split", default="test", help="split to score, or 'all' for every row (default: test)")
    parser.add_argument("--out", required=True, help="output folder")
    add_field_argument(parser, PredictOptions, "--batch-size", type=int, help="images per batch")
    parser.add_argument("--strict", action="store_true", help="stop on an unreadable image instead of skipping it")
    add_device_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..evaluation.evaluate import evaluate
    from ..utils.paths import check_output_dir

    check_output_dir(args.out)  # before any image is scored
    result = evaluate(checkpoint_or_shipped(args.checkpoint), args.data, args.out, split=args.split, strict=args.strict,
                      options=device_options(args))
    if result.is_global_zero:
        print_report(result.report, title=f"{args.data} [{args.split}]")
        print(f"written: {result.out_dir / 'metrics.json'}, metrics.csv, predictions.csv")
    return 0
