"""The tiles of one slide, read on demand and resized to the model's input exactly as in training.

Torch-free: `TileDataset` (`tile_dataset.py`) is these tiles as a torch Dataset, and a small slide
on ONNX Runtime reads them directly (`onnx_prediction`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..models.input_spec import InputSpec
from ..wsi.readers import SlideReader, open_slide
from ..wsi.resize import training_resize


class SlideTiles:
    """The tiles of one slide by their level-0 boxes, each read as RGB uint8 (size, size, 3) at the model's input.

    The slide is opened lazily, inside whichever process reads first: every DataLoader worker
    gets its own handle (OpenSlide and tifffile handles must not be shared across processes),
    and nothing but the box coordinates is pickled to the workers.

    Args:
        slide_path: the slide file.
        boxes: (N, 4) level-0 x, y, width, height of each tile.
        indices: the tile index reported with each image (row number in the tile table).
        out_size: model input side in pixels.
        mpp: the slide's own scan µm/px when its file's is wrong or missing (`SlideSettings.mpp`,
            passed to `open_slide`); not the model's input µm/px, which the boxes already carry.
        interpolation: resampling to `out_size` ("bilinear" or "bicubic", the checkpoint's).
        stain_norm: the checkpoint's stain normalisation (`MacenkoNormalizer.state()`), or None.
    """

    def __init__(
        self,
        slide_path: str | Path,
        boxes: np.ndarray,
        indices: Sequence[int],
        out_size: int,
        mpp: float | None = None,
        interpolation: str = "bilinear",
        stain_norm: dict | None = None,
    ) -> None:
        self.slide_path = Path(slide_path)
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) != len(self.boxes):
            raise ValueError(f"{len(self.indices)} indices for {len(self.boxes)} tiles")
        self.out_size = int(out_size)
        self.mpp = mpp
        self.interpolation = interpolation
        self.stain_normalizer = None
        if stain_norm:  # the transforms module loads torchvision (~1 s): only for a model that needs it
            from ..data.transforms import stain_normalizer_from

            self.stain_normalizer = stain_normalizer_from(stain_norm)
        self._reader: SlideReader | None = None

    #: torch's antialiased uint8 resize in numpy, equal to it bit for bit (the torch Dataset uses torch's own)
    resizer = staticmethod(training_resize)

    @classmethod
    def for_input(cls, slide_path: str | Path, boxes: np.ndarray, indices: Sequence[int], input_spec: InputSpec,
                  slide_mpp: float | None = None) -> "SlideTiles":
        """Tiles made as `input_spec` says (size, resampling, stain reference); `slide_mpp`: the
        slide's scan µm/px override."""
        return cls(slide_path, boxes, indices, input_spec.size, mpp=slide_mpp, interpolation=input_spec.interpolation,
                   stain_norm=input_spec.stain_norm)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def reader(self) -> SlideReader:
        if self._reader is None:
            self._reader = open_slide(self.slide_path, mpp=self.mpp)
            self._reader.resizer = self.resizer
        return self._reader

    def read_tile(self, i: int) -> np.ndarray:
        """RGB uint8 (out_size, out_size, 3) of tile `i`.

        Read by its level-0 box, the tile table's geometry: the grid cut it at the model's µm/px
        with the readers' own rule (`SlideReader.level0_extent`), so this equals
        `read_at_mpp((x, y), out_size, model_mpp)`, and what is read is always the tile's row.
        """
        tile = self.reader.read_box(self.boxes[i], self.out_size, self.interpolation)
        return tile if self.stain_normalizer is None else self.stain_normalizer.normalize_array(tile)

    def __getstate__(self) -> dict:
        # Sent to worker processes without the open handle: each worker opens its own.
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
