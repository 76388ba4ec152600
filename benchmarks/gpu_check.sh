#!/usr/bin/env bash
# One-shot GPU check for a session that has a CUDA GPU: the GPU tests, then the throughput benchmark in
# fp32 and bf16-mixed at batch 256 and 4096 (data held on the device, no host sync per step: see
# docs/profiling.md), and a short torch.profiler trace of GPU steps that counts host syncs.
# Everything goes to benchmarks/results/gpu_<date>.txt (and stdout).
#   bash benchmarks/gpu_check.sh            # PYTHON=/path/to/python to choose the interpreter; ROUNDS=5
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
ROUNDS="${ROUNDS:-5}"
mkdir -p benchmarks/results
OUT="benchmarks/results/gpu_$(date -u +%Y%m%dT%H%M%SZ).txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "# $(date -u)  $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'lightning', lightning.__version__)"
  echo "## GPU tests"
  "$PYTHON" -m pytest tests/test_gpu.py -q -rs 2>&1 | tail -n 15
  echo "## host syncs per training step (torch.profiler, bf16-mixed, batch 4096)"
  "$PYTHON" benchmarks/profile_steps.py --accelerator gpu --precision bf16-mixed --batch_size 4096 \
    --samples_per_class 500000 --warmup 20 --steps 50
  for precision in 32-true bf16-mixed; do
    for batch in 256 4096; do
      echo "## throughput --accelerator gpu --precision $precision --batch_size $batch --rounds $ROUNDS"
      "$PYTHON" benchmarks/throughput.py --accelerator gpu --precision "$precision" --batch_size "$batch" \
        --rounds "$ROUNDS" --model_samples $((batch == 256 ? 64000 : 0))
    done
  done
} 2>&1 | tee "$OUT"
echo "results written to $OUT"
