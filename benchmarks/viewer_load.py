"""Viewer load test: latency and memory of `ldcsf view` under concurrent clients on 127.0.0.1.

    .venv/bin/python benchmarks/viewer_load.py                               # 16 clients, 4,000 requests or 60 s
    .venv/bin/python benchmarks/viewer_load.py --clients 4 --requests 400    # quicker

A pyramidal TIFF mosaic of the real NCT-CRC tiles (as speed.py builds it) is run once through
`ldcsf slide` with an untrained micro model, then served by `ldcsf view` in its own process.
CLIENTS threads, each on one HTTP/1.1 keep-alive connection (as a browser holds a few), ask for
Deep Zoom tiles of the slide and its class layer at random levels and places, with a cohort or
slide JSON request every tenth time, until REQUESTS requests are answered or SECONDS have passed,
whichever comes first: the test is bounded in count and in time. Reported: requests per second,
latency percentiles (p50, p99, max), errors, and the server process's peak resident memory
(VmHWM). The clients share the machine with the server, so on a small machine the numbers are a
floor; the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=8192, help="slide side in px")
    p.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections")
    p.add_argument("--requests", type=int, default=4000, help="stop after this many answered requests")
    p.add_argument("--seconds", type=float, default=60.0, help="... or after this many seconds")
    p.add_argument("--limit-tiles", type=int, default=200, help="tissue tiles predicted on the slide")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="folder for the slide and outputs (default: temporary)")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=RESULTS / "viewer_load",
                   help="results stem: writes STEM.md and STEM.json")
    return p.parse_args(argv)


def start_viewer(out: Path) -> tuple[subprocess.Popen, int]:
    """`ldcsf view OUT --port 0` in its own process; returns it and the port it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "ldcsf.cli.main", "view", str(out), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if match:
            return proc, int(match[1])
    raise RuntimeError(f"the viewer did not start:\n{proc.stderr.read()[-3000:]}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_clients(port: int, slide_id: str, levels: list[tuple[int, int, int]], args) -> dict:
    """Drive the server; returns every latency (s), the error count and the wall time."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + args.seconds
    started = time.perf_counter()

    def client(number: int) -> None:
        rng = random.Random(args.seed * 1000 + number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                if len(latencies) + len(errors) >= args.requests:
                    break
            if rng.random() < 0.1:
                path = rng.choice(["/api/cohort", f"/api/slide/{slide_id}"])
            else:
                level, cols, rows = rng.choice(levels)
                layer, ext = rng.choice([("slide", "jpeg"), ("classes", "png")])
                path = f"/dz/{slide_id}/{layer}_files/{level}/{rng.randrange(cols)}_{rng.randrange(rows)}.{ext}"
            t0 = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException) as err:
                ok, response = False, None
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                path += f" ({type(err).__name__})"
            elapsed = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors.append(f"{path}: {getattr(response, 'status', 'no answer')}")
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors, "wall_s": time.perf_counter() - started}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from ldcsf import create_model
    from ldcsf.benchmarking.machine import machine_info
    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
    from ldcsf.wholeslide import SlideSettings, run_cohort
    from ldcsf.viewer.deepzoom import Pyramid
    from speed import build_mosaic_slide

    torch.set_num_threads(2)
    work = args.work or Path(tempfile.mkdtemp(prefix="ldcsf-viewer-load-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro")
    checkpoint = save_checkpoint(work / "micro.pt", model, CheckpointMeta.for_model(model, mpp=1.25))
    slide = build_mosaic_slide(work / f"mosaic_{args.side}.tif", args.side, args.data)
    out = work / f"out_{args.side}"
    run_cohort([slide], checkpoint, out, SlideSettings(batch_size=64, limit_tiles=args.limit_tiles, progress=False))
    pyramid = Pyramid((args.side, args.side))
    levels = [(level, *pyramid.dz.level_tiles[level]) for level in range(pyramid.level_count)]

    proc, port = start_viewer(out)
    try:
        load_before = os.getloadavg()
        result = run_clients(port, slide.stem, levels, args)
        load_after = os.getloadavg()
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    ms = np.array(result["latencies"]) * 1000
    answered = len(ms)
    row = {
        "side": args.side, "clients": args.clients, "requests_bound": args.requests, "seconds_bound": args.seconds,
        "answered": answered, "errors": len(result["errors"]), "error_examples": result["errors"][:5],
        "wall_s": result["wall_s"], "requests_per_s": answered / result["wall_s"],
        "p50_ms": float(np.percentile(ms, 50)) if answered else None,
        "p99_ms": float(np.percentile(ms, 99)) if answered else None,
        "max_ms": float(ms.max()) if answered else None,
        "peak_rss_mb": rss, "load_average_before": load_before, "load_average_after": load_after,
    }
    print(json.dumps(row), flush=True)
    table = markdown_table(
        ["slide", "clients", "answered (bound)", "errors", "seconds (bound)", "requests/s", "p50 ms", "p99 ms",
         "max ms", "server peak RSS (MB)", "load average (1 min) before / after"],
        [[f"{args.side}² px", args.clients, f"{answered:,} ({args.requests:,})", len(result["errors"]),
          f"{result['wall_s']:.1f} ({args.seconds:g})", fmt(row["requests_per_s"]), fmt(row["p50_ms"]),
          fmt(row["p99_ms"]), fmt(row["max_ms"]), fmt(rss, 0), f"{load_before[0]:.2f} / {load_after[0]:.2f}"]],
    )
    command, date, machine = command_line(), now(), machine_info("cpu")
    markdown = (f"# Viewer under load on 127.0.0.1\n\n{provenance(machine, command, date)}\n"
                f"{args.clients} keep-alive clients asking for random Deep Zoom tiles (slide and class layer, every "
                f"level) and a JSON request every tenth time, from an `ldcsf view` process serving one "
                f"{args.side}² px slide; stopped at {args.requests:,} answered requests or {args.seconds:g} s. "
                "The clients run on the same machine as the server.\n\n" + table + "\n")
    write_results(args.out, markdown, {"command": command, "date": date, "machine": machine.summary(), "row": row})
    print(markdown)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
