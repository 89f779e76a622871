"""Pen marks: how much marker ink the tissue mask keeps, before and after ink removal.

    PYTHONPATH=src python benchmarks/pen_marks.py [--shared ../shared/data]

Two real cases:
1. The TCGA prostate frozen section in DICOM (green and blue ink over tissue). Its 42 JPEG
   frames are decoded with pydicom (no reader accepts the file's layout). The slide's stain and
   ink are far apart in hue (stain 270-360°, ink 120-250°), so ink pixels are counted by hue.
2. The CMU slide with green and blue strokes drawn over tissue and glass (multiplied in, as ink
   darkens what lies under it): the ink pixels are known exactly.
Both report the share of ink pixels called tissue and the share of stain pixels still kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ldcsf.wsi import open_slide
from ldcsf.wsi.pen_marks import hue_degrees
from ldcsf.wsi.tissue import detect_tissue, saturation_value

SPARSE = "slides/TCGA-XK-AAJU-01A-01-TS1-sparse.dcm"
CMU = "slides/CMU-1-Small-Region.svs"
#: Marker colours multiplied into the picture: teal-green and dark blue.
INKS = {"green": (30, 160, 130), "blue": (35, 45, 175)}


def sparse_dicom_picture(path: Path, step: int = 2) -> tuple[np.ndarray, float]:
    """The section's pixels (frames in row-major order), every `step`-th pixel; and its µm/px."""
    import pydicom
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        try:  # pydicom 3's function works in its "future" mode too (which wsidicomizer switches on at import)
            from pydicom.pixels import pixel_array
        except ImportError:  # pydicom 2
            frames = ds.pixel_array
        else:
            frames = pixel_array(ds)
    across = -(-int(ds.TotalPixelMatrixColumns) // int(ds.Columns))
    down = -(-int(ds.TotalPixelMatrixRows) // int(ds.Rows))
    rows = [np.concatenate(list(frames[r * across:(r + 1) * across]), axis=1) for r in range(down)]
    picture = np.concatenate(rows, axis=0)[: int(ds.TotalPixelMatrixRows), : int(ds.TotalPixelMatrixColumns)]
    mpp = float(ds.ImagedVolumeWidth) * 1000 / int(ds.TotalPixelMatrixColumns)
    return np.ascontiguousarray(picture[::step, ::step]), mpp * step


def draw_ink(rgb: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`rgb` with marker strokes multiplied in, and the mask of the ink pixels."""
    height, width = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    out = rgb.astype(np.float32)
    ink_any = np.zeros((height, width), bool)
    for name, colour in INKS.items():
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(3):
            points = [(float(x), float(y)) for x, y in zip(rng.uniform(0, width, 4), rng.uniform(0, height, 4))]
            draw.line(points, fill=255, width=max(4, width // 60), joint="curve")
        stroke = np.asarray(layer) > 0
        out[stroke] *= np.asarray(colour, np.float32) / 255
        ink_any |= stroke
    return out.round().astype(np.uint8), ink_any


def kept(mask: np.ndarray, where: np.ndarray) -> float:
    return float(mask[where].mean()) if where.any() else float("nan")


def measure(rgb: np.ndarray, downsample: float, mpp: float, ink: np.ndarray, stain: np.ndarray) -> dict:
    before = detect_tissue(rgb, downsample, mpp, remove_pen_marks=False).mask
    after = detect_tissue(rgb, downsample, mpp).mask
    return {
        "ink_pixels": int(ink.sum()), "stain_pixels": int(stain.sum()),
        "ink_kept_before": kept(before, ink), "ink_kept_after": kept(after, ink),
        "stain_kept_before": kept(before, stain), "stain_kept_after": kept(after, stain),
    }


def sparse_case(shared: Path) -> dict:
    rgb, mpp = sparse_dicom_picture(shared / SPARSE)
    saturation, value = saturation_value(rgb)
    hue = hue_degrees(rgb)
    ink = (hue >= 120) & (hue <= 250) & (saturation > 0.2) & (value > 0.12)
    stain = ((hue >= 270) | (hue <= 30)) & (saturation > 0.15) & (value > 0.12)
    return measure(rgb, 1.0, mpp, ink, stain)


def drawn_case(shared: Path) -> dict:
    with open_slide(shared / CMU) as reader:
        thumbnail, downsample = reader.thumbnail(2048)
        mpp = reader.mpp
    rgb = np.asarray(thumbnail.convert("RGB"))
    tissue = detect_tissue(rgb, downsample, mpp).mask  # the slide's own tissue, before any ink
    inked, ink = draw_ink(rgb)
    return measure(inked, downsample, mpp, ink, tissue & ~ink)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "pen_marks.json"))
    args = parser.parse_args(argv)
    shared = Path(args.shared)
    results = {"TCGA-XK-AAJU sparse DICOM (real ink)": sparse_case(shared), "CMU-1 with drawn ink": drawn_case(shared)}
    print("| case | ink px | ink called tissue: before | after | stain kept: before | after |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['ink_pixels']} | {r['ink_kept_before']:.1%} | {r['ink_kept_after']:.1%} | "
              f"{r['stain_kept_before']:.1%} | {r['stain_kept_after']:.1%} |")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
