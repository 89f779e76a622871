"""How far does a wrong µm/px move a slide's stroma fraction, on sources never trained on?

`ldcsf slide` cuts tiles at the model's physical scale from the slide's µm/px. When that µm/px is
wrong (a scanner's header, an export that dropped it, a guess passed as --mpp), every tile spans
another field: told `factor` times the true µm/px, a 112 µm tile covers 112 / factor µm of
tissue, shown enlarged (factor > 1) or shrunk (factor < 1). `ldcsf slide` refuses a header more
than 3x from its objective power, warns from 1.6x, and warns about an --mpp 1.2x from the header's
µm/px (docs/reliability.md); this measures what the errors it lets through do to the TSR.

Each masked source is cut again as such a run would cut it, then scored by its fold model from
loso.py (GlaS held out; WSSS4LUAD held out with GlaS in training): GlaS resampled to
0.875 / factor µm/px in 128 px tiles, WSSS4LUAD (1.0 µm/px assumed) in 112 / factor px tiles.
Per factor: the stroma fraction's MAE, Spearman, high/low agreement and bias against the masks,
and how far each image's estimate moved from the one at the true scale (mean absolute shift, and
the share of images whose stroma-high/low call flipped). Factor 1 re-cuts at the true scale and
reproduces the fold's own scores.

    .venv/bin/python benchmarks/heldout_scale_error.py --seeds 0 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _common import (RESULTS, SHARED_DATA, add_masked_fold_options, command_line, each_masked_fold, markdown_table, now,
                     write_results)
from _recipe import DEFAULT_TILING, FIELD_UM, Tiling
from loso import image_tsr, loaded_tile_areas, mask_field, tsr_scores

#: The stated µm/px over the true one: from half to twice, through 1.2x (where `ldcsf slide` warns about an --mpp
#: against the header's µm/px) and 1.6x (where it warns about a header against its objective power).
FACTORS = (0.5, 0.625, 0.8, 1.0, 1.25, 1.6, 2.0)
#: The stroma-high/low cut-off of the TSR (tsr_scores' high/low agreement uses the same).
CUT_OFF = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_masked_fold_options(p)
    p.add_argument("--factors", type=float, nargs="+", default=list(FACTORS),
                   help="stated µm/px over the true one (1 is always added: the reference)")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--work", type=Path, default=RESULTS / "scale_error_work", help="the re-cut tiles (kept for reruns)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_scale_error", help="results stem (.md, .json)")
    args = p.parse_args(argv)
    if any(f <= 0 for f in args.factors):
        p.error("--factors must be positive")
    args.factors = sorted({*args.factors, 1.0})
    return args


def cut_arguments(factor: float) -> dict:
    """`load_source` arguments cutting a masked source as a run told `factor` x the true µm/px would:
    the 112 µm field shrunk to 112 / factor µm, at the model's 128 px (loso.py's rule for a field)."""
    return mask_field(Tiling(FIELD_UM / factor, DEFAULT_TILING.input_px))


def recut(source: str, factor: float, data: Path, work: Path) -> pd.DataFrame:
    """The source's mask tiles at `factor` (written once under `work`), absolute paths; GlaS's
    malignant images only (benign ones have no tumour, so no stroma fraction)."""
    from ldcsf.data.manifest import default_labels
    from ldcsf.data.pancancer import load_source
    from ldcsf.data.sources import shared_source

    rows = work / source / f"x{factor:g}" / "rows.csv"
    if rows.is_file():
        return pd.read_csv(rows)
    frame = load_source(shared_source(source), data, rows.parent, list(default_labels()), **cut_arguments(factor))
    if "glas_grade" in frame:
        frame = frame[frame["glas_grade"].eq("malignant")]
    frame.reset_index(drop=True).to_csv(rows, index=False)
    return frame.reset_index(drop=True)


def shifts(per_image: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """How far each image's estimate moved from the true scale's: mean |shift| and high/low calls flipped."""
    both = per_image.join(reference, rsuffix="_ref", how="inner")
    moved = both["pred"] - both["pred_ref"]
    flipped = (both["pred"] >= CUT_OFF) != (both["pred_ref"] >= CUT_OFF)
    return {"images_compared": int(len(both)), "mean_abs_shift": float(moved.abs().mean()),
            "mean_shift": float(moved.mean()), "flipped_high_low": float(flipped.mean())}


def fold_scores(folder: Path, source: str, factors, data: Path, work: Path) -> dict:
    from ldcsf.checkpoint import load_checkpoint

    loaded = load_checkpoint(folder / "run" / "model.pt")
    loaded.model.eval()
    labels = list(loaded.meta.labels)
    per_factor = {}
    for factor in factors:
        tiles = recut(source, factor, data, work)
        print(f"  x{factor:g}: {len(tiles)} tiles", flush=True)
        per_image = image_tsr(tiles, loaded_tile_areas(loaded, tiles), labels)
        per_factor[factor] = per_image.set_axis(per_image.index.map(lambda p: Path(p).stem))  # each cut's own folder
    reference = per_factor[1.0]
    return {f"{factor:g}": {**tsr_scores(per_image), "bias": float((per_image["pred"] - per_image["true"]).mean()),
                            **shifts(per_image, reference)}
            for factor, per_image in per_factor.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    results = each_masked_fold(args, lambda folder, source: fold_scores(folder, source, args.factors, args.data, args.work))
    rows = []
    for source, per_seed in results.items():
        for factor in (f"{f:g}" for f in args.factors):
            found = [r[factor] for r in per_seed.values()]
            mean = lambda key: float(np.mean([f[key] for f in found]))  # noqa: E731
            rows.append([source, factor, f"{FIELD_UM / float(factor):.0f}", str(len(found)), f"{mean('mae'):.3f}",
                         f"{mean('spearman'):.2f}", f"{100 * mean('high_low_agreement'):.0f} %", f"{mean('bias'):+.3f}",
                         f"{mean('mean_abs_shift'):.3f}", f"{100 * mean('flipped_high_low'):.0f} %"])
    md = [f"# A wrong µm/px on sources never trained on ({args.recipe})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n- seeds: {args.seeds}\n",
          "Factor: the µm/px a run is told over the true one; field: the tissue (µm) each 112 µm tile then spans. "
          "Shift: how far each image's stroma fraction moved from its estimate at the true scale; flipped: share of "
          "images whose stroma-high/low call (50 %) changed.\n",
          markdown_table(["held-out source", "factor", "field µm", "seeds", "MAE", "Spearman", "high/low", "bias",
                          "mean |shift|", "flipped"], rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "seeds": args.seeds, "factors": args.factors, "results": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
