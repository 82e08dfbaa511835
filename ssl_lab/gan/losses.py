"""StyleGAN2(-ADA) losses and regularisers, one training step, and the training loop.

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

:func:`train_step` does, in order: D main step (fakes from a no-grad G) -> lazy R1 ->
ADA accumulation -> G main step (+ HSR) -> lazy path-length step -> EMA of G -> ADA
update. :func:`train_gan` is the loop: images in, ``G_ema`` state dict and a stats history
out. Configs per scale: :data:`CONFIGS` / :func:`gan_config`. ``full`` is the HSR
authors' StyleGAN2-ADA run: 256 px "paper256" networks, batch 16, Adam lr 0.002,
betas (0, 0.99), R1 gamma 1, EMA half-life 10 kimg, style mixing 0.9, ADA target 0.6
(500 kimg speed), HSR on after 500 kimg. ``small``/``smoke``: the narrow CPU networks,
R1 gamma from StyleGAN2-ADA's heuristic ``0.0002 R^2 / batch``, lr 0.0025 and EMA ramp-up
0.05 as in its ``auto`` config, faster ADA and shorter warm-up for short runs.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.stylegan2 import ARCH, build, ema_beta, ema_update


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
    if noise is None:
        noise = torch.randn_like(img)
    y = noise / math.sqrt(img.shape[2] * img.shape[3])
    (g,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    return g.square().sum(dim=2).mean(dim=1).sqrt()


class PathLengthRegularizer(nn.Module):
    """Running mean ``a`` of path lengths and the penalty ``(length - a)^2`` (B,)."""

    def __init__(self, decay: float = 0.01):
        super().__init__()
        self.decay = decay
        self.register_buffer("pl_mean", torch.zeros([]))

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        a = self.pl_mean.lerp(lengths.mean(), self.decay)     # as in the official code: not detached
        self.pl_mean.copy_(a.detach())
        return (lengths - a).square()


# -- configuration ------------------------------------------------------------------------
@dataclass
class GANConfig:
    arch: str | dict = "smoke"          # preset name in nets.stylegan2.ARCH, or an arch dict
    batch: int = 16
    kimg: float = 25000.0               # training length in thousands of real images
    lr: float = 0.002
    betas: tuple = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 1.0
    d_reg_interval: int = 16
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    g_reg_interval: int = 4
    style_mixing: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    ada_target: float | None = 0.6      # None: no adaptation (p stays augment_p)
    augment_p: float = 0.0
    ada_interval: int = 4
    ada_kimg: float = 500.0
    augment: bool = True                # False: D sees un-augmented images
    hsr: bool = False
    hsr_levels: str = "all"
    hsr_hidden: int = 4096
    hsr_weight: float = 1.0
    hsr_warmup_kimg: float = 500.0
    log_every: int = 10                 # steps between history entries

    def arch_dict(self) -> dict:
        return dict(ARCH[self.arch]) if isinstance(self.arch, str) else dict(self.arch)


CONFIGS = {
    "full": GANConfig(arch="full"),
    "small": GANConfig(arch="small", kimg=20.0, lr=0.0025, r1_gamma=0.0002 * 64 ** 2 / 16,
                       ema_rampup=0.05, ada_kimg=100.0, hsr_hidden=256, hsr_warmup_kimg=4.0),
    "smoke": GANConfig(arch="smoke", kimg=0.5, lr=0.0025, r1_gamma=0.0002 * 32 ** 2 / 16,
                       ema_rampup=0.05, ada_kimg=20.0, hsr_hidden=64, hsr_warmup_kimg=0.1,
                       log_every=4),
}


def gan_config(scale: str | GANConfig | dict = "smoke", **overrides) -> GANConfig:
    """A :class:`GANConfig`: a scale name from :data:`CONFIGS`, a dict of fields, or a config;
    plus overrides."""
    if isinstance(scale, GANConfig):
        cfg = scale
    elif isinstance(scale, dict):
        cfg, overrides = GANConfig(), {**scale, **overrides}
    elif scale in CONFIGS:
        cfg = CONFIGS[scale]
    else:
        raise ValueError(f"unknown GAN scale {scale!r}; choose one of {sorted(CONFIGS)}")
    known = {f.name for f in fields(GANConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown GANConfig fields {sorted(unknown)}")
    if "betas" in overrides:
        overrides["betas"] = tuple(float(b) for b in overrides["betas"])
    return replace(cfg, **overrides)


def make_optimizers(G: nn.Module, D: nn.Module, cfg: GANConfig, hsr: nn.Module | None = None):
    """Adam for G (+ HSR predictors) and D with the lazy-regularisation correction
    ``lr * c``, ``betas ** c``, ``c = interval / (interval + 1)``."""
    def adam(params, interval):
        c = interval / (interval + 1) if interval else 1.0
        betas = tuple(float(b) ** c for b in cfg.betas)
        return torch.optim.Adam(params, lr=cfg.lr * c, betas=betas, eps=cfg.eps)

    g_params = list(G.parameters()) + (list(hsr.parameters()) if hsr is not None else [])
    return adam(g_params, cfg.g_reg_interval if cfg.pl_weight > 0 else 0), \
        adam(D.parameters(), cfg.d_reg_interval if cfg.r1_gamma > 0 else 0)


# -- one step -----------------------------------------------------------------------------
def train_step(G, D, G_ema, opt_G, opt_D, reals: torch.Tensor, step: int, cfg: GANConfig,
               augment=None, hsr=None, plr: PathLengthRegularizer | None = None) -> dict:
    """One iteration on a batch of reals in [-1, 1]; ``step`` counts from 0 (lazy
    regularisers run when ``step % interval == 0``; ``nimg = step * batch`` before this
    step gates the HSR warm-up). Returns the step's statistics (floats)."""
    B, dev = reals.shape[0], reals.device
    aug = augment if augment is not None else (lambda x: x)
    nimg = step * B
    stats = {}

    # D: non-saturating logistic loss on fakes and reals.
    G.requires_grad_(False)
    D.requires_grad_(True)
    with torch.no_grad():
        fake = G.synthesis(G.mix_styles(torch.randn(B, G.z_dim, device=dev), cfg.style_mixing))
    real_logits = D(aug(reals))
    loss_D = d_logistic_loss(real_logits, D(aug(fake)))
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()
    stats["d_loss"] = float(loss_D.detach())
    stats["real_sign"] = float(real_logits.detach().sign().mean())
    if augment is not None and hasattr(augment, "accumulate"):
        augment.accumulate(real_logits)

    # Lazy R1.
    if cfg.r1_gamma > 0 and step % cfg.d_reg_interval == 0:
        x = reals.detach().requires_grad_(True)
        pen = r1_penalty(x, D(aug(x)))
        opt_D.zero_grad(set_to_none=True)
        (pen.mean() * (cfg.r1_gamma / 2) * cfg.d_reg_interval).backward()
        opt_D.step()
        stats["r1"] = float(pen.detach().mean())

    # G: non-saturating loss (+ HSR once warmed up).
    G.requires_grad_(True)
    D.requires_grad_(False)
    use_hsr = hsr is not None and hsr.active(nimg)
    ws = G.mix_styles(torch.randn(B, G.z_dim, device=dev), cfg.style_mixing, update_w_avg=True)
    out = G.synthesis(ws, return_features=use_hsr)
    fake, feats = (out[0], out[1]["features"]) if use_hsr else (out, None)
    loss_G = g_nonsaturating_loss(D(aug(fake)))
    stats["g_loss"] = float(loss_G.detach())
    if use_hsr:
        l_hsr, levels = hsr(feats, fake)
        loss_G = loss_G + l_hsr
        stats["hsr"] = float(l_hsr.detach())
        stats.update({f"hsr_{r}": float(v.detach()) for r, v in levels.items()})
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()

    # Lazy path-length regularisation.
    if cfg.pl_weight > 0 and step % cfg.g_reg_interval == 0:
        if plr is None:
            raise ValueError("cfg.pl_weight > 0 needs a PathLengthRegularizer (plr=...)")
        b = max(B // cfg.pl_batch_shrink, 1)
        ws = G.mix_styles(torch.randn(b, G.z_dim, device=dev), cfg.style_mixing)
        pen = plr(path_lengths(G.synthesis(ws), ws))
        opt_G.zero_grad(set_to_none=True)
        (pen.mean() * cfg.pl_weight * cfg.g_reg_interval).backward()
        opt_G.step()
        stats["pl"] = float(pen.detach().mean())
        stats["pl_mean"] = float(plr.pl_mean)
    D.requires_grad_(True)

    ema_update(G_ema, G, ema_beta(B, cfg.ema_kimg, nimg, cfg.ema_rampup))
    if augment is not None and hasattr(augment, "update"):
        rt = augment.update(B)
        if rt is not None:
            stats["r_t"] = rt
    stats["p"] = float(getattr(augment, "p", 0.0)) if augment is not None else 0.0
    return stats


# -- the loop -----------------------------------------------------------------------------
def _batches(images, batch: int, resolution: int, gen: torch.Generator):
    """Endless random batches in [-1, 1] from a tensor (N, 3, R, R) or a Dataset, in [0, 1]."""
    if torch.is_tensor(images):
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != resolution:
            raise ValueError(f"images must be (N, 3, {resolution}, {resolution}) in [0, 1], "
                             f"got {tuple(images.shape)}")
        while True:
            yield images[torch.randint(len(images), (batch,), generator=gen)] * 2 - 1
    else:
        loader = torch.utils.data.DataLoader(images, batch_size=batch, shuffle=True,
                                             drop_last=True, generator=gen)
        if len(loader) == 0:
            raise ValueError(f"dataset has {len(images)} images, fewer than one batch of {batch}")
        while True:
            for x in loader:
                x = x[0] if isinstance(x, (list, tuple)) else x
                if x.shape[-1] != resolution:
                    raise ValueError(f"dataset images are {x.shape[-1]} px; the GAN is {resolution} px")
                yield x * 2 - 1


def train_gan(images, cfg: GANConfig | str | dict = "smoke", device="cpu", seed: int = 0,
              progress: bool = True, features=None, steps: int | None = None) -> dict:
    """Train StyleGAN2(-ADA)(+HSR) on ``images`` ([0, 1], a tensor or a Dataset).

    ``features``: the frozen feature callable for HSR (required when ``cfg.hsr``).
    ``steps`` overrides ``ceil(kimg * 1000 / batch)``. Returns ``{"G_ema": state dict (CPU),
    "arch", "config", "history": [every log_every steps: the window's mean of each
    train_step statistic (lazy ones over the steps that ran them), p at its end, kimg, images/s],
    "augment_p", "nimg", "wall_s", "images_per_s", "hsr_pairs"}``. Seeded; the caller's
    global RNG state is restored afterwards."""
    import copy

    from tqdm.auto import tqdm

    cfg = gan_config(cfg)
    device = torch.device(device)
    arch = cfg.arch_dict()
    if cfg.hsr and features is None:
        raise ValueError("cfg.hsr=True needs features= (a frozen feature callable, see ssl_lab.gan.hsr)")
    if cfg.batch % min(arch["mbstd_group"], cfg.batch):
        raise ValueError(f"batch {cfg.batch} must be divisible by the minibatch-std group {arch['mbstd_group']}")
    n_steps = steps if steps is not None else math.ceil(cfg.kimg * 1000 / cfg.batch)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        G, D = build(arch)
        G, D = G.to(device).train(), D.to(device).train()
        G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        hsr = None
        if cfg.hsr:
            from .hsr import build_hsr
            if isinstance(features, nn.Module):
                features = features.to(device)
            hsr = build_hsr(G, features, cfg.hsr_levels, cfg.hsr_hidden, cfg.hsr_weight,
                            cfg.hsr_warmup_kimg).to(device)
        augment = None
        if cfg.augment:
            from .ada import AdaptiveAugment
            augment = AdaptiveAugment(cfg.augment_p, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg).to(device)
        plr = PathLengthRegularizer(cfg.pl_decay).to(device)
        opt_G, opt_D = make_optimizers(G, D, cfg, hsr)
        gen = torch.Generator().manual_seed(seed)
        data = _batches(images, cfg.batch, arch["resolution"], gen)

        history, t0, t_log, n_log = [], time.perf_counter(), time.perf_counter(), 0
        sums, counts = {}, {}
        for step in tqdm(range(n_steps), disable=not progress, desc="GAN"):
            reals = next(data).to(device, non_blocking=True)
            stats = train_step(G, D, G_ema, opt_G, opt_D, reals, step, cfg, augment, hsr, plr)
            n_log += reals.shape[0]
            for k, v in stats.items():
                sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
            if (step + 1) % cfg.log_every == 0 or step + 1 == n_steps:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                now = time.perf_counter()
                history.append({"step": step + 1, "kimg": (step + 1) * cfg.batch / 1000,
                                "images_per_s": n_log / (now - t_log),
                                **{k: sums[k] / counts[k] for k in sums}, "p": stats["p"]})
                t_log, n_log, sums, counts = now, 0, {}, {}
        wall = time.perf_counter() - t0
    return {"G_ema": {k: v.detach().cpu() for k, v in G_ema.state_dict().items()},
            "arch": arch, "config": asdict(cfg), "history": history,
            "augment_p": float(augment.p) if augment is not None else 0.0,
            "nimg": n_steps * cfg.batch, "wall_s": wall,
            "images_per_s": n_steps * cfg.batch / max(wall, 1e-9),
            "hsr_pairs": list(hsr.pairs) if hsr is not None else []}


__all__ = ["CONFIGS", "GANConfig", "PathLengthRegularizer", "d_logistic_loss", "g_nonsaturating_loss",
           "gan_config", "make_optimizers", "path_lengths", "r1_penalty", "train_gan", "train_step"]
