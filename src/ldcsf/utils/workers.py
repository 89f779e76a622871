"""How many data-loading processes and model threads to start by default."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers(cap: int = 4) -> int:
    """Up to `cap` loader processes, leaving one core to the model (0 = load in the main process)."""
    return min(cap, max(0, usable_cores() - 1))


def model_threads_beside_workers(num_workers: int) -> int:
    """CPU threads for the model when `num_workers` loader processes share the machine.

    OpenMP threads spin while they wait for each other, so a model thread that shares its core with
    a loader stalls the whole forward pass; the model gets the cores the loaders leave free.
    """
    return max(1, usable_cores() - max(0, num_workers))


def leave_stop_signals_to_parent(worker_id: int = 0) -> None:
    """`worker_init_fn` of tile-reading DataLoader workers: SIGTERM and SIGINT are the parent's to handle.

    Schedulers (`timeout`, Slurm's `scancel`) and Ctrl-C signal the whole process group. PyTorch's
    workers die on a SIGTERM that is not their parent's, and the parent then fails with "DataLoader
    worker ... killed by signal" instead of stopping cleanly (`utils.signals`). Here a worker
    ignores both while its parent lives (the parent shuts it down as it unwinds) and exits once
    the parent is gone.
    """
    import signal

    parent = os.getppid()

    def on_stop(signum, frame):
        if os.getppid() != parent:
            os._exit(0)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_stop)


#: Where a multi-process launcher puts a process's rank, in the order Lightning reads them
#: (`lightning.fabric.utilities.rank_zero._get_rank`).
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's rank in a multi-process run, 0 when alone: Lightning's own count, read without
    importing Lightning (a one-device run never loads it)."""
    import sys

    # Lightning's `rank_zero_only` (the same object) holds the rank once Lightning or a strategy set it;
    # when its module was never imported nothing set it, and importing it would cost 0.05 s for nothing.
    rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if rank is not None:
        return int(rank)
    for variable in _RANK_VARIABLES:
        if variable in os.environ:
            return int(os.environ[variable])
    return 0
