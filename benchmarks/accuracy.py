"""Accuracy of LDCSF against its baselines and ablations, on the same real data and budget.

Every model is trained with the same split, epochs, batch size and learning-rate schedule, for
several seeds, and scored on the held-out test split; results are mean ± sd over seeds. Baselines
and ablations are the library's variants with model arguments (`use_ldc=False`, `img_size=128`),
so their checkpoints load anywhere with `ldcsf.checkpoint.load_checkpoint`. Reported:
  * per-label accuracy (the paper's table: stroma, necrosis, non_tumor, tumor),
  * per-label F1, AUROC and AP, and mAP,
  * a plot of mAP per model with error bars.

Data: the shared pan-cancer set (`ldcsf.data.pancancer.build_pancancer`), split train/val/test by
source case (images of one case never straddle two splits). Models start from random weights
(no ImageNet weights are reachable offline), so absolute numbers are lower than the paper's;
the comparison between models at equal budget is the point.

Resumable: each (model, seed) result is saved as it finishes and a rerun skips it; an
interrupted training continues from its last checkpoint. Results made with another budget are
refused rather than mixed in.

    .venv/bin/python benchmarks/accuracy.py --estimate       # time a few steps, project the duration
    .venv/bin/python benchmarks/accuracy.py                  # CPU-sized: mini models, 128 px, 3 epochs, 3 seeds
    .venv/bin/python benchmarks/accuracy.py --paper-scale    # Swin-T scale, 224 px (GPU)
    .venv/bin/python benchmarks/accuracy.py --quick          # micro models, a few steps (tests)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf.benchmarking import machine_info
from ldcsf.utils.workers import usable_cores
from ldcsf.utils.atomic import write_json_atomic

LABEL_METRICS = ("accuracy", "f1", "auroc", "ap")


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: a model variant with the arguments that make it this row."""

    name: str  # what the tables call it
    variant: str  # a name from ldcsf.list_models()
    kwargs: dict = field(default_factory=dict)
    role: str = "baseline"


def entries(scale: str) -> list[Entry]:
    """The comparison at `scale`: LDCSF, plain Swin of the same size, ResNets, LDCSF ablations."""
    ldcsf, swin, size = {"cpu": ("ldcsf_swin_mini", "swin_mini", 128), "paper": ("ldcsf_swin_tiny", "swin_tiny", 224),
                         "quick": ("ldcsf_swin_micro", "swin_micro", 64)}[scale]
    rows = [
        Entry(ldcsf, ldcsf, role="LDCSF"),
        Entry(swin, swin),
        Entry("resnet18", "resnet18", {"img_size": size}),
        Entry("resnet50", "resnet50", {"img_size": size}),
        Entry(f"{ldcsf} w/o LDC", ldcsf, {"use_ldc": False}, role="ablation"),
        Entry(f"{ldcsf} w/o FR", ldcsf, {"use_fr": False}, role="ablation"),
        Entry(f"{ldcsf} w/o ResNet", ldcsf, {"use_resnet": False}, role="ablation"),
    ]
    return [rows[0], rows[1], rows[4]] if scale == "quick" else rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paper-scale", action="store_true", help="Swin-T scale at 224 px (needs a GPU; see --force)")
    p.add_argument("--force", action="store_true", help="run --paper-scale even without a GPU")
    p.add_argument("--only", nargs="+", help="run only these rows (names as in the tables)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    # 3 epochs (120 steps of 32 on the 1,267 training images) fit about an hour on 2 idle cores for
    # the 21 CPU-scale runs: see --estimate and docs/benchmarks.md.
    p.add_argument("--epochs", type=int, default=3, help="training epochs, the same for every model (default: 3)")
    p.add_argument("--max-steps", type=int, default=-1, help="cap on optimiser steps (-1: none)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (warm-up then cosine)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--work", type=Path, default=RESULTS / "accuracy_work", help="data set, runs and per-run results")
    p.add_argument("--out", type=Path, default=RESULTS / "accuracy", help="results stem (.md, .json, .png)")
    p.add_argument("--max-images", type=int, default=None,
                   help="use at most N images per split (a random subset, same for every model): quick looks")
    p.add_argument("--estimate", action="store_true",
                   help="only time a few steps of each model and project the duration of the run at this budget")
    p.add_argument("--estimate-repeats", type=int, default=3, help="timed calls per workload for --estimate")
    p.add_argument("--quick", action="store_true",
                   help="micro models, 1 seed, 2 steps, 24 images per split: a smoke run for tests")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs trained side by side, each a process with one torch thread "
                        "(default: on a CPU the usable cores, at most 8; on a GPU 1)")
    p.add_argument("--no-tables", action="store_true", help=argparse.SUPPRESS)  # set for the --jobs processes
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.quick:
        args.seeds = args.seeds[:1] if argv and "--seeds" in argv else [0]
        args.epochs, args.max_steps, args.batch_size = 1, 2 if args.max_steps < 0 else args.max_steps, 8
        args.max_images = args.max_images or 24
    return args


# -- one (model, seed) run ---------------------------------------------------------------------
def run_one(entry: Entry, seed: int, manifest: Path, args, device: str) -> dict:
    """Train, then evaluate on the test split; return (and save) the result."""
    from ldcsf.evaluation.evaluate import evaluate
    from ldcsf.options import PredictOptions
    from ldcsf.training.train import TrainConfig, train

    slug = entry.name.replace(" ", "_").replace("/", "")
    result_file = result_file_of(entry, seed, args)
    if result_file.is_file():
        done = json.loads(result_file.read_text())
        check_budget(result_file, budget_of(args, manifest), done.get("budget", {}))
        return done
    run_dir = args.work / "runs" / slug / f"seed{seed}"
    model_file = run_dir / "model.pt"
    start = time.perf_counter()
    if not model_file.is_file():
        config = TrainConfig(
            data=str(manifest), model=entry.variant, model_kwargs=dict(entry.kwargs), out=str(run_dir),
            epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, seed=seed,
            num_workers=args.workers, patience=0, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
            resume=(run_dir / "checkpoints" / "last.ckpt").is_file(), progress=not args.quick,
        )
        if config.resume:
            check_budget(run_dir / "config.json", budget_of(args, manifest), run_budget(run_dir / "config.json"))
        model_file = train(config).model_file
    train_s = time.perf_counter() - start
    options = PredictOptions(accelerator="gpu" if device == "cuda" else "cpu", devices=1, batch_size=64,
                             num_workers=args.workers, progress=False)
    report = evaluate(model_file, manifest, run_dir / "test", split="test", options=options).report
    result = {"name": entry.name, "variant": entry.variant, "kwargs": entry.kwargs, "role": entry.role,
              "seed": seed, "budget": budget_of(args, manifest), "train_seconds": train_s,
              "eval_seconds": time.perf_counter() - start - train_s, "metrics": report.to_dict()}
    write_json_atomic(result_file, result)
    return result


def result_file_of(entry: Entry, seed: int, args) -> Path:
    return args.work / "results" / f"{entry.name.replace(' ', '_').replace('/', '')}__seed{seed}.json"


def default_jobs(args, device: str) -> int:
    """--jobs, or on a CPU the usable cores (at most 8); on a GPU one run at a time."""
    return args.jobs or (min(usable_cores(), 8) if device == "cpu" else 1)


def run_side_by_side(todo: list[tuple[Entry, int]], args, jobs: int) -> list[str]:
    """Train the (model, seed) runs in `jobs` processes of this script, one torch thread each.

    On a CPU several one-thread trainings get more done than one training with as many threads:
    image loading is single-threaded and small convolutions scale poorly (measured here: two
    one-thread runs side by side did ~20 % more than one two-thread run). Each process runs one
    (model, seed) exactly as the sequential loop would and saves its result file; the tables are
    made afterwards from those files. Returns the runs that failed, with their log files.
    """
    import subprocess

    log_dir = args.work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["--epochs", str(args.epochs), "--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size),
              "--lr", repr(args.lr), "--workers", str(args.workers), "--data", str(args.data), "--work", str(args.work),
              "--out", str(args.out), "--jobs", "1", "--no-tables"]
    common += ["--max-images", str(args.max_images)] if args.max_images else []
    common += [flag for flag, on in (("--quick", args.quick), ("--paper-scale", args.paper_scale),
                                     ("--force", args.force)) if on]
    # Longest first (by FLOPs per image, a proxy for a run's cost), so that the last runs finish
    # together instead of one long run keeping a single core busy at the end.
    from ldcsf.models.profile import model_profile

    distinct = {entry.name: entry for entry, _ in todo}.values()
    gflops = {e.name: model_profile(e.variant, flops=True, **e.kwargs).gflops for e in distinct}
    waiting = sorted(todo, key=lambda run: -gflops[run[0].name])
    running, failed = {}, []
    finished = 0
    while waiting or running:
        while waiting and len(running) < jobs:
            entry, seed = waiting.pop(0)
            log = log_dir / f"{result_file_of(entry, seed, args).stem}.log"
            command = [sys.executable, str(Path(__file__).resolve()), *common, "--only", entry.name, "--seeds", str(seed)]
            with open(log, "w") as handle:
                proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
            running[proc] = (entry, seed, log)
            print(f"started {entry.name}, seed {seed} (log: {log})", file=sys.stderr)
        time.sleep(0.5)
        for proc in [p for p in running if p.poll() is not None]:
            entry, seed, log = running.pop(proc)
            finished += 1
            state = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}; see {log})"
            print(f"[{finished}/{len(todo)}] {entry.name}, seed {seed}: {state}", file=sys.stderr)
            if proc.returncode != 0:
                failed.append(f"{entry.name} seed {seed}: see {log}")
    return failed


def budget_of(args, manifest: Path) -> dict:
    """What makes results comparable; a rerun with another budget must not reuse them."""
    return {"data": manifest.name, "epochs": args.epochs, "max_steps": args.max_steps,
            "batch_size": args.batch_size, "lr": args.lr}


def check_budget(path: Path, budget: dict, saved: dict) -> None:
    """Refuse to mix results (or resume a training) made with another budget."""
    if saved != budget:
        diff = ", ".join(f"{k} {saved.get(k)} (now {v})" for k, v in budget.items() if saved.get(k) != v)
        raise SystemExit(f"accuracy.py: error: {path}: made with another budget: {diff}; "
                         "rerun with the same settings or choose another --work")


def run_budget(config_file: Path) -> dict:
    """The budget of a started training, from its config.json."""
    config = json.loads(config_file.read_text())["config"]
    return {"data": Path(config["data"]).name, "epochs": config["epochs"], "max_steps": config["max_steps"],
            "batch_size": config["batch_size"], "lr": config["lr"]}


def subsample(manifest: Path, per_split: int) -> Path:
    """The manifest with at most `per_split` random images per split, beside it (paths made absolute)."""
    import pandas as pd

    from ldcsf.data.manifest import write_manifest

    out = manifest.with_name(f"manifest_max{per_split}.csv")
    if out.is_file():
        return out
    frame = pd.read_csv(manifest)
    frame["path"] = [str((manifest.parent / p).resolve()) for p in frame["path"]]
    keep = [i for _, part in frame.groupby("split") for i in part.sample(min(len(part), per_split), random_state=0).index]
    write_manifest(frame.loc[sorted(keep)].reset_index(drop=True), out)
    return out


# -- how long the comparison takes: a few timed steps of each model ----------------------------
def steps_per_run(train_images: int, args) -> tuple[int, int]:
    """(optimiser steps, validations) of one training at this budget."""
    per_epoch = max(1, math.ceil(train_images / args.batch_size))
    steps = args.epochs * per_epoch if args.max_steps < 0 else min(args.max_steps, args.epochs * per_epoch)
    return steps, math.ceil(steps / per_epoch)


def estimate(rows: list[Entry], manifest: Path, args, device: str) -> dict:
    """Projected duration of each (model, seed) run at this budget, from a few timed steps.

    A run decodes every image once (the check before training), trains `steps` batches,
    validates after each epoch and once more to tune thresholds, then checks and scores the test
    split. Each part is timed here: loading real training images with augmentation and test
    images without, a training step (forward, backward, AdamW) and inference on a batch of 64.

    On a CPU the clock is the process's CPU time at one thread: on a shared machine wall time
    mostly measures the other processes, CPU time at one thread is close to what an idle core
    takes. A second core speeds up the model's work by at most 2x and leaves image loading
    (one process, `--workers 0`) as it is, which gives a range for 2 cores. Fixed costs per run
    (process start, building the model, checkpoints) are left out.
    """
    import itertools

    import torch
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from ldcsf import create_model
    from ldcsf.benchmarking.timing import time_interleaved
    from ldcsf.data.dataset import ManifestDataset
    from ldcsf.data.manifest import read_manifest
    from ldcsf.data.transforms import build_transforms

    cpu = device == "cpu"
    if cpu:
        torch.set_num_threads(1)
    data = read_manifest(manifest)
    sizes = {split: len(data.subset(split)) for split in ("train", "val", "test")}
    steps, validations = steps_per_run(sizes["train"], args)
    batch, eval_batch = args.batch_size, 64
    models = {e.name: create_model(e.variant, labels=data.labels, **e.kwargs).to(device) for e in rows}
    cpu_seconds: dict[str, list[float]] = {}

    def timed(name: str, call):
        if not cpu:
            return call

        def wrapped():
            start = time.process_time()
            call()
            cpu_seconds.setdefault(name, []).append(time.process_time() - start)
        return wrapped

    def loader(split: str, px: int, train: bool):
        dataset = ManifestDataset(data.subset(split), build_transforms(px, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD,
                                                                     train=train))
        order = itertools.cycle(np.random.default_rng(0).permutation(len(dataset)))
        return lambda: [dataset[next(order)] for _ in range(batch)]

    def train_step(model):
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
        x = torch.randn(batch, 3, *model.img_size, device=device)
        y = torch.randint(0, 2, (batch, model.num_labels), device=device).float()

        def step():
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
            optimizer.step()
        return step

    def infer_step(model):
        x = torch.randn(eval_batch, 3, *model.img_size, device=device)

        def step():
            with torch.no_grad():
                model(x)
        return step

    workloads = {}
    for px in sorted({int(m.img_size[0]) for m in models.values()}):
        workloads[f"load train {px}"] = (loader("train", px, True), batch)
        workloads[f"load test {px}"] = (loader("test", px, False), batch)
    for name, model in models.items():
        workloads[f"train {name}"] = (train_step(model.train()), batch)
        workloads[f"infer {name}"] = (infer_step(model.eval()), eval_batch)
    workloads = {k: (timed(k, call), n) for k, (call, n) in workloads.items()}
    sync = None if cpu else torch.cuda.synchronize
    wall = time_interleaved(workloads, repeats=args.estimate_repeats, synchronize=sync, progress=not args.quick)
    # Median seconds per image; on a CPU only the timed repeats (the warm-up call comes first).
    per_image = {k: float(np.median(cpu_seconds[k][-args.estimate_repeats:] if cpu else t.seconds)) / t.items
                 for k, t in wall.items()}

    runs = {}
    for name, model in models.items():
        px = int(model.img_size[0])
        load_train, load_eval = per_image[f"load train {px}"], per_image[f"load test {px}"]
        train, infer = per_image[f"train {name}"], per_image[f"infer {name}"]
        evaluated = sizes["val"] * (validations + 1) + sizes["test"]
        loading = (sum(sizes.values()) + sizes["test"]) * load_eval + steps * batch * load_train + evaluated * load_eval
        model_work = steps * batch * train + evaluated * infer
        runs[name] = {"step_s": batch * train, "infer_ms_per_img": 1e3 * infer, "loading_s": loading,
                      "model_s": model_work, "run_s": loading + model_work}
    total = len(args.seeds) * sum(r["run_s"] for r in runs.values())
    jobs = default_jobs(args, device)
    loading_total = len(args.seeds) * sum(r["loading_s"] for r in runs.values())
    return {"split_sizes": sizes, "steps": steps, "validations": validations, "batch_size": batch,
            "clock": "process CPU time at 1 thread" if cpu else "wall time", "device": device,
            "load_ms_per_img": {k.removeprefix("load "): 1e3 * v for k, v in per_image.items() if k.startswith("load")},
            "runs": runs, "seeds": len(args.seeds), "total_s": total,
            "total_2_cores_s": [loading_total + (total - loading_total) / 2, total] if cpu else None,
            # --jobs N one-thread runs side by side: the work splits N ways, never below the longest run.
            "jobs": jobs, "total_jobs_s": max(total / jobs, max((r["run_s"] for r in runs.values()), default=0.0)),
            "load_average": list(os.getloadavg())}


def render_estimate(est: dict, header: str) -> str:
    rows = [[name, fmt(r["step_s"], 2), fmt(r["infer_ms_per_img"], 1), fmt(r["loading_s"], 0), fmt(r["model_s"], 0),
             fmt(r["run_s"], 0)] for name, r in est["runs"].items()]
    loads = ", ".join(f"{k} {v:.1f}" for k, v in est["load_ms_per_img"].items())
    lines = [
        header,
        f"- per run: {est['steps']} optimiser steps of batch {est['batch_size']}, {est['validations']} validation(s) "
        f"+ 1 for thresholds, test split; image loading (ms/img): {loads}",
        f"- clock: {est['clock']}; load average while timing (1, 5, 15 min): "
        + ", ".join(f"{v:.1f}" for v in est["load_average"]) + "\n",
        markdown_table(["model", "train step s", "infer ms/img", "loading s / run", "model s / run", "s / run"], rows),
        "",
        f"**Projected: {est['total_s'] / 60:.0f} min on one core** ({est['seeds']} seed(s) x {len(rows)} models)",
    ]
    if est["total_2_cores_s"]:
        low, high = (v / 60 for v in est["total_2_cores_s"])
        lines[-1] += (f"; on 2 idle cores {low:.0f}–{high:.0f} min (a second thread speeds up the model work by "
                      "at most 2x, image loading not at all)")
    if est.get("jobs", 1) > 1:
        lines[-1] += (f"; with --jobs {est['jobs']} (the default here: {est['jobs']} one-thread runs side by side) "
                      f"about {est['total_jobs_s'] / 60:.0f} min")
    lines[-1] += ". Fixed costs per run (process start, checkpoints) come on top."
    return "\n".join(lines)


# -- aggregation ---------------------------------------------------------------------------------
def mean_sd(values: list[float | None]) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None and x == x], dtype=float)
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def pm(values: list[float | None], scale: float = 100.0, digits: int = 1) -> str:
    mean, sd, n = mean_sd(values)
    if not n:
        return "—"
    return f"{scale * mean:.{digits}f} ± {scale * sd:.{digits}f}" if n > 1 else f"{scale * mean:.{digits}f}"


def aggregate(results: list[dict], names: list[str]) -> dict:
    out = {}
    for name in names:
        runs = [r for r in results if r["name"] == name]
        if not runs:
            continue
        labels = runs[0]["metrics"]["labels"]
        out[name] = {
            "seeds": [r["seed"] for r in runs],
            "labels": labels,
            "per_label": {lab: {m: [r["metrics"]["per_label"][lab].get(m) for r in runs] for m in LABEL_METRICS}
                          for lab in labels},
            "summary": {k: [r["metrics"]["summary"].get(k) for r in runs] for k in ("mAP", "mean_accuracy", "macro_f1",
                                                                                    "macro_auroc")},
            "train_seconds": [r["train_seconds"] for r in runs],
            "eval_seconds": [r.get("eval_seconds") for r in runs],
        }
    return out


def map_plot(path: Path, agg: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ldcsf.utils.atomic import atomic_path

    names = list(agg)
    stats = [mean_sd(agg[n]["summary"]["mAP"]) for n in names]
    # Dots and whiskers on a zoomed axis: the models differ by a few points of mAP, which bars
    # starting at 0 would hide. Each seed is a dot; the bar is mean ± sd.
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
    y = np.arange(len(names))[::-1]
    for yi, name, (mean, sd, _) in zip(y, names, stats):
        seeds = [v for v in agg[name]["summary"]["mAP"] if v is not None]
        ax.scatter(seeds, [yi] * len(seeds), color="#9ecae1", edgecolor="#3182bd", s=28, zorder=2)
        ax.errorbar([mean], [yi], xerr=[sd], fmt="o", color="#08519c", capsize=4, markersize=7, zorder=3)
    if stats and stats[0][0] == stats[0][0]:  # the first row (LDCSF) as the reference
        ax.axvline(stats[0][0], color="#08519c", linestyle=":", linewidth=1)
    ax.set_yticks(y, names)
    ax.set(xlabel="test mAP (dots: seeds; marker and whiskers: mean ± sd)", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def render(agg: dict, header: str) -> str:
    names = list(agg)
    labels = agg[names[0]]["labels"] if names else []
    acc_rows = [[n, len(agg[n]["seeds"])] + [pm(agg[n]["per_label"][lab]["accuracy"]) for lab in labels]
                + [pm(agg[n]["summary"]["mean_accuracy"]), pm(agg[n]["summary"]["mAP"])] for n in names]
    md = [header, "## Per-label accuracy (%), test split, mean ± sd over seeds\n",
          markdown_table(["model", "seeds", *labels, "mean accuracy", "mAP"], acc_rows), ""]
    for metric, title in (("f1", "F1"), ("auroc", "AUROC"), ("ap", "average precision")):
        rows = [[n] + [pm(agg[n]["per_label"][lab][metric]) for lab in labels] for n in names]
        md += [f"## Per-label {title} (%)\n", markdown_table(["model", *labels], rows), ""]
    rows = [[n, pm(agg[n]["summary"]["macro_f1"]), pm(agg[n]["summary"]["macro_auroc"]),
             fmt(mean_sd(agg[n]["train_seconds"])[0], 0), fmt(mean_sd(agg[n]["eval_seconds"])[0], 0)] for n in names]
    md += ["## Summary\n", markdown_table(["model", "macro F1", "macro AUROC", "train s / run", "test s / run"], rows),
           "", "Seconds are wall time of this process; a training resumed after an interruption counts only "
           "its last part.", ""]
    return "\n".join(md)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from ldcsf.data.manifest import label_counts
    from ldcsf.data.pancancer import build_pancancer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.paper_scale and device == "cpu" and not args.force:
        raise SystemExit("accuracy.py: error: --paper-scale trains Swin-T scale models: it needs a GPU (or --force)")
    scale = "quick" if args.quick else "paper" if args.paper_scale else "cpu"
    rows = entries(scale)
    if args.only:
        unknown = sorted(set(args.only) - {e.name for e in rows})
        if unknown:
            raise SystemExit(f"accuracy.py: error: unknown row(s) {unknown}; rows: {[e.name for e in rows]}")
        rows = [e for e in rows if e.name in args.only]

    # One split for every model and seed: seed 0, grouped by source case.
    manifest = args.work / "data" / "manifest.csv"
    if not manifest.is_file():
        build_pancancer(args.data, manifest.parent, seed=0, progress=not args.quick)
    if args.max_images:
        manifest = subsample(manifest, args.max_images)
    import pandas as pd

    frame = pd.read_csv(manifest)
    split_sizes = frame["split"].value_counts().to_dict()
    machine = machine_info(device)
    steps, _ = steps_per_run(int(split_sizes.get("train", 0)), args)
    budget = (f"{args.epochs} epoch(s) = {steps} optimiser steps of batch {args.batch_size}"
              + (f" (capped by --max-steps {args.max_steps})" if args.max_steps > 0 else "")
              + f"; AdamW, peak lr {args.lr:g}, 1 epoch linear warm-up then cosine decay to 0; random init")
    provenance_lines = provenance(machine, command_line(), now())
    if args.estimate:
        est = estimate(rows, manifest, args, device)
        markdown = render_estimate(est, f"# Accuracy benchmark: projected duration ({scale} scale)\n\n"
                                        f"{provenance_lines}- budget: {budget}\n")
        stem = args.out.with_name(args.out.name + "_estimate")
        md_path, js_path = write_results(stem, markdown, {"command": command_line(), "date": now(),
                                                          "machine": machine.to_dict(), "budget": budget, **est})
        print(markdown)
        print(f"wrote {md_path}, {js_path}", file=sys.stderr)
        return 0

    results = []
    todo = [(e, s) for e in rows for s in args.seeds]
    jobs = default_jobs(args, device)
    pending = [(e, s) for e, s in todo if not result_file_of(e, s, args).is_file()]
    if jobs > 1 and len(pending) > 1:
        failed = run_side_by_side(pending, args, min(jobs, len(pending)))
        if failed:
            raise SystemExit("accuracy.py: error: runs failed (the others are saved; rerun to retry): "
                             + "; ".join(failed))
    for i, (entry, seed) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {entry.name}, seed {seed}", file=sys.stderr)
        results.append(run_one(entry, seed, manifest, args, device))

    if args.no_tables:
        return 0
    agg = aggregate(results, [e.name for e in rows])
    run_minutes = sum(r["train_seconds"] + r.get("eval_seconds", 0.0) for r in results) / 60
    header = (f"# Accuracy benchmark ({scale} scale)\n\n{provenance_lines}"
              f"- data: pan-cancer set from {args.data} (`ldcsf.data.pancancer.build_pancancer`, split seed 0, "
              f"grouped by source case): {', '.join(f'{k} {v}' for k, v in sorted(split_sizes.items()))} images\n"
              f"- budget, the same for every model: {budget}\n- seeds: {' '.join(map(str, args.seeds))}\n"
              f"- runs: {'one after another' if jobs == 1 else f'{jobs} side by side (--jobs), one torch thread each'}\n"
              f"- time: {run_minutes:.0f} min of training and testing, summed over {len(results)} runs\n")
    png = args.out.with_suffix(".png")
    map_plot(png, agg, f"{scale} scale, {len(args.seeds)} seed(s), {budget.split(' =')[0]}")
    markdown = render(agg, header) + f"\n![mAP per model]({png.name})\n\n## Data\n\n" + markdown_table(
        *_frame_table(label_counts(frame, by="dataset")))
    md_path, js_path = write_results(args.out, markdown, {
        "command": command_line(), "date": now(), "machine": machine.to_dict(), "scale": scale,
        "budget": budget, "seeds": args.seeds, "split_sizes": split_sizes, "models": agg, "runs": results})
    print(markdown)
    print(f"wrote {md_path}, {js_path}, {png}", file=sys.stderr)
    return 0


def _frame_table(frame) -> tuple[list[str], list[list]]:
    return list(frame.columns), frame.astype(str).values.tolist()


if __name__ == "__main__":
    sys.exit(main())
