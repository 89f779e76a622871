"""Tissue found on pictures cut from slides: regions with little or no glass around them.

`ldcsf slide` takes plain PNG/JPEG pictures with `--mpp`, e.g. regions exported from QuPath.
Tissue detection was made for slides, where glass surrounds the tissue; on a picture that is
nearly all tissue there is little glass for Otsu's threshold to part from stain. Measured on the
real masked pictures: GlaS's 165 colon images (the share of their stained pixels, by GlaS's
unstained rule `data.glas.unstained`, found as tissue) and the WSSS4LUAD validation images (the
share of their mask's tumour, stroma and normal pixels found as tissue), each at its own µm/px; the
share of pictures where less than half the tissue is found; and the two real slides, whose glass
must stay glass (their tissue share is reported).

    .venv/bin/python benchmarks/tissue_pictures.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from _common import RESULTS, SHARED_DATA, command_line, markdown_table, now, write_results
from ldcsf.data.glas import SOURCE_MPP, read_glas_manifest, unstained
from ldcsf.wsi import open_slide
from ldcsf.wsi.tissue import detect_tissue

#: WSSS4LUAD's 112 px mask tiles are read as the model's 112 µm field (`data.pancancer.MASK_TILE_SIZE`):
#: about 1 µm/px. Their mask's class 3 is background.
WSSS_MPP, WSSS_BACKGROUND = 1.0, 3
SLIDES = ("slides/CMU-1-Small-Region.svs", "slides/TCGA-CR-7395-01A-01-TS1.svs")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=RESULTS / "tissue_pictures")
    return p.parse_args(argv)


def found_share(found: np.ndarray, tissue: np.ndarray) -> float:
    return float((found & tissue).sum() / max(1, tissue.sum()))


def glas_shares(data: Path) -> list[float]:
    folder = data / "glas"
    shares = []
    for row in read_glas_manifest(folder).itertuples():
        rgb = np.asarray(Image.open(folder / row.image).convert("RGB"))
        shares.append(found_share(detect_tissue(rgb, 1.0, SOURCE_MPP).mask, ~unstained(rgb)))
    return shares


def wsss_shares(data: Path) -> list[float]:
    folder = data / "wsss4luad" / "validation"
    shares = []
    for path in sorted((folder / "img").glob("*.png")):
        if (folder / "mask" / path.name).is_file():
            mask = np.asarray(Image.open(folder / "mask" / path.name))
            rgb = np.asarray(Image.open(path).convert("RGB"))
            shares.append(found_share(detect_tissue(rgb, 1.0, WSSS_MPP).mask, mask != WSSS_BACKGROUND))
    return shares


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {"glas": glas_shares(args.data), "wsss4luad_validation": wsss_shares(args.data)}
    rows = [[source, len(s), f"{100 * np.mean(s):.1f} %", f"{100 * np.min(s):.1f} %", int(np.sum(np.array(s) < 0.5))]
            for source, s in results.items()]
    slides = {}
    for name in SLIDES:
        with open_slide(args.data / name) as slide:
            thumb, downsample = slide.thumbnail(1024)
            slides[name] = detect_tissue(thumb, downsample, slide.mpp).fraction
    md = ["# Tissue found on pictures cut from slides\n",
          f"- command: `{command_line()}`\n- date: {now()}\n",
          markdown_table(["pictures", "images", "tissue found (mean)", "lowest", "under half found"], rows),
          "\nThe slides' tissue share of the whole slide (glass around the tissue):\n",
          markdown_table(["slide", "tissue share"], [[n, f"{100 * f:.1f} %"] for n, f in slides.items()])]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(),
                                            "pictures": results, "slides": slides})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
