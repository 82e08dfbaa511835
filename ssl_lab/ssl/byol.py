"""BYOL (Grill et al. 2020), the LEAD stage-1 objective (thesis Sec. 3.2.2, Eq. 3.1). The
training loop it shares with MoCo is :func:`ssl_lab.ssl.train.train_ssl`.

An *online* network (backbone -> projector g -> predictor q) predicts the projection that a
*target* network (backbone -> projector, no predictor) gives to another view of the same
image. The target gets no gradient; its weights are an exponential moving average (EMA) of
the online weights, with a momentum that rises from ``tau_base`` = 0.996 to 1 on a cosine:

    tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2.

The loss is the squared distance of L2-normalised vectors, ``||p/|p| - z/|z|||^2 =
2 - 2 cos(p, z)``, symmetrised over the two view orders and averaged over the batch (so it
lies in [0, 8]). Heads are Linear-BN-ReLU-Linear, hidden 4096 and output 256 at full scale.

EMA covers parameters only: the target's BatchNorm statistics come from its own forward
passes (it runs in train mode, like the online network), and only the online backbone is
kept after training.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.backbones import Backbone


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-pair normalised MSE ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``, shape ``(B,)``.
    ``z`` is detached (stop-gradient). Computed in float32 (safe under autocast)."""
    p, z = F.normalize(p.float(), dim=-1), F.normalize(z.detach().float(), dim=-1)
    return 2 - 2 * (p * z).sum(-1)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``theta_target <- tau theta_target + (1 - tau) theta_online`` for every parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(tau).add_(o.detach(), alpha=1 - tau)


def momentum(step: int, total: int, base: float = 0.996) -> float:
    """BYOL's target momentum at step ``step`` of ``total``: ``base`` at 0, 1 at ``total``."""
    if total <= 0:
        return base
    k = min(max(step, 0), total)
    return 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2


def mlp(in_dim: int, hidden: int, out: int, bn: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU-Linear (``bn=False``: Linear-ReLU-Linear, the MoCo v2 head)."""
    mid = [nn.BatchNorm1d(hidden)] if bn else []
    return nn.Sequential(nn.Linear(in_dim, hidden), *mid, nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


class Encoder(nn.Module):
    """Backbone global feature followed by a head."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone.pooled(x))


def _backbone(backbone, weights=None) -> Backbone:
    return backbone if isinstance(backbone, Backbone) else Backbone(backbone, weights=weights)


class BYOL(nn.Module):
    """``loss = BYOL("resnet50")(v1, v2)``; after each optimiser step call
    ``update_target(step, total)``. The trained feature extractor is ``.backbone``."""

    def __init__(self, backbone="resnet50", hidden: int = 4096, dim: int = 256,
                 pred_hidden: int | None = None, tau_base: float = 0.996, weights=None):
        super().__init__()
        bb = _backbone(backbone, weights)
        self.online = Encoder(bb, mlp(bb.pooled_channels, hidden, dim))
        self.predictor = mlp(dim, pred_hidden or hidden, dim)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.tau_base = tau_base

    @property
    def backbone(self) -> Backbone:
        return self.online.backbone

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        p1, p2 = self.predictor(self.online(v1)), self.predictor(self.online(v2))
        with torch.no_grad():
            z1, z2 = self.target(v1), self.target(v2)
        return (byol_loss(p1, z2) + byol_loss(p2, z1)).mean()

    def update_target(self, step: int, total: int) -> float:
        """EMA step with the momentum of step ``step`` of ``total``; returns that momentum."""
        tau = momentum(step, total, self.tau_base)
        ema_update(self.target, self.online, tau)
        return tau
