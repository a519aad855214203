#!/usr/bin/env bash
# Train one student per held-out View 2 fold, one after another, one CPU thread each.
# Usage: bash benchmarks/view2_folds.sh CONFIG OUT_DIR FOLD [FOLD...]
# Re-running continues each fold from its last checkpoint (a finished fold returns at once).
# Then: lrface benchmark --encoder OUT_DIR   (each fold's pairs scored by its own student)
set -euo pipefail
config=$1 out=$2
shift 2
for fold in "$@"; do
  start=$(date +%s)
  OMP_NUM_THREADS=${THREADS:-1} lrface train --config "$config" --fold "$fold" \
    --out "$out/fold-$fold" --resume --no-progress
  echo "fold $fold wall_s=$(( $(date +%s) - start ))" | tee -a "$out/wall_times.txt"
done
