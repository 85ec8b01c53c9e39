#!/usr/bin/env bash
# The scale checks that need a GPU, as one script (about 10 minutes on one H100/H200). Steps, all by default:
#   tests  the GPU-marked tests (networks fitted and sampled across devices, runs that put network jobs on the GPU
#          and cpu_only jobs on the CPU, the MMD on the GPU against the CPU);
#   scale  bench_scld_scale.py --device cuda: SCLD's paper configuration on the full-size simulated PBMC matrix,
#          stage seconds and peak memory, then 10,000-cell DDIM and DDPM draws;
#   mmd    the MMD of 10,000 vs 10,000 cells with its kernel sums on the GPU, then on the CPU, to compare;
#   ray    the pbmc suite's SCLD, VAE and two controls on the embedded data through `--executor ray` on a local
#          Ray instance: the networks on the GPU, the controls beside them on the CPU.
# Run from anywhere: bash tests/benchmarks/gpu_check.sh [STEP ...]   (figures go to $OUT, default ./gpu-check-out)
# e.g. `gpu_check.sh scale` and `gpu_check.sh tests mmd ray` as two shorter runs.
# Needs: pip install -e ".[test,ray]" with a CUDA build of torch (2.4 to 2.13).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(tests scale mmd ray)
for name in "${steps[@]}"; do
    case "$name" in tests|scale|mmd|ray) ;; *) echo "unknown step '$name'; use tests, scale, mmd or ray"; exit 2 ;; esac
done
status=0
step() { echo "== $1 ($(date +%T))"; shift; "$@" 2>&1 | tee -a "$OUT/gpu_check.log"; local rc=${PIPESTATUS[0]}; echo "== rc $rc"; [ "$rc" -eq 0 ] || status=1; }

python -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available()); \
sys.exit(0 if torch.cuda.is_available() else 3)" || { echo "no CUDA device: nothing to check"; exit 3; }
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee "$OUT/nvidia-smi.csv"

for name in "${steps[@]}"; do
    case "$name" in
    tests)
        step "GPU-marked tests" timeout 300 python -m pytest -q -m gpu tests/ -p no:cacheprovider ;;
    scale)
        step "SCLD at PBMC 68k scale, 10,000-cell DDIM and DDPM draws" timeout 540 \
            python tests/benchmarks/bench_scld_scale.py --device cuda --sample 10000 --samplers ddim ddpm \
            --json "$OUT/scld_scale.json" ;;
    mmd)
        step "MMD kernel sums on the GPU" timeout 120 python tests/benchmarks/bench_speed.py --only mmd --device cuda
        step "MMD kernel sums on the CPU" timeout 120 python tests/benchmarks/bench_speed.py --only mmd --threads 16 ;;
    ray)
        step "pbmc suite's SCLD, VAE and controls through Ray with the GPU" timeout 300 \
            scldbench run pbmc --data pbmc68k-mini --generators positive,random,scld,vae --executor ray \
            --device cuda --out "$OUT/pbmc-ray"
        python - "$OUT/pbmc-ray" <<'PY' | tee -a "$OUT/gpu_check.log"
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1], "jobs").glob("*.json")):
    r = json.loads(p.read_text())
    print(r["label"], r["status"], r.get("device"), r.get("fit_seconds"), r.get("fit_peak_gpu_mb"),
          r.get("execution"), r.get("error"))
PY
        ;;
    esac
done
exit $status
