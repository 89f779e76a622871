"""`ldcsf data`: build, download and check manifests (the CSV a training run reads)."""

from __future__ import annotations

import argparse
import logging

from ..options import SPLIT_FRACTIONS

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="import, download and check data set manifests")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = commands.add_parser("import-folders", help="class folders + a mapping table -> manifest")
    p.add_argument("root", help="folder holding one sub-folder per source class")
    p.add_argument("--mapping", required=True, help="mapping table CSV, or a shipped one (see `ldcsf data mappings`)")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.add_argument("--dataset", help="value of the manifest's `dataset` column")
    _group_and_split_args(p)
    p.set_defaults(func=run_import_folders)

    p = commands.add_parser("import-masks", help="images + pixel masks -> labelled tiles and a manifest")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--masks", required=True, help="folder of masks named like the images (palette PNG: 0 tumour, "
                                                   "1 stroma, 2 normal, 3 background)")
    p.add_argument("--background-masks", help="optional folder of background masks (non-zero = background)")
    p.add_argument("--out", required=True, help="folder for tiles/, masks/ and manifest.csv")
    p.add_argument("--tile-size", type=int, default=224)
    p.add_argument("--stride", type=int, help="default: the tile size (no overlap)")
    p.add_argument("--present-at", type=float, default=0.05, help="label present at this pixel fraction (default 0.05)")
    p.add_argument("--absent-below", type=float, default=0.01, help="label absent below this fraction; blank between")
    p.add_argument("--max-background", type=float, default=0.5, help="skip tiles with more background than this")
    _split_args(p)
    p.set_defaults(func=run_import_masks)

    p = commands.add_parser("import-filenames", help="labels written in file names, e.g. x-[1, 0, 1].png")
    p.add_argument("folder")
    p.add_argument("--order", required=True, help="label names in the order of the lists, e.g. tumor,stroma,non_tumor")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.add_argument("--dataset", help="value of the manifest's `dataset` column")
    _group_and_split_args(p)
    p.set_defaults(func=run_import_filenames)

    p = commands.add_parser("pancancer", help="build the pan-cancer 4-label set from the shared H&E images")
    p.add_argument("--shared", required=True, help="the shared data folder (e.g. ../shared/data)")
    p.add_argument("--out", required=True, help="folder for manifest.csv and the mask tiles")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile-size", type=int, default=112, help="mask tile size in px (default 112)")
    p.add_argument("--add-source", action="append", default=[], metavar="NAME",
                   help="also build a declared source left out by default (e.g. glas); repeatable")
    p.add_argument("--cap", action="append", default=[], metavar="DATASET=N",
                   help="keep at most N images of a source, e.g. oral=300 (repeatable)")
    p.set_defaults(func=run_pancancer)

    p = commands.add_parser("qupath", help="slides + QuPath GeoJSON annotations -> labelled tiles and a manifest",
                            description="Cut tiles at the model's µm/px inside the annotated regions of each slide; "
                                        "tiles carry presence labels and per-pixel masks for the area head (docs/adapt.md).")
    p.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files (any format `ldcsf slide` reads, "
                                                               "plain images with --mpp)")
    p.add_argument("--annotations", nargs="+", required=True, metavar="FILE",
                   help="QuPath GeoJSON exports, or a folder of them, named after their slides (slide.geojson)")
    p.add_argument("--mapping", default="qupath", help="CSV source_class,target mapping QuPath class names "
                                                       "(default: the shipped table, see `ldcsf data mappings qupath`)")
    p.add_argument("--model", help="checkpoint whose µm/px and input size the tiles get (the model to adapt)")
    p.add_argument("--tile-mpp", type=float, default=0.5, help="without --model: µm/px of the tiles (default 0.5)")
    p.add_argument("--tile-size", type=int, default=224, help="without --model: tile size in px (default 224)")
    p.add_argument("--mpp", type=float, help="µm/px of the slides at full resolution, for files that do not say")
    p.add_argument("--min-annotated", type=float, default=0.5, help="keep tiles at least this much annotated "
                                                                     "(default 0.5)")
    p.add_argument("--present-at", type=float, default=0.05, help="label present at this share of a tile")
    p.add_argument("--absent-below", type=float, default=0.01, help="label absent below this share, counting "
                                                                    "unannotated pixels as the label; blank between")
    p.add_argument("--out", required=True, help="folder for tiles/, masks/ and manifest.csv")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the slides whose tiles form the val "
                                                                   "split that tunes the thresholds, at least one "
                                                                   "(default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split by slide")
    p.set_defaults(func=run_qupath)

    p = commands.add_parser("download", help="download a public data set and import it")
    p.add_argument("name", help="a downloadable source listed by `ldcsf data sources` (kather2016, nct-crc-he-100k)")
    p.add_argument("--out", required=True, help="folder for the archive, its images and manifest.csv")
    p.add_argument("--base-url", help="mirror to download from (or set LDCSF_DOWNLOAD_BASE_URL)")
    p.add_argument("--seed", type=int, default=0, help="seed of the grouped train/val/test split")
    p.set_defaults(func=run_download)

    p = commands.add_parser("check", help="validate a manifest: counts per label and split, unreadable images")
    p.add_argument("manifest")
    p.add_argument("--labels", help="comma-separated label columns (default: inferred)")
    p.add_argument("--no-images", action="store_true", help="skip decoding every image")
    p.set_defaults(func=run_check)

    p = commands.add_parser("sources", help="list the known data sources: images, mapping, licence, citation")
    p.set_defaults(func=run_sources)

    p = commands.add_parser("mappings", help="list the shipped mapping tables, or show one")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=run_mappings)


def _split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--splits", default=",".join(map(str, SPLIT_FRACTIONS)),
                   help="train,val,test fractions for grouped splits, or 'none' (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the grouped split")


def _group_and_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-pattern", help="regex on file names giving the patient/slide id (named group "
                                           "'group' or first group); default: each image its own group")
    _split_args(p)


def _finish(frame, out, args) -> int:
    """Add grouped splits (unless --splits none), write the manifest, print its counts."""
    from pathlib import Path

    from ..data.manifest import read_manifest, relative_paths, write_manifest
    from ..data.splits import assign_splits

    if args.splits.lower() != "none":
        try:
            fractions = [float(x) for x in args.splits.split(",")]
        except ValueError:
            raise ValueError(f"--splits: expected three fractions like 0.7,0.15,0.15, got {args.splits!r}") from None
        frame = assign_splits(frame, fractions=fractions, seed=args.seed)
    out = Path(out)
    write_manifest(relative_paths(frame, out.parent), out)
    print(f"wrote {out} ({len(frame)} images)")
    _print_counts(read_manifest(out, check_files=False))
    return 0


def run_import_folders(args) -> int:
    from ..data.importers import import_class_folders
    from ..utils.paths import check_output_file

    check_output_file(args.out)  # before the folders are scanned
    frame = import_class_folders(args.root, args.mapping, group_pattern=args.group_pattern, dataset=args.dataset)
    return _finish(frame, args.out, args)


def run_import_masks(args) -> int:
    from pathlib import Path

    from ..data.masks import tile_masks

    frame = tile_masks(args.images, args.masks, args.out, tile_size=args.tile_size, stride=args.stride,
                       present_at=args.present_at, absent_below=args.absent_below,
                       max_background=args.max_background, background_mask_dir=args.background_masks)
    if frame.empty:
        raise ValueError(f"{args.masks}: no tile kept (images smaller than {args.tile_size} px, or all background)")
    return _finish(frame, Path(args.out) / "manifest.csv", args)


def run_qupath(args) -> int:
    from pathlib import Path

    import pandas as pd

    from ..data.qupath import pair_annotations, split_by_slide, tile_annotated_slide

    tile_px, mpp, labels = args.tile_size, args.tile_mpp, None
    if args.model:
        from ..checkpoint import read_checkpoint_payload

        meta = read_checkpoint_payload(args.model)[0]
        tile_px, mpp, labels = meta.input_size, meta.mpp, meta.labels
    frames = [tile_annotated_slide(slide, annotations, args.out, tile_px=tile_px, mpp=mpp, mapping=args.mapping,
                                   slide_mpp=args.mpp, labels=labels, min_annotated=args.min_annotated,
                                   present_at=args.present_at, absent_below=args.absent_below)
              for slide, annotations in pair_annotations(args.slides, args.annotations)]
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise ValueError(f"{', '.join(args.annotations)}: no tile kept (regions smaller than a {tile_px} px tile at "
                         f"{mpp:g} µm/px, or less than --min-annotated {args.min_annotated} annotated)")
    frame = split_by_slide(frame, args.val_fraction, args.seed)
    args.splits = "none"  # split above, by slide
    return _finish(frame, Path(args.out) / "manifest.csv", args)


def run_import_filenames(args) -> int:
    from ..data.importers import import_filename_labels

    from ..utils.paths import check_output_file

    check_output_file(args.out)  # before the folder is scanned
    order = [s.strip() for s in args.order.split(",") if s.strip()]
    frame = import_filename_labels(args.folder, order, group_pattern=args.group_pattern, dataset=args.dataset)
    return _finish(frame, args.out, args)


def run_pancancer(args) -> int:
    from ..data.manifest import label_counts, read_manifest
    from ..data.pancancer import build_pancancer
    from .common import format_table

    caps = {}
    for item in args.cap:
        dataset, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise ValueError(f"--cap {item!r}: expected DATASET=N, e.g. oral=300")
        caps[dataset.strip()] = int(n)
    from ..data.sources import DEFAULT_SOURCES, shared_source

    added = [shared_source(name) for name in args.add_source]
    sources = [*DEFAULT_SOURCES, *(s for s in added if s not in DEFAULT_SOURCES)]
    path = build_pancancer(args.shared, args.out, seed=args.seed, tile_size=args.tile_size, caps=caps, sources=sources)
    manifest = read_manifest(path)
    print(f"wrote {path} ({len(manifest)} images; cells: positives/annotated)")
    table = label_counts(manifest, by="dataset")
    print(format_table(list(table.columns), table.astype(str).values.tolist()))
    return 0


def run_download(args) -> int:
    from ..data.download import download_dataset
    from ..data.manifest import read_manifest

    path = download_dataset(args.name, args.out, base_url=args.base_url, seed=args.seed)
    print(f"wrote {path}")
    _print_counts(read_manifest(path))
    return 0


def run_check(args) -> int:
    from ..data.dataset import find_unreadable_images
    from ..data.manifest import read_manifest

    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    manifest = read_manifest(args.manifest, labels=labels)
    print(f"{args.manifest}: {len(manifest)} images, labels {', '.join(manifest.labels)} (cells: positives/annotated)")
    _print_counts(manifest)
    if args.no_images:
        return 0
    bad = find_unreadable_images(manifest)
    if bad:
        for path, reason in bad[:20]:
            print(f"unreadable: {reason}")
        print(f"{len(bad)} unreadable image(s)" + (" (first 20 listed)" if len(bad) > 20 else ""))
        return 1
    print("all images decode")
    return 0


def run_sources(args) -> int:
    from ..data.catalogue import source_rows
    from .common import format_table

    rows = source_rows()
    print(format_table(list(rows[0]), [[str(v) for v in row.values()] for row in rows]))
    print("images: as the source publishes them (for wsss4luad_masks: the images with a pixel mask, before tiling)")
    return 0


def run_mappings(args) -> int:
    from ..data.mapping import mapping_path, shipped_mappings

    if args.name is None:
        print("\n".join(shipped_mappings()))
        return 0
    print(mapping_path(args.name).read_text(encoding="utf-8"), end="")
    return 0


def _print_counts(manifest) -> None:
    from ..data.manifest import label_counts
    from .common import format_table

    table = label_counts(manifest)
    print(format_table(list(table.columns), table.astype(str).values.tolist()))
