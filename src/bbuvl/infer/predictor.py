"""`Predictor`: images in, `{bbox_2d, label, score}` out, in the stored image's pixels.

Four modes share one preprocessing path (the coordinate contract saved with the checkpoint):
- generate: greedy decoding of the JSON answer (by default constrained to the answer grammar and the
  checkpoint's labels, infer/constrained.py), parsed robustly; score = mean probability of the object's
  tokens (box and label);
- head: the detection head on one forward pass, its captions (by default) constrained to the checkpoint's
  labels; score = objectness x caption likelihood;
- name: the head's boxes, each named by the VLM (its answer begun with the box, the label constrained to the
  checkpoint's labels); score = objectness x label likelihood;
- teachers: generate, with teacher photos and their answers shown first (as in teacher-student training).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import IMAGE_TOKEN, TURN_END, get_family
from bbuvl.data.images import load_image, to_rgb
from bbuvl.data.schema import ImageRecord, read_records, resolve_image
from bbuvl.encode.chat import SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, EncodedSample, Turn, format_answer
from bbuvl.encode.collate import Batch, PaddedCollator
from bbuvl.infer.constrained import AnswerConstraint
from bbuvl.infer.parse import parse_detections
from bbuvl.model.box_ops import nms, to_xyxy

MODES = ("generate", "head", "name", "teachers")
logger = logging.getLogger(__name__)


@dataclass
class Detection:
    """One detected object in the stored image's pixels."""

    bbox_2d: list[float]
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (box rounded to 0.1 px)."""
        d = asdict(self)
        d["bbox_2d"] = [round(v, 1) for v in self.bbox_2d]
        d["score"] = round(self.score, 5)
        return d


@dataclass
class ImageResult:
    """Everything predicted for one image (what a line of predictions.jsonl holds)."""

    objects: list[Detection] = field(default_factory=list)
    raw: str | None = None
    width: int = 0
    height: int = 0
    error: str | None = None


class _ChosenLogProb(LogitsProcessor):
    """Records, per generation step, the log-probability of the greedy choice (a [B] vector, not [B, V] scores).

    With a `constraint` (infer/constrained.py) the choice is the best token the grammar allows, and what is
    recorded is the model's own, unconstrained probability of it (docs/constrained_decoding.md, "Scores").
    """

    def __init__(self, constraint: LogitsProcessor | None = None) -> None:
        self.steps: list[torch.Tensor] = []
        self.constraint = constraint

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.constraint is None:
            self.steps.append(scores.float().log_softmax(-1).max(-1).values.cpu())
            return scores
        logp = scores.float().log_softmax(-1)
        scores = self.constraint(input_ids, scores)
        self.steps.append(logp.gather(-1, scores.argmax(-1, keepdim=True)).squeeze(-1).cpu())
        return scores


def token_char_ends(tokenizer: Any, ids: list[int]) -> list[int]:
    """Character offset in `decode(ids)` where each token ends, in O(len(ids)) decodes (byte-level BPE safe).

    Incremental detokenisation (as in TGI/vLLM): only a window since the last complete character is
    re-decoded, not the whole prefix. A token that ends inside a multi-byte character (a CJK label
    split over byte tokens) ends where the previous one did; the token completing the character
    carries all of it.
    """
    ends, text_len, prefix, read = [], 0, 0, 0
    for k in range(len(ids)):
        before = tokenizer.decode(ids[prefix:read], skip_special_tokens=True)
        after = tokenizer.decode(ids[prefix : k + 1], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            text_len += len(after) - len(before)
            prefix, read = read, k + 1
        ends.append(text_len)
    return ends


@dataclass
class Prepared:
    """One photo ready for the model: resized to its model frame and, once `Predictor.encode` ran, its prompt encoded."""

    image: Image.Image  # model-frame RGB
    size: tuple[int, int]  # stored (EXIF-oriented) size
    sample: EncodedSample | None = None  # the student turn's encoded sample (no teachers), when encoded ahead


class Predictor:
    """A trained checkpoint ready to predict; see the module docstring for the modes."""

    def __init__(self, model: Any, processor: Any, contract: CoordinateContract, prompt: Any, cfg: Any, device: str = "cpu"):
        self.model, self.processor, self.contract, self.prompt, self.cfg = model, processor, contract, prompt, cfg
        self.device = device
        self.encoder = ChatEncoder(processor, prompt.system, prompt.lang, get_family(contract.family).assistant_prefix)
        tok = processor.tokenizer
        self.tokenizer = tok
        self.collator = PaddedCollator(tok.pad_token_id, tok.convert_tokens_to_ids(IMAGE_TOKEN), padding_side="left")
        self.teachers: list[tuple[Image.Image, str]] = []
        self._constraint: AnswerConstraint | None = None
        self._caption_vocabulary: dict[tuple[int, ...], str] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None, dtype: str | None = None) -> "Predictor":
        """Load a checkpoint written by `bbuvl train` (coordinate contract and prompt included)."""
        from bbuvl.model.checkpoint import load_checkpoint

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, processor, cfg, contract, prompt = load_checkpoint(path, dtype=dtype, device=device)
        return cls(model, processor, contract, prompt, cfg, device)

    @classmethod
    def from_base_model(cls, path: str | Path, labels: list[str], lang: str = "zh", device: str | None = None,
                        dtype: str | None = None) -> "Predictor":
        """A plain Hugging Face model folder in generate mode: its family's contract and prompt, `labels` to answer with."""
        from bbuvl.model.checkpoint import load_base_model

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, processor, cfg, contract, prompt = load_base_model(path, labels, lang=lang, dtype=dtype, device=device)
        return cls(model, processor, contract, prompt, cfg, device)

    # --- inputs ------------------------------------------------------------------------------

    def prepare(self, image: str | Path | Image.Image) -> Prepared:
        """Load (EXIF-oriented RGB) and resize to the model frame the checkpoint was trained with."""
        # A PIL image given directly gets the same mode conversion as a file (16-bit, CMYK, alpha: data/images.py).
        img = load_image(image).image if not isinstance(image, Image.Image) else to_rgb(image)
        msize = self.contract.model_size(img.size)
        return Prepared(img if img.size == msize else img.resize(msize, Image.BICUBIC), img.size)

    def encode(self, prepared: Prepared) -> Prepared:
        """`prepared` with its prompt encoded (the processor's pixels and the tokens), as a batch would encode it.

        What a batch would do per photo, done ahead: a server encodes each photo as it arrives, on another thread,
        while the model computes the previous batch (docs/serving.md, "Dynamic batching").
        """
        enc = self.encoder.encode([Turn(prepared.image, None, SPAN_STUDENT)], add_generation_prompt=True)
        return Prepared(prepared.image, prepared.size, enc)

    def set_teachers(self, teachers_jsonl: str | Path, k: int | None = None) -> None:
        """Teacher photos and answers for `teachers` mode (the first `k` of a teachers JSONL)."""
        records: list[ImageRecord] = read_records(teachers_jsonl)[: k or self.cfg.inference.num_teachers]
        self.teachers = []
        for r in records:
            prep = self.prepare(resolve_image(teachers_jsonl, r.image))
            if prep.size != r.size:
                raise ValueError(f"{teachers_jsonl}: teacher {r.image} is {prep.size}, its record says {r.size}")
            self.teachers.append((prep.image, format_answer(r, self.contract)))

    def _student_sample(self, p: Prepared) -> EncodedSample:
        """The photo's encoded prompt without teachers: encoded ahead (`encode`) or now."""
        return p.sample if p.sample is not None else self.encode(p).sample

    def _batch(self, prepared: Sequence[Prepared], with_teachers: bool) -> Batch:
        samples = []
        for p in prepared:
            if not with_teachers:
                samples.append(self._student_sample(p))
                continue
            turns = [Turn(img, ans, SPAN_TEACHER) for img, ans in self.teachers]
            enc = self.encoder.encode(turns + [Turn(p.image, None, SPAN_STUDENT)], add_generation_prompt=True)
            samples.append(enc)
        return self.collator(samples).to(self.device)

    # --- modes -------------------------------------------------------------------------------

    def _answer_constraint(self, prepared: Sequence[Prepared], constrained: bool, max_new_tokens: int) -> LogitsProcessor | None:
        """The grammar processor for this batch (each row bounded by its answer extent: frame or 0-1000), or None when off."""
        if not constrained:
            return None
        if not self.prompt.labels:
            logger.warning("constrained decoding is off: the checkpoint's prompt.json lists no labels")
            return None
        return self._constraint_for_labels().processor([self.contract.answer_extent(p.size) for p in prepared], max_new_tokens)

    def _constraint_for_labels(self) -> AnswerConstraint:
        if self._constraint is None:
            self._constraint = AnswerConstraint.from_tokenizer(self.tokenizer, self.prompt.labels)
        return self._constraint

    def _greedy(self, batch: Batch, constraint: LogitsProcessor | None, max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding of a collated batch: new token ids `[B, T]` and each choice's log-probability `[B, T]`."""
        recorder = _ChosenLogProb(constraint)
        out = self.model.vlm.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values,
            image_grid_thw=batch.image_grid_thw, mm_token_type_ids=batch.mm_token_type_ids,
            max_new_tokens=max_new_tokens, do_sample=False, logits_processor=LogitsProcessorList([recorder]),
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.convert_tokens_to_ids(TURN_END),
        )
        new = out[:, batch.input_ids.shape[1]:].cpu()
        logprobs = torch.stack(recorder.steps, dim=1) if recorder.steps else torch.zeros(new.shape[0], 0)
        return new, logprobs

    @torch.inference_mode()
    def _generate(self, prepared: Sequence[Prepared], with_teachers: bool, max_new_tokens: int,
                  constrained: bool = False) -> list[ImageResult]:
        batch = self._batch(prepared, with_teachers)
        new, logprobs = self._greedy(batch, self._answer_constraint(prepared, constrained, max_new_tokens), max_new_tokens)
        del batch
        results = []
        eos = {self.tokenizer.pad_token_id, self.tokenizer.convert_tokens_to_ids(TURN_END)}
        for row, p in enumerate(prepared):
            ids = new[row].tolist()
            n = next((i for i, t in enumerate(ids) if t in eos), len(ids))
            ids, lp = ids[:n], logprobs[row, :n]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            parsed = parse_detections(text)
            ends = token_char_ends(self.tokenizer, ids) if parsed.objects else []
            dets = []
            for obj in parsed.objects:
                start, end = obj["span"]
                toks = [i for i, e in enumerate(ends) if e > start and (i == 0 or ends[i - 1] < end)]
                score = float(lp[toks].exp().mean()) if toks else 0.0
                dets.append(Detection(self.contract.to_stored(obj["bbox_2d"], p.size), obj["label"], score))
            results.append(ImageResult(dets, text, p.size[0], p.size[1], None if parsed.ok else "unparseable output"))
        return results

    def _caption_labels(self, constrained: bool) -> dict[tuple[int, ...], str] | None:
        """The checkpoint's labels by their caption token ids (tokenised as training tokenises captions), when the
        head's captions are to be constrained to them; None when not (off, or the checkpoint lists no labels)."""
        if not constrained:
            return None
        if not self.prompt.labels:
            logger.warning("constrained captions are off: the checkpoint's prompt.json lists no labels")
            return None
        if self._caption_vocabulary is None:
            self._caption_vocabulary = {tuple(self.tokenizer.encode(label, add_special_tokens=False)): label
                                        for label in self.prompt.labels}
        return self._caption_vocabulary

    @torch.inference_mode()
    def _head_objects(self, prepared: Sequence[Prepared], objectness_threshold: float,
                      nms_iou: float | None, constrained: bool = False) -> list[list[tuple[Detection, float]]]:
        """Per image, the head's detections (score = objectness x caption likelihood) with their objectness.

        Constrained, every caption is one of the checkpoint's labels; unconstrained, a caption may come out
        empty (the head's first token its end): such a box keeps an empty label, for the caller to decide.
        """
        det = self.model.detect(self._batch(prepared, with_teachers=False))
        head = self.model.detection_head
        vocabulary = self._caption_labels(constrained)
        boxes = to_xyxy(det.boxes.float(), head.box_format).clamp(0, 1).cpu()
        objectness = det.objectness_logits.float().sigmoid().cpu()
        out = []
        for b, p in enumerate(prepared):
            keep = torch.nonzero(objectness[b] >= objectness_threshold).flatten()
            found: list[tuple[Detection, float]] = []
            if keep.numel():
                ids, logp = head.generate_captions(det.query_hidden[b, keep.to(det.query_hidden.device)],
                                                   captions=None if vocabulary is None else list(vocabulary))
                ids, logp = ids.cpu(), logp.cpu()
                for j, q in enumerate(keep.tolist()):
                    toks = [t for t in ids[j].tolist() if t not in (head.eos_token_id, head.pad_token_id)]
                    n = int((ids[j] != head.pad_token_id).sum())
                    caption_p = math.exp(float(logp[j, :n].mean())) if n else 0.0
                    obj = float(objectness[b, q])
                    label = vocabulary[tuple(toks)] if vocabulary is not None else self.tokenizer.decode(toks).strip()
                    found.append((Detection(self.contract.from_unit(boxes[b, q].tolist(), p.size), label,
                                            obj * caption_p), obj))
            if nms_iou and found:
                t_boxes = torch.tensor([d.bbox_2d for d, _ in found])
                t_scores = torch.tensor([d.score for d, _ in found])
                classes = torch.tensor([hash(d.label) % (1 << 31) for d, _ in found])
                found = [found[i] for i in nms(t_boxes, t_scores, nms_iou, classes).tolist()]
            found.sort(key=lambda f: (f[0].bbox_2d[1], f[0].bbox_2d[0]))
            out.append(found)
        return out

    def _head(self, prepared: Sequence[Prepared], objectness_threshold: float, nms_iou: float | None,
              constrained: bool) -> list[ImageResult]:
        """The head's boxes with their captions as labels; a box whose caption came out empty names nothing a
        score could count (eval needs a label), so it is left out, and said."""
        found = self._head_objects(prepared, objectness_threshold, nms_iou, constrained)
        unnamed = sum(not d.label for f in found for d, _ in f)
        if unnamed:
            logger.warning("head mode: %d box(es) whose caption came out empty were left out (constrained decoding, "
                           "the default, names every box with one of the checkpoint's labels)", unnamed)
        return [ImageResult([d for d, _ in f if d.label], None, p.size[0], p.size[1]) for f, p in zip(found, prepared)]

    def _answer_prefix(self, model_box: list[int]) -> tuple[list[int], str]:
        """Token ids (and their text) of a one-object answer up to the label, cut where the answer's own tokens break.

        The ids are those of the full answer `format_answer` writes, so the model sees the tokenisation it was
        trained on; the cut is the last token boundary before the label's first character.
        """
        probe = self.prompt.labels[0] if self.prompt.labels else "x"
        full = json.dumps([{"bbox_2d": model_box, "label": probe}], ensure_ascii=False)
        label_start = full.index('"label": ') + len('"label": ')
        ids = self.tokenizer.encode(full, add_special_tokens=False)
        ends = token_char_ends(self.tokenizer, ids)
        k = max((i + 1 for i, e in enumerate(ends) if e <= label_start), default=0)
        return ids[:k], full[: ends[k - 1]] if k else ""

    @torch.inference_mode()
    def _name(self, prepared: Sequence[Prepared], objectness_threshold: float, nms_iou: float | None,
              batch_rows: int, constrained: bool = True) -> list[ImageResult]:
        """Head boxes, each named by the VLM: its answer is begun with the box and the VLM writes the label.

        Every box is one row: the photo's prompt followed by `[{"bbox_2d": [box], "label": ` in answer coordinates,
        then decoding constrained to the checkpoint's labels. Score = objectness x the label tokens' mean
        probability (docs/localisation.md, "Box-prompted naming").
        """
        found = self._head_objects(prepared, objectness_threshold, nms_iou, constrained)
        constraint = self._constraint_for_labels()
        rows: list[tuple[int, Detection, float, list[int], str]] = []
        for b, (p, objs) in enumerate(zip(prepared, found)):
            for d, obj in objs:
                ids, text = self._answer_prefix(self.contract.to_model(d.bbox_2d, p.size))
                rows.append((b, d, obj, ids, text))
        named: list[list[Detection]] = [[] for _ in prepared]
        # Each photo's prompt is encoded once, however many of its boxes are named.
        students = {b: self._student_sample(prepared[b]) for b in {row[0] for row in rows}}
        for start in range(0, len(rows), batch_rows):
            chunk = rows[start : start + batch_rows]
            samples, frames, states = [], [], []
            for b, _, _, ids, text in chunk:
                samples.append(students[b].continued(ids))
                frame = self.contract.answer_extent(prepared[b].size)
                grammar = constraint.grammar(frame)
                state = grammar.run(text.encode("utf-8"))
                if state is None:
                    raise ValueError(f"the answer prefix {text!r} is outside the answer grammar")
                frames.append(frame)
                states.append(state)
            budget = max(constraint.grammar(f).label_budget() for f in frames)
            texts, probs = self._decode(samples, constraint.processor(frames, budget, states), budget)
            for (b, d, obj, _, prefix), text, prob in zip(chunk, texts, probs):
                parsed = parse_detections(prefix + text)
                if parsed.objects:
                    named[b].append(Detection(d.bbox_2d, parsed.objects[0]["label"], obj * prob))
        return [ImageResult(n, None, p.size[0], p.size[1]) for n, p in zip(named, prepared)]

    def _decode(self, samples: list[EncodedSample], constraint: LogitsProcessor, max_new_tokens: int) -> tuple[list[str], list[float]]:
        """Greedy constrained continuations of prompts that end inside an answer: text and the mean probability of
        the tokens up to the label's closing quote."""
        batch = self.collator(samples).to(self.device)
        new, logprobs = self._greedy(batch, constraint, max_new_tokens)
        texts, probs = [], []
        for row in range(new.shape[0]):
            ids = new[row].tolist()
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            ends = token_char_ends(self.tokenizer, ids)
            # The label ends at its closing quote: the first '"' after the opening one.
            close = text.find('"', text.find('"') + 1)
            n = next((i + 1 for i, e in enumerate(ends) if e > close), len(ids)) if close >= 0 else len(ids)
            texts.append(text)
            probs.append(float(logprobs[row, :n].exp().mean()) if n else 0.0)
        return texts, probs

    def check_mode(self, mode: str) -> None:
        """Raise ValueError, before any photo, when this checkpoint cannot predict in `mode` (predict and serve ask this)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
        if mode in ("head", "name") and self.model.detection_head is None:
            raise ValueError(f"mode '{mode}' needs a checkpoint with a detection head; this one has none "
                             "(detection.enabled was false): use mode 'generate'")
        if mode == "name" and not self.prompt.labels:
            raise ValueError("mode 'name' needs the checkpoint's label vocabulary (prompt.json lists no labels)")
        if mode == "teachers" and not self.teachers:
            raise ValueError("mode 'teachers' needs teacher photos: call set_teachers(TEACHERS.jsonl) / pass --teachers")

    def predict(self, images: Sequence[str | Path | Image.Image], mode: str = "generate", **kw: Any) -> list[ImageResult]:
        """Full results (objects, raw text, sizes) for a batch of images (a bad image raises)."""
        return self._run([self.prepare(im) for im in images], mode, **kw)

    def predict_prepared(self, prepared: Sequence[Prepared], mode: str = "generate", **kw: Any) -> list[ImageResult]:
        """`predict` for photos already through `prepare` (and perhaps `encode`)."""
        return self._run(list(prepared), mode, **kw)

    def predict_lines(self, paths: Sequence[str], mode: str = "generate", **kw: Any) -> list[dict[str, Any]]:
        """One predictions.jsonl line per path; a corrupt image or a failing sample gets an `error`, never an exception.

        A mode this checkpoint cannot run raises ValueError (`check_mode`): that is no photo's fault.
        """
        self.check_mode(mode)
        results: list[ImageResult | None] = [None] * len(paths)
        prepared: dict[int, Prepared] = {}
        for i, p in enumerate(paths):
            try:
                prepared[i] = self.prepare(p)
            except (OSError, ValueError) as e:
                results[i] = ImageResult(error=str(e))
        idx = list(prepared)
        try:
            for i, r in zip(idx, self._run([prepared[i] for i in idx], mode, **kw) if idx else []):
                results[i] = r
        except (RuntimeError, ValueError):  # retry one by one so one bad sample cannot take its batch down
            for i in idx:
                try:
                    results[i] = self._run([prepared[i]], mode, **kw)[0]
                except (RuntimeError, ValueError) as e:
                    results[i] = ImageResult(width=prepared[i].size[0], height=prepared[i].size[1], error=f"{type(e).__name__}: {e}")
        return [{"image": str(p), "width": r.width, "height": r.height, "objects": [d.to_dict() for d in r.objects],
                 "raw": r.raw, "error": r.error} for p, r in zip(paths, results)]

    def _run(self, prepared: list[Prepared], mode: str, **kw: Any) -> list[ImageResult]:
        self.check_mode(mode)
        inf = self.cfg.inference
        constrained = kw.get("constrained", inf.constrained)
        if mode == "head":
            results = self._head(prepared, kw.get("objectness_threshold", inf.objectness_threshold), kw.get("nms_iou", inf.nms_iou),
                                 constrained)
        elif mode == "name":
            results = self._name(prepared, kw.get("objectness_threshold", inf.objectness_threshold), kw.get("nms_iou", inf.nms_iou),
                                 kw.get("batch_rows", inf.batch_size * 4), constrained)
        else:
            results = self._generate(prepared, mode == "teachers", kw.get("max_new_tokens", inf.max_new_tokens), constrained)
        threshold = kw.get("score_threshold", inf.score_threshold)
        for r in results:
            r.objects = [d for d in r.objects if d.score >= threshold]
        return results

    def predict_detection(self, images: Sequence[str | Path | Image.Image], mode: str = "generate", **kw: Any) -> list[list[Detection]]:
        """`[[Detection(bbox_2d, label, score), ...] per image]` in each stored image's pixels."""
        return [r.objects for r in self.predict(images, mode, **kw)]
