"""The outputs of one analysed slide, as a list of declared writers.

Each `SlideOutput` states its name (what `ldcsf slide --outputs` takes), the files it writes,
whether it is a picture, and what it needs of the slide (a writer whose need is missing, as
`subtile-maps` without an area head, writes nothing). `write_slide_outputs` walks
`SLIDE_OUTPUTS` in order; the files each writer returns become tsr.json's file list, and
tsr.json itself is the last entry, always written.

    parquet        tiles.parquet        the tile table (the viewer reads it)
    csv            tiles.csv            the same table for spreadsheets
    overlay        overlay.png          class map over the thumbnail, hotspot outlined
    heatmaps       heatmap_<label>.png  probability (or estimated area) of each label
    geojson        tiles.geojson        tiles and hotspot for QuPath
    report         report.html          one page with the numbers and the pictures drawn
    subtile-maps   subtile_maps.npz     the sub-tile area maps of a model with an area head
    tsr.json       tsr.json             every number and setting; always, and last

Writers only draw, tabulate and record what the analysis holds; the thumbnail is converted
once for all of them. The plotting and table modules are imported inside the writers: the
command line reads the names here while it builds its parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..utils.atomic import atomic_path, write_json_atomic, write_text_atomic
from .slide_record import TSR_JSON, tsr_record

if TYPE_CHECKING:
    from PIL import Image

    from ..analysis.slide_analysis import SlideAnalysis

OVERLAY_PNG = "overlay.png"
SUBTILE_MAPS = "subtile_maps.npz"
GEOJSON = "tiles.geojson"
REPORT_HTML = "report.html"


def heatmap_filename(label: str) -> str:
    """heatmap_<label>.png with the label made safe for any file system."""
    return f"heatmap_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}.png"


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


@dataclass
class SlideToWrite:
    """What every writer is given: the analysis, how the slide is named, its thumbnail and settings.

    `images` collects the pictures drawn so far, (caption, png), for the report; `files` the
    names written so far, for tsr.json; `row` is the slide's cohort.csv row.
    """

    out_dir: Path
    analysis: SlideAnalysis
    slide_id: str
    slide_path: str
    thumbnail: Image.Image | None  # RGB
    thumbnail_downsample: float
    settings: dict
    row: dict
    outputs: list[str] | None = None  # recorded in tsr.json when not all were chosen
    images: list[tuple[str, bytes]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def area_maps(self):
        return self.analysis.area_maps


@dataclass(frozen=True)
class SlideOutput:
    """One output of a slide: `write(slide)` writes its files and returns their names."""

    name: str
    files: str  # the files, as the help and the docs name them
    write: Callable[[SlideToWrite], list[str]]
    picture: bool = False  # left out by --no-pictures
    needs: tuple[str, ...] = ()  # SlideToWrite attributes that must not be None, else nothing is written
    always: bool = False  # written whatever is chosen (tsr.json)

    def applies(self, slide: SlideToWrite) -> bool:
        return all(getattr(slide, need) is not None for need in self.needs)


def _write_parquet(slide: SlideToWrite) -> list[str]:
    from .tables import write_parquet

    return [write_parquet(slide.analysis.tiles, slide.out_dir / "tiles.parquet").name]


def _write_csv(slide: SlideToWrite) -> list[str]:
    from .tables import write_csv

    return [write_csv(slide.analysis.tiles, slide.out_dir / "tiles.csv").name]


def _overlay_title(slide: SlideToWrite) -> str:
    tsr, hotspot = slide.analysis.tsr, slide.analysis.hotspot
    stroma_text = "–" if tsr.stroma_fraction is None else f"{tsr.stroma_fraction:.0%}"
    title = f"{slide.slide_id}: stroma {stroma_text} ({tsr.category})"
    if hotspot is not None:
        title += f", hotspot stroma {hotspot.stroma_fraction:.0%}"
    return title


def _write_overlay(slide: SlideToWrite) -> list[str]:
    from . import figures

    analysis, area_maps = slide.analysis, slide.area_maps
    if area_maps is None:
        figure = figures.plot_class_overlay(slide.thumbnail, slide.thumbnail_downsample, analysis.tiles,
                                            analysis.labels, analysis.thresholds, analysis.hotspot,
                                            title=_overlay_title(slide))
        caption = "Most probable positive label per tile, hotspot outlined"
    else:
        from .subtile_figures import plot_subtile_overlay

        figure = plot_subtile_overlay(slide.thumbnail, slide.thumbnail_downsample, analysis.tiles, area_maps,
                                      analysis.labels, analysis.hotspot, title=_overlay_title(slide))
        caption = "Label with the largest estimated area per sub-tile cell, hotspot outlined"
    png = figures.figure_to_png(figure)
    slide.images.append((caption, png))
    return [write_bytes_atomic(slide.out_dir / OVERLAY_PNG, png).name]


def _heatmap_png(slide: SlideToWrite, i: int, name: str) -> tuple[str, bytes]:
    """(caption, PNG bytes) of label `name`'s map: its probability, or its estimated area."""
    from . import figures

    analysis, area_maps, tiles = slide.analysis, slide.area_maps, slide.analysis.tiles
    if area_maps is None:
        mean = tiles[f"prob_{name}"].mean() if len(tiles) else float("nan")
        figure = figures.plot_probability_heatmap(
            slide.thumbnail, slide.thumbnail_downsample, tiles, name, analysis.hotspot,
            title=f"{slide.slide_id}: probability of {name} (mean {mean:.2f})")
        caption = f"Probability of {name}"
    else:
        from .subtile_figures import plot_area_heatmap

        mean = tiles[f"area_{name}"].mean() if len(tiles) else float("nan")
        figure = plot_area_heatmap(
            slide.thumbnail, slide.thumbnail_downsample, tiles, area_maps[:, i], name, analysis.hotspot,
            title=f"{slide.slide_id}: estimated area of {name} (mean {mean:.2f})")
        caption = f"Estimated area fraction of {name}"
    return caption, figures.figure_to_png(figure)


def _write_heatmaps(slide: SlideToWrite) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    from ..utils.workers import usable_cores

    labels = slide.analysis.labels
    # One map per label, drawn side by side: Pillow and NumPy release the GIL while they resize,
    # blend and compress, so on two cores the four maps take about the time of two or three.
    with ThreadPoolExecutor(max_workers=max(1, min(len(labels), usable_cores()))) as pool:
        pictures = list(pool.map(lambda pair: _heatmap_png(slide, *pair), enumerate(labels)))
    written = []
    for name, (caption, png) in zip(labels, pictures):
        slide.images.append((caption, png))
        written.append(write_bytes_atomic(slide.out_dir / heatmap_filename(name), png).name)
    return written


def _write_geojson(slide: SlideToWrite) -> list[str]:
    from .geojson import tiles_to_geojson, write_geojson

    analysis = slide.analysis
    collection = tiles_to_geojson(analysis.tiles, analysis.labels, analysis.thresholds, analysis.hotspot,
                                  slide_id=slide.slide_id, dimensions=analysis.dimensions)
    return [write_geojson(slide.out_dir / GEOJSON, collection).name]


def _write_report(slide: SlideToWrite) -> list[str]:
    from .. import __version__
    from .report import render_report

    analysis = slide.analysis
    write_text_atomic(slide.out_dir / REPORT_HTML, render_report(
        slide_id=slide.slide_id, slide_path=str(slide.slide_path), mpp=analysis.mpp, dimensions=analysis.dimensions,
        tsr=analysis.tsr, hotspot=analysis.hotspot, hotspot_note=analysis.hotspot_search.reason,
        labels=analysis.labels, thresholds=analysis.thresholds, label_table=analysis.label_summary,
        images=slide.images, settings=slide.settings, version=__version__, interval=analysis.stroma_interval,
        hotspot_interval=analysis.hotspot_interval,
    ))
    return [REPORT_HTML]


def _write_subtile_maps(slide: SlideToWrite) -> list[str]:
    import numpy as np

    tiles, labels = slide.analysis.tiles, slide.analysis.labels
    with atomic_path(slide.out_dir / SUBTILE_MAPS) as tmp, open(tmp, "wb") as handle:  # a handle: no ".npz" added
        np.savez_compressed(handle, tile_id=tiles["tile_id"].to_numpy(), labels=np.array(labels),
                            maps=slide.area_maps.astype(np.float16))
    return [SUBTILE_MAPS]


def _write_tsr_json(slide: SlideToWrite) -> list[str]:
    # Lists itself first, as tsr.json always has; written last, it marks the folder finished.
    files = [TSR_JSON, *slide.files]
    write_json_atomic(slide.out_dir / TSR_JSON, tsr_record(slide.analysis, slide.slide_id, slide.slide_path,
                                                           slide.settings, slide.row, files, slide.outputs))
    return [TSR_JSON]


#: Every output, in the order they are written and listed in tsr.json; tsr.json last.
SLIDE_OUTPUTS: list[SlideOutput] = [
    SlideOutput("parquet", "tiles.parquet", _write_parquet),
    SlideOutput("csv", "tiles.csv", _write_csv),
    SlideOutput("overlay", OVERLAY_PNG, _write_overlay, picture=True, needs=("thumbnail",)),
    SlideOutput("heatmaps", "heatmap_<label>.png", _write_heatmaps, picture=True, needs=("thumbnail",)),
    SlideOutput("geojson", GEOJSON, _write_geojson),
    SlideOutput("report", REPORT_HTML, _write_report),
    SlideOutput("subtile-maps", SUBTILE_MAPS, _write_subtile_maps, needs=("area_maps",)),
    SlideOutput("tsr.json", TSR_JSON, _write_tsr_json, always=True),
]


def output_names(registry: Sequence[SlideOutput] | None = None) -> list[str]:
    """The names `--outputs` takes (tsr.json, always written, is not one of them)."""
    return [output.name for output in (SLIDE_OUTPUTS if registry is None else registry) if not output.always]


def chosen_outputs(names: Sequence[str] | None = None, *, pictures: bool = True,
                   registry: Sequence[SlideOutput] | None = None) -> list[str]:
    """The outputs to write, in the registry's order: `names` (None: all), less the pictures when `pictures` is off.

    ValueError (one line, listing the valid names) for a name no writer has.
    """
    registry = SLIDE_OUTPUTS if registry is None else registry
    valid = output_names(registry)
    if names is not None:
        unknown = [name for name in names if name not in valid]
        if unknown:
            raise ValueError(f"--outputs: no output named {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(valid)} (tsr.json is always written)")
    wanted = set(valid if names is None else names)
    return [o.name for o in registry if o.name in wanted and not (o.picture and not pictures)]


def recorded_outputs(record: dict) -> list[str]:
    """The outputs a finished slide's tsr.json says were chosen.

    Recorded only when not all were; before `--outputs` existed a folder could lack only the
    pictures (`--no-pictures`), seen by its missing overlay.png.
    """
    if isinstance(record.get("outputs"), list):
        return [name for name in output_names() if name in record["outputs"]]
    return chosen_outputs(pictures=OVERLAY_PNG in (record.get("files") or []))
