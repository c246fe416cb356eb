"""A DETR-style detection head that reads a frozen or trained VLM's features and names each box.

Memory = [vision adapter(vision embeddings of the student image), language adapter(last-layer
hidden states of the sample's text tokens)]. The vision embeddings are the LLM's *input* embeddings
at the student image's `<|image_pad|>` positions, because the stock models (every family) return no vision
embeddings (docs/design.md, "Vision memory for the head"). A transformer decoder turns `num_queries` queries into one vector per
query; from it come a box, an objectness logit and a caption decoded token by token.

Queries (`detection.two_stage`): by default every vision token first proposes a box and an
objectness (trained as the positive of the object its cell centre lies in, `loss_proposal`), and the top `num_queries`
proposals become the decoder's queries and reference boxes (Deformable DETR's two-stage). With
`two_stage: false` the queries are learned embeddings on a grid of reference boxes (DETR with
conditional-DETR positions).

Width: the head works at `d_model` (default `min(hidden_size, 512)`), not at the LLM's hidden size.
At 2048 wide, 2 + 4 decoder layers alone would be ~250M parameters; at 512 the whole head is ~30M and
the memory and token embeddings are projected in, the caption states projected back out to
`hidden_size` for the tied output. DETR itself runs at 256.

The caption output projection is tied to the LLM's input embedding (`logits = h @ E.T`), so the head
adds no vocabulary-sized matrix. The embedding is referenced, not registered: it belongs to the LLM,
and registering it here would count it twice in parameter groups and save it twice in checkpoints.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bbuvl.config import DetectionConfig
from bbuvl.model.box_ops import BoxFormat, box_cxcywh_to_xyxy, nms

DEFAULT_D_MODEL = 512
OBJECTNESS_PRIOR = 0.01  # focal-loss convention (Lin et al. 2017): every query starts as "probably nothing"
FINE_MERGE = 2  # patches merged per side into one token in every family (data/families.py): fine grid = 2x the token grid


@dataclass
class DetectionOutput:
    """What the head predicts for a batch, before any caption is decoded."""

    boxes: Tensor  # [batch_size, num_queries, 4], normalised, in the head's box_format
    objectness_logits: Tensor  # [batch_size, num_queries]
    query_hidden: Tensor  # [batch_size, num_queries, d_model], input to caption_logits / generate_captions
    # Two-stage only: one proposal per vision token, trained with their own matching (auxiliary loss).
    proposal_boxes: Tensor | None = None  # [batch_size, num_vision, 4]
    proposal_logits: Tensor | None = None  # [batch_size, num_vision]
    proposal_valid: Tensor | None = None  # [batch_size, num_vision], False on padding
    proposal_centres: Tensor | None = None  # [batch_size, num_vision, 2], each token's cell centre (x, y), normalised
    # With a pixel level: what it read, [batch_size, num_queries, C * P * P]; query_hidden already holds its MLP's
    # output, so query_hidden - pixel_roi(pixel_samples) is the query the boxes were read from.
    pixel_samples: Tensor | None = None


class ResidualAdapter(nn.Module):
    """x + up(gelu(down(LayerNorm(x)))): a bottleneck MLP of width hidden/ratio on a residual path."""

    def __init__(self, hidden_size: int, ratio: int, dropout: float = 0.0):
        super().__init__()
        bottleneck = max(1, hidden_size // ratio)
        self.norm = nn.LayerNorm(hidden_size)
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """`[..., hidden]` -> `[..., hidden]`."""
        return x + self.up(self.dropout(F.gelu(self.down(self.norm(x)))))


class MLP(nn.Module):
    """A plain feed-forward network with ReLU between layers (DETR's box head)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        """`[..., in_dim]` -> `[..., out_dim]`."""
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def boxes_from_logits(logits: Tensor, box_format: BoxFormat) -> Tensor:
    """`[..., 4]` unbounded logits -> `[..., 4]` normalised boxes in `box_format` (x2 >= x1, y2 >= y1).

    The logits are always cx, cy, w, h (DETR); xyxy is converted from them, so its edges may lie
    outside [0, 1] by up to half a side, as a DETR cxcywh box may: clip at inference. Predicting the
    edges directly through sigmoids was tried and let one edge saturate at 1 and stop learning.
    """
    boxes = logits.sigmoid()
    return box_cxcywh_to_xyxy(boxes) if box_format == "xyxy" else boxes


MAX_LOG_SCALE = 4.0  # exp(4) = 55x a cell: wider than any frame, and keeps exp() finite


def boxes_from_deltas(reference: Tensor, deltas: Tensor, box_format: BoxFormat) -> Tensor:
    """`[..., 4]` cxcywh reference boxes and unbounded deltas -> boxes in `box_format` (Faster R-CNN's parametrisation).

    cx = ref_cx + dx * ref_w, w = ref_w * exp(dw) (likewise y, h): the same delta means the same move relative
    to the reference wherever it sits. Offsets in sigmoid-logit space (`boxes_from_logits`) are not
    translation-equivariant: one cell to the right costs a larger logit step near the border than in the
    middle, so what a token learns in one place does not hold in another (docs/localisation.md).
    """
    cxcy = reference[..., :2] + deltas[..., :2] * reference[..., 2:]
    wh = reference[..., 2:] * deltas[..., 2:].clamp(max=MAX_LOG_SCALE).exp()
    boxes = torch.cat([cxcy, wh], dim=-1)
    return box_cxcywh_to_xyxy(boxes) if box_format == "xyxy" else boxes


def grid_reference_boxes(num_queries: int) -> Tensor:
    """`[num_queries, 4]` cxcywh boxes tiling the image on a square grid, one tile per query.

    Each query starts on its own region, so initial predictions are spread over the image instead
    of all queries answering the same box (the usual first step into mode collapse).
    """
    side = math.ceil(math.sqrt(num_queries))
    idx = torch.arange(num_queries)
    cx = (idx % side + 0.5) / side
    cy = (idx // side + 0.5) / side
    size = torch.full((num_queries,), 1.0 / side)
    return torch.stack([cx, cy, size, size], dim=-1)


def sine_encode_points(xy: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """DETR's sine encoding of normalised points `[N, 2]` (x, y in [0, 1]) -> `[N, dim]` (y half first, then x)."""
    quarter = dim // 4
    freqs = temperature ** (torch.arange(quarter, dtype=torch.float32, device=xy.device) / quarter)

    def encode(v: Tensor) -> Tensor:
        angles = (v.float() * 2 * math.pi)[:, None] / freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    return torch.cat([encode(xy[:, 1]), encode(xy[:, 0])], dim=-1)


def grid_cells(h: int, w: int) -> Tensor:
    """`[h * w, 4]` normalised cxcywh boxes of the cells of an `h x w` token grid, in raster order."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    return torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w),
                        torch.full((h, w), 1.0 / w), torch.full((h, w), 1.0 / h)], dim=-1).reshape(h * w, 4)


def sine_position_2d(grid_hw: tuple[int, int], dim: int, temperature: float = 10000.0) -> Tensor:
    """DETR's sine position encoding for an `h x w` token grid in raster order (token centres): `[h * w, dim]`."""
    return sine_encode_points(grid_cells(*grid_hw)[:, :2], dim, temperature)


class _EncoderLayer(nn.TransformerEncoderLayer):
    """A pre-norm `nn.TransformerEncoderLayer` that always takes the module path (attention by SDPA).

    In inference PyTorch swaps the layer for a fused kernel, which with a padding mask computes attention by a
    masked softmax: 3.3x slower on CPU than this path, at batch 1 and 8 alike (docs/serving.md, "Measured").
    Training never takes the fused kernel, so it computes exactly what it did; the parameters keep their names.
    """

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        """`[B, N, D]` -> `[B, N, D]` (norm_first, as `_encoder` builds it)."""
        x = src + self._sa_block(self.norm1(src), src_mask, src_key_padding_mask, is_causal=is_causal)
        return x + self._ff_block(self.norm2(x))


def _encoder(d_model: int, num_heads: int, num_layers: int, dropout: float) -> nn.TransformerEncoder | None:
    if num_layers == 0:
        return None
    layer = _EncoderLayer(
        d_model, num_heads, dim_feedforward=4 * d_model, dropout=dropout, activation="gelu",
        batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)


class LocalTower(nn.Module):
    """`num_layers` x (3x3 conv, LayerNorm over channels, GELU) on token maps, residual around the whole (FCOS's tower).

    The norm is per position and padding is zeroed after every layer, so an image's output does not depend on
    how far its map was padded to fit a larger image in the batch (GroupNorm would pool statistics over it).
    """

    def __init__(self, d_model: int, num_layers: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(d_model, d_model, 3, padding=1) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_layers))

    def forward(self, maps: Tensor, inside: Tensor) -> Tensor:
        """maps `[B, D, H, W]`, inside `[B, 1, H, W]` (1 on the image, 0 on padding) -> `[B, D, H, W]`."""
        x = maps
        for conv, norm in zip(self.convs, self.norms):
            x = F.gelu(norm(conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)) * inside
        return maps + x


def vision_grid(vis: Tensor, vision_mask: Tensor, grid_hw: Tensor) -> Tensor:
    """`[B, Nv, D]` raster-order tokens -> `[B, D, Hmax, Wmax]` maps, each image top-left, zeros elsewhere."""
    hmax, wmax = int(grid_hw[:, 0].max()), int(grid_hw[:, 1].max())
    out = vis.new_zeros(vis.shape[0], vis.shape[2], hmax, wmax)
    for b, (h, w) in enumerate(grid_hw.tolist()):
        out[b, :, :h, :w] = vis[b, vision_mask[b]].T.reshape(-1, h, w)
    return out


def grid_inside(grid_hw: Tensor, like: Tensor) -> Tensor:
    """`[B, 1, Hmax, Wmax]`: 1 where a map cell belongs to its image, 0 on padding (maps as `vision_grid` lays out)."""
    inside = like.new_zeros(like.shape[0], 1, like.shape[2], like.shape[3])
    for b, (h, w) in enumerate(grid_hw.tolist()):
        inside[b, :, :h, :w] = 1
    return inside


def grid_tokens(maps: Tensor, vision_mask: Tensor, grid_hw: Tensor) -> Tensor:
    """Inverse of `vision_grid`: `[B, D, Hmax, Wmax]` -> `[B, Nv, D]` (zeros on padding tokens)."""
    out = maps.new_zeros(*vision_mask.shape, maps.shape[1])
    for b, (h, w) in enumerate(grid_hw.tolist()):
        out[b, vision_mask[b]] = maps[b, :, :h, :w].reshape(maps.shape[1], -1).T
    return out


PIXEL_CONTEXT_SEED = 0  # the pixel context level's first layer, drawn apart from the run's random stream


def roi_sample(maps: Tensor, grid_hw: Tensor, boxes: Tensor, points: int) -> Tensor:
    """Bilinear samples of `[B, D, Hmax, Wmax]` maps on a `points x points` grid inside each cxcywh box `[B, Q, 4]`.

    Returns `[B, Q, D * points**2]` (RoIAlign with one sample per bin). Box coordinates are normalised to each
    image, which fills only the top-left `h x w` of its map.
    """
    b, q = boxes.shape[:2]
    offsets = (torch.arange(points, device=boxes.device, dtype=boxes.dtype) + 0.5) / points - 0.5  # [P]
    xs = boxes[..., 0:1] + offsets * boxes[..., 2:3]  # [B, Q, P]
    ys = boxes[..., 1:2] + offsets * boxes[..., 3:4]
    hw = grid_hw.to(boxes)
    scale_x = (hw[:, 1] / maps.shape[3])[:, None, None]  # the image's share of the padded map
    scale_y = (hw[:, 0] / maps.shape[2])[:, None, None]
    gx = (xs * scale_x) * 2 - 1
    gy = (ys * scale_y) * 2 - 1
    grid = torch.stack([gx[:, :, None, :].expand(b, q, points, points), gy[:, :, :, None].expand(b, q, points, points)], -1)
    sampled = F.grid_sample(maps, grid.reshape(b, q * points, points, 2).to(maps.dtype), align_corners=False)
    return sampled.reshape(b, -1, q, points, points).permute(0, 2, 1, 3, 4).reshape(b, q, -1)


def distinct_top(score: Tensor, boxes: Tensor, k: int, iou: float) -> Tensor:
    """`[B, k]` token indices seeding the queries: the best-scoring proposals that no better one overlaps above `iou`,
    then, where fewer than `k` are distinct, the best of the overlapped ones (DDQ-DETR's distinct queries).

    score `[B, N]` (-inf where a slot is not a token; `N >= k`), boxes `[B, N', 4]` xyxy with `N' <= N` (the tokens).
    Plain top-k gives a big part every one of its tokens' proposals and leaves the small parts beside it without a
    query (docs/faults_learning.md, "Distinct queries").
    """
    out = score.topk(k, dim=1).indices.clone()
    n_tokens = boxes.shape[1]
    for b in range(score.shape[0]):
        finite = torch.isfinite(score[b, :n_tokens]).nonzero().flatten()
        if len(finite) <= 1:
            continue
        kept = finite[nms(boxes[b, finite], score[b, finite], iou)]
        is_kept = torch.zeros(score.shape[1], dtype=torch.bool, device=score.device)
        is_kept[kept] = True
        order = score[b].argsort(descending=True)  # every slot, the tokens first
        out[b] = torch.cat([kept, order[~is_kept[order]]])[:k]
    return out


def _decoder(d_model: int, num_heads: int, num_layers: int, dropout: float) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(
        d_model, num_heads, dim_feedforward=4 * d_model, dropout=dropout, activation="gelu",
        batch_first=True, norm_first=True,
    )
    return nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))


class DetectionHead(nn.Module):
    """Boxes, objectness and captions for `num_queries` queries from a VLM's vision and text features."""

    def __init__(
        self,
        hidden_size: int,
        token_embedding: nn.Embedding,
        config: DetectionConfig,
        bos_token_id: int,
        eos_token_id: int,
        pad_token_id: int,
        d_model: int | None = None,
        patch_dim: int | None = None,
        pixel_channels: int = 3,
    ):
        super().__init__()
        d_model = d_model or min(hidden_size, DEFAULT_D_MODEL)
        if token_embedding.embedding_dim != hidden_size:
            raise ValueError(
                f"token embedding width {token_embedding.embedding_dim} != hidden_size {hidden_size}: "
                "pass the LLM's input embedding (model.get_input_embeddings())"
            )
        if d_model % config.num_heads or d_model % 4:
            raise ValueError(f"d_model {d_model} must be divisible by detection.num_heads ({config.num_heads}) and by 4")
        vocab = token_embedding.num_embeddings
        for name, tid in (("bos", bos_token_id), ("eos", eos_token_id), ("pad", pad_token_id)):
            if not 0 <= tid < vocab:
                raise ValueError(f"{name}_token_id {tid} is outside the vocabulary (size {vocab})")
        # Not a submodule: see the module docstring. object.__setattr__ bypasses nn.Module registration.
        object.__setattr__(self, "_token_embedding", token_embedding)
        self.hidden_size, self.d_model = hidden_size, d_model
        self.num_queries = config.num_queries
        self.query_nms = config.query_nms
        self.box_format: BoxFormat = config.box_format
        self.caption_max_tokens = config.caption_max_tokens
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id

        self.vision_adapter = ResidualAdapter(hidden_size, config.adapter_ratio, config.dropout)
        self.language_adapter = ResidualAdapter(hidden_size, config.adapter_ratio, config.dropout)
        # Input embeddings and last-layer hidden states live on very different scales: the norm puts
        # both modalities on one scale before the decoder attends over them together.
        self.memory_proj = nn.Linear(hidden_size, d_model) if d_model != hidden_size else nn.Identity()
        self.memory_norm = nn.LayerNorm(d_model)
        self.modality_embed = nn.Embedding(2, d_model)  # 0 = vision token, 1 = text token
        self.query_embed = nn.Embedding(config.num_queries, d_model)
        self.two_stage = config.two_stage
        if self.two_stage:
            self.proposal_proj = nn.Linear(d_model, d_model)
            self.proposal_norm = nn.LayerNorm(d_model)
            self.proposal_box = MLP(d_model, d_model, 4, 3)
            self.proposal_objectness = nn.Linear(d_model, 1)
        self.encoder = _encoder(d_model, config.num_heads, config.encoder_layers, config.dropout)
        # Both work on the token grid, which only the two-stage head reads.
        local, roi = (config.local_layers, config.roi_points) if self.two_stage else (0, 0)
        self.local_tower = LocalTower(d_model, local) if local else None
        self.roi_points = roi
        self.roi_proj = nn.Linear(d_model * roi**2, d_model) if roi else None
        # The tower's pre-merge patches as a second, finer level (FPN-style; docs/tiles.md, "Finer features"):
        # folded into the token grid before the proposals, and RoI-sampled inside each query's reference box.
        self.fine_features = config.fine_features and self.two_stage
        if self.fine_features:
            if patch_dim is None:
                raise ValueError("detection.fine_features needs patch_dim, the vision tower's width before its merger")
            self.fine_in = nn.Sequential(nn.LayerNorm(patch_dim), nn.Linear(patch_dim, d_model), nn.GELU())
            self.fine_fold = nn.Linear(FINE_MERGE**2 * d_model, d_model)
            self.fine_roi = nn.Linear(d_model * roi**2, d_model) if roi else None
        # The pixels inside each query's reference box (docs/tiles.md, "The state"): an MLP whose last layer starts at
        # zero, so a checkpoint without the level answers exactly as before until training moves it.
        self.pixel_points = config.pixel_points if self.two_stage else 0
        self.pixel_box = config.pixel_box
        self.pixel_roi = MLP(pixel_channels * self.pixel_points**2, d_model, d_model, 2) if self.pixel_points else None
        # And around it (config.pixel_context), built by `add_pixel_context`.
        self.pixel_context, self.pixel_context_roi = 0.0, None
        if config.pixel_context and self.pixel_roi is not None:
            self.add_pixel_context(config.pixel_context)
        self.decoder = _decoder(d_model, config.num_heads, config.decoder_layers, config.dropout)
        # The second look at the decoder's own box (config.box_refine): needs the token grid's RoI samples.
        self.box_refine = config.box_refine and self.two_stage and roi > 0
        if self.box_refine:
            self.refine_roi = nn.Linear(d_model * roi**2, d_model)
            self.refine_fine_roi = nn.Linear(d_model * roi**2, d_model) if self.fine_features else None
            self.refine_box = MLP(d_model, d_model, 4, 2)

        self.box_head = MLP(d_model, d_model, 4, 3)
        # Per-query reference box (cxcywh logits) added to the box MLP's output, as in Deformable DETR.
        self.box_reference = nn.Parameter(torch.logit(grid_reference_boxes(config.num_queries)))
        self.objectness_head = nn.Linear(d_model, 1)

        self.caption_in = nn.Linear(hidden_size, d_model)
        self.caption_in_norm = nn.LayerNorm(d_model)
        self.caption_pos = nn.Embedding(config.caption_max_tokens, d_model)
        self.caption_decoder = _decoder(d_model, config.num_heads, config.caption_layers, config.dropout)
        self.caption_out = nn.Linear(d_model, hidden_size)  # then @ E.T: the tied output projection
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # DETR: xavier on every matrix of the transformer; Deformable DETR: zero the last box layer so
        # the first predictions are exactly the reference boxes.
        for module in (self.encoder, self.decoder, self.caption_decoder):
            if module is None:
                continue
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        nn.init.zeros_(self.box_head.layers[-1].weight)
        nn.init.zeros_(self.box_head.layers[-1].bias)
        # RetinaNet: small weights and a prior bias, so every query starts near p = OBJECTNESS_PRIOR.
        nn.init.normal_(self.objectness_head.weight, std=0.01)
        nn.init.constant_(self.objectness_head.bias, -math.log((1 - OBJECTNESS_PRIOR) / OBJECTNESS_PRIOR))
        nn.init.normal_(self.caption_pos.weight, std=0.02)
        if self.two_stage:
            nn.init.zeros_(self.proposal_box.layers[-1].weight)
            nn.init.zeros_(self.proposal_box.layers[-1].bias)
            nn.init.normal_(self.proposal_objectness.weight, std=0.01)
            nn.init.constant_(self.proposal_objectness.bias, -math.log((1 - OBJECTNESS_PRIOR) / OBJECTNESS_PRIOR))
        if self.fine_features:
            # Zero: a checkpoint's outputs stay exactly what they were until training moves them.
            for layer in (self.fine_fold, self.fine_roi):
                if layer is not None:
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
        if self.pixel_roi is not None:
            nn.init.zeros_(self.pixel_roi.layers[-1].weight)
            nn.init.zeros_(self.pixel_roi.layers[-1].bias)
        if self.box_refine:  # the refined box starts exactly at the decoder's
            nn.init.zeros_(self.refine_box.layers[-1].weight)
            nn.init.zeros_(self.refine_box.layers[-1].bias)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The LLM's input embedding, shared (tied) with the caption output projection."""
        return self._token_embedding

    def _param_dtype(self) -> torch.dtype:
        return self.query_embed.weight.dtype

    # --- detection -------------------------------------------------------------------------------

    def forward(
        self,
        vision_embeds: Tensor,
        vision_mask: Tensor,
        text_hidden: Tensor,
        text_mask: Tensor,
        vision_grid_hw: Tensor | None = None,
        fine_maps: Tensor | None = None,
        pixel_maps: Tensor | None = None,
        num_queries: int | None = None,
    ) -> DetectionOutput:
        """Boxes, objectness logits and query vectors for a batch.

        vision_embeds `[B, Nv, H]` (input embeddings at the student image's image-pad positions) with
        vision_mask `[B, Nv]` (True = real token); text_hidden `[B, Nt, H]` (last-layer hidden states)
        with text_mask `[B, Nt]`. vision_grid_hw `[B, 2]`: each image's merged token grid (grid_thw h/2,
        w/2), which gives the vision tokens 2-D sine positions (DETR). A two-stage head (the default) requires
        it, since its proposals sit on that grid; only a one-stage head runs without it, and then its decoder
        can only guess where a vision token sits. fine_maps `[B, Cv, 2 * Hmax, 2 * Wmax]`: the tower's pre-merge
        patches of each image under its token grid (`patch_features.patch_maps`), required with
        `detection.fine_features`. pixel_maps `[B, C, k * Hmax, k * Wmax]`: each image's pixels as the tower received
        them, k pixels a token (`patch_features.pixel_maps`), required with `detection.pixel_points`.
        num_queries: how many of the head's queries to run (None: all). A two-stage head's queries are its best
        proposals in rank order, so fewer keeps the surest; a one-stage head's learned queries have no order.
        """
        if num_queries is not None and not self.runs_queries(num_queries):
            raise ValueError(f"the head runs 1 to its {self.num_queries} queries, and fewer only when two-stage "
                             f"(detection.two_stage), got {num_queries}")
        if self.fine_features and fine_maps is None:
            raise ValueError("detection.fine_features is on: the head needs fine_maps (the tower's pre-merge patches)")
        if self.pixel_points and pixel_maps is None:
            raise ValueError("detection.pixel_points is on: the head needs pixel_maps (the pixels the tower received)")
        dtype = self._param_dtype()
        batch, num_vision = vision_mask.shape
        valid = torch.cat([vision_mask, text_mask], dim=1).bool()
        if not valid.any(dim=1).all():
            empty = (~valid.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"samples {empty} have no valid vision or text token: the head has nothing to attend to")
        memory = torch.cat(
            [self.vision_adapter(vision_embeds.to(dtype)), self.language_adapter(text_hidden.to(dtype))], dim=1
        )
        memory = self.memory_norm(self.memory_proj(memory))
        modality = torch.ones(valid.shape, dtype=torch.long, device=memory.device)
        modality[:, :num_vision] = 0
        memory = memory + self.modality_embed(modality)
        if vision_grid_hw is not None:
            pos = self._vision_positions(vision_grid_hw, vision_mask).to(memory)
            memory = torch.cat([memory[:, :num_vision] + pos, memory[:, num_vision:]], dim=1)
        if self.encoder is not None:
            memory = self.encoder(memory, src_key_padding_mask=~valid)

        if self.two_stage:
            if vision_grid_hw is None:
                raise ValueError("a two-stage head needs vision_grid_hw: its proposals sit on the vision token grid")
            return self._two_stage(memory, valid, num_vision, vision_mask, vision_grid_hw,
                                   fine_maps.to(dtype) if self.fine_features else None,
                                   pixel_maps.to(dtype) if self.pixel_points else None, num_queries or self.num_queries)
        # Conditional/DAB-DETR: a query carries the sine encoding of its reference centre, the same encoding the
        # vision tokens carry, so cross-attention starts local instead of every query reading the same tokens
        # (content-only queries were measured to collapse to one answer on the synthetic set).
        ref_xy = self.box_reference.sigmoid()[:, :2]
        query_pos = sine_encode_points(ref_xy, self.d_model).to(memory.dtype)
        queries = (self.query_embed.weight + query_pos).unsqueeze(0).expand(batch, -1, -1)
        hs = self.decoder(queries, memory, memory_key_padding_mask=~valid)  # [B, Q, D]
        boxes = boxes_from_logits(self.box_head(hs) + self.box_reference, self.box_format)
        return DetectionOutput(boxes=boxes, objectness_logits=self.objectness_head(hs).squeeze(-1), query_hidden=hs)

    def runs_queries(self, num_queries: int) -> bool:
        """Whether `forward` can be asked for this many queries: 1 to all the head's, and only when two-stage (a
        one-stage head's learned queries have no order to keep the surest by)."""
        return self.two_stage and 1 <= num_queries <= self.num_queries

    def _two_stage(self, memory: Tensor, valid: Tensor, num_vision: int, vision_mask: Tensor, grid_hw: Tensor,
                   fine_maps: Tensor | None = None, pixel_maps: Tensor | None = None,
                   num_queries: int | None = None) -> DetectionOutput:
        """Deformable-DETR two-stage: every vision token proposes a box; the best `num_queries` (default: all the
        head's) seed the decoder.

        A proposal is its token's cell plus a learned offset, so what one token learns about "a screw
        sits here" holds at every position (translation-equivariant, like a one-stage detector);
        learned queries alone have to discover each region separately (bench/head_convergence.py: after
        1,000 steps, validation AP50 0.215 vs 0.033). Slots beyond a sample's vision tokens fall back to
        learned queries.
        """
        batch = memory.shape[0]
        vision_mask = vision_mask.bool()
        vis = memory[:, :num_vision]
        maps = fine = None
        if self.local_tower is not None or self.roi_proj is not None or self.fine_features:
            maps = vision_grid(vis, vision_mask, grid_hw)  # [B, D, Hmax, Wmax]
            inside = grid_inside(grid_hw, maps)
            if fine_maps is not None:
                fine = self._fine_level(fine_maps, grid_hw, maps.shape[2:])  # [B, D, 2Hmax, 2Wmax]
                # Each token gains its 2x2 patches' features side by side: where inside the token its object sits.
                folded = F.pixel_unshuffle(fine, FINE_MERGE)  # [B, 4D, Hmax, Wmax]
                maps = maps + self.fine_fold(folded.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) * inside
            if self.local_tower is not None:
                maps = self.local_tower(maps, inside)
            if self.local_tower is not None or fine is not None:
                vis = grid_tokens(maps, vision_mask, grid_hw)
        vis = self.proposal_norm(self.proposal_proj(vis))  # [B, Nv, D]
        cells = self._token_cells(grid_hw, vision_mask).to(vis)  # [B, Nv, 4] cxcywh
        proposals = boxes_from_deltas(cells, self.proposal_box(vis), "cxcywh")  # [B, Nv, 4]
        proposal_logits = self.proposal_objectness(vis).squeeze(-1)  # [B, Nv]

        q = num_queries or self.num_queries
        score = proposal_logits.detach().float().masked_fill(~vision_mask, float("-inf"))
        if num_vision < q:  # fewer tokens than queries: the extra slots can only be learned queries
            score = F.pad(score, (0, q - num_vision), value=float("-inf"))
        if self.query_nms < 1:
            top = distinct_top(score, box_cxcywh_to_xyxy(proposals.detach().float()), q, self.query_nms)  # [B, Q]
        else:
            top = score.topk(q, dim=1).indices  # [B, Q]
        from_token = torch.isfinite(score.gather(1, top))[..., None]  # [B, Q, 1]
        token_idx = top.clamp(max=num_vision - 1)[..., None]
        token_ref = proposals.detach().gather(1, token_idx.expand(-1, -1, 4))
        learned_ref = self.box_reference[:q].sigmoid()[None].to(token_ref)
        ref = torch.where(from_token, token_ref, learned_ref)  # [B, Q, 4] cxcywh
        token_content = vis.gather(1, token_idx.expand(-1, -1, self.d_model))
        content = torch.where(from_token, token_content, torch.zeros_like(token_content)) + self.query_embed.weight[:q]
        query_pos = sine_encode_points(ref[..., :2].clamp(0, 1).reshape(-1, 2), self.d_model).view(batch, q, -1)
        hs = self.decoder(content + query_pos.to(content), memory, memory_key_padding_mask=~valid)  # [B, Q, D]
        if self.roi_proj is not None:
            hs = hs + self.roi_proj(roi_sample(maps, grid_hw, ref.clamp(0, 1), self.roi_points))
        if fine is not None and self.fine_roi is not None:
            hs = hs + self.fine_roi(roi_sample(fine, FINE_MERGE * grid_hw, ref.clamp(0, 1), self.roi_points))
        drawn = boxes_from_deltas(ref, self.box_head(hs), "cxcywh")  # [B, Q, 4]: the decoder's box
        if self.box_refine:
            # Read the grid again where the decoder put the box (detached: the samples' positions take no gradient),
            # then correct it; the correction is composed with the first box, so both box layers learn from the loss.
            look = drawn.detach().clamp(0, 1)
            again = hs + self.refine_roi(roi_sample(maps, grid_hw, look, self.roi_points))
            if self.refine_fine_roi is not None and fine is not None:
                again = again + self.refine_fine_roi(roi_sample(fine, FINE_MERGE * grid_hw, look, self.roi_points))
            drawn = boxes_from_deltas(drawn, self.refine_box(again), "cxcywh")
        named, samples = hs, None
        if pixel_maps is not None:
            # Captions only: the box and objectness losses would otherwise pull the branch towards where the part is,
            # and the state's weaker signal stayed out of it (docs/tiles.md, "The state").
            where = ref if self.pixel_box == "reference" else drawn.detach()
            pixel_hw = self._pixels_per_token(pixel_maps, grid_hw) * grid_hw
            samples = roi_sample(pixel_maps, pixel_hw, where.clamp(0, 1), self.pixel_points)  # [B, Q, C * P * P]
            if self.pixel_context_roi is not None:
                around = torch.cat([where[..., :2], where[..., 2:] * self.pixel_context], dim=-1)  # cxcywh, widened
                samples = torch.cat([samples, roi_sample(pixel_maps, pixel_hw, around.clamp(0, 1), self.pixel_points)],
                                    dim=-1)  # [B, Q, 2 * C * P * P]
            named = hs + self.pixel_level(samples)
        return DetectionOutput(
            boxes=drawn if self.box_format == "cxcywh" else box_cxcywh_to_xyxy(drawn),
            objectness_logits=self.objectness_head(hs).squeeze(-1),
            query_hidden=named,
            proposal_boxes=proposals if self.box_format == "cxcywh" else box_cxcywh_to_xyxy(proposals),
            proposal_logits=proposal_logits,
            proposal_valid=vision_mask,
            proposal_centres=cells[..., :2],
            pixel_samples=samples,
        )

    def add_pixel_context(self, factor: float) -> None:
        """Give the pixel level a second grid over the box widened `factor` times, through an MLP of its own whose last
        layer starts at zero, so the head answers as before until the caption refit fits it: a part's surroundings
        tell an empty screw hole on a BBU's ear from one on a rail (docs/faults_learning.md, "The pixels around the
        box"). The level is frozen: training leaves it at zero and only the refit (train/caption_refit.py), which fits
        copies of its modules, moves it. Trained with the rest from the first step, it lowered AP50 and the whole
        cabinets' faults on both training seeds measured; fitted by the refit alone, it raised AP50 on all three."""
        if self.pixel_roi is None:
            raise ValueError("a pixel context needs the pixel level (detection.pixel_points above 0)")
        if self.pixel_context_roi is not None:
            raise ValueError(f"this head already reads the pixels around its boxes ({self.pixel_context:g} times wider)")
        if factor <= 1:
            raise ValueError(f"the pixel context must widen the box: a factor above 1, got {factor:g}")
        like = self.pixel_roi.layers[-1].weight
        inside = self.pixel_roi.layers[0].in_features
        # Drawn from a generator of its own: a run with the level trains bit for bit as one without (the level adds
        # exact zeros until the refit), and a level added to a finished checkpoint starts where a run's does.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(PIXEL_CONTEXT_SEED)
            level = MLP(inside, self.d_model, self.d_model, 2)
        self.pixel_context = float(factor)
        self.pixel_context_roi = level.to(device=like.device, dtype=like.dtype)
        nn.init.zeros_(self.pixel_context_roi.layers[-1].weight)
        nn.init.zeros_(self.pixel_context_roi.layers[-1].bias)
        self.pixel_context_roi.requires_grad_(False)

    @property
    def pixel_width(self) -> int:
        """How many values the pixel level reads a query (`DetectionOutput.pixel_samples`' last side); 0 without one."""
        if self.pixel_roi is None:
            return 0
        inside = self.pixel_roi.layers[0].in_features
        return inside * (2 if self.pixel_context_roi is not None else 1)

    def pixel_level(self, samples: Tensor) -> Tensor:
        """`[..., pixel_width]` pixel samples -> `[..., d_model]`: the pixel level's share of a caption's query."""
        if self.pixel_context_roi is None:
            return self.pixel_roi(samples)
        inside = self.pixel_roi.layers[0].in_features
        return self.pixel_roi(samples[..., :inside]) + self.pixel_context_roi(samples[..., inside:])

    def _fine_level(self, fine_maps: Tensor, grid_hw: Tensor, coarse_hw: torch.Size) -> Tensor:
        """`[B, Cv, 2Hmax, 2Wmax]` pre-merge patch maps -> `[B, D, 2Hmax, 2Wmax]` at the head's width, zeros on padding."""
        expected = (FINE_MERGE * coarse_hw[0], FINE_MERGE * coarse_hw[1])
        if tuple(fine_maps.shape[2:]) != expected:
            raise ValueError(f"fine maps {tuple(fine_maps.shape[2:])} do not lie under the {tuple(coarse_hw)} token grid "
                             f"(expected {expected})")
        fine = self.fine_in(fine_maps.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return fine * grid_inside(FINE_MERGE * grid_hw, fine)

    @staticmethod
    def _pixels_per_token(pixel_maps: Tensor, grid_hw: Tensor) -> int:
        """How many pixels of `pixel_maps` one token covers per side (28 for Qwen2.5-VL, 32 for the others)."""
        hmax, wmax = int(grid_hw[:, 0].max()), int(grid_hw[:, 1].max())
        k = pixel_maps.shape[3] // wmax
        if k < 1 or pixel_maps.shape[2] != k * hmax or pixel_maps.shape[3] != k * wmax:
            raise ValueError(f"pixel maps {tuple(pixel_maps.shape[2:])} do not lie under the {hmax}x{wmax} token grid")
        return k

    def _token_cells(self, grid_hw: Tensor, vision_mask: Tensor) -> Tensor:
        """`[B, Nv, 4]` cxcywh cell of each valid vision token (raster order); padding gets the whole image."""
        cells = torch.tensor([0.5, 0.5, 1.0, 1.0], device=vision_mask.device).repeat(*vision_mask.shape, 1)
        for b, (h, w) in enumerate(grid_hw.tolist()):
            cells[b, vision_mask[b]] = grid_cells(h, w).to(cells.device)
        return cells

    def _vision_positions(self, grid_hw: Tensor, vision_mask: Tensor) -> Tensor:
        """`[B, Nv, D]`: sine positions on each sample's valid vision tokens, zeros on padding."""
        pos = torch.zeros(*vision_mask.shape, self.d_model, device=vision_mask.device)
        for b, (h, w) in enumerate(grid_hw.tolist()):
            n = int(vision_mask[b].sum())
            if h * w != n:
                raise ValueError(f"sample {b}: vision grid {h}x{w} = {h * w} tokens but vision_mask has {n} valid")
            pos[b, vision_mask[b].bool()] = sine_position_2d((h, w), self.d_model).to(pos.device)
        return pos

    # --- captions --------------------------------------------------------------------------------

    def _check_caption_steps(self, steps: int) -> None:
        """ValueError when a caption of `steps` tokens has no position embedding left for its last tokens."""
        if steps > self.caption_max_tokens:
            raise ValueError(
                f"caption of {steps} tokens exceeds detection.caption_max_tokens ({self.caption_max_tokens})"
            )

    def _caption_hidden(self, query_hidden: Tensor, input_ids: Tensor) -> Tensor:
        """`[M, D]` queries, `[M, T]` decoder input ids -> `[M, T, H]` states before the tied projection."""
        steps = input_ids.shape[1]
        self._check_caption_steps(steps)
        x = self.caption_in_norm(self.caption_in(self.token_embedding(input_ids).to(self._param_dtype())))
        x = x + self.caption_pos.weight[:steps]
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=x.device, dtype=x.dtype)
        # The query is the decoder's only memory: every caption token cross-attends to its own object.
        h = self.caption_decoder(x, query_hidden.unsqueeze(1), tgt_mask=causal, tgt_is_causal=True)
        return self.caption_out(h)

    def _lattice_hidden(self, query_hidden: Tensor, lattice: "CaptionLattice") -> Tensor:
        """`[M, D]` queries -> `[M, N, H]` states at the lattice's N prefixes, each reading only its own prefix."""
        tokens, depth = lattice.tokens.to(query_hidden.device), lattice.depth.to(query_hidden.device)
        x = self.caption_in_norm(self.caption_in(self.token_embedding(tokens).to(self._param_dtype())))  # [N, E]
        x = (x + self.caption_pos.weight[depth]).expand(query_hidden.shape[0], -1, -1)  # [M, N, E]
        mask = torch.zeros(lattice.reads.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~lattice.reads.to(x.device), float("-inf"))  # [N, N]: each prefix attends to its own prefixes only
        h = self.caption_decoder(x, query_hidden.unsqueeze(1), tgt_mask=mask, tgt_is_causal=False)
        return self.caption_out(h)

    def _logits(self, hidden: Tensor) -> Tensor:
        weight = self.token_embedding.weight
        return hidden.to(weight.dtype) @ weight.T

    def shift_right(self, caption_ids: Tensor) -> Tensor:
        """Teacher-forcing input for targets `[M, T]`: `[bos, caption[0], ..., caption[T-2]]`, pads (-100) -> pad id."""
        bos = torch.full_like(caption_ids[:, :1], self.bos_token_id)
        shifted = torch.cat([bos, caption_ids[:, :-1]], dim=1)
        return shifted.masked_fill(shifted < 0, self.pad_token_id)

    def caption_logits(self, query_hidden: Tensor, caption_ids: Tensor) -> Tensor:
        """Teacher-forced logits `[M, T, V]`: position t sees tokens < t and predicts `caption_ids[:, t]`.

        query_hidden `[M, D]` (the matched queries only: all Q x T x V logits would not fit for a
        150k vocabulary); caption_ids `[M, T]` the targets (caption + eos, padded with -100).
        """
        return self._logits(self._caption_hidden(query_hidden, self.shift_right(caption_ids)))

    @torch.no_grad()
    def caption_logprobs(self, query_hidden: Tensor, captions: Sequence[Sequence[int]]) -> Tensor:
        """`[M, L]`: log-probability of each of `L` captions (token ids without eos; eos is scored) for `[M, D]`
        queries, the sum over its tokens: the model's own probability of the whole label, kind and state together.

        The captions share prefixes (a kind, then its states), and a causal decoder's state at a token depends on the
        tokens before it only: the decoder and the vocabulary's log-softmax run once at each distinct prefix
        (`CaptionLattice`), 29 positions a query on the demo's 19 labels instead of 76 (docs/design.md, "Scoring
        every label")."""
        lattice = _lattice(tuple(tuple(c) for c in captions), self.bos_token_id, self.eos_token_id)
        self._check_caption_steps(lattice.targets.shape[1])
        m, n = query_hidden.shape[0], len(captions)
        if m == 0:
            return query_hidden.new_zeros(0, n, dtype=torch.float32)
        where, targets = lattice.where.to(query_hidden.device), lattice.targets.to(query_hidden.device)  # [L, T]
        # [chunk, N, V] log-probabilities at a time: about 16 M floats, whatever the vocabulary
        chunk = max(1, (1 << 24) // (lattice.tokens.shape[0] * self.token_embedding.weight.shape[0]))
        sums = []
        for start in range(0, m, chunk):
            logp = self._logits(self._lattice_hidden(query_hidden[start:start + chunk], lattice)).float().log_softmax(-1)
            picked = logp[:, where.flatten(), targets.clamp(min=0).flatten()].view(-1, *targets.shape)  # [c, L, T]
            sums.append(picked.masked_fill(targets < 0, 0.0).sum(-1))
        return torch.cat(sums)

    @torch.no_grad()
    def generate_captions(self, query_hidden: Tensor, max_tokens: int | None = None,
                          captions: Sequence[Sequence[int]] | None = None) -> tuple[Tensor, Tensor]:
        """Greedy captions for `[M, D]` queries -> ids `[M, T]`, token log-probabilities `[M, T]`.

        Each row ends with its eos (kept: its probability is part of the caption's confidence); after
        it come `pad_token_id` with log-probability 0. T <= max_tokens (default caption_max_tokens).

        With `captions` (the token ids of each caption allowed, without eos; those too long to end within
        max_tokens are left out), every row writes one of them: each step takes the most likely token that
        continues one, and records the model's own log-probability of it, so a caption the model did not
        want still scores low (docs/constrained_decoding.md, "Scores"). Without, a row may write anything,
        an empty caption too.
        """
        max_tokens = self.caption_max_tokens if max_tokens is None else min(max_tokens, self.caption_max_tokens)
        follow = None if captions is None else caption_prefixes(captions, self.eos_token_id, max_tokens)
        m = query_hidden.shape[0]
        inputs = torch.full((m, 1), self.bos_token_id, dtype=torch.long, device=query_hidden.device)
        ids, logprobs = [], []
        finished = torch.zeros(m, dtype=torch.bool, device=query_hidden.device)
        # No KV cache: captions are a few tokens long, recomputing the prefix costs less than the bookkeeping.
        for _ in range(max_tokens):
            if m == 0 or finished.all():
                break
            logp = self._logits(self._caption_hidden(query_hidden, inputs)[:, -1]).float().log_softmax(-1)
            if follow is None:
                best_logp, token = logp.max(dim=-1)
            else:
                token = torch.tensor([_best_of(logp[row], follow[tuple(inputs[row, 1:].tolist())]) if not done else 0
                                      for row, done in enumerate(finished.tolist())], device=logp.device)
                best_logp = logp.gather(-1, token[:, None]).squeeze(-1)
            token = token.masked_fill(finished, self.pad_token_id)
            ids.append(token)
            logprobs.append(best_logp.masked_fill(finished, 0.0))
            finished |= token == self.eos_token_id
            inputs = torch.cat([inputs, token[:, None]], dim=1)
        if not ids:
            return inputs.new_empty(m, 0), query_hidden.new_empty(m, 0, dtype=torch.float32)
        return torch.stack(ids, dim=1), torch.stack(logprobs, dim=1)


@dataclass(frozen=True)
class CaptionLattice:
    """Captions laid out for teacher forcing as a tree of their distinct prefixes.

    Caption l's decoder input is `[bos, c_0, ..., c_{n-1}]`: position t reads the first t + 1 of them and predicts
    `c_t` (eos at t = n). A causal decoder's state at t depends on those inputs alone, so captions that begin alike
    share the states of their common beginning: each distinct prefix is one position of the lattice, attending to the
    prefixes it extends, at the position embedding of its depth.
    """

    tokens: Tensor  # [N] the last input token of each distinct prefix
    depth: Tensor  # [N] its position in the caption (0: bos)
    reads: Tensor  # [N, N] bool: prefix i extends prefix j (or is it)
    where: Tensor  # [L, T] for each caption and position, the prefix it reads (0 past its end)
    targets: Tensor  # [L, T] each caption's tokens and eos, -100 past its end

    @classmethod
    def of(cls, captions: Sequence[Sequence[int]], bos: int, eos: int) -> "CaptionLattice":
        """The lattice of `captions` (token ids without eos)."""
        inputs = [(bos, *caption) for caption in captions]
        steps = max(len(r) for r in inputs)
        index: dict[tuple[int, ...], int] = {}  # prefix -> its position in the lattice
        for r in inputs:
            for t in range(1, len(r) + 1):
                index.setdefault(r[:t], len(index))
        reads = torch.zeros(len(index), len(index), dtype=torch.bool)
        for prefix, i in index.items():
            for t in range(1, len(prefix) + 1):
                reads[i, index[prefix[:t]]] = True
        where = torch.zeros(len(inputs), steps, dtype=torch.long)
        targets = torch.full((len(inputs), steps), -100, dtype=torch.long)
        for l, (r, caption) in enumerate(zip(inputs, captions)):
            where[l, :len(r)] = torch.tensor([index[r[:t + 1]] for t in range(len(r))], dtype=torch.long)
            targets[l, :len(r)] = torch.tensor([*caption, eos], dtype=torch.long)
        tokens = torch.tensor([prefix[-1] for prefix in index], dtype=torch.long)
        depth = torch.tensor([len(prefix) - 1 for prefix in index], dtype=torch.long)
        return cls(tokens, depth, reads, where, targets)


@functools.lru_cache(maxsize=8)
def _lattice(captions: tuple[tuple[int, ...], ...], bos: int, eos: int) -> CaptionLattice:
    """The lattice of a label set, built once: every photo of a prediction run scores the same labels (its tensors are
    read, never written)."""
    return CaptionLattice.of(captions, bos, eos)


def caption_prefixes(captions: Sequence[Sequence[int]], eos_token_id: int, max_tokens: int) -> dict[tuple[int, ...], list[int]]:
    """Every prefix of the allowed captions (each followed by eos) -> the tokens that may come next.

    Captions longer than `max_tokens` with their eos cannot end and are left out; none left is an error.
    """
    follow: dict[tuple[int, ...], list[int]] = {}
    for caption in captions:
        tokens = [*caption, eos_token_id]
        if len(tokens) > max_tokens:
            continue
        for k, token in enumerate(tokens):
            nxt = follow.setdefault(tuple(tokens[:k]), [])
            if token not in nxt:
                nxt.append(token)
    if not follow:
        raise ValueError(f"no caption allowed fits in {max_tokens} tokens (detection.caption_max_tokens) with its end")
    return follow


def _best_of(logp: Tensor, allowed: list[int]) -> int:
    """The most likely of the `allowed` token ids under the `[V]` log-probabilities."""
    return allowed[int(logp[allowed].argmax())]
