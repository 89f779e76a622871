"""Everything written for one analysed slide, and the slide's row of cohort.csv.

The writer is given the analysis (`ldcsf.analysis.slide_analysis.analyse_slide`) and computes
no number of its own: it draws, tabulates and records.

Files in the slide's output folder (each written atomically, each by one writer of
`slide_writers.SLIDE_OUTPUTS`; `outputs` chooses among them):
    tiles.parquet, tiles.csv   the tile table as given
    overlay.png                class map over the thumbnail, hotspot outlined (sub-tile with an area head)
    heatmap_<label>.png        probability of each label, with a colour bar (estimated area
                               fraction, finer than one tile, with an area head)
    tiles.geojson              tiles and hotspot for QuPath (File > Import objects)
    report.html                one self-contained page with the numbers and pictures
    subtile_maps.npz           the sub-tile area maps (tile_id, labels, maps), with an area head
    tsr.json                   all numbers and settings, and the files written; written LAST: its
                               presence marks the slide as finished, so a crash midway leaves the
                               slide to be redone
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from ..analysis.slide_analysis import SlideAnalysis
from . import slide_writers
from .slide_record import (  # noqa: F401 - the record's names are also imported from here
    TSR_JSON,
    cohort_row,
    cohort_summary_columns,
    interval_fields,
    member_fields,
    read_cohort_row,
    read_slide_record,
    tsr_record,
)
from .slide_writers import (  # noqa: F401 - the file names are also imported from here
    GEOJSON,
    OVERLAY_PNG,
    REPORT_HTML,
    SUBTILE_MAPS,
    SlideToWrite,
    chosen_outputs,
    heatmap_filename,
    write_bytes_atomic,
)


def write_slide_outputs(
    out_dir: Path,
    analysis: SlideAnalysis,
    *,
    slide_id: str,
    slide_path: str,
    thumbnail: Image.Image | None,
    thumbnail_downsample: float,
    settings: dict,
    pictures: bool = True,
    outputs: Sequence[str] | None = None,
) -> dict:
    """Write the outputs of one analysed slide (`ldcsf.analysis.slide_analysis`); return its cohort row.

    Args:
        out_dir: the slide's output folder (created).
        analysis: the slide's tile table, TSR, hotspot and label summary, as `analyse_slide` gives them.
        slide_id, slide_path: how the slide is named in outputs.
        thumbnail: the slide's thumbnail; thumbnail_downsample: level-0 pixels per thumbnail pixel.
        settings: what produced the predictions (checkpoint, model, tile size, ...): copied
            into tsr.json and the report.
        pictures: draw overlay.png and the heatmaps (and show them in the report).
        outputs: the names of the writers to run (`slide_writers.output_names()`; None: all);
            tsr.json is always written. ValueError (one line) for an unknown name.
    """
    registry = slide_writers.SLIDE_OUTPUTS  # read at call time: a writer added to it takes part
    chosen = chosen_outputs(outputs, pictures=pictures, registry=registry)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # An old marker would claim this folder is complete while its files are being replaced.
    (out_dir / TSR_JSON).unlink(missing_ok=True)
    row = cohort_row(slide_id, slide_path, analysis.tsr, analysis.hotspot, analysis.stroma_interval,
                     analysis.hotspot_interval)
    everything = chosen == chosen_outputs(registry=registry)
    slide = SlideToWrite(out_dir, analysis, slide_id, slide_path,
                         None if thumbnail is None else thumbnail.convert("RGB"), thumbnail_downsample, settings, row,
                         outputs=None if everything else chosen)
    for output in registry:
        if (output.always or output.name in chosen) and output.applies(slide):
            slide.files += output.write(slide)
    return row
