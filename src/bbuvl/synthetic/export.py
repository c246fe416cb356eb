"""The annotation platform's export of a synthetic photo: its label names and its JSON document shapes.

`bbuvl data synth --format vendor` writes these, so that `bbuvl data convert` is tested on the formats real
exports come in.
"""

from __future__ import annotations

import random

from bbuvl.data.labels import SEP, TokenMap
from bbuvl.synthetic.scene import ALL_LABELS, Box

_REMARKS = ("复核", "现场照片", "需整改", "已整改", "逆光", "夜间拍摄", "局部遮挡")
INVERSE_ROTATION = {6: 8, 8: 6}  # displayed -> raw grid is the opposite quarter turn


def _has_cjk(text: str) -> bool:
    return any(ord(ch) >= 0x2E80 for ch in text)


class PlatformNames:
    """Canonical label -> the names the annotation platform uses: the token map read backwards."""

    def __init__(self, token_map: TokenMap | None = None):
        self.token_map = token_map or TokenMap.load()
        self.aliases: dict[str, list[str]] = {}
        for platform, canonical in self.token_map.tokens.items():
            if self.token_map.map_token(platform) == canonical:
                self.aliases.setdefault(canonical, []).append(platform)
        for label in ALL_LABELS:
            for form in (self.zh(label), self.zh(label, alt_state=True), self.en(label)):
                if self.token_map.map_path(form) != label:
                    raise ValueError(f"{self.token_map.source}: platform name {form} of '{label}' does not map back to it")

    def zh(self, label: str, alt_state: bool = False) -> str:
        """Chinese platform path: category renamed (BBU品牌, 连接点（螺丝）, 标签), state optionally 安装正确/错误."""
        out = []
        for level, part in enumerate(label.split(SEP)):
            cjk = [a for a in self.aliases.get(part, []) if _has_cjk(a)]
            out.append(cjk[0] if cjk and (level == 0 or (level == 2 and alt_state)) else part)
        return SEP.join(out)

    def en(self, label: str) -> list[str]:
        """English platform parts, e.g. ["connection_point", "install_screw", "install_screw_true"]."""
        out: list[str] = []
        for part in label.split(SEP):
            ascii_ = [a for a in self.aliases.get(part, []) if a.isascii() and a == a.lower()]
            scoped = [a for a in ascii_ if out and a.startswith(out[-1] + "_")]
            out.append((scoped or ascii_ or [part])[0])
        return out


def vendor_document(objects: list[tuple[Box, str]], size: tuple[int, int], names: PlatformNames, rng: random.Random,
                    index: int, shape: str) -> dict:
    """One photo's platform JSON: boxes in the annotated frame of `size`, platform label names, junk blocks."""
    junk = {
        "statistics": {"count": len(objects), "duration_s": rng.randint(60, 900)},
        "workload": {"annotator": f"A-{rng.randint(1, 40)}", "checker": f"Q-{rng.randint(1, 9)}"},
        "quality": {"passed": True, "score": round(rng.uniform(0.8, 1.0), 2)},
    }
    info = {"width": size[0], "height": size[1], "depth": 3}
    if shape == "dataList":
        keys = rng.choice((("object_type", "property", "extra_info"), ("label", "question", "question_ex")))
        items = []
        for box, label in objects:
            parts = names.en(label) + ["", ""]
            items.append({"coordinates": [[round(box[0], 2), round(box[1], 2)], [round(box[2], 2), round(box[3], 2)]],
                          "properties": dict(zip(keys, parts[:3]))})
        return {"info": info, "version": "1.3", "dataList": items, **junk}
    depth = rng.choices((2, 3, 4), (0.1, 0.8, 0.1))[0]  # exports nest the ring in 0-2 extra lists
    alt_state = rng.random() < 0.25
    features = []
    for k, (box, label) in enumerate(objects):
        x1, y1, x2, y2 = (round(v, 2) for v in box)
        coords: list = [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
        for _ in range(depth - 2):
            coords = [coords]
        zh = {"标签": names.zh(label, alt_state)}
        if rng.random() < 0.15:
            zh["备注"] = rng.choice(_REMARKS)
        feature = {"type": "Feature", "id": k + 1, "geometry": {"type": "ExtentPolygon", "coordinates": coords},
                   "properties": {"content": {"label": SEP.join(names.en(label))}, "contentZh": zh}}
        if rng.random() < 0.5:
            feature["title"] = "rect"
        features.append(feature)
    tag = {"mode": "picture", "dataId": f"D-{index:06d}", "taskId": "T-synth", "timestamp": 1_700_000_000 + 97 * index}
    return {"info": info, "tagInfo": tag, "version": "2.1",
            "markResult": {"type": "FeatureCollection", "features": features}, **junk}
