"""Constrained decoding: the grammar's allowed sets against brute force, budget closing, and an untrained model
that answers only valid JSON with vocabulary labels when constrained (and garbage when not)."""

import json
import random

import pytest
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.encode.chat import format_answer
from bbuvl.infer.constrained import DONE, END, LABEL, LIT, NEXT, NUM, START, AnswerConstraint, State, byte_decoder
from bbuvl.infer.parse import parse_detections
from bbuvl.infer.predictor import Predictor

FRAME = (224, 168)


@pytest.fixture(scope="module")
def labels():
    return Hierarchy.load().labels()


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny[1].tokenizer


@pytest.fixture(scope="module")
def constraint(tokenizer, labels):
    return AnswerConstraint.from_tokenizer(tokenizer, labels)


@pytest.fixture(scope="module")
def untrained_checkpoint(labels, tmp_path_factory):
    """A checkpoint of a randomly initialised tiny model (no training step), its prompt listing the full vocabulary.

    Seed 2: its greedy constrained answers contain objects (seed 0's are all `[]`, which would test little).
    """
    from bbuvl.config import load_config
    from bbuvl.encode.prompts import system_prompt
    from bbuvl.model.checkpoint import Prompt, save_checkpoint
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.model.vlm import BBUVLModel
    from bbuvl.tiny.model import build_tiny_model

    root = tmp_path_factory.mktemp("untrained")
    model_dir = build_tiny_model(root / "model", seed=2)
    vlm, processor = load_model_and_processor(str(model_dir), dtype="float32", attn_implementation="sdpa")
    cfg = load_config(None, [f"model.path={model_dir}", "model.dtype=float32", "model.min_pixels=12544",
                             "model.max_pixels=50176", "detection.enabled=false", "inference.max_new_tokens=64"])
    prompt = Prompt(system_prompt(labels, Hierarchy.load(), "zh"), labels, "zh")
    return save_checkpoint(BBUVLModel.build(vlm, cfg, processor.tokenizer), processor, cfg,
                           CoordinateContract(12544, 50176), prompt, root / "ckpt")


@pytest.fixture(scope="module")
def predictor(untrained_checkpoint):
    return Predictor.load(untrained_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def photos(small_dataset):
    """Four photos of different sizes (so each row of a batch has its own frame and left padding)."""
    paths = [str(resolve_image(small_dataset / "train.jsonl", r.image)) for r in read_records(small_dataset / "train.jsonl")]
    images = [Image.open(p).convert("RGB") for p in paths[:4]]
    return [images[0], images[1].resize((300, 140)), images[2].resize((140, 200)), images[3]]


def brute_force(grammar, state, tokenizer):
    """Allowed ids (and next states) by feeding every token's bytes through the automaton one byte at a time."""
    decoder = byte_decoder()
    added = set(tokenizer.added_tokens_decoder)
    if state.phase in (END, DONE):
        return {grammar.eos: State(DONE)}
    allowed = {}
    for token, i in tokenizer.get_vocab().items():
        if i in added:
            continue
        s = state
        for b in bytes(decoder[c] for c in token):
            s = grammar.step(s, b)
            if s is None:
                break
        if s is not None:
            allowed[i] = s
    return allowed


def random_states(grammar, rng, per_phase):
    """Up to `per_phase` states of every phase reached by random allowed-token walks (mid-number, mid-label, ...)."""
    by_phase = {}
    for _ in range(30):
        s = START
        while s.phase != DONE:
            e = grammar.entry(s)
            s = e.next_state[int(rng.choice(list(e.ids)))]
            by_phase.setdefault(s.phase, []).append(s)
    return [x for states in by_phase.values() for x in rng.sample(states, min(per_phase, len(states)))]


@pytest.mark.parametrize("frame", [FRAME, None])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_allowed_set_equals_brute_force_over_the_vocabulary(constraint, tokenizer, frame):
    grammar = constraint.grammar(frame)
    rng = random.Random(0)
    states = random_states(grammar, rng, 8) + [START]
    assert {NUM, LABEL, LIT, NEXT, END} <= {s.phase for s in states}
    for s in states:
        expected = brute_force(grammar, s, tokenizer)
        e = grammar.entry(s)
        assert set(e.ids.tolist()) == set(expected), s
        assert all(e.next_state[i] == expected[i] for i in expected)


def test_training_answers_tokenised_as_training_does_are_allowed(constraint, tokenizer, small_dataset):
    contract = CoordinateContract(12544, 50176)
    for r in read_records(small_dataset / "train.jsonl"):
        answer = format_answer(r, contract)
        grammar = constraint.grammar(contract.model_size(r.size))
        s = START
        ids = tokenizer.encode(answer, add_special_tokens=False) + [constraint.eos_token_id]
        for i in ids:
            e = grammar.entry(s)
            assert i in e.next_state, (answer, tokenizer.decode([i]))
            s = e.next_state[i]
        assert s.phase == DONE


def test_numbers_have_no_leading_zeros_and_stay_in_the_frame(constraint, tokenizer):
    grammar = constraint.grammar((50, 30))
    digits = {d: tokenizer.convert_tokens_to_ids(d) for d in "0123456789"}

    def after(text):
        s = START
        for i in tokenizer.encode(text, add_special_tokens=False):
            s = grammar.entry(s).next_state[i]
        return set(grammar.entry(s).ids.tolist())

    assert digits["0"] not in after('[{"bbox_2d": [0')  # "0" then only a separator
    assert digits["0"] not in after('[{"bbox_2d": [5')  # x1 = 50 = W leaves x2 no room: x1 < x2 <= W
    assert digits["9"] in after('[{"bbox_2d": [4')  # x1 = 49
    assert digits["0"] in after('[{"bbox_2d": [0, 0, 5')  # x2 = 50 = W
    assert digits["1"] not in after('[{"bbox_2d": [0, 0, 5')  # 51 > W
    assert digits["4"] not in after('[{"bbox_2d": [12, 3')  # 34 > H = 30
    x2_first = after('[{"bbox_2d": [12, 3, ')  # x2 in [13, 50]: two digits, the first 1..5
    assert {digits[d] for d in "12345"} <= x2_first and not {digits[d] for d in "06789"} & x2_first
    assert digits["2"] not in after('[{"bbox_2d": [12, 3, 1')  # 1x with x >= 3: 10, 11, 12 refused (no width)
    assert digits["3"] in after('[{"bbox_2d": [12, 3, 1')
    y2_first = after('[{"bbox_2d": [12, 29, 20, ')  # y1 = 29: only y2 = 30 = H has height
    assert digits["3"] in y2_first and digits["2"] not in y2_first


def test_random_walks_always_close_within_the_budget(constraint, tokenizer, labels):
    rng = random.Random(1)
    grammar = constraint.grammar(FRAME)
    floor = grammar.cost(START)
    for _ in range(300):
        budget = rng.randrange(int(floor), 120)
        s, out = START, []
        while s.phase != DONE:
            e = grammar.entry(s)
            ids = e.allowed(budget - len(out))
            i = int(rng.choice(list(ids)))
            out.append(i)
            s = e.next_state[i]
        assert len(out) <= budget
        objs = json.loads(tokenizer.decode(out[:-1]))
        assert all(o["label"] in labels and len(o["bbox_2d"]) == 4 for o in objs)


def _follow(constraint, tokenizer, target: str, budget: int) -> tuple[str, bool]:
    """A model that always prefers the next token of `target` (then the end of turn), decoded through the processor
    with `budget` new tokens: the answer it wrote, and whether the processor marked it cut."""
    import torch

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    wanted = tokenizer(target, add_special_tokens=False)["input_ids"] + [eos]
    processor = constraint.processor([FRAME], budget)
    out: list[int] = []
    while len(out) < budget and (not out or out[-1] != eos):
        scores = torch.zeros(1, len(tokenizer))
        scores[0, wanted[len(out)] if len(out) < len(wanted) else eos] = 10.0
        out.append(int(processor(torch.tensor([[0, 0] + out]), scores).argmax()))
    assert out[-1] == eos, "the answer closes within the budget"
    return tokenizer.decode(out[:-1]), processor.cut[0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_near_the_budget_the_list_closes_after_the_last_whole_object(constraint, tokenizer, labels):
    """Never a shortened number or a cheaper label to fit: the objects written are the model's own, whole, and the
    answer is marked cut when the budget, not the model, ended it."""
    longest = max(labels, key=lambda label: len(tokenizer(json.dumps(label, ensure_ascii=False))["input_ids"]))
    objects = [{"bbox_2d": [101 + 11 * i, 102, 199, 167], "label": longest if i % 2 else labels[i]} for i in range(4)]
    target = json.dumps(objects, ensure_ascii=False)  # as encode/chat.py's format_answer writes an answer
    full = len(tokenizer(target, add_special_tokens=False)["input_ids"]) + 1
    written = []
    for budget in range(full // 4, full + 40, 3):
        text, cut = _follow(constraint, tokenizer, target, budget)
        answer = json.loads(text)
        assert answer == objects[:len(answer)], (budget, text)  # whole objects, exactly as the model wrote them
        assert cut == (len(answer) < len(objects)), (budget, text)
        written.append(len(answer))
    assert written == sorted(written) and written[0] < len(objects) and written[-1] == len(objects)
    assert 0 < written[len(written) // 2] < len(objects)  # the budget between fits some of the objects


def test_token_bytes_spell_what_the_tokenizer_decodes(constraint, tokenizer):
    spelled = dict(zip(constraint.index.ids, constraint.index.keys))
    for i, b in spelled.items():
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a token ending inside a character: the tokenizer shows U+FFFD, bytes are what count
        assert text == tokenizer.decode([i]), i


def test_untrained_model_constrained_answers_always_parse_with_vocabulary_labels(predictor, photos, labels):
    """Batched (four frame sizes, so prompts of different lengths are left-padded), greedy, never trained."""
    results = predictor.predict(photos, mode="generate", constrained=True, max_new_tokens=96)
    assert len(results) == 4
    for image, r in zip(photos, results):
        parsed = parse_detections(r.raw)
        assert parsed.ok and set(parsed.damage) <= {"duplicate"}, r.raw  # a random model repeats itself
        answer = json.loads(r.raw)
        assert isinstance(answer, list) and r.error is None
        W, H = predictor.contract.model_size(image.size)
        for o in answer:
            x1, y1, x2, y2 = o["bbox_2d"]
            assert all(isinstance(v, int) for v in o["bbox_2d"]) and 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H
        assert all(d.label in labels for d in r.objects)
        for d in r.objects:  # scores from token probabilities still work
            assert 0.0 < d.score <= 1.0
    assert sum(len(r.objects) for r in results) > 0  # it does write objects, not just "[]"


def test_untrained_model_unconstrained_writes_garbage(predictor, photos):
    results = predictor.predict(photos, mode="generate", constrained=False, max_new_tokens=32)
    assert all(not parse_detections(r.raw).ok for r in results)


def test_a_tiny_budget_still_closes_the_answer(predictor, photos):
    """This model would repeat objects up to any limit: the grammar closes the list with the last whole object."""
    written = 0
    for budget in (2, 12, 30, 60):
        for r in predictor.predict(photos[:2], mode="generate", constrained=True, max_new_tokens=budget):
            answer = json.loads(r.raw)
            assert isinstance(answer, list) and r.error is None, (budget, r.raw)
            written += len(answer)
    assert written > 0


def test_unconstrained_path_is_plain_greedy_decoding(predictor, photos):
    prepared = [predictor.prepare(p) for p in photos[:2]]
    batch = predictor.batch(prepared, with_teachers=False)
    out = predictor.model.vlm.generate(
        **{k: getattr(batch, k) for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")},
        max_new_tokens=24, do_sample=False, pad_token_id=predictor.tokenizer.pad_token_id,
        eos_token_id=predictor.tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    plain = predictor.tokenizer.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
    ours = predictor.predict(photos[:2], mode="generate", constrained=False, max_new_tokens=24)
    assert [r.raw for r in ours] == plain


def test_config_default_turns_constraint_on(predictor, photos):
    assert predictor.cfg.inference.constrained is True
    default = predictor.predict(photos[:1], mode="generate", max_new_tokens=40)[0]
    forced = predictor.predict(photos[:1], mode="generate", constrained=True, max_new_tokens=40)[0]
    assert default.raw == forced.raw


@pytest.mark.parametrize("flag, parses", [("--constrained", True), ("--no-constrained", False)])
def test_predict_command_switches_the_constraint(untrained_checkpoint, photos, tmp_path, flag, parses):
    from typer.testing import CliRunner

    from bbuvl.cli import app

    folder = tmp_path / "photos"
    folder.mkdir()
    photos[0].save(folder / "a.png")
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(untrained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "generate", "--device", "cpu", flag])
    assert result.exit_code == 0, result.output
    line = json.loads(out.read_text(encoding="utf-8"))
    assert parse_detections(line["raw"]).ok is parses


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_command_marks_and_counts_answers_the_budget_cut(untrained_checkpoint, photos, tmp_path):
    """This model repeats objects up to any limit: at 40 tokens its answers are cut, and predict says so."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(photos[:2]):
        photo.save(folder / f"{i}.png")
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(untrained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "generate", "--device", "cpu", "--max-new-tokens", "40"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    cut = [line for line in lines if line.get("cut")]
    assert cut and all(json.loads(line["raw"]) is not None for line in cut)  # cut, still whole JSON
    assert all(line["verdict"]["verdict"] != "pass" for line in cut)  # what was not written may hold a fault
    assert f"{len(cut)} of 2 answers reached the token budget (max_new_tokens 40)" in " ".join(result.output.split())
    again = CliRunner().invoke(app, ["predict", "-c", str(untrained_checkpoint), "-i", str(folder), "-o", str(out),
                                     "--mode", "generate", "--device", "cpu", "--max-new-tokens", "400"])
    assert again.exit_code != 0 and "max_new_tokens" in again.output  # another budget is another run: not mixed in


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_server_says_finish_reason_length_when_the_budget_cut_the_answer(untrained_checkpoint, photos, tmp_path):
    """OpenAI's convention on /v1/chat/completions: "length" when the budget, not the model, ended the answer."""
    import base64
    import io

    from bbuvl.serve.app import ServeSettings, create_app
    from bbuvl.serve.auth import KeyStore
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import API_KEY, running

    buf = io.BytesIO()
    photos[0].save(buf, format="PNG")
    body = json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}}]}]})
    loaded = Engine.load(untrained_checkpoint, mode="generate", device="cpu")
    answers = {}
    for budget in (40, 4000):
        engine = Engine(loaded.predictor, "generate", loaded.checkpoint, options=loaded.predictor.options(max_new_tokens=budget))
        with running(create_app(engine, KeyStore([API_KEY]), ServeSettings())) as client:
            r = client.request("POST", "/v1/chat/completions", body.encode(), {"Content-Type": "application/json"})
        assert r.status == 200, r.body
        answers[budget] = (r.json()["choices"][0]["finish_reason"], json.loads(r.json()["choices"][0]["message"]["content"]))
    assert answers[40][0] == "length" and answers[40][1]  # whole objects, then cut
    assert answers[4000][0] == "stop"  # with room, this model ends its answer itself
