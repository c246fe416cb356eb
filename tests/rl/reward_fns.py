"""User reward functions the GRPO tests name by import path (grpo.rewards.user_function)."""


def answer_size(truth, answer):
    """The number of objects answered, scaled: rollouts of a barely trained model differ in it, so groups have spread."""
    return len(answer) / 10


def one(truth, answer):
    """1 for every answer: weighted, it is the weight itself at every rollout, whatever the model writes."""
    return 1.0


def per_box(truth, answer):
    """A reward per answered box: a list where one number per answer belongs."""
    return [1.0 for _ in answer]


def not_finite(truth, answer):
    """NaN: every step would be skipped as non-finite."""
    return float("nan")


def mean_size(truth, answer):
    """The answer's mean box width: dividing by zero on an empty answer."""
    return sum(b.bbox_2d[2] - b.bbox_2d[0] for b in answer) / len(answer)


def per_box_tensor(truth, answer):
    """A tensor of one reward per answered box: float() takes it while the answer has one box."""
    import torch

    return torch.ones(len(answer))


def recall(truth, answer):
    """The share of true objects answered: dividing by zero on a photo with no parts."""
    return min(len(answer), len(truth)) / len(truth)


def too_large(truth, answer):
    """1e39: finite as a Python float, inf in the float32 the objective computes in."""
    return 1e39


def exits(truth, answer):
    """A library's sys.exit inside the user's code."""
    raise SystemExit(3)


SEEN_TRUTH: list = []  # what `seen_truth` was called with, for a test to read


def seen_truth(truth, answer):
    """`answer_size`, keeping each photo's truth as the reward was given it."""
    SEEN_TRUTH.append(tuple(truth))
    return len(answer) / 10
