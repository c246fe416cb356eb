"""Rollouts: G sampled answers per photo, decoded exactly as `bbuvl predict` decodes, then scored.

Each photo goes through the `Predictor` the checkpoint would predict with: its prompt, its coordinate contract
(`prepare`), its collation (`batch`) and the answer grammar over its labels (`answer_constraint`), so every
rollout parses and names vocabulary labels, and its boxes come back to the stored photo by `read_answers`, the
generate mode's own reader (which keeps an exact repeat here: `read_rollouts`). Only the choice of token differs:
sampled at `grpo.temperature` instead of greedy.

A photo's samples depend only on (seed, step, photo index), hashed (`rollout_seed`): the sampler is reseeded for
each photo inside a forked RNG, so the same photo gets the same rollouts whatever else is in its batch, on whichever
rank, and a resumed run draws what the uninterrupted one drew (docs/grpo.md, "Exact resume").
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from transformers.generation.logits_process import SuppressTokensLogitsProcessor

from bbuvl.config import CropConfig, GrpoConfig
from bbuvl.data.families import TURN_END, VISION_SPECIAL_TOKENS
from bbuvl.data.images import ImageError
from bbuvl.data.schema import ImageRecord
from bbuvl.encode.chat import EncodedSample
from bbuvl.encode.collate import Batch
from bbuvl.infer.constrained import START, AnswerGrammar, AnswerLogitsProcessor, token_bytes
from bbuvl.infer.modes.generate import answer_ids, read_answers
from bbuvl.infer.predictor import ImageResult, Predictor, Prepared
from bbuvl.model.lm_loss import supervised_positions
from bbuvl.model.vlm import BBUVLModel, core_model
from bbuvl.rl.answer_parts import part_advantages, token_advantages, token_parts
from bbuvl.rl.objective import group_advantages
from bbuvl.rl.rewards import MAX_REWARD, LabelledBox, RewardScorer
from bbuvl.train.dataset import (UNREADABLE_IN_A_ROW, SampleSource, SourcedRecord, drawn_crop, drawn_mirror, locate,
                                 read_training_data, shown_photo, sources_from)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    """One training photo: its index in the dataset (what seeds its rollouts), its file and its truth."""

    index: int
    path: str
    truth: tuple[LabelledBox, ...]
    source: SourcedRecord | None = None  # the record the truth is read from: what a crop or a mirror moves with the photo


def read_photos(path: str) -> list[Photo]:
    """The photos of a JSONL with their truth (teachers, if any, play no part in GRPO)."""
    return photos_of(sources_from(read_training_data(path), path))


def photos_of(sources: list[SampleSource]) -> list[Photo]:
    """Each source's student photo with its truth."""
    return [Photo(i, s.student.image_path, truth_of(s.student.record), s.student) for i, s in enumerate(sources)]


def truth_of(record: ImageRecord) -> tuple[LabelledBox, ...]:
    """The record's objects as the rewards compare them."""
    return tuple(LabelledBox(tuple(o.bbox_2d), o.desc) for o in record.objects)


@dataclass(frozen=True)
class Augmentation:
    """How the rollouts see their training photos: `data.crop` and `data.mirror`, as SFT shows its students."""

    crop: CropConfig | None = None
    mirror: float = 0.0


def shown(predictor: Predictor, photo: Photo, augmentation: Augmentation, seed: int, step: int
          ) -> tuple[Prepared, tuple[LabelledBox, ...]]:
    """`photo` prepared as this step's rollouts see it, and its truth moved with it: through a window of it magnified
    to its frame and mirrored, each drawn by (seed, step, photo index) as the samples are, so a resume draws alike."""
    def rng(draw: str) -> random.Random:
        return random.Random(f"{seed}-{step}-{photo.index}-{draw}")

    src = photo.source
    region = drawn_crop(augmentation.crop, src.record.size, rng("crop")) if src is not None else None
    mirror = src is not None and drawn_mirror(augmentation.mirror, rng("mirror"))
    if src is None or (region is None and not mirror):
        return prepared_photo(predictor, photo), photo.truth
    # The answer is read back to the pixels of the record's size (`read_answers`), where the moved truth is, so the
    # rewards compare like with like; the view is already that size's frame, so prepare leaves its pixels as they are.
    image, record = shown_photo(src, predictor.contract, region, mirror)
    return predictor.prepare(image, size=record.size), truth_of(record)


def prepared_photo(predictor: Predictor, photo: Photo, keep_stored: bool = False) -> Prepared:
    """`photo` through `predictor.prepare`; ImageError when its file is no longer the size its record says (replaced
    since the start read its header), as SFT's samples refuse it (encode/chat.py `image_for_model`)."""
    # The answer is read back to the file's pixels and scored against the record's truth: a photo replaced by one twice
    # its size earned every rollout 0, and the validation pass scored it so, without a word.
    prepared = predictor.prepare(photo.path, keep_stored=keep_stored)
    if photo.source is not None and tuple(prepared.size) != tuple(photo.source.record.size):
        (w, h), (rw, rh) = prepared.size, photo.source.record.size
        raise ImageError(f"{photo.path}: image is {w}x{h} but its record says {rw}x{rh}")
    return prepared


def where(photo: Photo) -> str:
    """`file:line` of `photo`'s record, for messages (its path when it has no record)."""
    return locate([photo.source])[0] if photo.source is not None else photo.path


def readable(predictor: Predictor, photo: Photo, photos: Sequence[Photo], augmentation: Augmentation, seed: int,
             step: int, unreadable: list[str]) -> tuple[Photo, Prepared, tuple[LabelledBox, ...]]:
    """`photo` as `shown` shows it, or when it cannot be read now (cut short, deleted, replaced since the start read its
    header) the next photo of `photos` (the dataset `photo.index` indexes) in its place, each one passed over named in
    `unreadable` and in a warning, as SFT trains the next sample (docs/design.md, "Photos that cannot be read")."""
    mine = photo.index < len(photos) and photos[photo.index].index == photo.index
    tried: list[str] = []
    for k in range(min(len(photos), UNREADABLE_IN_A_ROW) if mine else 1):
        candidate = photos[(photo.index + k) % len(photos)] if mine else photo
        try:
            view, truth = shown(predictor, candidate, augmentation, seed, step)
        except ImageError as e:
            tried.append(f"{where(candidate)}: {e}")
            if mine:
                log.warning("%s: this photo cannot be read (%s): the next photo is answered in its place; fix or remove "
                            "it", where(candidate), e)
            continue
        unreadable.extend(tried)
        return candidate, view, truth
    if not mine:
        raise ImageError(tried[0])
    if len(tried) == UNREADABLE_IN_A_ROW:
        raise ImageError(f"{UNREADABLE_IN_A_ROW} photos in a row cannot be read, the first {tried[0]}: is the photos' "
                         "folder still there?")
    raise ImageError(f"no photo can be read, the first {tried[0]}")


@dataclass
class PhotoBatch:
    """A micro-batch of photos as the data loader hands it over (rollouts are drawn from it in the trainer)."""

    photos: list[Photo]

    def __len__(self) -> int:
        """Photos in the batch."""
        return len(self.photos)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PhotoBatch":
        """Itself: paths and boxes stay on the host (accelerate's loaders call this)."""
        return self


@dataclass
class Rollouts:
    """R = P x G scored answers for P photos: the conversations to train on and what the logs are made of."""

    samples: list[EncodedSample]  # R prompts, each followed by its answer's tokens as supervised student text
    rewards: torch.Tensor  # [P, G] weighted total
    terms: dict[str, torch.Tensor]  # each reward term, [P, G]
    advantages: torch.Tensor  # [R] (one an answer) or [R, T] (one a token), group-relative (rl/objective.py), photo-major
    lengths: torch.Tensor  # [R] answer tokens, the closing <|im_end|> included when written
    cut: torch.Tensor  # [R] bool: grpo.max_new_tokens ended the answer (`budget_ended`; free: it never ended)
    objects: torch.Tensor  # [R] objects each answer wrote, as the rewards count them (exact repeats included)
    # [R] the tokens the grammar allowed at each step of each answer (`grpo.logprobs: grammar`), None for an answer
    # whose tokens are scored over the whole vocabulary; None altogether with `grpo.logprobs: vocabulary`
    allowed: list[list[np.ndarray] | None] | None = None
    # "file:line: why" of each photo that could not be read when drawn, the next photo answered in its place
    unreadable: list[str] = field(default_factory=list)


def rollout_seed(seed: int, step: int, index: int) -> int:
    """The sampler's seed for one photo at one optimizer step of the run seeded `seed`: 63 bits of a hash of the three.

    A sum of them weighted (`seed * 1_000_003 + step * 7_919 + index`, before) gave photo i + 7,919 at step s the
    seed of photo i at step s + 1, and runs of neighbouring seeds shared streams; hashed, two triples meet by chance
    alone (about one pair in 2**63)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def free_banned_ids(tokenizer: object) -> list[int]:
    """The ids no free rollout may write (`grpo.constrained: false`): the vision tokens. An answer holding an image pad
    is read back as an image block with no image when the rollout is scored, and the run stopped there."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    ids = {tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS.values()}  # type: ignore[attr-defined]
    return sorted(i for i in ids if isinstance(i, int) and i != unknown)


def budget_ended(constraint: AnswerLogitsProcessor, row: int) -> bool:
    """Whether the token budget ended the answer `row` sampled under `constraint`: its budget rule refused the token the
    model preferred (generate mode's "cut"), or left no room for one object from the start (every answer then `[]`)."""
    # The preferred token alone missed the second: a model that prefers `[]` anyway wrote it under a budget of 4 tokens
    # as under 48, but a sampled rollout could have begun an object only under the second.
    start = constraint.grammars[row].entry(START)
    return bool(constraint.cut[row]) or len(start.allowed(constraint.max_new_tokens)) < len(start.ids)


def grammar_steps(grammar: AnswerGrammar, ids: Sequence[int], max_new_tokens: int) -> list[np.ndarray] | None:
    """The token ids the answer grammar allowed at each step of an answer sampled under it, the budget's closing
    rule included (as `AnswerLogitsProcessor` masks them); None when one of `ids` is outside the grammar."""
    state, steps = START, []
    for t, token in enumerate(ids):
        entry = grammar.entry(state)
        steps.append(entry.allowed(max_new_tokens - t))
        state = entry.next_state.get(token)
        if state is None:
            return None
    return steps


def draw_rollouts(predictor: Predictor, photos: Sequence[Photo], cfg: GrpoConfig, scorer: RewardScorer,
                  seed: int, step: int, augmentation: Augmentation = Augmentation(),
                  dataset: Sequence[Photo] = ()) -> Rollouts:
    """`cfg.group_size` sampled answers to each photo, seen as `augmentation` draws it, scored; the model is used as it
    is (call in eval mode). A photo that cannot be read now is replaced by the next one of `dataset` it belongs to
    (`readable`); ImageError when it belongs to none."""
    G = cfg.group_size
    end = predictor.tokenizer.convert_tokens_to_ids(TURN_END)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    samples, rewards, lengths, parts, cut, objects = [], [], [], [], [], []
    allowed: list[list[np.ndarray] | None] = []
    terms: dict[str, list[float]] = {}
    unreadable: list[str] = []
    for asked in photos:
        photo, view, truth = readable(predictor, asked, dataset, augmentation, seed, step, unreadable)
        prepared = predictor.encode(view)
        group = [prepared] * G
        batch = predictor.batch(group, with_teachers=False)
        constraint = predictor.answer_constraint(group, cfg.constrained, cfg.max_new_tokens)
        # Free decoding: everything but the vision tokens (the grammar allows none of them).
        sampler = constraint or SuppressTokensLogitsProcessor(free_banned_ids(predictor.tokenizer), str(predictor.device))
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(rollout_seed(seed, step, photo.index))
            new = predictor.sample(batch, sampler, cfg.max_new_tokens, cfg.temperature, cfg.top_p)
        del batch
        results = read_rollouts(predictor, group, new)
        for row, result in enumerate(results):
            ids = answer_ids(predictor, new[row])
            cut.append(budget_ended(constraint, row) if constraint is not None else len(ids) >= cfg.max_new_tokens)
            objects.append(len(result.objects))
            if len(ids) < new.shape[1] and int(new[row, len(ids)]) == end:
                ids = ids + [end]  # the model learns where to stop as much as what to write
            samples.append(prepared.sample.continued(ids, supervised=True))
            if cfg.advantages == "parts":
                parts.append(token_parts(token_bytes(predictor.tokenizer, ids)))
            if cfg.logprobs == "grammar" and constraint is not None:  # replayed on the grammar that masked this row
                allowed.append(grammar_steps(constraint.grammars[row], ids, constraint.max_new_tokens))
            lengths.append(len(ids))
            answer = [LabelledBox(tuple(d.bbox_2d), d.label) for d in result.objects]
            scored = scorer.score(list(truth), answer, result.error is None)
            rewards.append(scored.pop("reward"))
            for k, v in scored.items():
                terms.setdefault(k, []).append(v)
    P = len(photos)
    reward = torch.tensor(rewards, dtype=torch.float32).view(P, G)
    by_term = {k: torch.tensor(v, dtype=torch.float32).view(P, G) for k, v in terms.items()}
    if cfg.advantages == "parts":
        weights = {k: getattr(cfg.rewards, k) for k in by_term}
        advantages = token_advantages(parts, part_advantages(by_term, weights, cfg.scale_rewards).view(3, P * G))
    else:
        advantages = group_advantages(reward, cfg.scale_rewards).flatten()
    if not (bool(torch.isfinite(reward).all()) and bool(torch.isfinite(advantages).all())):
        # Finite as Python floats, a reward of 1e39 (or a weight of 1e308) is inf in float32, and a group's spread
        # overflows from about 1e19: every step was skipped as non-finite, and the run ended "done", its weights as
        # they started.
        largest = max(abs(r) for r in rewards)
        raise ValueError(f"the rollouts' rewards (up to {largest:.3g} in size, weighted by grpo.rewards "
                         f"{', '.join(f'{k} {getattr(cfg.rewards, k):g}' for k in by_term)}) are not finite in the "
                         f"float32 the objective computes in: keep each weighted reward within ±{MAX_REWARD:g} (the "
                         "shipped weights are at most 1)")
    return Rollouts(samples, reward, by_term, advantages, torch.tensor(lengths), torch.tensor(cut, dtype=torch.bool),
                    torch.tensor(objects), allowed if allowed else None, unreadable)


def read_rollouts(predictor: Predictor, prepared: Sequence[Prepared], new: torch.Tensor) -> list[ImageResult]:
    """Sampled rows `[G, T]` read as the rewards score them: by generate mode's reader (`read_answers`), with each
    object written again exactly kept as the extra object it is (docs/grpo.md, "Rewards")."""
    # Prediction drops an exact repeat (infer/parse.py); scored without it, a rollout that wrote its object twice earned
    # what writing it once earns, and a loop of repeats was never taught against.
    return read_answers(predictor, prepared, new, torch.zeros(new.shape), keep_repeats=True)


def completion_logprobs(model: BBUVLModel, batch: Batch, temperature: float = 1.0,
                        allowed: Sequence[list[np.ndarray] | None] | None = None,
                        banned: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each row's supervised (answer) tokens: `(logp [R, T], mask [R, T])`, rows right-padded.

    batch: R right-padded rows (one conversation each); logits are divided by `temperature`, the distribution
    the rollouts were sampled from. allowed: per row, the ids the grammar allowed at each of its tokens
    (`grammar_steps`): each token's probability is then taken among those, the distribution it was sampled from;
    without it (or for a row given None), over the whole vocabulary but `banned`, the ids free rollouts were
    sampled without (`free_banned_ids`).
    """
    _, hidden = model.vlm_pass(batch, input_embeds=False)  # the shared system prompt read once (model/vlm.py)
    pos = supervised_positions(batch.labels)  # [R, L], positions whose next token is an answer token
    targets = batch.labels[:, 1:][pos[:, :-1]]  # [N]
    logits = core_model(model.vlm).lm_head(hidden[pos]).float() / temperature  # [N, V]
    if banned:
        logits[:, list(banned)] = -math.inf  # never sampled: no token is chosen among them
    chosen = logits.gather(-1, targets[:, None]).squeeze(-1)  # [N]
    lp = chosen - logits.logsumexp(-1)  # [N], over the vocabulary
    if allowed is not None:
        index, valid, among = _allowed_index(allowed, pos.sum(dim=1).tolist(), logits.shape[1])
        index, valid, among = index.to(logits.device), valid.to(logits.device), among.to(logits.device)
        within = logits.gather(-1, index).masked_fill(~valid, -math.inf).logsumexp(-1)  # [N]
        lp = torch.where(among, chosen - within, lp)
    counts = pos.sum(dim=1)  # [R]
    mask = torch.arange(int(counts.max()), device=lp.device)[None, :] < counts[:, None]  # [R, T]
    logp = lp.new_zeros(mask.shape)
    logp[mask] = lp  # row-major order: each row's answer tokens in order
    return logp, mask


def _allowed_index(allowed: Sequence[list[np.ndarray] | None], counts: Sequence[int],
                   vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(index [N, K], valid [N, K], among [N])` for the N answer tokens of the rows, row-major: each token's allowed
    ids padded to the longest set, and whether the token is scored among them (its row has them)."""
    rows: list[np.ndarray | None] = []
    for steps, n in zip(allowed, counts):
        if steps is not None and len(steps) != n:
            raise ValueError(f"an answer of {n} tokens came with the grammar's steps of {len(steps)}")
        rows.extend(steps if steps is not None else [None] * n)
    K = max((len(a) for a in rows if a is not None), default=1)
    index = torch.zeros(len(rows), K, dtype=torch.long)
    valid = torch.zeros(len(rows), K, dtype=torch.bool)
    for i, a in enumerate(rows):
        if a is not None:
            a = a[a < vocab]
            index[i, :len(a)] = torch.from_numpy(a.astype(np.int64))
            valid[i, :len(a)] = True
    return index, valid, torch.tensor([a is not None for a in rows], dtype=torch.bool)
