"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019), k = 3.

Each feature set is taken as an estimate of its manifold: the union of balls centred at
its samples, each with radius the distance to that sample's k-th nearest neighbour in the
same set (the sample itself not counted).  Then

* precision = fraction of *fake* samples inside the real manifold (realism),
* recall    = fraction of *real* samples inside the fake manifold (coverage),

with "inside" meaning ``||x - c|| <= radius(c)`` for at least one centre ``c`` (as in the
authors' and StyleGAN2-ADA's code).  Like FD, the numbers depend on the feature network
(VGG16 in the paper); label them with its name.  Distances are computed in row chunks with
``torch.cdist`` so 10k x 10k sets need only ``chunk x N`` floats at a time.
"""
from __future__ import annotations

import torch

__all__ = ["knn_radii", "inside_manifold", "precision_recall"]


def _as_features(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach()
    if x.dim() != 2:
        raise ValueError(f"{name} must be (N, D) features; got {tuple(x.shape)}")
    return x.float()


def knn_radii(features, k: int = 3, chunk: int = 1024) -> torch.Tensor:
    """Distance of each sample to its ``k``-th nearest neighbour in the same set: ``(N,)``."""
    x = _as_features(features, "features")
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k = {k} needs at least k + 1 = {k + 1} samples; got {x.shape[0]}")
    # the k+1-th smallest distance of a row: the smallest is the sample itself (0)
    return torch.cat([torch.cdist(rows, x).kthvalue(k + 1, dim=1).values
                      for rows in x.split(chunk)])


def inside_manifold(probes, centres, radii, chunk: int = 1024) -> torch.Tensor:
    """For each probe ``(M, D)``, whether it lies in some ball ``(centres (N, D), radii (N,))``:
    a ``(M,)`` bool tensor."""
    p, c = _as_features(probes, "probes"), _as_features(centres, "centres")
    r = torch.as_tensor(radii).to(c)
    return torch.cat([(torch.cdist(rows, c) <= r[None]).any(dim=1) for rows in p.split(chunk)])


def precision_recall(real, fake, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """Improved precision and recall of ``fake`` ``(N_f, D)`` w.r.t. ``real`` ``(N_r, D)``
    features: ``{"precision": ..., "recall": ...}`` (floats in [0, 1])."""
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    precision = inside_manifold(fake, real, knn_radii(real, k, chunk), chunk).float().mean()
    recall = inside_manifold(real, fake, knn_radii(fake, k, chunk), chunk).float().mean()
    return {"precision": float(precision), "recall": float(recall)}
