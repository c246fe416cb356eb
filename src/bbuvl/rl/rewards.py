"""Rewards for GRPO rollouts: how good one parsed answer is for one photo, as numbers a policy can climb.

Every reward compares the photo's truth with the answer, both lists of `LabelledBox` in the stored photo's
pixels, and returns a float in [0, 1] (the user's function returns what it likes). The detection and label
rewards share one matching: the Hungarian algorithm on IoU (as Perception-R1 matches inside its reward), so each
true object is credited to at most one answered box, and a duplicate box is an extra object, never a second hit.

Why `sum IoU / max(n_truth, n_answer)` (docs/grpo.md, "Rewards"): IoU is continuous, so a box 1 px off earns
almost full credit where cross-entropy on its digits would not; dividing by the larger count charges both ways to
game it: padding a dense photo with boxes raises `n_answer`, cutting the answer short leaves true objects
unmatched. VLM-R1 reaches the same end by multiplying AP with min(1, n_truth / n_answer).
"""

from __future__ import annotations

import importlib
import inspect
import math
import traceback
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from bbuvl.config import RewardWeights
from bbuvl.data.boxes import box_iou
from bbuvl.data.labels import Hierarchy
from bbuvl.data.text import SEP, label_key


@dataclass(frozen=True)
class LabelledBox:
    """One object: an xyxy box in the stored photo's pixels and its label path."""

    bbox_2d: tuple[float, float, float, float]
    label: str


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of answered boxes to true ones: `pairs` (truth index, answer index) and their IoU."""

    pairs: list[tuple[int, int]]
    iou: list[float]
    n_truth: int
    n_answer: int

    @property
    def denominator(self) -> int:
        """max(n_truth, n_answer): every missed and every extra object counts as a zero."""
        return max(self.n_truth, self.n_answer)


def match_boxes(truth: Sequence[LabelledBox], answer: Sequence[LabelledBox]) -> Matching:
    """The matching that maximises the summed IoU (Hungarian); pairs that do not overlap at all are dropped."""
    if not truth or not answer:
        return Matching([], [], len(truth), len(answer))
    iou = box_iou([t.bbox_2d for t in truth], [a.bbox_2d for a in answer])  # [N_truth, N_answer]
    rows, cols = linear_sum_assignment(-iou)
    keep = [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] > 0]
    return Matching(keep, [float(iou[r, c]) for r, c in keep], len(truth), len(answer))


def detection_reward(matching: Matching, parsed: bool = True) -> float:
    """Summed IoU of the matched pairs over max(n_truth, n_answer); 1 for an empty photo answered with `[]`, 0 for
    one whose answer does not parse (`parsed` false: cut by the budget, or not JSON)."""
    if matching.denominator == 0:
        # An unreadable answer holds no object either: scored 1 it earned what `[]` earns, and a photo with no parts
        # taught nothing (every rollout alike) or taught that writing anything but `[]` pays.
        return 1.0 if parsed else 0.0
    return float(np.sum(matching.iou)) / matching.denominator


def label_credit(truth: str, answer: str, hierarchy: Hierarchy) -> float:
    """The levels (category, attribute, state) both labels share from the top, over the deeper one's levels:
    category right and state wrong earns 2/3 of a three-level label, a wrong category nothing."""
    t = (hierarchy.canonical(truth) or truth).split(SEP)
    a = (hierarchy.canonical(answer) or answer).split(SEP)
    same = 0
    for x, y in zip(t, a):
        if label_key(x) != label_key(y):
            break
        same += 1
    return same / max(len(t), len(a))


def label_reward(truth: Sequence[LabelledBox], answer: Sequence[LabelledBox], matching: Matching,
                 hierarchy: Hierarchy, parsed: bool = True) -> float:
    """Hierarchy credit of the matched pairs over max(n_truth, n_answer); 1 for an empty photo answered with `[]`, 0
    for one whose answer does not parse (as `detection_reward`)."""
    if matching.denominator == 0:
        return 1.0 if parsed else 0.0
    credit = sum(label_credit(truth[t].label, answer[a].label, hierarchy) for t, a in matching.pairs)
    return credit / matching.denominator


def format_reward(parsed: bool, answer: Sequence[LabelledBox], vocabulary: Sequence[str]) -> float:
    """0.5 for an answer that parses (infer/parse.py's `ok`), 0.5 more when every label is in the vocabulary.

    Only meaningful when decoding is free (grpo.constrained: false): under the grammar every answer earns 1.
    """
    if not parsed:
        return 0.0
    known = {label_key(v) for v in vocabulary}
    return 0.5 + 0.5 * all(label_key(a.label) in known for a in answer)


UserReward = Callable[[list[LabelledBox], list[LabelledBox]], float]


def load_user_reward(path: str) -> UserReward:
    """The function `package.module:function` (or `package.module.function`) names; ValueError saying what is wrong."""
    module_name, _, attr = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"grpo.rewards.user_function: '{path}' is not module:function (e.g. my_rewards:precision)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if module_name.endswith(".py"):
            raise ValueError(f"grpo.rewards.user_function: '{path}' names a file; give its module: "
                             f"{module_name[:-3]}:{attr}, with its folder on PYTHONPATH") from None
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            # `bbuvl` is an installed script: the current folder is not on the import path as it is for `python -m`.
            raise ValueError(f"grpo.rewards.user_function: cannot import module '{module_name}': {e} (is its folder on "
                             "PYTHONPATH? the current folder is not searched)") from None
        raise ValueError(f"grpo.rewards.user_function: cannot import module '{module_name}': {_where(e)}") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - whatever the user's module raises when it runs, in one line
        raise ValueError(f"grpo.rewards.user_function: cannot import module '{module_name}': {_where(e)}") from None
    if not hasattr(module, attr):
        raise ValueError(f"grpo.rewards.user_function: module '{module_name}' has no function '{attr}'")
    fn = getattr(module, attr)
    if not callable(fn):  # `os.path`, a constant: what it is says more than "no function"
        raise ValueError(f"grpo.rewards.user_function: '{attr}' of module '{module_name}' is "
                         f"{'a module' if inspect.ismodule(fn) else f'a {type(fn).__name__}'}, not a function")
    try:
        inspect.signature(fn).bind([], [])
    except TypeError:
        raise ValueError(f"grpo.rewards.user_function: {path} cannot be called as fn(truth, answer) (its signature: "
                         f"{inspect.signature(fn)})") from None
    except ValueError:
        pass  # no signature to read (a builtin): its first call says
    return fn


def _where(e: BaseException) -> str:
    """An exception as `file:line: Type: message`, at the line of the user's code that raised it."""
    if isinstance(e, SyntaxError):
        return f"{e.filename}:{e.lineno}: SyntaxError: {e.msg}"
    frames = traceback.extract_tb(e.__traceback__)
    place = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    return f"{place}{type(e).__name__}: {e}"


REWARD_TERMS = ("detection", "label", "format", "user")
# The largest reward, in size, whose group's spread float32 still holds (its square under float32's 3.4e38).
MAX_REWARD = 1e18


@dataclass
class RewardScorer:
    """The run's rewards, weighted as `grpo.rewards` says: `score` gives every term and their weighted total."""

    weights: RewardWeights
    hierarchy: Hierarchy
    vocabulary: list[str]
    user: UserReward | None = None

    @classmethod
    def from_config(cls, weights: RewardWeights, hierarchy: Hierarchy, vocabulary: list[str]) -> "RewardScorer":
        """Resolve the user's function once, before any rollout (a bad import path fails at the start)."""
        # With grpo.rewards.user 0 the function is never called: a module that no longer imports, or code edited since,
        # stopped the start or a resume of a run it never paid a reward in (rl/start_notes.py says it is unused).
        user = load_user_reward(weights.called_function) if weights.called_function else None
        return cls(weights, hierarchy, vocabulary, user)

    def score(self, truth: list[LabelledBox], answer: list[LabelledBox], parsed: bool) -> dict[str, float]:
        """`{"reward": weighted total, term: value, ...}` for the terms with a weight above 0."""
        matching = match_boxes(truth, answer)
        w = self.weights
        terms: dict[str, float] = {}
        if w.detection > 0:
            terms["detection"] = detection_reward(matching, parsed)
        if w.label > 0:
            terms["label"] = label_reward(truth, answer, matching, self.hierarchy, parsed)
        if w.format > 0:
            terms["format"] = format_reward(parsed, answer, self.vocabulary)
        if w.user > 0 and self.user is not None:
            terms["user"] = self.user_reward(truth, answer)
        return {"reward": sum(getattr(w, k) * v for k, v in terms.items()), **terms}

    def user_reward(self, truth: Sequence[LabelledBox], answer: Sequence[LabelledBox]) -> float:
        """The user's function on one answer, as a float; ValueError naming the function when it raises or returns
        anything but a finite number."""
        name = self.weights.user_function
        try:
            value = self.user(list(truth), list(answer))
        # SystemExit too: a library's sys.exit inside the user's code ended the run with no word of where
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code: where it raised, in one line
            raise ValueError(f"grpo.rewards.user_function {name} raised {_where(e)}") from None
        reward = _number(value)
        if reward is None:  # a list (a reward per box), None from a missing return
            raise ValueError(f"grpo.rewards.user_function {name} returned {_shown(value)}, not a number: it is called "
                             "once per answer, as fn(truth, answer), and returns that answer's reward")
        if not math.isfinite(reward):  # every step of the run would be skipped as non-finite
            raise ValueError(f"grpo.rewards.user_function {name} returned {value!r}: a reward must be a finite number")
        if abs(reward) > MAX_REWARD:  # inf in float32, or a group's spread that overflows there: the same skipped steps
            raise ValueError(f"grpo.rewards.user_function {name} returned {value!r}: a reward must lie within "
                             f"±{MAX_REWARD:g}, as the objective computes in float32")
        return reward

    def check_user(self, truth: Sequence[LabelledBox], where: str | None = None) -> None:
        """Call the user's function on a photo's truth answered exactly and answered empty, as a start-up check:
        one that raises or returns no finite number then fails before any weights load or --overwrite clears the
        previous run, not at the first step (docs/design.md, "A GRPO start tries its reward function"). `where`:
        the photo, named in the error."""
        if self.weights.user > 0 and self.user is not None:
            for answer in (truth, []):
                try:
                    self.user_reward(truth, answer)
                except ValueError as e:
                    if where is None:
                        raise
                    raise ValueError(f"{e} (tried before the run on {where}, answered "
                                     f"{'exactly' if answer else 'with no object'})") from None


def _number(value: object) -> float | None:
    """`value` as a float when it is one number (a Python, NumPy or torch scalar), else None."""
    # float("0.5") would take text for a number, and float() a tensor of one reward per box while the answer has one
    # box: the run failed at the first answer with two.
    if isinstance(value, (str, bytes)) or getattr(value, "ndim", 0) != 0:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _shown(value: object) -> str:
    """`value` as the error shows it: its repr, cut short (a tensor or a long list would fill the screen)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}..." if len(text) > 60 else f"{text} ({type(value).__name__})"
