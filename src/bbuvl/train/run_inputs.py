"""What a run is built from before its model loads, read and checked before its output folder is touched.

The files a run must read are there, each named by its config key: data.train and the caption refit's photos were
found missing only by their reader ("/x/train.jsonl: cannot open dataset", which key?), training.deepspeed as a
traceback from transformers once the model had loaded. Then the model's family and frame, the batch budgets, the
label hierarchy, every data file (each line and each photo's header) and the prompt: all of them used to be read
after `--overwrite` had cleared the previous run, so a typo in data.val cost that run and started none.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bbuvl.config import (BudgetError, BudgetProblem, Config, batch_budget_problems, not_a_checkpoint, run_conflicts,
                          run_notes)
from bbuvl.data.coords import CONTRACT_FILE, CoordinateContract
from bbuvl.data.families import Family, model_type_of
from bbuvl.data.faults import Faults
from bbuvl.data.input_paths import file_kind, model_files_path_problem
from bbuvl.data.jsonfile import read_json
from bbuvl.data.labels import Hierarchy, side_labels
from bbuvl.data.layout import ordered_labels
from bbuvl.data.text import show_text
from bbuvl.encode.loss_terms import LossTerms
from bbuvl.encode.prompts import system_prompt
from bbuvl.model.checkpoint import HEAD_FILE, POSITIONS_FILE, Prompt, start_folder_problem, stopped_swap
from bbuvl.model.export import stock_frame
from bbuvl.model.checkpoint_files import IMAGE_PROCESSOR_FILE
from bbuvl.model.processor import saved_pixel_range
from bbuvl.train.all_ranks import first_process
from bbuvl.train.caption_refit import Photo, jsonl_photos
from bbuvl.train.data_files import DataFiles
from bbuvl.train.dataset import SampleSource, SourcedRecord, read_training_rows, rows_as_sources
from bbuvl.train.frame_boxes import shrunk_note
from bbuvl.train.oversize import all_skipped
from bbuvl.train.query_room import queries_note
from bbuvl.train.val_labels import val_only_note
from bbuvl.train.run_dir import check_rotation, looked_from, module_problem

log = logging.getLogger(__name__)


@dataclass
class RunInputs:
    """A run's family, frame, hierarchy, data and prompt: everything `build_run` needs but the model."""

    family: Family
    contract: CoordinateContract
    hierarchy: Hierarchy
    # What the hierarchy marks as faults, for the start's counts and loss.fault_weight: found once, not once each
    faults: Faults
    train: list[SampleSource]
    pool: list[SourcedRecord]  # the teacher pool (data.teachers)
    val: list[SampleSource] | None
    refit_photos: list[Photo]  # `detection.caption_refit.photos`, read now: a bad line there would cost the whole run
    labels: list[str]
    prompt: Prompt


def check_inputs(cfg: Config) -> None:
    """Raise ValueError naming the key of a file the run reads that is missing or no file, of a DeepSpeed config
    that is no JSON object, or when training.deepspeed is set and the deepspeed package is not installed; and
    RunDirError naming a folder in training.output_dir that HF's checkpoint rotation would delete (run_dir.py)."""
    t = cfg.training
    check_rotation(t.output_dir, t.max_steps, t.save_total_limit)  # first: before anything is read or cleared
    if (problem := model_files_path_problem(t.output_dir)) is not None:  # its first checkpoint failed, steps in
        raise ValueError(f"training.output_dir {t.output_dir}: cannot hold the run's checkpoints: {problem}")
    named = {"data.train": cfg.data.train, "data.hierarchy": cfg.data.hierarchy,
             "training.deepspeed": cfg.training.deepspeed}
    if cfg.detection.refits:
        named["detection.caption_refit.photos"] = cfg.detection.caption_refit.photos
    for key, path in named.items():
        if path is not None and (kind := file_kind(Path(path))) is not None:
            raise ValueError(f"{key} {path}: {kind}{looked_from(path)}")
    if cfg.training.deepspeed is None:
        return
    if (why := deepspeed_problem(cfg.training.deepspeed)) is not None:
        raise ValueError(f"training.deepspeed {why}")
    if (problem := deepspeed_missing()) is not None:
        raise ValueError(problem)


def deepspeed_missing() -> str | None:
    """Why training.deepspeed cannot run on this machine (the deepspeed package is not installed); None when it can."""
    if importlib.util.find_spec("deepspeed") is None:
        return ("training.deepspeed is set but the deepspeed package is not installed: "
                "`DS_BUILD_OPS=0 pip install -c constraints.txt -e \".[deepspeed]\"`, or set training.deepspeed: null")
    return None


def machine_problems(cfg: Config) -> list[BudgetProblem]:
    """What of `cfg` this machine cannot run, which a training start here refuses before the model loads: bf16 without
    a GPU that computes in it, FlashAttention 2 or QLoRA without a CUDA GPU and their package, DeepSpeed without its
    package. Said by `bbuvl config check`, not refused there: a config may be written for the machine that trains."""
    from bbuvl.model.loading import flash_attention_problem, quantization_problem

    found = []
    if (why := precision_problem(cfg)) is not None:
        found.append(BudgetProblem(why, ("training.bf16",)))
    if cfg.model.attn_implementation == "flash_attention_2" and (why := flash_attention_problem()) is not None:
        found.append(BudgetProblem(why, ("model.attn_implementation",)))
    bits = cfg.model.lora.bits if cfg.model.lora.enabled else 16  # as the run loads it (train/trainer.py)
    if bits != 16 and (why := quantization_problem(bits)) is not None:
        found.append(BudgetProblem(why, ("model.lora.bits", "model.lora.enabled")))
    if cfg.training.deepspeed is not None and (why := deepspeed_missing()) is not None:
        found.append(BudgetProblem(why, ("training.deepspeed",)))
    return found


def precision_problem(cfg: Config) -> str | None:
    """Why `training.bf16` cannot run on this machine (no GPU here computes in bf16), naming the key; None when it can."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    t = cfg.training
    if t.bf16 and not t.use_cpu and not is_torch_bf16_gpu_available() and not is_torch_xla_available():
        return ("training.bf16 is true, but this machine has no GPU that computes in bf16: set training.bf16=false to "
                "train in float32, or training.use_cpu=true to train on the CPU")
    return None


def deepspeed_problem(path: str | Path) -> str | None:
    """Why the file `path` is no DeepSpeed config (not read, not JSON, no JSON object), naming it; None when it is one."""
    try:
        settings = read_json(path, "DeepSpeed config")
    except (OSError, ValueError) as e:
        return str(e)
    if not isinstance(settings, dict):
        return f"{path}: a DeepSpeed config is a JSON object (configs/deepspeed/ has two)"
    return None


def check_start(cfg: Config) -> None:
    """Raise ValueError when model.path is a local folder that holds no model, or lacks a file its model is loaded
    from (with model.reuse_modules, a module its checkpoint's config builds), or holds another family's model."""
    if (problem := start_problem(cfg)) is not None:
        raise ValueError(problem)
    if first_process():  # every process would say them
        for note in (frame_note(cfg), unused_modules_note(cfg)):
            if note is not None:
                log.warning("%s", note)


def start_problem(cfg: Config) -> str | None:
    """Why a training start refuses model.path before the model loads (what `check_start` raises), naming it; None
    when it would not, or when model.path is no local folder (a hub id, or a missing folder: named where the model
    loads, paths.py). `bbuvl config check` notes the same."""
    start = Path(cfg.model.path)
    if not start.is_dir():
        if (left := stopped_swap(start)) is not None:  # a run's final/ whose save stopped between its renames
            return f"model.path {start}: no such folder: {left}"
        return None
    if what := not_a_checkpoint(start):
        return f"model.path {what}"
    # Before minutes of loading, and before transformers names something else ("Can't load video processor", "config
    # and tokenizer disagree"); a start without its chat template trained a final/ without one. With
    # model.reuse_modules, a checkpoint lacking the head its config builds would start with a new one, silently.
    if problem := start_folder_problem(start) or (module_problem(start) if cfg.model.reuse_modules else None):
        return (f"model.path {start}: incomplete or damaged model folder ({problem}); re-copy it, or point model.path "
                "at another")
    # Here as well as once loaded: configs/base.yaml names qwen2_5_vl, and a Qwen3-VL model.path was refused only
    # after the model had loaded, when --overwrite had already removed the run it would replace.
    if not trains_adapters_on(cfg):
        named = cfg.model.resolve_family()
        if (held := model_type_of(start)) != named.model_type:
            return f"model.family is {named.model_type} but {start} holds a {held} model; set model.family: auto or " \
                   "the checkpoint's family"
    return None


def unused_modules_note(cfg: Config) -> str | None:
    """What a run says when model.path holds a trained head or vision positions that it builds anew instead
    (model.reuse_modules false), or None. Without it, a run started from a checkpoint to go on with its training (what
    a refused resume advises) trained a new head from random weights, and nothing said the old one went unused."""
    start = Path(cfg.model.path)
    if cfg.training.method != "sft" or cfg.model.reuse_modules or not start.is_dir():
        return None
    unused = [f"{name} ({what})" for name, what, built in (
        (HEAD_FILE, "its trained detection head", cfg.detection.enabled),
        (POSITIONS_FILE, "its trained vision positions", cfg.model.vision_positions)) if built and (start / name).is_file()]
    if not unused:
        return None
    them, those = ("them", "those") if len(unused) > 1 else ("it", "that one")
    return (f"model.path {start} holds {' and '.join(unused)}, and model.reuse_modules is false: this run builds "
            f"{them} new and leaves {those} unused; set model.reuse_modules: true to start from {them} (what fits the "
            "run's labels and queries carries over)")


def trains_adapters_on(cfg: Config) -> bool:
    """Whether `cfg` is a GRPO run from a bbu-vl LoRA checkpoint, whose folder holds adapters and no config.json."""
    # Such a start was refused here as SFT refuses it ("use its base model here, or merge the adapters"), though GRPO
    # trains the adapters on (docs/grpo.md, "From LoRA"). Its family is its coordinate contract's, which GRPO's start
    # compares with model.family (rl/start_notes.py `frame_conflicts`).
    start = Path(cfg.model.path)
    return (cfg.training.method == "grpo" and (start / "adapter_config.json").is_file()
            and (start / CONTRACT_FILE).is_file())


def frame_note(cfg: Config) -> str | None:
    """What a run says when model.path learned its boxes in another frame than the run's config gives (min/max
    pixels, the vision-token budget): a checkpoint's `coordinate_contract.json`, an export's image processor. The
    run's frame wins (the processor is set to it and every photo resized to it), so the model sees every photo, and
    writes every box, at another scale than it learned. None: the same frame, or a base model, which learned none."""
    start = Path(cfg.model.path)
    if cfg.training.method == "grpo" and (start / CONTRACT_FILE).is_file():
        # GRPO trains in its starting checkpoint's frame, and refuses a config that sets another (rl/start_notes.py)
        return None
    learned = learned_frame(start)
    if learned is None:
        return None
    ours = stock_frame(cfg.model.frame())
    if (ours.min_pixels, ours.max_pixels) == learned[:2]:
        return None
    return (f"model.path {start} learned its boxes at {learned[0]}..{learned[1]} pixels a photo ({learned[2]}), and "
            f"this run trains at {ours.min_pixels}..{ours.max_pixels} (model.min_pixels, model.max_pixels and "
            "model.max_vision_tokens of its config): the run's frame wins, every photo is shown and every box "
            "learnt at the run's scale, and its checkpoints predict at it. To go on in the frame the model learnt, "
            f"set model.min_pixels: {learned[0]} and model.max_pixels: {learned[1]}")


def learned_frame(folder: Path) -> tuple[int, int, str] | None:
    """The frame a fine-tuned model folder learnt its boxes in, as its processor resizes (min, max pixels) with the
    file that says so: a bbu-vl checkpoint's contract, an export's image processor (beside its labels.json); None
    for a base model, or a file that cannot be read (its loader names it)."""
    from bbuvl.model.export import LABELS_FILE

    try:
        if (folder / CONTRACT_FILE).is_file():
            frame = stock_frame(CoordinateContract.load(folder))
            return frame.min_pixels, frame.max_pixels, str(folder / CONTRACT_FILE)
        if (folder / LABELS_FILE).is_file() and (saved := saved_pixel_range(folder)) is not None:
            return (*saved, f"{folder / IMAGE_PROCESSOR_FILE}, as `bbuvl model export` wrote it")
    except (OSError, ValueError):
        return None
    return None


def optional_data(cfg: Config, key: str) -> str | None:
    """The file `data.<key>` (val or teachers) names; None when unset, or left at its default and absent.

    One the config names that is not there is refused: a misspelt path would train without validation or teachers
    and say nothing. The defaults (data/val.jsonl, data/teachers.jsonl) stay optional, as `data convert` may write none.
    """
    path = getattr(cfg.data, key)
    if path is None or (kind := file_kind(Path(path))) is None:
        return path
    if key in cfg.data.model_fields_set:
        raise ValueError(f"data.{key} {path}: {kind}{looked_from(path)}; fix the path, or set data.{key}: null to train without "
                         f"{'validation' if key == 'val' else 'teacher photos'}")
    return None


def eval_metrics(cfg: Config) -> dict[str, tuple[str, ...]]:
    """Each metric an SFT evaluation logs (`eval_loss`, `eval_<term>` for every loss term: train/trainer.py `log`) ->
    the settings it is logged only with that `cfg` leaves off (empty: `cfg`'s run logs it)."""
    loss, d = cfg.loss, cfg.detection
    off = {"number_token": ("loss.number_token",) if loss.number_token <= 0 else (),
           "coordinate": ("loss.coordinate_regression",) if loss.coordinate_regression <= 0 else (),
           "grounding": ("loss.grounding_attention",) if loss.grounding_attention <= 0 else ()}
    head = () if d.enabled else ("detection.enabled",)
    off["loss_proposal"] = head + (("detection.two_stage",) if not d.two_stage else ())
    return {f"eval_{name}": off.get(name, head if name.startswith("loss_") else ()) for name in LossTerms.names()}


def early_stopping_problems(cfg: Config, reads_val: bool | None = None) -> list[BudgetProblem]:
    """Why `monitor.early_stopping_metric` would never stop the run: a name no evaluation logs (with the nearest one
    that is), a term this config does not compute, or no validation set (`reads_val`: whether the run reads one,
    where that is known; None: whether data.val names one). The callback found each only at the first evaluation,
    or at the start, as one warning, and the run trained on to its end. GRPO names monitor.* as ignored
    (rl/start_notes.py `grpo_ignores`)."""
    metric = cfg.monitor.early_stopping_metric
    if metric is None or cfg.training.method != "sft":
        return []
    keys = ("monitor.early_stopping_metric",)
    logged = eval_metrics(cfg)
    name = metric if metric in logged else f"eval_{metric}"  # the callback reads `loss` as `eval_loss` too
    if name not in logged:
        # compared without the prefix every name shares, which made any two names look alike
        terms = {n.removeprefix("eval_"): n for n in logged}
        near = [terms[t] for t in difflib.get_close_matches(metric.removeprefix("eval_"), terms, n=1, cutoff=0.6)]
        return [BudgetProblem(f"monitor.early_stopping_metric {metric!r} is no metric an evaluation logs, so early "
                              "stopping would never stop the run" + (f" (did you mean {near[0]}?)" if near else "")
                              + f"; this config's evaluations log {', '.join(n for n, off in logged.items() if not off)}",
                              keys)]
    if off := logged[name]:
        needs = " and ".join(f"{k}: true" if k.startswith("detection.") else f"{k} above 0" for k in off)
        return [BudgetProblem(f"monitor.early_stopping_metric {metric} is logged only with {needs}, which this config "
                              "does not set, so early stopping would never stop the run; stop on eval_loss, or set "
                              f"{needs}", keys + off)]
    if not (cfg.data.val is not None if reads_val is None else reads_val):
        why = "data.val is null" if cfg.data.val is None else f"data.val {cfg.data.val} (the default) is not there"
        return [BudgetProblem(f"monitor.early_stopping_metric {metric} is read from the evaluations on data.val, and "
                              f"{why}, so no evaluation runs and early stopping would never stop the run; give data.val "
                              "a validation JSONL, or set monitor.early_stopping_metric: null", keys + ("data.val",))]
    return []


def check_pool(cfg: Config, teachers: str, pool: list[SourcedRecord]) -> None:
    """Refuse a teacher pool the config names that holds no photo while teachers are drawn from it."""
    drawn = cfg.training.method == "sft" and cfg.data.teacher_ratio > 0 and cfg.data.num_teachers > 0
    if not pool and drawn and "teachers" in cfg.data.model_fields_set:
        # As a misspelt path would (`optional_data`), an empty pool trained without a teacher photo, saying nothing.
        raise ValueError(f"data.teachers {teachers}: no samples (the file is empty or holds only blank lines), and "
                         f"data.teacher_ratio {cfg.data.teacher_ratio:g} draws teachers from it; give a teacher pool "
                         "(`bbuvl data teachers TRAIN.jsonl` writes one), or set data.teachers: null to train without "
                         "teacher photos")


def mirror_note(cfg: Config, labels: Iterable[str], hierarchy: Hierarchy) -> str | None:
    """What a run says when data.mirror shows photos mirrored and a label of the data or the hierarchy names a side
    (`side_labels`): a mirror moves the pixels and the boxes, never the words, so the left part is taught as left on
    the right. None without mirrors, or without such labels."""
    if cfg.data.mirror <= 0 or not (sided := side_labels(labels, hierarchy)):
        return None
    shown = ", ".join(show_text(label) for label in sided[:5]) + (" ..." if len(sided) > 5 else "")
    return (f"data.mirror {cfg.data.mirror:g} shows photos mirrored left to right with their labels as they are, and "
            f"{len(sided)} label(s) of the data or data.hierarchy name a side: {shown}; a mirrored photo teaches "
            "such a part under the other side's name. Set data.mirror: 0, or name no side in the labels")


def packing_problem(cfg: Config, family: Family) -> str | None:
    """Why `cfg` cannot train `family` on packed rows (its layers would carry one sample into the next), or None."""
    if cfg.data.collator == "packed" and not family.packs_isolated:
        return (f"data.collator: packed is refused for {family.name}: {family.packing_note}; use data.collator: padded "
                "(docs/families.md)")
    return None


def read_run_inputs(cfg: Config, files: DataFiles | None = None) -> RunInputs:
    """Everything of `cfg`'s run but its model, each data file read through `files` (train/data_files.py): a problem
    with any of it raises here, naming the key or file and line."""
    check_inputs(cfg)
    family = cfg.model.resolve_family()
    if problem := packing_problem(cfg, family):
        raise ValueError(problem)
    contract = cfg.model.frame()
    stopping = early_stopping_problems(cfg, optional_data(cfg, "val") is not None)  # a default data.val may be absent
    problems = run_conflicts(cfg) + stopping + batch_budget_problems(cfg, contract.factor)
    if problems:
        raise BudgetError(problems)
    if first_process():  # every process would say them
        for note in run_notes(cfg):
            log.warning("%s", note)
    hierarchy = Hierarchy.load(cfg.data.hierarchy)
    # Every data file is read (an empty one, a box `data check` calls an error: refused) before the model loads.
    files = files or DataFiles()
    train = rows_as_sources(read_training_rows(cfg.data.train, files=files), cfg.data.train)
    pool = []
    if teachers := optional_data(cfg, "teachers"):
        pool = [SourcedRecord(row.sample.student, teachers, row.line) for row in read_training_rows(teachers, files=files)
                if row.sample is not None]
        check_pool(cfg, teachers, pool)
    val = None
    if val_path := optional_data(cfg, "val"):
        val = rows_as_sources(read_training_rows(val_path, files=files), val_path)
    if cfg.data.oversize == "skip":
        for key, path, records in (("data.train", cfg.data.train, [s.student.record for s in train]),
                                   ("data.val", val_path, [s.student.record for s in val or []]),
                                   ("data.teachers", teachers, [t.record for t in pool]
                                    if cfg.data.teacher_ratio > 0 and cfg.data.num_teachers > 0 else [])):
            if problem := all_skipped(key, str(path), records, contract):
                raise ValueError(problem)
    refit = cfg.detection.caption_refit
    refit_photos = jsonl_photos(refit.photos, files) if cfg.detection.refits and refit.photos else []
    labels = ordered_labels((o.desc for s in train + (val or []) for o in s.student.record.objects), hierarchy)
    known = set(labels) | {o.desc for s in train for o in s.student.record.objects}
    unknown = sorted({label for p in refit_photos for label in p.labels} - known)
    if not any(s.student.record.objects for s in train) and first_process():
        # A conversion that lost every label trained a model that answers [] to every photo, and said nothing
        log.warning("data.train %s: none of its %d photo(s) holds an object, so the run teaches the model to answer [] "
                    "(nothing) for every photo%s; if they should hold objects, see what their conversion kept (`bbuvl "
                    "data stats %s`)", cfg.data.train, len(train),
                    " and the head to find nothing" if cfg.detection.enabled else "", cfg.data.train)
    if cfg.detection.refits and not any(s.student.record.objects for s in train) and not any(p.labels for p in refit_photos):
        # The run trained to its end and then stopped there, its refit finding "no training object covered", with no
        # final/ and a resume refused the refit turned off
        raise ValueError(f"detection.caption_refit.steps {refit.steps} refits the captions on the training objects, and "
                         f"no photo of data.train {cfg.data.train}" + (" nor of detection.caption_refit.photos"
                                                                        if refit.photos else "")
                         + " holds one: set detection.caption_refit.steps: 0, or give photos with objects")
    if unknown:  # the captions would learn to write a label the prompt never offers and no metric expects
        raise ValueError(f"detection.caption_refit.photos {refit.photos}: {len(unknown)} label(s) the training data "
                         f"does not hold, e.g. {show_text(unknown[0])}: give the refit photos of the training labels")
    if first_process():  # once, not once a process: every process reads the same data
        sft = cfg.training.method == "sft"
        for note in (mirror_note(cfg, labels, hierarchy) if sft else None,  # GRPO's: rl/trainer.py
                     queries_note(train, cfg.detection.num_queries) if cfg.detection.enabled and sft else None,
                     shrunk_note(train, contract) if sft else None,
                     val_only_note(train, val) if val else None):
            if note is not None:
                log.warning("%s", note)
    prompt = Prompt(system_prompt(labels, hierarchy, cfg.data.lang, contract.family), labels, cfg.data.lang)
    return RunInputs(family, contract, hierarchy, files.faults(cfg.data.hierarchy, hierarchy), train, pool, val, refit_photos,
                     labels, prompt)
