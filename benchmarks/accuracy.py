"""Accuracy of LDCSF against its baselines and ablations, on the same real data and budget.

Every model is trained with the same split, epochs, batch size and learning-rate schedule, for
several seeds, and scored on the held-out test split; results are mean ± sd over seeds:
  * per-label accuracy (the paper's table: stroma, necrosis, non_tumor, tumor),
  * per-label F1, AUROC and AP, and mAP,
  * a plot of mAP per model with error bars.

Data: the shared pan-cancer set (`ldcsf.data.pancancer.build_pancancer`), split train/val/test by
source case (images of one case never straddle two splits). Models start from random weights
(no ImageNet weights are reachable offline), so absolute numbers are lower than the paper's;
the comparison between models at equal budget is the point.

Resumable: each (model, seed) result is saved as it finishes and a rerun skips it; an
interrupted training continues from its last checkpoint.

    .venv/bin/python benchmarks/accuracy.py                  # CPU-sized: mini models, 128 px, 3 seeds
    .venv/bin/python benchmarks/accuracy.py --paper-scale    # Swin-T scale, 224 px (GPU)
    .venv/bin/python benchmarks/accuracy.py --quick          # micro models, a few steps (tests)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf.benchmarking import machine_info
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
    p.add_argument("--epochs", type=int, default=3, help="training epochs, the same for every model")
    p.add_argument("--max-steps", type=int, default=-1, help="cap on optimiser steps (-1: none)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (warm-up then cosine)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--work", type=Path, default=RESULTS / "accuracy_work", help="data set, runs and per-run results")
    p.add_argument("--out", type=Path, default=RESULTS / "accuracy", help="results stem (.md, .json, .png)")
    p.add_argument("--max-images", type=int, default=None,
                   help="use at most N images per split (a random subset, same for every model): quick looks")
    p.add_argument("--quick", action="store_true",
                   help="micro models, 1 seed, 2 steps, 24 images per split: a smoke run for tests")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1] if argv and "--seeds" in argv else [0]
        args.epochs, args.max_steps, args.batch_size = 1, 2 if args.max_steps < 0 else args.max_steps, 8
        args.max_images = args.max_images or 24
    return args


# -- models the training function can build ----------------------------------------------------
def trainable_name(entry: Entry) -> tuple[str, dict]:
    """(variant name, model kwargs) to hand to training.

    When `TrainConfig` takes model arguments they are passed through; otherwise a variant with
    the arguments fixed is registered in this process under a descriptive name, so that
    training, its checkpoint and evaluation all rebuild the same architecture.
    """
    from ldcsf.training.train import TrainConfig

    if not entry.kwargs or "model_kwargs" in {f.name for f in fields(TrainConfig)}:
        return entry.variant, dict(entry.kwargs)
    from ldcsf.models import factory

    name = entry.variant + "__" + "__".join(f"{k}-{v}" for k, v in sorted(entry.kwargs.items()))
    if name not in factory.list_models():
        base, fixed = factory._variant(entry.variant).build, dict(entry.kwargs)

        def build(**kwargs):
            return base(**{**fixed, **kwargs})

        build.__name__ = name
        factory.register(f"{entry.name} (benchmark variant)")(build)
    return name, {}


# -- one (model, seed) run ---------------------------------------------------------------------
def run_one(entry: Entry, seed: int, manifest: Path, args, device: str) -> dict:
    """Train, then evaluate on the test split; return (and save) the result."""
    from ldcsf.evaluation.evaluate import evaluate
    from ldcsf.evaluation.inference import DeviceOptions
    from ldcsf.training.train import TrainConfig, train

    slug = entry.name.replace(" ", "_").replace("/", "")
    result_file = args.work / "results" / f"{slug}__seed{seed}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    run_dir = args.work / "runs" / slug / f"seed{seed}"
    model_name, model_kwargs = trainable_name(entry)
    model_file = run_dir / "model.pt"
    start = time.perf_counter()
    if not model_file.is_file():
        extra = {"model_kwargs": model_kwargs} if model_kwargs else {}
        config = TrainConfig(
            data=str(manifest), model=model_name, out=str(run_dir), epochs=args.epochs, max_steps=args.max_steps,
            batch_size=args.batch_size, lr=args.lr, seed=seed, num_workers=args.workers, patience=0,
            accelerator="gpu" if device == "cuda" else "cpu", devices=1,
            resume=(run_dir / "checkpoints" / "last.ckpt").is_file(), progress=not args.quick, **extra,
        )
        model_file = train(config).model_file
    train_s = time.perf_counter() - start
    options = DeviceOptions(accelerator="gpu" if device == "cuda" else "cpu", devices=1, batch_size=64,
                            num_workers=args.workers, progress=False)
    report = evaluate(model_file, manifest, run_dir / "test", split="test", options=options).report
    result = {"name": entry.name, "variant": entry.variant, "kwargs": entry.kwargs, "role": entry.role,
              "seed": seed, "train_seconds": train_s, "metrics": report.to_dict()}
    write_json_atomic(result_file, result)
    return result


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
        }
    return out


def map_plot(path: Path, agg: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ldcsf.utils.atomic import atomic_path

    names = list(agg)
    stats = [mean_sd(agg[n]["summary"]["mAP"]) for n in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4))
    x = np.arange(len(names))
    ax.bar(x, [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=4, color="#9ecae1", edgecolor="#3182bd")
    for i, n in enumerate(names):  # each seed as a dot: three points say more than a bar
        ax.scatter([i] * len(agg[n]["summary"]["mAP"]), agg[n]["summary"]["mAP"], color="#08519c", s=12, zorder=3)
    ax.set_xticks(x, names, rotation=25, ha="right")
    ax.set(ylabel="test mAP (mean ± sd over seeds)", ylim=(0, 1), title=title)
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
             fmt(mean_sd(agg[n]["train_seconds"])[0], 0)] for n in names]
    md += ["## Summary\n", markdown_table(["model", "macro F1", "macro AUROC", "train+eval s / run"], rows), ""]
    return "\n".join(md)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from ldcsf.data.pancancer import build_pancancer, summarize

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

    results = []
    todo = [(e, s) for e in rows for s in args.seeds]
    for i, (entry, seed) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {entry.name}, seed {seed}", file=sys.stderr)
        results.append(run_one(entry, seed, manifest, args, device))

    agg = aggregate(results, [e.name for e in rows])
    machine = machine_info(device)
    budget = (f"{args.epochs} epochs" + (f" (at most {args.max_steps} steps)" if args.max_steps > 0 else "")
              + f", batch {args.batch_size}, AdamW lr {args.lr:g} with warm-up and cosine decay, random init")
    header = (f"# Accuracy benchmark ({scale} scale)\n\n{provenance(machine, command_line(), now())}"
              f"- data: pan-cancer set from {args.data} (`ldcsf.data.pancancer.build_pancancer`, split seed 0, "
              f"grouped by source case): {', '.join(f'{k} {v}' for k, v in sorted(split_sizes.items()))} images\n"
              f"- budget, the same for every model: {budget}\n- seeds: {' '.join(map(str, args.seeds))}\n")
    png = args.out.with_suffix(".png")
    map_plot(png, agg, f"{scale} scale, {len(args.seeds)} seed(s), {budget.split(',')[0]}")
    markdown = render(agg, header) + f"\n![mAP per model]({png.name})\n\n## Data\n\n" + markdown_table(
        *_frame_table(summarize(frame)))
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
