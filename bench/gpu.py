"""Training and prediction speed, memory and MFU of a shipped config's model, from its architecture alone.

    python bench/gpu.py --config configs/base.yaml                          # full size, on the GPU
    python bench/gpu.py --config configs/base.yaml --layers 2 --device cpu  # LLM and vision depth cut to 2

No weights are downloaded: the model is randomly initialised from the real architecture (bench/architectures/,
or --arch CONFIG.json) and saved like a checkpoint, then every row loads it through the project's loader and
runs the project's trainer (`build_run`, `make_trainer`) or Predictor, at the config's batch, accumulation,
precision and vision-token budget, on photos with dense answers (--objects per photo). Training rows cross
full fine-tuning / LoRA, head / no head, padded / packed rows (flash-attention varlen when flash_attn imports,
else SDPA per packed sample) and gradient checkpointing on / off; prediction rows time head, name and generate
mode (with and without the answer grammar) at batch 1 and 8, and the same generate rows in vLLM where vllm imports
(bench/gpu_vllm.py; skipped with a message elsewhere). Writes a JSON file and prints its tables; docs/gpu.md says
how to run it on a lent GPU and how to read it.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from bench_files import refuse_foreign
from gpu_flops import bf16_peak_tflops, device_name
from gpu_model import architecture_file, build_model_folder, cut_depth, frame_for, read_architecture, write_dense_dataset
from gpu_rows import PredictVariant, TrainVariant, measure_prediction, measure_training, prediction_setup, release
from gpu_vllm import measure_vllm, vllm_missing, vllm_prompt
from PIL import Image
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bbuvl.atomic import write_text_atomic
from bbuvl.config import load_config
from bbuvl.data.families import get_family
from bbuvl.data.schema import read_records
from bbuvl.encode.prompts import USER_TEXT

PREDICT_MODES = {"head": ("head", True), "name": ("name", True), "generate": ("generate", True),
                 "generate-free": ("generate", False)}


def _choices(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    picked = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in picked if t not in allowed]
    if bad or not picked:
        raise argparse.ArgumentTypeError(f"{flag}: {', '.join(bad) or 'nothing'} is not one of {', '.join(allowed)}")
    return picked


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (every list option takes comma-separated values)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a run config (configs/base.yaml, qwen3_vl_4b.yaml, qwen3_5_0.8b.yaml)")
    ap.add_argument("--layers", type=int, default=None, help="cut LLM and vision depth to N (CPU smoke runs)")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when present; cpu with --layers)")
    ap.add_argument("--arch", type=Path, default=None, help="the checkpoint's config.json, when none is held for model.path")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default gpu-CONFIG[-lN]-DEVICE.json here)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the random model and photos (default: a temp folder, removed)")
    ap.add_argument("--steps", type=int, default=3, help="measured optimizer steps per training row")
    ap.add_argument("--warmup", type=int, default=1, help="optimizer steps (and predict calls) run before measuring")
    ap.add_argument("--calls", type=int, default=2, help="measured predict calls per prediction row")
    ap.add_argument("--objects", type=int, default=20, help="objects in every photo's answer")
    ap.add_argument("--vision-tokens", type=int, default=None, help="vision tokens per photo (default: the config's max_vision_tokens)")
    ap.add_argument("--batch", type=int, default=None, help="per-device batch (default: the config's)")
    ap.add_argument("--accumulation", type=int, default=None, help="gradient accumulation steps (default: the config's)")
    ap.add_argument("--tuning", default="full,lora", help="training rows: full, lora; 'none' for none")
    ap.add_argument("--head", default="on,off")
    ap.add_argument("--layout", default="padded,packed")
    ap.add_argument("--checkpointing", default="off,on")
    ap.add_argument("--predict", default="head,name,generate,generate-free", help="prediction modes; 'none' for none")
    ap.add_argument("--predict-batch", default="1,8")
    ap.add_argument("--vllm", choices=("on", "off"), default="on",
                    help="the vLLM arm: generate-mode photos/s of vLLM at --predict-batch (skipped where vllm does not import)")
    ap.add_argument("--profile", action="store_true",
                    help="profile one more step per training row (not timed): its top operators and attention calls in the JSON")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 peak, for a GPU not in the table")
    args = ap.parse_args(argv)
    try:
        args.tuning = [] if args.tuning == "none" else _choices(args.tuning, ("full", "lora"), "--tuning")
        args.head = [h == "on" for h in _choices(args.head, ("on", "off"), "--head")]
        args.layout = _choices(args.layout, ("padded", "packed"), "--layout")
        args.checkpointing = [c == "on" for c in _choices(args.checkpointing, ("off", "on"), "--checkpointing")]
        args.predict = [] if args.predict == "none" else _choices(args.predict, tuple(PREDICT_MODES), "--predict")
        args.predict_batch = [int(b) for b in args.predict_batch.split(",")]
    except (argparse.ArgumentTypeError, ValueError) as e:
        ap.error(str(e))
    for name in ("steps", "calls", "objects", "vision_tokens", "batch", "accumulation", "layers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.warmup < 0:
        ap.error(f"--warmup must be at least 0, got {args.warmup}")
    if args.device is None:
        if not torch.cuda.is_available() and not args.layers:  # a full-size model in float32 on the CPU: hours, tens of GB
            ap.error("torch sees no GPU here: the full-size rows need one; --layers 2 --device cpu runs them on two-layer "
                     "models (a smoke run)")
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device not in ("cpu", "cuda"):  # the trainer picks the GPU itself (CUDA_VISIBLE_DEVICES chooses one)
        ap.error(f"--device must be cpu or cuda, got '{args.device}'")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no GPU here (use --device cpu)")
    return args


def base_overrides(args: argparse.Namespace, folder: Path, train: Path, teachers: Path, vision_tokens: int,
                   factor: int, run_dir: Path) -> list[str]:
    """What every row changes in the config: the random model, the dense data, a throw-away run folder, the step count."""
    cpu = args.device == "cpu"
    out = [f"model.path={folder}", f"data.train={train}", "data.val=null", f"data.teachers={teachers}",
           f"model.max_vision_tokens={vision_tokens}", f"model.max_pixels={vision_tokens * factor * factor}",
           f"training.output_dir={run_dir}", f"training.max_steps={args.warmup + args.steps + int(args.profile)}",
           "training.save_steps=100000", "training.logging_steps=100000", "training.eval_steps=100000",
           "training.warmup_ratio=0", "monitor.enabled=false"]
    if cpu:  # no bf16 matrix units to speak of on the CPUs here; fp32 keeps the smoke run honest and fast
        out += ["model.dtype=float32", "training.bf16=false", "training.use_cpu=true", "data.num_workers=0"]
    if args.batch:
        out.append(f"training.per_device_batch_size={args.batch}")
    if args.accumulation:
        out.append(f"training.gradient_accumulation_steps={args.accumulation}")
    return out


def reuse_or_build(folder: Path, arch: dict[str, Any], dtype: torch.dtype, device: str, max_pixels: int) -> dict[str, int]:
    """The random model in `folder`: the one a previous command left there (--work) when built from the same
    architecture, dtype and pixel budget, else a new one."""
    key = {"architecture": arch, "dtype": str(dtype), "max_pixels": max_pixels}
    marker = folder / "bench-model.json"
    if marker.is_file():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["params"]
        shutil.rmtree(folder)  # a model this script built for other settings
    elif folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} holds files this benchmark did not write; give --work an empty or new folder")
    params = build_model_folder(arch, folder, dtype, device, max_pixels)
    write_text_atomic(marker, json.dumps({"key": key, "params": params}))
    return params


def short_error(e: BaseException) -> str:
    """One line naming what failed (out of memory, a refused layout, ...)."""
    text = (str(e).splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:200]}"


def run_benchmark(args: argparse.Namespace, console: Console, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Build the model and data, run every selected row, return the report (what the JSON holds).

    `save` gets the report after every row: a run cut short (a command's time limit) still leaves its rows.
    """
    cfg = load_config(args.config)
    arch_path = args.arch or architecture_file(cfg.model.path)
    arch = read_architecture(arch_path)
    family = get_family(arch["model_type"])
    if cfg.model.family not in ("auto", family.model_type):
        raise ValueError(f"{arch_path} is a {family.model_type} model but {args.config} says model.family: {cfg.model.family}")
    if args.layers:
        arch = cut_depth(arch, args.layers)
    vision_tokens = args.vision_tokens or cfg.model.max_vision_tokens
    device = args.device
    # Saved in the config's dtype (half the bytes to write and read); CPU rows load it as float32 (base_overrides).
    saved_dtype = getattr(torch, cfg.model.dtype)
    dtype = torch.float32 if device == "cpu" else saved_dtype
    peak = args.peak_tflops or (bf16_peak_tflops(device_name(device)) if device.startswith("cuda") else None)
    flash = device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None
    work = args.work or Path(tempfile.mkdtemp(prefix="bbuvl-gpu-bench-"))
    report: dict[str, Any] = {
        "config": str(args.config), "architecture": str(arch_path), "family": family.model_type,
        "layers": args.layers, "device": device_name(device), "peak_bf16_tflops": peak, "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "kernels": {name: importlib.util.find_spec(module) is not None for name, module in
                    (("flash_attn", "flash_attn"), ("flash_linear_attention", "fla"), ("causal_conv1d", "causal_conv1d"))},
        "objects_per_photo": args.objects, "vision_tokens_per_photo": vision_tokens,
        "batch": args.batch or cfg.training.per_device_batch_size,
        "accumulation": args.accumulation or cfg.training.gradient_accumulation_steps,
        "teacher_ratio": cfg.data.teacher_ratio, "steps": args.steps, "warmup": args.warmup,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "training": [], "prediction": [],
    }
    try:
        t0 = time.perf_counter()
        console.print(f"building a random {escape(family.name)} from {escape(str(arch_path))} in {escape(str(work))} ...")
        report["params"] = reuse_or_build(work / "model", arch, saved_dtype, device, vision_tokens * family.factor ** 2)
        size = frame_for(vision_tokens, family.factor)
        per_step = report["batch"] * report["accumulation"]
        train, teachers = write_dense_dataset(work / "data", per_step * (args.warmup + args.steps), size, args.objects)
        report["photo_size"] = list(size)
        report["build_s"] = round(time.perf_counter() - t0, 1)
        common = base_overrides(args, work / "model", train, teachers, vision_tokens, family.factor, work / "run")
        counts: list = []
        variants = [TrainVariant(*v) for v in itertools.product(args.tuning, args.head, args.layout, args.checkpointing)]
        for i, v in enumerate(variants):
            console.print(f"training {i + 1}/{len(variants)}: {v.tuning}, head {'on' if v.head else 'off'}, {v.layout}, "
                          f"checkpointing {'on' if v.checkpointing else 'off'}")
            row: dict[str, Any] = {"tuning": v.tuning, "head": v.head, "layout": v.layout, "checkpointing": v.checkpointing}
            started = time.perf_counter()
            try:
                run_cfg = load_config(args.config, common + v.overrides("flash_attention_2" if flash else None))
                row.update(measure_training(run_cfg, device, args.warmup, counts, peak, args.profile))
            except (RuntimeError, ValueError, torch.cuda.OutOfMemoryError) as e:
                row["error"] = short_error(e)
                if not isinstance(e, (torch.cuda.OutOfMemoryError, ValueError)):
                    traceback.print_exc()
            release()
            row["row_s"] = round(time.perf_counter() - started, 1)  # loading included: what a row costs a GPU session
            report["training"].append(row)
            save(report)
        if args.predict:
            predict_rows(args, report, common, train, save, console, work / "model")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return report


def predict_rows(args: argparse.Namespace, report: dict[str, Any], common: list[str], train: Path,
                 save: Callable[[dict[str, Any]], None], console: Console, folder: Path) -> None:
    """The prediction rows, on one model with a head (full fine-tuning's, padded), then the vLLM arm on the model
    `folder`; a setup that fails (out of memory) is recorded as `prediction_error` and no row runs."""
    started = time.perf_counter()
    record = read_records(train)[0]
    overrides = common + TrainVariant("full", True, "padded", False).overrides(None)
    try:
        setup = prediction_setup(load_config(args.config, overrides), args.device, record, train.parent / record.image,
                                 args.objects)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
        report["prediction_error"] = short_error(e)
        save(report)
        return
    report["prediction_setup_s"] = round(time.perf_counter() - started, 1)
    for name, batch in itertools.product(args.predict, args.predict_batch):
        mode, grammar = PREDICT_MODES[name]
        console.print(f"prediction: {mode}, grammar {'on' if grammar else 'off'}, batch {batch}")
        row: dict[str, Any] = {"mode": mode, "grammar": grammar, "batch": batch}
        started = time.perf_counter()
        try:
            row.update(measure_prediction(setup, PredictVariant(mode, grammar, batch), args.device, args.calls,
                                          args.warmup))
        except (RuntimeError, ValueError, torch.cuda.OutOfMemoryError) as e:
            row["error"] = short_error(e)
        release()
        row["row_s"] = round(time.perf_counter() - started, 1)
        report["prediction"].append(row)
        save(report)
    generate = [name for name in args.predict if PREDICT_MODES[name][0] == "generate"]
    if args.vllm == "on" and generate:
        answer_tokens, run = len(setup["predictor"].target), setup["run"]
        system, user, contract = run.prompt.system, USER_TEXT[run.prompt.lang], run.contract
        del setup  # vLLM needs the GPU memory the bbu-vl rows held
        release()
        vllm_rows(args, report, folder, train.parent / record.image, (contract.min_pixels, contract.max_pixels),
                  (system, user), answer_tokens, save, console)


def vllm_rows(args: argparse.Namespace, report: dict[str, Any], folder: Path, photo: Path, frame: tuple[int, int],
              prompt: tuple[str, str], answer_tokens: int, save: Callable[[dict[str, Any]], None], console: Console) -> None:
    """The vLLM arm on the same model folder, photo, prompt and answer length as the generate rows (bench/gpu_vllm.py),
    each row beside bbu-vl's generate row of its batch; skipped with a message where vllm does not import."""
    missing = vllm_missing()
    if missing:
        report["vllm"] = {"skipped": missing}
        console.print(f"[yellow]vLLM arm skipped:[/yellow] {escape(missing)}")
        save(report)
        return
    started = time.perf_counter()
    try:
        rows = measure_vllm(folder, vllm_prompt(folder, *prompt), Image.open(photo).convert("RGB"), frame, answer_tokens,
                            args.predict_batch, args.calls, args.warmup, report["dtype"])
    except Exception as e:  # noqa: BLE001 - vLLM's own failures (a model it does not support, memory) end the arm, not the run
        report["vllm"] = {"error": short_error(e)}
        save(report)
        return
    ours = {r["batch"]: r for r in report["prediction"] if r["mode"] == "generate" and not r["grammar"]}
    ours = ours or {r["batch"]: r for r in report["prediction"] if r["mode"] == "generate"}
    for row in rows:
        mine = ours.get(row["batch"], {}).get("photos_per_s")
        row["bbuvl_photos_per_s"] = mine
        row["ratio"] = row["photos_per_s"] / mine if mine else None
    report["vllm"] = {"rows": rows, "arm_s": round(time.perf_counter() - started, 1)}
    save(report)


def vllm_table(report: dict[str, Any]) -> Table:
    """One line per vLLM row, beside `bbuvl predict`'s generate row of the same batch."""
    t = Table(title="generate mode: vLLM against bbuvl predict (same model, photo, prompt and answer length)")
    for col in ("batch", "vLLM photos/s", "bbuvl photos/s", "vLLM / bbuvl", "answer tokens"):
        t.add_column(col, justify="right")
    for r in report["vllm"]["rows"]:
        t.add_row(str(r["batch"]), _num(r["photos_per_s"], ".2f"), _num(r["bbuvl_photos_per_s"], ".2f"),
                  _num(r["ratio"], ".2f"), _num(r["answer_tokens"], "d"))
    return t


def _num(v: Any, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def training_table(report: dict[str, Any]) -> Table:
    """One line per training row; 'n/a' where a value does not apply (MFU on a CPU), the error where one failed."""
    t = Table(title=f"training: {report['batch']} x {report['accumulation']} photos a step, "
                    f"{report['vision_tokens_per_photo']} vision tokens and {report['objects_per_photo']} objects a photo")
    for col in ("tuning", "head", "layout", "attention", "checkpointing", "step s", "tokens/s", "photos/s",
                "peak GB", "TFLOP/s", "MFU", "note"):
        t.add_column(col, justify="right" if col not in ("tuning", "layout", "attention", "note") else "left")
    for r in report["training"]:
        t.add_row(r["tuning"], "on" if r["head"] else "off", r["layout"], escape(r.get("attention", "n/a")),
                  "on" if r["checkpointing"] else "off", _num(r.get("step_s"), ".3f"), _num(r.get("tokens_per_s"), ",.0f"),
                  _num(r.get("photos_per_s"), ".2f"), _num(r.get("peak_gb"), ".2f"), _num(r.get("tflops_per_s"), ".3g"),
                  _num(r.get("mfu"), ".1%"), escape(r.get("error", "")))
    return t


def profile_tables(report: dict[str, Any]) -> list[Table]:
    """One table per profiled training row (--profile): its step's top operators by self time."""
    tables = []
    for r in report["training"]:
        p = r.get("profile")
        if not p:
            continue
        t = Table(title=f"one step of {r['tuning']}, head {'on' if r['head'] else 'off'}, {r['layout']}, checkpointing "
                        f"{'on' if r['checkpointing'] else 'off'}: {p['total_ms']:,.0f} ms of {p['sorted_by']}, "
                        f"{p['cpu_total_ms']:,.0f} ms on the CPU, {p['attention_calls']:,} attention calls")
        for col in ("operator", "calls", "self ms"):
            t.add_column(col, justify="left" if col == "operator" else "right")
        for op in p["ops"]:
            t.add_row(escape(op["name"]), f"{op['calls']:,}", f"{op['self_ms']:,.1f}")
        tables.append(t)
    return tables


def prediction_table(report: dict[str, Any]) -> Table:
    """One line per prediction row."""
    t = Table(title=f"prediction: {report['objects_per_photo']} objects a photo")
    for col in ("mode", "grammar", "batch", "photos/s", "s/batch", "answer tokens", "objects/photo", "peak GB", "note"):
        t.add_column(col, justify="left" if col in ("mode", "note") else "right")
    for r in report["prediction"]:
        t.add_row(r["mode"], "on" if r["grammar"] else "off", str(r["batch"]), _num(r.get("photos_per_s"), ".2f"),
                  _num(r.get("s_per_batch"), ".3f"), _num(r.get("answer_tokens"), "d"), _num(r.get("objects_per_photo"), ".1f"),
                  _num(r.get("peak_gb"), ".2f"), escape(r.get("error", "")))
    return t


def main(argv: list[str] | None = None) -> int:
    """Run, print the tables, write the JSON; exit 2 with one line on a bad config or architecture."""
    args = parse_args(argv)
    # Wide enough for every column header whole, in a terminal or a log.
    console = Console(width=max(Console().width, 150))
    stem = Path(args.config).stem + (f"-l{args.layers}" if args.layers else "") + f"-{args.device}"
    out = args.out or Path(f"gpu-{stem}.json")

    def save(report: dict[str, Any]) -> None:
        write_text_atomic(out, json.dumps(report, indent=1, ensure_ascii=False) + "\n")

    try:
        refuse_foreign(out, lambda report: isinstance(report, dict) and {"config", "architecture", "family"} <= set(report),
                       "bench/gpu.py report")
        report = run_benchmark(args, console, save)
    except (OSError, ValueError) as e:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(e))}")
        return 2
    save(report)
    console.print(f"{escape(report['device'])}, torch {report['torch']}, transformers {report['transformers']}, "
                  f"{report['dtype']}, bf16 peak {_num(report['peak_bf16_tflops'], '.0f')} TFLOP/s; "
                  f"{report['params']['total'] / 1e9:.2f}B parameters ({report['params']['vision'] / 1e9:.2f}B vision)")
    if report["training"]:
        console.print(training_table(report))
        for table in profile_tables(report):
            console.print(table)
    if report["prediction"]:
        console.print(prediction_table(report))
    if "rows" in report.get("vllm", {}):
        console.print(vllm_table(report))
    elif "error" in report.get("vllm", {}):
        console.print(f"[red]vLLM arm failed:[/red] {escape(report['vllm']['error'])}")
    if "prediction_error" in report:
        console.print(f"[red]prediction rows not run:[/red] {escape(report['prediction_error'])}")
    console.print(f"wrote {escape(str(out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
