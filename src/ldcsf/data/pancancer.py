"""The pan-cancer 4-label set built from the real H&E images in the shared data folder.

Sources (declared in `data.sources.SHARED_SOURCES`; see docs/data.md for each mapping
decision): NCT-CRC-HE tiles, oral mucosa (normal / OSCC), osteosarcoma (viable / non-viable
tumour / non-tumour), LC25000 (lung and colon), WSSS4LUAD (validation images cut into tiles with
labels from their pixel masks, plus the training examples with labels in their file names) and
TCGA-CHOL cholangiocarcinoma tiles. GlaS colon images with gland masks (`data.glas`) join when
asked (`sources=`, `ldcsf data pancancer --add-source glas`).
Shared images are referenced by absolute path, never copied; only the mask tiles are written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..options import SPLIT_FRACTIONS
from .importers import derive_groups, import_filename_labels, list_images
from .manifest import default_labels, relative_paths, write_manifest
from .mapping import apply_mapping, read_mapping
from .masks import WSSS4LUAD, tile_masks
from .sources import DEFAULT_SOURCES, SharedSource, check_count
from .splits import assign_splits, check_groups_disjoint

log = logging.getLogger(__name__)

MASK_TILE_SIZE = 112  # WSSS4LUAD validation images are 206-500 px: 224 px tiles would drop many


def build_pancancer(
    shared_dir: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
    tile_size: int = MASK_TILE_SIZE,
    progress: bool = True,
    caps: dict[str, int] | None = None,
    sources: Sequence[SharedSource] = DEFAULT_SOURCES,
    glas_mpp: float | None = None,
    glas_tile_size: int | None = None,
) -> Path:
    """Write `out_dir/manifest.csv` (grouped train/val/test splits) and return its path.

    `caps` ({dataset: n}) keeps at most n images of a source (`cap_rows`), after the split.
    `tile_size`, `glas_mpp` and `glas_tile_size` set the field and size of the pixel-mask tiles
    (`load_source`).
    """
    shared_dir, out_dir = Path(shared_dir), Path(out_dir)
    if not shared_dir.is_dir():
        raise NotADirectoryError(f"{shared_dir}: shared data folder not found")
    labels = list(default_labels())
    parts = [load_source(source, shared_dir, out_dir, labels, tile_size=tile_size, progress=progress, glas_mpp=glas_mpp,
                         glas_tile_size=glas_tile_size)
             for source in sources]
    frame = pd.concat(parts, ignore_index=True)
    frame = assign_splits(frame, fractions=fractions, group_col="group", seed=seed, stratify_col="dataset")
    check_groups_disjoint(frame)
    first = ["path", "dataset", "organ", "source_class", *labels, "group", "split"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    for dataset, n in (caps or {}).items():
        frame = cap_rows(frame, dataset, n, seed=seed)
    path = write_manifest(relative_paths(frame, out_dir), out_dir / "manifest.csv")
    log.info("%s: %d images from %d sources", path, len(frame), frame["dataset"].nunique())
    return path


def load_source(source: SharedSource, shared_dir: Path, out_dir: Path, labels: list[str],
                tile_size: int = MASK_TILE_SIZE, progress: bool = True, glas_mpp: float | None = None,
                glas_tile_size: int | None = None) -> pd.DataFrame:
    """The manifest rows of one source (pixel-mask tiles are written under `out_dir`).

    WSSS4LUAD's mask tiles are `tile_size` px of the source image; GlaS's are resampled to
    `glas_mpp` µm/px (None: `glas.TILE_MPP`) and cut at `glas_tile_size` px (None: its own 128 px,
    another for a model with another input size). Warns, naming the source,
    when its folder holds another number of images than declared.
    """
    folder = Path(shared_dir) / source.folder
    if source.layout == "gland_masks":
        from .glas import TILE_MPP, TILE_SIZE, glas_tiles

        frame = glas_tiles(folder, Path(out_dir) / source.folder, labels, progress=progress,
                           tile_mpp=TILE_MPP if glas_mpp is None else glas_mpp,
                           tile_size=TILE_SIZE if glas_tile_size is None else glas_tile_size)
        check_count(source.name, folder, frame["source_image"].nunique(), source.expected_images)
        return frame.assign(dataset=source.name, organ=source.organ, source_class=source.source_class)
    if source.layout == "pixel_masks":
        images, masks = list_images(folder / "img", recursive=False), list_images(folder / "mask", recursive=False)
        check_count(source.name, folder, len({m.stem for m in masks} & {p.stem for p in images}), source.expected_images)
        # tiles go under the shared folder's top level (out_dir/wsss4luad/tiles/), as manifests always had them
        frame = tile_masks(folder / "img", folder / "mask", Path(out_dir) / Path(source.folder).parts[0],
                           tile_size=tile_size, background_mask_dir=folder / "background-mask", scheme=WSSS4LUAD,
                           labels=labels, group_prefix=source.group_prefix or "", progress=progress)
        return frame.assign(dataset=source.name, organ=source.organ, source_class=source.source_class)
    paths = list_images(folder, recursive=source.layout != "class_in_name")
    if not paths:
        raise ValueError(f"{folder}: no images found (source {source.name})")
    check_count(source.name, folder, len(paths), source.expected_images)
    if source.layout == "labels_in_name":
        frame = import_filename_labels(folder, source.label_order, labels=labels, group_pattern=source.group_pattern)
        frame["group"] = (source.group_prefix or "") + frame["group"]
        return frame.assign(dataset=source.name, organ=source.organ, source_class=source.source_class)
    if source.layout == "class_folders":
        classes = pd.Series([p.parent.name for p in paths])
    elif source.source_class is not None:
        classes = pd.Series([source.source_class] * len(paths))
    else:
        classes = pd.Series([p.name for p in paths]).str.extract(source.class_pattern, expand=False)
        if classes.isna().any():
            raise ValueError(f"{folder / paths[int(classes.isna().to_numpy().argmax())].name}: no source class in the file name")
    frame = pd.DataFrame({"path": [str(p.resolve()) for p in paths], "dataset": source.name,
                          "source_class": classes.to_numpy()})
    # LC25000 mixes organs: the class prefix names it (lung_aca, colon_n, ...)
    frame["organ"] = source.organ if source.organ is not None else frame["source_class"].str.split("_").str[0]
    frame = apply_mapping(frame, read_mapping(source.mapping))
    prefix = source.group_prefix if source.group_prefix is not None else f"{source.name}:"
    frame["group"] = derive_groups(paths, source.group_pattern, prefix=prefix)
    return frame


def cap_rows(frame: pd.DataFrame, dataset: str, n: int, seed: int = 0) -> pd.DataFrame:
    """`frame` with at most `n` rows of `dataset` (a seeded random choice; other rows untouched).

    The oral set has 1,224 near-identical tiles of one source, more than all other organs
    together: capping it keeps one source from dominating what the model learns.
    """
    if dataset not in set(frame["dataset"]):
        raise ValueError(f"cannot cap {dataset!r}: no such dataset (have {sorted(set(frame['dataset']))})")
    rows = frame[frame["dataset"].eq(dataset)]
    if n < 1:
        raise ValueError(f"a cap must be at least 1, got {n} for {dataset}")
    if len(rows) <= n:
        return frame
    dropped = rows.drop(rows.sample(n=n, random_state=seed).index).index
    return frame.drop(dropped).reset_index(drop=True)
