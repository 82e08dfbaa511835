"""The zoo's recipes: what is trained, on which data, with which budget, at each scale.

Registered here (imported lazily by :mod:`ssl_lab.zoo`):

* ``lead/stage1-byol``, ``lead/stage1-moco``: instance-level self-supervision (thesis
  §3.2.2; MoCo v2 is the ContrastLandmarks stage 1) on the unannotated CelebA-role set.
* ``lead/supervised``: the same backbone trained to predict SynthFaces' binary attributes,
  the supervised baseline of the correspondence chapter.
* ``lead/stage2-lead`` (LEAD's dense net, overrides ``feat_dim`` and ``proj_dim``),
  ``lead/stage2-dve``, ``lead/stage2-cl`` and ``lead/stage2-nmf``: the compact dense
  features of the matching chapter (thesis Tables 3.1 and 3.3), each on top of its stage-1
  network (BYOL; MoCo for CL), which the zoo trains first if needed;
  ``lead/stage2-lead-from-moco`` and ``lead/stage2-cl-from-byol``: the same objectives on the
  other stage-1 network (Table 3.6).

``build`` returns a :class:`~ssl_lab.nets.backbones.Backbone` in eval mode. At full scale the
recipes read the real CelebA from ``$SSL_LAB_DATA/celeba`` (set by ``python -m ssl_lab train
--data-root``), resized to 136 px: the two-view augmentation takes 96-px crops of it.
"""
from __future__ import annotations

import json
import os
import re
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import splits
from .data.images import to_signed
from .nets.backbones import Backbone
from .paths import repo_root
from . import zoo


def _data_root(what: str) -> str:
    """The full-scale data root (``--data-root`` of ``python -m ssl_lab train``: ``$SSL_LAB_DATA``)."""
    root = os.environ.get("SSL_LAB_DATA")
    if not root:
        raise FileNotFoundError(f"full scale reads {what}: pass --data-root DATA to "
                                "`python -m ssl_lab train` (or set SSL_LAB_DATA)")
    return root


def pretraining_images(scale: str, n: int | None, size: int | None) -> torch.Tensor:
    """uint8 (N, 3, H, W) images of the CelebA role: SynthFaces below full scale, else the
    real aligned CelebA (minus MAFL test) resized to 136 px."""
    if scale != "full":
        return splits.load("celeba", scale, n=n, size=size).data["image"]
    from .data import faces
    ds = faces.celeba_unlabelled(os.path.join(_data_root("the real CelebA"), "celeba"))
    resize = lambda im: F.interpolate(im[None], size=(136, 136), mode="bilinear", antialias=True,
                                      align_corners=False)[0]
    return torch.stack([(resize(ds[i]["image"]) * 255).round().to(torch.uint8)
                        for i in range(len(ds) if n is None else n)])


def _build_backbone(art, device):
    net = Backbone(art["backbone"])
    net.load_state_dict(art["state_dict"])
    return net.to(device).eval()


# The LEAD networks ship with int8 weights (zoo._compact; a ResNet-18 is 11 MB instead of 22 in
# float16): on the small BYOL the DVE matching errors of the int8 weights differ from float32
# by at most 0.02 px at 70 (different identity 14.48 either way) and 0.08 % IOD (new pose).
# SSL budgets. smoke proves the code path in seconds, on timm's 0.4M-parameter test_resnet (a
# ResNet with 32-192 channels), so that the shipped smoke zoo stays a few MB, in fp32. small
# and full train with bf16 autocast and channels_last (`python -m ssl_lab bench` measures it).
# small is bounded by the design's 60-min budget per stage-1 recipe on 2 CPU cores: ResNet-18,
# 48-px crops, 4000 steps of 64 (12.8 passes over 20k images; on 2 cores of an AMX CPU BYOL
# runs at about 150 images/s, 29 min, MoCo at about 260, 17 min), checkpointed and resumable;
# about 1/125 of the thesis's images seen, and the chapters say so. 2000 steps did not pass
# gate S1a (different identity 18.92 px against a bound of 18.14). full is the thesis:
# ResNet-50, batch 256, 200 epochs of CelebA (162,770 images: about 127,000 steps), SGD
# lr 0.03 with cosine decay.
_SSL = {
    "smoke": dict(n=256, render=48, backbone="test_resnet", size=40, batch_size=16, steps=6,
                  optimizer="adam", lr=1e-3, proj_hidden=256, proj_dim=64, queue=256),
    "small": dict(n=20000, render=64, backbone="resnet18", size=48, batch_size=64, steps=4000,
                  optimizer="sgd", lr=0.05, proj_hidden=1024, proj_dim=128, queue=4096,
                  amp=True, channels_last=True),
    "full": dict(n=None, render=None, backbone="resnet50", size=96, batch_size=256,
                 steps=127_000, optimizer="sgd", lr=0.03, proj_hidden=None, proj_dim=None,
                 queue=4096, amp=True, channels_last=True),
}


def _ssl_recipe(method):
    def train(cfg, device, seed):
        cfg = dict(cfg)
        scale = cfg.pop("scale")
        images = pretraining_images(scale, cfg.pop("n"), cfg.pop("render"))
        if method == "byol":
            cfg.pop("queue")
        from .ssl.train import train_ssl
        return train_ssl(method, images, cfg, device=device, seed=seed, progress=True,
                         checkpoint=zoo.training_checkpoint(), snapshots=0 if scale == "smoke" else 5)
    return train


for _method in ("byol", "moco"):
    zoo.register(f"lead/stage1-{_method}", {s: {**c, "scale": s} for s, c in _SSL.items()},
                 build=_build_backbone, store="int8", parallel=True)(_ssl_recipe(_method))


_SUP = {
    "smoke": dict(scale="smoke", n=256, render=48, backbone="test_resnet", batch_size=32, steps=8, lr=1e-3),
    "small": dict(scale="small", n=20000, render=64, backbone="resnet18", batch_size=64, steps=400, lr=1e-3),
    "full": dict(scale="full", n=None, render=None, backbone="resnet50", batch_size=256, steps=20000, lr=1e-3),
}


def _fit_attributes(net, embed, dim, cfg, device, seed, normalise=None):
    """Train ``net`` (``embed(x)`` -> ``(B, dim)``) with a linear head to predict the binary
    SynthFaces attributes (BCE) of the CelebA-role split, on random crops (50-100% of the
    area, resampled to ``cfg["crop"]`` (default 3/4) of the render size; the forward pass in
    bf16 autocast if ``cfg["amp"]``); returns the loss per step."""
    from .ssl.augment import random_resized_crop
    faces = splits.load("celeba", cfg["scale"], n=cfg["n"], size=cfg["render"])
    images, labels = faces.data["image"], faces.data["binary"]
    head = nn.Linear(dim, labels.shape[1]).to(device)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=cfg["lr"])
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(cfg["steps"]):
        i = torch.randint(len(images), (cfg["batch_size"],), generator=gen)
        x, _ = random_resized_crop(images[i].float().div(255), size=int(cfg.get("crop", 0.75) * cfg["render"]),
                                   scale=(0.5, 1.0), generator=gen)
        x = x.to(device)
        x = normalise(x) if normalise is not None else x
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=cfg.get("amp", False)):
            logits = head(embed(x))
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels[i].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


@zoo.register("lead/supervised", _SUP, build=_build_backbone, store="int8")
def train_supervised(cfg, device, seed):
    """A backbone trained to predict the binary SynthFaces attributes: the supervised
    comparison of the correspondence chapter (and the "ResNet50" stand-in of the HSR ones)."""
    if cfg["scale"] == "full":
        raise NotImplementedError("the supervised baseline uses SynthFaces attributes; at full "
                                  "scale use a supervised ImageNet ResNet-50 weights file instead")
    torch.manual_seed(seed)
    net = Backbone(cfg["backbone"]).to(device).train()
    history = _fit_attributes(net, net.pooled, net.pooled_channels, cfg, device, seed)
    return dict(backbone=cfg["backbone"], history=history,
                state_dict={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})


# -- feature networks of the HSR chapters (thesis Table 4.1), small-scale stand-ins ----------
# Full scale loads the thesis's networks from local weights files (ssl_lab.nets.extractors); below
# full they are trained here on SynthFaces at the GAN resolution: a small ViT (12 blocks,
# 192 wide at small, 8-px patches; VIT_SHAPE) with DINO ("ViT DINO"), the same ViT supervised on the attributes
# ("DeiT"), and untrained ("ViT (RandInit)", built by hsr_features). The ResNet rows reuse
# lead/stage1-byol ("ResNet50 DINO": self-supervised) and lead/supervised ("ResNet50").
_VIT = dict(patch_size=8, depth=12, embed_dim=192, num_heads=3)
#: the stand-in ViT's shape per scale: smoke keeps the 12 blocks (HSR reads blocks 3, 6, 9 and 12)
#: at a quarter of the width, so that its shipped network is 0.4 MB instead of 5.3
VIT_SHAPE = {"smoke": {**_VIT, "embed_dim": 48}, "small": _VIT}
_DINO = {
    "smoke": dict(scale="smoke", n=256, render=32, size=32, local_size=16, batch_size=16, steps=4,
                  **VIT_SHAPE["smoke"]),
    # small: 200 steps (0.6 passes) learned nothing: the loss went 6.54 -> 6.2 (ln 1024 = 6.93),
    # the teacher (an EMA from momentum 0.996) kept much of its initialisation, and a linear probe
    # of the six ALS attributes on it scored a mean AUC of 0.805 against the random-init ViT's
    # 0.806 (gate V failed). 1600 steps (5 passes) in bf16 autocast: 4.4 s a step on one AMX
    # core against 6.0 in fp32 (timed over 6 steps each); the loss fell to 5.59, and the probe
    # scored 0.798: gate V fails still. Not the lr: 4x the peak lr for 400 steps scored 0.785
    # (data_scripts/vit_standins.py, results/hsr/vit-standins/). The same probe on the BYOL
    # ResNet-18 gives 0.829 against a random-init ResNet-18's 0.609, and the supervised ViT 0.900:
    # these faces teach a convnet by self-supervision and a ViT by labels within the CPU
    # budget, but not this ViT by DINO.
    "small": dict(scale="small", n=20000, render=64, size=64, local_size=32, batch_size=64,
                  steps=1600, amp=True, **VIT_SHAPE["small"]),
}


@zoo.register("hsr/vit-dino", _DINO, store="int8")
def train_vit_dino(cfg, device, seed):
    from .ssl.dino import train_dino
    cfg = dict(cfg)
    images = pretraining_images(cfg.pop("scale"), cfg.pop("n"), cfg.pop("render"))
    return train_dino(images, cfg, device=device, seed=seed, progress=True,
                      checkpoint=zoo.training_checkpoint())


_VIT_SUP = {
    "smoke": dict(scale="smoke", n=256, render=32, batch_size=16, steps=4, lr=1e-3, **VIT_SHAPE["smoke"]),
    # small: 300 steps on crops resampled to 48 px failed gate V (probe AUC 0.778 against the
    # random-init ViT's 0.806): the loss was still falling, and the ViT, probed and used by HSR at
    # 64 px (an 8 x 8 token grid), had trained only on a 6 x 6 interpolation of its position
    # embedding. Now 64-px crops, as DeiT trains and is used at one resolution, for 1500 steps (5
    # passes) in bf16 autocast: 2,204 s on one AMX core, probe AUC 0.900, gate V passed.
    "small": dict(scale="small", n=20000, render=64, batch_size=64, steps=1500, lr=5e-4, crop=1.0, amp=True,
                  **VIT_SHAPE["small"]),
}


@zoo.register("hsr/vit-supervised", _VIT_SUP)
def train_vit_supervised(cfg, device, seed):
    """The "DeiT" stand-in: the small ViT trained to predict the binary attributes."""
    from .nets.extractors import IMAGENET_MEAN, IMAGENET_STD
    from .ssl.dino import small_vit
    torch.manual_seed(seed)
    vit = {k: cfg[k] for k in _VIT}
    net = small_vit(img_size=cfg["render"], **vit).to(device).train()
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    history = _fit_attributes(net, net, net.embed_dim, cfg, device, seed,
                              normalise=lambda x: (x - mean) / std)
    return dict(history=history, vit_kwargs=dict(img_size=cfg["render"], **vit),
                state_dict={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})


#: Table 4.1's rows -> how the small-scale stand-in is made
HSR_FEATURES = {"ViT DINO": "hsr/vit-dino", "ResNet50 DINO": "lead/stage1-byol",
                "DeiT": "hsr/vit-supervised", "ResNet50": "lead/supervised",
                "ViT (RandInit)": None}


#: Full scale: Table 4.1's networks as the HSR release builds them (val-iisc/HSR,
#: ``training/load_fe.py``): ``(kind, timm name, the local weights file under
#: <data root>/weights/, where the release got it)``. The release loads DINO's ViT-B/16 and
#: ResNet-50 and DeiT-B/16 from the facebookresearch/dino and /deit torch-hub entries and
#: ``torchvision.models.resnet50(pretrained=True)``; here the same weights come from local files
#: (their key names are timm's). Its inputs: [-1, 1] -> [0, 1], ``F.interpolate`` to 224 px
#: with ``mode='area'``, normalised with CLIP's mean and ImageNet's std (as written there).
#: Its layers: ViT block outputs 3, 6, 9, 12 of 12 (``layers = [11, 8, 5, 2]``), with DINO's
#: final norm (``get_intermediate_layers``) and without it for DeiT (its loop over
#: ``model.blocks``): kinds ``"vit+norm"`` and ``"vit"``; ResNet stages layer1..layer4.
#: "ViT (RandInit)" (not in the release): the DINO ViT-B/16 architecture, randomly
#: initialised with ``seed``.
HSR_FULL_NETWORKS = {
    "ViT DINO": ("vit+norm", "vit_base_patch16_224", "dino_vitbase16_pretrain.pth",
                 "facebookresearch/dino, torch hub dino_vitb16"),
    "ResNet50 DINO": ("resnet", "resnet50", "dino_resnet50_pretrain.pth",
                      "facebookresearch/dino, torch hub dino_resnet50"),
    "DeiT": ("vit", "deit_base_patch16_224", "deit_base_patch16_224-b5f2ef4d.pth",
             "facebookresearch/deit, torch hub deit_base_patch16_224"),
    "ResNet50": ("resnet", "resnet50", "resnet50-0676ba61.pth",
                 "torchvision resnet50(pretrained=True): ImageNet weights IMAGENET1K_V1"),
    "ViT (RandInit)": ("vit+norm", "vit_base_patch16_224", None, "random initialisation"),
}
HSR_RELEASE_MEAN, HSR_RELEASE_STD = (0.48145466, 0.4578275, 0.40821073), (0.229, 0.224, 0.225)


def hsr_full_features(row: str, weights_dir, seed: int = 0):
    """Table 4.1's row ``row`` at full scale (:data:`HSR_FULL_NETWORKS`) from the weights files
    in ``weights_dir``; a missing file is a ``FileNotFoundError`` that names it and its source."""
    from pathlib import Path

    from .nets.extractors import resnet_features, vit_features
    kind, name, file, source = HSR_FULL_NETWORKS[row]
    weights = None
    if file is not None:
        weights = Path(weights_dir) / file
        if not weights.is_file():
            raise FileNotFoundError(f"HSR feature network {row!r} needs the weights file {weights} "
                                    f"({source}); nothing is downloaded here: put a local copy there")
    else:
        torch.manual_seed(seed)
    common = dict(input_size=224, mean=HSR_RELEASE_MEAN, std=HSR_RELEASE_STD, resize="area")
    if kind in ("vit", "vit+norm"):
        return vit_features(name, weights=weights, blocks=(3, 6, 9, 12), norm=kind == "vit+norm", **common)
    return resnet_features(name, weights=weights, **common)


def hsr_features(row: str, scale: str, device="cpu", seed: int = 0):
    """The frozen feature network of Table 4.1's row ``row`` at ``scale`` (a
    :class:`~ssl_lab.nets.extractors.FrozenFeatures` taking GAN images in [-1, 1]); ``seed`` is the
    seed its stand-in was trained (or, for "ViT (RandInit)", initialised) with. At full scale the
    thesis's networks (:func:`hsr_full_features`) from ``$SSL_LAB_DATA/weights``."""
    from .nets.extractors import resnet_features, vit_features
    if row not in HSR_FEATURES:
        raise KeyError(f"unknown feature network {row!r}; known: {list(HSR_FEATURES)}")
    if scale == "full":
        return hsr_full_features(row, os.path.join(_data_root("the HSR feature networks' weights"),
                                                   "weights"), seed).to(device)
    size = {"smoke": 32, "small": 64}[scale]
    recipe = HSR_FEATURES[row]
    if recipe is None or recipe.startswith("hsr/"):
        weights = None
        if recipe is not None:
            weights = zoo.get(recipe, scale, device=device, seed=seed)["state_dict"]
        else:
            torch.manual_seed(seed)
        return vit_features("vit_tiny_patch16_224", weights=weights, input_size=size,
                            **VIT_SHAPE[scale]).to(device)
    net = zoo.get(recipe, scale, device=device, seed=seed)
    return resnet_features(net.name, weights=net.state_dict(), input_size=size).to(device)


def hsr_feature_probe(row: str, scale: str, device="cpu", n_train: int | None = None,
                      n_test: int | None = None) -> dict:
    """Held-out ROC AUC per ALS attribute of a linear probe (:func:`ssl_lab.attribute_classifier.linear_probe`)
    on the feature network of Table 4.1's row ``row``, fed what HSR feeds it: the aligned
    32-px faces of the classifiers' split in [-1, 1] (resized to the network's input size); the
    features are the last map, averaged over positions. What gate V compares
    (:func:`ssl_lab.gates.feature_standins`)."""
    from .attribute_classifier import CLASSIFIER_SPLIT, linear_probe
    cfg = zoo.config("als/classifier", scale)
    n_train, n_test = n_train or cfg["train"], n_test or cfg["test"]
    faces = splits.load(CLASSIFIER_SPLIT, scale)
    x, y = faces.data["image"], faces.data["binary"]
    net = hsr_features(row, scale, device=device)
    with torch.no_grad():
        f = torch.cat([net(to_signed(b).to(device))[-1].mean((2, 3)).cpu()
                       for b in x.split(256)])
    return linear_probe(f[:n_train], y[:n_train], f[-n_test:], y[-n_test:])


def stage1_backbones(scale: str, device="cpu", seed: int = 0) -> dict[str, Backbone]:
    """The four stage-1 networks the LEAD chapters compare: BYOL, MoCo, a random-init one
    (same architecture, seeded) and the supervised baseline."""
    nets = {name: zoo.get(recipe, scale, device=device, seed=seed) for name, recipe in
            (("BYOL", "lead/stage1-byol"), ("MoCo", "lead/stage1-moco"), ("supervised", "lead/supervised"))}
    torch.manual_seed(seed)
    nets["random"] = Backbone(nets["BYOL"].name).to(device).eval()
    return {k: nets[k] for k in ("BYOL", "MoCo", "random", "supervised")}


# -- LEAD stage 2 and its baselines (thesis §3.2.3, Table 3.1 / 3.3) ---------------------------
# The thesis does not give stage 2's optimiser: DVE's released configs (jamt9000/DVE
# configs/celeba/*.json) decide, Adam lr 1e-3, no weight decay, amsgrad. Below full, the
# DenseNet's encoder is ResNet-18 stages 1-3 (2.96 M weights instead of 11.5 M), so that Table
# 3.1's and 3.3's six dense networks fit the shipped zoo's budget; data_scripts/stage2_ablation.py
# measured what the optimiser and the depth cost at small (results/lead/stage2-ablation/).
_DVE_ADAM = dict(weight_decay=0.0, amsgrad=True)
# small: 1500 steps of 64 48-px crops (4.8 passes over the 20k images), FPN width 64, bf16
# autocast + channels_last: about 150 images/s on 2 AMX cores (fp32: 123; at batch 16, 89
# either way), about 11 min, within the design's 15 min per stage-2 recipe; full = the thesis:
# batch 256, 20 epochs of CelebA (162,770 images: about 12,700 steps).
_STAGE2 = {
    "smoke": dict(scale="smoke", n=256, render=48, size=40, batch_size=8, steps=4, width=32,
                  lr=1e-3, crop_scale=(0.3, 1.0), **_DVE_ADAM, stages=3),
    "small": dict(scale="small", n=20000, render=64, size=48, batch_size=64, steps=1500, width=64,
                  lr=1e-3, crop_scale=(0.3, 1.0), **_DVE_ADAM, stages=3, amp=True, channels_last=True),
    "full": dict(scale="full", n=None, render=None, size=96, batch_size=256, steps=12_700,
                 width=128, lr=1e-3, crop_scale=(0.5, 1.0), **_DVE_ADAM, stages=4, amp=True,
                 channels_last=True),
}
_TEACHER = {"lead": "lead/stage1-byol", "dve": "lead/stage1-byol", "cl": "lead/stage1-moco",
            "nmf": "lead/stage1-byol"}


def _teacher_of(teacher):
    """A stage-2 recipe's ``inputs``: its stage-1 teacher recipe ``teacher``, of the same seed."""
    return lambda scale, seed, cfg: [(teacher, scale, seed, {})]


def _stage2_recipe(method, teacher):
    def train(cfg, device, seed):
        cfg = dict(cfg)
        scale = cfg.pop("scale")
        net = zoo.get(teacher, scale, device=device, seed=seed)
        images = pretraining_images(scale, cfg.pop("n"), cfg.pop("render"))
        from .ssl.lead import train_stage2
        art = train_stage2(method, images, net, cfg, device=device, seed=seed)
        return {**art, "teacher": dict(recipe=teacher, scale=scale, seed=seed)}
    return train


def _build_stage2(art, device):
    from .ssl.lead import DenseNet, NMFFeatures, ProjectedHypercolumn
    cfg = art["config"]
    if art["method"] in ("lead", "dve"):
        net = DenseNet(art["backbone"], cfg["feat_dim"], cfg["width"], stages=cfg.get("stages", 4))
        net.load_state_dict(art["state_dict"])
        return net.to(device).eval()
    t = art["teacher"]
    teacher = zoo.get(t["recipe"], t["scale"], device=device, seed=t["seed"])
    if art["method"] == "nmf":
        return NMFFeatures(teacher, art["components"]).to(device).eval()
    net = ProjectedHypercolumn(teacher, cfg["feat_dim"])
    net.proj.load_state_dict(art["state_dict"])
    return net.to(device).eval()


# ContrastLandmarks trains its projector with weight decay 5e-4 (cvl-umass/contrast-landmark
# train_feature_projector.py; its default optimiser is SGD, ours is the Adam all stage-2 methods share).
_STAGE2_EXTRA = {"lead": dict(feat_dim=64, proj_dim=256), "dve": dict(feat_dim=64),
                 "cl": dict(feat_dim=64, weight_decay=5e-4, amsgrad=False)}
for _method, _extra in _STAGE2_EXTRA.items():
    zoo.register(f"lead/stage2-{_method}", {s: {**c, **_extra} for s, c in _STAGE2.items()}, build=_build_stage2,
                 store="int8", inputs=_teacher_of(_TEACHER[_method]), parallel=True)(
                     _stage2_recipe(_method, _TEACHER[_method]))

# Table 3.6 (thesis §3.3.2): each stage-2 objective on the *other* stage-1 network, with its own
# recipe's config otherwise unchanged (the thesis: "same architectures ... only vary the objective").
# LEAD's dense net on MoCo and CL's projector on BYOL; the diagonal cells are the recipes above.
CROSSED_STAGE2 = {"lead/stage2-lead-from-moco": ("lead", "lead/stage1-moco"),
                  "lead/stage2-cl-from-byol": ("cl", "lead/stage1-byol")}
for _name, (_method, _teacher) in CROSSED_STAGE2.items():
    zoo.register(_name, {s: {**c, **_STAGE2_EXTRA[_method]} for s, c in _STAGE2.items()}, build=_build_stage2,
                 store="int8", inputs=_teacher_of(_teacher), parallel=True)(_stage2_recipe(_method, _teacher))


_NMF = {"smoke": dict(scale="smoke", images=32, pixels=2000, feat_dim=64),
        "small": dict(scale="small", images=500, pixels=10000, feat_dim=64),
        "full": dict(scale="full", images=2000, pixels=50000, feat_dim=64)}


@zoo.register("lead/stage2-nmf", _NMF, build=_build_stage2, inputs=_teacher_of(_TEACHER["nmf"]))
def train_nmf(cfg, device, seed):
    """``BYOL + NMF``: scikit-learn NMF of BYOL hypercolumn vectors, ``pixels`` of them drawn at
    random from the maps of ``images`` MAFL-role training images (the centre-crop framing the
    features are evaluated on)."""
    from .nets.backbones import hypercolumns
    from .ssl.lead import fit_nmf
    if cfg["scale"] == "full":
        raise NotImplementedError("full-scale NMF: fit it on real MAFL training hypercolumns "
                                  "(ssl_lab.data.faces) and pass checkpoint=")
    teacher = zoo.get(_TEACHER["nmf"], cfg["scale"], device=device, seed=seed)
    faces = splits.load("mafl/train", cfg["scale"], n=cfg["images"])
    h = hypercolumns(teacher, faces.data["image"], device=device)
    vec = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).float()
    gen = torch.Generator().manual_seed(seed)
    vec = vec[torch.randperm(len(vec), generator=gen)[:cfg["pixels"]]]
    t0 = time.perf_counter()
    fit = fit_nmf(vec, cfg["feat_dim"], seed=seed)
    return dict(method="nmf", backbone=teacher.name, config=cfg, **fit,
                wall_s=time.perf_counter() - t0,
                teacher=dict(recipe=_TEACHER["nmf"], scale=cfg["scale"], seed=seed))


# -- StyleGAN2-ADA (+HSR) on a limited set (thesis §4.3.1, Tables 4.1, 4.2, 4.4) --------------
# The thesis's design-choice study: 389 AnimalFace-Dog images doubled by x-flips, 256 px,
# StyleGAN2-ADA, HSR switched on after a 500-kimg warm-up. Here one warm-up is trained
# (hsr/warmup, keeping its training state) and every variant branches from it
# (hsr/branch: HSR with a feature network and level subset, path-length regularizer on/off).
# small: 400 SynthFaces (FFHQ role) doubled by flips, 64 px; full: the thesis's dog set. The
# thesis does not state the total length at full scale; branch_kimg there is our choice.
# small: 400 aligned FFHQ-role SynthFaces (splits.GAN_SPECS; the config carries the split's key,
# so the artefacts go stale with it) doubled by flips, 32 px, a 375-kimg warm-up (133 min on
# 2 CPU cores, its manifest) that must pass the GAN gates (gates.gan_warmup) before any branch counts. (At 250
# kimg it failed G1, precision 0.476 against 0.5, with FD and precision still improving: the
# warm-up page shows both runs.)
_GAN = {
    "smoke": dict(scale="smoke", images=64, warmup_kimg=0.064, branch_kimg=0.064),
    "small": dict(scale="small", images=400, warmup_kimg=375.0, branch_kimg=190.0,
                  split="ffhq_aligned", split_key=splits.spec_key("ffhq_aligned")),
    "full": dict(scale="full", images=389, warmup_kimg=500.0, branch_kimg=4500.0, dataset="animalface-dog"),
}
#: EMA-generator snapshots kept over a small warm-up: the points of its FD curve
GAN_SNAPSHOTS = 8


def gan_images(scale: str, n: int, split: str = "ffhq", dataset: str = "animalface-dog"):
    """A GAN training set: the first ``n`` SynthFaces of the FFHQ-role ``split`` and their mirror
    images (the thesis doubles every dataset by horizontal flips), float in [0, 1]. Full scale:
    ``n`` images of the real ``dataset`` under ``$SSL_LAB_DATA`` (a name of
    :data:`ssl_lab.data.images.IMAGE_DATASETS`, written by ``prepare_gan_images.py``; the
    design study's AnimalFace-Dog by default) at 256 px and their mirror images, as a Dataset
    read from disk."""
    if scale == "full":
        from .data.images import IMAGE_DATASETS, image_dataset
        return image_dataset(dataset, _data_root(IMAGE_DATASETS[dataset].source), 256, limit=n, xflip=True)
    x = splits.load(split, scale).subset(n).images
    return torch.cat([x, x.flip(-1)])


def gan_training_set(cfg: dict) -> torch.Tensor:
    """The images a ``hsr/warmup`` or ``hsr/branch`` config trains on."""
    return gan_images(cfg["scale"], cfg["images"], cfg.get("split", "ffhq"), cfg.get("dataset", "animalface-dog"))


def warmup_of(cfg: dict) -> dict:
    """The ``hsr/warmup`` overrides of the warm-up a ``hsr/branch`` config starts from: its
    training set (``images``; at full scale also ``dataset``) and length."""
    return {k: cfg[k] for k in ("images", "warmup_kimg", "dataset") if k in cfg}


@zoo.register("hsr/warmup", {s: {k: v for k, v in c.items() if k != "branch_kimg"}
                             for s, c in _GAN.items()}, ship_state=True, parallel=True)
def train_gan_warmup(cfg, device, seed):
    """StyleGAN2-ADA without HSR for ``warmup_kimg``, keeping the training state to branch from.
    Below full scale it is resumable (the zoo's training checkpoint) and keeps
    :data:`GAN_SNAPSHOTS` EMA generators; at small, its FD curve over them and the GAN gates
    (:func:`ssl_lab.gates.gan_warmup`, in the eval feature space) come with the artefact."""
    from .gan.evaluate import gate_report
    from .gan.train import gan_config, train_gan
    gcfg = gan_config(cfg["scale"], kimg=cfg["warmup_kimg"], hsr=False)
    real = gan_training_set(cfg)
    small = cfg["scale"] == "small"
    art = train_gan(real, gcfg, device=device, seed=seed, keep_state=True,
                    checkpoint=zoo.training_checkpoint(), snapshots=GAN_SNAPSHOTS if small else 0)
    if small:
        art.update(gate_report(art, real, eval_features(cfg["scale"], device), device=device))
    return art


def _branch_inputs(scale, seed, cfg):
    """A branch's ``inputs``: the warm-up (seed 0) and, below full scale, its HSR feature
    network's stand-in (seed 0; at full scale the features are weights files)."""
    feats = HSR_FEATURES[cfg["features"]] if cfg["features"] != "none" and scale != "full" else None
    return [("hsr/warmup", scale, 0, warmup_of(cfg)),
            *([(feats, scale, 0, {})] if feats else [])]


@zoo.register("hsr/branch", {s: {**c, "features": "none", "levels": "all", "pl_weight": 2.0}
                             for s, c in _GAN.items()}, inputs=_branch_inputs, parallel=True)
def train_gan_branch(cfg, device, seed):
    """A variant trained for ``branch_kimg`` from the shared warm-up: ``features`` "none"
    (plain StyleGAN2-ADA) or a Table 4.1 row (:data:`HSR_FEATURES`) with HSR on ``levels``
    (:data:`ssl_lab.gan.hsr.LEVELS`), from the first step of the branch; ``pl_weight`` 0
    switches the path-length regularizer off (Table 4.4). At small scale the GAN gates are
    evaluated again on the branch's final generator (:func:`ssl_lab.gan.evaluate.gate_report`
    with the warm-up's FD curve before it)."""
    from .gan.train import gan_config, train_gan
    # Seeds: every branch starts from the one warm-up, seed 0 (about 2 h on 2 CPU cores at small).
    # Branch seed 0 continues the warm-up's own random streams; a branch seed s > 0 restarts the
    # streams of noise, augmentations and data order from s (train_gan's seed= with resume=). The
    # spread over branch seeds is thus the branch training's noise from a fixed start, and a
    # variant with and without HSR at one seed is a paired comparison from the same generator.
    warm = zoo.load("hsr/warmup", cfg["scale"], device=device, seed=0, with_state=True,
                    **warmup_of(cfg))                                   # with its training state
    hsr = cfg["features"] != "none"
    gcfg = gan_config(cfg["scale"], kimg=cfg["branch_kimg"], hsr=hsr, hsr_levels=cfg["levels"],
                      pl_weight=cfg["pl_weight"], hsr_warmup_kimg=cfg["warmup_kimg"])
    # The feature networks are fixed, pretrained ones (seed 0), as in the thesis: a branch's
    # seed varies the GAN only, and never turns "ResNet50" into the seed-1 evaluation network.
    feats = hsr_features(cfg["features"], cfg["scale"], device=device) if hsr else None
    real = gan_training_set(cfg)
    art = train_gan(real, gcfg, device=device, features=feats, resume=warm, seed=seed or None,
                    checkpoint=zoo.training_checkpoint())
    if cfg["scale"] == "small":                  # G1-G3 again, FD over warm-up and branch
        from .gan.evaluate import gate_report
        art.update(gate_report(art, real, eval_features(cfg["scale"], device), device=device,
                               before=warm["fd_curve"]))
    return art


def generator(art, device="cpu"):
    """The EMA generator of a ``train_gan`` result (e.g. ``zoo.get("hsr/branch", ...)``), in eval mode."""
    from .nets.stylegan2 import build
    G, _ = build(art["arch"])
    G.load_state_dict(art["G_ema"])
    return G.to(device).eval().requires_grad_(False)


def _weights_file(name: str, what: str):
    from pathlib import Path
    return Path(_data_root(what)) / "weights" / name


def eval_features(scale: str, device="cpu"):
    """The feature network of the image metrics (FD, precision/recall, Mahalanobis outliers).
    At full scale, FID's Inception-v3 (:func:`ssl_lab.nets.extractors.fid_inception`) from
    ``<data root>/weights/`` + :data:`~ssl_lab.nets.extractors.FID_INCEPTION_WEIGHTS`, named
    ``inception-fid`` (its Frechet distance is FID). Below it, the pooled features of a ResNet
    trained on the SynthFaces attributes with seed 1, so it is not the seed-0 network that
    HSR's "ResNet50" row regularises with, named ``synth-sup-r18``: its Frechet distance prints
    as ``FD_synth-sup-r18``, never as FID. Takes GAN images in [-1, 1], resized to the
    resolution the network was trained at (``.size``; ``.net`` is the network, for
    :func:`ppl_distance`)."""
    if scale == "full":
        from .nets.extractors import FID_INCEPTION_WEIGHTS, fid_inception
        inception = fid_inception(_weights_file(FID_INCEPTION_WEIGHTS, "FID's Inception-v3 weights")).to(device)

        def fid_features(images):
            with torch.no_grad():
                return inception(images.to(device))
        fid_features.name, fid_features.net, fid_features.size = inception.name, inception, 299
        return fid_features
    net = zoo.get("lead/supervised", scale, device=device, seed=1)
    size = zoo.config("lead/supervised", scale)["render"]

    def features(images):         # at the resolution the network was trained at
        x = (images.to(device).float() + 1) / 2
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            return net.pooled(x)
    features.name = f"synth-sup-{net.name.replace('resnet', 'r')}"
    features.net, features.size = net, size
    return features


def ppl_distance(scale: str, device="cpu", dtype: torch.dtype = torch.float32):
    """PPL's image distance: at full scale StyleGAN2's, LPIPS-VGG
    (:func:`ssl_lab.nets.extractors.lpips_vgg`, its VGG-16 trunk from ``<data root>/weights/``
    + :data:`~ssl_lab.nets.extractors.VGG16_WEIGHTS`); below it, LPIPS's uncalibrated form
    on the image metrics' network (:func:`eval_features`,
    :func:`ssl_lab.metrics.ppl.feature_distance`). ``dtype``: the network's (float64 for a PPL
    that every CPU computes alike; see :func:`ssl_lab.gan.evaluate.evaluate`'s ``ppl_dtype``)."""
    if scale == "full":
        from .nets.extractors import VGG16_WEIGHTS, lpips_vgg
        return lpips_vgg(_weights_file(VGG16_WEIGHTS, "LPIPS-VGG's VGG-16 weights")).to(device, dtype)
    from .metrics.ppl import feature_distance
    feats = eval_features(scale, device)
    return feature_distance(feats.net.to(dtype), input_size=feats.size)


# -- the ALS chapter's attribute classifiers (thesis §4.3.3) ----------------------------------
# small: a ResNet-10-T (4.9 M parameters) at the GAN's 32 px, 1,500 steps of 64 on the first
# 8,000 images of its own split; the last 2,000 are held out (its AUC per attribute is shown).
_ALS_CLF = {
    "smoke": dict(scale="smoke", backbone="test_resnet", train=192, test=64, batch_size=32,
                  steps=10, lr=1e-3),
    "small": dict(scale="small", backbone="resnet10t", train=8000, test=2000, batch_size=64,
                  steps=1500, lr=1e-3),
}
for _c in _ALS_CLF.values():
    _c.update(split="ffhq_aligned_attr", split_key=splits.spec_key("ffhq_aligned_attr"))


def _build_classifier(art, device):
    from .attribute_classifier import AttributeClassifier
    clf = AttributeClassifier(art["backbone"])
    clf.load_state_dict(art["state_dict"])
    return clf.to(device).eval().requires_grad_(False)


def als_classifiers(scale: str, device="cpu", seed: int = 0):
    """The ALS chapter's attribute classifiers ``C_j``: an object whose ``.scores(images)`` maps
    generator images in [-1, 1] to ``(B, 6)`` logits in the order of
    :data:`ssl_lab.attribute_classifier.ALS_ATTRIBUTES`. At full scale the StyleGAN release's
    CelebA-HQ classifiers (:data:`ssl_lab.nets.celebahq_classifier.ALS_FILES`), read from
    ``<data root>/weights/``; a missing file is a ``FileNotFoundError`` naming it and where it must
    be. Below full scale the ``als/classifier`` artefact of ``seed``."""
    if scale != "full":
        return zoo.get("als/classifier", scale, device=device, seed=seed)
    from .attribute_classifier import ALS_ATTRIBUTES
    from .nets.celebahq_classifier import ALS_FILES, SOURCE, CelebAHQAttributeClassifiers, load_celebahq_classifier
    assert list(ALS_FILES) == list(ALS_ATTRIBUTES)
    paths = {a: _weights_file(f, "the CelebA-HQ attribute classifiers") for a, (f, _) in ALS_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ALS at full scale needs the CelebA-HQ attribute classifiers {missing} in "
                                f"{next(iter(paths.values())).parent} (from {SOURCE}); nothing is downloaded "
                                "here: put local copies there")
    clfs = CelebAHQAttributeClassifiers({a: load_celebahq_classifier(p) for a, p in paths.items()},
                                        {a: sign for a, (_, sign) in ALS_FILES.items()})
    return clfs.to(device)


@zoo.register("als/classifier", _ALS_CLF, build=_build_classifier, store="int8")
def train_attribute_classifier(cfg, device, seed):
    """The attribute classifiers ``C_j`` of ALS below full scale
    (:mod:`ssl_lab.attribute_classifier`), with their held-out accuracy and AUC."""
    from .attribute_classifier import AttributeClassifier, fit, held_out_report
    faces = splits.load(cfg["split"], cfg["scale"])
    images, labels = faces.data["image"], faces.data["binary"]
    n, m = cfg["train"], cfg["test"]
    if n + m > len(images):
        raise ValueError(f"{cfg['split']} has {len(images)} images, fewer than {n} + {m}")
    torch.manual_seed(seed)
    clf = AttributeClassifier(cfg["backbone"]).to(device)
    t0 = time.perf_counter()
    history = fit(clf, images[:n], labels[:n], cfg["steps"], cfg["batch_size"], cfg["lr"], seed, device)
    wall = time.perf_counter() - t0
    return dict(backbone=cfg["backbone"], history=history, wall_s=wall,
                held_out=held_out_report(clf.cpu(), images[-m:], labels[-m:]),
                state_dict={k: v.detach().cpu().clone() for k, v in clf.state_dict().items()})


# -- what the book's chapters load ------------------------------------------------------------
#: the LEAD stage-2 configurations of Table 3.3 (output dims / projection dims; None: no head)
LEAD_CONFIGS = {"64 / none": (64, None), "64 / 64": (64, 64), "64 / 256": (64, 256),
                "128 / 256": (128, 256), "256 / 256": (256, 256)}

#: the HSR design study's variants (Tables 4.1, 4.2, 4.4) -> ``hsr/branch`` overrides
HSR_VARIANTS = {"StyleGAN2-ADA": dict(features="none"),
                **{row: dict(features=row) for row in HSR_FEATURES},
                **{f"{lv.capitalize()}-level": dict(features="ViT DINO", levels=lv) for lv in ("high", "mid", "low")},
                "none (no PLR, no HSR)": dict(features="none", pl_weight=0.0),
                "HSR without PLR": dict(features="ViT DINO", pl_weight=0.0)}


#: the generators of the ALS chapter (thesis Fig. 4.10's rows) -> (recipe, overrides). The thesis
#: compares StyleGAN2-ADA with and without HSR trained alike: here the two branches of the shared
#: warm-up (equal length; HSR with the "ResNet50 DINO" row's stand-in, the only self-supervised
#: feature network trained at small scale so far), and the warm-up itself (shorter training).
ALS_GENERATORS = {"SG2-ADA": ("hsr/branch", {}),
                  "SG2-ADA + HSR": ("hsr/branch", {"features": "ResNet50 DINO"}),
                  "SG2-ADA warm-up": ("hsr/warmup", {})}
#: the feature network (Table 4.1 row) of the HSR generator of ALS_GENERATORS (and of the method page)
ALS_HSR_FEATURES = ALS_GENERATORS["SG2-ADA + HSR"][1]["features"]
#: Tables 4.5 and 4.3 (StyleGAN2-ADA with and without HSR on fewer and on more images): data row ->
#: the ``hsr/warmup`` / ``hsr/branch`` overrides of its training set, per scale. Each row is one
#: warm-up on that set and two branches from it, without HSR and with HSR on ALS_HSR_FEATURES, as
#: in the design study (the thesis switches HSR on after a 500-kimg warm-up). "FFHQ" is the whole
#: set (Table 4.3's FFHQ-140k: 70k images and their flips); the aligned FFHQ role holds 10,000
#: SynthFaces at small, so there it is the FFHQ-10k run. A subset is the set's first ``images``
#: images. AnimalFace, CUB and LSUN-Church exist at full scale only (real images).
GAN_DATA_ROWS = {
    "smoke": {"FFHQ-1k": dict(images=16), "FFHQ-2k": dict(images=32), "FFHQ-10k": dict(images=64),
              "FFHQ": dict(images=256)},
    "small": {"FFHQ-1k": dict(images=1000), "FFHQ-2k": dict(images=2000), "FFHQ-10k": dict(images=10000),
              "FFHQ": dict(images=10000)},
    "full": {**{f"FFHQ-{k}k": dict(images=1000 * k, dataset="ffhq") for k in (1, 2, 10)},
             "FFHQ": dict(images=70000, dataset="ffhq"), "AnimalFace-Dog": dict(images=389),
             "AnimalFace-Cat": dict(images=160, dataset="animalface-cat"),
             "CUB": dict(images=11788, dataset="cub"), "LSUN-Church": dict(images=126227, dataset="lsun-church")},
}


def gan_data_branches(scale: str) -> dict[tuple[str, bool], dict]:
    """``(data row, with HSR) -> hsr/branch overrides`` of :data:`GAN_DATA_ROWS` at ``scale``."""
    return {(row, hsr): {**ov, **({"features": ALS_HSR_FEATURES} if hsr else {})}
            for row, ov in GAN_DATA_ROWS[scale].items() for hsr in (False, True)}


#: the ALS rows whose edits are projected and scored (Fig. 4.11 compares these two)
ALS_EDITED = ("SG2-ADA", "SG2-ADA + HSR")
#: the branch (training) seeds of the ALS_EDITED generators the ALS chapter scores, per scale
ALS_BRANCH_SEEDS = {"smoke": (0,), "small": (0, 1, 2), "full": (0,)}


def chapter_artefacts(chapter: str, scale: str, seed: int = 0) -> list[tuple[str, str, int, dict]]:
    """Every ``(recipe, scale, seed, overrides)`` that chapter ``chapter`` (its path under
    ``book/`` without the suffix, e.g. ``"lead/matching"``) loads at ``scale``: what the
    shipped zoo must hold for that page to evaluate without training."""
    s = lambda name, sd=seed, **ov: (name, scale, sd, ov)
    stage1 = [s("lead/stage1-byol"), s("lead/stage1-moco"), s("lead/supervised")]
    fd_net = [] if scale == "full" else [s("lead/supervised", 1)]   # the HSR FD network; full: FID's Inception file
    if chapter in ("lead/correspondences", "lead/part_clusters"):
        return stage1
    if chapter == "lead/matching":
        return [s("lead/stage1-byol"), s("lead/stage1-moco"),
                *(s("lead/stage2-lead", feat_dim=c, proj_dim=p) for c, p in LEAD_CONFIGS.values()),
                s("lead/stage2-dve", feat_dim=64), s("lead/stage2-cl", feat_dim=64), s("lead/stage2-cl", feat_dim=256),
                s("lead/stage2-nmf", feat_dim=64), s("lead/stage2-nmf", feat_dim=256)]
    if chapter in ("lead/regression", "lead/regression_ablations"):
        from .regression import ABLATION_FITS, FEW_ANNOTATIONS, FEW_DRAWS, REGRESSION_FITS, TABLE_3_5, feature_network
        fits, few = (REGRESSION_FITS, ()) if chapter == "lead/regression" else (ABLATION_FITS, TABLE_3_5)
        nets = [feature_network(row)[:2] for row, _ in fits]
        feats = {(name, tuple(sorted(ov.items()))) for name, ov in nets if name is not None}
        teachers = {(t, tuple(sorted(ov.items()))) for name, ov in feats    # CL's projector evaluates on its teacher;
                    for t, _, _, ov in zoo.inputs(name, scale, seed, **dict(ov))}   # BYOL is gate S2's yardstick
        return [*(s(name, **dict(ov)) for name, ov in sorted(teachers) + sorted(feats)),
                *(s("lead/regressor", features=row, set=st) for row, st in fits),
                *(s("lead/regressor-few", features=row, annotations=n, draw=d)
                  for row in few for n in FEW_ANNOTATIONS for d in FEW_DRAWS[scale])]
    if chapter == "hsr/method":                                          # the ALS chapter's pair of branches
        standin = [] if scale == "full" else [s(HSR_FEATURES[ALS_HSR_FEATURES])]   # full: a weights file
        return [*standin, *(s(name, **ov) for name, ov in ALS_GENERATORS.values())]
    if chapter == "hsr/design_choices":
        cfg = zoo.config("hsr/branch", scale)
        warm = dict(images=cfg["images"], warmup_kimg=cfg["warmup_kimg"])
        # the page loads the generators only: the feature networks the branches trained with are
        # their inputs (training_plan lists them; staleness compares their keys, so they need not ship)
        return [*fd_net, s("hsr/warmup", **warm), *(s("hsr/branch", **kw) for kw in HSR_VARIANTS.values())]
    if chapter == "hsr/warmup":                                             # the generator, the FD network
        return [s("hsr/warmup"), *fd_net]
    if chapter == "hsr/limited_data":     # per data row, the branches without / with HSR (their warm-ups are
        branches = [s("hsr/branch", **ov) for ov in gan_data_branches(scale).values()]   # inputs, as above)
        return [*fd_net, *(a for i, a in enumerate(branches) if a not in branches[:i])]
    if chapter == "hsr/latent_linearity":                                 # C_j (full: weights files);
        return [*([] if scale == "full" else [s("als/classifier")]), *fd_net,   # the projection distance
                *(s(name, **ov) for name, ov in ALS_GENERATORS.values()),
                *(s(*ALS_GENERATORS[row][:1], sd, **ALS_GENERATORS[row][1])
                  for sd in ALS_BRANCH_SEEDS[scale][1:] for row in ALS_EDITED)]
    return []


#: the recipes that train data-parallel under torchrun (the others run in one process)
DATA_PARALLEL = frozenset(name for name, r in zoo.RECIPES.items() if r.parallel)


def chapter_weights(chapter: str, scale: str) -> list[str]:
    """The local weights files (under ``<data root>/weights``) that chapter ``chapter`` reads at
    ``scale``: at full scale, the HSR chapters' Table 4.1 networks (:data:`HSR_FULL_NETWORKS`; the
    method and limited-data pages read their HSR branches' one only) and their image metrics'
    networks (FID's Inception-v3, PPL's LPIPS-VGG trunk; not the method page's); the ALS
    chapter's six CelebA-HQ attribute classifiers (:func:`als_classifiers`) and FID's
    Inception-v3 (its projection distance, :func:`eval_features`)."""
    from .nets.celebahq_classifier import ALS_FILES
    from .nets.extractors import FID_INCEPTION_WEIGHTS, VGG16_WEIGHTS
    if scale == "full" and chapter == "hsr/latent_linearity":
        return [f for f, _ in ALS_FILES.values()] + [FID_INCEPTION_WEIGHTS]
    if scale != "full" or chapter not in ("hsr/warmup", "hsr/method", "hsr/design_choices", "hsr/limited_data"):
        return []
    metrics = [FID_INCEPTION_WEIGHTS, VGG16_WEIGHTS]
    if chapter == "hsr/warmup":
        return metrics
    if chapter == "hsr/limited_data":            # the HSR branches' feature network and the metrics
        return [HSR_FULL_NETWORKS[ALS_HSR_FEATURES][2], *metrics]
    if chapter == "hsr/method":                  # the HSR branch's feature network only, no metrics
        return [HSR_FULL_NETWORKS[ALS_HSR_FEATURES][2]]
    return [HSR_FULL_NETWORKS[row][2] for row in HSR_FEATURES if HSR_FULL_NETWORKS[row][2]] + metrics


def _with_inputs(arts: list) -> list:
    """``arts`` with every artefact's inputs (:func:`ssl_lab.zoo.inputs`, recursively) before it, once each
    (two entries are one artefact when their :func:`zoo.key` is equal: overrides equal to the
    defaults drop out)."""
    out, seen = [], set()

    def ident(a):
        try:
            return zoo.key(a[0], a[1], a[2], **a[3])
        except ValueError:                       # no config at this scale: listed as not available
            return repr(a)

    def add(a):
        try:
            ins = zoo.inputs(a[0], a[1], a[2], **a[3])
        except ValueError:
            ins = []
        for i in ins:
            add(i)
        if (k := ident(a)) not in seen:
            seen.add(k)
            out.append(a)
    for a in arts:
        add(a)
    return out


def training_plan(chapter: str, scale: str, gpus: int = 1, device: str = "cuda", data_root: str = "DATA",
                  seed: int = 0) -> list[str]:
    """The shell lines that make what chapter ``chapter`` loads at ``scale`` and then execute
    it: one ``train`` per artefact of :func:`chapter_artefacts`, in that order (teachers and
    warm-ups first), under ``torchrun --nproc_per_node gpus`` for :data:`DATA_PARALLEL` recipes;
    ``#`` lines for the weights files it reads and for artefacts without a config at ``scale``.
    Below full scale the artefacts are shipped (``--ship``); at full scale they stay in the
    cache (``$SSL_LAB_HOME``), where the chapter then finds them."""
    import shlex
    full = scale == "full"
    root = f" --data-root {shlex.quote(data_root)}" if full else ""
    from .nets.celebahq_classifier import ALS_FILES
    see = {**{v[2]: "HSR_FULL_NETWORKS" for v in HSR_FULL_NETWORKS.values()},
           **{f: "ssl_lab.nets.celebahq_classifier" for f, _ in ALS_FILES.values()}}
    lines = [f"# put {f} under {data_root}/weights/ (see {see.get(f, 'ssl_lab.nets.extractors')})"
             for f in chapter_weights(chapter, scale)]
    for name, sc, sd, ov in _with_inputs(chapter_artefacts(chapter, scale, seed)):
        try:
            zoo.config(name, sc, **ov)
        except ValueError as e:
            lines.append(f"# not available: {e}")
            continue
        cmd = zoo.train_command(name, sc, sd, ship=not full, **ov).replace("python -m ssl_lab", "", 1)
        launch = f"torchrun --nproc_per_node {gpus} -m ssl_lab" if gpus > 1 and name in DATA_PARALLEL else "python -m ssl_lab"
        lines.append(f"{launch}{cmd} --device {device}{root}")
    lines.append(f"python -m ssl_lab run {chapter} --scale {scale} --device {device} --seed {seed}{root}")
    return lines


#: the book's chapters that load trained artefacts (their paths under ``book/``, no suffix)
CHAPTERS = ("lead/correspondences", "lead/part_clusters", "lead/matching", "lead/regression",
            "lead/regression_ablations", "hsr/warmup", "hsr/method", "hsr/design_choices", "hsr/limited_data",
            "hsr/latent_linearity")


def book_artefacts(scale: str | None = None, seed: int = 0) -> list[tuple[str, str, int, dict]]:
    """Every artefact any chapter loads at ``scale`` (the union of :func:`chapter_artefacts`);
    with ``scale=None``, each chapter at its default scale: what the shipped zoo holds. Other
    smoke networks are trained on first use (seconds to minutes on a CPU) into the cache."""
    out = []
    for chapter in CHAPTERS:
        out += [a for a in chapter_artefacts(chapter, scale or default_scale(chapter), seed) if a not in out]
    return out


def default_scale(chapter: str) -> str:
    """The ``scale = "..."`` default of a chapter's parameters cell: the scale of its committed
    outputs, which the book shows."""
    nb = json.loads((repo_root() / "book" / f"{chapter}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return re.search(r'^scale = "(\w+)"', "".join(cell["source"]), re.M).group(1)
