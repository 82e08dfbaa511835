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

import copy
import inspect
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["EYES", "inter_ocular", "iod_error", "pck", "sample_descriptors", "standard_error",
           "cosine_similarity_maps", "match_landmarks", "correspondence_heatmap",
           "matching_benchmark", "copy_baseline", "pixel_patches", "dve_order", "dve_matching",
           "dve_copy_baseline", "matching_row", "DualPrecision", "TIE_MARGIN"]

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
                    image_size, upsample: bool = False, margin: bool = False):
    """Predict the query-image position of each reference landmark (thesis Sec. 3.4.2).

    The descriptor of a landmark is the reference feature map bilinearly sampled at it; the
    prediction is the query cell of highest cosine similarity, returned as the centre of
    that cell in query-image pixels, ``(B, K, 2)`` ``(x, y)``.  Both images are
    ``image_size`` pixels; the two feature maps may have any (different) strides.
    Score it with :func:`iod_error` against the query's ground truth. ``upsample``: match
    against the query map bilinearly resized to the image (:func:`upsampled_similarity_maps`),
    so the prediction is a pixel, not a feature cell. ``margin``: also return how far the best
    similarity is above the second best, ``(B, K)`` (see :func:`matching_benchmark`'s ``fast``).
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
    pred = torch.stack([x, y], -1).to(kp_ref.dtype if kp_ref.is_floating_point() else torch.float32)
    return (pred, _top_two_gap(sim.flatten(2))) if margin else pred


def _top_two_gap(sim: torch.Tensor) -> torch.Tensor:
    """The best minus the second-best value along the last dimension."""
    top = sim.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


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


#: Matching with ``fast=True`` describes every image in float32 and again in float64 only the
#: images of a pair where some keypoint's best similarity leads the second best by less than this.
#: Float32 descriptors moved cosine similarities by at most 2.5e-7 from float64 ones (measured on
#: LEAD-64, BYOL's hypercolumn and 7x7 patches at small scale, default and AVX2 kernels), so a lead
#: of 1e-5 cannot flip unless an error is 20 times that: the matches are float64's, at a quarter
#: (a 64-d row of the book, 25 -> 6 s on one core) to a half (a hypercolumn row, 61 -> 25 s) of the cost.
TIE_MARGIN = 1e-5


class DualPrecision:
    """A descriptor function that computes in the dtype of its input, as ``fast`` matching needs:
    a module (its forward) or a module's method (``net.hypercolumn``), run by a float32 copy of
    the module on float32 images and by a float64 copy (the module itself, if float64 already)
    on float64 images. ``device``: where the module is; images are moved there and the maps
    back to the images' device (the matching functions hold images and maps on the CPU)."""

    def __init__(self, fn, device: str | torch.device | None = None):
        module, self.method = (fn.__self__, fn.__name__) if inspect.ismethod(fn) else (fn, "forward")
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"DualPrecision needs a module or a module's method, not {fn!r}")
        is64 = next(module.parameters()).dtype == torch.float64
        self.copies = {torch.float32: copy.deepcopy(module).float(),
                       torch.float64: module if is64 else copy.deepcopy(module).double()}
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in self.copies:
            raise TypeError(f"DualPrecision runs float32 or float64 images, not {x.dtype}")
        if self.device is None:
            return getattr(self.copies[x.dtype], self.method)(x)
        return getattr(self.copies[x.dtype], self.method)(x.to(self.device)).to(x.device)


def _as_float(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype).div(255) if x.dtype == torch.uint8 else x.to(dtype)


def _match_pairs(features, images, pairs, kp, match, batch: int, dtype: torch.dtype, fast: bool):
    """Describe ``images`` (uint8 or float) with ``features`` and match every pair ``(a, b)`` of
    ``pairs`` ``(P, 2)`` (indices into ``images``): ``match(maps[a], maps[b], kp)`` -> ``(pred,
    margin)``, ``batch`` pairs at a time (the maps are held once). Everything runs in ``dtype``; with
    ``fast`` the images are first described in float32 and those of the pairs with a margin below
    :data:`TIE_MARGIN` again in ``dtype``, and those pairs matched again. Returns ``(pred (P, K, 2),
    how many images were described twice)``."""
    def describe(idx, dt, out=None):
        for s in range(0, len(idx), batch):
            m = features(_as_float(images[idx[s:s + batch]], dt))
            if out is None:
                out = torch.empty((len(idx), *m.shape[1:]), dtype=dtype)
            out[s:s + batch] = m
        return out

    def match_all(which):
        p, k = pairs[which], kp[which]
        got = [match(maps[p[s:s + batch, 0]], maps[p[s:s + batch, 1]], k[s:s + batch]) for s in range(0, len(p), batch)]
        return torch.cat([g[0] for g in got]), torch.cat([g[1] for g in got])

    maps = describe(torch.arange(len(images)), torch.float32 if fast else dtype)
    pred, gap = match_all(torch.arange(len(pairs)))
    if not fast:
        return pred, 0
    near = (gap < TIE_MARGIN).any(-1)
    redo = pairs[near].unique()
    if len(redo):
        maps[redo] = describe(redo, dtype)
        pred[near] = match_all(near)[0]
    return pred, len(redo)


@torch.no_grad()
def matching_benchmark(features, images: torch.Tensor, landmarks: torch.Tensor, pairs: torch.Tensor,
                       visible: torch.Tensor | None = None, batch: int = 32, eyes=None,
                       thresholds: Sequence[float] = (0.05, 0.10), upsample: bool = True,
                       dtype: torch.dtype = torch.float64, fast: bool = False) -> dict:
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
    oneDNN vs ATen) flip the argmax of near-tied cells and move the printed error. ``fast``: the
    same matches at a quarter to a half of the cost, for a ``features`` that computes in its input's
    dtype (:class:`DualPrecision`, :func:`pixel_patches`): float32 first, ``dtype`` again for the
    images of near ties (:data:`TIE_MARGIN`).
    Returns ``{"iod": mean error, "pck": {t: fraction}, "pred": (P, K, 2), "per_pair": (P,),
    "described_twice": images recomputed in dtype}``.
    """
    size = tuple(images.shape[-2:])
    used, slot = pairs.flatten().unique(return_inverse=True)     # each image's map is made once
    match = lambda ref, query, kp: match_landmarks(ref, query, kp, size, upsample=upsample, margin=True)
    pred, twice = _match_pairs(features, images[used], slot.view(pairs.shape), landmarks[pairs[:, 0]].to(dtype),
                               match, batch, dtype, fast)
    gt = landmarks[pairs[:, 1]].to(dtype)
    vis = None if visible is None else visible[pairs[:, 0]] & visible[pairs[:, 1]]
    err, per_pair = iod_error(pred, gt, eyes=eyes, visible=vis, per_image=True)
    return dict(iod=err, pck=pck(pred, gt, thresholds, eyes=eyes, visible=vis), pred=pred,
                per_pair=per_pair, described_twice=twice)


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
    ``(B, 3 k^2, H, W)`` (zero padding), minus the patch's mean and scaled to unit length,
    so that brightness and contrast changes do not count and a dot product (DVE's matching)
    is normalised cross-correlation. The yardstick a learned dense feature has to beat at
    landmark matching. Float inputs keep their dtype."""
    B, C, H, W = images.shape
    x = images if images.is_floating_point() else images.float()
    u = F.unfold(x, k, padding=k // 2).view(B, C * k * k, H, W)
    return F.normalize(u - u.mean(1, keepdim=True), dim=1)


# -- DVE's matching protocol (jamt9000/DVE, test_matching.py and utils/tps.py) -----------------
#: DVE's evaluation pair warper (test_matching.py, without --dense_match): a thin-plate spline on
#: a 10 x 10 control grid plus a random similarity; standard deviations of the control-point
#: offsets (all points, and a random half of them), translation, scale and rotation (degrees)
DVE_WARP = dict(warpsd_all=0.001 * 0.5, warpsd_subset=0.01 * 0.5, transsd=0.1 * 0.5,
                scalesd=0.1 * 0.5, rotsd=5 * 0.5)
DVE_CANONICAL_PX = 70     # DVE reports pixel errors as if the (cropped) image were 70 px wide


def _tps_basis(H: int, W: int, nc: int = 10, dtype=torch.float64) -> torch.Tensor:
    """DVE's TPS design matrix ``[U(pixel, control), 1, x, y]`` ``(H W, nc^2 + 3)`` on the
    ``align_corners=True`` grid of [-1, 1]."""
    lin = lambda n: torch.linspace(-1, 1, n, dtype=dtype)
    yy, xx = torch.meshgrid(lin(H), lin(W), indexing="ij")
    pix = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    cy, cx = torch.meshgrid(lin(nc), lin(nc), indexing="ij")
    ctrl = torch.stack([cx.reshape(-1), cy.reshape(-1)], 1)
    d2 = ((pix[:, None] - ctrl[None]) ** 2).sum(-1)
    return torch.cat([d2 * torch.log(d2 + 1e-5), torch.ones(len(pix), 1, dtype=dtype), pix], 1)


def _tps_weights(n: int, gen, warpsd_all, warpsd_subset, transsd, scalesd, rotsd, nc: int = 10,
                 dtype=torch.float64) -> torch.Tensor:
    """``n`` random warps as DVE's ``random_tps_weights`` draws one: ``(n, nc^2 + 3, 2)``."""
    w = torch.randn(n, nc * nc, 2, generator=gen, dtype=dtype) * warpsd_all
    subset = torch.rand(n, nc * nc, 2, generator=gen, dtype=dtype) > 0.5
    w = torch.where(subset, torch.randn(n, nc * nc, 2, generator=gen, dtype=dtype) * warpsd_subset, w)
    rot = torch.randn(n, generator=gen, dtype=dtype) * rotsd * math.pi / 180
    sc = 1 + torch.randn(n, generator=gen, dtype=dtype) * scalesd
    tx, ty = (torch.randn(n, generator=gen, dtype=dtype) * transsd for _ in range(2))
    aff = torch.stack([torch.stack([tx, ty], -1),
                       torch.stack([sc * rot.cos(), -sc * rot.sin()], -1),
                       torch.stack([sc * rot.sin(), sc * rot.cos()], -1)], 1)          # (n, 3, 2)
    return torch.cat([w, aff], 1)


def _warp(images: torch.Tensor, kp: torch.Tensor, weights: torch.Tensor, basis):
    """Resample ``images`` at DVE's TPS grid and move the keypoints as DVE does: to the output
    pixel whose sampling position is nearest to them (so they land on whole pixels)."""
    B, _, H, W = images.shape
    grid = (basis @ weights).view(B, H, W, 2)                         # normalised source positions
    out = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    scale = torch.tensor([W - 1.0, H - 1.0], dtype=grid.dtype)
    src_px = (grid.view(B, -1, 2) + 1) / 2 * scale                    # where each output pixel samples
    yy, xx = torch.meshgrid(torch.arange(H, dtype=grid.dtype), torch.arange(W, dtype=grid.dtype), indexing="ij")
    out_px = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)          # whole pixels, exactly
    nearest = torch.cdist(kp.to(grid.dtype), src_px).argmin(-1)       # (B, K)
    return out, out_px[nearest]


def dve_warp_pairs(images: torch.Tensor, landmarks: torch.Tensor, seed: int = 0, warp: dict | None = None) -> dict:
    """DVE's evaluation views of every image: ``im1`` (the image under one random warp),
    ``im2`` (``im1`` under a second one), with their keypoints ``kp1``, ``kp2`` (pixels).
    ``images`` float ``(N, 3, H, W)``; seeded, so every method sees the same warps."""
    warp = {**DVE_WARP, **(warp or {})}
    N, _, H, W = images.shape
    basis = _tps_basis(H, W)
    gen = torch.Generator().manual_seed(seed)
    w1, w2 = _tps_weights(N, gen, **warp), _tps_weights(N, gen, **warp)
    im1, kp1 = _warp(images, landmarks, w1, basis)
    im2, kp2 = _warp(im1, kp1, w2, basis)
    return dict(im1=im1, im2=im2, kp1=kp1, kp2=kp2)


def nearest_cell_match(feat_src: torch.Tensor, feat_tgt: torch.Tensor, kp_src: torch.Tensor, stride: float,
                       normalize: bool = False, margin: bool = False):
    """DVE's ``find_descriptor``: the source descriptor at the feature cell nearest to each
    keypoint (``round(x / stride)``, clamped), matched by the largest *dot product* over the
    target map; the prediction is that cell's index times the stride. ``normalize``: L2-normalise
    every cell's descriptor first (the dot product becomes the cosine), as ContrastLandmarks'
    matching validation does. ``(B, C, h, w)`` maps, ``(B, K, 2)`` keypoints -> ``(B, K, 2)`` pixels
    (and, with ``margin``, the best dot product's lead over the second best, ``(B, K)``)."""
    if normalize:
        feat_src, feat_tgt = F.normalize(feat_src, dim=1), F.normalize(feat_tgt, dim=1)
    B, C, h, w = feat_src.shape
    ix = (kp_src[..., 0] / stride).round().long().clamp(0, w - 1)
    iy = (kp_src[..., 1] / stride).round().long().clamp(0, h - 1)
    desc = feat_src.flatten(2).gather(2, (iy * w + ix)[:, None].expand(-1, C, -1))      # (B, C, K)
    sim = torch.einsum("bck,bcn->bkn", desc, feat_tgt.flatten(2))                       # (B, K, h w)
    best = sim.argmax(-1)                                                               # (B, K)
    pred = torch.stack([best % w, best // w], -1).to(kp_src.dtype) * stride
    return (pred, _top_two_gap(sim)) if margin else pred


def _pairs_of_one_identity(ids: torch.Tensor) -> bool:
    """Whether some pair (2i, 2i + 1) of ``ids`` shows one identity twice."""
    n = len(ids) // 2 * 2
    return bool((ids[0:n:2] == ids[1:n:2]).any())


def dve_order(identity: torch.Tensor, pairs: int | None = None) -> torch.Tensor:
    """The test order DVE's protocol assumes: a permutation of ``identity`` ((N,) ids) after
    which the consecutive images of every pair (2i, 2i + 1) show two different people, as in
    MAFL's test list. SynthFaces test splits hold several images per identity, stored
    together; this takes every identity's first image in turn, then every identity's second,
    and so on (each identity in the order it first appears). ``pairs``: only the first
    ``2 * pairs`` indices (fewer if there are fewer images). Raises ``ValueError`` if no such
    pairing exists this way (one identity holding most of the images)."""
    ids = torch.as_tensor(identity).reshape(-1)
    uniq, inverse = torch.unique(ids, return_inverse=True)
    by_id = torch.argsort(inverse, stable=True)             # grouped by identity, own order kept
    counts = torch.bincount(inverse)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(inverse)
    rank[by_id] = torch.arange(len(ids)) - starts[inverse[by_id]]   # k-th image of its identity
    first = torch.full((len(uniq),), len(ids)).scatter_reduce(0, inverse, torch.arange(len(ids)), "amin")
    appearance = torch.argsort(torch.argsort(first))        # identities by first appearance
    order = torch.argsort(rank * len(uniq) + appearance[inverse], stable=True)
    if _pairs_of_one_identity(ids[order]):
        raise ValueError("cannot order these images so that every consecutive pair shows two identities")
    return order if pairs is None else order[:min(len(order) // 2, pairs) * 2]


def standard_error(x: torch.Tensor) -> float:
    """The standard error of the mean of the values ``x``: their sample sd (ddof 1) / sqrt(n),
    NaN values left out (an image with no visible landmark has no error); NaN for fewer than
    two values."""
    x = torch.as_tensor(x).double().flatten()
    x = x[~x.isnan()]
    return float(x.std() / len(x) ** 0.5) if len(x) > 1 else float("nan")


def _dve_errors(kind: str, err: torch.Tensor, gt: torch.Tensor, width: float, eyes) -> dict:
    """DVE's summary of point errors ``err`` (pairs, K) in pixels of ``width``-px images:
    ``<kind>_px70`` (mean in px at 70), ``<kind>_px70_se`` (its standard error over pairs)
    and ``<kind>_iod`` (mean in % of the target ``gt``'s inter-ocular distance)."""
    to70 = DVE_CANONICAL_PX / width
    return {f"{kind}_px70": float(err.mean() * to70), f"{kind}_px70_se": standard_error(err.mean(1)) * to70,
            f"{kind}_iod": float((100 * err / inter_ocular(gt, eyes)[:, None]).mean())}


def dve_views(images: torch.Tensor, landmarks: torch.Tensor, seed: int = 0, warp: dict | None = None,
              dtype: torch.dtype = torch.float64) -> dict:
    """The warped views :func:`dve_matching` matches: :func:`dve_warp_pairs` of the first even
    number of ``images`` (uint8 scaled to [0, 1]) in ``dtype``, and of their ``landmarks``."""
    imgs = images.to(dtype).div(255) if images.dtype == torch.uint8 else images.to(dtype)
    n = len(imgs) // 2 * 2
    return dve_warp_pairs(imgs[:n], landmarks[:n].to(dtype), seed=seed, warp=warp)


def dve_matching(features, images: torch.Tensor, landmarks: torch.Tensor, seed: int = 0, batch: int = 32,
                 eyes=None, dtype: torch.dtype = torch.float64, warp: dict | None = None,
                 identity: torch.Tensor | None = None, views: dict | None = None, fast: bool = False) -> dict:
    """Landmark matching as DVE's released ``test_matching.py`` measures it (thesis Table 3.1).

    Consecutive test images form the pairs (2i, 2i + 1). Every image gets two random warps
    (:func:`dve_warp_pairs`). *Same identity*: the first image's ``im1`` against its own
    ``im2`` (a warped copy of itself); *different identity*: against the next image's
    ``im2``. Each of the first image's keypoints is matched by :func:`nearest_cell_match`
    on L2-normalised descriptors: DVE's ``test_matching.py`` takes the raw dot product (its
    normalising branch is ``if False``), but ContrastLandmarks' ``train_feature_projector.py``,
    the code LEAD builds on, normalises every descriptor before matching (layer by layer for a
    hypercolumn, which :func:`ssl_lab.nets.backbones.hypercolumn` already does; the whole vector
    for compact features), noting that performance drops otherwise. A loss built on cosine
    similarities (LEAD's, DVE's, CL's) leaves the norms free, and the raw dot product then
    favours the cells of largest norm;
    the error is the distance to the target's (warped) keypoint over all points, reported
    in pixels of a 70-px image (DVE's unit: the thesis's Table 3.1 prints it under an
    "IOD %" heading) and in % of the target's inter-ocular distance. ``features``: float
    images in [0, 1] -> dense maps, run in ``dtype`` (see :func:`matching_benchmark`).
    ``identity``: the images' identity ids; if given, a pair (2i, 2i + 1) of one identity is a
    ``ValueError`` (put the images in :func:`dve_order` first).
    Returns ``{"same_px70", "different_px70", "same_iod", "different_iod", "pairs"}`` and the
    standard errors of the two px70 means over pairs, ``"same_px70_se"`` and
    ``"different_px70_se"`` (the sample sd of the per-pair mean errors / sqrt(pairs)): the
    metric's sampling noise for one network. ``views``: :func:`dve_views` of these images,
    landmarks, ``seed``, ``warp`` and ``dtype``, computed once for many networks (the warps are
    a tenth of a 64-d network's evaluation); ``images`` is then not read. ``fast``: as in
    :func:`matching_benchmark` (``"described_twice"`` counts the images it described again)."""
    n = len(landmarks) // 2 * 2
    if identity is not None and _pairs_of_one_identity(identity[:n]):
        raise ValueError("DVE's different-identity pairs are consecutive images, and some here show "
                         "one identity: order the images with dve_order(identity) first")
    v = views if views is not None else dve_views(images, landmarks, seed=seed, warp=warp, dtype=dtype)
    if len(v["kp1"]) != n:
        raise ValueError(f"views of {len(v['kp1'])} images given for {n} landmark rows")
    width, P = v["im1"].shape[-1], n // 2
    i = torch.arange(P)        # images: the P sources im1[0::2], then the 2 P targets im2
    pairs = torch.cat([torch.stack([i, P + 2 * i], 1), torch.stack([i, P + 2 * i + 1], 1)])   # same, different
    match = lambda src, tgt, kp: nearest_cell_match(src, tgt, kp, width / src.shape[-1], normalize=True, margin=True)
    pred, twice = _match_pairs(features, torch.cat([v["im1"][0::2], v["im2"]]), pairs, v["kp1"][0::2].repeat(2, 1, 1),
                               match, batch, dtype, fast)
    out = {"pairs": P, "described_twice": twice}
    for kind, t, half in (("same", slice(0, None, 2), slice(0, P)), ("different", slice(1, None, 2), slice(P, None))):
        gt = v["kp2"][t]
        err = (pred[half] - gt).norm(dim=-1)
        out.update(_dve_errors(kind, err, gt, width, eyes))
    return out


def dve_copy_baseline(landmarks: torch.Tensor, size, seed: int = 0, eyes=None, warp: dict | None = None) -> dict:
    """:func:`dve_matching` without features: each source keypoint is predicted at its own
    position in the target (the same warps, the same pairs, the same units)."""
    H, W = _image_hw(size)
    n = len(landmarks) // 2 * 2
    v = dve_warp_pairs(torch.zeros(n, 1, int(H), int(W), dtype=torch.float64), landmarks[:n].double(),
                       seed=seed, warp=warp)
    out = {"pairs": n // 2}
    for kind, t in (("same", slice(0, None, 2)), ("different", slice(1, None, 2))):
        gt = v["kp2"][t]
        err = (v["kp1"][0::2] - gt).norm(dim=-1)
        out.update(_dve_errors(kind, err, gt, W, eyes))
    return out


def matching_views(images: torch.Tensor, landmarks: torch.Tensor, pairs: int = 500, seed: int = 0, *,
                   identity: torch.Tensor) -> dict:
    """The warped views :func:`matching_row` matches with DVE's protocol (its images in
    :func:`dve_order`, :func:`dve_views` in float64): pass them as its ``views`` to warp once
    for every network of a table."""
    dve = dve_order(identity, pairs)
    return dve_views(images[dve], landmarks[dve], seed=seed)


def matching_row(features, images: torch.Tensor, landmarks: torch.Tensor, visible: torch.Tensor,
                 new_pose: torch.Tensor, pairs: int = 500, seed: int = 0, digits: int = 2, *,
                 identity: torch.Tensor, se: bool = False, views: dict | None = None, fast: bool = False) -> dict:
    """One row of the book's matching tables. ``Same`` / ``Different``: DVE's protocol
    (:func:`dve_matching`) on the first ``2 pairs`` test images in :func:`dve_order` (so that
    the consecutive images of a pair show two identities, as in MAFL), in DVE's unit (pixels
    at 70 px, the unit of the thesis's Table 3.1); the same in % IOD; and *same identity, new
    pose* (% IOD, :func:`matching_benchmark` on ``new_pose`` pairs, indices into the given
    order: two renderings of one identity, which MAFL cannot give). ``identity``: the
    images' identity ids. ``features=None``: copying positions instead. ``se``: also the
    standard errors over pairs of ``Same`` and ``Different`` (:func:`dve_matching`). ``views``:
    :func:`matching_views` of the same arguments, to warp the images once for many networks. ``fast``:
    float32 with float64 near ties (:func:`matching_benchmark`), the same numbers in a quarter to a half of the time."""
    dve = dve_order(identity, pairs)
    if features is None:
        d = dve_copy_baseline(landmarks[dve], tuple(images.shape[-2:]), seed=seed)
        pose = copy_baseline(landmarks, new_pose, visible=visible)["iod"]
    else:
        d = dve_matching(features, images[dve], landmarks[dve], seed=seed, identity=identity[dve], views=views,
                         fast=fast)
        pose = matching_benchmark(features, images, landmarks, new_pose, visible=visible, fast=fast)["iod"]
    r = lambda v: round(float(v), digits)
    row = {"Same": r(d["same_px70"]), "Different": r(d["different_px70"]),
           "Same / % IOD": r(d["same_iod"]), "Different / % IOD": r(d["different_iod"]),
           "same identity, new pose / % IOD": r(pose)}
    if se:
        row.update({"Same s.e.": r(d["same_px70_se"]), "Different s.e.": r(d["different_px70_se"])})
    return row
