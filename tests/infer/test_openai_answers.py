"""Answers from a stock server (OpenAI-style) come back into each photo's pixels, in every family's convention."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.schema import read_records, resolve_image
from bbuvl.encode.chat import format_answer
from bbuvl.infer.openai_answers import folder_frame, read_answers, write_answers
from bbuvl.tiny.model import build_tiny_model


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def folder(request, tmp_path_factory) -> Path:
    """A stock folder of each box convention (absolute frame pixels, relative 0-1000), frame 12,544-50,176 px."""
    return build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", family=request.param)


@pytest.fixture(scope="module")
def stock_qwen2_5_vl(tmp_path_factory) -> Path:
    """A stock Qwen2.5-VL folder built once for the module: a test that edits it works on its own copy."""
    return build_tiny_model(tmp_path_factory.mktemp("stock") / "model", family="qwen2_5_vl")


def test_the_frame_is_read_from_the_folder_itself(folder):
    frame = folder_frame(folder)
    assert (frame.min_pixels, frame.max_pixels) == (12544, 50176)
    assert frame.family == json.loads((folder / "config.json").read_text())["model_type"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_answers_written_in_the_frame_come_back_as_the_photos_boxes_within_rounding(folder, small_dataset, tmp_path):
    frame = folder_frame(folder)
    records = read_records(small_dataset / "train.jsonl")[:3]
    photos = tmp_path / "photos"
    photos.mkdir()
    lines = []
    for i, record in enumerate(records):
        # A photo larger than max_pixels, so the frame is not the photo: its boxes must be scaled back.
        big = record.model_copy(update={"width": record.width * 3, "height": record.height * 3, "objects": [
            o.model_copy(update={"bbox_2d": [v * 3 for v in o.bbox_2d]}) for o in record.objects]})
        Image.open(resolve_image(small_dataset / "train.jsonl", record.images[0])).resize(big.size).save(photos / f"{i}.png")
        response = {"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": format_answer(big, frame)}, "finish_reason": "stop"}]}
        lines.append((big, {"image": f"photos/{i}.png", "response": response}))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for _, line in lines), encoding="utf-8")

    got = read_answers(answers, folder)
    assert [g["image"] for g in got] == [f"photos/{i}.png" for i in range(3)]
    for (big, _), line in zip(lines, got):
        assert (line["width"], line["height"]) == big.size and line["error"] is None
        want = sorted((o.desc, o.bbox_2d) for o in big.objects)
        have = sorted((o["label"], o["bbox_2d"]) for o in line["objects"])
        assert [label for label, _ in have] == [label for label, _ in want]
        # One unit of the answer is a frame pixel (several photo pixels here) or 1/1000 of a side; rounding to it moves
        # a coordinate by half a unit at most.
        unit = max(big.size[0] / frame.answer_extent(big.size)[0], big.size[1] / frame.answer_extent(big.size)[1])
        for (_, a), (_, b) in zip(have, want):
            assert max(abs(x - y) for x, y in zip(a, b)) <= unit / 2 + 0.1

    out = tmp_path / "pred.jsonl"
    assert write_answers(answers, folder, out) == 3
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == got
    with pytest.raises(FileExistsError):
        write_answers(answers, folder, out)
    # Written elsewhere, the photos are named from the predictions file's folder, where eval and viz look for them:
    # named from the answers file's, eval paired none of them (or another dataset's photos of the same names)
    elsewhere = tmp_path / "results" / "run1" / "pred.jsonl"
    elsewhere.parent.mkdir(parents=True)
    write_answers(answers, folder, elsewhere)
    names = [json.loads(line)["image"] for line in elsewhere.read_text(encoding="utf-8").splitlines()]
    assert names == [f"../../photos/{i}.png" for i in range(3)]
    assert all((elsewhere.parent / name).resolve() == (photos / f"{i}.png").resolve() for i, name in enumerate(names))


def test_a_bad_line_is_an_error_naming_the_file_and_line(folder, tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"image": "a.png", "text": "[]"}) + "\n" + json.dumps({"image": "a.png"}) + "\n",
                       encoding="utf-8")
    with pytest.raises(ValueError, match=r"answers\.jsonl:2: neither `text` nor an OpenAI"):
        read_answers(answers, folder)


@pytest.mark.parametrize(("change", "says"), [
    ({"size": 448}, "preprocessor_config.json: size must be an object with shortest_edge and longest_edge (pixels), "
                    "got a number (448)"),
    ({"size": [12544, 50176]}, "preprocessor_config.json: size must be an object with shortest_edge and longest_edge "
                               "(pixels), got a list ([12544, 50176])"),
    ({"size": {"shortest_edge": "12544", "longest_edge": 50176}},
     "preprocessor_config.json: size.shortest_edge must be a positive whole number of pixels, got a string (\"12544\")"),
    ({"size": {"shortest_edge": 12544, "longest_edge": True}},
     "preprocessor_config.json: size.longest_edge must be a positive whole number of pixels, got a boolean (true)"),
    ({"size": None, "min_pixels": 12544, "max_pixels": -1},
     "preprocessor_config.json: max_pixels must be a positive whole number of pixels, got a number (-1)"),
    ({"size": {"shortest_edge": 50176, "longest_edge": 12544}},
     "preprocessor_config.json: min_pixels (50176) must not exceed max_pixels (12544)"),
    ({"image_processor": None}, "preprocessor_config.json: image_processor must be an object, got null"),
    ({"image_processor": {"size": None, "min_pixels": 1.5, "max_pixels": 50176}},
     "preprocessor_config.json: image_processor.min_pixels must be a positive whole number of pixels, got a number (1.5)"),
    ([1, 2], "preprocessor_config.json: expected a JSON object, got a list ([1, 2])"),
], ids=["size-number", "size-list", "edge-string", "edge-bool", "max-negative", "min-above-max", "nested-null",
        "nested-float", "not-an-object"])
def test_a_processor_config_value_of_the_wrong_kind_is_an_error_naming_the_file_and_key(stock_qwen2_5_vl, tmp_path, change, says):
    folder = shutil.copytree(stock_qwen2_5_vl, tmp_path / "model")
    config = folder / "preprocessor_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    config.write_text(json.dumps(change if isinstance(change, list) else data | change), encoding="utf-8")
    with pytest.raises(ValueError) as e:
        folder_frame(folder)
    assert str(e.value) == f"{config.parent}/{says}"


def test_a_processor_config_without_bounds_falls_back_to_the_other_file(stock_qwen2_5_vl, tmp_path):
    folder = shutil.copytree(stock_qwen2_5_vl, tmp_path / "model")
    config = folder / "preprocessor_config.json"
    config.write_text(json.dumps(json.loads(config.read_text(encoding="utf-8")) | {"size": None}), encoding="utf-8")
    processor = folder / "processor_config.json"
    processor.write_text(json.dumps({"image_processor": {"size": {"shortest_edge": 3136, "longest_edge": 50176}}}),
                         encoding="utf-8")
    frame = folder_frame(folder)
    assert (frame.min_pixels, frame.max_pixels) == (3136, 50176)


def test_an_answers_file_that_is_not_text_names_the_file(folder, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"answers\.jsonl: not UTF-8 text"):
        read_answers(answers, folder)
    answers.write_text(json.dumps({"image": "a.png", "response": {"choices": [{"message": {"content": [{"text": 5}]}}]}}),
                       encoding="utf-8")
    with pytest.raises(ValueError, match=r"answers\.jsonl:1: choices\[0\]\.message\.content has a part whose text"):
        read_answers(answers, folder)


# --- an answer cut short, judged as predict and serve judge it -----------------------------------------------------

CUT_CONTENT = '[{"bbox_2d": [10, 10, 60, 60], "label": "线缆"}, {"bbox_2d": [70, 10, 120'  # stopped mid-object
WHOLE_CONTENT = '[{"bbox_2d": [10, 10, 60, 60], "label": "线缆"}]'


def _chat_line(content: str, finish_reason: str | None, batch: bool = False) -> dict:
    """An answers line holding a chat.completion as a stock server (or its batch API) returns it."""
    response = {"object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}]}
    return {"image": "photo.png", "response": {"body": response} if batch else response}


@pytest.mark.parametrize(("line", "cut"), [
    (_chat_line(CUT_CONTENT, "length"), True),
    (_chat_line(CUT_CONTENT, "length", batch=True), True),
    (_chat_line(WHOLE_CONTENT, "length"), True),  # the budget ended it just after an object: more may have followed
    (_chat_line(WHOLE_CONTENT, "content_filter"), True),  # ended by the server, not by the answer
    ({"image": "photo.png", "text": CUT_CONTENT, "finish_reason": "length"}, True),
    ({"image": "photo.png", "text": CUT_CONTENT}, True),  # no finish reason kept: the list never closes
    ({"image": "photo.png", "text": WHOLE_CONTENT}, False),
    (_chat_line(WHOLE_CONTENT, "abort"), True),  # vLLM's and SGLang's: the request was ended
    (_chat_line(WHOLE_CONTENT, "repetition"), True),  # vLLM's: it stopped a loop
    (_chat_line(WHOLE_CONTENT, "stop"), False),
    # TGI's natural ends (its chat route before 2.2.1): every complete answer was written cut and sent to review
    (_chat_line(WHOLE_CONTENT, "eos_token"), False),
    (_chat_line(WHOLE_CONTENT, "stop_sequence"), False),
    (_chat_line(WHOLE_CONTENT, None), False),
    # A reason no server documented here says neither: the answer tells, as without one
    (_chat_line(WHOLE_CONTENT, "end_turn"), False),
    (_chat_line(CUT_CONTENT, "end_turn"), True),
], ids=["length", "batch-api", "length-closed", "content-filter", "text-length", "text-unclosed", "text-whole",
        "abort", "repetition", "stop", "eos-token", "stop-sequence", "null", "other-closed", "other-unclosed"])
def test_an_answer_cut_short_is_written_cut_and_sent_to_review_as_predict_sends_it(folder, tmp_path, line, cut):
    # The finish reason was dropped: a stock server's answer cut by its budget became a line with no "cut" and no
    # verdict, and `bbuvl eval` passed the photo that `bbuvl predict`, /v1/detect and the chat route send to review.
    from typer.testing import CliRunner

    from bbuvl.cli import app as cli

    Image.new("RGB", (224, 168), (120, 120, 120)).save(tmp_path / "photo.png")
    (tmp_path / "answers.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    write_answers(tmp_path / "answers.jsonl", folder, out)
    [written] = [json.loads(raw) for raw in out.read_text(encoding="utf-8").splitlines()]
    assert written.get("cut", False) is cut and [o["label"] for o in written["objects"]] == ["线缆"]
    assert written["verdict"]["verdict"] == ("review" if cut else "pass"), written["verdict"]
    # eval reads the line as predict's: a photo whose ground truth holds a fault goes to review, not pass
    (tmp_path / "gt.jsonl").write_text(json.dumps({"images": ["photo.png"], "width": 224, "height": 168, "objects": [
        {"bbox_2d": [10, 10, 60, 60], "desc": "螺丝连接点/BBU安装螺丝/连接错误"}]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    r = CliRunner().invoke(cli, ["eval", "--pred", str(out), "--gt", str(tmp_path / "gt.jsonl"),
                                 "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert metrics["errors"]["cut_answers"] == int(cut)
    assert metrics["faults"]["photos"]["verdicts"]["review" if cut else "pass"]["faulty"] == 1


def test_the_chat_routes_cut_answer_read_back_is_cut(folder, tmp_path):
    # The chat route says "length" for an answer its budget cut; read back by this module it is cut again, one rule.
    from bbuvl.serve.openai import chat_response

    Image.new("RGB", (224, 168)).save(tmp_path / "photo.png")
    objects = [{"bbox_2d": [10.0, 10.0, 60.0, 60.0], "label": "线缆"}]
    lines = [{"image": "photo.png", "response": chat_response(objects, None, "m", {}, {}, cut=cut)} for cut in (True, False)]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    assert [line.get("cut", False) for line in read_answers(tmp_path / "answers.jsonl", folder)] == [True, False]


@pytest.mark.parametrize("where", ["text", "response"])
def test_a_finish_reason_that_is_not_text_is_an_error_naming_the_line_and_key(folder, tmp_path, where):
    Image.new("RGB", (64, 48)).save(tmp_path / "photo.png")
    line = ({"image": "photo.png", "text": WHOLE_CONTENT, "finish_reason": 3} if where == "text" else
            _chat_line(WHOLE_CONTENT, ["length"]))  # type: ignore[arg-type]
    (tmp_path / "answers.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    key = "finish_reason" if where == "text" else r"choices\[0\]\.finish_reason"
    with pytest.raises(ValueError, match=rf"answers\.jsonl:1: {key} must be text"):
        read_answers(tmp_path / "answers.jsonl", folder)


# --- an export's frame, and photos shown to a server as the answers are read -------------------------------------

PART_UPRIGHT = (100, 50, 300, 150)  # the red part of the EXIF-6 photo, in its upright 320x240 pixels
PART_SMALL = (112, 84, 168, 126)  # the red part of the 224x168 photo the shapes demo's frame holds at 48 tokens


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def exported(request, tmp_path_factory) -> Path:
    """An export of a checkpoint trained in the shapes demo's frame (min = max = 64 cells, a 64-token budget), which
    a stock processor holds only in part: a 224x168 photo it scales up past the budget (model/export.py `frame_gap`)."""
    from typer.testing import CliRunner

    from bbuvl.cli import app as cli
    from bbuvl.config import load_config
    from bbuvl.model.checkpoint import Prompt, save_checkpoint
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.model.vlm import BBUVLModel

    out = tmp_path_factory.mktemp(f"exported-{request.param}")
    base = build_tiny_model(out / "model", family=request.param, seed=0)
    vlm, processor = load_model_and_processor(str(base), dtype="float32", attn_implementation="sdpa")
    cells = 64 * json.loads((base / "config.json").read_text())["vision_config"]["patch_size"] ** 2 * 4
    cfg = load_config(None, [f"model.path={base}", "model.dtype=float32", f"model.min_pixels={cells}",
                             f"model.max_pixels={cells}", "model.max_vision_tokens=64", "detection.enabled=false",
                             "model.vision_positions=false", "data.teachers=null"])
    checkpoint = save_checkpoint(BBUVLModel.build(vlm, cfg, processor.tokenizer), processor, cfg, cfg.model.frame(),
                                 Prompt("找出每个部件。", ["线缆"], "zh"), out / "ckpt")
    r = CliRunner().invoke(cli, ["model", "export", str(checkpoint), str(out / "exported")])
    assert r.exit_code == 0, r.output
    return out / "exported"


def photo_with_part(path: Path, upright: tuple[int, int], part: tuple[int, int, int, int], orientation: int = 1) -> Path:
    """A JPEG showing a red part at `part` of its upright pixels, stored as a camera stores it under `orientation`."""
    from bbuvl.data.images import EXIF_TURNS

    image = Image.new("RGB", upright, (230, 230, 230))
    image.paste((255, 0, 0), part)
    exif = Image.Exif()
    if orientation != 1:  # the file holds the pixels the EXIF turn makes upright: 6 is undone by 8's turn
        image = image.transpose(EXIF_TURNS[{6: 8, 8: 6}.get(orientation, orientation)])
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95, exif=exif)
    return path


class StandIn:
    """A stock server's part of the recipes: the image it is given, resized as the folder's image processor resizes
    it under the server's bounds and the request's, and a model that answers where the red part is in what it sees,
    perfectly, in the folder's convention. It decodes what it is sent as stored, never turning it by an EXIF tag."""

    def __init__(self, folder: Path, bounds: dict[str, int]):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        processor = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
        self.factor, self.bounds, self.resize = processor["patch_size"] * processor["merge_size"], bounds, smart_resize
        self.relative = json.loads((folder / "config.json").read_text())["model_type"] != "qwen2_5_vl"
        self.seen: list[tuple[int, int]] = []

    def answer(self, image: Image.Image, request: dict[str, int] | None) -> str:
        import numpy as np

        bounds = {**self.bounds, **(request or {})}
        h, w = self.resize(image.height, image.width, self.factor, bounds["min_pixels"], bounds["max_pixels"])
        self.seen.append((w, h))
        a = np.asarray(image.convert("RGB").resize((w, h), Image.BICUBIC)).astype(int)
        ys, xs = np.nonzero((a[:, :, 0] > 180) & (a[:, :, 1] < 90) & (a[:, :, 2] < 90))
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        if self.relative:
            box = [round(1000 * v / s) for v, s in zip(box, (w, h, w, h))]
        return json.dumps([{"bbox_2d": box, "label": "线缆"}], ensure_ascii=False)


def recipe(marker: str) -> str:
    """The Python block of docs/serving.md's vLLM section that holds `marker`, as a user copies it."""
    from markdown_it import MarkdownIt

    doc = (Path(__file__).parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    blocks = [t.content for t in MarkdownIt("commonmark").parse(doc) if t.type == "fence" and t.info == "python"]
    [block] = [b for b in blocks if marker in b]
    return block


def stock_bounds(folder: Path) -> dict[str, int]:
    """MIN and MAX as the recipe takes them from the card's Frame section."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    low, high = re.search(r"--mm-processor-kwargs '\{\"min_pixels\": (\d+), \"max_pixels\": (\d+)\}'", card).groups()
    return {"min_pixels": int(low), "max_pixels": int(high)}


def within(got: list[float], want: tuple[int, ...], size: tuple[int, int], extent: tuple[int, int]) -> bool:
    """Whether a box read back lies within a unit and a half of the answer's grid of the part (a unit of rounding to
    the frame the server resized to, half of the answer's own, and the JPEG's blur at the part's edge)."""
    unit = (size[0] / extent[0], size[1] / extent[1])
    return all(abs(g - w) <= 1.5 * unit[k % 2] + 1 for k, (g, w) in enumerate(zip(got, want)))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_offline_vllm_recipe_gives_back_each_part_where_it_is_in_the_upright_photo(exported, tmp_path, monkeypatch):
    # The recipe fed vLLM `Image.open(p).convert("RGB")`: a photo stored sideways (EXIF 6, a phone's portrait photo)
    # was shown sideways and its answer read as the upright photo's ([100, 50, 300, 150] came back [66.6, 14.9, 200.0,
    # 165.1]). And a photo the card says to frame with other bounds (224x168: 48 tokens in training, 70 at the
    # processor's bounds) was answered in the frame the card gives and read back through the processor's.
    import types

    (tmp_path / "exported").symlink_to(exported)
    photo_with_part(tmp_path / "photos" / "0001.jpg", (320, 240), PART_UPRIGHT, orientation=6)
    photo_with_part(tmp_path / "photos" / "0002.jpg", (224, 168), PART_SMALL)
    stand_in = StandIn(exported, stock_bounds(exported))

    class LLM:
        def __init__(self, model: str, limit_mm_per_prompt: dict, mm_processor_kwargs: dict):
            assert Path(model) == Path("exported") and mm_processor_kwargs == stand_in.bounds

        def generate(self, prompts: list[dict], params: object) -> list:
            assert all("<|vision_start|>" in p["prompt"] for p in prompts)
            texts = [stand_in.answer(p["multi_modal_data"]["image"], p.get("mm_processor_kwargs")) for p in prompts]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t, finish_reason="stop")]) for t in texts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw))
    monkeypatch.chdir(tmp_path)
    exec(recipe("from vllm import LLM"), {"MIN": stand_in.bounds["min_pixels"], "MAX": stand_in.bounds["max_pixels"]})

    frame = folder_frame(exported)
    first, second = read_answers(tmp_path / "answers.jsonl", exported)
    assert (first["width"], first["height"]) == (320, 240) and (second["width"], second["height"]) == (224, 168)
    assert stand_in.seen == [frame.model_size((320, 240)), frame.model_size((224, 168))]  # the frames it trained in
    assert stand_in.seen[1] == (224, 168) or frame.family != "qwen2_5_vl"
    for line, part in ((first, PART_UPRIGHT), (second, PART_SMALL)):
        [found] = line["objects"]
        size = (line["width"], line["height"])
        assert within(found["bbox_2d"], part, size, frame.model_size(size)), (found["bbox_2d"], part)


@pytest.mark.usefixtures("one_thread")
def test_the_vllm_server_request_sends_the_photo_upright_without_its_exif_tag(exported, tmp_path, monkeypatch):
    # The request sent the file's own bytes: a server that decodes them as stored showed the model the sideways pixels.
    import types

    (tmp_path / "exported").symlink_to(exported)
    photo_with_part(tmp_path / "photos" / "0001.jpg", (320, 240), PART_UPRIGHT, orientation=6)
    stand_in = StandIn(exported, stock_bounds(exported))

    def create(model: str, temperature: float, max_tokens: int, messages: list, extra_body: dict) -> object:
        url = messages[1]["content"][0]["image_url"]["url"]
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert 0x0112 not in image.getexif()  # nothing for a server that does turn by the tag to turn again
        text = stand_in.answer(image, extra_body["mm_processor_kwargs"])
        reply = {"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        return types.SimpleNamespace(model_dump=lambda: reply)

    client = types.SimpleNamespace(chat=types.SimpleNamespace(completions=types.SimpleNamespace(create=create)))
    monkeypatch.setitem(sys.modules, "openai", types.SimpleNamespace(OpenAI=lambda **kw: client))
    monkeypatch.chdir(tmp_path)
    exec(recipe("from openai import OpenAI"), {"SYSTEM_PROMPT_FROM_THE_CARD": "…", "USER_TEXT_FROM_THE_CARD": "…"})

    [line] = read_answers(tmp_path / "answers.jsonl", exported)
    [found] = line["objects"]
    frame = folder_frame(exported)
    assert within(found["bbox_2d"], PART_UPRIGHT, (320, 240), frame.model_size((320, 240))), found["bbox_2d"]


@pytest.mark.usefixtures("one_thread")
def test_an_exports_answers_are_read_in_the_frame_its_checkpoint_trained_in_as_predict_frames_it(exported, tmp_path):
    # Read through the processor's bounds alone (280x196 for a 224x168 photo), the whole photo answered in the frame
    # the card gives it, 224x168, came back [0.0, 0.0, 179.2, 144.0]; `bbuvl predict -c` frames it at 224x168.
    from bbuvl.model.checkpoint import read_model_folder

    frame = folder_frame(exported)
    labels = json.loads((exported / "labels.json").read_text(encoding="utf-8"))
    assert frame == read_model_folder(exported, labels["labels"], labels["lang"]).frame  # one frame, one reader
    assert frame.max_vision_tokens == 64
    Image.new("RGB", (224, 168), (90, 120, 40)).save(tmp_path / "p.jpg")
    w, h = frame.answer_extent((224, 168))
    assert frame.family != "qwen2_5_vl" or (w, h) == (224, 168)
    (tmp_path / "answers.jsonl").write_text(json.dumps({"image": "p.jpg", "text": json.dumps(
        [{"bbox_2d": [0, 0, w, h], "label": "线缆"}])}) + "\n", encoding="utf-8")
    [line] = read_answers(tmp_path / "answers.jsonl", exported)
    assert line["objects"][0]["bbox_2d"] == [0.0, 0.0, 224.0, 168.0]


def test_an_answer_holding_a_line_separator_is_read_as_one_line(folder, tmp_path):
    # A model may write U+2028 or U+0085, which JSON keeps as they are: str.splitlines() cut the line there, and the
    # whole answers file was refused ("answers.jsonl:1: Unterminated string")
    Image.new("RGB", (224, 168)).save(tmp_path / "photo.png")
    text = json.dumps([{"bbox_2d": [10, 10, 60, 60], "label": "线缆"}], ensure_ascii=False)
    lines = [{"image": "photo.png", "text": f"{text}\u2028"}, {"image": "photo.png", "text": f"\x85{text}"}]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                            encoding="utf-8")
    read = read_answers(tmp_path / "answers.jsonl", folder)
    assert [[o["label"] for o in line["objects"]] for line in read] == [["线缆"], ["线缆"]]
