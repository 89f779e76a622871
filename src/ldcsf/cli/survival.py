"""`ldcsf survival`: Kaplan-Meier, log-rank and Cox models of a cohort's TSR against a clinical table."""

from __future__ import annotations

from .agreement import add_study_arguments
from .common import format_table


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "survival", help="survival by TSR: Kaplan-Meier, log-rank, Cox hazard ratios with the PH check",
        description="Writes survival.json, km.png, cox.csv, logrank.csv and study.html. Needs the study extra: "
                    "pip install 'ldcsf[study]'.")
    add_study_arguments(parser)
    parser.add_argument("--clinical", required=True, help="CSV with a slide_id column, the time and the event columns")
    parser.add_argument("--time", required=True, help="column of follow-up time (any unit, not negative)")
    parser.add_argument("--event", required=True, help="column of the event: 1 event, 0 censored")
    parser.add_argument("--covariates", nargs="*", default=[], metavar="COL",
                        help="clinical columns to adjust the Cox models for (numbers, or text levels such as stage)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..study.cohort_table import cohort_folder
    from ..study.outputs import write_survival
    from ..study.survival import survival_study

    if not 0 < args.cutoff < 100:
        raise ValueError(f"--cutoff must lie between 0 and 100 (%), got {args.cutoff:g}")
    result = survival_study(args.cohort, args.clinical, time=args.time, event=args.event,
                            covariates=args.covariates, score=args.score, cutoff_pct=args.cutoff)
    written = write_survival(result, args.out or cohort_folder(args.cohort[0]))
    km = result["kaplan_meier"]
    print(format_table(["group", "n", "events", "median time"],
                       [[k, str(g["n"]), str(g["events"]), "-" if g["median_time"] is None else f"{g['median_time']:.1f}"]
                        for k, g in km.items()]))
    print(f"log-rank chi2 {result['logrank']['chi2']:.2f}, p {result['logrank']['p']:.3g}")
    rows = [[t["model"], t["term"], f"{t['hr']:.2f} [{t['hr_low']:.2f}, {t['hr_high']:.2f}]", f"{t['p']:.3g}",
             "-" if t["ph_test_p"] is None else f"{t['ph_test_p']:.3g}"] for m in result["cox"] for t in m["terms"]]
    print(format_table(["cox model", "term", "HR [95% CI]", "p", "PH test p"], rows))
    print("written: " + ", ".join(str(p) for p in written))
    return 0
