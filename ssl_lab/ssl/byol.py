"""BYOL (Grill et al. 2020), the LEAD stage-1 objective (thesis Sec. 3.2.2, Eq. 3.1), and the
training loop shared with MoCo (:func:`train_ssl`).

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
import time

import torch
import torch.nn.functional as F
from torch import nn
from ..progress import bar as progress_bar

from ..nets.backbones import Backbone
from .augment import TwoViewAugment


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


# -- training ---------------------------------------------------------------------------------
DEFAULTS = dict(
    backbone="resnet18", weights=None,      # thesis: resnet50, random init
    size=64, crop_scale=(0.2, 1.0),         # crop size (full: 96 crops of 136-px faces)
    hflip=0.0,                              # off: a flip swaps left/right face parts
    batch_size=64, steps=100,               # full: 256 and 200 epochs of CelebA
    optimizer="sgd", lr=None,               # None: 0.03 * batch / 256 (SGD), 1e-3 (Adam)
    weight_decay=1e-4, momentum=0.9,        # SGD momentum (Adam ignores it)
    proj_hidden=None, proj_dim=None,        # None: BYOL 4096/256, MoCo 2048/128
    pred_hidden=None, tau_base=0.996,       # BYOL
    queue=4096, moco_m=0.999, temperature=0.2, key_splits=1,   # MoCo
    amp=False,                              # bf16 autocast on CUDA
)


def resolve_config(fn: str, cfg: dict | None, defaults: dict, images: torch.Tensor) -> dict:
    """``defaults`` updated with ``cfg`` (unknown keys are a KeyError naming ``fn``), after
    checking that ``images`` is a batch of at least two RGB images."""
    unknown = set(cfg or {}) - set(defaults)
    if unknown:
        raise KeyError(f"unknown {fn} config keys {sorted(unknown)}; known: {sorted(defaults)}")
    if images.dim() != 4 or images.shape[1] != 3 or len(images) < 2:
        raise ValueError(f"images must be (N >= 2, 3, H, W), got {tuple(images.shape)}")
    return {**defaults, **(cfg or {})}


def build(method: str, cfg: dict) -> nn.Module:
    """The BYOL or MoCo model that :func:`train_ssl` trains, from a (complete) config."""
    if method == "byol":
        return BYOL(cfg["backbone"], hidden=cfg["proj_hidden"] or 4096,
                    dim=cfg["proj_dim"] or 256, pred_hidden=cfg["pred_hidden"],
                    tau_base=cfg["tau_base"], weights=cfg["weights"])
    if method == "moco":
        from .moco import MoCo
        return MoCo(cfg["backbone"], dim=cfg["proj_dim"] or 128,
                    hidden=cfg["proj_hidden"] or 2048, K=cfg["queue"], m=cfg["moco_m"],
                    T=cfg["temperature"], key_splits=cfg["key_splits"], weights=cfg["weights"])
    raise ValueError(f"unknown SSL method {method!r}; choose 'byol' or 'moco'")


def train_ssl(method: str, images: torch.Tensor, cfg: dict | None = None, device="cpu",
              seed: int = 0, progress: bool = True) -> dict:
    """Train ``method`` ("byol" or "moco") on ``images`` ((N, 3, H, W), uint8 or float in
    [0, 1], on any device) for ``cfg["steps"]`` steps of two augmented views per image.

    SGD (momentum 0.9, weight decay) with lr 0.03 * batch / 256 and a cosine decay to 0, as
    in the thesis; ``optimizer="adam"`` for tiny runs. Returns a dict: ``state_dict`` (the
    online backbone's, on CPU, loadable with ``Backbone(cfg["backbone"]).load_state_dict``),
    ``history`` (loss per step), ``backbone``, ``method``, ``config``, ``seed``, ``wall_s``
    and ``images_per_s`` (images, each seen as two views, per second)."""
    cfg = resolve_config("train_ssl", cfg, DEFAULTS, images)
    device = torch.device(device)
    bs = min(cfg["batch_size"], len(images))
    steps = int(cfg["steps"])
    torch.manual_seed(seed)
    model = build(method, cfg).to(device).train()
    aug = TwoViewAugment(size=cfg["size"], scale=tuple(cfg["crop_scale"]), p_flip=cfg["hflip"])
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg["optimizer"] == "sgd":
        lr = cfg["lr"] or 0.03 * bs / 256
        opt = torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"],
                              weight_decay=cfg["weight_decay"])
    elif cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=cfg["lr"] or 1e-3, weight_decay=cfg["weight_decay"])
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg['optimizer']!r}")
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / max(steps, 1))))
    amp = bool(cfg["amp"]) and device.type == "cuda"

    order, pos, history = torch.randperm(len(images), generator=gen), 0, []
    bar = progress_bar(range(steps), f"{method} {cfg['backbone']}", show=progress)
    t0 = time.perf_counter()
    for step in bar:
        if pos + bs > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        x = images[order[pos:pos + bs].to(images.device)].to(device, non_blocking=True)
        pos += bs
        v1, v2 = aug(x, generator=gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(v1, v2)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{method} loss is {loss.item()} at step {step}; lower lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        model.update_target(step + 1, steps)
        history.append(loss.item())
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    wall = time.perf_counter() - t0
    return dict(method=method, backbone=cfg["backbone"], config=cfg, seed=seed,
                state_dict={k: v.detach().cpu().clone()
                            for k, v in model.backbone.state_dict().items()},
                history=history, steps=steps, wall_s=wall,
                images_per_s=steps * bs / wall if wall > 0 else float("nan"))
