"""Training: LR groups, logged loss = optimised loss, non-finite guard, resume, LoRA merge, head freezing."""

import json
import logging
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from transformers import TrainerCallback

from bbuvl.infer.tile_scale import ChosenTileScale
from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds, for_faults
from bbuvl.model.checkpoint import CheckpointError, load_model, merge_lora
from bbuvl.model.identity import trained_identity
from bbuvl.train.param_groups import GROUPS, ParameterGroupError, assign_groups, group_of, summarize_groups
from bbuvl.train.run_dir import RunDirError
from bbuvl.train.trainer import build_run, train
from tests.callbacks import AtStart, PoisonHeadOnce, StopAt, whole_and_resumed
from tests.conftest import run_config_at

pytestmark = pytest.mark.filterwarnings("ignore")


def _snapshot(start, group):
    return {n: p for n, p in start.weights.items() if group_of(n) == group}


def _losses(history):
    return [h for h in history if "loss" in h and "train_runtime" not in h]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_every_trainable_parameter_is_in_exactly_one_group(run_config):
    run = build_run(run_config())
    groups = assign_groups(run.model)
    names = [n for named in groups.values() for n, _ in named]
    trainable = [n for n, p in run.model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable) and len(set(names)) == len(names)
    assert all(groups[g] for g in GROUPS), {g: len(v) for g, v in groups.items()}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_trainable_parameter_outside_the_groups_is_a_startup_error(run_config):
    run = build_run(run_config())
    run.model.extra_scale = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ParameterGroupError, match="extra_scale"):
        assign_groups(run.model)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_zero_lr_groups_stay_frozen_and_logged_loss_is_the_weighted_sum(run_config):
    cfg = run_config("training.lr.vision=0", "training.lr.merger=0")
    start = AtStart()
    result = train(cfg, progress=False, callbacks=[start])
    vision_before = _snapshot(start, "vision")
    llm_before = _snapshot(start, "llm")
    assert start.trainable and not any(group_of(n) in ("vision", "merger") for n in start.trainable)
    model = load_model(result["final"])[0]
    for n, p in model.named_parameters():
        if n in vision_before:
            assert torch.equal(p, vision_before[n]), n
    llm_changed = any(not torch.equal(p, llm_before[n]) for n, p in model.named_parameters() if n in llm_before)
    logs = _losses(result["history"])
    assert len(logs) == 4
    w = cfg.loss
    for h in logs:
        expect = (w.teacher_weight * h["lm_teacher"] + w.student_weight * h["lm_student"] + w.bbox_weight * h["loss_bbox"]
                  + w.giou_weight * h["loss_giou"] + w.objectness_weight * h["loss_objectness"] + w.caption_weight * h["loss_caption"]
                  + h["loss_proposal"])  # logged already weighted
        assert h["loss"] == pytest.approx(expect, rel=1e-5, abs=1e-5)
    assert llm_changed


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_nan_loss_is_skipped_logged_dumped_and_training_goes_on(run_config, tmp_path):
    cfg = run_config("training.max_steps=4")
    result = train(cfg, progress=False, callbacks=[PoisonHeadOnce(step=2)])
    assert result["nan_skipped"] == 1
    dumps = list((tmp_path / "run" / "nan_batches").glob("*.json"))
    assert len(dumps) == 1
    dump = json.loads(dumps[0].read_text(encoding="utf-8"))
    assert dump["step"] == 2 and dump["images"] and "<|image_pad|>" in dump["rows"][0]["text"]
    model = load_model(result["final"])[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    logs = _losses(result["history"])
    assert logs[-1]["step"] == 4 and logs[-1]["nan_skipped"] == 1


class _NanGradientAt(TrainerCallback):
    """The head's objectness gradient NaN in step `step`, its loss finite (an overflow in the backward pass)."""

    def __init__(self, step: int):
        self.step, self.state = step, None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.state = state
        model.detection_head.objectness_head.weight.register_hook(
            lambda g: g * float("nan") if self.state.global_step + 1 == self.step else g)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_step_the_guard_skips_is_logged_non_finite_though_its_loss_was_finite(run_config):
    # The guard's verdict, which sees the gradients (reduced over the ranks), decides how a step is logged: a step with
    # a finite loss and NaN gradients was logged as taken, with its loss, as a step non-finite on one rank alone was
    # logged on the others with their shares of its loss
    result = train(run_config("training.max_steps=3"), progress=False, callbacks=[_NanGradientAt(step=2)])
    logs = {h["step"]: h for h in _losses(result["history"])}
    assert result["nan_skipped"] == 1 and not list(Path(run_config().training.output_dir).glob("nan_batches/*"))
    assert [math.isnan(logs[s]["loss"]) for s in (1, 2, 3)] == [False, True, False]


# The run both tests below read: 6 steps of 2 photos, a checkpoint every 3.
STOPPED_AT_3 = ("training.max_steps=6", "training.save_steps=3", "training.per_device_batch_size=2",
                "data.teacher_ratio=0.5")


@pytest.fixture(scope="module")
def stopped_at_3(tiny_model_dir, small_dataset, tmp_path_factory) -> dict:
    """STOPPED_AT_3 trained once for the module: never stopped (`whole`), and stopped after step 3 as a kill leaves it
    (`first`), then resumed (`resumed`, its folder `run`). The tests only read it; one that trains on needs a copy."""
    root = tmp_path_factory.mktemp("stopped-at-3")
    make = run_config_at(tiny_model_dir, small_dataset, root / "run")
    whole = train(make(*STOPPED_AT_3, f"training.output_dir={root / 'whole'}"), progress=False)
    first = train(make(*STOPPED_AT_3), progress=False, callbacks=[StopAt(3)])
    resumed = train(make(*STOPPED_AT_3), resume=True, progress=False)
    return {"whole": whole, "first": first, "resumed": resumed, "run": root / "run"}


def test_resume_continues_the_loss_curve_exactly(stopped_at_3):
    whole, history = stopped_at_3["whole"]["history"], stopped_at_3["resumed"]["history"]
    full, resumed = _losses(whole), _losses(history)
    a = {h["step"]: h["loss"] for h in full}
    b = {h["step"]: h["loss"] for h in resumed if h["step"] > 3}
    assert sorted(b) == [4, 5, 6]
    for step, loss in b.items():
        assert loss == pytest.approx(a[step], abs=1e-5), step
    # The run's mean loss over its six steps, as the run never stopped logs it; before, the mean of steps 4-6 alone.
    [mean] = [h["train_loss"] for h in history if "train_loss" in h]
    assert mean == pytest.approx(next(h["train_loss"] for h in whole if "train_loss" in h), abs=1e-5)


# 2: base.yaml's accumulation, each step closed over its micro-batches; it checks what 1 checks (the window's sums carried
# by the checkpoint), and failed on the code before they were, as 1 did: 1 runs with the slow tests
@pytest.mark.parametrize("accumulation", [pytest.param(1, marks=pytest.mark.slow), 2])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_inside_a_logging_window_logs_every_term_as_a_run_never_stopped(run_config, tmp_path, accumulation):
    # Logged every 2 steps, resumed from step 3: step 4's window holds step 3, trained before the stop.
    whole, resumed = (_losses(r["history"]) for r in whole_and_resumed(
        run_config, tmp_path, "training.max_steps=6", "training.save_steps=3", "training.logging_steps=2",
        f"training.gradient_accumulation_steps={accumulation}", "data.teacher_ratio=0.5"))
    assert [h["step"] for h in resumed] == [h["step"] for h in whole] == [2, 4, 6]
    for a, b in zip(whole, resumed):
        terms = {k: v for k, v in a.items() if k.startswith(("loss", "lm_")) or k == "nan_skipped"}
        assert {k: b.get(k) for k in terms} == pytest.approx(terms, abs=1e-6), a["step"]


def _end_of_training(history):
    [end] = [h for h in history if "train_runtime" in h]
    return end


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_speeds_a_resumed_run_ends_with_are_of_the_steps_it_trained_and_name_them(run_config, stopped_at_3,
                                                                                      tmp_path):
    # Stopped at step 3 of 6, resumed: the resumed process timed steps 4-6, two photos each.
    cfg = run_config(*STOPPED_AT_3)
    first = _end_of_training(stopped_at_3["first"]["history"])
    end = _end_of_training(stopped_at_3["resumed"]["history"])
    for logged in (first, end):
        runtime = logged["train_runtime"]
        assert logged["train_runtime_steps"] == 3
        assert logged["train_steps_per_second"] == pytest.approx(3 / runtime, rel=1e-3, abs=1e-3)
        assert logged["train_samples_per_second"] == pytest.approx(6 / runtime, rel=1e-3, abs=1e-3)
    # Resumed from the checkpoint of its last step (killed saving final/), a process trains none: no speed, not 0/s
    shutil.copytree(stopped_at_3["run"], tmp_path / "run", symlinks=True)
    shutil.rmtree(tmp_path / "run" / "final")
    idle = _end_of_training(train(cfg, resume=True, progress=False)["history"])
    assert idle["train_runtime_steps"] == 0
    assert "train_steps_per_second" not in idle and "train_samples_per_second" not in idle


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_lora_trains_only_adapters_and_head_and_merge_keeps_logits(run_config, tmp_path):
    cfg = run_config("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "training.max_steps=3")
    run = build_run(cfg)
    trainable = [n for n, p in run.model.named_parameters() if p.requires_grad]
    # New modules (the head, the vision positions) train in full; the VLM's own weights only through LoRA.
    assert trainable and all("lora_" in n or n.startswith(("detection_head.", "vision_positions.")) for n in trainable)
    result = train(cfg, progress=False)
    adapter_model, processor, _, _, _ = load_model(result["final"])
    chosen = ChosenThresholds(VerdictThresholds(0.2, 0.7), 0.8, 0.9, 0.8, 0.9, 10, 4, [], "val.jsonl")
    chosen.save(result["final"])
    scale = ChosenTileScale(0.5, "AP50", 1.0, [], 2, "wide.jsonl")
    scale.save(result["final"])
    merged_dir = merge_lora(result["final"], tmp_path / "merged")
    merged_model = load_model(merged_dir)[0]
    # The verdict's thresholds stay with the model: the merged folder's files differ, its thresholds still apply.
    kept = ChosenThresholds.load(merged_dir)
    assert replace(kept, model=None) == chosen and kept.model == trained_identity(merged_dir) is not None
    assert for_faults(kept, None, [], trained_identity(merged_dir)) == ((kept, None), [])
    kept_scale = ChosenTileScale.load(merged_dir)
    assert replace(kept_scale, model=None) == scale and kept_scale.model == kept.model
    batch = run.collator([run.train_dataset[0], run.train_dataset[1]])
    kw = {k: getattr(batch, k) for k in ("input_ids", "attention_mask", "position_ids", "pixel_values", "image_grid_thw")}
    with torch.no_grad():
        a = adapter_model.vlm(**kw, use_cache=False).logits
        m = merged_model.vlm(**kw, use_cache=False).logits
    assert (a - m).abs().max().item() <= 1e-4
    lora_b = [p for n, p in adapter_model.vlm.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # the adapters really trained


@pytest.mark.parametrize("vision", [False, True], ids=["language model adapters", "vision adapters too"])
def test_a_lora_run_names_each_rate_it_leaves_nothing_to_train_and_its_adapters_learn_at_the_llm_rate(
        run_config, caplog, vision):
    # Before: training.lr.merger (and training.lr.vision without model.lora.vision) trained nothing, unsaid
    cfg = run_config("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", f"model.lora.vision={vision}")
    with caplog.at_level(logging.WARNING):
        run = build_run(cfg)
    empty = {g for g, n in summarize_groups(run.model).items() if n.trainable == 0 and g in GROUPS}
    named = {g for g in GROUPS if f"training.lr.{g} (0.001) trains nothing under model.lora.enabled" in caplog.text}
    assert named == empty == ({"merger"} if vision else {"vision", "merger"})
    # LoRA's adapters learn at training.lr.llm (and training.lr.vision), never at training.lr.adapter
    learning = {group_of(n) for n, p in run.model.named_parameters() if p.requires_grad and "lora_" in n}
    assert learning == ({"llm", "vision"} if vision else {"llm"})


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_detection_freeze_epochs_holds_the_head(run_config):
    cfg = run_config("training.max_steps=-1", "training.num_epochs=1", "training.detection_freeze_epochs=1")
    start = AtStart()
    result = train(cfg, progress=False, callbacks=[start])
    before = {n.removeprefix("detection_head."): p for n, p in start.weights.items() if n.startswith("detection_head.")}
    head = load_model(result["final"])[0].detection_head
    assert before.keys() == dict(head.named_parameters()).keys()
    for n, p in head.named_parameters():
        assert torch.equal(p, before[n]), n
    assert all("loss_bbox" not in h for h in _losses(result["history"]))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_fractional_detection_freeze_holds_the_head_for_that_share_of_an_epochs_steps(run_config, caplog):
    # 8 photos in batches of 2: 4 steps an epoch, so half an epoch is 2 steps (it held the head for the whole epoch)
    cfg = run_config("training.max_steps=-1", "training.num_epochs=1", "training.detection_freeze_epochs=0.5")
    with caplog.at_level(logging.WARNING):
        logs = _losses(train(cfg, progress=False)["history"])
    assert [("loss_bbox" in h) for h in logs] == [False, False, True, True]
    assert "detection_freeze_epochs" not in caplog.text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_detection_freeze_as_long_as_the_run_says_the_head_never_trains(run_config, caplog):
    # max_steps 3, an epoch 4 steps: the config alone cannot tell, so the start says it once the steps are counted
    cfg = run_config("training.max_steps=3", "training.detection_freeze_epochs=0.75")
    with caplog.at_level(logging.WARNING):
        logs = _losses(train(cfg, progress=False)["history"])
    assert not any("loss_bbox" in h for h in logs)
    said = " ".join(caplog.text.split())
    assert ("training.detection_freeze_epochs 0.75 holds the detection head back for 3 steps (4 an epoch), the whole "
            "run of 3 steps: the head never trains") in said


def test_qlora_without_cuda_and_bitsandbytes_fails_with_a_clear_message(run_config):
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available():
        pytest.skip("this machine can run QLoRA")
    with pytest.raises(ValueError, match="needs a CUDA GPU and `pip install bitsandbytes`"):
        build_run(run_config("model.lora.enabled=true", "model.lora.bits=4"))


def test_the_run_applies_data_max_length(run_config):
    """build_run hands data.max_length to the datasets: no sample is longer, and what cannot fit is refused."""
    run = build_run(run_config("data.max_length=400", "data.teacher_ratio=0"))
    assert run.train_dataset.max_length == 400
    assert max(len(run.train_dataset[i].input_ids) for i in range(len(run.train_dataset))) <= 400
    with pytest.raises(ValueError, match=r"train\.jsonl:\d+.*data\.max_length"):
        build_run(run_config("data.max_length=60", "data.teacher_ratio=0"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_run_warns_when_generate_mode_would_cut_its_longest_answer(run_config, caplog):
    """The longest training answer against inference.max_new_tokens: a budget under it is named at start-up."""
    import logging

    from bbuvl.encode.chat import answer_objects

    run = build_run(run_config("data.max_length=2000", "data.teacher_ratio=0"))
    ds = run.train_dataset
    lengths = [len(ds.encoder.answer_ids([json.dumps(answer_objects(s.student.record, ds.contract), ensure_ascii=False)])[0])
               for s in ds.sources]
    assert ds.answer_tokens == lengths and max(lengths) > 0
    with caplog.at_level(logging.WARNING):
        build_run(run_config("data.max_length=2000", "data.teacher_ratio=0", f"inference.max_new_tokens={max(lengths) + 1}"))
    assert "inference.max_new_tokens" not in caplog.text
    with caplog.at_level(logging.WARNING):
        build_run(run_config("data.max_length=2000", "data.teacher_ratio=0", f"inference.max_new_tokens={max(lengths)}"))
    longer = sum(n == max(lengths) for n in lengths)
    assert (f"{longer} of {len(lengths)} training answers (the longest {max(lengths)} tokens) are longer than "
            f"inference.max_new_tokens ({max(lengths)})") in caplog.text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_gradient_checkpointing_recomputes_the_llm_layers_and_a_run_trains(run_config):
    from bbuvl.model.shared_prefix import checkpointed
    from bbuvl.model.vlm import core_model

    cfg = run_config("training.gradient_checkpointing=true", "training.max_steps=2", "data.teacher_ratio=0")
    start = AtStart()
    train(cfg, progress=False, callbacks=[start])
    assert checkpointed(core_model(start.model.vlm).model)
    history = json.loads((Path(cfg.training.output_dir) / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses and all(math.isfinite(v) for v in losses)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_fault_weight_weighs_the_training_labels_the_hierarchy_file_marks_as_faults(run_config, tmp_path, caplog):
    from bbuvl.data.faults import Faults
    from bbuvl.data.layout import data_labels
    from bbuvl.data.labels import Hierarchy

    cfg = run_config("loss.fault_weight=3")
    run = build_run(cfg)
    tok = run.processor.tokenizer
    labels = data_labels((cfg.data.train, cfg.data.val), Hierarchy.load(None))
    faulty = [label for label in labels if Faults.load().is_fault(label)]
    assert faulty and len(faulty) < len(labels)  # the small dataset holds faults and parts installed right
    assert run.model.fault_captions == {tuple(tok.encode(label, add_special_tokens=False)) for label in faulty}
    # A sample's objects weigh 3 where their caption is a fault's, 1 elsewhere
    sample = run.train_dataset[0]
    weights = run.model._fault_weights(sample.det_caption_ids)["weights"].tolist()
    assert weights == [3.0 if tuple(c.tolist()) in run.model.fault_captions else 1.0 for c in sample.det_caption_ids]
    assert build_run(run_config()).model.fault_captions == frozenset()  # off by default: nothing weighed

    # A hierarchy file with no fault marked: the option changes nothing, and the run says so, naming the file
    unmarked = json.loads((Path(__file__).parents[2] / "src/bbuvl/resources/hierarchy.json").read_text(encoding="utf-8"))

    def unmark(node):
        if isinstance(node, dict):
            node.pop("fault", None)
            for value in node.values():
                unmark(value)

    unmark(unmarked)
    path = tmp_path / "no_faults.json"
    path.write_text(json.dumps(unmarked, ensure_ascii=False), encoding="utf-8")
    assert not Faults.load(path)
    with caplog.at_level(logging.WARNING, logger="bbuvl.train.trainer"):
        unweighed = build_run(run_config("loss.fault_weight=3", f"data.hierarchy={path}"))
    assert unweighed.model.fault_captions == frozenset()
    assert any("no training label is a fault" in r.getMessage() and "no_faults.json" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_samples_the_collator_drops_are_counted_where_training_runs_also_with_loader_workers(run_config):
    """Each loader worker holds its own copy of the collator: the run's count comes from the batches themselves.

    Training refuses a config whose batches could overflow a budget; the collator's drop is the guard behind that
    check, lowered here on a built run to make it fire."""
    from bbuvl.train.trainer import make_trainer

    run = build_run(run_config("data.num_workers=2", "training.max_steps=2", "data.teacher_ratio=0"))
    run.collator.max_vision_tokens_per_batch = 1  # below any photo: each batch of 2 keeps its first sample only
    trainer = make_trainer(run, progress=False)
    trainer.train()
    assert trainer.budget_dropped == 2 and run.collator.budget.dropped == 0  # the workers' copies counted, not this one


@pytest.mark.parametrize("key", ["val", "teachers"])
def test_a_data_file_the_config_names_that_is_not_there_is_a_startup_error(run_config, tmp_path, key):
    missing = tmp_path / f"typo_{key}.jsonl"
    with pytest.raises(ValueError, match=f"data.{key} {missing}: no such file.*data.{key}: null"):
        build_run(run_config(f"data.{key}={missing}"))
    assert not (tmp_path / "run").exists()


def test_bf16_where_nothing_computes_in_it_is_a_startup_error_naming_the_keys(run_config, tmp_path):
    from transformers.utils import is_torch_bf16_gpu_available

    if is_torch_bf16_gpu_available():
        pytest.skip("this machine trains in bf16")
    with pytest.raises(ValueError, match=r"training.bf16 is true.*training.bf16=false.*training.use_cpu=true"):
        train(run_config("training.bf16=true", "training.use_cpu=false"), progress=False)
    assert not (tmp_path / "run").exists()  # refused before the output folder, and before the model loads
    # A previous run there: refused as such without --overwrite, and kept with it (the bf16 refusal comes first)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.json").write_text("[]", encoding="utf-8")
    with pytest.raises(RunDirError, match="holds another run"):
        train(run_config("training.bf16=true", "training.use_cpu=false"), progress=False)
    with pytest.raises(ValueError, match=r"training.bf16 is true"):
        train(run_config("training.bf16=true", "training.use_cpu=false"), progress=False, overwrite=True)
    assert (tmp_path / "run" / "history.json").read_text(encoding="utf-8") == "[]"
    # The dry run refuses it as the start does: it ran its batch in float32 and said nothing before
    from bbuvl.train.trainer import dry_run

    with pytest.raises(ValueError, match=r"training.bf16 is true"):
        dry_run(run_config("training.bf16=true", "training.use_cpu=false"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_final_save_killed_half_way_leaves_none_of_its_files_in_the_next_runs_final(run_config, tmp_path):
    # What a run killed while saving final/ leaves in its staging folder: here a part the next run does not have.
    staging = tmp_path / "run" / ".final.saving"
    staging.mkdir(parents=True)
    (staging / "vision_positions.safetensors").write_bytes(b"another run's positions")
    result = train(run_config("model.vision_positions=false", f"training.output_dir={tmp_path / 'run'}"),
                   progress=False)
    final = Path(result["final"])
    assert not (final / "vision_positions.safetensors").exists()
    assert "vision_positions.safetensors" not in (final / "content_digest.json").read_text(encoding="utf-8")
    assert not staging.exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_lora_checkpoint_finds_its_base_from_any_folder_and_names_it_when_it_is_gone(run_config, tiny_model_dir,
                                                                                      tmp_path, monkeypatch):
    shutil.copytree(tiny_model_dir, tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    cfg = run_config("model.path=base", "model.lora.enabled=true", "model.lora.r=4", "training.max_steps=1",
                     f"training.output_dir={tmp_path / 'run'}")
    final = Path(train(cfg, progress=False)["final"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative base would be looked for here, then on the hub
    assert load_model(final)[2].model.path == str(tmp_path / "base")
    (tmp_path / "base").rename(tmp_path / "moved")
    with pytest.raises(CheckpointError, match=r"a LoRA checkpoint whose base model .*base' \(model.path in its bbuvl.yaml\) "
                                              r"is not a folder here"):
        load_model(final)


@pytest.mark.parametrize("name", [".final.saving", ".final.old"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_link_where_final_is_staged_is_removed_as_a_link_and_the_run_saves_its_final(run_config, tmp_path, name):
    """A link named like the staging folder of final/ failed the run once it had trained every step ("Cannot call
    rmtree on a symbolic link", naming no path), with no final/ saved, and again at every resume."""
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine", encoding="utf-8")
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(kept)
    result = train(run_config("training.max_steps=1", f"training.output_dir={out}"), progress=False)
    assert (Path(result["final"]) / "model.safetensors").is_file()
    assert not os.path.lexists(out / name)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_groups_learning_rate_is_logged_beside_hfs_first_groups(run_config):
    # Before: learning_rate alone, the first group's (vision's): an llm rate three times it appeared nowhere
    result = train(run_config("training.lr.vision=1e-3", "training.lr.llm=3e-3", "training.max_steps=2",
                              "training.lr_scheduler=constant"), progress=False)
    logged = next(h for h in result["history"] if "learning_rate" in h)
    assert logged["lr/llm"] == pytest.approx(3e-3) and logged["lr/vision"] == pytest.approx(1e-3)
    assert logged["learning_rate"] == pytest.approx(1e-3)
