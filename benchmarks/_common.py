"""What every benchmark script shares: where results go, how they are written, and their provenance.

A results file always says what produced it (the exact command), on what (machine, torch) and
when, so that a number quoted in the docs can be traced and re-run.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
from pathlib import Path
from typing import Sequence

from _recipe import RECOMMENDED
from ldcsf.benchmarking import MachineInfo
from ldcsf.utils.atomic import write_json_atomic, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The real H&E images beside the project (same default as the tests).
SHARED_DATA = REPO.parent / "shared" / "data"


def command_line() -> str:
    """The command that is running, as someone would type it from the repository root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])


def now() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(machine: MachineInfo, command: str, date: str) -> str:
    return f"- command: `{command}`\n- machine: {machine.summary()}\n- date: {date}\n"


def write_results(stem: Path, markdown: str, data: dict) -> tuple[Path, Path]:
    """Write `stem`.md and `stem`.json atomically; return both paths."""
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    write_json_atomic(js, data)
    write_text_atomic(md, markdown.rstrip() + "\n")
    return md, js


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or value != value else f"{value:,.{digits}f}"


def add_masked_fold_options(parser) -> None:
    """--recipe, --seeds and --root: the masked sources' folds of loso.py, one pair per seed (`masked_folds`)."""
    parser.add_argument("--recipe", default=RECOMMENDED)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--root", type=Path, default=RESULTS / "heldout_work",
                        help="seed<K>/RECIPE/glas and seed<K>_with_glas/RECIPE/wsss4luad_masks (loso.py's folds)")


def masked_folds(root: Path, recipe: str, seed: int) -> dict[str, Path]:
    """A seed's folds of the masked sources: GlaS held out, and WSSS4LUAD held out with GlaS in training."""
    return {"glas": root / f"seed{seed}" / recipe / "glas",
            "wsss4luad_masks": root / f"seed{seed}_with_glas" / recipe / "wsss4luad_masks"}


def finished_masked_folds(root: Path, recipe: str, seeds) -> list[tuple[int, str, Path]]:
    """(seed, source, fold) of every seed's masked folds, after checking that loso.py finished each
    (its tile_areas.csv): exits naming the first that it did not, before any work is done."""
    folds = [(seed, source, folder) for seed in seeds for source, folder in masked_folds(root, recipe, seed).items()]
    for _, _, folder in folds:
        if not (folder / "tile_areas.csv").is_file():
            raise SystemExit(f"{folder}: no tile_areas.csv (run loso.py for this fold)")
    return folds


def each_masked_fold(args, score) -> dict[str, dict[str, dict]]:
    """`score(folder, source)` of every finished masked fold (`finished_masked_folds` of --root, --recipe,
    --seeds) as {source: {seed: result}}, on --threads torch threads."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    results: dict[str, dict[str, dict]] = {}
    for seed, source, folder in finished_masked_folds(args.root, args.recipe, args.seeds):
        print(f"seed {seed}, {source}", flush=True)
        results.setdefault(source, {})[str(seed)] = score(folder, source)
    return results


def add_fold_option(parser, example: str) -> None:
    """--fold SOURCE=FOLDER (repeatable): read a held-out source's fold from another loso.py work folder."""
    parser.add_argument("--fold", action="append", default=[], metavar="SOURCE=FOLDER",
                        help=f"read this source's fold from FOLDER instead of WORK/RECIPE/SOURCE ({example}); repeatable")


def fold_lists(parser, items: list[str]) -> dict[str, list[Path]]:
    """--fold's SOURCE=FOLDER items as {source: [folders]}: a source given twice keeps both (one per seed)."""
    lists: dict[str, list[Path]] = {}
    try:
        for source, folder in (item.split("=", 1) for item in items):
            lists.setdefault(source, []).append(Path(folder))
    except ValueError:
        parser.error("--fold takes SOURCE=FOLDER")
    return lists


def fold_folders(parser, items: list[str]) -> dict[str, Path]:
    """--fold's SOURCE=FOLDER items as {source: folder} (a source given twice: its last); a malformed one is a usage error."""
    return {source: folders[-1] for source, folders in fold_lists(parser, items).items()}
