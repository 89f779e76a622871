"""`ldcsf train`: fit a classifier on a manifest (see docs/training.md)."""

from __future__ import annotations

from .common import add_device_arguments, print_report


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
    parser.add_argument("--labels", help="comma-separated label columns (default: stroma,necrosis,non_tumor,tumor)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate (default: 3e-4)")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay (default: 1)")
    parser.add_argument("--loss", choices=["bce", "asl"], default="bce", help="masked BCE or asymmetric loss (default: bce)")
    parser.add_argument("--pos-weight", action="store_true", help="weight positives per label by negatives/positives")
    parser.add_argument("--max-pos-weight", type=float, default=10.0, help="clip of --pos-weight (default: 10)")
    parser.add_argument("--balanced", action="store_true", help="sample training images by their rarest positive label")
    parser.add_argument("--pretrained", action="store_true",
                        help="pretrained backbone weights: from an installed package where one ships them, else the model hub")
    parser.add_argument("--pretrained-file", help="backbone weights from a local .safetensors/.pth file")
    parser.add_argument("--mpp", type=float, help="µm/px of the model's input (overrides --tile-mpp)")
    parser.add_argument("--tile-mpp", type=float, help="µm/px of the tiles in the manifest; the input's mpp is "
                                                       "tile_mpp * tile px / input px (default: 224 px tiles at 0.5)")
    parser.add_argument("--stain-norm", choices=["macenko", "none"], default=None,
                        help="normalise every tile's stains (Macenko); stored in the checkpoint, so slides get the same")
    parser.add_argument("--stain-reference", help="reference image for --stain-norm (default: torchstain's reference)")
    area = parser.add_argument_group("area-aware learning and frozen backbones")
    area.add_argument("--area-head", action="store_true",
                      help="add a per-position area head, trained on the manifest's pixel masks (`mask` column) "
                           "and on presence labels elsewhere; slides then get area_<label> columns and sub-tile maps")
    area.add_argument("--area-weight", type=float, default=1.0, help="weight of the area loss (default: 1)")
    area.add_argument("--freeze-backbone", action="store_true",
                      help="train only what follows the backbone, on its maps computed once per image and view "
                           "(fast on a CPU; use with pretrained weights)")
    area.add_argument("--feature-views", type=int, default=4,
                      help="with --freeze-backbone: augmented views cached per training image (default: 4)")
    area.add_argument("--feature-cache", help="with --freeze-backbone: folder of cached maps (default: RUN_DIR/feature_cache)")
    parser.add_argument("--threshold-method", choices=["f1", "youden"], default="f1", help="per-label threshold tuning on val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patience", type=int, default=10, help="epochs without val mAP gain before stopping (0: never)")
    parser.add_argument("--strict", action="store_true", help="stop on an unreadable image instead of skipping it")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.ckpt")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimiser steps")
    parser.add_argument("--limit-train-batches", type=_fraction_or_count, help="batches per epoch (count or fraction)")
    parser.add_argument("--limit-val-batches", type=_fraction_or_count, help="validation batches (count or fraction)")
    add_device_arguments(parser)
    parser.set_defaults(func=run)


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


def run(args) -> int:
    from ..training.train import TrainConfig, train
    from ..utils.paths import check_output_dir

    check_output_dir(args.out)  # before any epoch
    model, model_kwargs = model_and_kwargs(args)
    config = TrainConfig(
        data=args.data, model=model, out=args.out, model_kwargs=model_kwargs,
        stain_norm=args.stain_norm, stain_reference=args.stain_reference,
        labels=[s.strip() for s in args.labels.split(",")] if args.labels else None,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, loss=args.loss, pos_weight=args.pos_weight,
        max_pos_weight=args.max_pos_weight, balanced=args.balanced, pretrained=args.pretrained,
        pretrained_file=args.pretrained_file, mpp=args.mpp, tile_mpp=args.tile_mpp,
        threshold_method=args.threshold_method, seed=args.seed, patience=args.patience, strict=args.strict,
        resume=args.resume, accelerator=args.accelerator, devices=args.devices or "auto", strategy=args.strategy,
        num_nodes=args.num_nodes, precision=args.precision, num_workers=args.num_workers, max_steps=args.max_steps,
        limit_train_batches=args.limit_train_batches, limit_val_batches=args.limit_val_batches, progress=args.progress,
        area_weight=args.area_weight, freeze_backbone=args.freeze_backbone, feature_views=args.feature_views,
        feature_cache=args.feature_cache,
    )
    if args.area_head:
        config.model_kwargs["area_head"] = True
    result = train(config)
    if result.is_global_zero:
        from ..evaluation.metrics import MetricsReport

        print_report(MetricsReport.from_dict(result.val_metrics), title="validation (best weights, tuned thresholds)")
        print(f"best checkpoint: {result.best_checkpoint}\nportable model: {result.model_file}")
    return 0
