"""GAN inversion by latent optimisation (thesis Sec. 4.3.3: "we use the latent code
optimization to find the corresponding latent codes" of real images before editing them).

:func:`project` follows ``projector.py`` of stylegan2-ada-pytorch (Karras et al., 2020; the
copy in the HSR release, val-iisc/HSR ``projector.py``, adds the ``w_plus`` switch):

* ``w`` statistics from 10000 mapped ``z ~ N(0, I)`` drawn by ``RandomState(123)``: the
  start point ``w_avg`` is their mean, ``w_std = sqrt(sum |w - w_avg|^2 / N)`` the scale of
  the added noise;
* Adam (betas 0.9, 0.999) on ``w``, initial learning rate 0.1, per step ``t = step / steps``:
  ``lr = lr0 * ramp``, ``ramp = (0.5 - 0.5 cos(pi min(1, (1 - t) / 0.25))) * min(1, t / 0.05)``
  (cosine ramp-down over the last quarter, linear ramp-up over the first 5 %; the first
  step has ``lr = 0``), :func:`learning_rate`;
* noise added to ``w`` at every step: ``N(0, 1) * w_std * 0.05 * max(0, 1 - t / 0.75)^2``,
  decaying to zero at 75 % of the steps (:func:`w_noise_scale`);
* one ``w`` broadcast to all ``num_ws`` rows by default; ``w_plus=True`` optimises every row
  (the HSR copy's switch, whose default is on; stylegan2-ada-pytorch has only single ``w``);
* images synthesised with ``noise_mode="const"``; the loss is the perceptual distance to
  the target (their LPIPS of NVIDIA's VGG16: the squared difference of its normalised
  features, summed);
* the optimised ``w`` of the last step is returned, broadcast to ``(num_ws, w_dim)``.

What differs:

* The distance is passed in: ``distance(synth, target) -> (B,)``, both in [-1, 1] (LPIPS at
  full scale, e.g. ``lpips.LPIPS(net="vgg")``; below it a stand-in such as
  :func:`mse_distance`, or the PPL stand-in :func:`ssl_lab.metrics.ppl.feature_distance`
  made with ``grad=True``). It must be differentiable in its first argument. Their
  conversion to [0, 255] and the ``area`` downsampling of images above 256 px belong to the
  distance here. ``mse_weight`` adds ``mse_weight * mean((synth - target)^2)`` per image
  (their projector has no pixel term).
* No noise-input optimisation. Their projector re-randomises the generator's
  ``noise_const`` buffers, optimises them with Adam alongside ``w`` under the noise
  regulariser (weight 1e5, multi-scale autocorrelation) and renormalises them each step.
  Here the generator's noise maps (:class:`~ssl_lab.nets.stylegan2.SynthesisLayer`
  ``noise_const``, one ``(r, r)`` map per layer) are part of G and shared by the whole
  batch, so they are left as they are: only ``w`` is optimised, and G is not modified.
* Batched: ``target`` is ``(B, 3, R, R)`` and each image has its own ``w``; the summed loss
  makes every image's gradient (and Adam's per-coordinate step) the one it would have
  alone. Their noise-free ``w`` statistics are shared; the added noise is drawn per image
  from ``torch.Generator().manual_seed(seed)``, so a run is deterministic given ``seed``.
* ``w_std`` is that of single ``w`` rows also with ``w_plus`` (the HSR copy sums over all
  rows there, a ``sqrt(num_ws)`` larger noise).
* Their default is 1000 steps; 300 here.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["learning_rate", "w_noise_scale", "w_stats", "mse_distance", "project"]


def learning_rate(step: int, steps: int, lr: float = 0.1, rampup: float = 0.05,
                  rampdown: float = 0.25) -> float:
    """projector.py's schedule: ``t = step / steps``; ``lr * (0.5 - 0.5 cos(pi * min(1, (1 - t)
    / rampdown))) * min(1, t / rampup)``."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def w_noise_scale(step: int, steps: int, w_std: float, initial_noise_factor: float = 0.05,
                  noise_ramp_length: float = 0.75) -> float:
    """projector.py's noise on ``w``: ``w_std * factor * max(0, 1 - t / ramp)^2``."""
    t = step / steps
    return w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2


@torch.no_grad()
def w_stats(G, samples: int = 10000, batch: int = 1000) -> tuple[torch.Tensor, float]:
    """``(w_avg (w_dim,), w_std)`` of ``samples`` mapped ``z`` from ``RandomState(123)``, as
    projector.py: ``w_std = sqrt(sum_i |w_i - w_avg|^2 / samples)`` (the RMS distance of a
    ``w`` to the mean, not a per-coordinate std)."""
    p = next(G.parameters())
    z = torch.from_numpy(np.random.RandomState(123).randn(samples, G.z_dim).astype(np.float32))
    w = torch.cat([G.mapping(zb.to(p.device, p.dtype))[:, 0].double() for zb in z.split(batch)])
    w_avg = w.mean(0)
    w_std = float(((w - w_avg).square().sum() / samples).sqrt())
    return w_avg.to(p.dtype), w_std


def mse_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per image ``(B,)``: the stand-in distance below full scale."""
    return (a - b).square().flatten(1).mean(1)


def project(G, target: torch.Tensor, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            steps: int = 300, lr: float = 0.1, w_plus: bool = False, seed: int = 0,
            mse_weight: float = 0.0, w_avg_samples: int = 10000,
            initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75,
            lr_rampup_length: float = 0.05, lr_rampdown_length: float = 0.25) -> dict:
    """Find ``ws`` with ``G.synthesis(ws, noise_mode="const") ~ target`` by optimising ``w``
    (stylegan2-ada-pytorch ``projector.py``; differences in the module docstring).

    The optimisation runs in the dtype of G's parameters (the target is cast to it). In float32
    its 100-300 Adam steps amplify last-bit differences of the CPU kernels: on the book's ALS page
    the same 100-step projections of 8 gender edits gave an ALS of 5.740 with one thread and the
    default (AMX) kernels, 5.681 with two threads and the AVX2 ones. A float64 copy of G and of the distance's network (``copy.deepcopy(G).double()``)
    makes it reproducible across machines, at a few times the cost.

    ``target``: ``(B, 3, R, R)`` (or ``(3, R, R)``) in [-1, 1]; ``distance(synth, target) ->
    (B,)``, differentiable. Per step the loss of image b is ``distance_b + mse_weight *
    mse_b`` at the noisy ``w``; Adam minimises their sum. The generator is left unchanged
    (its train/eval mode is restored; no parameter gradients are accumulated).

    Returns ``{"ws": (B, num_ws, w_dim)`` (the final ``w``, broadcast unless ``w_plus``),
    ``"loss"``: per step the batch mean of the per-image loss (a list of ``steps`` floats),
    ``"distance"``, ``"mse"``: ``(B,)`` at the returned ``ws`` (without added noise),
    ``"w_avg"``, ``"w_std"``: the start point and noise scale}``.
    """
    if target.dim() == 3:
        target = target.unsqueeze(0)
    device, dtype = next(G.parameters()).device, next(G.parameters()).dtype
    target = target.to(device=device, dtype=dtype).detach()
    B, num_ws = target.shape[0], G.num_ws
    w_avg, w_std = w_stats(G, w_avg_samples)
    rows = num_ws if w_plus else 1
    w_opt = w_avg.to(device).reshape(1, 1, -1).repeat(B, rows, 1).requires_grad_(True)
    opt = torch.optim.Adam([w_opt], betas=(0.9, 0.999), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)

    def synth(w):
        return G.synthesis(w if w_plus else w.expand(-1, num_ws, -1), noise_mode="const")

    def per_image(img):
        d = distance(img, target).reshape(B)
        m = mse_distance(img, target)
        return d, m, (d + mse_weight * m if mse_weight else d)

    losses = []
    was_training = G.training
    G.eval()
    try:
        with torch.enable_grad():
            for step in range(steps):
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step, steps, lr, lr_rampup_length,
                                                lr_rampdown_length)
                scale = w_noise_scale(step, steps, w_std, initial_noise_factor,
                                      noise_ramp_length)
                noise = torch.randn(w_opt.shape, generator=gen, device=device).to(dtype) * scale
                _, _, loss = per_image(synth(w_opt + noise))
                if not loss.requires_grad:
                    raise ValueError("distance(synth, target) must be differentiable in synth")
                (grad,) = torch.autograd.grad(loss.sum(), [w_opt])
                w_opt.grad = grad
                opt.step()
                losses.append(float(loss.detach().mean()))
        with torch.no_grad():
            ws = w_opt.detach() if w_plus else w_opt.detach().expand(-1, num_ws, -1)
            ws = ws.contiguous()
            d, m, _ = per_image(synth(ws))
    finally:
        G.train(was_training)
    return {"ws": ws, "loss": losses, "distance": d.detach(), "mse": m.detach(),
            "w_avg": w_avg, "w_std": w_std}
