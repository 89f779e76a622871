"""`ldcsf demo`: train on generated H&E tiles, predict a generated slide, compare with its truth."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="end-to-end run on generated data: train, predict a synthetic slide, compare TSR with the truth",
        description="Generate a synthetic H&E training set and slide (known tumour/stroma layout), train a small "
                    "model, run the whole-slide pipeline and print predicted against true stroma fraction and TSR. "
                    "Steps already done in --out are reused.")
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--data", help="train on this manifest instead of generated tiles")
    parser.add_argument("--slide", help="predict this slide instead of a generated one (no truth to compare)")
    parser.add_argument("--checkpoint", help="use this trained model and skip training")
    parser.add_argument("--epochs", type=int, help="training epochs (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data (default: 0)")
    parser.add_argument("--quick", action="store_true", help="a tiny run of seconds (micro model, small slide)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from ..synthetic.demo import DemoSettings, run_demo
    from .common import format_table

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    settings = replace(settings, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    if settings.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {settings.epochs}")
    result = run_demo(args.out, data=args.data, slide=args.slide, checkpoint=args.checkpoint, settings=settings,
                      progress=not args.no_progress)
    print(format_table(*result.comparison()))
    print(f"report: {result.report}")
    return 0
