"""Writing outputs so that a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    The temp file lives in the same directory so that the final `os.replace` is an atomic
    rename on the same file system. On an exception the temp file is removed and `path` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes[-1:]), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); results are ordinary files, readable as the umask allows.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the usual non-JSON values in results
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def is_temporary(path: Path) -> bool:
    """A temporary file of `atomic_path` (`.<name>.<random>.tmp<suffix>`)."""
    name = path.name
    return name.startswith(".") and ".tmp" in name and name.count(".") >= 3


def sweep_stale_temporaries(folder: str | Path, min_age_s: float = 0.0) -> int:
    """Remove `atomic_path` temporaries a killed process left in `folder` (not below it).

    A process killed between writing and renaming leaves one behind for good. Only files at least
    `min_age_s` old are removed, so a folder shared with a live process keeps that one's files.
    Returns how many were removed.
    """
    import time

    removed = 0
    now = time.time()
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for path in entries:
        try:
            if path.is_file() and is_temporary(path) and now - path.stat().st_mtime >= min_age_s:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
