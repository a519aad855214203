#!/usr/bin/env bash
# Every transfer method on the compact student, same budget, LFW View 1 (train on everyone
# outside pairsDevTest.txt, evaluate hr-lr at 8/12/16 px on its 1,000 pairs).
# Usage: bash benchmarks/view1_methods.sh [STEPS] [METHOD...]   (one CPU thread per run)
set -euo pipefail
steps=${1:-1000}
shift || true
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(l2 adda+l2 dann+l2 darkrank+l2 contrastive+l2 mmd+l2 l2+arcface guided)
for method in "${methods[@]}"; do
  out="runs/view1-compact-${method}-${steps}"
  start=$(date +%s)
  OMP_NUM_THREADS=1 lrface train --config configs/view1-compact-l2.yaml --method "$method" \
    --steps "$steps" --eval-every "$steps" --out "$out" --no-progress
  echo "$method wall_s=$(( $(date +%s) - start ))" | tee -a "runs/view1-methods-${steps}.txt"
done
