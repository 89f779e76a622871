"""Tiles of one slide as a torch Dataset: read on demand, resized and normalised for the model."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..wsi.readers import SlideReader, open_slide


class TileDataset(Dataset):
    """`(image, tile_index)` for each tile box; the image is normalised float (3, size, size).

    The slide is opened lazily, inside whichever process reads first: every DataLoader worker
    gets its own handle (OpenSlide and tifffile handles must not be shared across processes),
    and nothing but the box coordinates is pickled to the workers.

    Args:
        slide_path: the slide file.
        boxes: (N, 4) level-0 x, y, width, height of each tile.
        indices: the tile index reported with each image (row number in the tile table).
        out_size: model input side in pixels.
        mean, std: per-channel normalisation of [0, 1] RGB (from the checkpoint).
        mpp: µm/px override passed to `open_slide`.
    """

    def __init__(
        self,
        slide_path: str | Path,
        boxes: np.ndarray,
        indices: Sequence[int],
        out_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        mpp: float | None = None,
    ) -> None:
        self.slide_path = Path(slide_path)
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) != len(self.boxes):
            raise ValueError(f"{len(self.indices)} indices for {len(self.boxes)} tiles")
        self.out_size = int(out_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.mpp = mpp
        self._reader: SlideReader | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def reader(self) -> SlideReader:
        if self._reader is None:
            self._reader = open_slide(self.slide_path, mpp=self.mpp)
        return self._reader

    def read_tile(self, i: int) -> np.ndarray:
        """RGB uint8 (out_size, out_size, 3) of tile `i`."""
        x, y, w, h = (int(v) for v in self.boxes[i])
        return self.reader.read_rect(x, y, w, h, self.out_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.read_tile(i))).permute(2, 0, 1).float().div_(255.0)
        return (image - self.mean) / self.std, int(self.indices[i])

    def __getstate__(self) -> dict:
        # Sent to worker processes without the open handle: each worker opens its own.
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
