#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic dataset, on CPU, offline:
# synthesise -> check -> stats -> tiny model -> train -> predict (head, generate) -> eval -> report.
set -euo pipefail
OUT=${BBUVL_DEMO_OUT:-demo_out}
BBUVL=.venv/bin/bbuvl
start=$(date +%s)
rm -rf "$OUT"
echo "== 1/7 synthesise equipment-room photos -> $OUT/data"
$BBUVL data synth "$OUT/data" --n-train 240 --n-val 16 --seed 0 --size 448x336
echo "== 2/7 check the dataset"
$BBUVL data check "$OUT/data"
echo "== 3/7 statistics in the model frame of configs/demo.yaml"
$BBUVL data stats "$OUT/data/train.jsonl" --config configs/demo.yaml
echo "== 4/7 build a tiny offline Qwen2.5-VL -> $OUT/tiny-model"
$BBUVL model tiny "$OUT/tiny-model"
echo "== 5/7 train (configs/demo.yaml) -> $OUT/run"
$BBUVL train configs/demo.yaml "training.output_dir=$OUT/run" "model.path=$OUT/tiny-model" \
  "data.train=$OUT/data/train.jsonl" "data.val=$OUT/data/val.jsonl" "data.teachers=$OUT/data/teachers.jsonl"
echo "== 6/7 predict the validation photos with the detection head and by generation"
$BBUVL predict -c "$OUT/run/final" -i "$OUT/data/val.jsonl" -o "$OUT/pred_head.jsonl" --mode head
$BBUVL predict -c "$OUT/run/final" -i "$OUT/data/val.jsonl" -o "$OUT/pred_generate.jsonl" --mode generate
echo "== 7/7 evaluate (COCO AP, label accuracy, errors) and write the reports"
$BBUVL eval --pred "$OUT/pred_head.jsonl" --gt "$OUT/data/val.jsonl" --out "$OUT/metrics_head.json" --report "$OUT/report_head"
$BBUVL eval --pred "$OUT/pred_generate.jsonl" --gt "$OUT/data/val.jsonl" --out "$OUT/metrics_generate.json" --report "$OUT/report_generate"
cat <<SUMMARY

Demo finished in $(( $(date +%s) - start )) s. Everything is under $OUT/:
  data/                      synthetic dataset (train/val/teachers JSONL, labels.json, summary.json, images/)
  tiny-model/                the offline Qwen2.5-VL the run started from
  run/final/                 trained checkpoint (safetensors, processor, bbuvl.yaml, coordinate contract, prompt)
  run/tb/                    TensorBoard logs (tensorboard --logdir $OUT/run/tb)
  pred_head.jsonl            predictions of the detection head
  pred_generate.jsonl        predictions parsed from generated JSON
  metrics_*.json             COCO AP, label accuracy, error counts
  report_head/index.html     HTML report (open in a browser)
  report_generate/index.html
SUMMARY
