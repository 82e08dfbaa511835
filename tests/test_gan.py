"""GAN losses, regularisers, ADA and HSR against hand computations; a two-step training run;
branching from a kept training state."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_lab.gan.ada import AdaptiveAugment, ada_adjust, augment
from ssl_lab.gan.hsr import HSR, LEVELS, hsr_resolutions
from ssl_lab.nets.extractors import resnet_features, vit_features
from ssl_lab.gan.losses import (PathLengthRegularizer, d_logistic_loss, g_nonsaturating_loss,
                                path_lengths, r1_penalty)
from ssl_lab.gan.train import gan_config, make_optimizers, train_gan
from ssl_lab.nets.stylegan2 import Generator, build

pytestmark = pytest.mark.usefixtures("one_thread")


TINY32 = dict(resolution=32, z_dim=8, w_dim=8, channel_base=128, channel_max=16,
              mapping_layers=2, mbstd_group=4)


# -- losses -------------------------------------------------------------------------------
def test_nonsaturating_losses_on_known_logits():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    sp = lambda v: math.log1p(math.exp(v))                       # softplus
    assert d_logistic_loss(real, fake).item() == pytest.approx(
        (sp(0) + sp(-1)) / 2 + (sp(0) + sp(-2)) / 2)
    assert g_nonsaturating_loss(fake).item() == pytest.approx((math.log(2) + sp(1)) / 2)


def test_r1_on_quadratic_discriminator():
    torch.manual_seed(0)
    c = torch.tensor(0.7, requires_grad=True)
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    logits = 0.5 * c * x.square().sum(dim=(1, 2, 3))            # grad_x D = c x
    pen = r1_penalty(x, logits)
    sq = x.detach().square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(pen, 0.49 * sq)
    gamma = 10.0
    loss = gamma / 2 * pen.mean()
    assert loss.item() == pytest.approx(gamma / 2 * 0.49 * sq.mean().item(), rel=1e-6)
    loss.backward()                                               # create_graph: d loss / dc = gamma c E||x||^2
    assert c.grad.item() == pytest.approx(gamma * 0.7 * sq.mean().item(), rel=1e-5)


def _linear_generator(B, s=1.7, L=2, D=8, seed=0):
    """img = s * sum_l Q_l w_l with orthonormal columns Q_l (48 x 8), shaped (B, 3, 4, 4)."""
    g = torch.Generator().manual_seed(seed)
    Q = [torch.linalg.qr(torch.randn(48, D, generator=g))[0] for _ in range(L)]
    ws = torch.randn(B, L, D, generator=g).requires_grad_(True)
    img = s * sum(ws[:, l] @ Q[l].T for l in range(L))
    return img.view(B, 3, 4, 4), ws, Q


def test_path_length_of_a_linear_generator():
    s = 1.7
    img, ws, Q = _linear_generator(5, s)
    noise = torch.randn(5, 3, 4, 4)
    n = noise.view(5, 48)
    expected = s * torch.sqrt(torch.stack([(n @ q).square().sum(1) for q in Q]).mean(0)) / 4
    torch.testing.assert_close(path_lengths(img, ws, noise), expected)
    # with y ~ N(0, I)/sqrt(HW): E[length^2] = s^2 * dim(w) / (H W) = 1.7^2 * 8 / 16
    img, ws, _ = _linear_generator(4000, s, seed=1)
    torch.manual_seed(0)
    ms = path_lengths(img, ws).square().mean().item()
    assert ms == pytest.approx(s ** 2 * 8 / 16, rel=0.05)


def test_path_length_running_mean_and_penalty():
    plr = PathLengthRegularizer(decay=0.01)
    pen = plr(torch.tensor([1.0, 3.0]))                          # a = 0 + 0.01 (2 - 0)
    assert plr.pl_mean.item() == pytest.approx(0.02)
    torch.testing.assert_close(pen, torch.tensor([0.98 ** 2, 2.98 ** 2]))
    plr(torch.tensor([2.0, 2.0]))
    assert plr.pl_mean.item() == pytest.approx(0.02 + 0.01 * (2 - 0.02))


def test_lazy_regularisation_optimizer_correction():
    cfg = gan_config("smoke")
    G, D = build(TINY32)
    opt_G, opt_D = make_optimizers(G, D, cfg)
    assert opt_D.param_groups[0]["lr"] == pytest.approx(cfg.lr * 16 / 17)
    assert opt_D.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert opt_G.param_groups[0]["lr"] == pytest.approx(cfg.lr * 4 / 5)


# -- ADA ----------------------------------------------------------------------------------
def test_ada_p_update_by_hand():
    # batch 4, interval 4, ada_kimg 0.16: one adjustment moves p by 4 * 4 / 160 = 0.1
    p, seen = 0.0, []
    for r_t in (1.0, 0.9, 0.0, 0.6, -1.0, -1.0):
        p = ada_adjust(p, r_t, target=0.6, batch=4, interval=4, ada_kimg=0.16)
        seen.append(round(p, 10))
    assert seen == [0.1, 0.2, 0.1, 0.1, 0.0, 0.0]
    assert ada_adjust(0.95, 1.0, batch=4, interval=4, ada_kimg=0.16) == 1.0
    # full scale: 64 images per adjustment, 500k images from p = 0 to p = 1
    assert 16 * 4 / (500 * 1000) * (500_000 / 64) == pytest.approx(1.0)

    aug = AdaptiveAugment(p=0.0, target=0.6, interval=4, ada_kimg=0.16)
    for _ in range(3):
        aug.accumulate(torch.tensor([1.0, 2.0, -1.0, 3.0]))      # signs: 3 of 4 positive
        assert aug.update(4) is None
    aug.accumulate(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert aug.update(4) == pytest.approx((3 * 2 + 4) / 16)      # r_t = 0.625 > 0.6
    assert float(aug.p) == pytest.approx(0.1)


def test_augment_identity_flip_rotation_translation():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 16, 16) * 2 - 1
    assert augment(x, 0.0) is x
    y = augment(x, 1.0, transforms=("xflip",))
    flipped = [torch.allclose(y[b], x[b].flip(-1), atol=1e-5) for b in range(32)]
    same = [torch.allclose(y[b], x[b], atol=1e-5) for b in range(32)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)
    y = augment(x, 1.0, transforms=("rotate90",))
    assert all(any(torch.allclose(y[b], torch.rot90(x[b], k, dims=(1, 2)), atol=1e-5) for k in range(4))
               for b in range(32))
    y = augment(x, 1.0, transforms=("xint",))                   # whole-pixel shifts, |t| <= 2 px

    def shifted(b):
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                a = y[b, :, max(0, -dy):16 - max(0, dy), max(0, -dx):16 - max(0, dx)]
                o = x[b, :, max(0, dy):16 - max(0, -dy), max(0, dx):16 - max(0, -dx)]
                if torch.allclose(a, o, atol=1e-5):
                    return True
        return False
    assert all(shifted(b) for b in range(32))


def test_augment_colour_and_gradients():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    d = augment(x, 1.0, transforms=("brightness",)) - x         # one offset per sample
    assert torch.allclose(d, d.mean(dim=(1, 2, 3), keepdim=True).expand_as(d), atol=1e-6)
    assert d.abs().amax() > 0
    grey = x[:, :1].expand(-1, 3, -1, -1)                       # hue and saturation fix the grey axis
    torch.testing.assert_close(augment(grey, 1.0, transforms=("hue", "saturation")), grey,
                               atol=1e-5, rtol=1e-5)
    xg = x.clone().requires_grad_(True)
    augment(xg, 1.0).square().sum().backward()                  # full bgc pipeline
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


# -- HSR ----------------------------------------------------------------------------------
class FixedFeatures:
    def __init__(self, maps):
        self.maps, self.channels = maps, [m.shape[1] for m in maps]

    def __call__(self, images):
        return self.maps


def test_hsr_level_pairs_and_resolutions():
    feats = FixedFeatures([torch.zeros(1, c, 2, 2) for c in (3, 4, 5, 6)])
    g_ch = {8: 8, 16: 8, 32: 8, 64: 8}
    pairs = {lv: HSR(feats, g_ch, levels=lv, hidden=4).pairs for lv in LEVELS}
    assert pairs == {"high": [(8, 3), (16, 2)], "mid": [(16, 2), (32, 1)],
                     "low": [(32, 1), (64, 0)], "all": [(8, 3), (16, 2), (32, 1), (64, 0)]}
    h = HSR(feats, g_ch, levels="all", hidden=4)
    assert [h.predictors[str(r)].conv2.weight.shape[0] for r in (8, 16, 32, 64)] == [6, 5, 4, 3]
    assert hsr_resolutions(256) == (8, 16, 32, 64) and hsr_resolutions(64) == (4, 8, 16, 32)
    with pytest.raises(ValueError, match="levels"):
        HSR(feats, g_ch, levels="deep")
    assert not h.active(499_999) and h.active(500_000)          # 500 kimg warm-up


def test_hsr_loss_zero_for_identity_predictor_and_exact_otherwise():
    torch.manual_seed(0)
    g = {8: torch.rand(2, 4, 8, 8) + 0.1, 16: torch.rand(2, 4, 16, 16) + 0.1}
    targets = [torch.zeros(2, 4, 4, 4), torch.zeros(2, 4, 4, 4),
               F.adaptive_avg_pool2d(g[16], 4), F.adaptive_avg_pool2d(g[8], 4)]
    h = HSR(FixedFeatures(targets), {8: 4, 16: 4, 32: 4, 64: 4}, levels="high", hidden=4, weight=2.0)
    eye = torch.eye(4).view(4, 4, 1, 1)
    with torch.no_grad():
        for q in h.predictors.values():                          # q(x) = x for x > 0
            q.conv1.weight.copy_(eye / q.conv1.weight_gain)
            q.conv2.weight.copy_(eye / (q.conv2.weight_gain * math.sqrt(2)))
    loss, levels = h(g, torch.zeros(2, 3, 32, 32))
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    h.features.maps = [t + 0.5 for t in targets]                 # each level: mean 0.5^2
    loss, levels = h(g, torch.zeros(2, 3, 32, 32))
    assert levels[8].item() == pytest.approx(0.25) and levels[16].item() == pytest.approx(0.25)
    assert loss.item() == pytest.approx(2.0 * 0.5)
    loss.backward()                                              # gradient reaches the predictors
    assert h.predictors["8"].conv1.weight.grad is not None


def test_vit_and_resnet_feature_callables(tmp_path):
    kw = dict(input_size=32, patch_size=8, depth=4, embed_dim=16, num_heads=2)
    vit = vit_features("vit_tiny_patch16_224", **kw)
    imgs = torch.rand(2, 3, 32, 32) * 2 - 1
    maps = vit(imgs)
    assert [tuple(m.shape) for m in maps] == [(2, 16, 4, 4)] * 4 and vit.channels == [16] * 4
    m = vit.extract.model                                        # last map = final-normed patch tokens
    tokens = m.forward_features((((imgs + 1) / 2) - vit.mean) / vit.std)[:, m.num_prefix_tokens:]
    torch.testing.assert_close(maps[3], tokens.transpose(1, 2).reshape(2, 16, 4, 4), atol=1e-5, rtol=1e-5)
    assert vit_features("vit_tiny_patch16_224", **{**kw, "depth": 12}).extract.indices == [2, 5, 8, 11]
    torch.save(m.state_dict(), tmp_path / "vit.pt")
    again = vit_features("vit_tiny_patch16_224", weights=tmp_path / "vit.pt", **kw)
    torch.testing.assert_close(again(imgs)[2], maps[2])
    with pytest.raises(FileNotFoundError):
        vit_features("vit_tiny_patch16_224", weights=tmp_path / "missing.pt", **kw)
    with pytest.raises(FileNotFoundError):
        vit_features("vit_tiny_patch16_224", weights=True, **kw)
    res = resnet_features("resnet18", input_size=32)
    assert res.channels == [64, 128, 256, 512]
    assert [m.shape[-1] for m in res(imgs)] == [8, 4, 2, 1]


def test_feature_inputs_area_resize_and_normalisation_by_hand():
    """resize="area" (the HSR release's): each input pixel the mean of its block; mean/std as given."""
    seen = []
    probe = torch.nn.Module()
    probe.forward = lambda x: (seen.append(x), [x] * 4)[1]
    from ssl_lab.nets.extractors import FrozenFeatures
    f = FrozenFeatures(probe, [3] * 4, 2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0), name="probe", resize="area")
    img = torch.zeros(1, 3, 4, 4)
    img[..., :2, :2] = 1.0                   # the top-left block white ([-1, 1]), the rest mid-grey 0
    f(img)
    x = seen[0]
    # [0, 1]: 1.0 in the top-left block, 0.5 elsewhere -> (v - 0.5) / std per channel
    expected = torch.tensor([[0.5, 0.0], [0.0, 0.0]]).expand(3, 2, 2) / torch.tensor([0.25, 0.5, 1.0]).view(3, 1, 1)
    torch.testing.assert_close(x[0], expected)
    with pytest.raises(ValueError, match="resize"):
        FrozenFeatures(probe, [3] * 4, 2, (0, 0, 0), (1, 1, 1), "probe", resize="nearest")


# -- training -----------------------------------------------------------------------------
def test_two_step_training_16px_returns_finite_losses():
    arch = dict(TINY32, resolution=16)
    cfg = gan_config("smoke", arch=arch, batch=4, log_every=1, augment_p=0.2)
    out = train_gan(torch.rand(12, 3, 16, 16), cfg, seed=0, steps=2, progress=False)
    assert len(out["history"]) == 2 and out["nimg"] == 8
    h0 = out["history"][0]
    assert {"d_loss", "g_loss", "r1", "pl", "p"} <= set(h0)     # step 0 runs both lazy regularisers
    assert all(math.isfinite(v) for h in out["history"] for v in h.values())
    G = Generator(8, 8, 16, mapping_layers=2, channel_base=128, channel_max=16)
    G.load_state_dict(out["G_ema"])
    assert G(torch.randn(2, 8)).shape == (2, 3, 16, 16)


def test_training_with_hsr_switches_on_after_warmup():
    feats = vit_features("vit_tiny_patch16_224", input_size=32, patch_size=8, depth=4,
                         embed_dim=16, num_heads=2)
    cfg = gan_config("smoke", arch=TINY32, batch=4, log_every=1, hsr=True, hsr_hidden=8,
                     hsr_warmup_kimg=0.004)                      # on from nimg = 4, i.e. step 1
    out = train_gan(torch.rand(8, 3, 32, 32), cfg, seed=0, steps=2, progress=False, features=feats)
    assert out["hsr_pairs"] == [(4, 3), (8, 2), (16, 1), (32, 0)]
    h0, h1 = out["history"]
    assert "hsr" not in h0 and math.isfinite(h1["hsr"]) and h1["hsr"] > 0
    assert h1["hsr"] == pytest.approx(sum(h1[f"hsr_{r}"] for r in (4, 8, 16, 32)), rel=1e-5)
    with pytest.raises(ValueError, match="features"):
        train_gan(torch.rand(8, 3, 32, 32), cfg, steps=1, progress=False)


# -- branching from a warmed-up state ---------------------------------------------------------
TINY16 = dict(TINY32, resolution=16)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _branch_cfg(**kw):
    return gan_config("smoke", arch=TINY16, batch=4, log_every=2, augment_p=0.2, ada_kimg=0.1, **kw)


def test_keep_state_round_trip(tmp_path):
    imgs = torch.rand(12, 3, 16, 16)
    warm = train_gan(imgs, _branch_cfg(), steps=4, progress=False, keep_state=True)
    assert "state" not in train_gan(imgs, _branch_cfg(), steps=1, progress=False)
    torch.save(warm, tmp_path / "warm.pt")
    warm = torch.load(tmp_path / "warm.pt")                     # plain tensors / dicts: weights_only loads it
    st = warm["state"]
    assert st["nimg"] == warm["nimg"] == 16 and st["step"] == 4 and float(st["ada"]["p"]) > 0.2
    again = train_gan(imgs, _branch_cfg(), steps=0, progress=False, resume=warm, keep_state=True)
    s2 = again["state"]
    for k in ("G", "D", "G_ema"):
        assert _same(st[k], s2[k]), k
    assert _same(again["G_ema"], st["G_ema"])
    assert torch.equal(s2["ada"]["p"], st["ada"]["p"]) and again["augment_p"] == warm["augment_p"]
    assert s2["ada"] == {**st["ada"], "p": s2["ada"]["p"]} and torch.equal(s2["pl_mean"], st["pl_mean"])
    assert float(st["pl_mean"]) > 0
    for k in ("opt_G", "opt_D"):
        assert s2[k]["param_groups"] == st[k]["param_groups"]
        assert all(_same(st[k]["state"][i], s2[k]["state"][i]) for i in st[k]["state"])
    assert (again["nimg"], again["branch_nimg"], again["history"], s2["step"]) == (16, 0, [], 4)
    assert torch.equal(s2["torch_rng"], st["torch_rng"]) and torch.equal(s2["data"]["gen"], st["data"]["gen"])
    before = copy.deepcopy(st)                                  # a branch leaves the warm-up's state alone
    train_gan(imgs, _branch_cfg(), steps=1, progress=False, resume=warm)
    for k in ("opt_G", "opt_D"):
        assert all(_same(before[k]["state"][i], st[k]["state"][i]) for i in st[k]["state"])
    assert _same(before["G"], st["G"]) and torch.equal(before["ada"]["p"], st["ada"]["p"])


def test_split_training_equals_one_run():
    imgs = torch.rand(12, 3, 16, 16)
    one = train_gan(imgs, _branch_cfg(), steps=8, progress=False)
    warm = train_gan(imgs, _branch_cfg(), steps=4, progress=False, keep_state=True)
    rest = train_gan(imgs, _branch_cfg(), steps=4, progress=False, resume=warm)
    assert _same(one["G_ema"], rest["G_ema"])                  # seed=None: the random streams continue
    drop = ("images_per_s",)
    strip = lambda hs: [{k: v for k, v in h.items() if k not in drop} for h in hs]
    assert strip(warm["history"] + rest["history"]) == strip(one["history"])
    assert [h["step"] for h in rest["history"]] == [6, 8] and rest["history"][-1]["kimg"] == 0.032
    assert (rest["nimg"], rest["branch_nimg"], rest["augment_p"]) == (32, 16, one["augment_p"])
    # a Dataset, resumed in the middle of an epoch (10 images = 2 batches per epoch)
    ds = torch.utils.data.TensorDataset(torch.rand(10, 3, 16, 16))
    one = train_gan(ds, _branch_cfg(), steps=5, progress=False)
    warm = train_gan(ds, _branch_cfg(), steps=3, progress=False, keep_state=True)
    assert warm["state"]["data"]["taken"] == 1
    assert _same(one["G_ema"], train_gan(ds, _branch_cfg(), steps=2, progress=False, resume=warm)["G_ema"])
    # an explicit seed restarts the streams: deterministic given (resume, seed), not the continuation
    s1 = [train_gan(imgs, _branch_cfg(), steps=1, progress=False, resume=warm, seed=1)["G_ema"] for _ in range(2)]
    assert _same(*s1)                                          # (and a branch leaves the warm-up's state as it was)
    assert not _same(s1[0], train_gan(imgs, _branch_cfg(), steps=1, progress=False, resume=warm)["G_ema"])


def test_checkpoint_resumes_a_killed_run_to_the_same_weights(tmp_path, monkeypatch):
    import ssl_lab.gan.train as gan_train
    imgs = torch.rand(12, 3, 16, 16)
    one = train_gan(imgs, _branch_cfg(), steps=6, progress=False, snapshots=3)
    assert sorted(one["snapshots"]) == [2, 4, 6] and _same(one["snapshots"][6], one["G_ema"])
    ck = tmp_path / "gan.ckpt"
    real_step = gan_train.train_step

    def killed_at_5(*a, **k):
        if a[6] == 4:                                    # the 5th step (0-based step 4)
            raise KeyboardInterrupt
        return real_step(*a, **k)
    monkeypatch.setattr(gan_train, "train_step", killed_at_5)
    with pytest.raises(KeyboardInterrupt):
        train_gan(imgs, _branch_cfg(), steps=6, progress=False, checkpoint=ck, checkpoint_every=2, snapshots=3)
    monkeypatch.setattr(gan_train, "train_step", real_step)
    assert torch.load(ck, weights_only=False)["done"] == 4
    again = train_gan(imgs, _branch_cfg(), steps=6, progress=False, checkpoint=ck, snapshots=3)
    assert _same(one["G_ema"], again["G_ema"])         # resumed at step 4: the uninterrupted run's weights
    assert all(_same(one["snapshots"][k], again["snapshots"][k]) for k in (2, 4, 6))
    assert [h["step"] for h in again["history"]] == [h["step"] for h in one["history"]]
    assert again["nimg"] == one["nimg"]
    # the last write follows the last step: a finished run comes back without training
    monkeypatch.setattr(gan_train, "train_step", killed_at_5)
    assert _same(one["G_ema"], train_gan(imgs, _branch_cfg(), steps=6, progress=False, checkpoint=ck)["G_ema"])
    with pytest.raises(ValueError, match="another config"):
        train_gan(imgs, _branch_cfg(lr=0.001), steps=6, progress=False, checkpoint=ck)


def test_branch_turns_hsr_on_after_warmup():
    feats = vit_features("vit_tiny_patch16_224", input_size=32, patch_size=8, depth=4,
                         embed_dim=16, num_heads=2)
    imgs = torch.rand(8, 3, 32, 32)
    base = dict(arch=TINY32, batch=4, log_every=1, hsr_hidden=8)
    warm = train_gan(imgs, gan_config("smoke", **base), steps=2, progress=False, keep_state=True)
    assert warm["state"]["hsr"] is None and len(warm["state"]["opt_G"]["param_groups"]) == 1
    cfg = gan_config("smoke", **base, hsr=True, hsr_levels="high", hsr_warmup_kimg=0.008, pl_weight=0.0)
    out = train_gan(imgs, cfg, steps=2, progress=False, features=feats, resume=warm, keep_state=True)
    assert [h["step"] for h in out["history"]] == [3, 4] and out["nimg"] == 16 and out["branch_nimg"] == 8
    for h in out["history"]:                                    # on from the branch's first step (nimg 8)
        assert math.isfinite(h["hsr"]) and h["hsr"] > 0
        assert h["hsr"] == pytest.approx(h["hsr_4"] + h["hsr_8"], rel=1e-5)
    assert out["hsr_pairs"] == [(4, 3), (8, 2)] and not out["hsr_resumed"]
    groups = out["state"]["opt_G"]["param_groups"]              # G's group + the new predictors
    n_pred = sum(1 for _ in out["state"]["hsr"]["predictors"])
    assert len(groups) == 2 and len(groups[1]["params"]) == n_pred
    assert all(g["lr"] == pytest.approx(cfg.lr) for g in groups)  # pl off: no lazy-reg. correction
    assert "pl" not in out["history"][0]
    # a branch of the HSR branch with the same HSR reuses the predictors and their Adam state
    again = train_gan(imgs, cfg, steps=1, progress=False, features=feats, resume=out, keep_state=True)
    assert again["hsr_resumed"] and again["history"][0]["step"] == 5
    # a branch switching HSR off again drops them
    off = train_gan(imgs, gan_config("smoke", **base), steps=1, progress=False, resume=out, keep_state=True)
    assert off["state"]["hsr"] is None and len(off["state"]["opt_G"]["param_groups"]) == 1


def test_branch_with_mismatched_arch_batch_or_lr_raises():
    imgs = torch.rand(8, 3, 16, 16)
    warm = train_gan(imgs, _branch_cfg(), steps=1, progress=False, keep_state=True)
    for field, kw in [("arch", dict(arch=dict(TINY16, channel_max=8))), ("batch", dict(batch=8)),
                      ("lr", dict(lr=0.001))]:
        cfg = gan_config(_branch_cfg(), **kw)
        with pytest.raises(ValueError, match=field):
            train_gan(imgs, cfg, steps=1, progress=False, resume=warm)
    with pytest.raises(ValueError, match="keep_state"):
        train_gan(imgs, _branch_cfg(), steps=1, progress=False,
                  resume=train_gan(imgs, _branch_cfg(), steps=1, progress=False))


def test_single_process_training_is_unchanged_by_the_data_parallel_code():
    """World size 1 draws and trains exactly as before data-parallel training existed (a
    running training resumes from its checkpoints with this code): 4 steps with ADA (p from
    0.3, adjusted every step), style mixing, R1 and path length every 2nd step reproduce the
    losses, ADA's p, the path-length mean and the weight sums recorded with the code before
    (commit 04d90f0, 1 thread). Bit-identical on the machine that recorded them (checked
    there for this run, one with HSR from a Dataset, one in channels_last + bf16); here with
    tolerances for other CPUs' float kernels: any change in the random draws moves the
    losses by 1e-2, far beyond them."""
    cfg = gan_config("smoke", arch=TINY16, batch=8, log_every=1, augment_p=0.3, ada_target=0.6,
                     ada_interval=1, ada_kimg=0.1, d_reg_interval=2, g_reg_interval=2)
    imgs = torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    out = train_gan(imgs, cfg, seed=0, steps=4, progress=False, keep_state=True)
    before = [dict(d_loss=1.519551, r1=0.0084315, g_loss=0.5142884, pl=0.4273282, pl_mean=0.0063947, p=0.38),
              dict(d_loss=1.4604595, g_loss=0.5850414, p=0.46),
              dict(d_loss=1.4515494, r1=0.0184312, g_loss=0.6522501, pl=0.5049689, pl_mean=0.0135458, p=0.38),
              dict(d_loss=1.469996, g_loss=0.7254705, p=0.46)]
    assert [h["real_sign"] for h in out["history"]] == [1.0, 1.0, 0.5, 1.0]
    for h, ref in zip(out["history"], before):
        assert set(ref) | {"step", "kimg", "images_per_s", "real_sign", "r_t"} == set(h)
        assert {k: h[k] for k in ref} == pytest.approx(ref, rel=1e-4, abs=1e-6)
    sums = {n: sum(v.double().sum().item() for v in out["state"][n].values()) for n in ("G", "D", "G_ema")}
    assert sums == pytest.approx({"G": -1177.4009851, "D": -85.4453637, "G_ema": -1177.3977505}, abs=1e-3)
    assert float(out["state"]["pl_mean"]) == pytest.approx(0.0135458, rel=1e-4)
