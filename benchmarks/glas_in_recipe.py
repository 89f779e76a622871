"""What GlaS's gland masks add to the recipe on the sources it never saw: the same recipe's
leave-one-source-out folds trained without and with GlaS, seed by seed.

Reads the folds' scores.json (written by `loso.py`; `--train-with glas` writes the folds with GlaS
into `<work>_with_glas`) and trains nothing:

    for s in 0 1 2; do
      .venv/bin/python benchmarks/loso.py --recipes lite0_area --sources nct_crc oral --seed $s \\
          --work benchmarks/results/heldout_work/seed$s                       # without GlaS
      .venv/bin/python benchmarks/loso.py --recipes lite0_area --sources nct_crc oral wsss4luad_masks \\
          --train-with glas --seed $s --work benchmarks/results/heldout_work/seed$s   # with GlaS
    done
    .venv/bin/python benchmarks/glas_in_recipe.py

WSSS4LUAD held out without GlaS has no pixel mask left to learn areas from; its row compares the
folds in `--wsss-without` (seed 0 of the default work folder) with the `_with_glas` ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import REPO, RESULTS, command_line, fmt, markdown_table, now, write_results

COLUMNS = [("nct_crc", "stroma"), ("nct_crc", "necrosis"), ("nct_crc", "non_tumor"), ("nct_crc", "tumor"),
           ("oral", "tumor")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="lite0_area")
    p.add_argument("--work", type=Path, default=RESULTS / "heldout_work", help="folder of seed<K>[_with_glas]/ folds")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=RESULTS / "glas_in_recipe", help="results stem (.md, .json)")
    return p.parse_args(argv)


def shown(path: Path) -> Path:
    """A folder as the repository names it, where it lies inside it."""
    try:
        return path.resolve().relative_to(REPO)
    except ValueError:
        return path


def aurocs(fold: Path) -> dict[str, float] | None:
    """Per-label AUROC of a held-out fold, or None when the fold is not there."""
    scores = fold / "scores.json"
    if not scores.is_file():
        return None
    per_label = json.loads(scores.read_text())["metrics"]["per_label"]
    return {label: row["auroc"] for label, row in per_label.items() if row.get("annotated")}


def main(argv=None) -> int:
    args = parse_args(argv)
    table, rows = {}, []
    for variant, suffix in (("without GlaS", ""), ("with GlaS", "_with_glas")):
        per_seed = {}
        for seed in args.seeds:
            values = {}
            for source, label in COLUMNS:
                got = aurocs(args.work / f"seed{seed}{suffix}" / args.recipe / source)
                values[f"{source} {label}"] = None if got is None else got.get(label)
            per_seed[seed] = values
            rows.append([variant, seed, *[fmt(v, 2) if v is not None else "—" for v in values.values()]])
        mean = {k: (float(np.mean(vs)) if (vs := [s[k] for s in per_seed.values() if s[k] is not None]) else None)
                for k in next(iter(per_seed.values()))}
        rows.append([f"**{variant}**", "mean", *[f"**{fmt(v, 2)}**" if v is not None else "—" for v in mean.values()]])
        table[variant] = {"per_seed": per_seed, "mean": mean}
    headers = ["training", "seed", *[f"{source} {label} AUROC" for source, label in COLUMNS]]
    md = [f"# What GlaS adds to the recipe on sources never trained on ({args.recipe})\n",
          f"- command: `{command_line()}`\n- folds: `{shown(args.work)}`\n- date: {now()}\n",
          "Each fold's model never saw the source it is scored on; 'with GlaS' adds GlaS's gland-mask tiles "
          "to every fold's training (`loso.py --train-with glas`). AUROC of each label's presence probability.\n",
          markdown_table(headers, rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "seeds": args.seeds, "results": table})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
