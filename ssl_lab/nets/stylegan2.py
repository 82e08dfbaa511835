"""StyleGAN2 (config F, as used by StyleGAN2-ADA), written out by hand.

The pieces, in the order the thesis (Ch. 2 and 4) introduces them:

* Equalised learning rate (:class:`EqualLinear`, :class:`EqualConv2d`). Weights are stored
  as ``N(0, 1/lr_mul^2)`` and multiplied at run time by ``gain = lr_mul / sqrt(fan_in)``
  (fan_in = in_features, or in_channels * k * k); biases by ``lr_mul``. With Adam every
  weight then moves at the same relative speed whatever its layer's fan-in, and
  ``lr_mul < 1`` slows a whole layer down (the mapping network uses 0.01).
* Mapping network (:class:`MappingNetwork`): ``z`` is normalised to unit second moment,
  then ``mapping_layers`` fully connected layers (8 at full scale, width ``w_dim``,
  lr multiplier 0.01, leaky ReLU). ``w_avg`` tracks the mean ``w`` (beta 0.995) for the
  truncation trick ``w' = w_avg + psi (w - w_avg)`` on the first ``cutoff`` layers.
* Modulated convolution (:func:`modulated_conv2d`): per sample ``b`` the weight is scaled
  per *input* channel by the style ``s_b = A(w)`` (an affine layer, bias initialised to 1),
  then *demodulated*: each output filter is divided by its L2 norm
  ``sqrt(sum_{i,k} (w_oik s_bi)^2 + 1e-8)``, so unit-variance input gives unit-variance
  output. Implemented as one grouped convolution: the batch is folded into channels
  (``(1, B*I, H, W)``) and convolved with ``B`` weight sets, ``groups=B``.
* Synthesis layer: modulated 3x3 conv, plus per-pixel noise ``N(0, 1)`` (one map shared
  by the channels) times a learned scalar strength (initialised to 0), plus bias, then
  ``leaky_relu(0.2) * sqrt(2)`` (the sqrt(2) keeps the variance, as in the official code).
* Synthesis network (:class:`SynthesisNetwork`): a learned 4x4 constant; per resolution
  4, 8, ..., R a block of two modulated convs (one at 4x4) and a ``toRGB`` (modulated 1x1,
  no demodulation, no activation). "Skip" architecture: the image is the sum of the toRGB
  outputs, each upsampled to the next resolution. ``ws`` has ``num_ws = 2 log2(R) - 2``
  rows: conv ``j`` uses row ``j``; a block's toRGB shares the row of the next block's
  first conv (the last toRGB gets the extra row), as in the official implementation.
* Resampling. **Upsampling is bilinear x2** (``F.interpolate``, ``align_corners=False``),
  which is exactly the separable ``[1, 3, 3, 1] / 4`` FIR upsampler of the official code in
  the interior; only the border differs (edge replicate here, zero padding there).
  **Downsampling** (discriminator) is the ``[1, 3, 3, 1]`` FIR low-pass, stride 2
  (:func:`downsample2x`).
* Discriminator (:class:`Discriminator`): "resnet" architecture. fromRGB (1x1) at full
  resolution; per resolution R..8 a residual block ``(conv3x3 -> down + conv3x3) + (down +
  conv1x1)``, the sum scaled by ``sqrt(1/2)``; then at 4x4 the minibatch standard
  deviation layer (group size 4, one extra channel), a 3x3 conv, a fully connected layer
  and the final linear output (one logit per image; returned as shape ``(B,)``).
* Style mixing (:meth:`Generator.mix_styles`): with probability 0.9 a second ``z`` is
  mapped and its ``w`` replaces the first one's from a random layer ``cutoff`` in
  ``[1, num_ws)`` on (one cutoff per batch, as in the official code).
* EMA of the generator (:func:`ema_update`, :func:`ema_beta`):
  ``beta = 0.5 ** (batch / (ema_kimg * 1000))``, so the averaged weights have a half-life of
  ``ema_kimg`` thousand images whatever the batch size. Full scale (ema_kimg = 10,
  batch 16): ``beta = 0.5 ** (16 / 10000) = 0.998891``. With ``ema_rampup`` (StyleGAN2-ADA's
  ``auto`` config uses 0.05) the half-life is ``min(ema_kimg * 1000, nimg * ema_rampup)``
  images, so early training is not dragged back to the random initialisation.

Not reproduced (they change speed or fp16 stability, not the model): mixed precision and
``conv_clamp``, the fused up/down-sampling convolutions, custom CUDA kernels.

Images are ``(B, 3, R, R)`` floats in ``[-1, 1]`` (the range the official code trains in).

Presets (:data:`ARCH`, :func:`build`): ``full`` is the 256x256 "paper256" configuration of
StyleGAN2-ADA as run by the HSR code (val-iisc/HSR ``train_hsr.py``: batch 16 on 2 GPUs,
minibatch-std group 4, lr 0.002, R1 gamma 1, EMA 10 kimg; StyleGAN2-ADA's own paper256
differs only in training: batch 64, group 8, lr 0.0025, EMA 20 kimg). Networks:
z = w = 512, 8 mapping layers, ``channel_base = 16384`` (fmaps 0.5), ``channel_max = 512``
(G 24.8M, D 24.0M parameters), so channels
4..32: 512, 64: 256, 128: 128, 256: 64; minibatch-std group 4. ``small`` (32 px; channels
4..16: 64, 32: 32; z = w = 128; 4 mapping layers) and ``smoke`` (32 px; channels
4..16: 32, 32: 16; z = w = 32; 2 mapping layers) are narrow versions for CPUs. ``small`` is
32 px because on 2 CPU cores a 64-px G + D step runs at about 50 images/s and a 32-px one at
about 110 (batch 64, channels_last): twice the images in the same hour, and the generator
still has four levels (4, 8, 16, 32 px) for HSR to supervise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed

SQRT2 = math.sqrt(2.0)

ARCH = {
    "full": dict(resolution=256, z_dim=512, w_dim=512, channel_base=16384, channel_max=512,
                 mapping_layers=8, mbstd_group=4),
    "small": dict(resolution=32, z_dim=128, w_dim=128, channel_base=1024, channel_max=64,
                  mapping_layers=4, mbstd_group=4),
    "smoke": dict(resolution=32, z_dim=32, w_dim=32, channel_base=512, channel_max=32,
                  mapping_layers=2, mbstd_group=4),
}


def channels_for(resolution: int, channel_base: int = 16384, channel_max: int = 512) -> dict:
    """``{res: min(channel_base // res, channel_max)}`` for res = 4, 8, ..., resolution."""
    return {r: max(1, min(channel_base // r, channel_max)) for r in _resolutions(resolution)}


def _resolutions(resolution: int) -> list[int]:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    return [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) times sqrt(2), the StyleGAN activation."""
    return F.leaky_relu(x, 0.2) * SQRT2


# -- resampling ---------------------------------------------------------------------------
def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 = the [1,3,3,1]/4 FIR upsampler (edge-replicated border)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """[1,3,3,1] FIR low-pass (normalised to sum 1), stride 2, zero padding 1: (H, W) -> (H/2, W/2).

    Computed as three 2x2 box filters, ``[1,3,3,1] / 8 = [1,1]/2 * [1,1]/2 * [1,1]/2``
    (binomial), the last with stride 2: the same filter as the official 4x4 depthwise FIR
    (``ssl_lab`` tests both), several times faster on CPUs than a depthwise convolution."""
    x = F.pad(x, (1, 1, 1, 1))
    x = F.avg_pool2d(F.avg_pool2d(x, 2, stride=1), 2, stride=1)
    return F.avg_pool2d(x, 2, stride=2)


# -- equalised learning rate layers ------------------------------------------------------
class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate: ``y = x (gain W)^T + lr_mul b``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = None if self.bias is None else self.bias * self.lr_mul
        x = F.linear(x, self.weight * self.weight_gain, b)
        return lrelu(x) if self.activate else x


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate (gain ``1/sqrt(in*k*k)``), 'same' padding, optional
    [1,3,3,1] stride-2 downsampling *before* the convolution and leaky ReLU x sqrt(2) after."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activate: bool = False, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.activate, self.down = activate, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample2x(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias,
                     padding=self.weight.shape[-1] // 2)
        return lrelu(x) if self.activate else x


# -- mapping ------------------------------------------------------------------------------
def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> ws (B, num_ws, w_dim): normalise z, ``layers`` FC + lrelu layers with
    learning-rate multiplier ``lr_mul``, broadcast to ``num_ws`` rows; optional truncation."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, layers: int = 8,
                 lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activate=True)
                                   for a, b in zip(dims[:-1], dims[1:])])
        self.num_ws, self.w_avg_beta = num_ws, w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        w = self.net(normalize_2nd_moment(z))
        if update_w_avg:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            cutoff = self.num_ws if cutoff is None else cutoff
            ws = torch.cat([self.w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)
        return ws


# -- synthesis ----------------------------------------------------------------------------
def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     demodulate: bool = True, fused: bool = True) -> torch.Tensor:
    """Per-sample modulated (and demodulated) convolution. x (B, I, H, W); weight (O, I, k, k);
    styles (B, I). 'Same' padding.

    ``fused=True``: one grouped convolution with B weight sets (the batch folded into the
    channels). ``fused=False``: the same arithmetic as a shared-weight convolution of the
    style-scaled input, ``conv(x * s, W) * d`` with ``d_bo = (sum_{i,k} (W_oik s_bi)^2 +
    1e-8)^-1/2``; this is how stylegan2-ada-pytorch trains (``fused_modconv = not
    training``; networks.py), and on CPUs one batched convolution is several times faster
    than B small ones. Equal up to float rounding."""
    B, I, H, W = x.shape
    O, _, k, _ = weight.shape
    if not fused:
        y = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=k // 2)
        if demodulate:       # sum_{i,k} (W_oik s_bi)^2 = sum_i s_bi^2 (sum_k W_oik^2): a matmul
            d = styles.square() @ weight.square().sum(dim=(2, 3)).t()
            y = y * (d + 1e-8).rsqrt()[:, :, None, None].to(y.dtype)
        return y
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]                 # (B, O, I, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    y = F.conv2d(x.reshape(1, B * I, H, W), w.reshape(B * O, I, k, k), padding=k // 2, groups=B)
    return y.reshape(B, O, H, W)


class SynthesisLayer(nn.Module):
    """[upsample x2] -> modulated 3x3 conv -> + noise * strength -> + bias -> lrelu * sqrt 2."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if self.up:
            x = upsample2x(x)
        x = modulated_conv2d(x, self.weight, self.affine(w), fused=not self.training)
        if noise_mode == "random":
            if distributed.draws_sharded():          # data-parallel GAN step: the global batch's noise
                noise = distributed.batch_draw(torch.randn, x.shape[0], 1, *x.shape[2:],
                                               dtype=x.dtype, device=x.device)
            else:
                noise = torch.randn_like(x[:, :1])
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation (style gain 1/sqrt(in)), plus bias."""

    def __init__(self, in_channels: int, w_dim: int, img_channels: int = 3):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y = modulated_conv2d(x, self.weight, self.affine(w) * self.gain, demodulate=False,
                             fused=not self.training)
        return y + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv0), conv1, toRGB; skip-adds into the image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int = 3):
        super().__init__()
        self.resolution = resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, w_dim, img_channels)
        self.num_conv = 1 if self.conv0 is None else 2

    def forward(self, x, img, ws: torch.Tensor, noise_mode: str = "random"):
        """ws: (B, num_conv + 1, w_dim). Returns the block's features and the running image."""
        if self.conv0 is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2x(img) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> image (B, 3, R, R); optionally per-resolution features/RGBs."""

    def __init__(self, w_dim: int, resolution: int, channels: dict, img_channels: int = 3):
        super().__init__()
        self.resolutions = _resolutions(resolution)
        missing = [r for r in self.resolutions if r not in channels]
        if missing:
            raise ValueError(f"channels dict has no entry for resolutions {missing}")
        self.channels = {r: int(channels[r]) for r in self.resolutions}
        self.blocks = nn.ModuleList()
        for r in self.resolutions:
            cin = 0 if r == 4 else self.channels[r // 2]
            self.blocks.append(SynthesisBlock(cin, self.channels[r], w_dim, r, img_channels))
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1
        self.w_dim, self.resolution = w_dim, resolution

    def forward(self, ws: torch.Tensor, noise_mode: str = "random",
                return_features: bool = False, return_rgbs: bool = False):
        """The image; with ``return_features`` / ``return_rgbs`` a pair ``(img, extras)`` where
        ``extras["features"][r]`` is block r's output feature map ``(B, C_r, r, r)`` (after its
        second conv, before toRGB) and ``extras["rgbs"][r]`` the running skip image at r
        (the intermediate RGB output of thesis Fig. 4.8; ``rgbs[R]`` is the image)."""
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        x = img = None
        feats, rgbs = {}, {}
        i = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, i:i + block.num_conv + 1], noise_mode)
            i += block.num_conv
            if return_features:
                feats[block.resolution] = x
            if return_rgbs:
                rgbs[block.resolution] = img
        if not (return_features or return_rgbs):
            return img
        extras = {}
        if return_features:
            extras["features"] = feats
        if return_rgbs:
            extras["rgbs"] = rgbs
        return img, extras


class Generator(nn.Module):
    """StyleGAN2 generator ``G = synthesis o mapping``.

    ``channels``: ``{res: C}`` for every res 4..resolution, or ``None`` to derive it from
    ``channel_base`` / ``channel_max`` (:func:`channels_for`)."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, resolution: int = 256,
                 channels: dict | None = None, channel_base: int = 16384, channel_max: int = 512,
                 mapping_layers: int = 8, mapping_lr_mul: float = 0.01, img_channels: int = 3):
        super().__init__()
        channels = channels or channels_for(resolution, channel_base, channel_max)
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, img_channels)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, mapping_lr_mul)
        self.z_dim, self.w_dim, self.resolution = z_dim, w_dim, resolution
        self.channels = self.synthesis.channels

    def forward(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random", return_features: bool = False,
                return_rgbs: bool = False):
        ws = self.mapping(z, psi=psi, cutoff=cutoff)
        return self.synthesis(ws, noise_mode, return_features, return_rgbs)

    def mix_styles(self, z: torch.Tensor, prob: float = 0.9, update_w_avg: bool = False) -> torch.Tensor:
        """Training-time ``ws``: with probability ``prob`` rows ``cutoff:`` come from a second,
        fresh ``z`` (cutoff uniform in ``[1, num_ws)``, one per batch). Inside
        ``ssl_lab.distributed.global_draws()`` the fresh ``z`` (and the synthesis noise) are
        this process's rows of the global batch's draw; the scalar draws are the same on every
        process (see :mod:`ssl_lab.gan.train`)."""
        ws = self.mapping(z, update_w_avg=update_w_avg)
        if prob > 0 and self.num_ws > 1 and torch.rand([]).item() < prob:
            cutoff = int(torch.randint(1, self.num_ws, []).item())
            z2 = (distributed.batch_draw(torch.randn, z.shape[0], *z.shape[1:], dtype=z.dtype, device=z.device)
                  if distributed.draws_sharded() else torch.randn_like(z))
            ws2 = self.mapping(z2)
            rows = torch.arange(self.num_ws, device=z.device)[None, :, None]
            ws = torch.where(rows < cutoff, ws, ws2)
        return ws


# -- discriminator ------------------------------------------------------------------------
class DiscriminatorBlock(nn.Module):
    """Residual block: ``(conv3x3 -> down+conv3x3  +  down+conv1x1) / sqrt 2``; halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activate=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activate=True, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


def minibatch_std(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one channel: the std over groups of ``min(group_size, B)`` samples (samples
    ``i, i + B/G, i + 2B/G, ...`` form a group), averaged over channels and pixels."""
    B, C, H, W = x.shape
    G = min(group_size, B)
    if B % G:
        raise ValueError(f"batch size {B} must be divisible by the minibatch-std group size {G}")
    y = x.reshape(G, -1, C, H, W)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()     # (B/G, C, H, W)
    y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(G, 1, H, W)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: images (B, 3, R, R) -> logits (B,)."""

    def __init__(self, resolution: int = 256, channels: dict | None = None,
                 channel_base: int = 16384, channel_max: int = 512, img_channels: int = 3,
                 mbstd_group: int = 4):
        super().__init__()
        channels = channels or channels_for(resolution, channel_base, channel_max)
        missing = [r for r in _resolutions(resolution) if r not in channels]
        if missing:
            raise ValueError(f"channels dict has no entry for resolutions {missing}")
        self.resolution, self.mbstd_group = resolution, mbstd_group
        self.fromrgb = EqualConv2d(img_channels, channels[resolution], 1, activate=True)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(channels[r], channels[r // 2])
                                      for r in _resolutions(resolution)[::-1][:-1]])
        c4 = channels[4]
        self.conv = EqualConv2d(c4 + 1, c4, 3, activate=True)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-1] != self.resolution or img.shape[-2] != self.resolution:
            raise ValueError(f"expected {self.resolution}x{self.resolution} images, got {tuple(img.shape)}")
        x = self.blocks(self.fromrgb(img))
        x = self.conv(minibatch_std(x, self.mbstd_group))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


# -- EMA, presets -------------------------------------------------------------------------
def ema_beta(batch: int, ema_kimg: float = 10.0, nimg: int | None = None,
             ema_rampup: float | None = None) -> float:
    """``0.5 ** (batch / ema_nimg)`` with ``ema_nimg = ema_kimg * 1000`` (or
    ``min(ema_kimg * 1000, nimg * ema_rampup)`` with a ramp-up): half-life ema_kimg kimg."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None and nimg is not None:
        ema_nimg = min(ema_nimg, nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """``p_ema <- beta p_ema + (1 - beta) p``; buffers (w_avg, noise maps) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def build(preset: str | dict = "smoke", **overrides) -> tuple[Generator, Discriminator]:
    """``(G, D)`` for a preset name in :data:`ARCH` (or an arch dict), with overrides."""
    if isinstance(preset, str):
        if preset not in ARCH:
            raise ValueError(f"unknown StyleGAN2 preset {preset!r}; choose one of {sorted(ARCH)}")
        preset = ARCH[preset]
    a = {**preset, **overrides}
    unknown = set(a) - {"resolution", "z_dim", "w_dim", "channel_base", "channel_max",
                        "channels", "mapping_layers", "mbstd_group"}
    if unknown:
        raise ValueError(f"unknown StyleGAN2 architecture keys {sorted(unknown)}")
    ch = a.get("channels") or channels_for(a["resolution"], a["channel_base"], a["channel_max"])
    G = Generator(a["z_dim"], a["w_dim"], a["resolution"], ch, mapping_layers=a["mapping_layers"])
    D = Discriminator(a["resolution"], ch, mbstd_group=a["mbstd_group"])
    return G, D
