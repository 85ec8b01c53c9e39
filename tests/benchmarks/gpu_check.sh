#!/usr/bin/env bash
# The scale checks that need a GPU, as one script (about 10 minutes on one H100/H200):
#   1. the GPU-marked tests (Ray gives a CUDA job a GPU);
#   2. bench_scld_scale.py --device cuda: SCLD's paper configuration on the full-size simulated PBMC matrix,
#      stage seconds and peak memory, then 10,000-cell DDIM and DDPM draws;
#   3. the MMD of 10,000 vs 10,000 cells with its kernel sums on the GPU, then on the CPU, to compare;
#   4. the smoke suite through `--executor ray` on a local Ray instance, with the GPU.
# Run from anywhere: bash tests/benchmarks/gpu_check.sh   (figures go to $OUT, default ./gpu-check-out)
# Needs: pip install -e ".[test,ray]" with a CUDA build of torch 2.13.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
status=0
step() { echo "== $1"; shift; "$@" 2>&1 | tee -a "$OUT/gpu_check.log"; local rc=${PIPESTATUS[0]}; echo "== rc $rc"; [ "$rc" -eq 0 ] || status=1; }

python -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available()); \
sys.exit(0 if torch.cuda.is_available() else 3)" || { echo "no CUDA device: nothing to check"; exit 3; }
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee "$OUT/nvidia-smi.csv"

step "GPU-marked tests" timeout 300 python -m pytest -q -m gpu tests/ -p no:cacheprovider
step "SCLD at PBMC 68k scale, 10,000-cell DDIM and DDPM draws" timeout 420 \
    python tests/benchmarks/bench_scld_scale.py --device cuda --sample 10000 --samplers ddim ddpm \
    --json "$OUT/scld_scale.json"
step "MMD kernel sums on the GPU" timeout 120 python tests/benchmarks/bench_speed.py --only mmd --device cuda
step "MMD kernel sums on the CPU" timeout 120 python tests/benchmarks/bench_speed.py --only mmd --threads 16
step "smoke suite through Ray with the GPU" timeout 240 \
    scldbench run smoke --executor ray --device cuda --out "$OUT/smoke-ray"
python - "$OUT/smoke-ray" <<'PY' | tee -a "$OUT/gpu_check.log"
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1], "jobs").glob("*.json")):
    r = json.loads(p.read_text())
    print(r["label"], r["status"], r.get("device"), r.get("execution"), r.get("error"))
PY
exit $status
