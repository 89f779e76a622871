"""QuPath annotations as training data: GeoJSON regions -> labelled tiles with per-pixel masks.

QuPath exports annotations (File > Export objects as GeoJSON) as a GeoJSON FeatureCollection, or
a bare list of Features, in level-0 pixel coordinates of the slide; each region's class is
`properties.classification.name`. A mapping table (`mappings/qupath.csv`, or the user's own CSV
with columns `source_class,target`) turns class names into a target: a label (`tumor`,
`stroma`, `non_tumor`, `necrosis`), `background` (no tissue: every label absent) or `ignore`
(its pixels stay unannotated).

Regions are rasterised tile by tile at the model's µm/px (shapely for the geometry, scikit-image
for the pixels). Larger regions are painted first, so a region drawn inside another wins where
they overlap (QuPath's usual nesting: a Tumor region inside a Region* or Stroma one). Pixels no
region covers are *unannotated*: they count for no label. A tile is kept when at least
`min_annotated` of it is annotated; a label is present when it covers `present_at` of the tile,
absent only when it would stay under `absent_below` even if every unannotated pixel were of it,
and blank in between. Each tile's mask (WSSS4LUAD's values: 0 tumour, 1 stroma, 2 non-tumour,
3 no tumour/stroma/non-tumour, 255 unannotated) gives the area head its per-cell targets.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..labels import default_labels as project_labels
from ..utils.atomic import atomic_path
from .manifest import default_labels
from .mapping import mapping_path
from .masks import UNANNOTATED, WSSS4LUAD

log = logging.getLogger(__name__)


def _raster_codes() -> dict[str, int]:
    """Raster code per target: WSSS4LUAD's palette values, then the labels it has none for (necrosis
    4, any further label of `ldcsf.labels` the next), and `ignore` as unannotated. The tile mask PNG
    stores those beyond the palette as background: neither tumour, stroma nor non-tumour (the
    presence label still says necrosis)."""
    codes = {WSSS4LUAD.label_of.get(name, name): value for value, name in WSSS4LUAD.classes.items()}
    for label in project_labels():
        codes.setdefault(label, max(codes.values()) + 1)
    return codes | {"ignore": UNANNOTATED}


_CODE = _raster_codes()
_BACKGROUND_CODE = _CODE[WSSS4LUAD.background]
#: What a QuPath class can map to: a label, no tissue, or nothing known.
TARGETS = (*(t for t in _CODE if t not in (WSSS4LUAD.background, "ignore")), WSSS4LUAD.background, "ignore")
_FRACTION_OF = {label: label for label in project_labels()}
SHIPPED_MAPPING = "qupath"


@dataclass(frozen=True)
class Region:
    """One annotated polygon (or multipolygon) in level-0 pixels, with its QuPath class."""

    geometry: Any  # shapely Polygon or MultiPolygon
    class_name: str
    index: int  # position in the file, for messages


# -- the mapping table ----------------------------------------------------------------------------
def read_class_mapping(name_or_path: str | Path = SHIPPED_MAPPING) -> dict[str, str]:
    """{QuPath class name (lower case): target} from a CSV with `source_class` and `target` columns."""
    path = mapping_path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mapping table not found")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("source_class", "target") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: a QuPath mapping table needs columns source_class,target (missing {', '.join(missing)})")
    table: dict[str, str] = {}
    for i, (name, target) in enumerate(zip(raw["source_class"].str.strip(), raw["target"].str.strip()), start=2):
        if target not in TARGETS:
            raise ValueError(f"{path}: row {i}: target {target!r} is not one of {', '.join(TARGETS)}")
        if name.lower() in table:
            raise ValueError(f"{path}: row {i}: class {name!r} listed twice")
        table[name.lower()] = target
    return table


# -- reading GeoJSON ------------------------------------------------------------------------------
def read_regions(path: str | Path) -> list[Region]:
    """The classified polygons of a QuPath GeoJSON export; anything else in QuPath's form is skipped.

    Points and lines carry no area, detections, tiles and cells (`objectType` other than
    "annotation", e.g. ldcsf's own tiles imported into QuPath and exported again) are the model's,
    not the annotator's, and unclassified regions have no class: all are skipped with a log line.
    A file not in QuPath's form is an error.
    """
    import shapely
    from shapely.geometry import shape

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a GeoJSON file ({str(err).splitlines()[0]})") from None
    features = _features(path, data)
    regions, skipped_kind, unclassified = [], 0, 0
    for i, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(feature, dict) or feature.get("type") != "Feature" or not isinstance(geometry, dict):
            raise ValueError(f"{path}: feature {i} is not a GeoJSON Feature with a geometry (not a QuPath export)")
        properties = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
        object_type = properties.get("objectType", "annotation")  # QuPath < 0.3 wrote none
        if geometry.get("type") not in ("Polygon", "MultiPolygon") or object_type != "annotation":
            skipped_kind += 1  # points, lines, and detections/tiles/cells (e.g. ldcsf's own tiles re-exported)
            continue
        name = _class_name(feature.get("properties"))
        if name is None:
            unclassified += 1
            continue
        try:
            polygon = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError) as err:
            raise ValueError(f"{path}: feature {i} ({name}): unreadable {geometry.get('type')} ({err})") from None
        if not polygon.is_valid:  # self-touching outlines are common in hand-drawn regions
            polygon = _polygonal(shapely.make_valid(polygon))
        if not polygon.is_empty and polygon.area > 0:
            regions.append(Region(polygon, name, i))
    if skipped_kind or unclassified:
        log.info("%s: %d point, line or non-annotation object(s) and %d unclassified region(s) skipped", path,
                 skipped_kind, unclassified)
    if not regions:
        raise ValueError(f"{path}: no classified polygon in the file (QuPath: set a class on each region before exporting)")
    return regions


def _polygonal(geometry):
    """The polygons of a geometry (make_valid may return them with stray lines and points) as one MultiPolygon."""
    from shapely.geometry import MultiPolygon

    return MultiPolygon(list(_polygons(geometry)))


def _polygons(geometry):
    if geometry.geom_type == "Polygon":
        yield geometry
    elif hasattr(geometry, "geoms"):
        for part in geometry.geoms:
            yield from _polygons(part)


def _features(path: Path, data: Any) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection" and isinstance(data.get("features"), list):
        return data["features"]
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    kind = data.get("type") if isinstance(data, dict) else type(data).__name__
    raise ValueError(f"{path}: not QuPath's GeoJSON (expected a FeatureCollection or a list of Features, found {kind})")


def _class_name(properties: Any) -> str | None:
    """QuPath >= 0.4: properties.classification.name; 0.2-0.3 also wrote properties.classification as a name."""
    if not isinstance(properties, dict):
        return None
    classification = properties.get("classification")
    if isinstance(classification, dict):
        classification = classification.get("name")
    if isinstance(classification, str) and classification.strip():
        return classification.strip()
    return None


def check_regions(path: Path, regions: Sequence[Region], mapping: dict[str, str], source: str) -> None:
    """Every class name must be in the mapping table (the error lists the known ones)."""
    for region in regions:
        if region.class_name.lower() not in mapping:
            raise ValueError(f"{path}: feature {region.index}: unknown class {region.class_name!r} (known in {source}: "
                             f"{', '.join(sorted(mapping))}; add it to a --mapping CSV)")


def check_inside(path: Path, regions: Sequence[Region], slide: Path, width: int, height: int) -> None:
    """A region entirely off the slide means a file exported from another image, or other coordinates."""
    from shapely.geometry import box

    extent = box(0, 0, width, height)
    for region in regions:
        if not region.geometry.intersects(extent):
            x0, y0, x1, y1 = (round(v) for v in region.geometry.bounds)
            raise ValueError(f"{path}: feature {region.index} ({region.class_name}) at x {x0}-{x1}, y {y0}-{y1} lies "
                             f"outside the slide {slide.name} ({width}x{height} px): exported from another image?")


# -- rasterising --------------------------------------------------------------------------------
def rasterise(regions: Sequence[tuple[Any, int]], shape: tuple[int, int], origin: tuple[float, float],
              scale: float) -> np.ndarray:
    """(h, w) uint8 raster of `(geometry, code)` pairs painted in order; UNANNOTATED elsewhere.

    `origin` is the raster's top-left in level-0 pixels, `scale` raster pixels per level-0 pixel.
    A raster pixel belongs to a polygon when its centre does (scikit-image's rule), holes excluded.
    """
    import shapely
    from shapely import affinity
    from shapely.geometry import box
    from skimage.draw import polygon as fill_polygon

    out = np.full(shape, UNANNOTATED, dtype=np.uint8)
    window = box(origin[0] - 1, origin[1] - 1, origin[0] + (shape[1] + 1) / scale, origin[1] + (shape[0] + 1) / scale)
    for geometry, code in regions:
        geometry = shapely.clip_by_rect(geometry, *window.bounds)  # only the tile's part: cheap per tile
        # level-0 -> raster pixels; -0.5 because scikit-image puts pixel (r, c)'s centre at (r, c)
        local = affinity.affine_transform(geometry, [scale, 0, 0, scale, -origin[0] * scale - 0.5,
                                                     -origin[1] * scale - 0.5])
        inside = np.zeros(shape, dtype=bool)
        for part in _polygons(local):
            xs, ys = np.asarray(part.exterior.coords).T
            inside[fill_polygon(ys, xs, shape)] = True
            for hole in part.interiors:
                hx, hy = np.asarray(hole.coords).T
                inside[fill_polygon(hy, hx, shape)] = False
        out[inside] = code
    return out


def tile_fractions(raster: np.ndarray) -> dict[str, float]:
    """Share of the tile's pixels per target (and `unannotated`); shares of all pixels, summing to 1."""
    counts = np.bincount(raster.ravel(), minlength=256) / raster.size
    return {name: float(counts[code]) for name, code in _CODE.items() if name != "ignore"} | {
        "unannotated": float(counts[UNANNOTATED])}


def presence_labels(fractions: dict[str, float], labels: Sequence[str], present_at: float,
                    absent_below: float) -> dict[str, float]:
    """1 if a label covers >= present_at; 0 only if it stays < absent_below with every unannotated
    pixel counted as it (unannotated is not negative); blank otherwise or when no target maps to it."""
    out = {label: np.nan for label in labels}
    unknown = fractions["unannotated"]
    for target, label in _FRACTION_OF.items():
        if label not in out:
            continue
        f = fractions[target]
        out[label] = 1.0 if f >= present_at else 0.0 if f + unknown < absent_below else np.nan
    return out


def mask_png_values(raster: np.ndarray) -> np.ndarray:
    """The area head's mask values (WSSS4LUAD's scheme): necrosis becomes 3 (no tumour, stroma or non-tumour)."""
    beyond_palette = (raster > max(WSSS4LUAD.classes)) & (raster != UNANNOTATED)
    return np.where(beyond_palette, np.uint8(_BACKGROUND_CODE), raster).astype(np.uint8)


# -- slides -> tiles ------------------------------------------------------------------------------
def tile_annotated_slide(
    slide: str | Path,
    annotations: str | Path,
    out_dir: str | Path,
    tile_px: int,
    mpp: float,
    mapping: str | Path = SHIPPED_MAPPING,
    slide_mpp: float | None = None,
    labels: Sequence[str] | None = None,
    min_annotated: float = 0.5,
    present_at: float = 0.05,
    absent_below: float = 0.01,
    max_background: float = 0.5,
    dataset: str = "qupath",
) -> pd.DataFrame:
    """Cut `tile_px` tiles at `mpp` µm/px where `annotations` has regions; write tiles and masks.

    Tiles go to `out_dir/tiles/`, masks to `out_dir/masks/`. Returns one manifest row per tile:
    path, mask, dataset, source_image, x, y (level 0), frac_<target>, the presence labels, group.
    """
    from shapely import STRtree
    from shapely.geometry import box

    from ..wsi.readers import open_slide
    from ..wsi.slide_reader import level0_pixels

    if not 0 < min_annotated <= 1:
        raise ValueError(f"--min-annotated must be in (0, 1], got {min_annotated}")
    slide, annotations, out_dir = Path(slide), Path(annotations), Path(out_dir)
    labels = list(labels) if labels is not None else list(default_labels())
    table = read_class_mapping(mapping)
    regions = read_regions(annotations)
    check_regions(annotations, regions, table, str(mapping_path(mapping)))
    rows = []
    with open_slide(slide, mpp=slide_mpp) as reader:
        source_mpp = reader.require_mpp()
        width, height = reader.dimensions
        check_inside(annotations, regions, slide, width, height)
        # Larger regions first: a region drawn inside another paints over it.
        painted = sorted(((r.geometry, _CODE[table[r.class_name.lower()]]) for r in regions), key=lambda g: -g[0].area)
        labelled = [g for g, code in painted if code != UNANNOTATED]
        if not labelled:
            raise ValueError(f"{annotations}: every region's class maps to 'ignore': nothing to learn from")
        tree = STRtree([g for g, _ in painted])
        extent = level0_pixels(tile_px, mpp, source_mpp)
        scale = tile_px / extent
        x_min, y_min, x_max, y_max = _bounds(labelled, width, height)
        for y in range(int(y_min), int(y_max), extent):
            for x in range(int(x_min), int(x_max), extent):
                if x + extent > width or y + extent > height:
                    continue  # a tile must lie on the slide
                hits = sorted(int(i) for i in tree.query(box(x, y, x + extent, y + extent), predicate="intersects"))
                if not hits:
                    continue
                raster = rasterise([painted[i] for i in hits], (tile_px, tile_px), (x, y), scale)
                fractions = tile_fractions(raster)
                if 1 - fractions["unannotated"] < min_annotated or fractions["background"] > max_background:
                    continue
                name = f"{slide.stem}_x{x}_y{y}.png"
                tile_path, mask_path = out_dir / "tiles" / name, out_dir / "masks" / name
                _write_png(reader.read_at_mpp((x, y), tile_px, mpp), tile_path)
                _write_png(mask_png_values(raster), mask_path)
                rows.append({"path": str(tile_path.resolve()), "mask": str(mask_path.resolve()), "dataset": dataset,
                             "source_image": str(slide.resolve()), "x": x, "y": y}
                            | {f"frac_{k}": round(v, 6) for k, v in fractions.items()}
                            | presence_labels(fractions, labels, present_at, absent_below)
                            | {"group": slide.stem})
    log.info("%s: %d tile(s) of %d px at %.3f µm/px from %d region(s)", slide.name, len(rows), tile_px, mpp, len(regions))
    return pd.DataFrame(rows)


def _write_png(array: np.ndarray, path: Path) -> None:
    """Always (re)written: corrected annotations exported again must replace the earlier masks."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=1)


def _bounds(geometries: Sequence[Any], width: int, height: int) -> tuple[float, float, float, float]:
    import shapely

    x0, y0, x1, y1 = shapely.total_bounds(list(geometries))
    return max(0.0, np.floor(x0)), max(0.0, np.floor(y0)), min(float(width), x1), min(float(height), y1)


def split_by_slide(frame: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """`split` train/val by slide (the `group` column), with at least one slide in val when there are two.

    A lab adapts with a handful of slides, where a proportional grouped split would leave val
    empty; with one slide, its bottom band of tile rows (`val_fraction` of its tiles) is val,
    touching training tiles along one edge only.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    slides = sorted(frame["group"].unique())
    out = frame.assign(split="train")
    if len(slides) >= 2:
        order = np.random.default_rng(seed).permutation(len(slides))
        val = {slides[i] for i in order[: max(1, round(val_fraction * len(slides)))]}
        out.loc[out["group"].isin(val), "split"] = "val"
    elif len(out) >= 2:
        n_val = max(1, int(np.ceil(val_fraction * len(out))))
        out.loc[out.sort_values(["y", "x"]).index[-n_val:], "split"] = "val"
    return out


def pair_annotations(slides: Sequence[str | Path], annotations: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(slide, GeoJSON) pairs: one of each, or matched by name (QuPath names an export after its image:
    `slide.geojson` or `slide.svs.geojson`). Folders of annotations are searched for *.geojson / *.json."""
    files: list[Path] = []
    for item in map(Path, annotations):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in (".geojson", ".json"))
        elif not item.is_file():
            raise FileNotFoundError(f"{item}: annotation file not found")
        else:
            files.append(item)
    slides = [Path(s) for s in slides]
    if not files:
        raise ValueError(f"{', '.join(map(str, annotations))}: no .geojson or .json annotation files")
    if len(slides) == 1 and len(files) == 1:
        return [(slides[0], files[0])]
    by_name = {f.stem: f for f in files}  # "slide" of slide.geojson, "slide.svs" of slide.svs.geojson
    pairs, missing = [], []
    for slide in slides:
        match = by_name.get(slide.name) or by_name.get(slide.stem)
        (pairs.append((slide, match)) if match else missing.append(slide.name))
    if missing:
        raise ValueError(f"no annotation file named after slide(s) {', '.join(missing)} (expected e.g. "
                         f"{Path(missing[0]).stem}.geojson among {len(files)} file(s))")
    return pairs


# -- masks -> QuPath GeoJSON (for benchmarks, tests and converting old masks) ----------------------
def features_from_mask(mask: np.ndarray, class_names: dict[int, str]) -> list[dict]:
    """QuPath-form GeoJSON Features, one (multi)polygon per mask value named in `class_names`.

    Pixel (x, y) is the square [x, x+1] x [y, y+1], as QuPath's coordinates have it. Each row's runs
    of equal values become boxes that shapely merges (a coverage union: exact pixel outlines with
    their holes, no tracing code of our own).
    """
    import shapely
    from shapely.geometry import mapping as as_geojson

    features = []
    for value, name in class_names.items():
        ys, starts, ends = _runs(mask == value)
        if not len(ys):
            continue
        boxes = shapely.box(starts, ys, ends, ys + 1)
        geometry = shapely.coverage_union_all(boxes)
        features.append({"type": "Feature", "geometry": as_geojson(geometry),
                         "properties": {"objectType": "annotation", "classification": {"name": name}}})
    return features


def _runs(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first x, end x) of every horizontal run of True pixels."""
    padded = np.pad(binary.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    rows_s, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return rows_s.astype(float), starts.astype(float), ends.astype(float)


def write_geojson(features: list[dict], path: str | Path) -> Path:
    """A FeatureCollection, written atomically (QuPath: File > Import objects from file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path
