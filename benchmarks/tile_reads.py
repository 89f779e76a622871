"""Speed of reading slide tiles the way `ldcsf slide` reads them, in one run.

Each workload opens the slide, reads grid tiles in row order at the model's input size (as a
DataLoader worker does over its share of a slide) and closes it; workloads are interleaved
(ldcsf.benchmarking.time_interleaved), so the ratios hold on a busy machine. Per case:

  * `dataset`: `TileDataset.read_tile`, the pipeline's path (reader + torch's resize kernel);
  * `pillow`: `SlideReader.read_box` with the readers' own resizer (Pillow, no torch);
  * `baseline` (with --baseline-rev): the tile path of another revision of the project, its
    `wsi/readers.py` loaded from git, called as that revision's `TileDataset` called it.

Cases: the real CMU slide (Aperio SVS, one level) read at 0.5 µm/px (no resize) and at 1.0 µm/px
(a region twice the tile, shrunk: how a 40x scan is read at 20x), and a synthetic pyramidal TIFF
at 0.25 µm/px read at 0.5 (level 1 exactly) and at 0.6 µm/px (level 1, resized).

    .venv/bin/python benchmarks/tile_reads.py
    .venv/bin/python benchmarks/tile_reads.py --baseline-rev 6c82b39   # against that revision
    .venv/bin/python benchmarks/tile_reads.py --quick                  # seconds (tests)

--baseline-rev takes a revision from before the readers were split into modules (its
`wsi/readers.py` is loaded on its own).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import REPO, RESULTS, SHARED_DATA, command_line, markdown_table, now, provenance, write_results
from ldcsf.benchmarking import machine_info, time_interleaved
from ldcsf.wholeslide.tile_dataset import TileDataset
from ldcsf.wsi import TileSpec, open_slide, tile_grid

CMU = "slides/CMU-1-Small-Region.svs"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-rev", help="git revision whose tile reading path to time alongside (e.g. main)")
    p.add_argument("--tiles", type=int, default=48, help="tiles read per timed call (default 48)")
    p.add_argument("--repeats", type=int, default=15, help="timed calls per workload, interleaved")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--slide-dir", type=Path, default=RESULTS / "slides", help="where the synthetic slide is kept")
    p.add_argument("--quick", action="store_true", help="a small synthetic slide, 6 tiles, 2 repeats (tests)")
    p.add_argument("--out", type=Path, default=RESULTS / "tile_reads", help="results stem: STEM.md and STEM.json")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.tiles, args.repeats = 6, 2
    return args


def baseline_readers(rev: str):
    """That revision's `ldcsf.wsi.readers`, as a module of its own (its imports are numpy, PIL, torch)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:src/ldcsf/wsi/readers.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_readers.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_readers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_slide(folder: Path, side: int) -> Path:
    from ldcsf.synthetic.slide import make_slide

    path = folder / f"synthetic_{side}_0.25mpp.tif"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        make_slide(path, size=(side, side), mpp=0.25, seed=0)
    return path


def cases(args) -> list[tuple[str, Path, float]]:
    """(name, slide, µm/px the 224 px tiles are read at)."""
    found = []
    if (args.data / CMU).is_file():
        found += [("CMU svs, 0.5 µm/px (224 → 224)", args.data / CMU, 0.5),
                  ("CMU svs, 1.0 µm/px (449 → 224)", args.data / CMU, 1.0)]
    synthetic = synthetic_slide(args.slide_dir, 1024 if args.quick else 3072)
    found += [("pyramid TIFF, 0.5 µm/px (level 1, 224 → 224)", synthetic, 0.5),
              ("pyramid TIFF, 0.6 µm/px (level 1, 269 → 224)", synthetic, 0.6)]
    return found


def workloads(slide: Path, tile_mpp: float, n_tiles: int, baseline) -> dict:
    with open_slide(slide) as reader:
        spec = TileSpec.for_model(224, tile_mpp, reader.require_mpp())
        grid = tile_grid(reader.dimensions, spec)
    # Tiles from the middle rows of the grid, in row order, as a worker reads its share.
    start = max(0, len(grid) // 2 - n_tiles // 2)
    boxes = grid[["x", "y", "width", "height"]].to_numpy()[start : start + n_tiles]

    def dataset():
        data = TileDataset(slide, boxes, np.arange(len(boxes)), 224)
        for i in range(len(boxes)):
            data.read_tile(i)
        data.close()

    def pillow():
        with open_slide(slide) as reader:
            for box in boxes:
                reader.read_box(box, 224)

    jobs = {"dataset": (dataset, len(boxes)), "pillow": (pillow, len(boxes))}
    if baseline is not None:
        def before():
            with baseline.open_slide(slide) as reader:
                for x, y, w, h in boxes:
                    reader.read_rect(int(x), int(y), int(w), int(h), 224, "bilinear")

        jobs["baseline"] = (before, len(boxes))
    return jobs


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker
    baseline = baseline_readers(args.baseline_rev) if args.baseline_rev else None
    rows, data = [], []
    for name, slide, tile_mpp in cases(args):
        timings = time_interleaved(workloads(slide, tile_mpp, args.tiles, baseline), args.repeats,
                                   warmup=1 if args.quick else 2,
                                   progress=not args.no_progress)
        ms = {key: 1e3 / t.items_per_s for key, t in timings.items()}
        row = [name, f"{ms['dataset']:.2f}", f"{ms['pillow']:.2f}", f"{ms['pillow'] / ms['dataset']:.2f}x"]
        if baseline is not None:
            row[1:1] = [f"{ms['baseline']:.2f}"]
            row.append(f"{ms['baseline'] / ms['dataset']:.2f}x")
        rows.append(row)
        data.append({"case": name, "slide": str(slide), "tile_mpp": tile_mpp,
                     "ms_per_tile": ms, "timings": {k: t.to_dict() for k, t in timings.items()}})
        print(name, {k: round(v, 3) for k, v in ms.items()}, file=sys.stderr)
    header = ["case", "now: TileDataset (ms/tile)", "Pillow read_box (ms/tile)", "Pillow / now"]
    if baseline is not None:
        header[1:1] = [f"before ({args.baseline_rev}) (ms/tile)"]
        header.append("before / now (>1: now faster)")
    command, date, machine = command_line(), now(), machine_info("cpu")
    markdown = (f"# Tile reads\n\n{provenance(machine, command, date)}\n"
                f"Median of {args.repeats} interleaved calls of {args.tiles} tiles each, one torch thread.\n\n"
                + markdown_table(header, rows))
    md, _ = write_results(args.out, markdown, {"command": command, "date": date, "machine": machine.summary(),
                                               "baseline_rev": args.baseline_rev, "cases": data})
    print(markdown)
    print(f"written: {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
