"""`ldcsf train`: fit a classifier on a manifest (see docs/training.md)."""

from __future__ import annotations

from ..labels import default_labels
from ..options import TrainConfig
from .common import add_device_arguments, devices_or_default, print_report
from .dataclass_args import add_field_argument, from_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a classifier on a manifest of labelled tiles",
                                   description="Train a multi-label classifier; writes RUN_DIR/checkpoints/{best,last}.ckpt, "
                                               "RUN_DIR/model.pt and RUN_DIR/config.json.")
    parser.add_argument("--data", required=True, help="manifest CSV (path, label columns, optional split/group)")
    parser.add_argument("--model", default=None,
                        help="model variant, see `ldcsf models` (default: ldcsf_swin_mini, or ldcsf with --backbone)")
    parser.add_argument("--backbone", help="any timm backbone under the LDCSF head, e.g. tf_efficientnet_lite0 "
                                           "(with --pretrained: ImageNet weights, offline for EfficientNet-Lite0/1/2)")
    parser.add_argument("--model-arg", dest="model_args", action="append", default=[], metavar="KEY=VALUE",
                        help="model argument, repeatable, e.g. use_ldc=false or img_size=128; values are JSON "
                             "(true, 3, 0.5, [2,2]) or else strings")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--labels", help=f"comma-separated label columns (default: {','.join(default_labels())})")
    option = _train_option(parser)
    option("--epochs", type=int, help="training epochs")
    option("--batch-size", type=int, help="images per batch and device")
    option("--lr", type=float, help="peak AdamW learning rate")
    option("--weight-decay", type=float, help="AdamW weight decay, not on biases and norms")
    option("--warmup-epochs", type=float, help="linear warm-up, then cosine decay")
    option("--loss", choices=["bce", "asl"], help="masked BCE or asymmetric loss")
    option("--pos-weight", action="store_true", help="weight positives per label by negatives/positives")
    option("--max-pos-weight", type=float, help="clip of --pos-weight")
    option("--balanced", action="store_true", help="sample training images by their rarest positive label")
    option("--pretrained", action="store_true",
           help="pretrained backbone weights: from an installed package where one ships them, else the model hub")
    parser.add_argument("--pretrained-file", help="backbone weights from a local .safetensors/.pth file")
    parser.add_argument("--mpp", type=float, help="µm/px of the model's input (overrides --tile-mpp)")
    parser.add_argument("--tile-mpp", type=float, help="µm/px of the tiles in the manifest; the input's mpp is "
                                                       "tile_mpp * tile px / input px (default: 224 px tiles at 0.5)")
    option("--hed-jitter", type=float, metavar="S",
           help="stain augmentation: each stain's optical density scaled by U(1-S, 1+S) and shifted by U(-S, S)")
    option("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"),
           help="scale augmentation: share of a training tile's area the random crop keeps")
    parser.add_argument("--stain-norm", choices=["macenko", "none"], default=None,
                        help="normalise every tile's stains (Macenko); stored in the checkpoint, so slides get the same")
    parser.add_argument("--stain-reference", help="reference image for --stain-norm (default: torchstain's reference)")
    area = parser.add_argument_group("area-aware learning and frozen backbones")
    area.add_argument("--area-head", nargs="?", const=True, default=False, choices=["exclusive"], metavar="exclusive",
                      help="add a per-position area head, trained on the manifest's pixel masks (`mask` column) "
                           "and on presence labels elsewhere; slides then get area_<label> columns and sub-tile maps. "
                           "`--area-head exclusive`: the labels and a 'none' class share each position (a softmax) "
                           "instead of one sigmoid each")
    area_option = _train_option(area)
    area_option("--area-weight", type=float, help="weight of the area loss")
    area_option("--freeze-backbone", action="store_true",
                help="train only what follows the backbone, on its maps computed once per image and view "
                     "(fast on a CPU; use with pretrained weights)")
    area_option("--feature-views", type=int, help="with --freeze-backbone: augmented views cached per training image")
    area_option("--ensemble", type=int, metavar="K",
                help="with --freeze-backbone: train K heads with seeds seed..seed+K-1, each in its own order over the cached maps, "
                     "kept in one checkpoint that predicts their mean; slides' TSR intervals then carry their spread")
    area_option("--ensemble-views", nargs="+", choices=["plain", "macenko"], metavar="VIEW",
                help="with --freeze-backbone: train the --ensemble heads on each of these stain views, plain (the tile "
                     "as it comes) and/or macenko (its Macenko-normalised copy, made inside the model), all kept in "
                     "one checkpoint that predicts their mean")
    area.add_argument("--feature-cache", help="with --freeze-backbone: folder of cached maps (default: RUN_DIR/feature_cache)")
    adapt = parser.add_argument_group("fine-tuning a trained model (docs/adapt.md)")
    adapt.add_argument("--init-from", metavar="MODEL",
                       help="start from this checkpoint: keep its labels, input settings and frozen backbone, "
                            "fit the heads on --data and re-tune the thresholds on its val split")
    adapt.add_argument("--mix-with", metavar="MANIFEST",
                       help="with --init-from: mix rows of this manifest's train split (the original training set) "
                            "into training so the model keeps what it knew")
    add_field_argument(adapt, TrainConfig, "--mix-ratio", type=float,
                       help="with --mix-with: rows of it drawn per new training row")
    parser.add_argument("--interval-calibration", metavar="SOURCE",
                        help="'shipped' (the shipped model's) or a JSON file of benchmarks/interval_calibration.py: "
                             "the TSR interval's model-error margin measured for a recipe, kept in this run's checkpoint "
                             "so its slides' intervals cover the model's error on unseen tissue; refused unless the run "
                             "has the recipe's settings and training sources (default: sampling-only intervals)")
    option("--threshold-method", choices=["f1", "youden"], help="per-label threshold tuning on val")
    option("--seed", type=int, help="seed of the split, the initialisation and the augmentation")
    option("--patience", type=int, help="epochs without val mAP gain before stopping (0: never)")
    option("--strict", action="store_true", help="stop on an unreadable image instead of skipping it")
    option("--resume", action="store_true", help="continue the run in --out from checkpoints/last.ckpt")
    option("--max-steps", type=int, help="stop after this many optimiser steps (-1: no limit)")
    parser.add_argument("--limit-train-batches", type=_fraction_or_count, help="batches per epoch (count or fraction)")
    parser.add_argument("--limit-val-batches", type=_fraction_or_count, help="validation batches (count or fraction)")
    add_device_arguments(parser, TrainConfig)
    parser.set_defaults(func=run)


def _train_option(parser):
    """`add_argument` for a flag whose default is TrainConfig's field of its name."""
    return lambda flag, **kwargs: add_field_argument(parser, TrainConfig, flag, **kwargs)


def _fraction_or_count(text: str) -> float | int:
    return float(text) if "." in text else int(text)


def parse_model_args(items: list[str]) -> dict:
    """["use_ldc=false", "img_size=128"] -> {"use_ldc": False, "img_size": 128}."""
    import json

    kwargs = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg {item!r}: expected KEY=VALUE with KEY a Python name, e.g. use_ldc=false")
        if key in kwargs:
            raise ValueError(f"--model-arg {key} is given twice")
        text = text.strip()
        # Python spellings too: a string "False" would be truthy and silently keep the module.
        if text in ("True", "False", "None"):
            text = {"True": "true", "False": "false", "None": "null"}[text]
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text
    return kwargs


def model_and_kwargs(args) -> tuple[str, dict]:
    """--model, --backbone and --model-arg as one variant name and its keyword arguments."""
    kwargs = parse_model_args(args.model_args)
    if args.backbone is None:
        return args.model or "ldcsf_swin_mini", kwargs
    if "backbone" in kwargs:
        raise ValueError("--backbone and --model-arg backbone=... are both given; use --backbone")
    model = args.model or "ldcsf"
    if model != "ldcsf":
        raise ValueError(f"--backbone works with --model ldcsf, not {model} (whose backbone is fixed)")
    return model, {"backbone": args.backbone, **kwargs}


def train_config(args) -> TrainConfig:
    """The TrainConfig of parsed `ldcsf train` arguments: fields by name, and the flags that are not one to one."""
    if args.init_from and (args.model or args.backbone or args.model_args or args.area_head):
        raise ValueError(f"--init-from {args.init_from}: the checkpoint fixes the model; drop --model, --backbone, "
                         "--model-arg and --area-head")
    model, model_kwargs = model_and_kwargs(args)
    if args.area_head:
        model_kwargs["area_head"] = args.area_head
    calibration = args.interval_calibration
    if calibration == "shipped":  # the shipped model's card holds its margin and recipe
        from ..shipped import card_path

        calibration = str(card_path())
    return from_args(
        TrainConfig, args, model=model, model_kwargs=model_kwargs, interval_calibration=calibration,
        labels=[s.strip() for s in args.labels.split(",")] if args.labels else None,
        devices=devices_or_default(args, TrainConfig),
    )


def run(args) -> int:
    from ..training.train import train
    from ..utils.paths import check_output_dir

    check_output_dir(args.out)  # before any epoch
    result = train(train_config(args))
    if result.is_global_zero:
        from ..evaluation.metrics import MetricsReport

        print_report(MetricsReport.from_dict(result.val_metrics), title="validation (best weights, tuned thresholds)")
        print(f"best checkpoint: {result.best_checkpoint}\nportable model: {result.model_file}")
    return 0
