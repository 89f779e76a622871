"""Old import paths of moved modules: still importable, with a DeprecationWarning.

`importlib` rather than an import statement, so that an alias left on a lower floor never
counts as an upward import (tests/test_import_graph.py holds the floor order).
"""

from __future__ import annotations

import importlib
import sys
import warnings


def alias_module(old: str, new: str) -> None:
    """Make `import old` give the module `new` (call it from the old module's file)."""
    warnings.warn(f"{old} moved to {new}", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
