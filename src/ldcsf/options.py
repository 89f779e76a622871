"""Run options: every default a run takes, stated once.

    DeviceOptions     where a run computes and at what precision (Lightning's Trainer settings)
    PredictOptions    `evaluate` and `predict`: DeviceOptions + batches, loaders, runtime
    TrainConfig       `train`: DeviceOptions + data, model, optimiser and schedule
    SlideSettings     `slide`: DeviceOptions + tiling, batches, readers, outputs

The three run shapes are DeviceOptions subclasses, so their device fields are one definition
and their records (config.json of a run, the settings in a slide's tsr.json) keep flat keys. The
command line reads its defaults from these classes (`ldcsf.cli.dataclass_args`).

This module imports nothing heavy: the CLI reads it while building its parser.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .utils.workers import default_num_workers

#: Least tissue fraction of a tile for it to be predicted (`ldcsf.wsi.tiling.tile_grid`).
MIN_TISSUE = 0.25
#: Train, validation and test fractions of grouped splits (manifests, the training run, the pan-cancer set).
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)

#: `--precision` shorthands people type, mapped to Lightning's names.
PRECISION_ALIASES = {"32": "32-true", "fp32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed", "fp16": "16-mixed"}


def field_default(cls, name: str) -> Any:
    """The default of dataclass `cls`'s field `name` (its factory's value where it has one)."""
    for item in fields(cls):
        if item.name == name:
            if item.default is not MISSING:
                return item.default
            if item.default_factory is not MISSING:
                return item.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise AttributeError(f"{cls.__name__} has no field {name!r}")


def lightning_precision(precision: str | int | None) -> str | int | None:
    """Lightning's name for a precision ("bf16" -> "bf16-mixed"); None stays None (Lightning's 32-true)."""
    if precision is None:
        return None
    return PRECISION_ALIASES.get(str(precision), precision)


@dataclass(kw_only=True)
class DeviceOptions:
    """Where to run: Lightning's accelerator, devices, strategy, nodes and precision."""

    accelerator: str = "auto"
    devices: Any = "auto"  # a count, a list of device indices, or "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = "32-true"  # Lightning's names or a PRECISION_ALIASES shorthand

    def lightning_kwargs(self) -> dict[str, Any]:
        """The device fields as `lightning.Trainer` keyword arguments, the precision under Lightning's name."""
        return {name: getattr(self, name) for name in DEVICE_FIELDS} | {"precision": lightning_precision(self.precision)}


#: The names of DeviceOptions' fields, in order.
DEVICE_FIELDS = tuple(DeviceOptions.__dataclass_fields__)


@dataclass(kw_only=True)
class PredictOptions(DeviceOptions):
    """How `evaluate` and `predict` run a checkpoint over images."""

    # One device unless asked (train and slide: "auto"): "auto" would take every GPU and start a
    # DDP process group, which `evaluate` and `predict` have never done unasked.
    devices: Any = 1
    batch_size: int = 64
    num_workers: int = field(default_factory=default_num_workers)
    progress: bool = True
    runtime: str = "auto"  # auto, torch, onnx or openvino (ldcsf.inference.runtimes)
    trainer_kwargs: dict = field(default_factory=dict)  # more `lightning.Trainer` arguments


@dataclass
class TrainConfig(DeviceOptions):
    """Everything a run depends on; saved as config.json in the run folder."""

    data: str
    model: str
    out: str
    labels: list[str] | None = None
    #: Keyword arguments of the model variant, e.g. {"use_ldc": False} or {"img_size": 128};
    #: recorded in the checkpoint, so `load_checkpoint` rebuilds the same architecture.
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4  # peak AdamW learning rate
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay
    loss: str = "bce"
    pos_weight: bool = False
    max_pos_weight: float = 10.0
    balanced: bool = False
    pretrained: bool = False
    pretrained_file: str | None = None
    #: "macenko" normalises every tile's stains (to `stain_reference`, else torchstain's reference)
    stain_norm: str | None = None
    stain_reference: str | None = None
    #: µm/px of the model's input (`InputSpec.mpp`), or made from `tile_mpp` (training.train.effective_mpp)
    mpp: float | None = None
    tile_mpp: float | None = None
    seed: int = 0
    patience: int = 10
    #: Youden's J (TPR - FPR) does not depend on how common a label is in the validation split, so
    #: thresholds carry to tissue of another label balance; F1 lowers the threshold of a label that is
    #: common there. On sources held out of training Youden's J scored 0.60 mean accuracy against F1's
    #: 0.52, and called 7-57 % of held-out colorectal tiles stroma against 36-95 %
    #: (benchmarks/threshold_rules.py, docs/results.md).
    threshold_method: str = "youden"
    split_fractions: list[float] = field(default_factory=lambda: list(SPLIT_FRACTIONS))
    strict: bool = False
    resume: bool = False
    num_workers: int = field(default_factory=default_num_workers)
    max_steps: int = -1
    limit_train_batches: float | int | None = None
    limit_val_batches: float | int | None = None
    progress: bool = True
    #: Stain augmentation of training images: each stain's optical density (hematoxylin, eosin, DAB)
    #: scaled by U(1 - s, 1 + s) and shifted by U(-s, s), drawn per image (`HEDJitter`; 0: off).
    hed_jitter: float = 0.05
    #: Scale augmentation: the random resized crop keeps this share of a training tile's area (min, max),
    #: then resizes it to the input, so tissue is seen up to 1/sqrt(min) times larger.
    crop_scale: list[float] = field(default_factory=lambda: [0.6, 1.0])
    #: Weight of the area head's loss (models built with area_head=True; see ldcsf.training.area_loss).
    area_weight: float = 1.0
    #: Train only what follows the backbone, on backbone maps computed once per image and view.
    freeze_backbone: bool = False
    #: Frozen backbone: fixed augmentation draws per training image (view 0 is the plain tile).
    feature_views: int = 4
    #: Frozen backbone: where the maps are kept (default: RUN_DIR/feature_cache); runs may share one.
    feature_cache: str | None = None
    #: Frozen backbone: train this many heads (seeds seed, seed+1, ...; each its own order over the cached maps) and
    #: keep them in one checkpoint whose outputs are their mean (ldcsf.models.ensemble).
    ensemble: int = 1
    #: Frozen backbone: the stain views heads are trained on, `ensemble` heads each (seeds seed, seed+1, ...
    #: per view): "plain" (the tile as it comes) and/or "macenko" (its Macenko-normalised copy, made inside
    #: the model); None: one plain view. Plain and Macenko heads together held better on sources never
    #: trained on than either alone (docs/results.md, "Heads on two stain views").
    ensemble_views: list[str] | None = None
    #: Fine-tune from this trained checkpoint: its labels, input settings (µm/px, size, normalisation)
    #: and frozen backbone are kept, the heads are fitted on `data` (ldcsf.training.adapt).
    init_from: str | None = None
    #: With init_from: a manifest (e.g. the checkpoint's own training set) mixed into training so the
    #: model keeps what it knew; `mix_ratio` of its training rows are drawn per new training row.
    mix_with: str | None = None
    mix_ratio: float = 1.0
    #: The TSR interval's model-error margin measured for a recipe, from a JSON file (benchmarks/
    #: interval_calibration.py's, or a model card such as `shipped.card_path()`; the CLI also takes
    #: "shipped"): carried by this run's checkpoint when the run trains that recipe on its training
    #: sources (ldcsf.training.recipe_calibration); None: sampling-only intervals.
    interval_calibration: str | None = None


@dataclass(kw_only=True)
class SlideSettings(DeviceOptions):
    """How slides are tiled and predicted (the CLI's options; recorded with every result)."""

    # None, not "32-true": the same computation (Lightning's default), and it is what every
    # slide's tsr.json has recorded, so earlier results keep matching their settings.
    precision: str | None = None
    mpp: float | None = None  # slide µm/px override: the scan's own, not the model's input µm/px (InputSpec.mpp)
    overlap: float = 0.0
    min_tissue: float = MIN_TISSUE
    batch_size: int = PredictOptions.batch_size
    # 0 (read tiles in the calling process) for library calls; `ldcsf slide` asks for None:
    # measured on the first slide (ldcsf.wholeslide.core_split), then kept
    num_workers: int | None = 0
    threads: int | None = None  # model threads the user fixed (a measured split then only picks readers)
    field_diameter_um: float | None = None  # None: the export's default
    limit_tiles: int | None = None  # predict only the first N tissue tiles (quick looks, tests)
    tta: bool = False  # average each tile's probabilities over its two mirror images
    stain_norm: str | None = None  # "macenko" or "none" overrides the checkpoint's stain normalisation
    progress: bool = True
    overwrite: bool = False  # replace results made from other inputs instead of refusing
    strict: bool = False  # stop the cohort at the first failed slide
    pictures: bool = True  # overlay.png and heatmap_<label>.png, also shown in the report (~1 s a slide)
    #: The outputs to write, by name (ldcsf.export.slide_writers; None: all); tsr.json is always written.
    #: Not part of what a result is made from: a rerun asking for more adds them without predicting again.
    outputs: list[str] | None = None
    runtime: str = PredictOptions.runtime  # auto, torch, onnx or openvino (ldcsf.inference.runtimes)
