#!/usr/bin/env bash
# GPU check for a short GPU lease: parity on CUDA + inference benchmark (fp32 and fp16), one JSON
# line on stdout. Three steps; only the last one needs the GPU.
#
#   bash bench/gpu.sh prepare   # here, with the project's .venv (torch, CPU): exports the bundles
#                               # runs/gpu/{ml100k,100k}-{fp32,fp16} (about 41 MB), fp32 --verify'd
#   bash bench/gpu.sh wheels    # here: downloads numpy + onnxruntime-gpu[cuda,cudnn] wheels for
#                               # the GPU machine's Python (PY_VERSION, default 3.12) into .whl/
#                               # (the CUDA/cuDNN wheels are large; skip if that machine has them)
#   bash bench/gpu.sh run       # on the GPU machine (carry runs/gpu, and .whl if needed): uses an
#                               # interpreter that already has onnxruntime with CUDA, else installs
#                               # from WHEELS (default .whl, then shared/.whl) into a venv, offline;
#                               # then runs bench/gpu_check.py (timeout GPU_TIMEOUT, default 480 s)
#
# With the device tool: run(command="bash bench/gpu.sh run", carry=["runs/gpu", ".whl"],
# timeout_s=600). Exit code 0 only if CUDA was really used and parity held.
set -euo pipefail
cd "$(dirname "$0")/.."

step="${1:-run}"
case "$step" in
prepare)
  .venv/bin/python - <<'EOF'
import logging
import tempfile
from pathlib import Path

import torch

from nextbehavior.export.writer import export_bundle
from nextbehavior.model.checkpoint import save_checkpoint
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.transformer import BehaviorTransformer

logging.basicConfig(level=logging.INFO, format="%(message)s")
out = Path("runs/gpu")


def random_checkpoint(path: Path, n_items: int) -> Path:
    torch.manual_seed(0)
    model = BehaviorTransformer(ModelConfig(n_items, 2)).eval()
    items = ["[PAD]", *(str(i) for i in range(1, n_items))]
    return save_checkpoint(path, model, items, ["[PAD]", "interaction"], {}, {"source": "random"})


with tempfile.TemporaryDirectory() as tmp:
    ml = Path("runs/ml100k")
    if not (ml / "model.safetensors").is_file():
        print("runs/ml100k not found: ML-100K-shaped model with random weights")
        ml = random_checkpoint(Path(tmp) / "ml100k", 1683)
    large = random_checkpoint(Path(tmp) / "large", 100_001)
    for name, ckpt in (("ml100k", ml), ("100k", large)):
        export_bundle(ckpt, out / f"{name}-fp32", top_k=20, verify=True)
        export_bundle(ckpt, out / f"{name}-fp16", top_k=20, fp16=True)
EOF
  du -sh runs/gpu/*
  ;;
wheels)
  py="${PY_VERSION:-3.12}"
  .venv/bin/python -m pip download --only-binary=:all: --python-version "$py" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    -d .whl numpy "onnxruntime-gpu[cuda,cudnn]"
  du -sh .whl
  ;;
run)
  py="${PYTHON:-python3}"
  has_cuda='import sys, onnxruntime as o; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())'
  if ! "$py" -c "import numpy; $has_cuda" 2>/dev/null; then
    wheels="${WHEELS:-.whl}"
    [ -d "$wheels" ] || wheels="shared/.whl"
    [ -d "$wheels" ] || { echo "no wheels: set WHEELS or carry .whl" >&2; exit 2; }
    "$py" -m venv /tmp/nbp-gpu >&2
    /tmp/nbp-gpu/bin/pip install -q --no-index --find-links "$wheels" numpy \
      "onnxruntime-gpu[cuda,cudnn]" >&2 \
      || /tmp/nbp-gpu/bin/pip install -q --no-index --find-links "$wheels" numpy onnxruntime-gpu >&2
    py=/tmp/nbp-gpu/bin/python
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
  timeout "${GPU_TIMEOUT:-480}" "$py" bench/gpu_check.py runs/gpu \
    --batches "${GPU_BATCHES:-1,8,64,256,1024,4096}" --seconds "${GPU_SECONDS:-1}"
  ;;
*)
  echo "usage: bash bench/gpu.sh prepare|wheels|run" >&2
  exit 2
  ;;
esac
