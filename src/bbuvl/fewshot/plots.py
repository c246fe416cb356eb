"""PNG plots of a few-shot evaluation: a metric against the threshold (one line per shot count), confusion matrix.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so plotting
works headless and never touches a caller's matplotlib state.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bbuvl.atomic import save_atomic
from bbuvl.data.labels import Hierarchy
from bbuvl.data.text import name_as_text

CJK_FAMILIES = ("Noto Sans CJK", "Noto Serif CJK", "WenQuanYi", "Source Han", "SimHei", "Microsoft YaHei",
                "PingFang", "Droid Sans Fallback", "AR PL", "Heiti", "Hiragino Sans GB")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of an installed font that draws Chinese, or None."""
    from matplotlib import font_manager

    for font in font_manager.fontManager.ttflist:
        if any(font.name.startswith(f) for f in CJK_FAMILIES):
            return font.name
    return None


def plain_text(text: str) -> str:
    """`text` as matplotlib draws it, character for character: a pair of `$` in it would be read as mathtext (a class
    folder named `$\\frac$` failed `fewshot eval` at its plot, after every embedding was done), and bytes of a file
    name that are not UTF-8 as `\\xbb` (matplotlib refused the text with a TypeError, after the whole measurement)."""
    return name_as_text(text).replace("$", r"\$")


def display_labels(labels: Sequence[str]) -> tuple[list[str], str | None]:
    """Tick labels that render: the labels themselves with a CJK font, else English glosses or `c<i>`.

    Returns the labels and the font family to use (None = matplotlib's default).
    """
    font = cjk_font()
    if font or all(label.isascii() for label in labels):
        return [plain_text(label) for label in labels], font
    hierarchy = Hierarchy.load()
    out = []
    for i, label in enumerate(labels):
        english = hierarchy.english(label)
        out.append(plain_text(english) if english.isascii() else f"c{i}")
    return out, None


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    save_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    return path


def plot_metric_vs_threshold(
    rows: Sequence[dict], metric: str, title: str, ylabel: str, path: str | Path, note: str = ""
) -> Path:
    """Line plot of `metric` against `threshold`, one line per `shots` value in `rows` (None values skipped)."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for k, shots in enumerate(dict.fromkeys(r["shots"] for r in rows)):
        pts = [(r["threshold"], r[metric]) for r in rows if r["shots"] == shots and r[metric] is not None]
        if pts:
            x, y = zip(*sorted(pts))
            # shrinking markers and varied dashes keep lines that coincide (a flat curve) all visible
            ax.plot(x, y, marker="os^Dv"[k % 5], markersize=max(3.0, 8.0 - 1.5 * k), linestyle=("-", "--", ":", "-.")[k % 4],
                    label=f"{shots} shot" + ("" if str(shots) == "1" else "s"))
    ax.set_xlabel("threshold (best score below it → Unknown)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="support per class", loc="best")
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.3")
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], title: str, path: str | Path) -> Path:
    """Heatmap of a confusion matrix `[L, L]` (rows truth, columns prediction) with the counts written in."""
    ticks, font = display_labels(labels)
    n = len(labels)
    side = min(14.0, 2.5 + 0.45 * n)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fontdict = {"family": font} if font else None
    ax.set_xticks(range(n), ticks, rotation=60, ha="right", fontsize=8, fontdict=fontdict)
    ax.set_yticks(range(n), ticks, fontsize=8, fontdict=fontdict)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    return _save(fig, Path(path))
