"""`ldcsf slide` against the tools a user would pick instead: same slides, same model, side by side.

Tools, each run as a fresh process (start-up included, as a user meets it), interleaved in
rotating order over the repeats so that all see the same machine:
  * ldcsf          - `ldcsf slide` with the peers' settings (batch, threads, 0 loader workers);
  * ldcsf-default  - `ldcsf slide` as installed, with default options (runtime `auto`, the measured
                     reader/thread split): the headline;
  * ldcsf-torch    - the same with `--runtime torch` (asked for: what the exported runtime adds);
  * ldcsf-openvino - the same with `--runtime openvino` (exported once, before the timing);
  * tiatoolbox     - TIAToolbox's PatchPredictor in WSI mode (its own tissue mask), run by the
                     Python of a separate virtual environment (--peers-python);
  * naive          - every grid tile through openslide.read_region -> resize -> model, batched,
                     no tissue detection and no outputs.
Every tool runs the same weights (by default the shipped model, the recommended recipe: ldcsf
with no --checkpoint, the peers the same model as TorchScript; `--model ldcsf_swin_mini` etc. an
untrained variant from a checkpoint), at the same tile size and µm/px, batch size and threads.
Each ldcsf exported runtime is made once before the timing (a one-off per checkpoint, like a
download). Reported per tool and slide: end-to-end seconds, tissue tiles/s, peak RSS of the
whole process tree, the 1-minute load average when the run started, and how its probabilities
agree with ldcsf's on the tiles both predicted (same level-0 coordinates).

    .venv/bin/python benchmarks/peers.py                    # CMU SVS + 4k and 8k real-tile mosaics
    .venv/bin/python benchmarks/peers.py --sizes 4096 8192 16384 32768 --peer-max-side 8192
    .venv/bin/python benchmarks/peers.py --quick            # one small slide, micro model (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf import create_model
from ldcsf.benchmarking import machine_info
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.utils.workers import usable_cores

HERE = Path(__file__).resolve().parent
#: No machine path as a default: the peers' Python comes from --peers-python or $LDCSF_PEERS_PYTHON.
DEFAULT_PEERS_PYTHON = Path(os.environ["LDCSF_PEERS_PYTHON"]) if os.environ.get("LDCSF_PEERS_PYTHON") else None
TOOLS = ["ldcsf", "ldcsf-default", "ldcsf-openvino", "tiatoolbox", "naive"]
#: Not run unless asked for: `ldcsf slide` with the split it used before measuring one (1 reader
#: process + the cores it leaves to the model), to time the measured split against it; and the
#: default options with eager PyTorch.
EXTRA_TOOLS = ["ldcsf-1reader", "ldcsf-torch"]
#: The shipped model (the recommended recipe), run by ldcsf with no --checkpoint.
SHIPPED = "shipped"
#: Probabilities of two tools on the same tile agree when within this (resampling differs slightly).
AGREEMENT_TOLERANCE = 0.02


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=SHIPPED,
                   help="'shipped' (default: the model in the box, the recommended recipe) or an untrained "
                        "model variant, e.g. ldcsf_swin_mini or ldcsf_swin_tiny (the paper's Swin-T)")
    p.add_argument("--sizes", nargs="*", type=int, default=[4096, 8192], help="mosaic slide sides in px")
    p.add_argument("--svs", action=argparse.BooleanOptionalAction, default=True, help="include the shared CMU SVS")
    p.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS + EXTRA_TOOLS)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="runs per tool and slide (interleaved)")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"], help="where every tool runs the model")
    p.add_argument("--peer-max-side", type=int, default=None,
                   help="run TIAToolbox only on slides up to this side in px (it is several times slower; "
                        "the naive loop still runs everywhere)")
    p.add_argument("--peers-python", type=Path, default=DEFAULT_PEERS_PYTHON,
                   help="Python of the virtual environment that has tiatoolbox")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--slide-dir", type=Path, default=RESULTS / "slides", help="where mosaics are built (reused)")
    p.add_argument("--out", type=Path, default=RESULTS / "peers")
    p.add_argument("--quick", action="store_true",
                   help="ldcsf_swin_micro, one 896 px mosaic, 1 repeat, 1 thread, no ldcsf-default (tests)")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.sizes, args.svs, args.repeats = "ldcsf_swin_micro", [896], False, 1
        args.batch_size, args.threads = 16, 1
        args.tools = ["ldcsf", "tiatoolbox", "naive"]  # the ldcsf variants only add seconds here
    return args


# -- what each tool needs ----------------------------------------------------------------------
def peer_status(peers_python: Path | None) -> dict[str, str | None]:
    """None for a peer that can run here, else why not (said in the results)."""
    status: dict[str, str | None] = {"naive": None, "ldcsf": None, "ldcsf-default": None, "ldcsf-1reader": None,
                                     "ldcsf-torch": None}
    try:
        import openvino  # noqa: F401
        status["ldcsf-openvino"] = None
    except ImportError:
        status["ldcsf-openvino"] = "not installed: pip install 'ldcsf[runtimes]'"
    if peers_python is None:
        status["tiatoolbox"] = "not installed: no peers' Python given (--peers-python or $LDCSF_PEERS_PYTHON)"
    elif not peers_python.is_file():
        status["tiatoolbox"] = f"not installed: no Python at {peers_python} (see --peers-python)"
    else:
        probe = subprocess.run([str(peers_python), "-c", "import tiatoolbox, sys; sys.stdout.write(tiatoolbox.__version__)"],
                               capture_output=True, text=True)
        status["tiatoolbox"] = None if probe.returncode == 0 else (
            f"not installed in {peers_python}: {(probe.stderr.strip().splitlines() or ['import failed'])[-1]}")
        status["tiatoolbox_version"] = probe.stdout.strip() if probe.returncode == 0 else None
    status["slideflow"] = slideflow_status()
    return status


def slideflow_status() -> str:
    try:
        import slideflow  # noqa: F401
    except ImportError:
        return ("not measured: `pip install slideflow` (3.0.2, in a fresh venv) fails on this machine: its "
                "dependency pyrfr (through smac) has no wheel for this Python and its source build needs SWIG "
                "(`command 'swig' failed`); slideflow also needs libvips")
    return "installed but not wired in"


def prepare_model(args, work: Path) -> tuple[Path | None, Path, dict]:
    """The checkpoint ldcsf reads (None: the shipped model) and the same weights as TorchScript for the peers."""
    from ldcsf.training.train import effective_mpp

    if args.model == SHIPPED:
        from ldcsf.shipped import load_shipped

        loaded = load_shipped()
        model, meta, ckpt = loaded.model, loaded.meta, None
        size = int(meta.input_size)
    else:
        torch.manual_seed(0)
        model = create_model(args.model).eval()
        size = int(model.img_size[0])
        meta = CheckpointMeta.for_model(model, mpp=effective_mpp(size))
        ckpt = save_checkpoint(work / f"{args.model}.pt", model, meta)
    with torch.no_grad():
        scripted = torch.jit.trace(model, torch.zeros(2, 3, size, size))
    ts = work / f"{args.model}.ts"
    scripted.save(str(ts))
    return ckpt, ts, {"tile_px": size, "tile_mpp": meta.mpp, "mean": meta.mean, "std": meta.std}


def slide_mpp(path: Path) -> float:
    from ldcsf.wsi.readers import open_slide

    with open_slide(path) as reader:
        return reader.require_mpp()


# -- running one tool on one slide ---------------------------------------------------------------
def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (loader workers, DDP children)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def run_measured(command: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and peak RSS (MB, process tree, sampled every 50 ms) of one command."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_kb(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(command, proc.returncode, out.read().decode(), err.read().decode())
    return seconds, peak / 1024, done


def checkpoint_args(ckpt: Path | None) -> list[str]:
    return [] if ckpt is None else ["--checkpoint", str(ckpt)]


def tool_command(tool: str, slide: Path, args, ckpt: Path | None, ts: Path, spec_path: Path, out: Path) -> list[str]:
    if tool.startswith("ldcsf"):
        command = [sys.executable, "-m", "ldcsf.cli.main", "slide", str(slide), *checkpoint_args(ckpt),
                   "--out", str(out), "--batch-size", str(args.batch_size), "--no-progress"]
        command += ["--accelerator", args.accelerator]
        if tool == "ldcsf-openvino":
            command += ["--runtime", "openvino"]
        if tool == "ldcsf-torch":
            command += ["--runtime", "torch"]
        if tool == "ldcsf":
            command += ["--num-workers", "0", "--threads", str(args.threads)]
        if tool == "ldcsf-1reader":
            command += ["--num-workers", "1", "--threads", str(max(1, args.threads - 1))]
        return command
    python = str(args.peers_python) if tool == "tiatoolbox" else sys.executable
    return [python, str(HERE / "peers_workers.py"), tool, str(slide), str(ts), str(spec_path), str(out)]


def read_predictions(tool: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(level-0 x, y) and probabilities of every tile a tool predicted."""
    if tool.startswith("ldcsf"):
        tiles = pd.read_parquet(next(out.glob("*/tiles.parquet")))
        probs = tiles[[c for c in tiles.columns if c.startswith("prob_")]].to_numpy(np.float32)
        return tiles[["x", "y"]].to_numpy(np.int64), probs
    with np.load(out) as data:
        return data["coords"], data["probs"]


def agreement(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> dict:
    """Compare on the tiles both predicted (same level-0 top-left corner)."""
    ref = {tuple(c): p for c, p in zip(*reference)}
    pairs = [(ref[tuple(c)], p) for c, p in zip(*other) if tuple(c) in ref]
    if not pairs:
        return {"common_tiles": 0, "max_abs_diff": None, "decisions_agree": None}
    a, b = (np.stack(x) for x in zip(*pairs))
    return {"common_tiles": len(pairs), "max_abs_diff": float(np.abs(a - b).max()),
            "decisions_agree": float(((a >= 0.5) == (b >= 0.5)).mean())}


# -- the run ---------------------------------------------------------------------------------------
def main(argv=None) -> int:
    from speed import build_mosaic_slide

    args = parse_args(argv)
    status = peer_status(args.peers_python)
    tools = [t for t in args.tools if status.get(t) is None]
    for tool in args.tools:
        if status.get(tool):
            print(f"peers.py: {tool} skipped: {status[tool]}", file=sys.stderr)
    slides: list[Path] = []
    if args.svs and (args.data / "slides" / "CMU-1-Small-Region.svs").is_file():
        slides.append(args.data / "slides" / "CMU-1-Small-Region.svs")
    args.slide_dir.mkdir(parents=True, exist_ok=True)
    for side in args.sizes:
        print(f"mosaic {side}² ...", file=sys.stderr)
        slides.append(build_mosaic_slide(args.slide_dir / f"mosaic_{side}.tiff", side, args.data))

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    load_start = os.getloadavg()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ldcsf-peers-") as tmp:
        work = Path(tmp)
        ckpt, ts, model_spec = prepare_model(args, work)
        if any(t in tools for t in ("ldcsf", "ldcsf-default", "ldcsf-openvino", "ldcsf-1reader")):
            # the export (for `auto` and openvino) is a one-off per checkpoint, like a download: not timed
            subprocess.run([sys.executable, "-m", "ldcsf.cli.main", "export", *checkpoint_args(ckpt)], check=True,
                           capture_output=True, env=env)
        for slide in slides:
            spec = {**model_spec, "slide_mpp": slide_mpp(slide), "batch_size": args.batch_size,
                    "threads": args.threads, "workers": 0, "device": "cuda" if args.accelerator == "gpu" else "cpu"}
            spec_path = work / "spec.json"
            spec_path.write_text(json.dumps(spec))
            predictions: dict[str, tuple] = {}
            slide_tools = [t for t in tools if not skipped_here(t, slide, args)]
            for repeat in range(args.repeats):
                shift = repeat % len(slide_tools)
                for tool in slide_tools[shift:] + slide_tools[:shift]:
                    out = work / f"{tool}-{slide.stem}-{repeat}" / ("out.npz" if not tool.startswith("ldcsf") else "")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    command = tool_command(tool, slide, args, ckpt, ts, spec_path, out)
                    print(f"{slide.name}: {tool} (run {repeat + 1}/{args.repeats}) ...", file=sys.stderr)
                    load_1min = settled_load()
                    seconds, peak_mb, done = run_measured(command, env)
                    if done.returncode:
                        raise SystemExit(f"peers.py: {tool} failed on {slide}:\n{done.stderr[-2000:]}")
                    predictions[tool] = read_predictions(tool, out)
                    runs.append({"slide": slide.name, "tool": tool, "repeat": repeat, "seconds": seconds,
                                 "tiles": len(predictions[tool][0]), "peak_rss_mb": peak_mb, "load_1min": load_1min})
            for tool, pred in predictions.items():
                if tool != "ldcsf" and "ldcsf" in predictions:
                    for run in runs:
                        if run["slide"] == slide.name and run["tool"] == tool:
                            run.update(agreement(predictions["ldcsf"], pred))

    summary = summarise(runs, slides)
    settled_load()  # the end load says whether others used the machine, not what the last run left
    load_end = os.getloadavg()
    machine = machine_info("cuda" if args.accelerator == "gpu" else "cpu")
    result = {"command": command_line(), "date": now(), "machine": machine.to_dict(), "model": args.model,
              "tile": model_spec, "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
              "status": status, "tools": tools, "runs": runs, "summary": summary,
              "load_average": load_end, "load_average_start": load_start,
              "loaded_machine": loaded_machine(load_start, load_end, *[(r["load_1min"],) for r in runs]),
              "peer_max_side": args.peer_max_side, "agreement_tolerance": AGREEMENT_TOLERANCE,
              "speedup_vs_fastest_peer": speedup(summary, slides[-1].name if slides else None)}
    markdown = render(result, machine)
    md, js = write_results(args.out, markdown, result)
    print(markdown)
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


def skipped_here(tool: str, slide: Path, args) -> bool:
    """TIAToolbox is left out of slides wider than --peer-max-side (said in the results)."""
    if tool != "tiatoolbox" or args.peer_max_side is None:
        return False
    from ldcsf.wsi.readers import open_slide

    with open_slide(slide) as reader:
        return max(reader.dimensions) > args.peer_max_side


def settled_load(max_wait_s: float = 90.0) -> float:
    """The 1-minute load average once the previous run's own load has decayed (below cores - 0.5,
    waiting at most `max_wait_s`): a run that kept both cores busy leaves a load of about 2 that
    would otherwise flag the next run as taken on a busy machine."""
    cores = usable_cores()
    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] > cores - 0.5 and time.monotonic() < deadline:
        time.sleep(2.0)
    return os.getloadavg()[0]


def loaded_machine(*loads: tuple[float, ...]) -> int | None:
    """The core count when a 1-minute load average of the run exceeded it (timings then not from an idle machine)."""
    cores = usable_cores()
    return cores if any(load[0] > cores for load in loads) else None


def summarise(runs: list[dict], slides: list[Path]) -> list[dict]:
    """One row per (slide, tool): median seconds, tiles/s from it, worst peak RSS, agreement."""
    table = pd.DataFrame(runs)
    rows = []
    for slide in slides:
        for tool, group in table[table["slide"] == slide.name].groupby("tool", sort=False):
            seconds = float(group["seconds"].median())
            row = {"slide": slide.name, "tool": tool, "seconds": seconds, "tiles": int(group["tiles"].iloc[0]),
                   "tiles_per_s": float(group["tiles"].iloc[0]) / seconds, "peak_rss_mb": float(group["peak_rss_mb"].max()),
                   "runs": len(group),
                   "load_1min": float(group["load_1min"].max()) if "load_1min" in group else None}
            for key in ("common_tiles", "max_abs_diff", "decisions_agree"):
                if key in group and group[key].notna().any():
                    row[key] = group[key].dropna().iloc[-1].item()
            rows.append(row)
    return rows


#: The ldcsf tool the headline ratios are about: the default install with default options.
HEADLINE_TOOL = "ldcsf-default"


def ours_and_peers(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """ldcsf's rows the headline is about (ldcsf-default when it ran, else every ldcsf tool but the
    1-reader one) and the peers' rows."""
    peers = [r for r in rows if not r["tool"].startswith("ldcsf")]
    ours = [r for r in rows if r["tool"] == HEADLINE_TOOL] or \
        [r for r in rows if r["tool"].startswith("ldcsf") and r["tool"] != "ldcsf-1reader"]
    return ours, peers


def speedup(summary: list[dict], largest: str | None) -> dict | None:
    """ldcsf (as installed) over the fastest peer on the largest slide: tiles/s and seconds per slide."""
    ours, peers = ours_and_peers([r for r in summary if r["slide"] == largest])
    if not peers or not ours:
        return None
    fastest_peer = max(peers, key=lambda r: r["tiles_per_s"])
    best = max(ours, key=lambda r: r["tiles_per_s"])
    quickest_peer, quickest = min(peers, key=lambda r: r["seconds"]), min(ours, key=lambda r: r["seconds"])
    return {"slide": largest, "ldcsf_tool": best["tool"], "peer": fastest_peer["tool"],
            "ratio": best["tiles_per_s"] / fastest_peer["tiles_per_s"],
            "seconds_ratio": quickest_peer["seconds"] / quickest["seconds"],
            "seconds_ratio_by_slide": seconds_ratio_by_slide(summary)}


def seconds_ratio_by_slide(summary: list[dict]) -> dict[str, dict]:
    """Per slide: the fastest peer's seconds per slide over ldcsf's (above 1: ldcsf is faster)."""
    ratios = {}
    for slide in dict.fromkeys(r["slide"] for r in summary):
        ours, peers = ours_and_peers([r for r in summary if r["slide"] == slide])
        if peers and ours:
            peer, best = min(peers, key=lambda r: r["seconds"]), min(ours, key=lambda r: r["seconds"])
            ratios[slide] = {"ldcsf_tool": best["tool"], "peer": peer["tool"],
                             "seconds_ratio": peer["seconds"] / best["seconds"]}
    return ratios


def render(result: dict, machine) -> str:
    tile = result["tile"]
    out = ["# ldcsf against its peers\n", provenance(machine, result["command"], result["date"])]
    weights = ("the shipped model (the recommended recipe; ldcsf runs it with no --checkpoint)"
               if result["model"] == SHIPPED else
               f"{result['model']}, untrained weights (seed 0; speed and agreement do not depend on them)")
    out.append(f"- model: {weights}; {tile['tile_px']} px tiles at {tile['tile_mpp']:g} µm/px, batch {result['batch_size']}, "
               f"{result['threads']} thread(s); each tool a fresh process, {result['repeats']} run(s) each, interleaved")
    start = result.get("load_average_start")
    out.append((f"- load average at the start: {', '.join(f'{v:.1f}' for v in start)}; " if start else "- ")
               + f"at the end: {', '.join(f'{v:.1f}' for v in result['load_average'])} "
               "(a shared machine: compare ratios, not absolute numbers)")
    if result.get("loaded_machine"):
        out.append(f"- **not an idle machine**: a 1-minute load average above {result['loaded_machine']} cores")
    out.append("- *tiles/s* = tiles the tool predicted / end-to-end seconds (process start to exit); the naive loop "
               "predicts every grid tile (no tissue detection), TIAToolbox those its own tissue mask keeps")
    out.append(f"- *agree*: on the tiles both predicted, largest |Δ probability| vs ldcsf and share of equal "
               f"decisions at 0.5 (tolerance {result['agreement_tolerance']:g}: the tools resample tiles differently)\n")
    if result.get("peer_max_side"):
        out.append(f"- TIAToolbox ran on slides up to {result['peer_max_side']} px a side (`--peer-max-side`)")
    header = ["slide", "tool", "tiles", "seconds", "tiles/s", "peak RSS (MB)", "load (1 min)", "common tiles",
              "max |Δp|", "decisions agree"]
    rows = [[r["slide"], r["tool"], r["tiles"], fmt(r["seconds"]), fmt(r["tiles_per_s"]), fmt(r["peak_rss_mb"], 0),
             fmt(r["load_1min"]) if r.get("load_1min") is not None else "—",
             r.get("common_tiles", "—"), f"{r['max_abs_diff']:.4f}" if r.get("max_abs_diff") is not None else "—",
             f"{100 * r['decisions_agree']:.1f} %" if r.get("decisions_agree") is not None else "—"]
            for r in result["summary"]]
    out += [markdown_table(header, rows), ""]
    sp = result.get("speedup_vs_fastest_peer")
    if sp:
        out.append(f"**Speed-up vs the fastest peer** on {sp['slide']}: {sp['ldcsf_tool']} / {sp['peer']} = "
                   f"**{sp['ratio']:.2f}x** tiles/s ({sp['seconds_ratio']:.2f}x in seconds per slide); target 1.5x.\n")
        by_slide = sp.get("seconds_ratio_by_slide") or {}
        if by_slide:
            out.append("Seconds per slide, fastest peer / ldcsf (above 1: ldcsf is faster): " + "; ".join(
                f"{slide} {r['seconds_ratio']:.2f}x ({r['ldcsf_tool']} vs {r['peer']})" for slide, r in by_slide.items()) + "\n")
    missing = {k: v for k, v in result["status"].items() if k in ("tiatoolbox", "ldcsf-openvino", "slideflow") and v}
    if missing:
        out += ["## Not measured\n"] + [f"- {k}: {v}" for k, v in missing.items()] + [""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
