#!/bin/bash
# One lent-GPU session (docs/gpu.md, "Measured on an H200"): the GPU test, then bench/gpu.py rows, the shipped
# settings of the three GPU configs, each command capped so that a slow one leaves time to the next; every row's JSON is written
# as soon as it ends. In two parts of about 8 and 5 minutes, one device command each. From the repository root:
#   bash bench/gpu_session.sh OUT_DIR gpu first    # on the GPU machine, wheels carried in .gpu-wheels/ (docs/gpu.md)
#   bash bench/gpu_session.sh OUT_DIR gpu second
#   bash bench/gpu_session.sh OUT_DIR cpu all      # here: the same commands on two-layer models (a dry run)
set -u
out=$1; mode=${2:-gpu}; part=${3:-all}
if [ "$mode" = gpu ]; then  # at once: without a GPU every row went on to stop in turn, each with gpu.py's message
  gpus=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null) || {
    echo "gpu_session.sh: no GPU found (nvidia-smi is missing or failed); without one: bash bench/gpu_session.sh $out cpu all" >&2
    exit 1
  }
  echo "$gpus"
fi
mkdir -p "$out"
if [ "$mode" = gpu ]; then
  if ls .gpu-wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bbuvl-site \
      .gpu-wheels/*.whl || exit 3
    export PYTHONPATH=/tmp/bbuvl-site:src
  else
    export PYTHONPATH=src
  fi
  py=python3; extra=()
else
  export PYTHONPATH=src
  py=.venv/bin/python; extra=(--layers 2 --device cpu)
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
$py -c "import bbuvl.train.trainer, bbuvl.infer.predictor, transformers, torch
print('imports ok: transformers', transformers.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 4
t0=$(date +%s)
row() {  # NAME SECONDS ARGS...: one bench/gpu.py command, killed after SECONDS (its finished rows stay in NAME.json)
  local name=$1 limit=$2; shift 2
  echo "=== $name (at most ${limit} s) from +$(( $(date +%s) - t0 )) s"
  timeout "$limit" $py bench/gpu.py "${extra[@]}" --out "$out/$name.json" "$@" 2>&1 \
    | grep -vE "Writing model shards|Loading weights|^\s*$" | tee "$out/$name.log" | tail -40
}
if [ "$part" != second ]; then
  if [ "$mode" = gpu ]; then  # training, the refit, tiles, serve, GRPO and few-shot on cuda (docs/gpu.md, 2026-11-29)
    echo "=== the GPU test from +$(( $(date +%s) - t0 )) s"
    timeout 240 $py -m pytest tests/train/test_cuda_training.py -q -p no:cacheprovider -o addopts="" 2>&1 \
      | tee "$out/cuda-test.log" | grep -E "passed|failed|^FAILED|Error" | head -20
  fi
  # The batched windows were measured with checkpointing on (5.29 s a step against 11.79 s on 2026-11-27); off, 6.07 s
  # before them, is the row left.
  row base-train 100 --config configs/base.yaml --tuning full --head on --layout padded --checkpointing off \
    --predict none --steps 2 --warmup 1
  row q4b-train 130 --config configs/qwen3_vl_4b.yaml --tuning full,lora --head on --layout padded --checkpointing on \
    --predict none --steps 2 --warmup 1
fi
if [ "$part" != first ]; then
  row q08-train 70 --config configs/qwen3_5_0.8b.yaml --tuning full --head on --layout padded --checkpointing on \
    --predict none --steps 2 --warmup 1
  row base-predict 110 --config configs/base.yaml --tuning none --predict head,generate --predict-batch 1,8 --calls 1 \
    --warmup 1 --vllm off
  row base-lora 110 --config configs/base.yaml --tuning lora --head on --layout padded,packed --checkpointing on \
    --predict none --steps 2 --warmup 1
fi
echo "=== done at +$(( $(date +%s) - t0 )) s"
