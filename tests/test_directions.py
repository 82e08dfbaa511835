"""Latent editing directions (ssl_lab.gan.directions) on hand cases with known answers."""
import copy
import numpy as np
import pytest
import torch

from ssl_lab.gan.directions import (edit, ganspace_directions, interfacegan_direction,
                                    pca_directions, sefa_directions, style_affines)
from ssl_lab.nets.stylegan2 import build


def _unit(v):
    return v / np.linalg.norm(v)


def _two_gaussians(seed, n=10000, d=8, sep=2.0):
    rng = np.random.RandomState(seed)
    u = _unit(rng.randn(d))
    y = rng.rand(n) < 0.5
    w = rng.randn(n, d) + np.where(y[:, None], sep, -sep) * u
    return w, y, u, rng


@pytest.mark.parametrize("seed", [0, 1])
def test_svm_direction_of_two_gaussians_is_their_mean_difference(seed):
    w, y, u, rng = _two_gaussians(seed)
    scores = y + 0.01 * rng.randn(len(y))              # a classifier's probability-like score
    out = interfacegan_direction(w, scores, ratio=0.2, seed=seed)
    d = out["direction"].numpy()
    assert d.shape == (8,) and abs(np.linalg.norm(d) - 1) < 1e-5
    assert d @ u > 0.98                                 # within ~11 degrees, the right way
    assert out["val_accuracy"] > 0.95 and out["remaining_accuracy"] > 0.95
    assert out["train_num"] == int(2000 * 0.7) and out["val_num"] == 2000 - int(2000 * 0.7)
    # lower scores for the same samples: the normal flips
    flipped = interfacegan_direction(torch.from_numpy(w), torch.from_numpy(-scores)[:, None],
                                     ratio=0.2, seed=seed)
    assert flipped["direction"].numpy() @ u < -0.98


def test_svm_direction_with_continuous_scores():
    """InterFaceGAN's usual setting: a score that grows along u; the tails are separable."""
    rng = np.random.RandomState(5)
    u = _unit(rng.randn(8))
    w = rng.randn(4000, 8)
    scores = w @ u + 0.05 * rng.randn(4000)
    out = interfacegan_direction(w, scores, ratio=0.1, seed=0)
    assert out["direction"].numpy() @ u > 0.98 and out["val_accuracy"] > 0.98


def test_svm_rejects_bad_input():
    with pytest.raises(ValueError):
        interfacegan_direction(np.zeros((10, 3)), np.zeros(9))
    with pytest.raises(ValueError):
        interfacegan_direction(np.zeros((10, 3, 1)), np.zeros(10))


def test_pca_finds_the_stretched_axis():
    rng = np.random.RandomState(0)
    d = 16
    axis = _unit(rng.randn(d))
    x = rng.randn(5000, d) + 6.0 * rng.randn(5000, 1) * axis + 3.0      # variance 37 along axis
    out = pca_directions(x, n=3)
    dirs = out["directions"].numpy()
    assert dirs.shape == (3, d)
    assert abs(dirs[0] @ axis) > 0.999
    assert np.allclose(dirs @ dirs.T, np.eye(3), atol=1e-5)
    evr = out["explained_variance_ratio"].numpy()
    assert evr[0] > evr[1] >= evr[2] and abs(evr[0] - 37 / (37 + 15)) < 0.03
    assert abs(out["std"][0] - np.sqrt(37)) < 0.3
    assert np.allclose(out["mean"].numpy(), 3.0, atol=0.3)


class _StretchedMapping:
    """A stand-in generator whose w = A z (z ~ N(0, I)), broadcast to 4 rows."""

    def __init__(self, A):
        self.A = torch.as_tensor(A, dtype=torch.float32)
        self.z_dim = self.A.shape[1]

    def mapping(self, z):
        return (z @ self.A.T).unsqueeze(1).repeat(1, 4, 1)


def test_ganspace_is_pca_of_mapped_samples():
    rng = np.random.RandomState(1)
    axis = _unit(rng.randn(8))
    A = np.eye(8) + 4.0 * np.outer(axis, axis)          # stretches z along `axis` by 5
    G = _StretchedMapping(A)
    out = ganspace_directions(G, n=2, samples=4000, seed=0)
    assert out["directions"].shape == (2, 8)
    assert abs(out["directions"][0].numpy() @ axis) > 0.999
    assert abs(out["explained_variance_ratio"][0] - 25 / 32) < 0.03
    again = ganspace_directions(G, n=2, samples=4000, seed=0)
    assert torch.equal(out["directions"], again["directions"])


def test_ganspace_on_the_smoke_generator(one_thread):
    torch.manual_seed(0)
    G, _ = build("smoke")
    out = ganspace_directions(G, n=5, samples=2000)
    dirs = out["directions"]
    assert dirs.shape == (5, G.w_dim) and out["mean"].shape == (G.w_dim,)
    assert torch.allclose(dirs @ dirs.T, torch.eye(5), atol=1e-5)
    assert (out["explained_variance_ratio"][:-1] >= out["explained_variance_ratio"][1:]).all()
    G64 = copy.deepcopy(G).double()                     # codes are drawn in G's dtype
    out64 = ganspace_directions(G64, n=5, samples=2000)
    assert torch.allclose((out64["directions"] * dirs).sum(1).abs(), torch.ones(5), atol=1e-3)


def _set_affines(G, row_vectors):
    """Overwrite every style affine with a rank-1 weight a_l b_l^T; row_vectors(name) -> b_l."""
    g = torch.Generator().manual_seed(0)
    for block in G.synthesis.blocks:
        for name, layer in (("conv0", block.conv0), ("conv1", block.conv1), ("torgb", block.torgb)):
            if layer is None:
                continue
            W = layer.affine.weight
            a = torch.randn(W.shape[0], generator=g)
            with torch.no_grad():
                W.copy_(torch.outer(a, row_vectors(f"b{block.resolution}.{name}")))


@pytest.mark.parametrize("normalize", [True, False])
def test_sefa_recovers_a_rank_one_affine(normalize, one_thread):
    torch.manual_seed(0)
    G, _ = build("smoke")
    b = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(7))
    _set_affines(G, lambda name: b)
    out = sefa_directions(G, n=3, normalize=normalize)
    first = out["directions"][0]
    assert out["directions"].shape == (3, G.w_dim)
    assert abs(float(first @ b / b.norm())) > 0.9999
    ev = out["eigenvalues"]
    assert ev[0] > 0 and (ev[1:] < 1e-5 * ev[0]).all()
    if normalize:       # unit rows: the eigenvalue is the number of style channels
        n_rows = sum(m.shape[0] for _, m in style_affines(G))
        assert abs(float(ev[0]) - n_rows) < 1e-3 * n_rows


def test_sefa_layers_and_effective_weights(one_thread):
    """Conv affines along b1, every toRGB affine along b2 (orthogonal): SeFa's layer choice
    (all convs + the output toRGB) gives b1 first with as many unit rows as conv style
    channels, then b2 with the last toRGB's channel count; toRGB-free SeFa has no b2."""
    torch.manual_seed(0)
    G, _ = build("smoke")
    q, _ = torch.linalg.qr(torch.randn(G.w_dim, 2, generator=torch.Generator().manual_seed(3)))
    b1, b2 = q[:, 0], q[:, 1]
    _set_affines(G, lambda name: b2 if name.endswith("torgb") else b1)
    conv_rows = sum(l.affine.weight.shape[0] for blk in G.synthesis.blocks
                    for l in (blk.conv0, blk.conv1) if l is not None)
    last_rgb = G.synthesis.blocks[-1].torgb.affine.weight.shape[0]
    out = sefa_directions(G, n=2)
    assert out["layers"][-1] == f"b{G.resolution}.torgb"
    assert sum(n.endswith("torgb") for n in out["layers"]) == 1
    assert abs(float(out["directions"][0] @ b1)) > 0.9999 and abs(float(out["directions"][1] @ b2)) > 0.9999
    assert torch.allclose(out["eigenvalues"], torch.tensor([conv_rows, last_rgb], dtype=torch.float32), rtol=1e-4)
    none = sefa_directions(G, n=2, torgb="none")
    assert none["eigenvalues"][1] < 1e-4
    # effective weights: EqualLinear's gain (and ToRGB's style gain) are applied
    named = dict(style_affines(G, torgb="all"))
    blk = G.synthesis.blocks[1]
    assert torch.allclose(named["b8.conv0"], blk.conv0.affine.weight * blk.conv0.affine.weight_gain)
    assert torch.allclose(named["b8.torgb"],
                          blk.torgb.affine.weight * blk.torgb.affine.weight_gain * blk.torgb.gain)
    # unnormalised SeFa is the eigen-decomposition of A^T A of those effective weights
    A = torch.cat([m for _, m in style_affines(G)]).double()
    vals = torch.linalg.eigvalsh(A.T @ A).flip(0)[:2]
    raw = sefa_directions(G, n=2, normalize=False)
    assert torch.allclose(raw["eigenvalues"].double(), vals, rtol=1e-4)


def test_edit_arithmetic():
    ws = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    d = torch.tensor([1.0, 0.0, -1.0, 0.5])
    out = edit(ws, d, 2.0)
    assert torch.equal(out, ws + 2.0 * d)
    assert torch.equal(out[:, 1] - ws[:, 1], torch.stack([2.0 * d] * 2))
    per = edit(ws, d, torch.tensor([1.0, -3.0]))
    assert torch.equal(per[0], ws[0] + d) and torch.equal(per[1], ws[1] - 3.0 * d)
    assert torch.equal(edit(ws[:, 0], d, -1.0), ws[:, 0] - d)                   # (B, w_dim)
    assert torch.equal(edit(ws[0, 0], d, 0.5), ws[0, 0] + 0.5 * d)              # (w_dim,)
    some = edit(ws, d, 1.0, layers=[0, 2])
    assert torch.equal(some[:, 1], ws[:, 1]) and torch.equal(some[:, 2], ws[:, 2] + d)
    ranged = edit(ws, d, torch.tensor([1.0, 2.0]), layers=slice(1, None))
    assert torch.equal(ranged[:, 0], ws[:, 0]) and torch.equal(ranged[1, 2], ws[1, 2] + 2.0 * d)
    assert torch.equal(ws, torch.arange(24, dtype=torch.float32).reshape(2, 3, 4))  # not in place
    with pytest.raises(ValueError):
        edit(ws, d[:3], 1.0)
    with pytest.raises(ValueError):
        edit(ws, d, torch.ones(3))
