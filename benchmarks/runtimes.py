"""CPU inference runtimes side by side, in one run: which way of running a model is fastest, and exact.

For every model, on the same batch of real H&E tiles:
  * eager PyTorch (fp32), the reference;
  * channels-last memory format;
  * torch.compile (Inductor; compile time reported apart, never in the throughput);
  * bf16 autocast, where the CPU has native bf16 (avx512_bf16 / amx_bf16 in its flags);
  * the exported ONNX file on ONNX Runtime, and on OpenVINO (fp32).
Each row reports images/s (median of interleaved batches), its ratio to eager, the largest
difference of its sigmoid probabilities from eager's (exact = within `EXPORT_TOLERANCE`), and the
share of the measured fp32 matmul ceiling it reaches.

    .venv/bin/python benchmarks/runtimes.py                # LDCSF mini, LDCSF tiny, ResNet-18
    .venv/bin/python benchmarks/runtimes.py --quick        # micro model at 64 px, seconds (tests)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf import create_model
from ldcsf.benchmarking import machine_info, matmul_flops_per_s, time_interleaved
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.inference.exported import EXPORT_TOLERANCE, OnnxRuntimeModel, OpenVinoModel, export_onnx
from ldcsf.models.profile import count_flops

DEFAULT_MODELS = ["ldcsf_swin_mini", "ldcsf_swin_tiny", "resnet18"]
MATMUL, MATMUL_SIZE = "__matmul", 2048


def matmul_calls(bf16: bool) -> dict:
    """A large square matmul per precision: the practical ceiling of this machine and stack."""
    calls = {}
    for name, dtype in [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if bf16 else []):
        a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype), torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype)
        calls[name] = lambda a=a, b=b: torch.mm(a, b)
    return calls
MODES = ["eager", "channels-last", "compile", "bf16-autocast", "onnxruntime", "openvino"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, help=f"variants (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--size", type=int, default=None, help="input size in px for every model (default: each model's own)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=6, help="timed batches per runtime (interleaved)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime (default: all usable cores)")
    p.add_argument("--modes", nargs="+", default=None, choices=MODES, help="runtimes to time (default: all that apply)")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images (random input without)")
    p.add_argument("--out", type=Path, default=RESULTS / "runtimes", help="results stem: writes STEM.md and STEM.json")
    p.add_argument("--quick", action="store_true", help="ldcsf_swin_micro at 64 px, batch 4, no compile (tests)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.models = args.models or ["ldcsf_swin_micro"]
        args.size = args.size or 64
        args.batch_size = min(args.batch_size, 4)
        args.repeats, args.warmup = min(args.repeats, 2), 1
        args.modes = args.modes or [m for m in MODES if m != "compile"]
    args.models = args.models or DEFAULT_MODELS
    args.modes = args.modes or MODES
    return args


def cpu_has_native_bf16() -> bool:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("\n\n")[0].split())
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def real_batch(data: Path, size: int, batch: int, mean, std) -> tuple[torch.Tensor, str]:
    """A normalised batch of real H&E tiles (NCT-CRC), or random pixels when the data is absent."""
    from ldcsf.data.dataset import load_rgb

    files = sorted((data / "nct_crc").glob("*.tif"))[:batch]
    if not files:
        return torch.rand(batch, 3, size, size), "random pixels (no real tiles found)"
    images = [np.asarray(load_rgb(f).resize((size, size))) for f in files]
    while len(images) < batch:
        images += images[: batch - len(images)]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x.contiguous(), f"{len(files)} real NCT-CRC tiles resized to {size} px"


def build_workloads(name: str, args, work: Path, bf16: bool) -> tuple[dict, dict]:
    """Callables per runtime for one model, and the row facts (FLOPs, input, outputs per runtime)."""
    kwargs = {} if args.size is None else {"img_size": args.size}
    torch.manual_seed(0)
    base = create_model(name, **kwargs).eval()
    size = int(base.img_size[0])
    ckpt = save_checkpoint(work / f"{name}.pt", base, CheckpointMeta.for_model(base))
    loaded = load_checkpoint(ckpt)
    x, source = real_batch(args.data, size, args.batch_size, loaded.meta.mean, loaded.meta.std)
    facts = {"model": name, "size": size, "batch": args.batch_size, "gflops": count_flops(base, size) / 1e9,
             "input": source, "compile_s": None, "export_s": None}
    calls: dict[str, callable] = {}

    def torch_call(model, inp, precision=None):
        def call():
            with torch.inference_mode(), (torch.autocast("cpu", dtype=torch.bfloat16) if precision else nullcontext()):
                return model(inp).float()
        return call

    for mode in args.modes:
        if mode == "eager":
            calls[mode] = torch_call(loaded.model, x)
        elif mode == "channels-last":
            cl = create_model(name, **kwargs).eval()
            cl.load_state_dict(loaded.model.state_dict())
            calls[mode] = torch_call(cl.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last))
        elif mode == "compile":
            compiled = torch.compile(loaded.model)
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(x)  # the compile happens here: timed apart
            facts["compile_s"] = time.perf_counter() - start
            calls[mode] = torch_call(compiled, x)
        elif mode == "bf16-autocast" and bf16:
            calls[mode] = torch_call(loaded.model, x, precision="bf16")
        elif mode in ("onnxruntime", "openvino") and "onnx_path" not in facts:
            start = time.perf_counter()
            facts["onnx_path"] = str(export_onnx(loaded))
            facts["export_s"] = time.perf_counter() - start
        if mode == "onnxruntime":
            model = OnnxRuntimeModel(facts["onnx_path"], args.threads)
            calls[mode] = lambda m=model: m(x)
        elif mode == "openvino":
            model = OpenVinoModel(facts["onnx_path"], args.threads)
            calls[mode] = lambda m=model: m(x)
    return calls, facts


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    bf16 = cpu_has_native_bf16()
    matmul = matmul_flops_per_s("cpu", 2048)
    matmul16 = matmul_flops_per_s("cpu", 2048, torch.bfloat16) if bf16 else None
    rows, notes = [], []
    if "bf16-autocast" in args.modes and not bf16:
        notes.append("bf16 autocast not timed: this CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag).")
    machine = machine_info("cpu")
    result = {"command": command_line(), "date": now(), "machine": machine.to_dict(), "threads": threads,
              "native_bf16": bf16, "tolerance": EXPORT_TOLERANCE, "matmul_gflop_s": matmul / 1e9,
              "matmul_bf16_gflop_s": matmul16 / 1e9 if matmul16 else None, "repeats": args.repeats,
              "warmup": args.warmup, "rows": rows, "fastest_exact": {}, "notes": notes}
    with tempfile.TemporaryDirectory(prefix="ldcsf-runtimes-") as tmp:
        for name in args.models:
            print(f"{name}: building runtimes ...", file=sys.stderr)
            calls, facts = build_workloads(name, args, Path(tmp), bf16)
            reference = calls["eager"]() if "eager" in calls else None
            # The matmul ceiling is timed among the runtimes, so that it sees the same load they do.
            workloads = {m: (c, args.batch_size) for m, c in calls.items()}
            workloads |= {f"{MATMUL}-{k}": (f, 1) for k, f in matmul_calls(bf16).items()}
            timed = time_interleaved(workloads, args.repeats, args.warmup, progress=not args.no_progress)
            ceilings = {k.split("-", 1)[1]: 2 * MATMUL_SIZE**3 / float(np.median(timed.pop(k).seconds))
                        for k in list(timed) if k.startswith(MATMUL)}
            eager_rate = timed["eager"].items_per_s if "eager" in timed else None
            for mode, res in timed.items():
                diff = None
                if reference is not None:
                    diff = float((torch.sigmoid(calls[mode]().float()) - torch.sigmoid(reference)).abs().max())
                achieved = facts["gflops"] * 1e9 * res.items_per_s
                ceiling = ceilings.get("bf16" if mode == "bf16-autocast" else "fp32")
                rows.append({
                    "model": name, "size": facts["size"], "batch": facts["batch"], "runtime": mode,
                    "img_s": res.items_per_s, "p50_ms": res.percentile_ms(50), "p90_ms": res.percentile_ms(90),
                    "vs_eager": res.items_per_s / eager_rate if eager_rate else None,
                    "max_prob_diff": diff, "exact": diff is not None and diff <= EXPORT_TOLERANCE,
                    "gflops": facts["gflops"], "achieved_gflop_s": achieved / 1e9,
                    "share_of_matmul": achieved / ceiling if ceiling else None,
                    "compile_s": facts["compile_s"] if mode == "compile" else None,
                    "export_s": facts["export_s"] if mode in ("onnxruntime", "openvino") else None,
                    "input": facts["input"], "seconds": res.seconds, "matmul_gflop_s": ceiling / 1e9 if ceiling else None,
                })
            print(f"{name}: " + ", ".join(f"{r['runtime']} {r['img_s']:.1f} img/s" for r in rows if r["model"] == name),
                  file=sys.stderr)
            # Written after every model: a long run interrupted later keeps what it measured.
            result["fastest_exact"] = fastest_exact(rows)
            result["load_average"] = os.getloadavg()
            md, js = write_results(args.out, render(result, machine), result)
    print(render(result, machine))
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


def fastest_exact(rows: list[dict]) -> dict[str, str]:
    """Per model, the fastest runtime whose probabilities match eager PyTorch within tolerance."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["exact"] and (row["model"] not in best or row["img_s"] > best[row["model"]]["img_s"]):
            best[row["model"]] = row
    return {model: row["runtime"] for model, row in best.items()}


def render(result: dict, machine) -> str:
    out = ["# CPU inference runtimes\n", provenance(machine, result["command"], result["date"])]
    out.append(f"- {result['threads']} threads for every runtime; batch {result['rows'][0]['batch'] if result['rows'] else '—'}; "
               f"{result['repeats']} timed batches per runtime after {result['warmup']} warm-up, runtimes interleaved; "
               "throughput from the median batch")
    bf16 = f", bf16 {fmt(result['matmul_bf16_gflop_s'])}" if result.get("matmul_bf16_gflop_s") else ""
    out.append(f"- matmul ceiling ({MATMUL_SIZE}² matmul, median): timed interleaved with each model's runtimes, so it "
               f"sees the same load (at start-up, alone: fp32 {fmt(result['matmul_gflop_s'])}{bf16} GFLOP/s); "
               "bf16 rows are held against the bf16 ceiling")
    out.append(f"- exact = sigmoid probabilities within {result['tolerance']:g} of eager PyTorch on the same batch "
               f"({result['rows'][0]['input'] if result['rows'] else '—'}); untrained weights (speed does not depend on them)\n")
    header = ["model", "input", "runtime", "img/s", "vs eager", "p50 ms/batch", "max |Δp|", "exact", "GFLOP/s",
              "matmul GFLOP/s", "% matmul", "one-off s"]
    table = []
    for r in result["rows"]:
        one_off = r.get("compile_s") or r.get("export_s")
        table.append([r["model"], f"{r['size']}px", r["runtime"], fmt(r["img_s"]), fmt(r["vs_eager"], 2),
                      fmt(r["p50_ms"]), f"{r['max_prob_diff']:.1e}" if r["max_prob_diff"] is not None else "—",
                      "yes" if r["exact"] else "no", fmt(r["achieved_gflop_s"]), fmt(r.get("matmul_gflop_s")),
                      fmt(100 * r["share_of_matmul"] if r.get("share_of_matmul") else None), fmt(one_off)])
    out += [markdown_table(header, table), ""]
    out.append("*one-off s*: compile time (torch.compile) or export + check time (ONNX), paid once, not in img/s.\n")
    for model, runtime in result["fastest_exact"].items():
        out.append(f"- fastest exact runtime for {model}: **{runtime}**")
    out += [""] + [f"- {n}" for n in result["notes"]]
    if result.get("load_average"):
        out.append(f"- load average when written: {', '.join(f'{v:.1f}' for v in result['load_average'])} on "
                   f"{machine.cores} cores (a shared machine: read the ratios, not the absolute rates)")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
