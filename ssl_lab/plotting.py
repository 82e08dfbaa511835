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


def learning_curve(record: dict, columns=("Same", "Different", "same identity, new pose / % IOD")):
    """A recorded stage-1 learning curve (:mod:`ssl_lab.learning_curve`): the matching error
    over images seen, one panel per column, with the nothing-learned yardsticks dashed; and,
    when the record has them, a last panel with each hypercolumn stage alone (different
    identity). Returns the figure."""
    rows = record["rows"]
    steps = sorted((r for r in rows if r.startswith("step ")), key=lambda r: int(r.split()[1]))
    batch = record["parameters"]["config"]["batch_size"]
    x = [int(r.split()[1]) * batch / 1000 for r in steps]
    levels = all("levels" in rows[r] for r in steps)
    fig, axes = plt.subplots(1, len(columns) + levels, figsize=(3.6 * (len(columns) + levels), 2.8))
    if levels:
        ax = np.atleast_1d(axes)[-1]
        for level in rows[steps[0]]["levels"]:
            ax.plot(x, [rows[r]["levels"][level] for r in steps], marker=".", label=level)
        ax.plot(x, [rows[r]["Different"] for r in steps], c="k", lw=2, label="hypercolumn")
        ax.axhline(rows["no features"]["Different"], ls="--", c="grey", lw=1)
        ax.set_xlabel("thousand images seen (step 0: random init)", fontsize=8)
        ax.set_title("each stage alone, different identity", fontsize=9)
        ax.legend(fontsize=7)
    for ax, col in zip(np.atleast_1d(axes), columns):
        ax.plot(x, [rows[r][col] for r in steps], marker="o", label=record["parameters"]["recipe"])
        for name, style in (("no features", "--"), ("7x7 pixel patches", ":")):
            ax.axhline(rows[name][col], ls=style, c="grey", lw=1, label=name)
        ax.set_xlabel("thousand images seen (step 0: random init)", fontsize=8)
        ax.set_title(col if "/" in col else f"{col} identity (px at 70)", fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
