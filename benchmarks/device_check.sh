#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one go, on a CUDA machine (about 7 minutes on an H200):
#   1. speed.py: LDCSF-T and Swin-T at their own input size, fp32 and bf16, channels-last and
#      torch.compile, a batch-size sweep; then the slide pipeline with the shipped model (what
#      `ldcsf slide` runs by default) on 8k and 16k mosaics of real tiles (tiles/s end to end, the
#      predict phase against the model alone, GPU busy share);
#   2. peers.py on the GPU: ldcsf slide against the naive loop on the 8k mosaic.
# Results land in OUT_DIR (default benchmarks/results/) as speed_gpu.* and peers_gpu.*, with the
# device's name inside.
#
#   PYTHON=.venv/bin/python DATA=../shared/data benchmarks/device_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
DATA="${DATA:-../shared/data}"
OUT="${1:-benchmarks/results}"
WORKERS="${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'device_check.sh: torch sees no GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
uptime | tee -a "$OUT/device.txt"

timeout 400 "$PY" benchmarks/speed.py --device cuda --models ldcsf_swin_tiny swin_tiny --sizes native --no-train \
    --repeats 8 --slide-sizes 8192 16384 --slide-checkpoint shipped --slide-workers "$WORKERS" --batch-size 256 \
    --data "$DATA" --slide-dir /tmp/ldcsf-slides --no-progress --out "$OUT/speed_gpu" || echo "speed.py: exit $?"
timeout 110 "$PY" benchmarks/peers.py --accelerator gpu --model ldcsf_swin_tiny --sizes 8192 --no-svs \
    --batch-size 256 --threads 8 --repeats 1 --data "$DATA" --slide-dir /tmp/ldcsf-slides --out "$OUT/peers_gpu" \
    || echo "peers.py: exit $?"
echo "device_check.sh: done; results in $OUT"
