"""The zoo recipes are well-formed at every scale (training itself runs in the chapters)."""
import pytest

from ssl_lab import zoo
from ssl_lab.ssl.train import DEFAULTS

RECIPES = ("lead/stage1-byol", "lead/stage1-moco", "lead/supervised")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_configs_exist_at_every_scale(name):
    for scale in ("smoke", "small", "full"):
        cfg = zoo.config(name, scale)
        assert cfg["scale"] == scale
        if "stage1" in name:                     # everything else goes to train_ssl
            assert set(cfg) - {"scale", "n", "render"} <= set(DEFAULTS)


def test_full_scale_follows_the_thesis():
    cfg = zoo.config("lead/stage1-byol", "full")
    assert cfg["backbone"] == "resnet50" and cfg["batch_size"] == 256 and cfg["lr"] == 0.03
    assert cfg["size"] == 96 and cfg["optimizer"] == "sgd"
    # 200 epochs of the 162,770 CelebA training images at batch 256
    assert abs(cfg["steps"] - 200 * 162_770 / 256) / cfg["steps"] < 0.01


def test_full_scale_needs_a_data_root(monkeypatch):
    from ssl_lab.recipes import pretraining_images
    monkeypatch.delenv("SSL_LAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-root"):
        pretraining_images("full", None, None)


@pytest.mark.parametrize("name", ["lead/stage2-lead", "lead/stage2-dve", "lead/stage2-cl"])
def test_stage2_configs_fit_train_stage2(name):
    from ssl_lab.ssl.lead import DEFAULTS as STAGE2
    for scale in ("smoke", "small", "full"):
        cfg = zoo.config(name, scale)
        assert set(cfg) - {"scale", "n", "render"} <= set(STAGE2)
    full = zoo.config("lead/stage2-lead", "full")
    # thesis: batch 256, 20 epochs of CelebA, 64-d features
    assert full["batch_size"] == 256 and abs(full["steps"] - 20 * 162_770 / 256) / full["steps"] < 0.01
    assert full["feat_dim"] == 64 and full["size"] == 96


def test_table_3_6_trains_each_stage2_objective_on_the_other_stage1_network():
    """Only the teacher differs from the stage-2 recipe of the same objective (thesis: "same
    architectures ... only vary the objective")."""
    from ssl_lab.recipes import CROSSED_STAGE2
    teachers = set()
    for name, (method, teacher) in CROSSED_STAGE2.items():
        own = f"lead/stage2-{method}"
        for scale in ("smoke", "small", "full"):
            assert zoo.config(name, scale) == zoo.config(own, scale)
        assert zoo.inputs(name, "small", 1) == [(teacher, "small", 1, {})]
        assert zoo.inputs(own, "small", 1)[0][0] != teacher
        teachers.add(teacher)
    assert teachers == {"lead/stage1-byol", "lead/stage1-moco"}


def test_dino_config_fits_train_dino():
    from ssl_lab.ssl.dino import DEFAULTS as DINO
    for scale in ("smoke", "small"):
        assert set(zoo.config("hsr/vit-dino", scale)) - {"scale", "n", "render"} <= set(DINO)


@pytest.mark.parametrize("row", ["ViT (RandInit)", "ViT DINO"])
def test_hsr_feature_stand_ins_give_four_maps(row, home, one_thread):
    import torch
    from ssl_lab.recipes import VIT_SHAPE, hsr_features
    feats = hsr_features(row, "smoke")
    maps = feats(torch.rand(2, 3, 32, 32) * 2 - 1)
    width = VIT_SHAPE["smoke"]["embed_dim"]                      # 48 at smoke (192 at small)
    assert len(maps) == 4 and all(m.shape == (2, width, 4, 4) for m in maps)
    with pytest.raises(KeyError, match="unknown feature network"):
        hsr_features("VGG", "smoke")


def test_gan_variants_branch_from_one_warmup(home, one_thread):
    import torch
    from ssl_lab.recipes import eval_features, gan_images, generator, ppl_distance
    imgs = gan_images("smoke", 8)
    assert imgs.shape[0] == 16 and torch.equal(imgs[8:], imgs[:8].flip(-1))   # x-flips doubled
    kw = dict(images=8, warmup_kimg=0.032, branch_kimg=0.032)
    base = zoo.get("hsr/branch", "smoke", **kw)
    hsr = zoo.get("hsr/branch", "smoke", features="ViT (RandInit)", levels="high", pl_weight=0.0, **kw)
    warm = zoo.get("hsr/warmup", "smoke", images=8, warmup_kimg=0.032)
    assert base["nimg"] == hsr["nimg"] == 64 and warm["nimg"] == 32            # warm-up + branch
    assert "hsr" in hsr["history"][-1] and "hsr" not in base["history"][-1]
    assert len(list((home / "zoo" / "hsr" / "warmup").glob("*.pt"))) == 1        # trained once
    seed1 = zoo.get("hsr/branch", "smoke", seed=1, **kw)                        # another branch seed...
    assert len(list((home / "zoo" / "hsr" / "warmup").glob("*.pt"))) == 1        # ...from the same warm-up
    assert seed1["nimg"] == 64 and any(not torch.equal(a, b)                  # its own streams
                                       for a, b in zip(seed1["G_ema"].values(), base["G_ema"].values()))
    zoo.get("hsr/branch", "smoke", seed=1, features="ResNet50", **kw)          # an HSR branch, seed 1...
    sup = home / "zoo" / "lead" / "supervised"                                  # ...the same seed-0
    assert [p.name.split("-")[1] for p in sup.glob("*.pt")] == ["seed0"]         # feature network
    G = generator(hsr)
    x = G(torch.randn(2, G.z_dim))
    assert x.shape == (2, 3, 32, 32)
    feats = eval_features("smoke")
    assert feats(x).shape == (2, feats.net.pooled_channels) and feats.name == "synth-sup-test_r"  # smoke: test_resnet
    d32, d64 = ppl_distance("smoke"), ppl_distance("smoke", dtype=torch.float64)      # PPL's distance, also in float64
    y = G(torch.randn(2, G.z_dim))
    assert d64(x.double(), y.double()).dtype == torch.float64
    torch.testing.assert_close(d64(x.double(), y.double()).float(), d32(x, y), rtol=1e-4, atol=0)


def test_full_scale_nmf_says_what_to_do_before_looking_for_a_teacher(home):
    from ssl_lab.recipes import train_nmf
    with pytest.raises(NotImplementedError, match="real MAFL"):
        train_nmf(zoo.config("lead/stage2-nmf", "full"), "cpu", 0)


def test_feature_probe_and_attribute_classifier_recipes(home, one_thread):
    from ssl_lab import attribute_classifier as ac
    from ssl_lab.recipes import hsr_feature_probe
    auc = hsr_feature_probe("ViT (RandInit)", "smoke", n_train=128, n_test=64)
    assert list(auc) == list(ac.ALS_ATTRIBUTES) and all(0 <= v <= 1 for v in auc.values())
    art = zoo.load("als/classifier", "smoke")
    assert len(art["history"]) == zoo.config("als/classifier", "smoke")["steps"]
    assert set(art["held_out"]) == set(ac.ALS_ATTRIBUTES)
    clf = zoo.get("als/classifier", "smoke")
    assert isinstance(clf, ac.AttributeClassifier) and not clf.training


def test_attribute_fit_crops_at_the_configured_size_in_bf16_if_asked(home, one_thread):
    """``_fit_attributes`` resamples its crops to ``crop`` x the render size (3/4 by default, as
    lead/supervised trains) and runs the forward pass in bf16 autocast when ``amp`` is set,
    its loss in float32."""
    import torch
    from torch import nn
    from ssl_lab.recipes import _fit_attributes
    seen = []

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            seen.append((x.shape[-1], torch.is_autocast_enabled(x.device.type)))
            return self.fc(x.mean((2, 3)))

    cfg = dict(scale="smoke", n=256, render=48, batch_size=4, steps=2, lr=1e-3)
    for extra, size, amp in ((dict(), 36, False), (dict(crop=1.0, amp=True), 48, True)):
        seen.clear()
        net = Net()
        hist = _fit_attributes(net, net, 4, {**cfg, **extra}, "cpu", 0)
        assert seen == [(size, amp)] * 2 and all(torch.isfinite(torch.tensor(hist)))


def test_full_scale_gan_images_come_from_the_data_root(tmp_path, monkeypatch):
    import torch
    from PIL import Image
    from ssl_lab.recipes import gan_images
    monkeypatch.delenv("SSL_LAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-root"):
        gan_images("full", 3)
    dogs = tmp_path / "animalface-dog"
    dogs.mkdir()
    for i in range(3):
        Image.new("RGB", (300, 280), (80 * i, 10, 200)).save(dogs / f"{i}.png")
    monkeypatch.setenv("SSL_LAB_DATA", str(tmp_path))
    ds = gan_images("full", 3)
    assert len(ds) == 6 and ds[0].shape == (3, 256, 256)                    # 3 images and their flips
    assert torch.equal(ds[3], ds[0].flip(-1)) and ds[1][0, 0, 0].item() == pytest.approx(80 / 255)
    # another set (Tables 4.5 / 4.3): a branch config's dataset, the first `images` of it
    ffhq = tmp_path / "ffhq"
    ffhq.mkdir()
    for i in range(5):
        Image.new("RGB", (64, 64), (50 * i, 0, 0)).save(ffhq / f"{i:05d}.png")
    from ssl_lab.recipes import gan_training_set, warmup_of
    cfg = zoo.config("hsr/branch", "full", images=2, dataset="ffhq")
    assert warmup_of(cfg) == dict(images=2, warmup_kimg=500.0, dataset="ffhq")
    assert zoo.inputs("hsr/branch", "full", images=2, dataset="ffhq")[0][3] == warmup_of(cfg)
    two = gan_training_set(cfg)
    assert len(two) == 4 and two[1][0, 0, 0].item() == pytest.approx(50 / 255)


def test_limited_and_full_data_rows():
    """Tables 4.5 / 4.3: per data row a branch without and one with HSR, on the same set (the same
    warm-up); at small the whole FFHQ role is the 10k set, so the page loads each generator once."""
    from ssl_lab.recipes import ALS_HSR_FEATURES, GAN_DATA_ROWS, chapter_artefacts, gan_data_branches, warmup_of
    for scale in ("smoke", "small", "full"):
        br = gan_data_branches(scale)
        assert len(br) == 2 * len(GAN_DATA_ROWS[scale])
        for row, ov in GAN_DATA_ROWS[scale].items():
            plain, hsr = br[(row, False)], br[(row, True)]
            assert plain == ov and hsr == {**ov, "features": ALS_HSR_FEATURES}
            assert warmup_of(zoo.config("hsr/branch", scale, **plain)) == \
                warmup_of(zoo.config("hsr/branch", scale, **hsr))
    assert {r: ov["images"] for r, ov in GAN_DATA_ROWS["small"].items()} == \
        {"FFHQ-1k": 1000, "FFHQ-2k": 2000, "FFHQ-10k": 10000, "FFHQ": 10000}
    arts = chapter_artefacts("hsr/limited_data", "small")
    assert arts[0][0] == "lead/supervised" and len(arts) == 1 + 6              # the FD network, 3 sets x 2
    assert {a[3]["images"] for a in arts[1:]} == {1000, 2000, 10000}


def test_full_scale_hsr_networks_as_the_release_builds_them(tmp_path, monkeypatch, one_thread):
    """Table 4.1's networks at full scale from <data root>/weights (here tiny timm models of the
    same kinds in place of ViT-B/16 and ResNet-50): a missing file names itself and its source;
    ViT blocks 3, 6, 9, 12 with the final norm (DINO) or without (DeiT), ResNet stages; the
    release's inputs (area resize to 224, CLIP mean, ImageNet std)."""
    import timm
    import torch
    import torch.nn.functional as F
    from ssl_lab import recipes
    monkeypatch.setenv("SSL_LAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dino_vitbase16_pretrain.pth .*facebookresearch/dino"):
        recipes.hsr_features("ViT DINO", "full")
    tiny = dict(recipes.HSR_FULL_NETWORKS,
                **{"ViT DINO": ("vit+norm", "vit_tiny_patch16_224", "dino.pth", "test"),
                   "DeiT": ("vit", "vit_tiny_patch16_224", "deit.pth", "test"),
                   "ResNet50": ("resnet", "resnet18", "r18.pth", "test")})
    monkeypatch.setattr(recipes, "HSR_FULL_NETWORKS", tiny)
    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=12).eval()
    torch.save(vit.state_dict(), tmp_path / "weights" / "dino.pth")
    torch.save({"model": vit.state_dict()}, tmp_path / "weights" / "deit.pth")     # DeiT's file layout
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "weights" / "r18.pth")
    imgs = torch.rand(2, 3, 256, 256) * 2 - 1
    x = (F.interpolate((imgs + 1) / 2, size=(224, 224), mode="area")
         - torch.tensor(recipes.HSR_RELEASE_MEAN).view(1, 3, 1, 1)) / torch.tensor(recipes.HSR_RELEASE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        blocks = []
        t = vit.pos_drop(vit._pos_embed(vit.patch_embed(x)))
        for blk in vit.blocks:
            t = blk(t)
            blocks.append(t[:, 1:].transpose(1, 2).reshape(2, 192, 14, 14))
    dino, deit = recipes.hsr_features("ViT DINO", "full"), recipes.hsr_features("DeiT", "full")
    for got, want in zip(dino(imgs), [blocks[i] for i in (2, 5, 8, 11)]):
        normed = vit.norm(want.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(want.shape)
        torch.testing.assert_close(got, normed, atol=1e-4, rtol=1e-4)
    for got, want in zip(deit(imgs), [blocks[i] for i in (2, 5, 8, 11)]):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    res = recipes.hsr_features("ResNet50", "full")
    assert [tuple(m.shape[1:]) for m in res(imgs)] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    rand = recipes.hsr_features("ViT (RandInit)", "full", seed=3)     # ViT-B/16, no file needed
    assert rand.channels == [768] * 4


def test_full_scale_image_metrics_read_fid_inception_and_lpips_vgg_files(tmp_path, monkeypatch):
    """At full scale the image metrics are FID's Inception-v3 and StyleGAN2's LPIPS-VGG, read
    from <data root>/weights/: a missing file is an error that names it (nothing downloads)."""
    from ssl_lab import recipes
    from ssl_lab.nets.extractors import FID_INCEPTION_WEIGHTS, VGG16_WEIGHTS
    monkeypatch.setenv("SSL_LAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=FID_INCEPTION_WEIGHTS):
        recipes.eval_features("full")
    with pytest.raises(FileNotFoundError, match=VGG16_WEIGHTS):
        recipes.ppl_distance("full")
    monkeypatch.delenv("SSL_LAB_DATA")
    with pytest.raises(FileNotFoundError, match="--data-root"):
        recipes.eval_features("full")
    assert recipes.chapter_weights("hsr/warmup", "full") == [FID_INCEPTION_WEIGHTS, VGG16_WEIGHTS]
    assert recipes.chapter_weights("hsr/warmup", "small") == []
