"""Everything the HSR chapters measure on a trained generator, in one call.

:func:`evaluate` samples ``n`` images from ``G`` (fixed seed, truncation off, constant
noise), then reports, against the real training images:

* the Frechet distance under the feature network ``features`` (labelled by
  :func:`ssl_lab.metrics.fid.metric_name`: ``FID`` only for the FID Inception network);
* improved precision and recall (k = 3, :mod:`ssl_lab.metrics.prdc`);
* PPL in W at path end points (StyleGAN2's ``ppl2_wend``, the HSR release's setting;
  epsilon 1e-4; percentile-filtered mean, :mod:`ssl_lab.metrics.ppl`) under ``distance``;
* the Mahalanobis distance of every sample to the real feature moments
  (:mod:`ssl_lab.metrics.outliers`), for the worst-image montages.

The per-sample values (``mahalanobis``, ``ppl_samples``) and the images come back too.
:func:`path_lengths` is the PPL part alone, with the paths it measured, and
:func:`interpolate` renders such paths (the thesis's interpolation figures).
"""
from __future__ import annotations

import copy

import torch

from ..metrics.fid import compute_features, fd_from_features, gaussian_stats, metric_name
from ..metrics.outliers import mahalanobis
from ..metrics.ppl import path_length
from ..metrics.prdc import precision_recall


@torch.no_grad()
def sample(G, n: int, seed: int = 0, batch: int = 64, device="cpu") -> torch.Tensor:
    """``n`` images ``(n, 3, R, R)`` in [-1, 1] from seeded ``z`` with constant noise (CPU)."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([G(zb.to(device), noise_mode="const").cpu() for zb in z.split(batch)])


def evaluate(G, real: torch.Tensor, features, distance, n: int = 1000, n_ppl: int = 1000,
             seed: int = 0, batch: int = 64, device="cpu", ppl_dtype: torch.dtype | None = None) -> dict:
    """The chapter's metrics of ``G`` against ``real`` (``(N, 3, R, R)`` in [0, 1]).

    ``features(images in [-1, 1]) -> (N, D)`` with a ``.name``; ``distance(a, b) -> (B,)``
    with a ``.name`` (LPIPS at full scale, a stand-in below). Returns ``{fd_name: value,
    "precision", "recall", "fake", "mahalanobis"}`` and :func:`path_lengths`'s ``{"PPL",
    "ppl_samples", "ppl_ws", "ppl_ws_end", "ppl_distance"}``.

    ``ppl_dtype``: run PPL's mapping, synthesis and ``distance`` in this dtype (``distance``
    must take it: :func:`ssl_lab.recipes.ppl_distance` with ``dtype=``). PPL divides a
    distance of images ``1e-4`` apart by ``1e-8``, which magnifies float32 round-off to about
    0.05 % of PPL; float64 gives the same value on every CPU's kernels.
    """
    fake = sample(G, n, seed, batch, device)
    f_real = compute_features(features, real * 2 - 1, batch)
    f_fake = compute_features(features, fake, batch)
    mu, sigma = gaussian_stats(f_real)
    out = {metric_name(features.name): fd_from_features(f_real, f_fake),
           **precision_recall(f_real, f_fake, k=3)}
    out.update(path_lengths(G, distance, n_ppl, seed, batch, device, ppl_dtype))
    out.update(fake=fake, mahalanobis=mahalanobis(f_fake, mu, sigma))
    return out


def path_lengths(G, distance, n: int = 1000, seed: int = 0, batch: int = 64, device="cpu",
                 dtype: torch.dtype | None = None) -> dict:
    """PPL of ``G`` as :func:`evaluate` measures it (in W, at path end points, epsilon 1e-4,
    latents from ``seed + 1``), with the paths it measured: ``{"PPL", "ppl_samples"`` (per path)``,
    "ppl_ws"`` (start ``w`` of each path: ``G.synthesis(ppl_ws[i])`` is its image)``, "ppl_ws_end"``
    (the ``w`` it steps towards)``, "ppl_distance"}``. ``dtype``: mapping, synthesis and
    ``distance`` in this dtype (see :func:`evaluate`'s ``ppl_dtype``); ``G`` is not changed."""
    gen = torch.Generator().manual_seed(seed + 1)
    drawn = []                           # path_length draws (start, end) per batch
    Gp = G if dtype is None else copy.deepcopy(G).to(dtype)
    dt = next(Gp.parameters()).dtype

    def latents(k):
        z = torch.randn(k, G.z_dim, generator=gen).to(device, dt)
        drawn.append(Gp.mapping(z).cpu())
        return drawn[-1].to(device)

    with torch.no_grad():
        ppl, samples = path_length(lambda ws: Gp.synthesis(ws, noise_mode="const"), distance, latents,
                                   n, epsilon=1e-4, space="w", sampling="end", batch=batch,
                                   rng=torch.Generator().manual_seed(seed + 2))
    return dict(PPL=ppl, ppl_samples=samples, ppl_ws=torch.cat(drawn[0::2]), ppl_ws_end=torch.cat(drawn[1::2]),
                ppl_distance=distance.name)


@torch.no_grad()
def interpolate(G, w0: torch.Tensor, w1: torch.Tensor, steps: int = 8, device="cpu") -> torch.Tensor:
    """Images along the straight lines from ``w0`` to ``w1`` in W (``(k, ...)`` each, e.g. a
    path's ``ppl_ws`` and ``ppl_ws_end`` of :func:`path_lengths`), at ``steps`` evenly spaced
    points including both ends: ``(k, steps, 3, R, R)`` in [-1, 1], constant noise, on the CPU
    (thesis Figs. 4.4 and 4.5)."""
    dtype = next(G.parameters()).dtype
    t = torch.linspace(0, 1, steps, dtype=torch.float64).view(1, steps, *([1] * (w0.dim() - 1)))
    ws = (w0.double().unsqueeze(1) + t * (w1.double() - w0.double()).unsqueeze(1)).flatten(0, 1)
    x = G.synthesis(ws.to(device, dtype), noise_mode="const").cpu()
    return x.view(len(w0), steps, *x.shape[1:])


def _ema_generator(arch: dict, state_dict: dict | None, seed: int, device):
    """The generator of ``arch`` with ``state_dict`` loaded, or (``None``) as initialised with
    ``seed`` by :func:`ssl_lab.gan.train.train_gan` before its first step; eval mode."""
    from ..nets.stylegan2 import build
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G, _ = build(arch)
    if state_dict is not None:
        G.load_state_dict(state_dict)
    return G.to(device).eval().requires_grad_(False)


def gate_report(art: dict, real: torch.Tensor, features, n: int | None = None, seed: int = 0,
                device="cpu", before: list | None = None) -> dict:
    """What the GAN gates read from a warm-up ``art`` (a ``train_gan`` result with
    ``snapshots``) against its training images ``real`` ((N, 3, R, R) in [0, 1]), in the
    feature space of ``features``, with ``n`` samples per generator (default N):

    ``fd_curve``: ``[{"kimg", fd_name, "precision", "recall"}]``, the Frechet distance (and
    precision/recall) of the untrained generator (kimg 0, the nothing-learned yardstick) and
    of each EMA snapshot; ``precision`` and
    ``recall`` (k = 3) of the final EMA generator; ``gates`` (:func:`ssl_lab.gates.gan_warmup`);
    ``gate_eval`` (feature network, samples, k).

    ``before``: for a branch (a run continued from a warm-up, without snapshots of its own), the
    warm-up's ``fd_curve``; the branch's final EMA generator is appended to it (at its total
    kimg), so G3 asks that FD fell over the whole training, warm-up and branch."""
    from .. import gates
    n = n or len(real)
    f_real = compute_features(features, real * 2 - 1)
    name = metric_name(features.name)
    batch = art["config"]["batch"]
    init_seed = art.get("state", {}).get("seed", 0)
    points = [] if before is not None else [(0, None)] + sorted(art["snapshots"].items())
    curve = [dict(p) for p in before or []]
    for step, sd in points:
        G = _ema_generator(art["arch"], sd, init_seed, device)
        f_fake = compute_features(features, sample(G, n, seed, device=device))
        curve.append({"kimg": step * batch / 1000, name: fd_from_features(f_real, f_fake),
                      **precision_recall(f_real, f_fake, k=3)})
    G = _ema_generator(art["arch"], art["G_ema"], init_seed, device)
    f_fake = compute_features(features, sample(G, n, seed, device=device))
    pr = precision_recall(f_real, f_fake, k=3)
    if before is not None:
        curve.append({"kimg": art["nimg"] / 1000, name: fd_from_features(f_real, f_fake), **pr})
    return dict(fd_curve=curve, **pr, gates=gates.gan_warmup(pr["precision"], pr["recall"], curve, name),
                gate_eval=dict(features=features.name, samples=n, real=len(real), k=3))


def sampling_noise(G, real: torch.Tensor, features, distance, seeds=(0, 1, 2, 3, 4), n: int = 1000,
                   n_ppl: int = 1000, batch: int = 64, device="cpu", ppl_dtype: torch.dtype | None = None) -> dict:
    """The metrics' own noise: :func:`evaluate` of one generator with each sample seed in
    ``seeds`` (new latent codes for FD, precision/recall and PPL; same weights, same real
    images; ``ppl_dtype`` as there). Returns ``{"runs": {seed: {fd_name, "precision", "recall", "PPL"}}, "mean": {...},
    "sd": {...}}`` (sd with Bessel's correction): a difference between two generators is a
    finding only beyond about two such sd (and beyond the spread across training seeds)."""
    runs = {}
    for s in seeds:
        rep = evaluate(G, real, features, distance, n=n, n_ppl=n_ppl, seed=s, batch=batch, device=device,
                       ppl_dtype=ppl_dtype)
        fd_name = metric_name(features.name)
        runs[s] = {k: float(rep[k]) for k in (fd_name, "precision", "recall", "PPL")}
    cols = next(iter(runs.values()))
    table = torch.tensor([[r[c] for c in cols] for r in runs.values()], dtype=torch.float64)
    return dict(runs=runs, mean=dict(zip(cols, table.mean(0).tolist())),
                sd=dict(zip(cols, table.std(0).tolist())))


def held_out_reference(real: torch.Tensor, held_out: torch.Tensor, features) -> dict:
    """What a perfect generator would score: FD and precision/recall (k = 3) of ``held_out``
    real images (not trained on) against the training images ``real`` (both in [0, 1])."""
    f_real = compute_features(features, real * 2 - 1)
    f_held = compute_features(features, held_out * 2 - 1)
    return {metric_name(features.name): fd_from_features(f_real, f_held), **precision_recall(f_real, f_held, k=3)}
