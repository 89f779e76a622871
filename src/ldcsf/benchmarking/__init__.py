"""Measuring speed fairly: interleaved timing, the machine's description and its peak FLOP/s."""

from .machine import MachineInfo, machine_info, matmul_flops_per_s, peak_flops_per_s
from .timing import TimingResult, time_interleaved

__all__ = [
    "MachineInfo",
    "TimingResult",
    "machine_info",
    "matmul_flops_per_s",
    "peak_flops_per_s",
    "time_interleaved",
]
