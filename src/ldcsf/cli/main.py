"""Entry point of the `ldcsf` command: registers the subcommands and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

#: Subcommand modules in `ldcsf.cli`, in the order `--help` lists them. Each module has
#: `add_parser(subparsers)` (registers its arguments, sets `func`) and stays cheap to import.
COMMANDS = ["models", "data", "train", "evaluate", "predict", "slide", "view", "demo"]

#: Errors a user can fix (bad input, missing file): printed as one line, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="ldcsf",
        description="Multi-label H&E tissue classification (LDCSF), whole-slide inference and tumour-to-stroma ratio.",
    )
    parser.add_argument("--version", action="version", version=f"ldcsf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and full tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    # Lightning's loggers print through their own handlers; passing records on would print them twice.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    # Lightning's pytree helper trips a torch deprecation on every batch: noise a user cannot act on.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"ldcsf {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ldcsf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
