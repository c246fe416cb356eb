#!/usr/bin/env bash
# The whole pipeline twice, on CPU, offline, from a randomly initialised tiny Qwen2.5-VL
# (BBUVL_DEMO_FAMILY=qwen3_vl|qwen3_5 for the other families; BBUVL_DEMO_STAGES="shapes" for stage A alone):
#   stage A, shapes: one coloured shape per photo. The sanity task: the model must find *where*, not only *what*.
#   stage B, BBU close-ups: the real labels, at the scale a from-scratch tiny model can reach in minutes.
# Each stage: synthesise -> check -> tiny model -> train -> predict (head; name = head boxes named by the VLM;
# generate) -> eval -> report.
set -euo pipefail
OUT=${BBUVL_DEMO_OUT:-demo_out}
FAMILY=${BBUVL_DEMO_FAMILY:-qwen2_5_vl}
STAGES=${BBUVL_DEMO_STAGES:-shapes bbu}
BBUVL=.venv/bin/bbuvl
PY=.venv/bin/python
# Training runs as one-thread processes side by side (DDP over gloo) where the machine has two cores or more: the
# tiny model's steps are many small tensor operations, which a second thread speeds up little. On 2 cores two
# processes trained stage B 1.3x faster than one process with two threads, stage A 1.05x (docs/design.md,
# bench/train_processes.py). BBUVL_DEMO_PROCS=1 trains in one process. The cores are counted without OMP_NUM_THREADS
# and OMP_THREAD_LIMIT, which `nproc` would report instead: under OMP_NUM_THREADS=1 the demo trained in one process and
# took 21 minutes on 2 cores.
PROCS=${BBUVL_DEMO_PROCS:-$(( $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) >= 2 ? 2 : 1 ))}
start=$(date +%s)
# Emptied for this run, but only when an earlier demo wrote it (scripts/demo_out.sh): never a folder typed by mistake.
bash scripts/demo_out.sh fresh "$OUT"

say() {  # say TEXT: a phase's heading, with the time since the demo started (each phase's cost is the difference)
  local t=$(( $(date +%s) - start ))
  printf '== %d:%02d %s\n' $(( t / 60 )) $(( t % 60 )) "$*"
}

train() {  # train CONFIG OVERRIDES...: the config's batch is the step's, shared by the processes
  local config=$1 batch=0
  shift
  if [ "$PROCS" -gt 1 ]; then
    batch=$($PY -c "import sys; from bbuvl.config import load_config; print(load_config(sys.argv[1]).training.per_device_batch_size)" "$config")
  fi
  if [ "$PROCS" -gt 1 ] && [ $(( batch % PROCS )) -eq 0 ]; then
    OMP_NUM_THREADS=1 ACCELERATE_USE_CPU=true $PY -m torch.distributed.run --standalone --nproc-per-node "$PROCS" \
      -m bbuvl.cli train "$config" "training.per_device_batch_size=$(( batch / PROCS ))" "$@"
  else  # one process, or a batch the processes cannot share evenly: the config's batch as it is
    $BBUVL train "$config" "$@"
  fi
}

stage() {  # stage NAME CONFIG SYNTH_ARGS... -- TRAIN_OVERRIDES...
  # VAL_SYNTH="ARGS...": the validation photos are rendered apart, into $dir/val (another framing or fault rate
  # than training's); CHOOSE_SYNTH="ARGS...": photos on which the verdict's thresholds are chosen after training;
  # CHOOSE_WIDE_SYNTH="ARGS...": whole cabinets on which `bbuvl choose-tiles` chooses the scale `tiles: auto` cuts at.
  local name=$1 config=$2 dir="$OUT/$1"
  shift 2
  local synth=() overrides=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do synth+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  overrides=("$@")
  local model="$dir/tiny-model" building=""
  if [ -n "${START_FROM:-}" ] && [ -d "$START_FROM" ]; then
    model=$START_FROM
  else
    # Alongside the photos (it reads none): building the model and training its tokenizer takes one core 6 s.
    say "[$name] build a tiny offline $FAMILY -> $model (alongside)"
    mkdir -p "$dir"
    $BBUVL model tiny "$model" --family "$FAMILY" > "$dir/model_tiny.log" 2>&1 &
    building=$!
  fi
  say "[$name] synthesise -> $dir/data"
  $BBUVL data synth "$dir/data" "${synth[@]}"
  local val="$dir/data/val.jsonl"
  if [ -n "${VAL_SYNTH:-}" ]; then
    say "[$name] synthesise the validation photos -> $dir/val"
    # shellcheck disable=SC2086
    $BBUVL data synth "$dir/val" --n-train 0 --teachers 0 $VAL_SYNTH
    val="$dir/val/val.jsonl"
  fi
  echo "$val" > "$dir/val_path"
  say "[$name] check the dataset"
  $BBUVL data check "$dir/data"
  if [ -n "$building" ]; then
    wait "$building" || { cat "$dir/model_tiny.log"; return 1; }
    cat "$dir/model_tiny.log"
  else
    say "[$name] start from $model"
  fi
  say "[$name] train ($config, $PROCS process(es)) -> $dir/run"
  train "$config" "training.output_dir=$dir/run" "model.path=$model" \
    "data.train=$dir/data/train.jsonl" "data.val=$val" "${overrides[@]}"
  local pids=() status=0 pid choosing=""
  if [ -n "${CHOOSE_SYNTH:-}" ]; then
    say "[$name] choose the verdict's thresholds on photos of their own -> $dir/run/final/verdict_thresholds.json"
    # Nothing else runs while they are rendered, so CHOOSE_SYNTH renders on both cores (--workers 2: the same files;
    # 192 close-ups in 7.5 s against 12.6 s on one core, docs/design.md, "Two processes on two cores").
    # shellcheck disable=SC2086
    $BBUVL data synth "$dir/choose" --n-train 0 --teachers 0 $CHOOSE_SYNTH
    # Fail at precision 0.8 among the failed photos: with faults weighed three times, 0.7 let in clean photos with one
    # sure-looking false fault; over 300 draws of 96 choosing photos for each of three training seeds, 0.8 judged the
    # next photos better on average on each (docs/faults_learning.md, "The fail threshold"). 192 photos, not 96: over
    # eleven checkpoints the verdict held on 130 unseen-seed pairs of 132 against 126 (docs/faults_learning.md, "192
    # choosing close-ups").
    (set -e; export OMP_NUM_THREADS=1
     $BBUVL predict -c "$dir/run/final" -i "$dir/choose/val.jsonl" -o "$dir/choose/pred_head.jsonl" --mode head
     $BBUVL eval --pred "$dir/choose/pred_head.jsonl" --gt "$dir/choose/val.jsonl" --out "$dir/choose/metrics.json" \
       --choose-thresholds --target-recall 0.8 --target-precision 0.8 > /dev/null) > "$dir/choose.log" 2>&1 &
    pids+=($!)
  fi
  if [ -n "${CHOOSE_WIDE_SYNTH:-}" ]; then
    # Alongside (one core each): the scale `tiles: auto` cuts whole cabinets at, chosen on whole cabinets of their own.
    say "[$name] choose the tile scale on whole cabinets of their own -> $dir/run/final/tile_scale.json"
    # shellcheck disable=SC2086
    $BBUVL data synth "$dir/choose_wide" --n-train 0 --teachers 0 $CHOOSE_WIDE_SYNTH
    # Two candidates, 2x2 and 3x3, not the default four: 5x5 (scale 1.25) scored lowest on every checkpoint measured,
    # and the rule chose 3x3 over 4x4 (scale 1) on all nine choosing sets (docs/tiles.md, "Choosing the tile scale").
    # 4x4's passes buy twice the cabinets in the same 41 s. On the chosen scale's predictions, the verdict's thresholds
    # for photos cut into tiles, by the close-ups' rule: with the close-ups' own, 90 unseen cabinets got a verdict
    # right on 0.633 of the photos, below "always pass" (0.744); with these, 0.844 (docs/faults.md, "Thresholds per
    # framing"); on 8 cabinets a checkpoint with only two faulty ones among them found no fail threshold at all.
    (OMP_NUM_THREADS=1 $BBUVL choose-tiles -c "$dir/run/final" --gt "$dir/choose_wide/val.jsonl" \
       -o "$dir/choose_wide/candidates" --factors 0.5,0.75 \
       --choose-thresholds --target-recall 0.8 --target-precision 0.8) > "$dir/choose_wide.log" 2>&1 &
    choosing=$!
  fi
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  if [ "$status" -ne 0 ]; then
    cat "$dir/choose.log" 2>/dev/null
    [ -z "$choosing" ] || wait "$choosing" || true
    return "$status"
  fi
  # The close-ups are scored while the tile scale is still being chosen: only the whole cabinets' lane needs it.
  evaluate "$name" "$choosing"
  say "[$name] scored"
}

score() {  # score STAGE MODE [NAME VAL]: predict validation photos in one mode, evaluate per label and by category
  local dir="$OUT/$1" mode=$2 name=${3:-$2} val=${4:-$(cat "$OUT/$1/val_path")}
  say "[$1] predict the validation photos ($name)"
  $BBUVL predict -c "$dir/run/final" -i "$val" -o "$dir/pred_$name.jsonl" --mode "$mode"
  say "[$1] evaluate ($name)"
  $BBUVL eval --pred "$dir/pred_$name.jsonl" --gt "$val" --out "$dir/metrics_$name.json" --report "$dir/report_$name"
  say "[$1] evaluate ($name) by category (hierarchy level 1)"
  $BBUVL eval --pred "$dir/pred_$name.jsonl" --gt "$val" --out "$dir/metrics_${name}_level1.json" --level 1 > /dev/null
}

lanes() {  # lanes STAGE: what evaluate runs, one line each: MODE [NAME VAL]
  echo head; echo name; echo generate
  # Whole-cabinet photos at 4x the close-ups' side, in head mode with the checkpoint's default plan (tiles: auto)
  [ -n "${WIDE_SYNTH:-}" ] && echo "head wide $OUT/$1/wide/val.jsonl"
  return 0
}

evaluate() {  # evaluate STAGE [CHOOSING_PID]: the three modes (and the wide photos) side by side, one one-thread process each
  # Each command spends seconds importing and scoring on one core: three lanes keep both cores busy (stage A's
  # evaluation 55 s one after another, 45 s in two lanes). Each lane writes its own log, shown when all are done,
  # so that they do not interleave. CHOOSING_PID: `bbuvl choose-tiles` still at work on the checkpoint's tile scale;
  # the whole cabinets' lane, which predicts with that scale, starts when it is done, and until then the other lanes
  # run at a lower priority, so that the choosing keeps a core and the wide lane, the longest, starts early.
  local dir="$OUT/$1" choosing=${2:-} pids=() status=0 lane k=0 wide=() niceness=0
  if [ -n "${WIDE_SYNTH:-}" ]; then
    say "[$1] synthesise whole-cabinet photos -> $dir/wide"
    # shellcheck disable=SC2086
    $BBUVL data synth "$dir/wide" --n-train 0 --teachers 0 $WIDE_SYNTH
  fi
  mapfile -t all < <(lanes "$1")
  [ -n "$choosing" ] && niceness=5
  if [ "$PROCS" -gt 1 ]; then
    for lane in "${all[@]}"; do
      if [[ "$lane" == "head wide "* ]]; then wide+=("$k"); k=$((k + 1)); continue; fi
      # shellcheck disable=SC2086
      (set -e; [ "$niceness" -eq 0 ] || renice -n "$niceness" -p "$BASHPID" > /dev/null 2>&1 || true
       OMP_NUM_THREADS=1 score "$1" $lane) > "$dir/evaluate_$k.log" 2>&1 &
      pids+=($!)
      k=$((k + 1))
    done
  fi
  if [ -n "$choosing" ]; then
    wait "$choosing" || status=$?
    grep -E "^(scale|chose|compared|refine|verdict thresholds)" "$dir/choose_wide.log" || true
    if [ "$status" -ne 0 ]; then
      cat "$dir/choose_wide.log"
      for pid in "${pids[@]}"; do wait "$pid" || true; done
      return "$status"
    fi
  fi
  if [ "$PROCS" -gt 1 ]; then
    for k in "${wide[@]}"; do
      # shellcheck disable=SC2086
      (set -e; OMP_NUM_THREADS=1 score "$1" ${all[$k]}) > "$dir/evaluate_$k.log" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    for k in "${!all[@]}"; do cat "$dir/evaluate_$k.log"; done
    return $status
  fi
  # shellcheck disable=SC2086
  for lane in "${all[@]}"; do score "$1" $lane; done
}

# Stage A: 1,000 photos of one shape at 224x224; 1,250 steps of batch 8 with the grounding terms, so that generate
# mode writes the place too (docs/grpo.md, "Generate mode in the demo": 0.22 AP50 at 1,000 steps, 0.57-0.79 at 1,250,
# 0.74-0.86 at 1,500). At 800 steps the head's boxes were not yet tight (AP50 0.655 per label) and stage B, built on
# it, fell with it.
[[ " $STAGES " == *" shapes "* ]] && stage shapes configs/demo_shapes.yaml --scene shapes --n-train 1000 --n-val 50 --seed 0 --size 224x224 \
  --min-objects 1 --max-objects 1
# Stage B: close-ups of BBUs, panels and ground bars at 448x336, where parts are >= ~40 px: 1,200 photos
# (synthetic photos cost nothing but rendering, two processes), 900 steps of batch 4, the head reading the
# tower's pre-merge patches and the pixels inside each box, then a refit of its captions and pixel level on the
# finished model's queries (configs/demo.yaml). When stage A ran, stage B starts from its checkpoint: the VLM has
# learned to see and to place, and its head's box layers and vision positions carry over (model.reuse_modules); the
# queries and the label layers are new. Training keeps the fault-rich default (a third of the parts wrong: more
# faults to learn from); it is scored as an inspection: 32 close-ups with seven photos in ten passing, the verdict's
# thresholds chosen on 192 others, and 8 whole-cabinet photos at 1792x1344 predicted with the checkpoint's default
# plan (tiles: auto, the whole pass answering for BBUs; seed 3, whose 8 photos hold 13 faulty parts: seed 1's held
# none, so the wide faults could not be scored), auto's scale and their verdict's thresholds chosen on 16 whole
# cabinets of seed 4 (`bbuvl choose-tiles`: a 1792x1344 cabinet shows its screws larger than the close-ups do,
# docs/tiles.md, "Choosing the tile scale"). One training photo in ten is a whole cabinet at the frame
# (--wide-share 0.1), so that the whole pass has seen BBUs at that scale, and one in ten a cell of the 3x3 grid cut from
# a whole cabinet at 1792x1344 (--tile-share 0.1), so that the tiles have seen what only whole cabinets hold (the
# power supplies' outlets); the close-ups are the same 960 photos as with a fifth whole cabinets. Half (--framing mixed
# alone) or a third whole cabinets left the close-ups' boxes loose at 450 steps (docs/faults_learning.md, "Tiles
# among the whole cabinets"). The head seeds its queries with distinct
# proposals and reads the pixels inside the boxes its decoder drew (configs/demo.yaml; docs/faults_learning.md,
# "Distinct queries", "The pixels of the refined box"). docs/tiles.md ("Stage B", "Big parts") has every lever measured.
[[ " $STAGES " == *" bbu "* ]] && START_FROM="$OUT/shapes/run/final" \
  VAL_SYNTH="--n-val 32 --framing closeup --size 448x336 --seed 1 --fault-rate 0.3" \
  CHOOSE_SYNTH="--n-val 192 --framing closeup --size 448x336 --seed 2 --fault-rate 0.3 --workers 2" \
  CHOOSE_WIDE_SYNTH="--n-val 16 --framing wide --size 1792x1344 --seed 4 --fault-rate 0.3 --workers 2" \
  WIDE_SYNTH="--n-val 8 --framing wide --size 1792x1344 --seed 3 --fault-rate 0.3 --workers 2" \
  stage bbu configs/demo.yaml --framing mixed --wide-share 0.1 --tile-share 0.1 --n-train 1200 --n-val 16 --seed 0 --size 448x336 --workers 2

$PY - "$OUT" "$(( $(date +%s) - start ))" "$FAMILY" <<'SUMMARY'
import json, sys
from pathlib import Path
out, seconds, family = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def num(v):
    return "  -  " if v is None else f"{v:.3f}"
def faults(m, modes, at):  # the inspector's numbers: faults found, and the photo verdict, beside the constant answers
    f = m[modes[0]].get("faults") or {}
    p = f.get("photos") or {}
    o = f.get("objects") or {}
    if not p:
        return
    # Photos cut into tiles are judged by thresholds of their own when the checkpoint has them (docs/faults.md)
    t = f["thresholds_tiled"] if f.get("photos_tiled") == p["photos"] and f.get("thresholds_tiled") else f["thresholds"]
    print(f"    faults: {p['faulty']} of {p['photos']} photos hold one, {o['gt']} faulty parts; the verdict's thresholds "
          f"review {t['review']:.2f}, fail {t['fail']:.2f} (chosen on other photos)")
    for mode in modes:
        f = m[mode].get("faults") or {}
        o, p = f["objects"], f["photos"]
        a = o["at_fail"]
        print(f"    {mode:<9} faults found {num(a['recall'])} at precision {num(a['precision'])} (always pass finds "
              f"none; always fail all at {num(o['always_fail']['precision'])}), best at precision >= {at}: "
              f"{num(max((r for q, r in zip(o['curve']['precision'], o['curve']['recall']) if q >= at), default=0.0))}, "
              f"AP {num(a['AP'])}")
        print(f"    {'':<9} photo verdict accuracy {num(p['model']['failed']['accuracy'])} (always pass "
              f"{num(p['always_pass']['failed']['accuracy'])}, always fail {num(p['always_fail']['failed']['accuracy'])}), "
              f"ROC AUC {num(p['model']['roc_auc'])}")
print(f"\nDemo ({family}) finished in {seconds // 60} min {seconds % 60} s. AP50 on the validation photos "
      "(per label / class-agnostic):")
for stage, what in (("shapes", "A, shapes (one shape per photo)"), ("bbu", "B, BBU close-ups")):
    if not (out / stage / "metrics_head.json").exists():
        continue
    m = {mode: json.loads((out / stage / f"metrics_{mode}.json").read_text()) for mode in ("head", "name", "generate")}
    prior = m["head"]["prior"] or {}
    print(f"  stage {what}:")
    for mode in ("head", "name", "generate"):
        print(f"    {mode:<9} {num(m[mode]['AP50'])} / {num(m[mode]['AP50_agnostic'])}   "
              f"report: {out / stage / f'report_{mode}' / 'index.html'}")
    print(f"    {'constant':<9} {num(prior.get('AP50'))} / {num(prior.get('AP50_agnostic'))}   "
          "(the best single box for every photo: what ignoring the image scores)")
    if stage == "bbu":  # the parts inspectors check are the smallest: show them apart from the rest
        print("    by category (level 1), AP50 for all categories / screws and connection points (螺丝连接点):")
        for mode in ("head", "name", "generate"):
            lv = json.loads((out / stage / f"metrics_{mode}_level1.json").read_text())
            screws = lv["per_category"].get("螺丝连接点", {}).get("AP50")
            print(f"    {mode:<9} {num(lv['AP50'])} / {num(screws)}")
        sizes = json.loads((out / stage / "metrics_head.coco.json").read_text()).get("size_tokens") or {}
        for name, b in (sizes.get("buckets") or {}).items():
            if b["objects"]:
                print(f"    head, objects of {name} at the frame: {b['objects']}, found (recall at IoU 0.5) {num(b['recall'])}")
        faults(m, ("head", "name"), 0.5)
        wide = out / stage / "metrics_wide.json"
        if wide.exists():
            w = json.loads(wide.read_text())
            lv = json.loads((out / stage / "metrics_wide_level1.json").read_text())
            cat = lv["per_category"]
            prior = lv["prior"] or {}
            size = json.loads((out / stage / "wide" / "summary.json").read_text())["size"]
            chosen = out / stage / "run" / "final" / "tile_scale.json"
            plan = "the checkpoint's default plan"
            if chosen.exists():
                c = json.loads(chosen.read_text())
                grid = next((", ".join(x["grids"]) for x in c["candidates"] if x["scale"] == c["scale"]), "?")
                plan = (f"tiles: auto at the scale chosen on other whole cabinets, {c['scale']:g} ({grid}; trained at "
                        f"{c['train_scale']:g})")
            print(f"  whole-cabinet photos ({w['faults']['photos']['photos']} at {size[0]}x{size[1]}, head mode, {plan}), "
                  f"AP50 by category (level 1): all {num(lv['AP50'])} (constant {num(prior.get('AP50'))}), "
                  f"BBUs {num(cat.get('bbu基带处理单元', {}).get('AP50'))}, screws and connection points "
                  f"{num(cat.get('螺丝连接点', {}).get('AP50'))}; per label {num(w['AP50'])}")
            faults({"head": w}, ("head",), 0.4)
print("\nWhat a randomly initialised 1M-parameter model learns in a few CPU-minutes: on shapes the head finds and\n"
      "names every shape, and name mode (the head's boxes, named by the VLM) scores as high; generate mode, taught\n"
      "where to look while it writes a box (the grounding terms), writes the place too. On BBU close-ups, built on stage A's weights and head,\n"
      "the head finds the screws and connection points well above the constant box, and after the refit of its\n"
      "captions on the pixels inside each box it tells a correct one from a wrong one more often than always\n"
      "saying 'correct' would, though not yet as well as those pixels allow. Compare each number with its\n"
      "constant box. As an inspection (seven photos in ten without a fault), read the faults found and the photo\n"
      "verdict against 'always pass' and 'always fail'. On whole cabinets (a tenth of stage B's training photos,\n"
      "and a tenth tiles cut from them), the whole photo's pass answers for the BBUs and the tiles for the screws.\n"
      "A pretrained Qwen2.5-VL starts far ahead\n"
      "(docs/localisation.md; docs/tiles.md has stage B's\n"
      "levers, docs/faults_learning.md the fault levers).")
print(f"\nEverything is under {out}/: <stage>/data, <stage>/run/final (checkpoint), <stage>/metrics_*.json, "
      "<stage>/report_*/index.html, <stage>/run/tb (TensorBoard)")
SUMMARY
