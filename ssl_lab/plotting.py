"""Plotting helpers shared by the chapters (matplotlib only)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

PART_COLOURS = np.array([
    [0.10, 0.10, 0.10], [0.95, 0.75, 0.60], [0.45, 0.25, 0.10], [0.20, 0.60, 0.20],
    [0.10, 0.80, 0.40], [0.20, 0.40, 0.95], [0.50, 0.20, 0.90], [0.95, 0.55, 0.10],
    [0.90, 0.10, 0.20], [0.35, 0.35, 0.35], [0.10, 0.90, 0.90], [0.95, 0.95, 0.20]])


def _np_image(img) -> np.ndarray:
    img = torch.as_tensor(img).detach().float().cpu()
    if img.dtype == torch.uint8 or img.max() > 1.5:
        img = img / 255
    return img.permute(1, 2, 0).clamp(0, 1).numpy()


def parts_rgb(parts) -> np.ndarray:
    """A part label map (H, W) as an RGB image."""
    return PART_COLOURS[torch.as_tensor(parts).long().cpu().numpy() % len(PART_COLOURS)]


def face_grid(images, landmarks=None, visible=None, titles=None, ncols: int = 8, size: float = 1.6,
              marker_size: float = 6, parts=None, alpha: float = 0.55):
    """A grid of faces, optionally with landmarks (visible in lime, hidden as red x) and a
    part-map overlay. Returns the figure."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        im = _np_image(images[i])
        if parts is not None:
            im = (1 - alpha) * im + alpha * parts_rgb(parts[i])
        ax.imshow(im, interpolation="nearest")
        if landmarks is not None:
            kp = torch.as_tensor(landmarks[i]).cpu().numpy()
            vis = np.ones(len(kp), bool) if visible is None else torch.as_tensor(visible[i]).cpu().numpy()
            ax.scatter(kp[vis, 0], kp[vis, 1], s=marker_size, c="lime", linewidths=0)
            ax.scatter(kp[~vis, 0], kp[~vis, 1], s=marker_size, c="red", marker="x", linewidths=0.8)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def landmark_overlays(images, truth, preds: dict, idx, titles=None, size: float = 1.6):
    """Regressed landmarks on faces (Figs. 3.7, 3.10, 3.11): a row per entry of ``preds``
    (row label -> ``(N, K, 2)`` predicted points), a column per image index in ``idx``; the
    annotation ``truth`` (``(N, K, 2)``) as circles, the prediction as crosses, one colour per
    landmark. ``titles``: one per column. Returns the figure."""
    idx = [int(i) for i in idx]
    colours = plt.cm.tab10(np.arange(truth.shape[1]) % 10)
    fig, axes = plt.subplots(len(preds), len(idx), figsize=(size * len(idx), (size + 0.1) * len(preds)),
                             squeeze=False)
    for r, (row, pred) in enumerate(preds.items()):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(_np_image(images[i]))
            ax.scatter(*torch.as_tensor(truth[i]).T, s=14, facecolors="none", edgecolors=colours)
            ax.scatter(*torch.as_tensor(pred[i]).T, s=14, c=colours, marker="x")
            ax.set_xticks([]); ax.set_yticks([])
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(row, fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def learning_curve(records, columns=("Same", "Different", "same identity, new pose / % IOD")):
    """Recorded stage-1 learning curves (:mod:`ssl_lab.learning_curve`) of one recipe: one
    record or a list of them (its seeds, one line each), the matching error over images seen,
    one panel per column, with the nothing-learned yardsticks of the first record in grey
    (dashed: copying positions, dotted: 7x7 patches); and, when the records have them, a last
    panel with each hypercolumn stage alone on different identity (one colour per stage, one
    line per seed). Returns the figure."""
    records = [records] if isinstance(records, dict) else list(records)
    first = records[0]["rows"]
    curves = []
    for rec in records:
        rows = rec["rows"]
        steps = sorted((r for r in rows if r.startswith("step ")), key=lambda r: int(r.split()[1]))
        batch = rec["parameters"]["config"]["batch_size"]
        curves.append((rec, rows, steps, [int(r.split()[1]) * batch / 1000 for r in steps]))
    levels = all("levels" in rows[r] for _, rows, steps, _ in curves for r in steps)
    fig, axes = plt.subplots(1, len(columns) + levels, figsize=(3.6 * (len(columns) + levels), 2.8))
    axes = np.atleast_1d(axes)
    label = lambda rec: f"seed {rec['seeds'][0]}" if "seeds" in rec else rec["parameters"]["recipe"]
    xlabel = "thousand images seen (step 0: random init)"
    if levels:
        ax = axes[-1]
        for n, (rec, rows, steps, x) in enumerate(curves):
            for c, level in enumerate(rows[steps[0]]["levels"]):
                ax.plot(x, [rows[r]["levels"][level] for r in steps], marker=".", c=f"C{c}", lw=1,
                        alpha=1 if n == 0 else 0.5, label=level if n == 0 else None)
            ax.plot(x, [rows[r]["Different"] for r in steps], c="k", lw=2 if n == 0 else 1,
                    label="hypercolumn" if n == 0 else None)
        ax.axhline(first["no features"]["Different"], ls="--", c="grey", lw=1)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title("each stage alone, different identity", fontsize=9)
        ax.legend(fontsize=7)
    for ax, col in zip(axes, columns):
        for rec, rows, steps, x in curves:
            ax.plot(x, [rows[r][col] for r in steps], marker="o", ms=3, label=label(rec))
        for name, style in (("no features", "--"), ("7x7 pixel patches", ":")):
            ax.axhline(first[name][col], ls=style, c="grey", lw=1, label=name)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(col if "/" in col else f"{col} identity (px at 70)", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle(records[0]["parameters"]["recipe"], fontsize=10)
    fig.tight_layout()
    return fig
