"""`bbuvl doctor data`: what a dataset will cost and where it disagrees with the run before training starts.

- vision tokens per photo at the config's min/max pixels, the photos over `model.max_vision_tokens`
  named (a 256x364 photo became 896 tokens and memory climbed every batch: docs/design.md), the worst batch
  beside `model.max_vision_tokens_per_batch`, and that budget as `bbuvl train` checks it (a batch of full-size
  photos must fit);
- what `bbuvl train` refuses in a record: boxes outside the photo, without area or given twice;
- the checks across lines `bbuvl data check` runs, the same list (data/check.py `dataset_problems`): one photo twice
  or on both sides of the split (by path or content), near-copies, a teacher that is its student's photo or a
  validation photo, boxes that look written with x and y swapped or 0-1000 of each side;
- image files that cannot be decoded (a truncated JPEG), whose size is not the record's, and EXIF-rotated files (their stored pixels are not the upright ones bbuvl reads);
- labels the data uses that the prompt never names, and prompt labels no photo has (docs/design.md).

It never asks the network: a data check must work before the model is downloaded or built. Vision tokens need
only the model family (model.family, or the local folder's or Hugging Face cache's config.json); answer lengths
need the model's tokenizer in a local folder. Without them those checks are skipped, with the reason; every other
check runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from bbuvl.config import Config, ConfigOrigin, batch_budget_problems
from bbuvl.data.check import (ImageInfo, Problem, check_boxes, check_size, dataset_files, dataset_problems,
                              empty_file_problem, probe_image, probe_photos)
from bbuvl.data.coords import ROTATING_ORIENTATIONS, CoordinateContract
from bbuvl.data.families import Family
from bbuvl.data.labels import Hierarchy
from bbuvl.data.layout import TEACHERS, VAL
from bbuvl.data.schema import ImageRecord, Sample, iter_dataset, read_dataset, read_records, resolve_image
from bbuvl.paths import real_path

_ORIENTATION_NAMES = {2: "mirrored", 3: "rotated 180°", 4: "flipped vertically", 5: "transposed", 6: "rotated 90° clockwise",
                      7: "transversed", 8: "rotated 90° counter-clockwise"}


@dataclass
class TokenSummary:
    """Vision tokens of one JSONL file's photos (students, explicit teachers included in their sample)."""

    file: str
    per_sample: list[int] = field(default_factory=list)  # student + explicit teachers, as the file says
    over_budget: int = 0
    # Each sample as a training batch holds it (`trained_cost`), and whether it draws pool teachers (none given)
    trained: list[tuple[int, bool]] = field(default_factory=list)

    @property
    def stats(self) -> dict[str, float]:
        """min / median / max vision tokens per sample."""
        v = self.per_sample or [0]
        return {"min": min(v), "median": statistics.median(v), "max": max(v)}


@dataclass
class DataReport:
    """Findings of `doctor data` (problems are located `file:line`)."""

    problems: list[Problem] = field(default_factory=list)
    tokens: list[TokenSummary] = field(default_factory=list)
    worst_batch: int = 0  # vision tokens of the costliest possible training batch
    batch_size: int = 1
    labels: dict[str, int] = field(default_factory=dict)  # label -> objects, over every file checked
    prompt_labels: list[str] = field(default_factory=list)
    lengths: str = ""  # how answer lengths were checked against data.max_length, or why they were not
    counted: bool = True  # whether vision tokens were counted (False: the model family cannot be known offline)

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity error."""
        return [p for p in self.problems if p.severity == "error"]


def _records(sample) -> list[tuple[str, ImageRecord]]:  # noqa: ANN001 - a schema.Sample
    teachers = [(f"teachers[{i}]: ", t) for i, t in enumerate(sample.teachers)]
    return teachers + [("student: " if sample.teachers else "", sample.student)]


def orientation_problem(image: str, info: ImageInfo) -> str | None:
    """A warning for a file with an EXIF orientation other than 1 (what the user sees is not the pixel grid)."""
    if info.orientation == 1:
        return None
    turned = info.orientation in ROTATING_ORIENTATIONS
    return (f"EXIF-{'rotated' if turned else 'transformed'}: image {image} is stored {info.raw[0]}x{info.raw[1]} with EXIF "
            f"orientation {info.orientation} ({_ORIENTATION_NAMES[info.orientation]}); bbuvl uses the upright "
            f"{info.upright[0]}x{info.upright[1]} pixels, but a tool that ignores or strips EXIF (pre-scaling scripts, "
            "other loaders) sees it differently and its boxes no longer match: re-save it upright")


def _label_problems(report: DataReport, first_seen: dict[str, tuple[str, int]], hierarchy: Hierarchy) -> None:
    prompt = set(report.prompt_labels)
    for label, n in sorted(report.labels.items(), key=lambda kv: -kv[1]):
        file, line = first_seen[label]
        if prompt and label not in prompt:
            objects = f"{n} object{'s' if n != 1 else ''}"
            report.problems.append(Problem(file, line, f"label '{label}' ({objects}) is not in the prompt vocabulary: "
                                           "the model is never told it may answer it"))
        why = hierarchy.problem(label)
        if why is not None and hierarchy.from_english(label) is None:  # `data convert --lang en` writes glosses
            report.problems.append(Problem(file, line, f"label '{label}': {why}; the prompt gives it no visual cue", "warning"))
    for label in report.prompt_labels:
        if label not in report.labels:
            report.problems.append(Problem("<prompt>", 0, f"the prompt names '{label}', but no object in the dataset has it",
                                           "warning"))


def record_problems(file: Path, line: int, sample: Sample) -> list[Problem]:
    """What `bbuvl train` refuses in a sample's boxes before any photo is read: outside their photo, without area or
    given twice (train/dataset.py). Left unsaid here, doctor passed a file training then refused. A teacher that is its
    student's photo is one of the checks across lines (`dataset_problems`), by path and by content."""
    found = []
    for prefix, record in _records(sample):
        found += [Problem(str(file), line, prefix + message, severity) for message, severity in check_boxes(record)]
    return found


def queries_problem(file: Path, line: int, sample: Sample, cfg: Config) -> Problem | None:
    """A photo holding more objects than the head has queries (train/query_room.py): each draw teaches the queries at most
    `detection.num_queries` of them, and it finds no more there. Teachers are context, never the head's targets; a
    validation photo is never taught, but the head still finds at most that many in it."""
    n, queries = len(sample.student.objects), cfg.detection.num_queries
    if not cfg.detection.enabled or file.name == TEACHERS or n <= queries:
        return None
    # Said of a validation photo too, "each draw teaches the queries 8 of them", where no draw teaches it anything
    validation = file.name == VAL or (cfg.data.val is not None and real_path(cfg.data.val) == real_path(file))
    why = (f"the head finds at most {queries} a photo, so evaluation counts at least {n - queries} of its objects "
           "missed whatever the head learns" if validation else f"each draw teaches the queries {queries} of them and "
           f"{n - queries} to none, and the head finds at most {queries} a photo")
    return Problem(str(file), line, f"{n} objects, more than detection.num_queries ({queries}): {why}; raise "
                   f"detection.num_queries to at least {n}", "warning")


def photo_problems(file: Path, line: int, prefix: str, record: ImageRecord, cfg: Config,
                   contract: CoordinateContract | None, infos: dict[Path, ImageInfo | str]) -> tuple[int, list[Problem]]:
    """Vision tokens of one record's photo and what is wrong with its file: unreadable, size, EXIF, token budget.

    `infos` caches what each file gave, as teachers repeat photos. `contract` None: tokens are not counted (0). Each
    photo is decoded whole, as `data check` and training read it: from its header alone, a truncated JPEG passed here
    and was skipped mid-run (1,200 close-ups: 2.9 s against 2.2 s).
    """
    image = record.image
    full = resolve_image(file, image)
    info = infos[full] if full in infos else infos.setdefault(full, probe_image(full))
    if isinstance(info, str):
        return 0, [Problem(str(file), line, f"{prefix}image {image}: {info}")]
    found = []
    size_msg = check_size(record, image, info)
    if size_msg:
        found.append(Problem(str(file), line, prefix + size_msg))
    elif turned_msg := orientation_problem(image, info):  # a size error already says when EXIF is the cause
        found.append(Problem(str(file), line, prefix + turned_msg, "warning"))
    if contract is None:
        return 0, found
    tokens = contract.vision_tokens(info.upright)
    limit = cfg.model.max_vision_tokens
    if tokens > limit:
        action = "resized down to the budget" if cfg.data.oversize == "resize" else "skipped"
        found.append(Problem(str(file), line, f"{prefix}image {image} ({info.upright[0]}x{info.upright[1]}) needs {tokens} "
                             f"vision tokens at max_pixels={cfg.model.max_pixels}, over model.max_vision_tokens={limit}: "
                             f"training will have it {action} (data.oversize); pre-scale it or lower model.max_pixels",
                             "warning"))
    return tokens, found


def _read_rows(path: Path, file: Path, report: DataReport) -> list[tuple[int, Sample]]:
    """The samples of one dataset file with their lines; a malformed line, or a file with none, is a problem of the
    report (`path`: what was checked, the file itself or its folder)."""
    rows, lines = [], 0
    for row in iter_dataset(file):
        lines += 1
        if row.error is not None:
            report.problems.append(Problem(row.error.path, row.error.line, row.error.message))
        else:
            rows.append((row.line, row.sample))
    if lines == 0:  # as `data check` says
        report.problems.append(empty_file_problem(path, file))
    return rows


def diagnose_data(path: str | Path, cfg: Config, prompt_labels: list[str] | None = None,
                  hierarchy: Hierarchy | None = None, origin: ConfigOrigin | None = None) -> DataReport:
    """Check a dataset JSONL or folder against a run config.

    `prompt_labels`: the vocabulary the model is told (a checkpoint's prompt.json); default: the labels
    of the config's data.train and data.val, exactly as training builds its prompt. `origin`: where the config's
    values came from (`load_located_config`), so that a problem of the config names its line.
    """
    from bbuvl.data.layout import data_labels

    path = Path(path)
    hierarchy = hierarchy or Hierarchy.load(cfg.data.hierarchy)
    family, no_family = _offline_family(cfg)
    # Token counts within the pixel bounds alone: what each photo needs before the budget shrinks it.
    budget = cfg.model.frame(offline=True) if family else None  # as training shows each photo: resized to the budget
    contract = replace(budget, max_vision_tokens=None) if budget else None
    limit = cfg.model.max_vision_tokens
    files, problems = dataset_files(path)
    report = DataReport(problems=list(problems), batch_size=cfg.training.per_device_batch_size, counted=family is not None)
    report.prompt_labels = list(prompt_labels) if prompt_labels is not None else data_labels((cfg.data.train, cfg.data.val), hierarchy)
    first_seen: dict[str, tuple[str, int]] = {}
    teacher_tokens: list[tuple[int, int]] = []
    start = len(report.problems)
    read = [(file, _read_rows(path, file, report)) for file in files]
    rows = [(file, line, sample) for file, found in read for line, sample in found]
    # Every photo once, for its size and for the checks across lines (the same photo twice, a validation photo in
    # training...), the list `bbuvl data check` runs: called on each line alone, doctor said "0 error(s)" of a file
    # holding one photo twice, which data check and training refuse.
    probed = probe_photos(sorted({resolve_image(f, img) for f, _, s in rows for _, r in _records(s) for img in r.images}))
    infos: dict[Path, ImageInfo | str] = dict(probed.infos)
    report.problems.extend(dataset_problems(rows, probed, hierarchy))
    for file, found in read:
        summary = TokenSummary(str(file))
        for line, sample in found:
            report.problems.extend(record_problems(file, line, sample))
            if (crowded := queries_problem(file, line, sample, cfg)) is not None:
                report.problems.append(crowded)
            total, photos = 0, []
            for prefix, record in _records(sample):
                for obj in record.objects:
                    report.labels[obj.desc] = report.labels.get(obj.desc, 0) + 1
                    first_seen.setdefault(obj.desc, (str(file), line))
                tokens, problems = photo_problems(file, line, prefix, record, cfg, contract, infos)
                report.problems.extend(problems)
                summary.over_budget += tokens > limit
                total += tokens
                photos.append((tokens, _resized(infos.get(resolve_image(file, record.image)), budget, tokens)))
            summary.per_sample.append(total)
            if (cost := trained_cost(photos, cfg)) is not None:
                summary.trained.append((cost, not sample.teachers))
            if file.name == TEACHERS:
                teacher_tokens.append(photos[-1])  # a pool line is one photo
        report.tokens.append(summary)
    order = {str(f): i for i, f in enumerate(files)}  # in file and line order, as `data check` lists them
    report.problems[start:] = sorted(report.problems[start:], key=lambda p: (order.get(p.file, -1), p.line))
    _label_problems(report, first_seen, hierarchy)
    if not report.prompt_labels and report.labels:
        # Said: "0 in the prompt vocabulary" alone read as a prompt naming nothing, where no label had been checked
        gone = [f"data.{key} {p}" for key, p in (("train", cfg.data.train), ("val", cfg.data.val))
                if p is not None and not Path(p).is_file()]
        why = (f"{' and '.join(gone)}: no such file here, and training builds its prompt from their labels; give the "
               "run's config (-c CONFIG) or its checkpoint (--checkpoint)" if gone
               else "the config's data.train and data.val hold no label")
        report.problems.append(Problem("<prompt>", 0, f"the data's labels were not checked against the prompt, which "
                                       f"names none: {why}", "warning"))
    if family is None:
        report.lengths = (f"skipped, as they need the model: vision tokens per photo and per batch, answer lengths against "
                          f"data.max_length ({no_family}). Set model.family to count vision tokens; build or download the "
                          "model into the model.path folder to check answer lengths with its tokenizer")
        return report
    if not any(f.name == TEACHERS for f in files) and cfg.data.teachers and Path(cfg.data.teachers).exists():
        teacher_tokens = _pool_tokens(Path(cfg.data.teachers), contract, budget)  # the run draws its teachers from there
    report.worst_batch = _worst_batch(report, cfg, teacher_tokens)
    # `bbuvl train` refuses a budget that a batch of full-size photos could overflow, whatever this data holds.
    # The config is at fault, not the data: the problem names the config's line of the key at fault.
    for problem in batch_budget_problems(cfg, family.factor):
        file, line = (origin.source, origin.line_of(problem.keys)) if origin is not None else ("<config>", 0)
        report.problems.append(Problem(file, line, f"{problem}: `bbuvl train` refuses this config", "error"))
    report.lengths = _length_problems([f for f in files if f.name != TEACHERS], cfg, family, report, hierarchy)
    return report


def _offline_family(cfg: Config) -> tuple[Family | None, str]:
    """The run's model family without the network (model.family, a local folder, the hub cache), else why not."""
    try:
        return cfg.model.resolve_family(offline=True), ""
    except ValueError as e:
        return None, str(e)


def _length_problems(files: list[Path], cfg: Config, family: Family, report: DataReport, hierarchy: Hierarchy) -> str:
    """Answers `data.max_length` will cut and photos whose prompt alone reaches it, measured exactly as training will
    (the model's own tokenizer, prompt and frame); returns how they were checked, or why they could not be."""
    from bbuvl.encode.chat import ChatEncoder
    from bbuvl.encode.prompts import system_prompt
    from bbuvl.model.loading import load_processor
    from bbuvl.train.dataset import ConversationDataset, sources_from

    if not Path(cfg.model.path).is_dir():  # a hub id: no download (nor a minute of retries offline) for a data check
        return (f"answer lengths not checked: model.path {cfg.model.path} is not a local folder, and counting tokens "
                "needs its tokenizer; build or download the model into a folder and point model.path at it")
    try:
        contract = cfg.model.frame(offline=True)
        processor = load_processor(cfg.model.path, contract)
    except Exception as e:  # noqa: BLE001 - a missing or unreadable model only skips this check, with the reason
        return f"answer lengths not checked: cannot load the tokenizer of {cfg.model.path} ({str(e).splitlines()[0][:200]})"
    encoder = ChatEncoder(processor, system_prompt(report.prompt_labels, hierarchy, cfg.data.lang, family.model_type),
                          cfg.data.lang, family.assistant_prefix)
    cut = 0
    for file in files:
        sources = sources_from(read_dataset(file, skip_invalid=True), file)
        try:
            ds = ConversationDataset(sources, encoder, contract, oversize=cfg.data.oversize, max_length=cfg.data.max_length)
        except ValueError as e:  # a photo whose prompt alone reaches max_length: training refuses the whole file
            report.problems.append(_located(str(e), file))
            continue
        for entry in ds.truncated:
            at = _located(entry, file)
            report.problems.append(Problem(at.file, at.line, f"{at.message}, at data.max_length={cfg.data.max_length} (the "
                                           "head still gets every box as a target; raise data.max_length to teach the whole answer)",
                                           "warning"))
        cut += len(ds.truncated)
    return (f"answer lengths checked with {family.name}'s tokenizer and prompt against data.max_length="
            f"{cfg.data.max_length}: {cut} answer(s) will be cut")


def _located(text: str, file: Path) -> Problem:
    """A `FILE:LINE: message` the training dataset reports, as a Problem (the file itself when it names no line)."""
    where, _, why = text.partition(": ")
    path, _, line = where.rpartition(":")
    if not (path and line.isdigit() and why):
        return Problem(str(file), 0, text)
    return Problem(path, int(line), why)


def _resized(info: ImageInfo | str | None, budget: CoordinateContract | None, tokens: int) -> int:
    """A photo's vision tokens once resized down to the budget, as training shows it (its own `tokens` when unread)."""
    return budget.vision_tokens(info.upright) if isinstance(info, ImageInfo) and budget is not None else tokens


def trained_cost(photos: list[tuple[int, int]], cfg: Config) -> int | None:
    """Vision tokens a sample's photos (explicit teachers first, the student last; each as `(tokens, resized to the
    budget)`) take in a training batch: each photo resized on its own (data.oversize resize), or the sample dropped
    when its student is over `model.max_vision_tokens` (skip: train/dataset.py `_fits`); None when dropped."""
    if cfg.data.oversize == "resize":
        return sum(resized for _, resized in photos)
    return None if photos[-1][0] > cfg.model.max_vision_tokens else sum(tokens for tokens, _ in photos)


def _pool_tokens(teachers: Path, contract: CoordinateContract, budget: CoordinateContract) -> list[tuple[int, int]]:
    """`(vision tokens, resized to the budget)` of each readable photo of a teacher pool (its problems are `doctor data
    TEACHERS`' job)."""
    out = []
    for record in read_records(teachers, skip_invalid=True):
        info = probe_image(resolve_image(teachers, record.image), decode=False)
        if not isinstance(info, str):
            out.append((contract.vision_tokens(info.upright), budget.vision_tokens(info.upright)))
    return out


def _worst_batch(report: DataReport, cfg: Config, teacher_tokens: list[tuple[int, int]]) -> int:
    """Vision tokens of the costliest training batch: the costliest samples, each that draws teachers (a sample that
    names its own draws none: train/dataset.py `teachers_for`) with the largest of the pool.

    Each photo is resized to the budget on its own: the sample's sum clipped to one photo's budget said 400 of a batch
    of three photos of 192 (576), and a sample naming its teachers was charged pool teachers too."""
    pool = sorted((trained_cost([t], cfg) or 0 for t in teacher_tokens), reverse=True)  # skip: an over-budget one is out
    drawn = sum(pool[: cfg.data.num_teachers]) if cfg.data.teacher_ratio > 0 else 0
    costs = sorted((cost + (drawn if draws else 0) for s in report.tokens if Path(s.file).name != TEACHERS
                    for cost, draws in s.trained), reverse=True)
    return sum(costs[: cfg.training.per_device_batch_size])
