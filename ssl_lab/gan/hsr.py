"""Hierarchical Semantic Regularizer (HSR; thesis Sec. 4.2.2-4.3.1, Eq. 4.2).

A frozen feature network F gives, for a generated image G(z), feature maps at four depths.
Small predictors q_i (1x1 conv -> LeakyReLU -> 1x1 conv; hidden width 4096 at full scale)
map the generator's own feature map at resolution r_i to the channel count of the paired
F depth; the generator (and the q_i) are trained to make the prediction match:

    L_G += lambda * sum_i  mean_{b,c,u,v} ( resize(q_i(G^{r_i}(z))) - F^{d_i}(G(z)) )^2

Details, as in the thesis and the authors' released code (val-iisc/HSR,
``training/loss.py``, ``training/networks.py``, ``training/load_fe.py``):

* G features: the output of the synthesis block at r_i (after its second conv, before
  toRGB). Full scale: r = 8, 16, 32, 64 of the 256 px generator, i.e. r/32, r/16, r/8, r/4.
* Predictor first, then resize: q_i runs at the native resolution r_i, its output is
  resized to F's grid (14 x 14 for ViT-B/16 at 224 px). The released code resizes with
  ``mode='area'`` (= adaptive average pooling, also when enlarging 8 -> 14); that is the
  default here (``resize_mode="area"``); ``"bilinear"`` is the alternative.
* Targets: F on the generated image (not the augmented one), under ``no_grad``: no
  gradient flows through F, only through G's features and the predictors. F is frozen.
  ViT (DINO ViT-B/16): the image is resized to 224 x 224 and normalised with ImageNet
  mean/std (the released code: CLIP's mean, ImageNet's std), the outputs of transformer
  blocks 3, 6, 9, 12 *after the final LayerNorm* (DINO's ``get_intermediate_layers``
  applies it; so does timm's ``forward_intermediates(norm=True)`` here) without the CLS
  token, reshaped to 14 x 14 grids. ResNet: the outputs of its four stages
  (layer1..layer4). No other normalisation.
* Loss: squared L2 normalised like ``F.mse_loss``, i.e. the mean over batch, channels and
  grid positions, per level; summed over the selected levels; weight lambda = 1.
* Warm-up: HSR is switched on after 500 kimg at full scale (thesis Sec. 4.3.1).
* The predictors belong to the generator's optimizer (same learning rate), as in the
  released code, which builds them with StyleGAN's equalised-lr conv layers; so do we.
  The paper says LeakyReLU between the two 1x1 convs (the released code uses ReLU); we use
  leaky ReLU (slope 0.2, times sqrt 2, the StyleGAN activation).

Level pairing and Table 4.2. The feature callable returns its four maps shallow -> deep
(index 0 = block 3 / layer1, index 3 = block 12 / layer4). Thesis Sec. 4.2.3: the lowest
supervised G block (coarse, high-level semantics) is paired with the extractor's last
block, and each finer G block with a correspondingly shallower one; Sec. 4.3.1 spells it
out for ViT-DINO: blocks 3, 6, 9, 12 supervise G at 64, 32, 16, 8 px. So pair i
(i = 0..3 from the lowest G resolution) is ``(G res r_i, F index 3 - i)``:

    pair 0: G r/32 (8 px)  <-> F deepest   (ViT block 12, ResNet layer4)
    pair 1: G r/16 (16 px) <-> F index 2   (ViT block 9,  ResNet layer3)
    pair 2: G r/8  (32 px) <-> F index 1   (ViT block 6,  ResNet layer2)
    pair 3: G r/4  (64 px) <-> F shallowest(ViT block 3,  ResNet layer1)

Table 4.2 names its three groups by the G scales they supervise: "High-level (r/32, r/16)"
= pairs 0, 1; "Mid-level (r/16, r/8)" = pairs 1, 2; "Low-level (r/8, r/4)" = pairs 2, 3;
"All levels" = 0..3 (:data:`LEVELS`). The released code indexes the same four pairs by
``loss_layers`` over ``res = (8, 16, 32, 64)`` with the DINO layers ordered (11, 8, 5, 2).

Smaller generators (:func:`hsr_resolutions`): four octaves starting at
``max(4, R // 32)``: R = 256 -> 8..64; R = 128, 64, 32 -> 4, 8, 16, 32.

Feature networks (:mod:`ssl_lab.nets.extractors`): ``vit_features`` (timm ViT) and
``resnet_features`` (timm ResNet via :class:`ssl_lab.nets.backbones.Backbone`) build frozen
callables ``images -> [4 maps]`` taking generator images in [-1, 1]. Weights only from a local file: ``weights=None`` is a
random initialisation (the thesis' "ViT (RandInit)" row), a missing path is a
``FileNotFoundError``, a file that does not fit is a ``ValueError``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.stylegan2 import EqualConv2d

LEVELS = {"high": (0, 1), "mid": (1, 2), "low": (2, 3), "all": (0, 1, 2, 3)}


def hsr_resolutions(resolution: int) -> tuple[int, ...]:
    """The four G resolutions HSR supervises: 8, 16, 32, 64 at 256 px (r/32 .. r/4)."""
    start = max(4, resolution // 32)
    res = tuple(start * 2 ** i for i in range(4))
    if res[-1] > resolution:
        raise ValueError(f"HSR needs four generator resolutions >= 4; {resolution} px has too few")
    return res


class Predictor(nn.Module):
    """q: 1x1 conv -> leaky ReLU -> 1x1 conv (equalised learning rate)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, hidden, 1, activate=True)
        self.conv2 = EqualConv2d(hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def resize(x: torch.Tensor, size, mode: str = "area") -> torch.Tensor:
    size = tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "area":
        return F.adaptive_avg_pool2d(x, size)
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    raise ValueError(f"resize mode must be 'area' or 'bilinear', got {mode!r}")


class HSR(nn.Module):
    """The regulariser: predictors + loss; holds (does not own) the frozen feature callable.

    features: ``images (B,3,R,R) in [-1,1] -> list of 4 maps (B, C_l, h_l, w_l)``, shallow
    to deep. target_channels: the four C_l (default ``features.channels``). g_channels:
    ``{res: C}`` of the generator (``G.channels``). The feature network is stored outside
    the module's parameters/state_dict, so ``hsr.parameters()`` are the predictors only."""

    def __init__(self, features: Callable, g_channels: dict, target_channels: Sequence[int] | None = None,
                 g_resolutions: Sequence[int] = (8, 16, 32, 64), levels: str = "all",
                 hidden: int = 4096, weight: float = 1.0, warmup_kimg: float = 500.0,
                 resize_mode: str = "area"):
        super().__init__()
        if levels not in LEVELS:
            raise ValueError(f"levels must be one of {sorted(LEVELS)}, got {levels!r}")
        if len(g_resolutions) != 4:
            raise ValueError(f"g_resolutions must list 4 generator resolutions, got {g_resolutions}")
        target_channels = target_channels or getattr(features, "channels", None)
        if target_channels is None or len(target_channels) != 4:
            raise ValueError("target_channels: give the 4 channel counts of the feature maps "
                             "(or a features object with a .channels attribute)")
        self.__dict__["features"] = features         # not a submodule: frozen, not trained, not saved
        self.levels, self.weight, self.warmup_kimg = levels, weight, warmup_kimg
        self.resize_mode = resize_mode
        self.pairs = [(int(g_resolutions[i]), 3 - i) for i in LEVELS[levels]]
        missing = [r for r, _ in self.pairs if r not in g_channels]
        if missing:
            raise ValueError(f"generator has no features at resolutions {missing}")
        self.predictors = nn.ModuleDict({str(r): Predictor(g_channels[r], hidden, target_channels[j])
                                         for r, j in self.pairs})

    @property
    def g_resolutions(self) -> list[int]:
        """The generator resolutions whose features this HSR needs."""
        return [r for r, _ in self.pairs]

    def active(self, nimg: int) -> bool:
        """True once ``nimg`` real images have been shown (>= warmup_kimg * 1000)."""
        return nimg >= self.warmup_kimg * 1000

    @torch.no_grad()
    def targets(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats = list(self.features(images.detach()))
        if len(feats) != 4:
            raise ValueError(f"the feature callable must return 4 maps, got {len(feats)}")
        return [f.detach() for f in feats]

    def level_losses(self, g_features: dict, targets: Sequence[torch.Tensor]) -> dict:
        """``{g_res: mse(resize(q(G^r)), F^d)}`` for the selected pairs (unweighted)."""
        out = {}
        for r, j in self.pairs:
            t = targets[j]
            pred = resize(self.predictors[str(r)](g_features[r]), t.shape[-2:], self.resize_mode)
            out[r] = F.mse_loss(pred, t)
        return out

    def forward(self, g_features: dict, images: torch.Tensor):
        """``(weight * sum of level losses, {g_res: level loss})`` for a generated batch."""
        losses = self.level_losses(g_features, self.targets(images))
        return self.weight * sum(losses.values()), losses


def build_hsr(G, features: Callable, levels: str = "all", hidden: int = 4096, weight: float = 1.0,
              warmup_kimg: float = 500.0, resize_mode: str = "area") -> HSR:
    """HSR for generator ``G`` (its resolution picks the G layers, :func:`hsr_resolutions`)."""
    return HSR(features, G.channels, g_resolutions=hsr_resolutions(G.resolution), levels=levels,
               hidden=hidden, weight=weight, warmup_kimg=warmup_kimg, resize_mode=resize_mode)


__all__ = ["LEVELS", "HSR", "Predictor", "build_hsr", "hsr_resolutions", "resize"]
