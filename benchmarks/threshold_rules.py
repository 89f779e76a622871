"""Which threshold rule holds on a source never trained on: F1, Youden's J, or a fixed 0.5.

Thresholds are tuned on a validation split, whose label balance is that of the training sources.
F1 rewards recall when a label is common there (85 % of the WSSS4LUAD mask tiles hold stroma),
so it lowers the threshold; Youden's J (TPR - FPR) does not depend on the balance. This script
takes the leave-one-source-out fold models that `benchmarks/loso.py` kept, re-tunes each fold's
thresholds on its own validation split with each rule, and scores the held-out source: per-label
accuracy and the share of its images called stroma. The models are not retrained, so the rules
are compared on exactly the same probabilities.

    .venv/bin/python benchmarks/threshold_rules.py benchmarks/results/loso_work_e4 \
        benchmarks/results/loso_work_e4_seed1 benchmarks/results/loso_work_e4_seed2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _common import RESULTS, command_line, fmt, markdown_table, now, provenance, write_results
from _recipe import RECIPES
from ldcsf.benchmarking import machine_info

RULES = ("f1", "youden", "fixed 0.5")
LABELS = ("stroma", "necrosis", "non_tumor", "tumor")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", nargs="+", type=Path, help="loso.py --work folders (RECIPE/SOURCE/run/model.pt)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--manifest", type=Path, default=RESULTS / "tsr_work" / "pancancer" / "manifest_capped.csv",
                   help="the pan-cancer manifest the folds were cut from (loso.py's)")
    p.add_argument("--quick", action="store_true", help="folds of `loso.py --quick` (their own map cache)")
    p.add_argument("--out", type=Path, default=RESULTS / "threshold_rules", help="results stem (.md, .json)")
    return p.parse_args(argv)


def fold_models(work: Path):
    """(recipe, held-out source, fold folder) of every finished frozen-backbone fold in `work`."""
    for fold in sorted(work.glob("*/*")):
        recipe = fold.parent.name
        if (fold / "run" / "model.pt").is_file() and (fold / "manifest.csv").is_file() \
                and RECIPES.get(recipe, {}).get("freeze_backbone"):
            yield recipe, fold.name, fold


def accuracy_per_label(decisions: np.ndarray, targets: np.ndarray, labels) -> dict[str, float]:
    """Accuracy over the annotated entries of each label (blank = NaN = not annotated)."""
    out = {}
    for j, name in enumerate(labels):
        annotated = ~np.isnan(targets[:, j])
        if annotated.any():
            out[name] = float(np.mean(decisions[annotated, j] == (targets[annotated, j] > 0.5)))
    return out


def score_fold(fold: Path, source: str, full, args) -> list[dict]:
    import pandas as pd

    from ldcsf.checkpoint import read_checkpoint_payload
    from ldcsf.evaluation.thresholds import tune_thresholds
    from loso import predict

    model_file = fold / "run" / "model.pt"
    labels = list(read_checkpoint_payload(model_file)[0].labels)
    loso_args = argparse.Namespace(quick=args.quick, work=fold.parent.parent)
    validation = pd.read_csv(fold / "manifest.csv").query("split == 'val'")
    held = full[full["dataset"].eq(source)]
    val_probs = predict(model_file, validation, True, loso_args)
    held_probs = predict(model_file, held, True, loso_args)
    val_targets = validation[labels].to_numpy(dtype=np.float32)
    held_targets = held[labels].to_numpy(dtype=np.float32)
    stroma = labels.index("stroma")
    rows = []
    for rule in RULES:
        thresholds = [0.5] * len(labels) if rule == "fixed 0.5" else tune_thresholds(val_probs, val_targets, rule)
        decisions = held_probs >= np.asarray(thresholds)
        rows.append({"rule": rule, "thresholds": [float(t) for t in thresholds],
                     "called_stroma": float(decisions[:, stroma].mean()),
                     "accuracy": accuracy_per_label(decisions, held_targets, labels)})
    return rows


def summary_rows(results: list[dict]) -> list[list[str]]:
    """Per held-out source and rule: mean accuracy per label over folds, and the called-stroma range."""
    rows = []
    for source in sorted({r["source"] for r in results}):
        for rule in RULES:
            mine = [r for r in results if r["source"] == source and r["rule"] == rule]
            cells = []
            for name in LABELS:
                values = [r["accuracy"][name] for r in mine if name in r["accuracy"]]
                cells.append(fmt(float(np.mean(values)), 2) if values else "—")
            called = [100 * r["called_stroma"] for r in mine]
            rows.append([source, rule, len(mine), *cells, f"{min(called):.0f}–{max(called):.0f} %"])
    return rows


def overall_rows(results: list[dict]) -> list[list[str]]:
    """Per rule: mean accuracy over every (fold, annotated label) of every held-out source."""
    rows = []
    for rule in RULES:
        per_label = {name: [r["accuracy"][name] for r in results if r["rule"] == rule and name in r["accuracy"]]
                     for name in LABELS}
        everything = [v for values in per_label.values() for v in values]
        rows.append([rule, *(fmt(float(np.mean(v)), 3) for v in per_label.values()), fmt(float(np.mean(everything)), 3)])
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    full = pd.read_csv(args.manifest)
    results = []
    for work in args.work:
        for recipe, source, fold in fold_models(work):
            print(f"-- {work.name}: {recipe}, {source} held out", file=sys.stderr, flush=True)
            for row in score_fold(fold, source, full, args):
                results.append({"work": work.name, "recipe": recipe, "source": source, **row})
    machine = machine_info("cpu")
    md = ["# Threshold rules on held-out sources (leave-one-source-out fold models)\n",
          provenance(machine, command_line(), now()),
          f"{len({(r['work'], r['recipe'], r['source']) for r in results})} fold models (recipes × seeds). "
          "Thresholds re-tuned on each fold's validation split by each rule; cells: mean accuracy over "
          "the folds on the held-out source (— = not annotated); 'called stroma': range over folds.\n",
          markdown_table(["held-out source", "rule", "folds", *LABELS, "called stroma"], summary_rows(results)),
          "\nMean over every fold and annotated label of every held-out source:\n",
          markdown_table(["rule", *LABELS, "all"], overall_rows(results))]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "machine": machine.to_dict(),
                                            "results": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
