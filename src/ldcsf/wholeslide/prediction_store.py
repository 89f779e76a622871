"""The parts folder of one slide's predictions: one small file per predicted batch, so a run resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.atomic import atomic_path, write_json_atomic


class PredictionStore:
    """The parts folder of one slide: one .npz per predicted batch, plus the settings they belong to.

    Parts are only reused while the settings (slide, checkpoint, tiling) are the same; any change
    empties the folder so stale predictions never mix with new ones.
    """

    SETTINGS = "settings.json"

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))

    def matches(self) -> bool:
        path = self.directory / self.SETTINGS
        try:
            return json.loads(path.read_text()) == self.fingerprint
        except (OSError, ValueError):
            return False

    def prepare(self) -> None:
        """Keep the parts when they were made with these settings; otherwise start afresh."""
        if not self.matches():
            self.clear()
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.directory / self.SETTINGS, self.fingerprint)

    def part_files(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.npz")) if self.matches() else []

    def write_batch(self, index: np.ndarray, probs: np.ndarray, rank: int, areas: np.ndarray | None = None,
                    member_probs: np.ndarray | None = None, member_areas: np.ndarray | None = None) -> None:
        name = f"part-r{rank:03d}-{int(index.min()):08d}-{len(index):05d}.npz"
        extra = {} if areas is None else {"areas": areas.astype(np.float16)}
        if member_probs is not None:
            extra["member_probs"] = member_probs.astype(np.float32)
        if member_areas is not None:
            extra["member_areas"] = member_areas.astype(np.float16)
        with atomic_path(self.directory / name) as tmp:
            np.savez(tmp, index=index, probs=probs, **extra)

    def done_indices(self) -> np.ndarray:
        done = [np.load(path)["index"] for path in self.part_files()]
        return np.unique(np.concatenate(done)) if done else np.zeros(0, dtype=np.int64)

    def collect(self, n_tiles: int, n_labels: int) -> np.ndarray:
        """(n_tiles, n_labels) probabilities; NaN where no part holds the tile."""
        probs = np.full((n_tiles, n_labels), np.nan, dtype=np.float32)
        for path in self.part_files():
            with np.load(path) as part:
                probs[part["index"]] = part["probs"]
        return probs

    def collect_areas(self, n_tiles: int, key: str = "areas") -> np.ndarray | None:
        """(n_tiles, n_labels, h, w) sub-tile area maps of a model with an area head, else None.

        `key`: "member_probs" (n_tiles, K, n_labels) or "member_areas" (n_tiles, K, n_labels, h, w) read
        an ensemble's per-member outputs the same way (None when the parts have none).
        """
        maps = None
        for path in self.part_files():
            with np.load(path) as part:
                if key not in part:
                    return None
                if maps is None:
                    maps = np.full((n_tiles, *part[key].shape[1:]), np.nan, dtype=np.float32)
                maps[part["index"]] = part[key]
        return maps

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
