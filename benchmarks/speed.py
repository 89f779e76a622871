"""Speed of LDCSF against plain Swin and ResNet on this machine, in one run.

What it measures, for every (model, input size):
  * inference throughput (images/s) and latency per batch (p50/p90), eval mode, no autograd;
  * training throughput (images/s) of forward + backward + AdamW step;
  * FLOPs per image (PyTorch's flop counter), achieved FLOP/s and its share of the machine's peak;
  * on a GPU also bf16 autocast, channels-last and torch.compile, and a batch-size sweep;
  * the slide pipeline's tiles/s on a large pyramidal TIFF built from real tiles, against the
    model alone, and the pipeline's peak memory at two slide sizes.

Models are interleaved across repeats (see ldcsf.benchmarking.timing), so the LDCSF / Swin ratio
holds even on a busy machine; the target is LDCSF throughput >= 0.90x plain Swin of the same size.

    .venv/bin/python benchmarks/speed.py                 # mini models at 128 px, CPU
    .venv/bin/python benchmarks/speed.py --all           # every variant at its own size
    .venv/bin/python benchmarks/speed.py --quick         # micro models, seconds (tests)
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf import create_model, list_models
from ldcsf.benchmarking import machine_info, matmul_flops_per_s, peak_flops_per_s, time_interleaved
from ldcsf.models import count_parameters
from ldcsf.models.profile import count_flops
from ldcsf.utils.workers import default_num_workers, model_threads_beside_workers

TARGET_RATIO = 0.90
DEFAULT_MODELS = ["ldcsf_swin_mini", "swin_mini", "resnet18"]
QUICK_MODELS = ["ldcsf_swin_micro", "swin_micro", "resnet18"]


# -- arguments ---------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help=f"variants to time (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--all", action="store_true", help="every variant in ldcsf.list_models(), incl. paper scale")
    p.add_argument("--sizes", nargs="+", default=None,
                   help="input sizes in px, or 'native' for each model's own (default: 128; with --all: native)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: 32 CPU, 128 GPU)")
    p.add_argument("--repeats", type=int, default=10, help="timed batches per model (interleaved)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per model first")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (GPU when present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    p.add_argument("--cpu-bf16", action="store_true", help="on CPU, also time bf16 autocast inference")
    p.add_argument("--batch-sweep", nargs="*", type=int, default=None,
                   help="batch sizes for the sweep (default on GPU: 32 64 128 256 512; CPU: none)")
    p.add_argument("--slide-sizes", nargs="*", type=int, default=None,
                   help="side in px of the mosaic slides for the pipeline benchmark (two sizes show "
                        "whether memory stays flat; default 8192 16384, none with --quick); none to skip")
    p.add_argument("--slide-dir", type=Path, default=RESULTS / "slides",
                   help="where the mosaic slides are written (reused when present)")
    p.add_argument("--slide-workers", type=int, default=default_num_workers(),
                   help="DataLoader workers reading tiles in the pipeline (default as `ldcsf slide`: cores - 1, "
                        "at most 4)")
    p.add_argument("--slide-checkpoint", default=None,
                   help="the checkpoint the pipeline runs: a path, or `shipped` for the model in the box (what "
                        "users run by default); default: the first ldcsf model of --models with untrained weights")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--out", type=Path, default=RESULTS / "speed", help="results stem: writes STEM.md and STEM.json")
    p.add_argument("--quick", action="store_true",
                   help="micro models at 64 px, batch 4, 2 repeats, no slide: a smoke run for tests")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--_slide-worker", nargs=6, metavar=("CKPT", "SLIDE", "BATCH", "DEVICE", "WORKERS", "THREADS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.models = args.models or QUICK_MODELS
        args.sizes = args.sizes or ["64"]
        args.batch_size = args.batch_size or 4
        args.repeats, args.warmup = min(args.repeats, 2), min(args.warmup, 1)
        args.slide_sizes = [] if args.slide_sizes is None else args.slide_sizes
    if args.slide_sizes is None:
        args.slide_sizes = [8192, 16384]
    return args


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"speed.py: error: --device {name} asked for but torch sees no GPU")
    return name


def pair_of(name: str) -> str | None:
    """The plain Swin an LDCSF variant is compared with: ldcsf_swin_mini -> swin_mini."""
    return name.removeprefix("ldcsf_") if name.startswith("ldcsf_") else None


# -- building the workloads ----------------------------------------------------------------------
class Config:
    """One timed configuration: a model at an input size, precision and memory format."""

    def __init__(self, model_name: str, size: int | None, precision: str = "fp32",
                 channels_last: bool = False, compiled: bool = False):
        self.model_name, self.size, self.precision = model_name, size, precision
        self.channels_last, self.compiled = channels_last, compiled

    @property
    def mode(self) -> str:
        parts = [self.precision] + (["channels-last"] if self.channels_last else []) + (["compile"] if self.compiled else [])
        return "+".join(parts)

    def key(self, size: int) -> str:
        return f"{self.model_name}@{size}/{self.mode}"


def build_model(name: str, size: int | None) -> torch.nn.Module:
    kwargs = {} if size is None else {"img_size": size}
    return create_model(name, **kwargs)


def autocast(device: str, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def inference_step(model, x, device, precision):
    def step():
        with torch.inference_mode(), autocast(device, precision):
            model(x)
    return step


def training_step(model, x, y, device, precision):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()
    return step


def prepare(model, device, cfg: Config, train: bool):
    model = model.to(device).train(train)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compiled:
        model = torch.compile(model)
    return model


def make_input(size: int, batch: int, device: str, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch, 3, size, size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# -- the measurements ----------------------------------------------------------------------------
def measure_models(configs: list[Config], sizes: list[int | None], batch: int, device: str, args) -> list[dict]:
    """Time every config at every size; return one row per (config, size) with all numbers."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    rows, infer, train = {}, {}, {}
    for size in sizes:
        for cfg in configs:
            try:
                base = build_model(cfg.model_name, size)
            except Exception as exc:  # e.g. a window size that does not divide this input size
                print(f"skip {cfg.model_name} at {size}px: {exc}", file=sys.stderr)
                continue
            px = int(base.img_size[0])
            key = cfg.key(px)
            if key in rows:
                continue
            rows[key] = {
                "model": cfg.model_name, "size": px, "mode": cfg.mode, "batch": batch,
                "params_m": count_parameters(base) / 1e6,
                # FLOPs on CPU before moving: the counter needs no device and the count is the same.
                "gflops": count_flops(base, px) / 1e9,
            }
            x = make_input(px, batch, device, cfg.channels_last)
            model = prepare(copy.deepcopy(base), device, cfg, train=False)
            infer[key] = (inference_step(model, x, device, cfg.precision), batch)
            if not args.no_train:
                y = torch.randint(0, 2, (batch, base.num_labels), device=device).float()
                tmodel = prepare(base, device, cfg, train=True)
                train[key] = (training_step(tmodel, x, y, device, cfg.precision), batch)
    progress = not args.no_progress
    print(f"timing inference of {len(infer)} configurations, {args.repeats} interleaved repeats ...", file=sys.stderr)
    for key, res in time_interleaved(infer, args.repeats, args.warmup, sync, progress).items():
        rows[key].update(infer_img_s=res.items_per_s, p50_ms=res.percentile_ms(50), p90_ms=res.percentile_ms(90),
                         infer_seconds=res.seconds)
    if train:
        print(f"timing training steps of {len(train)} configurations ...", file=sys.stderr)
        for key, res in time_interleaved(train, args.repeats, args.warmup, sync, progress).items():
            rows[key].update(train_img_s=res.items_per_s, train_seconds=res.seconds)
    add_ratios(rows)
    return list(rows.values())


def add_ratios(rows: dict[str, dict]) -> None:
    """LDCSF / plain Swin of the same size, input and mode, for inference and training."""
    for row in rows.values():
        partner = pair_of(row["model"])
        other = rows.get(f"{partner}@{row['size']}/{row['mode']}") if partner else None
        if other:
            row["infer_vs_swin"] = row["infer_img_s"] / other["infer_img_s"]
            if "train_img_s" in row and "train_img_s" in other:
                row["train_vs_swin"] = row["train_img_s"] / other["train_img_s"]


def add_efficiency(rows: list[dict], peaks: dict[str, float | None], matmuls: dict[str, float]) -> None:
    """Achieved GFLOP/s of each row and its share of the peak and matmul ceiling of its precision."""
    for row in rows:
        achieved = row["gflops"] * 1e9 * row["infer_img_s"]
        precision = row["mode"].split("+")[0]
        peak, matmul = peaks.get(precision), matmuls.get(precision)
        row["achieved_gflop_s"] = achieved / 1e9
        row["share_of_peak"] = achieved / peak if peak else None
        row["share_of_matmul"] = achieved / matmul if matmul else None


def batch_sweep(model_names: list[str], size: int | None, batches: list[int], device: str, precision: str,
                args) -> list[dict]:
    """Inference throughput against batch size (GPU: where throughput saturates)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    out = []
    for batch in batches:
        work = {}
        for name in model_names:
            model = prepare(build_model(name, size), device, Config(name, size, precision), train=False)
            x = make_input(int(model.img_size[0]), batch, device, False)
            work[name] = (inference_step(model, x, device, precision), batch)
        try:
            timed = time_interleaved(work, args.repeats, args.warmup, sync, not args.no_progress)
        except torch.cuda.OutOfMemoryError:
            out.append({"batch": batch, "oom": True})
            break
        out.append({"batch": batch, **{n: r.items_per_s for n, r in timed.items()}})
        del work
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def profile_pair(ldcsf_name: str, size: int | None, batch: int, device: str, top: int = 12) -> str:
    """Where the time of an LDCSF forward goes, as torch.profiler's table (for when it is slow)."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model(ldcsf_name, size).to(device).eval()
    x = make_input(int(model.img_size[0]), batch, device, False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch.inference_mode():
        model(x)
        with profile(activities=activities, record_shapes=False) as prof:
            for _ in range(3):
                model(x)
    sort = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=top)


# -- the slide pipeline ---------------------------------------------------------------------------
def pipeline_available() -> str | None:
    """None when the slide pipeline can be benchmarked, else what is missing."""
    try:
        from ldcsf.wholeslide.pipeline import run_slide  # noqa: F401
    except ImportError as exc:
        return f"needs ldcsf.wholeslide.pipeline.run_slide ({exc})"
    return None


def build_mosaic_slide(path: Path, side: int, data: Path, tile: int = 224, mpp: float = 0.5) -> Path:
    """A `side` x `side` px pyramidal TIFF tiled from the real NCT-CRC tiles (0.5 µm/px), reused if present.

    The mosaic repeats the 42 real tiles in a shuffled order. The full-resolution array is the one
    big allocation (side^2 x 3 bytes: 0.8 GB at 16k); it is filled tile by tile, never copied.
    """
    from ldcsf.data.dataset import load_rgb
    from ldcsf.wsi.writer import write_pyramidal_tiff

    if path.is_file():
        return path
    tiles_dir = data / "nct_crc"
    files = sorted(tiles_dir.glob("*.tif"))
    if not files:
        raise FileNotFoundError(f"{tiles_dir}: no .tif tiles to build the mosaic slide from")
    tiles = [np.asarray(load_rgb(f).resize((tile, tile))) for f in files]
    rng = np.random.default_rng(0)
    mosaic = np.empty((side, side, 3), dtype=np.uint8)
    for y in range(0, side, tile):
        for x in range(0, side, tile):
            t = tiles[rng.integers(len(tiles))]
            h, w = min(tile, side - y), min(tile, side - x)
            mosaic[y:y + h, x:x + w] = t[:h, :w]
    write_pyramidal_tiff(path, mosaic, mpp=mpp, tile_size=256)
    return path


class PredictTimer:
    """Times the prediction phase of a slide and how much of it the model was busy.

    A Lightning callback (made by `make()`, so this module imports Lightning only when used).
    `seconds` runs from the start of `Trainer.predict` to its end (loader workers starting
    included); `model_seconds` sums the predict steps, so `model_seconds / seconds` is the share
    of the phase the model was working rather than waiting for tiles.
    """

    @staticmethod
    def make():
        import lightning as L

        class _Timer(L.Callback):
            def __init__(self):
                self.tiles, self.seconds, self.model_seconds, self._t0, self._tb = 0, 0.0, 0.0, 0.0, 0.0

            def on_predict_start(self, trainer, pl_module):
                self._t0 = time.perf_counter()

            def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
                self._tb = time.perf_counter()

            def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
                self.model_seconds += time.perf_counter() - self._tb
                self.tiles += len(batch[1])

            def on_predict_end(self, trainer, pl_module):
                self.seconds = time.perf_counter() - self._t0

        return _Timer()


def load_for_speed(ckpt: str):
    """The checkpoint, or the shipped model for `shipped`."""
    if ckpt == "shipped":
        from ldcsf.shipped import load_shipped

        return load_shipped()
    from ldcsf.checkpoint import load_checkpoint

    return load_checkpoint(ckpt)


def model_alone_img_s(ckpt: str, batch: int, device: str, batches: int = 6) -> float:
    """The checkpoint's model on random input in this process: images/s from the median batch."""
    model = load_for_speed(ckpt).model.to(device).eval()
    side = int(model.img_size[0])
    x = torch.randn(batch, 3, side, side, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(batches + 1):
            start = time.perf_counter()
            model(x)
            sync()
            if i:  # the first batch warms up
                times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def slide_worker(ckpt: str, slide: str, batch: str, device: str, workers: str, threads: str) -> None:
    """Run in a fresh process: one slide through the pipeline; print times, tiles and peak RSS as JSON.

    The model alone is timed in the same process just before and just after the slide, with the
    same threads and batch, so the pipeline / model ratio holds even when the machine's load
    changes during the run.
    """
    import tempfile

    from ldcsf.wholeslide.pipeline import SlideSettings, run_slide

    if int(threads):
        torch.set_num_threads(int(threads))
    elif not device.startswith("cuda") and int(workers):  # as `ldcsf slide`: the cores the readers leave
        torch.set_num_threads(min(torch.get_num_threads(), model_threads_beside_workers(int(workers))))
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    settings = SlideSettings(batch_size=int(batch), num_workers=int(workers), accelerator=accelerator,
                             devices=1, progress=False)
    before = model_alone_img_s(ckpt, int(batch), device)
    timer = PredictTimer.make()
    # A fresh output folder: the pipeline skips a slide whose folder is already complete.
    with tempfile.TemporaryDirectory(prefix="ldcsf-speed-") as out_dir:
        start = time.perf_counter()
        row = run_slide(slide, load_for_speed(ckpt), Path(out_dir) / "slide", settings, callbacks=[timer]).row
        seconds = time.perf_counter() - start
        tiles = _count_tiles(row, Path(out_dir) / "slide")
    after = model_alone_img_s(ckpt, int(batch), device)
    # Loader workers are forked children: their high-water mark includes pages shared with this process.
    workers_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if int(workers) else None
    print(json.dumps({"seconds": seconds, "tiles": tiles, "peak_rss_mb": peak_rss_mb(), "workers": int(workers),
                      "worker_peak_rss_mb": workers_peak_mb,
                      "threads": torch.get_num_threads(), "predict_seconds": timer.seconds,
                      "predict_tiles": timer.tiles, "model_busy": timer.model_seconds / max(timer.seconds, 1e-9),
                      "model_alone_img_s": (before + after) / 2}))


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MB.

    VmHWM (Linux) counts this program only. ru_maxrss would also hold the RSS of the benchmark
    process that started it (the kernel keeps it across fork + exec), i.e. of whoever built the
    mosaic, not of the pipeline.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 2**20)


def _count_tiles(row: dict, slide_dir: Path) -> int | None:
    for key in ("n_tiles", "tiles", "num_tiles"):
        if isinstance(row.get(key), (int, np.integer)):
            return int(row[key])
    tables = sorted(slide_dir.glob("tiles.*"))
    if tables:
        import pandas as pd

        table = pd.read_parquet(tables[0]) if tables[0].suffix == ".parquet" else pd.read_csv(tables[0])
        return len(table)
    return None


def measure_pipeline(args, device: str, model_name: str, batch: int) -> dict:
    """Tiles/s and peak memory of whole-slide inference, each slide in its own process."""
    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
    from ldcsf.training.train import effective_mpp

    missing = pipeline_available()
    if missing:
        return {"skipped": missing}
    if not (args.data / "nct_crc").is_dir():
        return {"skipped": f"needs the real tiles in {args.data / 'nct_crc'}"}
    args.slide_dir.mkdir(parents=True, exist_ok=True)
    if args.slide_checkpoint:
        ckpt = args.slide_checkpoint
        model_name = "shipped model" if ckpt == "shipped" else Path(ckpt).name
    else:
        model = create_model(model_name)
        ckpt = args.slide_dir / f"{model_name}-untrained.pt"  # weights do not change the speed
        # The µm/px training gives this model (224 px tiles at 0.5 µm/px resized to its input).
        save_checkpoint(ckpt, model, CheckpointMeta.for_model(model, mpp=effective_mpp(int(model.img_size[0]))))
    runs = []
    for side in args.slide_sizes:
        print(f"slide pipeline: {side} x {side} px mosaic ...", file=sys.stderr)
        slide = build_mosaic_slide(args.slide_dir / f"mosaic_{side}.tiff", side, args.data)
        proc = subprocess.run([sys.executable, __file__, "--_slide-worker", str(ckpt), str(slide), str(batch),
                               device, str(args.slide_workers), str(args.threads or 0)],
                              capture_output=True, text=True)
        if proc.returncode:
            return {"skipped": f"pipeline failed on {slide}: {proc.stderr.strip().splitlines()[-1:]}"}
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        run["side"] = side
        run["tiles_per_s"] = run["tiles"] / run["seconds"] if run.get("tiles") else None
        run["predict_tiles_per_s"] = run["predict_tiles"] / run["predict_seconds"] if run["predict_seconds"] else None
        run["predict_vs_model"] = (run["predict_tiles_per_s"] / run["model_alone_img_s"]
                                   if run["predict_tiles_per_s"] else None)
        runs.append(run)
    out = {"model": model_name, "batch": batch, "workers": args.slide_workers, "runs": runs}
    first, last = runs[0], runs[-1]
    if len(runs) >= 2 and first.get("tiles") and last.get("tiles") and last["seconds"] > first["seconds"]:
        # Between two slide sizes the fixed costs (loading, tissue detection, outputs) cancel.
        out["marginal_tiles_per_s"] = (last["tiles"] - first["tiles"]) / (last["seconds"] - first["seconds"])
        out["model_alone_img_s"] = float(np.mean([r["model_alone_img_s"] for r in runs]))
        out["marginal_vs_model"] = out["marginal_tiles_per_s"] / out["model_alone_img_s"]
        # The same for the prediction phase alone (loader start-up cancels); held against the
        # model alone, timed in the same processes.
        if last["predict_seconds"] > first["predict_seconds"]:
            rate = (last["predict_tiles"] - first["predict_tiles"]) / (last["predict_seconds"] - first["predict_seconds"])
            out["marginal_predict_tiles_per_s"] = rate
            out["marginal_predict_vs_model"] = rate / out["model_alone_img_s"]
    return out


# -- report ------------------------------------------------------------------------------------
def render(result: dict) -> str:
    rows = result["rows"]
    out = [f"# Speed benchmark\n", provenance(result["machine_obj"], result["command"], result["date"])]
    out.append(f"- batch size {rows[0]['batch'] if rows else '—'}, {result['repeats']} timed repeats per model "
               f"after {result['warmup']} warm-up, models interleaved; throughput from the median batch time")
    out.append(f"- peak: {result['peak_note']}")
    bf16 = f", bf16 {fmt(result['matmul_bf16_gflop_s'])}" if result.get("matmul_bf16_gflop_s") else ""
    out.append(f"- measured matmul ceiling ({result['matmul_size']}²): fp32 {fmt(result['matmul_gflop_s'])}{bf16} GFLOP/s\n")
    header = ["model", "input", "mode", "params (M)", "GFLOPs/img", "infer img/s", "p50 ms/batch", "p90 ms/batch",
              "infer vs Swin", "train img/s", "train vs Swin", "GFLOP/s", "% peak", "% matmul"]
    table = []
    for r in rows:
        table.append([r["model"], f"{r['size']}px", r["mode"], fmt(r["params_m"], 2), fmt(r["gflops"], 3),
                      fmt(r.get("infer_img_s")), fmt(r.get("p50_ms")), fmt(r.get("p90_ms")),
                      fmt(r.get("infer_vs_swin"), 2), fmt(r.get("train_img_s")), fmt(r.get("train_vs_swin"), 2),
                      fmt(r.get("achieved_gflop_s")), fmt(100 * r["share_of_peak"] if r.get("share_of_peak") else None),
                      fmt(100 * r["share_of_matmul"] if r.get("share_of_matmul") else None)])
    out += ["## Model throughput\n", markdown_table(header, table), ""]
    verdicts = [f"- {r['model']} at {r['size']}px ({r['mode']}): {r['infer_vs_swin']:.2f}x plain Swin inference "
                f"-> {'meets' if r['infer_vs_swin'] >= TARGET_RATIO else 'BELOW'} the {TARGET_RATIO:.2f}x target"
                for r in rows if r.get("infer_vs_swin") is not None]
    out += verdicts + [""] if verdicts else []
    if result.get("sweep"):
        names = [k for k in result["sweep"][0] if k not in ("batch", "oom")]
        sweep_rows = [[s["batch"]] + (["out of memory"] * len(names) if s.get("oom") else [fmt(s[n]) for n in names])
                      for s in result["sweep"]]
        out += [f"## Batch-size sweep ({result['sweep_mode']}, img/s)\n", markdown_table(["batch", *names], sweep_rows), ""]
    pipe = result.get("pipeline") or {}
    out.append("## Slide pipeline\n")
    if pipe.get("skipped"):
        out.append(f"Not measured: {pipe['skipped']}.\n")
    else:
        model_rate = next((r["infer_img_s"] for r in rows if r["model"] == pipe["model"] and r["mode"] == "fp32"), None)
        prow = [[f"{r['side']}²", r.get("tiles"), fmt(r["seconds"]), fmt(r.get("tiles_per_s")),
                 fmt(r["tiles_per_s"] / model_rate, 2) if model_rate and r.get("tiles_per_s") else "—",
                 fmt(r.get("predict_seconds")), fmt(r.get("predict_tiles_per_s")), fmt(r.get("model_alone_img_s")),
                 fmt(r.get("predict_vs_model"), 2), fmt(100 * r["model_busy"], 0) if r.get("model_busy") else "—",
                 fmt(r["peak_rss_mb"], 0), fmt(r.get("worker_peak_rss_mb"), 0)] for r in pipe["runs"]]
        threads = pipe["runs"][0].get("threads")
        out += [f"{pipe['model']}, batch {pipe['batch']}, {pipe.get('workers', 0)} loader worker(s), {threads} torch "
                "thread(s); each slide in a fresh process (peak RSS = its high-water mark). *Predict* is the "
                "`Trainer.predict` phase (fixed costs excluded); *model alone* is timed in the same process "
                "around it; *model busy* is the share of the phase spent in predict steps. Peak RSS is the "
                "pipeline process's VmHWM; a loader worker's includes the pages it shares with it.\n",
                markdown_table(["slide px", "tiles", "seconds", "tiles/s", "vs model (table)", "predict s",
                                "predict tiles/s", "model alone img/s", "predict vs model", "model busy %",
                                "peak RSS (MB)", "worker peak RSS (MB)"], prow), ""]
        if pipe.get("marginal_tiles_per_s"):
            marginal = pipe["marginal_tiles_per_s"]
            sizes = f"{pipe['runs'][0]['side']}² and {pipe['runs'][-1]['side']}²"
            out += [f"Marginal rate of the whole pipeline between {sizes} (fixed costs cancel): {marginal:,.1f} tiles/s"
                    + (f" = **{pipe['marginal_vs_model']:.2f}x** the model alone in the same processes "
                       f"({pipe['model_alone_img_s']:,.1f} img/s)" if pipe.get("marginal_vs_model") else "")
                    + (f"; {marginal / model_rate:.2f}x the table's rate, timed earlier in the run." if model_rate else ".")]
        if pipe.get("marginal_predict_tiles_per_s"):
            out += [f"Marginal rate of the predict phase: {pipe['marginal_predict_tiles_per_s']:,.1f} tiles/s = "
                    f"**{pipe['marginal_predict_vs_model']:.2f}x** the model alone in the same processes "
                    f"({pipe['model_alone_img_s']:,.1f} img/s); target {TARGET_RATIO:.2f}x."]
        out.append("")
    if result.get("notes"):
        out += ["## Notes\n"] + [f"- {n}" for n in result["notes"]] + [""]
    if result.get("profile"):
        out += ["## Profile of the LDCSF forward (it missed the target)\n", "```", result["profile"], "```", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._slide_worker:
        slide_worker(*args._slide_worker)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    on_gpu = device.startswith("cuda")
    names = list_models() if args.all else (args.models or DEFAULT_MODELS)
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        raise SystemExit(f"speed.py: error: unknown model(s) {', '.join(unknown)}; available: {', '.join(list_models())}")
    size_args = args.sizes or (["native"] if args.all else ["128"])
    sizes = [None if s == "native" else int(s) for s in size_args]
    batch = args.batch_size or (128 if on_gpu else 32)
    notes = []

    # Which precisions and layouts: the GPU gets the full menu; on CPU bf16 is opt-in and
    # channels-last / torch.compile are skipped (compile time dominates any short CPU run).
    configs = [Config(n, None) for n in names]
    if on_gpu:
        for n in names:
            configs += [Config(n, None, "bf16"), Config(n, None, "bf16", channels_last=True),
                        Config(n, None, "bf16", channels_last=True, compiled=True)]
    else:
        if args.cpu_bf16:
            configs += [Config(n, None, "bf16") for n in names]
        notes.append("CPU run: channels-last and torch.compile are GPU-only rows here"
                     + ("" if args.cpu_bf16 else "; bf16 autocast skipped (add --cpu-bf16)") + ".")
    torch.manual_seed(0)
    rows = measure_models(configs, sizes, batch, device, args)

    peak32, peak_note = peak_flops_per_s(device, torch.float32)
    peak16, note16 = peak_flops_per_s(device, torch.bfloat16)
    if on_gpu:
        peak_note = f"fp32: {peak_note}; bf16: {note16}"
    else:
        peak16 = None  # no trustworthy bf16 peak for CPUs: the % peak column is left empty
    matmul_size = 4096 if on_gpu else 2048
    matmul = matmul_flops_per_s(device, matmul_size)
    # bf16 rows are held against a bf16 matmul: on a GPU that is the tensor-core ceiling.
    matmul16 = matmul_flops_per_s(device, matmul_size, torch.bfloat16) if on_gpu or args.cpu_bf16 else None
    add_efficiency(rows, {"fp32": peak32, "bf16": peak16}, {"fp32": matmul, "bf16": matmul16})
    notes.append("FLOPs count matrix multiplies and convolutions (torch.utils.flop_counter; a multiply-add is 2 "
                 "FLOPs); element-wise work (norms, activations, softmax) is not counted, so % peak is a lower bound.")

    sweep, sweep_mode = None, None
    batches = args.batch_sweep if args.batch_sweep is not None else ([32, 64, 128, 256, 512] if on_gpu else [])
    if batches:
        sweep_mode = "bf16" if on_gpu else "fp32"
        pair = [n for n in names if n.startswith("ldcsf_")][:1]
        pair += [p for p in map(pair_of, pair) if p in names]
        sweep = batch_sweep(pair or names[:2], sizes[0], batches, device, sweep_mode, args)

    profile_text = None
    slow = [r for r in rows if r.get("infer_vs_swin") is not None and r["infer_vs_swin"] < TARGET_RATIO]
    if slow:
        worst = min(slow, key=lambda r: r["infer_vs_swin"])
        profile_text = profile_pair(worst["model"], worst["size"], batch, device)

    pipe_model = next((n for n in names if n.startswith("ldcsf_")), names[0])
    pipeline = (measure_pipeline(args, device, pipe_model, batch) if args.slide_sizes
                else {"skipped": "no --slide-sizes given"})

    machine = machine_info(device)
    result = {
        "command": command_line(), "date": now(), "machine": machine.to_dict(), "machine_obj": machine,
        "repeats": args.repeats, "warmup": args.warmup, "peak_note": peak_note,
        "peak_fp32_flop_s": peak32, "matmul_size": matmul_size, "matmul_gflop_s": matmul / 1e9,
        "matmul_bf16_gflop_s": matmul16 / 1e9 if matmul16 else None,
        "rows": rows, "sweep": sweep, "sweep_mode": sweep_mode, "pipeline": pipeline, "notes": notes,
        "profile": profile_text, "target_ratio": TARGET_RATIO,
    }
    markdown = render(result)
    result.pop("machine_obj")
    md, js = write_results(args.out, markdown, result)
    print(markdown)
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
