"""Frechet distance between Gaussian fits of features (FID when the features are Inception's).

    FD = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})        (Heusel et al., 2017)

The feature network is a parameter.  A metric takes any callable
``features(images) -> (N, D)`` (a :class:`FeatureNet`) together with its *name*, and the
result is labelled by :func:`metric_name`: ``"FID"`` only for the FID Inception network
(name ``"inception-fid"``), ``"FD_<name>"`` otherwise (``FD_byol-r18``, ``FD_dino-vits``...).
A number computed with a stand-in network is not an FID and must not be printed as one.
The FID Inception network itself is :func:`ssl_lab.nets.extractors.fid_inception`
(torch-fidelity's FID Inception-v3, 2048-d pool features, name ``"inception-fid"``, weights
from a local file only); LPIPS-VGG lives beside it, :func:`ssl_lab.nets.extractors.lpips_vgg`.

The matrix square root: ``S_1 S_2`` is not symmetric, and the reference implementation
(``scipy.linalg.sqrtm``, then dropping a tiny imaginary part and retrying with ``eps * I``
added to both covariances when the result is not finite) is fragile when a covariance is
singular (fewer samples than feature dimensions).  We use the equivalent symmetric form:
with ``A = S_1^{1/2}``, ``S_1 S_2 = A (A S_2)`` has the same eigenvalues as
``(A S_2) A = A S_2 A``, a symmetric PSD matrix, so
``Tr (S_1 S_2)^{1/2} = sum_i sqrt(lambda_i(A S_2 A))``.  Both square roots come from
``eigh`` in float64, with round-off eigenvalues set to zero; nothing is complex, singular
covariances need no offset, and the value equals the reference one wherever that is well
defined (tested against ``scipy.linalg.sqrtm``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch

__all__ = ["FeatureNet", "metric_name", "gaussian_stats", "frechet_distance",
           "fd_from_features", "compute_features", "fd"]


class FeatureNet(Protocol):
    """What the image metrics need from a feature network: ``features(images) -> (N, D)``
    on a batch ``(N, 3, H, W)``, and a ``name`` used to label results (see
    :func:`metric_name`).  ``ssl_lab.nets.extractors`` provides the named networks."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def metric_name(feature_net_name: str) -> str:
    """``"FID"`` for the FID Inception network (``"inception-fid"``), else ``"FD_<name>"``."""
    return "FID" if feature_net_name == "inception-fid" else f"FD_{feature_net_name}"


def gaussian_stats(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of ``features`` ``(N, D)``, in float64.

    The covariance is the unbiased one (divisor ``N - 1``), as ``np.cov(rowvar=False)`` in
    the reference FID code."""
    x = torch.as_tensor(features).detach().double()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2; got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or Inf")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def _psd_eig(m: torch.Tensor, vectors: bool = True):
    """Eigen-decomposition of a symmetric PSD matrix, with eigenvalues at round-off level
    (below ``max * D * machine eps``, the usual rank threshold; negatives included) set to 0."""
    m = (m + m.T) / 2
    vals, vecs = torch.linalg.eigh(m) if vectors else (torch.linalg.eigvalsh(m), None)
    tol = vals.abs().max() * m.shape[0] * torch.finfo(m.dtype).eps
    return torch.where(vals > tol, vals, torch.zeros_like(vals)), vecs


def _sym_sqrt(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix."""
    vals, vecs = _psd_eig(m)
    return (vecs * vals.sqrt()) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (float64)."""
    mu1, mu2 = (torch.as_tensor(m).double().flatten() for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s).double() for s in (sigma1, sigma2))
    d = mu1.numel()
    if mu2.numel() != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
                         f"sigma {tuple(s1.shape)} / {tuple(s2.shape)}")
    a = _sym_sqrt(s1)
    m = a @ s2 @ a
    tr_covmean = _psd_eig(m, vectors=False)[0].sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)


def fd_from_features(a, b) -> float:
    """Frechet distance between Gaussian fits of two feature sets ``(N_a, D)``, ``(N_b, D)``."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


@torch.no_grad()
def compute_features(features: Callable[[torch.Tensor], torch.Tensor],
                     images: torch.Tensor | Iterable[torch.Tensor],
                     batch_size: int = 64) -> torch.Tensor:
    """Run ``features`` over ``images`` — a ``(N, C, H, W)`` tensor (split into batches of
    ``batch_size``) or any iterable of batches — and return the ``(N, D)`` features on CPU."""
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    out = [features(x).flatten(1).float().cpu() for x in batches]
    if not out:
        raise ValueError("no images given")
    return torch.cat(out)


def fd(features: Callable[[torch.Tensor], torch.Tensor], name: str, real, fake,
       batch_size: int = 64) -> tuple[str, float]:
    """Frechet distance of ``real`` and ``fake`` images under the feature network
    ``features`` called ``name``: returns ``(metric_name(name), value)``, e.g.
    ``("FD_byol-r18", 12.3)``."""
    value = fd_from_features(compute_features(features, real, batch_size),
                             compute_features(features, fake, batch_size))
    return metric_name(name), value
