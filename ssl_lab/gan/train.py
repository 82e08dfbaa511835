"""StyleGAN2(-ADA)(+HSR) training: the configuration per scale, one step, the loop.

The losses and regularisers a step combines are in :mod:`ssl_lab.gan.losses`.

:func:`train_step` does, in order: D main step (fakes from a no-grad G) -> lazy R1 ->
ADA accumulation -> G main step (+ HSR) -> lazy path-length step -> EMA of G -> ADA
update. :func:`train_gan` is the loop: images in, ``G_ema`` state dict and a stats history
out. Configs per scale: :data:`CONFIGS` / :func:`gan_config`. ``full`` is the HSR
authors' StyleGAN2-ADA run: 256 px "paper256" networks, batch 16, Adam lr 0.002,
betas (0, 0.99), R1 gamma 1, EMA half-life 10 kimg, style mixing 0.9, ADA target 0.6
(500 kimg speed), HSR on after 500 kimg. ``small``/``smoke``: the narrow CPU networks,
R1 gamma ``0.0002 R^2 / batch``, EMA half-life ``batch * 10 / 32`` kimg, lr 0.0025 and EMA
ramp-up 0.05 as in StyleGAN2-ADA's ``auto`` config (train.py), faster ADA and shorter
warm-up for short runs; ``small`` trains at batch 64 in channels_last, in fp32 (``python -m
ssl_lab bench hsr/warmup --scale small`` on 2 cores: 110 images/s; batch 16 NCHW 47; bf16
autocast 142, but whether it reaches the same gates is untested, so it is off).

Branching (thesis Sec. 4.3.1: HSR is switched on after a warm-up, and the HSR variants share
the warm-up): ``warm = train_gan(..., keep_state=True)`` keeps the full training state;
``train_gan(..., cfg_variant, resume=warm)`` trains a variant further from it (weights,
optimizers, ADA p, path-length mean, step and image counters continue; HSR predictors are
added when the variant turns HSR on). ``arch``, ``batch`` and ``lr`` must match the warm-up's.

Data-parallel training (``torchrun --nproc_per_node W -m ssl_lab train hsr/warmup ...``), after
NVlabs/stylegan2-ada-pytorch (training/training_loop.py ``training_loop``, training/loss.py
``StyleGAN2Loss``, training/networks.py ``MappingNetwork``, torch_utils/training_stats.py):

* ``cfg.batch`` is the global batch; each process takes ``batch / W``
  (:func:`ssl_lab.distributed.per_process_batch`; the official ``batch_gpu = batch_size //
  num_gpus``), which must be a whole number of minibatch-std groups, and the path-length
  batch ``batch / pl_batch_shrink`` must split into W too (``ValueError`` otherwise).
* Gradients: the official loop wraps ``G.mapping``, ``G.synthesis`` and ``D`` (and the
  augment pipe, which has no parameters) in ``DistributedDataParallel(broadcast_buffers=
  False)``, so every backward pass that syncs averages the gradients over the GPUs before
  ``phase.opt.step()``. Here every optimizer step (D main, R1, G main + HSR predictors, path
  length) is preceded by :func:`ssl_lab.distributed.average_gradients`: one all-reduce of
  the flattened gradients divided by W, the same mean as DDP's (and what NVlabs' later
  StyleGAN3 loop writes out), without a wrapper, since a step calls ``G.mix_styles``,
  ``G.synthesis`` and R1's double backward directly. Not copied: the official
  ``misc.nan_to_num`` of the gradients (absent here in one process too).
* ADA: the sign statistic is summed over the processes (official: the
  ``training_stats.Collector('Loss/signs/real')`` whose ``update()`` all-reduces its counters
  every ``ada_interval`` steps; here every step, see ``AdaptiveAugment.accumulate``), so p is
  the same on every process and moves with the global batch (``batch * ada_interval``).
* Kept per process, as in the official code: the path-length mean (``StyleGAN2Loss.pl_mean``
  is a plain tensor lerped towards the GPU's own ``pl_lengths.mean()``, never all-reduced;
  the claim that it is reduced does not hold for this code) and the mapping's ``w_avg``
  (updated from the GPU's own ``w`` in ``MappingNetwork.forward``; DDP with
  ``broadcast_buffers=False`` leaves buffers alone, and the snapshot's
  ``check_ddp_consistency(module, ignore_regex=r'.*\\.w_avg')`` exempts it because it
  differs). Both updates are linear, so the processes' values average to the one-process
  value for the same draws; the path-length *penalty* uses each process's own mean, so with
  ``pl_weight > 0`` W processes are not the one-process run exactly. Checkpoints and kept
  states hold every process's ``w_avg`` (G, G_ema) and path-length mean (``"ranks"``); a
  resume with the same W restores each process's own.
* Random streams (unlike the official per-GPU seeds ``random_seed * num_gpus + rank``): every
  process seeds the same global generator and data generator, draws everything that makes a
  batch for the *global* batch and keeps rows ``rank, rank + W, rank + 2W, ...``: the reals'
  indices (:class:`_Batches`), z, the style-mixing z (its scalar coin and cutoff are the same
  everywhere), the synthesis noise, the path-length z and noise, and every ADA parameter
  (:class:`ssl_lab.distributed.global_draws` around the step; :func:`~ssl_lab.distributed.
  batch_draw` at the draws). Strided rows, not blocks, because the minibatch-std groups are
  strided (samples ``i, i + B/G, ...``): a process's groups are then exactly one-process
  groups. So W processes draw and compute what one process does at the global batch, up to
  the order of float sums (tests: G, D, G_ema within 2e-5 after 4 steps with ADA, style
  mixing and R1, measured 4e-6); every process's RNG states stay equal, so rank 0's
  checkpoint resumes every process exactly. Only rank 0 writes checkpoints and shows
  progress; the logged statistics are the means over the processes.
* One process (no torchrun): everything above is a no-op and the draws are the same calls
  as before, bit for bit.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from .. import distributed
from ..nets.stylegan2 import ARCH, build, ema_beta, ema_update
from .losses import PathLengthRegularizer, d_logistic_loss, g_nonsaturating_loss, path_lengths, r1_penalty


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
    amp: bool = False                   # bf16 autocast for the main G/D passes (R1, PL, HSR in fp32)
    channels_last: bool = False         # NHWC weights and images (faster convolutions on CPUs)

    def arch_dict(self) -> dict:
        return dict(ARCH[self.arch]) if isinstance(self.arch, str) else dict(self.arch)


CONFIGS = {
    "full": GANConfig(arch="full"),
    "small": GANConfig(arch="small", batch=64, kimg=375.0, lr=0.0025, r1_gamma=0.0002 * 32 ** 2 / 64,
                       ema_kimg=64 * 10 / 32, ema_rampup=0.05, ada_kimg=100.0, hsr_hidden=256,
                       hsr_warmup_kimg=375.0, channels_last=True),
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


def _adam_hparams(cfg: GANConfig, interval: int) -> dict:
    """Adam's ``lr * c``, ``betas ** c``, eps with ``c = interval / (interval + 1)`` (1 if no lazy reg.)."""
    c = interval / (interval + 1) if interval else 1.0
    return dict(lr=cfg.lr * c, betas=tuple(float(b) ** c for b in cfg.betas), eps=cfg.eps)


def _g_interval(cfg: GANConfig) -> int:
    return cfg.g_reg_interval if cfg.pl_weight > 0 else 0


def _d_interval(cfg: GANConfig) -> int:
    return cfg.d_reg_interval if cfg.r1_gamma > 0 else 0


def make_optimizers(G: nn.Module, D: nn.Module, cfg: GANConfig, hsr: nn.Module | None = None):
    """Adam for G (+ HSR predictors) and D with the lazy-regularisation correction
    ``lr * c``, ``betas ** c``, ``c = interval / (interval + 1)``.

    G's parameters are param group 0 of G's optimizer; the HSR predictors, when given, are
    param group 1 with the same hyperparameters (Adam is per parameter, so this is the same
    optimizer as one group; kept apart so a resumed run can add or drop the predictors)."""
    groups = [{"params": list(G.parameters())}]
    if hsr is not None:
        groups.append({"params": list(hsr.parameters())})
    return torch.optim.Adam(groups, **_adam_hparams(cfg, _g_interval(cfg))), \
        torch.optim.Adam(D.parameters(), **_adam_hparams(cfg, _d_interval(cfg)))


# -- one step -----------------------------------------------------------------------------
def train_step(G, D, G_ema, opt_G, opt_D, reals: torch.Tensor, step: int, cfg: GANConfig,
               augment=None, hsr=None, plr: PathLengthRegularizer | None = None) -> dict:
    """One iteration on a batch of reals in [-1, 1]; ``step`` counts from 0 (lazy
    regularisers run when ``step % interval == 0``; ``nimg = step * batch`` before this
    step gates the HSR warm-up). Returns the step's statistics (floats).

    Under torchrun (world size W > 1) ``reals`` is this process's part of the global batch
    (``W * len(reals)`` images, the batch that counts for ``nimg``, the EMA and ADA); the
    step's random draws are the global batch's (:class:`ssl_lab.distributed.global_draws`),
    the gradients are averaged over the processes before every optimizer step, and the
    returned statistics are the means over the processes. See :func:`train_gan`."""
    if distributed.world_size() == 1:
        return _step(G, D, G_ema, opt_G, opt_D, reals, step, cfg, augment, hsr, plr)
    with distributed.global_draws():
        stats = _step(G, D, G_ema, opt_G, opt_D, reals, step, cfg, augment, hsr, plr)
    keys = list(stats)
    means = distributed.sum_over_processes([stats[k] for k in keys])
    return {k: v / distributed.world_size() for k, v in zip(keys, means)}


def _params(opt) -> list:
    return [p for group in opt.param_groups for p in group["params"]]


def _step(G, D, G_ema, opt_G, opt_D, reals, step, cfg, augment, hsr, plr) -> dict:
    """:func:`train_step`'s body; ``B`` the global batch, ``b`` this process's part."""
    b, dev = reals.shape[0], reals.device
    world = distributed.world_size()
    B = b * world
    aug = augment if augment is not None else (lambda x: x)
    nimg = step * B
    stats = {}

    def amp():          # the main passes in bf16 (cfg.amp); logits and losses in fp32
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.amp)

    # D: non-saturating logistic loss on fakes and reals.
    G.requires_grad_(False)
    D.requires_grad_(True)
    with torch.no_grad():
        ws = G.mix_styles(distributed.batch_draw(torch.randn, b, G.z_dim, device=dev), cfg.style_mixing)
        with amp():
            fake = G.synthesis(ws).float()
    with amp():
        real_logits, fake_logits = D(aug(reals)).float(), D(aug(fake)).float()
    loss_D = d_logistic_loss(real_logits, fake_logits)
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    distributed.average_gradients(D.parameters())
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
        distributed.average_gradients(D.parameters())
        opt_D.step()
        stats["r1"] = float(pen.detach().mean())

    # G: non-saturating loss (+ HSR once warmed up).
    G.requires_grad_(True)
    D.requires_grad_(False)
    use_hsr = hsr is not None and hsr.active(nimg)
    ws = G.mix_styles(distributed.batch_draw(torch.randn, b, G.z_dim, device=dev), cfg.style_mixing,
                      update_w_avg=True)
    with amp():
        out = G.synthesis(ws, return_features=use_hsr)
    fake, feats = (out[0], out[1]["features"]) if use_hsr else (out, None)
    fake = fake.float()
    if use_hsr:
        feats = {r: f.float() for r, f in feats.items()}
    with amp():
        fake_logits = D(aug(fake)).float()
    loss_G = g_nonsaturating_loss(fake_logits)
    stats["g_loss"] = float(loss_G.detach())
    if use_hsr:
        l_hsr, levels = hsr(feats, fake)
        loss_G = loss_G + l_hsr
        stats["hsr"] = float(l_hsr.detach())
        stats.update({f"hsr_{r}": float(v.detach()) for r, v in levels.items()})
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    distributed.average_gradients(_params(opt_G))
    opt_G.step()

    # Lazy path-length regularisation.
    if cfg.pl_weight > 0 and step % cfg.g_reg_interval == 0:
        if plr is None:
            raise ValueError("cfg.pl_weight > 0 needs a PathLengthRegularizer (plr=...)")
        pb = max(B // cfg.pl_batch_shrink, 1) // world      # this process's part of the PL batch
        ws = G.mix_styles(distributed.batch_draw(torch.randn, pb, G.z_dim, device=dev), cfg.style_mixing)
        pen = plr(path_lengths(G.synthesis(ws), ws))
        opt_G.zero_grad(set_to_none=True)
        (pen.mean() * cfg.pl_weight * cfg.g_reg_interval).backward()
        distributed.average_gradients(_params(opt_G))
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
class _SkipFirst(torch.utils.data.Sampler):
    """A sampler that drops the first ``skip`` indices of its first pass (then is ``base``);
    used to resume a data stream in the middle of an epoch without loading the skipped images."""

    def __init__(self, base, skip: int = 0):
        self.base, self.skip = base, skip

    def __iter__(self):
        it = iter(self.base)
        skip, self.skip = self.skip, 0
        for _ in itertools.islice(it, skip):
            pass
        yield from it

    def __len__(self):
        return len(self.base)


class _Batches:
    """Endless random batches in [-1, 1] from a tensor (N, 3, R, R) or a Dataset, in [0, 1],
    drawn with the generator ``gen``. ``state()`` / ``load_state()`` continue the stream
    exactly: for a tensor the generator's state; for a Dataset (a shuffling DataLoader) the
    generator's state at the start of the current epoch and the batches taken in it (the
    epoch's permutation is redrawn on resume and the taken indices are skipped, not loaded).

    ``world > 1`` (torchrun): ``batch`` is the global batch; every process draws the same
    global batch of indices (``gen`` seeded alike) and takes rows ``rank, rank + world, ...``
    of it (for a Dataset, only those images are loaded), so the processes together take the
    one-process batch. ``world = 1`` is the unchanged single-process stream."""

    def __init__(self, images, batch: int, resolution: int, gen: torch.Generator,
                 rank: int = 0, world: int = 1):
        self.images, self.batch, self.resolution, self.gen = images, batch, resolution, gen
        self.rank, self.world = rank, world
        self.tensor = torch.is_tensor(images)
        if self.tensor:
            if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != resolution:
                raise ValueError(f"images must be (N, 3, {resolution}, {resolution}) in [0, 1], "
                                 f"got {tuple(images.shape)}")
            return
        # the same loader as DataLoader(shuffle=True, generator=gen), with a skippable sampler
        self.sampler = _SkipFirst(torch.utils.data.RandomSampler(images, generator=gen))
        if world == 1:
            self.loader = torch.utils.data.DataLoader(images, batch_size=batch, sampler=self.sampler,
                                                      drop_last=True, generator=gen)
        else:
            rows = _RowsOf(torch.utils.data.BatchSampler(self.sampler, batch, drop_last=True), rank, world)
            self.loader = torch.utils.data.DataLoader(images, batch_sampler=rows, generator=gen)
        if len(self.loader) == 0:
            raise ValueError(f"dataset has {len(images)} images, fewer than one batch of {batch}")
        self._it, self._epoch_gen, self._taken, self._skip = None, None, 0, 0

    def state(self) -> dict:
        if self.tensor:
            return {"gen": self.gen.get_state()}
        if self._it is None:                           # before the first batch, or just resumed
            return {"gen": self.gen.get_state(), "taken": self._skip}
        return {"gen": self._epoch_gen.clone(), "taken": self._taken}

    def load_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        if not self.tensor:
            self._it, self._skip = None, int(state.get("taken", 0))

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self.tensor:
            if self.world > 1:
                idx = torch.randint(len(self.images), (self.batch,), generator=self.gen)
                return self.images[idx[self.rank::self.world]] * 2 - 1
            return self.images[torch.randint(len(self.images), (self.batch,), generator=self.gen)] * 2 - 1
        while True:
            if self._it is None:                       # a new epoch (or the resumed one)
                self._epoch_gen = self.gen.get_state()
                self._taken, self.sampler.skip, self._skip = self._skip, self._skip * self.batch, 0
                self._it = iter(self.loader)
            try:
                x = next(self._it)
            except StopIteration:
                self._it = None
                continue
            self._taken += 1
            x = x[0] if isinstance(x, (list, tuple)) else x
            if x.shape[-1] != self.resolution:
                raise ValueError(f"dataset images are {x.shape[-1]} px; the GAN is {self.resolution} px")
            return x * 2 - 1


class _RowsOf(torch.utils.data.Sampler):
    """Rows ``rank, rank + world, ...`` of each batch of index lists that ``batches`` yields."""

    def __init__(self, batches, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self):
        for idx in self.batches:
            yield list(idx)[self.rank::self.world]

    def __len__(self):
        return len(self.batches)


def _batches(images, batch: int, resolution: int, gen: torch.Generator, rank: int = 0, world: int = 1):
    """Endless random batches in [-1, 1] from a tensor (N, 3, R, R) or a Dataset, in [0, 1]."""
    return _Batches(images, batch, resolution, gen, rank, world)


def _cpu(obj):
    """A copy of ``obj`` (nested dicts / lists / tuples) with every tensor cloned to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


BRANCH_MUST_MATCH = ("arch", "batch", "lr")


def _resume_state(resume) -> dict | None:
    """The training state in ``resume`` (a train_gan result with ``"state"``, or the state)."""
    if resume is None:
        return None
    if isinstance(resume, dict) and isinstance(resume.get("state"), dict):
        return resume["state"]
    if isinstance(resume, dict) and {"G", "D", "G_ema", "opt_G", "opt_D", "step"} <= set(resume):
        return resume
    raise ValueError("resume= needs a train_gan result made with keep_state=True (it has no 'state')")


def _check_branch(cfg: GANConfig, arch: dict, state: dict) -> None:
    """A branch may change HSR, PLR, ADA, kimg, logging; arch, batch and lr must match."""
    saved = state["config"]
    have = {"arch": arch, "batch": cfg.batch, "lr": cfg.lr}
    warm = {"arch": state["arch"], "batch": saved["batch"], "lr": saved["lr"]}
    bad = [f"{k} (warm-up {warm[k]!r}, branch {have[k]!r})" for k in BRANCH_MUST_MATCH if have[k] != warm[k]]
    if bad:
        raise ValueError("resume: the branch config must match the warm-up's "
                         f"{', '.join(BRANCH_MUST_MATCH)}; mismatched: {'; '.join(bad)}")


def _ada_state(augment) -> dict | None:
    if augment is None:
        return None
    return {"p": augment.p.detach().to("cpu", copy=True), "sign_sum": augment._sign_sum,
            "count": augment._count, "steps": augment._steps, "last_rt": augment.last_rt}


def _load_ada_state(augment, st: dict) -> None:
    augment.p.copy_(st["p"])
    augment._sign_sum, augment._count, augment._steps = st["sign_sum"], st["count"], st["steps"]
    augment.last_rt = st["last_rt"]


def _check_world(cfg: GANConfig, arch: dict, world: int) -> None:
    """Under torchrun: the global batch splits evenly into the processes, each process's part
    into whole minibatch-std groups (so D's groups are the one-process groups, see
    :func:`train_gan`), and the path-length batch into the processes."""
    if cfg.batch % world:
        raise ValueError(f"the GAN batch {cfg.batch} (the global batch) is not divisible by the world "
                         f"size {world}; set batch to a multiple of {world}")
    b = distributed.per_process_batch(cfg.batch, world)
    g = min(arch["mbstd_group"], cfg.batch)
    if b % g:
        raise ValueError(f"the per-process batch {b} (batch {cfg.batch} / {world} processes) must be a "
                         f"multiple of the minibatch-std group {g}; set batch to a multiple of {g * world}")
    pb = max(cfg.batch // cfg.pl_batch_shrink, 1)
    if cfg.pl_weight > 0 and pb % world:
        raise ValueError(f"the path-length batch {pb} (batch {cfg.batch} / pl_batch_shrink "
                         f"{cfg.pl_batch_shrink}) is not divisible by the world size {world}")


def _rank_state(G, G_ema, plr) -> dict:
    """What differs between the processes (as in the official code): the mapping's ``w_avg`` of
    G and G_ema and the path-length mean."""
    return {"w_avg": _cpu(G.mapping.w_avg), "ema_w_avg": _cpu(G_ema.mapping.w_avg), "pl_mean": _cpu(plr.pl_mean)}


def _load_rank_state(G, G_ema, plr, st: dict) -> None:
    G.mapping.w_avg.copy_(st["w_avg"])
    G_ema.mapping.w_avg.copy_(st["ema_w_avg"])
    plr.pl_mean.copy_(st["pl_mean"])


def _hsr_compatible(hsr, features, saved: dict | None) -> bool:
    """Reuse the warm-up's HSR predictors iff same levels, hidden width, feature-network name
    (``features.name``, None for a plain callable) and predictor shapes."""
    if hsr is None or saved is None:
        return False
    if (saved["levels"], saved["hidden"], saved["features"]) != \
            (hsr.levels, _hsr_hidden(hsr), getattr(features, "name", None)):
        return False
    mine = hsr.state_dict()
    return set(mine) == set(saved["predictors"]) and \
        all(mine[k].shape == saved["predictors"][k].shape for k in mine)


def _hsr_hidden(hsr) -> int:
    return next(iter(hsr.predictors.values())).conv1.weight.shape[0]


def _group0(opt_state: dict) -> dict:
    """An optimizer state dict reduced to its first param group (G's parameters)."""
    g0 = opt_state["param_groups"][0]
    ids = set(g0["params"])
    return {"state": {k: v for k, v in opt_state["state"].items() if k in ids}, "param_groups": [g0]}


def train_gan(images, cfg: GANConfig | str | dict = "smoke", device="cpu", seed: int | None = None,
              progress: bool = True, features=None, steps: int | None = None, resume=None,
              keep_state: bool = False, checkpoint=None, checkpoint_every: int = 500,
              snapshots: int = 0) -> dict:
    """Train StyleGAN2(-ADA)(+HSR) on ``images`` ([0, 1], a tensor or a Dataset).

    ``features``: the frozen feature callable for HSR (required when ``cfg.hsr``).
    ``steps`` overrides ``ceil(kimg * 1000 / batch)``. Returns ``{"G_ema": state dict (CPU),
    "arch", "config", "history": [every log_every steps: the window's mean of each
    train_step statistic (lazy ones over the steps that ran them), p at its end, step, kimg,
    images/s], "augment_p", "nimg" (total images seen, warm-up included), "branch_nimg"
    (this call's), "wall_s", "images_per_s" (this call's), "hsr_pairs", "hsr_resumed"}``.
    Seeded; the caller's global RNG state is restored afterwards. Under torchrun every process
    calls it alike and it trains data-parallel (the module docstring: ``cfg.batch`` the global
    batch, averaged gradients, global-batch draws, only rank 0 checkpoints and shows progress).

    ``keep_state=True`` adds ``"state"``: everything needed to continue training (CPU
    tensors; ``torch.save``-able): ``G``, ``D``, ``G_ema`` state dicts; ``opt_G``, ``opt_D``
    optimizer state dicts; ``ada`` (p and its sign accumulator / step counter, or None);
    ``pl_mean`` (the path-length running mean); ``hsr`` (the predictors' state dict with
    their levels, hidden width and feature-network name, or None); ``nimg``; ``step`` (the
    global step counter); ``data`` (the data-order generator state, see :class:`_Batches`);
    ``torch_rng`` / ``cuda_rng`` (the global RNG states of the noise and augmentations);
    ``seed``; ``arch``; ``config``; under torchrun also ``ranks`` (every process's ``w_avg`` of
    G and G_ema and path-length mean, in rank order; the rest is the same on every process).

    ``resume``: such a result (or its ``"state"``): a branch. Training continues from it for
    ``steps`` (or ``ceil(cfg.kimg * 1000 / batch)``) *further* steps: the weights, both
    optimizers, ADA's p and accumulators, the path-length mean, the step counter and ``nimg``
    continue, so the lazy-regularisation schedule, the EMA ramp-up, ``HSR.active(nimg)`` and
    the history's ``step`` / ``kimg`` count the warm-up's images too. ``cfg`` may differ from
    the warm-up's (HSR on/off and its levels/weight/hidden/warm-up, ``pl_weight``, ADA
    settings, ``kimg``, ``log_every``, ...) but ``arch``, ``batch`` and ``lr`` must match
    (``ValueError`` naming the fields otherwise). The optimizers' hyperparameters are the
    branch's (e.g. switching the path-length regulariser off drops G's lazy-reg. correction);
    their Adam moments are the warm-up's. ADA's p continues from the warm-up (``augment_p`` is
    the start value of fresh runs only; a warm-up without augmentation starts ADA afresh).
    HSR predictors: a branch that turns HSR on builds new ones (initialised as a fresh run
    with the same seed would) and adds them to G's optimizer as param group 1 after loading
    the warm-up's G/D optimizer state (so their Adam moments start at zero). If the warm-up
    had HSR too, its predictors and their Adam state are reused when the branch's HSR has
    the same levels, hidden width, feature-network ``name`` and shapes (``"hsr_resumed"``
    says so); otherwise they are dropped and new ones built.

    Seeding: a fresh run with ``seed=None`` uses seed 0. With ``resume``, ``seed=None``
    continues the warm-up's random streams (noise, augmentations, data order) exactly, so on
    the CPU warm-up + branch gives bit-for-bit the run of one call (for a Dataset too: the
    epoch's order is redrawn and the taken batches skipped); an int ``seed`` restarts the
    streams from it as a fresh run with that seed would (deterministic given resume and
    seed; with the warm-up's seed the data order of the warm-up's start repeats). Exact
    continuation needs the same device, images and thread settings (CUDA kernels may be
    non-deterministic anyway).

    ``checkpoint``: a file holding the training state (as ``keep_state``), the history, the
    snapshots and the steps done, written atomically every ``checkpoint_every`` steps; if it
    exists when the call starts, training continues from it (its random streams included, as
    a branch with ``seed=None`` does), so a killed run resumed ends with the weights of an
    uninterrupted one; the last write is after the last step, so a finished run's result
    comes back from it without training again (the zoo deletes it once the artefact is saved). ``snapshots``: keep the EMA generator at that many evenly spaced steps
    of this call (``"snapshots": {global step: G_ema state dict}``), the points of a
    training curve."""
    import copy

    from ..progress import bar

    from pathlib import Path

    from ..paths import atomic_save

    cfg = gan_config(cfg)
    device = torch.device(device)
    arch = cfg.arch_dict()
    state = _resume_state(resume)
    ck = None
    if checkpoint is not None and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if ck["config"] != asdict(cfg):
            raise ValueError(f"checkpoint {checkpoint} was written by another config; delete it to start afresh")
        state, seed = ck["state"], None                # continue its streams exactly
    if state is not None:
        _check_branch(cfg, arch, state)
    if cfg.hsr and features is None:
        raise ValueError("cfg.hsr=True needs features= (a frozen feature callable, see ssl_lab.nets.extractors)")
    if cfg.batch % min(arch["mbstd_group"], cfg.batch):
        raise ValueError(f"batch {cfg.batch} must be divisible by the minibatch-std group {arch['mbstd_group']}")
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1:
        _check_world(cfg, arch, world)
    n_steps = steps if steps is not None else math.ceil(cfg.kimg * 1000 / cfg.batch)
    step0 = int(state["step"]) if state is not None else 0
    done = 0                                           # steps of this call already taken
    if ck is not None:
        done, step0 = int(ck["done"]), int(ck["step0"])
    snap_at = {round(n_steps * (k + 1) / snapshots) for k in range(snapshots)} if snapshots else set()
    init_seed = seed if seed is not None else (int(state["seed"]) if state is not None else 0)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(init_seed)
        G, D = build(arch)
        G, D = G.to(device).train(), D.to(device).train()
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        G, D = G.to(memory_format=fmt), D.to(memory_format=fmt)
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
        gen = torch.Generator().manual_seed(init_seed)
        data = _batches(images, cfg.batch, arch["resolution"], gen, rank, world)
        hsr_resumed = False
        if state is None:
            opt_G, opt_D = make_optimizers(G, D, cfg, hsr)
        else:
            G.load_state_dict(state["G"])
            D.load_state_dict(state["D"])
            G_ema.load_state_dict(state["G_ema"])
            plr.pl_mean.copy_(state["pl_mean"])
            if augment is not None and state["ada"] is not None:
                _load_ada_state(augment, state["ada"])
            # G's optimizer: G's group from the warm-up, then the predictors as group 1, either
            # with their saved Adam state (same HSR as the warm-up) or fresh (added afterwards).
            # (Optimizer.load_state_dict keeps same-device tensors by reference: load copies, so
            # that training the branch does not change the warm-up's state for the next branch)
            opt_G, opt_D = make_optimizers(G, D, cfg)
            opt_D.load_state_dict(_cpu(state["opt_D"]))
            hsr_resumed = _hsr_compatible(hsr, features, state["hsr"])
            if hsr_resumed:
                hsr.load_state_dict(state["hsr"]["predictors"])
                opt_G.add_param_group({"params": list(hsr.parameters())})
                opt_G.load_state_dict(_cpu(state["opt_G"]))
            else:
                opt_G.load_state_dict(_cpu(_group0(state["opt_G"])))
                if hsr is not None:
                    opt_G.add_param_group({"params": list(hsr.parameters())})
            # load_state_dict restores the warm-up's lr / betas / eps: use the branch's
            for opt, hp in ((opt_G, _adam_hparams(cfg, _g_interval(cfg))),
                            (opt_D, _adam_hparams(cfg, _d_interval(cfg)))):
                for group in opt.param_groups:
                    group.update(hp)
            if seed is None:                           # continue the warm-up's random streams
                data.load_state(state["data"])
                torch.set_rng_state(state["torch_rng"])
                if cuda and state.get("cuda_rng") is not None:
                    torch.cuda.set_rng_state(state["cuda_rng"], device)
            mine = state.get("ranks")
            if world > 1 and mine is not None and len(mine) == world:
                _load_rank_state(G, G_ema, plr, mine[rank])   # this process's own w_avg, pl_mean

        def training_state(total_steps):
            return {
                "G": _cpu(G.state_dict()), "D": _cpu(D.state_dict()), "G_ema": _cpu(G_ema.state_dict()),
                "opt_G": _cpu(opt_G.state_dict()), "opt_D": _cpu(opt_D.state_dict()),
                "ada": _ada_state(augment), "pl_mean": _cpu(plr.pl_mean),
                "hsr": None if hsr is None else {
                    "predictors": _cpu(hsr.state_dict()), "levels": hsr.levels,
                    "hidden": _hsr_hidden(hsr), "features": getattr(features, "name", None)},
                "nimg": total_steps * cfg.batch, "step": total_steps, "data": _cpu(data.state()),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if cuda else None,
                "seed": init_seed, "arch": arch, "config": asdict(cfg),
                **({"ranks": distributed.gather_object(_rank_state(G, G_ema, plr))} if world > 1 else {})}

        history, kept, wall0 = ([], {}, 0.0) if ck is None else (ck["history"], ck["snapshots"], ck["wall_s"])
        t0, t_log, n_log = time.perf_counter(), time.perf_counter(), 0
        sums, counts = {}, {}
        for i in bar(range(done, n_steps), "GAN", show=progress and distributed.is_main()):
            step = step0 + i
            reals = next(data).to(device, non_blocking=True).contiguous(memory_format=fmt)
            stats = train_step(G, D, G_ema, opt_G, opt_D, reals, step, cfg, augment, hsr, plr)
            n_log += reals.shape[0] * world
            for k, v in stats.items():
                sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
            if (step + 1) % cfg.log_every == 0 or i + 1 == n_steps:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                now = time.perf_counter()
                history.append({"step": step + 1, "kimg": (step + 1) * cfg.batch / 1000,
                                "images_per_s": n_log / (now - t_log),
                                **{k: sums[k] / counts[k] for k in sums}, "p": stats["p"]})
                t_log, n_log, sums, counts = now, 0, {}, {}
            if i + 1 in snap_at:
                kept[step + 1] = _cpu(G_ema.state_dict())
            if checkpoint is not None and ((i + 1) % checkpoint_every == 0 or i + 1 == n_steps):
                st = training_state(step + 1)          # every process takes part (its own w_avg, pl_mean)
                if distributed.is_main():              # only rank 0 writes
                    atomic_save(dict(state=st, history=history, snapshots=kept,
                                     done=i + 1, step0=step0, config=asdict(cfg),
                                     wall_s=wall0 + time.perf_counter() - t0), checkpoint)
                distributed.barrier()
        wall = wall0 + time.perf_counter() - t0
        total_steps = step0 + n_steps
        out = {"G_ema": {k: v.detach().cpu() for k, v in G_ema.state_dict().items()},
               "arch": arch, "config": asdict(cfg), "history": history,
               "augment_p": float(augment.p) if augment is not None else 0.0,
               "nimg": total_steps * cfg.batch, "branch_nimg": n_steps * cfg.batch, "wall_s": wall,
               "images_per_s": n_steps * cfg.batch / max(wall, 1e-9),
               "hsr_pairs": list(hsr.pairs) if hsr is not None else [], "hsr_resumed": hsr_resumed}
        if snapshots:
            out["snapshots"] = kept
        if keep_state:
            out["state"] = training_state(total_steps)
    return out


__all__ = ["BRANCH_MUST_MATCH", "CONFIGS", "GANConfig", "gan_config", "make_optimizers", "train_gan",
           "train_step"]
