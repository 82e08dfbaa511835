"""Adaptive discriminator augmentation (StyleGAN2-ADA, Karras et al. 2020), compact.

Every image the discriminator sees, real or generated, goes through :func:`augment`; each
transform is applied to each sample independently with probability ``p``. The pipeline is
StyleGAN2-ADA's ``bgc`` (blit + geometric + colour) with its default strengths:

* blit: x-flip; rotation by a multiple of 90 degrees (uniform in {0, 90, 180, 270});
  integer translation, uniform in +-1/8 of the image size, rounded to whole pixels.
* geometric: isotropic scale ``2^N(0, 0.2^2)`` (log-normal, std ``0.2 ln 2``); rotation
  uniform in (-180, 180] degrees, applied twice with probability ``1 - sqrt(1 - p)`` each
  (before and after the anisotropic scale, as in the official pipeline, so that *some*
  rotation happens with probability ``p``); anisotropic scale ``(a, 1/a)`` with
  ``a = 2^N(0, 0.2^2)``; fractional translation ``N(0, 0.125^2)`` of the image size.
* colour (on ``[-1, 1]`` images, as a 4x4 matrix per sample): brightness ``+N(0, 0.2^2)``;
  contrast ``x 2^N(0, 0.5^2)``; luma flip (Householder reflection through the grey axis
  ``v = (1,1,1)/sqrt 3``, with probability p/2: a random bit gated by p, as in the original);
  hue rotation about ``v`` by an angle uniform in (-180, 180]; saturation: the component
  orthogonal to ``v`` scaled by ``2^N(0, 1)``.

All geometric transforms are composed into one 3x3 matrix per sample (in the normalised
coordinates of ``F.affine_grid``, square images) and applied by ONE bilinear
``F.grid_sample`` with reflection padding (the border is mirrored, the edge pixel
repeated). With ``align_corners=False`` flips, 90-degree rotations and whole-pixel shifts
land exactly on pixel centres, so they are exact. The official pipeline additionally
upsamples with a wavelet low-pass filter around the resampling to limit aliasing; that is
left out here. Everything is differentiable w.r.t. the image, including second order (R1
through the augmentation needs it); with ``p = 0`` the input is returned unchanged.

The heuristic (:class:`AdaptiveAugment`): the overfitting indicator is
``r_t = E[sign(D(x_real))]`` accumulated over ``interval = 4`` steps; then

    p <- clamp(p + sign(r_t - target) * batch * interval / (ada_kimg * 1000), 0, 1)

with ``target = 0.6``, ``ada_kimg = 500``: p can move from 0 to 1 in 500k real images.
(The official code clamps at 0 only; p > 1 would not be a probability here.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..distributed import batch_draw as _draw


def _bits(size, **kw):
    return torch.randint(0, 2, size, **kw)


def _quarters(size, **kw):
    return torch.randint(0, 4, size, **kw)

BGC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
       "brightness", "contrast", "lumaflip", "hue", "saturation")


def _eye(n: int, B: int, ref: torch.Tensor) -> torch.Tensor:
    return torch.eye(n, device=ref.device, dtype=ref.dtype).repeat(B, 1, 1)


def _mat(rows, ref: torch.Tensor) -> torch.Tensor:
    """Stack a nested list of (B,) tensors / floats into (B, n, n)."""
    B = ref.shape[0]
    return torch.stack([torch.stack([torch.as_tensor(e, dtype=ref.dtype, device=ref.device).expand(B)
                                     for e in row], dim=-1) for row in rows], dim=-2)


def _scale2d(sx, sy, ref):
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], ref)


def _translate2d(tx, ty, ref):
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]], ref)


def _rotate2d(t, ref):
    return _mat([[torch.cos(t), -torch.sin(t), 0], [torch.sin(t), torch.cos(t), 0], [0, 0, 1]], ref)


def augment(x: torch.Tensor, p: float, transforms=BGC, xint_max: float = 0.125,
            scale_std: float = 0.2, rotate_max: float = 1.0, aniso_std: float = 0.2,
            xfrac_std: float = 0.125, brightness_std: float = 0.2, contrast_std: float = 0.5,
            hue_max: float = 1.0, saturation_std: float = 1.0) -> torch.Tensor:
    """Augment a batch ``x (B, C, H, W)`` in [-1, 1] with probability ``p`` per transform
    and sample (see the module docstring). Uses the global torch RNG. Every draw goes
    through :func:`ssl_lab.distributed.batch_draw`: unchanged in one process; inside
    ``distributed.global_draws()`` (the data-parallel GAN training step) each parameter is
    drawn for the global batch and this process keeps its rows, so W processes augment
    their parts of a batch exactly as one process augments the whole batch."""
    p = float(p)
    unknown = set(transforms) - set(BGC)
    if unknown:
        raise ValueError(f"unknown augmentations {sorted(unknown)}; choose from {BGC}")
    if p <= 0:
        return x
    B, C, H, W = x.shape
    dev = x.device
    r = torch.zeros(B, device=dev, dtype=x.dtype)           # reference for shapes / dtype

    def gate(prob):                                          # per-sample Bernoulli(prob) in {0, 1}
        return (_draw(torch.rand, B, device=dev) < prob).to(x.dtype)

    # -- geometric: one sampling matrix M (output -> input coordinates) -------------------
    M = _eye(3, B, r)
    geometric = False
    if "xflip" in transforms:
        i = _draw(_bits, B, device=dev).to(x.dtype) * gate(p)
        M = M @ _scale2d(1 - 2 * i, 1, r)
        geometric = True
    if "rotate90" in transforms:
        k = _draw(_quarters, B, device=dev).to(x.dtype) * gate(p)
        M = M @ _rotate2d(k * (math.pi / 2), r)
        geometric = True
    if "xint" in transforms:
        t = (_draw(torch.rand, B, 2, device=dev, dtype=x.dtype) * 2 - 1) * xint_max * gate(p)[:, None]
        tx, ty = torch.round(t[:, 0] * W) * 2 / W, torch.round(t[:, 1] * H) * 2 / H
        M = M @ _translate2d(tx, ty, r)
        geometric = True
    if "scale" in transforms:
        s = torch.exp2(_draw(torch.randn, B, device=dev, dtype=x.dtype) * scale_std * gate(p))
        M = M @ _scale2d(s, s, r)
        geometric = True
    p_rot = 1 - math.sqrt(max(1 - p, 0.0))
    if "rotate" in transforms:
        t = (_draw(torch.rand, B, device=dev, dtype=x.dtype) * 2 - 1) * math.pi * rotate_max * gate(p_rot)
        M = M @ _rotate2d(t, r)
        geometric = True
    if "aniso" in transforms:
        a = torch.exp2(_draw(torch.randn, B, device=dev, dtype=x.dtype) * aniso_std * gate(p))
        M = M @ _scale2d(a, 1 / a, r)
        geometric = True
    if "rotate" in transforms:
        t = (_draw(torch.rand, B, device=dev, dtype=x.dtype) * 2 - 1) * math.pi * rotate_max * gate(p_rot)
        M = M @ _rotate2d(t, r)
    if "xfrac" in transforms:
        t = _draw(torch.randn, B, 2, device=dev, dtype=x.dtype) * xfrac_std * gate(p)[:, None]
        M = M @ _translate2d(t[:, 0] * 2, t[:, 1] * 2, r)
        geometric = True
    if geometric:
        grid = F.affine_grid(M[:, :2, :], list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # -- colour: one 4x4 matrix per sample acting on (r, g, b, 1) ------------------------
    colour = [t for t in transforms if t in ("brightness", "contrast", "lumaflip", "hue", "saturation")]
    if colour and C == 3:
        I4 = _eye(4, B, r)
        v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev, dtype=x.dtype) / math.sqrt(3)
        vv = torch.outer(v, v)
        Cm = I4
        if "brightness" in transforms:
            b = _draw(torch.randn, B, device=dev, dtype=x.dtype) * brightness_std * gate(p)
            Cm = _mat([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], r) @ Cm
        if "contrast" in transforms:
            c = torch.exp2(_draw(torch.randn, B, device=dev, dtype=x.dtype) * contrast_std * gate(p))
            Cm = _mat([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], r) @ Cm
        if "lumaflip" in transforms:
            i = _draw(_bits, B, device=dev).to(x.dtype) * gate(p)
            Cm = (I4 - 2 * vv * i[:, None, None]) @ Cm
        if "hue" in transforms:
            t = (_draw(torch.rand, B, device=dev, dtype=x.dtype) * 2 - 1) * math.pi * hue_max * gate(p)
            cos, sin = torch.cos(t)[:, None, None], torch.sin(t)[:, None, None]
            u = v[:3]
            K = torch.tensor([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]],
                             device=dev, dtype=x.dtype)
            R = I4.clone()
            R[:, :3, :3] = cos * torch.eye(3, device=dev, dtype=x.dtype) + sin * K + (1 - cos) * vv[:3, :3]
            Cm = R @ Cm
        if "saturation" in transforms:
            s = torch.exp2(_draw(torch.randn, B, device=dev, dtype=x.dtype) * saturation_std * gate(p))
            Cm = (vv + (I4 - vv) * s[:, None, None]) @ Cm
        x = (Cm[:, :3, :3] @ x.reshape(B, 3, H * W) + Cm[:, :3, 3:]).reshape(B, 3, H, W)
    return x


def ada_adjust(p: float, r_t: float, target: float = 0.6, batch: int = 16, interval: int = 4,
               ada_kimg: float = 500) -> float:
    """One ADA update: ``clamp(p + sign(r_t - target) * batch * interval / (ada_kimg * 1000), 0, 1)``."""
    step = math.copysign(1.0, r_t - target) if r_t != target else 0.0
    return min(max(p + step * batch * interval / (ada_kimg * 1000), 0.0), 1.0)


class AdaptiveAugment(nn.Module):
    """``augment`` with a probability ``p`` (a buffer) tuned by the ADA heuristic.

    Per training step: ``accumulate(real_logits)`` after the discriminator has scored the
    reals, then ``update(batch)``; every ``interval``-th update adjusts ``p`` from the mean
    sign accumulated since the last adjustment. ``target=None`` keeps ``p`` fixed."""

    def __init__(self, p: float = 0.0, target: float | None = 0.6, interval: int = 4,
                 ada_kimg: float = 500, transforms=BGC):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))
        self.target, self.interval, self.ada_kimg = target, interval, ada_kimg
        self.transforms = tuple(transforms)
        self._sign_sum, self._count, self._steps = 0.0, 0, 0
        self.last_rt: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, float(self.p), self.transforms)

    @torch.no_grad()
    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add the signs of D's logits on a batch of reals. Under torchrun the sum and the count
        are summed over the processes first (the global batch's), so every process holds the
        same accumulator and adjusts p alike. The official code sums the same statistic across
        GPUs too (training_loop.py: ``ada_stats = training_stats.Collector('Loss/signs/real')``,
        whose ``update()`` all-reduces the counters in torch_utils/training_stats.py ``_sync``),
        once per ``ada_interval`` steps; here once per step, so that a checkpoint taken between
        two adjustments holds the global sums. (Integer-valued sums: the same numbers.)"""
        s, n = float(real_logits.sign().sum()), real_logits.numel()
        if distributed.world_size() > 1:
            s, n = distributed.sum_over_processes([s, n])
            n = int(n)
        self._sign_sum += s
        self._count += n

    def update(self, batch: int) -> float | None:
        """Count one step; on every ``interval``-th, adjust p and return the r_t used."""
        self._steps += 1
        if self.target is None or self._steps % self.interval or self._count == 0:
            return None
        r_t = self._sign_sum / self._count
        self.p.fill_(ada_adjust(float(self.p), r_t, self.target, batch, self.interval, self.ada_kimg))
        self._sign_sum, self._count = 0.0, 0
        self.last_rt = r_t
        return r_t
