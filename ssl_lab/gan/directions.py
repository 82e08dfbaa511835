"""Latent directions for attribute editing in W (thesis Sec. 4.3.3, "Editability").

The thesis edits with InterFaceGAN (Shen et al., CVPR 2020 / TPAMI 2020): a linear SVM
separates latent codes whose images a classifier scores high from those it scores low, and
the unit normal of its hyperplane is the edit direction. Two unsupervised alternatives give
directions without a classifier:

* :func:`interfacegan_direction` -- InterFaceGAN's ``train_boundary``
  (genforce/interfacegan, ``utils/manipulator.py``).
* :func:`ganspace_directions` -- GANSpace (Haerkoenen et al., NeurIPS 2020): PCA of sampled
  ``w = mapping(z)``; :func:`pca_directions` is the PCA itself.
* :func:`sefa_directions` -- SeFa (Shen & Zhou, CVPR 2021, closed-form factorisation): the
  top eigenvectors of ``A^T A``, ``A`` the stacked style-affine weights
  (genforce/sefa, ``utils.py``, ``factorize_weight``).
* :func:`edit` -- ``ws + alpha * direction`` (InterFaceGAN's ``linear_interpolate`` in W+
  moves every row the same way; GANSpace edits a range of rows: ``layers``).

All directions are unit vectors of length ``w_dim``, returned as float32 torch tensors. The
sign of a PCA axis or an eigenvector is arbitrary; :func:`pca_directions` and
:func:`sefa_directions` fix it so that each vector's largest-magnitude entry is positive.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["interfacegan_direction", "pca_directions", "ganspace_directions",
           "style_affines", "sefa_directions", "edit"]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _fix_sign(vectors: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-magnitude entry is positive (a deterministic sign)."""
    idx = np.abs(vectors).argmax(axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), idx])
    signs[signs == 0] = 1.0
    return vectors * signs[:, None]


# -- InterFaceGAN --------------------------------------------------------------------------
def interfacegan_direction(w, scores, ratio: float = 0.2, C: float = 1.0, seed: int = 0,
                           split_ratio: float = 0.7) -> dict:
    """InterFaceGAN's semantic boundary: the unit normal of a linear SVM in W.

    Follows ``train_boundary`` of the released InterFaceGAN code (genforce/interfacegan,
    ``utils/manipulator.py``): sort the samples by classifier score; the top
    ``chosen_num = int(N * ratio)`` are positives (label 1), the bottom ``chosen_num``
    negatives (label 0), with ``chosen_num <= N // 2`` (a ``ratio > 1`` is a count, as
    their ``chosen_num_or_ratio``); each side is shuffled and split ``split_ratio`` (0.7)
    train / rest validation; ``sklearn.svm.SVC(kernel="linear")`` is fitted on the training
    part and the normal ``coef_ / |coef_|`` returned. Label 1 = high scores, so the normal
    points towards higher scores. Their "remaining" check is kept too: the samples between
    the two tails, labelled by ``score >= (max + min) / 2``.

    Differences: their default ratio is 0.02 (of 500k samples), here 0.2 (for the
    thousands a CPU can draw); their shuffle uses NumPy's global state, here
    ``RandomState(seed)``; ``C`` (their sklearn default 1.0) is exposed.

    ``w``: ``(N, w_dim)`` latent codes (array or tensor); ``scores``: ``(N,)`` or ``(N, 1)``.
    Returns ``{"direction": (w_dim,) float32 tensor, "val_accuracy": float,
    "remaining_accuracy": float or None, "train_num": int, "val_num": int}`` (train/val
    counts per side).
    """
    from sklearn.svm import SVC

    w = _numpy(w)
    s = _numpy(scores).reshape(-1)
    if w.ndim != 2:
        raise ValueError(f"w must be (N, w_dim), got shape {w.shape}")
    if len(s) != len(w):
        raise ValueError(f"scores has {len(s)} entries for {len(w)} latent codes")
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    n = len(w)
    order = np.argsort(s, kind="stable")[::-1]           # highest score first
    w, s = w[order], s[order]
    chosen = int(n * ratio) if ratio <= 1 else int(ratio)
    chosen = min(chosen, n // 2)
    train_num = int(chosen * split_ratio)
    val_num = chosen - train_num
    if train_num < 1:
        raise ValueError(f"too few samples: {n} codes at ratio {ratio} leave {chosen} per side")
    rng = np.random.RandomState(seed)
    pos_idx, neg_idx = rng.permutation(chosen), rng.permutation(chosen)
    pos, neg = w[:chosen], w[n - chosen:]
    train_x = np.concatenate([pos[pos_idx[:train_num]], neg[neg_idx[:train_num]]])
    train_y = np.concatenate([np.ones(train_num, int), np.zeros(train_num, int)])
    clf = SVC(kernel="linear", C=C).fit(train_x, train_y)

    val_acc = float("nan")
    if val_num:
        val_x = np.concatenate([pos[pos_idx[train_num:]], neg[neg_idx[train_num:]]])
        val_y = np.concatenate([np.ones(val_num, int), np.zeros(val_num, int)])
        val_acc = float((clf.predict(val_x) == val_y).mean())
    rem_acc = None
    if n - 2 * chosen > 0:
        rem_x, rem_s = w[chosen:n - chosen], s[chosen:n - chosen]
        rem_y = (rem_s >= (s[0] + s[-1]) / 2).astype(int)
        rem_acc = float((clf.predict(rem_x) == rem_y).mean())
    a = clf.coef_.reshape(-1)
    direction = torch.from_numpy(a / np.linalg.norm(a)).float()
    return {"direction": direction, "val_accuracy": val_acc, "remaining_accuracy": rem_acc,
            "train_num": train_num, "val_num": val_num}


# -- GANSpace ------------------------------------------------------------------------------
def pca_directions(w, n: int = 10) -> dict:
    """PCA of ``w`` ``(N, D)``: the top-``n`` unit principal axes, as GANSpace computes them.

    Eigen-decomposition of the sample covariance (float64); axes sorted by variance.
    Returns ``{"directions": (n, D), "explained_variance_ratio": (n,) (of the total
    variance), "std": (n,) (the standard deviation along each axis; GANSpace scales its
    edit strengths by it), "mean": (D,)}``, float32 tensors.
    """
    x = _numpy(w)
    if x.ndim != 2:
        raise ValueError(f"w must be (N, D), got shape {x.shape}")
    n = min(n, x.shape[1])
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False)
    vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
    order = np.argsort(vals)[::-1][:n]
    vals = np.clip(vals, 0, None)
    dirs = _fix_sign(vecs[:, order].T)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()
    return {"directions": t(dirs), "explained_variance_ratio": t(vals[order] / vals.sum()),
            "std": t(np.sqrt(vals[order])), "mean": t(mean)}


@torch.no_grad()
def ganspace_directions(G, n: int = 10, samples: int = 10000, seed: int = 0,
                        batch: int = 1000) -> dict:
    """GANSpace (Haerkoenen et al., 2020): principal axes of W for StyleGAN.

    GANSpace samples ``z ~ N(0, I)``, maps it to ``w`` (the output of StyleGAN's mapping
    network, their default layer ``g_mapping``) and runs PCA on the ``w``'s (their
    ``config.py`` defaults: 300,000 samples, incremental PCA, 80 components; here
    ``samples`` seeded draws and an exact PCA, :func:`pca_directions`). Uses ``G.mapping(z)``
    (no truncation) and its first row (all rows are the same ``w``). Returns the dict of
    :func:`pca_directions`: ``directions (n, w_dim)``, ``explained_variance_ratio``,
    ``std``, ``mean``.
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=gen)
    p = next(G.parameters(), None) if isinstance(G, torch.nn.Module) else None
    device = p.device if p is not None else torch.device("cpu")
    ws = [G.mapping(zb.to(device, p.dtype if p is not None else zb.dtype))[:, 0].double().cpu()
          for zb in z.split(batch)]
    return pca_directions(torch.cat(ws), n)


# -- SeFa ----------------------------------------------------------------------------------
def style_affines(G, torgb: str = "last") -> list[tuple[str, torch.Tensor]]:
    """The effective weight matrices ``(style channels, w_dim)`` of G's style affines.

    Effective = as applied: :class:`~ssl_lab.nets.stylegan2.EqualLinear` multiplies its
    stored weight by ``weight_gain = lr_mul / sqrt(w_dim)``, and a ToRGB layer multiplies its
    style by ``gain = 1 / sqrt(in_channels)`` as well. Order: synthesis blocks 4 px up, in
    each ``conv0``, ``conv1`` (the modulated 3x3 convs), then ``torgb``. ``torgb``: which
    toRGB affines to include: ``"last"`` (SeFa's choice for StyleGAN2: every conv layer plus
    the output layer that reads the last ``w`` row), ``"all"``, or ``"none"``.
    """
    if torgb not in ("last", "all", "none"):
        raise ValueError(f"torgb must be 'last', 'all' or 'none', got {torgb!r}")
    out = []
    blocks = list(G.synthesis.blocks)
    for bi, block in enumerate(blocks):
        r = block.resolution
        for name in ("conv0", "conv1"):
            layer = getattr(block, name)
            if layer is not None:
                out.append((f"b{r}.{name}", layer.affine.weight * layer.affine.weight_gain))
        if torgb == "all" or (torgb == "last" and bi == len(blocks) - 1):
            t = block.torgb
            out.append((f"b{r}.torgb", t.affine.weight * t.affine.weight_gain * t.gain))
    return [(k, v.detach()) for k, v in out]


@torch.no_grad()
def sefa_directions(G, n: int = 10, torgb: str = "last", normalize: bool = True) -> dict:
    """SeFa (Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs", 2021).

    A style affine maps ``w`` to ``s = A w + b``; moving ``w`` by ``n`` moves the styles by
    ``A n``, so the directions that change the styles most are the top eigenvectors of
    ``A^T A`` (paper Eq. 5), ``A`` the style weights of the chosen layers stacked row-wise
    (:func:`style_affines`, with EqualLinear's scaling). As in the released code
    (genforce/sefa ``factorize_weight``): for StyleGAN2 ``layer_idx="all"`` takes every conv
    layer and the output toRGB (``torgb="last"``), and each style channel's weight row is
    scaled to unit norm before the decomposition (``normalize=True``; the rows are the
    columns of their transposed matrix). With ``normalize`` on, layer gains cancel.
    Their ``np.linalg.eig`` is ``eigh`` here (the matrix is symmetric), sorted descending.

    Returns ``{"directions": (n, w_dim), "eigenvalues": (n,), "layers": [names]}``.
    """
    named = style_affines(G, torgb)
    A = np.concatenate([_numpy(m) for _, m in named], axis=0)           # (sum C, w_dim)
    if normalize:
        A = A / np.linalg.norm(A, axis=1, keepdims=True).clip(1e-30)
    vals, vecs = np.linalg.eigh(A.T @ A)
    order = np.argsort(vals)[::-1][:n]
    dirs = _fix_sign(vecs[:, order].T)
    return {"directions": torch.from_numpy(np.ascontiguousarray(dirs)).float(),
            "eigenvalues": torch.from_numpy(np.clip(vals[order], 0, None).copy()).float(),
            "layers": [k for k, _ in named]}


# -- editing -------------------------------------------------------------------------------
def edit(ws: torch.Tensor, direction: torch.Tensor, alpha,
         layers: Sequence[int] | slice | None = None) -> torch.Tensor:
    """``ws + alpha * direction``: move latent codes along a unit direction.

    ``ws``: ``(w_dim,)``, ``(B, w_dim)`` or ``(B, num_ws, w_dim)``; ``direction``:
    ``(w_dim,)``; ``alpha``: a scalar or one value per sample ``(B,)``. In W+ every row moves
    the same way (InterFaceGAN's ``linear_interpolate`` for W+ codes), unless ``layers``
    (row indices or a slice; only for 3-D ``ws``) picks the rows to edit, as GANSpace does
    with its layer ranges. Returns a new tensor.
    """
    direction = torch.as_tensor(direction, dtype=ws.dtype, device=ws.device)
    if direction.shape != (ws.shape[-1],):
        raise ValueError(f"direction must be ({ws.shape[-1]},), got {tuple(direction.shape)}")
    a = torch.as_tensor(alpha, dtype=ws.dtype, device=ws.device)
    if a.dim() == 1:
        if ws.dim() < 2 or a.shape[0] != ws.shape[0]:
            raise ValueError(f"per-sample alpha of length {a.shape[0]} for ws of shape {tuple(ws.shape)}")
        a = a.reshape(-1, *([1] * (ws.dim() - 1)))
    elif a.dim() != 0:
        raise ValueError("alpha must be a scalar or a (B,) vector")
    step = a * direction
    if layers is None:
        return ws + step
    if ws.dim() != 3:
        raise ValueError("layers needs ws of shape (B, num_ws, w_dim)")
    mask = torch.zeros(ws.shape[1], dtype=ws.dtype, device=ws.device)
    mask[layers] = 1
    return ws + step * mask[:, None]
