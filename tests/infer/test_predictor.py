"""Predictor: the coordinate contract end to end, prefill-only vision, resumable streaming, bad images."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.infer.batch import PredictJob, photo_names, run_predictions
from bbuvl.infer.output import repair_output
from bbuvl.infer.predictor import Predictor
from bbuvl.model.vlm import core_model


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_contract_and_prompt_come_from_the_checkpoint(predictor, trained_checkpoint):
    assert predictor.contract == CoordinateContract.load(trained_checkpoint)
    assert predictor.contract.min_pixels == 12544 and predictor.contract.max_pixels == 50176
    assert "JSON" in predictor.prompt.system


@pytest.mark.parametrize("mode", ["generate", "head", "name"])
def test_predictions_are_in_the_stored_images_pixels(predictor, photos, mode):
    results = predictor.predict(photos, mode=mode)
    for path, r in zip(photos, results):
        W, H = Image.open(path).size
        assert (r.width, r.height) == (W, H)
        for d in r.objects:
            x1, y1, x2, y2 = d.bbox_2d
            assert 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H
            assert 0.0 <= d.score <= 1.0 and isinstance(d.label, str)
    if mode in ("head", "name"):  # objectness threshold 0 in this checkpoint: every query comes back
        assert all(len(r.objects) == 8 for r in results)


def test_name_mode_keeps_the_heads_boxes_and_names_each_from_the_vocabulary(predictor, photos):
    head = predictor.predict(photos[:2], mode="head", nms_iou=None)
    named = predictor.predict(photos[:2], mode="name", nms_iou=None)
    for h, n in zip(head, named):
        assert sorted(map(tuple, (d.bbox_2d for d in h.objects))) == sorted(map(tuple, (d.bbox_2d for d in n.objects)))
        assert {d.label for d in n.objects} <= set(predictor.prompt.labels)


def test_the_answer_prefix_is_the_trained_tokenisation_cut_before_the_label(predictor):
    from bbuvl.infer.constrained import LABEL
    from bbuvl.infer.modes.name import answer_prefix

    box = [3, 40, 120, 96]
    ids, text = answer_prefix(predictor, box)
    full = json.dumps([{"bbox_2d": box, "label": predictor.prompt.labels[0]}], ensure_ascii=False)
    assert predictor.tokenizer.encode(full, add_special_tokens=False)[: len(ids)] == ids
    assert full.startswith(text) and text.startswith('[{"bbox_2d": [3, 40, 120, 96]')
    state = predictor.labels_constraint().grammar((224, 224)).run(text.encode())
    assert state is not None and state.phase <= LABEL


@pytest.mark.parametrize("constrained", [True, False])
def test_answers_begun_after_a_prompt_read_once_decode_as_the_full_rows_do(predictor, photos, tiny_family, constrained):
    from bbuvl.infer.continuations import can_continue_prompt
    from bbuvl.infer.modes.name import answer_prefix

    p = predictor.prepare(photos[0])
    prompt = predictor.student_sample(p)
    frame = predictor.contract.answer_extent(p.size)
    # Prefixes of different token lengths: each row's own tokens are placed after a masked gap of its own width.
    W, H = frame
    begun = [answer_prefix(predictor, box) for box in ([3, 4, 5, 6], [W // 2, H // 2, W - 1, H - 1], [12, 40, 96, 60])]
    assert len({len(ids) for ids, _ in begun}) > 1
    steps = 12

    def constraint():
        if not constrained:
            return None
        grammar = predictor.labels_constraint().grammar(frame)
        states = [grammar.run(text.encode()) for _, text in begun]
        return predictor.labels_constraint().processor([frame] * len(begun), steps, states)

    rows = predictor.collator([prompt.continued(ids) for ids, _ in begun]).to(predictor.device)
    full_ids, full_logp = predictor.greedy(rows, constraint(), steps)
    ids, logp = predictor.greedy_continued(prompt, [ids for ids, _ in begun], constraint(), steps)
    assert torch.equal(ids, full_ids)
    assert torch.allclose(logp, full_logp, atol=1e-5)
    # Read once wherever every LLM layer is full attention; the recurrent layers of Qwen3.5 decode full rows.
    assert can_continue_prompt(predictor.model.vlm) == (tiny_family != "qwen3_5")


def test_a_misspelt_prediction_option_is_an_error_naming_the_option_it_resembles(predictor, photos):
    for call in (lambda: predictor.predict(photos[:1], "head", score_treshold=0.5),
                 lambda: predictor.predict_lines(photos[:1], "head", score_treshold=0.5)):
        with pytest.raises(ValueError, match="unknown prediction option 'score_treshold' .*did you mean 'score_threshold'"):
            call()
    with pytest.raises(ValueError, match="unknown prediction option 'colour'"):
        predictor.options(colour="red")
    with pytest.raises(ValueError, match="prediction option 'score_threshold'.*less than or equal to 1"):
        predictor.options(score_threshold=1.5)  # the config's own bounds
    assert predictor.options(score_threshold=0.25).score_threshold == 0.25
    assert predictor.options() == predictor.options(**predictor.options().model_dump())  # the checkpoint's defaults


def test_every_declared_mode_has_one_module_that_runs_it_and_no_module_is_undeclared():
    import pkgutil

    import bbuvl.infer.modes as modes
    from bbuvl.config import PREDICT_MODES, InferenceConfig
    from bbuvl.infer.modes import runner

    assert {m.name for m in pkgutil.iter_modules(modes.__path__)} == set(PREDICT_MODES)
    assert all(callable(runner(name)) for name in PREDICT_MODES)
    assert set(InferenceConfig.model_fields["mode"].annotation.__args__) == set(PREDICT_MODES)


def test_vision_tower_runs_only_in_prefill(predictor, photos):
    visual = core_model(predictor.model.vlm).model.visual
    calls = []
    handle = visual.register_forward_hook(lambda *a: calls.append(1))
    try:
        r = predictor.predict(photos[:2], mode="generate", max_new_tokens=12)
    finally:
        handle.remove()
    assert len(calls) == 1  # one batched prefill; the 11 decoding steps reuse the cache
    assert all(r_.raw is not None for r_ in r)


@pytest.mark.parametrize("mode", ["head", "generate"])
def test_prescaled_and_original_photos_give_the_same_boxes(predictor, photos, tmp_path, mode):
    """The same photo stored at original size and pre-scaled to its model frame: same boxes, each in its own pixels."""
    src = photos[0]
    img = Image.open(src).convert("RGB")
    msize = predictor.contract.model_size(img.size)
    small = tmp_path / "prescaled.png"  # PNG: the pre-scaled copy holds exactly the pixels the model sees
    img.resize(msize, Image.BICUBIC).save(small)
    a = predictor.predict([src], mode=mode, max_new_tokens=48)[0].objects
    b = predictor.predict([str(small)], mode=mode, max_new_tokens=48)[0].objects
    assert len(a) == len(b)
    sx, sy = img.width / msize[0], img.height / msize[1]
    for da, db in zip(a, b):
        back = [db.bbox_2d[0] * sx, db.bbox_2d[1] * sy, db.bbox_2d[2] * sx, db.bbox_2d[3] * sy]
        assert max(abs(u - v) for u, v in zip(da.bbox_2d, back)) <= 2.0
        assert da.label == db.label


def test_corrupt_and_missing_images_get_error_lines_and_the_run_goes_on(predictor, photos, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(Image.open(photos[0]).tobytes()[:100])
    paths = [photos[0], str(bad), str(tmp_path / "missing.jpg"), photos[1]]
    out = tmp_path / "pred.jsonl"
    stats = run_predictions(PredictJob(paths, out, "head", 2), lambda c: predictor.predict_lines(c, "head"))
    lines = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert [l["image"] for l in lines] == paths and stats["errors"] == 2
    assert lines[0]["error"] is None and lines[3]["error"] is None and lines[3]["objects"]
    assert "bad.jpg" in lines[1]["error"] and "not found" in lines[2]["error"]


def test_resume_skips_done_images_and_drops_a_partial_line(predictor, photos, tmp_path):
    out = tmp_path / "pred.jsonl"
    run_predictions(PredictJob(photos[:1], out, "head", 1), lambda c: predictor.predict_lines(c, "head"))
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"image": "' + photos[1] + '", "objec')  # killed mid-write
    assert repair_output(out)[0] == {photos[0]}
    calls = []
    run_predictions(PredictJob(photos, out, "head", 1), lambda c: calls.append(c) or predictor.predict_lines(c, "head"))
    assert [c[0] for c in calls] == photos[1:]
    assert [json.loads(l)["image"] for l in out.read_text().splitlines()] == photos


@pytest.mark.slow
def test_predict_killed_at_random_points_then_rerun_has_one_line_per_image(trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "pred.jsonl"
    cmd = [sys.executable, "-m", "bbuvl.cli", "predict", "-c", str(trained_checkpoint), "-i", str(small_dataset / "train.jsonl"),
           "-o", str(out), "--mode", "generate", "--batch-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in (7.0, 9.5):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    inputs = photo_names(small_dataset / "train.jsonl")  # named as the dataset names them, as the lines are
    images = [json.loads(l)["image"] for l in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(images) == sorted(inputs) and len(images) == len(set(images))


class _CountingTokenizer:
    """The real tokenizer, counting how many ids it is asked to decode."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoded = tokenizer, 0

    def decode(self, ids, **kw):
        self.decoded += len(ids)
        return self.tokenizer.decode(ids, **kw)


def test_token_char_ends_match_prefix_decoding_and_stay_linear(tiny):
    from bbuvl.infer.predictor import token_char_ends

    tok = tiny[1].tokenizer
    text = '[{"bbox_2d": [12, 40, 98, 77], "label": "螺丝连接点/BBU安装螺丝/连接正确"}, {"bbox_2d": [5, 6, 7, 8], "label": "挡风板/已安装"}]' * 4
    ids = tok(text, add_special_tokens=False)["input_ids"]
    counting = _CountingTokenizer(tok)
    ends = token_char_ends(counting, ids)
    assert ends[-1] == len(tok.decode(ids, skip_special_tokens=True)) == len(text)
    assert ends == sorted(ends)
    for k in range(len(ids)):
        prefix = tok.decode(ids[: k + 1], skip_special_tokens=True)
        if not prefix.endswith("\ufffd"):  # where the prefix is whole characters, the offsets agree exactly
            assert ends[k] == len(prefix), k
    assert counting.decoded <= 12 * len(ids)  # a window per token, not the whole prefix (that would be ~n^2/2)
