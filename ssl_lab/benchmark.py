"""Training speed of the zoo's recipes: images/s and model FLOP utilisation (MFU).

``python -m ssl_lab bench lead/stage1-byol --scale small --steps 20 [--set amp=False]`` trains
the recipe briefly (its config with ``steps`` replaced; nothing is cached) and prints (for
``hsr/warmup``: G + D steps of ``train_gan`` on the recipe's images, ``--set`` overriding
GANConfig fields such as ``amp``, ``channels_last``, ``batch``):

* images/s: the recipe's own ``images_per_s`` (its loop only: data already rendered);
* FLOPs per step: one step counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matmuls and convolutions, forward and backward; the augmentation's resampling is not
  counted); for a GAN, the main G and D passes only (the counter cannot follow the double
  backward of R1 and the path-length term, which run every 16 and 4 steps): a lower bound;
* MFU: FLOPs per step x steps / wall time, over the matmul rate measured here in the
  precision the recipe's loop computed in (:func:`ran_in`: bf16 only where ``amp`` is on and the
  device computes bf16 natively, else fp32): :func:`matmul_rate`.
"""
from __future__ import annotations

import time

import torch


def matmul_rate(dtype=torch.float32, n: int = 2048, repeats: int = 10) -> float:
    """Measured FLOP/s of an ``n x n`` matmul in ``dtype`` on the CPU (after a warm-up)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t)


#: recipes whose step is a StyleGAN2-ADA G + D step (benchmarked through train_gan, with
#: ``--set`` overriding GANConfig fields, e.g. ``amp=True``, ``batch=16``)
GAN_RECIPES = ("hsr/warmup",)


def _train_gan(name: str, scale: str, steps: int, seed: int, device, **overrides) -> dict:
    from dataclasses import asdict

    from . import zoo
    from .gan.train import gan_config, train_gan
    from .recipes import gan_training_set
    gcfg = gan_config(scale, **overrides)
    t = time.perf_counter()
    art = train_gan(gan_training_set(zoo.config(name, scale)), gcfg, device=device, seed=seed,
                    steps=steps, progress=False)
    return dict(art=art, wall=time.perf_counter() - t, cfg=asdict(gcfg))


def _train(name: str, scale: str, steps: int, seed: int, device, **overrides) -> dict:
    from . import zoo
    if name in GAN_RECIPES:
        return _train_gan(name, scale, steps, seed, device, **overrides)
    cfg = zoo.config(name, scale, **{**overrides, "steps": steps})
    torch.manual_seed(seed)
    t = time.perf_counter()
    art = zoo.recipe(name).train(cfg, device, seed)
    return dict(art=art, wall=time.perf_counter() - t, cfg=cfg)


def ran_in(run: dict, device) -> str:
    """The precision a benchmarked run computed in: what its loop recorded (``precision``:
    ``amp`` autocasts only where the device computes bf16 natively), else from its config."""
    from .ssl.train import precision
    return run["art"].get("precision") or precision(device, run["cfg"].get("amp", False))


def bench(name: str, scale: str = "small", steps: int = 20, seed: int = 0, device="cpu", **overrides) -> dict:
    """Images/s, FLOPs per step and MFU of recipe ``name`` (see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode
    from . import zoo
    if name not in GAN_RECIPES and "steps" not in zoo.config(name, scale):
        raise ValueError(f"recipe {name!r} has no 'steps' to shorten; it cannot be benchmarked this way")
    _train(name, scale, 1, seed, device, **overrides)                     # renders/caches the data
    # FlopCounterMode cannot follow autograd.grad (R1's and the path length's double
    # backward): a GAN step is counted without its lazy regularisers, so its MFU is a lower bound
    counted = dict(overrides, r1_gamma=0.0, pl_weight=0.0) if name in GAN_RECIPES else overrides
    counter = FlopCounterMode(display=False)
    with counter:
        _train(name, scale, 1, seed, device, **counted)
    flops = counter.get_total_flops()
    run = _train(name, scale, steps, seed, device, **overrides)
    ips = run["art"].get("images_per_s")
    loop_s = run["art"].get("wall_s")
    prec = ran_in(run, device)
    peak = matmul_rate(torch.bfloat16 if prec == "bf16 autocast" else torch.float32)
    achieved = flops * steps / loop_s if loop_s else float("nan")
    return dict(recipe=name, scale=scale, steps=steps, precision=prec,
                channels_last=bool(run["cfg"].get("channels_last")), images_per_s=round(ips, 1),
                gflop_per_step=round(flops / 1e9, 2), achieved_gflops=round(achieved / 1e9, 1),
                matmul_gflops=round(peak / 1e9, 1), mfu=round(achieved / peak, 3),
                threads=torch.get_num_threads())
