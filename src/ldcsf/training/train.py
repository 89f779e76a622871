"""`train(config)`: fit a classifier on a manifest, keep the best weights, tune thresholds.

A run folder holds:
    config.json               the full configuration of the run
    checkpoints/best.ckpt     Lightning checkpoint with the best validation mAP (thresholds tuned;
                              when fine-tuning with init_from: the lowest validation loss)
    checkpoints/last.ckpt     the latest state, to continue with `resume=True`
    model.pt                  the best weights as one small portable ldcsf checkpoint
    val_metrics.json          validation metrics of model.pt with its tuned thresholds
    logs/                     per-step and per-epoch metrics (CSV)
    bad_images.log            images skipped because they could not be decoded (if any)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..models.input_spec import DEFAULT_MPP, InputSpec
from ..options import TrainConfig

log = logging.getLogger(__name__)

#: Without --mpp or --tile-mpp, tiles are assumed to be 224 px at 0.5 µm/px (a 20x scan, the
#: convention of NCT-CRC-HE and the paper), resized to the model's input.
DEFAULT_TILE_PX = 224
DEFAULT_TILE_MPP = DEFAULT_MPP


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    model_file: Path
    thresholds: list[float]
    best_score: float | None
    val_metrics: dict
    is_global_zero: bool = True


def effective_mpp(input_size: int, mpp: float | None = None, tile_mpp: float | None = None,
                  tile_px: int | None = None) -> float:
    """µm per pixel of the model's input.

    `mpp` given: used as is. Else tiles of `tile_px` px at `tile_mpp` µm/px (default 224 px at
    0.5 µm/px) are resized to `input_size`, so one input pixel covers tile_mpp * tile_px / input_size µm.
    """
    if mpp is not None:
        if mpp <= 0:
            raise ValueError(f"--mpp must be positive, got {mpp}")
        return float(mpp)
    tile_mpp = DEFAULT_TILE_MPP if tile_mpp is None else float(tile_mpp)
    tile_px = DEFAULT_TILE_PX if tile_px is None else int(tile_px)
    if tile_mpp <= 0:
        raise ValueError(f"--tile-mpp must be positive, got {tile_mpp}")
    return tile_mpp * tile_px / int(input_size)


def _tile_px(manifest) -> int:
    from PIL import Image

    with Image.open(manifest.image_paths()[0]) as image:
        return int(image.size[0])


#: Arguments of `create_model` that the configuration sets itself; not accepted as model_kwargs.
_RESERVED_MODEL_KWARGS = ("labels", "num_labels", "pretrained", "pretrained_file")


def build_model(config: TrainConfig, labels: Sequence[str]):
    """The classifier of `config` (create_model gives one-line errors for arguments it does not take)."""
    from ..models import create_model

    kwargs = dict(config.model_kwargs or {})
    reserved = sorted(set(kwargs) & set(_RESERVED_MODEL_KWARGS))
    if reserved:
        raise ValueError(f"model {config.model}: {', '.join(reserved)} cannot be a model argument "
                         "(set by the data and the training options)")
    for key in ("ensemble", "ensemble_seeds", "ensemble_views"):
        if key in kwargs:
            raise ValueError(f"model {config.model}: {key} is set by --ensemble, not as a model argument")
    views = ensemble_views(config)
    if config.ensemble * len(views) > 1:
        # One seed per member (the same seeds on every view); the split keeps using `config.seed`,
        # so every member sees the same data.
        seeds = [config.seed + k for k in range(config.ensemble)]
        kwargs |= {"ensemble": config.ensemble * len(views), "ensemble_seeds": seeds * len(views)}
        if views != ["plain"]:
            kwargs["ensemble_views"] = [view for view in views for _ in seeds]
    return create_model(config.model, labels=labels, pretrained=config.pretrained,
                        pretrained_file=config.pretrained_file, **kwargs)


def ensemble_views(config: TrainConfig) -> list[str]:
    """The stain views of `config.ensemble_views` (["plain"] when unset), checked."""
    from ..models.ensemble import STAIN_VIEWS

    views = ["plain"] if not config.ensemble_views else [str(v) for v in config.ensemble_views]
    unknown = sorted(set(views) - set(STAIN_VIEWS))
    if unknown or len(set(views)) != len(views):
        raise ValueError(f"--ensemble-views takes plain and/or macenko, each once; got {' '.join(views)}")
    if "macenko" in views and config.stain_norm not in (None, "", "none"):
        raise ValueError("--ensemble-views macenko normalises inside the model: leave out --stain-norm")
    return views


def check_ensemble(config: TrainConfig, model) -> None:
    """K heads share one backbone only when it does not train; say so before any work is done."""
    from ..models.ensemble import ensemble_size

    if isinstance(config.ensemble, bool) or not isinstance(config.ensemble, int) or config.ensemble < 1:
        raise ValueError(f"--ensemble must be a whole number of heads (1 or more), got {config.ensemble!r}")
    if (config.ensemble > 1 or config.ensemble_views) and config.init_from:
        raise ValueError("--ensemble and --ensemble-views build a new model: they cannot be combined with --init-from")
    views = ensemble_views(config)  # an unknown or repeated view stops here
    if max(config.ensemble * len(views), ensemble_size(model)) > 1 and not config.freeze_backbone:
        asked = " ".join(["--ensemble", str(max(config.ensemble, ensemble_size(model)))]
                         + (["--ensemble-views", *views] if config.ensemble_views else []))
        raise ValueError(f"{asked} trains heads on one frozen backbone: add --freeze-backbone")


def check_augmentation(config: TrainConfig) -> None:
    """Refuse stain and scale augmentation settings that would train on broken tiles."""
    if not 0.0 <= float(config.hed_jitter) < 1.0:
        raise ValueError(f"--hed-jitter must be in [0, 1), got {config.hed_jitter}")
    low, high = (float(v) for v in config.crop_scale)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"--crop-scale needs 0 < MIN <= MAX <= 1, got {low} {high}")


def check_same_model(resumed, model, where: str) -> None:
    """Resuming with other model arguments would fail deep in the state-dict loading; say so first."""
    kwargs = {k: v for k, v in model.model_cfg["kwargs"].items() if k not in _RESERVED_MODEL_KWARGS}
    saved = {k: v for k, v in resumed.model_kwargs.items() if k not in _RESERVED_MODEL_KWARGS}
    if resumed.model_name != model.model_cfg["name"] or _plain(saved) != _plain(kwargs):
        raise ValueError(f"{where}: the run was started with model {resumed.model_name} {saved}, "
                         f"not {model.model_cfg['name']} {kwargs}; resume with the same --model and --model-arg")


def build_stain_normalizer(config: TrainConfig):
    """The stain normaliser the configuration asks for, or None."""
    if config.stain_norm in (None, "", "none"):
        if config.stain_reference:
            raise ValueError("--stain-reference needs --stain-norm macenko")
        return None
    if config.stain_norm != "macenko":
        raise ValueError(f"--stain-norm must be macenko or none, got {config.stain_norm!r}")
    from ..data.transforms import MacenkoNormalizer

    return MacenkoNormalizer(config.stain_reference)


def input_spec_for(config: TrainConfig, model, manifest, start=None) -> InputSpec:
    """The model's input for this run: size, mean/std and resampling of the backbone's weights, the
    µm/px the options give (`effective_mpp`), and the stain reference (a fine-tuned checkpoint's own)."""
    if start is not None:
        from .adapt import stain_normalizer_of

        stain_normalizer = stain_normalizer_of(start)
    else:
        stain_normalizer = build_stain_normalizer(config)
    input_size = int(model.img_size[0])
    mpp = effective_mpp(input_size, config.mpp, config.tile_mpp,
                        None if config.mpp is not None or config.tile_mpp is None else _tile_px(manifest))
    return InputSpec.from_model(model, mpp, stain_normalizer.state() if stain_normalizer is not None else None)


def train(config: TrainConfig) -> TrainResult:
    """Run (or continue) one training run; see the module docstring for what it writes."""
    import lightning as L

    from ..checkpoint import read_checkpoint_payload
    from ..data.manifest import read_manifest
    from ..data.manifest_checks import check_labels
    from ..utils.atomic import write_json_atomic
    from .datamodule import ManifestDataModule
    from .losses import positive_weights
    from .module import MultiLabelModule
    from .recipe_calibration import calibration_for_run, recipe_for_run

    run_dir = Path(config.out)
    check_augmentation(config)
    recipe = recipe_for_run(config)  # another recipe's margin is refused before any work
    if (config.ensemble > 1 or config.ensemble_views) and not config.freeze_backbone:  # refused before the run folder is touched
        check_ensemble(config, None)
    last_path = _check_run_dir(config, run_dir)

    L.seed_everything(config.seed, workers=True, verbose=False)
    start = None
    if config.init_from:  # fine-tuning: the checkpoint fixes model, labels and input settings
        from .adapt import start_from

        config, start = start_from(config)
    elif config.mix_with:
        raise ValueError("--mix-with mixes the original training set into fine-tuning: use it with --init-from")
    manifest = read_manifest(config.data, labels=config.labels)
    if start is not None and config.mix_with:
        from .adapt import mixed_manifest

        manifest = mixed_manifest(manifest, config.mix_with, config.mix_ratio, config.seed)
    _warn_without_tsr_labels(manifest.labels, config.data)
    calibration = None if recipe is None else calibration_for_run(config, recipe, manifest.frame)
    model = start.model.train() if start is not None else build_model(config, manifest.labels)
    check_ensemble(config, model)
    if config.resume:
        resumed = read_checkpoint_payload(last_path)[0]
        check_labels(resumed.labels, manifest.labels, where=str(last_path), data=config.data)
        check_same_model(resumed, model, where=str(last_path))
    spec = input_spec_for(config, model, manifest, start)  # the one description of the input, from here on unchanged
    datamodule = ManifestDataModule.from_manifest(
        manifest, run_dir=run_dir if _is_global_zero() else None, strict=config.strict, seed=config.seed,
        fractions=config.split_fractions, progress=config.progress and _is_global_zero(),
        input_spec=spec, batch_size=config.batch_size, num_workers=config.num_workers, balanced=config.balanced,
        hed_jitter=config.hed_jitter, crop_scale=config.crop_scale,
    )
    if model.has_area_head:
        from .area_data import feature_grid

        datamodule.area_grid = feature_grid(model, spec.size)
    if config.freeze_backbone:
        datamodule = frozen_backbone_data(config, model, datamodule, run_dir, spec.mean, spec.std)
    pos_weight = positive_weights(datamodule.train_targets(), config.max_pos_weight).tolist() if config.pos_weight else None
    summary = {"config": _plain(asdict(config)), "split_sizes": datamodule.split_sizes(), "pos_weight": pos_weight}
    if _is_global_zero():
        write_json_atomic(run_dir / "config.json", summary | {"mpp": spec.mpp, "input_size": spec.size})
    log.info("training %s%s on %s: %s images (train/val/test), input %d px at %.3f µm/px",
             config.model, f" {config.model_kwargs}" if config.model_kwargs else "", config.data,
             "/".join(str(n) for n in datamodule.split_sizes().values()), spec.size, spec.mpp)

    module = MultiLabelModule(model, loss=config.loss, pos_weight=pos_weight, lr=config.lr,
                              weight_decay=config.weight_decay, warmup_epochs=config.warmup_epochs,
                              input_spec=spec, extra=_extra(summary, config, start), area_weight=config.area_weight)
    trainer, best_cb = build_trainer(config, run_dir, datamodule.split_sizes()["train"])
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_path if config.resume else None)

    best_path = Path(best_cb.best_model_path) if best_cb.best_model_path else last_path
    if not best_path.is_file():
        raise ValueError(f"{run_dir}: training ended before any validation; no checkpoint was written")
    return _finish(trainer, module, datamodule, config, run_dir, best_path, last_path, best_cb.best_model_score,
                   calibration)


def _extra(summary: dict, config: TrainConfig, start) -> dict:
    """The checkpoint meta's `extra`: the run summary, and for a fine-tuned model what it was adapted from."""
    extra = {"training": _plain(summary)}
    if start is not None:
        from .adapt import adapted_from

        extra["adapted_from"] = _plain(adapted_from(config, start))
    return extra


def _check_run_dir(config: TrainConfig, run_dir: Path) -> Path:
    """The run's last checkpoint path, after checking that --resume matches what the folder holds."""
    last_path = run_dir / "checkpoints" / "last.ckpt"
    if config.resume and not last_path.is_file():
        raise FileNotFoundError(f"{last_path}: nothing to resume (no last checkpoint in {run_dir})")
    if not config.resume and last_path.is_file():
        raise ValueError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")
    return last_path


def build_trainer(config: TrainConfig, run_dir: Path, n_train: int):
    """The Lightning Trainer of a run and its best-checkpoint callback (best.ckpt by validation mAP)."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from .checkpoint_io import AtomicCheckpointIO

    # Fine-tuning validates on a few slides, whose tiles often lack a label's negatives: mAP is then
    # undefined (logged 0) and would keep the first epoch, so the validation loss picks the best.
    monitor, mode = ("val/loss", "min") if config.init_from else ("val/mAP", "max")
    best_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                              save_top_k=1, auto_insert_metric_name=False)
    # A second, unmonitored callback writes last.ckpt after every validation: Lightning's own
    # save_last only refreshes it when the monitored metric improves, which would lose epochs on resume.
    last_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1,
                              enable_version_counter=False)
    callbacks = [best_cb, last_cb, LearningRateMonitor(logging_interval="step")]
    if config.progress:
        from ..utils.lightning_progress import progress_bar_callback

        callbacks.append(progress_bar_callback())
    if config.patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=config.patience))
    trainer = L.Trainer(
        **_validate_before_max_steps(config, n_train),
        default_root_dir=run_dir, max_epochs=config.epochs, max_steps=config.max_steps,
        **config.lightning_kwargs(), callbacks=callbacks,
        logger=CSVLogger(run_dir, name="logs", version=""), plugins=[AtomicCheckpointIO()],
        limit_train_batches=config.limit_train_batches, limit_val_batches=config.limit_val_batches,
        log_every_n_steps=1, enable_progress_bar=config.progress, enable_model_summary=config.progress,
        num_sanity_val_steps=0,
    )
    return trainer, best_cb


def frozen_backbone_data(config: TrainConfig, model, datamodule, run_dir: Path, mean, std):
    """Freeze the backbone and serve its cached maps instead of images (same splits)."""
    from .area_data import CachedFeatureDataModule, FeatureCache

    if config.balanced:
        raise ValueError("--balanced is not available with --freeze-backbone (cached maps are shuffled plainly)")
    if config.feature_views < 1:
        raise ValueError(f"feature_views must be at least 1, got {config.feature_views}")
    model.backbone_module().requires_grad_(False).eval()
    # The views are made as the image loaders would make them: the same resampling and stain normalisation.
    cache = FeatureCache(config.feature_cache or run_dir / "feature_cache", model, int(model.img_size[0]), mean, std,
                         model.labels, scale=datamodule.crop_scale, hed_jitter=datamodule.hed_jitter,
                         interpolation=datamodule.interpolation, stain_normalizer=datamodule.stain_normalizer)
    from ..models.ensemble import ensemble_size

    return CachedFeatureDataModule(datamodule.splits, cache, config.feature_views, batch_size=config.batch_size,
                                   progress=config.progress and _is_global_zero(),
                                   member_orders=ensemble_size(model), seed=config.seed)


def _finish(trainer, module, datamodule, config: TrainConfig, run_dir: Path, best_path: Path, last_path: Path,
            best_score, calibration: dict | None = None) -> TrainResult:
    """Tune thresholds on val with the best weights; store them (and the recipe's interval margin,
    `calibration`) in best.ckpt and model.pt."""
    import torch

    from ..checkpoint import save_checkpoint
    from ..evaluation.metrics import compute_metrics
    from ..evaluation.thresholds import tune_thresholds
    from ..utils.atomic import atomic_path, write_json_atomic
    from .module import META_KEY

    # validate() gathers every process's predictions, so all processes tune the same thresholds.
    trainer.validate(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
    probs, targets = module.val_results["probs"], module.val_results["target"]
    module.thresholds = tune_thresholds(probs, targets, method=config.threshold_method)
    adapted = (module.hparams.extra or {}).get("adapted_from")
    if adapted:
        from .adapt import keep_untuned_thresholds

        module.thresholds = keep_untuned_thresholds(module.thresholds, targets, adapted["thresholds_before"])
    report = compute_metrics(probs, targets, module.model.labels, module.thresholds)
    model_file = run_dir / "model.pt"
    if trainer.is_global_zero:
        meta = module.checkpoint_meta()
        if calibration is not None:
            meta.interval_calibration = calibration
        checkpoint = torch.load(best_path, map_location="cpu", weights_only=True)
        checkpoint[META_KEY] = meta.to_dict()
        with atomic_path(best_path) as tmp:
            torch.save(checkpoint, tmp)
        save_checkpoint(model_file, module.model, meta)
        write_json_atomic(run_dir / "val_metrics.json", report.to_dict())
    trainer.strategy.barrier()
    return TrainResult(run_dir=run_dir, best_checkpoint=best_path, last_checkpoint=last_path, model_file=model_file,
                       thresholds=list(module.thresholds),
                       best_score=None if best_score is None else float(best_score), val_metrics=report.to_dict(),
                       is_global_zero=trainer.is_global_zero)


def _validate_before_max_steps(config: TrainConfig, n_train: int) -> dict:
    """Trainer arguments that make a run stopped by --max-steps inside its first epoch still
    validate (at its last step), so early stopping has its metric and a checkpoint is written."""
    import math

    steps_per_epoch = math.ceil(n_train / config.batch_size)
    if isinstance(config.limit_train_batches, int) and config.limit_train_batches > 0:
        steps_per_epoch = min(steps_per_epoch, config.limit_train_batches)
    if 0 < config.max_steps < steps_per_epoch:
        return {"val_check_interval": config.max_steps}
    return {}


def _warn_without_tsr_labels(labels, data) -> None:
    from ..labels import STROMA_LABEL, TUMOR_LABEL

    missing = [name for name in (STROMA_LABEL, TUMOR_LABEL) if name not in labels]
    if missing:
        log.warning("%s: labels %s lack %s: a model trained on them cannot give a tumour-to-stroma ratio "
                    "(ldcsf slide needs both)", data, list(labels), " and ".join(map(repr, missing)))


def _is_global_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _plain(obj: Any) -> Any:
    """Only str/int/float/bool/None/list/dict, so the checkpoint loads with weights_only=True."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)
