"""Flags whose defaults are the run-options dataclasses' (`ldcsf.options`), and back again.

As Lightning's CLI derives arguments from signatures, a flag added here takes its default from
the dataclass field of its name, so a default is stated once, in the dataclass; parsed
arguments become the dataclass by field name, with the few renamed or converted flags given
explicitly. Hand-written rather than Lightning's `LightningCLI`/jsonargparse: those would
replace the subcommands' parsers (and their flag names) wholesale.
"""

from __future__ import annotations

from dataclasses import fields

from ..options import field_default

#: argparse actions whose flag takes no value: their help does not repeat the default.
_SWITCHES = ("store_true", "store_false")


def add_field_argument(parser, cls, flag: str, *, help: str | None = None, show_default: bool = True,
                       **kwargs) -> None:
    """`parser.add_argument(flag, ...)` defaulting to `cls`'s field of the flag's name (--max-steps: max_steps).

    The help ends with the default, unless it is a switch, already says "%(default)s", or
    `show_default` is False (a help that explains the default in words).
    """
    name = kwargs.get("dest") or flag.lstrip("-").replace("-", "_")
    kwargs.setdefault("dest", name)
    if show_default and kwargs.get("action") not in _SWITCHES and "%(default)" not in (help or ""):
        help = f"{help} (default: %(default)s)" if help else "default: %(default)s"
    parser.add_argument(flag, default=field_default(cls, name), help=help, **kwargs)


def from_args(cls, args, **given):
    """`cls` built from parsed `args`: each field from the argument of its name, unless in `given`.

    `given` holds what the flags do not map one to one (renamed, converted or combined);
    fields without an argument keep their defaults.
    """
    parsed = vars(args)
    values = {f.name: parsed[f.name] for f in fields(cls) if f.init and f.name in parsed and f.name not in given}
    return cls(**values, **given)
