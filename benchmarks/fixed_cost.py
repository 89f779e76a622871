"""Where the seconds of one small slide go: `ldcsf slide` end to end, step by step.

Each run is a fresh `ldcsf slide` process (start-up included, as a user meets it):
  * timed plainly (wall seconds, best of --repeats), and
  * once under cProfile, whose cumulative time per step gives the breakdown (imports wherever
    they happen; checkpoint; thumbnail and tissue; the reader/model split; the runtime; the
    prediction and the model in it; analysis; tables, pictures, GeoJSON, report).
The exported ONNX file (for the default `--runtime auto`) is made before the timing: a one-off
per checkpoint. cProfile slows Python-heavy steps, so
    the breakdown is read as shares, the plain wall time as the cost.
With --baseline-src (an older `src/` folder) the same runs are made with it, interleaved, so the
before/after ratio comes from one run on one machine state.

    .venv/bin/python benchmarks/fixed_cost.py                          # shipped model + a micro checkpoint
    .venv/bin/python benchmarks/fixed_cost.py --baseline-src runs/base/src
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf import create_model
from ldcsf.benchmarking import machine_info
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CMU = "slides/CMU-1-Small-Region.svs"

#: Breakdown rows: (step, [(file ending, function name), ...]); a step's time is the sum of its
#: functions' cumulative times (imports they trigger included, except the "imports" row itself).
STEPS = [
    ("whole command (profiled)", [("ldcsf/cli/main.py", "main")]),
    ("imports, wherever they happen", [("<frozen importlib._bootstrap>", "_find_and_load")]),
    ("checkpoint load", [("ldcsf/checkpoint.py", "load_checkpoint"), ("ldcsf/shipped.py", "load_shipped")]),
    ("plan: thumbnail", [("ldcsf/wsi/slide_reader.py", "thumbnail")]),
    ("plan: tissue detection", [("ldcsf/wsi/tissue.py", "detect_tissue")]),
    ("  of which pen ink", [("ldcsf/wsi/pen_marks.py", "pen_ink_mask")]),
    ("reader/model split measurement", [("ldcsf/wholeslide/core_split.py", "settle_split")]),
    ("runtime: export check, engine built", [("ldcsf/wholeslide/pipeline.py", "settle_runtime")]),
    ("prediction (tile loop or Trainer.predict)", [("ldcsf/wholeslide/tile_prediction.py", "predict_tiles"),
                                                   ("ldcsf/wholeslide/onnx_prediction.py", "predict_on_session")]),
    # the batch step: the torch-free loop's session, the plain loop's, or Lightning's predict_step (older)
    ("  of which the model", [("ldcsf/inference/onnx_session.py", "run"),
                              ("ldcsf/inference/batch_predictor.py", "predict_images"),
                              ("ldcsf/inference/predictor.py", "predict_step")]),
    ("analysis (TSR, hotspot)", [("ldcsf/analysis/slide_analysis.py", "analyse_slide")]),
    ("tile tables (Parquet, CSV)", [("ldcsf/export/tables.py", "write_parquet"), ("ldcsf/export/tables.py", "write_csv")]),
    # the pictures' writers, and the one function that drew them all in versions before the writer list
    ("pictures (5 PNG)", [("ldcsf/export/slide_writers.py", "_write_overlay"),
                          ("ldcsf/export/slide_writers.py", "_write_heatmaps"),
                          ("ldcsf/export/slide_outputs.py", "write_pictures")]),
    ("GeoJSON", [("ldcsf/export/geojson.py", "tiles_to_geojson"), ("ldcsf/export/geojson.py", "write_geojson")]),
    ("report", [("ldcsf/export/report.py", "render_report")]),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slide", type=Path, default=SHARED_DATA / CMU)
    p.add_argument("--repeats", type=int, default=3, help="plain timed runs per variant (best is kept)")
    p.add_argument("--baseline-src", type=Path, default=None, help="an older src/ folder to time the same way")
    p.add_argument("--out", type=Path, default=RESULTS / "fixed_cost")
    p.add_argument("--quick", action="store_true", help="the micro checkpoint only, one run (tests)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 1
    return args


def micro_checkpoint(work: Path) -> Path:
    """A micro model at 1.25 µm/px, as the tests build it (~100 tiles on the CMU slide)."""
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro")
    return save_checkpoint(work / "micro.pt", model, CheckpointMeta.for_model(model, mpp=1.25))


def slide_command(slide: Path, out: Path, checkpoint: Path | None, profile: Path | None = None) -> list[str]:
    prefix = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    return [*prefix, "-m", "ldcsf.cli.main", "slide", str(slide), "--out", str(out), "--no-progress",
            *(["--checkpoint", str(checkpoint)] if checkpoint else [])]


def run(command: list[str], src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def breakdown(profile: Path) -> dict[str, float]:
    stats = pstats.Stats(str(profile)).stats  # (file, line, function) -> (cc, nc, tottime, cumtime, callers)
    seconds = {}
    for step, functions in STEPS:
        seconds[step] = sum(value[3] for (file, _, name), value in stats.items()
                            if any(file.endswith(end) and name == fn for end, fn in functions))
    return seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.slide.is_file():
        raise SystemExit(f"{args.slide}: slide not found (the shared data folder is needed)")
    variants = {"this": REPO / "src"}
    if args.baseline_src:
        variants["baseline"] = args.baseline_src.resolve()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=REPO / "runs" if (REPO / "runs").is_dir() else None) as tmp:
        work = Path(tmp)
        models = {"shipped default": None, "micro checkpoint": micro_checkpoint(work)}
        if args.quick:
            del models["shipped default"]
        for ckpt in models.values():  # a one-off per checkpoint, like a download: not timed
            subprocess.run([sys.executable, "-m", "ldcsf.cli.main", "export",
                            *(["--checkpoint", str(ckpt)] if ckpt else [])],
                           env={**os.environ, "PYTHONPATH": str(REPO / "src")}, check=True, capture_output=True)
        wall: dict[tuple[str, str], list[float]] = {}
        for r in range(args.repeats):  # interleaved: every variant sees the same machine
            for model, ckpt in models.items():
                for name, src in variants.items():
                    out = work / f"out-{name}-{model.split()[0]}-{r}"
                    wall.setdefault((name, model), []).append(run(slide_command(args.slide, out, ckpt), src))
        steps = {}
        for model, ckpt in models.items():
            for name, src in variants.items():
                profile = work / f"{name}-{model.split()[0]}.prof"
                run(slide_command(args.slide, work / f"prof-{name}-{model.split()[0]}", ckpt, profile), src)
                steps[f"{name} / {model}"] = breakdown(profile)
    load_after = os.getloadavg()

    machine = machine_info()
    result = {
        "command": command_line(), "date": now(), "machine": machine.to_dict(), "slide": str(args.slide.name),
        "load_average_1_5_15": {"before": list(load_before), "after": list(load_after)},
        "wall_s": {f"{name} / {model}": {"best": min(times), "all": times} for (name, model), times in wall.items()},
        "profiled_steps_s": steps,
    }
    if args.baseline_src:
        result["speedup_vs_baseline"] = {model: min(wall[("baseline", model)]) / min(wall[("this", model)])
                                         for model in models}
    headers = ["step"] + list(steps)
    rows = [[step] + [fmt(steps[k][step], 2) for k in steps] for step, _ in STEPS]
    wall_rows = [[f"{name} / {model}", fmt(min(t), 2), ", ".join(fmt(x, 2) for x in t)] for (name, model), t in wall.items()]
    md = (f"# Fixed cost of one slide: {args.slide.name}\n\n"
          + provenance(machine, result["command"], result["date"])
          + f"- load average (1, 5, 15 min): before {', '.join(f'{v:.2f}' for v in load_before)}; "
            f"after {', '.join(f'{v:.2f}' for v in load_after)} ({os.cpu_count()} cores)\n\n"
          + "## Wall seconds per `ldcsf slide` process (plain, best of the runs)\n\n"
          + markdown_table(["variant / model", "best s", "all runs s"], wall_rows) + "\n\n"
          + "## Breakdown under cProfile (cumulative seconds; steps include the imports they trigger)\n\n"
          + markdown_table(headers, rows) + "\n")
    if args.baseline_src:
        md += "\nBaseline / this, wall seconds: " + ", ".join(
            f"{m} {v:.2f}x" for m, v in result["speedup_vs_baseline"].items()) + "\n"
    paths = write_results(args.out, md, result)
    print(md)
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
