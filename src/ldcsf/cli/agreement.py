"""`ldcsf agreement`: ldcsf's stroma % against pathologists' visual scores (ICC, kappa, Bland-Altman)."""

from __future__ import annotations

from .common import format_table

SCORES = ("hotspot", "whole-slide")  # ldcsf.study.cohort_table.SCORE_COLUMNS; the parser stays light


def add_study_arguments(parser) -> None:
    """COHORT, --score, --cutoff and --out: shared by `agreement` and `survival`."""
    parser.add_argument("cohort", nargs="+", help="the --out folder of `ldcsf slide` or its cohort.csv (several allowed)")
    parser.add_argument("--score", choices=SCORES, default="hotspot",
                        help="ldcsf's stroma %% to use: of the hotspot (default; the clinical protocol scores the most "
                             "stroma-rich field) or of the whole slide")
    parser.add_argument("--cutoff", type=float, default=50.0,
                        help="stroma %% above which a tumour is stroma-high (default 50)")
    parser.add_argument("--out", default=None, help="folder for the results and study.html (default: the first cohort's folder)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "agreement", help="agreement of ldcsf's TSR with pathologists' scores (ICC, kappa, Spearman, Bland-Altman)",
        description="Writes agreement.json, agreement.csv, bland_altman.png and study.html. Needs the study extra: "
                    "pip install 'ldcsf[study]'.")
    add_study_arguments(parser)
    parser.add_argument("--reference", required=True,
                        help="CSV: slide_id, then one column per rater with a stroma %% (0-100) or stroma-high/stroma-low")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..study.agreement import agreement_study
    from ..study.cohort_table import cohort_folder
    from ..study.outputs import write_agreement

    if not 0 < args.cutoff < 100:
        raise ValueError(f"--cutoff must lie between 0 and 100 (%), got {args.cutoff:g}")
    result = agreement_study(args.cohort, args.reference, score=args.score, cutoff_pct=args.cutoff)
    written = write_agreement(result, args.out or cohort_folder(args.cohort[0]))
    rows = [[p["pair"], str(p["n"]), _ci(p, "icc2"), _n(p.get("spearman")), _n(p.get("kappa_high_low")),
             _n(p.get("kappa_10pct_linear")), _bias(p)] for p in result["pairs"]]
    print(format_table(["pair", "n", "ICC2 (95% CI)", "spearman", "kappa high/low", "kappa 10% linear",
                        "bias [limits] %"], rows))
    print("written: " + ", ".join(str(p) for p in written))
    return 0


def _n(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ci(row: dict, key: str) -> str:
    return "-" if row.get(key) is None else f"{row[key]:.2f} [{_n(row[key + '_low'])}, {_n(row[key + '_high'])}]"


def _bias(row: dict) -> str:
    return "-" if row.get("bias") is None else f"{row['bias']:+.1f} [{row['loa_low']:+.1f}, {row['loa_high']:+.1f}]"
