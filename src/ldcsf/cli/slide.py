"""`ldcsf slide`: predict whole slides (one, a folder, or a list) and compute their TSR."""

from __future__ import annotations

import sys

from ..export.slide_writers import chosen_outputs, output_names
from ..options import SlideSettings
from .common import CHECKPOINT_HELP, checkpoint_or_shipped
from .dataclass_args import add_field_argument, from_args
from .export import add_runtime_argument

#: Exit status when some slides of a cohort failed and others finished (all failed: 1).
EXIT_SOME_FAILED = 3


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "slide",
        help="predict whole slides tile by tile; tumour-to-stroma ratio and outputs per slide",
        description=(
            "Tile each slide at the checkpoint's resolution where there is tissue, predict the tiles, and "
            "write OUT/<slide-id>/ (tile table, TSR, pictures, GeoJSON, report) and OUT/cohort.csv. "
            "Rerunning skips finished slides and resumes an interrupted one; results made from other inputs "
            "are refused (new --out, or --overwrite). Exit status: 0 all slides done, 1 error or every slide "
            f"failed, {EXIT_SOME_FAILED} some slides failed, 130 interrupted, 143 stopped by SIGTERM (rerun to resume)."
        ),
    )
    parser.add_argument("slides", nargs="+", metavar="SLIDE_OR_DIR",
                        help="slide files, folders of slides, or .txt/.csv lists of slide paths")
    parser.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mpp", type=float, default=None,
                        help="µm per pixel at full resolution; overrides the files' metadata (needed when they have none)")
    option = _slide_option(parser)
    option("--overlap", type=float, help="tile overlap as a fraction of the tile, 0 to <1")
    option("--min-tissue", type=float, help="least tissue fraction for a tile to be predicted")
    option("--batch-size", type=int, help="tiles per batch")
    # The command measures the reader count by default (None); library calls read in-process (SlideSettings: 0).
    parser.add_argument("--num-workers", type=parse_workers, default=None,
                        help="processes reading tiles, or auto (default): on a CPU the split of cores between "
                             "readers and model is measured on the first slide of over 256 tiles (smaller ones are "
                             "read in-process); on a GPU up to 4 readers")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the model (default on CPU: as measured, or the cores the readers leave free)")
    option("--accelerator", help="cpu, gpu, mps or auto")
    option("--devices", help="number of devices, a list like 0,1, or auto")
    option("--strategy", help="Lightning strategy, e.g. ddp for several devices")
    option("--num-nodes", type=int, help="machines taking part")
    option("--precision", show_default=False,
           help="32, bf16 (bf16 autocast) or 16, or Lightning's names like bf16-mixed (default: 32)")
    add_runtime_argument(parser)
    parser.add_argument("--field-diameter-um", type=float, default=None, help="hotspot field diameter in µm (default 2200)")
    option("--tta", action="store_true",
           help="flip test-time augmentation: average each tile over it and its two mirror images (3x time)")
    parser.add_argument("--stain-norm", choices=["macenko", "none"], default=None,
                        help="stain normalisation of the tiles (default: what the checkpoint was trained with)")
    parser.add_argument("--limit-tiles", type=int, default=None, help="predict only the first N tissue tiles (a quick look)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    option("--overwrite", action="store_true",
           help="replace results in OUT made from another slide, checkpoint or settings (default: refuse)")
    option("--strict", action="store_true", help="stop at the first slide that fails (exit 1)")
    parser.add_argument("--no-pictures", action="store_true",
                        help="leave out overlay.png and the heatmaps (and the report's pictures): about 1 s less per slide")
    option("--outputs", nargs="+", metavar="NAME", show_default=False,
           help=f"write only these outputs (default: all): {', '.join(output_names())}; tsr.json is always "
                "written. A rerun asking for more adds them without predicting again")
    parser.set_defaults(func=run)


def _slide_option(parser):
    """`add_argument` for a flag whose default is SlideSettings' field of its name."""
    return lambda flag, **kwargs: add_field_argument(parser, SlideSettings, flag, **kwargs)


def parse_workers(value: str) -> int | None:
    """'auto' (None: measured) or a count of reader processes."""
    if str(value).strip().lower() == "auto":
        return None
    if not str(value).strip().isdigit():
        import argparse

        raise argparse.ArgumentTypeError(f"expected a count of processes or auto, got {value!r}")
    return int(value)


def parse_devices(value: str) -> int | str | list[int]:
    """'auto' stays, '2' is a count, '0,1' a list of device indices."""
    value = str(value).strip()
    if value.isdigit():
        return int(value)
    if "," in value:
        return [int(v) for v in value.split(",") if v.strip()]
    return value


def slide_settings(args) -> SlideSettings:
    """The SlideSettings of parsed `ldcsf slide` arguments: fields by name, and the flags that are not one to one."""
    # --no-pictures is the outputs less the pictures; None stays "all" (an unknown name: one-line ValueError)
    outputs = None if args.outputs is None and not args.no_pictures else chosen_outputs(
        args.outputs, pictures=not args.no_pictures)
    return from_args(SlideSettings, args, devices=parse_devices(args.devices), progress=not args.no_progress,
                     outputs=outputs)


def run(args) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads is None and not args.num_workers:  # nothing to set: torch stays unloaded until needed
        return _run_with_threads_set(args)
    import torch

    threads_before = torch.get_num_threads()
    try:
        _set_model_threads(args)
        return _run_with_threads_set(args)
    finally:  # `main()` may be called from Python: leave its thread setting as it was
        torch.set_num_threads(threads_before)


def _run_with_threads_set(args) -> int:
    from pathlib import Path

    from ..wholeslide import run_cohort
    from .common import format_table

    settings = slide_settings(args)  # before the checkpoint: a wrong --outputs name costs no model load
    table = run_cohort(args.slides, checkpoint_or_shipped(args.checkpoint), args.out, settings)
    if table.empty:  # a non-zero rank under DDP: rank 0 reports
        return 0
    failed = int((table["status"] == "failed").sum())
    single_slide = len(args.slides) == 1 and Path(args.slides[0]).is_file() and len(table) == 1
    if failed and single_slide:  # one slide: its error is the whole story
        print(f"ldcsf slide: error: {table['error'].iloc[0]}", file=sys.stderr)
        return 1
    rows = [
        [r.slide_id, _number(r.tsr), r.category if isinstance(r.category, str) else "-",
         _count(r.n_tiles), r.status + (f": {r.error}" if r.status == "failed" else "")]
        for r in table.itertuples()
    ]
    print(format_table(["slide", "TSR", "category", "tiles", "status"], rows))
    print(f"results: {Path(args.out) / 'cohort.csv'}")
    if failed:
        print(f"ldcsf slide: {failed} of {len(table)} slides failed (see the status column)", file=sys.stderr)
        return 1 if failed == len(table) else EXIT_SOME_FAILED
    return 0


def _set_model_threads(args) -> None:
    """Give the model the cores the tile readers leave free, when it runs on the CPU."""
    import torch

    from ..utils.workers import model_threads_beside_workers

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        return
    on_cpu = args.accelerator == "cpu" or (args.accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and args.num_workers:  # None (auto): the measured split sets the threads
        torch.set_num_threads(min(torch.get_num_threads(), model_threads_beside_workers(args.num_workers)))


def _number(value) -> str:
    try:
        return "-" if value is None or value != value else f"{float(value):.3f}"
    except (TypeError, ValueError):
        return "-"


def _count(value) -> str:
    import pandas as pd

    return "-" if pd.isna(value) else str(int(value))
