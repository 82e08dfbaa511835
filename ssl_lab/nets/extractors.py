"""Frozen feature extractors: a pretrained (or random-init) network as a callable from
generator images in [-1, 1] to four feature maps, shallow to deep. HSR regularises with them
(:mod:`ssl_lab.gan.hsr`, thesis Table 4.1); the image metrics' networks are named after them
(:mod:`ssl_lab.metrics.fid`).

:func:`vit_features` (timm ViT: the outputs of four transformer blocks after the final norm,
patch tokens as grids) and :func:`resnet_features` (timm ResNet: its four stages). Weights
only from a local file: ``weights=None`` is a random initialisation, a missing path is a
``FileNotFoundError``, a file that does not fit is a ``ValueError``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _check_weights_arg(weights):
    if weights is True or weights in ("imagenet", "pretrained", "dino"):
        raise FileNotFoundError(
            f"weights={weights!r}: pretrained weights cannot be downloaded here; pass the path "
            "of a local weights file (e.g. DINO's dino_vitbase16_pretrain.pth), or None for a "
            "random initialisation")


class FrozenFeatures(nn.Module):
    """Generator images in [-1, 1] -> [0, 1] -> resized to ``input_size`` (bilinear,
    antialiased) -> normalised with the network's mean/std -> 4 feature maps, no grad."""

    def __init__(self, extract: nn.Module, channels: Sequence[int], input_size: int,
                 mean, std, name: str):
        super().__init__()
        self.extract = extract.eval().requires_grad_(False)
        self.channels, self.input_size, self.name = list(channels), input_size, name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):                   # always frozen, always eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.float() + 1) / 2
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return list(self.extract((x - self.mean) / self.std))


class _ViTIntermediates(nn.Module):
    def __init__(self, model: nn.Module, indices: list[int]):
        super().__init__()
        self.model, self.indices = model, indices

    def forward(self, x):
        return self.model.forward_intermediates(x, indices=self.indices, norm=True,
                                                output_fmt="NCHW", intermediates_only=True)


def vit_features(name: str = "vit_base_patch16_224", weights=None, input_size: int = 224,
                 blocks: Sequence[int] | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 **timm_kwargs) -> FrozenFeatures:
    """Frozen timm ViT; maps = outputs of ``blocks`` (1-based; default depth/4, /2, 3/4, 1:
    3, 6, 9, 12 for a 12-block ViT) after the final norm, patch tokens only, as grids.

    DINO ViT-B/16 (the thesis' choice): ``name="vit_base_patch16_224"`` with
    ``weights="/path/dino_vitbase16_pretrain.pth"`` (DINO's key names are timm's).
    Input normalisation: ``mean``/``std``, ImageNet's by default, which is what DINO was
    trained with (timm's own config for this name is 0.5/0.5, for other weights; the HSR
    code used the CLIP mean with ImageNet's std). ``timm_kwargs`` go to
    ``timm.create_model`` (e.g. ``patch_size=8, depth=4`` for a tiny stand-in). A position
    embedding of another grid size is resampled to ``input_size``."""
    import timm
    from ..nets.backbones import _read_state_dict

    _check_weights_arg(weights)
    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=input_size, **timm_kwargs)
    if weights is not None:
        sd = {k: v for k, v in _read_state_dict(weights).items() if not k.startswith("head")}
        pe = sd.get("pos_embed")
        if pe is not None and pe.shape != model.pos_embed.shape:
            from timm.layers import resample_abs_pos_embed
            prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
            sd["pos_embed"] = resample_abs_pos_embed(pe, list(model.patch_embed.grid_size),
                                                     num_prefix_tokens=prefix)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ValueError(f"weights do not fit {name!r}: missing {missing[:5]} ({len(missing)}), "
                             f"unexpected {unexpected[:5]} ({len(unexpected)})")
    depth = len(model.blocks)
    blocks = list(blocks) if blocks is not None else [max(1, round(depth * f)) for f in (0.25, 0.5, 0.75, 1.0)]
    if len(set(blocks)) != 4 or not all(1 <= b <= depth for b in blocks):
        raise ValueError(f"blocks must be 4 different block numbers in 1..{depth}, got {blocks} "
                         "(a ViT needs at least 4 blocks)")
    return FrozenFeatures(_ViTIntermediates(model, [b - 1 for b in blocks]), [model.embed_dim] * 4,
                          input_size, mean, std, name=f"{name}:blocks{blocks}")


class _Stages(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.body(x)[1:]          # layer1..layer4 (drop the stride-2 stem)


def resnet_features(name: str = "resnet50", weights=None, input_size: int = 224) -> FrozenFeatures:
    """Frozen timm ResNet; maps = its four stages (layer1..layer4: 256..2048 channels for
    ResNet-50, strides 4..32), via :class:`ssl_lab.nets.backbones.Backbone`."""
    from ..nets.backbones import Backbone

    _check_weights_arg(weights)
    bb = Backbone(name, weights=weights, normalize_input=False)
    return FrozenFeatures(_Stages(bb), bb.channels[1:], input_size, bb.mean.flatten().tolist(),
                          bb.std.flatten().tolist(), name=f"{name}:stages")


__all__ = ["FrozenFeatures", "IMAGENET_MEAN", "IMAGENET_STD", "resnet_features", "vit_features"]
