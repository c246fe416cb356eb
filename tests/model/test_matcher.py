"""Hungarian matching: optimal (equals brute force), empty images, more targets than queries."""

import itertools
import math

import pytest
import torch

from bbuvl.model.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from bbuvl.model.matcher import HungarianMatcher, focal_class_cost


def random_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """`[n, 4]` cxcywh boxes inside the unit square."""
    cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    return torch.cat([cxcy, torch.rand(n, 2, generator=g) * 0.3 + 0.05], dim=1)


def python_cost(matcher, pred_box, logit, tgt_box) -> float:
    """The cost of one (query, target) pair, written out term by term."""
    p = 1 / (1 + math.exp(-logit))
    a, gm = matcher.focal_alpha, matcher.focal_gamma
    cls = a * (1 - p) ** gm * -math.log(p + 1e-8) - (1 - a) * p**gm * -math.log(1 - p + 1e-8)
    l1 = sum(abs(x - y) for x, y in zip(pred_box.tolist(), tgt_box.tolist()))
    giou = generalized_box_iou(box_cxcywh_to_xyxy(pred_box[None]), box_cxcywh_to_xyxy(tgt_box[None])).item()
    return matcher.cost_class * cls + matcher.cost_bbox * l1 - matcher.cost_giou * giou


def brute_force(cost: list[list[float]]) -> float:
    """Minimum total cost over every injective assignment of targets to queries."""
    num_queries, num_targets = len(cost), len(cost[0])
    if num_targets <= num_queries:
        return min(sum(cost[q][j] for j, q in enumerate(perm)) for perm in itertools.permutations(range(num_queries), num_targets))
    return min(sum(cost[q][j] for q, j in enumerate(perm)) for perm in itertools.permutations(range(num_targets), num_queries))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("num_targets", [1, 3, 5, 7])
def test_matching_cost_equals_brute_force_minimum(seed, num_targets):
    g = torch.Generator().manual_seed(seed)
    matcher = HungarianMatcher(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)
    num_queries = 5
    pred, logits = random_boxes(num_queries, g), torch.randn(num_queries, generator=g) * 2
    tgt = random_boxes(num_targets, g)
    cost = [[python_cost(matcher, pred[q], logits[q].item(), tgt[j]) for j in range(num_targets)] for q in range(num_queries)]
    assert torch.allclose(matcher.cost_matrix(pred, logits, tgt), torch.tensor(cost), atol=1e-4)

    ((rows, cols),) = matcher(pred[None], logits[None], [{"boxes": tgt}])
    assert len(rows) == len(cols) == min(num_queries, num_targets)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert math.isclose(sum(cost[q][j] for q, j in zip(rows.tolist(), cols.tolist())), brute_force(cost), abs_tol=1e-4)


def test_exact_predictions_are_matched_to_their_own_targets():
    g = torch.Generator().manual_seed(0)
    tgt = random_boxes(4, g)
    perm = torch.tensor([2, 0, 3, 1])
    pred = torch.cat([tgt[perm], random_boxes(2, g)])  # queries 0-3 answer targets 2, 0, 3, 1; 4-5 are noise
    ((rows, cols),) = HungarianMatcher()(pred[None], torch.zeros(1, 6), [{"boxes": tgt}])
    assert rows.tolist() == [0, 1, 2, 3] and cols.tolist() == perm.tolist()


def test_images_without_targets_get_empty_matches():
    g = torch.Generator().manual_seed(1)
    pred, logits = torch.stack([random_boxes(4, g), random_boxes(4, g)]), torch.randn(2, 4, generator=g)
    matches = HungarianMatcher()(pred, logits, [{"boxes": torch.empty(0, 4)}, {"boxes": random_boxes(2, g)}])
    assert [len(r) for r, _ in matches] == [0, 2]
    assert all(r.dtype == torch.int64 and c.dtype == torch.int64 for r, c in matches)


def test_more_targets_than_queries_matches_every_query():
    g = torch.Generator().manual_seed(2)
    ((rows, cols),) = HungarianMatcher()(random_boxes(3, g)[None], torch.zeros(1, 3), [{"boxes": random_boxes(6, g)}])
    assert sorted(rows.tolist()) == [0, 1, 2] and len(set(cols.tolist())) == 3


def test_xyxy_matcher_takes_l1_in_xyxy():
    tgt = torch.tensor([[0.1, 0.1, 0.3, 0.4]])
    pred = torch.tensor([[0.1, 0.1, 0.3, 0.5]])
    matcher = HungarianMatcher(cost_class=0, cost_bbox=1, cost_giou=0, box_format="xyxy")
    assert matcher.cost_matrix(pred, torch.zeros(1), tgt).item() == pytest.approx(0.1)


def test_a_confident_query_costs_less_than_an_unsure_one():
    costs = focal_class_cost(torch.tensor([3.0, 0.0, -3.0]), alpha=0.25, gamma=2.0)
    assert costs[0] < costs[1] < costs[2]


def test_non_finite_predictions_are_an_error_naming_the_image():
    pred = torch.full((2, 3, 4), 0.5)
    pred[1, 0, 0] = float("nan")
    targets = [{"boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}] * 2
    with pytest.raises(ValueError, match="image 1"):
        HungarianMatcher()(pred, torch.zeros(2, 3), targets)


def test_a_batch_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="1 target dicts for a batch of 2"):
        HungarianMatcher()(torch.rand(2, 3, 4), torch.zeros(2, 3), [{"boxes": torch.rand(1, 4)}])


def test_all_zero_costs_are_rejected():
    with pytest.raises(ValueError, match="all matching costs are 0"):
        HungarianMatcher(0, 0, 0)


def test_only_valid_queries_are_matched():
    matcher = HungarianMatcher()
    target = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.3, 0.1, 0.1]])
    preds = target[[0, 1, 0, 1]].clone()[None]  # queries 0/1 exact, 2/3 exact copies
    logits = torch.zeros(1, 4)
    valid = torch.tensor([[False, False, True, True]])
    ((q, t),) = matcher(preds, logits, [{"boxes": target}], valid=valid)
    assert sorted(zip(q.tolist(), t.tolist())) == [(2, 0), (3, 1)]
