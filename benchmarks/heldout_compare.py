"""Recipes (and the linear probe) compared on sources never trained on, seed by seed.

Reads the folds that loso.py and linear_probe.py left under <--root>/seed<K>/ (and, for the
sources listed in --with-glas, under <--root>/seed<K>_with_glas/: WSSS4LUAD's fold has no other
mask tiles to learn areas from unless GlaS joins its training) and trains nothing. One row per
recipe and seed, then the mean over seeds:

- GlaS and WSSS4LUAD (masks): stroma fraction per image, MAE / Spearman / high-low agreement,
  and bias (mean predicted minus true: an offset that MAE counts and Spearman does not);
- nct_crc: AUROC of p(stroma) and p(tumour), and of the estimated stroma share
  stroma / (stroma + tumour) between stroma-only and tumour-only tiles;
- oral: AUROC of p(tumour) and of the estimated tumour area.

A recipe *beats* the baseline when, averaged over seeds, it has the lower MAE and the higher
Spearman on both masked sources and loses no more than --tolerance of the baseline's nct_crc
stroma and tumour AUROCs and oral tumour AUROC. A recipe beats it *on the masked sources together*
when, with the same AUROC condition, its MAE averaged over the two masked sources is lower and
its Spearman so averaged is higher, and on neither source is its MAE more than --mae-slack higher
or its Spearman more than --spearman-slack lower (about one seed's spread of a recipe's mean): a
large gain on one organ is not refused for a loss the seeds cannot tell from noise on the other.

    .venv/bin/python benchmarks/heldout_compare.py --seeds 0 1 --out benchmarks/results/heldout_recipes

A recipe whose folds are no longer on disk (work folders are not tracked) can be read from an
earlier run's results JSON with --recorded: its rows for the same seeds enter the table as they
were measured, marked "recorded", and the rules judge them as any other.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import REPO, RESULTS, command_line, fmt, markdown_table, now, write_results

#: (column, source, how to read it from a fold's scores.json, better when higher; None: neither)
COLUMNS = (
    ("GlaS MAE", "glas", lambda s: s["tsr"]["mae"], False),
    ("GlaS Spearman", "glas", lambda s: s["tsr"]["spearman"], True),
    ("GlaS high/low", "glas", lambda s: s["tsr"]["high_low_agreement"], True),
    ("GlaS bias", "glas", lambda s: s["bias"], None),
    ("WSSS4LUAD MAE", "wsss4luad_masks", lambda s: s["tsr"]["mae"], False),
    ("WSSS4LUAD Spearman", "wsss4luad_masks", lambda s: s["tsr"]["spearman"], True),
    ("WSSS4LUAD high/low", "wsss4luad_masks", lambda s: s["tsr"]["high_low_agreement"], True),
    ("WSSS4LUAD bias", "wsss4luad_masks", lambda s: s["bias"], None),
    ("nct_crc stroma AUROC", "nct_crc", lambda s: s["metrics"]["per_label"]["stroma"]["auroc"], True),
    ("nct_crc tumour AUROC", "nct_crc", lambda s: s["metrics"]["per_label"]["tumor"]["auroc"], True),
    ("nct_crc stroma vs tumour (areas)", "nct_crc", lambda s: s["area_auroc"]["stroma_vs_tumor"], True),
    ("oral tumour AUROC", "oral", lambda s: s["metrics"]["per_label"]["tumor"]["auroc"], True),
    ("oral tumour AUROC (area)", "oral", lambda s: s["area_auroc"]["tumor"], True),
)
#: The columns a recipe must win (lower MAE, higher Spearman) and those it must not lose.
MUST_WIN = ("GlaS MAE", "GlaS Spearman", "WSSS4LUAD MAE", "WSSS4LUAD Spearman")
MUST_KEEP = ("nct_crc stroma AUROC", "nct_crc tumour AUROC", "oral tumour AUROC")
#: The masked sources' (MAE, Spearman) columns, averaged by the rule "on the masked sources together".
MASKED = (("GlaS MAE", "GlaS Spearman"), ("WSSS4LUAD MAE", "WSSS4LUAD Spearman"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=RESULTS / "heldout_work", help="holds seed<K>/ work folders")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--recipes", nargs="+", default=["linear_probe", "linear_probe_macenko", "lite0_area",
                                                    "lite0_area_linear", "lite0_area_macenko", "lite0_area_wd",
                                                    "lite0_area_short", "lite0_area_linear_macenko"])
    p.add_argument("--baseline", default="lite0_area")
    p.add_argument("--with-glas", nargs="*", default=["wsss4luad_masks"],
                   help="sources whose folds were trained with --train-with glas (read from seed<K>_with_glas)")
    p.add_argument("--tolerance", type=float, default=0.02, help="AUROC a recipe may lose and still beat the baseline")
    p.add_argument("--mae-slack", type=float, default=0.01,
                   help="MAE a recipe may lose on one masked source and still beat the baseline on both together")
    p.add_argument("--spearman-slack", type=float, default=0.05,
                   help="Spearman a recipe may lose on one masked source and still beat the baseline on both together")
    p.add_argument("--recorded", type=Path, nargs="*", default=[],
                   help="earlier heldout_compare.py JSON files: rows of recipes with no folds under --root")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_recipes", help="results stem (.md, .json)")
    return p.parse_args(argv)


def read_cell(root: Path, seed: int, recipe: str, source: str, with_glas: list[str], read) -> float | None:
    """One number of one fold, None when the fold has not run (or does not give it)."""
    folder = root / (f"seed{seed}_with_glas" if source in with_glas else f"seed{seed}")
    scores = folder / recipe / source / "scores.json"
    if not scores.is_file():
        return None
    try:
        value = read(json.loads(scores.read_text()) | {"bias": _bias(scores.parent / "tile_areas.csv")})
    except (KeyError, TypeError):
        return None
    return None if value is None or value != value else float(value)


def _shown(path: Path) -> str:
    """`path` from the repository root when it lies inside it (results files carry no machine paths)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _bias(tile_areas: Path) -> float | None:
    """Mean over images with tumour of predicted minus true stroma fraction (loso.py's per-image scoring)."""
    import pandas as pd

    from loso import image_tsr

    if not tile_areas.is_file():
        return None
    tiles = pd.read_csv(tile_areas)
    per = image_tsr(tiles, tiles[["area_stroma", "area_tumor"]].to_numpy(), ["stroma", "tumor"])
    return float((per["pred"] - per["true"]).mean())


def table(args) -> dict:
    """{recipe: {seed or "mean": {column: value}}}."""
    out = {}
    for recipe in args.recipes:
        rows = {seed: {name: read_cell(args.root, seed, recipe, source, args.with_glas, read)
                       for name, source, read, _ in COLUMNS} for seed in args.seeds}
        if not any(v is not None for row in rows.values() for v in row.values()):
            continue
        out[recipe] = _with_mean(rows, args.seeds)
    return out


def recorded_rows(args, measured: dict) -> tuple[dict, dict]:
    """Rows of the recipes not measured under --root, from --recorded files: ({recipe: rows}, {recipe: file})."""
    rows, origin = {}, {}
    for path in args.recorded:
        try:
            results = json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"{path}: not a heldout_compare.py results file ({err})")
        for recipe, seeds in results.items():
            if recipe not in args.recipes or recipe in measured or recipe in rows:
                continue
            missing = [s for s in args.seeds if str(s) not in seeds]
            if missing:
                raise SystemExit(f"{path}: {recipe} has no recorded row for seed(s) {missing}")
            kept = {s: {name: seeds[str(s)].get(name) for name, *_ in COLUMNS} for s in args.seeds}
            rows[recipe], origin[recipe] = _with_mean(kept, args.seeds), _shown(path)
    return rows, origin


def _with_mean(rows: dict, seeds: list[int]) -> dict:
    """A recipe's rows by seed, and their "mean" row."""
    return rows | {"mean": {name: _mean([rows[s][name] for s in seeds]) for name, *_ in COLUMNS}}


def _mean(values: list[float | None]) -> float | None:
    """The mean over seeds, None unless every seed has the number (a partial mean would flatter)."""
    return None if any(v is None for v in values) else float(np.mean(values))


def beats(candidate: dict, baseline: dict, tolerance: float) -> bool | None:
    """Whether a recipe's means beat the baseline's (see the module docstring); None when a number is missing."""
    better = {name: higher for name, _, _, higher in COLUMNS}
    known = [k for k in MUST_WIN if candidate.get(k) is not None and baseline.get(k) is not None]
    if not all((candidate[k] > baseline[k]) if better[k] else (candidate[k] < baseline[k]) for k in known):
        return False  # already lost on a masked source: the folds not run cannot change that
    needed = [*MUST_WIN, *MUST_KEEP]
    if any(candidate.get(k) is None or baseline.get(k) is None for k in needed):
        return None
    return all(candidate[k] >= baseline[k] - tolerance for k in MUST_KEEP)


def beats_together(candidate: dict, baseline: dict, tolerance: float, mae_slack: float,
                   spearman_slack: float) -> bool | None:
    """The rule "on the masked sources together" (module docstring); None when a number is missing."""
    needed = [*MUST_WIN, *MUST_KEEP]
    if any(candidate.get(k) is None or baseline.get(k) is None for k in needed):
        return None
    mean = lambda row, column: float(np.mean([row[pair[column]] for pair in MASKED]))  # noqa: E731
    wins = mean(candidate, 0) < mean(baseline, 0) and mean(candidate, 1) > mean(baseline, 1)
    close = all(candidate[mae] <= baseline[mae] + mae_slack and candidate[rho] >= baseline[rho] - spearman_slack
                for mae, rho in MASKED)
    keeps = all(candidate[k] >= baseline[k] - tolerance for k in MUST_KEEP)
    return wins and close and keeps


def main(argv=None) -> int:
    args = parse_args(argv)
    measured = table(args)
    earlier, origin = recorded_rows(args, measured)
    # In the order asked for, whichever way each recipe's rows were found.
    results = {r: measured.get(r) or earlier[r] for r in args.recipes if r in measured or r in earlier}
    if args.baseline not in results:
        raise SystemExit(f"{args.root}: no folds of the baseline {args.baseline} (run loso.py first)")
    base = results[args.baseline]["mean"]
    verdicts = {r: beats(rows["mean"], base, args.tolerance) for r, rows in results.items() if r != args.baseline}
    together = {r: beats_together(rows["mean"], base, args.tolerance, args.mae_slack, args.spearman_slack)
                for r, rows in results.items() if r != args.baseline}
    said = lambda verdict: "yes" if verdict else "no" if verdict is not None else "not all folds run"  # noqa: E731
    names = [name for name, *_ in COLUMNS]
    lines = []
    for recipe, rows in results.items():
        for seed, row in rows.items():
            shown = f"{recipe} (recorded)" if recipe in origin else recipe
            lines.append([shown, seed, *[fmt(row[n], 3 if "MAE" in n or "bias" in n else 2) for n in names]])
    md = ["# Recipes on sources never trained on (leave-one-source-out, seed by seed)\n",
          f"- command: `{command_line()}`\n- date: {now()}\n",
          f"Folds: {_shown(args.root)}/seed<K>/ (WSSS4LUAD: seed<K>_with_glas/, GlaS in its training). MAE, Spearman, "
          "high/low: stroma fraction per image with tumour in its mask. AUROCs: presence probabilities, and where "
          "marked, the estimated areas. — = fold not run.\n",
          markdown_table(["recipe", "seed", *names], lines),
          *([f"\nRecorded (folds not on disk, rows as measured then): "
             + ", ".join(f"{r} from `{f}`" for r, f in origin.items())] if origin else []),
          f"\nBeats {args.baseline} (mean over seeds {args.seeds}: lower MAE and higher Spearman on GlaS and "
          f"WSSS4LUAD, nct_crc and oral AUROCs within {args.tolerance}): "
          + ", ".join(f"{r}: {said(v)}" for r, v in verdicts.items()),
          f"\nBeats {args.baseline} on the masked sources together (MAE and Spearman averaged over GlaS and "
          f"WSSS4LUAD, neither source's MAE more than {args.mae_slack} higher nor Spearman more than "
          f"{args.spearman_slack} lower; AUROCs as above): "
          + ", ".join(f"{r}: {said(v)}" for r, v in together.items())]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "seeds": args.seeds,
                                            "baseline": args.baseline, "tolerance": args.tolerance,
                                            "results": {r: {str(k): v for k, v in rows.items()}
                                                        for r, rows in results.items()},
                                            "recorded": origin,
                                            "beats_baseline": verdicts, "mae_slack": args.mae_slack,
                                            "spearman_slack": args.spearman_slack,
                                            "beats_baseline_on_masked_sources_together": together})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
