"""PNG pictures of the doctor's findings: memory over iterations, activations per layer, attention maps, loss landscape.

Figures are built with matplotlib's object API (no pyplot state, no GUI backend), one function per picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle

from bbuvl.atomic import save_atomic
from bbuvl.diagnostics.attention import AttentionMaps
from bbuvl.diagnostics.features import LayerStats
from bbuvl.diagnostics.landscape import Landscape
from bbuvl.diagnostics.memory import MemoryTrace
from bbuvl.eval.fonts import FontChoice
from bbuvl.fewshot.plots import plain_text

_MEMORY_LABELS = {"rss": "resident memory (MB)", "cuda_allocated": "CUDA allocated (MB)"}


def plot_format(out: str | Path) -> str:
    """The picture format `out`'s suffix names (png without one); ValueError naming `out` for one matplotlib cannot
    write, so that a typo fails before minutes of work rather than at the end of them."""
    out = Path(out)
    fmt = (out.suffix.lstrip(".") or "png").lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if fmt not in known:
        raise ValueError(f"{out}: cannot write a picture as .{fmt}; name it .png (or {', '.join('.' + k for k in sorted(known))})")
    return fmt


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    fmt = plot_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(out, lambda fh: fig.savefig(fh, format=fmt, dpi=110))
    return out


def plot_memory(trace: MemoryTrace, out: str | Path, what: str) -> Path:
    """Memory after each iteration with the fitted trend line; the warm-up shaded."""
    what = plain_text(what)  # a checkpoint or dataset named with `$`s is drawn as named
    trends = trace.trends()
    fig = Figure(figsize=(8, 3.2 * len(trace.samples)), layout="constrained")
    n = len(next(iter(trace.samples.values())))
    for row, (metric, values) in enumerate(trace.samples.items()):
        ax = fig.add_subplot(len(trace.samples), 1, row + 1)
        x = np.arange(1, n + 1)
        ax.plot(x, values, lw=1, label="measured")
        t = trends[metric]
        xs = np.arange(trace.warmup + 1, n + 1)
        window = np.asarray(values[trace.warmup:])
        fit = window.mean() + t.slope_mb_per_iter * (xs - xs.mean())
        ax.plot(xs, fit, "r--", lw=1.5, label=f"trend {t.per_1000:+.1f} MB / 1000 it: {t.verdict}")
        ax.axvspan(0.5, trace.warmup + 0.5, color="0.9", label="warm-up (not fitted)")
        ax.set_xlabel("iteration")
        ax.set_ylabel(_MEMORY_LABELS.get(metric, metric))
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"doctor memory: {what}, {n} iterations: {trace.verdict}")
    return _save(fig, out)


def plot_features(stats: list[LayerStats], out: str | Path, what: str) -> Path:
    """Dead-unit fraction per layer (bars) and the spread of activations per layer (box plots)."""
    what = plain_text(what)  # a checkpoint or dataset named with `$`s is drawn as named
    names = [s.name for s in stats]
    y = np.arange(len(stats))
    fig = Figure(figsize=(12, 0.45 * len(stats) + 2), layout="constrained")
    ax_dead, ax_act = fig.subplots(1, 2, sharey=True)
    fractions = [100 * s.dead_fraction for s in stats]
    ax_dead.barh(y, fractions, color=["tab:red" if f > 0 else "tab:green" for f in fractions])
    for yi, s in zip(y, stats):
        ax_dead.text(max(100 * s.dead_fraction, 1), yi, f" {s.dead}/{s.units}", va="center", fontsize=8)
    ax_dead.set_xlim(0, 115)
    ax_dead.set_xlabel("dead units (%)  (mean |activation| < 1e-6)")
    ax_dead.set_title("dead units per layer")
    ax_act.boxplot([s.samples.numpy() for s in stats], positions=y, vert=False, widths=0.6, showfliers=False)
    ax_act.scatter([s.mean for s in stats], y, marker="D", color="tab:orange", s=14, zorder=3, label="mean")
    ax_act.set_xscale("symlog", linthresh=1e-2)
    ax_act.set_xlabel("activation (symlog)")
    ax_act.set_title("activation distribution per layer")
    ax_act.legend(loc="lower right", fontsize=8)
    ax_dead.set_yticks(y, names, fontsize=8)  # after boxplot, which would relabel the shared axis with positions
    ax_dead.set_ylim(len(stats) - 0.5, -0.5)  # first layer on top
    fig.suptitle(f"doctor features: activation statistics and dead units per layer of the head and adapters ({what})")
    return _save(fig, out)


def plot_attention(maps: AttentionMaps, out: str | Path, what: str, font: FontChoice) -> Path:
    """The image with each top query's cross-attention as a heat map and its predicted box."""
    what = plain_text(what)  # a photo named with `$`s is drawn as named
    image = np.asarray(maps.image)
    H, W = image.shape[:2]
    n = len(maps.queries)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(4 * cols, 3.6 * rows + 0.6), layout="constrained")
    label_font = FontProperties(fname=str(font.path), size=9) if font.cjk else FontProperties(size=9)
    for k, q in enumerate(maps.queries):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(image)
        heat = (q.heat / q.heat.max().clamp_min(1e-12)).numpy()
        ax.imshow(heat, cmap="jet", alpha=0.45, extent=(0, W, H, 0), interpolation="bilinear")
        x1, y1, x2, y2 = q.box
        ax.add_patch(Rectangle((x1 * W, y1 * H), (x2 - x1) * W, (y2 - y1) * H, fill=False, edgecolor="white", lw=2))
        caption = q.caption if font.cjk or q.caption.isascii() else q.caption.encode("ascii", "replace").decode()
        # The model's own words: a `$...$` in them is not mathtext.
        ax.set_title(f"query {q.query}: p={q.score:.2f}, {100 * q.vision_share:.0f}% on image\n{plain_text(caption[:40])}",
                     fontproperties=label_font)
        ax.set_axis_off()
    h, w = maps.grid
    fig.suptitle(f"doctor attention: decoder layer {maps.layer} cross-attention of the top {n} queries over {what} "
                 f"({h}x{w} patch grid)")
    return _save(fig, out)


def plot_landscape(land: Landscape, out: str | Path, what: str) -> Path:
    """Filled contours of the loss over the two directions; the checkpoint marked at (0, 0)."""
    what = plain_text(what)  # a checkpoint or dataset named with `$`s is drawn as named
    losses = np.ma.masked_invalid(np.asarray(land.losses, dtype=float))
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    a, b = np.meshgrid(land.alphas, land.betas, indexing="ij")
    filled = ax.contourf(b, a, losses, levels=30, cmap="viridis")
    ax.contour(b, a, losses, levels=10, colors="white", linewidths=0.5, alpha=0.6)
    fig.colorbar(filled, ax=ax, label="mean training loss")
    ax.plot([0], [0], "rx", ms=12, mew=3, label=f"checkpoint (loss {land.center:.3g})")
    ax.set_xlabel("direction 2 (filter-normalised)")
    ax.set_ylabel("direction 1 (filter-normalised)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"doctor landscape: loss along two random directions\n{what}; groups {', '.join(land.groups)} "
                 f"({land.parameters:,} parameters)")
    return _save(fig, out)

