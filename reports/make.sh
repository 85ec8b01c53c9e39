#!/usr/bin/env bash
# Regenerate the checked-in leaderboards from real runs. Runs go to runs/reports/<name>; the Markdown and
# HTML leaderboards land in reports/. The development sets (pbmc3k, mouse bladder) are read from $SHARED_DATA
# when it is set; without it only the embedded pbmc68k-mini runs are made.
set -euo pipefail
cd "$(dirname "$0")/.."
store=runs/reports

run() {  # run NAME ARGS...: one suite run into its own folder, then its leaderboard
    local name=$1; shift
    scldbench run "$@" --out "$store/$name" || true  # a failed job is recorded; the leaderboard shows it
    scldbench leaderboard "$store/$name" --format md --output "reports/$name.md"
    scldbench leaderboard "$store/$name" --format html --output "reports/$name.html"
}

run pbmc-mini pbmc --seeds 3
run pbmc-clusters-mini pbmc-clusters
run pbmc-guidance-mini pbmc-guidance
run pbmc-fusion-mini pbmc-fusion

if [ -n "${SHARED_DATA:-}" ]; then
    run pbmc3k pbmc --data "$SHARED_DATA/pbmc3k_raw.h5ad" --clusters 8 --seeds 3
    run bladder pbmc --data "$SHARED_DATA/mouse_bladder_2100.h5ad" --labels label --seeds 3
fi
