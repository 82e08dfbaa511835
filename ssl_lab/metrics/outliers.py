"""Worst generated images: Mahalanobis distance to the moments of real features (thesis Fig. 4.6).

Fit ``(mu, sigma)`` to real-image features (:func:`ssl_lab.metrics.fid.gaussian_stats`),
then score each generated image by ::

    d(x) = sqrt((x - mu)^T (sigma + eps I)^{-1} (x - mu))

and show the ``k`` largest (:func:`worst_k`).  The covariance of a few thousand samples of
2048-d features is often singular, hence the ridge ``eps I``, with ``eps`` relative to the
mean variance (``eps = reg * trace(sigma) / D``) so it is scale-free.
"""
from __future__ import annotations

import torch

__all__ = ["mahalanobis", "worst_k"]


def mahalanobis(features, mu, sigma, reg: float = 1e-6) -> torch.Tensor:
    """Mahalanobis distance of each row of ``features`` ``(N, D)`` to ``N(mu, sigma)``, with
    the regularised inverse ``(sigma + reg * mean(diag sigma) * I)^{-1}``: ``(N,)`` float64."""
    x = torch.as_tensor(features).detach().double()
    mu = torch.as_tensor(mu).double().flatten()
    s = torch.as_tensor(sigma).double()
    d = mu.numel()
    if x.dim() != 2 or x.shape[1] != d or s.shape != (d, d):
        raise ValueError(f"expected features (N, {d}), mu ({d},), sigma ({d}, {d}); got "
                         f"{tuple(x.shape)}, {tuple(mu.shape)}, {tuple(s.shape)}")
    if reg < 0:
        raise ValueError(f"reg must be >= 0; got {reg}")
    s = (s + s.T) / 2 + reg * torch.diagonal(s).mean() * torch.eye(d, dtype=s.dtype)
    chol, info = torch.linalg.cholesky_ex(s)
    if info != 0:
        raise ValueError("sigma + ridge is not positive definite: raise reg")
    z = torch.linalg.solve_triangular(chol, (x - mu).T, upper=False)      # L z = (x - mu)
    return z.square().sum(0).sqrt()


def worst_k(values, k: int, largest: bool = True) -> torch.Tensor:
    """Indices of the ``k`` largest (or smallest) ``values``, most extreme first."""
    v = torch.as_tensor(values).flatten()
    if not 0 < k <= v.numel():
        raise ValueError(f"k must be in 1..{v.numel()}; got {k}")
    return torch.topk(v, k, largest=largest).indices
