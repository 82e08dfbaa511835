"""StyleGAN2 building blocks against hand computations (ssl_lab.nets.stylegan2)."""
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_lab.nets.stylegan2 import (ARCH, Discriminator, EqualConv2d, EqualLinear, Generator,
                                    MappingNetwork, build, channels_for, downsample2x, ema_beta,
                                    ema_update, minibatch_std, modulated_conv2d, upsample2x)

pytestmark = pytest.mark.usefixtures("one_thread")


TINY_CH = {4: 16, 8: 8, 16: 8, 32: 4}


def tiny_G(resolution=32, **kw):
    torch.manual_seed(0)
    return Generator(z_dim=8, w_dim=8, resolution=resolution,
                     channels={r: c for r, c in TINY_CH.items() if r <= resolution},
                     mapping_layers=2, **kw)


def test_equalised_lr_linear_scaling_and_gradient():
    torch.manual_seed(0)
    layer = EqualLinear(16, 4, bias_init=0.5, lr_mul=0.01)
    assert layer.weight_gain == pytest.approx(0.01 / math.sqrt(16))
    # stored weights ~ N(0, 1/lr_mul^2): std about 100
    big = EqualLinear(256, 256, lr_mul=0.01)
    assert 90 < float(big.weight.detach().std()) < 110
    x = torch.randn(3, 16)
    w_eff = layer.weight * 0.01 / 4
    torch.testing.assert_close(layer(x), x @ w_eff.T + 0.5 * 0.01)
    # d loss / d stored weight = gain * d loss / d effective weight
    layer(x).sum().backward()
    g_eff = torch.ones(3, 4).T @ x                    # d sum(x W^T) / dW
    torch.testing.assert_close(layer.weight.grad, g_eff * (0.01 / 4))
    assert EqualConv2d(8, 4, 3).weight_gain == pytest.approx(1 / math.sqrt(8 * 9))


def test_modulated_conv_equals_naive_per_sample_conv():
    torch.manual_seed(0)
    x, weight = torch.randn(3, 5, 6, 6), torch.randn(4, 5, 3, 3)
    styles = torch.rand(3, 5) + 0.5
    for demod in (True, False):
        out = modulated_conv2d(x, weight, styles, demodulate=demod)
        for b in range(3):
            w = weight * styles[b][None, :, None, None]
            if demod:
                w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            torch.testing.assert_close(out[b:b + 1], F.conv2d(x[b:b + 1], w, padding=1),
                                       atol=1e-5, rtol=1e-5)


def test_unfused_modulated_conv_equals_fused():
    """The training path (a shared convolution of style-scaled inputs, then the demodulation
    coefficients) computes the grouped convolution's numbers."""
    torch.manual_seed(0)
    x, weight = torch.randn(3, 5, 6, 6, dtype=torch.float64), torch.randn(4, 5, 3, 3, dtype=torch.float64)
    styles = torch.rand(3, 5, dtype=torch.float64) + 0.5
    for demod in (True, False):
        torch.testing.assert_close(modulated_conv2d(x, weight, styles, demod, fused=False),
                                   modulated_conv2d(x, weight, styles, demod, fused=True))
    G = tiny_G(16)
    z = torch.randn(2, 8)
    torch.testing.assert_close(G.train()(z, noise_mode="const"), G.eval()(z, noise_mode="const"),
                               atol=1e-5, rtol=1e-5)


def test_demodulation_gives_unit_variance():
    torch.manual_seed(0)
    x = torch.randn(8, 16, 24, 24)
    out = modulated_conv2d(x, torch.randn(16, 16, 3, 3), torch.rand(8, 16) * 3 + 0.1)
    var = out[:, :, 1:-1, 1:-1].var().item()          # interior: no zero padding
    assert abs(var - 1) < 0.05


def test_mapping_network_shape_normalisation_lr_and_truncation():
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=8, w_dim=12, num_ws=6, layers=3, lr_mul=0.01)
    z = torch.randn(5, 8)
    ws = m(z)
    assert ws.shape == (5, 6, 12)
    assert torch.equal(ws[:, 0], ws[:, 5])                        # broadcast
    torch.testing.assert_close(m(3 * z), ws)                      # z is normalised
    assert all(l.lr_mul == 0.01 and l.weight_gain == pytest.approx(0.01 / math.sqrt(l.weight.shape[1]))
               for l in m.net)
    m(z, update_w_avg=True)
    torch.testing.assert_close(m.w_avg, 0.005 * ws[:, 0].mean(0))  # lerp(0 -> mean, 1 - 0.995)
    t = m(z, psi=0.0, cutoff=2)
    torch.testing.assert_close(t[:, :2], m.w_avg.expand(5, 2, 12))
    torch.testing.assert_close(t[:, 2:], ws[:, 2:])
    torch.testing.assert_close(m(z, psi=0.5)[:, 3], m.w_avg + 0.5 * (ws[:, 3] - m.w_avg))


def test_generator_features_rgbs_and_ws_layout():
    G = tiny_G(32)
    assert G.num_ws == 2 * 5 - 2                                   # 2 log2(R) - 2
    z = torch.randn(2, 8)
    img, extras = G(z, noise_mode="const", return_features=True, return_rgbs=True)
    assert img.shape == (2, 3, 32, 32)
    assert sorted(extras["features"]) == [4, 8, 16, 32]
    for r, f in extras["features"].items():
        assert f.shape == (2, TINY_CH[r], r, r)
        assert extras["rgbs"][r].shape == (2, 3, r, r)
    torch.testing.assert_close(extras["rgbs"][32], img)
    torch.testing.assert_close(G(z, noise_mode="const"), img)      # deterministic with const noise
    # skip architecture: rgb_r = up(rgb_{r/2}) + toRGB_r(features_r)
    ws = G.mapping(z)
    blk = G.synthesis.blocks[-1]
    y = blk.torgb(extras["features"][32], ws[:, 7])
    torch.testing.assert_close(extras["rgbs"][32], upsample2x(extras["rgbs"][16]) + y)


def test_style_mixing_replaces_tail_rows():
    G = tiny_G(16)
    z = torch.randn(3, 8)
    base = G.mapping(z)
    torch.testing.assert_close(G.mix_styles(z, prob=0.0), base)
    torch.manual_seed(1)
    mixed = G.mix_styles(z, prob=1.0)
    same = [torch.allclose(mixed[:, i], base[:, i]) for i in range(G.num_ws)]
    k = same.index(False)
    assert k >= 1 and all(same[:k]) and not any(same[k:])


def test_resampling_filters():
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    up = upsample2x(ramp)[0, 0, 0]
    # [1,3,3,1]/4 FIR upsampling of a ramp: interior samples at i -+ 1/4
    torch.testing.assert_close(up[1:-1], torch.arange(1, 15) / 2 - 0.25)
    down = downsample2x(torch.ones(1, 2, 8, 8))
    assert down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(down[0, :, 1:3, 1:3], torch.ones(2, 2, 2))
    assert down[0, 0, 0, 0].item() == pytest.approx(49 / 64)       # zero padding at the corner
    # the three 2x2 box filters are the official 4x4 depthwise [1,3,3,1] FIR, stride 2
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    fir = F.conv2d(F.pad(x, (1, 1, 1, 1)), (torch.outer(f, f) / 64).expand(3, 1, 4, 4), stride=2, groups=3)
    torch.testing.assert_close(downsample2x(x), fir)


def test_minibatch_std_by_hand():
    x = torch.tensor([0.0, 1.0, 4.0, 1.0]).view(4, 1, 1, 1)
    y = minibatch_std(x, group_size=2)                             # groups {0, 2}, {1, 3}
    torch.testing.assert_close(y[:, 1].flatten(), torch.tensor([2.0, 1e-4, 2.0, 1e-4]))
    y4 = minibatch_std(torch.tensor([0.0, 0.0, 2.0, 2.0]).view(4, 1, 1, 1), group_size=4)
    torch.testing.assert_close(y4[:, 1].flatten(), torch.ones(4))
    with pytest.raises(ValueError, match="divisible"):
        minibatch_std(torch.zeros(6, 1, 2, 2), 4)


def test_discriminator_shape():
    torch.manual_seed(0)
    D = Discriminator(32, {r: c for r, c in TINY_CH.items()}, mbstd_group=4)
    logits = D(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="32x32"):
        D(torch.randn(4, 3, 16, 16))


def test_ema_beta_and_update():
    assert ema_beta(16, 10) == pytest.approx(0.5 ** (16 / 10000))
    assert ema_beta(16, 10, nimg=1000, ema_rampup=0.05) == pytest.approx(0.5 ** (16 / 50))
    # half-life: after ema_kimg*1000/batch updates the old weights weigh 1/2
    assert ema_beta(16, 10) ** (10000 / 16) == pytest.approx(0.5)
    G, G_ema = tiny_G(8), tiny_G(8)
    for p in G_ema.parameters():
        p.data.zero_()
    G.mapping.w_avg.fill_(3.0)
    ema_update(G_ema, G, beta=0.75)
    for pe, p in zip(G_ema.parameters(), G.parameters()):
        torch.testing.assert_close(pe, 0.25 * p)
    torch.testing.assert_close(G_ema.mapping.w_avg, torch.full((8,), 3.0))


def test_presets():
    assert channels_for(256, 16384, 512) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert ARCH["full"]["mapping_layers"] == 8 and ARCH["full"]["resolution"] == 256
    G, D = build("smoke")
    assert G.resolution == D.resolution == 32
    with pytest.raises(ValueError, match="unknown"):
        build("huge")
