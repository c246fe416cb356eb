"""The inspector's system prompt and user turn, built from the labels the data really uses (docs/design.md)."""

from __future__ import annotations

from bbuvl.data.families import DEFAULT_FAMILY, get_family
from bbuvl.data.labels import Hierarchy, label_at_level

USER_TEXT = {
    "zh": "请检测这张照片中的所有设备部件。",
    "en": "Detect every piece of equipment in this photo.",
}

_HEADER = {
    "zh": "你是通信机房巡检助手。找出照片中的每一个设备部件，给出它的边界框和标签，并判断安装或连接是否正确。\n类别、视觉线索与可用标签：",
    "en": "You inspect telecom equipment rooms. Find every piece of equipment in the photo, give its bounding box and "
    "label, and judge whether it is installed or connected correctly.\nCategories, visual cues and allowed labels:",
}

_RULES = {
    "zh": '输出规则：只输出一个JSON数组，每个元素为{{"bbox_2d": [x1, y1, x2, y2], "label": "标签"}}；'
    "{coordinates}；标签必须是上面列出的之一；按y1再按x1排序；没有目标时输出[]。",
    "en": 'Output rules: answer with one JSON array only, each element {{"bbox_2d": [x1, y1, x2, y2], "label": "label"}}; '
    "{coordinates}; labels must be one of those listed above; sort by y1 then x1; answer [] when there is nothing.",
}


def _category_of(label: str, hierarchy: Hierarchy) -> str | None:
    """Canonical category of a data label, however typed (`螺丝连接点 / ...`) and also when the data uses the English
    glosses: a spelling of its own was listed as a category without cue."""
    return hierarchy.path(label_at_level(label, 1))


def system_prompt(labels: list[str], hierarchy: Hierarchy, lang: str = "zh", family: str = DEFAULT_FAMILY) -> str:
    """System prompt listing exactly `labels` (the data's vocabulary), grouped by category with its visual cue, and
    the model family's box convention in its own wording (data/families.py)."""
    if lang not in _HEADER:
        raise ValueError(f"prompt language must be 'zh' or 'en', got '{lang}'")
    wording = get_family(family).box_wording[lang]
    groups: dict[str, list[str]] = {}
    for label in labels:
        cat = _category_of(label, hierarchy)
        groups.setdefault(cat or label_at_level(label, 1), []).append(label)
    order = {name: i for i, name in enumerate(hierarchy.categories)}
    lines = [_HEADER[lang]]
    for cat in sorted(groups, key=lambda c: (order.get(c, len(order)), c)):
        spec = hierarchy.categories.get(cat)
        title = cat if lang == "zh" or spec is None else spec.gloss
        cue = "" if spec is None else (spec.cue_zh if lang == "zh" else spec.cue_en)
        sep = "；" if lang == "zh" else "; "
        cue_part = f"{cue}{sep}" if cue else ""
        labels_word = "标签" if lang == "zh" else "labels"
        colon = "：" if lang == "zh" else ": "
        lines.append(f"- {title}{colon}{cue_part}{labels_word}{colon}{', '.join(groups[cat])}")
    lines.append(_RULES[lang].format(coordinates=wording))
    return "\n".join(lines)
