"""The photo verdict: `pass`, `review` or `fail`, from the faults predicted in it and two score thresholds.

A photo fails when any predicted fault (a label the hierarchy marks, data/faults.py) scores at least `fail`; it
goes to a person for `review` when its best fault scores at least `review` but below `fail`, or when no usable
answer came back for it (an error, an unreadable answer: nothing seen is not "nothing wrong"), when the answer
stopped with more to write (its token budget, or a stock server, ended it: what it did not write may hold the fault;
infer/parse.py `answer_cut`), or when a box's label is none the hierarchy can judge and may be a fault (`.../连接错`,
a label an answer not held to the vocabulary wrote: `Faults.unjudgeable`) and scores at least `review`, as a fault of
that score would (`unjudged_at_review`); otherwise it passes.
The photo's fault score is its best fault's score (0 without one): what ROC AUC ranks (eval/faults.py).

The thresholds come from the run config (`inference.verdict_review`, `inference.verdict_fail`), overridden by
`verdict_thresholds.json` in the checkpoint when `bbuvl eval --choose-thresholds` wrote one (docs/faults.md). A photo
predicted through tiles or zoom (a whole cabinet) is judged by a pair of its own when the checkpoint has one
(`verdict_thresholds_tiled.json`, or `inference.verdict_*_tiled`): its fault scores come from passes that saw the
parts at another scale (docs/faults.md, "Thresholds per framing").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from bbuvl.atomic import write_text_atomic
from bbuvl.data.digests import FileDigest
from bbuvl.data.faults import THRESHOLDS_FILE, TILED_THRESHOLDS_FILE, Faults
from bbuvl.data.jsonfile import is_json_number, read_json
from bbuvl.data.scale import TILE_SCALE_FILE
from bbuvl.model.identity import CHOSEN_FOR_ANOTHER, chosen_for_another, trained_identity

PASS, REVIEW, FAIL = "pass", "review", "fail"
# The digits a predictions line and the server write a score with (infer/predictor.py `Detection.to_dict`): a photo is
# judged by its scores as written, so that its line, `bbuvl eval` reading the line, and thresholds chosen on lines
# agree with the verdict the line holds.
SCORE_DIGITS = 5
VERDICTS = (PASS, REVIEW, FAIL)
TOOL = "bbuvl eval --choose-thresholds"


@dataclass(frozen=True)
class VerdictThresholds:
    """A fault scoring at least `fail` fails the photo; at least `review` (and below `fail`) sends it to review."""

    review: float
    fail: float

    def __post_init__(self) -> None:
        for name in ("review", "fail"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"verdict threshold '{name}' must be a number in [0, 1], got {v!r}")
        if self.review > self.fail:
            raise ValueError(f"verdict thresholds: review ({self.review}) must not exceed fail ({self.fail})")


@dataclass(frozen=True)
class FramedThresholds:
    """The thresholds of photos predicted in one pass (`whole`), and of photos predicted through tiles or zoom
    (`tiled`; None: the same as `whole`)."""

    whole: VerdictThresholds
    tiled: VerdictThresholds | None = None

    def of(self, tiled: bool) -> VerdictThresholds:
        """The pair that judges a photo predicted through tiles or zoom (`tiled`) or in one pass."""
        return self.tiled if tiled and self.tiled is not None else self.whole


def typed_thresholds_problem(review: float | None, fail: float | None) -> str | None:
    """Why `--verdict-review` and `--verdict-fail` given together cannot judge (review above fail), naming both as typed;
    None when they can. The check inside named neither option ('verdict_review (0.6) must not exceed verdict_fail')."""
    if review is None or fail is None or review <= fail:
        return None
    return (f"--verdict-review {review:g} must not exceed --verdict-fail {fail:g}: a photo goes to review from the "
            f"first and fails from the second, so give a review threshold at most the fail one (e.g. --verdict-review "
            f"{fail:g} --verdict-fail {review:g})")


def lone_threshold_problem(review: float | None, fail: float | None, in_effect: FramedThresholds) -> str | None:
    """Why `--verdict-review` or `--verdict-fail` given alone cannot judge beside the other threshold in effect (the
    checkpoint's chosen pair, else the config's), naming that threshold and where it is from; None when it can. The
    check inside said only 'review (0.62777) must not exceed fail (0.5)', a number the user never gave."""
    if (review is None) == (fail is None):
        return None
    for tiled, pair in ((False, in_effect.whole), (True, in_effect.tiled)):
        if pair is None:
            continue
        which = "photos predicted through tiles or zoom" if tiled else "photos predicted in one pass"
        where = f"the checkpoint's {thresholds_file(tiled)}, else the run config's"
        if fail is not None and fail < pair.review:
            return (f"--verdict-fail {fail:g} is below the review threshold in effect for {which}, {pair.review:g} "
                    f"({where}): give --verdict-review too, at most {fail:g}")
        if review is not None and review > pair.fail:
            return (f"--verdict-review {review:g} is above the fail threshold in effect for {which}, {pair.fail:g} "
                    f"({where}): give --verdict-fail too, at least {review:g}")
    return None


def thresholds_file(tiled: bool) -> str:
    """The checkpoint file that holds the chosen thresholds of photos predicted through tiles or zoom, or in one pass."""
    return TILED_THRESHOLDS_FILE if tiled else THRESHOLDS_FILE


@dataclass(frozen=True)
class ChosenThresholds:
    """Thresholds `bbuvl eval --choose-thresholds` chose on a validation set, with what they reached there."""

    thresholds: VerdictThresholds
    target_recall: float  # share of faulty photos the review threshold had to flag (review or fail)
    target_precision: float  # share of failed photos that had to be faulty at the fail threshold
    recall: float | None  # photos flagged / faulty photos, at `review`, on the validation photos
    precision: float | None  # faulty photos among those failed, at `fail`
    photos: int
    faulty_photos: int
    faults: list[str]  # the fault labels the hierarchy marked when they were chosen
    chosen_on: str  # the ground truth they were chosen on
    notes: list[str] = field(default_factory=list)
    tiled: bool = False  # chosen on photos predicted through tiles or zoom, for such photos
    # The prediction mode of the predictions they were chosen on: a head's scores and generate mode's are not on one
    # scale, so they judge that mode's photos alone. None (a file written before modes were recorded): every mode.
    mode: str | None = None
    # The checkpoint's `trained_identity` when they were written into it (None: not recorded): thresholds in a checkpoint
    # whose training record differs were chosen on another model's scores.
    model: str | None = None
    # Of a tiled pair, the scale `tiles: auto` cut the photos at when `choose-tiles` chose it (None: not recorded, as
    # `eval --choose-thresholds` writes it): a later scale makes other fault scores.
    tile_scale: float | None = None
    # ... and the categories the tiles refined then (None: not recorded): another refinement makes other fault scores too
    tile_refine: list[str] | None = None
    # Of a tiled pair `choose-tiles --choose-thresholds` wrote, the id it wrote into tile_scale.json after it (None: not
    # recorded, as `eval --choose-thresholds` writes it): the two are two files, and a run killed between its writes
    # left this pair beside another run's scale (`unpaired`).
    pair: str | None = None

    def applies(self, mode: str | None) -> bool:
        """Whether these thresholds judge photos predicted in `mode` (None: a mode not known, which they do)."""
        return mode is None or self.mode is None or self.mode == mode

    def faults_differ(self, faults: Iterable[str]) -> str | None:
        """How `faults` (fault labels) differ from those these thresholds were chosen for, in words; None when alike
        or when the file recorded none."""
        return fault_difference(faults, self.faults) if self.faults else None

    def save(self, checkpoint: str | Path) -> Path:
        """Write verdict_thresholds.json (verdict_thresholds_tiled.json when `tiled`) into the checkpoint folder
        (atomically)."""
        path = Path(checkpoint) / thresholds_file(self.tiled)
        body = {"tool": TOOL, "review": self.thresholds.review, "fail": self.thresholds.fail,
                **{k: v for k, v in asdict(self).items() if k != "thresholds"}, "model": trained_identity(checkpoint)}
        write_text_atomic(path, json.dumps(body, ensure_ascii=False, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, checkpoint: str | Path, tiled: bool = False) -> "ChosenThresholds | None":
        """The thresholds in a checkpoint folder for photos predicted in one pass, or through tiles or zoom (`tiled`);
        None when it has none; ValueError naming the file when damaged."""
        path = Path(checkpoint) / thresholds_file(tiled)
        if not path.is_file():
            return None
        data = read_json(path, "verdict thresholds")
        try:
            if not isinstance(data, dict) or data.get("tool") != TOOL:
                raise ValueError(f"not written by `{TOOL}`")
            faults = data.get("faults", [])
            if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
                raise ValueError("'faults' must be a list of labels")
            mode = data.get("mode")
            if mode is not None and not isinstance(mode, str):
                raise ValueError(f"'mode' must be a prediction mode's name, got {mode!r}")
            model = data.get("model")
            if model is not None and not isinstance(model, str):
                raise ValueError(f"'model' must be the checkpoint's digest, got {model!r}")
            scale = data.get("tile_scale")
            if scale is not None and not is_json_number(scale):
                raise ValueError(f"'tile_scale' must be a number, got {scale!r}")
            refine = data.get("tile_refine")
            if refine is not None and (not isinstance(refine, list) or not all(isinstance(c, str) for c in refine)):
                raise ValueError(f"'tile_refine' must be a list of categories, got {refine!r}")
            pair = data.get("pair")
            if pair is not None and not isinstance(pair, str):
                raise ValueError(f"'pair' must be the id written into tile_scale.json with it, got {pair!r}")
            if data.get("tiled", False) is not tiled:
                raise ValueError(f"chosen for photos predicted {'in one pass' if tiled else 'through tiles or zoom'} "
                                 f"('tiled': {data.get('tiled')!r}), not for the photos this file judges")
            return cls(VerdictThresholds(data["review"], data["fail"]), float(data["target_recall"]),
                       float(data["target_precision"]), _number(data.get("recall")), _number(data.get("precision")),
                       int(data["photos"]), int(data["faulty_photos"]), faults, str(data["chosen_on"]),
                       [str(n) for n in data.get("notes", [])], tiled, mode, model,
                       None if scale is None else float(scale), refine, pair)
        except (KeyError, TypeError, ValueError) as e:
            what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"{path}: damaged verdict thresholds ({what}); choose them again with `bbuvl eval "
                             "--choose-thresholds --overwrite`, or delete the file to use the run config's") from None


def hidden_below_score_threshold(score_threshold: float, pairs: Iterable[VerdictThresholds]) -> str | None:
    """What a score threshold above a review threshold hides from the verdict, in words; None when it hides nothing."""
    # Boxes under --score-threshold are dropped before the photo is judged: at 0.5 beside review 0.25, a fault scored
    # 0.3 passed its photo without a word, and thresholds chosen on predictions made at 0 judged it otherwise
    review = min((p.review for p in pairs), default=1.0)
    if score_threshold <= review:
        return None
    return (f"--score-threshold (inference.score_threshold) {score_threshold:g} is above the verdict's review threshold "
            f"{review:g}: a fault scoring between the two is dropped before its photo is judged, and the photo can "
            f"pass; keep the score threshold at {review:g} or below to judge every fault the verdict reads")


def hierarchy_judges_none(faults: Faults, labels: Iterable[str]) -> str | None:
    """Why no photo can be sent to review or failed: `faults` marks none of a checkpoint's `labels`, so every verdict
    would be pass whatever is found (a hierarchy of another project given by mistake); None when it marks one."""
    labels = list(labels)
    if not labels or any(faults.is_fault(label) for label in labels):
        return None
    marks = sorted(faults.labels)
    said = (f"it marks {', '.join(marks[:3])}{f' and {len(marks) - 3} more' if len(marks) > 3 else ''}" if marks
            else "it marks no fault at all")
    return (f"the hierarchy marks none of the checkpoint's {len(labels)} labels a fault ({said}): every photo's verdict "
            "would be pass, whatever is found")


def fault_difference(now: Iterable[str], then: Iterable[str]) -> str | None:
    """The fault labels `now` marks beyond `then` and those it drops, a few named each; None when alike."""
    now, then = set(now), set(then)
    parts = [f"{what}: {', '.join(sorted(labels)[:3])}{f' and {len(labels) - 3} more' if len(labels) > 3 else ''}"
             for what, labels in (("added", now - then), ("dropped", then - now)) if labels]
    return "; ".join(parts) or None


def unpaired(chosen_tiled: ChosenThresholds | None, scale_pair: str | None) -> str | None:
    """Why the tiled photos' pair is not the one written with the checkpoint's tile_scale.json, whose `pair` is
    `scale_pair` (None: no such file, or one that records none); None when it is, or records no pair.

    `choose-tiles --choose-thresholds` writes the pair, then the scale, each whole, with one new id: a run killed
    between the two left its thresholds beside the scale of a run before (or none), and they judged the scores of a
    scale they were not chosen at. Such a pair is left out; the scale, one run's whole, is kept."""
    if chosen_tiled is None or chosen_tiled.pair is None or chosen_tiled.pair == scale_pair:
        return None
    return (f"{TILED_THRESHOLDS_FILE} was written with a {TILE_SCALE_FILE} other than the one there now (a `choose-tiles "
            "--choose-thresholds` stopped between its two files, or one of them copied from elsewhere): the photos cut "
            "into tiles are judged by the run config's thresholds; choose it again with `bbuvl choose-tiles "
            "--choose-thresholds`")


def for_faults(chosen: ChosenThresholds | None, chosen_tiled: ChosenThresholds | None, judged: Iterable[str],
               model: str | None = None,
               scale_pair: str | None = None) -> tuple[tuple[ChosenThresholds | None, ChosenThresholds | None], list[str]]:
    """The chosen pairs (one pass, tiled) chosen for the fault labels `judged` and for the checkpoint whose
    `trained_identity` is `model` (None: not known), and a sentence for each one left out: a pair chosen when the
    hierarchy marked other faults (edited or swapped since), or in a checkpoint whose training record differs (the
    file copied from another model, or the model trained again in place), was chosen on other scores; a tiled pair
    not written with the tile scale whose `pair` is `scale_pair` (`unpaired`) was chosen at another scale."""
    judged = set(judged)

    def why(c: ChosenThresholds | None) -> str | None:
        if c is None:
            return None
        if c.tiled and (problem := unpaired(c, scale_pair)):
            return problem
        if chosen_for_another(c.model, model):
            return f"{thresholds_file(c.tiled)} {CHOSEN_FOR_ANOTHER}"
        differ = c.faults_differ(judged)
        return f"{thresholds_file(c.tiled)} was chosen when the hierarchy marked other faults ({differ})" if differ else None

    reasons = [why(c) for c in (chosen, chosen_tiled)]
    kept = tuple(None if r is not None else c for c, r in zip((chosen, chosen_tiled), reasons))
    return kept, [r for r in reasons if r is not None]  # type: ignore[return-value]


def _number(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class FoundFault:
    """One predicted fault: its label as predicted, its score and box (stored image pixels)."""

    label: str
    score: float
    bbox_2d: list[float]


@dataclass(frozen=True)
class Verdict:
    """One photo's verdict, its fault score, the faults at or above the review threshold, and why it is not a pass."""

    verdict: str  # pass | review | fail
    score: float  # the best predicted fault's score; 0.0 without one
    faults: list[FoundFault]  # best first
    reason: str | None = None  # why review or fail, in words

    def to_dict(self) -> dict[str, Any]:
        """The JSON a predictions line and the server carry under "verdict"."""
        return {"verdict": self.verdict, "score": round(self.score, SCORE_DIGITS), "reason": self.reason,
                "faults": [{"label": f.label, "score": round(f.score, SCORE_DIGITS),
                            "bbox_2d": [round(v, 1) for v in f.bbox_2d]}
                           for f in self.faults]}


def judge(objects: Sequence[tuple[Sequence[float], str, float]], faults: Faults, thresholds: VerdictThresholds,
          failed: bool = False, cut: bool = False) -> Verdict:
    """The verdict of one photo from its predicted `(bbox_2d, label, score)` objects; `failed`: no usable answer;
    `cut`: the answer stopped with more to write (infer/parse.py `answer_cut`), so a fault may be among what it did
    not write. A box whose label the hierarchy cannot judge and which may be a fault (`Faults.unjudgeable`) sends it
    to review when it scores at least the review threshold (`unjudged_at_review`)."""
    found = sorted((FoundFault(label, round(float(score), SCORE_DIGITS), [float(v) for v in box])
                    for box, label, score in objects if faults.is_fault(label)), key=lambda f: -f.score)
    # An answer not held to the labels (--no-constrained, a server's) may write a fault the hierarchy cannot read
    # ('.../连接错'): read as no fault, the photo passed.
    unread = next((label for _, label, s in objects if unjudged_at_review(label, s, faults, thresholds)), None)
    verdict = verdict_of(found[0].score if found else None, failed or cut or unread is not None, thresholds)
    score = found[0].score if found else 0.0
    shown = [f for f in found if at_review(f.label, f.score, faults, thresholds)]
    if verdict == PASS:
        return Verdict(PASS, score, [], None)
    if failed and (not found or score < thresholds.fail):
        return Verdict(REVIEW, score, shown, "no usable answer for this photo: a person must look")
    if cut and (not found or score < thresholds.fail):
        return Verdict(REVIEW, score, shown, "the answer stopped before its end (the token budget, inference."
                       "max_new_tokens or a server's max_tokens, or its server, ended it): what it did not write may "
                       "hold a fault, so a person must look")
    if unread is not None and (not found or score < thresholds.fail):
        return Verdict(REVIEW, score, shown, f"a box's label is none the hierarchy can judge, and may be a fault: "
                       f"{faults.hierarchy.problem(unread)}; a person must look")
    bound = f"fail at {thresholds.fail:g}" if verdict == FAIL else f"review from {thresholds.review:g}, fail at {thresholds.fail:g}"
    # In the thresholds' digits, as the line writes it: a score of 0.004 read "0.00" beside "review from 0.003"
    return Verdict(verdict, score, shown, f"{found[0].label} scored {score:g} ({bound})")


def at_review(label: str, score: float, faults: Faults, thresholds: VerdictThresholds) -> bool:
    """Whether an object is one of its photo's verdict faults (`Verdict.faults`): a label the hierarchy marks a fault,
    scoring, as a line writes it, at least the review threshold. The server marks each object by it ("flagged"),
    where the page counted every fault label as a fault, down to a score of 8e-05 on a photo that passed."""
    return faults.is_fault(label) and round(float(score), SCORE_DIGITS) >= thresholds.review


def unjudged_at_review(label: str, score: float, faults: Faults, thresholds: VerdictThresholds) -> bool:
    """Whether an object sends its photo to review for a label the hierarchy cannot judge (`Faults.unjudgeable`): such
    a label may be a fault, so it is judged as a fault of its score, as a line writes it, would be for review. At any
    score, a head's alternatives at 0.0 sent every photo to review on boxes nobody would show."""
    return faults.unjudgeable(label) and round(float(score), SCORE_DIGITS) >= thresholds.review


def verdict_of(best: float | None, failed: bool, thresholds: VerdictThresholds) -> str:
    """The verdict of a photo whose best predicted fault scores `best` (None: no fault predicted); `failed`: no
    usable answer came back for it."""
    if best is not None and best >= thresholds.fail:
        return FAIL
    if failed or (best is not None and best >= thresholds.review):
        return REVIEW
    return PASS


def run_file_missing(checkpoint: str | Path, key: str, path: str | None) -> str | None:
    """What is wrong, in words, when the file a checkpoint's run config names at `key` is not there; None when it is
    there or none is named. Training keeps a path as it was typed (configs/base.yaml's are relative), so a relative one
    is looked for from the folder a command runs in, and the bare 'no such file' named neither key nor checkpoint."""
    from bbuvl.config import CONFIG_FILE

    if path is None or Path(path).exists():  # there but no file (a FIFO, a folder): its reader names what it is
        return None
    where = "" if Path(path).is_absolute() else f", looked for from {Path.cwd()}"
    return f"the run config's {key} ({path} in {Path(checkpoint) / CONFIG_FILE}) is not there{where}"


def checkpoint_verdict(checkpoint: str | Path, mode: str | None = None, hierarchy: str | Path | None = None,
                       known: Mapping[str, FileDigest] | None = None) -> tuple[FramedThresholds, str | None, str]:
    """What a checkpoint judges photos predicted in `mode` with (None: any mode) when faults are those of `hierarchy`
    (None: its run config's): its thresholds for each framing (its verdict_thresholds*.json chosen in that mode for
    those faults, else its run config's `inference.verdict_*`, else the config's defaults), its run config's hierarchy
    (None: the shipped one), and where the thresholds came from. `known`: its files' digests taken at this start
    (`identify`'s), not taken again to check a chosen file."""
    from bbuvl.config import CONFIG_FILE, InferenceConfig, read_run_config

    checkpoint = Path(checkpoint)
    run = read_run_config(checkpoint) if (checkpoint / CONFIG_FILE).is_file() else None
    # A plain model folder (a base model, an export) holds no run config: the config's defaults judge its answers.
    inference = run.inference if run is not None else InferenceConfig()
    own_hierarchy = run.data.hierarchy if run is not None else None
    if hierarchy is None and (missing := run_file_missing(checkpoint, "data.hierarchy", own_hierarchy)):
        raise ValueError(f"{missing}; pass --hierarchy HIERARCHY.json")
    if run is not None and hierarchy is None:
        from bbuvl.model.checkpoint import say_relative_run_files

        say_relative_run_files(checkpoint, run, ("data.hierarchy",))  # an older run's relative hierarchy is read from this folder
    judged = Faults.load(hierarchy or own_hierarchy).labels
    chosen, chosen_tiled = ChosenThresholds.load(checkpoint), ChosenThresholds.load(checkpoint, tiled=True)
    # Hashed only to check a chosen file: a checkpoint copied whole has no record vouching for its files (seconds a 3B).
    model = trained_identity(checkpoint, known) if chosen is not None or chosen_tiled is not None else None
    pair = scale_pair(checkpoint) if chosen_tiled is not None else None
    other_scale = unpaired(chosen_tiled, pair)  # said with its own remedy (choose-tiles), not eval's
    (chosen, chosen_tiled), other_faults = for_faults(chosen, chosen_tiled, judged, model, pair)
    other_faults = [r for r in other_faults if r != other_scale]
    framed = framed_thresholds(with_chosen(inference, chosen, chosen_tiled, mode))
    if chosen is not None and chosen.applies(mode):
        source = f"{checkpoint / THRESHOLDS_FILE} (chosen on {chosen.chosen_on})"
    elif run is not None:
        source = f"{checkpoint / CONFIG_FILE} (inference.verdict_review, inference.verdict_fail)"
    else:
        source = f"the config's defaults ({checkpoint} is a plain model folder: no {THRESHOLDS_FILE}, no {CONFIG_FILE})"
    if chosen_tiled is not None and chosen_tiled.applies(mode):
        source += (f"; photos predicted through tiles or zoom: {checkpoint / TILED_THRESHOLDS_FILE} (chosen on "
                   f"{chosen_tiled.chosen_on})")
    elif framed.tiled is not None:
        source += f"; photos predicted through tiles or zoom: {checkpoint / CONFIG_FILE} (inference.verdict_*_tiled)"
    if passed_over := other_mode(chosen, chosen_tiled, mode):
        source += f" ({passed_over})"
    if other_faults:
        source += (f" ({' and '.join(other_faults)}: judged by the run config's thresholds instead; choose them again "
                   "with `bbuvl eval --choose-thresholds`)")
    if other_scale:
        source += f" ({other_scale})"
    return framed, own_hierarchy, source


def scale_pair(checkpoint: str | Path) -> str | None:
    """The `pair` the checkpoint's tile_scale.json records (None: no such file, none recorded, or a damaged file, which
    each reader of the scale refuses naming it: the verdict of photos predicted in one pass does not read it)."""
    from bbuvl.infer.tile_scale import ChosenTileScale

    try:
        chosen = ChosenTileScale.load(checkpoint)
    except ValueError:
        return None
    return None if chosen is None else chosen.pair


def cut_otherwise(chosen_tiled: ChosenThresholds | None, scale: float | None, refine: Sequence[str]) -> str | None:
    """The sentence saying that the tiled photos' pair was chosen on photos `tiles: auto` cut at another scale than the
    one it cuts them at now (`scale`, None: not known), or refined by the tiles in other categories (`refine`); None
    when it records neither or both agree. A fault's score depends on the grid it was found in and on the refinement
    (docs/faults.md, "Thresholds per framing"): `bbuvl choose-tiles` said so when it chose the scale again, and predict
    and serve judged by the pair after it without a word."""
    if chosen_tiled is None or chosen_tiled.tile_scale is None:
        return None
    other = []
    if scale is None or not math.isclose(chosen_tiled.tile_scale, scale, rel_tol=1e-6):
        now = "a scale not known" if scale is None else f"{scale:g}"
        other.append(f"at scale {chosen_tiled.tile_scale:g}, where `tiles: auto` cuts them at {now} now")
    if chosen_tiled.tile_refine is not None and sorted(chosen_tiled.tile_refine) != sorted(refine):
        other.append(f"with the tiles refining {', '.join(chosen_tiled.tile_refine) or 'no category'}, where they refine "
                     f"{', '.join(refine) or 'no category'} now")
    if not other:
        return None
    return (f"{TILED_THRESHOLDS_FILE} was chosen on photos cut {' and '.join(other)}: it judges fault scores other than "
            "those it was chosen on; choose it again with `bbuvl choose-tiles --choose-thresholds`")


def other_mode(chosen: ChosenThresholds | None, chosen_tiled: ChosenThresholds | None, mode: str | None) -> str | None:
    """The sentence saying that a checkpoint's chosen thresholds were left out because they were chosen on another
    mode's predictions than `mode`'s; None when none was."""
    files = [f"{thresholds_file(c.tiled)} was chosen on {c.mode} mode's predictions" for c in (chosen, chosen_tiled)
             if c is not None and not c.applies(mode)]
    if not files:
        return None
    return (f"{' and '.join(files)}, not {mode} mode's, whose scores are on another scale: {mode} mode's photos are "
            f"judged by the run config's thresholds; choose {mode} mode's own with `bbuvl eval --choose-thresholds` "
            f"on its predictions")


def replaced_mode(checkpoint: str | Path, chosen: ChosenThresholds) -> str | None:
    """The sentence saying that writing `chosen` replaces thresholds the checkpoint holds for another mode's photos
    (one file per framing judges one mode: a head's scores and generate mode's are not on one scale); None when it
    replaces none, or one of the same mode. Replaced in silence, the other mode's photos went back to the run config's
    thresholds, and only a later predict's note said so."""
    try:
        before = ChosenThresholds.load(checkpoint, tiled=chosen.tiled)
    except ValueError:  # a damaged file judges no mode
        return None
    if before is None or before.mode is None or before.mode == chosen.mode:
        return None
    return (f"{thresholds_file(chosen.tiled)} held thresholds chosen on {before.mode} mode's predictions (review "
            f"{before.thresholds.review:g}, fail {before.thresholds.fail:g}, chosen on {before.chosen_on}), replaced by "
            f"{chosen.mode} mode's: a checkpoint keeps one pair for these photos, so {before.mode} mode's photos are "
            "judged by the run config's thresholds now")


def with_chosen(inference: Any, chosen: ChosenThresholds | None, chosen_tiled: ChosenThresholds | None,
                mode: str | None = None) -> Any:
    """An `InferenceConfig` with a checkpoint's chosen thresholds (one pass, tiled) in place of its own verdict_*
    (itself when none was chosen): what the checkpoint judges photos predicted in `mode` with (None: any mode; a
    pair chosen in another mode is left out)."""
    update: dict[str, float] = {}
    if chosen is not None and chosen.applies(mode):
        update |= {"verdict_review": chosen.thresholds.review, "verdict_fail": chosen.thresholds.fail}
        if inference.verdict_review_tiled is not None or inference.verdict_fail_tiled is not None:
            # The run config's tiled pair, its unset key the config's own one-pass value, as the config was checked:
            # left to fall back to the chosen pair, `verdict_review_tiled: 0.3` beside a chosen fail of 0.00039 was a
            # pair out of order, and every predict, serve and eval of the checkpoint stopped on it.
            own = config_thresholds(inference, tiled=True)
            update |= {"verdict_review_tiled": own.review, "verdict_fail_tiled": own.fail}
    if chosen_tiled is not None and chosen_tiled.applies(mode):
        update |= {"verdict_review_tiled": chosen_tiled.thresholds.review,
                   "verdict_fail_tiled": chosen_tiled.thresholds.fail}
    return inference.model_copy(update=update) if update else inference


def config_thresholds(inference: Any, tiled: bool = False) -> VerdictThresholds:
    """The thresholds an `InferenceConfig` (or `PredictOptions`) sets for photos predicted in one pass, or through
    tiles or zoom (`tiled`: its `verdict_*_tiled`, each falling back to the one-pass value)."""
    review, fail = inference.verdict_review, inference.verdict_fail
    if tiled:
        review = review if inference.verdict_review_tiled is None else inference.verdict_review_tiled
        fail = fail if inference.verdict_fail_tiled is None else inference.verdict_fail_tiled
    return VerdictThresholds(review, fail)


def framed_thresholds(inference: Any) -> FramedThresholds:
    """Both framings' thresholds of an `InferenceConfig` (or `PredictOptions`); `tiled` None when it sets none of its
    own, so that tiled photos are judged as the others."""
    own = inference.verdict_review_tiled is not None or inference.verdict_fail_tiled is not None
    return FramedThresholds(config_thresholds(inference), config_thresholds(inference, True) if own else None)


def default_thresholds() -> VerdictThresholds:
    """The config's default thresholds (`inference.verdict_review`, `inference.verdict_fail`)."""
    from bbuvl.config import InferenceConfig

    return config_thresholds(InferenceConfig())


def verdict_counts(predictions: str | Path) -> dict[str, int]:
    """How many lines of a predictions file hold each verdict (`unjudged`: lines written before verdicts existed), and
    how many photos were predicted through tiles or zoom (`tiled`)."""
    counts = dict.fromkeys((*VERDICTS, "unjudged", "tiled"), 0)
    with Path(predictions).open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                verdict, tiled = data.get("verdict"), data.get("tiled") is True
            except (ValueError, AttributeError):
                verdict, tiled = None, False  # a damaged line: resuming drops and redoes it (infer/output.py)
            counts[verdict["verdict"] if isinstance(verdict, dict) and verdict.get("verdict") in VERDICTS else "unjudged"] += 1
            counts["tiled"] += tiled
    return counts
