"""Table cells a spreadsheet would run as formulas: guarded when written, the guard read back.

A cell starting with `=`, `+`, `-`, `@`, tab or carriage return is a formula to Excel and
LibreOffice; cohort.csv gives such cells a leading apostrophe (OWASP's advice). Whatever reads
cohort.csv back takes the apostrophe off again, so a slide id is the same on both sides.
"""

from __future__ import annotations

from ..utils.paths import printable_name

#: Characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def guarded_cell(value):
    """A text cell as written to a table: printable (see `printable_name`) and formula-guarded."""
    if not isinstance(value, str):
        return value
    value = printable_name(value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def formula_guard_removed(value):
    """A cell read back from a guarded table, as it was before `guarded_cell`."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value
