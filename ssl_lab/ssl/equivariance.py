"""Dense equivariance objectives of the LEAD stage-2 baselines: thin-plate-spline warps, the
dense equivariance loss and Descriptor Vector Exchange (DVE).

* Thewlis, Bilen, Vedaldi 2017, "Unsupervised learning of object frames by dense equivariant
  image labelling": a dense descriptor map should follow a known warp ``T`` of the image.
* Thewlis, Albanie, Bilen, Vedaldi 2019, "Unsupervised learning of landmarks by exchanging
  descriptor vectors" (DVE): the same loss after re-expressing each descriptor through a
  third image of another identity, so descriptors must also match *across* instances.

ContrastLandmarks' stage 2 trains a 1x1-conv projector on the frozen stage-1 hypercolumn with
such an objective; LEAD compares against it.

Conventions. Coordinates are normalised ``(x, y)`` in [-1, 1] with ``align_corners=False``:
pixel ``j`` of ``W`` has its centre at ``(2j + 1) / W - 1`` (the pixel-centre convention of
``ssl_lab.metrics.landmarks``). A *grid* ``(B, H, W, 2)`` holds, for each output pixel ``v``,
the input position ``T(v)`` it samples: ``warp(x, grid)(v) = x(T(v))``.

Losses. ``f`` are the features of ``x``, ``f2`` those of ``x' = warp(x, T)``, ``grid`` is T at
the feature resolution (:func:`resize_grid`). For each cell ``v`` of ``x'``::

    p(u | v) = softmax_u( cos(f2_v, f_u) / tau )
    loss = mean_(b, v) sum_u p(u | v) ||pos(u) - T(v)||^gamma

Channel vectors are L2-normalised first (cosine similarity) rather than raw dot products, so
``tau`` alone sets the sharpness and the loss cannot be lowered by inflating feature norms.
(DVE's code also normalises, scaling both sides by 20, i.e. ``tau = 1/400``.) Default
``tau = 0.05``: logits span 40, far above ``log(24 * 24) = 6.4``, so p can become nearly
one-hot on a 24 x 24 map (a cell 0.3 below the best in cosine gets e^-6 of its weight) while
not saturating at initialisation. Distances are in feature cells (normalised units times
``w/2`` in x, ``h/2`` in y), so the loss reads as the expected match error in cells. Default
``gamma = 1`` (that expected distance; DVE's code uses the Euclidean distance in input
pixels to the power 0.5, i.e. ``gamma = 0.5``, which weights small errors more).

Memory: each loss builds (B, hw, hw) similarity, softmax and distance matrices; at
``h = w = 24``, ``B = 32`` that is 42 MB each in float32, fine; at 48 x 48 it is 0.7 GB each.
Random numbers are drawn on the CPU from an optional ``torch.Generator``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["tps_transform", "tps_grid", "random_tps", "warp", "resize_grid",
           "equivariance_loss", "dve_loss"]


def _hw(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, float)) else tuple(map(int, size))


def _centres(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised ``(x, y)`` centres of the cells of an ``h x w`` map: ``(h, w, 2)``."""
    ys = (2 * torch.arange(h, device=device, dtype=dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, device=device, dtype=dtype) + 1) / w - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], -1)


def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """TPS radial basis U(r) = r^2 log r^2 between points a (B, N, 2) and b (B, K, 2)."""
    d2 = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    return d2 * torch.log(d2.clamp(min=1e-30))                       # U(0) = 0


def tps_transform(src_ctrl, dst_ctrl, points) -> torch.Tensor:
    """The thin-plate spline T with ``T(dst_ctrl[k]) = src_ctrl[k]``, evaluated at ``points``.

    ``src_ctrl``, ``dst_ctrl``: ``(B, K, 2)`` normalised ``(x, y)``, K >= 3 not collinear;
    ``points``: ``(B, N, 2)``; a batch size of 1 in ``dst_ctrl`` / ``points`` broadcasts (a
    shared lattice: the kernel is then built once). T(p) = A [1, x, y] + sum_k w_k U(|p - dst_k|)
    with U(r) = r^2 log r^2 and the usual side conditions (sum w = 0, sum w dst = 0). Solved
    and evaluated in float64 (memory N * K * 8 bytes per batch element of ``dst_ctrl`` or
    ``points``); returns ``(B, N, 2)`` in points' dtype.
    """
    src, dst, pts = src_ctrl.double(), dst_ctrl.double(), points.double()
    Bd, K, _ = dst.shape
    P = torch.cat([torch.ones_like(dst[..., :1]), dst], -1)                   # (Bd, K, 3)
    L = torch.zeros(Bd, K + 3, K + 3, dtype=torch.float64, device=dst.device)
    L[:, :K, :K] = _kernel(dst, dst)
    L[:, :K, K:] = P
    L[:, K:, :K] = P.transpose(1, 2)
    zeros = torch.zeros(src.shape[0], 3, 2, dtype=torch.float64, device=src.device)
    coef = torch.linalg.solve(L, torch.cat([src, zeros], 1))                  # (B, K + 3, 2)
    Q = torch.cat([torch.ones_like(pts[..., :1]), pts], -1)
    out = _kernel(pts, dst) @ coef[:, :K] + Q @ coef[:, K:]
    return out.to(points.dtype)


def tps_grid(src_ctrl, dst_ctrl, size) -> torch.Tensor:
    """Sampling grid ``(B, H, W, 2)`` of the TPS mapping each ``dst_ctrl`` to its ``src_ctrl``
    (see :func:`tps_transform`; ``dst_ctrl`` may have batch size 1), for
    ``grid_sample(align_corners=False)``. ``size``: int or ``(H, W)``. Equal control points
    give the identity grid (``F.affine_grid`` of the identity)."""
    H, W = _hw(size)
    dtype = src_ctrl.dtype if src_ctrl.is_floating_point() else torch.float32
    pts = _centres(H, W, dst_ctrl.device, dtype).reshape(1, H * W, 2)
    return tps_transform(src_ctrl, dst_ctrl, pts).reshape(-1, H, W, 2)


def random_tps(batch: int, size, generator=None, ctrl: int = 5, jitter: float = 0.1,
               affine: bool = True, rotate: float = 10.0, scale=(0.9, 1.1), shift: float = 0.05,
               device=None, dtype=torch.float32) -> torch.Tensor:
    """Random warps in the style of Thewlis et al. / DVE: ``(B, H, W, 2)`` grids.

    The ``ctrl x ctrl`` lattice spanning [-1, 1] (the output control points) is jittered
    uniformly by up to ``jitter`` normalised units per coordinate (0.1 = 5 % of the image;
    the lattice spacing is 0.5 at ``ctrl = 5``), then, with ``affine``, mapped by a random
    similarity about the image centre: rotation uniform in +-``rotate`` degrees, scale uniform
    in ``scale``, shift uniform in +-``shift`` per axis; these are the input control points.
    The TPS reproduces the similarity exactly, so one solve gives the whole warp. The same
    generator state gives the same grids (the similarity is drawn even when ``affine=False``).
    """
    H, W = _hw(size)
    t = torch.linspace(-1, 1, ctrl, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    dst = torch.stack([xx, yy], -1).reshape(1, -1, 2)                          # (1, K, 2)
    u = lambda *s: 2 * torch.rand(*s, generator=generator, dtype=torch.float64) - 1   # U(-1, 1)
    src = dst + jitter * u(batch, ctrl * ctrl, 2)
    angle, s, tr = u(batch) * math.radians(rotate), u(batch), shift * u(batch, 1, 2)
    if affine:
        s = scale[0] + (s + 1) / 2 * (scale[1] - scale[0])
        c, n = torch.cos(angle) * s, torch.sin(angle) * s
        rot = torch.stack([torch.stack([c, -n], -1), torch.stack([n, c], -1)], -2)  # (B, 2, 2)
        src = src @ rot.transpose(1, 2) + tr
    return tps_grid(src.to(device), dst.to(device), (H, W)).to(dtype)


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``x'(v) = x(T(v))``: bilinear, border padding, ``align_corners=False``."""
    return F.grid_sample(x, grid.to(x), mode="bilinear", padding_mode="border",
                         align_corners=False)


def resize_grid(grid: torch.Tensor, size) -> torch.Tensor:
    """The same warp at another resolution ``(h, w)``: the field T bilinearly resampled at the
    new cell centres (``align_corners=False``). Values stay normalised coordinates, which do not
    depend on resolution. Exact for affine warps when downsampling (every new centre lies
    inside the old map); upsampling clamps T within half an old pixel of the border."""
    h, w = _hw(size)
    out = F.interpolate(grid.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                        align_corners=False)
    return out.permute(0, 2, 3, 1)


def _check(f, f2, grid):
    if f.dim() != 4 or f.shape != f2.shape or grid.shape != (f.shape[0], *f.shape[2:], 2):
        raise ValueError(f"expected f, f2 (B, C, h, w) and grid (B, h, w, 2); got "
                         f"{tuple(f.shape)}, {tuple(f2.shape)}, {tuple(grid.shape)}")


def _softmax_sim(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """softmax over k of cos(q_v, k_u) / tau; q (B, N, C), k (B, M, C) unit rows: (B, N, M)."""
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}")
    return torch.softmax(q @ k.transpose(1, 2) / tau, dim=-1)


def _unit(f: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> L2-normalised channel vectors (B, hw, C)."""
    return F.normalize(f.flatten(2).transpose(1, 2), dim=-1)


def _expected_distance(p: torch.Tensor, grid: torch.Tensor, gamma: float) -> torch.Tensor:
    """mean over (b, v) of sum_u p[b, v, u] ||pos(u) - T(v)||^gamma, distances in cells."""
    B, h, w, _ = grid.shape
    with torch.no_grad():                                            # T is a target
        cells = torch.tensor([w / 2, h / 2], device=p.device, dtype=p.dtype)
        pos = _centres(h, w, p.device, p.dtype).reshape(1, h * w, 2) * cells
        d = torch.cdist(grid.to(p).reshape(B, h * w, 2) * cells, pos.expand(B, -1, -1),
                        compute_mode="donot_use_mm_for_euclid_dist")   # (B, v, u)
        d = d if gamma == 1 else d.pow(gamma)
    return (p * d).sum(-1).mean()


def equivariance_loss(f, f2, grid, tau: float = 0.05, gamma: float = 1.0) -> torch.Tensor:
    """Dense equivariance loss (Thewlis et al. 2017), see the module docstring.

    ``f``: features of x ``(B, C, h, w)``; ``f2``: features of ``warp(x, T)``; ``grid``:
    T at the feature resolution ``(B, h, w, 2)``. Zero only if each ``f2_v`` matches exactly
    the cell of ``f`` at ``T(v)``. No gradient flows into ``grid``."""
    _check(f, f2, grid)
    return _expected_distance(_softmax_sim(_unit(f2), _unit(f), tau), grid, gamma)


def dve_loss(f, f2, f_aux, grid, tau: float = 0.05, gamma: float = 1.0) -> torch.Tensor:
    """Descriptor Vector Exchange (Thewlis et al. 2019), see the module docstring.

    Each query descriptor ``f2_v`` (of the warped image) is first replaced by its soft
    reconstruction from the auxiliary map ``f_aux`` (another identity, e.g.
    ``f.roll(1, 0)``)::

        y_v = sum_w softmax_w( cos(f2_v, f_aux_w) / tau ) * f_aux_w / ||f_aux_w||

    and ``y_v`` (re-normalised) is matched into ``f`` as in :func:`equivariance_loss`. The
    direction is DVE's: warped-image query -> auxiliary -> original image, where the error
    is measured against ``T(v)``. Unlike DVE's code (raw dot product with the unnormalised
    convex combination) ``y_v`` is re-normalised, so every similarity is a cosine."""
    _check(f, f2, grid)
    if f_aux.shape != f.shape:
        raise ValueError(f"f_aux must be {tuple(f.shape)}; got {tuple(f_aux.shape)}")
    a = _unit(f_aux)
    y = _softmax_sim(_unit(f2), a, tau) @ a                                    # (B, hw, C)
    return _expected_distance(_softmax_sim(F.normalize(y, dim=-1), _unit(f), tau), grid, gamma)
