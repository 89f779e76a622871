"""Timing several workloads in one run so that they see the same machine.

On a shared machine the load changes from second to second. Timing model A for a minute and then
model B for a minute compares two different machines; interleaving A, B, C, A, B, C, ... (in a
rotating order, so no workload always runs right after another) spreads the noise over all of
them, and a ratio of two workloads from the same run is far steadier than either number alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from ..utils.progress import tqdm  # bars in a terminal, lines in a log


@dataclass
class TimingResult:
    """Wall times of the repeats of one workload that processes `items` images per call."""

    name: str
    items: int
    seconds: list[float] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        # Median time per call: one stall from another process does not move it.
        return self.items / float(np.median(self.seconds))

    def percentile_ms(self, q: float) -> float:
        return 1e3 * float(np.percentile(self.seconds, q))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "items": self.items,
            "items_per_s": self.items_per_s,
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "seconds": self.seconds,
        }


def time_interleaved(
    workloads: Mapping[str, tuple[Callable[[], object], int]],
    repeats: int,
    warmup: int = 1,
    synchronize: Callable[[], None] | None = None,
    progress: bool = True,
) -> dict[str, TimingResult]:
    """Time each workload `repeats` times, interleaved in rotating order, after `warmup` untimed calls.

    Args:
        workloads: name -> (call, images processed per call).
        repeats: timed calls per workload.
        warmup: untimed calls per workload first (allocator, caches, lazy init, compilation).
        synchronize: waits for queued device work (e.g. `torch.cuda.synchronize`); the clock
            stops only after it, otherwise a GPU timing measures only the launch.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    sync = synchronize or (lambda: None)
    names = list(workloads)
    results = {name: TimingResult(name, workloads[name][1]) for name in names}
    for _ in range(warmup):
        for name in names:
            workloads[name][0]()
        sync()
    bar = tqdm(total=repeats * len(names), desc="timing", disable=not progress, leave=False)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            sync()
            start = time.perf_counter()
            workloads[name][0]()
            sync()
            results[name].seconds.append(time.perf_counter() - start)
            bar.update()
    bar.close()
    return results
