"""A small slide on ONNX Runtime without torch: tiles read and resized in numpy, the exported file run
by `OnnxSession`, each batch into the slide's `PredictionStore` like the plain loop's.

Importing torch takes about 0.7 s on a 2-core CPU, a quarter of a small slide's whole run, and a
slide on a trusted exported file needs torch for nothing else than the tile resize, which
`wsi.resize.training_resize` does bit for bit in numpy. That numpy resize costs ~1 ms more per
tile than torch's, so this path is taken only while it pays: up to `MAX_TILES` tiles still to
predict, and only while torch is not loaded already (a cohort that ran a larger slide keeps torch).
Outputs equal the torch path's: the same tiles, normalisation and session; sigmoids computed in
numpy, within 1e-6 of torch's (tests/test_fast_default.py).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..export_record import checkpoint_export
from ..inference.onnx_session import OnnxSession
from ..inference.runtimes import runs_on_gpu
from ..models.input_spec import InputSpec
from ..options import lightning_precision
from .prediction_store import PredictionStore
from .slide_tiles import SlideTiles

#: Tiles to predict up to which a slide runs without torch: 256 tiles x ~1.2 ms of extra resize
#: (0.3 s) is under torch's 0.7 s import. The same bound as `core_split.MIN_TILES_TO_MEASURE`,
#: below which a slide is read in-process without timing a split.
MAX_TILES = 256


def torch_free_export(loaded, settings, input_spec: InputSpec, n_todo: int) -> Path | None:
    """The trusted exported file to predict this slide's `n_todo` tiles without torch, or None when
    the torch path must (or should) run them: another runtime, a GPU, several processes, flips
    (--tta), stain normalisation, reader processes, many tiles, or torch already loaded."""
    plain_run = (settings.runtime == "onnx" and not settings.tta and not input_spec.stain_norm
                 and not settings.num_workers and int(settings.num_nodes) == 1
                 and settings.strategy in ("auto", None) and str(settings.devices) in ("auto", "1")
                 and lightning_precision(settings.precision) in (None, "32-true", "32", 32))
    if not plain_run or n_todo > MAX_TILES or "torch" in sys.modules or runs_on_gpu(settings.accelerator):
        return None
    path, record = checkpoint_export(loaded)
    return path if record is not None else None


def predict_on_session(onnx_file: Path, store: PredictionStore, tiles: SlideTiles, input_spec: InputSpec,
                       batch_size: int, threads: int | None = None, progress: bool = True) -> None:
    """Every tile of `tiles` through the exported file, batch by batch into `store` (resumable as the
    plain loop: the caller passes only the tiles no part holds yet)."""
    from ..utils.prefetch import Prefetched
    from ..utils.progress import tqdm
    from ..utils.signals import raise_pending_stop, stops_at_batch_ends
    from ..utils.workers import usable_cores

    # The cores this process may use (its affinity, as a container or `taskset` narrows it), not the machine's.
    session = _session(onnx_file, threads or usable_cores())
    # (x / 255 - mean) / std = (x - 255 mean) / (255 std), in float32 as `BatchPredictor.normalise`
    mean = np.asarray(input_spec.mean, dtype=np.float32).reshape(1, 3, 1, 1) * np.float32(255)
    std = np.asarray(input_spec.std, dtype=np.float32).reshape(1, 3, 1, 1) * np.float32(255)
    store.prepare()
    try:
        # The next batch is read on a thread while the session runs this one (both release the GIL).
        with Prefetched(_batches(tiles, batch_size)) as batches, stops_at_batch_ends(), \
                tqdm(total=len(tiles), desc="Predicting", unit="tile", disable=not progress) as bar:
            for images, index in batches:
                model_input = images.transpose(0, 3, 1, 2).astype(np.float32)
                model_input -= mean
                model_input /= std
                store.write_batch(index, rank=0, **_store_fields(session.run(model_input), session.members))
                bar.update(len(index))
                raise_pending_stop()  # a stop signal that came during the batch: the batch is saved
    finally:
        tiles.close()


@functools.lru_cache(maxsize=1)
def _session(onnx_file: Path, threads: int) -> OnnxSession:
    # One session for a cohort's small slides, as `runtimes.runtime_model` keeps one engine for the torch
    # path: building it (graph optimisation) is ~0.1 s. The file is trusted by its record before each slide.
    return OnnxSession(onnx_file, threads)


def _batches(tiles: SlideTiles, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(tiles), batch_size):
        rows = range(start, min(start + batch_size, len(tiles)))
        yield np.stack([tiles.read_tile(i) for i in rows]), tiles.indices[start:rows.stop]


def _store_fields(outputs: list[np.ndarray], members: int) -> dict[str, np.ndarray | None]:
    """A batch's fields for `PredictionStore.write_batch`, as `BatchPredictor` makes them: for an
    ensemble's file (members first) the sigmoid of the members' mean logits and each member's own."""
    if members < 2:
        return {"probs": _sigmoid(outputs[0]), "areas": _sigmoid(outputs[1]) if len(outputs) > 1 else None}
    fields = {"probs": _sigmoid(outputs[0].mean(0)), "member_probs": _sigmoid(outputs[0]).swapaxes(0, 1)}
    if len(outputs) > 1:
        fields |= {"areas": _sigmoid(outputs[1].mean(0)), "member_areas": _sigmoid(outputs[1]).swapaxes(0, 1)}
    return fields


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float32)))
