"""What a slide's results were made from, kept beside them: a rerun never reports stale numbers.

`<slide folder>/inputs.json` records the slide's identity (name, size, a digest of its first and
last MiB), the checkpoint (its weights' digest and the meta that shapes predictions) and the
tiling settings. A rerun into the same folder compares them:

- the same inputs and a finished slide: skipped, its numbers reused;
- another slide file: refused, always (two files never share a folder);
- other checkpoint or settings and a finished slide: refused (choose a new --out, or --overwrite);
- other checkpoint or settings and an unfinished slide: started afresh (nothing was reported yet).

Which outputs are written is not recorded here: a rerun asking for others is the same inputs
(the pipeline adds the missing outputs to a finished slide).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..utils.atomic import write_json_atomic
from ..utils.paths import printable_name

INPUTS_JSON = "inputs.json"
FORMAT = 1
_HASHED_BYTES = 2**20


class OutputMismatchError(ValueError):
    """The output folder holds results made from other inputs."""


def slide_identity(path: str | Path) -> dict:
    """Name, size and a digest of the head and tail of each file of a slide (`wsi.formats.slide_files`:
    the file, a DICOM series' files, a MIRAX index and its folder's files)."""
    from ..wsi.formats import slide_files

    path = Path(path)
    files = slide_files(path)
    digest = hashlib.sha256()
    size = 0
    for file in files:
        file_size = file.stat().st_size
        size += file_size
        digest.update(os.fsencode(file.name) + f"|{file_size}|".encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(_HASHED_BYTES))
            if file_size > 2 * _HASHED_BYTES:
                handle.seek(-_HASHED_BYTES, 2)
                digest.update(handle.read(_HASHED_BYTES))
    return {"name": printable_name(path.name), "size": size, "sha256_head_tail": digest.hexdigest()}


def result_fingerprint(slide_path: str | Path, loaded, settings) -> dict:
    """Everything a slide's results depend on (a LoadedCheckpoint and SlideSettings)."""
    meta = loaded.meta
    return {
        "format": FORMAT,
        "slide": slide_identity(slide_path),
        "checkpoint": {
            "weights_sha256": loaded.weights_sha256,
            "model_name": meta.model_name,
            "labels": list(meta.labels),
            "thresholds": [float(t) for t in meta.thresholds],
            "input_size": int(meta.input_size),
            "mpp": float(meta.mpp),
            "mean": [float(v) for v in meta.mean],
            "std": [float(v) for v in meta.std],
            "interpolation": meta.interpolation,
            "stain_norm": meta.stain_norm,
            # Only when present, so results of checkpoints without one still match.
            **({} if getattr(meta, "interval_calibration", None) is None
               else {"interval_calibration": meta.interval_calibration}),
        },
        "tiling": {
            "mpp_override": settings.mpp,
            "overlap": float(settings.overlap),
            "min_tissue": float(settings.min_tissue),
            "limit_tiles": settings.limit_tiles,
            "field_diameter_um": settings.field_diameter_um,
            "tta": bool(settings.tta),
            "stain_norm": settings.stain_norm,
        },
    }


def claim_output(slide_dir: Path, fingerprint: dict, *, finished: bool, overwrite: bool = False,
                 marker: str = "tsr.json") -> bool:
    """Check `slide_dir` may hold results of `fingerprint` and record it; True when they are already there.

    Raises OutputMismatchError (one line) when the folder belongs to other inputs (see the module).
    """
    slide_dir = Path(slide_dir)
    recorded = _without_output_choice(_read(slide_dir / INPUTS_JSON))
    if recorded == fingerprint:
        return finished
    if not overwrite:
        if recorded is None and finished:
            raise OutputMismatchError(
                f"{slide_dir}: holds results without a record of their inputs; choose a new --out, "
                "or pass --overwrite to replace them"
            )
        if recorded is not None:
            differ = [key for key in ("slide", "checkpoint", "tiling") if recorded.get(key) != fingerprint.get(key)]
            if "slide" in differ:
                raise OutputMismatchError(
                    f"{slide_dir}: holds results of another slide file ({recorded.get('slide', {}).get('name')!r}); "
                    "choose a new --out, or pass --overwrite to replace them"
                )
            if finished:
                raise OutputMismatchError(
                    f"{slide_dir}: holds results made with another {' and '.join(differ) or 'version'}; "
                    "choose a new --out, or pass --overwrite to replace them"
                )
    # The finished-marker goes first: old results must never look finished under the new record.
    (slide_dir / marker).unlink(missing_ok=True)
    write_json_atomic(slide_dir / INPUTS_JSON, fingerprint)
    return False


def _without_output_choice(recorded: dict | None) -> dict | None:
    """The record less "pictures", which records of earlier versions kept under "tiling": what a
    folder holds is chosen by the outputs (tsr.json lists them), not part of what results are made from."""
    tiling = (recorded or {}).get("tiling")
    if isinstance(tiling, dict) and "pictures" in tiling:
        recorded = {**recorded, "tiling": {k: v for k, v in tiling.items() if k != "pictures"}}
    return recorded


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
