"""The landmark regressor of DVE / ContrastLandmarks (thesis Sec. 3.2.4) on frozen features.

The protocol. A frozen dense feature map ``(B, C, h, w)`` goes through

1. ``K * M`` bias-free 1x1 filters (``M = 50`` "intermediate" or "virtual" points for each of
   the ``K`` annotated landmarks), giving ``K * M`` response maps;
2. a spatial softmax of ``softargmax_mul * response`` (``softargmax_mul = 100``) over the
   ``h * w`` cells of each map, and the soft-argmax: the softmax-weighted mean of the cell
   centres, an ``(x, y)`` point per filter;
3. for each annotated landmark ``k`` an independent bias-free linear map from the ``2M``
   numbers of its own ``M`` intermediate points to its ``(x, y)``.

It is trained with a smooth-L1 loss on ``alpha``-scaled normalised coordinates
(``alpha = 10``) and Adam; only the filters and the linear maps learn, the features are
detached (``fit_regressor(encoder=...)`` trains a network under the regressor end to end
instead: the supervised yardstick that no paper shows).

Where each part comes from
--------------------------
* ContrastLandmarks (Cheng et al., ICCV 2021; github.com/cvl-umass/contrast-landmark):
  ``models/keypoint_prediction.py`` (``IntermediateKeypointPredictor``, written by DVE's
  author and copied there): filters initialised ``randn``, one ``nn.Linear(2M, 2,
  bias=False)`` per landmark (default init) applied as a grouped 1x1 conv, inputs ordered
  ``(x_1, y_1, x_2, y_2, ...)``, soft-argmax grid ``linspace(-1, 1)`` over the map's width
  and height, features detached.  ``models/loss.py``: ``regression_loss`` (``F.smooth_l1_loss``
  of ``alpha * pred`` and ``alpha * target``, mean over all coordinates) and
  ``selected_regression_loss`` (invisible points zeroed in both, still counted in the mean).
  ``eval_face.py``: the regressor is built with ``num_intermediate_points=50,
  softargmax_mul=100.0``; the loss is ``regression_loss`` with ``alpha=10``; Adam with
  ``betas=(beta1, beta2) = (0.5, 0.999)`` (its defaults), no AMSGrad unless asked; cosine
  annealing ``CosineAnnealingLR(T_max=epochs, eta_min=lr * 0.2**3 * 0.1)`` stepped once at
  the *start* of every epoch (so epoch 1 already runs at the first decayed value and the
  last epoch at ``eta_min``); shuffled batches, last partial batch kept; hypercolumn
  features at 48 x 48 (``output_shape``) for 96 x 96 inputs.  ``data_loader/
  data_loaders_face.py``: ``kp_normalize`` (``x_n = 2 x / (W - 1) - 1``) and
  ``restrict_annos`` (``--repeat``: the subset of ``n`` images tiled ``min(num_per_epoch,
  dataset size) // n`` times).  ``README.md``: Adam, lr 1e-3, weight decay 5e-4, batch 32,
  200 epochs, cosine; MAFL / AFLW / 300W numbers taken at epochs 120 / 45 / 80 (of that
  200-epoch schedule; the README notes the saved epoch index is off by one); limited
  annotations (its example: 50 AFLW_MTFL images): lr 0.01, weight decay 0.05, 1000 epochs,
  cosine, ``--restrict_annos 50 --repeat --TPS_aug`` (``--num_per_epoch`` defaults to
  1000); for birds (CUB) lr 0.01 with weight decay 0.05 up to 100 annotations.
* DVE (Thewlis et al., ICCV 2019; github.com/jamt9000/DVE): the same
  ``model/keypoint_prediction.py``; ``model/loss.py`` ``regression_loss`` (same smooth L1,
  default ``alpha=1`` but every regressor config passes ``loss_args: {"alpha": 10.0}``);
  ``configs/*-keypoints/*.json`` and ``configs/templates/*keypoints*.json``.  DVE differs in
  the optimiser and schedule (every regressor config that is not a template): Adam with
  ``amsgrad: true`` and PyTorch's default betas (0.9, 0.999), lr 1e-3, weight decay 5e-4,
  ``MultiStepLR`` milestones [100, 250], gamma 0.1, 300 epochs (AFLW
  ``hourglass-64d-dve-ep45``: 500 epochs, milestones [100, 250, 350]), batch 32,
  ``do_augmentations: false``, ``keypoint_regressor_upsample: false`` (the regressor sees
  the backbone's own grid; only the ``configs/templates`` say batch 128 / upsample true).
  Limited annotations (``configs/aflw-mtfl-limit-annos-ft-keypoints/``): lr 0.01, weight
  decay 5e-4 (not 0.05), constant lr (no milestones), 50 epochs, no augmentation, and
  ``data_loader/data_loaders.py`` ``restrict_annos`` tiles the subset back to about the
  full training-set size (``dataset size // n`` copies) rather than to 1000.
  ``fit_regressor(..., betas=(0.9, 0.999), amsgrad=True, schedule="none")`` is DVE's
  limited-annotation optimiser; the step decay of its full setting is not implemented.
* The thesis: "The regressor initially comprises of 50 filters ... of dimension 1x1xK which
  transforms the input feature maps to heatmaps of intermediate virtual keypoints. These
  heatmaps are converted to 2K x-y pairs using a softargmax layer, which are further
  linearly regressed to estimate manually annotated landmarks."  Read literally that is 50
  filters *in all*, shared by every landmark, and one dense linear map.  This module
  follows the released code instead: ``M = 50`` filters *per landmark* (``K * M`` in all),
  each landmark regressed from its own ``M`` points only (the grouped map; the code's
  ``DENSE_CONV = False``, "to ensure compatibility with prior work").  ``num_intermediate``
  changes ``M``.

Coordinates (exact; ``ssl_lab.metrics.landmarks`` conventions)
--------------------------------------------------------------
Image landmarks are ``(..., K, 2)`` ``(x, y)`` pixel coordinates, 0-based, pixel ``j``
centred at ``x = j``.  Two normalised frames are used, as in the released code:

* the **target frame** of the predictions and of the loss, ContrastLandmarks / DVE
  ``kp_normalize``: ``x_n = 2 x / (W - 1) - 1``, ``y_n = 2 y / (H - 1) - 1`` for an
  ``H x W`` image, i.e. -1 / +1 are the centres of the first / last pixel
  (:func:`pixels_to_normalized`, :func:`normalized_to_pixels`).  The linear map is
  unbounded, so a prediction outside ``[-1, 1]`` (outside the image) is representable;
* the **grid frame** of the soft-argmax (the intermediate points): ``u = -1`` / ``+1`` at
  the centre of the first / last *cell* of the ``h x w`` map (``linspace(-1, 1, w)``).
  With stride ``s = W / w`` cell ``i`` is centred at image ``x = (i + 0.5) s - 0.5``, so
  ``x = (u + 1) / 2 * (w - 1) s + 0.5 s - 0.5`` (:func:`grid_to_pixels`): the soft-argmax
  itself only spans ``[0.5 s - 0.5, (w - 0.5) s - 0.5]``.  Both frames are centred on the
  image centre ``(W - 1) / 2``, so they differ by a pure scale, ``x_n = u (w - 1) s /
  (W - 1)`` (:func:`grid_to_normalized`), which the bias-free linear map absorbs (its
  weights for a coordinate summing to that factor).  A 1-cell axis has the single grid
  value ``u = 0`` (the image centre).

Deviations from the released protocol
-------------------------------------
* Features are precomputed once (:func:`fit_regressor` takes a feature tensor, e.g.
  float16), so no augmentation is applied: the TPS augmentation (``--TPS_aug``) of
  ContrastLandmarks' few-annotation protocol is not reproduced.
* Invisible points: :func:`regression_loss` takes the mean over *visible* coordinates
  (ContrastLandmarks' ``selected_regression_loss`` zeroes them and divides by all).  Its
  ``eval_face.py`` trains faces with the plain ``regression_loss`` (no visibility).
* Shuffling uses the function's own ``torch.Generator`` (seeded), and ``num_per_epoch``
  tiles the subset ``max(1, num_per_epoch // n)`` times (ContrastLandmarks also caps
  ``num_per_epoch`` by the full dataset size, which is not known here).
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..metrics.landmarks import _image_hw
from ..paths import atomic_save
from ..progress import bar as progress_bar

__all__ = ["soft_argmax", "pixels_to_normalized", "normalized_to_pixels", "grid_to_pixels",
           "grid_to_normalized", "LandmarkRegressor", "regression_loss", "fit_regressor",
           "predict", "repeat_indices"]

#: ContrastLandmarks' cosine floor: ``lr * lr_decay_rate ** 3 * 0.1`` with its default 0.2
ETA_MIN_FACTOR = 0.2 ** 3 * 0.1


def _grid(n: int, device, dtype) -> torch.Tensor:
    """Cell-centre coordinates of an axis of ``n`` cells in the grid frame."""
    if n == 1:
        return torch.zeros(1, device=device, dtype=dtype)
    return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- coordinates

def soft_argmax(heatmaps: torch.Tensor, temperature_mul: float = 100.0) -> torch.Tensor:
    """Soft-argmax of response maps: ``(B, N, h, w)`` -> ``(B, N, 2)`` ``(x, y)`` points.

    Each map gets a spatial softmax of ``temperature_mul * heatmap`` over its ``h * w``
    cells; the point is the softmax-weighted mean of the cell centres in the **grid frame**
    (``x = linspace(-1, 1, w)`` along the width, ``y = linspace(-1, 1, h)`` along the
    height: -1 / +1 are the centres of the first / last cell; a 1-cell axis gives 0).  A
    map with one dominant cell (large multiplier) returns that cell's centre; map it to
    image pixels with :func:`grid_to_pixels`.  Differentiable; computed in the input dtype.
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be (B, N, h, w); got {tuple(heatmaps.shape)}")
    b, n, h, w = heatmaps.shape
    prob = F.softmax(temperature_mul * heatmaps.reshape(b, n, h * w), dim=-1).reshape(b, n, h, w)
    xs = _grid(w, heatmaps.device, heatmaps.dtype)
    ys = _grid(h, heatmaps.device, heatmaps.dtype)
    x = (prob.sum(2) * xs).sum(-1)          # marginal over rows, then mean column
    y = (prob.sum(3) * ys).sum(-1)
    return torch.stack((x, y), dim=-1)


def pixels_to_normalized(points: torch.Tensor, image_size) -> torch.Tensor:
    """Image pixels -> target frame: ``x_n = 2 x / (W - 1) - 1``, ``y_n = 2 y / (H - 1) - 1``.

    ``points``: ``(..., 2)`` ``(x, y)``; ``image_size``: ``H`` (square) or ``(H, W)``.
    This is ContrastLandmarks / DVE ``kp_normalize`` (-1 / +1: first / last pixel centre)."""
    h, w = _image_hw(image_size)
    if h < 2 or w < 2:
        raise ValueError(f"image_size must be at least 2 x 2; got {(h, w)}")
    points = torch.as_tensor(points)
    points = points if points.is_floating_point() else points.float()
    scale = points.new_tensor([2.0 / (w - 1), 2.0 / (h - 1)])
    return points * scale - 1.0


def normalized_to_pixels(points: torch.Tensor, image_size) -> torch.Tensor:
    """Target frame -> image pixels, the inverse of :func:`pixels_to_normalized`:
    ``x = (x_n + 1) (W - 1) / 2``, ``y = (y_n + 1) (H - 1) / 2``."""
    h, w = _image_hw(image_size)
    if h < 2 or w < 2:
        raise ValueError(f"image_size must be at least 2 x 2; got {(h, w)}")
    points = torch.as_tensor(points)
    points = points if points.is_floating_point() else points.float()
    scale = points.new_tensor([(w - 1) / 2.0, (h - 1) / 2.0])
    return (points + 1.0) * scale


def grid_to_pixels(points: torch.Tensor, map_size, image_size) -> torch.Tensor:
    """Grid frame of an ``h x w`` map (e.g. :func:`soft_argmax` output) -> image pixels.

    With strides ``s_x = W / w``, ``s_y = H / h``:
    ``x = (u + 1) / 2 * (w - 1) s_x + 0.5 s_x - 0.5`` (and likewise ``y``), so grid value
    ``linspace(-1, 1, w)[i]`` lands on the cell centre ``(i + 0.5) s_x - 0.5``."""
    mh, mw = _image_hw(map_size)
    h, w = _image_hw(image_size)
    points = torch.as_tensor(points)
    points = points if points.is_floating_point() else points.float()
    sx, sy = w / mw, h / mh
    scale = points.new_tensor([(mw - 1) * sx / 2.0, (mh - 1) * sy / 2.0])
    offset = points.new_tensor([(mw - 1) * sx / 2.0 + 0.5 * sx - 0.5,
                                (mh - 1) * sy / 2.0 + 0.5 * sy - 0.5])
    return points * scale + offset


def grid_to_normalized(points: torch.Tensor, map_size, image_size) -> torch.Tensor:
    """Grid frame of an ``h x w`` map -> target frame: the pure scale
    ``x_n = u (w - 1) s_x / (W - 1)``, ``y_n = v (h - 1) s_y / (H - 1)``."""
    return pixels_to_normalized(grid_to_pixels(points, map_size, image_size), image_size)


# ----------------------------------------------------------------------------- the module

class LandmarkRegressor(nn.Module):
    """``K * M`` soft-argmax filters on frozen features + a per-landmark linear map.

    ``in_channels``: ``C`` of the features; ``num_points``: ``K``; ``num_intermediate``:
    ``M`` virtual points per landmark (50); ``softargmax_mul``: the softmax multiplier
    (100).  Parameters: ``filters`` ``(K * M, C, 1, 1)`` (filter ``k * M + m`` is point
    ``m`` of landmark ``k``), initialised standard normal as in the released code;
    ``weight`` ``(K, 2, M, 2)``: ``pred[k, o] = sum_{m, c} weight[k, o, m, c] *
    inter[k, m, c]`` -- ``weight[k].reshape(2, 2 M)`` is landmark ``k``'s ``nn.Linear(2 M, 2,
    bias=False)`` weight on the inputs ``(x_1, y_1, x_2, y_2, ...)``, initialised like it
    (uniform in ``+-1 / sqrt(2 M)``).  ``generator``: optional ``torch.Generator`` for the
    initialisation (else the global RNG).

    ``forward(feat)`` -> ``(pred, intermediate)``: ``pred`` ``(B, K, 2)`` in the target frame
    (``normalized_to_pixels`` / :meth:`to_pixels`), ``intermediate`` ``(B, K, M, 2)`` in the
    grid frame of the map (:func:`grid_to_pixels`).  ``feat`` is detached (the released
    code's frozen features) unless ``detach=False``: a regressor trained end to end with the
    network under it.  The thesis's wording (50 filters shared by all landmarks) differs; see
    the module docstring.
    """

    def __init__(self, in_channels: int, num_points: int, num_intermediate: int = 50,
                 softargmax_mul: float = 100.0, generator: torch.Generator | None = None,
                 detach: bool = True):
        super().__init__()
        self.detach = bool(detach)
        if min(in_channels, num_points, num_intermediate) < 1:
            raise ValueError("in_channels, num_points and num_intermediate must be positive")
        self.in_channels, self.num_points = int(in_channels), int(num_points)
        self.num_intermediate, self.softargmax_mul = int(num_intermediate), float(softargmax_mul)
        k, m = self.num_points, self.num_intermediate
        self.filters = nn.Parameter(torch.randn(k * m, in_channels, 1, 1, generator=generator))
        bound = 1.0 / math.sqrt(2 * m)
        self.weight = nn.Parameter(
            (torch.rand(k, 2, m, 2, generator=generator) * 2.0 - 1.0) * bound)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, num_points={self.num_points}, "
                f"num_intermediate={self.num_intermediate}, softargmax_mul={self.softargmax_mul}")

    def intermediate(self, feat: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> the virtual points ``(B, K, M, 2)`` in the grid frame."""
        feat = feat.detach() if self.detach else feat
        if feat.dim() != 4 or feat.shape[1] != self.in_channels:
            raise ValueError(f"feat must be (B, {self.in_channels}, h, w); got {tuple(feat.shape)}")
        response = F.conv2d(feat, self.filters.to(feat.dtype))
        pts = soft_argmax(response, self.softargmax_mul)
        return pts.reshape(feat.shape[0], self.num_points, self.num_intermediate, 2)

    def regress(self, intermediate: torch.Tensor) -> torch.Tensor:
        """The per-landmark linear maps: ``(B, K, M, 2)`` -> ``(B, K, 2)``."""
        return torch.einsum("komc,bkmc->bko", self.weight.to(intermediate.dtype), intermediate)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inter = self.intermediate(feat)
        return self.regress(inter), inter

    @staticmethod
    def to_pixels(pred: torch.Tensor, image_size) -> torch.Tensor:
        """Predictions (target frame) -> image pixels (:func:`normalized_to_pixels`)."""
        return normalized_to_pixels(pred, image_size)

    @staticmethod
    def from_pixels(points: torch.Tensor, image_size) -> torch.Tensor:
        """Image pixels -> target frame (:func:`pixels_to_normalized`)."""
        return pixels_to_normalized(points, image_size)


# ----------------------------------------------------------------------------- loss

def regression_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 10.0,
                    visible: torch.Tensor | None = None) -> torch.Tensor:
    """Smooth-L1 loss of ``alpha * pred`` against ``alpha * target`` (both ``(B, K, 2)``,
    target frame), ``beta = 1`` (PyTorch's default): with ``d = alpha |pred - target|`` per
    coordinate, ``0.5 d**2`` for ``d < 1`` else ``d - 0.5``, averaged.

    ``visible``: optional ``(B, K)`` bool; the mean then runs over the visible points'
    coordinates only (``2 * n_visible`` terms; 0 if none is visible).  ContrastLandmarks'
    ``selected_regression_loss`` instead zeroes invisible points and divides by all
    ``2 B K`` terms -- the same gradient direction, scaled by the visible fraction."""
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred and target must both be (B, K, 2); got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    total = _loss_sum(pred, target, alpha, visible)
    return total / _loss_count(pred.shape, visible)


def _loss_sum(pred, target, alpha, visible):
    """The sum of :func:`regression_loss`'s terms (over the visible coordinates)."""
    target = target.to(device=pred.device, dtype=pred.dtype)
    per = F.smooth_l1_loss(pred * alpha, target * alpha, reduction="none")
    if visible is None:
        return per.sum()
    vis = torch.as_tensor(visible, dtype=torch.bool, device=pred.device)
    if vis.shape != pred.shape[:-1]:
        raise ValueError(f"visible must be {tuple(pred.shape[:-1])}; got {tuple(vis.shape)}")
    return (per * vis[..., None].to(per.dtype)).sum()


def _loss_count(shape, visible) -> float:
    """The number of terms :func:`regression_loss` averages: every coordinate, or the visible
    ones (at least 1)."""
    if visible is None:
        return float(math.prod(shape))
    return max(2.0 * float(torch.as_tensor(visible).sum()), 1.0)


# ----------------------------------------------------------------------------- training

def repeat_indices(n: int, num_per_epoch: int | None) -> torch.Tensor:
    """The sample indices of one epoch: ``arange(n)``, or with ``num_per_epoch`` the ``n``
    samples tiled ``max(1, num_per_epoch // n)`` times (ContrastLandmarks ``--repeat``)."""
    base = torch.arange(n)
    if num_per_epoch is None:
        return base
    return base.repeat(max(1, int(num_per_epoch) // n))


@contextlib.contextmanager
def _flush_denormals():
    """Flush denormal floats to zero inside the block (where the CPU supports it), then stop."""
    on = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on:
            torch.set_flush_denormal(False)


def _cosine_lr(lr: float, eta_min: float, epoch: int, t_max: int) -> float:
    """ContrastLandmarks' cosine value for 0-based ``epoch`` (scheduler stepped before it)."""
    t = min(epoch + 1, t_max)
    return eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * t / t_max)) / 2.0


def fit_regressor(features: torch.Tensor, landmarks: torch.Tensor, image_size, *,
                  visible: torch.Tensor | None = None, epochs: int, batch_size: int = 32,
                  lr: float = 1e-3, weight_decay: float = 5e-4, seed: int = 0,
                  num_per_epoch: int | None = None, num_intermediate: int = 50,
                  softargmax_mul: float = 100.0, alpha: float = 10.0,
                  betas: tuple[float, float] = (0.5, 0.999), amsgrad: bool = False,
                  schedule: str = "cosine", schedule_epochs: int | None = None,
                  eta_min: float | None = None, device="cpu", progress: bool = False,
                  encoder: nn.Module | None = None, amp: bool = False, checkpoint=None
                  ) -> tuple[LandmarkRegressor, dict]:
    """Train a :class:`LandmarkRegressor` on **precomputed** frozen features.

    ``features``: ``(N, C, h, w)`` (any float dtype, e.g. float16; each batch is moved to
    ``device`` and cast to float32), ``landmarks``: ``(N, K, 2)`` image pixels of the
    ``image_size`` (``H`` or ``(H, W)``) images, ``visible``: optional ``(N, K)`` bool
    (invisible points are left out of the loss, :func:`regression_loss`).

    Defaults are ContrastLandmarks' full-annotation protocol (``eval_face.py`` / README):
    Adam (``betas=(0.5, 0.999)``, its defaults), lr 1e-3, weight decay 5e-4, batch 32,
    cosine annealing to ``eta_min = lr * 8e-4`` over ``schedule_epochs`` (default
    ``epochs``), the lr of (0-based) epoch ``e`` being the cosine value at step ``e + 1``
    as in the release; ``epochs < schedule_epochs`` stops early on that schedule (the
    README's epochs 120 / 45 / 80 of 200).  ``schedule="none"`` keeps lr constant.  Its
    few-annotation protocol: ``lr=0.01, weight_decay=0.05, num_per_epoch=1000`` (the subset
    is tiled to that many samples per epoch, :func:`repeat_indices`).  DVE's optimiser:
    ``betas=(0.9, 0.999), amsgrad=True``.

    Deviation: no augmentation (features are precomputed once), so the TPS augmentation of
    the few-annotation protocol is not applied.

    Denormal floats are flushed to zero while it runs (:func:`_flush_denormals`): the softmax
    of 100 x the responses puts most cells near ``exp(-90)``, below float32's smallest normal
    number, and x86 arithmetic on denormals is slow. Measured on 640 MAFL-role faces of the
    small LEAD-64 maps, one core: 58 ms a step without, 22 with, the same loss to 7 digits
    after 4 epochs.

    Deterministic given ``seed`` (the initialisation and the shuffling use their own
    ``torch.Generator``s; the global RNG is untouched) on a given device.  Each step is
    batched: one gather of the batch, one forward, no per-image loop; on a CPU, for features of
    at most :data:`MICRO_CHANNELS` channels, the head's forward and backward run on micro-batches
    of at most :data:`TRAIN_BYTES` of response maps whose gradients add up to the batch's
    (:func:`_step_gradients`); the optimiser steps once per batch.

    ``encoder``: train end to end instead. ``features`` are then the images ``(N, 3, H, W)``
    (uint8, or float in [0, 1]), ``encoder`` maps a batch of them to dense maps, and it learns
    with the regressor (the same optimiser, schedule and loss; the regressor does not detach
    its input). ``amp``: the encoder runs under bf16 autocast on ``device`` (the loss in
    float32) on channels_last images (put the encoder in that memory format too: 12 % faster
    for LEAD's dense network on one AMX core). The encoder is left in eval mode, as the
    regressor.

    ``checkpoint``: a file written atomically after every epoch (the regressor, the optimiser,
    the shuffling generator, the history, the wall time so far and the call's arguments); if it
    exists, the fit resumes after its last epoch, and the result is the uninterrupted fit's
    (tested). A checkpoint written by another call (other arguments or data shape) is an error.
    Not for ``encoder=`` fits.

    Returns ``(regressor, history)``: the trained regressor in eval mode on ``device``, and
    ``{"loss": [mean training loss per epoch], "lr": [lr per epoch], "wall_s": seconds of
    training, over every resumed part}``.
    """
    features = torch.as_tensor(features)
    landmarks = torch.as_tensor(landmarks)
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, h, w); got {tuple(features.shape)}")
    n = features.shape[0]
    if landmarks.dim() != 3 or landmarks.shape[0] != n or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be ({n}, K, 2); got {tuple(landmarks.shape)}")
    if visible is not None:
        visible = torch.as_tensor(visible, dtype=torch.bool)
        if visible.shape != landmarks.shape[:2]:
            raise ValueError(f"visible must be {tuple(landmarks.shape[:2])}; "
                             f"got {tuple(visible.shape)}")
    if schedule not in ("cosine", "none"):
        raise ValueError(f"schedule must be 'cosine' or 'none'; got {schedule!r}")
    device = torch.device(device)
    k = landmarks.shape[1]
    targets = pixels_to_normalized(landmarks.double(), image_size).float()

    def maps(idx):
        if encoder is None:
            return features[idx].to(device=device, dtype=torch.float32)
        x = features[idx].to(device)
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        if amp:                                        # NHWC, as the encoder should be too
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return encoder(x).float()

    channels = features.shape[1]
    if encoder is not None:
        encoder.to(device).eval()
        with torch.no_grad():                          # the encoder's map channels
            channels = maps(torch.arange(min(n, 2))).shape[1]
        encoder.train()
    init_gen = torch.Generator().manual_seed(int(seed))
    reg = LandmarkRegressor(channels, k, num_intermediate, softargmax_mul,
                            generator=init_gen, detach=encoder is None).to(device)
    params = [*reg.parameters(), *(encoder.parameters() if encoder is not None else ())]
    opt = torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay,
                           amsgrad=amsgrad)
    t_max = int(schedule_epochs or epochs)
    floor = lr * ETA_MIN_FACTOR if eta_min is None else float(eta_min)
    shuffle_gen = torch.Generator().manual_seed(int(seed) + 1)
    epoch_index = repeat_indices(n, num_per_epoch)
    history: dict[str, list[float]] = {"loss": [], "lr": []}
    if checkpoint is not None and encoder is not None:
        raise ValueError("checkpoint= resumes frozen-feature fits only, not encoder= ones")
    call = dict(shape=tuple(features.shape), k=k, epochs_scheduled=t_max, batch_size=batch_size, lr=lr,
                weight_decay=weight_decay, seed=int(seed), num_per_epoch=num_per_epoch,
                num_intermediate=num_intermediate, softargmax_mul=softargmax_mul, alpha=alpha,
                betas=tuple(betas), amsgrad=amsgrad, schedule=schedule, eta_min=floor)
    start_epoch, wall0, t0 = 0, 0.0, time.perf_counter()
    if checkpoint is not None and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location=device, weights_only=False)
        if ck["call"] != call:
            raise ValueError(f"checkpoint {checkpoint} was written by another fit; delete it to start afresh")
        reg.load_state_dict(ck["regressor"])
        opt.load_state_dict(ck["optimizer"])
        shuffle_gen.set_state(ck["shuffle"])
        history, start_epoch, wall0 = ck["history"], ck["epoch"], ck["wall_s"]

    max_bytes = TRAIN_BYTES if device.type == "cpu" and channels <= MICRO_CHANNELS else None
    reg.train()
    with _flush_denormals():                          # see the docstring
        for epoch in progress_bar(range(start_epoch, int(epochs)), "regressor", show=progress, leave=False):
            cur = _cosine_lr(lr, floor, epoch, t_max) if schedule == "cosine" else lr
            for group in opt.param_groups:
                group["lr"] = cur
            order = epoch_index[torch.randperm(len(epoch_index), generator=shuffle_gen)]
            total, count = 0.0, 0
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                feat = maps(idx)
                tgt = targets[idx].to(device)
                vis = None if visible is None else visible[idx].to(device)
                opt.zero_grad(set_to_none=True)
                loss = _step_gradients(reg, feat, tgt, vis, alpha, max_bytes, end_to_end=encoder is not None)
                opt.step()
                total += loss * len(idx)
                count += len(idx)
            history["loss"].append(total / max(count, 1))
            history["lr"].append(cur)
            if checkpoint is not None:
                atomic_save(dict(call=call, regressor=reg.state_dict(), optimizer=opt.state_dict(),
                                 shuffle=shuffle_gen.get_state(), history=history, epoch=epoch + 1,
                                 wall_s=wall0 + time.perf_counter() - t0), checkpoint)
    history["wall_s"] = wall0 + time.perf_counter() - t0
    reg.eval()
    if encoder is not None:
        encoder.eval()
    return reg, history


#: on a CPU, the bytes of response maps one forward and backward of :func:`fit_regressor` may hold:
#: a larger batch is split into micro-batches whose gradients add up to the batch's, for features
#: of at most :data:`MICRO_CHANNELS` channels. Measured on one thread (the other core busy), a step
#: of 32 faces through 300-W's 68-point head on 16 x 16 maps, whole batch -> micro-batches of this
#: size (one face): 64-d 0.48 -> 0.17 s, 128-d 0.50 -> 0.23, 256-d 0.56 -> 0.38, 512-d 0.69 ->
#: 0.66, 960-d 0.93 -> 1.16 (there the 1x1 convolution dominates, and splitting it costs); a
#: 5-point head's maps fit whole (9 ms a step on 64-d maps either way)
TRAIN_BYTES = 4 << 20
MICRO_CHANNELS = 512


def _step_gradients(reg: LandmarkRegressor, feat: torch.Tensor, target: torch.Tensor, visible, alpha: float,
                    max_bytes: int | None, end_to_end: bool = False) -> float:
    """Accumulate the gradient of :func:`regression_loss` over the batch ``feat`` into the
    parameters (and, ``end_to_end``, into the graph that made ``feat``); return the loss.

    With ``max_bytes``, the head runs on micro-batches whose ``K * M`` float32 response maps
    hold at most that many bytes, each adding its share of the batch's loss (its sum over the
    batch's count of terms), so the gradient is the whole batch's up to float rounding. The
    maps of a micro-batch then stay in the CPU's cache through the softmax, its sums and their
    backward (:data:`TRAIN_BYTES` gives the measurements)."""
    per_image = reg.filters.shape[0] * feat.shape[-2] * feat.shape[-1] * 4
    micro = len(feat) if max_bytes is None else max(1, max_bytes // per_image)
    count = _loss_count(target.shape, visible)
    if micro >= len(feat):
        loss = _loss_sum(reg(feat)[0], target, alpha, visible) / count
        loss.backward()
        return float(loss.detach())
    inp = feat.detach().requires_grad_() if end_to_end else feat
    total = 0.0
    for start in range(0, len(feat), micro):
        part = slice(start, start + micro)
        loss = _loss_sum(reg(inp[part])[0], target[part], alpha, None if visible is None else visible[part]) / count
        loss.backward()
        total += float(loss.detach())
    if end_to_end:
        feat.backward(inp.grad)                        # the encoder's share, once for the batch
    return total


#: :func:`predict`'s default batch: the bytes of response maps one batch may hold
PREDICT_BYTES = 4 << 20


@torch.no_grad()
def predict(regressor: LandmarkRegressor, features: torch.Tensor, image_size,
            batch: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Landmarks ``(N, K, 2)`` in image pixels (float32, on CPU) of precomputed features
    ``(N, C, h, w)``, in batches of ``batch`` moved to the regressor's device as ``dtype``
    (the regressor must be in ``dtype`` too; float64 prints the same on every CPU). ``batch``
    None: as many images as keep their ``K * M`` response maps within :data:`PREDICT_BYTES`
    (the soft-argmax then reads them from the CPU's cache: 300-W's 68-point head on 689 faces
    of 64 x 16 x 16 took 1.8 s in float32 one image at a time against 5.7 s in batches of 256,
    on one thread; on a GPU, 256)."""
    device = regressor.filters.device
    if batch is None:
        per_image = regressor.filters.shape[0] * features.shape[-2] * features.shape[-1] * dtype.itemsize
        batch = max(1, PREDICT_BYTES // per_image) if device.type == "cpu" else 256
    was_training = regressor.training
    regressor.eval()
    out = []
    for start in range(0, features.shape[0], batch):
        feat = features[start:start + batch].to(device=device, dtype=dtype)
        pred, _ = regressor(feat)
        out.append(normalized_to_pixels(pred.double(), image_size).float().cpu())
    regressor.train(was_training)
    if not out:
        return torch.zeros(0, regressor.num_points, 2)
    return torch.cat(out)
