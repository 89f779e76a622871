"""Many slides: each into OUT_DIR/<slide-id>/, one row each in OUT_DIR/cohort.csv.

A slide that fails (unreadable, no µm/px, no tissue) is recorded with its error and the others
go on; cohort.csv is rewritten (atomically) after every slide, so it always shows where a run
got to. Rerunning the same command skips finished slides and resumes an interrupted one.

cohort.csv is rebuilt from every slide folder's own record (tsr.json, or failed.json), so runs
that share an output folder (one per slide of a scheduler's array, say) all appear in it. Each
slide folder is locked while a process works on it; a second process reports it as busy.
A full disk stops the cohort at once (every later slide would fail the same way).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from ..utils.progress import tqdm  # bars in a terminal, lines in a log

from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..export.spreadsheet import FORMULA_STARTS, guarded_cell  # noqa: F401 - FORMULA_STARTS is also imported from here
from ..utils.atomic import sweep_stale_temporaries, write_json_atomic
from ..utils.paths import check_output_dir, path_inside, printable_name
from ..utils.workers import global_rank
from ..wsi.formats import SLIDE_EXTENSIONS, find_slides, named_like_a_slide, one_entry_per_slide
from .fingerprint import OutputMismatchError
from .input_checks import check_tsr_labels
from ..inference.runtimes import check_runtime_device
from .pipeline import SlideSettings, run_slide, settle_runtime, slide_id_for

log = logging.getLogger(__name__)

COHORT_CSV = "cohort.csv"
#: A slide folder's record of its last failure (removed when the slide finishes).
FAILED_JSON = "failed.json"
LOCK_FILE = ".lock"
COHORT_LOCK_FILE = ".cohort.lock"
#: Temporaries at the output root older than this are left-overs of a killed run (seconds).
STALE_TEMPORARY_S = 600
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
        if item.is_symlink() and not item.exists():  # a loop or a dangling link: that slide fails alone
            slides.append(item)
            continue
        if not item.exists():
            raise FileNotFoundError(f"{item}: no such slide, folder or list file")
        if item.is_dir() and named_like_a_slide(item) and next(find_slides(item, exclude), None) is None:
            slides.append(item)  # a folder named like a slide: it fails alone, as what it is
            continue
        if item.is_dir():
            found = sorted(find_slides(item, exclude))
            if not found:
                raise ValueError(f"{item}: no slide files in this folder (looked for {', '.join(SLIDE_EXTENSIONS)})")
            slides += found
        elif item.suffix.lower() in LIST_EXTENSIONS:
            slides += _read_list(item)
        else:
            slides.append(item)
    if not slides:
        raise ValueError("no slides given")
    slides = one_entry_per_slide(slides)  # a DICOM series' files: one slide
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
    from ..export.slide_writers import chosen_outputs

    settings = settings or SlideSettings()
    chosen_outputs(settings.outputs, pictures=settings.pictures)  # an unknown output name stops here, before any slide
    out_dir = check_output_dir(out_dir)
    sweep_stale_temporaries(out_dir, min_age_s=STALE_TEMPORARY_S)
    paths = collect_slides(slides, exclude=out_dir)
    # Load once for the whole cohort; a bad checkpoint stops here, before any slide.
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint, lazy=True)
    check_tsr_labels(loaded.meta.labels, str(loaded.path))
    check_runtime_device(settings.runtime, settings.accelerator)
    settle_runtime(settings, loaded)  # a model that cannot run stops here too
    columns = cohort_columns()
    rows: list[dict] = []
    table_writes = TableWrites()
    bar = tqdm(paths, desc="cohort", unit="slide", disable=not settings.progress or len(paths) < 2)
    for number, path in enumerate(bar, 1):
        slide_id = slide_id_for(path)
        bar.set_postfix_str(slide_id)
        try:
            slide_dir = path_inside(out_dir, slide_id)
            with slide_folder_lock(slide_dir):
                sweep_stale_temporaries(slide_dir)  # ours alone while the lock is held
                row = run_slide(path, loaded, slide_dir, settings, slide_id=slide_id, callbacks=callbacks).row
                if row:
                    (slide_dir / FAILED_JSON).unlink(missing_ok=True)
        except Exception as err:  # noqa: BLE001 - one bad slide must not stop the cohort
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # a full disk fails every slide after this one too
            row = {"slide_id": slide_id, "path": printable_name(path), "status": "failed", "error": one_line(err)}
            if len(paths) > 1:
                log.warning("%s: failed: %s", slide_id, row["error"])
            _record_failure(out_dir, slide_id, row, err)
            if settings.strict:  # stop here, with the slide's one-line error
                raise ValueError(row["error"]) from err
        if not row:  # not global rank 0 under DDP: rank 0 writes the records
            continue
        rows.append(row)
        if global_rank() == 0 and table_writes.due(last=number == len(paths)):
            # Built and written under one lock: the last writer has seen every finished slide.
            with folder_lock(out_dir / COHORT_LOCK_FILE, wait=True), table_writes.timed():
                write_cohort_csv(cohort_table(out_dir, rows), out_dir / COHORT_CSV)
    return with_integer_counts(pd.DataFrame(rows).reindex(columns=columns))


class TableWrites:
    """When to rewrite cohort.csv: after a slide, unless the last rewrite is too recent.

    Rebuilding the table reads every slide folder, so rewriting it after each of n slides that
    fail at once (a list of missing files) costs n². A rewrite is skipped until `SPACING` times
    its own cost has passed since the last one, so bookkeeping stays a fixed share of the run
    (linear in slides); after a slide that took longer than that, as real slides do, the table
    is rewritten at once. The last slide always rewrites it.
    """

    SPACING = 4.0

    def __init__(self) -> None:
        self._ended = -math.inf
        self._cost = 0.0

    def due(self, *, last: bool) -> bool:
        return last or time.monotonic() - self._ended >= self.SPACING * self._cost

    @contextmanager
    def timed(self):
        started = time.monotonic()
        try:
            yield
        finally:
            self._ended = time.monotonic()
            self._cost = self._ended - started


def cohort_table(out_dir: Path, rows: list[dict]) -> pd.DataFrame:
    """This run's rows, then the recorded result of every other slide folder in `out_dir`."""
    from ..export.slide_outputs import TSR_JSON, read_cohort_row

    ours = {row["slide_id"] for row in rows}
    others = []
    for folder in sorted(p for p in Path(out_dir).iterdir() if p.is_dir() and p.name not in ours):
        try:
            if (folder / TSR_JSON).is_file():
                others.append(read_cohort_row(folder))
            elif (folder / FAILED_JSON).is_file():
                others.append(json.loads((folder / FAILED_JSON).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a folder being written right now, or not ldcsf's: not part of the table
    return with_integer_counts(pd.DataFrame(rows + others).reindex(columns=cohort_columns()))


def with_integer_counts(table: pd.DataFrame) -> pd.DataFrame:
    """n_tiles as whole numbers, empty for failed slides (not 50.0 beside a NaN)."""
    if "n_tiles" in table.columns:
        table["n_tiles"] = pd.to_numeric(table["n_tiles"], errors="coerce").round().astype("Int64")
    return table


def write_cohort_csv(table: pd.DataFrame, path: Path) -> None:
    from ..utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        spreadsheet_safe(table).to_csv(tmp, index=False)


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading apostrophe (OWASP's advice);
    names with bytes that are not UTF-8 (from older records) are made printable."""
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object or pd.api.types.is_string_dtype(table[column]):
            table[column] = table[column].map(guarded_cell)
    return table



@contextmanager
def slide_folder_lock(slide_dir: Path):
    """Hold an exclusive lock on a slide folder, or fail at once if another process holds it."""
    slide_dir.mkdir(parents=True, exist_ok=True)
    if global_rank() != 0:  # under DDP the processes of one run share the slide
        yield
        return
    with folder_lock(slide_dir / LOCK_FILE, wait=False, busy=f"{slide_dir}: another ldcsf run is working "
                                                            "on this slide now; rerun when it ends"):
        yield


@contextmanager
def folder_lock(lock_path: Path, *, wait: bool, busy: str = ""):
    """An advisory exclusive lock (flock) on `lock_path`; without `wait`, RuntimeError(busy) if taken."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs sharing one folder are not guarded there
        yield
        return
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RuntimeError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _record_failure(out_dir: Path, slide_id: str, row: dict, err: Exception) -> None:
    """Keep the failure in the slide's own folder, so other runs' cohort tables show it too."""
    if isinstance(err, OutputMismatchError) or "another ldcsf run" in row["error"]:
        return  # the folder belongs to other results, or to a run in progress
    try:
        slide_dir = path_inside(out_dir, slide_id)
        if slide_dir.is_dir():
            write_json_atomic(slide_dir / FAILED_JSON, row)
    except (OSError, ValueError):
        pass


def one_line(err: BaseException) -> str:
    """An error as one line. Errors raised in DataLoader workers arrive wrapped with the worker's
    traceback; their last line is the original message."""
    lines = [line for line in printable_name(str(err)).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if len(lines) == 1:
        return lines[0]
    last = lines[-1].strip()
    return last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith(("Error", "Exception")) else last


def _read_list(list_path: Path) -> list[Path]:
    if list_path.suffix.lower() == ".csv":
        from io import StringIO

        table = pd.read_csv(StringIO(read_utf8(list_path)), dtype=str)
        column = next((c for c in table.columns if c.strip().lower() in LIST_PATH_COLUMNS), table.columns[0])
        entries = table[column].dropna().str.strip().tolist()
    else:
        lines = read_utf8(list_path).splitlines()
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise ValueError(f"{list_path}: the slide list is empty")
    return [p if p.is_absolute() else list_path.parent / p for p in map(Path, entries)]


def read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); save the list as UTF-8") from None
