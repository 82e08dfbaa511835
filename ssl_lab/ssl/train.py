"""The instance-level SSL training loop shared by BYOL and MoCo (LEAD's stage 1), and the
config plumbing the other loops reuse (:func:`resolve_config`).

:func:`train_ssl` draws batches without replacement (a fresh permutation per pass), makes two
augmented views per image (:class:`ssl_lab.ssl.augment.TwoViewAugment`, batched on the
device), steps SGD with a cosine decay, and moves BYOL's target / MoCo's key encoder by EMA.

Under ``torchrun`` (:mod:`ssl_lab.distributed`, world size W > 1) the loop is data-parallel,
as DINO's ``main_dino.py`` and MoCo's ``main_moco.py``: every process initialises the model
from the same seed, takes ``batch_size / W`` images per step from its shard of each pass's
permutation (``DistributedSampler``), augments them with its own stream (seed + rank), and
runs the model inside ``DistributedDataParallel``, which averages the gradients. BYOL's
BatchNorms are synchronised over the processes (the BYOL paper's synchronised BN; so W
processes of B/W compute what one process of B computes), MoCo keeps per-process BN with the
key batch shuffled across the processes and enqueues the keys of all of them
(:class:`ssl_lab.ssl.moco.MoCo`). The learning rate follows the global batch; the history
holds the loss averaged over the processes; only rank 0 writes the checkpoint and shows
progress. With one process none of this runs and the results are those of a plain run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from .. import distributed
from ..paths import atomic_save
from ..progress import bar as progress_bar
from .augment import TwoViewAugment
from .byol import BYOL


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
    amp=False,                              # bf16 autocast (CPU or CUDA)
    channels_last=False,                    # NHWC convolutions (faster with bf16 on CPU)
)


def native_bf16(device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    AMX or AVX-512 BF16. On other CPUs bf16 is emulated: on an AVX2-only CPU a small LEAD
    stage-2 step ran ten times slower under bf16 autocast than in float32 (4.8 against 50.7
    images/s on one core)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def precision(device, enabled) -> str:
    """What :func:`bf16` computes the networks' passes in: ``"bf16 autocast"`` or ``"float32"``."""
    return "bf16 autocast" if enabled == "always" or bool(enabled) and native_bf16(device) else "float32"


def bf16(device, enabled):
    """bf16 autocast on ``device`` when ``enabled`` and the device computes bf16 natively
    (:func:`native_bf16`), float32 otherwise: where it helps. ``enabled="always"``: whatever
    the device (tests). On CPU its gain depends on the CPU: a 2048 matmul runs ~4.5x faster
    than fp32 where AMX exists, ~2.7x on an AVX-512-bf16 CPU without it (`python -m ssl_lab
    bench` measures both). Losses cast to float32 themselves (:func:`ssl_lab.ssl.byol.byol_loss`, ...)."""
    on = precision(device, enabled) == "bf16 autocast"
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=on)


def nhwc(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """``x`` in channels_last memory format when ``enabled`` (the model must be too)."""
    return x.contiguous(memory_format=torch.channels_last) if enabled else x


def resolve_config(fn: str, cfg: dict | None, defaults: dict, images: torch.Tensor) -> dict:
    """``defaults`` updated with ``cfg`` (unknown keys are a KeyError naming ``fn``), after
    checking that ``images`` is a batch of at least two RGB images."""
    unknown = set(cfg or {}) - set(defaults)
    if unknown:
        raise KeyError(f"unknown {fn} config keys {sorted(unknown)}; known: {sorted(defaults)}")
    if images.dim() != 4 or images.shape[1] != 3 or len(images) < 2:
        raise ValueError(f"images must be (N >= 2, 3, H, W), got {tuple(images.shape)}")
    return {**defaults, **(cfg or {})}


def optimizer_step(loss: torch.Tensor, opt, sched, what: str) -> float:
    """One step of ``opt`` (and of the schedule ``sched``) on ``loss``; a non-finite loss is
    a ``FloatingPointError`` naming ``what`` before any weight changes. Returns the loss."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} loss is {loss.item()}; lower the lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


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
              seed: int = 0, progress: bool = True, checkpoint=None, checkpoint_every: int = 100,
              snapshots: int = 0, max_steps: int | None = None) -> dict | None:
    """Train ``method`` ("byol" or "moco") on ``images`` ((N, 3, H, W), uint8 or float in
    [0, 1], on any device) for ``cfg["steps"]`` steps of two augmented views per image.

    SGD (momentum 0.9, weight decay) with lr 0.03 * batch / 256 and a cosine decay to 0, as
    in the thesis; ``optimizer="adam"`` for tiny runs. Returns a dict: ``state_dict`` (the
    online backbone's, on CPU, loadable with ``Backbone(cfg["backbone"]).load_state_dict``),
    ``history`` (loss per step), ``backbone``, ``method``, ``config``, ``seed``, ``wall_s``
    and ``images_per_s`` (images, each seen as two views, per second).

    ``checkpoint``: a file that holds the whole training state (model with its target or key
    encoder, optimiser, schedule, data order, generator and RNG states, history) every
    ``checkpoint_every`` steps; if it exists, training resumes from it and ends with the
    same weights as an uninterrupted run. ``max_steps``: stop after that many steps of
    this call and return None (the checkpoint holds the rest). ``snapshots``: keep the online
    backbone at that many evenly spaced steps (``"snapshots": {step: state_dict}``), the
    points of a learning curve.

    Under ``torchrun`` (module docstring) ``batch_size`` is the global batch (a multiple of the
    world size); every process returns the same weights (MoCo's BatchNorm running statistics
    are each process's own; DDP gives every process rank 0's at each step, and rank 0's are
    the ones saved); only rank 0 writes ``checkpoint`` (a file all processes can read), and a
    checkpoint of W processes resumes only with W (it holds each one's generator states)."""
    cfg = resolve_config("train_ssl", cfg, DEFAULTS, images)
    device = torch.device(device)
    world, rank = distributed.world_size(), distributed.rank()
    bs = min(cfg["batch_size"], len(images))            # the global batch
    b = distributed.per_process_batch(bs)               # this process's part of it
    steps = int(cfg["steps"])
    torch.manual_seed(seed)                             # the same initialisation everywhere
    model = build(method, cfg).to(device).train()
    aug = TwoViewAugment(size=cfg["size"], scale=tuple(cfg["crop_scale"]), p_flip=cfg["hflip"])
    gen = torch.Generator().manual_seed(seed + rank)    # each process its own augmentations
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
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)

    def new_order(epoch):        # one process: a permutation from gen; W: this process's shard
        if world == 1:
            return torch.randperm(len(images), generator=gen)
        return distributed.shard_indices(len(images), seed, epoch)

    order, pos, history, start, kept, wall0, epoch = new_order(0), 0, [], 0, {}, 0.0, 0
    snap_at = {round(steps * (k + 1) / snapshots) for k in range(snapshots)} if snapshots else set()
    if checkpoint is not None and Path(checkpoint).exists():
        st = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        gens, rngs = st["gen"], st["rng"]                  # W > 1: lists, one state per rank
        if isinstance(gens, list) != (world > 1) or (world > 1 and len(gens) != world):
            raise ValueError(f"{checkpoint} was written by {len(gens) if isinstance(gens, list) else 1} "
                             f"process(es); resume it with as many, not {world}")
        gen.set_state(gens[rank] if world > 1 else gens)
        torch.set_rng_state(rngs[rank] if world > 1 else rngs)
        order, pos, history, start, kept, wall0 = st["order"], st["pos"], st["history"], st["step"], st["snapshots"], st["wall_s"]
        epoch = st.get("epoch", 0)
        if world > 1:
            order = new_order(epoch)
    net = distributed.data_parallel(model, sync_bn=method == "byol")   # model itself if W = 1

    def save_state(step):        # every process takes part (its RNG states); rank 0 writes
        gens, rngs = distributed.gather_object(gen.get_state()), distributed.gather_object(torch.get_rng_state())
        if distributed.is_main():
            state = dict(model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(),
                         gen=gens if world > 1 else gens[0], rng=rngs if world > 1 else rngs[0],
                         order=order, pos=pos, epoch=epoch, history=history, step=step,
                         snapshots=kept, wall_s=wall0 + time.perf_counter() - t0)
            atomic_save(state, checkpoint)
        distributed.barrier()    # the file is there for every process once this returns

    end = steps if max_steps is None else min(steps, start + max_steps)
    bar = progress_bar(range(start, end), f"{method} {cfg['backbone']}",
                       show=progress and distributed.is_main(), initial=start, total=steps)
    t0 = time.perf_counter()
    for step in bar:
        if pos + b > len(order):
            epoch += 1
            order, pos = new_order(epoch), 0
        x = images[order[pos:pos + b].to(images.device)].to(device, non_blocking=True)
        pos += b
        v1, v2 = (nhwc(v, cfg["channels_last"]) for v in aug(x, generator=gen))
        with bf16(device, cfg["amp"]):
            loss = net(v1, v2)
        history.append(distributed.mean(optimizer_step(loss, opt, sched, f"{method} (step {step})")))
        model.update_target(step + 1, steps)
        bar.set_postfix(loss=f"{history[-1]:.3f}")
        if step + 1 in snap_at:
            kept[step + 1] = {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            save_state(step + 1)
    if end < steps:
        if checkpoint is not None:
            save_state(end)
        return None
    wall = wall0 + time.perf_counter() - t0
    return dict(method=method, backbone=cfg["backbone"], config=cfg, seed=seed,
                state_dict={k: v.detach().cpu().clone()
                            for k, v in model.backbone.state_dict().items()},
                history=history, steps=steps, wall_s=wall, snapshots=kept,
                images_per_s=steps * bs / wall if wall > 0 else float("nan"),
                precision=precision(device, cfg["amp"]))
