"""Part discovery by clustering per-pixel features (thesis Fig. 3.5, 3.6), and its score.

The thesis clusters stage-1 hypercolumn pixels with k-means and shows by eye that clusters
follow face parts. Here the clustering is also scored against the SynthFaces part maps:
normalised mutual information (NMI) and purity (each cluster counts as its majority part).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pixel_features(feats: torch.Tensor, parts: torch.Tensor | None = None, normalize: bool = True):
    """Flatten dense features ``(N, C, h, w)`` to pixels ``(N*h*w, C)`` (L2-normalised unless
    ``normalize=False``), and part maps ``(N, H, W)`` to the feature grid (nearest) as
    ``(N*h*w,)`` labels."""
    N, C, h, w = feats.shape
    feats = F.normalize(feats.float(), dim=1) if normalize else feats.float()
    x = feats.permute(0, 2, 3, 1).reshape(-1, C)
    if parts is None:
        return x, None
    lab = F.interpolate(parts[:, None].float(), size=(h, w), mode="nearest")[:, 0].long().reshape(-1)
    return x, lab


def kmeans_parts(x: torch.Tensor, k: int = 9, n_fit: int = 20000, seed: int = 0):
    """k-means (scikit-learn) fitted on at most ``n_fit`` random pixels of ``x`` (P, C);
    returns the fitted model and the cluster of every pixel."""
    from sklearn.cluster import KMeans
    rng = np.random.default_rng(seed)
    xs = x.numpy()
    fit = xs[rng.choice(len(xs), min(n_fit, len(xs)), replace=False)]
    km = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(fit)
    return km, km.predict(xs)


def purity(clusters, labels) -> float:
    """Fraction of pixels whose cluster's majority label is their own label."""
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    table = np.zeros((clusters.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    return float(table.max(1).sum() / len(clusters))


def score(clusters, labels) -> dict[str, float]:
    """NMI (arithmetic normalisation, scikit-learn) and purity of a clustering."""
    from sklearn.metrics import normalized_mutual_info_score
    return dict(nmi=float(normalized_mutual_info_score(labels, clusters)), purity=purity(clusters, labels))


def position_features(n: int, h: int, w: int) -> torch.Tensor:
    """The control "feature" of a pixel that is only its place in the image: ``(n, 2, h, w)``
    cell-centre coordinates in [-1, 1] (cluster them with ``pixel_features(...,
    normalize=False)``). On aligned faces, position alone already predicts parts."""
    ys = (torch.arange(h) + 0.5) / h * 2 - 1
    xs = (torch.arange(w) + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0)         # (2, h, w): x, y
    return grid[None].expand(n, -1, -1, -1)
