"""`ldcsf predict`: per-label probabilities and decisions for image files."""

from __future__ import annotations

from ..options import PredictOptions
from .common import CHECKPOINT_HELP, add_device_arguments, checkpoint_or_shipped, device_options
from .dataclass_args import add_field_argument
from .export import add_runtime_argument


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="predict the labels of image files with a checkpoint",
                                   description="Writes one CSV row per image: path, error, <label>_prob, <label>_pred; for a "
                                   "model with an area head (the shipped one has) also <label>_area, the share of the "
                                   "image each label covers, and stroma_fraction = stroma / (stroma + tumour).")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    parser.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("--out", required=True, help="output CSV")
    add_field_argument(parser, PredictOptions, "--batch-size", type=int, help="images per batch")
    add_device_arguments(parser)
    add_runtime_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..inference.image_prediction import predict_images
    from ..utils.paths import check_output_file

    check_output_file(args.out)  # before any image is scored
    options = device_options(args)  # --runtime included
    frame = predict_images(args.inputs, checkpoint_or_shipped(args.checkpoint), out=args.out, options=options)
    failed = frame[frame["error"] != ""]
    for error in failed["error"]:
        print(f"ldcsf predict: skipped {error}", file=sys.stderr)
    print(f"{len(frame) - len(failed)} of {len(frame)} images predicted; written: {args.out}")
    return 0
