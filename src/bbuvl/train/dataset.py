"""Training samples: a student photo, with probability `teacher_ratio` preceded by teacher photos and answers."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import ImageRecord, Sample, resolve_image
from bbuvl.encode.chat import SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, Turn, format_answer, image_for_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourcedRecord:
    """A record with the JSONL file it came from (image paths are relative to it)."""

    record: ImageRecord
    dataset_path: str

    @property
    def image_path(self) -> str:
        """Absolute path of the photo."""
        return str(resolve_image(self.dataset_path, self.record.image))


@dataclass(frozen=True)
class SampleSource:
    """A student record and the teachers fixed by the data (explicit teachers/student lines)."""

    student: SourcedRecord
    teachers: tuple[SourcedRecord, ...] = ()


def sources_from(samples: list[Sample], dataset_path: str | Path) -> list[SampleSource]:
    """Wrap samples read from `dataset_path` so that their image paths resolve."""
    p = str(dataset_path)
    return [SampleSource(SourcedRecord(s.student, p), tuple(SourcedRecord(t, p) for t in s.teachers)) for s in samples]


class ConversationDataset(torch.utils.data.Dataset):
    """Encodes samples on the fly (images are decoded per item, so memory does not grow with the dataset)."""

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
    ):
        self.encoder, self.contract = encoder, contract
        self.teacher_ratio, self.num_teachers, self.seed = teacher_ratio, num_teachers, seed
        self.oversize = oversize
        self.epoch = 0
        self.skipped: list[str] = []
        self.sources = [s for s in sources if self._fits(s.student)]
        self.teacher_pool = [t for t in (teacher_pool or []) if self._fits(t)]
        if self.skipped:
            log.warning("skipped %d over-budget photos (> %d vision tokens): %s", len(self.skipped), contract.max_vision_tokens,
                        ", ".join(self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else ""))

    def _fits(self, src: SourcedRecord) -> bool:
        if self.oversize == "skip" and self.contract.over_budget(src.record.size):
            self.skipped.append(src.image_path)
            return False
        return True

    def set_epoch(self, epoch: int) -> None:
        """Teacher draws depend on (seed, epoch, index), so a resumed run sees the same samples."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sources)

    def teachers_for(self, index: int) -> list[SourcedRecord]:
        """Teachers shown before sample `index` this epoch (never the student photo itself)."""
        src = self.sources[index]
        if src.teachers:
            return list(src.teachers)
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        if not self.teacher_pool or self.num_teachers == 0 or rng.random() >= self.teacher_ratio:
            return []
        pool = [t for t in self.teacher_pool if t.image_path != src.student.image_path]
        return rng.sample(pool, min(self.num_teachers, len(pool)))

    def _turn(self, src: SourcedRecord, span: int) -> Turn:
        image = image_for_model(src.image_path, src.record.size, self.contract)
        return Turn(image, format_answer(src.record, self.contract), span)

    def __getitem__(self, index: int) -> dict[str, Any]:
        src = self.sources[index]
        teachers = self.teachers_for(index)
        turns = [self._turn(t, SPAN_TEACHER) for t in teachers] + [self._turn(src.student, SPAN_STUDENT)]
        enc = self.encoder.encode(turns)
        rec = src.student.record
        W, H = rec.size
        boxes = torch.tensor([[o.bbox_2d[0] / W, o.bbox_2d[1] / H, o.bbox_2d[2] / W, o.bbox_2d[3] / H] for o in rec.objects],
                             dtype=torch.float32).reshape(-1, 4).clamp(0, 1)
        return enc.as_sample(
            det_boxes=boxes,
            det_caption_ids=[torch.tensor(self.encoder.tokenizer.encode(o.desc, add_special_tokens=False))
                             for o in rec.objects],
            meta={"images": [t.image_path for t in teachers] + [src.student.image_path], "index": index},
        )
