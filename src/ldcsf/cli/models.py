"""`ldcsf models`: list the model variants with their sizes."""

from __future__ import annotations

from .common import format_table


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list model variants and baselines with parameter counts")
    parser.add_argument("--flops", action="store_true", help="also count GFLOPs per image (slower)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..models import describe_model, list_models
    from ..models.profile import model_profile

    rows = []
    for name in list_models():
        profile = model_profile(name, flops=args.flops)
        rows.append([name, f"{profile.params / 1e6:.2f}M", f"{profile.input_size}px"]
                    + ([f"{profile.gflops:.2f}"] if args.flops else []) + [describe_model(name)])
    header = ["model", "params", "input"] + (["GFLOPs"] if args.flops else []) + ["description"]
    print(format_table(header, rows))
    return 0
