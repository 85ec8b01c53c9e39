#!/usr/bin/env bash
# Remake the checked-in leaderboards from real runs (see reports/README.md). With SHARED_DATA pointing at a
# folder holding pbmc3k_raw.h5ad and mouse_bladder_2100.h5ad, their leaderboards are made too.
set -euo pipefail
cd "$(dirname "$0")/.."

scldbench run pbmc --seeds 3 --out runs/pbmc || true  # a failed job is recorded, and the leaderboard shows it
scldbench leaderboard runs/pbmc --format md --output reports/pbmc-mini.md
scldbench leaderboard runs/pbmc --format html --output reports/pbmc-mini.html

scldbench run pbmc-clusters --out runs/pbmc-clusters || true
scldbench report runs/pbmc-clusters --format md --output reports/pbmc-clusters-mini.md
scldbench report runs/pbmc-clusters --format html --output reports/pbmc-clusters-mini.html

scldbench run pbmc-guidance --out runs/pbmc-guidance || true
scldbench report runs/pbmc-guidance --format md --output reports/pbmc-guidance-mini.md
scldbench report runs/pbmc-guidance --format html --output reports/pbmc-guidance-mini.html

scldbench run pbmc-fusion --out runs/pbmc-fusion || true
scldbench report runs/pbmc-fusion --format md --output reports/pbmc-fusion-mini.md
scldbench report runs/pbmc-fusion --format html --output reports/pbmc-fusion-mini.html

if [ -n "${SHARED_DATA:-}" ]; then
    # job records of the real-data reports live in reports/runs/<dataset>/jobs (checked in); a rerun reuses them
    # and computes only what is missing. Fast generators first, then the neural ones, seed by seed.
    groups=(positive,random,shuffle,nb,nb-libsize,splat,sugar,copula scld,cfgen vae,scvi scgan,cscgan activa)
    for seed in 0 1 2; do
        for generators in "${groups[@]}"; do
            scldbench run pbmc --data "$SHARED_DATA/pbmc3k_raw.h5ad" --clusters 8 --seed "$seed" \
                --out reports/runs/pbmc3k --generators "$generators" || true
            scldbench run pbmc --data "$SHARED_DATA/mouse_bladder_2100.h5ad" --labels label --seed "$seed" \
                --out reports/runs/bladder --generators "$generators" || true
        done
    done
    for dataset in pbmc3k bladder; do
        scldbench leaderboard "reports/runs/$dataset" --format md --output "reports/$dataset.md"
        scldbench leaderboard "reports/runs/$dataset" --format html --output "reports/$dataset.html"
    done
fi
