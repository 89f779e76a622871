"""How to share the CPU cores between reading tiles and running the model, measured on the slide itself.

No fixed rule fits every machine, model and slide format: a micro model on a JPEG slide is
bound by tile decoding, a Swin-T by the model. On a 2-core machine the old rule (one reader
process + one model thread) left a core idle most of the time, where reading in the main process
and giving the model both cores was ~1.4x faster. So, once per cohort, ldcsf times:

  * r      - seconds to read and resize one tile of the slide (a few tiles, in slide order);
  * m(t)   - seconds per tile of the model on a small batch of those tiles with t threads;

and predicts each split's tiles/s: reading in the main process alternates with the model,
1 / (r + m(cores)); with w reader processes beside the model, whichever side is slower sets the
pace, min(w / r, 1 / m(cores - w)). The split with the highest prediction is used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..utils.workers import usable_cores

if TYPE_CHECKING:  # torch only where the split is measured: a small slide on ONNX Runtime never loads it
    import torch

log = logging.getLogger(__name__)

#: Reader processes tried at most (beyond 4, tile decoding has never been the limit on one slide).
MAX_WORKERS = 4
#: Slides with at most this many tiles (or one batch, if larger) are read in-process without
#: timing the split. The timing runs the model six times on 8 tiles at each thread count: 0.26 s
#: (profiled) of the shipped model's CMU-1-Small-Region run on an idle machine, 1.9-5.6 s at load 3.4
#: (docs/benchmarks.md, "Fixed cost of one slide"), while the best split is at most ~1.4x the
#: in-process one: it pays back only from a few hundred tiles.
MIN_TILES_TO_MEASURE = 256


@dataclass
class Split:
    workers: int
    threads: int
    tiles_per_s: float  # predicted
    read_s_per_tile: float
    model_s_per_tile: dict[int, float] = field(default_factory=dict)  # threads -> seconds per tile

    def describe(self) -> str:
        model = ", ".join(f"{1e3 * s:.1f} ms at {t} thread(s)" for t, s in sorted(self.model_s_per_tile.items()))
        return (f"{self.workers} tile-reading process(es) + {self.threads} model thread(s), ~{self.tiles_per_s:.0f} "
                f"tiles/s predicted (measured per tile: reading {1e3 * self.read_s_per_tile:.1f} ms; model {model})")


def predicted_tiles_per_s(workers: int, threads: int, read_s: float, model_s: dict[int, float]) -> float:
    if workers == 0:
        return 1.0 / (read_s + model_s[threads])
    return min(workers / read_s, 1.0 / model_s[threads])


def candidate_splits(cores: int, fixed_threads: int | None = None) -> list[tuple[int, int]]:
    """(workers, threads) pairs that together use the cores (threads fixed when the user set them)."""
    splits = []
    for workers in range(0, min(MAX_WORKERS, max(0, cores - 1)) + 1):
        threads = fixed_threads or (cores if workers == 0 else cores - workers)
        splits.append((workers, max(1, threads)))
    return splits


def choose_split(
    read_tile: Callable[[int], np.ndarray],
    n_tiles: int,
    model_for_threads: Callable[[int], torch.nn.Module],
    to_input: Callable[[torch.Tensor], torch.Tensor],
    cores: int | None = None,
    fixed_threads: int | None = None,
    sample: int = 8,
) -> Split:
    """Time reading and the model on this slide's first tiles and pick the fastest split.

    `read_tile(i)` gives tile i as uint8 (H, W, 3); `model_for_threads(t)` the model to run with
    t threads (an exported engine is built per thread count); `to_input` turns a uint8 batch into
    the model's input. Torch's thread count is left at the chosen split's.
    """
    import torch

    cores = cores or usable_cores()
    sample = max(2, min(sample, n_tiles))
    read_tile(0)  # opens the slide: a one-off, not a per-tile cost
    start = time.perf_counter()
    tiles = [read_tile(i) for i in range(sample)]
    read_s = (time.perf_counter() - start) / sample
    batch = to_input(torch.from_numpy(np.stack([np.array(t) for t in tiles])))

    splits = candidate_splits(cores, fixed_threads)
    model_s: dict[int, float] = {}
    for threads in sorted({t for _, t in splits}, reverse=True):
        torch.set_num_threads(threads)
        model = model_for_threads(threads)
        with torch.inference_mode():
            model(batch)  # warm-up: kernel selection and buffers for this thread count
            times = []
            for _ in range(2):  # the faster of two: one stall from another process does not decide
                start = time.perf_counter()
                model(batch)
                times.append(time.perf_counter() - start)
        model_s[threads] = min(times) / len(batch)
    best = max(splits, key=lambda s: (predicted_tiles_per_s(*s, read_s, model_s), -s[0]))
    torch.set_num_threads(best[1])
    return Split(best[0], best[1], predicted_tiles_per_s(*best, read_s, model_s), read_s, model_s)


def settle_split(settings, loaded, slide_path, boxes: np.ndarray, sample: int = 8):
    """Fill in `settings.num_workers` (and torch's threads) when they are left to measurement (None);
    return the settings to predict this slide with.

    Measured once, on the first slide with more than MIN_TILES_TO_MEASURE tiles (and more than
    one batch), and kept in `settings` for the rest of the cohort. A smaller slide is read in the
    main process with every core on the model (a copy of `settings` says so; the cohort's choice
    stays open): timing the split would cost more than any split could save on it. On a GPU, or
    across several devices or machines, the model is not on these cores: readers then take up to
    MAX_WORKERS cores, as before.
    """
    if settings.num_workers is not None:
        return settings
    from ..inference.runtimes import runs_on_gpu
    from ..utils.workers import default_num_workers

    on_gpu = runs_on_gpu(settings.accelerator)
    if on_gpu or str(settings.devices) not in ("auto", "1") or settings.num_nodes > 1:
        settings.num_workers = default_num_workers(MAX_WORKERS)
        return settings
    if len(boxes) <= max(settings.batch_size, MIN_TILES_TO_MEASURE):
        return replace(settings, num_workers=0)
    import torch

    from .tile_dataset import TileDataset
    from ..inference.batch_predictor import BatchPredictor
    from ..inference.runtimes import runtime_model

    meta = loaded.meta
    boxes = np.asarray(boxes)[:sample]
    data = TileDataset(slide_path, boxes, np.arange(len(boxes)), meta.input_size, mpp=settings.mpp)
    # Normalisation alone (float32, as every model and exported engine here takes it): building the
    # PyTorch model only for this would cost an exported runtime's whole saving.
    to_input = BatchPredictor.for_input(torch.nn.Identity(), meta.input_spec).normalise
    try:
        split = choose_split(data.read_tile, len(data), lambda t: runtime_model(loaded, settings.runtime, t), to_input,
                             fixed_threads=getattr(settings, "threads", None), sample=sample)
    finally:
        data.close()
    settings.num_workers = split.workers
    log.info("cores: %s", split.describe())
    return settings
