"""Reading images for training, evaluation and prediction.

`ManifestDataset` gives (image, target) pairs; `IndexedDataset` and `ImageFileDataset` give dicts
carrying each item's row index, so outputs gathered from several processes can be de-duplicated.
Unreadable images are found and dropped up front (`drop_unreadable_images`), or, for loose image
files, flagged per item (`ImageFileDataset`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile
from torch.utils.data import Dataset
from ..utils.progress import tqdm  # bars in a terminal, lines in a log

from ..utils.atomic import write_text_atomic
from .manifest import Manifest

log = logging.getLogger(__name__)

#: Where a run folder lists the images it skipped as unreadable.
BAD_IMAGES_LOG = "bad_images.log"


def load_rgb(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB; unreadable or truncated files raise ValueError.

    PIL pads a truncated image with grey when `ImageFile.LOAD_TRUNCATED_IMAGES` is set (some
    libraries set it globally), so it is switched off while decoding: a truncated tile must fail
    rather than train the model on grey pixels.
    """
    path = Path(path)
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as image:
            image.load()
            return as_rgb(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: unreadable image ({err})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


#: Pillow modes of greyscale pictures (no stain colour); the "I" and "F" modes hold 16/32-bit values.
GREYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def as_rgb(image: Image.Image) -> Image.Image:
    """RGB of any picture; 16-bit and float greyscale are scaled to 8 bits, not clipped to white.

    Pillow's own convert("RGB") clips every value above 255, so a 16-bit scan became white.
    """
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if image.mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0
        grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image.convert("RGB")


def picture_notes(path: str | Path, input_side: int) -> list[str]:
    """One-line notes on a picture whose scores are not meaningful, read from its header: greyscale
    (no stain colour), or under half the model's input side (enlarged more than twice)."""
    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except (OSError, SyntaxError, ValueError):
        return []
    notes = []
    if mode in GREYSCALE_MODES:
        notes.append(f"{path}: greyscale picture (mode {mode}), not an RGB H&E stain; its scores are not meaningful")
    if min(width, height) * 2 < input_side:
        notes.append(f"{path}: {width}x{height} px, enlarged to the model's {input_side} px input; at this size its "
                     f"scores are not meaningful")
    return notes


def to_float_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 tensor (3, H, W) in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


class ManifestDataset(Dataset):
    """`(image, target)` per manifest row; target is float (L,) with NaN = not annotated."""

    def __init__(self, manifest: Manifest, transform: Callable | None = None) -> None:
        self.manifest = manifest
        self.transform = transform
        self.paths = manifest.image_paths()
        self.targets = torch.from_numpy(manifest.targets())
        self.labels = list(manifest.labels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_rgb(self.paths[index])
        image = self.transform(image) if self.transform is not None else to_float_tensor(image)
        return image, self.targets[index].clone()


def find_unreadable_images(manifest: Manifest, progress: bool = True) -> list[tuple[Path, str]]:
    """Fully decode every image; return `(path, reason)` for each that fails."""
    bad: list[tuple[Path, str]] = []
    for path in tqdm(manifest.image_paths(), desc="checking images", unit="img", disable=not progress):
        try:
            load_rgb(path)
        except (ValueError, FileNotFoundError) as err:
            bad.append((path, str(err)))
    return bad


def drop_unreadable(manifest: Manifest, strict: bool = False, progress: bool = True,
                    list_file: str | Path | None = None) -> Manifest:
    """Remove rows whose image cannot be decoded, logging how many and which (or raise if `strict`).

    With `list_file`, every skipped image and its reason is also written there (one per line).
    """
    bad = find_unreadable_images(manifest, progress=progress)
    if not bad:
        return manifest
    names = ", ".join(p.name for p, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
    where = manifest.source or manifest.root
    if strict:
        raise ValueError(f"{where}: {len(bad)} unreadable image(s): {bad[0][1]}")
    if list_file is not None:
        write_text_atomic(list_file, "".join(f"{path}\t{reason}\n" for path, reason in bad))
        names += f"; listed in {list_file}"
    log.warning("%s: skipping %d unreadable image(s): %s", where, len(bad), names)
    bad_paths = {p for p, _ in bad}
    keep = [p not in bad_paths for p in manifest.image_paths()]
    return Manifest(frame=manifest.frame[keep].reset_index(drop=True), root=manifest.root,
                    labels=list(manifest.labels), source=manifest.source)


def drop_unreadable_images(manifest: Manifest, run_dir: Path | None, strict: bool = False, progress: bool = True) -> Manifest:
    """Decode every image; drop the unreadable ones (listed in RUN_DIR/bad_images.log), or raise when `strict`."""
    list_file = Path(run_dir) / BAD_IMAGES_LOG if run_dir is not None else None
    return drop_unreadable(manifest, strict=strict, progress=progress, list_file=list_file)


class IndexedDataset(Dataset):
    """Items as dicts {"image", "target", "index"}: the index lets gathered outputs be de-duplicated."""

    def __init__(self, dataset: ManifestDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, target = self.dataset[index]
        return {"image": image, "target": target, "index": index}


class ImageFileDataset(Dataset):
    """{"image", "index", "ok"} per file; an unreadable file gives a blank image and ok=False."""

    def __init__(self, paths: Sequence[Path], transform: Callable, input_size: int):
        self.paths, self.transform, self.input_size = list(paths), transform, input_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image, ok = self.transform(load_rgb(self.paths[index])), True
        except (ValueError, FileNotFoundError):
            image, ok = torch.zeros(3, self.input_size, self.input_size), False
        return {"image": image, "index": index, "ok": ok}
