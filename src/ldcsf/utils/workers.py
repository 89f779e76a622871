"""How many data-loading processes to start by default."""

from __future__ import annotations

import os


def default_num_workers(cap: int = 4) -> int:
    """Up to `cap` loader processes, leaving one core to the model (0 = load in the main process)."""
    return min(cap, max(0, (os.cpu_count() or 1) - 1))
