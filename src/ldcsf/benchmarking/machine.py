"""What the benchmark ran on, and what that machine could do at most (its peak FLOP/s).

Two ceilings are reported because neither alone is honest: the *theoretical* peak (cores x clock
x FLOPs per cycle, or a GPU's datasheet figure) is never reached by real code, and a *measured*
large matmul is the practical best this software stack achieves on this machine.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..utils.workers import usable_cores

# Dense (no sparsity) datasheet peaks, TFLOP/s: (fp32 without tensor cores, bf16 tensor cores).
# Matched by substring of torch.cuda.get_device_name(); first match wins, so specific names first.
GPU_PEAK_TFLOPS: list[tuple[str, float, float]] = [
    ("H200", 67.0, 989.0),
    ("H100 PCIe", 51.0, 756.0),
    ("H100", 67.0, 989.0),
    ("A100", 19.5, 312.0),
    ("L40S", 91.6, 362.0),
    ("L4", 30.3, 121.0),
    ("A10G", 31.2, 70.0),
    ("A10", 31.2, 125.0),
    ("RTX 4090", 82.6, 165.0),
    ("RTX 3090", 35.6, 71.0),
    ("V100", 15.7, 125.0),  # fp16 tensor cores: V100 has no bf16
    ("T4", 8.1, 65.0),  # fp16 tensor cores: T4 has no bf16
]


@dataclass
class MachineInfo:
    cpu: str
    cores: int  # usable by this process (affinity), not the host's total
    torch_threads: int
    torch: str
    python: str
    device: str  # "cpu" or the GPU's name
    cuda: str | None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        where = f"GPU {self.device} (CUDA {self.cuda}), " if self.device != "cpu" else ""
        return (f"{where}CPU {self.cpu}, {self.cores} cores usable, {self.torch_threads} torch threads, "
                f"torch {self.torch}, Python {self.python}")


def _cpuinfo() -> dict[str, str]:
    """First processor's fields from /proc/cpuinfo (Linux); empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def machine_info(device: str = "cpu") -> MachineInfo:
    cpu = _cpuinfo().get("model name") or platform.processor() or platform.machine()
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    return MachineInfo(
        cpu=cpu,
        cores=usable_cores(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        device=torch.cuda.get_device_name(torch.device(device)) if on_gpu else "cpu",
        cuda=torch.version.cuda if on_gpu else None,
    )


def cpu_fp32_flops_per_cycle(flags: set[str]) -> tuple[int, str]:
    """fp32 FLOPs one core can retire per cycle, judged from its ISA flags, and why.

    An FMA is 2 FLOPs per lane. Server cores with AVX-512 (Skylake-SP and later Xeons) have two
    512-bit FMA units (some low-end parts have one: this is an upper bound); AVX2 cores have two
    256-bit FMA units.
    """
    if "avx512f" in flags:
        return 2 * 16 * 2, "AVX-512: 2 FMA units x 16 fp32 lanes x 2 FLOPs"
    if "avx2" in flags and "fma" in flags:
        return 2 * 8 * 2, "AVX2: 2 FMA units x 8 fp32 lanes x 2 FLOPs"
    if "avx" in flags:
        return 8 + 8, "AVX: one 8-lane add + one 8-lane multiply"
    return 4 + 4, "SSE: one 4-lane add + one 4-lane multiply"


def peak_flops_per_s(device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[float | None, str]:
    """Theoretical peak FLOP/s of `device` for `dtype`, with a sentence saying how it was derived."""
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
        for key, fp32, bf16 in GPU_PEAK_TFLOPS:
            if key in name:
                tflops = bf16 if dtype in (torch.bfloat16, torch.float16) else fp32
                kind = "bf16/fp16 tensor-core" if tflops == bf16 else "fp32 (non-tensor-core)"
                return tflops * 1e12, f"{name}: datasheet dense {kind} peak, {tflops:g} TFLOP/s"
        return None, f"{name}: no datasheet figure known (add it to GPU_PEAK_TFLOPS)"
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        ghz = float(info.get("cpu MHz", "nan")) / 1e3
    except ValueError:
        ghz = float("nan")
    if not flags or ghz != ghz:
        return None, "no /proc/cpuinfo: CPU peak unknown"
    per_cycle, why = cpu_fp32_flops_per_cycle(flags)
    cores = min(usable_cores(), torch.get_num_threads())
    peak = cores * ghz * 1e9 * per_cycle
    return peak, (f"{cores} cores x {ghz:.2f} GHz (cpuinfo 'cpu MHz'; turbo may exceed it) x {per_cycle} "
                  f"fp32 FLOPs/cycle ({why}) = {peak / 1e9:.0f} GFLOP/s")


def matmul_flops_per_s(device: str = "cpu", size: int = 2048, dtype: torch.dtype = torch.float32,
                       seconds: float = 1.0) -> float:
    """Measured FLOP/s of a large square matmul: the practical ceiling of this machine and stack."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b)  # warm-up: threads, allocator, kernel selection
    sync()
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        elapsed = time.perf_counter() - start
        best = max(best, 2 * size**3 / elapsed)  # best run: the ceiling, not the average
        if time.perf_counter() > deadline:
            return best
