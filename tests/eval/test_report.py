"""The HTML report: self-contained, every picture loads (in headless Chromium when installed), fonts handled honestly."""

from __future__ import annotations

import base64
import io
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.schema import ImageRecord, ObjectAnn, read_records
from bbuvl.eval.draw import GREEN, MAGENTA, RED, DrawBox, LabelNamer, draw_boxes
from bbuvl.eval.fonts import FontChoice, find_cjk_font, has_cjk_glyphs
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.eval.report import FAULT_CURVE_FILE, FAULTS_DIR, PR_CURVE_FILE, write_report
from bbuvl.outputs import LEDGER
from tests.eval.test_report_in_a_browser import opened
from tests.serve.test_page import browser  # noqa: F401 - the headless Chromium fixture
from tests.system import need

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
NO_CJK = FontChoice(None, "no CJK font found on this machine: labels are drawn in English")


@pytest.fixture(scope="module")
def evaluation(eval_files):
    return evaluate_predictions(read_records(eval_files.gt), eval_files.gt, read_predictions(eval_files.pred), eval_files.pred)


@pytest.fixture(scope="module")
def report(evaluation, tmp_path_factory) -> Path:
    return write_report(evaluation, tmp_path_factory.mktemp("report"), find_cjk_font(), worst=4)


def image_sources(page: str) -> list[str]:
    return re.findall(r"<img [^>]*src=['\"]([^'\"]+)['\"]", page)


def test_report_is_self_contained_and_every_embedded_picture_decodes(report, evaluation):
    page = report.read_text(encoding="utf-8")
    sources = image_sources(page)
    # the fault and COCO precision-recall plots, the photos to check for faults and the four worst photos
    assert len(sources) == 2 + len(evaluation.faults.photos_to_check(4)) + 4
    for src in sources:
        assert src.startswith("data:image/")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "http://" not in page and "https://" not in page


def test_report_writes_the_pngs_it_shows(report, evaluation):
    assert Image.open(report.parent / PR_CURVE_FILE).size == (1200, 500)
    worst = sorted((report.parent / "worst").glob("*.png"))
    assert len(worst) == 4
    first = evaluation.worst(4)[0]
    assert first.f1 == min(r.f1 for r in evaluation.images)
    assert first.image_path.stem in worst[0].name


def test_a_photo_in_both_lists_is_the_same_picture_in_both_folders(report, evaluation):
    faulty = {evaluation.images[i].image_path.stem for i in evaluation.faults.photos_to_check(4)}
    both = [r.image_path.stem for r in evaluation.worst(4) if r.image_path.stem in faulty]
    assert both, "the fixture's worst photos and photos to check share none: the case is not exercised"
    for stem in both:
        (in_faults,) = (report.parent / FAULTS_DIR).glob(f"*_{stem}.png")
        (in_worst,) = (report.parent / "worst").glob(f"*_{stem}.png")
        assert in_faults.read_bytes() == in_worst.read_bytes()


def test_report_lists_every_category_and_shows_failed_answers(report, evaluation):
    page = report.read_text(encoding="utf-8")
    for category in evaluation.metrics["per_category"]:
        assert category in page
    assert "抱歉，我无法识别。" in page or "cannot decode image" in page  # a failed photo is among the worst


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_missing_cjk_font_is_announced_in_the_report_and_labels_fall_back_to_english(evaluation, tmp_path):
    page = write_report(evaluation, tmp_path, NO_CJK, worst=1).read_text(encoding="utf-8")
    assert "no CJK font found" in page
    namer = LabelNamer(NO_CJK)
    assert namer("螺丝连接点/BBU安装螺丝/连接正确", 0.5) == "screw or connection point/BBU mounting screw/correct 0.50"


def test_without_a_cjk_font_a_label_part_without_a_gloss_is_drawn_as_its_code_points_not_blank_boxes():
    # `bbuvl viz` and the report without a CJK font said "labels are drawn in English", and drew `挡风版/未安装` (a
    # misspelt category, the kind of label that sends its photo to review) and the state of
    # `螺丝连接点/BBU安装螺丝/连接错` as rows of blank boxes: Pillow's font has no Chinese, nor `≥` or `é`.
    namer = LabelNamer(NO_CJK)
    assert NO_CJK.spelt(namer("螺丝连接点/BBU安装螺丝/连接错")) == \
        "screw or connection point/BBU mounting screw/\\u8fde\\u63a5\\u9519"
    assert NO_CJK.spelt("挡风版 ≥ é —") == "\\u6321\\u98ce\\u7248 >= e --"
    canvas = Image.new("RGB", (400, 200), (0, 0, 0))
    drawn = draw_boxes(canvas, [DrawBox([20, 60, 380, 110], "未知部件", GREEN)], NO_CJK)
    spelt = draw_boxes(canvas, [DrawBox([20, 60, 380, 110], "\\u672a\\u77e5\\u90e8\\u4ef6", GREEN)], NO_CJK)
    assert drawn.tobytes() == spelt.tobytes()
    # a font that draws Chinese draws it as it is
    choice = find_cjk_font()
    if choice.cjk:
        assert choice.spelt("挡风版") == "挡风版"


def test_font_path_must_exist_and_a_font_without_chinese_gets_a_warning(tmp_path):
    with pytest.raises(FileNotFoundError, match="font file not found"):
        find_cjk_font(tmp_path / "missing.ttf")
    if DEJAVU.exists():
        choice = find_cjk_font(DEJAVU)
        assert not has_cjk_glyphs(DEJAVU) and not choice.cjk and "no Chinese glyphs" in choice.warning


def test_chinese_labels_render_with_the_cjk_font_found():
    choice = find_cjk_font()
    need("cjk-font", choice.cjk, "no CJK font installed: install Debian's `fonts-wqy-microhei` (make fonts)")
    assert has_cjk_glyphs(choice.path)
    namer = LabelNamer(choice)
    assert namer("标签贴纸") == "标签贴纸"
    canvas = Image.new("RGB", (200, 120), (0, 0, 0))
    drawn_cjk = draw_boxes(canvas, [DrawBox([20, 60, 180, 110], "标签贴纸", GREEN)], choice)
    drawn_other = draw_boxes(canvas, [DrawBox([20, 60, 180, 110], "线缆线缆", GREEN)], choice)
    assert drawn_cjk.tobytes() != drawn_other.tobytes()  # different characters, different pixels: real glyphs


def test_boxes_are_drawn_where_the_record_says_after_scaling():
    canvas = Image.new("RGB", (400, 300), (0, 0, 0))
    drawn = draw_boxes(canvas, [DrawBox([100, 100, 300, 200], "", RED)], NO_CJK, scale=0.5)
    assert drawn.getpixel((50, 75)) == RED and drawn.getpixel((150, 75)) == RED
    assert drawn.getpixel((100, 80)) == (0, 0, 0)


def test_a_missing_photo_becomes_a_placeholder_not_a_crash(tmp_path):
    from bbuvl.eval.draw import compare_picture

    record = ImageRecord(images=["gone.jpg"], width=320, height=240, objects=[ObjectAnn(bbox_2d=[1, 1, 50, 50], desc="线缆")])
    picture, problem = compare_picture(record, tmp_path / "gone.jpg", [], None, NO_CJK, LabelNamer(NO_CJK))
    assert picture.width > 320 and "gone.jpg" in problem


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_report_opens_in_headless_chromium_with_every_picture_loaded(browser, report):  # noqa: F811
    # Read through WebDriver: a script put into the page is refused by its policy (test_report_in_a_browser.py).
    shown = opened(browser, report)
    assert shown["images"] == len(image_sources(report.read_text(encoding="utf-8"))) == shown["decoded"]


def test_report_opens_with_the_faults_and_shows_photos_with_a_missed_fault_first(report, evaluation):
    page = report.read_text(encoding="utf-8")
    assert page.index("<h2>Faults</h2>") < page.index("<h2>COCO</h2>")
    f = evaluation.faults
    assert f.objects.gt and any(f.photo_missed)  # the fixture's perturbed predictions miss some faults
    shown = sorted((report.parent / FAULTS_DIR).glob("*.png"))
    order = f.photos_to_check(4)
    assert len(shown) == len(order) and f.photo_missed[order[0]] == max(f.photo_missed)
    assert evaluation.images[order[0]].image_path.stem in shown[0].name
    assert "always fail" in page and "ROC AUC" in page and "State given kind" in page
    assert Image.open(report.parent / FAULT_CURVE_FILE).size == (600, 450)


def test_a_fault_is_drawn_with_a_magenta_frame_and_caption():
    canvas = Image.new("RGB", (200, 200), (255, 255, 255))
    plain = draw_boxes(canvas, [DrawBox([40, 40, 120, 120], "part", GREEN)], NO_CJK)
    fault = draw_boxes(canvas, [DrawBox([40, 40, 120, 120], "! part", GREEN, fault=True)], NO_CJK)
    assert MAGENTA not in {c for _, c in plain.getcolors(1 << 16)}
    assert fault.getpixel((37, 80)) == MAGENTA and fault.getpixel((40, 80)) == GREEN  # frame outside, outcome inside


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_written_again_with_fewer_photos_keeps_none_of_the_first_ones_pictures(evaluation, tmp_path):
    write_report(evaluation, tmp_path, NO_CJK, worst=6)
    assert len(list((tmp_path / "worst").iterdir())) > 2
    page = write_report(evaluation, tmp_path, NO_CJK, worst=2).read_text(encoding="utf-8")
    pictures = sorted(p.relative_to(tmp_path).as_posix() for folder in ("worst", FAULTS_DIR)
                      for p in (tmp_path / folder).iterdir())
    assert pictures == sorted(set(re.findall(r"href='((?:worst|faults)/[^']+)'", page)))  # each linked, none stale
    assert len([p for p in pictures if p.startswith("worst/")]) == 2
    # no temporary folder left; the ledger is the report's own record of what it wrote
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [LEDGER]


def test_a_report_written_again_drops_the_metrics_an_earlier_one_was_given_inside_it_and_keeps_others_files(
        evaluation, tmp_path):
    # `eval --out R/M.json --report R`, then `eval --out M2.json --report R` on other predictions: R held the second
    # run's page and curves beside the first run's M.json and M.coco.json, two runs' results in one report.
    for name in ("M.json", "M.coco.json"):
        (tmp_path / name).write_text('{"AP": 0.5}\n', encoding="utf-8")
    write_report(evaluation, tmp_path, NO_CJK, worst=2, also_written=[tmp_path / "M.json", tmp_path / "M.coco.json"])
    (tmp_path / "notes.txt").write_text("mine\n", encoding="utf-8")  # the user's: written among with --overwrite
    (tmp_path / "M.coco.json").write_text('{"AP": 0.9}\n', encoding="utf-8")  # edited since: no longer eval's
    write_report(evaluation, tmp_path, NO_CJK, worst=2)
    assert not (tmp_path / "M.json").exists()
    assert (tmp_path / "M.coco.json").read_text(encoding="utf-8") == '{"AP": 0.9}\n'
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert "M.json" not in (tmp_path / LEDGER).read_text(encoding="utf-8")


def test_a_report_written_beside_photos_never_takes_them_for_its_own_through_the_folders_entry_above(evaluation,
                                                                                                     tmp_path):
    # `--report DS/images --overwrite`: the folder is recorded as eval's in the ledger above it, and while its digest
    # holds (a report written again within the same second, byte for byte) every photo in it read as eval's.
    from bbuvl.eval.report import _drop_earlier
    from bbuvl.outputs import Claim, writer_of

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"a photo of the dataset")
    index = write_report(evaluation, images, NO_CJK, worst=1)
    Claim("eval", [images], {}).finish(succeeded=True)  # as the command's claim records --report
    assert writer_of(images / "a.jpg") == "eval"
    assert images / "a.jpg" not in _drop_earlier(images, [index])  # the page alone kept: the curves are its to drop
    assert (images / "a.jpg").read_bytes() == b"a photo of the dataset"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_with_20000_predictions_draws_in_seconds_keeping_faults_errors_and_the_highest_scored(tmp_path):
    import random
    import time

    from bbuvl.eval.draw import BLUE, MAX_BOXES, compare_picture, count_title, prediction_boxes, select_boxes

    rng = random.Random(0)
    crowd = [{"bbox_2d": [x, y, x + 20, y + 20], "label": "线缆", "score": rng.uniform(0.1, 0.5)}
             for x, y in ((rng.uniform(0, 180), rng.uniform(0, 180)) for _ in range(20000))]
    lowest = {"bbox_2d": [400, 50, 450, 100], "label": "线缆", "score": 0.01}
    fault = {"bbox_2d": [400, 300, 450, 350], "label": "fault", "score": 0.001}
    best = {"bbox_2d": [100, 380, 150, 430], "label": "线缆", "score": 1.0}
    objects = [*crowd, lowest, fault, best]
    name = LabelNamer(NO_CJK)
    boxes = prediction_boxes(objects, None, None, name, counts=lambda label, score: label == "fault")
    shown = select_boxes(boxes)
    drawn = draw_boxes(Image.new("RGB", (640, 480)), shown, NO_CJK)
    assert len(shown) == MAX_BOXES and drawn.getpixel((400, 75)) == (0, 0, 0)  # the lowest-scored is left out
    assert drawn.getpixel((396, 325)) == MAGENTA and drawn.getpixel((100, 400)) == BLUE
    assert count_title("prediction", boxes, shown) == (
        f"prediction (20003; {20003 - MAX_BOXES} left out, {MAX_BOXES} drawn: faults, errors, then the highest-scored)")

    record = ImageRecord(images=["p.png"], width=640, height=480, objects=[ObjectAnn(bbox_2d=[1, 1, 50, 50], desc="线缆")])
    Image.new("RGB", (640, 480)).save(tmp_path / "p.png")
    start = time.perf_counter()
    picture, problem = compare_picture(record, tmp_path / "p.png", objects, None, NO_CJK, name)
    assert time.perf_counter() - start < 5 and problem is None  # every caption placed: 23 s before the cap
    assert picture.width == 640 * 2 + 3 * 12


# Labels and photo names as a hostile or careless dataset or model writes them.
HOSTILE_LABELS = ["<script>alert(1)</script>", "a\"b'c&d", "</td></tr></table><h1>injected", "[bold]x[/]", "cost $5",
                  "$\\frac$", "_hidden", "线缆" * 40]
HOSTILE_NAMES = ["my photo #1 %20?.png", "sub dir/a&b<c>.png", "q'uote\".png", "ünï 照片.png", "\U00020000" * 60 + ".png"]


def hostile_evaluation(root: Path, names: list[str] = HOSTILE_NAMES, labels: list[str] = HOSTILE_LABELS):
    """An evaluation of photos `names` whose ground truth and predictions carry `labels` (the predictions' also a
    carriage return and a paragraph separator, which a model's answer may hold)."""
    import json

    rows, lines = [], []
    for i, name in enumerate(names):
        photo = root / "ds" / name
        photo.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (40 * i, 90, 0)).save(photo, "PNG")
        shown = [labels[(2 * i + j) % len(labels)] for j in range(2)]
        rows.append({"images": [name], "width": 64, "height": 48,
                     "objects": [{"bbox_2d": [2 + 20 * j, 2, 20 + 20 * j, 30], "desc": label} for j, label in enumerate(shown)]})
        lines.append({"image": name, "width": 64, "height": 48, "raw": None, "error": None,
                      "objects": [{"bbox_2d": [2, 2, 20, 30], "label": shown[1], "score": 0.9},
                                  {"bbox_2d": [30, 5, 60, 40], "label": "extra\r\u2029\x85<b>", "score": 0.5}]})
    if len(lines) > 2:  # a model's unreadable answer, and a predictor's error
        lines[1].update(objects=[], raw="<img src=x onerror=alert(1)>")
        lines[2].update(objects=[], error="<script>alert(2)</script>")
    gt, pred = root / "ds" / "val.jsonl", root / "ds" / "pred.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    pred.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return evaluate_predictions(read_records(gt), gt, read_predictions(pred), pred)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_of_hostile_labels_and_photo_names_shows_them_as_text_and_links_every_picture(tmp_path):
    import html

    page = write_report(hostile_evaluation(tmp_path), tmp_path / "report", find_cjk_font(), worst=10).read_text(
        encoding="utf-8")
    assert "<script" not in page and "<h1>injected" not in page and "<img src=x" not in page
    assert html.escape("<img src=x onerror=alert(1)>") in page and html.escape("<script>alert(2)</script>") in page
    assert page.count("<b>") == page.count("<figcaption>")  # the report's own: each photo's name in its caption
    for text in HOSTILE_LABELS + [str(tmp_path / "ds" / name) for name in HOSTILE_NAMES]:
        assert html.escape(text) in page, text
    links = re.findall(r"href='([^']+)'", page)
    assert len([a for a in links if a.startswith("worst/")]) == len(HOSTILE_NAMES)
    assert all((tmp_path / "report" / html.unescape(a)).is_file() for a in links)
    assert not any(c in a for a in links for c in " #%?&'\"<")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_label_matplotlib_would_read_as_tex_is_plotted_as_it_is(tmp_path):
    # '$\frac$' in the precision-recall legend raised matplotlib's ValueError, and the whole report was lost.
    evaluation = hostile_evaluation(tmp_path, HOSTILE_NAMES[:1], ["$\\frac$", "_hidden"])
    assert "$\\frac$" in evaluation.coco.curves["iou_0.50"]["per_category"]
    assert Image.open(write_report(evaluation, tmp_path / "report", NO_CJK, worst=1).parent / PR_CURVE_FILE).size == (1200, 500)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_named_with_240_bytes_gets_a_picture_with_a_shorter_name(tmp_path):
    # Its picture's name (and the temporary name beside it) passed the disk's 255 bytes: no report at all.
    report = write_report(hostile_evaluation(tmp_path, HOSTILE_NAMES, ["线缆"]), tmp_path / "report", NO_CJK, worst=10)
    (long,) = [p.name for p in (report.parent / "worst").iterdir() if "\U00020000" in p.name]
    assert len(long.encode("utf-8")) <= 130 and long.endswith(".png")


@pytest.mark.parametrize("text", ["a\rb", "a\u2029b", "a\x85b", "a\x1cb"])
def test_a_caption_or_title_with_a_character_freetype_cannot_lay_out_is_drawn_spelled_out(text):
    # Pillow's text layout (raqm) failed on these with any font file: "raqm_layout() failed", and every picture after.
    from bbuvl.eval.draw import side_by_side

    choice = find_cjk_font()
    need("cjk-font", choice.path is not None, "no CJK font installed: install Debian's `fonts-wqy-microhei` (make fonts)")
    drawn = draw_boxes(Image.new("RGB", (200, 120)), [DrawBox([20, 60, 180, 110], text, GREEN)], choice)
    side_by_side([(f"{text}\ntitle", drawn)], choice)
    assert drawn.getpixel((100, 110)) == GREEN


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_category_named_with_a_leading_underscore_keeps_its_line_in_the_legend(tmp_path):
    # matplotlib leaves such a label out of a legend it finds, and warned that it had none to show.
    import warnings

    from bbuvl.eval.draw import LabelNamer
    from bbuvl.eval.report import plot_pr_curves

    evaluation = hostile_evaluation(tmp_path, HOSTILE_NAMES[:1], ["_hidden"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with_legend = plot_pr_curves(evaluation, NO_CJK, LabelNamer(NO_CJK))
    assert with_legend.size == (1200, 500)


def test_a_label_of_100000_characters_is_drawn_cut_short_in_a_moment():
    # A caption is laid out at about a millisecond a character: this one took 82 s, for a caption off the picture.
    import time

    from bbuvl.eval.draw import CAPTION_CHARS, drawable

    choice = find_cjk_font()
    start = time.perf_counter()
    draw_boxes(Image.new("RGB", (800, 600)), [DrawBox([20, 60, 180, 110], "线缆x" * 33_334, GREEN)], choice)
    assert time.perf_counter() - start < 2
    assert drawable("线缆x" * 33_334, CAPTION_CHARS) == ("线缆x" * 30)[:CAPTION_CHARS - 1] + "…"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_without_a_cjk_font_a_chinese_label_missing_from_the_hierarchy_is_plotted_without_glyph_warnings(tmp_path):
    # Each of its characters printed matplotlib's "Glyph ... missing from font(s)" warning and a line of our code, where
    # the report and the terminal already say once that there is no CJK font.
    import warnings

    from bbuvl.eval.draw import LabelNamer
    from bbuvl.eval.report import plot_pr_curves

    evaluation = hostile_evaluation(tmp_path, HOSTILE_NAMES[:1], ["未知部件"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_pr_curves(evaluation, NO_CJK, LabelNamer(NO_CJK))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_that_cannot_be_read_gets_a_note_in_the_page_and_the_others_are_shown(tmp_path):
    # Its placeholder named why in pixels only: nothing in the page to read, search or copy.
    import html

    evaluation = hostile_evaluation(tmp_path, ["gone.png", "cut.png", "fine.png"], ["线缆"])
    (tmp_path / "ds" / "gone.png").unlink()
    (tmp_path / "ds" / "cut.png").write_bytes((tmp_path / "ds" / "fine.png").read_bytes()[:60])
    unreadable: list[str] = []
    page = write_report(evaluation, tmp_path / "report", NO_CJK, worst=3, unreadable=unreadable).read_text(encoding="utf-8")
    assert len(unreadable) == 2 and len(image_sources(page)) == 2 + len(evaluation.faults.photos_to_check(3)) + 3
    for problem in unreadable:
        assert f"<p class='warn'>photo not shown, drawn on a grey placeholder: {html.escape(problem)}</p>" in page


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_page_says_how_many_of_the_photos_to_look_at_it_shows(evaluation, tmp_path):
    # With --worst 0 the page said "No photo has any error." and "No fault missed and no clean photo flagged." over
    # photos with missed parts and missed faults; with 20 of 1,500, nothing said there were more.
    with_errors = len(evaluation.worst(len(evaluation.images)))
    to_check = len(evaluation.faults.photos_to_check(len(evaluation.images)))
    assert with_errors > 2 and to_check > 2
    page = write_report(evaluation, tmp_path, NO_CJK, worst=0).read_text(encoding="utf-8")
    assert "No photo has any error" not in page and "No fault missed" not in page
    assert f"<p>0 of the {with_errors} photos with an error (a larger --worst shows more).</p>" in page
    assert f"<p>0 of the {to_check} photos to check (a larger --worst shows more).</p>" in page


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_page_dates_itself_in_local_time_with_its_utc_offset(evaluation, tmp_path, monkeypatch):
    # Before: '2026-12-01 07:44', the writer's wall clock, hours apart for one moment in other zones
    monkeypatch.setenv("TZ", "XYZ-8")  # POSIX rule: 8 hours east of UTC, no tz database needed
    time.tzset()
    try:
        page = write_report(evaluation, tmp_path, NO_CJK, worst=0).read_text(encoding="utf-8")
    finally:
        monkeypatch.undo()
        time.tzset()
    (written,) = re.findall(r" · (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00)</p>", page)
    assert abs(datetime.fromisoformat(written) - datetime.now(timezone.utc)) < timedelta(minutes=5)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_name_or_predicted_label_with_a_right_to_left_override_is_shown_spelled_not_obeyed(tmp_path):
    # A photo named 'evil\u202egpj.exe.png' read 'evilgnp.exe.jpg' in its caption, as a terminal would show it had the
    # terminal not spelled it (data/text.py spell_controls).
    evaluation = hostile_evaluation(tmp_path, ["evil\u202egpj.exe.png"], ["线缆"])
    page = write_report(evaluation, tmp_path / "report", NO_CJK, worst=1).read_text(encoding="utf-8")
    assert "\u202e" not in page and "\x85" not in page  # the prediction's label 'extra\r\u2029\x85<b>' too
    assert "evil\\u202egpj.exe.png" in page and "extra\\r\u2029\\x85&lt;b&gt;" in page


def test_a_chinese_font_fontconfig_lists_under_a_folder_with_a_colon_is_found(tmp_path, monkeypatch):
    # fc-list writes "PATH: "; the path was cut at its first colon, and the only CJK font was passed over.
    import shutil

    from bbuvl.eval.fonts import _search

    installed = find_cjk_font()
    need("cjk-font", installed.cjk and shutil.which("fc-list") is not None,
         "no CJK font or fontconfig installed: install Debian's `fonts-wqy-microhei` (make fonts)")
    folder = tmp_path / "Fonts: CJK"
    folder.mkdir()
    font = folder / installed.path.name
    shutil.copyfile(installed.path, font)
    conf = tmp_path / "fonts.conf"
    conf.write_text(f"<?xml version='1.0'?><fontconfig><dir>{folder}</dir><cachedir>{tmp_path / 'cache'}</cachedir>"
                    "</fontconfig>", encoding="utf-8")
    monkeypatch.setenv("FONTCONFIG_FILE", str(conf))
    _search.cache_clear()
    try:
        assert find_cjk_font().path == font  # fontconfig's fonts are tried first
    finally:
        _search.cache_clear()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_predictions_manifest_damaged_since_the_metrics_is_named_in_the_page_which_is_still_written(tmp_path):
    import html

    evaluation = hostile_evaluation(tmp_path, ["a.png"], ["线缆"])
    manifest = tmp_path / "ds" / "pred.jsonl.predict.json"
    manifest.write_text("{not json", encoding="utf-8")
    page = write_report(evaluation, tmp_path / "report", NO_CJK, worst=0).read_text(encoding="utf-8")
    header = html.unescape(page[page.index("<h1>"):page.index("</p>")])
    assert f"{tmp_path / 'ds' / 'pred.jsonl'} against " in header and "the model is not known: " in header
    assert str(manifest) in header


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_fault_label_below_its_photos_review_threshold_is_not_framed_as_a_fault(tmp_path):
    # A head's alternatives (labels_per_box) give many a screw a fault label near 0: the report framed each in magenta,
    # and a photo its verdict passed looked covered in faults. Only the verdict's faults are framed, by the thresholds
    # that judged each photo: here 0.3 for the photo predicted in one pass, 0.05 for the one predicted through tiles.
    import json

    from bbuvl.infer.verdict import FramedThresholds, VerdictThresholds

    ok, wrong = "螺丝连接点/BBU安装螺丝/连接正确", "螺丝连接点/BBU安装螺丝/连接错误"
    rows, lines = [], []
    for name, tiled in (("whole.png", False), ("tiled.png", True)):
        Image.new("RGB", (64, 48), (60, 60, 60)).save(tmp_path / name)
        rows.append({"images": [name], "width": 64, "height": 48, "objects": [{"bbox_2d": [10, 10, 30, 30], "desc": ok}]})
        lines.append({"image": name, "width": 64, "height": 48, "raw": None, "error": None, "tiled": tiled,
                      "objects": [{"bbox_2d": [10, 10, 30, 30], "label": ok, "score": 0.9},
                                  {"bbox_2d": [10, 10, 30, 30], "label": wrong, "score": 0.1}]})
    gt, pred = tmp_path / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    pred.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    judged = FramedThresholds(VerdictThresholds(0.3, 0.6), VerdictThresholds(0.05, 0.6))
    evaluation = evaluate_predictions(read_records(gt), gt, read_predictions(pred), pred, thresholds=judged)
    assert evaluation.faults.photo_verdicts == ["pass", "review"]
    report = write_report(evaluation, tmp_path / "report", NO_CJK, worst=2)

    def magenta_in_predictions(stem: str) -> int:
        (png,) = (report.parent / "worst").glob(f"*_{stem}.png")
        picture = Image.open(png).convert("RGB")
        right = picture.crop((picture.width // 2, 0, picture.width, picture.height))
        return sum(n for n, color in right.getcolors(1 << 20) if color == MAGENTA)

    assert magenta_in_predictions("whole") == 0  # passed: its fault label at 0.1 is below review 0.3
    assert magenta_in_predictions("tiled") > 0  # sent to review by it: 0.1 is above the tiled photos' 0.05
    assert "on the prediction side only one the photo's verdict counts" in report.read_text(encoding="utf-8")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_to_check_whose_prediction_failed_says_so_in_its_picture_and_caption(tmp_path):
    # The photos to check (a missed fault first) showed a photo whose prediction line was an error as "prediction (0)"
    # beside its ground truth's faults, its caption saying only "verdict review · missed 1": read as a photo where the
    # model found nothing. `bbuvl viz` and the report's worst photos said why; the photos to check now do too.
    from bbuvl.eval.draw import compare_picture, prediction_title

    evaluation = hostile_evaluation(tmp_path, ["a.png", "b.png", "c.png"], ["螺丝连接点/BBU安装螺丝/连接错误"])
    out = tmp_path / "report"
    page = write_report(evaluation, out, NO_CJK, worst=3).read_text(encoding="utf-8")
    i = next(i for i, r in enumerate(evaluation.images) if r.image_path.name == "c.png")
    f = evaluation.faults
    assert i in f.photos_to_check(3)
    figure = next(part for part in page.split("<figure>") if "c.png" in part)
    assert "prediction error: &lt;script&gt;alert(2)&lt;/script&gt;" in figure, figure
    result = evaluation.images[i]
    assert prediction_title(result.prediction).startswith("prediction failed: ")
    name = next((out / FAULTS_DIR).glob("*_c.png"))
    expected, _ = compare_picture(result.record, result.image_path, result.objects, result.match, NO_CJK,
                                  LabelNamer(NO_CJK), prediction_title=prediction_title(result.prediction),
                                  faults=f.judged_with, verdict=f.photo_judged_by[i])
    assert Image.open(name).convert("RGB").tobytes() == expected.convert("RGB").tobytes()


def test_a_predicted_label_the_hierarchy_cannot_judge_is_framed_and_marked_in_the_report(tmp_path):
    # A box labelled `挡风版/未安装` (a misspelt category) sends its photo to review, but the report drew it as any
    # other box of its outcome colour: the photo to check read "verdict review" with nothing in the picture showing why.
    import numpy as np

    from bbuvl.data.faults import Faults
    from bbuvl.eval.draw import compare_picture, prediction_boxes
    from bbuvl.infer.verdict import VerdictThresholds

    faults, verdict = Faults.load(None), VerdictThresholds(0.25, 0.5)
    photo = tmp_path / "p.png"
    Image.new("RGB", (640, 480), (0, 0, 0)).save(photo)
    record = ImageRecord(images=["p.png"], width=640, height=480,
                         objects=[ObjectAnn(bbox_2d=[300, 300, 400, 400], desc="标签贴纸")])
    name = LabelNamer(NO_CJK)
    magenta = {}
    for label in ("挡风版/未安装", "标签贴纸"):
        objects = [{"bbox_2d": [100, 100, 200, 200], "label": label, "score": 0.3}]
        [box] = prediction_boxes(objects, record, None, name, lambda lb, s: False, lambda lb, s: faults.unjudgeable(lb))
        assert (box.fault, box.text.startswith("?! ")) == ((True, True) if label != "标签贴纸" else (False, False))
        picture, _ = compare_picture(record, photo, objects, None, NO_CJK, name, faults=faults, verdict=verdict)
        magenta[label] = int((np.asarray(picture.convert("RGB")).reshape(-1, 3) == MAGENTA).all(axis=1).sum())
    assert magenta["挡风版/未安装"] > 0 and magenta["标签贴纸"] == 0, magenta
    # Below review it sends no photo to review (infer/verdict.py `unjudged_at_review`): drawn as any other box
    low = [{"bbox_2d": [100, 100, 200, 200], "label": "挡风版/未安装", "score": 0.1}]
    picture, _ = compare_picture(record, photo, low, None, NO_CJK, name, faults=faults, verdict=verdict)
    assert not (np.asarray(picture.convert("RGB")).reshape(-1, 3) == MAGENTA).all(axis=1).any()



def test_a_fault_under_min_score_that_sends_its_photo_to_review_is_drawn_framed(tmp_path):
    # --min-score leaves a box out of the error counts, not out of the verdict (eval/metrics.py `_score_faults`): the
    # photo went to review on a fault at 0.4 under --min-score 0.5, and its picture showed no fault at all.
    import json

    import numpy as np

    from bbuvl.eval.report import judged_objects
    from bbuvl.infer.verdict import VerdictThresholds

    ok, wrong = "螺丝连接点/BBU安装螺丝/连接正确", "螺丝连接点/BBU安装螺丝/连接错误"
    Image.new("RGB", (64, 48), (60, 60, 60)).save(tmp_path / "p.png")
    gt, pred = tmp_path / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text(json.dumps({"images": ["p.png"], "width": 64, "height": 48,
                              "objects": [{"bbox_2d": [10, 10, 30, 30], "desc": ok}]}, ensure_ascii=False) + "\n",
                  encoding="utf-8")
    objects = [{"bbox_2d": [10, 10, 30, 30], "label": ok, "score": 0.9},
               {"bbox_2d": [34, 20, 50, 40], "label": wrong, "score": 0.4},
               {"bbox_2d": [2, 2, 8, 8], "label": wrong, "score": 0.1}]  # below review too: counted nowhere, not drawn
    pred.write_text(json.dumps({"image": "p.png", "width": 64, "height": 48, "raw": None, "error": None,
                                "objects": objects}, ensure_ascii=False) + "\n", encoding="utf-8")
    evaluation = evaluate_predictions(read_records(gt), gt, read_predictions(pred), pred, min_score=0.5,
                                      thresholds=VerdictThresholds(0.3, 0.6))
    assert evaluation.faults.photo_verdicts == ["review"] and evaluation.faults.photos_to_check(1) == [0]
    assert [o["score"] for o in evaluation.images[0].objects] == [0.9]  # the error counts read the one box
    f = evaluation.faults
    assert [o["score"] for o in judged_objects(evaluation.images[0], f.judged_with, f.photo_judged_by[0])] == [0.9, 0.4]
    report = write_report(evaluation, tmp_path / "report", NO_CJK, worst=1)
    (png,) = (report.parent / FAULTS_DIR).glob("*_p.png")
    picture = Image.open(png).convert("RGB")
    right = np.asarray(picture.crop((picture.width // 2, 0, picture.width, picture.height)))
    assert (right.reshape(-1, 3) == MAGENTA).all(axis=1).sum() > 0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_state_written_right_to_left_keeps_its_true_to_predicted_order_in_the_page(tmp_path):
    # "תקין→שבור 1" (true → predicted) is one right-to-left run to a browser: it showed "שבור→תקין", the states the
    # other way round, read as the model calling a broken part intact. Each state is isolated now.
    import json

    from bbuvl.data.faults import Faults

    hierarchy = tmp_path / "h.json"
    hierarchy.write_text(json.dumps({"categories": {"דלת": {"attributes": {"מצב": {"states": {
        "תקין": "intact", "שבור": {"gloss": "broken", "fault": True}}}}}}}, ensure_ascii=False), encoding="utf-8")
    Image.new("RGB", (64, 48), (60, 60, 60)).save(tmp_path / "p.png")
    gt, pred = tmp_path / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text(json.dumps({"images": ["p.png"], "width": 64, "height": 48, "objects": [
        {"bbox_2d": [10, 10, 30, 30], "desc": "דלת/מצב/שבור"}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    pred.write_text(json.dumps({"image": "p.png", "width": 64, "height": 48, "raw": None, "error": None, "objects": [
        {"bbox_2d": [10, 10, 30, 30], "label": "דלת/מצב/תקין", "score": 0.9}]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    evaluation = evaluate_predictions(read_records(gt), gt, read_predictions(pred), pred, faults=Faults.load(hierarchy))
    page = write_report(evaluation, tmp_path / "report", NO_CJK, worst=1).read_text(encoding="utf-8")
    assert "<td><bdi>שבור</bdi>→<bdi>תקין</bdi> 1</td>" in page
