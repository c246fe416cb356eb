"""Rollouts: G sampled answers per photo, decoded exactly as `bbuvl predict` decodes, then scored.

Each photo goes through the `Predictor` the checkpoint would predict with: its prompt, its coordinate contract
(`prepare`), its collation (`batch`) and the answer grammar over its labels (`answer_constraint`), so every
rollout parses and names vocabulary labels, and its boxes come back to the stored photo by `read_answers`, the
generate mode's own reader. Only the choice of token differs: sampled at `grpo.temperature` instead of greedy.

A photo's samples depend only on (seed, step, photo index): the sampler is reseeded for each photo inside a
forked RNG, so the same photo gets the same rollouts whatever else is in its batch, on whichever rank, and a
resumed run draws what the uninterrupted one drew (docs/grpo.md, "Exact resume").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from bbuvl.config import GrpoConfig
from bbuvl.data.families import TURN_END
from bbuvl.encode.chat import EncodedSample
from bbuvl.encode.collate import Batch
from bbuvl.infer.modes.generate import answer_ids, read_answers
from bbuvl.infer.predictor import Predictor
from bbuvl.model.lm_loss import supervised_positions
from bbuvl.model.vlm import BBUVLModel, core_model
from bbuvl.rl.answer_parts import part_advantages, token_advantages, token_bytes, token_parts
from bbuvl.rl.objective import group_advantages
from bbuvl.rl.rewards import LabelledBox, RewardScorer
from bbuvl.train.dataset import SampleSource, read_training_data, sources_from


@dataclass(frozen=True)
class Photo:
    """One training photo: its index in the dataset (what seeds its rollouts), its file and its truth."""

    index: int
    path: str
    truth: tuple[LabelledBox, ...]


def read_photos(path: str) -> list[Photo]:
    """The photos of a JSONL with their truth (teachers, if any, play no part in GRPO)."""
    return photos_of(sources_from(read_training_data(path), path))


def photos_of(sources: list[SampleSource]) -> list[Photo]:
    """Each source's student photo with its truth."""
    return [Photo(i, s.student.image_path, tuple(LabelledBox(tuple(o.bbox_2d), o.desc) for o in s.student.record.objects))
            for i, s in enumerate(sources)]


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


def rollout_seed(seed: int, step: int, index: int) -> int:
    """The sampler's seed for one photo at one optimizer step (63 bits, different for every pair)."""
    return (seed * 1_000_003 + step * 7_919 + index) % (2**63 - 1)


def draw_rollouts(predictor: Predictor, photos: Sequence[Photo], cfg: GrpoConfig, scorer: RewardScorer,
                  seed: int, step: int) -> Rollouts:
    """`cfg.group_size` sampled answers to each photo, scored; the model is used as it is (call in eval mode)."""
    G = cfg.group_size
    end = predictor.tokenizer.convert_tokens_to_ids(TURN_END)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    samples, rewards, lengths, parts = [], [], [], []
    terms: dict[str, list[float]] = {}
    for photo in photos:
        prepared = predictor.encode(predictor.prepare(photo.path))
        group = [prepared] * G
        batch = predictor.batch(group, with_teachers=False)
        constraint = predictor.answer_constraint(group, cfg.constrained, cfg.max_new_tokens)
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(rollout_seed(seed, step, photo.index))
            new = predictor.sample(batch, constraint, cfg.max_new_tokens, cfg.temperature, cfg.top_p)
        del batch
        results = read_answers(predictor, group, new, torch.zeros(new.shape))
        for row, result in enumerate(results):
            ids = answer_ids(predictor, new[row])
            if len(ids) < new.shape[1] and int(new[row, len(ids)]) == end:
                ids = ids + [end]  # the model learns where to stop as much as what to write
            samples.append(prepared.sample.continued(ids, supervised=True))
            if cfg.advantages == "parts":
                parts.append(token_parts(token_bytes(predictor.tokenizer, ids)))
            lengths.append(len(ids))
            answer = [LabelledBox(tuple(d.bbox_2d), d.label) for d in result.objects]
            scored = scorer.score(list(photo.truth), answer, result.error is None)
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
    return Rollouts(samples, reward, by_term, advantages, torch.tensor(lengths))


def completion_logprobs(model: BBUVLModel, batch: Batch, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each row's supervised (answer) tokens: `(logp [R, T], mask [R, T])`, rows right-padded.

    batch: R right-padded rows (one conversation each); logits are divided by `temperature`, the distribution
    the rollouts were sampled from (before the grammar's mask).
    """
    _, hidden = model.vlm_pass(batch, input_embeds=False)  # the shared system prompt read once (model/vlm.py)
    pos = supervised_positions(batch.labels)  # [R, L], positions whose next token is an answer token
    targets = batch.labels[:, 1:][pos[:, :-1]]  # [N]
    logits = core_model(model.vlm).lm_head(hidden[pos]).float() / temperature  # [N, V]
    lp = logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)  # [N]
    counts = pos.sum(dim=1)  # [R]
    mask = torch.arange(int(counts.max()), device=lp.device)[None, :] < counts[:, None]  # [R, T]
    logp = lp.new_zeros(mask.shape)
    logp[mask] = lp  # row-major order: each row's answer tokens in order
    return logp, mask
