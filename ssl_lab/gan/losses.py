"""StyleGAN2(-ADA) losses and regularisers.

Losses (logits ``l = D(x)``, ``sigma`` the logistic function):

* D, non-saturating logistic: ``softplus(D(G(z))) + softplus(-D(x))`` =
  ``-log(1 - sigma(D(G(z)))) - log sigma(D(x))``; G: ``softplus(-D(G(z)))`` = ``-log sigma(D(G(z)))``
  (thesis Eq. 4.1 with G maximising log D instead of minimising log(1 - D)).
* R1 (:func:`r1_penalty`): ``gamma/2 * E_x ||grad_x D(x)||^2`` on reals (through the
  augmentation, gradient w.r.t. the un-augmented image). Lazy: every ``d_reg_interval = 16``
  steps, as a separate optimizer step with the loss multiplied by the interval.
* Path-length regulariser (:func:`path_lengths`, :class:`PathLengthRegularizer`): for
  ``y ~ N(0, I) / sqrt(H W)`` the length is ``|| J_w^T y ||`` with ``J_w^T y =
  grad_ws (G(ws) . y).sum()``, taken as ``sqrt(mean over the num_ws rows of the squared
  norm of each row's gradient)``; a running mean ``a <- a + 0.01 (mean length - a)``; the
  penalty ``(length - a)^2`` with weight 2, on half the batch (``pl_batch_shrink = 2``),
  lazily every ``g_reg_interval = 4`` steps with the loss multiplied by the interval.
* Lazy regularisation runs extra optimizer steps, so (as in the official code) the Adam
  learning rate and betas are scaled by ``c = interval / (interval + 1)``: ``lr * c``,
  ``beta ** c`` (:func:`make_optimizers`).
* HSR (:mod:`ssl_lab.gan.hsr`): added to the main G loss once ``nimg >= warm-up``.

The configuration, one training step and the loop are in :mod:`ssl_lab.gan.train`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed



# -- losses -------------------------------------------------------------------------------
def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean softplus(fake) + mean softplus(-real)``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean softplus(-fake)``."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(reals: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||grad_x D(x)||^2`` (B,); ``reals`` must require grad. The R1 loss is
    ``gamma / 2 * r1_penalty(...).mean()``."""
    (g,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return g.square().sum(dim=(1, 2, 3))


def path_lengths(img: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample path length (B,): ``sqrt(mean_l ||grad_{w_l} (img . y).sum()||^2)`` with
    ``y = noise / sqrt(H W)``, ``noise ~ N(0, I)`` unless given."""
    if noise is None:                    # data-parallel step: this process's rows of the global draw
        noise = (distributed.batch_draw(torch.randn, img.shape[0], *img.shape[1:], dtype=img.dtype,
                                        device=img.device)
                 if distributed.draws_sharded() else torch.randn_like(img))
    y = noise / math.sqrt(img.shape[2] * img.shape[3])
    (g,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    return g.square().sum(dim=2).mean(dim=1).sqrt()


class PathLengthRegularizer(nn.Module):
    """Running mean ``a`` of path lengths and the penalty ``(length - a)^2`` (B,).

    Under torchrun ``a`` is per process and is *not* reduced across processes: each process
    updates it from the mean path length of its own part of the batch, as the official code
    does (stylegan2-ada-pytorch training/loss.py, ``StyleGAN2Loss.__init__`` keeps
    ``self.pl_mean`` as a plain tensor and ``accumulate_gradients`` lerps it towards
    ``pl_lengths.mean()`` of the GPU's own ``batch_gpu // pl_batch_shrink`` samples; no
    all-reduce, and it is not saved in the snapshots). The update is linear, so the mean of
    the processes' ``a`` equals the one-process ``a`` for the same lengths, but each penalty uses its own ``a``;
    the training loop keeps every process's ``a`` in its checkpoints."""

    def __init__(self, decay: float = 0.01):
        super().__init__()
        self.decay = decay
        self.register_buffer("pl_mean", torch.zeros([]))

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        a = self.pl_mean.lerp(lengths.mean(), self.decay)     # as in the official code: not detached
        self.pl_mean.copy_(a.detach())
        return (lengths - a).square()


__all__ = ["PathLengthRegularizer", "d_logistic_loss", "g_nonsaturating_loss", "path_lengths", "r1_penalty"]
