"""Viewer benchmark: does `ldcsf view` keep its memory flat as slides grow, and how fast are tiles?

    .venv/bin/python benchmarks/viewer.py                        # 4096², 8192² and 16384² px slides
    .venv/bin/python benchmarks/viewer.py --sizes 2048 4096      # smaller, quicker

For each size: a pyramidal TIFF mosaic of the real NCT-CRC tiles (0.5 µm/px, as speed.py builds
them), one `ldcsf slide` run on it with an untrained micro model limited to the same number of
tissue tiles for every size (so the tile table is the same and only the slide grows), then a fresh
process serving the output with the viewer's HTTP server while a client fetches EVERY Deep Zoom
tile of the slide and of its class layer, level by level from the overview to full resolution.
That process's peak resident memory (VmHWM) is compared across sizes, against its memory before
the first tile (the baseline of the same run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[4096, 8192, 16384], help="slide sides in px")
    p.add_argument("--limit-tiles", type=int, default=500, help="tissue tiles predicted per slide (same for all sizes)")
    p.add_argument("--work", type=Path, default=None, help="folder for slides and outputs (default: a temporary one; reused)")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=RESULTS / "viewer", help="results stem: writes STEM.md and STEM.json")
    p.add_argument("--cache-mb", type=float, default=None,
                   help="the server's encoded-tile cache in MB (default: the viewer's, 96)")
    p.add_argument("--_serve", nargs=3, metavar=("OUT", "SLIDE_ID", "CACHE_MB"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def serve_and_fetch(out: str, slide_id: str, cache_mb: str) -> None:
    """In a fresh process: serve OUT, fetch every tile of the slide and its class layer; print JSON."""
    import threading

    from ldcsf.viewer import OutputFolder, make_server, server_address
    from ldcsf.viewer.deepzoom import Pyramid

    server = make_server(OutputFolder(out), "127.0.0.1", 0, cache_bytes=int(float(cache_mb) * 2**20))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = server_address(server).rstrip("/")
    info = json.loads(urllib.request.urlopen(f"{base}/api/slide/{slide_id}", timeout=60).read())
    baseline_mb = vm_kb("VmRSS") / 1024
    pyramid = Pyramid(tuple(info["dimensions"]))
    per_level, fetched, started = [], 0, time.perf_counter()
    for level in range(pyramid.level_count):
        cols, rows = pyramid.dz.level_tiles[level]
        t0 = time.perf_counter()
        for row in range(rows):
            for col in range(cols):
                for layer, ext in (("slide", "jpeg"), ("classes", "png")):
                    with urllib.request.urlopen(f"{base}/dz/{slide_id}/{layer}_files/{level}/{col}_{row}.{ext}", timeout=60) as r:
                        r.read()
                fetched += 1
        per_level.append({"level": level, "tiles": cols * rows, "seconds": time.perf_counter() - t0})
    seconds = time.perf_counter() - started
    print(json.dumps({
        "dimensions": info["dimensions"], "levels": pyramid.level_count, "slide_tiles": fetched,
        "seconds": seconds, "tiles_per_s": fetched / seconds,
        "full_res_ms_per_tile": 1000 * per_level[-1]["seconds"] / per_level[-1]["tiles"],
        "baseline_rss_mb": baseline_mb, "peak_rss_mb": vm_kb("VmHWM") / 1024,
        "cache_mb": server.viewer.cache.bytes / 2**20,
    }))
    server.shutdown()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._serve:
        serve_and_fetch(*args._serve)
        return 0
    import torch

    from ldcsf import create_model
    from ldcsf.benchmarking.machine import machine_info
    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
    from ldcsf.wholeslide import SlideSettings, run_cohort
    from ldcsf.viewer.server import TILE_CACHE_BYTES
    from speed import build_mosaic_slide

    torch.set_num_threads(2)
    cache_mb = args.cache_mb if args.cache_mb is not None else TILE_CACHE_BYTES / 2**20
    work = args.work or Path(tempfile.mkdtemp(prefix="ldcsf-viewer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro")
    checkpoint = save_checkpoint(work / "micro.pt", model, CheckpointMeta.for_model(model, mpp=1.25))
    rows = []
    for side in args.sizes:
        slide = build_mosaic_slide(work / f"mosaic_{side}.tif", side, args.data)
        out = work / f"out_{side}"
        run_cohort([slide], checkpoint, out, SlideSettings(batch_size=64, limit_tiles=args.limit_tiles, progress=False))
        print(f"{side}² px: serving and fetching every tile...", flush=True)
        result = subprocess.run([sys.executable, __file__, "--_serve", str(out), slide.stem, str(cache_mb)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the serving process failed:\n{result.stderr[-3000:]}")
        row = json.loads(result.stdout.strip().splitlines()[-1]) | {"side": side}
        rows.append(row)
        print(json.dumps(row), flush=True)
    small = rows[0]
    for row in rows:
        row["peak_vs_smallest"] = row["peak_rss_mb"] / small["peak_rss_mb"]
        row["growth_mb"] = row["peak_rss_mb"] - row["baseline_rss_mb"]
    table = markdown_table(
        ["slide", "Deep Zoom tiles fetched (slide + class layer)", "tiles/s", "ms per full-res tile",
         "RSS before tiles (MB)", "peak RSS (MB)", "peak vs smallest slide", "tile cache (MB)"],
        [[f"{r['side']}² px", f"{r['slide_tiles']:,} + {r['slide_tiles']:,}", fmt(r["tiles_per_s"]),
          fmt(r["full_res_ms_per_tile"]), fmt(r["baseline_rss_mb"], 0), fmt(r["peak_rss_mb"], 0),
          f"{r['peak_vs_smallest']:.2f}x", fmt(r["cache_mb"], 0)] for r in rows],
    )
    command, date, machine = command_line(), now(), machine_info("cpu")
    markdown = (f"# Viewer: memory and tile speed against slide size\n\n{provenance(machine, command, date)}\n"
                f"Every Deep Zoom tile of each slide and of its class layer fetched once over HTTP from a fresh "
                f"`ldcsf view` server process (encoded-tile cache {cache_mb:g} MB); the same {args.limit_tiles} predicted tiles per slide.\n\n{table}\n")
    write_results(args.out, markdown, {"command": command, "date": date, "machine": machine.summary(), "cache_mb": cache_mb, "rows": rows})
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
