"""The detection head: shapes, masking, the tied caption projection, causality and greedy decoding."""

import pytest
import torch
from torch import nn

from bbuvl.config import CaptionRefitConfig, DetectionConfig
from bbuvl.model.detection_head import (
    CaptionLattice, DetectionHead, distinct_top, grid_reference_boxes, grid_tokens, roi_sample, sine_position_2d, vision_grid,
)

BOS, EOS, PAD = 1, 2, 0
HIDDEN, VOCAB = 64, 200
GRID = torch.tensor([[3, 4], [4, 3]])  # features() has 12 vision tokens per sample


def make_head(box_format="cxcywh", num_queries=10, seed=0, two_stage=False, **kw) -> tuple[DetectionHead, nn.Embedding]:
    # Learned queries by default: most tests here are about what both query kinds share (memory,
    # captions, decoding) and need no token grid; the two-stage tests below ask for it.
    torch.manual_seed(seed)
    emb = nn.Embedding(VOCAB, HIDDEN)
    cfg = DetectionConfig(
        num_queries=num_queries, decoder_layers=2, caption_layers=2, num_heads=4, dropout=0.0,
        caption_max_tokens=10, box_format=box_format, two_stage=two_stage, **kw,
    )
    return DetectionHead(HIDDEN, emb, cfg, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD).eval(), emb


def features(batch=2, nv=12, nt=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, nv, HIDDEN, generator=g), torch.ones(batch, nv, dtype=torch.bool),
        torch.randn(batch, nt, HIDDEN, generator=g), torch.ones(batch, nt, dtype=torch.bool),
    )


@pytest.mark.parametrize("box_format", ["cxcywh", "xyxy"])
def test_forward_gives_one_box_and_logit_per_query(box_format):
    head, _ = make_head(box_format)
    out = head(*features())
    assert out.boxes.shape == (2, 10, 4)
    assert out.objectness_logits.shape == (2, 10)
    assert out.query_hidden.shape == (2, 10, head.d_model)
    if box_format == "xyxy":
        assert (out.boxes[..., 2:] >= out.boxes[..., :2]).all()
    else:
        assert ((out.boxes >= 0) & (out.boxes <= 1)).all()


def test_initial_boxes_are_spread_over_the_image_and_objectness_starts_near_one_percent():
    head, _ = make_head(num_queries=16)
    out = head(*features())
    assert torch.allclose(out.boxes[0], grid_reference_boxes(16), atol=1e-5)
    centres = out.boxes[0, :, :2]
    assert torch.cdist(centres, centres).add(torch.eye(16)).min() > 0.2  # no two queries start on one spot
    assert torch.allclose(out.objectness_logits.sigmoid(), torch.full((2, 16), 0.01), atol=2e-3)


def test_padded_memory_tokens_do_not_change_predictions():
    head, _ = make_head()
    vis, vm, txt, tm = features(batch=1, nv=12, nt=7)
    alone = head(vis, vm, txt, tm)
    vis_p = torch.cat([vis, torch.randn(1, 5, HIDDEN) * 100], 1)
    txt_p = torch.cat([txt, torch.randn(1, 3, HIDDEN) * 100], 1)
    vm_p = torch.cat([vm, torch.zeros(1, 5, dtype=torch.bool)], 1)
    tm_p = torch.cat([tm, torch.zeros(1, 3, dtype=torch.bool)], 1)
    padded = head(vis_p, vm_p, txt_p, tm_p)
    assert torch.allclose(alone.boxes, padded.boxes, atol=1e-5)
    assert torch.allclose(alone.objectness_logits, padded.objectness_logits, atol=1e-5)


def test_a_sample_with_nothing_to_attend_to_is_an_error():
    head, _ = make_head()
    vis, vm, txt, tm = features()
    vm[1], tm[1] = False, False
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        head(vis, vm, txt, tm)


def test_vision_grid_positions_change_the_output_and_must_match_the_token_count():
    head, _ = make_head()
    vis, vm, txt, tm = features(nv=12)
    plain = head(vis, vm, txt, tm).query_hidden
    placed = head(vis, vm, txt, tm, vision_grid_hw=torch.tensor([[3, 4], [4, 3]])).query_hidden
    assert not torch.allclose(plain, placed)
    with pytest.raises(ValueError, match="3x5 = 15 tokens but vision_mask has 12"):
        head(vis, vm, txt, tm, vision_grid_hw=torch.tensor([[3, 5], [4, 3]]))


def test_sine_positions_differ_between_grid_cells():
    pos = sine_position_2d((3, 4), 32)
    assert pos.shape == (12, 32)
    assert torch.cdist(pos, pos).add(torch.eye(12)).min() > 0.1


def test_token_embedding_is_referenced_not_registered():
    head, emb = make_head()
    assert head.token_embedding is emb
    assert all(p is not emb.weight for p in head.parameters())
    assert all(v.shape[0] != VOCAB for v in head.state_dict().values())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_head_for_the_3b_model_has_no_vocabulary_sized_matrix():
    emb = nn.Embedding(151936, 2048, device="meta")  # the 3B's embedding; meta: no 1.2 GB allocation
    head = DetectionHead(2048, emb, DetectionConfig(), bos_token_id=151644, eos_token_id=151645, pad_token_id=151643)
    total = sum(p.numel() for p in head.parameters())
    assert total < 100_000_000
    assert all(151936 not in p.shape for p in head.parameters())


def test_mismatched_embedding_width_is_an_error():
    with pytest.raises(ValueError, match="token embedding width 32 != hidden_size 64"):
        DetectionHead(64, nn.Embedding(10, 32), DetectionConfig(num_heads=4), 1, 2, 0)


def test_shift_right_puts_bos_first_and_turns_padding_into_pad_tokens():
    head, _ = make_head()
    caption = torch.tensor([[5, 6, 7, EOS], [8, EOS, -100, -100]])
    assert head.shift_right(caption).tolist() == [[BOS, 5, 6, 7], [BOS, 8, EOS, PAD]]


def test_caption_logits_at_position_t_cannot_see_token_t():
    # docs/design.md, "Captions are decoded, not copied". Position t must predict caption[t] from
    # caption[:t] only: changing caption[t:] leaves logits[:t + 1] as they were.
    head, _ = make_head()
    query = head(*features()).query_hidden[:, 0]  # [2, D]
    caption = torch.tensor([[11, 12, 13, 14, EOS], [21, 22, 23, 24, EOS]])
    base = head.caption_logits(query, caption)
    assert base.shape == (2, 5, VOCAB)
    for t in range(5):
        changed = caption.clone()
        changed[:, t:] = 99
        logits = head.caption_logits(query, changed)
        assert torch.allclose(logits[:, : t + 1], base[:, : t + 1], atol=1e-5), f"position {t} saw its own target"
        if t + 1 < 5:
            assert not torch.allclose(logits[:, t + 1], base[:, t + 1]), f"position {t + 1} ignores token {t}"


def test_caption_logits_use_the_tied_embedding_as_output_projection():
    head, emb = make_head()
    query = head(*features()).query_hidden[:, 0]
    caption = torch.tensor([[11, 12, EOS], [21, 22, EOS]])
    hidden = head.caption_out(head.caption_decoder(
        head.caption_in_norm(head.caption_in(emb(head.shift_right(caption)))) + head.caption_pos.weight[:3],
        query[:, None], tgt_mask=nn.Transformer.generate_square_subsequent_mask(3), tgt_is_causal=True,
    ))
    assert torch.allclose(head.caption_logits(query, caption), hidden @ emb.weight.T, atol=1e-5)


def test_generate_stops_at_eos_and_pads_after_it():
    head, emb = make_head()
    with torch.no_grad():  # make every step answer eos: output = 10 * E[eos], whose best match is eos itself
        head.caption_out.weight.zero_()
        head.caption_out.bias.copy_(10 * emb.weight[EOS])
    ids, logprobs = head.generate_captions(head(*features()).query_hidden[0, :3], max_tokens=6)
    assert ids.tolist() == [[EOS], [EOS], [EOS]]
    assert (logprobs <= 0).all() and logprobs.shape == (3, 1)


def test_greedy_generation_agrees_with_teacher_forcing_on_its_own_output():
    head, _ = make_head(seed=3)
    query = head(*features()).query_hidden[0, :4]
    ids, logprobs = head.generate_captions(query, max_tokens=8)
    assert ids.shape == logprobs.shape and ids.shape[1] <= 8
    logits = head.caption_logits(query, ids).log_softmax(-1)
    best_logp, best = logits.max(-1)
    for m in range(4):
        row = ids[m].tolist()
        end = row.index(EOS) + 1 if EOS in row else len(row)
        assert best[m, :end].tolist() == row[:end]
        assert torch.allclose(best_logp[m, :end], logprobs[m, :end], atol=1e-4)
        assert all(v == PAD for v in row[end:]) and (logprobs[m, end:] == 0).all()


def test_constrained_captions_are_allowed_ones_even_when_the_head_would_end_at_once():
    head, emb = make_head()
    with torch.no_grad():  # every unconstrained caption would be empty: eos first
        head.caption_out.weight.zero_()
        head.caption_out.bias.copy_(10 * emb.weight[EOS])
    query = head(*features()).query_hidden[0, :3]
    allowed = [[11, 12], [11, 13, 14], [21]]
    ids, logprobs = head.generate_captions(query, max_tokens=6, captions=allowed)
    for m in range(3):
        row = ids[m].tolist()
        end = row.index(EOS)
        assert row[:end] in allowed and all(v == PAD for v in row[end + 1:])
    own = head.caption_logits(query, ids.masked_fill(ids == PAD, -100)).log_softmax(-1)  # the model's own log-probabilities
    chosen = own.gather(-1, ids.clamp(min=0)[..., None]).squeeze(-1)
    assert torch.allclose(chosen.masked_fill(ids == PAD, 0.0), logprobs, atol=1e-4)


def test_constrained_greedy_follows_the_head_wherever_it_is_allowed_to():
    head, _ = make_head(seed=3)
    query = head(*features()).query_hidden[0, :6]
    free_ids, free_logp = head.generate_captions(query, max_tokens=8)
    assert free_ids.shape[1] >= 3 and not (free_ids[:, :3] == EOS).any()
    allowed = [row[:3] for row in free_ids.tolist()]  # what each row writes first, made a whole caption
    ids, logp = head.generate_captions(query, max_tokens=8, captions=allowed)
    assert ids[:, :3].tolist() == allowed and (ids[:, 3] == EOS).all()
    assert torch.allclose(logp[:, :3], free_logp[:, :3], atol=1e-5)


def test_no_allowed_caption_fitting_is_an_error():
    head, _ = make_head()
    with pytest.raises(ValueError, match="no caption allowed fits in 2 tokens"):
        head.generate_captions(torch.randn(1, head.d_model), max_tokens=2, captions=[[5, 6, 7]])


def test_generating_for_no_queries_returns_empty_tensors():
    head, _ = make_head()
    ids, logprobs = head.generate_captions(torch.empty(0, head.d_model))
    assert ids.shape == (0, 0) and logprobs.shape == (0, 0)


def test_captions_longer_than_the_configured_maximum_are_an_error():
    head, _ = make_head()
    with pytest.raises(ValueError, match="exceeds detection.caption_max_tokens"):
        head.caption_logits(torch.randn(1, head.d_model), torch.full((1, 11), 5))


def test_d_model_narrower_than_hidden_projects_in_and_out():
    torch.manual_seed(0)
    emb = nn.Embedding(VOCAB, HIDDEN)
    head = DetectionHead(HIDDEN, emb, DetectionConfig(num_queries=4, num_heads=4), BOS, EOS, PAD, d_model=32)
    out = head(*features(), vision_grid_hw=GRID)
    assert out.query_hidden.shape == (2, 4, 32)
    assert head.caption_logits(out.query_hidden[0], torch.tensor([[5, EOS]] * 4)).shape == (4, 2, VOCAB)


# --- two-stage queries -------------------------------------------------------------------------

def test_two_stage_gives_one_proposal_per_vision_token_starting_on_its_cell():
    head, _ = make_head(two_stage=True, num_queries=5)
    out = head(*features(), vision_grid_hw=GRID)
    assert out.boxes.shape == (2, 5, 4) and out.query_hidden.shape == (2, 5, head.d_model)
    assert out.proposal_boxes.shape == (2, 12, 4) and out.proposal_logits.shape == (2, 12)
    # Zero-initialised offsets: sample 0's first proposal is the top-left cell of its 3x4 grid.
    assert torch.allclose(out.proposal_boxes[0, 0], torch.tensor([0.125, 1 / 6, 0.25, 1 / 3]), atol=1e-5)
    assert torch.allclose(out.proposal_boxes[1, -1], torch.tensor([5 / 6, 0.875, 1 / 3, 0.25]), atol=1e-5)
    assert torch.allclose(out.proposal_logits.sigmoid(), torch.full((2, 12), 0.01), atol=2e-3)


def test_two_stage_queries_start_on_the_most_confident_proposals():
    head, _ = make_head(two_stage=True, num_queries=4)
    out = head(*features(), vision_grid_hw=GRID)
    # The box MLP's last layer starts at zero, so each query's box is still exactly its reference:
    # the proposal of one of the four tokens with the highest objectness, best first.
    for b in range(2):
        top = out.proposal_logits[b].topk(4).indices
        assert torch.allclose(out.boxes[b], out.proposal_boxes[b, top], atol=1e-6)


def test_fewer_queries_run_the_surest_proposals_and_all_of_them_is_the_default():
    head, _ = make_head(two_stage=True, num_queries=4)
    full = head(*features(), vision_grid_hw=GRID)
    assert torch.equal(head(*features(), vision_grid_hw=GRID, num_queries=4).boxes, full.boxes)
    fewer = head(*features(), vision_grid_hw=GRID, num_queries=2)
    assert fewer.boxes.shape[:2] == (2, 2) and fewer.query_hidden.shape[:2] == (2, 2)
    for b in range(2):  # each box still its reference: the proposals of the two surest tokens, best first
        top = fewer.proposal_logits[b].topk(2).indices
        assert torch.allclose(fewer.boxes[b], fewer.proposal_boxes[b, top], atol=1e-6)
    for wrong in (0, 5):
        with pytest.raises(ValueError, match="1 to its 4 queries"):
            head(*features(), vision_grid_hw=GRID, num_queries=wrong)
    learned, _ = make_head(num_queries=4)  # one-stage: learned queries have no order to keep the surest by
    with pytest.raises(ValueError, match="two-stage"):
        learned(*features(), vision_grid_hw=GRID, num_queries=2)


def test_distinct_queries_skip_proposals_a_better_one_overlaps_then_fill_with_the_best_of_them():
    # Tokens 0-2 propose one big part (nested boxes), token 3 a small part beside it, token 4 a second small part.
    boxes = torch.tensor([[[0.0, 0.0, 0.6, 0.6], [0.0, 0.0, 0.58, 0.6], [0.02, 0.0, 0.6, 0.6],
                           [0.7, 0.7, 0.8, 0.8], [0.85, 0.1, 0.95, 0.2]]])
    score = torch.tensor([[5.0, 4.0, 3.0, 1.0, 0.5]])
    assert score.topk(3).indices.tolist() == [[0, 1, 2]]  # plain top-k: three queries on the big part
    assert distinct_top(score, boxes, 3, 0.7).tolist() == [[0, 3, 4]]
    # More queries than distinct proposals: the overlapped ones follow, best first.
    assert distinct_top(score, boxes, 5, 0.7).tolist() == [[0, 3, 4, 1, 2]]
    # Slots that are no token (-inf) come last and are never taken twice.
    padded = torch.cat([score, torch.full((1, 2), float("-inf"))], 1)
    top = distinct_top(padded, boxes, 7, 0.7)
    assert top[0, :5].tolist() == [0, 3, 4, 1, 2] and sorted(top[0, 5:].tolist()) == [5, 6]


def test_distinct_queries_change_nothing_where_no_proposals_overlap():
    head, _ = make_head(two_stage=True, num_queries=4)
    plain = head(*features(), vision_grid_hw=GRID)
    head.query_nms = 0.7  # the untrained proposals are the tokens' own cells, which do not overlap
    distinct = head(*features(), vision_grid_hw=GRID)
    assert torch.equal(plain.boxes, distinct.boxes)


def test_two_stage_needs_the_token_grid():
    head, _ = make_head(two_stage=True)
    with pytest.raises(ValueError, match="needs vision_grid_hw"):
        head(*features())


LOCAL = [{"local_layers": 0, "roi_points": 0}, {"local_layers": 2, "roi_points": 0}, {"local_layers": 1, "roi_points": 3}]


@pytest.mark.parametrize("local", LOCAL)
def test_two_stage_ignores_padding_tokens_and_fills_missing_slots_with_learned_queries(local):
    head, _ = make_head(two_stage=True, num_queries=16, **local)  # more queries than the 12 vision tokens
    vis, vm, txt, tm = features(batch=1)
    alone = head(vis, vm, txt, tm, vision_grid_hw=GRID[:1])
    vis_p = torch.cat([vis, torch.randn(1, 6, HIDDEN) * 100], 1)
    vm_p = torch.cat([vm, torch.zeros(1, 6, dtype=torch.bool)], 1)
    padded = head(vis_p, vm_p, txt, tm, vision_grid_hw=GRID[:1])
    assert alone.boxes.shape == padded.boxes.shape == (1, 16, 4)
    assert torch.allclose(alone.boxes, padded.boxes, atol=1e-5)
    assert torch.allclose(alone.objectness_logits, padded.objectness_logits, atol=1e-5)
    assert padded.proposal_valid.tolist() == [[True] * 12 + [False] * 6]


def _coordinate_tokens(grid_hw: torch.Tensor, nv: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens whose features are their own (row, col), raster order, padded to `nv`."""
    vis = torch.zeros(len(grid_hw), nv, 2)
    mask = torch.zeros(len(grid_hw), nv, dtype=torch.bool)
    for b, (h, w) in enumerate(grid_hw.tolist()):
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        vis[b, : h * w] = torch.stack([rows.flatten(), cols.flatten()], -1).float()
        mask[b, : h * w] = True
    return vis, mask


def test_token_grids_round_trip_with_images_of_different_sizes():
    grid_hw = torch.tensor([[2, 3], [3, 4]])
    vis, mask = _coordinate_tokens(grid_hw, 12)
    maps = vision_grid(vis, mask, grid_hw)
    assert maps.shape == (2, 2, 3, 4)
    assert maps[0, :, 2].abs().sum() == 0 and maps[0, :, :, 3].abs().sum() == 0  # outside image 0: zeros
    assert maps[1, :, 2, 3].tolist() == [2.0, 3.0]  # row 2, col 3 sits at row 2, col 3
    assert torch.equal(grid_tokens(maps, mask, grid_hw), vis)


def test_roi_samples_read_the_cells_under_each_box_in_each_images_own_frame():
    grid_hw = torch.tensor([[2, 3], [3, 4]])
    vis, mask = _coordinate_tokens(grid_hw, 12)
    maps = vision_grid(vis, mask, grid_hw)
    # A tiny box on the centre of image 0 (between its rows, on its middle column) and on cell (1, 2) of image 1.
    boxes = torch.tensor([[[0.5, 0.5, 0.01, 0.01]], [[2.5 / 4, 1.5 / 3, 0.01, 0.01]]])
    assert torch.allclose(roi_sample(maps, grid_hw, boxes, 1), torch.tensor([[[0.5, 1.0]], [[1.0, 2.0]]]), atol=1e-4)
    # A 2x2 grid of samples on the box covering image 1's left half: the centres of its quarters.
    half = torch.tensor([[[0.5, 0.5, 1.0, 1.0]], [[0.25, 0.5, 0.5, 1.0]]])
    s = roi_sample(maps, grid_hw, half, 2).view(2, 1, 2, 2, 2)[1, 0]  # [D, P, P]
    # x = 1/8, 3/8 of 4 cells are the centres of columns 0 and 1; y = 1/4, 3/4 of 3 cells fall a quarter cell
    # below row 0's centre and a quarter above row 2's.
    assert torch.allclose(s[1], torch.tensor([[0.0, 1.0], [0.0, 1.0]]), atol=1e-4)
    assert torch.allclose(s[0], torch.tensor([[0.25, 0.25], [1.75, 1.75]]), atol=1e-4)


@pytest.mark.parametrize("local", LOCAL[1:])
def test_local_layers_give_each_image_of_a_batch_the_answer_it_gets_alone(local):
    head, _ = make_head(two_stage=True, num_queries=5, **local)
    vis, vm, txt, tm = features(batch=2)
    vm[1, 9:] = False  # image 1 is a 3x3 grid: its map is padded to image 0's 3x4
    grid_hw = torch.tensor([[3, 4], [3, 3]])
    both = head(vis, vm, txt, tm, vision_grid_hw=grid_hw)
    alone = head(vis[1:, :9], vm[1:, :9], txt[1:], tm[1:], vision_grid_hw=grid_hw[1:])
    assert torch.allclose(both.boxes[1], alone.boxes[0], atol=1e-5)
    assert torch.allclose(both.objectness_logits[1], alone.objectness_logits[0], atol=1e-5)


def test_the_encoder_layer_computes_what_the_stock_layer_does_in_training_and_inference():
    from bbuvl.model.detection_head import _EncoderLayer

    torch.manual_seed(0)
    kw = dict(dim_feedforward=128, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    stock, ours = nn.TransformerEncoderLayer(32, 4, **kw), _EncoderLayer(32, 4, **kw)
    ours.load_state_dict(stock.state_dict())  # the same parameter names: old checkpoints load as they are
    x = torch.randn(3, 20, 32)
    pad = torch.zeros(3, 20, dtype=torch.bool)
    pad[1, 15:] = True
    torch.testing.assert_close(ours(x, src_key_padding_mask=pad), stock(x, src_key_padding_mask=pad))  # training path
    stock.eval(), ours.eval()
    with torch.inference_mode():  # the stock layer takes PyTorch's fused kernel here; ours the module path
        fused, plain = stock(x, src_key_padding_mask=pad), ours(x, src_key_padding_mask=pad)
    real = ~pad
    torch.testing.assert_close(plain[real], fused[real], atol=1e-5, rtol=1e-5)


# --- finer (pre-merge) features ----------------------------------------------------------------

PATCH_DIM = 24


def fine_maps_for(grid_hw: torch.Tensor, seed: int = 3) -> torch.Tensor:
    """Random pre-merge maps `[B, PATCH_DIM, 2Hmax, 2Wmax]`, zero outside each image's own 2h x 2w."""
    g = torch.Generator().manual_seed(seed)
    hmax, wmax = (int(v) for v in grid_hw.max(0).values)
    maps = torch.randn(len(grid_hw), PATCH_DIM, 2 * hmax, 2 * wmax, generator=g)
    for b, (h, w) in enumerate(grid_hw.tolist()):
        maps[b, :, 2 * h:], maps[b, :, :, 2 * w:] = 0, 0
    return maps


def fine_head(num_queries=5, seed=0, **kw) -> DetectionHead:
    torch.manual_seed(seed)
    cfg = DetectionConfig(num_queries=num_queries, decoder_layers=2, caption_layers=2, num_heads=4, dropout=0.0,
                          caption_max_tokens=10, fine_features=True, **kw)
    return DetectionHead(HIDDEN, nn.Embedding(VOCAB, HIDDEN), cfg, bos_token_id=BOS, eos_token_id=EOS,
                         pad_token_id=PAD, patch_dim=PATCH_DIM).eval()


def _nudge_fine_projections(head: DetectionHead) -> None:
    """Move the zero-initialised fine projections, as training would."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for layer in (head.fine_fold, head.fine_roi):
            if layer is not None:  # no fine RoI with roi_points 0
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.05)


@pytest.mark.parametrize("local", LOCAL)
def test_fine_features_start_exactly_where_the_head_without_them_is(local):
    off, _ = make_head(two_stage=True, num_queries=5, **local)
    on = fine_head(**local)
    missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("fine_") for k in missing)
    vis, vm, txt, tm = features(batch=2)
    vm[1, 9:] = False
    grid_hw = torch.tensor([[3, 4], [3, 3]])
    a = off(vis, vm, txt, tm, vision_grid_hw=grid_hw)
    b = on(vis, vm, txt, tm, vision_grid_hw=grid_hw, fine_maps=fine_maps_for(grid_hw))
    for name in ("boxes", "objectness_logits", "query_hidden"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # Proposals on padding tokens are no proposals (proposal_valid is False there, nothing reads them).
    assert torch.equal(a.proposal_valid, b.proposal_valid)
    assert torch.equal(a.proposal_boxes[vm], b.proposal_boxes[vm]) and torch.equal(a.proposal_logits[vm], b.proposal_logits[vm])


def test_fine_features_train_from_zero_and_then_change_the_answer():
    head = fine_head(roi_points=2).train()
    vis, vm, txt, tm = features(batch=2)
    grid_hw = GRID
    fine = fine_maps_for(grid_hw)
    out = head(vis, vm, txt, tm, vision_grid_hw=grid_hw, fine_maps=fine)
    (out.boxes.sum() + out.proposal_logits.sum() + out.objectness_logits.sum()).backward()
    for layer in (head.fine_fold, head.fine_roi):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    head.eval()
    _nudge_fine_projections(head)
    moved = head(vis, vm, txt, tm, vision_grid_hw=grid_hw, fine_maps=fine)
    other = head(vis, vm, txt, tm, vision_grid_hw=grid_hw, fine_maps=fine_maps_for(grid_hw, seed=4))
    assert not torch.allclose(moved.proposal_logits, other.proposal_logits)
    assert not torch.allclose(moved.query_hidden, other.query_hidden)


@pytest.mark.parametrize("local", LOCAL)
def test_fine_features_give_each_image_of_a_batch_the_answer_it_gets_alone(local):
    head = fine_head(**local)
    _nudge_fine_projections(head)
    vis, vm, txt, tm = features(batch=2)
    vm[1, 9:] = False  # image 1 is a 3x3 grid padded to image 0's 3x4, its fine map to 6x8
    grid_hw = torch.tensor([[3, 4], [3, 3]])
    fine = fine_maps_for(grid_hw)
    fine[1, :, 6:], fine[1, :, :, 6:] = 100.0, 100.0  # whatever lies on the padding must not matter
    both = head(vis, vm, txt, tm, vision_grid_hw=grid_hw, fine_maps=fine)
    alone = head(vis[1:, :9], vm[1:, :9], txt[1:], tm[1:], vision_grid_hw=grid_hw[1:], fine_maps=fine[1:, :, :6, :6])
    assert torch.allclose(both.boxes[1], alone.boxes[0], atol=1e-5)
    assert torch.allclose(both.objectness_logits[1], alone.objectness_logits[0], atol=1e-5)
    assert torch.allclose(both.proposal_logits[1, :9], alone.proposal_logits[0], atol=1e-5)


def test_fine_features_need_the_towers_width_and_maps_under_the_token_grid():
    cfg = DetectionConfig(num_queries=5, num_heads=4, fine_features=True)
    with pytest.raises(ValueError, match="needs patch_dim"):
        DetectionHead(HIDDEN, nn.Embedding(VOCAB, HIDDEN), cfg, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    head = fine_head()
    vis, vm, txt, tm = features()
    with pytest.raises(ValueError, match="needs fine_maps"):
        head(vis, vm, txt, tm, vision_grid_hw=GRID)
    with pytest.raises(ValueError, match="do not lie under"):
        head(vis, vm, txt, tm, vision_grid_hw=GRID, fine_maps=torch.zeros(2, PATCH_DIM, 4, 4))


# --- the pixel level -----------------------------------------------------------------------------

PIXELS_PER_TOKEN = 4  # a toy token of 4 x 4 pixels


def pixel_maps_for(grid_hw: torch.Tensor, seed: int = 5) -> torch.Tensor:
    """Random pixels `[B, 3, k Hmax, k Wmax]`, zero outside each image's own k h x k w."""
    g = torch.Generator().manual_seed(seed)
    k = PIXELS_PER_TOKEN
    hmax, wmax = (int(v) for v in grid_hw.max(0).values)
    maps = torch.randn(len(grid_hw), 3, k * hmax, k * wmax, generator=g)
    for b, (h, w) in enumerate(grid_hw.tolist()):
        maps[b, :, k * h:], maps[b, :, :, k * w:] = 0, 0
    return maps


def pixel_head(num_queries=5, seed=0, **kw) -> DetectionHead:
    torch.manual_seed(seed)
    cfg = DetectionConfig(num_queries=num_queries, decoder_layers=2, caption_layers=2, num_heads=4, dropout=0.0,
                          caption_max_tokens=10, pixel_points=4, **kw)
    return DetectionHead(HIDDEN, nn.Embedding(VOCAB, HIDDEN), cfg, bos_token_id=BOS, eos_token_id=EOS,
                         pad_token_id=PAD).eval()


def _nudge_pixel_layer(head: DetectionHead) -> None:
    """Move the zero-initialised last pixel layer, as training would."""
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        last = head.pixel_roi.layers[-1]
        last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 0.05)


def test_the_pixel_level_starts_exactly_where_the_head_without_it_is():
    off, _ = make_head(two_stage=True, num_queries=5)
    on = pixel_head()
    missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("pixel_roi.") for k in missing)
    vis, vm, txt, tm = features(batch=2)
    vm[1, 9:] = False
    grid_hw = torch.tensor([[3, 4], [3, 3]])
    a = off(vis, vm, txt, tm, vision_grid_hw=grid_hw)
    b = on(vis, vm, txt, tm, vision_grid_hw=grid_hw, pixel_maps=pixel_maps_for(grid_hw))
    for name in ("boxes", "objectness_logits", "query_hidden"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_the_pixel_level_trains_from_zero_and_then_reads_the_pixels_inside_each_box():
    head = pixel_head().train()
    vis, vm, txt, tm = features(batch=2)
    pixels = pixel_maps_for(GRID)
    out = head(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixels)
    out.query_hidden.sum().backward()
    assert head.pixel_roi.layers[-1].weight.grad.abs().sum() > 0
    head.eval()
    _nudge_pixel_layer(head)
    before = head(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixels)
    other = head(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixel_maps_for(GRID, seed=6))
    assert not torch.allclose(before.query_hidden, other.query_hidden)
    # The pixels name the parts; where they are and whether they are there stay the tokens' and patches' answer.
    for name in ("proposal_logits", "boxes", "objectness_logits"):
        assert torch.equal(getattr(before, name), getattr(other, name)), name


def test_the_pixel_level_gives_each_image_of_a_batch_the_answer_it_gets_alone():
    head = pixel_head()
    _nudge_pixel_layer(head)
    vis, vm, txt, tm = features(batch=2)
    vm[1, 9:] = False  # image 1 is a 3x3 grid padded to image 0's 3x4
    grid_hw = torch.tensor([[3, 4], [3, 3]])
    pixels = pixel_maps_for(grid_hw)
    k = PIXELS_PER_TOKEN
    pixels[1, :, 3 * k:], pixels[1, :, :, 3 * k:] = 100.0, 100.0  # whatever lies on the padding must not matter
    both = head(vis, vm, txt, tm, vision_grid_hw=grid_hw, pixel_maps=pixels)
    alone = head(vis[1:, :9], vm[1:, :9], txt[1:], tm[1:], vision_grid_hw=grid_hw[1:],
                 pixel_maps=pixels[1:, :, :3 * k, :3 * k])
    assert torch.allclose(both.boxes[1], alone.boxes[0], atol=1e-5)
    assert torch.allclose(both.query_hidden[1], alone.query_hidden[0], atol=1e-5)


def test_the_pixel_level_samples_the_decoder_s_own_box_when_asked_and_passes_no_gradient_to_it():
    from bbuvl.model.box_ops import box_xyxy_to_cxcywh

    vis, vm, txt, tm = features(batch=2)
    pixels = pixel_maps_for(GRID)
    for box_format in ("cxcywh", "xyxy"):
        reference, refined = pixel_head(box_format=box_format), pixel_head(box_format=box_format, pixel_box="refined")
        refined.load_state_dict(reference.state_dict())
        with torch.no_grad():  # move the box layer off zero, so the decoder's box differs from the proposal
            refined.box_head.layers[-1].bias.copy_(torch.tensor([0.1, -0.1, 0.3, 0.2]))
        out = refined(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixels)
        where = (out.boxes if box_format == "cxcywh" else box_xyxy_to_cxcywh(out.boxes)).clamp(0, 1)
        expected = roi_sample(pixels, PIXELS_PER_TOKEN * GRID, where, 4)
        # The head samples its cxcywh box; an xyxy output rebuilt into cxcywh here differs by float rounding only.
        assert torch.allclose(out.pixel_samples, expected, atol=1e-6 if box_format == "cxcywh" else 1e-5)
        assert not torch.allclose(out.pixel_samples, reference(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixels).pixel_samples)
    head = pixel_head(pixel_box="refined").train()
    _nudge_pixel_layer(head)
    out = head(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixels)
    out.query_hidden.sum().backward()  # the captions' loss must not move the boxes through where the pixels are read
    assert head.box_head.layers[-1].weight.grad is None or not head.box_head.layers[-1].weight.grad.any()


@pytest.mark.parametrize("fine", [False, True])
def test_the_second_look_starts_at_the_decoder_s_box_and_both_box_layers_learn(fine):
    vis, vm, txt, tm = features(batch=2)
    kw = {"fine_maps": fine_maps_for(GRID)} if fine else {"pixel_maps": pixel_maps_for(GRID)}
    make = fine_head if fine else pixel_head
    plain, refined = make(num_queries=5), make(num_queries=5, box_refine=True)
    missing, unexpected = refined.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("refine_") for k in missing)
    with torch.no_grad():
        plain.box_head.layers[-1].bias.copy_(torch.tensor([0.1, -0.1, 0.3, 0.2]))
        refined.box_head.layers[-1].bias.copy_(torch.tensor([0.1, -0.1, 0.3, 0.2]))
    a = plain(vis, vm, txt, tm, vision_grid_hw=GRID, **kw)
    b = refined(vis, vm, txt, tm, vision_grid_hw=GRID, **kw)
    assert torch.allclose(a.boxes, b.boxes, atol=1e-6)  # the correction starts at zero
    refined.train()
    refined(vis, vm, txt, tm, vision_grid_hw=GRID, **kw).boxes.sum().backward()
    assert refined.refine_box.layers[-1].weight.grad.abs().sum() > 0
    assert refined.box_head.layers[-1].weight.grad.abs().sum() > 0  # the first box still learns through the second


def test_the_context_reads_the_widened_box_starts_at_zero_and_sees_what_lies_around_the_box():
    vis, vm, txt, tm = features(batch=2)
    k = 16  # pixels a token side here: a box a token wide spans 16 pixels, so a grid 3 times wider reaches outside it
    hmax, wmax = (int(v) for v in GRID.max(0).values)
    pixels = torch.randn(len(GRID), 3, k * hmax, k * wmax, generator=torch.Generator().manual_seed(5))
    inside = pixel_head(pixel_box="refined")
    around = pixel_head(pixel_box="refined", pixel_context=3.0, caption_refit=CaptionRefitConfig(steps=1))
    missing, unexpected = around.load_state_dict(inside.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("pixel_context_roi.") for k in missing)
    _nudge_pixel_layer(inside)
    _nudge_pixel_layer(around)
    a = inside(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixels)
    b = around(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=pixels)
    assert torch.equal(a.query_hidden, b.query_hidden)  # its last layer starts at zero
    assert not any(p.requires_grad for p in around.pixel_context_roi.parameters())  # the caption refit alone fits it
    assert b.pixel_samples.shape[-1] == around.pixel_width == 2 * inside.pixel_width == 2 * 3 * 4 * 4
    widened = torch.cat([b.boxes[..., :2], 3 * b.boxes[..., 2:]], dim=-1).clamp(0, 1)
    assert torch.allclose(b.pixel_samples[..., :48], a.pixel_samples)
    assert torch.allclose(b.pixel_samples[..., 48:], roi_sample(pixels, k * GRID, widened, 4), atol=1e-6)
    with torch.no_grad():
        last = around.pixel_context_roi.layers[-1]
        last.weight.copy_(torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(9)) * 0.05)
    # Pixels around a query's box but outside it: its inside samples stay, its caption's query moves.
    size = torch.tensor([GRID[0, 1] * k, GRID[0, 0] * k, GRID[0, 1] * k, GRID[0, 0] * k], dtype=torch.float32)
    xyxy = torch.cat([b.boxes[0, :, :2] - b.boxes[0, :, 2:] / 2, b.boxes[0, :, :2] + b.boxes[0, :, 2:] / 2], -1).clamp(0, 1)
    q = int(((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])).argmax())  # image 0's largest box
    x0, y0, x1, y1 = (xyxy[q] * size).tolist()
    assert x1 - x0 > 4 and y1 - y0 > 4  # pixels: wide enough for its widened grid to reach outside it
    blank = torch.zeros_like(pixels)
    framed = pixels.clone()  # the same photo with the box (and a pixel round it) blank
    framed[0, :, max(int(y0) - 1, 0):int(y1) + 2, max(int(x0) - 1, 0):int(x1) + 2] = 0
    on_blank = around(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=blank)
    moved = around(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=framed)
    assert torch.equal(moved.pixel_samples[0, q, :48], on_blank.pixel_samples[0, q, :48])
    assert not torch.allclose(moved.query_hidden[0, q], on_blank.query_hidden[0, q])
    for name in ("boxes", "objectness_logits"):  # where and whether stay the tokens' answer
        assert torch.equal(getattr(moved, name), getattr(on_blank, name)), name
    refit = CaptionRefitConfig(steps=1)
    with pytest.raises(ValueError, match="pixel_points"):
        DetectionConfig(pixel_points=0, pixel_context=2.0, caption_refit=refit)
    with pytest.raises(ValueError, match="above 1"):
        DetectionConfig(pixel_points=4, pixel_context=0.5, caption_refit=refit)
    with pytest.raises(ValueError, match="caption_refit.steps"):
        DetectionConfig(pixel_points=4, pixel_context=2.0)


def test_the_pixel_level_needs_pixel_maps_under_the_token_grid():
    head = pixel_head()
    vis, vm, txt, tm = features()
    with pytest.raises(ValueError, match="needs pixel_maps"):
        head(vis, vm, txt, tm, vision_grid_hw=GRID)
    with pytest.raises(ValueError, match="do not lie under"):
        head(vis, vm, txt, tm, vision_grid_hw=GRID, pixel_maps=torch.zeros(2, 3, 7, 9))


def test_a_whole_label_scores_the_sum_of_the_token_log_probabilities_greedy_decoding_records():
    head, _ = make_head(seed=5)
    query = head(*features()).query_hidden[0, :4]
    allowed = [[11, 12], [11, 13, 14], [21], [30, 31]]
    ids, logprobs = head.generate_captions(query, max_tokens=6, captions=allowed)
    scores = head.caption_logprobs(query, allowed)  # [4 queries, 4 labels]
    assert scores.shape == (4, 4) and (scores < 0).all()
    for m in range(4):
        row = ids[m].tolist()
        chosen = allowed.index(row[:row.index(EOS)])
        assert scores[m, chosen].item() == pytest.approx(logprobs[m].sum().item(), abs=1e-4)
    assert (scores.exp().sum(-1) <= 1 + 1e-5).all()  # distinct captions ending in eos are disjoint events
    assert head.caption_logprobs(torch.empty(0, head.d_model), allowed).shape == (0, 4)


def test_scoring_every_label_on_the_prefix_lattice_equals_teacher_forcing_each_label_alone():
    head, _ = make_head(seed=5)
    query = head(*features()).query_hidden[0, :6]
    # shared beginnings, a label that is the start of another, and one alone
    allowed = [[11, 12], [11, 12, 13], [11, 14], [21], [30, 31, 32]]
    lattice = CaptionLattice.of(allowed, head.bos_token_id, EOS)
    assert lattice.tokens.shape[0] == 1 + 4 + 1 + 3  # bos; 11, 12, 13, 14 under it; 21; 30, 31, 32
    with torch.no_grad():
        scores = head.caption_logprobs(query, allowed)
        for l, caption in enumerate(allowed):
            targets = torch.tensor([[*caption, EOS]] * query.shape[0])
            logp = head.caption_logits(query, targets).log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
            assert torch.allclose(scores[:, l], logp.sum(-1), atol=1e-5)
