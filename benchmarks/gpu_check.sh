#!/usr/bin/env bash
# One-shot GPU check for a session that has a CUDA GPU: the GPU tests, then the benchmark in fp32 and
# bf16-mixed at batch 256 and 4096. Everything goes to benchmarks/results/gpu_<date>.txt (and stdout).
#   bash benchmarks/gpu_check.sh            # PYTHON=/path/to/python to choose the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
mkdir -p benchmarks/results
OUT="benchmarks/results/gpu_$(date -u +%Y%m%dT%H%M%SZ).txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "# $(date -u)  $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'lightning', lightning.__version__)"
  echo "## GPU tests"
  "$PYTHON" -m pytest tests/test_gpu.py -q -rs 2>&1 | tail -n 15
  for precision in 32-true bf16-mixed; do
    for batch in 256 4096; do
      echo "## benchmark --accelerator gpu --precision $precision --batch_size $batch"
      "$PYTHON" scripts/benchmark.py --accelerator gpu --precision "$precision" --batch_size "$batch" --json
    done
  done
} 2>&1 | tee "$OUT"
echo "results written to $OUT"
