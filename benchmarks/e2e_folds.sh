#!/usr/bin/env bash
# End-to-end 1:N search for every View 2 fold, each fold's people probed with its own student
# (the final checkpoint of RUN_DIR/fold-K). Then: python benchmarks/e2e_pool.py OUT_DIR/fold-*.json
# Usage: bash benchmarks/e2e_folds.sh RUN_DIR OUT_DIR [FOLD...]   (default: all ten)
# A fold whose OUT_DIR/fold-K.json exists is skipped, so an interrupted run resumes.
set -euo pipefail
run=$1 out=$2
shift 2
folds=("$@")
[ ${#folds[@]} -gt 0 ] || folds=(0 1 2 3 4 5 6 7 8 9)
mkdir -p "$out"
for fold in "${folds[@]}"; do
  [ -f "$out/fold-$fold.json" ] && continue
  checkpoint=$(ls -d "$run/fold-$fold"/checkpoints/step-* | sort | tail -n 1)
  python benchmarks/e2e_identification.py --student "$checkpoint" --probe-fold "$fold" \
    --no-progress --out "$out/fold-$fold.json"
done
