"""Unit tests of ssl_lab.ssl.equivariance (TPS warps, dense equivariance loss, DVE).

Tiny tensors (at most 32 x 32 images, 4 x 4 feature maps) so the file runs in a few seconds
on one CPU thread; the losses are checked against plain Python loops in float64."""
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_lab.ssl.equivariance import (dve_loss, equivariance_loss, random_tps, resize_grid,
                                      tps_grid, tps_transform, warp)


def identity_grid(B, H, W, dtype=torch.float64):
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=dtype).expand(B, 2, 3)
    return F.affine_grid(theta, (B, 1, H, W), align_corners=False)


def lattice(n, dtype=torch.float64):
    t = torch.linspace(-1, 1, n, dtype=dtype)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(1, -1, 2)


# -- TPS warps --------------------------------------------------------------------------------
def test_tps_equal_control_points_is_identity():
    g = torch.Generator().manual_seed(0)
    ctrl = (2 * torch.rand(2, 7, 2, generator=g, dtype=torch.float64) - 1)
    grid = tps_grid(ctrl, ctrl, (6, 9))
    assert grid.shape == (2, 6, 9, 2)
    torch.testing.assert_close(grid, identity_grid(2, 6, 9), atol=1e-5, rtol=0)
    # a shared (batch-1) dst lattice broadcasts against per-sample src points
    src = lattice(3).repeat(2, 1, 1) + 0.1 * ctrl[:, :1]
    torch.testing.assert_close(tps_grid(src, lattice(3), 5),
                               tps_grid(src, lattice(3).repeat(2, 1, 1), 5), atol=1e-12, rtol=0)
    torch.testing.assert_close(tps_grid(ctrl.float(), ctrl.float(), 8),
                               identity_grid(2, 8, 8).float(), atol=1e-5, rtol=0)


def test_tps_interpolates_control_points():
    H = W = 16
    g = torch.Generator().manual_seed(1)
    # dst control points at pixel centres (col, row), src points random
    cols = torch.tensor([[1, 14, 3, 12, 7, 9], [0, 15, 5, 10, 2, 13]])
    rows = torch.tensor([[2, 3, 13, 12, 7, 1], [15, 0, 8, 4, 11, 6]])
    dst = torch.stack([(2 * cols + 1) / W - 1, (2 * rows + 1) / H - 1], -1).double()
    src = dst + 0.2 * (2 * torch.rand(dst.shape, generator=g, dtype=torch.float64) - 1)
    # direct evaluation of T at the dst points returns the src points
    torch.testing.assert_close(tps_transform(src, dst, dst), src, atol=1e-8, rtol=0)
    # and so does the grid at those pixels
    grid = tps_grid(src, dst, (H, W))
    for b in range(2):
        torch.testing.assert_close(grid[b, rows[b], cols[b]], src[b], atol=1e-8, rtol=0)
    # away from the control points the warp is not the identity
    assert (grid - identity_grid(2, H, W)).abs().max() > 0.05


def test_integer_translation_shifts_image_exactly():
    H, W, dx, dy = 20, 24, 3, -2
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(2))
    dst = lattice(4)
    src = dst + torch.tensor([2 * dx / W, 2 * dy / H], dtype=torch.float64)
    y = warp(x, tps_grid(src, dst, (H, W)))
    # x'(i, j) = x(i + dy, j + dx) wherever the source pixel is inside the image
    torch.testing.assert_close(y[..., 2:H, 0:W - 3], x[..., 0:H - 2, 3:W], atol=1e-5, rtol=0)


def test_random_tps_deterministic_mild_and_in_range():
    grid_a = random_tps(3, 32, torch.Generator().manual_seed(5))
    grid_b = random_tps(3, 32, torch.Generator().manual_seed(5))
    grid_c = random_tps(3, 32, torch.Generator().manual_seed(6))
    assert grid_a.shape == (3, 32, 32, 2) and grid_a.dtype == torch.float32
    assert torch.equal(grid_a, grid_b)
    assert (grid_a - grid_c).abs().max() > 1e-3
    disp = (grid_a - identity_grid(3, 32, 32).float()).abs()
    assert 1e-3 < disp.max() < 0.5                        # a real but mild warp
    # no similarity and no jitter: the identity
    still = random_tps(2, 16, torch.Generator().manual_seed(5), jitter=0.0, affine=False)
    torch.testing.assert_close(still, identity_grid(2, 16, 16).float(), atol=1e-5, rtol=0)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    y = warp(x, grid_a)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_resize_identity_grid_is_identity():
    for (H, W), (h, w) in [((64, 64), (16, 16)), ((48, 40), (12, 10)), ((30, 30), (20, 20))]:
        torch.testing.assert_close(resize_grid(identity_grid(2, H, W), (h, w)),
                                   identity_grid(2, h, w), atol=1e-6, rtol=0)


# -- losses -----------------------------------------------------------------------------------
def loop_loss(f, f2, grid, tau, gamma, via=None):
    """Python-loop reference; ``via``: the auxiliary map for DVE."""
    B, C, h, w = f.shape
    unit = lambda t: t / t.norm()
    total = 0.0
    for b in range(B):
        cells = [(i, j) for i in range(h) for j in range(w)]
        for (iv, jv) in cells:
            q = unit(f2[b, :, iv, jv])
            if via is not None:
                e = [math.exp(float(q @ unit(via[b, :, i, j])) / tau) for (i, j) in cells]
                q = unit(sum(ek / sum(e) * unit(via[b, :, i, j]) for ek, (i, j) in zip(e, cells)))
            e = [math.exp(float(q @ unit(f[b, :, i, j])) / tau) for (i, j) in cells]
            tx, ty = grid[b, iv, jv].tolist()
            for ek, (i, j) in zip(e, cells):
                px, py = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
                d = math.hypot((px - tx) * w / 2, (py - ty) * h / 2)
                total += ek / sum(e) * d ** gamma
    return total / (B * h * w)


def random_case(seed, B=2, C=3, h=3, w=4):
    g = torch.Generator().manual_seed(seed)
    f, f2, fa = (torch.randn(B, C, h, w, generator=g, dtype=torch.float64) for _ in range(3))
    grid = 1.2 * torch.rand(B, h, w, 2, generator=g, dtype=torch.float64) - 0.6
    return f, f2, fa, grid


@pytest.mark.parametrize("tau, gamma", [(0.1, 1.0), (0.5, 0.5)])
def test_equivariance_loss_matches_loop(tau, gamma):
    f, f2, _, grid = random_case(10)
    got = equivariance_loss(f, f2, grid, tau=tau, gamma=gamma)
    assert got.item() == pytest.approx(loop_loss(f, f2, grid, tau, gamma), abs=1e-6)
    square = random_case(11, h=3, w=3)
    got = equivariance_loss(square[0], square[1], square[3], tau=tau, gamma=gamma)
    assert got.item() == pytest.approx(loop_loss(*square[:2], square[3], tau, gamma), abs=1e-6)


def test_equivariance_loss_zero_for_matching_codes_positive_when_misaligned():
    h = w = 4
    codes = torch.eye(h * w, dtype=torch.float64).reshape(h * w, h, w)[None]   # one-hot cells
    ident = identity_grid(1, h, w)
    assert equivariance_loss(codes, codes, ident, tau=0.01).item() < 1e-6
    # x' = x shifted left by one cell: f2 at (i, j) is the code of (i, j + 1); border clamps
    shifted = codes[..., torch.clamp(torch.arange(w) + 1, max=w - 1)]
    wrong = equivariance_loss(codes, shifted, ident, tau=0.01).item()
    assert wrong == pytest.approx(12 / 16, abs=1e-6)     # 12 of 16 cells are off by one cell
    # with the true warp T(v) = v + 1 cell the interior error vanishes (border cells: 1 cell)
    true = ident.clone()
    true[..., 0] += 2 / w
    right = equivariance_loss(codes, shifted, true, tau=0.01).item()
    assert right == pytest.approx(4 / 16, abs=1e-6) and right < wrong


def test_dve_loss_matches_loop_and_reduces_to_equivariance():
    f, f2, fa, grid = random_case(12)
    got = dve_loss(f, f2, fa, grid, tau=0.2, gamma=1.0)
    assert got.item() == pytest.approx(loop_loss(f, f2, grid, 0.2, 1.0, via=fa), abs=1e-6)
    # exchanging through the query's own map with a tiny tau returns the query itself
    f, f2, _, grid = random_case(13, C=16)
    for tau in (0.2, 0.01):
        diff = abs(dve_loss(f, f2, f2, grid, tau=tau) - equivariance_loss(f, f2, grid, tau=tau))
        assert (diff < 1e-6) == (tau == 0.01)


def test_gradients_flow_to_all_feature_maps():
    f, f2, fa, grid = (t.float().requires_grad_() for t in random_case(14))
    equivariance_loss(f, f2, grid).backward()
    assert f.grad.abs().sum() > 0 and f2.grad.abs().sum() > 0
    assert grid.grad is None and fa.grad is None        # T is a target; fa unused
    f.grad = f2.grad = None
    dve_loss(f, f2, fa, grid).backward()
    for t in (f, f2, fa):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
