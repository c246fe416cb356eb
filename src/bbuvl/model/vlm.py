"""The trained model: a Qwen VL model of any family in data/families.py (optionally with LoRA) plus the optional detection head.

`forward(batch)` computes every loss term of a step from one pass through the VLM:
total = teacher_w * LM_teacher + student_w * LM_student (+ number_token_w * NTL + coordinate_w * coordinate
+ grounding_w * grounding) + sum_k w_k * det_k, and returns each term
(`LossTerms`, encode/loss_terms.py) so that what is logged is exactly what is optimised. The batch is the
collators' typed `Batch` (encode/collate.py).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from bbuvl.config import Config
from bbuvl.data.families import TURN_END, TURN_START
from bbuvl.encode.collate import Batch
from bbuvl.encode.loss_terms import LossTerms
from bbuvl.model.box_ops import box_xyxy_to_cxcywh
from bbuvl.model.coordinate_loss import CoordinateReadout, coordinate_regression_sum
from bbuvl.model.detection_head import DetectionHead, DetectionOutput
from bbuvl.model.detection_loss import DetectionCriterion
from bbuvl.model.grounding_attention import QueryKeyCapture, grounding_attention_sum
from bbuvl.model.lm_loss import span_lm_loss
from bbuvl.model.loss_scale import LossDenominators
from bbuvl.model.number_token_loss import digit_token_ids, span_number_token_loss
from bbuvl.model.patch_features import PatchCapture, PatchFeatures, patch_maps, pixel_maps
from bbuvl.model.shared_prefix import can_share_prefix, forward_shared_prefix, shared_prefix_length, shares_prefix
from bbuvl.model.vision_positions import VisionPositions


def core_model(vlm: nn.Module) -> nn.Module:
    """The family's `...ForConditionalGeneration` inside a possibly peft-wrapped model (LoRA layers stay active)."""
    # peft forwards attribute lookups to the wrapped model, so ask for the base model explicitly.
    return vlm.get_base_model() if hasattr(vlm, "peft_config") else vlm


def gather_head_inputs(
    embeds: torch.Tensor, hidden: torch.Tensor, sample_index: torch.Tensor, vision_mask: torch.Tensor, text_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample head memory from padded or packed rows.

    embeds / hidden: [B, L, H] input embeddings and last hidden states; sample_index, vision_mask, text_mask: [B, L].
    Returns vision [S, Nv, H], vision_valid [S, Nv], text [S, Nt, H], text_valid [S, Nt] for the S samples.
    """
    num_samples = int(sample_index.max()) + 1
    vis, txt = [], []
    for k in range(num_samples):
        in_k = sample_index == k
        vis.append(embeds[in_k & vision_mask])
        txt.append(hidden[in_k & text_mask])

    def pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(1, max(s.shape[0] for s in seqs))
        out = embeds.new_zeros(len(seqs), n, embeds.shape[-1])
        valid = torch.zeros(len(seqs), n, dtype=torch.bool, device=embeds.device)
        for i, s in enumerate(seqs):
            out[i, : s.shape[0]] = s
            valid[i, : s.shape[0]] = True
        return out, valid

    return (*pad(vis), *pad(txt))


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`x` in the forward pass; its gradient times `scale` in the backward pass (0 detaches, 1 is the identity)."""
    if scale == 1.0:
        return x
    if scale == 0.0:
        return x.detach()
    return x.detach() + scale * (x - x.detach())


class BBUVLModel(nn.Module):
    """A Qwen VL model + detection head, with the run's loss weights."""

    # Said, as `forward` has no `**kwargs` for HF to sniff: HF Trainer then passes `num_items_in_batch` (our
    # LossDenominators) and leaves the gradient-accumulation scaling to the loss (docs/training_loss_scale.md).
    accepts_loss_kwargs = True

    def __init__(self, vlm: nn.Module, cfg: Config, head: DetectionHead | None = None,
                 vision_positions: VisionPositions | None = None, digit_ids: torch.Tensor | None = None,
                 coordinate_readout: CoordinateReadout | None = None):
        super().__init__()
        if cfg.loss.coordinate_regression > 0 and coordinate_readout is None:
            raise ValueError("loss.coordinate_regression > 0 needs a coordinate read-out (BBUVLModel.build makes it)")
        if cfg.loss.number_token > 0 and digit_ids is None:
            raise ValueError("loss.number_token > 0 needs the digit token ids (BBUVLModel.build reads them)")
        self.vlm = vlm
        self.detection_head = head
        self.vision_positions = vision_positions
        self.coordinate_readout = coordinate_readout
        if vision_positions is not None:
            # Every image encoding (training, the head's pass, generate's prefill) goes through the tower.
            vision_positions.attach(core_model(vlm).model.visual)
        # The head's fine and pixel levels read the tower's pre-merge patches and its input, recorded by a hook during
        # the head's passes.
        reads_tower = head is not None and (head.fine_features or head.pixel_points > 0)
        self.patch_capture = PatchCapture(pixels=head.pixel_points > 0) if reads_tower else None
        if self.patch_capture is not None:
            self.patch_capture.attach(core_model(vlm).model.visual)
        vision_cfg = core_model(vlm).config.vision_config
        self.merge_size = int(getattr(vision_cfg, "spatial_merge_size", 2))
        self.patch_size = int(getattr(vision_cfg, "patch_size", 14))
        self.pixel_channels = int(getattr(vision_cfg, "in_channels", 3))
        # Grounding attention recomputes answer positions' attention over their whole sample from each layer's inputs
        # (with a shared prompt, from its call and the rows' rest: model/grounding_attention.py).
        self.attention_capture = QueryKeyCapture(cfg.loss.grounding_heads) if cfg.loss.grounding_attention > 0 else None
        if self.attention_capture is not None:
            self.attention_capture.attach(core_model(vlm).model.language_model)
        self.shared_prefix = cfg.model.shared_prefix and shares_prefix(core_model(vlm).config.get_text_config())
        self.criterion = DetectionCriterion.from_config(cfg.loss, cfg.detection) if head is not None else None
        self.loss_cfg = cfg.loss
        # Token ids of the labels that are faults, which `loss.fault_weight` weighs: set by the run that trains
        # (train/trainer.py, from the hierarchy file), empty otherwise.
        self.fault_captions: frozenset[tuple[int, ...]] = frozenset()
        self.box_format = cfg.detection.box_format
        self.head_grad_to_vlm = cfg.detection.grad_to_vlm
        self.detection_active = head is not None  # False while `detection_freeze_epochs` holds the head back
        self.head_left_out: str | None = None  # why a checkpoint's head was not loaded (`leave_out_head`)
        # [10] ids of '0'..'9', only when the number-token loss is on; not saved: the tokenizer gives them back.
        self.register_buffer("digit_ids", digit_ids if cfg.loss.number_token > 0 else None, persistent=False)

    def _fault_weights(self, captions: list[torch.Tensor], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """{"weights": `[N]`} on `device` for one sample's objects (`loss.fault_weight` for faults, else 1); {} when
        off."""
        weight = self.loss_cfg.fault_weight
        if weight == 1 or not self.fault_captions:
            return {}
        return {"weights": torch.tensor([weight if tuple(c.tolist()) in self.fault_captions else 1.0 for c in captions],
                                        device=device)}

    @classmethod
    def build(cls, vlm: nn.Module, cfg: Config, tokenizer: Any) -> "BBUVLModel":
        """Wrap a loaded VLM, creating a fresh detection head when `detection.enabled` and fresh (zero)
        vision positions when `model.vision_positions`; ValueError when `loss.number_token` is on and the
        tokenizer does not split digits."""
        head = positions = None
        core = core_model(vlm)
        text_cfg = core.config.get_text_config()
        if cfg.model.vision_positions:
            merge = int(getattr(core.config.vision_config, "spatial_merge_size", 2))
            positions = VisionPositions(text_cfg.hidden_size, merge).to(next(vlm.parameters()).dtype)
        if cfg.detection.enabled:
            bos = tokenizer.convert_tokens_to_ids(TURN_START)
            head = DetectionHead(
                text_cfg.hidden_size, core.get_input_embeddings(), cfg.detection,
                bos_token_id=bos, eos_token_id=tokenizer.convert_tokens_to_ids(TURN_END),
                pad_token_id=tokenizer.pad_token_id, d_model=min(cfg.detection.d_model, text_cfg.hidden_size),
                patch_dim=int(core.config.vision_config.hidden_size),
                pixel_channels=int(getattr(core.config.vision_config, "in_channels", 3)),
            )
            head.to(next(vlm.parameters()).dtype)
        digits = digit_token_ids(tokenizer) if cfg.loss.number_token > 0 else None
        readout = None
        if cfg.loss.coordinate_regression > 0:
            readout = CoordinateReadout(text_cfg.hidden_size).to(next(vlm.parameters()).dtype)
        return cls(vlm, cfg, head, positions, digits, readout)

    def leave_out_head(self, why: str) -> None:
        """Go on without the detection head (generate mode only): `why`, in words, is what a head mode is told."""
        self.detection_head = None
        self.criterion, self.detection_active, self.head_left_out = None, False, why
        self.patch_capture = None  # its hook stays on the tower, idle: it records only inside `recording()`

    def no_head(self) -> str:
        """Why this model has no detection head, in words."""
        return self.head_left_out or "this model has no detection head (detection.enabled was false)"

    @property
    def config(self) -> Any:
        """The VLM's config (HF Trainer reads it)."""
        return core_model(self.vlm).config

    def recording_patches(self) -> AbstractContextManager[PatchCapture | None]:
        """Around a VLM pass whose head reads the fine level: records the tower's pre-merge patches and yields the
        capture (`take()` them inside); yields None when the head has no fine level."""
        return self.patch_capture.recording() if self.patch_capture is not None else nullcontext()

    def head_forward(self, embeds: torch.Tensor, hidden: torch.Tensor, batch: Batch,
                     patches: PatchFeatures | None = None, num_queries: int | None = None) -> DetectionOutput:
        """Run the detection head on a batch's pass through the VLM.

        patches: the tower's pre-merge features of that pass (`detection.fine_features`; `recording_patches`
        gives them), or None to take them from a recording still open. num_queries: the head's queries to run
        (None: all; `DetectionHead.forward`).
        """
        embeds, hidden = scale_gradient(embeds, self.head_grad_to_vlm), scale_gradient(hidden, self.head_grad_to_vlm)
        vis, vis_valid, txt, txt_valid = gather_head_inputs(
            embeds, hidden, batch.sample_index, batch.det_vision_mask, batch.det_text_mask
        )
        fine = pixels = None
        if self.patch_capture is not None:
            patches = patches if patches is not None else self.patch_capture.take()
            if self.detection_head.fine_features:
                fine, _ = patch_maps(patches, batch.det_image_index, self.merge_size)
                fine = scale_gradient(fine, self.head_grad_to_vlm)
            if self.detection_head.pixel_points:
                pixels = pixel_maps(patches, batch.det_image_index, self.patch_size, self.pixel_channels, self.merge_size)
        return self.detection_head(vis, vis_valid, txt, txt_valid, vision_grid_hw=batch.det_grid_hw, fine_maps=fine,
                                   pixel_maps=pixels, num_queries=num_queries)

    def detect(self, batch: Batch, num_queries: int | None = None) -> DetectionOutput:
        """Boxes, objectness and query vectors for a collated batch: one VLM pass (no cache), then the head.

        boxes `[S, Q, 4]`, objectness_logits `[S, Q]`, query_hidden `[S, Q, D]` for the batch's S samples; Q is
        `num_queries` when given (fewer than the head's: its surest proposals), else all the head's.
        """
        if self.detection_head is None:
            raise ValueError(self.no_head())
        with self.recording_patches() as capture:
            embeds, hidden = self.vlm_pass(batch, input_embeds=True)
            patches = capture.take() if capture is not None else None
        return self.head_forward(embeds, hidden, batch, patches, num_queries)

    def vlm_pass(self, batch: Batch, input_embeds: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """`(input embeddings [B, L, H] or None unless asked for, last hidden states [B, L, H])` of one pass through
        the VLM without a cache; the prompt every row shares is read once where that is exact (model/shared_prefix.py)."""
        core = core_model(self.vlm)
        prefix = 0
        if self.shared_prefix and can_share_prefix(core.model):
            prefix = shared_prefix_length(batch)
        if prefix:
            return forward_shared_prefix(core.model, batch, prefix, output_input_embeds=input_embeds)
        out = core.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            pixel_values=batch.pixel_values,
            image_grid_thw=batch.image_grid_thw,
            use_cache=False,  # packed rows are isolated only without a cache (docs/design.md, "Packed rows isolate their samples")
            output_hidden_states=input_embeds,
            return_dict=True,
        )
        return (out.hidden_states[0] if input_embeds else None), out.last_hidden_state

    def forward(self, batch: Batch, num_items_in_batch: LossDenominators | None = None) -> LossTerms:
        """All loss terms for a collated batch; `loss` is the weighted total.

        Without `num_items_in_batch` each term is this batch's mean (per token, per object); with it, this
        batch's sum divided by the effective batch's counts, so the micro-batches of a step add up to its mean.
        """
        core = core_model(self.vlm)
        use_head = self.detection_head is not None and self.detection_active
        patches = None
        grounding = None
        attention = self.attention_capture.recording() if self.attention_capture is not None else nullcontext()
        with self.recording_patches() if use_head else nullcontext() as capture, attention as maps:
            embeds, hidden = self.vlm_pass(batch, input_embeds=use_head)
            if capture is not None:
                patches = capture.take()
            if maps is not None:
                grounding = grounding_attention_sum(maps.rows, maps.zero(), batch.coord_marks, batch.sample_index,
                                                    batch.det_vision_mask, batch.det_grid_hw, batch.coord_boxes)
        lm = span_lm_loss(hidden, core.lm_head, batch.labels, batch.span_ids)
        norm = num_items_in_batch
        if norm is None:
            lm_teacher, lm_student, num_targets = lm.teacher, lm.student, None
        else:
            lm_teacher = lm.teacher_sum / max(norm.teacher_tokens, 1.0)
            lm_student = lm.student_sum / max(norm.student_tokens, 1.0)
            num_targets = hidden.new_tensor(max(norm.objects, 1.0), dtype=torch.float32)
        total = self.loss_cfg.teacher_weight * lm_teacher + self.loss_cfg.student_weight * lm_student
        number_token = None
        if self.digit_ids is not None:
            # Divided by the same span token counts as the LM terms, so its weight relative to their
            # cross-entropy never drifts with a batch's share of digits (docs/number_token_loss.md).
            teacher_sum, student_sum = span_number_token_loss(hidden, core.lm_head, batch.labels, batch.span_ids,
                                                              self.digit_ids)
            teacher_n, student_n = (lm.n_teacher, lm.n_student) if norm is None else (norm.teacher_tokens, norm.student_tokens)
            number_token = (self.loss_cfg.teacher_weight * teacher_sum / max(teacher_n, 1)
                            + self.loss_cfg.student_weight * student_sum / max(student_n, 1))
            total = total + self.loss_cfg.number_token * number_token
        coordinate = None
        if self.coordinate_readout is not None:
            # Only student answers carry coordinate marks; divided by the student tokens like lm_student, so that
            # accumulation and ranks add up to the effective batch's mean (docs/training_loss_scale.md).
            summed = coordinate_regression_sum(hidden, self.coordinate_readout, batch.coord_marks, batch.sample_index,
                                               batch.coord_boxes)
            coordinate = summed / max(lm.n_student if norm is None else norm.student_tokens, 1)
            total = total + self.loss_cfg.coordinate_regression * coordinate
        if grounding is not None:
            grounding = grounding / max(lm.n_student if norm is None else norm.student_tokens, 1)  # as coordinate
            total = total + self.loss_cfg.grounding_attention * grounding
        detection: dict[str, torch.Tensor] = {}
        if use_head:
            det = self.head_forward(embeds, hidden, batch, patches)
            targets = [
                {"boxes": (box_xyxy_to_cxcywh(b) if self.box_format == "cxcywh" else b).to(det.boxes.device),
                 "caption_ids": c, **self._fault_weights(c, det.boxes.device)}
                for b, c in zip(batch.det_boxes, batch.det_caption_ids)
            ]
            detection = self.criterion(det, targets, self.detection_head, num_targets)
            total = total + detection.pop("loss_detection")
        return LossTerms(loss=total, lm_teacher=lm_teacher, lm_student=lm_student, number_token=number_token,
                         coordinate=coordinate, grounding=grounding, **detection)
