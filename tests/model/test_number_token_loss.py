"""The number-token loss (model/number_token_loss.py, docs/number_token_loss.md): its values, where it applies, the
tokenizers it accepts and refuses, and that at weight 0 it changes nothing."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer
from transformers.models.qwen3_5.tokenization_qwen3_5 import Qwen3_5Tokenizer
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config, load_config
from bbuvl.encode.chat import IGNORE_INDEX, SPAN_NONE, SPAN_STUDENT, SPAN_TEACHER
from bbuvl.model.loading import load_processor
from bbuvl.model.number_token_loss import digit_token_ids, span_number_token_loss
from bbuvl.model.vlm import BBUVLModel
from bbuvl.tiny.tokenizer import train_tokenizer
from bbuvl.train.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore")

FAMILY_IDS = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")


def _losses(history: list[dict]) -> list[dict]:
    return [h for h in history if "loss" in h and "train_runtime" not in h]


# --- the term's values -------------------------------------------------------------------------------------------

def test_known_answer_on_a_hand_computed_case():
    # Vocabulary of 12: ids 2..11 are the digits 0..9 (deliberately not at their own value), 0 and 1 are words.
    digit_ids = torch.arange(2, 12)
    lm_head = torch.nn.Linear(2, 12, bias=False)
    with torch.no_grad():
        lm_head.weight.zero_()
        lm_head.weight[digit_ids, 0] = torch.arange(10.0)  # digit k's logit = k * h0
        lm_head.weight[0, 1] = lm_head.weight[1, 1] = 50.0  # words take all of the full softmax; ignored here
    ln2 = math.log(2)
    # Position t predicts labels[t + 1]: t=0 -> '3' (student), t=1 -> a word, t=2 -> '9' and t=3 -> '0' (teacher);
    # t=4 predicts nothing, t=5 -> '5' but unsupervised (IGNORE_INDEX).
    hidden = torch.tensor([[[0.0, 1.0], [7.0, 1.0], [ln2, 1.0], [-ln2, 1.0], [3.0, 1.0], [0.0, 0.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 5, 0, 11, 2, IGNORE_INDEX]])
    spans = torch.tensor([[SPAN_NONE, SPAN_STUDENT, SPAN_STUDENT, SPAN_TEACHER, SPAN_TEACHER, SPAN_NONE]])
    teacher, student = span_number_token_loss(hidden, lm_head, labels, spans, digit_ids)
    # t=0: h0 = 0, uniform over the digits: 0.1 * sum_k |k - 3| = 0.1 * 27.
    assert float(student) == pytest.approx(2.7, abs=1e-5)
    # t=2: p_k = 2^k / 1023, target 9: sum_k 2^k (9 - k) / 1023 = 1013 / 1023; t=3: p_k = 2^-k, target 0, the mirror
    # image: 1013 / 1023 again.
    assert float(teacher) == pytest.approx(2 * 1013 / 1023, abs=1e-5)


def test_a_near_miss_costs_less_than_a_far_one_and_a_hit_costs_nothing():
    digit_ids = torch.arange(10)
    lm_head = torch.nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        lm_head.weight.copy_(torch.eye(10) * 30.0)  # hidden one-hot at digit d: all the mass on d
    labels = torch.tensor([[IGNORE_INDEX, 4]])
    spans = torch.tensor([[SPAN_NONE, SPAN_STUDENT]])

    def cost(predicted: int) -> float:
        hidden = torch.zeros(1, 2, 10)
        hidden[0, 0, predicted] = 1.0
        return float(span_number_token_loss(hidden, lm_head, labels, spans, digit_ids)[1])

    assert cost(4) == pytest.approx(0.0, abs=1e-5)
    assert cost(3) == pytest.approx(1.0, abs=1e-5) and cost(5) == pytest.approx(1.0, abs=1e-5)
    assert cost(9) == pytest.approx(5.0, abs=1e-5)


def test_a_batch_without_digits_gives_zeros_that_backpropagate():
    lm_head = torch.nn.Linear(4, 12)
    hidden = torch.randn(1, 3, 4, requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])
    spans = torch.tensor([[SPAN_NONE, SPAN_STUDENT, SPAN_STUDENT]])
    teacher, student = span_number_token_loss(hidden, lm_head, labels, spans, torch.arange(2, 12))
    assert float(teacher) == float(student) == 0.0
    (teacher + student).backward()
    assert hidden.grad is not None and not hidden.grad.any()


# --- tokenizers ----------------------------------------------------------------------------------------------------

def _digit_merging_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with GPT-2's pre-tokeniser, which keeps a number whole, so it learns merges like '12'."""
    bpe = Tokenizer(BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([json.dumps(list(range(2000)))] * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe)


def _digit_merging_model(tiny_model_dir: Path, dst: Path) -> Path:
    """The tiny checkpoint with a tokenizer that writes '12' as one token (its class read from tokenizer.json as is)."""
    shutil.copytree(tiny_model_dir, dst)
    data = json.loads((dst / "tokenizer.json").read_text(encoding="utf-8"))
    split = data["pre_tokenizer"]["pretokenizers"][0]["pattern"]
    split["Regex"] = split["Regex"].replace(r"\p{N}|", r"\p{N}{1,3}|")  # Llama 3's grouping of up to 3 digits
    first, second = data["model"]["merges"].pop()  # the last merge: no later one builds on its token
    data["model"]["vocab"]["12"] = data["model"]["vocab"].pop(first + second)
    data["model"]["merges"].append(["1", "2"])
    (dst / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config = json.loads((dst / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # Qwen2Tokenizer would rebuild Qwen's digit split
    (dst / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return dst


@pytest.mark.parametrize("family", FAMILY_IDS)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_every_family_tiny_tokenizer_writes_each_digit_as_its_own_token(family):
    tok = train_tokenizer(family=family)
    ids = digit_token_ids(tok)
    assert tok.convert_ids_to_tokens(ids.tolist()) == list("0123456789")


@pytest.mark.parametrize("tokenizer_class", [Qwen2Tokenizer, Qwen3_5Tokenizer])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_qwen_tokenizer_classes_split_digits_even_with_a_digit_merge_in_the_vocabulary(tokenizer_class):
    # Real Qwen2.5-VL, Qwen3-VL and Qwen3.5 checkpoints name these classes; their pre-tokeniser (\p{N}: one digit
    # a piece) is the class's own, so no merge in a checkpoint's vocabulary can join two digits.
    tiny = train_tokenizer()
    vocab = dict(tiny.get_vocab())
    vocab["12"] = len(vocab)
    merges = [tuple(m) for m in json.loads(tiny.backend_tokenizer.to_str())["model"]["merges"]] + [("1", "2")]
    tok = tokenizer_class(vocab=vocab, merges=merges)
    assert tok.convert_ids_to_tokens(tok.encode("[12, 1212]", add_special_tokens=False)).count("12") == 0
    assert len(digit_token_ids(tok)) == 10


def test_a_tokenizer_that_merges_digits_is_refused_by_name():
    tok = _digit_merging_tokenizer()
    assert any(len(t) > 1 and t.isdigit() for t in tok.convert_ids_to_tokens(tok.encode("[1234, 567]")))
    with pytest.raises(ValueError, match=r"the tokenizer of \(unnamed\) \(\w+\) writes ' ?\d+' as one token"):
        digit_token_ids(tok)


def test_building_with_a_digit_merging_tokenizer_is_refused_only_when_the_term_is_on(tiny):
    vlm, _ = tiny
    tok = _digit_merging_tokenizer()
    with pytest.raises(ValueError, match="loss.number_token"):
        BBUVLModel.build(vlm, load_config(None, ["detection.enabled=false", "loss.number_token=0.5"]), tok)
    model = BBUVLModel.build(vlm, load_config(None, ["detection.enabled=false"]), tok)  # weight 0: nothing to check
    assert model.digit_ids is None and "digit_ids" not in dict(model.named_buffers())


def test_train_refuses_a_checkpoint_whose_tokenizer_merges_digits(run_config, tiny_family, tiny_model_dir, tmp_path):
    merged = _digit_merging_model(tiny_model_dir, tmp_path / "merged")
    tokenizer = load_processor(str(merged)).tokenizer
    cfg = tmp_path / "run.yaml"
    cfg.write_text(dump_config(run_config(f"model.path={merged}", "loss.number_token=0.5")), encoding="utf-8")
    if tiny_family == "qwen3_5":
        # transformers loads every `qwen3_5` checkpoint with Qwen3_5Tokenizer, whatever its tokenizer_config.json
        # names (its MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS), and that class splits each digit itself: no Qwen3.5
        # checkpoint merges digits, so the term has ten digit tokens and trains.
        assert type(tokenizer) is Qwen3_5Tokenizer
        assert tokenizer.convert_ids_to_tokens(digit_token_ids(tokenizer).tolist()) == list("0123456789")
        result = CliRunner().invoke(app, ["train", str(cfg)])
        assert result.exit_code == 0 and (tmp_path / "run" / "final").is_dir(), result.output
        return
    assert "12" in tokenizer.convert_ids_to_tokens(tokenizer.encode("[12, 34]", add_special_tokens=False))
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "loss.number_token" in text and str(merged) in text and "Traceback" not in result.output
    assert not (tmp_path / "run" / "final").exists()


# --- in training -------------------------------------------------------------------------------------------------

def _final_weights(final: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = {}
    for file in sorted(final.glob("*.safetensors")):
        weights.update({f"{file.name}:{k}": v for k, v in load_file(file).items()})
    return weights


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_weight_zero_trains_bit_identically_to_no_term_and_a_nonzero_weight_does_not(run_config, tmp_path):
    common = ("detection.enabled=false", "training.max_steps=3", "data.val=null")
    runs = {}
    for name, extra in (("absent", ()), ("zero", ("loss.number_token=0",)), ("on", ("loss.number_token=1.0",))):
        result = train(run_config(*common, *extra, f"training.output_dir={tmp_path / name}"), progress=False)
        runs[name] = (_losses(result["history"]), _final_weights(Path(result["final"])))
    (absent_logs, absent_w), (zero_logs, zero_w), (on_logs, on_w) = runs["absent"], runs["zero"], runs["on"]
    assert zero_logs == absent_logs and all("number_token" not in h for h in zero_logs)
    assert sorted(zero_w) == sorted(absent_w) and all(torch.equal(zero_w[k], absent_w[k]) for k in absent_w)
    # The same comparison sees the term when it is on: the check has teeth.
    assert any(not torch.equal(on_w[k], absent_w[k]) for k in absent_w)
    assert [h["lm_student"] for h in on_logs][0] == absent_logs[0]["lm_student"]  # the first forward is the same model


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_term_is_logged_in_history_tensorboard_and_evaluation(run_config, tmp_path):
    out = tmp_path / "logged"
    result = train(run_config("detection.enabled=false", "training.max_steps=2", "training.eval_steps=2",
                              "loss.number_token=0.5", f"training.output_dir={out}"), progress=False)
    logs = _losses(result["history"])
    assert logs and all(h["number_token"] > 0 for h in logs)
    # What is optimised is exactly what is logged: LM terms plus the weighted number-token term.
    cfg = load_config(None, [])
    for h in logs:
        expected = cfg.loss.teacher_weight * h["lm_teacher"] + cfg.loss.student_weight * h["lm_student"] + 0.5 * h["number_token"]
        assert h["loss"] == pytest.approx(expected, rel=1e-4)
    assert any("eval_number_token" in h for h in result["history"])
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert "train/number_token" in events.Tags()["scalars"]
