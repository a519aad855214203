#!/usr/bin/env bash
# Every transfer method on the compact student, same budget, LFW View 1 (train on everyone
# outside pairsDevTest.txt, evaluate hr-lr at 8/12/16 px on its 1,000 pairs).
# Usage: bash benchmarks/view1_methods.sh CONFIG [METHOD...]   (one CPU thread per run)
set -euo pipefail
config=${1:-configs/experiments/view1-compact-methods.yaml}
shift || true
name=$(basename "$config" .yaml)
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(l2 adda+l2 dann+l2 darkrank+l2 contrastive+l2 mmd+l2 l2+arcface guided)
for method in "${methods[@]}"; do
  out="runs/${name}/${method}"
  start=$(date +%s)
  OMP_NUM_THREADS=1 lrface train --config "$config" --method "$method" --out "$out" --no-progress
  echo "$method wall_s=$(( $(date +%s) - start ))" | tee -a "runs/${name}/wall_times.txt"
done
