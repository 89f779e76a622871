"""The peers' side of benchmarks/peers.py: one slide through TIAToolbox, or through a naive loop.

Runs in its own process (TIAToolbox in its own virtual environment, so its pinned packages never
meet the project's), needs only torch, numpy and the tool itself, and writes the level-0 x, y of
every predicted tile with its sigmoid probabilities to an .npz for the agreement check.

    python peers_workers.py tiatoolbox SLIDE MODEL.ts SPEC.json OUT.npz
    python peers_workers.py naive      SLIDE MODEL.ts SPEC.json OUT.npz

MODEL.ts is the benchmark model as TorchScript (the same weights ldcsf loads from its checkpoint);
SPEC.json holds the tile size, µm/px, normalisation, batch size, threads and loader workers.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def normalise(batch: torch.Tensor, spec: dict) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the model's normalised float (N, 3, H, W) on its device, as ldcsf does."""
    device = spec.get("device", "cpu")
    mean = torch.tensor(spec["mean"], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec["std"], device=device).view(1, 3, 1, 1) * 255
    return (batch.to(device).permute(0, 3, 1, 2).float() - mean) / std


def run_tiatoolbox(slide: str, model_path: str, spec: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    import warnings

    warnings.filterwarnings("ignore")
    import tiatoolbox.models.dataset.classification as classification
    from tiatoolbox.models.engine.patch_predictor import PatchPredictor
    from tiatoolbox.models.models_abc import ModelABC
    from tiatoolbox.wsicore.wsireader import WSIReader

    scripted = torch.jit.load(model_path, map_location=spec.get("device", "cpu")).eval()

    class Wrapped(ModelABC):
        """The benchmark model as TIAToolbox's engines expect it: uint8 NHWC batches in."""

        def __init__(self):
            super().__init__()
            self.net = scripted

        def forward(self, x):
            return self.net(x)

        @staticmethod
        def infer_batch(model, batch_data, on_gpu):
            with torch.inference_mode():
                return torch.sigmoid(model(normalise(batch_data, spec))).cpu().numpy()

    # TIAToolbox reads no µm/px from a generic pyramidal TIFF ("MPP is None"); the known value is
    # passed to its reader, as a user would.
    mpp = spec["slide_mpp"]
    original_open = WSIReader.open
    classification.WSIReader.open = staticmethod(lambda img, **kw: original_open(img, mpp=(mpp, mpp), **kw))
    predictor = PatchPredictor(model=Wrapped(), batch_size=spec["batch_size"],
                               num_loader_workers=spec["workers"], verbose=False)
    size = spec["tile_px"]
    output = predictor.predict([slide], mode="wsi", return_probabilities=True, on_gpu=spec.get("device") == "cuda",
                               patch_input_shape=(size, size), stride_shape=(size, size),
                               resolution=spec["tile_mpp"], units="mpp")[0]
    # Coordinates are at the read resolution: scaled to level 0 to meet the other tools' tiles.
    coords = np.asarray(output["coordinates"], dtype=np.float64)[:, :2] * (spec["tile_mpp"] / mpp)
    return np.rint(coords).astype(np.int64), np.asarray(output["probabilities"], dtype=np.float32), {}


def run_naive(slide: str, model_path: str, spec: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """What a user writes in an afternoon: every grid tile read with OpenSlide, resized, batched."""
    import openslide
    from PIL import Image

    model = torch.jit.load(model_path, map_location=spec.get("device", "cpu")).eval()
    handle = openslide.OpenSlide(slide)
    width, height = handle.dimensions
    side = int(round(spec["tile_px"] * spec["tile_mpp"] / spec["slide_mpp"]))  # tile at level 0
    coords = [(x, y) for y in range(0, height - side + 1, side) for x in range(0, width - side + 1, side)]
    probs, batch = [], []

    def flush():
        with torch.inference_mode():
            probs.append(torch.sigmoid(model(normalise(torch.from_numpy(np.stack(batch)), spec))).cpu().numpy())
        batch.clear()

    for x, y in coords:
        tile = handle.read_region((x, y), 0, (side, side)).convert("RGB").resize((spec["tile_px"],) * 2, Image.BILINEAR)
        batch.append(np.asarray(tile))
        if len(batch) == spec["batch_size"]:
            flush()
    if batch:
        flush()
    return np.asarray(coords, dtype=np.int64).reshape(-1, 2), np.concatenate(probs), {}


def main() -> int:
    tool, slide, model_path, spec_path, out = sys.argv[1:6]
    spec = json.loads(open(spec_path).read())
    torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    coords, probs, extra = {"tiatoolbox": run_tiatoolbox, "naive": run_naive}[tool](slide, model_path, spec)
    np.savez(out, coords=coords, probs=probs, seconds_inside=time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
