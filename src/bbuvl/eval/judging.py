"""What `bbuvl eval` judges photos with: the faults and verdict thresholds of the checkpoint that wrote the
predictions (or the ones given), and choosing new thresholds on validation photos (docs/faults.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bbuvl.config import CONFIG_FILE
from bbuvl.data.digests import FileDigest, file_digest
from bbuvl.data.jsonfile import is_json_number
from bbuvl.data.faults import THRESHOLDS_FILE, TILED_THRESHOLDS_FILE, Faults
from bbuvl.data.scale import TILE_SCALE_FILE
from bbuvl.eval.faults import CannotChoose, FaultMetrics, choose_thresholds
from bbuvl.eval.metrics import Evaluation, evaluate_predictions
from bbuvl.eval.predictions import predictions_manifest, read_ground_truth, read_predictions
from bbuvl.infer.output import NO_MANIFEST, Manifest, manifest_path
from bbuvl.infer.resume_key import UNSOUND_RECORD
from bbuvl.infer.verdict import (ChosenThresholds, FramedThresholds, VerdictThresholds, checkpoint_verdict, default_thresholds,
                                 fault_difference, lone_threshold_problem)
from bbuvl.model.identity import deciding_files, recorded_digests
from bbuvl.paths import real_path

# What the choosers write into a checkpoint: no score depends on them, so one chosen since the predictions is no change.
CHOSEN_FILES = (THRESHOLDS_FILE, TILED_THRESHOLDS_FILE)


@dataclass
class VerdictSetup:
    """The faults and thresholds an evaluation judges with, where the thresholds came from, and the checkpoint."""

    faults: Faults
    thresholds: FramedThresholds  # for photos predicted in one pass, and through tiles or zoom
    source: str  # where the thresholds came from, in words
    checkpoint: str | None  # the checkpoint that wrote the predictions, when it is at hand
    mode: str | None = None  # the mode they were predicted in, as their manifest records it (None: not known)
    # The checkpoint's files that changed since the predictions, in words (None: none, or not known): nothing of it
    # judges them then (its frame neither), only what the command line gave.
    changed: str | None = None
    notes: list[str] = field(default_factory=list)  # for the evaluation's notes: thresholds chosen since, a checkpoint gone


def verdict_setup(pred: str | Path, hierarchy: str | Path | None = None, review: float | None = None,
                  fail: float | None = None, need_checkpoint: bool = False) -> VerdictSetup:
    """Faults from `hierarchy`, else the predicting checkpoint's run config, else the shipped file; thresholds from
    `review` / `fail` (for every photo, tiled or not), else that checkpoint's (thresholds files, then run config), else
    the config defaults.

    `need_checkpoint`: the checkpoint must be at hand (thresholds are to be written into it); ValueError if not.
    ValueError too when `review` or `fail` given alone cannot pair with the other threshold in effect, naming it.
    """
    manifest = predictions_manifest(pred)
    # A library caller's PredictJob records no checkpoint (""), which as a path is the folder eval runs in: another run's.
    checkpoint = (manifest.checkpoint if manifest is not None and manifest.checkpoint
                  and Path(manifest.checkpoint).is_dir() else None)
    if need_checkpoint and checkpoint is None:
        why = (f"no manifest beside it names one ({NO_MANIFEST})" if manifest is None
               else f"{manifest.checkpoint} is not there")
        raise ValueError(f"{pred}: --choose-thresholds writes into the checkpoint that made these predictions, but {why}")
    if need_checkpoint and not (Path(checkpoint) / CONFIG_FILE).is_file():
        # A base model or an export: a file written into it changes a folder bbuvl did not write (an export's recorded
        # digest, a hub cache's snapshot), and only a trained checkpoint's predict reads thresholds from there.
        raise ValueError(f"{pred}: --choose-thresholds writes {THRESHOLDS_FILE} into the checkpoint that made these "
                         f"predictions, and {checkpoint} is a plain model folder (no {CONFIG_FILE}: a base model or an "
                         "export), which `bbuvl train` did not write; nothing is written into it. Choose thresholds on "
                         "the predictions of a checkpoint `bbuvl train` wrote, or give this model's pair to predict and "
                         "eval as --verdict-review and --verdict-fail")
    # A record of the checkpoint's files that does not add up says nothing of what changed since: the files it names
    # would each read as changed or removed, a false reason with a remedy that did not help.
    unsound = record_unsound(pred, manifest) if checkpoint is not None and manifest is not None else None
    if unsound is not None and (need_checkpoint or hierarchy is None or review is None or fail is None):
        raise ValueError(f"{pred}: {unsound}. Predict again with it (bbuvl predict --overwrite) and "
                         + ("choose on those predictions" if need_checkpoint else "evaluate those, or give what judges "
                            "these: --hierarchy, --verdict-review and --verdict-fail (and --frame for sizes in tokens)"))
    if need_checkpoint and manifest is not None and (changed := changed_since(Path(manifest.checkpoint), manifest,
                                                                              any_tiled(Path(pred)))):
        raise ValueError(f"{pred}: predicted by {manifest.checkpoint} as it was before its {changed} changed: "
                         "thresholds chosen on these scores would judge another model's; predict again with it "
                         "(bbuvl predict --overwrite) and choose on those predictions")
    own, own_hierarchy, source = (FramedThresholds(default_thresholds()), None,
                                  "the config's defaults (inference.verdict_review, inference.verdict_fail)")
    notes: list[str] = []
    changed = None
    if manifest is not None and manifest.checkpoint and checkpoint is None and (
            hierarchy is None or review is None or fail is None):
        notes.append(f"{manifest.checkpoint}, the checkpoint that made {pred}, is not there (moved or deleted): its "
                     "thresholds and hierarchy judge nothing here, the config's defaults and the shipped hierarchy do; "
                     "give its own as --verdict-review, --verdict-fail and --hierarchy")
    if checkpoint is not None and manifest is not None and not need_checkpoint:
        # A tile scale chosen since decides none of what eval reads (its thresholds, hierarchy, frame): the demo's
        # `choose-tiles` writes it into the checkpoint while the close-ups' predictions are scored.
        changed = ("files as its manifest records them" if unsound is not None
                   else changed_since(Path(checkpoint), manifest, tiled=False))
        if changed is not None and (hierarchy is None or review is None or fail is None):
            raise ValueError(model_changed(pred, manifest, changed))
        if unsound is not None:
            notes.append(f"{pred}: {unsound}: only --hierarchy, --verdict-review and --verdict-fail judge them here "
                         "(and --frame, when given)")
        elif changed is not None:
            notes.append(f"{checkpoint}, which made {pred}, changed since (its {changed}): nothing of it judges them "
                         "here, only --hierarchy, --verdict-review and --verdict-fail (and --frame, when given)")
        if changed is None:
            notes += chosen_since(Path(checkpoint), manifest, given=review is not None and fail is not None,
                                  tiled=any_tiled(Path(pred)))
    if checkpoint is not None and changed is None:
        own, own_hierarchy, source = checkpoint_verdict(checkpoint, manifest.mode, hierarchy)
    faults = Faults.load(hierarchy or own_hierarchy)
    if hierarchy is None and manifest is not None and changed is None and (
            edited := hierarchy_since(manifest, own_hierarchy)):
        notes.append(edited)
    # predict and serve judge the checkpoint's photos by its own hierarchy's faults, not by --hierarchy's
    own_faults = Faults.load(own_hierarchy).labels if need_checkpoint and hierarchy is not None else faults.labels
    if differ := fault_difference(faults.labels, own_faults):
        raise ValueError(f"{hierarchy}: marks other faults than the hierarchy of {checkpoint} ({differ}), by which "
                         "predict and serve judge its photos: thresholds chosen on these faults' scores would judge "
                         "those; choose without --hierarchy")
    # Checked here, on the pair this call found: a second call to find it hashed a checkpoint copied back whole twice.
    if problem := lone_threshold_problem(review, fail, own):
        raise ValueError(problem)
    if review is not None or fail is not None:
        source = "the command line" if review is not None and fail is not None else f"the command line and {source}"

    def given(t: VerdictThresholds) -> VerdictThresholds:
        return VerdictThresholds(t.review if review is None else review, t.fail if fail is None else fail)

    thresholds = FramedThresholds(given(own.whole), None if own.tiled is None else given(own.tiled))
    if review is None and fail is None and not need_checkpoint and checkpoint is not None and changed is None and (
            typed := typed_at_predict(manifest, Path(checkpoint), thresholds.whole)) is not None and (
            then := typed[0]) != thresholds.whole:
        notes.append(f"the verdicts in {pred}'s lines were judged at review ≥ {then.review:g}, fail ≥ {then.fail:g}, "
                     f"given to predict as {' and '.join(typed[1])}"
                     + ("" if len(typed[1]) == 2 else " (the other the checkpoint's)")
                     + "; these metrics judge at review ≥ "
                     f"{thresholds.whole.review:g}, fail ≥ {thresholds.whole.fail:g} ({source}): give eval "
                     f"--verdict-review {then.review:g} --verdict-fail {then.fail:g} to judge as the lines were")
    return VerdictSetup(faults, thresholds, source, checkpoint,
                        manifest.mode if manifest is not None else None, changed, notes)


def typed_at_predict(manifest: Manifest, checkpoint: Path,
                     in_effect: VerdictThresholds) -> tuple[VerdictThresholds, list[str]] | None:
    """The thresholds `bbuvl predict` judged a predictions file's lines with when --verdict-review or --verdict-fail was
    given to it (its manifest records its options), a threshold not given being the one `in_effect` (the checkpoint's
    chosen or run config's, as predict paired it), and the options given; None when neither was given, or the record
    cannot say."""
    from bbuvl.config import InferenceConfig, read_run_config

    options = manifest.key.options if manifest.key is not None else {}
    inference = read_run_config(checkpoint).inference if (checkpoint / CONFIG_FILE).is_file() else InferenceConfig()
    given = {}
    for name in ("verdict_review", "verdict_fail"):
        value, tiled = options.get(name), options.get(f"{name}_tiled")
        if not is_json_number(value):  # an older or damaged record says nothing of them
            return None
        # A threshold not given is recorded as the run config's: one that differs was given. One given equal to it
        # is told by its tiled twin, which predict sets to the given value too (cli/predict.py). Told apart by the
        # first alone, a pair given equal to the config's beside a chosen pair was taken for none given, and a lone
        # threshold for one paired with the config's other, where predict paired it with the chosen one.
        if value != getattr(inference, name) or (tiled == value and tiled != getattr(inference, f"{name}_tiled")):
            given[name] = value
    if not given:
        return None
    try:
        then = VerdictThresholds(given.get("verdict_review", in_effect.review), given.get("verdict_fail", in_effect.fail))
    except (TypeError, ValueError):
        return None
    return then, ["--" + name.replace("_", "-") for name in given]


def hierarchy_since(manifest: Manifest, own: str | Path | None) -> str | None:
    """A note when the hierarchy eval judges by without --hierarchy (`own`: the run config's, None: the shipped one) has
    other content than the one predict judged the lines by (its SHA-256 in the manifest's options): given to predict as
    --hierarchy, edited since, or a relative data.hierarchy read from another folder than predict ran in. None when alike
    or not recorded."""
    from bbuvl.data.labels import DEFAULT_HIERARCHY
    from bbuvl.infer.resume_key import file_key

    then = manifest.key.options.get("hierarchy") if manifest.key is not None else None
    path = own or DEFAULT_HIERARCHY
    if not isinstance(then, str) or file_key(path) == then:
        return None
    return (f"the hierarchy these predictions are judged by ({path}) has other content than the one their lines' "
            "verdicts were judged by when predicted (given to predict as --hierarchy, edited since, or a relative "
            "data.hierarchy read from another folder): the fault metrics follow this one, and a photo's verdict may "
            "differ from its line's; give eval the hierarchy predict judged by as --hierarchy to judge as the lines were")


def model_changed(pred: str | Path, manifest: Manifest, changed: str) -> str:
    """Why predictions whose checkpoint changed since (`changed`: its files that did) are not judged by what it holds
    now, and what to do."""
    return (f"{pred}: predicted by {manifest.checkpoint} as it was before its {changed} changed (replaced, trained "
            "again, or another run copied over it): its verdict thresholds, hierarchy and frame are now another model's, "
            "and judging these predictions by them would report two models as one. Predict again with it (bbuvl "
            "predict --overwrite) and evaluate those, or give what judges these: --hierarchy, --verdict-review and "
            "--verdict-fail (and --frame for sizes in tokens)")


def record_unsound(pred: str | Path, manifest: Manifest) -> str | None:
    """Why the checkpoint files `manifest` records cannot tell what its checkpoint held when it predicted `pred` (they do
    not add up to the model identity it records: `ResumeKey.files_add_up`), in words; None when they do."""
    if manifest.key is None or manifest.key.files_add_up():
        return None
    return (f"its manifest {manifest_path(Path(pred))} records the files of {manifest.checkpoint} under names that do "
            f"not add up to the model it records ({UNSOUND_RECORD}), so its verdict thresholds, hierarchy and frame "
            "cannot judge these predictions")


def chosen_since(checkpoint: Path, manifest: Manifest, given: bool = False, tiled: bool = False) -> list[str]:
    """A note for each thresholds file of the checkpoint chosen (written, replaced or deleted) since `manifest`'s
    predictions were made, which their lines' own verdicts did not see (none when `given`: both thresholds on the
    command line judge instead; the tiled photos' thresholds and tile scale only when a photo was predicted through
    tiles, `tiled`); none when the manifest recorded no files. Choosing after predict is how thresholds are chosen
    (docs/faults.md): named, not refused."""
    if manifest.key is None or not manifest.key.checkpoint_files:
        return []
    recorded = {f.name: f for f in manifest.key.checkpoint_files}
    notes = []
    if tiled and (path := checkpoint / TILE_SCALE_FILE).is_file():
        then = recorded.get(TILE_SCALE_FILE)
        if then is None or (_vouched(path, TILE_SCALE_FILE, [recorded]) or file_digest(path, TILE_SCALE_FILE).sha256) \
                != then.sha256:
            notes.append(f"{path} was chosen since these predictions were made: their photos were cut into tiles at "
                         "the earlier scale, and a predict now would cut them at this one")
    # The tiled photos' file judges no line of predictions made in one pass: a note on it named a change that changed
    # nothing
    for name in () if given else CHOSEN_FILES if tiled else (THRESHOLDS_FILE,):
        path = checkpoint / name
        then = recorded.get(name)
        if not path.is_file():
            if then is not None:
                notes.append(f"{checkpoint / name} judged the verdicts of these predictions when they were made and "
                             "is deleted since: the run config's thresholds judge them here")
            continue
        if then is not None and (_vouched(path, name, [recorded]) or file_digest(path, name).sha256) == then.sha256:
            continue
        notes.append(f"{checkpoint / name} was {'chosen' if then is None else 'chosen again'} since these predictions "
                     "were made: the verdicts their lines hold were judged without it, and eval judges by the checkpoint's "
                     "thresholds as they are now")
    return notes


def _vouched(path: Path, name: str, records: list[dict[str, FileDigest]]) -> str | None:
    """The SHA-256 of `path` (called `name`) as the first record whose digest's stat still matches it says; None when
    none vouches for it (it must be hashed)."""
    st = path.stat()
    for record in records:
        d = record.get(name)
        if d is not None and (d.size, d.mtime_ns, d.ctime_ns, d.inode) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                                                           st.st_ino):
            return d.sha256
    return None


def any_tiled(pred: Path) -> bool:
    """Whether a line of the predictions file says its photo was predicted through tiles or zoom (a line that cannot be
    read says nothing here: reading the predictions names it)."""
    with pred.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if '"tiled"' in line:
                try:
                    if json.loads(line).get("tiled") is True:
                        return True
                except (ValueError, AttributeError):
                    continue
    return False


def changed_since(checkpoint: Path, manifest: Manifest, tiled: bool = True) -> str | None:
    """Which of the checkpoint's files differ from when `manifest`'s predictions were made (changed, added or
    removed), in words; None when none does, or when the manifest did not record them. `tiled`: whether any photo of
    the predictions was predicted through tiles or zoom."""
    if manifest.key is None:
        return None
    # The chosen tile scale decides nothing in photos predicted with tiles off, nor in photos predicted in one pass,
    # whose thresholds are the ones chosen on them (a close-up under `tiles: auto` gets no tile): the demo chooses
    # the close-ups' thresholds while `bbuvl choose-tiles` writes the whole cabinets' scale into the same checkpoint.
    untiled = manifest.key.options.get("tiles") == "off" or not tiled
    ignored = CHOSEN_FILES + ((TILE_SCALE_FILE,) if untiled else ())
    recorded = {f.name: f for f in manifest.key.checkpoint_files if "/" not in f.name and f.name not in ignored}
    if not recorded:
        return None
    now = {p.name: p for p in deciding_files(checkpoint) if p.name not in ignored}
    # Eval asks on every evaluation, and a 3B checkpoint's weights take 40-90 s to hash (docs/outputs.md): what a stat
    # tells is said without hashing (a file added, removed or of another size; one a record vouches for: the manifest's,
    # or the checkpoint's own, which train --overwrite writes anew), and the rest are hashed smallest first, up to the
    # first that differs.
    records = [recorded, recorded_digests(checkpoint)]
    changed = [f"{name} (added)" for name in sorted(set(now) - set(recorded))]
    changed += [f"{name} (removed)" for name in sorted(set(recorded) - set(now))]
    both = sorted(set(now) & set(recorded), key=lambda n: (recorded[n].size, n))
    changed += [n for n in both if now[n].stat().st_size != recorded[n].size
                or (_vouched(now[n], n, records) or recorded[n].sha256) != recorded[n].sha256]
    for name in [] if changed else [n for n in both if _vouched(now[n], n, records) is None]:
        if file_digest(now[name], name).sha256 != recorded[name].sha256:
            changed.append(name)
            break
    if not changed:
        return None
    return ", ".join(changed[:3]) + (f" and {len(changed) - 3} more files" if len(changed) > 3 else "")


def choose_verdict(evaluation: Evaluation, setup: VerdictSetup, gt: str | Path, target_recall: float,
                   target_precision: float) -> list[ChosenThresholds]:
    """Thresholds chosen on the evaluation's photos (`choose_thresholds`), a pair for the photos predicted in one pass
    and one for those predicted through tiles or zoom, each where such photos can decide them (a note says why not);
    the evaluation's fault metrics and `setup` are rescored at them. ValueError when a photo of `gt` has no
    predictions line, or when no pair can be chosen. Nothing is written: `ChosenThresholds.save` does that."""
    unpredicted = [r.record.image for r in evaluation.images if r.prediction is None]
    if unpredicted:
        # Counted as photos where nothing was found, they pulled `review` down to reach a recall on photos the model
        # never saw, and the file would say it was chosen on all of --gt.
        raise ValueError(f"{gt}: {len(unpredicted)} of its {len(evaluation.images)} photos have no predictions line "
                         f"(the first: {unpredicted[0]}), so thresholds chosen now would not be chosen on the photos "
                         "of --gt; predict them too (`bbuvl predict` resumes its file), or give a --gt of the photos "
                         "predicted")
    tiled = [r.prediction is not None and r.prediction.tiled for r in evaluation.images]
    framings = sorted(set(tiled))
    chosen: list[ChosenThresholds] = []
    why_not: list[str] = []
    for framing in framings:
        which = [i for i, t in enumerate(tiled) if t == framing]
        named = f"photos predicted {'through tiles or zoom' if framing else 'in one pass'}"
        try:
            one = _chosen_among(evaluation.faults, which, setup.faults, gt, target_recall, target_precision, framing,
                                f"{named}: " if len(framings) > 1 else "", setup.mode)
        except CannotChoose as e:
            why_not.append(f"the {len(which)} {named}: {e}" if len(framings) > 1 else str(e))
            continue
        evaluation.notes.extend(one.notes)
        chosen.append(one)
    if not chosen:
        raise ValueError(f"{gt}: no verdict thresholds can be chosen on these photos, so none are written: "
                         + "; ".join(why_not))
    evaluation.notes.extend(f"{reason}: their verdict thresholds are not chosen" for reason in why_not)
    pairs = {c.tiled: c.thresholds for c in chosen}
    setup.thresholds = FramedThresholds(pairs.get(False, setup.thresholds.whole), pairs.get(True, setup.thresholds.tiled))
    evaluation.score_faults(setup.faults, setup.thresholds)
    setup.source = f"chosen on {gt} (--choose-thresholds)"
    return chosen


def choose_tiled_verdict(pred: str | Path, gt: str | Path, faults: Faults, thresholds: FramedThresholds,
                         target_recall: float, target_precision: float,
                         mode: str | None = None) -> tuple[ChosenThresholds | None, str | None]:
    """The verdict thresholds of photos cut into tiles, chosen on the ones `pred` holds (predicted in `mode`, as
    `choose_verdict` chooses them; photos `pred` predicted in one pass are left out), or None and why none could be.
    Nothing is written."""
    lines = [line for line in read_predictions(pred) if line.tiled]
    if not lines:
        return None, f"{pred}: no photo was cut into tiles, so no thresholds were chosen for such photos"
    evaluation = evaluate_predictions(read_ground_truth(gt), gt, lines, pred, faults=faults, thresholds=thresholds)
    which = [i for i, r in enumerate(evaluation.images) if r.prediction is not None]
    try:
        return _chosen_among(evaluation.faults, which, faults, gt, target_recall, target_precision, True, "", mode), None
    except CannotChoose as e:
        return None, f"the {len(which)} photos cut into tiles: {e}: their verdict thresholds are not chosen"


def _chosen_among(f: FaultMetrics, which: list[int], faults: Faults, gt: str | Path, target_recall: float,
                  target_precision: float, tiled: bool, prefix: str, mode: str | None) -> ChosenThresholds:
    """Thresholds chosen (`choose_thresholds`) on the photos `which` of fault metrics `f`; `prefix` leads each note."""
    truth = [f.photo_faulty[i] for i in which]
    thresholds, recall, precision, notes = choose_thresholds(truth, [f.photo_scores[i] for i in which], target_recall,
                                                             target_precision, [f.photo_unusable[i] for i in which],
                                                             [f.photo_unjudged[i] for i in which])
    # The path resolved: the notes quoting it are read from other folders, where the one typed names nothing
    return ChosenThresholds(thresholds, target_recall, target_precision, recall, precision, len(truth), sum(truth),
                            sorted(faults.labels), str(real_path(gt)), [prefix + n for n in notes], tiled, mode)
