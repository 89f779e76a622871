"""What `ldcsf view` shows: the slides of an `ldcsf slide` output folder and where their files are.

An output folder holds `cohort.csv` (one row per slide, failed ones with their error) and one
folder per finished slide with `tsr.json` and `tiles.parquet`. A single slide's folder (with its
own `tsr.json`) can be viewed on its own too. Slide files are looked up where the run found them;
when one has moved since, `--slides FOLDER` names where to look now (by file name).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..export.slide_outputs import TSR_JSON
from ..export.spreadsheet import formula_guard_removed
from ..utils.paths import name_from_printable

COHORT_CSV = "cohort.csv"


@dataclass
class SlideEntry:
    """One slide of the output folder, as the viewer lists it.

    `folder` is None for a slide that failed before writing anything; `slide_file` is None when
    the slide file cannot be found (then `slide_error` says why).
    """

    slide_id: str
    recorded_path: str
    status: str
    error: str
    folder: Path | None
    row: dict = field(default_factory=dict)
    slide_file: Path | None = None
    slide_error: str = ""
    damaged: bool = False  # its tsr.json does not read back

    @property
    def finished(self) -> bool:
        return self.folder is not None and not self.damaged and (self.folder / TSR_JSON).is_file()

    def summary(self) -> dict:
        """The cohort page's row: numbers from cohort.csv (or tsr.json), and what can be shown."""
        keys = ("tsr", "stroma_fraction", "category", "hotspot_tsr", "hotspot_stroma_fraction",
                "tissue_area_mm2", "n_tiles", "stroma_fraction_low", "stroma_fraction_high", "near_cutoff")
        out = {"slide_id": self.slide_id, "path": self.recorded_path, "status": self.status,
               "error": self.error, "finished": self.finished, "slide_error": self.slide_error}
        out.update({k: _json_value(self.row.get(k)) for k in keys})
        return out


class OutputFolder:
    """The slides of one output folder, read once at start (the folder is not watched)."""

    def __init__(self, root: str | Path, slide_dirs: Sequence[str | Path] = ()) -> None:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such folder")
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: not a folder (expected the --out folder of `ldcsf slide`)")
        self.root = root.resolve()
        self.search_dirs = [Path(d) for d in slide_dirs]
        for folder in self.search_dirs:
            if not folder.is_dir():
                raise NotADirectoryError(f"{folder}: --slides must name a folder")
        self.entries: dict[str, SlideEntry] = {}
        for entry in self._discover():
            self.entries[entry.slide_id] = entry
        if not self.entries:
            raise ValueError(
                f"{root}: not an `ldcsf slide` output folder (no {COHORT_CSV} and no <slide>/{TSR_JSON} in it)"
            )
        for entry in self.entries.values():
            self._locate(entry)

    # -- discovery -----------------------------------------------------------------------------
    def _discover(self) -> list[SlideEntry]:
        if (self.root / TSR_JSON).is_file():  # a single slide's folder
            return [self._from_tsr_json(self.root)]
        entries: dict[str, SlideEntry] = {}
        cohort = self.root / COHORT_CSV
        if cohort.is_file():
            try:
                table = pd.read_csv(cohort, dtype={"slide_id": str, "path": str, "status": str, "error": str})
            except (ValueError, pd.errors.ParserError) as err:
                raise ValueError(f"{cohort}: not a cohort table written by ldcsf ({err})") from None
            if "slide_id" not in table.columns:
                raise ValueError(f"{cohort}: not a cohort table written by ldcsf (no slide_id column)")
            for row in table.to_dict("records"):
                # cohort.csv guards cells a spreadsheet would run as formulas: read the guard back
                row = {key: formula_guard_removed(value) for key, value in row.items()}
                slide_id = str(row["slide_id"])
                folder = self._child(slide_id)
                entries[slide_id] = SlideEntry(
                    slide_id=slide_id, recorded_path=_text(row.get("path")), status=_text(row.get("status")) or "ok",
                    error=_text(row.get("error")), folder=folder, row=row,
                )
        # Finished slide folders missing from cohort.csv (e.g. a run still going) are shown too.
        for tsr in sorted(self.root.glob(f"*/{TSR_JSON}")):
            if tsr.parent.name not in entries:
                entry = self._from_tsr_json(tsr.parent)
                entries[entry.slide_id] = entry
        return list(entries.values())

    def _child(self, slide_id: str) -> Path | None:
        """The slide's folder under the root, or None (also for ids that would leave the root)."""
        if not slide_id or slide_id in (".", "..") or "/" in slide_id or "\\" in slide_id:
            return None
        folder = self.root / slide_id
        return folder if folder.is_dir() else None

    def _from_tsr_json(self, folder: Path) -> SlideEntry:
        try:
            info = read_tsr_json(folder)
        except ValueError as err:  # one bad record: that slide is shown as failed, the others open
            return SlideEntry(slide_id=folder.name, recorded_path="", status="failed", error=str(err), folder=folder,
                              damaged=True)
        row = dict(info.get("cohort_row") or {})
        slide_id = str(info.get("slide_id") or folder.name)
        return SlideEntry(slide_id=slide_id, recorded_path=str(info.get("slide_path", "")), status=row.get("status", "ok"),
                          error="", folder=folder, row=row)

    # -- slide files ---------------------------------------------------------------------------
    def _locate(self, entry: SlideEntry) -> None:
        """Find the slide file: as recorded, beside the output folder, or in a --slides folder."""
        # recorded as printable text: bytes of the name that are not UTF-8 are \xNN escapes
        recorded = Path(name_from_printable(entry.recorded_path)) if entry.recorded_path else None
        candidates: list[Path] = []
        if recorded is not None:
            candidates.append(recorded)
            if not recorded.is_absolute():  # recorded relative to where `ldcsf slide` ran
                candidates.append(self.root.parent / recorded)
            candidates += [folder / recorded.name for folder in self.search_dirs]
        for path in candidates:
            if path.is_file():
                entry.slide_file = path.resolve()
                return
        if recorded is None:
            entry.slide_error = "no slide file recorded for this slide"
        else:
            where = " or in " + ", ".join(map(str, self.search_dirs)) if self.search_dirs else ""
            entry.slide_error = (
                f"slide file {recorded} not found{where} (moved since the run?); "
                "pass --slides FOLDER to say where it is now"
            )


#: Keys earlier versions wrote to tsr.json, and their names now: old outputs still open.
RENAMED_KEYS = {"tumour_area_mm2": "tumor_area_mm2", "tumour_at_borders": "tumor_at_borders"}


def read_tsr_json(folder: Path) -> dict:
    path = folder / TSR_JSON
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a tsr.json written by ldcsf ({err})") from None
    if not isinstance(info, dict) or "labels" not in info or "dimensions" not in info:
        raise ValueError(f"{path}: not a tsr.json written by ldcsf (no labels or dimensions)")
    dims, labels = info["dimensions"], info["labels"]
    if not (isinstance(dims, list) and len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims)):
        raise ValueError(f"{path}: damaged tsr.json (dimensions {dims!r} are not two whole numbers of pixels)")
    if not (isinstance(labels, list) and labels and all(isinstance(name, str) for name in labels)):
        raise ValueError(f"{path}: damaged tsr.json (labels {labels!r} are not a list of names)")
    for part in ("tsr", "hotspot", "hotspot_search"):
        if isinstance(info.get(part), dict):
            info[part] = {RENAMED_KEYS.get(k, k): v for k, v in info[part].items()}
    return info


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _json_value(value):
    """Numbers and text as JSON has them (NaN and infinities become null)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None
