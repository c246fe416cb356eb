#!/usr/bin/env bash
# `make demo-rl`: the GRPO stage after the demo's stage A (docs/grpo.md), on CPU, offline.
# Stage A (shapes) is trained first unless $OUT/shapes/run/final exists; then GRPO (configs/demo_grpo.yaml) and
# generate mode before and after, scored on the validation photos beside the constant box.
set -euo pipefail
OUT=${BBUVL_DEMO_OUT:-demo_out}
BBUVL=.venv/bin/bbuvl
bash scripts/demo_out.sh check "$OUT"  # it writes into the demo's folder, never into one the demo did not write
if [ ! -f "$OUT/shapes/run/final/bbuvl.yaml" ]; then
  BBUVL_DEMO_OUT=$OUT BBUVL_DEMO_STAGES=shapes bash scripts/demo.sh
fi
dir=$OUT/shapes
echo "== [grpo] GRPO from $dir/run/final (configs/demo_grpo.yaml) -> $dir/grpo"
$BBUVL train configs/demo_grpo.yaml "model.path=$dir/run/final" "data.train=$dir/data/train.jsonl" \
  "training.output_dir=$dir/grpo" --overwrite
for name in run grpo; do
  echo "== [grpo] predict and evaluate the validation photos (generate, $name)"
  $BBUVL predict -c "$dir/$name/final" -i "$dir/data/val.jsonl" -o "$dir/pred_generate_$name.jsonl" --mode generate
  $BBUVL eval --pred "$dir/pred_generate_$name.jsonl" --gt "$dir/data/val.jsonl" --out "$dir/metrics_generate_$name.json" > /dev/null
done
.venv/bin/python - "$dir" <<'SUMMARY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
m = {n: json.loads((d / f"metrics_generate_{n}.json").read_text()) for n in ("run", "grpo")}
prior = m["run"]["prior"] or {}
num = lambda v: "  -  " if v is None else f"{v:.3f}"
print("\nGenerate mode, AP50 on the validation photos (per label / class-agnostic):")
print(f"  stage A (SFT)     {num(m['run']['AP50'])} / {num(m['run']['AP50_agnostic'])}")
print(f"  stage A, GRPO     {num(m['grpo']['AP50'])} / {num(m['grpo']['AP50_agnostic'])}")
print(f"  constant box      {num(prior.get('AP50'))} / {num(prior.get('AP50_agnostic'))}")
print(f"TensorBoard (rewards, KL, answer length, clip fraction): {d / 'grpo' / 'tb'}")
SUMMARY
