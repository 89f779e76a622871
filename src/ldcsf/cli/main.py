"""Entry point of the `ldcsf` command: registers the subcommands and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

#: Subcommand modules in `ldcsf.cli`, in the order `--help` lists them. Each module has
#: `add_parser(subparsers)` (registers its arguments, sets `func`) and stays cheap to import.
COMMANDS = ["models", "data", "train", "evaluate", "predict", "slide", "view", "export", "demo"]
#: Describing slides (format, size, levels, µm/px and its source).
COMMANDS += ["info"]
#: The study commands (the `study` extra): agreement with pathologists, survival by TSR.
COMMANDS += ["agreement", "survival"]

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
    from ..utils.signals import StopRequested, stop_message, stop_on_signals

    try:
        with stop_on_signals():
            return int(args.func(args) or 0)
    except StopRequested as stop:
        print(stop_message(args.command, stop), file=sys.stderr)
        return stop.exit_code
    except USER_ERRORS as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"ldcsf {args.command}: error: {message}", file=sys.stderr)
        return 1
    except OSError as err:  # full disk, occupied or read-only path: the path and the reason, one line
        if args.verbose:
            raise
        print(f"ldcsf {args.command}: error: {describe_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ldcsf {args.command}: interrupted", file=sys.stderr)
        return 130


def describe_os_error(err: OSError) -> str:
    """`path: reason` for an OSError; a full disk says what to do."""
    import errno

    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (free space there, then rerun: finished work is kept)"
    where = err.filename if err.filename is not None else None
    return f"{where}: {reason}" if where is not None else reason


if __name__ == "__main__":
    sys.exit(main())
