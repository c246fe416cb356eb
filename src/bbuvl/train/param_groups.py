"""The five learning-rate groups, assigned by parameter name; a trainable parameter in no group is an error."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from bbuvl.config import LearningRates

GROUPS = ("vision", "merger", "llm", "detection", "adapter")

# First match wins: merger before vision (it lives inside the vision tower), adapters before the rest of the head.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("merger", re.compile(r"(^|\.)visual\.merger\.")),
    ("vision", re.compile(r"(^|\.)visual\.")),
    ("adapter", re.compile(r"(^|\.)detection_head\.(vision_adapter|language_adapter)\.")),
    ("adapter", re.compile(r"(^|\.)vision_positions\.")),
    ("adapter", re.compile(r"(^|\.)coordinate_readout\.")),
    ("detection", re.compile(r"(^|\.)detection_head\.")),
    ("llm", re.compile(r"(^|\.)(language_model|lm_head)\.")),
)


class ParameterGroupError(ValueError):
    """A trainable parameter matched no group, or no group has anything to train."""


def parse_groups(text: str) -> list[str]:
    """`"detection, adapter"` -> `["detection", "adapter"]`; an unknown name, or none at all, is a ValueError."""
    chosen = list(dict.fromkeys(g.strip() for g in text.split(",") if g.strip()))
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown or not chosen:
        raise ValueError(f"unknown group(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(GROUPS)}")
    return chosen


def group_of(name: str) -> str | None:
    """Which group a parameter belongs to, by its qualified name (None when none matches)."""
    for group, pattern in _RULES:
        if pattern.search(name):
            return group
    return None


@dataclass
class GroupSummary:
    """Parameter counts of one group."""

    trainable: int = 0
    frozen: int = 0
    tensors: int = 0


def assign_groups(model: torch.nn.Module) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """Trainable parameters by group; raises naming every trainable parameter that matches no group."""
    groups: dict[str, list[tuple[str, torch.nn.Parameter]]] = {g: [] for g in GROUPS}
    orphans = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = group_of(name)
        if g is None:
            orphans.append(name)
        else:
            groups[g].append((name, p))
    if orphans:
        raise ParameterGroupError(
            f"{len(orphans)} trainable parameter(s) belong to no learning-rate group "
            f"(vision/merger/llm/detection/adapter): {', '.join(orphans[:10])}"
            + (" ..." if len(orphans) > 10 else "") + ". Freeze them or rename them to match a group."
        )
    return groups


def summarize_groups(model: torch.nn.Module) -> dict[str, GroupSummary]:
    """Trainable / frozen parameter counts per group (and 'unassigned')."""
    out = {g: GroupSummary() for g in (*GROUPS, "unassigned")}
    for name, p in model.named_parameters():
        s = out[group_of(name) or "unassigned"]
        s.tensors += 1
        if p.requires_grad:
            s.trainable += p.numel()
        else:
            s.frozen += p.numel()
    return out


def freeze_zero_lr_groups(model: torch.nn.Module, lr: LearningRates) -> None:
    """LR 0 freezes a group: its parameters stop requiring gradients (saves memory and optimizer state)."""
    for name, p in model.named_parameters():
        g = group_of(name)
        if g is not None and getattr(lr, g) == 0:
            p.requires_grad_(False)


def optimizer_groups(model: torch.nn.Module, lr: LearningRates, weight_decay: float) -> list[dict]:
    """torch.optim param groups, one per non-empty LR group (biases and norms without weight decay).

    Raises ParameterGroupError when no group with a learning rate above 0 holds a trainable parameter: such a
    run would train nothing (torch's own words for it are "optimizer got an empty parameter list").
    """
    out = []
    for g, named in assign_groups(model).items():
        if not named or getattr(lr, g) == 0:
            continue
        decay = [p for n, p in named if p.ndim >= 2]
        no_decay = [p for n, p in named if p.ndim < 2]
        for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, "_no_decay")):
            if params:
                out.append({"params": params, "lr": getattr(lr, g), "weight_decay": wd, "name": g + suffix})
    if not out:
        learning = [g for g in GROUPS if getattr(lr, g) > 0]
        raise ParameterGroupError(
            f"nothing to train: the groups with a learning rate above 0 ({', '.join(f'training.lr.{g}' for g in learning)}) "
            "have no trainable parameters in this model (detection.enabled: false leaves the detection group empty); "
            "give a group that this model has a learning rate above 0")
    return out


def fused_on_cpu(groups: list[dict]) -> bool | None:
    """True (fused AdamW) when every parameter is a float tensor on the CPU, else None (torch's own default).

    On the CPU torch's default AdamW loops over the tensors one at a time; the fused kernel updates them all at
    once, the same update to float rounding. For the demo's tiny models that is 2.7-3.0x less optimizer time, about
    3% of each step (bench/optimizer_step.py). On GPUs torch already picks its multi-tensor path, and fused
    has not been measured there.
    """
    params = [p for g in groups for p in g["params"]]
    return True if params and all(p.device.type == "cpu" and p.is_floating_point() for p in params) else None
