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
    fast=positive,random,shuffle,scld,nb,nb-libsize,splat,sugar
    scldbench run pbmc --data "$SHARED_DATA/pbmc3k_raw.h5ad" --clusters 8 --seeds 3 --out runs/pbmc3k \
        --generators "$fast" || true
    scldbench run pbmc --data "$SHARED_DATA/pbmc3k_raw.h5ad" --clusters 8 --seeds 3 --out runs/pbmc3k \
        --generators vae,scgan,cscgan,activa || true
    scldbench leaderboard runs/pbmc3k --format md --output reports/pbmc3k.md
    scldbench leaderboard runs/pbmc3k --format html --output reports/pbmc3k.html
    scldbench run pbmc --data "$SHARED_DATA/mouse_bladder_2100.h5ad" --labels label --seeds 3 --out runs/bladder \
        --generators "$fast" || true
    scldbench run pbmc --data "$SHARED_DATA/mouse_bladder_2100.h5ad" --labels label --seeds 3 --out runs/bladder \
        --generators vae,scgan,cscgan,activa || true
    scldbench leaderboard runs/bladder --format md --output reports/bladder.md
    scldbench leaderboard runs/bladder --format html --output reports/bladder.html
fi
