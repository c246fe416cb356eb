"""Detection losses after Hungarian matching, one method per loss (DETR's SetCriterion).

Every loss is summed over objects (or queries) and divided by the number of target boxes in the
batch, so an image with many objects weighs more than an empty one, and the value logged is the
value optimised: `loss_detection` is exactly the weighted sum of the returned components.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bbuvl.config import DetectionConfig, LossConfig
from bbuvl.encode.chat import IGNORE_INDEX
from bbuvl.model.box_ops import BoxFormat, box_iou, generalized_box_iou, to_xyxy
from bbuvl.model.detection_head import DetectionHead, DetectionOutput
from bbuvl.model.matcher import HungarianMatcher

Indices = list[tuple[Tensor, Tensor]]

# A query that covers nothing: its box lies on no object (IoU < NOTHING_IOU with every one) and its objectness is sure
# enough for its box to compete with real parts. Every query prediction reports (objectness 0.05) gave about 17 a
# training photo, mostly on plain panel; the surer ones (0.2) about 5, on the outlets, switches and logos that read
# as parts (docs/faults_learning.md, "Captions that can say nothing").
NOTHING_IOU = 0.1
NOTHING_OBJECTNESS = 0.2


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss (Lin et al. 2017) for binary targets: same shape in, same shape out.

    `alpha` weighs positives (1 - alpha negatives); a negative `alpha` disables the weighting.
    """
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def quality_focal_loss(logits: Tensor, quality: Tensor, beta: float = 2.0) -> Tensor:
    """Element-wise quality focal loss (GFL, Li et al. 2020): BCE against a soft target in [0, 1], scaled by
    |sigmoid(logits) - quality|^beta so that well-scored candidates stop dominating. Same shape in and out."""
    ce = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
    return ce * (logits.sigmoid() - quality).abs().pow(beta)


def caption_list(caption_ids: Tensor | list[Tensor]) -> list[Tensor]:
    """`[N, T]` ids padded with -100, or N 1-D tensors -> N 1-D tensors without padding."""
    return [row[row != IGNORE_INDEX] for row in caption_ids]


class DetectionCriterion(nn.Module):
    """L1 + GIoU on matched boxes, focal objectness on all queries, caption cross-entropy on matched ones."""

    def __init__(
        self,
        matcher: HungarianMatcher,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        objectness_weight: float = 1.0,
        caption_weight: float = 1.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        objectness_target: str = "binary",
        assignment: str = "one_to_one",
        caption_nothing_weight: float = 0.0,
    ):
        super().__init__()
        self.matcher = matcher
        self.box_format = matcher.box_format
        self.weights = {
            "loss_bbox": bbox_weight, "loss_giou": giou_weight,
            "loss_objectness": objectness_weight, "loss_caption": caption_weight,
        }
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.objectness_target = objectness_target
        self.assignment = assignment
        self.caption_nothing_weight = caption_nothing_weight

    @classmethod
    def from_config(cls, loss: LossConfig, detection: DetectionConfig) -> "DetectionCriterion":
        """The criterion (and its matcher) a run's config describes."""
        return cls(
            HungarianMatcher.from_config(loss, detection),
            loss.bbox_weight, loss.giou_weight, loss.objectness_weight, loss.caption_weight,
            loss.focal_alpha, loss.focal_gamma, loss.objectness_target, loss.assignment, loss.caption_nothing_weight,
        )

    @staticmethod
    def _matched_queries(indices: Indices) -> tuple[Tensor, Tensor]:
        """Batch and query index of every matched query, image by image: two `[K]` tensors."""
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        query_idx = torch.cat([src for src, _ in indices])
        return batch_idx, query_idx

    @staticmethod
    def object_weight(targets: list[dict], indices: Indices) -> Tensor | None:
        """`[K]` the optional per-object "weights" of the matched targets, in `_matched_queries` order (None: all 1)."""
        if not any("weights" in t for t in targets):
            return None
        # The one-to-one matcher's indices are on the CPU, the proposals' assignment's on the head's device: each
        # is moved to where the weights are (the targets' device, as BBUVLModel builds them).
        device = next(t["weights"].device for t in targets if "weights" in t)
        return torch.cat([t["weights"][j.to(device)] if "weights" in t else torch.ones(len(j), device=device)
                          for t, (_, j) in zip(targets, indices)])

    @staticmethod
    def num_targets(targets: list[dict], device: torch.device) -> Tensor:
        """This batch's target boxes, at least 1: the count of a pass given none (evaluation, the diagnostics), whose
        terms are the batch's own means. Training's step counts come summed over the ranks (model/loss_scale.py);
        averaged over them here too, as DETR does, an evaluation under torchrun divided each rank's batch by the
        ranks' mean count and logged other numbers than one process (docs/training_loss_scale.md)."""
        return torch.tensor(float(sum(len(t["boxes"]) for t in targets)), device=device).clamp(min=1)

    def loss_boxes(self, outputs: DetectionOutput, targets: list[dict], indices: Indices, num_targets: Tensor,
                   weight: Tensor | None = None) -> dict[str, Tensor]:
        """L1 (in the head's box format) and 1 - GIoU of matched boxes, summed / num_targets.

        `weight` `[K]` (optional, `_matched_queries` order) scales each pair: 1 / its object's positives when an
        object has several, so every object weighs the same.
        """
        batch_idx, query_idx = self._matched_queries(indices)
        pred = outputs.boxes[batch_idx, query_idx].float()  # [K, 4]
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(pred)
        w = torch.ones(len(pred), device=pred.device) if weight is None else weight.to(pred)
        loss_bbox = (F.l1_loss(pred, tgt, reduction="none").sum(-1) * w).sum()
        giou = torch.diag(generalized_box_iou(to_xyxy(pred, self.box_format), to_xyxy(tgt, self.box_format)))
        return {"loss_bbox": loss_bbox / num_targets, "loss_giou": ((1 - giou) * w).sum() / num_targets}

    def loss_objectness(
        self, outputs: DetectionOutput, indices: Indices, num_targets: Tensor, valid: Tensor | None = None,
        quality: Tensor | None = None, positive_weight: Tensor | None = None,
    ) -> Tensor:
        """Focal loss over every query (others = 0), summed / num_targets.

        Matched queries' target is 1, or with `objectness_target: iou` their `quality` `[K]` (the IoU of their
        box with their object, in `_matched_queries` order) under the quality focal loss.
        `valid` `[B, Q]` (optional): only these queries count (padding of a ragged batch).
        `positive_weight` `[K]` (optional, `_matched_queries` order) scales the matched queries' terms.
        """
        logits = outputs.objectness_logits.float()
        labels = torch.zeros_like(logits)
        if self.objectness_target == "iou" and quality is not None:
            labels[self._matched_queries(indices)] = quality.detach().float().clamp(0, 1)
            focal = quality_focal_loss(logits, labels, self.focal_gamma)
        else:
            labels[self._matched_queries(indices)] = 1.0
            focal = sigmoid_focal_loss(logits, labels, self.focal_alpha, self.focal_gamma)
        if positive_weight is not None:
            scale = torch.ones_like(focal)
            scale[self._matched_queries(indices)] = positive_weight.to(scale)
            focal = focal * scale
        return (focal if valid is None else focal[valid]).sum() / num_targets

    def matched_iou(self, boxes: Tensor, targets: list[dict], indices: Indices) -> Tensor:
        """`[K]` IoU of each matched prediction (`boxes` `[B, Q, 4]`) with its target, in `_matched_queries` order."""
        batch_idx, query_idx = self._matched_queries(indices)
        pred = to_xyxy(boxes[batch_idx, query_idx].detach().float(), self.box_format)
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(pred)
        return torch.diag(box_iou(pred, to_xyxy(tgt, self.box_format))) if len(pred) else pred.new_zeros(0)

    def caption_targets(self, targets: list[dict], indices: Indices, head: DetectionHead) -> Tensor:
        """`[K, T]`: each matched target's caption followed by eos, padded with -100 (K may be 0)."""
        rows = []
        for b, (t, (_, tgt_idx)) in enumerate(zip(targets, indices)):
            captions = caption_list(t["caption_ids"])
            if len(captions) != len(t["boxes"]):
                raise ValueError(f"image {b} of the batch: {len(t['boxes'])} boxes but {len(captions)} captions")
            for j in tgt_idx.tolist():
                row = torch.cat([captions[j].long().cpu(), torch.tensor([head.eos_token_id])])
                if len(row) > head.caption_max_tokens:
                    raise ValueError(
                        f"image {b} of the batch, object {j}: caption of {len(row) - 1} tokens + eos exceeds "
                        f"detection.caption_max_tokens ({head.caption_max_tokens}); raise it or shorten the label"
                    )
                rows.append(row)
        if not rows:
            return torch.full((0, 1), IGNORE_INDEX, dtype=torch.long)
        return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=IGNORE_INDEX)

    def loss_caption(
        self, outputs: DetectionOutput, targets: list[dict], indices: Indices, num_targets: Tensor, head: DetectionHead,
        weight: Tensor | None = None,
    ) -> Tensor:
        """Cross-entropy of each matched query's caption (mean over its tokens), summed / num_targets (`weight` as in
        `loss_boxes`)."""
        batch_idx, query_idx = self._matched_queries(indices)
        query = outputs.query_hidden[batch_idx, query_idx]  # [K, D]
        labels = self.caption_targets(targets, indices, head).to(query.device)  # [K, T]
        logits = head.caption_logits(query, labels)  # [K, T, V]; K may be 0, which keeps the graph whole
        ce = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
        per_target = ce.view(labels.shape).sum(1) / (labels != IGNORE_INDEX).sum(1).clamp(min=1)
        if weight is not None:
            per_target = per_target * weight.to(per_target)
        return per_target.sum() / num_targets

    def loss_caption_nothing(self, outputs: DetectionOutput, targets: list[dict], indices: Indices,
                             num_targets: Tensor, head: DetectionHead) -> Tensor:
        """Cross-entropy of the empty caption (eos alone) on each unmatched query whose box covers no object
        (IoU < `NOTHING_IOU`) and whose objectness reaches `NOTHING_OBJECTNESS`, summed / num_targets."""
        unmatched = torch.ones(outputs.boxes.shape[:2], dtype=torch.bool, device=outputs.boxes.device)  # [B, Q]
        batch_idx, query_idx = self._matched_queries(indices)
        unmatched[batch_idx.to(unmatched.device), query_idx.to(unmatched.device)] = False
        sure = outputs.objectness_logits.detach().float().sigmoid() >= NOTHING_OBJECTNESS
        covers = torch.zeros_like(unmatched)
        boxes = to_xyxy(outputs.boxes.detach().float(), self.box_format)
        for b, t in enumerate(targets):
            if len(t["boxes"]):
                covers[b] = box_iou(boxes[b], to_xyxy(t["boxes"].to(boxes), self.box_format)).max(-1).values >= NOTHING_IOU
        pick = unmatched & sure & ~covers  # [B, Q]
        query = outputs.query_hidden[pick]  # [M, D]; M may be 0, which keeps the graph whole
        labels = torch.full((query.shape[0], 1), head.eos_token_id, dtype=torch.long, device=query.device)
        logits = head.caption_logits(query, labels)  # [M, 1, V]
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum") / num_targets

    def forward(
        self, outputs: DetectionOutput, targets: list[dict], head: DetectionHead, num_targets: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Match, then every loss: {"loss_bbox", "loss_giou", "loss_objectness", "loss_caption", "loss_detection"}.

        Every name but "loss_detection" is a field of `LossTerms` (encode/loss_terms.py), which is how the model
        hands them to the trainer: a term added here is added there, and is then logged.

        A two-stage head's outputs add "loss_proposal" (already weighted, see `loss_proposals`), included
        in "loss_detection".

        targets: one dict per image with "boxes" `[Ni, 4]` (normalised, in the head's box format) and
        "caption_ids" (`[Ni, Ti]` padded with -100, or Ni 1-D tensors; without eos, which is added
        here), and optionally "weights" `[Ni]`: each object's terms (its matched query's box, objectness and
        caption, its proposals' box and objectness) count that many times (`loss.fault_weight`). The first four
        values are unweighted by the config's term weights; "loss_detection" is their weighted sum. `num_targets`
        (optional) replaces this batch's box count as the divisor: the trainer passes the effective batch's.
        """
        if bool(torch.isfinite(outputs.boxes).all() and torch.isfinite(outputs.objectness_logits).all()):
            return self.matched_losses(outputs, targets, head, num_targets)
        # A diverged head cannot be matched: every term NaN, built from the boxes and objectness, so the trainer's guard
        # skips the step and the alarm names the groups that fed them. Alone, that NaN left the caption and proposal
        # layers without a gradient on this rank, and DDP (`ddp_find_unused_parameters` off, train/trainer.py), which
        # waits for a gradient of every parameter on every rank, hung the run: the terms taken on the outputs made
        # finite, times 0, reach every parameter and collective a healthy step's do.
        nan = (outputs.boxes.float().sum() + outputs.objectness_logits.float().sum()) * float("nan")
        whole = self.matched_losses(dataclasses.replace(outputs, boxes=finite_or_zero(outputs.boxes),
                                                        objectness_logits=finite_or_zero(outputs.objectness_logits)),
                                    targets, head, num_targets)
        return {name: value * 0.0 + nan for name, value in whole.items()}

    def matched_losses(self, outputs: DetectionOutput, targets: list[dict], head: DetectionHead,
                       num_targets: Tensor | None) -> dict[str, Tensor]:
        """`forward`'s terms for outputs that can be matched (finite boxes and objectness)."""
        indices = self.matcher(outputs.boxes, outputs.objectness_logits, targets)
        weight = None
        if self.assignment == "overlap":
            indices, weight = overlap_assignment(outputs.boxes, targets, indices, self.box_format)
        objects = self.object_weight(targets, indices)
        if objects is not None:
            weight = objects if weight is None else weight * objects.to(weight)
        if num_targets is None:
            num_targets = self.num_targets(targets, outputs.boxes.device)
        losses = self.loss_boxes(outputs, targets, indices, num_targets, weight)
        losses["loss_objectness"] = self.loss_objectness(
            outputs, indices, num_targets, quality=self.matched_iou(outputs.boxes, targets, indices),
            positive_weight=objects,
        )
        losses["loss_caption"] = self.loss_caption(outputs, targets, indices, num_targets, head, weight)
        if self.caption_nothing_weight > 0:
            losses["loss_caption"] = losses["loss_caption"] + self.caption_nothing_weight * self.loss_caption_nothing(
                outputs, targets, indices, num_targets, head)
        losses["loss_detection"] = sum(w * losses[name] for name, w in self.weights.items())
        if outputs.proposal_boxes is not None:
            losses["loss_proposal"] = self.loss_proposals(outputs, targets, num_targets)
            losses["loss_detection"] = losses["loss_detection"] + losses["loss_proposal"]
        return losses

    def loss_proposals(self, outputs: DetectionOutput, targets: list[dict], num_targets: Tensor) -> Tensor:
        """Two-stage: per-token proposals assigned by where they sit; weighted L1 + GIoU + focal objectness.

        A token is a positive for the smallest target box that contains its cell centre, and the token whose
        cell holds a box's centre is always one of that box's positives (FCOS's centre assignment, so a box
        smaller than a cell still gets a token). Unlike one-to-one Hungarian matching, the assignment does
        not depend on the current predictions, so every token on an object learns the same answer from the
        first step (docs/localisation.md has the measured difference). Box terms are averaged over each
        box's positives, then summed / num_targets like every other term; objectness is focal over valid
        tokens only, so padding a batch changes nothing.
        """
        valid = outputs.proposal_valid
        indices: Indices = []
        weight = []
        for b, t in enumerate(targets):
            boxes = to_xyxy(t["boxes"].to(outputs.proposal_centres), self.box_format)
            tok, tgt = centre_assignment(outputs.proposal_centres[b], valid[b], boxes)
            indices.append((tok, tgt))
            weight.append(per_object_weight(tgt, len(t["boxes"])))
        proposals = DetectionOutput(outputs.proposal_boxes, outputs.proposal_logits, outputs.query_hidden)
        objects = self.object_weight(targets, indices)
        spread = torch.cat(weight)
        if objects is not None:
            spread = spread * objects.to(spread)
        box = self.loss_boxes(proposals, targets, indices, num_targets, spread)
        quality = self.matched_iou(outputs.proposal_boxes, targets, indices)
        focal = self.loss_objectness(proposals, indices, num_targets, valid, quality, positive_weight=objects)
        w = self.weights
        return w["loss_bbox"] * box["loss_bbox"] + w["loss_giou"] * box["loss_giou"] + w["loss_objectness"] * focal


def finite_or_zero(t: Tensor) -> Tensor:
    """`t` with each NaN or inf entry made 0; the gradient reaches the finite entries."""
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def centre_assignment(centres: Tensor, valid: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Token-to-box assignment of the two-stage proposals: `(token_idx [P], box_idx [P])`.

    centres `[Nv, 2]` normalised cell centres (x, y); valid `[Nv]`; boxes `[N, 4]` normalised xyxy.
    A valid token inside one or more boxes goes to the smallest; each box also claims the valid token
    nearest its centre, so no box is left without a positive.
    """
    if boxes.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=centres.device)
        return empty, empty
    x, y = centres[:, 0:1], centres[:, 1:2]  # [Nv, 1]
    inside = (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])  # [Nv, N]
    inside &= valid.bool()[:, None]
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand_as(inside)
    owner = torch.where(inside, area, torch.full_like(area, float("inf"))).argmin(dim=1)  # [Nv]
    has_owner = inside.any(dim=1)
    box_centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # [N, 2]
    dist = torch.cdist(box_centre.float(), centres.float())  # [N, Nv]
    nearest = dist.masked_fill(~valid.bool()[None], float("inf")).argmin(dim=1)  # [N]
    owner[nearest] = torch.arange(boxes.shape[0], device=centres.device)
    has_owner[nearest] = True
    token_idx = has_owner.nonzero().flatten()
    return token_idx, owner[token_idx]


def per_object_weight(objects: Tensor, num_objects: int) -> Tensor:
    """`[K]` object index of each positive -> `[K]` 1 / that object's number of positives (each object weighs 1)."""
    return 1.0 / torch.bincount(objects, minlength=max(num_objects, 1)).clamp(min=1)[objects].float()


POSITIVE_IOU = 0.5  # Faster R-CNN's second stage: a query this close to an object learns that object


@torch.no_grad()
def overlap_assignment(boxes: Tensor, targets: list[dict], matched: Indices, box_format: BoxFormat) -> tuple[Indices, Tensor]:
    """One-to-many assignment of the decoder's queries: `(indices, weight [K])`.

    Every query whose (detached) box overlaps an object at IoU >= POSITIVE_IOU learns the object it overlaps
    most, and each object keeps its one-to-one `matched` query, so none is left without a positive. `weight` is
    1 / the object's positives, so each object weighs the same in the box and caption terms. Duplicates that
    all learn "object" are removed by NMS at inference (`inference.nms_iou`).
    """
    indices, weights = [], []
    for b, (t, (q_matched, j_matched)) in enumerate(zip(targets, matched)):
        n = len(t["boxes"])
        owner = torch.full((boxes.shape[1],), -1, dtype=torch.long)
        if n:
            iou = box_iou(to_xyxy(boxes[b].float(), box_format), to_xyxy(t["boxes"].to(boxes).float(), box_format)).cpu()
            best, arg = iou.max(dim=1)
            owner = torch.where(best >= POSITIVE_IOU, arg, owner)
        owner[q_matched.cpu()] = j_matched.cpu()
        queries = (owner >= 0).nonzero().flatten()
        objects = owner[queries]
        indices.append((queries.to(q_matched.device), objects.to(j_matched.device)))
        weights.append(per_object_weight(objects, n))
    return indices, torch.cat(weights).to(boxes.device)
