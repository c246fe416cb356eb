"""Training samples: a student photo, with probability `teacher_ratio` preceded by teacher photos and answers."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image, ImageOps

from bbuvl.config import CropConfig
from bbuvl.data.check import check_boxes, check_size, probe_image, sample_records, teacher_is_student
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.images import ImageError
from bbuvl.data.one_photo import SAME_FILE, photos_among
from bbuvl.data.regions import Region, magnified_record, mirrored_record, random_region
from bbuvl.data.schema import ImageRecord, Row, Sample, iter_dataset, resolve_image, tile_origin
from bbuvl.data.text import shell_word
from bbuvl.encode.chat import (SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, EncodedSample, Turn, answer_objects, format_answer,
                               image_for_model, objects_within)
from bbuvl.encode.collate import STAND_IN
from bbuvl.train.all_ranks import first_process
from bbuvl.train.data_files import DataFiles
from bbuvl.train.sample_cache import SampleCache, sample_bytes

log = logging.getLogger(__name__)
# Samples in a row whose photo cannot be read before a run stops: a folder gone, not a bad file among good ones.
UNREADABLE_IN_A_ROW = 8


@dataclass(frozen=True)
class SourcedRecord:
    """A record with the JSONL file it came from (image paths are relative to it) and its line there, when known."""

    record: ImageRecord
    dataset_path: str
    line: int | None = None

    @property
    def image_path(self) -> str:
        """Absolute path of the photo."""
        return str(resolve_image(self.dataset_path, self.record.image))


@dataclass(frozen=True)
class SampleSource:
    """A student record and the teachers fixed by the data (explicit teachers/student lines)."""

    student: SourcedRecord
    teachers: tuple[SourcedRecord, ...] = ()


def read_training_data(path: str | Path, show: int = 5, files: DataFiles | None = None) -> list[Sample]:
    """The samples of a JSONL for training (train, val or teachers), refusing the records `bbuvl data check` calls
    errors; see `read_training_rows`."""
    return [row.sample for row in read_training_rows(path, show, files) if row.sample is not None]


def read_training_rows(path: str | Path, show: int = 5, files: DataFiles | None = None) -> list[Row]:
    """Every line of a JSONL for training (train, val or teachers) with its sample, refusing the records `bbuvl data
    check` calls errors; the lines come from `files` when given (read there once for the whole start-up).

    Check's own rules (data/check.py): a box outside its photo or without area would be clipped to a target that is
    not the object, and an object annotated twice would be taught twice. A photo that is missing, no image, or of
    another size than its record says would stop the run at the step that first draws it, perhaps hours in: its
    header is read now (not its pixels: a header costs well under a millisecond). A bad line raises naming file and
    line; so does the first record error, with how many more there are.
    """
    rows = (files or DataFiles()).rows(path)
    errors: dict[str, list[str]] = {"box": [], "photo": [], "teacher": []}
    for row in rows:
        if row.error is not None:
            raise row.error
        # A teacher that is its student's own photo puts the answer in the prompt: the same file under any spelling,
        # or the same content (read only when the two files have one size; `bbuvl data check` hashes every photo).
        if row.sample.teachers and (problem := teacher_is_student(Path(path), row.sample, {})) is not None:
            errors["teacher"].append(f"{path}:{row.line}: {problem}")
        for prefix, record in sample_records(row.sample):
            errors["box"] += [f"{path}:{row.line}: {prefix}{message}" for message, severity in check_boxes(record)
                              if severity == "error"]
            if problem := photo_problem(path, record):
                errors["photo"].append(f"{path}:{row.line}: {prefix}{problem}")
    for what, found in errors.items():
        if found:
            more = (f" (and {len(found) - 1} more {what} error(s): {'; '.join(found[1:show])}"
                    f"{' ...' if len(found) > show else ''})")
            raise ValueError(f"{found[0]}{more if len(found) > 1 else ''}; training uses no {what} `bbuvl data check` "
                             f"calls an error: fix or remove them (`bbuvl data check {shell_word(path)}` lists every one)")
    return rows


def photo_problem(dataset_path: str | Path, record: ImageRecord) -> str | None:
    """What `bbuvl data check` says of a record's photo from its header (missing, no image, another size), or None."""
    info = probe_image(resolve_image(dataset_path, record.image), decode=False)
    if isinstance(info, str):
        return f"image {record.image}: {info}"
    return check_size(record, record.image, info)


def sources_from(samples: list[Sample], dataset_path: str | Path, lines: list[int] | None = None) -> list[SampleSource]:
    """Wrap samples read from `dataset_path` (at `lines`, when known) so that their image paths resolve (none at all is
    an error)."""
    p = str(dataset_path)
    if not samples:
        raise ValueError(f"{p}: no samples: the file is empty or holds only blank lines (expected one JSON photo "
                         "record per line; `bbuvl data check` shows what a dataset needs)")
    at: list[int | None] = list(lines) if lines is not None else [None] * len(samples)
    return [SampleSource(SourcedRecord(s.student, p, n), tuple(SourcedRecord(t, p, n) for t in s.teachers))
            for s, n in zip(samples, at, strict=True)]


def rows_as_sources(rows: list[Row], dataset_path: str | Path) -> list[SampleSource]:
    """`sources_from` the rows `read_training_rows` returned, each record knowing its line."""
    return sources_from([row.sample for row in rows if row.sample is not None], dataset_path, [row.line for row in rows])


def locate(records: list[SourcedRecord]) -> list[str]:
    """`file:line` of each record: its own line when it carries one, else found by reading its file once (only
    messages need it)."""
    found: dict[int, str] = {id(r): f"{r.dataset_path}:{r.line}" for r in records if r.line is not None}
    for path in {r.dataset_path for r in records if r.line is None}:
        wanted: dict[str, list[SourcedRecord]] = {}
        for r in records:
            if r.dataset_path == path and r.line is None:
                wanted.setdefault(r.record.image, []).append(r)
        for row in iter_dataset(path):
            for rec in ([row.sample.student, *row.sample.teachers] if row.sample else []):
                for r in wanted.get(rec.image, []):
                    if id(r) not in found and rec == r.record:
                        found[id(r)] = f"{path}:{row.line}"
    return [found.get(id(r), f"{r.dataset_path} ({r.record.image})") for r in records]


def sample_names(student: SourcedRecord, teachers: list[SourcedRecord]) -> str:
    """`file:line` of a sample's student photo and its image, and of the teachers shown before it, for a message."""
    where = locate([student, *teachers])
    shown = f"{where[0]}: photo {student.record.image}"
    return shown + (f" (after teacher{'s' if len(teachers) > 1 else ''} {', '.join(where[1:])})" if teachers else "")


def drawn_crop(crop: CropConfig | None, size: tuple[int, int], rng: random.Random) -> Region | None:
    """The window a `size` photo is shown through for one draw of `rng` (`data.crop`); None: the whole photo."""
    if crop is None or crop.p <= 0 or rng.random() >= crop.p:
        return None
    return random_region(size, rng, crop.min_side, crop.max_side)


def drawn_mirror(mirror: float, rng: random.Random) -> bool:
    """Whether a photo is shown mirrored left to right for one draw of `rng` (`data.mirror`, its chance)."""
    return mirror > 0 and rng.random() < mirror


def shown_photo(src: SourcedRecord, contract: CoordinateContract, region: Region | None = None,
                mirror: bool = False) -> tuple[Image.Image, ImageRecord]:
    """`src`'s photo in its model frame, through `region` (magnified to the whole photo's frame) and mirrored left to
    right or not, and its record moved with it: a record of the photo's size, whose frame is the returned image.

    The window's record is magnified to the stored photo's size, not to the frame: an answer is written from a record
    through `contract.to_model`, whose extent is `model_size(record.size)`, and that is the picture shown only for the
    photo's own size (a 109x113 photo framed at 112x112 under a 64-token budget: `model_size((112, 112))` is 224x224,
    and every box was taught twice as far out as the picture showed it).
    """
    image = image_for_model(src.image_path, src.record.size, contract, region)
    return (ImageOps.mirror(image) if mirror else image), shown_record(src.record, region, mirror)


def shown_record(record: ImageRecord, region: Region | None = None, mirror: bool = False) -> ImageRecord:
    """`record` as `shown_photo` shows its photo: through `region`, magnified to the photo's size, and mirrored or
    not."""
    shown = record if region is None else magnified_record(record, region, record.size)
    return mirrored_record(shown) if mirror else shown


class ConversationDataset(torch.utils.data.Dataset):
    """Encodes samples on the fly (images are decoded per item, so memory does not grow with the dataset), or keeps
    them between epochs up to `cache_mb` (train/sample_cache.py; with loader workers each would hold its own copy for
    one epoch, so the config allows it only with `data.num_workers: 0`).

    With `max_length` no sample is longer (docs/design.md, "Long answers are cut, never split"): teachers that
    would push a sample past it are left out, and a student answer too long on its own is cut there; the photos
    cut are listed in `truncated` at start-up. A crop's or mirror's answer, longer than the whole photo's, is
    measured when drawn: its teachers are chosen for it, and one too long on its own is cut and warned of once.
    A photo whose prompt and image alone reach it is refused.
    """

    def __init__(
        self,
        sources: list[SampleSource],
        encoder: ChatEncoder,
        contract: CoordinateContract,
        teacher_pool: list[SourcedRecord] | None = None,
        teacher_ratio: float = 0.0,
        num_teachers: int = 1,
        oversize: str = "resize",
        seed: int = 42,
        max_length: int | None = None,
        crop: CropConfig | None = None,
        mark_coordinates: bool = False,
        mirror: float = 0.0,
        cache_mb: float = 0.0,
        in_place: str = "trained",
    ):
        self.encoder, self.contract = encoder, contract
        # What the next sample is, in the place of one whose photo cannot be read: "evaluated" for a validation set
        self.in_place = in_place
        self.cache = SampleCache(int(cache_mb * 2**20)) if cache_mb > 0 else None
        self.mark_coordinates = mark_coordinates  # the coordinate losses read the student's marks (encode/chat.py)
        self.crop = crop if crop is not None and crop.p > 0 else None
        self.mirror = mirror  # the chance a student photo is shown mirrored left to right, drawn per (seed, epoch, index)
        self.teacher_ratio, self.num_teachers, self.seed = teacher_ratio, num_teachers, seed
        self.oversize, self.max_length = oversize, max_length
        self.epoch = 0
        # The photos `data.oversize: skip` leaves out: this dataset's own, and the teacher pool's (said by the run,
        # naming each file's key: train/oversize.py)
        self.skipped: list[SourcedRecord] = []
        self.pool_skipped: list[SourcedRecord] = []
        self.truncated: list[str] = []  # "file:line: ..." of each photo whose answer is cut at max_length
        self.answer_tokens: list[int] = []  # each student answer's tokens, sources' order (measured with max_length)
        self._cut_whole: set[int] = set()  # the sources whose whole photo's answer is cut (listed in `truncated`)
        self._said_cut: set[int] = set()  # the sources whose answer a crop or mirror cut, warned of once each
        # The last draw measured: ((epoch, index), turn tokens, answer objects, answer ids)
        self._turn_memo: tuple = (None, 0, [], [])
        self.sources = [s for s in sources if self._fits(s.student, self.skipped)]
        self.teacher_pool = [t for t in (teacher_pool or []) if self._fits(t, self.pool_skipped)]
        # Pool teachers that are each student's own photo, by source index (a dict of lists, pickled into workers)
        self._own_photos: dict[int, list[int]] = {}
        self.pool_students: list[str] = []  # "file:line ... is file:line's photo" of each pool photo a student's too
        if self.teacher_pool and teacher_ratio > 0 and num_teachers > 0:
            self._find_own_photos()
        # Tokens of each record's answered turn, aligned with sources, their teachers and the pool (lists, not
        # ids: the dataset is pickled into loader workers). Zero without max_length: nothing is measured.
        self._student_len = [0] * len(self.sources)
        self._teacher_len = [(0,) * len(s.teachers) for s in self.sources]
        self._pool_len = [0] * len(self.teacher_pool)
        if max_length is not None:
            self._measure(max_length)

    def _find_own_photos(self) -> None:
        """Which pool teachers are which students' own photos (one file however named, or a copy), and say those a
        path spelt otherwise or a copy hides: compared as path strings, a pool kept in a folder of its own naming
        the training photos as `../data/images/x.jpg` showed each student its own answer (data/one_photo.py)."""
        students = [Path(s.student.image_path) for s in self.sources]
        found = photos_among([Path(t.image_path) for t in self.teacher_pool], students)
        hidden: list[tuple[SourcedRecord, SourcedRecord, str]] = []
        for j, same in enumerate(found):
            for i, how in same:
                self._own_photos.setdefault(i, []).append(j)
                student, teacher = self.sources[i].student, self.teacher_pool[j]
                if how != SAME_FILE or teacher.image_path != student.image_path:
                    hidden.append((teacher, student, how))
        if not hidden:
            return
        where = locate([r for t, s, _ in hidden for r in (t, s)])
        self.pool_students = [f"{where[2 * k]} (image {t.record.image}) is {where[2 * k + 1]}'s photo ({how})"
                              for k, (t, _, how) in enumerate(hidden)]
        if first_process():  # every process builds the same dataset: one says so
            log.warning("%d teacher photo(s) of the pool are training photos under another path or name, never shown "
                        "before themselves: %s", len(hidden),
                        "; ".join(self.pool_students[:5]) + (" ..." if len(hidden) > 5 else ""))

    def cache_need_bytes(self) -> int:
        """About what keeping every sample takes (`data.sample_cache_mb`): the first sample's bytes per vision token,
        times every student photo's vision tokens (teachers shown before a student add theirs on top)."""
        if not self.sources:
            return 0
        tokens = [self.contract.vision_tokens(s.student.record.size) for s in self.sources]
        first = self._encode(0, [], None, False)
        return round(sample_bytes(first) / max(tokens[0], 1) * sum(tokens))

    def answers_longer_than(self, max_new_tokens: int) -> int:
        """Student answers that, with the end of turn, need more than `max_new_tokens` new tokens to generate."""
        return sum(n + 1 > max_new_tokens for n in self.answer_tokens)

    def _fits(self, src: SourcedRecord, skipped: list[SourcedRecord]) -> bool:
        if self.oversize == "skip" and self.contract.over_budget(src.record.size):
            skipped.append(src)
            return False
        return True

    def _measure(self, max_length: int, chunk: int = 256) -> None:
        """Every record's turn length (tokenised in chunks, images unread); refuse what cannot fit, list what is cut."""
        n = len(self.sources)
        records = [s.student for s in self.sources] + [t for s in self.sources for t in s.teachers] + self.teacher_pool
        lengths: list[int] = []
        refused: list[tuple[SourcedRecord, int, int]] = []
        cut: list[tuple[SourcedRecord, str]] = []
        for at in range(0, len(records), chunk):
            part = records[at:at + chunk]
            objects = [answer_objects(r.record, self.contract) for r in part]
            answers = self.encoder.answer_ids([json.dumps(o, ensure_ascii=False) for o in objects])
            for k, (r, objs, ids) in enumerate(zip(part, objects, answers), start=at):
                vision = self.contract.vision_tokens(r.record.size)
                lengths.append(self.encoder.turn_length(vision, len(ids)))
                if k >= n:
                    continue
                self.answer_tokens.append(len(ids))
                prompt = self.encoder.prompt_length(vision)
                if prompt >= max_length:
                    refused.append((r, prompt, vision))
                elif self.encoder.system_length + lengths[-1] + self.encoder.prefix_length > max_length:
                    self._cut_whole.add(k)
                    cut.append((r, self._cut_note(objs, ids, max_length - prompt)))
        if refused:
            (r, prompt, vision), more = refused[0], len(refused) - 1
            raise ValueError(f"{locate([r])[0]}: photo {r.record.image} needs {prompt} tokens before its answer ({vision} "
                             f"vision tokens), data.max_length is {max_length}: raise data.max_length or lower "
                             f"model.max_vision_tokens" + (f" ({more} more photos like it)" if more else ""))
        self._student_len = lengths[:n]
        rest = iter(lengths[n:])
        self._teacher_len = [tuple(next(rest) for _ in s.teachers) for s in self.sources]
        self._pool_len = list(rest)
        self.truncated = [f"{at}: {why}" for at, (_, why) in zip(locate([r for r, _ in cut]), cut)]
        if self.truncated and first_process():  # every process measures the same answers: one says so
            log.warning("%d photo(s) have answers longer than data.max_length=%d leaves room for; each is cut there "
                        "(the detection head still gets every box as a target): %s", len(self.truncated), max_length,
                        "; ".join(self.truncated[:5]) + (" ..." if len(self.truncated) > 5 else ""))
        short = sum(len(self._within(i, list(zip(s.teachers, self._teacher_len[i])), self._student_len[i]))
                    < len(s.teachers) for i, s in enumerate(self.sources) if s.teachers)
        if short and first_process():
            log.warning("%d sample(s) show fewer of their teachers: with all of them they exceed data.max_length=%d",
                        short, max_length)

    def _cut_note(self, objects: list[dict], ids: list[int], room: int) -> str:
        """What of an answer of `objects` (its token `ids`) is taught when cut to `room` tokens."""
        if room >= len(ids):  # the answer fits; what follows it does not ("answer of 137 tokens cut to 138")
            return (f"answer of {len(ids)} tokens whole, the end of its turn cut: all {len(objects)} objects are "
                    f"taught, not that the answer stops there")
        text = self.encoder.tokenizer.decode(ids[:room], clean_up_tokenization_spaces=False)
        return (f"answer of {len(ids)} tokens cut to {room}: the first {objects_within(objects, len(text))} of "
                f"{len(objects)} objects are taught")

    def _room(self, index: int, student: int | None = None) -> float:
        """Tokens left for teachers before sample `index`'s student turn of `student` tokens (this epoch's draw when
        None) within max_length (unbounded without one)."""
        if self.max_length is None:
            return float("inf")
        turn = self._drawn_turn(index) if student is None else student
        return self.max_length - self.encoder.system_length - self.encoder.prefix_length - turn

    def _drawn_turn(self, index: int) -> int:
        """Tokens of sample `index`'s student turn this epoch: its whole photo's, or, when longer, its crop window's
        or mirror's. A crop magnifies the boxes' numbers (60..99 become 100 and more: more tokens) and a mirror moves
        them: teachers chosen for the whole photo's length cut the student's answer at max_length, its closing
        `]` and end of turn never taught. Never shorter than the whole photo's, so that a draw whose answer is no
        longer chooses the teachers the whole photo would."""
        region, mirror = self.crop_for(index), self.mirrored(index)
        if self.max_length is None or (region is None and not mirror):
            return self._student_len[index]
        key = (self.epoch, index)
        if self._turn_memo[0] != key:  # teachers_for and _sample both ask, for the same draw
            src = self.sources[index].student
            objects = answer_objects(shown_record(src.record, region, mirror), self.contract)
            ids = self.encoder.answer_ids([json.dumps(objects, ensure_ascii=False)])[0]
            turn = self.encoder.turn_length(self.contract.vision_tokens(src.record.size), len(ids))
            self._turn_memo = (key, turn, objects, ids)
        return max(self._student_len[index], self._turn_memo[1])

    def _draw_cut(self, index: int) -> str | None:
        """`file:line` of sample `index`'s photo when its answer is cut at max_length through this epoch's crop or
        mirror alone (the whole photo's fits): said once a photo, as the start-up says the whole photos cut."""
        if self.max_length is None or index in self._cut_whole or self._drawn_turn(index) == self._student_len[index]:
            return None
        _, turn, objects, ids = self._turn_memo
        if self._room(index, turn) >= 0:
            return None
        src = self.sources[index].student
        region, mirror = self.crop_for(index), self.mirrored(index)
        how = " and ".join(([f"through the crop window {list(region)}"] if region else [])
                           + (["mirrored"] if mirror else []))
        room = self.max_length - self.encoder.prompt_length(self.contract.vision_tokens(src.record.size))
        where = locate([src])[0]
        if index not in self._said_cut:
            self._said_cut.add(index)
            log.warning("%s: photo %s %s: %s (longer than its whole photo's answer, which fits data.max_length=%d; "
                        "epoch %d)", where, src.record.image, how, self._cut_note(objects, ids, room), self.max_length,
                        self.epoch)
        return where

    def _within(self, index: int, teachers: list[tuple[SourcedRecord, int]],
                student: int | None = None) -> list[SourcedRecord]:
        """The teachers (with their turn lengths) that fit before sample `index`'s student turn (`_room`), kept in
        order while they fit."""
        room, kept = self._room(index, student), []
        for t, length in teachers:
            if length <= room:
                kept.append(t)
                room -= length
        return kept

    def set_epoch(self, epoch: int) -> None:
        """Teacher draws depend on (seed, epoch, index), so a resumed run sees the same samples."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sources)

    def _rng(self, index: int, draw: str = "") -> random.Random:
        """Sample `index`'s generator for one kind of draw this epoch (teachers: "", "crop", "mirror"): seeded by
        (seed, epoch, index) alone, so a resumed run, and any loader worker, sees the same samples."""
        return random.Random(f"{self.seed}-{self.epoch}-{index}" + (f"-{draw}" if draw else ""))

    def teachers_for(self, index: int) -> list[SourcedRecord]:
        """Teachers shown before sample `index` this epoch (never the student photo itself)."""
        src = self.sources[index]
        if src.teachers:
            return self._within(index, list(zip(src.teachers, self._teacher_len[index])))
        rng = self._rng(index)
        if not self.teacher_pool or self.num_teachers == 0 or rng.random() >= self.teacher_ratio:
            return []
        room = self._room(index)  # drawn among those that fit, rather than drawn and then dropped
        # Never its own photo (one file however named, or a copy), nor a tile of the same photo, nor the whole photo
        # `data tile` kept beside it: each shows its answer.
        origin, own = tile_origin(src.student.record), self._own_photos.get(index, ())
        pool = [(t, n) for j, (t, n) in enumerate(zip(self.teacher_pool, self._pool_len))
                if j not in own and n <= room and (origin is None or tile_origin(t.record) != origin)]
        return self._within(index, rng.sample(pool, min(self.num_teachers, len(pool))))

    def crop_for(self, index: int) -> Region | None:
        """The window sample `index`'s student photo is shown through this epoch; None: the whole photo."""
        return drawn_crop(self.crop, self.sources[index].student.record.size, self._rng(index, "crop"))

    def mirrored(self, index: int) -> bool:
        """Whether sample `index`'s student photo is shown mirrored this epoch."""
        return drawn_mirror(self.mirror, self._rng(index, "mirror"))

    def _turn(self, src: SourcedRecord, span: int, region: Region | None = None,
              mirror: bool = False) -> tuple[Turn, ImageRecord]:
        """The turn showing `src` (through `region`, magnified to its frame; mirrored left to right) and the record its
        answer is written from."""
        image, record = shown_photo(src, self.contract, region, mirror)
        # The student's extent marks its box numbers for the coordinate losses (model/coordinate_loss.py).
        extent = self.contract.answer_extent(record.size) if self.mark_coordinates and span == SPAN_STUDENT else None
        return Turn(image, format_answer(record, self.contract), span, extent), record

    def __getitem__(self, index: int) -> EncodedSample:
        """Sample `index`; when a photo of it cannot be read now (cut short, deleted, replaced since the start read its
        header), the next sample in its place, the photo named in its `meta["unreadable"]` and in a warning: one bad
        file among thousands no longer ends a run hours in (docs/design.md, "Photos that cannot be read"). Past the
        last index, `index - len` as a stand-in (`meta["stand_in"]`, train/stand_ins.py)."""
        if index >= len(self.sources):  # a place past the epoch's end, trained at zero weight (train/stand_ins.py)
            sample = self[index % len(self.sources)]
            return replace(sample, meta={**sample.meta, STAND_IN: True})
        unreadable: list[str] = []
        for k in range(len(self.sources)):
            at = (index + k) % len(self.sources)
            try:
                sample = self._sample(at)
            except ImageError as e:
                where = locate([self.sources[at].student])[0]
                unreadable.append(f"{where}: {e}")
                log.warning("%s: a photo of this sample cannot be read (%s): the next sample is %s in its place; "
                            "fix or remove it", where, e, self.in_place)
                if len(unreadable) == UNREADABLE_IN_A_ROW:
                    raise ImageError(f"{UNREADABLE_IN_A_ROW} samples in a row have a photo that cannot be read, the first "
                                     f"{unreadable[0]}: is the photos' folder still there?") from None
                continue
            if unreadable:
                sample = replace(sample, meta={**sample.meta, "unreadable": unreadable})
            return sample
        raise ImageError(f"no sample has a photo that can be read, the first {unreadable[0]}")

    def _sample(self, index: int) -> EncodedSample:
        """Sample `index`, from the cache when it holds it; its photo's `file:line` in `meta["cut"]` when this
        epoch's crop or mirror made its answer too long (`_draw_cut`)."""
        teachers, region, mirror = self.teachers_for(index), self.crop_for(index), self.mirrored(index)
        sample = self._cached(index, teachers, region, mirror)
        if (cut := self._draw_cut(index)) is not None:  # counted where batches are used (train/trainer.py)
            sample = replace(sample, meta={**sample.meta, "cut": cut})  # its photo's file:line
        return sample

    def _cached(self, index: int, teachers: list[SourcedRecord], region: Region | None, mirror: bool) -> EncodedSample:
        """Sample `index` with these draws, from the cache when it holds it."""
        if self.cache is None:
            return self._encode(index, teachers, region, mirror)
        # Everything the encoding depends on: the teachers by identity (records live as long as the dataset; two
        # records may share a photo and differ in their answers), this epoch's window and mirror.
        key = (index, tuple(id(t) for t in teachers), region, mirror)
        sample = self.cache.get(key)
        if sample is None:
            sample = self._encode(index, teachers, region, mirror)
            self.cache.put(key, sample)
        return sample

    def _encode(self, index: int, teachers: list[SourcedRecord], region: Region | None, mirror: bool) -> EncodedSample:
        """Sample `index` with these teachers before it, its student photo seen through `region` and mirrored or not;
        a sample that cannot be encoded raises naming its records' file:line (a photo that cannot be read: ImageError,
        which `__getitem__` steps over)."""
        src = self.sources[index]
        try:
            student, rec = self._turn(src.student, SPAN_STUDENT, region, mirror)
            turns = [self._turn(t, SPAN_TEACHER)[0] for t in teachers] + [student]
            enc = self.encoder.encode(turns, max_length=self.max_length)
        except ImageError:
            raise
        except ValueError as e:
            # The processor's own refusal names no photo, and the first sample is encoded by a monitor's start, where
            # nothing else would say which record it was.
            raise ValueError(f"{sample_names(src.student, teachers)}: this sample cannot be encoded: {e}") from e
        W, H = rec.size
        boxes = torch.tensor([[o.bbox_2d[0] / W, o.bbox_2d[1] / H, o.bbox_2d[2] / W, o.bbox_2d[3] / H] for o in rec.objects],
                             dtype=torch.float32).reshape(-1, 4).clamp(0, 1)  # read_training_data refused any box
        # further out than check's round-off tolerance, so the clamp moves none by more than that
        return enc.with_targets(
            det_boxes=boxes,
            det_caption_ids=[torch.tensor(self.encoder.tokenizer.encode(o.desc, add_special_tokens=False))
                             for o in rec.objects],
            meta={"images": [t.image_path for t in teachers] + [src.student.image_path], "index": index},
        )
