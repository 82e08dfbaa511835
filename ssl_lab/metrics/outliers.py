"""Worst generated images: Mahalanobis distance to the moments of real features (thesis Fig. 4.6).

Fit ``(mu, sigma)`` to real-image features (:func:`ssl_lab.metrics.fid.gaussian_stats`),
then score each generated image by ::

    d(x) = sqrt((x - mu)^T (sigma + eps I)^{-1} (x - mu))

and show the ``k`` largest (:func:`worst_k`).  The covariance of a few thousand samples of
2048-d features is often singular, hence the ridge ``eps I``, with ``eps`` relative to the
mean variance (``eps = reg * trace(sigma) / D``) so it is scale-free. :func:`tail_sample` picks
a few members of a tail (the top or bottom 10 % of samples by path length, thesis Figs. 4.4 and
4.5).
"""
from __future__ import annotations

import torch

__all__ = ["mahalanobis", "tail_sample", "worst_k"]


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


def tail_sample(values, frac: float = 0.1, k: int = 3, largest: bool = True) -> torch.Tensor:
    """``k`` indices spread evenly by rank over the ``frac`` largest (or smallest) ``values``
    (``max(k, round(frac * N))`` of them), the most extreme first and the tail's edge last:
    representatives of a tail rather than its ``k`` extremes."""
    v = torch.as_tensor(values).flatten()
    m = max(k, round(frac * v.numel()))
    if not 0 < k <= m <= v.numel():
        raise ValueError(f"need 0 < k <= frac * N <= N; got k={k}, frac={frac}, N={v.numel()}")
    tail = torch.topk(v, m, largest=largest).indices
    return tail[torch.linspace(0, m - 1, k).round().long()]
