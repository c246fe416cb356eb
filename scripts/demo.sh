#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic dataset, on CPU, offline.
set -euo pipefail
OUT=${BBUVL_DEMO_OUT:-demo_out}
BBUVL=.venv/bin/bbuvl
rm -rf "$OUT"
echo "== 1/3 synthesise equipment-room photos -> $OUT/data"
$BBUVL data synth "$OUT/data" --n-train 48 --n-val 12 --seed 0 --size 448x336
echo "== 2/3 check the dataset"
$BBUVL data check "$OUT/data/train.jsonl"
$BBUVL data check "$OUT/data/val.jsonl"
echo "== 3/3 statistics (model frame from configs/demo.yaml)"
$BBUVL data stats "$OUT/data/train.jsonl" --config configs/demo.yaml
echo
echo "Done. Dataset: $OUT/data (train.jsonl, val.jsonl, teachers.jsonl, labels.json, summary.json, images/)"
