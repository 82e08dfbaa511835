"""The two-view augmentation of LEAD stage 1 (BYOL) and ContrastLandmarks stage 1 (MoCo).

Each view of a face image is, per sample and independently:

1. a random resized crop (area fraction ``scale``, aspect ratio ``ratio``) resampled to
   ``size x size``. At full scale the faces are 136 px and the crops 96 x 96 (thesis
   Sec. 3.3: "For stage 1 training we take two (96x96) sized random crops"); smoke/small
   scales pass ``size`` = 32-64. Default ``scale=(0.2, 1.0)``: the minimum crop of the
   ContrastLandmarks/MoCo code (``--crop 0.2``), since a face crop smaller than 20 % of the
   image rarely shares a part with the other view;
2. colour jitter with probability ``p_jitter`` (brightness 0.4, contrast 0.4,
   saturation 0.2, hue 0.1: the BYOL/MoCo v2 values), applied in that fixed order;
3. grey-scale with probability ``p_gray`` (0.2);
4. Gaussian blur with probability ``p_blur`` per view ((1.0, 0.1): BYOL's asymmetric
   choice), sigma uniform in ``sigma`` pixels *at 96 px*, scaled by ``size / 96`` so that
   blur means the same at every scale;
5. optional solarisation (``p_solarize``, default off) and horizontal flip (``p_flip``).

Horizontal flip is OFF by default: a flipped face puts the left eye where the right eye
was, so a flip-invariant instance feature is pushed to give mirror-symmetric parts the same
descriptor, which is exactly the left/right confusion that breaks landmark matching and
regression (left vs right eye, mouth corners). Turn it on only for instance-level baselines.

Everything is batched torch (one ``grid_sample`` for the crops, per-sample factors for the
colours, a grouped convolution for the blur), runs on the images' device, and draws its
random numbers on the CPU from an optional ``torch.Generator``: the same generator state
gives the same views on any device and batch layout. Input: ``(B, 3, H, W)`` uint8 (0-255)
or float in [0, 1]. Output: float in [0, 1].

Simplifications (documented, not hidden): the crop box is sampled once and clamped to the
image instead of torchvision's ten rejection tries; the resampling is bilinear without
antialiasing; hue is rotated in YIQ space (a linear approximation of torchvision's HSV hue
shift); the jitter order is fixed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GREY = (0.2989, 0.587, 0.114)           # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])


def _rand(n: int, generator, lo=0.0, hi=1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 or float [0, 1] images -> float [0, 1]."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


def grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(GREY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def random_resized_crop(x, size: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), p_flip=0.0,
                        generator=None):
    """Per-sample random crops resampled to ``size x size``.

    Returns ``(crops, boxes)`` with ``boxes[b] = (x0, y0, x1, y1, flipped)``: the crop's
    edges in input pixel-edge units (the whole image is ``(0, 0, W, H)``; pixel ``j`` spans
    ``[j, j + 1)``) and 1.0 when mirrored, so points can be mapped between image and view."""
    B, _, H, W = x.shape
    area = _rand(B, generator, *scale)
    log_r = _rand(B, generator, math.log(ratio[0]), math.log(ratio[1]))
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0) * W
    h = torch.sqrt(area / r).clamp(max=1.0) * H
    x0 = _rand(B, generator) * (W - w)
    y0 = _rand(B, generator) * (H - h)
    flip = _rand(B, generator) < p_flip
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -w / W, w / W)
    theta[:, 0, 2] = (2 * x0 + w) / W - 1
    theta[:, 1, 1] = h / H
    theta[:, 1, 2] = (2 * y0 + h) / H - 1
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, (B, 3, size, size), align_corners=False)
    crops = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    boxes = torch.stack([x0, y0, x0 + w, y0 + h, flip.float()], 1)
    return crops, boxes


def color_jitter(x, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8,
                 generator=None):
    """Per-sample colour jitter (each sample jittered with probability ``p``)."""
    B, dev = x.shape[0], x.device
    on = _rand(B, generator) < p

    def factor(amount, centre):
        f = _rand(B, generator, max(0.0, centre - amount), centre + amount)
        return torch.where(on, f, torch.full_like(f, centre)).to(dev, x.dtype).view(B, 1, 1, 1)

    b, c, s = factor(brightness, 1.0), factor(contrast, 1.0), factor(saturation, 1.0)
    theta = factor(hue, 0.0).view(B) * 2 * math.pi
    x = (x * b).clamp(0, 1)
    m = grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - m) * c + m).clamp(0, 1)
    g = grey(x)
    x = ((x - g) * s + g).clamp(0, 1)
    # hue: rotate the chroma plane (I, Q) of YIQ by theta
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.zeros(B, 3, 3, device=dev, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    t = _RGB2YIQ.to(dev, x.dtype)
    m = torch.linalg.inv(t) @ rot @ t                                    # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)


def random_grey(x, p=0.2, generator=None):
    on = (_rand(x.shape[0], generator) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(on, grey(x).expand_as(x), x)


def gaussian_blur(x, sigma: torch.Tensor) -> torch.Tensor:
    """Blur sample ``b`` with a Gaussian of std ``sigma[b]`` pixels (``sigma <= 0``: no blur).
    Kernel radius ceil(3 * max sigma); reflect padding."""
    B, C, H, W = x.shape
    sigma = sigma.to(x.device, x.dtype)
    radius = max(1, min(int(math.ceil(3 * float(sigma.max()))), min(H, W) // 2 - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    k = torch.where((sigma > 0)[:, None], k, (t[None] == 0).to(x.dtype))   # delta = identity
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(C, 0)                # (B*C, K)
    y = F.pad(x.reshape(1, B * C, H, W), (radius,) * 4, mode="reflect")
    y = F.conv2d(y, k.view(B * C, 1, 1, -1), groups=B * C)
    y = F.conv2d(y, k.view(B * C, 1, -1, 1), groups=B * C)
    return y.view(B, C, H, W)


@dataclass
class TwoViewAugment:
    """``v1, v2 = TwoViewAugment(size=96)(images, generator)``; see the module docstring."""
    size: int = 96
    scale: tuple = (0.2, 1.0)
    ratio: tuple = (3 / 4, 4 / 3)
    jitter: tuple = (0.4, 0.4, 0.2, 0.1)      # brightness, contrast, saturation, hue
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: tuple = (1.0, 0.1)                # per view
    sigma: tuple = (0.1, 2.0)                 # pixels at a 96-px crop; scaled by size / 96
    p_solarize: tuple = (0.0, 0.0)            # per view (BYOL uses (0.0, 0.2))
    p_flip: float = 0.0                       # OFF: a flip swaps left/right face parts

    def view(self, x, i: int, generator=None, return_boxes: bool = False):
        """View ``i`` (0 or 1: they differ in blur/solarise probabilities) of ``x``."""
        x = to_float(x)
        B = x.shape[0]
        v, boxes = random_resized_crop(x, self.size, self.scale, self.ratio, self.p_flip,
                                       generator)
        v = color_jitter(v, *self.jitter, p=self.p_jitter, generator=generator)
        v = random_grey(v, self.p_gray, generator)
        s = _rand(B, generator, *self.sigma) * (self.size / 96)
        s = torch.where(_rand(B, generator) < self.p_blur[i], s, torch.zeros_like(s))
        v = gaussian_blur(v, s)
        sol = (_rand(B, generator) < self.p_solarize[i]).to(v.device).view(B, 1, 1, 1)
        v = torch.where(sol & (v >= 0.5), 1 - v, v)
        return (v, boxes) if return_boxes else v

    def __call__(self, x, generator=None):
        return self.view(x, 0, generator), self.view(x, 1, generator)
