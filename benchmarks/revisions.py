"""Is this checkout slower than an earlier revision? `ldcsf slide` timed from both, interleaved.

A restructuring must not slow the slide pipeline down. This script checks out REVISION into a
temporary git worktree, then runs the same `ldcsf slide` (same slide, same checkpoint, fresh
output folder each time) alternately from that worktree's sources and from this checkout's,
`--repeats` times each, and reports the median wall time of each and their ratio. Alternating
keeps the ratio fair on a machine whose load changes during the run.

    .venv/bin/python benchmarks/revisions.py 6c82b39 --slide ../shared/data/slides/CMU-1-Small-Region.svs \\
        --checkpoint runs/recommended/model.pt
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, RESULTS, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf.benchmarking import machine_info


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("revision", help="the earlier git revision to compare against (e.g. a commit or tag)")
    p.add_argument("--slide", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per revision (alternating)")
    p.add_argument("--slide-args", default="--num-workers 1 --threads 1",
                   help="extra `ldcsf slide` options, the same for both (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS / "revisions", help="results stem (.md, .json)")
    return p.parse_args(argv)


def time_slide(src: Path, args, out: Path) -> float:
    """Seconds of one `ldcsf slide` run with the package imported from `src`."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "ldcsf.cli.main", "slide", str(args.slide.resolve()), "--checkpoint",
               str(args.checkpoint.resolve()), "--out", str(out), "--no-progress", *args.slide_args.split()]
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ldcsf slide failed from {src}: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ldcsf-revision-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), args.revision], check=True)
        try:
            sources = {args.revision: tree / "src", "this checkout": REPO / "src"}
            times: dict[str, list[float]] = {name: [] for name in sources}
            for repeat in range(args.repeats):
                for name, src in sources.items():
                    times[name].append(time_slide(src, args, Path(tmp) / "out"))
                    print(f"run {repeat + 1}/{args.repeats}, {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians[args.revision] / medians["this checkout"]
    rows = [[name, " / ".join(f"{t:.1f}" for t in values), fmt(medians[name], 1)] for name, values in times.items()]
    machine = machine_info("cpu")
    md = ["# `ldcsf slide` from an earlier revision and from this checkout\n",
          provenance(machine, command_line(), now()),
          f"Slide `{args.slide.name}`, checkpoint `{args.checkpoint}`, options `{args.slide_args}`; runs alternate.\n",
          markdown_table(["sources", "wall s per run", "median s"], rows),
          f"\nThis checkout runs at **{ratio:.2f}x** the speed of {args.revision} (above 1 = faster)."]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "machine": machine.to_dict(),
                                            "times": times, "speed_ratio": ratio})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
