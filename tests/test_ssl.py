"""Unit tests of ssl_lab.nets.backbones and ssl_lab.ssl (BYOL, MoCo, augmentation, training).

Expected values are computed by hand in the comments. Inputs are tiny (32-64 px, batch 4)
so that the file runs in seconds on two CPU cores; nothing is downloaded (HF_HUB_OFFLINE)."""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn

from ssl_lab.nets.backbones import LEVELS, Backbone, hypercolumn
from ssl_lab.ssl.augment import (TwoViewAugment, color_jitter, gaussian_blur, random_grey,
                                 random_resized_crop)
from ssl_lab.ssl.byol import BYOL, byol_loss, ema_update, momentum
from ssl_lab.ssl.train import train_ssl
from ssl_lab.ssl.moco import MoCo, info_nce


# -- BYOL pieces ------------------------------------------------------------------------------
def test_byol_loss_hand_values():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [5.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    # orthogonal -> 2 - 2*0 = 2; parallel (any scale) -> 0; equal -> 0; 45 deg -> 2 - sqrt(2)
    expected = torch.tensor([2.0, 0.0, 0.0, 2 - math.sqrt(2)])
    torch.testing.assert_close(byol_loss(p, z), expected, atol=1e-6, rtol=0)
    # independent of the scale of z (and of p)
    torch.testing.assert_close(byol_loss(p, 7.5 * z), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(byol_loss(0.1 * p, z), expected, atol=1e-6, rtol=0)
    # opposite vectors: 2 - 2*(-1) = 4, the maximum
    opposite = byol_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[-2.0, -4.0]]))
    assert opposite.item() == pytest.approx(4.0)


def test_byol_loss_stops_gradient_into_z():
    p = torch.tensor([[1.0, 0.0]], requires_grad=True)
    z = torch.tensor([[1.0, 1.0]], requires_grad=True)
    byol_loss(p, z).sum().backward()
    assert z.grad is None
    # d/dp (2 - 2 p.z / (|p||z|)) at p=(1,0), z=(1,1)/sqrt2: -2 (zhat - (p.zhat) p) = (0, -sqrt2)
    torch.testing.assert_close(p.grad, torch.tensor([[0.0, -math.sqrt(2)]]))


def test_ema_update_one_parameter():
    target, online = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        target.weight.fill_(2.0), target.bias.fill_(-1.0)
        online.weight.fill_(4.0), online.bias.fill_(1.0)
    ema_update(target, online, tau=0.9)
    # 0.9 * 2 + 0.1 * 4 = 2.2 ; 0.9 * (-1) + 0.1 * 1 = -0.8
    assert target.weight.item() == pytest.approx(2.2)
    assert target.bias.item() == pytest.approx(-0.8)
    assert online.weight.item() == 4.0                      # online untouched
    ema_update(target, online, tau=0.0)                     # tau = 0 copies the online net
    assert target.weight.item() == 4.0


def test_momentum_schedule():
    assert momentum(0, 100, 0.996) == pytest.approx(0.996)          # k = 0: tau_base
    assert momentum(100, 100, 0.996) == pytest.approx(1.0)          # k = K: 1
    assert momentum(50, 100, 0.996) == pytest.approx(0.998)         # cos(pi/2) = 0: halfway
    # k = K/3: 1 - 0.004 * (cos(pi/3) + 1) / 2 = 1 - 0.004 * 0.75 = 0.997
    assert momentum(1, 3, 0.996) == pytest.approx(0.997)
    taus = [momentum(k, 10) for k in range(11)]
    assert all(a < b for a, b in zip(taus, taus[1:]))               # strictly increasing


@pytest.fixture(scope="module")
def tiny_byol():
    torch.manual_seed(0)
    return BYOL("resnet18", hidden=32, dim=16)


def test_byol_target_gets_no_gradient(tiny_byol):
    model = tiny_byol.train()
    model.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    loss = model(v1, v2)
    assert 0.0 <= loss.item() <= 8.0                    # two terms, each 2 - 2 cos in [0, 4]
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in model.target.parameters())
    online = list(model.online.parameters()) + list(model.predictor.parameters())
    assert all(p.grad is not None for p in online)
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0
    # the EMA step moves the target by hand-computable amounts: tau = 0.996 at step 0
    with torch.no_grad():
        model.online.head[0].weight.add_(1.0)            # make online != target
    t0 = model.target.head[0].weight.clone()
    o = model.online.head[0].weight.detach().clone()
    assert model.update_target(0, 10) == pytest.approx(0.996)
    torch.testing.assert_close(model.target.head[0].weight, 0.996 * t0 + 0.004 * o)


# -- MoCo -------------------------------------------------------------------------------------
def test_info_nce_hand_value():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    T = 0.5
    # row 0: logits (0.6, 1, 0, -1) / 0.5 = (1.2, 2, 0, -2); loss = -1.2 + lse
    l0 = -1.2 + math.log(math.exp(1.2) + math.exp(2) + math.exp(0) + math.exp(-2))
    # row 1: logits (1, 0, 1, 0) / 0.5 = (2, 0, 2, 0)
    l1 = -2 + math.log(2 * math.exp(2) + 2 * math.exp(0))
    assert info_nce(q, k, queue, T).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # no negatives more similar than the positive and a cold temperature -> loss near 0
    assert info_nce(q[:1], q[:1], -q[:1], 0.01).item() < 1e-6


def test_moco_queue_fifo():
    torch.manual_seed(0)
    moco = MoCo("resnet18", dim=4, hidden=8, K=6)
    assert moco.queue.shape == (6, 4) and moco.queue_ptr.item() == 0
    a = torch.arange(16.0).view(4, 4)
    b = 100 + torch.arange(16.0).view(4, 4)
    moco.enqueue(a)
    assert moco.queue_ptr.item() == 4
    torch.testing.assert_close(moco.queue[:4], a)
    moco.enqueue(b)                                      # 4 + 4 = 8 -> wraps to 2
    assert moco.queue_ptr.item() == 2
    torch.testing.assert_close(moco.queue[4:6], b[:2])   # b fills the tail ...
    torch.testing.assert_close(moco.queue[0:2], b[2:])   # ... then overwrites a's oldest
    torch.testing.assert_close(moco.queue[2:4], a[2:])   # a[2:] are the oldest survivors
    moco.enqueue(torch.ones(8, 4))                       # a batch larger than K: last K kept
    assert moco.queue_ptr.item() == 2 and bool((moco.queue == 1).all())


def test_moco_forward_enqueues_keys_and_key_encoder_has_no_grad():
    torch.manual_seed(0)
    moco = MoCo("resnet18", dim=8, hidden=16, K=8).train()
    v1, v2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    loss = moco(v1, v2)
    assert torch.isfinite(loss) and moco.queue_ptr.item() == 4
    torch.testing.assert_close(moco.queue[:4].norm(dim=1), torch.ones(4))   # normalised keys
    loss.backward()
    assert all(p.grad is None for p in moco.encoder_k.parameters())
    assert moco.update_target() == 0.999


# -- backbone and hypercolumns ----------------------------------------------------------------
def test_hypercolumn_channels_resnet50():
    torch.manual_seed(0)
    bb = Backbone("resnet50").eval()
    assert bb.channels == [64, 256, 512, 1024, 2048]
    assert bb.strides == [2, 4, 8, 16, 32]
    assert bb.hypercolumn_channels == 256 + 512 + 1024 + 2048 == 3840     # thesis: 3840-d
    with torch.no_grad():
        feats = bb(torch.rand(1, 3, 64, 64))
        assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
        assert hypercolumn(feats).shape == (1, 3840, 16, 16)             # stride-4 grid
        assert hypercolumn(feats, levels=LEVELS).shape == (1, 3904, 16, 16)  # + 64-ch stem
        assert hypercolumn(feats, size=(24, 20)).shape == (1, 3840, 24, 20)
        assert bb.pooled(torch.rand(2, 3, 64, 64)).shape == (2, 2048)
        # per-level normalisation: each level's block has unit norm at every location
        h = hypercolumn(feats, normalize=True)
        torch.testing.assert_close(h[:, :256].norm(dim=1), torch.ones(1, 16, 16))
        torch.testing.assert_close(h[:, 1792:].norm(dim=1), torch.ones(1, 16, 16))


def test_hypercolumn_geometry_by_hand():
    """A hypercolumn cell reads each level exactly where that level covers the same pixels.

    64-px image, grid 16x16 (stride 4): cell (u, v) = (5, 10) is centred on pixel
    (4u + 1.5, 4v + 1.5) = (21.5, 41.5). A stride-s level's cell i is centred on pixel
    s i + (s - 1) / 2, so the cell sits at level coordinate ((21.5 - 3.5) / 8, (41.5 - 3.5) / 8)
    = (2.25, 4.75) on the stride-8 map: bilinear weights 0.75/0.25 on rows 2/3 and
    0.25/0.75 on columns 4/5. On the stride-2 stem it sits at (10.5, 20.5): 0.5 each."""
    shapes = [(2, 32), (3, 16), (4, 8), (5, 4), (6, 2)]        # (channels, side) per level
    feats = [torch.randn(1, c, s, s, requires_grad=True) for c, s in shapes]
    h = hypercolumn(feats, normalize=False, levels=LEVELS)
    assert h.shape == (1, 20, 16, 16)
    h[0, :, 5, 10].sum().backward()
    g8 = torch.zeros(8, 8)
    g8[2:4, 4:6] = torch.tensor([[0.75, 0.25]]).t() @ torch.tensor([[0.25, 0.75]])
    torch.testing.assert_close(feats[2].grad[0, 0], g8)
    g4 = torch.zeros(16, 16)
    g4[5, 10] = 1.0                                            # the stride-4 level: identity
    torch.testing.assert_close(feats[1].grad[0, 1], g4)
    g2 = torch.zeros(32, 32)
    g2[10:12, 20:22] = 0.25
    torch.testing.assert_close(feats[0].grad[0, 1], g2)
    assert feats[4].grad[0, 0].sum().item() == pytest.approx(1.0)   # weights sum to 1


def test_hypercolumn_input_gradient_peaks_at_its_pixel():
    """Through a real (random-init) ResNet-18: the input gradient of the shallow hypercolumn
    (stem + stage 1) at cell (u, v) of the 12x12 grid of a 48-px image peaks within 5 px of
    pixel (4u + 1.5, 4v + 1.5). A transposed or flipped grid would miss by 14-28 px. (The deep
    levels of an untrained net see the whole 48-px image, so they are checked by geometry.)"""
    torch.manual_seed(0)
    bb = Backbone("resnet18").eval()
    cells = [(0, 0), (2, 9), (6, 6), (9, 3), (11, 11)]
    x = torch.rand(len(cells), 3, 48, 48, requires_grad=True)
    h = bb.hypercolumn(x, levels=(0, 1), normalize=False)
    assert h.shape == (len(cells), 64 + 64, 12, 12)
    torch.stack([h[i, :, u, v].sum() for i, (u, v) in enumerate(cells)]).sum().backward()
    g = x.grad.abs().sum(1)
    for i, (u, v) in enumerate(cells):
        r, c = divmod(g[i].argmax().item(), 48)
        assert abs(r - (4 * u + 1.5)) <= 5 and abs(c - (4 * v + 1.5)) <= 5, (u, v, r, c)


def test_backbone_weights_local_file_only(tmp_path):
    import timm
    with pytest.raises(FileNotFoundError, match="not found"):
        Backbone("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="cannot be downloaded"):
        Backbone("resnet18", weights=True)
    torch.manual_seed(3)
    clf = timm.create_model("resnet18", pretrained=False)           # classifier model, with fc
    torch.save({"state_dict": clf.state_dict()}, tmp_path / "r18.pth")
    bb = Backbone("resnet18", weights=tmp_path / "r18.pth")
    torch.testing.assert_close(bb.body.layer4[1].conv2.weight, clf.layer4[1].conv2.weight)
    torch.save(bb.state_dict(), tmp_path / "bb.pt")                 # our own format round-trips
    bb2 = Backbone("resnet18", weights=str(tmp_path / "bb.pt"))
    torch.testing.assert_close(bb2.body.conv1.weight, clf.conv1.weight)
    with pytest.raises(ValueError, match="do not fit"):
        Backbone("resnet34", weights=tmp_path / "r18.pth")


# -- augmentation -----------------------------------------------------------------------------
def test_two_views_shapes_ranges_determinism():
    x = (torch.rand(4, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    aug = TwoViewAugment(size=32)
    assert aug.p_flip == 0.0                                  # flips are off by default
    v1, v2 = aug(x, torch.Generator().manual_seed(7))
    assert v1.shape == v2.shape == (4, 3, 32, 32) and v1.dtype == torch.float32
    assert v1.min() >= 0 and v1.max() <= 1 and v2.min() >= 0 and v2.max() <= 1
    assert (v1 - v2).abs().mean() > 0.01                      # two different views
    w1, w2 = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)        # same seed, same views
    u1, _ = aug(x.float() / 255, torch.Generator().manual_seed(7))
    torch.testing.assert_close(u1, v1)                        # uint8 and float agree
    o1, _ = aug(x, torch.Generator().manual_seed(8))
    assert not torch.equal(o1, v1)


def test_crop_geometry_on_a_ramp():
    """Crop of the ramp image f(row, col) = col / 96 with no colour ops: output column j
    samples input column x0 + (j + 0.5) w / size - 0.5 (pixel-edge box units), and bilinear
    interpolation of a linear ramp is exact."""
    W, size = 96, 32
    x = (torch.arange(W).float() / W).expand(4, 3, W, W).contiguous()
    crops, boxes = random_resized_crop(x, size, scale=(0.5, 1.0),
                                       generator=torch.Generator().manual_seed(0))
    j = torch.arange(size).float()
    for b in range(4):
        x0, y0, x1, y1, flipped = boxes[b].tolist()
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= W and flipped == 0
        expected = (x0 + (j + 0.5) * (x1 - x0) / size - 0.5) / W
        torch.testing.assert_close(crops[b, 0, size // 2], expected, atol=1e-5, rtol=0)
    # full-image square crop is the identity; p_flip=1 mirrors it
    y = torch.rand(2, 3, 32, 32)
    same, _ = random_resized_crop(y, 32, scale=(1, 1), ratio=(1, 1))
    torch.testing.assert_close(same, y, atol=1e-5, rtol=0)
    mirrored, box = random_resized_crop(y, 32, scale=(1, 1), ratio=(1, 1), p_flip=1.0)
    torch.testing.assert_close(mirrored, y.flip(-1), atol=1e-5, rtol=0)
    assert box[:, 4].tolist() == [1.0, 1.0]


def test_colour_ops_by_hand():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(color_jitter(x, p=0.0), x, atol=1e-5, rtol=0)   # p=0: identity
    g = random_grey(x, p=1.0)
    lum = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(g[:, c], lum)
    flat = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, torch.tensor([1.5, 0.7])), flat)  # constant
    torch.testing.assert_close(gaussian_blur(x, torch.zeros(3)), x)             # sigma 0
    blurred = gaussian_blur(x, torch.full((3,), 2.0))
    assert blurred.std() < 0.5 * x.std()                      # white noise loses variance


# -- training loop ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["byol", "moco"])
def test_train_ssl_smoke(method):
    images = (torch.rand(12, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 255
              ).to(torch.uint8)
    cfg = dict(backbone="resnet18", size=32, batch_size=4, steps=2, proj_hidden=32, proj_dim=16,
               pred_hidden=32, queue=8)
    out = train_ssl(method, images, cfg, device="cpu", seed=0, progress=False)
    assert len(out["history"]) == 2 and all(math.isfinite(v) for v in out["history"])
    fresh = Backbone("resnet18")
    fresh.load_state_dict(out["state_dict"])                  # strict: every key fits
    torch.manual_seed(0)
    init = Backbone("resnet18")                               # the same seeded initialisation
    assert not torch.equal(init.body.conv1.weight, fresh.body.conv1.weight)   # it trained
    assert out["images_per_s"] > 0 and out["method"] == method
    with pytest.raises(KeyError, match="unknown"):
        train_ssl(method, images, dict(stepz=2), progress=False)


@pytest.mark.parametrize("method", ["byol", "moco"])
def test_train_ssl_resumes_from_its_checkpoint_to_the_same_weights(method, tmp_path, one_thread):
    """A run stopped after 3 of 5 steps (checkpoint every 2, and at the stop) and resumed ends
    with exactly the weights, history and snapshots of an uninterrupted run."""
    images = (torch.rand(10, 3, 36, 36, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    cfg = dict(backbone="test_resnet", size=32, batch_size=4, steps=5, proj_hidden=16, proj_dim=8,
               pred_hidden=16, queue=8, optimizer="sgd", lr=0.05)
    whole = train_ssl(method, images, cfg, seed=3, progress=False, snapshots=2)
    ckpt = tmp_path / "run.ckpt"
    assert train_ssl(method, images, cfg, seed=3, progress=False, snapshots=2, checkpoint=ckpt,
                     checkpoint_every=2, max_steps=3) is None and ckpt.exists()
    torch.manual_seed(123)                                   # the caller's RNG is not the run's
    resumed = train_ssl(method, images, cfg, seed=3, progress=False, snapshots=2, checkpoint=ckpt,
                        checkpoint_every=2)
    assert resumed["history"] == whole["history"] and len(whole["history"]) == 5
    for k, v in whole["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    assert sorted(whole["snapshots"]) == [2, 5] == sorted(resumed["snapshots"])
    assert all(torch.equal(whole["snapshots"][2][k], resumed["snapshots"][2][k]) for k in whole["snapshots"][2])


def test_bf16_autocast_only_where_the_device_computes_it_natively(monkeypatch):
    from ssl_lab.ssl import train
    monkeypatch.setattr(train, "native_bf16", lambda device: False)
    with train.bf16("cpu", True):
        assert not torch.is_autocast_enabled("cpu")
    with train.bf16("cpu", "always"):
        assert torch.is_autocast_enabled("cpu")
    assert train.precision("cpu", True) == "float32" and train.precision("cpu", "always") == "bf16 autocast"
    monkeypatch.setattr(train, "native_bf16", lambda device: True)
    with train.bf16("cpu", True):
        assert torch.is_autocast_enabled("cpu")
    assert train.precision("cpu", False) == "float32"
