"""The evaluation report: one self-contained HTML page plus the PNGs it shows.

REPORT_DIR/
  index.html            the faults first (docs/faults.md), then metrics, per-category table, precision-recall plot,
                        worst photos
  fault_pr_curve.png    precision-recall of fault objects over every score threshold
  faults/NNN_<photo>.png ground truth | prediction, faults framed in magenta: photos with a missed fault first, then
                        clean photos flagged
  pr_curve.png          precision-recall curves (COCO's interpolated precision at 101 recall points)
  worst/NNN_<photo>.png ground truth | prediction, for the photos with the lowest F1

Every picture is embedded in index.html as a data URI (JPEG for photos, to keep the page small), so
the page can be mailed or archived alone; the PNGs beside it are the full-quality copies.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure  # the object API needs no display and touches no global backend
from matplotlib.font_manager import FontProperties
from PIL import Image

from bbuvl.atomic import atomic_folder, save_atomic, write_bytes_atomic, write_text_atomic
from bbuvl.clock import local_time
from bbuvl.data.faults import Faults
from bbuvl.data.labels import Hierarchy
from bbuvl.data.text import spell_controls
from bbuvl.eval.draw import (CAPTION_CHARS, FAULT_LEGEND, LabelNamer, compare_picture, drawable, file_stem,
                             prediction_title)
from bbuvl.eval.faults import FaultMetrics
from bbuvl.eval.fonts import FontChoice
from bbuvl.eval.metrics import Evaluation, ImageResult
from bbuvl.eval.predictions import predictions_manifest
from bbuvl.eval.size_buckets import SizeResult
from bbuvl.infer.verdict import VerdictThresholds, at_review, unjudged_at_review
from bbuvl.outputs import Claim, output_path
from bbuvl.paths import real_path

PR_CURVE_FILE = "pr_curve.png"
WORST_DIR = "worst"
FAULT_CURVE_FILE = "fault_pr_curve.png"
FAULTS_DIR = "faults"
MAX_CATEGORY_CURVES = 10
REPORT_WRITER = "eval"  # the command a report's own ledger names as the writer of its files (`_record_in_folder`)
# The only names a report draws into its picture folders (`_write_report`: the rank, then the photo's stem).
_PICTURE = re.compile(r"\d{3,}_[^/]+\.png")
# The page's one style sheet, allowed by its hash below; the page has no script of its own.
STYLE = """
body { font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; } th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td.label, th { text-align: left; } .warn { background: #fff3cd; border: 1px solid #e0c36c; padding: 6px 10px; }
.grid { display: flex; gap: 32px; flex-wrap: wrap; } figure { margin: 0 0 28px; } figcaption { font-size: 14px; margin: 4px 0; }
img { max-width: 100%; border: 1px solid #ddd; } td.better { color: #1a7f37; } td.worse { color: #c62828; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: 6px; font-size: 12px; }
"""
# Labels, photo names, a model's answers and a predictor's errors are data an attacker may write, and the page is mailed
# and opened from shared drives: were one ever put in unescaped, this policy still runs no script (none is allowed,
# inline handlers and javascript: links included), loads nothing from anywhere (every picture is a data: URI, the
# PNGs are only linked) and applies no other style. A meta policy, as a file:// page gets no headers (docs/eval.md,
# "The HTML report").
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src data:; "
                           f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
                           "base-uri 'none'; form-action 'none'")


def _save_png(path: Path, picture: Image.Image) -> None:
    """Write `picture` as a PNG at Pillow's fastest compression: level 6, its default, took three times as long for
    a tenth less on the report's pictures, most of the time `bbuvl eval --report` spent on them."""
    save_atomic(path, lambda fh: picture.save(fh, "PNG", compress_level=1))


def write_report(
    evaluation: Evaluation, out_dir: str | Path, font: FontChoice, hierarchy: Hierarchy | None = None, worst: int = 20,
    comparison: list[dict[str, Any]] | None = None, baseline_name: str | None = None, sizes: SizeResult | None = None,
    unreadable: list[str] | None = None, also_written: list[Path] | None = None,
) -> Path:
    """Write REPORT_DIR/index.html with its PNGs and return the page's path; `comparison` (eval/compare.py) adds a
    baseline-vs-this table, `sizes` the recall of small parts (AP50 and recall by size in vision tokens).
    A photo that cannot be read is drawn on a grey placeholder naming why, and `unreadable` (when given) gets why
    (naming the photo) once for it, so that the caller can say so too. `also_written`: files of this evaluation the
    caller wrote into REPORT_DIR (a METRICS.json given inside it), recorded as the report's own files are."""
    out_dir = Path(out_dir)
    # Each picture folder is filled beside its name and swapped in whole: a re-run with fewer photos (--worst 2 after
    # 20) would otherwise show the earlier run's pictures beside its own (docs/outputs.md, "A re-run replaces").
    with atomic_folder(out_dir / FAULTS_DIR) as faults_dir, atomic_folder(out_dir / WORST_DIR) as worst_dir:
        curves, page = _write_report(evaluation, out_dir, faults_dir, worst_dir, font, hierarchy, worst, comparison,
                                     baseline_name, sizes, [] if unreadable is None else unreadable)
    for folder in (out_dir / FAULTS_DIR, out_dir / WORST_DIR):
        if not any(folder.iterdir()):  # nothing to show (no fault, --worst 0): no content a ledger could vouch for
            folder.rmdir()
    # The files beside the picture folders are written once both are in, the page last: a run stopped while it drew
    # (seconds to minutes) left its curves beside the previous run's page and pictures, one report of two runs.
    for path, picture in curves:
        _save_png(path, picture)
    index = out_dir / "index.html"
    write_text_atomic(index, page)
    written = [index, *(path for path, _ in curves), out_dir / FAULTS_DIR, out_dir / WORST_DIR,
               *(Path(p) for p in also_written or [])]
    _record_in_folder(out_dir, written + _drop_earlier(out_dir, written))
    return index


def _drop_earlier(out_dir: Path, written: list[Path]) -> list[Path]:
    """Remove what an earlier report recorded in `out_dir` as its own, unchanged, that this one did not write again (a
    METRICS.json an earlier run was given inside the folder, and its COCO details), and return those paths: the
    folder held this run's page beside another run's metrics. Anything else there is left as it is."""
    from bbuvl.atomic import remove_path
    from bbuvl.outputs import written_here

    kept = {output_path(p) for p in written}
    dropped = []
    # The report's own ledger alone: through the folder's entry above it, a photo the report was written beside
    # (--report DS/images --overwrite) read as eval's while the folder's digest held
    for name in written_here(out_dir, REPORT_WRITER):
        path = output_path(out_dir / name)
        if path not in kept and path.parent == output_path(out_dir) and not name.startswith("."):
            remove_path(path)
            dropped.append(path)
    return dropped


def drawn_by_report(name: str) -> bool:
    """Whether `name`, relative to worst/ or faults/, is a picture a report draws there."""
    return _PICTURE.fullmatch(name) is not None


def _record_in_folder(out_dir: Path, written: list[Path]) -> None:
    """Record what the report wrote in its folder's own ledger (bbuvl/outputs.py), each by its content. The command's
    claim records the folder in the ledger beside it, under its name: moved elsewhere, the report was 'written by
    someone else' and a rerun there needed --overwrite. These entries move with the folder, so `bbuvl eval` knows its
    report wherever it lies, and a file put in beside them is no part of it (docs/outputs.md, "Owned by content")."""
    pictures = {output_path(out_dir / FAULTS_DIR), output_path(out_dir / WORST_DIR)}  # listed: their own are these
    Claim(REPORT_WRITER, [output_path(p) for p in written], {}, listed=pictures).finish(succeeded=True)


def _write_report(evaluation: Evaluation, out_dir: Path, faults_dir: Path, worst_dir: Path, font: FontChoice,
                  hierarchy: Hierarchy | None, worst: int, comparison: list[dict[str, Any]] | None,
                  baseline_name: str | None, sizes: SizeResult | None,
                  unreadable: list[str]) -> tuple[list[tuple[Path, Image.Image]], str]:
    """`write_report`'s body: the pictures drawn into `faults_dir` and `worst_dir` (filled before they take their
    names), and the curves to write beside them and the page linking them by their final names, for the caller to
    write once the folders are in."""
    hierarchy = hierarchy or Hierarchy.load()
    name = LabelNamer(font, hierarchy)
    faults = evaluation.faults
    # A photo's pictures frame the predictions its verdict counts, by the thresholds that judged it (its framing's,
    # chosen anew under --choose-thresholds): a head's fault-label alternatives near 0 covered a passed photo in faults.
    index = {id(result): i for i, result in enumerate(evaluation.images)}

    fault_curve = plot_fault_curve(faults)
    # id of an image's result -> its picture as the page embeds it, and its first file. Kept encoded, not as pixels:
    # the pictures of --worst 300 held 776 MB until the page was written, and --worst 2000 would hold gigabytes.
    drawn: dict[int, tuple[str, Path]] = {}
    problems: dict[int, str] = {}  # id of an image's result -> why its photo could not be read

    def draw(result: ImageResult, file: Path) -> str:
        """The result's picture written to `file` and returned as a data URI: drawn and encoded once, copied where a
        photo is in both lists."""
        if id(result) in drawn:
            uri, first = drawn[id(result)]
            write_bytes_atomic(file, first.read_bytes())
            return uri
        # titled by why there are no boxes, where the line says: "prediction (0)" over a photo whose line was an error
        # read as one where the model found nothing, in the photos to check as in the worst
        judged_by = faults.photo_judged_by[index[id(result)]]
        picture, problem = compare_picture(result.record, result.image_path,
                                           judged_objects(result, faults.judged_with, judged_by), result.match, font,
                                           name, prediction_title=prediction_title(result.prediction),
                                           faults=faults.judged_with,  # an unreadable photo is named on its placeholder
                                           verdict=judged_by)
        if problem is not None:
            unreadable.append(problem)
            problems[id(result)] = problem
        _save_png(file, picture)
        drawn[id(result)] = (_data_uri(picture), file)
        return drawn[id(result)][0]

    fault_pictures = []
    for rank, i in enumerate(faults.photos_to_check(worst), start=1):
        result = evaluation.images[i]
        png = f"{rank:03d}_{file_stem(result.image_path.stem)}.png"
        fault_pictures.append((i, draw(result, faults_dir / png), out_dir / FAULTS_DIR / png))

    curve = plot_pr_curves(evaluation, font, name)
    pictures = []
    for rank, result in enumerate(evaluation.worst(worst), start=1):
        png = f"{rank:03d}_{file_stem(result.image_path.stem)}.png"
        pictures.append((result, draw(result, worst_dir / png), out_dir / WORST_DIR / png))

    page = _page(evaluation, font, hierarchy, curve, pictures, out_dir,
                 _sizes_html(sizes) + _comparison_html(comparison, baseline_name),
                 _faults_html(evaluation, fault_curve, fault_pictures, out_dir, problems), problems)
    return [(out_dir / FAULT_CURVE_FILE, fault_curve), (out_dir / PR_CURVE_FILE, curve)], page


# --- precision-recall plot -----------------------------------------------------------------------


def plot_pr_curves(evaluation: Evaluation, font: FontChoice, name: LabelNamer) -> Image.Image:
    """Left: mean and class-agnostic precision-recall at IoU 0.5 and 0.75; right: per category at IoU 0.5."""
    curves = evaluation.coco.curves
    fig = Figure(figsize=(12, 5), dpi=100)
    ax_all, ax_cat = fig.subplots(1, 2)
    legend_font = FontProperties(fname=str(font.path), size=7) if font.cjk else None
    if not curves:
        for ax in (ax_all, ax_cat):
            ax.text(0.5, 0.5, "no ground-truth objects: no curve", ha="center", va="center")
    else:
        recall = curves["recall"]
        styles = {("iou_0.50", "mean"): ("C0", "-"), ("iou_0.50", "agnostic"): ("C1", "-"),
                  ("iou_0.75", "mean"): ("C0", "--"), ("iou_0.75", "agnostic"): ("C1", "--")}
        for (iou_key, kind), (color, dash) in styles.items():
            xs, ys = _defined(recall, curves[iou_key][kind])
            label = f"{'mean over categories' if kind == 'mean' else 'class-agnostic'}, IoU {iou_key[4:]}"
            ax_all.plot(xs, ys, color=color, linestyle=dash, label=label)
        ax_all.set_title(f"Precision-recall (AP50 {_fmt(evaluation.metrics['AP50'])}, AP {_fmt(evaluation.metrics['AP'])})")
        ax_all.legend(loc="lower left", fontsize=8)
        per_category = evaluation.metrics["per_category"]
        ranked = sorted(curves["iou_0.50"]["per_category"], key=lambda c: -per_category[c]["gt"])[:MAX_CATEGORY_CURVES]
        lines, labels = [], []
        for category in ranked:
            xs, ys = _defined(recall, curves["iou_0.50"]["per_category"][category])
            lines += ax_cat.plot(xs, ys)
            # spelt: without a CJK font a category the hierarchy has no gloss for was a row of blank boxes
            labels.append(f"{_plain_text(font.spelt(name(category)))} (AP50 {_fmt(per_category[category]['AP50'])})")
        ax_cat.set_title(f"Per category, IoU 0.5 (top {len(ranked)} by ground-truth count)")
        if ranked:  # labels given with their lines: matplotlib leaves a label starting with "_" out of a legend it finds
            ax_cat.legend(lines, labels, loc="lower left", prop=legend_font or {"size": 7})
    return _pr_figure(fig, (ax_all, ax_cat))


def _plain_text(label: str) -> str:
    """A label as matplotlib shows it verbatim: one line (`drawable`), its `$` escaped; between two `$` it is read as
    TeX, and `$\\frac$` was a ValueError that lost the whole report."""
    return drawable(label, CAPTION_CHARS).replace("$", r"\$")


def _pr_figure(fig: Figure, axes: tuple[Any, ...]) -> Image.Image:
    """Precision-recall axes set alike, the figure rendered to an RGB picture."""
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
    with warnings.catch_warnings():
        # Without a CJK font a label the hierarchy has no gloss for warned once a character, with a line of this code;
        # the missing font is said once, in the report and the terminal.
        warnings.filterwarnings("ignore", r"Glyph \d+ .*missing from font", UserWarning)
        fig.tight_layout()
        canvas = FigureCanvasAgg(fig)  # rendered to pixels, not through a PNG and back
        canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def plot_fault_curve(faults: FaultMetrics) -> Image.Image:
    """Precision-recall of fault objects over every score threshold, the verdict's thresholds and "always fail" marked."""
    o = faults.objects
    fig = Figure(figsize=(6, 4.5), dpi=100)
    ax = fig.subplots()
    if not o.gt:
        ax.text(0.5, 0.5, "no fault in the ground truth: no curve", ha="center", va="center")
    else:
        ax.plot(o.curve.recall, o.curve.precision, color="C3", label=f"model (AP {_fmt(o.at_fail.AP)})")
        t = faults.one_pair()
        for point, marker, label in ((o.at_fail, "o", "each photo's fail" if t is None else f"fail ≥ {t.fail:g}"),
                                     (o.at_review, "s", "each photo's review" if t is None else f"review ≥ {t.review:g}"),
                                     (o.always_fail, "x", "always fail (every judged part)")):
            if point.recall is not None and point.precision is not None:
                ax.plot([point.recall], [point.precision], marker, color="k" if marker == "x" else "C3", label=label)
        ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"Faults: {o.gt} in the ground truth, found = same kind and state at IoU ≥ {o.iou:g}", fontsize=10)
    return _pr_figure(fig, (ax,))


def _defined(xs: list[float], ys: list[float | None]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# --- the page ------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """`text` as the page shows it: its controls and bidirectional controls spelled out, as a terminal shows them
    (data/text.py), then escaped; a photo named `evil\u202egpj.exe.png` read `evilgnp.exe.jpg` in a caption."""
    return html.escape(spell_controls(text))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=85)
        mime = "image/jpeg"
    else:
        image.save(buffer, "PNG")
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _rows(rows: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{_escape(k)}</th><td>{_escape(_fmt(v))}</td></tr>" for k, v in rows)


def _sizes_html(sizes: SizeResult | None) -> str:
    if sizes is None:
        return ""
    rows = "".join(f"<tr><th>{_escape(name)}</th><td>{b['objects']}</td><td>{_fmt(b['AP50'])}</td>"
                   f"<td>{_fmt(b['AP50_agnostic'])}</td><td>{_fmt(b['recall'])}</td></tr>" for name, b in sizes.buckets.items())
    return ("<h2>Small parts: by size in vision tokens at the frame</h2><p>An object's size is how many of the model's vision "
            "tokens it covers at the checkpoint's frame; below one token is what the model sees least.</p>"
            "<table><tr><th>size</th><th>objects</th><th>AP50</th><th>AP50 class-agnostic</th><th>recall</th></tr>"
            f"{rows}</table>")


class _Html(str):
    """A cell already written for the page: its data escaped (`_escape`), its markup the report's own."""


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join("<tr>" + "".join((f"<td>{v}</td>" if isinstance(v, _Html) else f"<td>{_escape(_fmt(v))}</td>") if i
                                     else f"<th>{_escape(str(v))}</th>" for i, v in enumerate(row)) + "</tr>"
                    for row in rows)
    return "<table><tr>" + "".join(f"<th>{_escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _faults_html(evaluation: Evaluation, curve: Image.Image, pictures: list[tuple[int, str, Path]], out_dir: Path,
                 problems: dict[int, str]) -> str:
    """The section the report opens with: fault metrics beside always pass / always fail, then the photos to check."""
    f = evaluation.faults
    if not f.labels:
        return "<h2>Faults</h2><p class='warn'>The hierarchy marks no fault, so every photo passes (docs/faults.md).</p>"
    o, p = f.objects, f.photos
    objects = _table(["", *f.at_thresholds(), "always pass", "always fail"],
                     [[name, *(getattr(s, key) for s in (o.at_fail, o.at_review, o.always_pass, o.always_fail))]
                      for key, name in (("recall", "recall"), ("precision", "precision"), ("AP", "AP (every score)"),
                                        ("found", "found"), ("flagged", "predicted faults counted"))])
    verdict_rows = [[f"{k} ({meaning})", *(getattr(getattr(s, which), k) for s in (p.model, p.always_pass, p.always_fail))]
                    for which, meaning in (("flagged", "review or fail"), ("failed", "fail"))
                    for k in ("precision", "recall", "accuracy")]
    verdict_rows.append(["ROC AUC of the photo's fault score", p.model.roc_auc, p.always_pass.roc_auc, p.always_fail.roc_auc])
    verdicts = _table(["", "model", "always pass", "always fail"], verdict_rows)
    counts = _table(["verdict", "faulty photos", "clean photos"], [[v, c["faulty"], c["clean"]] for v, c in p.verdicts.items()])
    state_rows = []
    for c in f.states:
        if not sum(map(sum, c.counts)) + sum(c.missed):
            continue
        # Each state isolated: "תקין→שבור" is one right-to-left run to a browser, shown as "שבור→תקין", true and
        # predicted swapped
        moves = ", ".join(f"<bdi>{_escape(c.states[i])}</bdi>→<bdi>{_escape(c.states[j])}</bdi> {n}"
                          for i, row in enumerate(c.counts) for j, n in enumerate(row) if n and i != j)
        state_rows.append([c.kind, sum(map(sum, c.counts)), c.accuracy, c.always_pass, c.always_fail, sum(c.missed),
                           _Html(moves or "–")])
    states = _table(["kind", "found", "state accuracy", "always pass", "always fail", "missed", "true → predicted"], state_rows)
    items = "".join(_fault_item(evaluation, i, pic, file, out_dir, problems) for i, pic, file in pictures)
    items = _shown(len(pictures), len(f.photos_to_check(len(evaluation.images))), "photos to check",
                   "No fault missed and no clean photo flagged.") + items
    return (f"<h2>Faults</h2><p>{o.gt} faults in {p.faulty} of {p.photos} photos; found = a box with the same kind and "
            f"state at IoU ≥ {o.iou:g}; {_escape(_verdict_rule(f))}; {_escape(FAULT_LEGEND)} in the pictures, "
            "on the prediction side only one the photo's verdict counts (a fault label scoring at least the review "
            "threshold that judged the photo; below it, a box like any other).</p>"
            f"<div class='grid'><div><h3>Fault objects</h3>{objects}</div><div><h3>Photo verdict</h3>{verdicts}{counts}</div>"
            f"<div><h3>State given kind</h3>{states}</div></div>"
            f"<img alt='fault precision-recall' src='{_data_uri(curve, 'PNG')}'>"
            f"<h3>Photos with a missed fault first, then clean photos flagged</h3>{items}")


def judged_objects(result: ImageResult, faults: Faults, judged_by: VerdictThresholds) -> list[dict[str, Any]]:
    """The predicted boxes a photo's picture shows: those the error counts read (`--min-score` and above, in their
    outcome colours) and, after them, those below it that its verdict counts (a fault or a label the hierarchy cannot
    judge, scoring at least `judged_by`'s review threshold: infer/verdict.py), which the verdict reads whatever
    `--min-score` is. Left out, a photo sent to review by a fault at 0.4 under --min-score 0.5 showed none."""
    if result.prediction is None or len(result.objects) == len(result.prediction.objects):
        return result.objects
    kept = {id(o) for o in result.objects}
    below = [o for o in result.prediction.objects if id(o) not in kept and (
        at_review(o["label"], o["score"], faults, judged_by) or unjudged_at_review(o["label"], o["score"], faults, judged_by))]
    return result.objects + below if below else result.objects


def _shown(shown: int, of: int, what: str, none: str) -> str:
    """How many of a list's photos the page shows: with --worst 0 or 20 of 1,500, an empty or short list read as
    every photo there was ("No photo has any error." over 18 missed parts)."""
    if not of:
        return f"<p>{none}</p>"
    return f"<p>All {of} {what}.</p>" if shown == of else f"<p>{shown} of the {of} {what} (a larger --worst shows more).</p>"


def _verdict_rule(f: FaultMetrics) -> str:
    """When a photo fails and when it goes to review, in words (each framing's rule when they differ)."""
    t = f.one_pair()
    if t is not None:
        return f"a photo fails at a fault score ≥ {t.fail:g} and goes to review from {t.review:g}"
    return f"a photo goes to review or fails at its framing's thresholds ({f.judged()})"


def _fault_item(evaluation: Evaluation, i: int, picture: str, file: Path, out_dir: Path,
                problems: dict[int, str]) -> str:
    f, result = evaluation.faults, evaluation.images[i]
    truth = sum(f.judged_with.is_fault(o.desc) for o in result.record.objects)
    facts = (f"verdict {f.photo_verdicts[i]} · fault score {_fmt(f.photo_scores[i])} · faults in the ground truth {truth} · "
             f"missed {f.photo_missed[i]}")
    rel = file.relative_to(out_dir).as_posix()
    return (f"<figure><figcaption><b>{_escape(str(result.image_path))}</b><br>{_escape(facts)} · "
            f"<a href='{_escape(rel)}'>PNG</a></figcaption>{_unread_note(result, problems)}{_prediction_note(result)}"
            f"<img alt='{_escape(result.image_path.name)}' src='{picture}'></figure>")


def _comparison_html(rows: list[dict[str, Any]] | None, baseline_name: str | None) -> str:
    if not rows:
        return ""
    classes = {True: "better", False: "worse", None: ""}
    body = []
    for r in rows:
        change = "" if r["delta"] is None else f"{r['delta']:+.3f}"
        body.append(f"<tr><th>{_escape(r['name'])}</th><td>{_fmt(r['baseline'])}</td><td>{_fmt(r['value'])}</td>"
                    f"<td class='{classes[r['better']]}'>{change}</td></tr>")
    return (f"<h2>Against the baseline</h2><p>{_escape(str(real_path(baseline_name)) if baseline_name else '')}</p>"
            f"<table><tr><th></th><th>baseline</th><th>this</th><th>change</th></tr>{''.join(body)}</table>")


def _page(
    evaluation: Evaluation, font: FontChoice, hierarchy: Hierarchy, curve: Image.Image,
    pictures: list[tuple[ImageResult, str, Path]], out_dir: Path, comparison_html: str = "", faults_html: str = "",
    problems: dict[int, str] | None = None,
) -> str:
    m, coco, s = evaluation.metrics, evaluation.details()["coco"], evaluation.settings
    agnostic = evaluation.coco.agnostic
    warnings = ([font.warning] if font.warning else []) + evaluation.notes
    warning_html = "".join(f'<p class="warn">⚠ {_escape(w)}</p>' for w in warnings)
    level = f"level {s['level']}" if s["level"] else "full label"
    coco_rows = [(k, coco[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")]
    coco_rows += [("AP (class-agnostic)", agnostic["AP"]), ("AP50 (class-agnostic)", agnostic["AP50"])]
    acc_rows = [(k.replace("_", " "), v) for k, v in m["label_accuracy"].items()]
    error_rows = [(k.replace("_", " "), v) for k, v in m["errors"].items()]
    error_rows += [("parse failure rate", m["parse_failure_rate"]), ("duplicate rate", m["duplicate_rate"])]

    categories = sorted(m["per_category"].items(), key=lambda kv: (-kv[1]["gt"], kv[0]))
    cat_head = "".join(f"<th>{c}</th>" for c in ("category", "English", "GT", "pred", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"))
    cat_rows = "".join(
        "<tr><td class='label'>" + _escape(c) + "</td><td class='label'>" + _escape(hierarchy.english(c)) + "</td>"
        + "".join(f"<td>{_fmt(v.get(k))}</td>" for k in ("gt", "pred", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"))
        + "</tr>"
        for c, v in categories
    )
    worst_html = (_shown(len(pictures), len(evaluation.worst(len(evaluation.images))), "photos with an error",
                         "No photo has any error.")
                  + "".join(_worst_item(r, pic, file, out_dir, problems or {}) for r, pic, file in pictures))
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<title>bbu-vl evaluation</title>
<style>{STYLE}</style></head><body>
<h1>bbu-vl evaluation</h1>
<p>{_escape(_scored(s))} · categories at {level} · matching IoU ≥ {s['iou']}
 · error counts at score ≥ {s['min_score']} · {local_time()}</p>
{warning_html}
{faults_html}
<div class="grid">
<div><h2>COCO</h2><table>{_rows(coco_rows)}</table></div>
<div><h2>Label accuracy (matched boxes)</h2><table>{_rows(acc_rows)}</table></div>
<div><h2>Errors</h2><table>{_rows(error_rows)}</table></div>
</div>
{comparison_html}
<h2>Precision-recall</h2>
<img alt="precision-recall curves" src="{_data_uri(curve, 'PNG')}">
<h2>Per category</h2>
<table><tr>{cat_head}</tr>{cat_rows}</table>
<h2>Worst photos first</h2>
{worst_html}
</body></html>
"""


def _scored(settings: dict[str, Any]) -> str:
    """What the page scores, as a reviewer elsewhere can find it: the predictions and ground truth by their real paths
    (as typed, relative to the folder eval ran in, they named nothing in a page mailed on), and the checkpoint and mode
    their manifest records."""
    pred, gt = settings["pred"], real_path(settings["gt"])
    if pred is None:
        return f"predictions against {gt}"
    try:
        manifest = predictions_manifest(pred)
    except (OSError, ValueError) as e:  # damaged or gone since the metrics: the page is still written, saying so
        made = f"the model is not known: {e}"
    else:
        made = ("the model is not recorded (no manifest of `bbuvl predict` beside the predictions)" if manifest is None
                else f"predicted by {manifest.checkpoint or 'a model not recorded'} in mode {manifest.mode}")
    return f"{real_path(pred)} against {gt} · {made}"


def _worst_item(result: ImageResult, picture: str, file: Path, out_dir: Path, problems: dict[int, str]) -> str:
    m = result.match
    facts = (f"F1 {result.f1:.2f} · missed {len(m.missed)} · extra {len(m.extra)} · mislocated {len(m.mislocated)}"
             f" · mislabelled {result.mislabelled} · duplicates {len(result.duplicates)}")
    rel = file.relative_to(out_dir).as_posix()
    return (f"<figure><figcaption><b>{_escape(str(result.image_path))}</b><br>{facts} · "
            f"<a href='{_escape(rel)}'>PNG</a></figcaption>{_unread_note(result, problems)}{_prediction_note(result)}"
            f"<img alt='{_escape(result.image_path.name)}' src='{picture}'></figure>")


def _prediction_note(result: ImageResult) -> str:
    """Why a photo's prediction holds no boxes, where its line says (none, an error, an answer not parsed); ""."""
    line = result.prediction
    if line is None:
        return "<p class='warn'>no prediction line for this photo</p>"
    if line.error:
        return f"<p class='warn'>prediction error: {_escape(line.error)}</p>"
    if result.failed:
        return f"<p class='warn'>answer could not be parsed:</p><pre>{_escape((line.raw or '')[:2000])}</pre>"
    return ""


def _unread_note(result: ImageResult, problems: dict[int, str]) -> str:
    """A note saying why the result's photo is a grey placeholder (as text: its picture says so only in pixels)."""
    problem = problems.get(id(result))
    if problem is None:
        return ""
    return f"<p class='warn'>photo not shown, drawn on a grey placeholder: {_escape(problem)}</p>"
