"""DINO (Caron et al. 2021, "Emerging properties in self-supervised vision transformers"):
the small-scale stand-in for the "ViT DINO" feature network of the HSR chapters (thesis
Ch. 4, Table 4.1).

A *student* ViT with an MLP head is trained to output, for every crop of an image, the same
probability distribution over ``out_dim`` prototypes as a *teacher* gives to another,
global crop; the teacher gets no gradient, is an EMA of the student, and avoids collapse by
*centring* (subtracting a running mean of its outputs) and *sharpening* (a low temperature).

What follows the paper (and its released code):

* loss (:func:`dino_loss`): cross-entropy ``-sum softmax((t - c) / tau_t) *
  log_softmax(s / tau_s)`` between the teacher on each of the 2 global crops and the student
  on every *other* crop (same-crop pairs skipped), averaged over pairs and batch;
  ``tau_s = 0.1``; ``tau_t`` = 0.04, optionally warmed up linearly from 0.04 to 0.07 over
  the first 30 % of training (the paper: the first 30 of 100 epochs;
  :func:`teacher_temperature`); centre EMA momentum 0.9 (:func:`update_center`);
* teacher: EMA of the whole student (backbone + head) with momentum rising from 0.996 to
  1 on a cosine (BYOL's schedule, :func:`ssl_lab.ssl.byol.momentum`, per step); no drop-path;
  only the 2 global crops go through it; it is the network kept after training;
* head (:class:`DINOHead`): Linear-GELU-Linear-GELU-Linear to a bottleneck, L2
  normalisation, then a weight-normalised Linear (no bias) whose norm is fixed to 1
  (``norm_last_layer``), frozen during the first 1 % of steps (the paper: the first epoch);
* multi-crop (:class:`MultiCropAugment`): 2 global crops (area scale (0.4, 1)) and local
  crops (scale (0.05, 0.4)), colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8), grey (p 0.2),
  Gaussian blur (p 1.0 / 0.1 for the two global crops, 0.5 for local ones), solarisation of
  the second global crop (p 0.2); ImageNet mean/std input normalisation;
* optimisation: AdamW, lr ``5e-4 * batch / 256`` with linear warm-up (first 10 % of the
  steps; the paper: 10 of 100 epochs) then a cosine decay to 1e-6; weight decay on weights
  only (not biases or norms) rising on a cosine from 0.04 to 0.4; each parameter's
  gradient norm clipped at 3; drop-path 0.1 in the student.

What is scaled down (small scale, SynthFaces faces of 64 px): a ViT-Tiny *shape* (12 blocks
of width 192, 3 heads) with 8-px patches on 64-px images (an 8 x 8 token grid) instead of
ViT-S/B with 16-px patches at 224 px; global crops of 64 px and 2 local crops of 32 px
instead of 224 px and 8 x 96 px; head 512 / 128 / 1024 instead of 2048 / 256 / 65536;
batch 64 instead of 1024; steps instead of 100-800 epochs. Blur sigmas keep the paper's
meaning: (0.1, 2) px at a 224-px global or 96-px local crop, scaled to the actual crop size.
Horizontal flip (p 0.5 in the paper) is OFF by default for faces (see
:mod:`ssl_lab.ssl.augment` for why; ``hflip`` turns it on). The 12 blocks are kept so that
HSR reads blocks 3, 6, 9, 12 exactly as from ViT-B/16.

DINO on a ResNet (the thesis's "ResNet50 DINO" row; ``backbone="resnet18"``): the embedding
is the pooled last map, and the paper's released command for ResNet-50 changes the
optimisation, not the method: ``--optimizer sgd --lr 0.03 --weight_decay 1e-4
--weight_decay_end 1e-4 --global_crops_scale 0.14 1 --local_crops_scale 0.05 0.14``
(facebookresearch/dino README, "ResNet-50 and other convnets trainings"); here
``optimizer="sgd"`` (momentum 0.9, lr ``0.03 * batch / 256``) and those config values.

At full scale the thesis does not train DINO: it uses the official ViT-B/16 DINO weights
from a local file, ``ssl_lab.nets.extractors.vit_features("vit_base_patch16_224",
weights="/path/dino_vitbase16_pretrain.pth")``. The stand-in trained here plugs into the same
function (timm's ``**timm_kwargs`` give the custom shape; ``weights`` may be a state dict):

    r = train_dino(images)
    F = vit_features(weights=r["state_dict"], **r["vit_features_kwargs"])
    # = vit_features("vit_tiny_patch16_224", weights=..., input_size=64, patch_size=8,
    #                depth=12, embed_dim=192, num_heads=3): blocks 3, 6, 9, 12, 8 x 8 grids

``vit_features`` normalises with the ImageNet mean/std by default, which is what the network
is trained with here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from ..paths import atomic_save
from ..progress import bar as progress_bar

from ..nets.extractors import IMAGENET_MEAN, IMAGENET_STD
from .augment import _rand, color_jitter, gaussian_blur, random_grey, random_resized_crop, to_float
from .byol import ema_update, momentum
from .train import resolve_config

VIT_NAME = "vit_tiny_patch16_224"       # timm name whose shape the stand-in keeps (width/heads)


# -- networks ---------------------------------------------------------------------------------
def small_vit(img_size: int = 64, patch_size: int = 8, depth: int = 12, embed_dim: int = 192,
              num_heads: int = 3, **kw) -> nn.Module:
    """A randomly initialised timm ``VisionTransformer`` (ViT-Tiny shape by default: 12
    blocks, width 192, 3 heads) on ``img_size`` images with ``patch_size`` patches, no
    classifier (``model(x)`` is the final-norm CLS token, ``(B, embed_dim)``).

    ``dynamic_img_size=True`` (default) interpolates the position embedding, so the same
    network takes the smaller local crops. Nothing is ever downloaded (``pretrained`` is
    refused). Other ``kw`` (e.g. ``drop_path_rate``) go to ``timm.create_model``."""
    import timm

    if kw.pop("pretrained", False):
        raise ValueError("small_vit is always randomly initialised; nothing can be downloaded")
    kw.setdefault("dynamic_img_size", True)
    return timm.create_model(VIT_NAME, pretrained=False, num_classes=0, img_size=img_size,
                             patch_size=patch_size, depth=depth, embed_dim=embed_dim,
                             num_heads=num_heads, **kw)


class DINOHead(nn.Module):
    """Linear-GELU-Linear-GELU-Linear to ``bottleneck``, L2 normalisation, weight-normalised
    Linear (no bias) to ``out_dim`` logits.

    Small-scale defaults 512 / 128 / 1024; the paper's are ``hidden=2048, bottleneck=256,
    out_dim=65536``. With ``norm_last_layer`` (the paper's default, the more stable choice)
    the weight norm ``g`` is fixed to 1, so the logits are cosines in [-1, 1]. The MLP is
    initialised with a truncated normal (std 0.02) and zero biases, as in the paper's code."""

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden: int = 512,
                 bottleneck: int = 128, norm_last_layer: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DINONet(nn.Module):
    """Backbone + head on a list of crops: one backbone pass per run of consecutive crops
    of the same size, the outputs concatenated in crop order, ``(n_crops * B, out_dim)``.
    The embedding is the backbone's output (a ViT's CLS token) or, for a
    :class:`~ssl_lab.nets.backbones.Backbone`, its pooled last map."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops) -> torch.Tensor:
        feats, i = [], 0
        while i < len(crops):
            j = i + 1
            while j < len(crops) and crops[j].shape[-2:] == crops[i].shape[-2:]:
                j += 1
            embed = getattr(self.backbone, "pooled", self.backbone)
            feats.append(embed(torch.cat(list(crops[i:j]))))
            i = j
        return self.head(torch.cat(feats))


# -- loss and schedules -----------------------------------------------------------------------
def dino_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """The DINO loss (a scalar).

    ``student_out``: ``(n_crops * B, K)`` logits, crop-major (crop 0's B rows first; crops 0
    and 1 are the global ones); ``teacher_out``: ``(2 * B, K)`` logits of the 2 global crops;
    ``center``: ``(K,)`` or ``(1, K)``. Teacher targets ``q_i = softmax((t_i - center) /
    teacher_temp)`` (no gradient), student ``log p_j = log_softmax(s_j / student_temp)``;
    the loss is the cross-entropy ``-sum_k q_i log p_j`` averaged over the batch and over all
    pairs (i, j) with ``i != j`` (``2 n_crops - 2`` pairs). Computed in at least float32."""
    if teacher_out.dim() != 2 or teacher_out.shape[0] % 2:
        raise ValueError(f"teacher_out must be (2 * B, K), got {tuple(teacher_out.shape)}")
    B = teacher_out.shape[0] // 2
    if student_out.dim() != 2 or student_out.shape[1] != teacher_out.shape[1] \
            or student_out.shape[0] % B or student_out.shape[0] < 2 * B:
        raise ValueError(f"student_out must be (n_crops * B, K) with n_crops >= 2, B = {B}, "
                         f"K = {teacher_out.shape[1]}; got {tuple(student_out.shape)}")
    dt = torch.promote_types(student_out.dtype, torch.float32)
    q = F.softmax((teacher_out.detach().to(dt) - center.detach().to(dt)) / teacher_temp, -1)
    logp = F.log_softmax(student_out.to(dt) / student_temp, -1)
    total, n = 0.0, 0
    for i, qi in enumerate(q.split(B)):
        for j, lj in enumerate(logp.split(B)):
            if i != j:
                total = total - (qi * lj).sum(-1).mean()
                n += 1
    return total / n


@torch.no_grad()
def target_entropy(teacher_out: torch.Tensor, center: torch.Tensor, teacher_temp: float) -> float:
    """Mean entropy (nats) of the teacher's targets ``softmax((t - center) / teacher_temp)``
    over the rows of ``teacher_out``: the paper's collapse monitor (its Fig. 7, "target
    entropy"). ``ln K`` is the uniform collapse (centring winning), 0 a one-hot target; since
    the loss is the cross-entropy, ``loss - target_entropy`` is the mean KL from the teacher to
    the student, the paper's other monitor (0 when they agree)."""
    q = F.softmax((teacher_out.float() - center.float()) / teacher_temp, -1)
    return float(-(q * torch.log(q.clamp_min(1e-30))).sum(-1).mean())


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out: torch.Tensor,
                  momentum: float = 0.9) -> torch.Tensor:
    """``momentum * center + (1 - momentum) * mean(teacher_out over the batch)``, same shape
    as ``center`` (a new tensor; call it after the loss, as the paper does)."""
    mean = teacher_out.detach().to(center.dtype).mean(0).view_as(center)
    return center * momentum + mean * (1 - momentum)


def teacher_temperature(step: int, warmup_steps: int, start: float = 0.04,
                        end: float = 0.04) -> float:
    """Teacher temperature at ``step``: linear from ``start`` to ``end`` over the first
    ``warmup_steps`` steps, then ``end``. The paper's code default is a constant 0.04; its
    longer runs use 0.04 -> 0.07 over the first 30 % of training (30 of 100 epochs). Higher
    than 0.07 at the start makes training unstable, per the paper."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * max(step, 0) / warmup_steps


def lr_at(step: int, total: int, base: float, final: float = 1e-6, warmup: int = 0) -> float:
    """Linear warm-up ``base * (step + 1) / warmup`` for ``step < warmup``, then a cosine
    from ``base`` to ``final`` over the remaining steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    k, n = step - warmup, max(total - warmup, 1)
    return final + (base - final) * (1 + math.cos(math.pi * min(k, n) / n)) / 2


# -- multi-crop augmentation ------------------------------------------------------------------
@dataclass
class MultiCropAugment:
    """``crops = MultiCropAugment()(images, generator)``: a list of 2 global crops
    (``size``) followed by ``n_local`` local crops (``local_size``), each ``(B, 3, s, s)``
    float in [0, 1]. Built from :mod:`ssl_lab.ssl.augment`'s primitives (random resized crop,
    colour jitter, grey, blur), random numbers on the CPU from ``generator``.

    Per-crop probabilities are ``(global 1, global 2, every local)``. ``sigma`` is in pixels
    at a ``ref_sizes`` (224, 96) px global/local crop, as in the paper, and scaled to the
    actual crop size."""
    size: int = 64
    local_size: int = 32
    n_local: int = 2
    global_scale: tuple = (0.4, 1.0)
    local_scale: tuple = (0.05, 0.4)
    ratio: tuple = (3 / 4, 4 / 3)
    jitter: tuple = (0.4, 0.4, 0.2, 0.1)      # brightness, contrast, saturation, hue
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: tuple = (1.0, 0.1, 0.5)
    sigma: tuple = (0.1, 2.0)
    ref_sizes: tuple = (224, 96)
    p_solarize: tuple = (0.0, 0.2, 0.0)
    p_flip: float = 0.0                       # OFF: a flip swaps left/right face parts

    def crop(self, x, kind: int, generator=None) -> torch.Tensor:
        """One crop of ``x``: ``kind`` 0 or 1 = global crop 1 or 2, 2 = a local crop."""
        x = to_float(x)
        B = x.shape[0]
        size, scale, ref = ((self.size, self.global_scale, self.ref_sizes[0]) if kind < 2 else
                            (self.local_size, self.local_scale, self.ref_sizes[1]))
        v, _ = random_resized_crop(x, size, scale, self.ratio, self.p_flip, generator)
        v = color_jitter(v, *self.jitter, p=self.p_jitter, generator=generator)
        v = random_grey(v, self.p_gray, generator)
        s = _rand(B, generator, *self.sigma) * (size / ref)
        s = torch.where(_rand(B, generator) < self.p_blur[kind], s, torch.zeros_like(s))
        v = gaussian_blur(v, s)
        sol = (_rand(B, generator) < self.p_solarize[kind]).to(v.device).view(B, 1, 1, 1)
        return torch.where(sol & (v >= 0.5), 1 - v, v)

    def __call__(self, x, generator=None) -> list[torch.Tensor]:
        return [self.crop(x, k, generator) for k in (0, 1)] + \
               [self.crop(x, 2, generator) for _ in range(self.n_local)]


# -- training ---------------------------------------------------------------------------------
DEFAULTS = dict(
    size=64, local_size=32, n_local=2,      # paper: 224 px global, 8 x 96 px local crops
    global_scale=(0.4, 1.0), local_scale=(0.05, 0.4),
    hflip=0.0,                              # off for faces (paper: 0.5)
    backbone="vit",                         # or a timm ResNet name (e.g. "resnet18")
    patch_size=8, depth=12, embed_dim=192, num_heads=3,    # paper: ViT-S/16 or B/16 at 224
    drop_path=0.1,                          # student only
    out_dim=1024, head_hidden=512, bottleneck=128,         # paper: 65536, 2048, 256
    norm_last_layer=True, freeze_last_frac=0.01,           # paper: last layer frozen 1 epoch
    batch_size=64, steps=100,               # paper: 1024, 100-800 epochs of ImageNet
    optimizer="adamw",                      # or "sgd" (momentum 0.9; the paper's ResNet-50 runs)
    lr=None, min_lr=1e-6, warmup_frac=0.1,  # None: 5e-4 (sgd: 0.03) * batch / 256
    weight_decay=0.04, weight_decay_end=0.4, clip_grad=3.0,
    tau_base=0.996,                         # teacher EMA momentum, cosine to 1
    student_temp=0.1, teacher_temp=0.04,    # paper's long runs: teacher_temp 0.07 after
    warmup_teacher_temp=0.04, teacher_temp_warmup_frac=0.3,   # a 0.04 -> 0.07 warm-up
    center_momentum=0.9,
    amp=False,                              # bf16 autocast (CUDA, or a CPU with AMX)
)


def build_dino(cfg: dict) -> tuple[DINONet, DINONet]:
    """``(student, teacher)`` for a complete config; the teacher is a copy of the student
    without drop-path and without gradients. Call ``torch.manual_seed`` first for a
    reproducible initialisation (as :func:`train_dino` does). ``cfg["backbone"]``: ``"vit"``
    (:func:`small_vit` of the config's shape) or a timm ResNet name, a
    :class:`~ssl_lab.nets.backbones.Backbone` without input normalisation (the loop normalises)."""
    from ..nets.backbones import Backbone

    def net(drop_path):
        if cfg["backbone"] == "vit":
            bb = small_vit(**vit_kwargs(cfg), drop_path_rate=drop_path)
            dim = bb.embed_dim
        else:
            bb = Backbone(cfg["backbone"], normalize_input=False)
            dim = bb.pooled_channels
        return DINONet(bb, DINOHead(dim, cfg["out_dim"], cfg["head_hidden"], cfg["bottleneck"],
                                    cfg["norm_last_layer"]))

    student = net(cfg["drop_path"])
    teacher = net(0.0)
    teacher.load_state_dict(student.state_dict())
    return student, teacher.requires_grad_(False)


def vit_kwargs(cfg: dict) -> dict:
    """The :func:`small_vit` arguments of a config (rebuild with ``small_vit(**kw)``)."""
    return dict(img_size=cfg["size"], patch_size=cfg["patch_size"], depth=cfg["depth"],
                embed_dim=cfg["embed_dim"], num_heads=cfg["num_heads"])


def train_dino(images: torch.Tensor, cfg: dict | None = None, device="cpu", seed: int = 0,
               progress: bool = True, checkpoint=None, checkpoint_every: int = 50,
               max_steps: int | None = None) -> dict | None:
    """Train a small ViT with DINO on ``images`` ((N, 3, H, W), uint8 or float in [0, 1], on
    any device) for ``cfg["steps"]`` steps of ``batch_size`` images, each seen as 2 global
    and ``n_local`` local crops (see :data:`DEFAULTS` and the module docstring).

    Returns a dict: ``state_dict`` (the *teacher* backbone's, on CPU: DINO evaluates the
    teacher), ``student_state_dict`` (the student backbone's); for a ViT ``vit_kwargs`` (rebuild
    with ``small_vit(**vit_kwargs)``) and ``vit_features_kwargs`` (``vit_features(weights=
    state_dict, **vit_features_kwargs)`` gives the HSR feature network), for a ResNet
    ``backbone`` (its name: ``resnet_features(backbone, weights=state_dict)``); ``center``,
    ``history`` (loss per step), ``target_entropy`` (:func:`target_entropy` per step),
    ``schedule`` (lr, weight decay, momentum and teacher temperature per step), ``config``, ``seed``, ``steps``, ``wall_s`` and ``images_per_s`` (images, each seen as
    ``2 + n_local`` crops, per second).

    ``checkpoint``: a file that holds the whole training state (student, teacher, optimiser,
    centre, data order and RNG states, history), written atomically every ``checkpoint_every``
    steps; if it exists, training resumes from it and ends as the uninterrupted run would.
    ``max_steps``: stop after that many steps of this call, write the checkpoint and return
    None (one process only)."""
    cfg = resolve_config("train_dino", cfg, DEFAULTS, images)
    device = torch.device(device)
    bs = min(cfg["batch_size"], len(images))
    steps = int(cfg["steps"])
    torch.manual_seed(seed)
    student, teacher = build_dino(cfg)
    # the teacher runs in training mode, as in the paper's code: a ResNet's BatchNorms use the
    # batch's statistics (a ViT has no BatchNorm, and the teacher no drop-path or dropout)
    student, teacher = student.to(device).train(), teacher.to(device).train()
    aug = MultiCropAugment(size=cfg["size"], local_size=cfg["local_size"],
                           n_local=cfg["n_local"], global_scale=tuple(cfg["global_scale"]),
                           local_scale=tuple(cfg["local_scale"]), p_flip=cfg["hflip"])
    gen = torch.Generator().manual_seed(seed)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    # weight decay on weights only (not biases, norms or the 1-d gains), as in the paper
    decay, no_decay = [], []
    for name, p in student.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [dict(params=decay), dict(params=no_decay, weight_decay=0.0)]
    if cfg["optimizer"] == "sgd":               # the paper's ResNet-50 command: SGD, lr 0.03 per 256
        base_lr = cfg["lr"] or 0.03 * bs / 256
        opt = torch.optim.SGD(groups, lr=base_lr, momentum=0.9)
    elif cfg["optimizer"] == "adamw":
        base_lr = cfg["lr"] or 5e-4 * bs / 256
        opt = torch.optim.AdamW(groups, lr=base_lr)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {cfg['optimizer']!r}")
    last_layer = list(student.head.last_layer.parameters())
    warmup = int(round(cfg["warmup_frac"] * steps))
    tt_warmup = int(round(cfg["teacher_temp_warmup_frac"] * steps))
    freeze_last = int(round(cfg["freeze_last_frac"] * steps))
    center = torch.zeros(1, cfg["out_dim"], device=device)
    amp = bool(cfg["amp"])

    order, pos, history, entropy = torch.randperm(len(images), generator=gen), 0, [], []
    start, wall0 = 0, 0.0
    schedule = dict(lr=[], weight_decay=[], momentum=[], teacher_temp=[])
    if checkpoint is not None and Path(checkpoint).exists():
        st = torch.load(checkpoint, map_location=device, weights_only=False)
        student.load_state_dict(st["student"]); teacher.load_state_dict(st["teacher"])
        opt.load_state_dict(st["opt"]); gen.set_state(st["gen"]); torch.set_rng_state(st["rng"])
        center, order, pos, history = st["center"], st["order"], st["pos"], st["history"]
        entropy = st["entropy"]
        schedule, start, wall0 = st["schedule"], st["step"], st["wall_s"]

    def save_state(step):
        atomic_save(dict(student=student.state_dict(), teacher=teacher.state_dict(), opt=opt.state_dict(),
                         gen=gen.get_state(), rng=torch.get_rng_state(), center=center, order=order,
                         pos=pos, history=history, entropy=entropy, schedule=schedule, step=step,
                         wall_s=wall0 + time.perf_counter() - t0), checkpoint)

    end = steps if max_steps is None else min(steps, start + max_steps)
    bar = progress_bar(range(start, end), "dino vit", show=progress, initial=start, total=steps)
    t0 = time.perf_counter()
    for step in bar:
        lr = lr_at(step, steps, base_lr, cfg["min_lr"], warmup)
        wd = cfg["weight_decay_end"] + (cfg["weight_decay"] - cfg["weight_decay_end"]) * \
            (1 + math.cos(math.pi * step / max(steps, 1))) / 2
        tau = momentum(step, steps, cfg["tau_base"])
        t_temp = teacher_temperature(step, tt_warmup, cfg["warmup_teacher_temp"],
                                     cfg["teacher_temp"])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.param_groups[0]["weight_decay"] = wd

        if pos + bs > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        x = images[order[pos:pos + bs].to(images.device)].to(device, non_blocking=True)
        pos += bs
        crops = [(c - mean) / std for c in aug(x, generator=gen)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            with torch.no_grad():
                t_out = teacher(crops[:2])
            s_out = student(crops)
        loss = dino_loss(s_out, t_out, center, cfg["student_temp"], t_temp)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"dino loss is {loss.item()} at step {step}; lower lr")
        entropy.append(target_entropy(t_out, center, t_temp))
        center = update_center(center, t_out.float(), cfg["center_momentum"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["clip_grad"]:
            for p in student.parameters():          # per-parameter clipping, as in the paper
                if p.grad is not None:
                    torch.nn.utils.clip_grad_norm_(p, cfg["clip_grad"])
        if step < freeze_last:
            for p in last_layer:
                p.grad = None
        opt.step()
        ema_update(teacher, student, tau)
        history.append(loss.item())
        for k, v in zip(schedule, (lr, wd, tau, t_temp)):
            schedule[k].append(v)
        bar.set_postfix(loss=f"{history[-1]:.3f}")
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            save_state(step + 1)
    if end < steps:
        if checkpoint is not None:
            save_state(end)
        return None
    wall = wall0 + time.perf_counter() - t0

    def cpu(sd):
        return {k: v.detach().cpu().clone() for k, v in sd.items()}

    if cfg["backbone"] == "vit":
        vit = vit_kwargs(cfg)
        feat_kw = dict(name=VIT_NAME, input_size=vit["img_size"],
                       **{k: vit[k] for k in ("patch_size", "depth", "embed_dim", "num_heads")})
        net_kw = dict(vit_name=VIT_NAME, vit_kwargs=vit, vit_features_kwargs=feat_kw)
    else:
        net_kw = dict(backbone=cfg["backbone"])
    return dict(method="dino", **net_kw,
                config=cfg, seed=seed, state_dict=cpu(teacher.backbone.state_dict()),
                student_state_dict=cpu(student.backbone.state_dict()), center=center.cpu(),
                history=history, target_entropy=entropy, schedule=schedule, steps=steps, wall_s=wall,
                images_per_s=steps * bs / wall if wall > 0 else float("nan"))
