"""`ldcsf info SLIDE...`: what each slide is (format, size, levels, µm/px and its source), as a
table per slide or as JSON. A slide that cannot be read prints its one-line error; the others go on."""

from __future__ import annotations

import json
import sys

from .common import format_table

#: Errors of one slide: reported in one line, then the next slide.
SLIDE_ERRORS = (ValueError, OSError)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help="describe slides: format, size, levels, µm/px and its source")
    parser.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files (or a DICOM series' folder)")
    parser.add_argument("--mpp", type=float, default=None, help="µm/px override, as `ldcsf slide --mpp` takes it")
    parser.add_argument("--json", action="store_true", help="one JSON list, an object per slide (failed: path, error)")
    parser.add_argument("--properties", action="store_true", help="also list the file's own metadata")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..wsi.slide_info import slide_info

    records, failed = [], 0
    for number, path in enumerate(args.slides):
        try:
            info = slide_info(path, mpp=args.mpp)
        except SLIDE_ERRORS as err:
            failed += 1
            message = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
            print(f"ldcsf info: error: {message}", file=sys.stderr)
            records.append({"path": str(path), "error": message})
            continue
        records.append(info.as_dict())
        if not args.json:
            print(("\n" if number else "") + describe(info, properties=args.properties))
    if args.json:
        if not args.properties:
            for record in records:
                record.pop("properties", None)
        print(json.dumps(records, indent=1, ensure_ascii=False))
    return 1 if failed else 0


def describe(info, properties: bool = False) -> str:
    """A slide's info as text: a summary, its levels, its associated images (and metadata)."""
    from ..wsi.slide_info import MPP_FROM_FILE, MPP_FROM_POWER

    mpp = "none (ldcsf slide needs --mpp)" if info.mpp is None else f"{info.mpp:g} ({info.mpp_source})"
    if info.mpp_source == MPP_FROM_POWER:
        mpp += "; ldcsf slide needs --mpp"
    summary = [
        ["format", info.format + (f" ({info.files} files)" if info.files > 1 else "")],
        ["vendor", info.vendor or "-"],
        ["dimensions", f"{info.dimensions[0]} x {info.dimensions[1]} px"],
        ["levels", str(len(info.levels))],
        ["µm/px", mpp],
        ["objective power", "-" if info.objective_power is None else f"{info.objective_power:g}x"],
    ]
    if info.mpp_source != MPP_FROM_FILE and info.file_mpp is not None:
        summary.append(["file's µm/px", f"{info.file_mpp:g}"])
    width = max(len(key) for key, _ in summary)
    parts = [str(info.path) + "\n" + "\n".join(f"  {key.ljust(width)}  {value}" for key, value in summary)]
    levels = [[str(i), f"{w} x {h}", f"{d:.4g}", "-" if info.mpp is None else f"{info.mpp * d:.4g}"]
              for i, ((w, h), d) in enumerate((level.dimensions, level.downsample) for level in info.levels)]
    parts.append(format_table(["level", "size (px)", "downsample", "µm/px"], levels))
    if info.associated_images:
        parts.append(format_table(["associated image", "size (px)"],
                                  [[name, f"{w} x {h}"] for name, (w, h) in info.associated_images]))
    if properties and info.properties:
        parts.append(format_table(["property", "value"], [[k, " ".join(v.split())] for k, v in info.properties]))
    return "\n\n".join(parts)
