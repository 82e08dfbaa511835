"""Frozen feature extractors: a pretrained (or random-init) network as a callable from
generator images in [-1, 1] to four feature maps, shallow to deep. HSR regularises with them
(:mod:`ssl_lab.gan.hsr`, thesis Table 4.1); the image metrics' networks are named after them
(:mod:`ssl_lab.metrics.fid`).

:func:`vit_features` (timm ViT: the outputs of four transformer blocks after the final norm,
patch tokens as grids) and :func:`resnet_features` (timm ResNet: its four stages). Weights
only from a local file: ``weights=None`` is a random initialisation, a missing path is a
``FileNotFoundError``, a file that does not fit is a ``ValueError``.

Full-scale metric networks, from the field's libraries, also only from local files (here
``weights=None`` is a ``FileNotFoundError``: a random FID/LPIPS network is meaningless):
:func:`fid_inception` (torch-fidelity's FID Inception-v3, 2048-d pool features, named
``"inception-fid"`` so :func:`ssl_lab.metrics.fid.metric_name` labels it ``"FID"``) and
:func:`lpips_vgg` (the ``lpips`` package's LPIPS-VGG distance). Every wrapper here is a
:class:`_Frozen`: eval mode, no gradients, no-grad forward.
"""
from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path

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


class _Frozen(nn.Module):
    """The frozen-wrapper pattern shared by every network of this module: the wrapped
    module(s), given as keywords (``attribute=module``), are put in eval mode without
    gradients; :meth:`train` always leaves the wrapper in eval mode; ``forward`` runs the
    subclass's ``_forward`` under ``torch.no_grad()``. ``name`` labels results."""

    def __init__(self, name: str, **modules: nn.Module):
        super().__init__()
        for attr, module in modules.items():
            setattr(self, attr, module.eval().requires_grad_(False))
        self.name, self.training = name, False

    def train(self, mode: bool = True):                   # always frozen, always eval
        return super().train(False)

    def forward(self, *inputs):
        with torch.no_grad():
            return self._forward(*inputs)

    def _forward(self, *inputs):
        raise NotImplementedError


class FrozenFeatures(_Frozen):
    """Generator images in [-1, 1] -> [0, 1] -> resized to ``input_size`` (``resize``:
    "bilinear", antialiased, or "area", the HSR release's ``F.interpolate(mode='area')``) ->
    normalised with the network's mean/std -> 4 feature maps, no grad."""

    def __init__(self, extract: nn.Module, channels: Sequence[int], input_size: int,
                 mean, std, name: str, resize: str = "bilinear"):
        super().__init__(name, extract=extract)
        if resize not in ("bilinear", "area"):
            raise ValueError(f"resize must be 'bilinear' or 'area', got {resize!r}")
        self.channels, self.input_size, self.resize = list(channels), input_size, resize
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def _forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.float() + 1) / 2
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            size = (self.input_size, self.input_size)
            x = (F.interpolate(x, size=size, mode="area") if self.resize == "area" else
                 F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True))
        return list(self.extract((x - self.mean) / self.std))


class _ViTIntermediates(nn.Module):
    def __init__(self, model: nn.Module, indices: list[int], norm: bool = True):
        super().__init__()
        self.model, self.indices, self.norm = model, indices, norm

    def forward(self, x):
        return self.model.forward_intermediates(x, indices=self.indices, norm=self.norm,
                                                output_fmt="NCHW", intermediates_only=True)


def vit_features(name: str = "vit_base_patch16_224", weights=None, input_size: int = 224,
                 blocks: Sequence[int] | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 norm: bool = True, resize: str = "bilinear", **timm_kwargs) -> FrozenFeatures:
    """Frozen timm ViT; maps = outputs of ``blocks`` (1-based; default depth/4, /2, 3/4, 1:
    3, 6, 9, 12 for a 12-block ViT) after the final norm, patch tokens only, as grids.

    DINO ViT-B/16 (the thesis' choice): ``name="vit_base_patch16_224"`` with
    ``weights="/path/dino_vitbase16_pretrain.pth"`` (DINO's key names are timm's).
    Input normalisation: ``mean``/``std``, ImageNet's by default, which is what DINO was
    trained with (timm's own config for this name is 0.5/0.5, for other weights; the HSR
    code used the CLIP mean with ImageNet's std). ``timm_kwargs`` go to
    ``timm.create_model`` (e.g. ``patch_size=8, depth=4`` for a tiny stand-in). A position
    embedding of another grid size is resampled to ``input_size``. ``norm=False``: the block
    outputs without the final norm (the HSR release's DeiT). ``resize``: see :class:`FrozenFeatures`."""
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
    return FrozenFeatures(_ViTIntermediates(model, [b - 1 for b in blocks], norm), [model.embed_dim] * 4,
                          input_size, mean, std, name=f"{name}:blocks{blocks}{'' if norm else ':no-norm'}",
                          resize=resize)


class _Stages(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.body(x)[1:]          # layer1..layer4 (drop the stride-2 stem)


def resnet_features(name: str = "resnet50", weights=None, input_size: int = 224, mean=None, std=None,
                    resize: str = "bilinear") -> FrozenFeatures:
    """Frozen timm ResNet; maps = its four stages (layer1..layer4: 256..2048 channels for
    ResNet-50, strides 4..32), via :class:`ssl_lab.nets.backbones.Backbone`. ``mean``/``std``:
    the input normalisation (default the backbone's own); ``resize``: see :class:`FrozenFeatures`."""
    from ..nets.backbones import Backbone

    _check_weights_arg(weights)
    bb = Backbone(name, weights=weights, normalize_input=False)
    mean = bb.mean.flatten().tolist() if mean is None else mean
    std = bb.std.flatten().tolist() if std is None else std
    return FrozenFeatures(_Stages(bb), bb.channels[1:], input_size, mean, std, name=f"{name}:stages",
                          resize=resize)


# --- full-scale metric networks (torch-fidelity, lpips), local weights only ----------------

#: The FID Inception-v3 weights: the TF "2015-12-05" FID graph converted to PyTorch, as
#: pytorch-fid ships it (github.com/mseitzer/pytorch-fid, release ``fid_weights``).
#: torch-fidelity's default download, its own conversion of the same TF graph, is
#: ``weights-inception-2015-12-05-6726825d.pth`` (its release v0.2.0); the key names of the
#: two agree, and any file whose keys and shapes are that network's loads.
FID_INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
#: torchvision's ImageNet VGG-16 state dict (``VGG16_Weights.IMAGENET1K_V1``), LPIPS-VGG's trunk.
VGG16_WEIGHTS = "vgg16-397923af.pth"


def _local_file(path, what: str, expected: str) -> Path:
    """``path`` as an existing local file, else a ``FileNotFoundError`` that names the file
    needed (nothing is ever downloaded here)."""
    if path is None or path is True or isinstance(path, str) and path in ("imagenet", "pretrained"):
        raise FileNotFoundError(
            f"{what}: weights={path!r}, but these weights cannot be downloaded here; pass the "
            f"path of a local copy of {expected}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what}: weights file not found: {str(p)!r}; it must be a "
                                f"local copy of {expected} (nothing is downloaded here)")
    return p


class FIDInception(_Frozen):
    """torch-fidelity's FID Inception-v3 (``FeatureExtractorInceptionV3``, the ``"2048"``
    pool features) as ``images in [-1, 1] -> (B, 2048)``, frozen; name ``"inception-fid"``.
    Built by :func:`fid_inception`."""

    def __init__(self, extractor: nn.Module):
        super().__init__("inception-fid", inception=extractor)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        # [-1, 1] -> 0..255 uint8 (round to nearest, StyleGAN's `x * 127.5 + 128` then floor),
        # the input torch-fidelity's extractor asserts; it resizes to 299 (TF1-exact bilinear)
        # and maps to [-1, 1] itself.
        x = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        return self.inception(x)[0]


def fid_inception(weights) -> FIDInception:
    """The FID Inception network: torch-fidelity's FID Inception-v3 feature extractor
    (``torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3``, its
    ``"2048"`` features: the 2048-d pool3 activations that FID is defined on), with its
    weights read by torch-fidelity from the LOCAL file ``weights`` (its
    ``feature_extractor_weights_path``; a copy of :data:`FID_INCEPTION_WEIGHTS`).

    Returns a frozen :class:`FIDInception` (a :class:`ssl_lab.metrics.fid.FeatureNet`):
    generator images ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 2048)`` float32, no grad, named
    ``"inception-fid"`` (so :func:`ssl_lab.metrics.fid.fd` labels the result ``"FID"``).
    The images are quantised to 0..255 (uint8, round to nearest, as StyleGAN's metrics do)
    and torch-fidelity resizes them to 299x299 itself.

    ``weights=None`` or a missing path: ``FileNotFoundError`` (torch-fidelity would
    otherwise download); a file that does not fit: ``ValueError``. torch-fidelity reads the
    file with ``torch.load(weights_only=False)``: only pass a file you trust."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = _local_file(weights, "fid_inception", f"the FID Inception-v3 weights "
                       f"{FID_INCEPTION_WEIGHTS} (pytorch-fid's file; torch-fidelity's own copy "
                       "is weights-inception-2015-12-05-6726825d.pth)")
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(path))
    except (RuntimeError, KeyError, AttributeError, TypeError, pickle.UnpicklingError) as e:
        raise ValueError(f"{str(path)!r} does not fit torch-fidelity's FID Inception-v3 "
                         f"(expected {FID_INCEPTION_WEIGHTS}): {e}") from e
    return FIDInception(net)


class LPIPSDistance(_Frozen):
    """The ``lpips`` package's ``LPIPS`` module as ``(img_a, img_b) -> (B,)`` for images in
    [-1, 1] (the input range lpips expects), frozen. Built by :func:`lpips_vgg`."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__(name, lpips=model)

    def _forward(self, img_a: torch.Tensor, img_b: torch.Tensor) -> torch.Tensor:
        if img_a.shape != img_b.shape or img_a.dim() != 4 or img_a.shape[1] != 3:
            raise ValueError(f"LPIPS needs two (B, 3, H, W) batches of one shape; got "
                             f"{tuple(img_a.shape)} and {tuple(img_b.shape)}")
        dtype = next(self.lpips.parameters()).dtype          # float32, or float64 after .to(torch.float64)
        return self.lpips(img_a.to(dtype), img_b.to(dtype)).flatten()


def lpips_vgg(vgg_weights, lpips_weights=None) -> LPIPSDistance:
    """LPIPS-VGG (Zhang et al., 2018) from the ``lpips`` package: ``lpips.LPIPS(net="vgg",
    pretrained=True, pnet_rand=True)`` (``pnet_rand`` so it does not download torchvision's
    VGG), whose VGG-16 trunk then gets the ``features.*`` tensors of the LOCAL torchvision
    VGG-16 state dict ``vgg_weights`` (a copy of :data:`VGG16_WEIGHTS`; the classifier is
    ignored), and whose linear layers (``lin0..lin4``) are the ``lpips`` package's own
    calibrated weights, bundled in the pip package as ``lpips/weights/v0.1/vgg.pth``, or the
    local file ``lpips_weights`` if given.

    Returns a frozen :class:`LPIPSDistance` named ``"lpips-vgg"``: ``(img_a, img_b) -> (B,)``
    for images in [-1, 1], no grad; 0 for identical images, symmetric.

    ``vgg_weights=None`` or a missing file: ``FileNotFoundError``; a file that does not fit
    (missing or misshaped trunk / linear-layer tensors): ``ValueError``."""
    import lpips
    from ..nets.backbones import _read_state_dict

    vgg_path = _local_file(vgg_weights, "lpips_vgg", f"torchvision's ImageNet VGG-16 state dict "
                           f"{VGG16_WEIGHTS} (torchvision.models.VGG16_Weights.IMAGENET1K_V1)")
    if lpips_weights is None:
        lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
        if not lin_path.is_file():
            raise FileNotFoundError(f"lpips_vgg: the lpips package's bundled linear-layer "
                                    f"weights {str(lin_path)!r} are missing; reinstall lpips "
                                    "or pass lpips_weights= (a copy of lpips' weights/v0.1/vgg.pth)")
    else:
        lin_path = _local_file(lpips_weights, "lpips_vgg",
                               "the lpips package's LPIPS-VGG linear weights weights/v0.1/vgg.pth")

    try:
        with warnings.catch_warnings():                   # lpips passes torchvision's deprecated
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # `pretrained`
            model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True,
                                model_path=str(lin_path), verbose=False)
        lin_sd = torch.load(lin_path, map_location="cpu", weights_only=True)
    except (RuntimeError, KeyError, AttributeError, TypeError, pickle.UnpicklingError) as e:
        raise ValueError(f"{str(lin_path)!r} does not fit LPIPS-VGG's linear layers: {e}") from e
    # lpips loads model_path with strict=False: check that every linear layer was in it.
    lin_sd = lin_sd if isinstance(lin_sd, dict) else {}
    lin_expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                    if k.startswith("lin") and not k.startswith("lins.")}
    bad = {k: tuple(lin_sd[k].shape) if torch.is_tensor(lin_sd.get(k)) else None
           for k in lin_expected
           if not torch.is_tensor(lin_sd.get(k)) or tuple(lin_sd[k].shape) != lin_expected[k]}
    if bad:
        raise ValueError(f"{str(lin_path)!r} does not fit LPIPS-VGG's linear layers "
                         f"(expected {lin_expected}; wrong or missing: {bad})")

    # The trunk: lpips' vgg16 keeps torchvision's layer indices inside its slices
    # (slice1.0 = features.0, ..., slice5.28 = features.28), so key names map one to one.
    sd = _read_state_dict(vgg_path)
    trunk = {}
    for key in model.net.state_dict():
        tv_key = "features." + key.split(".", 1)[1]
        if tv_key not in sd:
            raise ValueError(f"{str(vgg_path)!r} is not a torchvision VGG-16 state dict: "
                             f"{tv_key!r} is missing")
        trunk[key] = sd[tv_key]
    try:
        model.net.load_state_dict(trunk, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{str(vgg_path)!r} does not fit VGG-16: {e}") from e
    return LPIPSDistance(model, name="lpips-vgg")


__all__ = ["FID_INCEPTION_WEIGHTS", "FIDInception", "FrozenFeatures", "IMAGENET_MEAN",
           "IMAGENET_STD", "LPIPSDistance", "VGG16_WEIGHTS", "fid_inception", "lpips_vgg",
           "resnet_features", "vit_features"]
