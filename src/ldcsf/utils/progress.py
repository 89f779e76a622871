"""Progress that reads well in a terminal and in a log file.

In a terminal, progress is tqdm's bars. In a log file, a pipe or CI every bar refresh would be
written out (`\\r` fragments, hundreds of KB per training run), so there progress is one plain line
every `LINE_EVERY_S` seconds and at the end of each bar: what, how far, rate, time left.
`LDCSF_PROGRESS=bars|lines` forces either; the default follows whether stderr is a terminal.

`tqdm(...)` stands in for `tqdm.auto.tqdm` in the library; `utils.lightning_progress` gives
Lightning's training and prediction loops the same choice.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tqdm.auto import tqdm as _bar_tqdm
from tqdm.std import tqdm as _std_tqdm

ENV = "LDCSF_PROGRESS"
MODES = ("bars", "lines")
#: Seconds between two lines of one bar (the last line of a bar is always written).
LINE_EVERY_S = 10.0


def progress_mode() -> str:
    """'bars' or 'lines': LDCSF_PROGRESS when set, else bars only when stderr is a terminal."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"{ENV}={os.environ[ENV]!r}: expected one of {', '.join(MODES)}")
        return forced
    return "bars" if sys.stderr.isatty() else "lines"


class _Discard:
    """What tqdm's own cursor writes (`\\r`, blank lines, cursor moves) go to in line mode."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class LineTqdm(_std_tqdm):
    """A tqdm that writes whole lines: one every `LINE_EVERY_S` seconds while it runs, and a last one
    when it closes or is reset for another round (Lightning's epochs), unless it is transient
    (`leave=False`, like Lightning's validation bar).

    tqdm keeps the counting, timing and rate; only `display` is replaced: tqdm's own cursor
    handling (carriage returns, moving up for nested bars) goes nowhere.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._out = kwargs.pop("file", None) or sys.stderr
        self._last_line_at = time.monotonic()
        self._written: tuple | None = None
        kwargs.pop("dynamic_ncols", None)
        kwargs.pop("position", None)  # lines are not stacked
        super().__init__(*args, file=_Discard(), **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing or printing a message in place: nothing to say
            return True
        n, total = self.n, self.total
        if n == 0 or (total is not None and n >= total):  # the last line waits for close/reset
            return True
        if time.monotonic() - self._last_line_at >= LINE_EVERY_S:
            self._write()
        return True

    def close(self) -> None:
        if not self.disable:
            self._write_last()
        super().close()

    def reset(self, total: float | None = None) -> None:
        if not self.disable:
            self._write_last()
        super().reset(total)
        self._last_line_at = time.monotonic()

    def _state(self) -> tuple:
        return (self.n, self.total, self.desc, self.postfix)

    def _write_last(self) -> None:
        if self.leave and self.n > 0 and self._state() != self._written:
            self._write()

    def _write(self) -> None:
        self._last_line_at, self._written = time.monotonic(), self._state()
        self._out.write(self.line() + "\n")
        self._out.flush()

    def line(self) -> str:
        """'what: n/total unit (p%), rate unit/s, elapsed m:ss, m:ss left, postfix'."""
        d = self.format_dict
        n, total, elapsed, unit = d["n"], d["total"], d["elapsed"], d["unit"]
        rate = d["rate"] or (n / elapsed if elapsed else None)
        desc = (d["prefix"] or "").strip().rstrip(":")
        what = f"{desc}: " if desc else ""
        how_far = f"{n:g}/{total:g} {unit} ({100 * n / total:.0f}%)" if total else f"{n:g} {unit}"
        parts = [what + how_far]
        if rate:
            parts.append(f"{rate:.3g} {unit}/s")
        parts.append(f"elapsed {self.format_interval(elapsed)}")
        if rate and total and n < total:
            parts.append(f"{self.format_interval((total - n) / rate)} left")
        if d["postfix"]:
            parts.append(str(d["postfix"]))
        return ", ".join(parts)


def tqdm(*args: Any, **kwargs: Any):
    """A progress bar in a terminal, progress lines elsewhere (`progress_mode`)."""
    return (_bar_tqdm if progress_mode() == "bars" else LineTqdm)(*args, **kwargs)
