"""LEAD stage 2: the loss of Eq. 3.2-3.3 against a plain loop, the dense network, NMF codes."""
import math

import pytest
import torch

from ssl_lab.nets.backbones import Backbone
from ssl_lab.ssl.lead import (DenseNet, encoder_drift, NMFFeatures, ProjectedHypercolumn, ProjectionHead, lead_loss,
                              nmf_codes, similarity_distribution, train_stage2)


def _loop_loss(f_i, f_j, h_i, h_j, tau):
    """Eq. 3.3 written out: sum over positions u of i of -sum_v p_uv log q_uv, mean over pairs."""
    B, _, hh, ww = f_i.shape
    total = 0.0
    for b in range(B):
        pos = [(r, c) for r in range(hh) for c in range(ww)]
        for (r, c) in pos:
            def dist(a, bmap):
                sims = [torch.dot(a, bmap[:, r2, c2]) / (a.norm() * bmap[:, r2, c2].norm()) / tau
                        for (r2, c2) in pos]
                z = sum(math.exp(s) for s in sims)
                return [math.exp(s) / z for s in sims]
            p = dist(h_i[b, :, r, c], h_j[b])
            q = dist(f_i[b, :, r, c], f_j[b])
            total += -sum(pk * math.log(qk) for pk, qk in zip(p, q))
    return total / B


def test_lead_loss_matches_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    f_i, f_j = (torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64) for _ in range(2))
    h_i, h_j = (torch.randn(2, 5, 2, 3, generator=g, dtype=torch.float64) for _ in range(2))
    tau = 0.5
    want = _loop_loss(f_i, f_j, h_i, h_j, tau)
    got_sum = lead_loss(f_i, f_j, h_i, h_j, tau, reduction="sum")
    got_mean = lead_loss(f_i, f_j, h_i, h_j, tau, reduction="mean")
    assert abs(float(got_sum) - want) < 1e-4 * abs(want)          # the loss runs in float32
    assert abs(float(got_mean) - want / 6) < 1e-4 * abs(want)      # 2 x 3 positions of i


def test_loss_is_the_target_entropy_when_the_compact_maps_are_the_hypercolumns():
    # cross-entropy >= entropy, with equality iff q = p
    g = torch.Generator().manual_seed(1)
    h_i, h_j = torch.randn(2, 8, 3, 3, generator=g), torch.randn(2, 8, 3, 3, generator=g)
    p = similarity_distribution(h_i, h_j, 0.1)
    assert torch.allclose(p.sum(-1), torch.ones(2, 9))
    entropy = -(p * p.log()).sum(-1).mean()
    assert abs(float(lead_loss(h_i, h_j, h_i, h_j, 0.1)) - float(entropy)) < 1e-5
    f_i, f_j = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    assert float(lead_loss(f_i, f_j, h_i, h_j, 0.1)) > float(entropy) + 0.1


def test_loss_gradient_reaches_the_compact_maps_only():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 4, 3, 3, generator=g, requires_grad=True)
    h = torch.randn(2, 8, 3, 3, generator=g, requires_grad=True)
    lead_loss(f, f.roll(1, 0), h, h.roll(1, 0)).backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    assert h.grad is None                               # the targets come from a frozen network
    with pytest.raises(ValueError, match="grid"):
        lead_loss(f, f, h[..., :2], h[..., :2])


def test_dense_net_is_a_stride_4_map_with_the_stage1_encoder():
    teacher = Backbone("resnet18")
    net = DenseNet("resnet18", feat_dim=16, width=8, encoder_state=teacher.state_dict()).eval()
    x = torch.rand(2, 3, 48, 40)
    assert net(x).shape == (2, 16, 12, 10)
    for k, v in teacher.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[k], v)
    head = ProjectionHead(16, 32).eval()
    assert head(net(x)).shape == (2, 32, 12, 10)
    cl = ProjectedHypercolumn(teacher, 24)
    assert cl(x).shape == (2, 24, 12, 10)
    cl.train()
    assert not cl.backbone.training and not any(p.requires_grad for p in cl.backbone.parameters())


def test_dense_net_over_stages_1_to_3_has_no_stage_4():
    teacher = Backbone("resnet18")
    net = DenseNet("resnet18", feat_dim=16, width=8, encoder_state=teacher.state_dict(), stages=3).eval()
    own = net.encoder.state_dict()
    assert own and not any("layer4" in k for k in net.state_dict())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in own.items())
    assert set(teacher.state_dict()) - set(own) == {k for k in teacher.state_dict() if "layer4" in k}
    assert len(net.decoder.lateral) == 3 and net(torch.rand(2, 3, 48, 40)).shape == (2, 16, 12, 10)
    full = sum(p.numel() for p in DenseNet("resnet18", 16, 8).encoder.parameters())
    assert sum(p.numel() for p in net.encoder.parameters()) < 0.3 * full      # stage 4: 75 % of a ResNet-18


def test_encoder_drift_by_hand():
    torch.manual_seed(0)
    teacher = Backbone("resnet18")
    net = DenseNet("resnet18", 8, 8, encoder_state=teacher.state_dict(), stages=3)
    same = encoder_drift(net, teacher)
    assert list(same) == ["stem", "stage 1", "stage 2", "stage 3"]          # no stage 4 in net
    assert all(abs(d["norm ratio"] - 1) < 1e-12 and abs(d["cosine"] - 1) < 1e-12 for d in same.values())
    with torch.no_grad():
        for p in net.encoder.body.layer2.parameters():
            if p.dim() == 4:
                p.mul_(0.5)                                   # scaled: ratio 0.5, direction kept
        w = net.encoder.body.conv1.weight
        w.copy_(torch.where(torch.arange(w.numel()).view_as(w) % 2 == 0, w, -w))   # half the signs
    d = encoder_drift(net, teacher)
    assert abs(d["stage 2"]["norm ratio"] - 0.5) < 1e-6 and abs(d["stage 2"]["cosine"] - 1) < 1e-6
    w0 = teacher.body.conv1.weight.detach().double().flatten()
    expect = float((w0[0::2] ** 2).sum() - (w0[1::2] ** 2).sum()) / float(w0 @ w0)
    assert abs(d["stem"]["cosine"] - expect) < 1e-6 and abs(d["stem"]["norm ratio"] - 1) < 1e-6


def test_stage2_adam_without_weight_decay_keeps_the_scale_of_the_encoder(one_thread):
    """PyTorch's Adam adds weight decay to the gradient before normalising it: on weights
    followed by BatchNorm (a loss gradient near zero) it moves each about lr per step towards
    zero. Stage 2 follows DVE's released optimiser (no weight decay), so a few steps on a tiny
    net leave the encoder's stage-4 norm as it was, and 1e-2 shrinks it."""
    torch.manual_seed(0)
    teacher = Backbone("resnet18")
    images = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    ref = teacher.state_dict()["body.layer4.1.conv2.weight"].norm()
    norms = {}
    for wd in (0.0, 1e-2):
        art = train_stage2("lead", images, teacher, dict(size=32, batch_size=4, steps=3, width=8, feat_dim=8,
                                                         proj_dim=8, lr=1e-2, weight_decay=wd), progress=False)
        norms[wd] = float(art["state_dict"]["encoder.body.layer4.1.conv2.weight"].norm() / ref)
    assert 0.9 < norms[0.0] < 1.1 and norms[1e-2] < 0.9 * norms[0.0], norms


def test_nmf_codes_recover_an_exact_factorisation():
    g = torch.Generator().manual_seed(3)
    H = torch.rand(4, 12, generator=g)
    W = torch.rand(50, 4, generator=g)
    codes = nmf_codes(W @ H, H, iters=2000)
    assert (codes >= 0).all()
    rel = float((codes @ H - W @ H).norm() / (W @ H).norm())
    assert rel < 1e-2, rel


def test_nmf_features_are_non_negative_codes_of_the_hypercolumn():
    net = Backbone("resnet18").eval()
    comps = torch.rand(6, net.hypercolumn_channels)
    out = NMFFeatures(net, comps, iters=20)(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 6, 8, 8) and (out >= 0).all()


@pytest.mark.parametrize("amp", [False, "always"], ids=["fp32", "bf16"])
@pytest.mark.parametrize("method", ["lead", "dve", "cl"])
def test_train_stage2_runs_and_returns_a_loadable_state(method, amp, one_thread):
    teacher = Backbone("resnet18")
    images = (torch.rand(6, 3, 40, 40) * 255).to(torch.uint8)
    cfg = dict(size=32, batch_size=4, steps=2, width=8, feat_dim=8, proj_dim=16, amp=amp, channels_last=amp)
    art = train_stage2(method, images, teacher, cfg, progress=False)
    assert len(art["history"]) == 2 and all(math.isfinite(v) for v in art["history"])
    assert all(v.dtype != torch.bfloat16 for v in art["state_dict"].values())    # autocast keeps fp32 weights
    assert art["precision"] == ("bf16 autocast" if amp else "float32")
    if method == "cl":
        ProjectedHypercolumn(teacher, 8).proj.load_state_dict(art["state_dict"])
    else:
        DenseNet("resnet18", 8, 8).load_state_dict(art["state_dict"])


def test_lead_without_projection_head(one_thread):
    art = train_stage2("lead", torch.rand(4, 3, 32, 32), Backbone("resnet18"),
                       dict(size=32, batch_size=4, steps=1, width=8, feat_dim=8, proj_dim=None),
                       progress=False)
    assert math.isfinite(art["history"][0])


def test_fit_nmf_finds_an_exact_low_rank_factorisation():
    from ssl_lab.ssl.lead import fit_nmf
    g = torch.Generator().manual_seed(4)
    x = torch.rand(200, 3, generator=g) @ torch.rand(3, 20, generator=g)
    fit = fit_nmf(x, 3, max_iter=500)
    assert fit["components"].shape == (3, 20) and (fit["components"] >= 0).all()
    assert fit["relative_error"] < 0.02, fit
    codes = nmf_codes(x, fit["components"], iters=500)
    assert float((codes @ fit["components"] - x).norm() / x.norm()) < 0.03


def test_stage1_learning_curve_evaluates_every_snapshot_with_its_yardsticks(home, one_thread):
    from ssl_lab import paths, zoo
    from ssl_lab.learning_curve import stage1_curve
    from ssl_lab.recipes import pretraining_images
    from ssl_lab.ssl.train import train_ssl
    cfg = {k: v for k, v in zoo.config("lead/stage1-byol", "smoke").items() if k not in ("scale", "n", "render", "queue")}
    art = train_ssl("byol", pretraining_images("smoke", 32, 48), {**cfg, "steps": 4}, seed=0, progress=False, snapshots=2)
    paths.atomic_save(art, zoo.cache_path("lead/stage1-byol", "smoke", 0))
    out = stage1_curve("lead/stage1-byol", "smoke", record=False)
    assert list(out["rows"]) == ["step 0", "step 2", "step 4", "no features", "7x7 pixel patches"]
    assert out["images_seen"]["step 4"] == 4 * cfg["batch_size"]
    assert all(isinstance(out["rows"][f"step {s}"]["gates passed"], bool) for s in (0, 2, 4))
    assert out["rows"]["step 0"]["gates passed"] is False              # random init cannot beat itself
    levels = out["rows"]["step 4"]["levels"]                           # each stage alone
    assert list(levels) == ["layer1", "layer2", "layer3", "layer4"] and all(v > 0 for v in levels.values())
    from ssl_lab.plotting import learning_curve
    fig = learning_curve({"rows": out["rows"], "parameters": {"config": cfg, "recipe": "lead/stage1-byol"}})
    assert len(fig.axes) == 4                                          # three columns + the stages
    rec = {"rows": out["rows"], "parameters": {"config": cfg, "recipe": "lead/stage1-byol"}, "seeds": [0]}
    fig = learning_curve([rec, {**rec, "seeds": [1]}])                  # two seeds: a line each
    assert len(fig.axes) == 4
    assert [l.get_label() for l in fig.axes[1].lines][:2] == ["seed 0", "seed 1"]


def test_seed_study_evaluates_each_network_as_the_matching_chapter_and_gates_lead(home, one_thread):
    import torch
    from ssl_lab import zoo
    from ssl_lab.learning_curve import mafl_matcher, seed_study
    out = seed_study("smoke", 1, rows=("LEAD / 3840", "LEAD / 64"), record=False)    # trains both, seed 1
    assert list(out["rows"]) == ["LEAD / 3840", "LEAD / 64", "no features", "7x7 pixel patches / 147"]
    assert zoo.load("lead/stage2-lead", "smoke", seed=1, feat_dim=64, proj_dim=256)["teacher"]["seed"] == 1
    byol = zoo.get("lead/stage1-byol", "smoke", seed=1).double().eval()
    _, row = mafl_matcher("smoke", 1, se=True, fast=False)          # the chapter's protocol by hand, float64
    with torch.no_grad():
        assert out["rows"]["LEAD / 3840"] == row(lambda x: byol.hypercolumn(x))
    assert "Different s.e." in out["rows"]["LEAD / 64"]
    (gate,) = out["gates"]
    assert gate["gate"] == "S2" and gate["value"] == out["rows"]["LEAD / 64"]["Different"]
    assert gate["bound"] == round(1.2 * out["rows"]["LEAD / 3840"]["Different"], 2)
    assert seed_study("smoke", 1, rows=("LEAD / 3840",), record=False)["gates"] == []  # no LEAD-64: no gate


def test_seed_summary_takes_each_curve_at_its_last_step():
    from ssl_lab.learning_curve import seed_summary
    rec = lambda seed, last, steps=4000: {"seeds": [seed], "parameters": {"recipe": "lead/stage1-byol"},
                                          "rows": {"step 0": {"Different": 22.0, "Same": 4.0},
                                                   f"step {steps}": {"Different": last, "Same": 3.0},
                                                   f"step {steps // 2}": {"Different": 99.0, "Same": 9.0}}}
    out = seed_summary([rec(1, 16.0), rec(0, 14.0)], columns=("Different", "Same"))["lead/stage1-byol"]
    assert out["seeds"] == [0, 1] and out["steps"] == 4000
    assert out["values"]["Different"] == [14.0, 16.0]
    assert out["mean"]["Different"] == 15.0 and abs(out["std"]["Different"] - 2 ** 0.5) < 1e-12
    assert math.isnan(seed_summary([rec(0, 14.0)], columns=("Different",))["lead/stage1-byol"]["std"]["Different"])
    with pytest.raises(ValueError, match="different budgets"):
        seed_summary([rec(0, 14.0), rec(1, 15.0, steps=2000)], columns=("Different",))
