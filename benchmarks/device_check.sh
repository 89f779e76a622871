#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one go, on a CUDA machine (under 8 minutes on an H200):
#   1. speed.py: LDCSF-T / Swin-T / LDCSF mini / ResNet-18 at their own input size, fp32 and bf16,
#      channels-last and torch.compile, a batch-size sweep, and the slide pipeline on 8k and 16k
#      mosaics of real tiles (tiles/s end to end, GPU busy share of the predict phase);
#   2. peers.py on the GPU: ldcsf slide against the naive loop (and TIAToolbox where its venv exists).
# Results land in benchmarks/results/ (speed_gpu.*, peers_gpu.*) with the device's name inside.
#
#   PYTHON=.venv/bin/python benchmarks/device_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${1:-benchmarks/results}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'device_check.sh: torch sees no GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"

timeout 330 "$PY" benchmarks/speed.py --device cuda --models ldcsf_swin_tiny swin_tiny ldcsf_swin_mini resnet18 \
    --sizes native --no-train --repeats 8 --slide-sizes 8192 16384 --slide-workers 8 --no-progress \
    --out "$OUT/speed_gpu"
timeout 150 "$PY" benchmarks/peers.py --accelerator gpu --model ldcsf_swin_tiny --sizes 8192 --no-svs \
    --batch-size 256 --threads 8 --repeats 1 --out "$OUT/peers_gpu"
echo "device_check.sh: done; results in $OUT"
