"""User reward functions the GRPO tests name by import path (grpo.rewards.user_function)."""


def answer_size(truth, answer):
    """The number of objects answered, scaled: rollouts of a barely trained model differ in it, so groups have spread."""
    return len(answer) / 10
