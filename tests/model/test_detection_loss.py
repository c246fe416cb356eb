"""Detection losses: hand-checked values, normalisation, padding, empty images, gradients, and the
acceptance test: the head alone memorises one sample's boxes and captions."""

import dataclasses
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bbuvl.config import DetectionConfig, LossConfig
from bbuvl.model.box_ops import box_cxcywh_to_xyxy, box_iou, generalized_box_iou, to_xyxy
from bbuvl.model.detection_head import DetectionHead, DetectionOutput, grid_cells
from bbuvl.model.detection_loss import (
    DetectionCriterion, caption_list, centre_assignment, overlap_assignment, quality_focal_loss, sigmoid_focal_loss,
)
from bbuvl.model.matcher import HungarianMatcher

BOS, EOS, PAD = 1, 2, 0
HIDDEN, VOCAB = 64, 200


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_head(box_format="cxcywh", num_queries=8, caption_layers=2, seed=0, two_stage=False) -> DetectionHead:
    torch.manual_seed(seed)
    cfg = DetectionConfig(
        num_queries=num_queries, decoder_layers=2, caption_layers=caption_layers, num_heads=4, dropout=0.0,
        caption_max_tokens=10, box_format=box_format, two_stage=two_stage,
    )
    return DetectionHead(HIDDEN, nn.Embedding(VOCAB, HIDDEN), cfg, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)


def features(batch: int, g: torch.Generator, nv: int = 12, nt: int = 6):
    return (
        torch.randn(batch, nv, HIDDEN, generator=g), torch.ones(batch, nv, dtype=torch.bool),
        torch.randn(batch, nt, HIDDEN, generator=g), torch.ones(batch, nt, dtype=torch.bool),
    )


def sample_targets(n: int, g: torch.Generator, box_format: str = "cxcywh", lengths=(3, 8)) -> dict:
    """n non-overlapping-ish boxes with captions of 3-8 ids (never bos/eos/pad)."""
    boxes = torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.25 + 0.1], 1)
    captions = [torch.randint(3, VOCAB, (int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g)),), generator=g) for _ in range(n)]
    return {"boxes": box_cxcywh_to_xyxy(boxes) if box_format == "xyxy" else boxes, "caption_ids": captions}


def criterion(**kw) -> DetectionCriterion:
    return DetectionCriterion(HungarianMatcher(box_format=kw.pop("box_format", "cxcywh")), **kw)


def test_focal_loss_equals_a_hand_computation():
    logits, labels = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    p = [1 / (1 + math.exp(-x)) for x in (2.0, -1.0, 0.5)]
    expected = [
        -0.25 * (1 - p[0]) ** 2 * math.log(p[0]),
        -0.75 * p[1] ** 2 * math.log(1 - p[1]),
        -0.75 * p[2] ** 2 * math.log(1 - p[2]),
    ]
    assert torch.allclose(sigmoid_focal_loss(logits, labels, 0.25, 2.0), torch.tensor(expected), atol=1e-6)


def test_objectness_loss_is_focal_summed_over_all_queries_divided_by_target_count():
    head = make_head(num_queries=4)
    crit = criterion()
    logits = torch.tensor([[1.0, -2.0, 0.3, -4.0]])
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]]])
    out = DetectionOutput(boxes, logits, torch.randn(1, 4, head.d_model))
    targets = [{"boxes": boxes[0, :2].clone(), "caption_ids": [torch.tensor([5]), torch.tensor([6])]}]
    losses = crit(out, targets, head)  # exact boxes: queries 0 and 1 are matched
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert losses["loss_objectness"].item() == pytest.approx(sigmoid_focal_loss(logits, labels).sum().item() / 2)
    assert losses["loss_bbox"].item() == pytest.approx(0, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(0, abs=1e-6)


def test_quality_focal_loss_is_smallest_where_the_score_equals_the_iou():
    q = torch.tensor([0.7, 0.0])
    grid = torch.linspace(-6, 6, 1201)
    best = [float(torch.sigmoid(grid[quality_focal_loss(grid, torch.full_like(grid, v)).argmin()])) for v in q.tolist()]
    assert best[0] == pytest.approx(0.7, abs=0.01) and best[1] < 0.01
    logits = torch.tensor([0.4, -1.0])
    p = logits.sigmoid()
    expected = -(q * p.log() + (1 - q) * (1 - p).log()) * (p - q).abs() ** 2
    assert torch.allclose(quality_focal_loss(logits, q), expected, atol=1e-6)


def test_iou_objectness_targets_each_matched_query_with_its_own_boxs_iou():
    head = make_head(num_queries=3)
    crit = criterion(objectness_target="iou")
    tgt = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    # Query 0 sits exactly on object 0; query 1 is object 1 shifted by a quarter of its width.
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.75, 0.7, 0.2, 0.2], [0.1, 0.9, 0.05, 0.05]]])
    logits = torch.tensor([[0.5, 0.2, -3.0]])
    out = DetectionOutput(boxes, logits, torch.randn(1, 3, head.d_model))
    losses = crit(out, [{"boxes": tgt, "caption_ids": [torch.tensor([5]), torch.tensor([6])]}], head)
    quality = torch.tensor([[1.0, 0.15 / 0.25, 0.0]])  # overlap 0.15 x 0.2 over union 0.25 x 0.2
    assert losses["loss_objectness"].item() == pytest.approx(quality_focal_loss(logits, quality).sum().item() / 2, rel=1e-5)


def test_box_losses_are_summed_over_objects_and_divided_by_target_count():
    head, crit = make_head(num_queries=2), criterion(bbox_weight=0, giou_weight=0, caption_weight=0)
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])
    pred = tgt + torch.tensor([[0.02, 0.0, 0.0, 0.0], [0.0, 0.01, 0.01, 0.0]])
    out = DetectionOutput(pred[None], torch.zeros(1, 2), torch.randn(1, 2, head.d_model))
    losses = crit(out, [{"boxes": tgt, "caption_ids": [torch.tensor([5]), torch.tensor([6])]}], head)
    assert losses["loss_bbox"].item() == pytest.approx((0.02 + 0.01 + 0.01) / 2)


def test_caption_target_is_the_label_followed_by_eos_padded_with_ignore_index():
    head, crit = make_head(), criterion()
    targets = [{"boxes": torch.rand(2, 4), "caption_ids": torch.tensor([[5, 6, -100], [7, 8, 9]])}]
    indices = [(torch.tensor([3, 5]), torch.tensor([1, 0]))]
    assert crit.caption_targets(targets, indices, head).tolist() == [[7, 8, 9, EOS], [5, 6, EOS, -100]]


def test_caption_loss_is_per_target_token_mean_summed_over_targets_divided_by_target_count():
    g = torch.Generator().manual_seed(0)
    head, crit = make_head(seed=1), criterion()
    head.eval()
    out = head(*features(1, g))
    targets = [sample_targets(3, g)]
    indices = crit.matcher(out.boxes, out.objectness_logits, targets)
    losses = crit(out, targets, head)
    expected = 0.0
    for q, j in zip(*[x.tolist() for x in indices[0]]):
        target = torch.cat([targets[0]["caption_ids"][j], torch.tensor([EOS])])
        logits = head.caption_logits(out.query_hidden[0, q][None], target[None])[0]
        expected += F.cross_entropy(logits, target).item()  # mean over this caption's tokens
    assert losses["loss_caption"].item() == pytest.approx(expected / 3, rel=1e-5)


def test_caption_padding_is_ignored_whether_padded_tensor_or_list():
    g = torch.Generator().manual_seed(2)
    head, crit = make_head(), criterion()
    head.eval()
    out = head(*features(1, g))
    target = sample_targets(3, g)
    as_list = crit(out, [target], head)["loss_caption"]
    padded = nn.utils.rnn.pad_sequence(target["caption_ids"], batch_first=True, padding_value=-100)
    extra = torch.cat([padded, torch.full((3, 4), -100)], 1)  # more padding must change nothing
    for caption_ids in (padded, extra):
        same = crit(out, [{"boxes": target["boxes"], "caption_ids": caption_ids}], head)["loss_caption"]
        assert same.item() == pytest.approx(as_list.item(), rel=1e-6)
    assert [c.tolist() for c in caption_list(extra)] == [c.tolist() for c in target["caption_ids"]]


def test_duplicating_the_batch_leaves_every_loss_unchanged():
    g = torch.Generator().manual_seed(3)
    head, crit = make_head(), criterion()
    head.eval()
    vis, vm, txt, tm = features(1, g)
    target = sample_targets(4, g)
    single = crit(head(vis, vm, txt, tm), [target], head)
    double = crit(head(*(x.repeat(2, 1, 1) if x.dim() == 3 else x.repeat(2, 1) for x in (vis, vm, txt, tm))), [target, target], head)
    for name in single:
        assert double[name].item() == pytest.approx(single[name].item(), rel=1e-5), name


def test_total_is_exactly_the_weighted_sum_of_the_logged_components():
    g = torch.Generator().manual_seed(4)
    head = make_head()
    crit = DetectionCriterion.from_config(LossConfig(bbox_weight=3, giou_weight=0.5, caption_weight=2), DetectionConfig())
    losses = crit(head(*features(2, g)), [sample_targets(2, g), sample_targets(3, g)], head)
    weighted = 3 * losses["loss_bbox"] + 0.5 * losses["loss_giou"] + losses["loss_objectness"] + 2 * losses["loss_caption"]
    assert losses["loss_detection"].item() == weighted.item()
    assert set(losses) == {"loss_bbox", "loss_giou", "loss_objectness", "loss_caption", "loss_detection"}


def test_images_without_objects_give_finite_losses_and_gradients():
    g = torch.Generator().manual_seed(5)
    head, crit = make_head(), criterion()
    empty = {"boxes": torch.empty(0, 4), "caption_ids": []}
    for targets in ([empty, empty], [empty, sample_targets(2, g)]):
        head.zero_grad()
        losses = crit(head(*features(2, g)), targets, head)
        assert all(torch.isfinite(v) for v in losses.values())
        losses["loss_detection"].backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    only_empty = crit(head(*features(2, g)), [empty, empty], head)
    assert only_empty["loss_bbox"] == only_empty["loss_giou"] == only_empty["loss_caption"] == 0
    assert only_empty["loss_objectness"] > 0  # every query is pushed towards "no object", divided by max(0, 1)


def test_gradients_reach_adapters_queries_and_the_shared_embedding():
    g = torch.Generator().manual_seed(6)
    head, crit = make_head(), criterion()
    vis, vm, txt, tm = features(1, g)
    vis.requires_grad_(True)
    crit(head(vis, vm, txt, tm), [sample_targets(3, g)], head)["loss_detection"].backward()
    for name in ("vision_adapter.down.weight", "vision_adapter.up.weight", "language_adapter.down.weight",
                 "query_embed.weight", "box_head.layers.2.weight", "caption_out.weight"):
        assert head.get_parameter(name).grad.abs().sum() > 0, name
    assert head.token_embedding.weight.grad.abs().sum() > 0
    assert vis.grad.abs().sum() > 0  # and on into whatever produced the vision embeddings


def test_mismatched_box_and_caption_counts_are_an_error():
    head, crit = make_head(), criterion()
    g = torch.Generator().manual_seed(7)
    with pytest.raises(ValueError, match="image 0 of the batch: 2 boxes but 1 captions"):
        crit(head(*features(1, g)), [{"boxes": torch.rand(2, 4) * 0.3 + 0.1, "caption_ids": [torch.tensor([5])]}], head)


def test_a_caption_too_long_for_the_head_is_an_error_naming_the_object():
    head, crit = make_head(), criterion()
    g = torch.Generator().manual_seed(8)
    target = {"boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]]), "caption_ids": [torch.arange(3, 13)]}
    with pytest.raises(ValueError, match="object 0: caption of 10 tokens \\+ eos exceeds"):
        crit(head(*features(1, g)), [target], head)


def overfit_one_sample(box_format: str, max_steps: int, num_queries: int = 100, caption_layers: int = 4,
                       two_stage: bool = False):
    """Train the head alone on one fixed sample (frozen features and embedding) until it reproduces it.

    Returns (steps, seconds, report) where report holds the final checks.
    """
    g = torch.Generator().manual_seed(0)
    head = make_head(box_format, num_queries=num_queries, caption_layers=caption_layers, two_stage=two_stage)
    head.token_embedding.requires_grad_(False)  # stands in for a frozen LLM
    vis, vm, txt, tm = features(1, g, nv=48, nt=20)  # a frozen VLM's features, fixed
    grid = torch.tensor([[6, 8]]) if two_stage else None
    target = sample_targets(6, g, box_format)
    crit = criterion(box_format=box_format)
    opt = torch.optim.Adam(head.parameters(), lr=2e-3)

    def check() -> dict:
        head.eval()
        with torch.no_grad():
            out = head(vis, vm, txt, tm, vision_grid_hw=grid)
            ((queries, objects),) = crit.matcher(out.boxes, out.objectness_logits, [target])
            iou = box_iou(to_xyxy(out.boxes[0, queries], box_format), to_xyxy(target["boxes"][objects], box_format)).diag()
            confident = (out.objectness_logits[0].sigmoid() > 0.5).nonzero().flatten()
            ids, logprobs = head.generate_captions(out.query_hidden[0, queries])
        head.train()
        captions = [row[: row.index(EOS)] if EOS in row else row for row in ids.tolist()]
        return {
            "min_iou": iou.min().item(),
            "confident_are_matched": sorted(confident.tolist()) == sorted(queries.tolist()),
            "captions_exact": captions == [target["caption_ids"][j].tolist() for j in objects.tolist()],
            "ids": ids, "logprobs": logprobs,
        }

    start = time.perf_counter()
    for step in range(1, max_steps + 1):
        losses = crit(head(vis, vm, txt, tm, vision_grid_hw=grid), [target], head)
        opt.zero_grad()
        losses["loss_detection"].backward()
        opt.step()
        if step % 25 == 0:
            report = check()
            if report["min_iou"] >= 0.9 and report["confident_are_matched"] and report["captions_exact"]:
                break
    return step, time.perf_counter() - start, report


# With the slow tests: the default run has the whole model memorising one photo through the default head
# (tests/model/test_vlm.py, test_head_alone_on_one_synthetic_photo_reproduces_its_boxes_and_captions).
@pytest.mark.slow
@pytest.mark.parametrize(("box_format", "two_stage"), [("cxcywh", False), ("xyxy", False), ("cxcywh", True)])
def test_head_alone_memorises_one_sample_boxes_and_captions(box_format, two_stage):
    # Acceptance: with a frozen VLM's features, the head must be able to fit one image exactly:
    # every object found (IoU >= 0.9) by exactly the confident queries, and every caption greedy-decoded.
    steps, seconds, report = overfit_one_sample(box_format, max_steps=300, two_stage=two_stage)
    assert report["min_iou"] >= 0.9, report["min_iou"]
    assert report["confident_are_matched"]
    assert report["captions_exact"]
    ids, logprobs = report["ids"], report["logprobs"]
    for row, lp in zip(ids.tolist(), logprobs):
        end = row.index(EOS) + 1
        # A confident token may round to log-probability 0.0 in float32, so real ones are only <= 0.
        assert all(v == PAD for v in row[end:]) and (lp[end:] == 0).all() and (lp[:end] <= 0).all()


# --- two-stage proposals ---------------------------------------------------------------------------


def two_stage_outputs(g: torch.Generator, pad: int = 0) -> tuple[DetectionHead, DetectionOutput]:
    head = make_head(two_stage=True, num_queries=6)
    vis, vm, txt, tm = features(1, g, nv=12)
    if pad:
        vis = torch.cat([vis, torch.randn(1, pad, HIDDEN) * 50], 1)
        vm = torch.cat([vm, torch.zeros(1, pad, dtype=torch.bool)], 1)
    return head, head(vis, vm, txt, tm, vision_grid_hw=torch.tensor([[3, 4]]))


def test_proposal_loss_is_part_of_the_total_and_equals_its_weighted_terms():
    g = torch.Generator().manual_seed(0)
    head, out = two_stage_outputs(g)
    target = sample_targets(3, g)
    crit = criterion()
    losses = crit(out, [target], head)
    rest = sum(w * losses[k] for k, w in crit.weights.items())
    assert torch.allclose(losses["loss_detection"], rest + losses["loss_proposal"])
    # By hand: assign the 12 proposals by where their cells sit, then per box the mean over its tokens of
    # L1 * 5 + GIoU * 2, plus focal over every token, all / 3 boxes.
    tok, box = centre_assignment(out.proposal_centres[0], out.proposal_valid[0], box_cxcywh_to_xyxy(target["boxes"]))
    pred, tgt = out.proposal_boxes[0, tok], target["boxes"][box]
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt)))
    per_token = 5 * (pred - tgt).abs().sum(-1) + 2 * (1 - giou)
    share = 1.0 / torch.bincount(box, minlength=3)[box].float()
    labels = torch.zeros(12)
    labels[tok] = 1
    focal = sigmoid_focal_loss(out.proposal_logits[0], labels).sum()
    expected = ((per_token * share).sum() + focal) / 3
    assert torch.allclose(losses["loss_proposal"], expected, atol=1e-5)


def test_centre_assignment_gives_each_token_the_smallest_box_holding_it_and_every_box_a_token():
    # A 4 x 4 grid of cells of side 0.25: centres at 0.125, 0.375, 0.625, 0.875.
    centres = grid_cells(4, 4)[:, :2]
    valid = torch.ones(16, dtype=torch.bool)
    valid[15] = False  # padding: never assigned, even when inside a box
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5],     # holds tokens 0, 1, 4, 5
                          [0.3, 0.3, 0.45, 0.45],   # holds token 5 only, and is smaller: token 5 is its
                          [0.9, 0.9, 0.95, 0.95],   # holds no centre: claims its nearest valid token (14 or 11)
                          [0.5, 0.5, 1.0, 1.0]])    # holds 10, 11, 14 (15 is padding)
    tok, box = centre_assignment(centres, valid, boxes)
    got = dict(zip(tok.tolist(), box.tolist()))
    assert got[0] == got[1] == got[4] == 0 and got[5] == 1
    assert 15 not in got
    assert 2 in got.values() and sum(v == 3 for v in got.values()) == 2
    assert set(got) == {0, 1, 4, 5, 10, 11, 14}


def test_padding_tokens_are_never_matched_and_never_count_as_negatives():
    target = sample_targets(3, torch.Generator().manual_seed(5))
    _, plain = two_stage_outputs(torch.Generator().manual_seed(0))
    head, padded = two_stage_outputs(torch.Generator().manual_seed(0), pad=5)
    crit = criterion()
    a, b = crit(plain, [target], head)["loss_proposal"], crit(padded, [target], head)["loss_proposal"]
    assert torch.allclose(a, b, atol=1e-5)


def test_proposal_gradients_reach_the_proposal_layers():
    g = torch.Generator().manual_seed(0)
    head, out = two_stage_outputs(g)
    criterion()(out, [sample_targets(3, g)], head)["loss_proposal"].backward()
    assert head.proposal_box.layers[-1].weight.grad.abs().sum() > 0
    assert head.proposal_objectness.weight.grad.abs().sum() > 0


def test_overlap_assignment_gives_every_close_query_its_object_and_keeps_the_matched_one():
    tgt = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    boxes = torch.tensor([[
        [0.3, 0.3, 0.2, 0.2],  # object 0 exactly
        [0.32, 0.3, 0.2, 0.2],  # object 0, IoU 0.82
        [0.7, 0.7, 0.2, 0.2],  # object 1 exactly
        [0.5, 0.5, 0.05, 0.05],  # nothing
        [0.78, 0.7, 0.2, 0.2],  # object 1, IoU 0.43: below the bar
    ]])
    matched = [(torch.tensor([0, 4]), torch.tensor([0, 1]))]  # one-to-one gave object 1 to query 4
    indices, weight = overlap_assignment(boxes, [{"boxes": tgt}], matched, "cxcywh")
    queries, objects = indices[0]
    assert queries.tolist() == [0, 1, 2, 4] and objects.tolist() == [0, 0, 1, 1]
    assert weight.tolist() == [0.5, 0.5, 0.5, 0.5]


def test_overlap_assignment_weighs_every_object_the_same_in_the_box_loss():
    head = make_head(num_queries=3)
    crit = criterion(assignment="overlap", bbox_weight=0, giou_weight=0, caption_weight=0)
    tgt = torch.tensor([[0.3, 0.3, 0.2, 0.2]])
    boxes = torch.tensor([[[0.32, 0.3, 0.2, 0.2], [0.28, 0.3, 0.2, 0.2], [0.9, 0.9, 0.05, 0.05]]])
    out = DetectionOutput(boxes, torch.zeros(1, 3), torch.randn(1, 3, head.d_model))
    losses = crit(out, [{"boxes": tgt, "caption_ids": [torch.tensor([5])]}], head)
    assert losses["loss_bbox"].item() == pytest.approx(0.02)  # two positives 0.02 off, averaged, one object


def test_an_objects_weight_multiplies_its_matched_box_objectness_and_caption_terms():
    # Two queries sitting on two objects; the first object weighs 3 (a fault under loss.fault_weight: 3).
    head, crit = make_head(num_queries=2), criterion()
    head.eval()
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])
    pred = tgt + torch.tensor([[0.02, 0.0, 0.0, 0.0], [0.0, 0.01, 0.01, 0.0]])
    hidden = torch.randn(1, 2, head.d_model, generator=torch.Generator().manual_seed(0))
    out = DetectionOutput(pred[None], torch.tensor([[0.5, -0.5]]), hidden)
    captions = [torch.tensor([5, 6]), torch.tensor([7])]
    plain = crit(out, [{"boxes": tgt, "caption_ids": captions}], head)
    ones = crit(out, [{"boxes": tgt, "caption_ids": captions, "weights": torch.tensor([1.0, 1.0])}], head)
    weighed = crit(out, [{"boxes": tgt, "caption_ids": captions, "weights": torch.tensor([3.0, 1.0])}], head)
    for name in plain:
        assert torch.allclose(plain[name], ones[name]), name
    assert weighed["loss_bbox"].item() == pytest.approx((3 * 0.02 + 0.01 + 0.01) / 2)
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt)))
    assert weighed["loss_giou"].item() == pytest.approx(((1 - giou) * torch.tensor([3.0, 1.0])).sum().item() / 2, rel=1e-5)
    per_caption = []
    for q, caption in enumerate(captions):
        target = torch.cat([caption, torch.tensor([EOS])])
        per_caption.append(F.cross_entropy(head.caption_logits(hidden[0, q][None], target[None])[0], target).item())
    assert weighed["loss_caption"].item() == pytest.approx((3 * per_caption[0] + per_caption[1]) / 2, rel=1e-5)
    focal = sigmoid_focal_loss(torch.tensor([0.5, -0.5]), torch.ones(2))  # both queries matched
    assert weighed["loss_objectness"].item() == pytest.approx((3 * focal[0] + focal[1]).item() / 2, rel=1e-5)


def test_an_objects_weight_multiplies_its_proposals_box_and_objectness_terms():
    g = torch.Generator().manual_seed(0)
    head, out = two_stage_outputs(g)
    target = sample_targets(3, g)
    weights = torch.tensor([1.0, 4.0, 1.0])
    losses = criterion()(out, [{**target, "weights": weights}], head)
    tok, box = centre_assignment(out.proposal_centres[0], out.proposal_valid[0], box_cxcywh_to_xyxy(target["boxes"]))
    pred, tgt = out.proposal_boxes[0, tok], target["boxes"][box]
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt)))
    per_token = 5 * (pred - tgt).abs().sum(-1) + 2 * (1 - giou)
    share = weights[box] / torch.bincount(box, minlength=3)[box].float()  # each object's tokens share its weight
    labels, scale = torch.zeros(12), torch.ones(12)
    labels[tok], scale[tok] = 1, weights[box]  # negatives count once, every positive as much as its object
    focal = (sigmoid_focal_loss(out.proposal_logits[0], labels) * scale).sum()
    assert torch.allclose(losses["loss_proposal"], ((per_token * share).sum() + focal) / 3, atol=1e-5)


def test_the_empty_caption_is_taught_to_unmatched_sure_queries_on_no_object_and_to_no_other():
    g = torch.Generator().manual_seed(0)
    head = make_head(seed=1, num_queries=16)
    head.eval()
    out = head(*features(1, g))
    out.objectness_logits.data[0, :8] = 5.0  # the first half of the queries sure of a part, the rest not
    out.objectness_logits.data[0, 8:] = -5.0
    targets = [sample_targets(3, g)]
    plain, nothing = criterion(), criterion(caption_nothing_weight=0.5)
    indices = plain.matcher(out.boxes, out.objectness_logits, targets)
    matched = set(indices[0][0].tolist())
    iou = box_iou(to_xyxy(out.boxes[0].detach(), "cxcywh"), to_xyxy(targets[0]["boxes"], "cxcywh")).max(-1).values
    picked = [q for q in range(8) if q not in matched and iou[q] < 0.1]
    assert picked, "the draw leaves some sure queries on no object"
    expected = sum(F.cross_entropy(head.caption_logits(out.query_hidden[0, q][None], torch.tensor([[EOS]]))[0],
                                   torch.tensor([EOS])).item() for q in picked) / 3
    extra = nothing(out, targets, head)["loss_caption"].item() - plain(out, targets, head)["loss_caption"].item()
    assert extra == pytest.approx(0.5 * expected, rel=1e-5)
    # no query sure of a part: the term adds nothing, and the graph stays whole
    out.objectness_logits.data[:] = -5.0
    losses = nothing(out, targets, head)
    assert losses["loss_caption"].item() == pytest.approx(plain(out, targets, head)["loss_caption"].item(), rel=1e-6)
    losses["loss_detection"].backward()


def _poison_boxes(out: DetectionOutput) -> DetectionOutput:
    return dataclasses.replace(out, boxes=out.boxes * float("inf"))


def _poison_objectness(out: DetectionOutput) -> DetectionOutput:
    return dataclasses.replace(out, objectness_logits=out.objectness_logits * float("nan"))


@pytest.mark.parametrize("two_stage", [False, True], ids=["one_stage", "two_stage"])
@pytest.mark.parametrize("poison", ["boxes", "objectness", "features"])
def test_non_finite_head_outputs_give_nan_terms_whose_gradient_reaches_what_a_healthy_step_reaches(two_stage, poison):
    # Before: the NaN was built from the boxes and objectness alone, so the caption and proposal layers got no gradient
    # on that rank, and DDP (ddp_find_unused_parameters off) waited for it on every other one: the run hung.
    crit = criterion(assignment="overlap", caption_nothing_weight=0.5)
    reached = {}
    for poisoned in (False, True):
        head = make_head(two_stage=two_stage, num_queries=6)
        vis, vm, txt, tm = features(2, torch.Generator().manual_seed(1))
        if poisoned and poison == "features":  # a photo of NaN pixels: every output of the head NaN
            vis = vis * float("nan")
        vis.requires_grad_(True)
        out = head(vis, vm, txt, tm, vision_grid_hw=torch.tensor([[3, 4], [3, 4]]) if two_stage else None)
        if poisoned and poison != "features":
            out = {"boxes": _poison_boxes, "objectness": _poison_objectness}[poison](out)
        g = torch.Generator().manual_seed(2)
        losses = crit(out, [sample_targets(2, g), sample_targets(3, g)], head)
        assert all(torch.isnan(v) for v in losses.values()) == poisoned, losses
        losses["loss_detection"].backward()
        reached[poisoned] = {n for n, p in head.named_parameters() if p.grad is not None}
        assert vis.grad is not None
    assert reached[True] == reached[False] == {n for n, p in head.named_parameters() if p.requires_grad}
