"""One slide, start to finish, in four plain steps:

    plan (`plan.plan_slide`)            slide opened, µm/px, tile spec, tissue, tiles, thumbnail
    predict (`slide_prediction`)        probabilities and areas into the tile table
    analyse (`ldcsf.analysis.slide_analysis`)  TSR, hotspot, label summary
    write (`ldcsf.export.slide_outputs`)       the files, computing nothing

    result = run_slide("case1.svs", "model.pt", "runs/cohort/case1")
    result.status, result.row["stroma_fraction"]

The slide's folder is complete once `tsr.json` exists (the export writes it last); such a slide
is skipped on a rerun when `inputs.json` shows it was made from the same slide, checkpoint and
settings, and refused otherwise (`fingerprint`). Predictions go to `<folder>/.parts/` batch by
batch while the slide runs, so an interrupted slide continues from its last complete batch; the
parts are removed once the outputs are written.

Which outputs are written (`SlideSettings.outputs`) is no part of what results are made from: a
slide written with some of them keeps its parts, and a rerun asking for outputs it lacks adds
them (with those it has) from the parts, without predicting again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..analysis.slide_analysis import SlideAnalysis, analyse_slide
from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..checkpoint_safety import check_interval_calibration
from ..options import SlideSettings
from ..utils.paths import check_output_dir, printable_name, safe_name
from ..wsi.formats import slide_name
from .prediction_store import PredictionStore
from .fingerprint import claim_output, result_fingerprint
from .input_checks import check_tsr_labels
from .plan import (  # noqa: F401 - THUMBNAIL_SIZE and NoTissueError are also imported from here
    THUMBNAIL_SIZE,
    NoTissueError,
    SlidePlan,
    check_slide_path,
    parts_fingerprint,
    plan_slide,
    recorded_settings,
)
from ..inference.runtimes import check_runtime_device, resolve_runtime
from .slide_prediction import add_predictions, predict_slide, stain_norm_for  # noqa: F401 - add_predictions too
from .core_split import settle_split

PARTS_DIR = ".parts"

log = logging.getLogger(__name__)


def slide_id_for(path: str | Path) -> str:
    """Output folder name of a slide: its format's name for it (`wsi.formats.slide_name`: the file
    name without the format's ending, a DICOM series' container id), as a safe name."""
    return safe_name(slide_name(path))


def finished_row(slide_dir: str | Path) -> dict | None:
    """The cohort row of a finished slide's folder (its tsr.json read back), or None if unfinished.

    A damaged tsr.json (a disk fault, an edit) is that slide's problem alone: it counts as
    unfinished, so the slide is redone, with a warning that names the file.
    """
    record = finished_record(slide_dir)
    return None if record is None else record["cohort_row"]


def finished_record(slide_dir: str | Path) -> dict | None:
    """The tsr.json of a finished slide's folder, or None if unfinished (or damaged: see `finished_row`)."""
    from ..export.slide_outputs import TSR_JSON, read_slide_record

    if not (Path(slide_dir) / TSR_JSON).is_file():
        return None
    try:
        return read_slide_record(slide_dir)
    except (OSError, ValueError) as err:
        log.warning("%s; the slide is predicted again", err)
        return None


def settle_runtime(settings: SlideSettings, loaded: LoadedCheckpoint) -> None:
    """Put the runtime that will run the model in `settings` (`--runtime auto` decided once, kept for
    a cohort's other slides, and recorded in tsr.json as what ran), with the model it needs made
    now: a model that cannot be built or exported fails here, before any slide is read."""
    from ..export_record import checkpoint_export
    from ..inference.runtime_packages import check_installed
    from ..inference.runtimes import get_runtime, runtime_model

    settings.runtime = resolve_runtime(settings.runtime, loaded, settings.accelerator, settings.precision)
    entry = get_runtime(settings.runtime)
    if entry.engine is not None and checkpoint_export(loaded)[1] is not None:
        # A trusted exported file: its engine is built where the slide is predicted, which for a small
        # slide on ONNX Runtime needs no torch at all (`onnx_prediction`).
        check_installed(entry.needs, entry.name, entry.extra)
        return
    runtime_model(loaded, settings.runtime)


@dataclass
class SlideResult:
    """What `run_slide` did for one slide.

    status: "ok" (predicted and written now), "skipped" (the folder already held this slide's
    finished results) or "not_written" (a process other than global rank 0 under DDP: it
    predicted its share, rank 0 wrote the outputs).
    """

    slide_id: str
    out_dir: Path
    status: str
    row: dict = field(default_factory=dict)  # the slide's cohort.csv row; empty when "not_written"
    plan: SlidePlan | None = None  # None when skipped
    analysis: SlideAnalysis | None = None  # None unless "ok"

    @property
    def written(self) -> bool:
        """Whether this process has the slide's results (and so reports its row)."""
        return bool(self.row)


def run_slide(
    slide_path: str | Path,
    checkpoint: str | Path | LoadedCheckpoint,
    out_dir: str | Path,
    settings: SlideSettings | None = None,
    *,
    slide_id: str | None = None,
    callbacks: Sequence = (),
) -> SlideResult:
    """Predict one slide into `out_dir` (its own folder): plan, predict, analyse, write.

    A slide whose folder is already complete is not redone (status "skipped", its earlier
    numbers). Raises ValueError / FileNotFoundError (one line) for an unreadable slide,
    a missing µm/px, or a slide without tissue (`NoTissueError`).

    Under a multi-process strategy (DDP) every process calls this; all predict their share
    and only global rank 0 writes the outputs (the others get status "not_written").
    """
    from ..export.slide_outputs import write_slide_outputs
    from ..export.slide_writers import chosen_outputs, recorded_outputs

    settings = settings or SlideSettings()
    outputs = chosen_outputs(settings.outputs, pictures=settings.pictures)  # an unknown name: refused here
    slide_path = Path(slide_path)
    slide_id = slide_id or slide_id_for(slide_path)
    out_dir = check_output_dir(out_dir)
    check_slide_path(slide_path)
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint, lazy=True)
    check_runtime_device(settings.runtime, settings.accelerator)
    settle_runtime(settings, loaded)
    meta = loaded.meta
    check_tsr_labels(meta.labels, str(loaded.path))
    calibration = check_interval_calibration(loaded.path, meta.interval_calibration)  # before any work
    # Claimed before the slide is opened: a finished slide is skipped, a foreign folder refused, unread.
    fingerprint = result_fingerprint(slide_path, loaded, settings)
    earlier = finished_record(out_dir)
    if claim_output(out_dir, fingerprint, finished=earlier is not None, overwrite=settings.overwrite):
        had = recorded_outputs(earlier)
        if set(outputs) <= set(had):
            row = {**earlier["cohort_row"], "status": "skipped", "error": ""}
            return SlideResult(slide_id, out_dir, "skipped", row)
        outputs = chosen_outputs(sorted({*had, *outputs}))  # added beside those it has, from the kept parts
        log.info("%s: adding %s to the finished slide", slide_id, ", ".join(o for o in outputs if o not in had))

    plan = plan_slide(slide_path, meta, settings, slide_id)
    stain_norm = stain_norm_for(meta, settings.stain_norm)
    store = PredictionStore(out_dir / PARTS_DIR, parts_fingerprint(plan, loaded, settings, stain_norm))
    if len(store.done_indices()) < len(plan.tiles):  # every tile in the parts (outputs added): no reader to time
        settings = settle_split(settings, loaded, slide_path, plan.boxes)
    predictions = predict_slide(plan, loaded, settings, store, stain_norm, callbacks=callbacks)
    if predictions is None:
        return SlideResult(slide_id, out_dir, "not_written", plan=plan)

    extra = {} if settings.field_diameter_um is None else {"field_diameter_um": settings.field_diameter_um}
    analysis = analyse_slide(predictions.tiles, predictions.labels, predictions.thresholds, plan.mpp,
                             plan.dimensions, area_maps=predictions.area_maps, slide_id=slide_id,
                             member_tiles=predictions.member_tiles,
                             interval_calibration=calibration,
                             **extra)
    row = write_slide_outputs(
        out_dir, analysis, slide_id=slide_id, slide_path=printable_name(slide_path), thumbnail=plan.thumbnail,
        thumbnail_downsample=plan.thumbnail_downsample,
        settings=recorded_settings(plan, loaded, settings, stain_norm), outputs=outputs,
    )
    if outputs == chosen_outputs():
        store.clear()  # every output is written: the parts are no longer needed
    return SlideResult(slide_id, out_dir, "ok", row, plan=plan, analysis=analysis)
