"""Unit tests of ssl_lab.ssl.dino (the small DINO ViT, stand-in for HSR's "ViT DINO").

Expected loss values are recomputed with plain Python loops over math.exp/log; networks are
tiny (depth 2, width 48, 32-px images) so the file runs in seconds on two CPU cores; nothing
is downloaded (HF_HUB_OFFLINE)."""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from ssl_lab.ssl.dino import (DEFAULTS, DINOHead, MultiCropAugment, build_dino, dino_loss,
                              lr_at, small_vit, target_entropy, teacher_temperature, train_dino,
                              update_center)

TINY = dict(size=32, local_size=16, n_local=1, patch_size=8, depth=2, embed_dim=48,
            num_heads=3, out_dim=32, head_hidden=32, bottleneck=16, batch_size=4, steps=2)


def _softmax(row, temp):
    e = [math.exp(v / temp) for v in row]
    return [v / sum(e) for v in e]


def _ce(q, s_row, temp):
    lse = math.log(sum(math.exp(v / temp) for v in s_row))
    return -sum(qk * (v / temp - lse) for qk, v in zip(q, s_row))


def _loop_loss(student, teacher, center, ts, tt, skip_same=True):
    """Reference: B = 1, student rows = crops, teacher rows = the 2 global crops."""
    terms = [_ce(_softmax([t - c for t, c in zip(teacher[i], center)], tt), student[j], ts)
             for i in range(len(teacher)) for j in range(len(student))
             if not (skip_same and i == j)]
    return sum(terms) / len(terms)


# -- loss -------------------------------------------------------------------------------------
def test_dino_loss_hand_case():
    s = [[1.0, 0.0, -1.0], [0.2, 0.5, 0.1], [-0.3, 0.4, 0.9]]      # global 1, global 2, local
    t = [[0.9, 0.1, 0.0], [0.0, 0.3, 0.6]]
    c = [0.1, -0.05, 0.02]
    expected = _loop_loss(s, t, c, 0.1, 0.04)       # 4 pairs: (0,1) (0,2) (1,0) (1,2)
    got = dino_loss(torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64),
                    torch.tensor([c], dtype=torch.float64), 0.1, 0.04)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, abs=1e-6, rel=0)
    # other temperatures go through as well
    got = dino_loss(torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64),
                    torch.tensor(c, dtype=torch.float64), 0.2, 0.07)
    assert got.item() == pytest.approx(_loop_loss(s, t, c, 0.2, 0.07), abs=1e-6, rel=0)


def test_dino_loss_batch_is_crop_major_mean():
    """B = 2: the loss is the mean of the two per-sample losses (rows are crop-major)."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)      # (crop, sample, K)
    t = torch.randn(2, 2, 5, generator=g, dtype=torch.float64)
    c = torch.randn(5, generator=g, dtype=torch.float64)
    per = [_loop_loss(s[:, b].tolist(), t[:, b].tolist(), c.tolist(), 0.1, 0.04) for b in (0, 1)]
    got = dino_loss(s.reshape(6, 5), t.reshape(4, 5), c)
    assert got.item() == pytest.approx(sum(per) / 2, abs=1e-9)


def test_dino_loss_skips_same_crop_pairs():
    """2 global crops, student = the sharpened teacher outputs, matched across crops (A) or
    to the same crop (B). Including same-crop pairs would make A and B equal (both would
    use all four pairs); skipping them makes A the minimum and B strictly worse."""
    ts, tt = 0.1, 0.04
    t = torch.tensor([[2.0, 0.0, -1.0], [-1.0, 1.0, 0.5]], dtype=torch.float64)
    c = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
    sharp = (t - c) * ts / tt
    a, b = sharp.flip(0), sharp
    la, lb = dino_loss(a, t, c, ts, tt), dino_loss(b, t, c, ts, tt)
    assert la.item() < lb.item() - 0.1
    assert la.item() == pytest.approx(_loop_loss(a.tolist(), t.tolist(), c.tolist(), ts, tt))
    all_a = _loop_loss(a.tolist(), t.tolist(), c.tolist(), ts, tt, skip_same=False)
    all_b = _loop_loss(b.tolist(), t.tolist(), c.tolist(), ts, tt, skip_same=False)
    assert all_a == pytest.approx(all_b)                 # the with-same-pairs loss can't tell
    assert abs(la.item() - all_a) > 0.1


def test_dino_loss_minimum_is_the_sharpened_teacher():
    """Cross-entropy is minimal (= entropy of the targets, zero gradient) when the student's
    softmax equals the teacher's centred, sharpened softmax of the *other* global crop."""
    ts, tt = 0.1, 0.04
    g = torch.Generator().manual_seed(1)
    t = torch.randn(2 * 3, 7, generator=g, dtype=torch.float64)           # B = 3, K = 7
    c = torch.randn(1, 7, generator=g, dtype=torch.float64)
    t.requires_grad_(True)
    sharp = ((t.detach() - c) * ts / tt).view(2, 3, 7)
    s = torch.cat([sharp[1], sharp[0]]).clone().requires_grad_(True)       # swapped crops
    loss = dino_loss(s, t, c, ts, tt)
    loss.backward()
    assert s.grad.abs().max().item() < 1e-10
    assert t.grad is None                                                  # no grad to teacher
    q = torch.softmax((t.detach() - c) / tt, -1)
    entropy = -(q * q.log()).sum(-1).mean()
    assert loss.item() == pytest.approx(entropy.item(), abs=1e-9)
    # adding a per-row constant changes nothing (softmax), any other change raises the loss
    assert dino_loss(s.detach() + 3.0, t, c, ts, tt).item() == pytest.approx(loss.item())
    for _ in range(3):
        d = 0.05 * torch.randn(s.shape, generator=g, dtype=torch.float64)
        assert dino_loss(s.detach() + d, t, c, ts, tt).item() > loss.item()


def test_update_center_is_an_ema_of_the_batch_mean():
    g = torch.Generator().manual_seed(2)
    center = torch.randn(1, 6, generator=g)
    t = torch.randn(10, 6, generator=g)
    for m in (0.9, 0.5):
        new = update_center(center, t, m)
        assert new.shape == center.shape
        torch.testing.assert_close(new - center, (1 - m) * (t.mean(0, keepdim=True) - center),
                                   atol=1e-6, rtol=0)
    assert torch.equal(update_center(center, t, 1.0), center)
    # a (K,) centre stays (K,)
    assert update_center(torch.zeros(6), t).shape == (6,)


def test_target_entropy_hand_cases():
    """Equal logits (or logits equal to the centre): the uniform target, ln K. Row [ln 3, 0] at
    temperature 1: the target (3/4, 1/4), entropy -(3/4 ln 3/4 + 1/4 ln 1/4). A lower temperature
    sharpens it; a row far ahead of the rest gives about 0. The mean over rows is returned."""
    assert target_entropy(torch.zeros(4, 5), torch.zeros(1, 5), 0.04) == pytest.approx(math.log(5))
    t = torch.randn(3, 5)
    assert target_entropy(t, t[0], 0.04) < math.log(5)
    assert target_entropy(t[:1], t[0], 0.04) == pytest.approx(math.log(5))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert target_entropy(torch.tensor([[math.log(3), 0.0]]), torch.zeros(2), 1.0) == pytest.approx(h)
    assert target_entropy(torch.tensor([[math.log(3), 0.0]]), torch.zeros(2), 0.5) < h
    assert target_entropy(torch.tensor([[1.0, -1.0, -1.0]]), torch.zeros(3), 0.01) < 1e-6
    two = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]])
    assert target_entropy(two, torch.zeros(2), 1.0) == pytest.approx((h + math.log(2)) / 2)


def test_schedules():
    # teacher temperature: linear 0.04 -> 0.07 over 10 steps, then 0.07; constant by default
    assert teacher_temperature(0, 10, 0.04, 0.07) == pytest.approx(0.04)
    assert teacher_temperature(5, 10, 0.04, 0.07) == pytest.approx(0.055)
    assert teacher_temperature(10, 10, 0.04, 0.07) == pytest.approx(0.07)
    assert teacher_temperature(99, 10, 0.04, 0.07) == pytest.approx(0.07)
    assert teacher_temperature(3, 0) == 0.04
    # lr: warm-up to base, then cosine to final
    assert lr_at(0, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 0.0, warmup=10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 0.0, warmup=10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, 1e-6, warmup=10) == pytest.approx(1e-6)


# -- networks ---------------------------------------------------------------------------------
def test_dino_head_shapes_and_norm(one_thread):
    torch.manual_seed(0)
    head = DINOHead(48, out_dim=20, hidden=16, bottleneck=8)
    y = head(torch.randn(5, 48))
    assert y.shape == (5, 20)
    # last layer rows have norm 1 (g frozen at 1) and inputs are unit vectors: |logit| <= 1
    assert y.abs().max().item() <= 1 + 1e-5
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(20), atol=1e-5, rtol=0)
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    assert DINOHead(48, 20, 16, 8, norm_last_layer=False).last_layer \
        .parametrizations.weight.original0.requires_grad
    # the paper's sizes are documented, the small ones are the defaults
    assert "65536" in DINOHead.__doc__ and "2048" in DINOHead.__doc__


def test_small_vit_blocks_grid_and_state_dict_round_trip(one_thread):
    torch.manual_seed(0)
    m = small_vit()                                   # 64 px, patch 8, 12 blocks, width 192
    assert len(m.blocks) == 12 and m.embed_dim == 192
    x = torch.rand(1, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        tokens = m.forward_features(x)
        assert tokens.shape == (1, 1 + (64 // 8) ** 2, 192)
        maps = m.forward_intermediates(x, indices=[2, 5, 8, 11], intermediates_only=True)
        assert [tuple(t.shape) for t in maps] == [(1, 192, 8, 8)] * 4
        assert m(torch.rand(2, 3, 32, 32)).shape == (2, 192)     # local crop size too
    torch.manual_seed(1)
    m2 = small_vit().eval()
    sd = m.state_dict()
    assert not torch.equal(m2.state_dict()["pos_embed"], sd["pos_embed"])
    m2.load_state_dict(sd, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(m2.forward_features(x), tokens)
    with pytest.raises(ValueError):
        small_vit(pretrained=True)


def test_multicrop_augment(one_thread):
    x = (torch.rand(3, 3, 40, 40) * 255).to(torch.uint8)
    aug = MultiCropAugment(size=32, local_size=16, n_local=3)
    crops = aug(x, generator=torch.Generator().manual_seed(0))
    assert [tuple(c.shape) for c in crops] == [(3, 3, 32, 32)] * 2 + [(3, 3, 16, 16)] * 3
    assert all(c.dtype == torch.float32 and c.min() >= 0 and c.max() <= 1 for c in crops)
    again = aug(x, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(crops, again))
    assert not torch.equal(crops[0], crops[1])
    assert MultiCropAugment().p_flip == 0.0 and DEFAULTS["hflip"] == 0.0


# -- training ---------------------------------------------------------------------------------
def test_train_dino_two_steps(one_thread):
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    r = train_dino(images, dict(TINY), seed=0, progress=False)
    assert len(r["history"]) == 2 and all(math.isfinite(v) for v in r["history"])
    assert r["schedule"]["momentum"][0] == pytest.approx(0.996)
    assert r["vit_kwargs"] == dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3)
    # the teacher backbone state dict loads into a rebuilt network
    net = small_vit(**r["vit_kwargs"])
    net.load_state_dict(r["state_dict"], strict=True)
    assert all(v.device.type == "cpu" for v in r["state_dict"].values())
    # teacher != student and both moved away from the initialisation
    torch.manual_seed(0)
    init = build_dino(r["config"])[0].backbone.state_dict()
    differ = lambda a, b: any(not torch.equal(a[k], b[k]) for k in a)   # noqa: E731
    assert differ(r["state_dict"], r["student_state_dict"])
    assert differ(r["state_dict"], init) and differ(r["student_state_dict"], init)
    with pytest.raises(KeyError):
        train_dino(images, dict(TINY, bogus=1), progress=False)


def test_train_dino_on_a_resnet_with_sgd(one_thread):
    """DINO on a ResNet as the paper's released ResNet-50 command runs it: SGD at 0.03 * batch /
    256, constant weight decay 1e-4, smaller crops; the pooled map feeds the head, the teacher's
    BatchNorms use batch statistics (its running means move), and its backbone loads into
    ``resnet_features``."""
    from ssl_lab.nets.backbones import Backbone
    from ssl_lab.nets.extractors import resnet_features
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    cfg = dict(TINY, backbone="test_resnet", optimizer="sgd", weight_decay=1e-4, weight_decay_end=1e-4,
               global_scale=(0.14, 1.0), local_scale=(0.05, 0.14), steps=3, warmup_frac=0.0)
    r = train_dino(images, cfg, seed=0, progress=False)
    assert r["backbone"] == "test_resnet" and "vit_kwargs" not in r
    assert all(math.isfinite(v) for v in r["history"])
    assert r["schedule"]["lr"][0] == pytest.approx(0.03 * 4 / 256)
    assert r["schedule"]["weight_decay"] == [pytest.approx(1e-4)] * 3
    torch.manual_seed(0)
    init = Backbone("test_resnet", normalize_input=False).state_dict()
    bn = [k for k in init if k.endswith("running_mean")]
    assert bn and all(not torch.equal(r["state_dict"][k], init[k]) for k in bn)
    f = resnet_features("test_resnet", weights=r["state_dict"], input_size=32)
    assert len(f(torch.zeros(2, 3, 32, 32))) == 4
    with pytest.raises(ValueError, match="optimizer"):
        train_dino(images, dict(TINY, optimizer="lamb"), progress=False)


def test_train_dino_killed_and_resumed_equals_uninterrupted(one_thread, tmp_path):
    """Stopped after 2 of 5 steps (checkpoint written), then resumed: the same teacher, student,
    centre, losses and schedule as one uninterrupted run."""
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    cfg = dict(TINY, steps=5, batch_size=3)     # 3 does not divide 8: the resume crosses a new pass
    whole = train_dino(images, cfg, seed=1, progress=False)
    ckpt = tmp_path / "dino.ckpt"
    assert train_dino(images, cfg, seed=1, progress=False, checkpoint=ckpt, max_steps=2) is None
    assert torch.load(ckpt, weights_only=False)["step"] == 2
    again = train_dino(images, cfg, seed=1, progress=False, checkpoint=ckpt, checkpoint_every=2)
    assert again["history"] == whole["history"] and again["schedule"] == whole["schedule"]
    assert again["target_entropy"] == whole["target_entropy"] and len(whole["target_entropy"]) == 5
    assert all(0 <= h <= math.log(TINY["out_dim"]) + 1e-6 for h in whole["target_entropy"])
    for key in ("state_dict", "student_state_dict"):
        assert all(torch.equal(again[key][k], whole[key][k]) for k in whole[key])
    assert torch.equal(again["center"], whole["center"])


def test_teacher_is_the_ema_of_the_student(one_thread):
    """After one step, teacher = tau * init + (1 - tau) * student (tau = tau_base at step 0)."""
    images = torch.rand(8, 3, 32, 32)
    r = train_dino(images, dict(TINY, steps=1, tau_base=0.5), seed=3, progress=False)
    torch.manual_seed(3)
    init = build_dino(r["config"])[0].backbone.state_dict()
    stu, tea = r["student_state_dict"], r["state_dict"]
    for k in tea:
        torch.testing.assert_close(tea[k], 0.5 * init[k] + 0.5 * stu[k], atol=1e-6, rtol=0)
    assert any(not torch.equal(tea[k], stu[k]) for k in tea)


def test_teacher_plugs_into_hsr_vit_features(one_thread):
    """``vit_features`` takes the custom-size teacher as is (timm kwargs + a state dict).
    Depth 4 (blocks 1, 2, 3, 4): with depth < 4 vit_features' default blocks repeat and timm
    returns each repeated block once."""
    from ssl_lab.nets.extractors import vit_features
    images = torch.rand(8, 3, 32, 32)
    r = train_dino(images, dict(TINY, steps=1, depth=4), seed=0, progress=False)
    assert r["vit_features_kwargs"] == dict(name="vit_tiny_patch16_224", input_size=32,
                                            patch_size=8, depth=4, embed_dim=48, num_heads=3)
    feats = vit_features(weights=r["state_dict"], **r["vit_features_kwargs"])
    assert feats.channels == [48] * 4 and feats.name.endswith("blocks[1, 2, 3, 4]")
    maps = feats(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert [tuple(m.shape) for m in maps] == [(2, 48, 4, 4)] * 4
    # the weights really are the teacher's: the maps are the rebuilt teacher's normed blocks
    net = small_vit(**r["vit_kwargs"]).eval()
    net.load_state_dict(r["state_dict"])
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net.forward_intermediates((x - mean) / std, indices=[0, 1, 2, 3], norm=True,
                                        intermediates_only=True)
    for a, b in zip(feats(x * 2 - 1), ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_vit_features_refuses_repeated_blocks():
    from ssl_lab.nets.extractors import vit_features
    with pytest.raises(ValueError, match="4 different block numbers"):
        vit_features("vit_tiny_patch16_224", input_size=32, patch_size=8, depth=2)
