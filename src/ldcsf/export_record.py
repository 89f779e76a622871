"""The record beside an exported model file, read without torch: is the file there, from these weights?

`model.onnx.json` (written by `exported.write_record` after the export's check against PyTorch)
keeps the checkpoint's and the file's SHA-256 and the difference the check measured, so a later
run trusts the file from the record alone: no `onnx`, no timm, and for a small slide on ONNX
Runtime no torch at all (`wholeslide.onnx_prediction`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

#: Version of the record beside an exported file; a record of another version means "export again".
RECORD_VERSION = 2  # 2: an ensemble's file holds its members' outputs (1 held only their mean)


def onnx_path_for(checkpoint: str | Path, export_dir: str | Path | None = None) -> Path:
    """Where the exported ONNX file of a checkpoint lives: beside it (or in `export_dir`), same name, `.onnx`."""
    if export_dir is None:
        return Path(checkpoint).with_suffix(".onnx")
    Path(export_dir).mkdir(parents=True, exist_ok=True)
    return Path(export_dir) / Path(checkpoint).with_suffix(".onnx").name


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read once per version of it: a run asks for the checkpoint's and the exported
    file's several times (runtime choice, each slide's path), and a changed file has another size or time."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(onnx_file: str | Path) -> Path:
    """The record beside an exported file: `model.onnx` -> `model.onnx.json`."""
    return Path(onnx_file).with_name(Path(onnx_file).name + ".json")


def read_record(onnx_file: str | Path) -> dict | None:
    """The export record of `onnx_file`, or None when it has none (or an unreadable or older one)."""
    import json

    try:
        record = json.loads(record_path(onnx_file).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == RECORD_VERSION else None


def trusted_export(onnx_file: str | Path, checkpoint_sha256: str) -> dict | None:
    """The record of `onnx_file` when it says the file was exported from these weights and the file
    is the one it was written with (its SHA-256); else None: the file must be exported again."""
    record = read_record(onnx_file)
    if record is None or record.get("checkpoint_sha256") != checkpoint_sha256 or not Path(onnx_file).is_file():
        return None
    return record if file_sha256(onnx_file) == record.get("onnx_sha256") else None


def checkpoint_export(loaded) -> tuple[Path, dict | None]:
    """Where `loaded`'s exported file lives, and its record when that file is trusted (else None)."""
    path = onnx_path_for(loaded.path, loaded.export_dir)
    return path, trusted_export(path, file_sha256(loaded.path))


def checkpoint_record(checkpoint: str | Path) -> dict | None:
    """The record of the trusted exported file beside `checkpoint` (where `ldcsf export` puts it), or None."""
    if not Path(checkpoint).is_file():
        return None
    return trusted_export(onnx_path_for(checkpoint), file_sha256(checkpoint))
