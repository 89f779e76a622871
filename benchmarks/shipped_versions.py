"""What a new shipped model costs per slide against the version before it, in one run.

Both versions' folders (card + heads) are taken from git (`--previous REV`, default the commit
before the shipped folder last changed) and from the working tree, and each runs `run_slide` on
the same tiles of a real slide (by default the first `--limit-tiles` tissue tiles of the squamous
TCGA section, at its true 3.5 µm/px), on the runtime a user gets by default, interleaved over `--repeats`
rounds so both meet the same machine state. Each version's exported ONNX file is made by a
warm-up run first (a one-off per model, not per slide). Reported: seconds per round, tiles per
second, and the ratio new / previous.

    .venv/bin/python benchmarks/shipped_versions.py                      # TCGA section, 1,500 tiles
    .venv/bin/python benchmarks/shipped_versions.py --quick --previous HEAD   # CMU, 8 tiles, one round (tests)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf.benchmarking import machine_info
from ldcsf.options import SlideSettings
from ldcsf.shipped import SHIPPED_DIR, load_shipped, read_card, shipped_label
from ldcsf.wholeslide.pipeline import run_slide

REPO = Path(__file__).resolve().parents[1]
TCGA = "slides/TCGA-CR-7395-01A-01-TS1.svs"
CMU = "slides/CMU-1-Small-Region.svs"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--previous", default=None,
                   help="git revision holding the previous shipped model (default: the commit before the "
                        "shipped folder's last change)")
    p.add_argument("--slide", type=Path, default=SHARED_DATA / TCGA)
    p.add_argument("--mpp", type=float, default=3.5, help="the slide's true µm/px (its file says 0.25 for TCGA-CR-7395)")
    p.add_argument("--limit-tiles", type=int, default=1500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runtime", default="auto")
    p.add_argument("--out", type=Path, default=RESULTS / "shipped_versions")
    p.add_argument("--quick", action="store_true", help="8 tiles of the CMU slide, one timed round (tests)")
    args = p.parse_args(argv)
    if args.quick:
        args.slide, args.mpp, args.limit_tiles, args.repeats = SHARED_DATA / CMU, None, 8, 1
    return args


def previous_folder(revision: str | None, into: Path) -> tuple[Path, str]:
    """The shipped folder at `revision` (default: before its last change), copied into `into`."""
    shipped = SHIPPED_DIR.relative_to(REPO)
    if revision is None:
        last = subprocess.run(["git", "log", "-1", "--format=%H", "--", str(shipped)], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
        revision = f"{last}~1"
    names = subprocess.run(["git", "ls-tree", "--name-only", revision, f"{shipped}/"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    into.mkdir(parents=True, exist_ok=True)
    for name in names:
        blob = subprocess.run(["git", "show", f"{revision}:{name}"], cwd=REPO, check=True, capture_output=True).stdout
        (into / Path(name).name).write_bytes(blob)
    return into, revision


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = SlideSettings(mpp=args.mpp, limit_tiles=args.limit_tiles, runtime=args.runtime, progress=False,
                             pictures=False)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        old_dir, revision = previous_folder(args.previous, scratch / "previous")
        versions = {f"{shipped_label(read_card(old_dir))} (previous)": old_dir,
                    f"{shipped_label(read_card())} (this tree)": SHIPPED_DIR}
        models = {name: load_shipped(folder) for name, folder in versions.items()}
        seconds: dict[str, list[float]] = {name: [] for name in models}
        tiles: dict[str, int] = {}
        for round_ in range(args.repeats + 1):  # round 0 exports and warms up; not timed
            for number, (name, model) in enumerate(models.items()):
                out = scratch / f"run-{round_}-{number}"
                started = time.perf_counter()
                result = run_slide(args.slide, model, out, settings)
                elapsed = time.perf_counter() - started
                tiles[name] = int(result.row["n_tiles"])
                if round_:
                    seconds[name].append(elapsed)
                shutil.rmtree(out, ignore_errors=True)
        machine = machine_info()
        names = list(models)
        best = {name: min(values) for name, values in seconds.items()}
        rows = [[name, tiles[name], " / ".join(fmt(s, 2) for s in seconds[name]), fmt(best[name], 2),
                 fmt(tiles[name] / best[name], 0), fmt(best[name] / best[names[0]], 2) + "x"] for name in names]
        markdown = "\n".join([
            "# The shipped model against the version before it, per slide\n",
            provenance(machine, command_line(), now()),
            f"\nSlide `{args.slide.name}` at {args.mpp or 'its own'} µm/px, its first {args.limit_tiles} tissue tiles, runtime "
            f"`{args.runtime}`, pictures off; the previous model from git revision `{revision}`. Rounds interleaved "
            f"after one warm-up round (exports made there); load average at the start "
            f"{os.getloadavg()[0]:.2f}.\n",
            markdown_table(["model", "tiles", "seconds per round", "best s", "tiles/s", "time vs previous"], rows),
        ])
        write_results(args.out, markdown + "\n", {"command": command_line(), "date": now(), "revision": revision,
                                                  "slide": args.slide.name, "mpp": args.mpp, "seconds": seconds,
                                                  "tiles": tiles, "runtime": args.runtime})
        print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
