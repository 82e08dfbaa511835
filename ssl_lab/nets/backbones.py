"""timm backbones with the five feature levels of a ResNet, a global feature and hypercolumns.

``Backbone("resnet50")`` wraps ``timm.create_model(name, features_only=True,
out_indices=(0, 1, 2, 3, 4))``: the stem (after conv1/bn/relu, stride 2) and the four stages
(strides 4, 8, 16, 32). For ResNet-50 the levels have 64, 256, 512, 1024, 2048 channels.

* ``pooled(x)``: global average pool of the last level, the instance-level feature that
  BYOL / MoCo put their heads on (2048-d for ResNet-50, 512-d for ResNet-18).
* ``hypercolumn(x, size=None)``: feature levels bilinearly resized to one grid (default: the
  stride-4 grid, the resolution of the first stage) and concatenated along channels
  (thesis Fig. 3.3).

Which levels. The thesis's 3840-d ResNet-50 hypercolumn is the four *stages*:
256 + 512 + 1024 + 2048 = 3840 (the ContrastLandmarks code stacks layer4..layer1 with its
default ``train_layer = val_layer = 4``). Adding the 64-channel stem gives 3904. So the
default is ``levels=STAGES = (1, 2, 3, 4)``; pass ``levels=LEVELS`` to include the stem.

Alignment. Resizing uses ``align_corners=False``. Every level tiles the same image extent,
so grid cell (u, v) of an ``h x w`` hypercolumn of an ``H x W`` image sits over the image
point ((v + 0.5) W / w - 0.5, (u + 0.5) H / h - 0.5) (pixel centres at integers) at every level.

Per-level L2 normalisation: ON by default (``normalize=True``). Each level's channel vector
is scaled to unit length (after resizing) before concatenation, so every level has the same
weight in a cosine similarity. Without it the deepest, widest levels (2048 + 1024 of 3840
channels, usually the largest activations) dominate, and the coarse stride-32 map swamps
the localisation that the shallow levels carry. ContrastLandmarks does the same
(``layer_wise_normalize``, "otherwise the performance drops"). ``normalize=False`` gives the
raw concatenation.

Input convention: RGB images, float in [0, 1], ``(B, 3, H, W)``. The backbone subtracts the
timm ``pretrained_cfg`` mean and divides by its std itself (``normalize_input=True``), so
that local ImageNet weights see what they were trained on and callers never normalise.

Weights: no pretrained weight can be downloaded here. ``weights=None`` is a random
initialisation; ``weights=path`` loads a local file (a timm/torchvision state dict of the
classifier model, whose classifier keys are dropped, or a saved ``Backbone.state_dict()``;
``.safetensors`` or ``torch.save`` files, optionally wrapped in ``{"state_dict": ...}`` or
``{"model": ...}``). A missing file is a ``FileNotFoundError``; keys that do not fit are a
``ValueError`` naming them.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

LEVELS = (0, 1, 2, 3, 4)     # stem + four stages, strides 2, 4, 8, 16, 32
STAGES = (1, 2, 3, 4)        # the thesis / ContrastLandmarks hypercolumn (3840-d for ResNet-50)


def _read_state_dict(weights) -> dict:
    if isinstance(weights, Mapping):
        sd = dict(weights)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"backbone weights not found: {str(path)!r}. Nothing can be downloaded here: "
                "pass the path of a local file (a timm/torchvision state dict, or a saved "
                "Backbone.state_dict()), or weights=None for a random initialisation.")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "backbone"):
        if isinstance(sd.get(key), Mapping):
            sd = dict(sd[key])
    if not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError("backbone weights must be a state dict (name -> tensor)")
    for prefix in ("module.", "body."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


class Backbone(nn.Module):
    """A timm CNN returning its stem and four stage feature maps (strides 2, 4, 8, 16, 32)."""

    def __init__(self, name: str = "resnet50", weights=None, normalize_input: bool = True,
                 depth: int = len(LEVELS)):
        """``depth``: how many of the five levels to build (stem first); below 5 timm builds no
        later stage, so neither its weights nor its compute exist (LEAD stage 2's encoder at
        small scale keeps the stem and stages 1-3: ``depth=4``)."""
        super().__init__()
        if not 1 <= depth <= len(LEVELS):
            raise ValueError(f"depth must be 1..{len(LEVELS)}; got {depth}")
        if weights is True or weights in ("imagenet", "pretrained"):
            raise FileNotFoundError(
                f"weights={weights!r}: pretrained weights cannot be downloaded here; pass the "
                "path of a local weights file instead")
        self.name = name
        try:
            self.body = timm.create_model(name, pretrained=False, features_only=True,
                                          out_indices=LEVELS[:depth])
        except Exception as e:   # unknown name, or a model without five feature levels
            raise ValueError(f"cannot build backbone {name!r} with {depth} feature levels "
                             f"(out_indices={LEVELS[:depth]}) from timm: {e}") from e
        cfg = self.body.pretrained_cfg if hasattr(self.body, "pretrained_cfg") else {}
        self.normalize_input = normalize_input
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._classifier = cfg.get("classifier", "fc")
        if weights is not None:
            self.load_weights(weights)

    # -- shape information --------------------------------------------------------------------
    @property
    def channels(self) -> list[int]:
        """Channels per level, e.g. [64, 256, 512, 1024, 2048] for ResNet-50."""
        return list(self.body.feature_info.channels())

    @property
    def strides(self) -> list[int]:
        return list(self.body.feature_info.reduction())

    @property
    def pooled_channels(self) -> int:
        """Size of :meth:`pooled` (the last level's channels)."""
        return self.channels[-1]

    @property
    def hypercolumn_channels(self) -> int:
        """Channels of the default :meth:`hypercolumn` (the four stages): 3840 for ResNet-50,
        960 for ResNet-18. With the stem (``levels=LEVELS``): ``sum(self.channels)``."""
        return sum(self.channels[i] for i in STAGES)

    # -- weights ------------------------------------------------------------------------------
    def load_weights(self, weights) -> None:
        """Load a local file (or an in-memory state dict); see the module docstring."""
        sd = _read_state_dict(weights)
        own = self.body.state_dict()
        head = tuple(f"{c}." for c in ([self._classifier] if isinstance(self._classifier, str)
                                       else self._classifier))
        sd = {k: v for k, v in sd.items() if not k.startswith(head)}
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        if missing or unexpected:
            raise ValueError(f"weights do not fit backbone {self.name!r}: missing "
                             f"{missing[:5]}{'...' if len(missing) > 5 else ''} ({len(missing)}), "
                             f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} "
                             f"({len(unexpected)})")
        self.body.load_state_dict(sd, strict=True)

    # -- features -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five feature maps of ``x`` (float RGB in [0, 1], ``(B, 3, H, W)``)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
        if self.normalize_input:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.body(x)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool of the last level: ``(B, pooled_channels)``."""
        return self(x)[-1].mean(dim=(2, 3))

    def hypercolumn(self, x: torch.Tensor, size=None, normalize: bool = True,
                    levels=STAGES) -> torch.Tensor:
        """Levels ``levels`` of ``x`` resized to ``size`` and concatenated (see
        :func:`hypercolumn`): ``(B, hypercolumn_channels, h, w)`` with the defaults."""
        return hypercolumn(self(x), size=size, normalize=normalize, levels=levels)


def hypercolumn(feats, size=None, normalize: bool = True, levels=STAGES) -> torch.Tensor:
    """Concatenate feature maps ``feats[i] for i in levels`` on one grid.

    ``size``: int or (h, w); default the size of ``feats[1]`` (the stride-4 grid). Each map is
    bilinearly resized (``align_corners=False``, so all grids tile the same image extent);
    with ``normalize`` each level's channel vectors are then L2-normalised (after resizing,
    so every level block has unit norm at every grid cell, as ContrastLandmarks' dense loss and
    matching do: ``layer_wise_normalize`` in its ``train_feature_projector.py``; its regression
    script ``eval_face.py`` feeds the raw activations, ``models/resnet.py``)."""
    if size is None:
        size = tuple(feats[1].shape[-2:])
    elif isinstance(size, int):
        size = (size, size)
    out = []
    for i in levels:
        f = feats[i]
        if tuple(f.shape[-2:]) != tuple(size):
            f = F.interpolate(f, size=tuple(size), mode="bilinear", align_corners=False)
        out.append(F.normalize(f, dim=1) if normalize else f)
    return torch.cat(out, dim=1)


@torch.no_grad()
def dense_maps(features, images: torch.Tensor, batch: int = 64, device="cpu", compute=torch.float32,
               dtype=torch.float16) -> torch.Tensor:
    """``features`` (float images in [0, 1] -> dense maps) of many images ``(N, 3, H, W)``
    (uint8 or float in [0, 1]), in batches moved to ``device`` as ``compute``, stored on the
    CPU as ``dtype`` (float16: half the memory of float32), written into one tensor as they
    come (no second copy of the whole stack)."""
    out = None
    for s in range(0, len(images), batch):
        x = images[s:s + batch].to(device)
        x = x.to(compute).div(255) if x.dtype == torch.uint8 else x.to(compute)
        maps = features(x).to("cpu", dtype)
        if out is None:
            out = torch.empty((len(images), *maps.shape[1:]), dtype=dtype)
        out[s:s + len(maps)] = maps
    if out is None:
        raise ValueError("dense_maps needs at least one image")
    return out


def hypercolumns(net: Backbone, images: torch.Tensor, batch: int = 64, device="cpu",
                 dtype=torch.float16) -> torch.Tensor:
    """Hypercolumns of many images (:func:`dense_maps`), computed in the network's own dtype
    (float64 after ``net.double()``: the same on every CPU) and stored as ``dtype``."""
    return dense_maps(net.hypercolumn, images, batch, device, next(net.parameters()).dtype, dtype)
