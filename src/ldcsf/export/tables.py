"""Tile tables on disk: Parquet (typed, compact) and CSV (opens anywhere), both atomic."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..utils.atomic import atomic_path


def write_parquet(tiles: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tiles.to_parquet(tmp, engine="pyarrow", index=False)
    return path


def write_csv(tiles: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tiles.to_csv(tmp, index=False)
    return path


def write_tile_table(tiles: pd.DataFrame, out_dir: str | Path, stem: str = "tiles") -> tuple[Path, Path]:
    """Write `<stem>.parquet` and `<stem>.csv` into `out_dir`; return both paths."""
    out_dir = Path(out_dir)
    return write_parquet(tiles, out_dir / f"{stem}.parquet"), write_csv(tiles, out_dir / f"{stem}.csv")


def read_tile_table(path: str | Path) -> pd.DataFrame:
    """Read a tile table written by `write_tile_table` (.parquet or .csv)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such tile table")
    if path.suffix == ".parquet":
        return pd.read_parquet(path, engine="pyarrow")
    if path.suffix == ".csv":
        # round_trip: floats read back bit-identical to what was written
        return pd.read_csv(path, float_precision="round_trip")
    raise ValueError(f"{path}: expected a .parquet or .csv tile table")
