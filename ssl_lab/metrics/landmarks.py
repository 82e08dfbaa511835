"""Landmark metrics: inter-ocular-normalised error, PCK, and matching by feature similarity.

Conventions (shared with ``ssl_lab.data``):

* landmarks are ``(..., K, 2)`` tensors of ``(x, y)`` image coordinates in pixels, 0-based,
  with the *pixel-centre* convention: pixel ``j`` covers ``[j - 0.5, j + 0.5)`` and has its
  centre at ``x = j``;
* a feature map ``(B, C, h, w)`` of an ``H x W`` image tiles the image with cells of
  ``H / h`` by ``W / w`` pixels (any stride, need not be an integer); cell ``i`` has its
  centre at image coordinate ``(i + 0.5) * stride - 0.5``.

IOD error (thesis Sec. 3.4, as in DVE and every paper it compares with)::

    error = 100 * mean_k ||pred_k - gt_k|| / ||gt[eye_l] - gt[eye_r]||

computed per image, then averaged over images.  The two normalising points are the eye
centres for the 5-point (MAFL / AFLW) sets and the outer eye corners 36 / 45 for the
68-point (300-W) set; :data:`EYES` holds these and is what ``eyes=None`` uses.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["EYES", "inter_ocular", "iod_error", "pck", "sample_descriptors",
           "cosine_similarity_maps", "match_landmarks", "correspondence_heatmap",
           "matching_benchmark", "copy_baseline", "pixel_patches"]

#: indices of the two points whose distance normalises the error, by number of landmarks
EYES = {5: (0, 1), 68: (36, 45)}


def _check_points(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred, gt = torch.as_tensor(pred), torch.as_tensor(gt)
    if pred.shape != gt.shape or pred.shape[-1] != 2 or pred.dim() not in (2, 3):
        raise ValueError(f"pred and gt must both be (K, 2) or (B, K, 2) (x, y) points; got "
                         f"{tuple(pred.shape)} and {tuple(gt.shape)}")
    if pred.dim() == 2:
        pred, gt = pred[None], gt[None]
    return pred.double(), gt.double()


def _eyes(eyes: Sequence[int] | None, k: int) -> tuple[int, int]:
    if eyes is None:
        if k not in EYES:
            raise ValueError(f"no default eye indices for {k} landmarks (known: 5 -> (0, 1), "
                             f"68 -> (36, 45)); pass eyes=(left, right)")
        return EYES[k]
    left, right = eyes
    if not (0 <= left < k and 0 <= right < k) or left == right:
        raise ValueError(f"eyes={tuple(eyes)} must be two different indices below {k}")
    return left, right


def inter_ocular(gt: torch.Tensor, eyes: Sequence[int] | None = None) -> torch.Tensor:
    """Inter-ocular distance ``||gt[eye_l] - gt[eye_r]||`` of each image: ``(B,)`` (float64)."""
    gt = torch.as_tensor(gt).double()
    gt = gt[None] if gt.dim() == 2 else gt
    left, right = _eyes(eyes, gt.shape[-2])
    iod = (gt[:, left] - gt[:, right]).norm(dim=-1)
    if (iod <= 0).any():
        bad = torch.nonzero(iod <= 0).flatten().tolist()
        raise ValueError(f"inter-ocular distance is zero for image(s) {bad}: "
                         f"the two eye points coincide")
    return iod


def _visible(visible, shape) -> torch.Tensor:
    if visible is None:
        return torch.ones(shape[:2], dtype=torch.bool)
    visible = torch.as_tensor(visible, dtype=torch.bool)
    visible = visible[None] if visible.dim() == 1 else visible
    if visible.shape != shape[:2]:
        raise ValueError(f"visible must be (B, K) = {tuple(shape[:2])}; got {tuple(visible.shape)}")
    return visible


def iod_error(pred, gt, eyes: Sequence[int] | None = None, visible=None,
              per_image: bool = False):
    """Landmark error in percent of the inter-ocular distance.

    ``pred``, ``gt``: ``(B, K, 2)`` or ``(K, 2)`` pixel coordinates.  ``eyes``: the two
    normalising indices (default from :data:`EYES`: ``(0, 1)`` for 5 points, ``(36, 45)``
    for 68).  ``visible``: optional ``(B, K)`` bool; the mean of an image runs over its
    visible points only (the eyes themselves must be annotated), and an image with no
    visible point is left out of the mean over images (its per-image value is NaN).

    Returns the mean over images as a float; with ``per_image=True`` returns
    ``(mean, per_image_errors)`` where the second is a ``(B,)`` float64 tensor.
    """
    pred, gt = _check_points(pred, gt)
    vis = _visible(visible, pred.shape).to(pred.device)
    per_point = (pred - gt).norm(dim=-1) / inter_ocular(gt, eyes)[:, None]     # (B, K)
    n = vis.sum(1)
    per_img = 100.0 * torch.where(vis, per_point, 0.0).sum(1) / n.clamp(min=1)
    per_img = torch.where(n > 0, per_img, torch.full_like(per_img, float("nan")))
    if not (n > 0).any():
        raise ValueError("no visible landmark in any image: the IOD error is undefined")
    mean = float(per_img[n > 0].mean())
    return (mean, per_img) if per_image else mean


def pck(pred, gt, thresholds: Sequence[float] = (0.05, 0.10), eyes: Sequence[int] | None = None,
        visible=None) -> dict[float, float]:
    """Percentage of correct keypoints: fraction of (visible) points, over all images, whose
    error is at most ``t x IOD`` for each threshold ``t``.  Returns ``{t: fraction in [0, 1]}``."""
    pred, gt = _check_points(pred, gt)
    vis = _visible(visible, pred.shape).to(pred.device)
    if not vis.any():
        raise ValueError("no visible landmark: PCK is undefined")
    rel = (pred - gt).norm(dim=-1) / inter_ocular(gt, eyes)[:, None]           # (B, K)
    return {float(t): float((rel[vis] <= t).double().mean()) for t in thresholds}


# ----------------------------------------------------------------------------- matching

def _image_hw(image_size) -> tuple[float, float]:
    if isinstance(image_size, (int, float)):
        return float(image_size), float(image_size)
    h, w = image_size
    return float(h), float(w)


def sample_descriptors(feat: torch.Tensor, points: torch.Tensor, image_size) -> torch.Tensor:
    """Bilinearly sample ``feat`` ``(B, C, h, w)`` at image-pixel ``points`` ``(B, K, 2)``.

    ``image_size``: the image side in pixels (int) or ``(H, W)``.  With the pixel-centre
    convention, image ``x`` lies at feature coordinate ``(x + 0.5) / stride - 0.5``, which
    is exactly ``grid_sample(align_corners=False)`` at ``(2x + 1) / W - 1``.  Points off the
    map take the border value.  Returns ``(B, K, C)``.
    """
    if feat.dim() != 4 or points.dim() != 3 or points.shape[0] != feat.shape[0]:
        raise ValueError(f"expected feat (B, C, h, w) and points (B, K, 2); got "
                         f"{tuple(feat.shape)} and {tuple(points.shape)}")
    H, W = _image_hw(image_size)
    scale = torch.tensor([W, H], dtype=feat.dtype, device=feat.device)
    grid = (2 * points.to(feat) + 1) / scale - 1                                # (B, K, 2)
    out = F.grid_sample(feat, grid[:, :, None], mode="bilinear", padding_mode="border",
                        align_corners=False)                                    # (B, C, K, 1)
    return out[..., 0].transpose(1, 2)


def cosine_similarity_maps(descriptors: torch.Tensor, feat_query: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of descriptors ``(B, K, C)`` with every position of ``feat_query``
    ``(B, C, h, w)``: ``(B, K, h, w)``."""
    d = F.normalize(descriptors, dim=-1)
    q = F.normalize(feat_query, dim=1)
    return torch.einsum("bkc,bchw->bkhw", d, q)


def _bilinear_taps(n_in: int, n_out: int, like: torch.Tensor):
    """Lower source index and weight of each output position of a bilinear resize from
    ``n_in`` to ``n_out`` samples with ``align_corners=False`` (PyTorch's rule: source
    ``(i + 0.5) n_in / n_out - 0.5``, clamped to [0, n_in - 1]; the upper tap is ``lower + 1``
    on a map padded by one replicated cell)."""
    src = ((torch.arange(n_out, dtype=like.dtype, device=like.device) + 0.5) * (n_in / n_out) - 0.5)
    src = src.clamp(0, n_in - 1)     # past the last cell the value is that cell's, exactly (ties stay
    lo = src.floor().long().clamp_max(n_in - 1)                 # bit-equal, so argmax takes the first)
    return lo, src - lo


def upsampled_similarity_maps(descriptors: torch.Tensor, feat_query: torch.Tensor, size) -> torch.Tensor:
    """``cosine_similarity_maps(descriptors, F.interpolate(feat_query, size, mode="bilinear",
    align_corners=False))`` without building the ``(B, C, H, W)`` upsampled map.

    A bilinearly resized feature is ``f = sum_ij a_i b_j F[i, j]`` over four neighbouring
    cells, so its dot product with a descriptor is the resized map of dot products, and its
    squared norm is ``sum a_i a_i' b_j b_j' <F[i, j], F[i', j']>``: a mix of five maps of
    inner products between neighbouring cells. Everything is then ``(B, K, H, W)`` or
    smaller, which makes matching at image resolution cost about what it costs at feature
    resolution. Returns ``(B, K, H, W)``."""
    H, W = _image_hw(size)
    B, C, h, w = feat_query.shape
    f = F.pad(feat_query, (0, 1, 0, 1), mode="replicate")                   # (B, C, h+1, w+1)
    dots = torch.einsum("bkc,bchw->bkhw", descriptors, f)
    g00 = (f * f).sum(1)                                                     # |F[i, j]|^2
    gx = (f[..., :, :-1] * f[..., :, 1:]).sum(1)                             # <F[i, j], F[i, j+1]>
    gy = (f[..., :-1, :] * f[..., 1:, :]).sum(1)                             # <F[i, j], F[i+1, j]>
    gd = (f[..., :-1, :-1] * f[..., 1:, 1:]).sum(1)                          # <F[i, j], F[i+1, j+1]>
    ga = (f[..., :-1, 1:] * f[..., 1:, :-1]).sum(1)                          # <F[i, j+1], F[i+1, j]>
    y0, ay = _bilinear_taps(h, H, f)
    x0, bx = _bilinear_taps(w, W, f)
    Y, X = y0[:, None], x0[None, :]
    a1, b1 = ay[:, None], bx[None, :]
    a0, b0 = 1 - a1, 1 - b1
    at = lambda m, dy, dx: m[..., Y + dy, X + dx]
    num = (a0 * b0 * at(dots, 0, 0) + a0 * b1 * at(dots, 0, 1)
           + a1 * b0 * at(dots, 1, 0) + a1 * b1 * at(dots, 1, 1))
    norm2 = ((a0 * b0) ** 2 * at(g00, 0, 0) + (a0 * b1) ** 2 * at(g00, 0, 1)
             + (a1 * b0) ** 2 * at(g00, 1, 0) + (a1 * b1) ** 2 * at(g00, 1, 1)
             + 2 * b0 * b1 * (a0 ** 2 * at(gx, 0, 0) + a1 ** 2 * at(gx, 1, 0))
             + 2 * a0 * a1 * (b0 ** 2 * at(gy, 0, 0) + b1 ** 2 * at(gy, 0, 1))
             + 2 * a0 * a1 * b0 * b1 * (at(gd, 0, 0) + at(ga, 0, 0)))
    eps = 1e-12
    q_norm = norm2.clamp_min(0).sqrt().clamp_min(eps)[:, None]
    d_norm = descriptors.norm(dim=-1).clamp_min(eps)[..., None, None]
    return num / (d_norm * q_norm)


def match_landmarks(feat_ref: torch.Tensor, feat_query: torch.Tensor, kp_ref: torch.Tensor,
                    image_size, upsample: bool = False) -> torch.Tensor:
    """Predict the query-image position of each reference landmark (thesis Sec. 3.4.2).

    The descriptor of a landmark is the reference feature map bilinearly sampled at it; the
    prediction is the query cell of highest cosine similarity, returned as the centre of
    that cell in query-image pixels, ``(B, K, 2)`` ``(x, y)``.  Both images are
    ``image_size`` pixels; the two feature maps may have any (different) strides.
    Score it with :func:`iod_error` against the query's ground truth. ``upsample``: match
    against the query map bilinearly resized to the image (:func:`upsampled_similarity_maps`),
    so the prediction is a pixel, not a feature cell.
    """
    kp_ref = torch.as_tensor(kp_ref)
    kp_ref = kp_ref[None] if kp_ref.dim() == 2 else kp_ref
    desc = sample_descriptors(feat_ref, kp_ref, image_size)
    sim = (upsampled_similarity_maps(desc, feat_query, image_size) if upsample
           else cosine_similarity_maps(desc, feat_query))
    B, K, h, w = sim.shape
    idx = sim.flatten(2).argmax(-1)                                             # (B, K)
    row, col = idx // w, idx % w
    H, W = _image_hw(image_size)
    x = (col.double() + 0.5) * (W / w) - 0.5
    y = (row.double() + 0.5) * (H / h) - 0.5
    return torch.stack([x, y], -1).to(kp_ref.dtype if kp_ref.is_floating_point() else torch.float32)


def correspondence_heatmap(feat_ref: torch.Tensor, feat_query: torch.Tensor, point: torch.Tensor,
                           temperature: float, image_size) -> torch.Tensor:
    """Soft correspondence of a reference point over the query map (thesis Fig. 3.3):
    ``softmax`` over all query positions of ``cos_sim / temperature``.

    ``point``: ``(B, 2)`` or ``(B, K, 2)`` image pixels in the reference image.  Returns
    ``(B, h, w)`` or ``(B, K, h, w)``; each map sums to one.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    point = torch.as_tensor(point)
    single = point.dim() == 2
    pts = point[:, None] if single else point
    sim = cosine_similarity_maps(sample_descriptors(feat_ref, pts, image_size), feat_query)
    heat = torch.softmax(sim.flatten(2) / temperature, dim=-1).view_as(sim)
    return heat[:, 0] if single else heat


@torch.no_grad()
def matching_benchmark(features, images: torch.Tensor, landmarks: torch.Tensor, pairs: torch.Tensor,
                       visible: torch.Tensor | None = None, batch: int = 32, eyes=None,
                       thresholds: Sequence[float] = (0.05, 0.10), upsample: bool = True,
                       dtype: torch.dtype = torch.float64) -> dict:
    """Landmark matching over image pairs (thesis §3.4.2, DVE protocol).

    ``features``: a callable mapping float images ``(B, 3, H, W)`` in [0, 1] to dense maps
    ``(B, C, h, w)`` (e.g. ``lambda x: net.hypercolumn(x)``). ``images`` ``(N, 3, H, W)``
    (uint8 or float), ``landmarks`` ``(N, K, 2)``, ``pairs`` ``(P, 2)`` of (reference, query)
    indices. Each reference landmark is matched into its query image; the error is in % of
    the query's inter-ocular distance, over points visible in both images. With ``upsample``
    the query map is bilinearly resized to the image first, so the argmax is not quantised
    to the feature stride (a stride-4 cell is ~40% of the inter-ocular distance at 48 px);
    that resize is computed in closed form (:func:`upsampled_similarity_maps`), never built.

    ``dtype``: the images are passed to ``features`` in it, and the matching runs in it. The
    default, float64 (so the network must be too: ``net.double()``), makes the result the
    same on every CPU: in float32 the last-bit differences between kernels (AVX2 vs AVX-512,
    oneDNN vs ATen) flip the argmax of near-tied cells and move the printed error.
    Returns
    ``{"iod": mean error, "pck": {t: fraction}, "pred": (P, K, 2), "per_pair": (P,)}``.
    """
    to_float = lambda x: x.to(dtype).div(255) if x.dtype == torch.uint8 else x.to(dtype)
    size = tuple(images.shape[-2:])
    used, slot = pairs.flatten().unique(return_inverse=True)     # each image's map is made once
    slot = slot.view(pairs.shape)
    maps = torch.cat([features(to_float(images[used[s:s + batch]])).to(dtype).cpu()
                      for s in range(0, len(used), batch)])
    preds = []
    for s in range(0, len(pairs), batch):
        a, b = slot[s:s + batch, 0], slot[s:s + batch, 1]
        preds.append(match_landmarks(maps[a], maps[b], landmarks[pairs[s:s + batch, 0]].to(dtype), size,
                                     upsample=upsample))
    pred = torch.cat(preds)
    gt = landmarks[pairs[:, 1]].to(dtype)
    vis = None if visible is None else visible[pairs[:, 0]] & visible[pairs[:, 1]]
    err, per_pair = iod_error(pred, gt, eyes=eyes, visible=vis, per_image=True)
    return dict(iod=err, pck=pck(pred, gt, thresholds, eyes=eyes, visible=vis), pred=pred,
                per_pair=per_pair)


def copy_baseline(landmarks: torch.Tensor, pairs: torch.Tensor, visible: torch.Tensor | None = None,
                  eyes=None, thresholds: Sequence[float] = (0.05, 0.10)) -> dict:
    """Matching without features: predict each query landmark at the reference landmark's
    pixel position. Aligned faces make this far better than chance; a feature that matches
    worse than it has learned nothing about where parts are. Same return keys as
    :func:`matching_benchmark` (without ``per_pair``)."""
    pred = landmarks[pairs[:, 0]].float()
    gt = landmarks[pairs[:, 1]].float()
    vis = None if visible is None else visible[pairs[:, 0]] & visible[pairs[:, 1]]
    return dict(iod=iod_error(pred, gt, eyes=eyes, visible=vis),
                pck=pck(pred, gt, thresholds, eyes=eyes, visible=vis), pred=pred)


def pixel_patches(images: torch.Tensor, k: int = 7) -> torch.Tensor:
    """A descriptor with nothing learned: the ``k x k`` colour patch around every pixel
    ``(B, 3 k^2, H, W)`` (zero padding), minus the patch's mean, so brightness changes do
    not count. The yardstick a learned dense feature has to beat at landmark matching."""
    B, C, H, W = images.shape
    u = F.unfold(images.float(), k, padding=k // 2).view(B, C * k * k, H, W)
    return u - u.mean(1, keepdim=True)
