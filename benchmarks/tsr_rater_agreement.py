"""ldcsf's TSR against a "reference rater" on real images, with the statistics of `ldcsf agreement`.

The reference rater is the pixel mask of each WSSS4LUAD validation image: its stroma fraction,
stroma / (stroma + tumour) pixels, recomputed here from the masks in the shared data. ldcsf's
stroma fraction of each image is taken from a `benchmarks/tsr_agreement.py` results file, which
scored every image with a model that never saw it (3-fold cross-validation by image), so no model
is re-run. Both become a cohort.csv and a reference table, and `ldcsf.study.agreement` gives the
ICC (two-way, with its interval), kappa, Spearman and Bland-Altman figure exactly as
`ldcsf agreement COHORT --reference SCORES.csv --score whole-slide` does (each image is scored
whole: there is no hotspot in a crop this small).

    .venv/bin/python benchmarks/tsr_rater_agreement.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf.benchmarking import machine_info
from ldcsf.export.slide_outputs import cohort_summary_columns
from ldcsf.study.agreement import agreement_study
from ldcsf.study.outputs import write_agreement
from tsr_agreement import image_mask_pairs, true_stroma_fraction

REPO = Path(__file__).resolve().parents[1]
#: The recommended recipe first (its figure is the one kept), then the previous one.
DEFAULT_PREDICTIONS = [RESULTS / "tsr_agreement_lite0_area.json", RESULTS / "tsr_agreement.json"]
REFERENCE_RATER = "mask"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions", type=Path, nargs="+", default=DEFAULT_PREDICTIONS,
                   help="results files of benchmarks/tsr_agreement.py (per-image predicted stroma fractions)")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "tsr_rater_agreement",
                   help="cohort folders built here, one per predictions file")
    p.add_argument("--out", type=Path, default=RESULTS / "tsr_rater_agreement", help="results stem (.md, .json, .png)")
    return p.parse_args(argv)


def mask_fractions(data: Path) -> dict[str, float]:
    """Image name -> stroma fraction of its pixel mask (images with neither stroma nor tumour left out)."""
    pairs = image_mask_pairs(data / "wsss4luad" / "validation")
    fractions = {image.name: true_stroma_fraction(mask) for image, mask in pairs}
    return {name: value for name, value in fractions.items() if value is not None}


def build_cohort(predictions: Path, masks: dict[str, float], folder: Path) -> tuple[Path, Path, dict]:
    """cohort.csv (ldcsf's fraction as the whole-slide score) and reference.csv (the mask, in %)."""
    record = json.loads(predictions.read_text(encoding="utf-8"))
    rows = [r for r in record["images"] if r["pred"] is not None and r["image"] in masks]
    stale = [r["image"] for r in rows if r["true"] is not None and abs(r["true"] - masks[r["image"]]) > 1e-9]
    if stale:
        raise ValueError(f"{predictions}: its mask fractions differ from the masks now in {', '.join(stale[:3])}")
    folder.mkdir(parents=True, exist_ok=True)
    ids = [Path(r["image"]).stem for r in rows]
    cohort = pd.DataFrame({"slide_id": ids, "path": [r["image"] for r in rows], "status": "ok", "error": "",
                           "stroma_fraction": [r["pred"] for r in rows]}).reindex(columns=cohort_summary_columns)
    cohort.to_csv(folder / "cohort.csv", index=False)
    reference = pd.DataFrame({"slide_id": ids, REFERENCE_RATER: [100 * masks[r["image"]] for r in rows]})
    reference.to_csv(folder / "reference.csv", index=False)
    return folder, folder / "reference.csv", record


def main(argv=None) -> int:
    args = parse_args(argv)
    masks = mask_fractions(args.data)
    runs = []
    for predictions in args.predictions:
        cohort, reference, record = build_cohort(predictions, masks, args.work / predictions.stem)
        result = agreement_study([cohort], reference, score="whole-slide")
        write_agreement(result, cohort)
        pair = result["pairs"][0]
        runs.append({"predictions": str(predictions.relative_to(REPO) if predictions.is_relative_to(REPO) else predictions),
                     "model": record["model"], "leakage": record["leakage"], "predicted_by": record["command"],
                     "agreement": {k: v for k, v in pair.items() if k not in ("first", "second")},
                     "cohort": str(cohort)})
    png = args.out.with_suffix(".png")
    shutil.copyfile(args.work / args.predictions[0].stem / "bland_altman.png", png)
    machine = machine_info("cpu")
    rows = [[r["model"], r["agreement"]["n"],
             f"{fmt(r['agreement']['icc2'], 2)} ({fmt(r['agreement']['icc2_low'], 2)} to {fmt(r['agreement']['icc2_high'], 2)})",
             f"{fmt(r['agreement']['icc3'], 2)} ({fmt(r['agreement']['icc3_low'], 2)} to {fmt(r['agreement']['icc3_high'], 2)})",
             fmt(r["agreement"]["spearman"], 2), fmt(r["agreement"]["kappa_high_low"], 2),
             fmt(r["agreement"]["kappa_10pct_linear"], 2),
             f"{r['agreement']['bias']:+.1f} ({r['agreement']['loa_low']:+.1f} to {r['agreement']['loa_high']:+.1f})"]
            for r in runs]
    md = ["# ldcsf's TSR against the WSSS4LUAD masks as a reference rater\n",
          provenance(machine, command_line(), now()),
          f"- reference rater: stroma / (stroma + tumour) pixels of each validation image's mask, recomputed from "
          f"`{args.data / 'wsss4luad' / 'validation' / 'mask'}`",
          "- ldcsf: the cross-validated per-image predictions of the results files below (no model re-run)",
          "- statistics: `ldcsf.study.agreement` (ICC2 two-way random, absolute agreement, single rater; ICC3 two-way "
          "mixed, consistency; kappa on stroma-high > 50 % and linear-weighted on 10 % steps; Bland–Altman "
          "ldcsf − mask, bias ± 1.96 SD)\n",
          markdown_table(["model", "images", "ICC2 (95% CI)", "ICC3 (95% CI)", "Spearman ρ", "κ high/low",
                          "κ 10% steps (linear)", "bias (limits of agreement), %"], rows), "",
          *[f"- {r['model']}: `{r['predictions']}`, made by `{r['predicted_by']}`" for r in runs],
          f"\n![Bland–Altman, {runs[0]['model']}]({png.name})\n"]
    result = {"command": command_line(), "date": now(), "machine": machine.to_dict(), "reference_rater": REFERENCE_RATER,
              "score": "whole-slide", "runs": runs}
    md_path, js_path = write_results(args.out, "\n".join(md), result)
    print("\n".join(md))
    print(f"wrote {md_path}, {js_path}, {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
