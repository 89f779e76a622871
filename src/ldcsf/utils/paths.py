"""Safe names for output folders, and proof that an output path stays inside its root.

A slide's id becomes a folder name under --out. File names can be anything (`...tif` has the
stem `..`), so an id is made a plain name first, and every output path is resolved and checked
to lie inside the output folder before anything is written there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: `\xNN` escapes that `printable_name` writes for bytes that are not UTF-8.
_BYTE_ESCAPE = re.compile(r"\\x([89a-f][0-9a-f])")
#: Longest id kept (file systems allow 255 bytes per name; room is left for suffixes).
MAX_ID_LENGTH = 150
#: Path separators, control characters and what Windows forbids in names; everything else
#: (spaces, brackets, accents) is kept, so ids stay recognisable.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


def printable_name(name: str | os.PathLike) -> str:
    r"""A file system name as text that any UTF-8 file, table or log can hold.

    Linux allows any bytes in a name; Python keeps those that are not UTF-8 as lone surrogates
    (`caf\udce9`), which no UTF-8 writer accepts. Each such byte becomes a `\xNN` escape
    (`caf\xe9`); `name_from_printable` turns the text back into the name.
    """
    text = os.fspath(name)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file system byte gives: escaped as \udNNN
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def name_from_printable(text: str) -> str:
    r"""The file system name `printable_name` made `text` from (a literal `\xNN` in a name reads as that byte)."""
    return _BYTE_ESCAPE.sub(lambda m: chr(0xDC00 + int(m[1], 16)), text)


def safe_name(name: str, fallback: str = "slide") -> str:
    """`name` as a folder name that is never `.`/`..`, hidden, or a path: unsafe runs become `_`.

    Leading dots become underscores one for one (`..` -> `__`), so two names that differ only
    there still differ.
    """
    name = _UNSAFE.sub("_", name.strip())
    stripped = name.lstrip(".")
    name = "_" * (len(name) - len(stripped)) + stripped
    name = name[:MAX_ID_LENGTH]
    return name or fallback


def path_inside(root: str | Path, *parts: str) -> Path:
    """`root / parts...`, refused (ValueError, one line) if it resolves outside `root`."""
    root = Path(root)
    path = root.joinpath(*parts)
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ValueError(f"{path}: resolves to {resolved}, outside the output folder {resolved_root}; refused")
    return path


def check_output_file(path: str | Path) -> Path:
    """Before any work: `path` can be written as a file (its folder exists or can be made, is
    writable, and `path` is not a folder). Raises one line naming the path."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name for the output")
    check_output_dir(path.parent if str(path.parent) else Path("."))
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{path}: cannot be overwritten (no write permission)")
    return path


def check_output_dir(path: str | Path) -> Path:
    """Before any work: create `path` if needed and prove a file can be written in it."""
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: is a file, not a folder; cannot write outputs there")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise PermissionError(f"{path}: cannot write outputs there ({err.strerror or err})") from None
    return path
