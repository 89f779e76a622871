"""Many slides: each into OUT_DIR/<slide-id>/, one row each in OUT_DIR/cohort.csv.

A slide that fails (unreadable, no µm/px, no tissue) is recorded with its error and the others
go on; cohort.csv is rewritten (atomically) after every slide, so it always shows where a run
got to. Rerunning the same command skips finished slides and resumes an interrupted one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..wsi.readers import SLIDE_EXTENSIONS
from .pipeline import SlideSettings, ensure_writable_dir, run_slide, slide_id_for

log = logging.getLogger(__name__)

COHORT_CSV = "cohort.csv"
LIST_EXTENSIONS = (".txt", ".csv")
#: Column names a .csv slide list may use for the slide paths (else its first column).
LIST_PATH_COLUMNS = ("path", "slide_path", "slide", "file")


def cohort_columns() -> list[str]:
    from ..export.slide_outputs import cohort_summary_columns

    return list(cohort_summary_columns)


def collect_slides(inputs: Iterable[str | Path], exclude: Path | None = None) -> list[Path]:
    """Slide files from files, folders (searched recursively by ending) and .txt/.csv lists.

    Paths inside a list file are relative to the list's folder. Folders under `exclude`
    (the output folder) are not searched, so outputs are never taken for slides.
    """
    slides: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise FileNotFoundError(f"{item}: no such slide, folder or list file")
        if item.is_dir():
            found = sorted(
                p for p in item.rglob("*")
                if p.is_file() and p.suffix.lower() in SLIDE_EXTENSIONS and not _is_under(p, exclude)
            )
            if not found:
                raise ValueError(f"{item}: no slide files in this folder (looked for {', '.join(SLIDE_EXTENSIONS)})")
            slides += found
        elif item.suffix.lower() in LIST_EXTENSIONS:
            slides += _read_list(item)
        else:
            slides.append(item)
    if not slides:
        raise ValueError("no slides given")
    seen: dict[str, Path] = {}
    for path in slides:
        other = seen.setdefault(slide_id_for(path), path)
        if other != path:
            raise ValueError(f"{path}: same slide id {slide_id_for(path)!r} as {other}; outputs would collide (rename one)")
    return slides


def run_cohort(
    slides: Sequence[str | Path],
    checkpoint: str | Path | LoadedCheckpoint,
    out_dir: str | Path,
    settings: SlideSettings | None = None,
    *,
    callbacks: Sequence = (),
) -> pd.DataFrame:
    """Run every slide; return the cohort table (also written to OUT_DIR/cohort.csv).

    `slides` are slide files, folders or list files (see `collect_slides`).
    """
    from lightning.pytorch.utilities import rank_zero_only

    settings = settings or SlideSettings()
    out_dir = ensure_writable_dir(out_dir)
    paths = collect_slides(slides, exclude=out_dir)
    # Load once for the whole cohort; a bad checkpoint stops here, before any slide.
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    columns = cohort_columns()
    rows: list[dict] = []
    bar = tqdm(paths, desc="cohort", unit="slide", disable=not settings.progress or len(paths) < 2)
    for path in bar:
        slide_id = slide_id_for(path)
        bar.set_postfix_str(slide_id)
        try:
            row = run_slide(path, loaded, out_dir / slide_id, settings, slide_id=slide_id, callbacks=callbacks)
        except Exception as err:  # noqa: BLE001 - one bad slide must not stop the cohort
            row = {"slide_id": slide_id, "path": str(path), "status": "failed", "error": one_line(err)}
            if len(paths) > 1:
                log.warning("%s: failed: %s", slide_id, row["error"])
        if not row:  # not global rank 0 under DDP: rank 0 writes the records
            continue
        rows.append(row)
        table = pd.DataFrame(rows).reindex(columns=columns)
        if rank_zero_only.rank == 0:
            write_cohort_csv(table, out_dir / COHORT_CSV)
    return pd.DataFrame(rows).reindex(columns=columns)


def write_cohort_csv(table: pd.DataFrame, path: Path) -> None:
    from ..utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def one_line(err: BaseException) -> str:
    """An error as one line. Errors raised in DataLoader workers arrive wrapped with the worker's
    traceback; their last line is the original message."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if len(lines) == 1:
        return lines[0]
    last = lines[-1].strip()
    return last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith(("Error", "Exception")) else last


def _read_list(list_path: Path) -> list[Path]:
    if list_path.suffix.lower() == ".csv":
        table = pd.read_csv(list_path, dtype=str)
        column = next((c for c in table.columns if c.strip().lower() in LIST_PATH_COLUMNS), table.columns[0])
        entries = table[column].dropna().str.strip().tolist()
    else:
        lines = list_path.read_text(encoding="utf-8").splitlines()
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise ValueError(f"{list_path}: the slide list is empty")
    return [p if p.is_absolute() else list_path.parent / p for p in map(Path, entries)]


def _is_under(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
