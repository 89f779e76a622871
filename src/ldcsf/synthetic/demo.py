"""The demo: train on generated tiles, predict a generated slide, compare with its known truth.

    result = run_demo("runs/demo")
    header, rows = result.comparison()

Steps (each reused when its output already exists, so a rerun continues where it stopped):
1. a synthetic training set (`<out>/data/`), unless `data` names a real manifest;
2. a model trained on it (`<out>/train/model.pt`), unless `checkpoint` is given;
3. a synthetic slide with known layout (`<out>/slide/`), unless `slide` names a real one;
4. the whole-slide pipeline on it (`<out>/prediction/<slide>/`, including report.html).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .slide import SyntheticSlide

log = logging.getLogger(__name__)

#: Tiles are 128 px at 1.0 µm/px (the mini model's input); the slide is 0.5 µm/px, so the pipeline
#: reads 256 level-0 px per tile and resizes: both see the same 128 µm of tissue.
TILE_PX, TILE_MPP, SLIDE_MPP = 128, 1.0, 0.5


@dataclass(frozen=True)
class DemoSettings:
    model: str = "ldcsf_swin_mini"
    n_tiles: int = 1200
    epochs: int = 4
    batch_size: int = 32
    # 3 x 3 mm at 0.5 µm/px: large enough for the clinical 2.2 mm hotspot field to fit in.
    slide_size: tuple[int, int] = (6144, 6144)
    stroma_fraction: float = 0.4
    seed: int = 0
    limit_train_batches: int | None = None

    @classmethod
    def quick(cls) -> DemoSettings:
        """A run of seconds for tests: micro model, few tiles, one epoch, small slide."""
        return cls(model="ldcsf_swin_micro", n_tiles=48, epochs=1, batch_size=16, slide_size=(1024, 1024),
                   limit_train_batches=2)


@dataclass
class DemoResult:
    out_dir: Path
    checkpoint: Path
    slide_path: Path
    prediction_dir: Path
    report: Path
    predicted: dict  # the pipeline's cohort row: tsr, stroma_fraction, category, ...
    truth: SyntheticSlide | None  # None for a real slide (no known truth)

    def comparison(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows: predicted against true stroma fraction and TSR, formatted for reading."""
        def fmt(value, pattern):
            return "–" if value is None else format(value, pattern)

        rows = []
        for name, key, pattern in (("stroma fraction", "stroma_fraction", ".1%"), ("TSR (tumour/stroma)", "tsr", ".2f")):
            true = getattr(self.truth, key) if self.truth is not None else None
            pred = self.predicted.get(key)
            error = fmt(pred - true, "+" + pattern) if pred is not None and true is not None else "–"
            rows.append([name, fmt(pred, pattern), fmt(true, pattern), error])
        return ["measure", "predicted", "true", "error"], rows


def run_demo(
    out_dir: str | Path,
    data: str | Path | None = None,
    slide: str | Path | None = None,
    checkpoint: str | Path | None = None,
    settings: DemoSettings | None = None,
    progress: bool = True,
) -> DemoResult:
    """Run the four demo steps into `out_dir`; see the module docstring."""
    from ..wholeslide.pipeline import SlideSettings, run_slide, slide_id_for
    from .slide import make_slide
    from .training_set import make_training_set

    settings = settings or DemoSettings()
    out_dir = Path(out_dir)
    if checkpoint is None:
        manifest = Path(data) if data is not None else make_training_set(
            out_dir / "data", n_tiles=settings.n_tiles, tile_size=TILE_PX, mpp=TILE_MPP, seed=settings.seed,
            progress=progress)
        checkpoint = _train(manifest, out_dir / "train", settings, synthetic=data is None, progress=progress)
    elif not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")

    truth = None
    if slide is None:
        truth = _synthetic_slide(out_dir / "slide" / "synthetic_slide.tiff", settings, make_slide)
        slide = truth.path
    elif not Path(slide).is_file():
        raise FileNotFoundError(f"{slide}: slide not found")

    prediction_dir = out_dir / "prediction" / slide_id_for(slide)
    log.info("predicting %s", slide)
    row = run_slide(slide, checkpoint, prediction_dir,
                    SlideSettings(num_workers=0, accelerator="cpu", progress=progress)).row
    return DemoResult(out_dir=out_dir, checkpoint=Path(checkpoint), slide_path=Path(slide),
                      prediction_dir=prediction_dir, report=prediction_dir / "report.html", predicted=row, truth=truth)


def _train(manifest: Path, run_dir: Path, settings: DemoSettings, synthetic: bool, progress: bool) -> Path:
    from ..training.train import TrainConfig, train

    model_file = run_dir / "model.pt"
    if model_file.is_file():
        log.info("%s: trained model found, reused", model_file)
        return model_file
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    config = TrainConfig(
        data=str(manifest), model=settings.model, out=str(run_dir), epochs=settings.epochs,
        batch_size=settings.batch_size, warmup_epochs=min(1.0, settings.epochs / 4), seed=settings.seed,
        # Synthetic tiles declare their own scale; a real manifest keeps train's default convention.
        tile_mpp=TILE_MPP if synthetic else None, accelerator="cpu", devices=1, num_workers=0,
        limit_train_batches=settings.limit_train_batches, limit_val_batches=settings.limit_train_batches,
        resume=resume, progress=progress, patience=0,
    )
    return train(config).model_file


def _synthetic_slide(path: Path, settings: DemoSettings, make_slide) -> SyntheticSlide:
    """Make the demo slide, or reload it (its layout and truth) when an earlier run made it."""
    import json

    import numpy as np
    from PIL import Image

    truth_path = path.with_name(f"{path.stem}.truth.json")
    if path.is_file() and truth_path.is_file():
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        layout_path = path.with_name(truth["layout"])
        return SyntheticSlide(path=path, mpp=truth["mpp"], layout=np.asarray(Image.open(layout_path)),
                              layout_path=layout_path, stroma_fraction=truth["stroma_fraction"], tsr=truth["tsr"],
                              class_pixels=truth["class_pixels"])
    log.info("generating a %dx%d px synthetic slide", *settings.slide_size)
    return make_slide(path, size=settings.slide_size, mpp=SLIDE_MPP, seed=settings.seed,
                      stroma_fraction=settings.stroma_fraction)
