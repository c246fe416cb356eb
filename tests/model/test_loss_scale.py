"""Gradient accumulation: 2 micro-batches of 1 photo train exactly like 1 batch of 2 (docs/training_loss_scale.md).

The two photos have answers of different lengths, so a mean of per-micro-batch means would give other
gradients and another logged loss than the token mean of the batch of two.
"""

import pytest
import torch
from transformers import TrainerCallback

from bbuvl.data.families import get_family
from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.model.loss_scale import LossDenominators
from bbuvl.train.param_groups import optimizer_groups
from bbuvl.train.trainer import build_run, make_trainer

pytestmark = pytest.mark.filterwarnings("ignore")

TERMS = ("loss", "lm_teacher", "lm_student", "loss_bbox", "loss_giou", "loss_objectness", "loss_caption", "loss_proposal")


@pytest.fixture(scope="module")
def two_photos(small_dataset, tmp_path_factory):
    """Two photos, with 1 and 3 objects; each is the other's teacher, so both spans differ in length."""
    records = [r for r in read_records(small_dataset / "train.jsonl") if len(r.objects) >= 3][:2]
    pick = [r.model_copy(update={"images": [str(resolve_image(small_dataset / "train.jsonl", r.image))],
                                 "objects": r.objects[:n]}) for r, n in zip(records, (1, 3))]
    path = tmp_path_factory.mktemp("two") / "train.jsonl"
    write_dataset(path, pick)
    return path


def _data(two_photos):
    return f"data.train={two_photos}", f"data.teachers={two_photos}", "data.val=null", "data.teacher_ratio=1.0"


class _Capture(TrainerCallback):
    """Parameters before training, gradients as the optimizer receives them, parameters after."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.update = {n: p.detach() - self.before[n] for n, p in model.named_parameters() if n in self.before}


def _flat(tensors: dict) -> torch.Tensor:
    return torch.cat([tensors[n].flatten().double() for n in sorted(tensors)])


def _rel(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    x, y = _flat(a), _flat(b)
    return float((x - y).norm() / y.norm())


def _one_step(run_config, two_photos, tmp_path, name, batch, accumulation, *overrides):
    cfg = run_config(*_data(two_photos), "training.max_steps=1",
                     f"training.per_device_batch_size={batch}", f"training.gradient_accumulation_steps={accumulation}",
                     "training.max_grad_norm=1e9",  # compare raw gradients: clipping would hide a scale error
                     "monitor.enabled=false", f"training.output_dir={tmp_path / name}", *overrides)
    cap = _Capture()
    trainer = make_trainer(build_run(cfg), progress=False, callbacks=[cap])
    # SGD on our LR groups: its update is proportional to the gradient. AdamW's first update is about
    # lr * sign(g), blind to a gradient-scale error, and for the few gradients below its eps (1e-8) float32
    # summation noise alone moves it by ~1e-5 relative (docs/training_loss_scale.md).
    trainer.optimizer = torch.optim.SGD(optimizer_groups(trainer.model, cfg.training.lr, cfg.training.weight_decay))
    trainer.train()
    (log,) = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    return cap, log


# The head as the demo trains it: distinct queries, the pixel level reading the decoder's box, faults weighed three times.
HEADS = {"lm": (), "head": (), "head-demo": ("detection.query_nms=0.7", "detection.pixel_points=4",
                                             "detection.pixel_box=refined", "loss.fault_weight=3")}


@pytest.mark.parametrize("collator", ["padded", "packed"])
@pytest.mark.parametrize("head", list(HEADS))
def test_two_accumulated_micro_batches_of_one_equal_one_batch_of_two(run_config, two_photos, tmp_path, collator, head,
                                                                    tiny_family):
    if collator == "packed" and not get_family(tiny_family).packs_isolated:
        pytest.skip(f"{tiny_family} cannot isolate packed samples; training refuses packing (tests/test_families.py)")
    detection = head != "lm"
    overrides = (f"data.collator={collator}", f"detection.enabled={str(detection).lower()}", *HEADS[head])
    # The test has teeth only if the photos' supervised token counts differ.
    run = build_run(run_config(*_data(two_photos), *overrides))
    alone = [LossDenominators.count([run.collator([run.train_dataset[i]])]) for i in range(2)]
    a, b = alone
    assert a.teacher_tokens != b.teacher_tokens and a.student_tokens != b.student_tokens and a.objects != b.objects, alone
    if "loss.fault_weight=3" in overrides:  # faults weighed: one photo holds one, so the weights differ between them
        weighed = [run.model._fault_weights(run.train_dataset[i].det_caption_ids).get("weights") for i in range(2)]
        assert any(w is not None and (w == 3).any() for w in weighed), weighed

    big, big_log = _one_step(run_config, two_photos, tmp_path, "b2", 2, 1, *overrides)
    acc, acc_log = _one_step(run_config, two_photos, tmp_path, "ga2", 1, 2, *overrides)

    assert _rel(acc.grads, big.grads) <= 1e-5
    assert _rel(acc.update, big.update) <= 1e-5
    assert acc_log["grad_norm"] == pytest.approx(big_log["grad_norm"], rel=1e-5)
    terms = [k for k in TERMS if k in big_log]
    assert ("loss_bbox" in terms) == detection and sorted(terms) == sorted(k for k in TERMS if k in acc_log)
    for k in terms:
        assert acc_log[k] == pytest.approx(big_log[k], rel=1e-5, abs=1e-7), k


# The language model's extra terms: each sum is divided by the step's span token counts (number_token) or its
# student tokens (coordinate, grounding), like the LM terms, so the split cannot matter; the photos write 1 and 3 boxes.
@pytest.mark.parametrize("term, overrides", [
    ("number_token", ("loss.number_token=1.0",)),
    ("coordinate", ("loss.coordinate_regression=1.0",)),
    ("grounding", ("loss.grounding_attention=1.0", "model.attn_implementation=sdpa")),
])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_lm_side_term_accumulates_like_one_batch_of_two(run_config, two_photos, tmp_path, term, overrides):
    overrides = ("data.collator=padded", "detection.enabled=false", *overrides)
    big, big_log = _one_step(run_config, two_photos, tmp_path, "b2", 2, 1, *overrides)
    acc, acc_log = _one_step(run_config, two_photos, tmp_path, "ga2", 1, 2, *overrides)
    assert big_log[term] > 0
    assert _rel(acc.grads, big.grads) <= 1e-5
    assert _rel(acc.update, big.update) <= 1e-5
    for k in ("loss", "lm_teacher", "lm_student", term):
        assert acc_log[k] == pytest.approx(big_log[k], rel=1e-5, abs=1e-7), k
