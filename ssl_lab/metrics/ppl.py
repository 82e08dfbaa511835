"""Perceptual path length (PPL), as defined and computed in StyleGAN2 (Karras et al., 2020).

For a latent pair ``(l0, l1)`` and ``t``, the path-length sample is the perceptual distance
between the images at ``t`` and ``t + epsilon`` along the interpolation, over epsilon^2::

    d = distance(G(interp(l0, l1, t)), G(interp(l0, l1, t + eps))) / eps^2

* ``space="w"``: ``interp`` is ``lerp`` in W (of the mapped latents); ``space="z"``:
  ``slerp`` in Z (the Gaussian latents normalised to the unit sphere).
* ``sampling="full"``: ``t ~ U(0, 1)``; ``sampling="end"``: ``t = 0`` (path end points only).
  This is what NVIDIA's code does (``t = rand * (1 if 'full' else 0)``), which the StyleGAN2
  paper reports as "PPL end".  The thesis does not spell its settings out; the HSR release
  evaluates StyleGAN2-ADA's ``ppl2_wend``: W, end, ``eps = 1e-4``, no crop, 50k samples.
* ``crop``: StyleGAN's face crop (rows 3/8..7/8, columns 2/8..6/8 of a square image) before
  the distance; images larger than 256 px are then box-downsampled to 256 like NVIDIA's
  code (the VGG behind LPIPS was made for about 224 px).
* ``distance``: LPIPS (VGG) in the paper; here any callable ``(img_a, img_b) -> (B,)``.
  Its input range is its own business (NVIDIA's VGG takes [0, 255]; ``lpips`` takes [-1, 1]).

The score is the mean after dropping the samples below the 1st and above the 99th
percentile (:func:`filtered_mean`).  The per-sample distances come back too (histograms,
and the top/bottom-10 % interpolations of thesis Figs. 4.4-4.5).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["slerp", "lerp", "face_crop", "filtered_mean", "path_length", "feature_distance"]


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a + t (b - a)``; ``t`` broadcasts against the trailing dimensions."""
    return a + t * (b - a)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of batches of vectors ``(..., D)`` after normalising both to
    unit length; the result has unit norm, ``slerp(a, b, 0) = a/|a|`` and ``slerp(a, b, 1) =
    b/|b|``, and it moves along the great circle at constant angular speed (the angle
    between ``a`` and ``b`` per unit ``t``).  ``t``: scalar or ``(..., 1)``."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(-1, keepdim=True).clamp(-1, 1)
    p = t * torch.acos(d)
    c = b - d * a                       # the component of b orthogonal to a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """StyleGAN's PPL face crop of square images ``(B, C, S, S)``: rows ``3S/8 .. 7S/8``,
    columns ``2S/8 .. 6S/8`` (with ``S/8`` rounded down, as in NVIDIA's code)."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"face_crop expects square images; got {tuple(images.shape[-2:])}")
    c = images.shape[-1] // 8
    return images[..., c * 3: c * 7, c * 2: c * 6]


def _downsample_to_256(images: torch.Tensor) -> torch.Tensor:
    factor = images.shape[2] // 256
    if factor <= 1:
        return images
    b, ch, h, w = images.shape
    return images.reshape(b, ch, h // factor, factor, w // factor, factor).mean((3, 5))


def filtered_mean(values, lo: float = 1, hi: float = 99) -> float:
    """Mean of ``values`` after dropping those below the ``lo``-th and above the ``hi``-th
    percentile, computed as in StyleGAN: ``lo_v = percentile(lo, 'lower')``,
    ``hi_v = percentile(hi, 'higher')``, mean of ``lo_v <= v <= hi_v``."""
    v = torch.as_tensor(values).detach().double().flatten().cpu().numpy()
    if v.size == 0:
        raise ValueError("no values to average")
    lo_v = np.percentile(v, lo, method="lower")
    hi_v = np.percentile(v, hi, method="higher")
    return float(v[(lo_v <= v) & (v <= hi_v)].mean())


@torch.no_grad()
def path_length(generate: Callable[[torch.Tensor], torch.Tensor],
                distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                sample_latents: Callable[[int], torch.Tensor], n: int,
                epsilon: float = 1e-4, space: str = "w", sampling: str = "end",
                crop: bool | Callable[[torch.Tensor], torch.Tensor] | None = None,
                batch: int = 64, rng: torch.Generator | None = None
                ) -> tuple[float, torch.Tensor]:
    """Perceptual path length over ``n`` samples.

    ``sample_latents(k)``: ``k`` latents *in the interpolation space* — for ``space="w"``
    the mapped codes ``G.mapping(z)`` (``(k, D)`` or ``(k, num_ws, D)``), for ``space="z"``
    Gaussian ``z`` ``(k, D)``.  ``generate(latents)``: images ``(k, C, H, W)`` from such
    latents (the synthesis network for W, mapping + synthesis for Z; fix its noise inputs).
    ``distance(a, b)``: per-sample perceptual distance, ``(k,)`` (or anything that flattens
    to it).  ``crop``: ``True`` for :func:`face_crop`, or a callable.  ``rng`` seeds ``t``.

    Returns ``(ppl, distances)``: the percentile-filtered mean (:func:`filtered_mean`) and
    all ``n`` per-sample values ``d / eps^2`` (float64, CPU).
    """
    if space not in ("w", "z"):
        raise ValueError(f"space must be 'w' or 'z'; got {space!r}")
    if sampling not in ("end", "full"):
        raise ValueError(f"sampling must be 'end' or 'full'; got {sampling!r}")
    crop_fn = face_crop if crop is True else (crop or None)
    out = []
    for start in range(0, n, batch):
        k = min(batch, n - start)
        l0, l1 = sample_latents(k), sample_latents(k)
        t = torch.rand(k, generator=rng, dtype=torch.float64)
        t = (t if sampling == "full" else torch.zeros_like(t)).to(device=l0.device, dtype=l0.dtype)
        t = t.view(k, *([1] * (l0.dim() - 1)))
        interp = lerp if space == "w" else slerp
        images = generate(torch.cat([interp(l0, l1, t), interp(l0, l1, t + epsilon)]))
        if crop_fn is not None:
            images = crop_fn(images)
        images = _downsample_to_256(images)
        img0, img1 = images[:k], images[k:]
        out.append(distance(img0, img1).reshape(k).double().cpu() / epsilon ** 2)
    distances = torch.cat(out)
    return filtered_mean(distances), distances


def feature_distance(backbone, levels=(1, 2, 3, 4), input_size: int | None = None, grad: bool = False):
    """A perceptual distance for PPL below full scale, where the LPIPS VGG weights are not
    available: LPIPS's uncalibrated form (``lpips=False`` in the ``lpips`` package: no learned
    per-channel weights) on a stand-in network. For each of ``levels`` of ``backbone`` (a
    :class:`~ssl_lab.nets.backbones.Backbone`), channel vectors are scaled to unit length,
    the squared difference is summed over channels and averaged over positions; the levels
    are summed. Takes images in [-1, 1], resized (bilinear, antialiased) to ``input_size``
    first when given (the resolution the stand-in was trained at); returns ``(B,)``.
    ``.name`` labels the result. ``grad``: differentiable in the images (for latent
    projection, :func:`ssl_lab.gan.projection.project`); else computed without gradients."""
    dtype = next(backbone.parameters()).dtype        # float64 for a reproducible projection

    def prepare(x):
        x = (x.to(dtype) + 1) / 2
        if input_size is not None and x.shape[-1] != input_size:
            x = torch.nn.functional.interpolate(x, size=(input_size, input_size), mode="bilinear",
                                                align_corners=False, antialias=True)
        return x

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            fa, fb = backbone(prepare(a)), backbone(prepare(b))
        unit = lambda f: f / (f.norm(dim=1, keepdim=True) + 1e-10)
        return sum(((unit(fa[i]) - unit(fb[i])) ** 2).sum(1).mean((1, 2)) for i in levels)
    distance.name = f"lpips-uncalibrated-{backbone.name}"
    return distance
