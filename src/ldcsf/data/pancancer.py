"""The pan-cancer 4-label set built from the real H&E images in the shared data folder.

Sources (see docs/data.md for each mapping decision): NCT-CRC-HE tiles, oral mucosa (normal /
OSCC), osteosarcoma (viable / non-viable tumour / non-tumour), LC25000 (lung and colon),
WSSS4LUAD (validation images cut into tiles with labels from their pixel masks, plus the
training examples with labels in their file names) and TCGA-CHOL cholangiocarcinoma tiles.
Shared images are referenced by absolute path, never copied; only the mask tiles are written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .importers import derive_groups, import_filename_labels, list_images
from .manifest import default_labels, relative_paths, write_manifest
from .mapping import apply_mapping, read_mapping
from .masks import WSSS4LUAD, tile_masks
from .splits import assign_splits, check_groups_disjoint

log = logging.getLogger(__name__)

#: WSSS4LUAD training file names list [tumour, stroma, normal].
WSSS4LUAD_FILENAME_ORDER = ("tumor", "stroma", "non_tumor")
MASK_TILE_SIZE = 112  # WSSS4LUAD validation images are 206-500 px: 224 px tiles would drop many


def build_pancancer(
    shared_dir: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    tile_size: int = MASK_TILE_SIZE,
    progress: bool = True,
    caps: dict[str, int] | None = None,
) -> Path:
    """Write `out_dir/manifest.csv` (grouped train/val/test splits) and return its path.

    `caps` ({dataset: n}) keeps at most n images of a source (`cap_rows`), after the split.
    """
    shared_dir, out_dir = Path(shared_dir), Path(out_dir)
    if not shared_dir.is_dir():
        raise NotADirectoryError(f"{shared_dir}: shared data folder not found")
    labels = list(default_labels())
    parts = [
        _by_name(shared_dir / "nct_crc", "nct_crc", "colorectal", "nct_crc_he_100k", r"^([A-Z]+)-", None),
        _oral(shared_dir / "oral"),
        _by_name(shared_dir / "osteosarcoma", "osteosarcoma", "bone", "osteosarcoma", r"^(.+?)___",
                 r"___(?P<group>Case-\d+|P\d+)-"),
        _by_name(shared_dir / "lc25000", "lc25000", None, "lc25000", r"^(.+?)___", r"___(?P<group>[a-z]+\d+)_"),
        _by_name(shared_dir / "liver_chol", "liver_chol", "liver", "liver_chol", None, r"_(?P<group>\d+)\.\w+$",
                 source_class="CHOL"),
    ]
    wsss = shared_dir / "wsss4luad"
    masks = tile_masks(wsss / "validation" / "img", wsss / "validation" / "mask", out_dir / "wsss4luad",
                       tile_size=tile_size, background_mask_dir=wsss / "validation" / "background-mask",
                       scheme=WSSS4LUAD, labels=labels, group_prefix="wsss4luad:val-", progress=progress)
    parts.append(masks.assign(dataset="wsss4luad_masks", organ="lung", source_class="pixel-mask"))
    named = import_filename_labels(wsss / "training_examples", WSSS4LUAD_FILENAME_ORDER, labels=labels,
                                   group_pattern=r"^(?P<group>\d+)-")
    named["group"] = "wsss4luad:slide-" + named["group"]
    parts.append(named.assign(dataset="wsss4luad_names", organ="lung", source_class="image-level"))

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


def summarize(frame: pd.DataFrame, labels: list[str] | None = None, by: str = "dataset") -> pd.DataFrame:
    """Images and label positives per source x split, cells 'positives/annotated', plus totals."""
    labels = labels or [lab for lab in default_labels() if lab in frame.columns]
    rows = []
    keys = [by, "split"] if "split" in frame.columns else [by]
    for key, part in [*frame.groupby(keys, sort=True), (("all",) * len(keys), frame)]:
        key = key if isinstance(key, tuple) else (key,)
        targets = part[labels].to_numpy(dtype=np.float32, na_value=np.nan)
        row = dict(zip(keys, key)) | {"images": len(part), "groups": part["group"].nunique() if "group" in part else len(part)}
        for i, lab in enumerate(labels):
            annotated = int(np.isfinite(targets[:, i]).sum())
            row[lab] = f"{int(np.nansum(targets[:, i]))}/{annotated}" if annotated else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def _by_name(folder: Path, dataset: str, organ: str | None, mapping: str, class_pattern: str | None,
             group_pattern: str | None, source_class: str | None = None) -> pd.DataFrame:
    """Images whose source class is in their file name (or one class for the whole folder)."""
    paths = list_images(folder, recursive=False)
    if not paths:
        raise ValueError(f"{folder}: no images found")
    if source_class is None:
        classes = pd.Series([p.name for p in paths]).str.extract(class_pattern, expand=False)
        if classes.isna().any():
            raise ValueError(f"{folder / paths[int(classes.isna().to_numpy().argmax())].name}: no source class in the file name")
    else:
        classes = pd.Series([source_class] * len(paths))
    frame = pd.DataFrame({"path": [str(p.resolve()) for p in paths], "dataset": dataset,
                          "source_class": classes.to_numpy()})
    # LC25000 mixes organs: the class prefix names it (lung_aca, colon_n, ...)
    frame["organ"] = organ if organ is not None else frame["source_class"].str.split("_").str[0]
    frame = apply_mapping(frame, read_mapping(mapping))
    frame["group"] = [f"{dataset}:{g}" for g in derive_groups(paths, group_pattern)]
    return frame


def _oral(folder: Path) -> pd.DataFrame:
    """oral/{train,test}/{Normal,OSCC}/*.jpg: the source's own split is ignored (regrouped below)."""
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"{folder}: no images found")
    frame = pd.DataFrame({"path": [str(p.resolve()) for p in paths], "dataset": "oral", "organ": "oral",
                          "source_class": [p.parent.name for p in paths]})
    frame = apply_mapping(frame, read_mapping("oral_oscc"))
    # No patient id in the names (OSCC_100x_12.jpg): each image is its own group.
    frame["group"] = [f"oral:{p.stem}" for p in paths]
    return frame
