"""ssl_lab.nets.regressor: the DVE / ContrastLandmarks landmark regressor (thesis Sec. 3.2.4).

Hand-checked coordinates, linear map and loss; then a small fit on synthetic features that
encode the landmark positions (must reach < 2 % IOD on held-out images) against the same fit
on pure noise (must not beat about half the mean-shape error). The whole file runs in ~15 s
on one CPU thread.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_lab.metrics.landmarks import iod_error
from ssl_lab.nets import regressor as R


# ----------------------------------------------------------------------------- coordinates

def test_soft_argmax_one_hot_is_the_cell_centre():
    # 8 x 8 map of a 32-px image (stride 4), one-hot at row 2, column 5: the soft-argmax is
    # the grid value of that cell, and in pixels the cell centre (5.5 * 4 - 0.5, 2.5 * 4 - 0.5)
    heat = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    heat[0, 0, 2, 5] = 1.0
    uv = R.soft_argmax(heat, 100.0)
    assert uv.shape == (1, 1, 2)
    assert uv[0, 0].tolist() == pytest.approx([-1 + 2 * 5 / 7, -1 + 2 * 2 / 7], abs=1e-12)
    assert R.grid_to_pixels(uv, 8, 32)[0, 0].tolist() == pytest.approx([21.5, 9.5], abs=1e-9)
    # corners of the grid: first / last cell centres 0.5 * 4 - 0.5 = 1.5 and 7.5 * 4 - 0.5 = 29.5
    corners = torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)
    assert R.grid_to_pixels(corners, 8, 32).tolist() == [[1.5, 1.5], [29.5, 29.5]]


def test_soft_argmax_non_square_non_integer_stride():
    # 5 x 7 map (h x w) of a 20 x 30 image (H x W): strides 4 (y) and 30 / 7 (x).
    heat = torch.zeros(2, 3, 5, 7, dtype=torch.float64)
    cells = [(0, 0), (4, 6), (1, 3)]                       # (row, col) of the three maps
    for n, (r, c) in enumerate(cells):
        heat[:, n, r, c] = 1.0
    px = R.grid_to_pixels(R.soft_argmax(heat, 200.0), (5, 7), (20, 30))
    want = [[(c + 0.5) * 30 / 7 - 0.5, (r + 0.5) * 4 - 0.5] for r, c in cells]
    want = torch.tensor(want, dtype=torch.float64)
    torch.testing.assert_close(px, torch.stack([want, want]), atol=1e-9, rtol=0)


def test_soft_argmax_uniform_map_is_the_centre_and_soft_interpolates():
    assert R.soft_argmax(torch.zeros(1, 1, 4, 6), 100.0)[0, 0].tolist() == \
        pytest.approx([0.0, 0.0], abs=1e-6)
    # two equal peaks at columns 1 and 3 of a 1 x 5 row: the point lies halfway (column 2 -> 0)
    heat = torch.zeros(1, 1, 1, 5)
    heat[..., 1] = heat[..., 3] = 1.0
    assert R.soft_argmax(heat, 100.0)[0, 0].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_pixel_normalised_round_trip_and_frames():
    size = (20, 30)                                        # H, W
    # kp_normalize: first / last pixel centres -> -1 / +1, image centre -> 0
    pts = torch.tensor([[0.0, 0.0], [29.0, 19.0], [14.5, 9.5], [-3.0, 25.0]], dtype=torch.float64)
    n = R.pixels_to_normalized(pts, size)
    assert n[:3].tolist() == [[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]
    assert n[3].tolist() == pytest.approx([2 * -3 / 29 - 1, 2 * 25 / 19 - 1])   # outside: fine
    assert torch.allclose(R.normalized_to_pixels(n, size), pts, atol=1e-12)
    rnd = torch.randn(4, 5, 2, dtype=torch.float64) * 3
    assert torch.allclose(R.pixels_to_normalized(R.normalized_to_pixels(rnd, 64), 64), rnd)
    torch.testing.assert_close(R.LandmarkRegressor.to_pixels(n, size), pts)
    torch.testing.assert_close(R.LandmarkRegressor.from_pixels(pts, size), n)
    # the grid frame is a pure scale of the target frame: x_n = u (w - 1) s / (W - 1)
    u = torch.tensor([[0.0, 0.0], [1.0, -1.0], [0.3, 0.7]], dtype=torch.float64)
    want = u * torch.tensor([6 * (30 / 7) / 29, 4 * 4 / 19], dtype=torch.float64)
    assert torch.allclose(R.grid_to_normalized(u, (5, 7), size), want, atol=1e-12)


# ----------------------------------------------------------------------------- the module

def test_linear_map_by_hand_and_as_the_released_grouped_conv():
    reg = R.LandmarkRegressor(3, num_points=2, num_intermediate=2)
    with torch.no_grad():
        reg.weight.zero_()
        # landmark 0: x = x of its point 0, y = y of its point 1
        reg.weight[0, 0, 0, 0] = 1.0
        reg.weight[0, 1, 1, 1] = 1.0
        # landmark 1: x = 2 x_0 - y_1, y = 0.5 (x_0 + x_1 + y_0 + y_1)
        reg.weight[1, 0, 0, 0], reg.weight[1, 0, 1, 1] = 2.0, -1.0
        reg.weight[1, 1] = 0.5
    inter = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]],          # landmark 0: (x0, y0), (x1, y1)
                           [[-0.5, 0.25], [0.75, -1.0]]]])    # landmark 1
    pred = reg.regress(inter)
    torch.testing.assert_close(pred, torch.tensor([[[0.1, 0.4], [2 * -0.5 + 1.0, 0.5 * -0.5]]]))
    # the release applies nn.Linear(2M, 2) weights on (x1, y1, x2, y2, ...) as a grouped conv
    w = torch.randn_like(reg.weight)
    with torch.no_grad():
        reg.weight.copy_(w)
    inter = torch.randn(3, 2, 2, 2)
    grouped = F.conv2d(inter.reshape(3, -1, 1, 1), w.reshape(4, 4, 1, 1), groups=2)
    assert torch.allclose(reg.regress(inter), grouped.reshape(3, 2, 2), atol=1e-6)


def test_forward_one_hot_features_to_pixels():
    # features: channel k one-hot at landmark k's cell; filter (k, m) = e_k; the linear map
    # averages the M points and applies the grid -> target scale: the prediction is exactly
    # the cell centre in pixels.
    k, m, h, size = 3, 4, 8, 32
    cells = torch.tensor([[[1, 6], [5, 2], [7, 7]], [[0, 0], [3, 4], [6, 1]]])   # (row, col)
    feat = torch.zeros(2, k, h, h)
    for b in range(2):
        for j in range(k):
            feat[b, j, cells[b, j, 0], cells[b, j, 1]] = 1.0
    reg = R.LandmarkRegressor(k, k, num_intermediate=m)
    scale = (h - 1) * (size / h) / (size - 1)
    with torch.no_grad():
        reg.filters.zero_()
        reg.weight.zero_()
        for j in range(k):
            reg.filters[j * m:(j + 1) * m, j] = 1.0
            reg.weight[j, 0, :, 0] = scale / m
            reg.weight[j, 1, :, 1] = scale / m
    pred, inter = reg(feat)
    assert pred.shape == (2, k, 2) and inter.shape == (2, k, m, 2)
    want = (cells.flip(-1).double() + 0.5) * (size / h) - 0.5                # (x, y) pixels
    assert torch.allclose(reg.to_pixels(pred, size).double(), want, atol=1e-4)
    assert torch.allclose(R.grid_to_pixels(inter[:, :, 0], h, size).double(), want, atol=1e-4)
    # the features are detached: no gradient reaches them
    feat.requires_grad_(True)
    reg(feat)[0].sum().backward()
    assert feat.grad is None and reg.weight.grad is not None


def test_initialisation_matches_the_release():
    g = torch.Generator().manual_seed(0)
    reg = R.LandmarkRegressor(16, 5, generator=g)
    assert reg.filters.shape == (250, 16, 1, 1) and reg.weight.shape == (5, 2, 50, 2)
    assert reg.num_intermediate == 50 and reg.softargmax_mul == 100.0
    assert 0.9 < reg.filters.std().item() < 1.1                     # randn
    assert reg.weight.abs().max().item() <= 1 / math.sqrt(100)      # nn.Linear(100, 2) bound


# ----------------------------------------------------------------------------- loss

def test_regression_loss_by_hand():
    z = torch.zeros(1, 2, 2)
    assert R.regression_loss(z, z).item() == 0.0
    # alpha 10: coordinate differences 0.3 and 0.05 -> d = 3 (L1 part: 3 - 0.5 = 2.5) and
    # d = 0.5 (quadratic part: 0.5 * 0.25 = 0.125); mean over 4 coordinates
    pred = torch.tensor([[[0.3, 0.0], [0.05, 0.0]]])
    assert R.regression_loss(pred, z).item() == pytest.approx((2.5 + 0.125) / 4)
    assert R.regression_loss(pred, z, alpha=1.0).item() == \
        pytest.approx((0.5 * 0.09 + 0.5 * 0.0025) / 4)
    # point 0 invisible: masked mean over the 2 visible coordinates
    vis = torch.tensor([[False, True]])
    assert R.regression_loss(pred, z, visible=vis).item() == pytest.approx(0.125 / 2)
    far = pred.clone()
    far[0, 0] = torch.tensor([50.0, -7.0])
    far.requires_grad_(True)
    loss = R.regression_loss(far, z, visible=vis)
    assert loss.item() == pytest.approx(0.125 / 2)
    loss.backward()
    assert far.grad[0, 0].abs().sum().item() == 0.0 and far.grad[0, 1, 0].item() > 0
    assert R.regression_loss(pred, z, visible=torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0


# ----------------------------------------------------------------------------- training

_MEAN_FACE = torch.tensor([[22.0, 26.0], [42.0, 26.0], [32.0, 36.0], [25.0, 46.0], [39.0, 46.0]])


def _faces(n, gen, size=64):
    """5-point 'faces' in a size x size image: the mean shape (eyes 20 px apart) under a
    random rotation (+-10 deg), scale (0.9-1.1) and shift (+-6 px)."""
    ang = (torch.rand(n, generator=gen) - 0.5) * math.radians(20)
    sc = 0.9 + 0.2 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 12
    rot = torch.stack([torch.stack([ang.cos(), -ang.sin()], -1),
                       torch.stack([ang.sin(), ang.cos()], -1)], -2) * sc[:, None, None]
    c = (size - 1) / 2
    return torch.einsum("nij,kj->nki", rot, _MEAN_FACE - c) + c + shift[:, None]


def _bump_features(lm, size=64, h=16, sigma=1.5, amp=0.1):
    """(N, K, h, h): channel k a Gaussian bump (sigma in cells) at landmark k, placed with the
    cell-centre convention (cell i at pixel (i + 0.5) * stride - 0.5)."""
    cell = (lm + 0.5) / (size / h) - 0.5
    i = torch.arange(h, dtype=torch.float32)
    dx = i[None, None, None, :] - cell[..., 0, None, None]
    dy = i[None, None, :, None] - cell[..., 1, None, None]
    return amp * torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))


def test_fit_reaches_low_error_on_positional_features_but_not_on_noise(one_thread):
    gen = torch.Generator().manual_seed(0)
    lm = _faces(260, gen)
    test, train = slice(0, 100), slice(100, None)
    # amplitude 0.1: responses 100 * randn * 0.1 are soft enough that the soft-argmax
    # interpolates between the 4-px cells (a hard argmax would quantise to the cell centres,
    # ~ 4 % IOD).  lr 0.01 (the few-annotation lr) converges in 25 epochs.
    kwargs = dict(epochs=25, lr=1e-2, seed=0)
    feat = _bump_features(lm).half()
    reg, hist = R.fit_regressor(feat[train], lm[train], 64, **kwargs)
    err = iod_error(R.predict(reg, feat[test], 64), lm[test])
    mean_shape = iod_error(lm[train].mean(0).expand(100, 5, 2), lm[test])
    assert mean_shape > 15.0                                     # the task is not trivial
    assert err < 2.0, err                                        # ~ 0.9 % IOD (0.2 px)
    assert hist["loss"][-1] < 0.02 * hist["loss"][0]
    # the same fit on pure noise of the same shape and scale learns nothing that transfers
    noise = (torch.randn(feat.shape, generator=gen) * 0.1).half()
    reg_n, _ = R.fit_regressor(noise[train], lm[train], 64, **kwargs)
    err_n = iod_error(R.predict(reg_n, noise[test], 64), lm[test])
    assert err_n > 0.5 * mean_shape, (err_n, mean_shape)


def test_fit_is_deterministic_and_leaves_the_global_rng_alone(one_thread):
    gen = torch.Generator().manual_seed(1)
    lm = _faces(24, gen)
    feat = _bump_features(lm, h=8)
    state = torch.get_rng_state()
    a, ha = R.fit_regressor(feat, lm, 64, epochs=2, batch_size=8, seed=3,
                            num_intermediate=5)
    b, hb = R.fit_regressor(feat, lm, 64, epochs=2, batch_size=8, seed=3,
                            num_intermediate=5)
    c, _ = R.fit_regressor(feat, lm, 64, epochs=2, batch_size=8, seed=4, num_intermediate=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert (ha["loss"], ha["lr"]) == (hb["loss"], hb["lr"]) and ha["wall_s"] > 0
    # denormals are flushed only while fitting: afterwards 1e-40 (a float32 denormal) is not zero
    assert float(torch.tensor(1e-40, dtype=torch.float32) * 1.0) != 0.0
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)


def test_a_fit_resumed_from_its_checkpoint_is_the_uninterrupted_fit(one_thread, tmp_path):
    gen = torch.Generator().manual_seed(5)
    lm = _faces(24, gen)
    feat = _bump_features(lm, h=8)
    kwargs = dict(batch_size=8, seed=3, num_intermediate=5, schedule_epochs=4)
    whole, hw = R.fit_regressor(feat, lm, 64, epochs=4, **kwargs)
    ckpt = tmp_path / "reg.ckpt"
    R.fit_regressor(feat, lm, 64, epochs=2, checkpoint=ckpt, **kwargs)     # stopped after epoch 2
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2
    resumed, hr = R.fit_regressor(feat, lm, 64, epochs=4, checkpoint=ckpt, **kwargs)
    assert (hr["loss"], hr["lr"]) == (hw["loss"], hw["lr"])
    for pw, pr in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(pw, pr)
    with pytest.raises(ValueError, match="another fit"):                  # other arguments: not resumed
        R.fit_regressor(feat, lm, 64, epochs=4, checkpoint=ckpt, **{**kwargs, "seed": 4})


def test_fit_schedule_repeat_visibility_and_predict(one_thread):
    gen = torch.Generator().manual_seed(2)
    lm = _faces(6, gen)
    feat = _bump_features(lm, h=8)
    vis = torch.ones(6, 5, dtype=torch.bool)
    vis[0, 3] = False
    reg, hist = R.fit_regressor(feat, lm, 64, visible=vis, epochs=4, lr=1e-2,
                                num_per_epoch=20, num_intermediate=3)
    # ContrastLandmarks' cosine: stepped before each epoch, floor lr * 0.2 ** 3 * 0.1
    floor = 1e-2 * 8e-4
    want = [floor + (1e-2 - floor) * (1 + math.cos(math.pi * t / 4)) / 2 for t in (1, 2, 3, 4)]
    assert hist["lr"] == pytest.approx(want)
    assert hist["lr"][-1] == pytest.approx(floor) and len(hist["loss"]) == 4
    # stopping at epoch 2 of a 4-epoch schedule follows the same curve
    _, h2 = R.fit_regressor(feat, lm, 64, epochs=2, lr=1e-2, schedule_epochs=4,
                            num_intermediate=3)
    assert h2["lr"] == pytest.approx(want[:2])
    _, h3 = R.fit_regressor(feat, lm, 64, epochs=2, schedule="none", num_intermediate=3)
    assert h3["lr"] == [1e-3, 1e-3]
    # the 6 samples tiled 20 // 6 = 3 times
    assert R.repeat_indices(6, 20).tolist() == list(range(6)) * 3
    assert R.repeat_indices(6, None).tolist() == list(range(6))
    assert R.repeat_indices(6, 4).tolist() == list(range(6))
    out = R.predict(reg, feat.half(), 64, batch=4)
    assert out.shape == (6, 5, 2) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not reg.training
    # the default batch holds PREDICT_BYTES of response maps (5 * 3 maps of 8 x 8 in float64:
    # 7,680 bytes an image); in float64 the batching changes no prediction
    reg64 = copy.deepcopy(reg).double()
    whole = R.predict(reg64, feat, 64, batch=6, dtype=torch.float64)
    for limit, batches in ((7_680 * 2, 3), (100, 6)):     # two images a batch; at least one
        calls = []
        hook = reg64.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(R, "PREDICT_BYTES", limit)
            assert torch.equal(R.predict(reg64, feat, 64, dtype=torch.float64), whole)
        hook.remove()
        assert len(calls) == batches


@pytest.mark.parametrize("end_to_end", [False, True])
@pytest.mark.parametrize("with_visible", [False, True])
def test_micro_batches_give_the_whole_batch_s_loss_and_gradients(end_to_end, with_visible):
    """A step on micro-batches of the head (``TRAIN_BYTES``) computes the whole batch's loss and
    gradients (float64, up to rounding), and the encoder's gradient end to end too."""
    gen = torch.Generator().manual_seed(7)
    lm = _faces(7, gen)
    images = _bump_features(lm, h=32, sigma=3.0, amp=1.0).double()      # (7, 5, 32, 32)
    target = R.pixels_to_normalized(lm, 64).double()
    vis = (torch.rand(7, 5, generator=gen) > 0.3) if with_visible else None
    grads = []
    for max_bytes in (None, 3 * 5 * 4 * 8 * 8 * 4):                    # whole; 3 images (maps 8 x 8)
        torch.manual_seed(0)
        enc = torch.nn.Conv2d(5, 6, 4, stride=4).double()
        reg = R.LandmarkRegressor(6, 5, num_intermediate=4, generator=torch.Generator().manual_seed(1),
                                  detach=not end_to_end).double()
        calls = []
        hook = reg.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
        feat = enc(images) if end_to_end else enc(images).detach()
        loss = R._step_gradients(reg, feat, target, vis, 10.0, max_bytes, end_to_end=end_to_end)
        hook.remove()
        assert calls == ([7] if max_bytes is None else [3, 3, 1])
        params = [*reg.parameters(), *(enc.parameters() if end_to_end else ())]
        grads.append((loss, [p.grad.clone() for p in params]))
        assert all(p.grad is None for p in enc.parameters()) != end_to_end
    (whole, g_whole), (micro, g_micro) = grads
    with torch.no_grad():
        expected = float(R.regression_loss(reg(feat)[0], target, visible=vis))
    assert whole == pytest.approx(expected, rel=1e-12) and micro == pytest.approx(whole, rel=1e-12)
    for a, b in zip(g_whole, g_micro):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fit_splits_batches_only_for_features_of_few_channels(monkeypatch):
    gen = torch.Generator().manual_seed(8)
    lm = _faces(8, gen)
    monkeypatch.setattr(R, "TRAIN_BYTES", 1)                           # one face a micro-batch
    monkeypatch.setattr(R, "MICRO_CHANNELS", 5)
    seen = {}
    real = R.LandmarkRegressor.forward

    def counting(self, feat):
        seen.setdefault(feat.shape[1], []).append(feat.shape[0])
        return real(self, feat)

    monkeypatch.setattr(R.LandmarkRegressor, "forward", counting)
    for c in (5, 6):
        R.fit_regressor(torch.randn(8, c, 4, 4), lm, 64, epochs=1, batch_size=4, num_intermediate=2)
    assert seen == {5: [1] * 8, 6: [4, 4]}


def test_an_encoder_without_weights_gives_the_frozen_feature_fit(one_thread):
    """End to end with a weightless encoder (4 x 4 average pooling of full-resolution bump
    images) is the frozen fit on the pooled maps: the same regressor, the same losses."""
    gen = torch.Generator().manual_seed(5)
    lm = _faces(40, gen)
    images = _bump_features(lm, h=64, sigma=6.0, amp=1.0)          # (40, 5, 64, 64) in [0, 1]
    pool = torch.nn.AvgPool2d(4)
    kw = dict(epochs=3, batch_size=8, lr=1e-2, seed=2, num_intermediate=4)
    frozen, hf = R.fit_regressor(pool(images), lm, 64, **kw)
    joint, hj = R.fit_regressor(images, lm, 64, encoder=pool, **kw)
    assert hj["loss"] == pytest.approx(hf["loss"], rel=1e-5)
    for a, b in zip(frozen.parameters(), joint.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert frozen.detach and not joint.detach


def test_end_to_end_trains_the_encoder_and_learns_positions(one_thread):
    """A randomly initialised stride-4 convolution under the regressor, trained with it on
    bump images: its weights move, the gradient reaches them, and the held-out error ends far
    below the mean shape's."""
    gen = torch.Generator().manual_seed(6)
    lm = _faces(260, gen)
    images = _bump_features(lm, h=64, sigma=6.0, amp=1.0)
    test, train = slice(0, 100), slice(100, None)
    torch.manual_seed(0)
    enc = torch.nn.Conv2d(5, 8, 4, stride=4)
    start = enc.weight.detach().clone()
    reg, hist = R.fit_regressor(images[train], lm[train], 64, encoder=enc, epochs=25, lr=1e-2, seed=0)
    assert not enc.training and not reg.training
    assert (enc.weight - start).abs().max() > 1e-3                 # the encoder learned
    err = iod_error(R.predict(reg, enc(images[test]).detach(), 64), lm[test])
    mean_shape = iod_error(lm[train].mean(0).expand(100, 5, 2), lm[test])
    assert err < 0.25 * mean_shape, (err, mean_shape)
    assert hist["loss"][-1] < 0.1 * hist["loss"][0]
    # a regressor that does not detach passes the gradient to its input
    feat = enc(images[:2]).detach().requires_grad_()
    R.LandmarkRegressor(8, 5, 4, detach=False)(feat)[0].sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
