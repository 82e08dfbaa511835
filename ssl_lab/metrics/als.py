"""Attribute Linearity Score (ALS), thesis Sec. 4.3.3, Eqs. 4.3-4.5 (HSR, ECCV 2022, Eqs. 3-5).

Interpolate between two latent codes, ``w_t = w_0 + t (w_1 - w_0)`` (Eq. 4.3, in W+), at
equally spaced ``t in {0, 1/N, ..., 1}``, and score every image with attribute
classifiers ``C_j``.  A latent space linear in attribute ``j`` keeps ``C_j(G(w_t))`` on the
chord between its end values (Eq. 4.4); the squared departure from it is (Eq. 4.5)::

    Delta_tj = (C_j(G(w_t)) - C_j(G(w_0)) - t (C_j(G(w_1)) - C_j(G(w_0))))^2

and ``ALS = 1/(N M) sum_{t=1..N} sum_{j=1..M} Delta_tj``, averaged here over interpolation
paths too.  Choices, as the text states them:

* ``C_j`` is the classifier's *logit* ("attribute score (logit value)"), not a
  probability: a sigmoid would squash departures near saturation;
* the mean over ``t`` runs over the ``N`` steps ``t = 1/N .. 1`` (the sum starts at 1 in
  the thesis), i.e. every step but ``t = 0``; ``Delta`` is zero at both ends, so this only
  fixes the normaliser ``N`` (not ``N + 1``);
* ``scale`` (optional, per attribute) divides the deviations before squaring, to put
  attributes with different logit spreads on one footing.  The thesis formula has none.

The authors' released script (``val-iisc/HSR``, ``ALS/compute_als.py``) computes a
different number: deviations divided by each attribute's logit std over all scored
images, their *absolute values* averaged over paths, then squared and *summed* over the 11
steps, then averaged over attributes.  :func:`als_released_variant` reproduces it so a
chapter can show both beside the paper's table (both are zero for exactly linear paths;
otherwise their values differ).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["als_from_scores", "als", "als_released_variant", "interpolation_scores", "latent_paths",
           "generator_als", "paired_over_seeds"]


def _check(scores, ts=None) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(scores).detach().double().cpu()
    if s.dim() != 3 or s.shape[1] < 2:
        raise ValueError(f"scores must be (N_paths, T, J) with T >= 2; got {tuple(s.shape)}")
    if ts is None:
        ts = torch.linspace(0, 1, s.shape[1], dtype=torch.float64)
    ts = torch.as_tensor(ts).double().flatten().cpu()
    if ts.numel() != s.shape[1]:
        raise ValueError(f"ts has {ts.numel()} values but scores have T = {s.shape[1]} steps")
    if abs(ts[0]) > 1e-9 or abs(ts[-1] - 1) > 1e-9 or (ts.diff() <= 0).any():
        raise ValueError("ts must increase from 0 to 1: the end points w_0 (t = 0) and w_1 "
                         "(t = 1) define the line Eq. 4.4 compares with")
    return s, ts


def _deviation(s: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """``C(w_t) - C(w_0) - t (C(w_1) - C(w_0))``: ``(N_paths, T, J)``."""
    start, end = s[:, :1], s[:, -1:]
    return s - start - ts[None, :, None] * (end - start)


def als_from_scores(scores, ts=None, scale=None) -> dict:
    """ALS from attribute scores along interpolation paths.

    ``scores``: ``(N_paths, T, J)`` logits ``C_j(G(w_t))`` at ``ts`` ``(T,)`` (default
    ``linspace(0, 1, T)``; must run from 0 to 1).  ``scale``: optional ``(J,)`` divisor.

    Returns a dict: ``"als"`` (float, mean over paths, steps ``t > 0`` and attributes),
    ``"per_attribute"`` ``(J,)`` (mean over paths and steps ``t > 0``; thesis Fig. 4.10
    bottom), ``"per_t"`` ``(T,)`` (mean over paths and attributes; Fig. 4.10 right, zero at
    both ends) and ``"delta"`` ``(N_paths, T, J)``, all float64.
    """
    s, ts = _check(scores, ts)
    dev = _deviation(s, ts)
    if scale is not None:
        dev = dev / torch.as_tensor(scale).double().flatten()
    delta = dev.square()
    steps = delta[:, 1:]                            # t = 1/N, ..., 1
    return {"als": float(steps.mean()), "per_attribute": steps.mean((0, 1)),
            "per_t": delta.mean((0, 2)), "delta": delta}


def als_released_variant(scores) -> dict:
    """The number ``ALS/compute_als.py`` of the HSR release computes (see module doc).

    ``scores``: ``(N_paths, T, J)`` logits at equally spaced ``t`` from 0 to 1.  Per
    attribute: ``sum_t (mean_paths |dev_tj| / std_j)^2`` with ``std_j`` the population std
    of all ``N_paths x T`` logits of attribute ``j``; returns ``{"als": mean over j,
    "per_attribute": (J,)}``.
    """
    s, ts = _check(scores)
    std = s.reshape(-1, s.shape[2]).std(0, unbiased=False)
    per_attr = (_deviation(s, ts).abs().mean(0) / std).square().sum(0)
    return {"als": float(per_attr.mean()), "per_attribute": per_attr}


@torch.no_grad()
def interpolation_scores(generate: Callable[[torch.Tensor], torch.Tensor],
                         classifier: Callable[[torch.Tensor], torch.Tensor],
                         w0: torch.Tensor, w1: torch.Tensor, steps: int = 10
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``C(G(w_t))`` along ``w_t = w_0 + t (w_1 - w_0)``, ``t = k / steps``.

    ``w0``, ``w1``: ``(N_paths, ...)`` latents (W or W+); ``generate(w) -> images``;
    ``classifier(images) -> (B, J)`` logits.  Returns ``(scores (N_paths, steps + 1, J),
    ts (steps + 1,))``; ``steps = 10`` gives the 11 images of the released code.
    """
    if w0.shape != w1.shape:
        raise ValueError(f"w0 and w1 differ in shape: {tuple(w0.shape)} vs {tuple(w1.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    ts = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    scores = [classifier(generate(w0 + float(t) * (w1 - w0))).reshape(w0.shape[0], -1)
              for t in ts]
    return torch.stack(scores, 1).double().cpu(), ts


def als(generate, classifier, w0, w1, steps: int = 10, scale=None) -> dict:
    """ALS of a generator: :func:`interpolation_scores` then :func:`als_from_scores`
    (the returned dict also holds ``"scores"`` and ``"ts"``)."""
    scores, ts = interpolation_scores(generate, classifier, w0, w1, steps)
    return {**als_from_scores(scores, ts, scale), "scores": scores, "ts": ts}


@torch.no_grad()
def latent_paths(G, n_paths: int, seed: int = 0, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """End points of ``n_paths`` interpolation paths: ``w_0, w_1 = mapping(z_0), mapping(z_1)``
    for seeded standard-normal ``z`` (no truncation), as ``(n_paths, num_ws, w_dim)``: one w
    broadcast to every layer, so the path is a line in W and in W+ alike."""
    z = torch.randn(2, n_paths, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return G.mapping(z[0]), G.mapping(z[1])


def generator_als(G, classifier, n_paths: int = 200, seed: int = 0, steps: int = 10,
                  batch: int = 256, device="cpu") -> dict:
    """Both ALS variants of generator ``G`` over ``n_paths`` random paths (:func:`latent_paths`,
    constant noise) scored by ``classifier(images in [-1, 1]) -> (B, J)`` logits.

    Returns ``{"thesis": als_from_scores(...), "released": als_released_variant(...),
    "scores": (n_paths, steps + 1, J), "ts", "w0", "w1"}``."""
    w0, w1 = latent_paths(G, n_paths, seed, device)

    def generate(ws):
        return torch.cat([G.synthesis(b, noise_mode="const") for b in ws.split(batch)])

    scores, ts = interpolation_scores(generate, classifier, w0, w1, steps)
    return {"thesis": als_from_scores(scores, ts), "released": als_released_variant(scores),
            "scores": scores, "ts": ts, "w0": w0.cpu(), "w1": w1.cpu()}


def paired_over_seeds(runs_a, runs_b, variant: str = "thesis", attributes=None) -> dict:
    """Two generators' mean ALS over the same sample seeds: ``runs_a[i]`` and ``runs_b[i]`` are
    :func:`generator_als` results of sample seed ``i`` for each (the same ``z`` draws).
    ``variant``: "thesis" (Eq. 4.5) or "released"; ``attributes``: indices of the attributes
    to average (default all). Returns ``{"a", "b", "b - a"}``, each ``(mean, sd)`` over the
    seeds (sample sd, ddof 1; the difference is taken per seed, then averaged)."""
    if len(runs_a) != len(runs_b) or len(runs_a) < 2:
        raise ValueError(f"need two lists of one run per sample seed, >= 2 seeds; got {len(runs_a)} "
                         f"and {len(runs_b)}")

    def means(runs):
        per = torch.stack([torch.as_tensor(r[variant]["per_attribute"]).double() for r in runs])
        return per if attributes is None else per[:, list(attributes)]
    a, b = means(runs_a).mean(1), means(runs_b).mean(1)
    return {k: (float(v.mean()), float(v.std())) for k, v in (("a", a), ("b", b), ("b - a", b - a))}
