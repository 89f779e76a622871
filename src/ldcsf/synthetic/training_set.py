"""A labelled training set of synthetic H&E tiles, cut from several generated "cases".

    manifest = make_training_set("data/synthetic", n_tiles=1500)

Each case is an independently generated layout (its own composition, stain style and seed),
rendered at `mpp`; tiles are cut on a grid and labelled from the layout exactly as mask-annotated
real tiles are (`ldcsf.data.masks`): a label is present when its class covers at least 10 % of
the tile. Tiles on class boundaries carry several labels. Splits are by case, so no case
contributes to two splits. A finished set is reused: calling again with the same settings
returns the existing manifest at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from ..utils.progress import tqdm  # bars in a terminal, lines in a log

from ..data.manifest import default_labels, write_manifest
from ..data.masks import MaskScheme, labels_from_fractions, mask_fractions
from ..data.splits import assign_splits
from ..utils.atomic import atomic_path, write_json_atomic
from .layout import CLASSES, colour_layout, make_layout
from .render import render_he

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
SETTINGS_NAME = "settings.json"

#: Layout classes -> project labels, in the form the mask tiler uses for real masks.
SYNTHETIC_SCHEME = MaskScheme.from_classes(dict(enumerate(CLASSES)))

#: A label is present when its class covers at least this fraction of the tile.
PRESENT_AT = 0.1
#: Tiles with more background than this are skipped (they teach nothing about tissue).
MAX_BACKGROUND = 0.5
#: Side of one generated case, in micrometres (1 mm: 64 tiles of 128 µm).
CASE_UM = 1024


@dataclass(frozen=True)
class TrainingSetSettings:
    n_tiles: int
    tile_size: int
    mpp: float
    seed: int


def make_training_set(
    out_dir: str | Path,
    n_tiles: int = 1500,
    tile_size: int = 128,
    mpp: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write `n_tiles` PNG tiles and `manifest.csv` under `out_dir`; return the manifest path.

    Manifest columns: path, mask (the tile's class map, PNG), stroma, necrosis, non_tumor, tumor
    (1/0), frac_<class> (pixel fractions of the tile), group (case id), split, x, y (the tile's
    top-left corner in its case's layout, `layouts/<case>.png`).
    """
    if n_tiles < 1 or tile_size < 16 or mpp <= 0:
        raise ValueError(f"n_tiles ({n_tiles}) must be >= 1, tile_size ({tile_size}) >= 16, mpp ({mpp}) > 0")
    out_dir = Path(out_dir)
    settings = TrainingSetSettings(n_tiles, tile_size, mpp, seed)
    manifest_path = out_dir / MANIFEST_NAME
    if _is_complete(out_dir, settings):
        log.info("%s: synthetic training set already made, reused", manifest_path)
        return manifest_path
    if manifest_path.exists():
        raise ValueError(f"{out_dir}: holds a training set made with other settings; choose another folder")

    case_px = max(int(round(CASE_UM / mpp)), 2 * tile_size)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    bar = tqdm(total=n_tiles, desc="synthetic tiles", unit="tile", disable=not progress)
    case = 0
    while len(rows) < n_tiles:
        case_id = f"case{case:03d}"
        layout = make_layout(case_px, case_px, seed=int(rng.integers(2**31)), mpp=mpp, tissue_fraction=0.85,
                             **_random_composition(rng))
        image = render_he(layout, seed=int(rng.integers(2**31)), mpp=mpp)
        _save_png(out_dir / "layouts" / f"{case_id}.png", colour_layout(layout))
        # At most a third of the tiles from one case, so that even a small set has three cases
        # (one per split).
        limit = min(n_tiles - len(rows), -(-n_tiles // 3))
        new = _cut_tiles(out_dir, case_id, image, layout, tile_size, limit, rng)
        rows += new
        bar.update(len(new))
        case += 1
    bar.close()

    frame = pd.DataFrame(rows)
    frame = assign_splits(frame, seed=seed)
    columns = ["path", "mask", *default_labels(), *SYNTHETIC_SCHEME.fraction_columns, "group", "split", "x", "y"]
    write_manifest(frame[columns], manifest_path)
    write_json_atomic(out_dir / SETTINGS_NAME, asdict(settings) | {"cases": case})
    log.info("%s: %d tiles from %d cases", manifest_path, len(frame), case)
    return manifest_path


def _random_composition(rng: np.random.Generator) -> dict[str, float]:
    """Composition of one case: varied so every label appears alone and in company."""
    normal = float(rng.choice([0.0, rng.uniform(0.1, 0.35)]))
    necrosis = float(rng.choice([0.0, rng.uniform(0.03, 0.15)]))
    stroma = float(rng.uniform(0.2, 0.7)) * (1.0 - normal - necrosis)
    return {"stroma_fraction": stroma, "necrosis_fraction": necrosis, "normal_fraction": normal}


def _cut_tiles(out_dir: Path, case_id: str, image: np.ndarray, layout: np.ndarray, size: int, limit: int,
               rng: np.random.Generator) -> list[dict]:
    """Up to `limit` tissue tiles from the case's grid, in random order (not all from its top rows)."""
    labels = list(default_labels())
    rows = []
    grid = [(y, x) for y in range(0, layout.shape[0] - size + 1, size) for x in range(0, layout.shape[1] - size + 1, size)]
    for i in rng.permutation(len(grid)):
        y, x = grid[i]
        crop = layout[y : y + size, x : x + size]
        fractions = mask_fractions(crop, SYNTHETIC_SCHEME)
        if fractions["background"] > MAX_BACKGROUND:
            continue
        name = f"{case_id}_y{y:05d}_x{x:05d}.png"
        _save_png(out_dir / "tiles" / name, image[y : y + size, x : x + size])
        _save_png(out_dir / "masks" / name, crop)
        target = labels_from_fractions(fractions, SYNTHETIC_SCHEME, labels, present_at=PRESENT_AT,
                                       absent_below=PRESENT_AT)
        rows.append({"path": f"tiles/{name}", "mask": f"masks/{name}", **target,
                     **{f"frac_{k}": round(v, 5) for k, v in fractions.items()},
                     "group": case_id, "x": x, "y": y})
        if len(rows) >= limit:
            return rows
    return rows


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _is_complete(out_dir: Path, settings: TrainingSetSettings) -> bool:
    """The manifest is written last, so its presence with matching settings means a finished set."""
    path = out_dir / SETTINGS_NAME
    if not (out_dir / MANIFEST_NAME).is_file() or not path.is_file():
        return False
    saved = json.loads(path.read_text(encoding="utf-8"))
    return all(saved.get(k) == v for k, v in asdict(settings).items())
