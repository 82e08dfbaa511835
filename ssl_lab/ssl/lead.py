"""LEAD stage 2 (thesis §3.2.3): dense, compact features by matching similarity distributions.

Stage 1 (:mod:`ssl_lab.ssl.byol`) gives a backbone whose *hypercolumn* (3840-d for a
ResNet-50) already puts corresponding face points close together, but is too wide to use.
Stage 2 trains a dense network Phi^D whose compact maps keep the hypercolumn's *relations*:

* :class:`DenseNet` (Phi^D): the stage-1 ResNet as encoder, a feature-pyramid decoder over its
  stride 4, 8, 16, 32 stages (lateral 1x1 convolutions, top-down sums, then the
  semantic-FPN upsampling branches of Kirillov et al.: conv3x3-BN-ReLU-x2 until stride 4,
  summed), and a 1x1 convolution to ``C`` = 64, 128 or 256 channels at 1/4 resolution.
* :class:`ProjectionHead` (g^D): two 1x1 convolutions ("linear layers") with BatchNorm and
  ReLU between them; used only by the loss and dropped after training.
* :func:`lead_loss` (Eq. 3.2-3.3): for two images i, j and every position u of i,
  ``p[u] = softmax_v(cos(h_i[u], h_j[v]) / tau)`` from the frozen stage-1 hypercolumns and
  ``q[u]`` likewise from the projected compact maps; the loss is the cross-entropy
  ``-sum_u sum_v p[u, v] log q[u, v]``. tau = 0.05.

Baselines trained by :func:`train_stage2` on the same data and encoder (for the thesis's
Table 3.1): ``"dve"`` (the same DenseNet trained with descriptor vector exchange on
thin-plate-spline warps, :func:`ssl_lab.ssl.equivariance.dve_loss`) and ``"cl"``
(ContrastLandmarks: a 1x1-convolution projector on the frozen MoCo hypercolumn, trained with
the dense equivariance loss). ``BYOL + NMF`` (:class:`NMFFeatures`) factorises the BYOL
hypercolumn with scikit-learn's NMF and needs no gradient training.

Every dense feature extractor here maps float images ``(B, 3, H, W)`` in [0, 1] to maps
``(B, C, H/4, W/4)``, the input that :func:`ssl_lab.metrics.landmarks.matching_benchmark`
takes.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from .. import distributed
from ..progress import bar

from ..nets.backbones import Backbone
from .augment import color_jitter, random_resized_crop, to_float
from .train import bf16, nhwc, optimizer_step, precision

TAU = 0.05


# -- networks ---------------------------------------------------------------------------------
def _conv_bn_relu(cin, cout, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FPNDecoder(nn.Module):
    """Feature pyramid over maps of strides 4, 8, 16, 32 (or the first of them) -> one
    ``out_dim`` map at stride 4."""

    def __init__(self, in_channels, width: int = 128, out_dim: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        # level k (stride 4 * 2^k): max(k, 1) conv blocks, an x2 upsampling after each of the first k
        self.branches = nn.ModuleList(
            nn.ModuleList(_conv_bn_relu(width, width) for _ in range(max(k, 1)))
            for k in range(len(in_channels)))
        self.out = nn.Conv2d(width, out_dim, 1)

    def forward(self, feats):
        lat = [l(f) for l, f in zip(self.lateral, feats)]
        for k in reversed(range(len(lat) - 1)):          # top-down: add the upsampled coarser level
            lat[k] = lat[k] + F.interpolate(lat[k + 1], size=lat[k].shape[-2:], mode="nearest")
        size = lat[0].shape[-2:]
        total = 0
        for k, (p, blocks) in enumerate(zip(lat, self.branches)):
            for b, block in enumerate(blocks):
                p = block(p)
                if b < k:
                    p = F.interpolate(p, scale_factor=2, mode="bilinear", align_corners=False)
            total = total + (p if p.shape[-2:] == size else
                             F.interpolate(p, size=size, mode="bilinear", align_corners=False))
        return self.out(total)


class DenseNet(nn.Module):
    """Phi^D: a ResNet encoder (its stages 1-4, or 1 to ``stages``) and an FPN decoder over
    them; ``(B, feat_dim, H/4, W/4)``. ``encoder_state``: the stage-1 network's state dict
    (the weights of stages beyond ``stages`` are not used)."""

    def __init__(self, backbone: str = "resnet50", feat_dim: int = 64, width: int = 128,
                 encoder_state: dict | None = None, stages: int = 4):
        super().__init__()
        self.encoder = Backbone(backbone, depth=stages + 1)
        if encoder_state is not None:
            own = self.encoder.state_dict()
            self.encoder.load_state_dict({k: v for k, v in encoder_state.items() if k in own})
        self.decoder = FPNDecoder(self.encoder.channels[1:], width, feat_dim)
        self.feat_dim = feat_dim

    def forward(self, x):
        return self.decoder(self.encoder(x)[1:])


def encoder_drift(net: DenseNet, teacher: Backbone) -> dict[str, dict[str, float]]:
    """How far stage 2 moved Phi^D's encoder from the stage-1 weights it was initialised with,
    per encoder stage present in both (``"stem"``, ``"stage 1"``...): over that stage's
    convolution weights (4-d tensors), the ratio of their norms (trained / initial) and their
    cosine (1: unchanged direction). BatchNorm makes a convolution's output blind to its
    weights' scale, so the cosine is what says whether the initialisation survived."""
    own, init = net.encoder.state_dict(), teacher.state_dict()
    prefixes = {"stem": "body.conv1.", **{f"stage {i}": f"body.layer{i}." for i in range(1, 5)}}
    out = {}
    for stage, pre in prefixes.items():
        ks = [k for k, v in own.items() if k.startswith(pre) and v.dim() == 4 and k in init]
        if not ks:
            continue
        a = torch.cat([own[k].double().flatten() for k in ks])
        b = torch.cat([init[k].double().flatten() for k in ks])
        out[stage] = {"norm ratio": float(a.norm() / b.norm()),
                      "cosine": float(a @ b / (a.norm() * b.norm()))}
    return out


class ProjectionHead(nn.Module):
    """g^D: 1x1 conv -> BatchNorm -> ReLU -> 1x1 conv, applied at every position."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(in_dim, out_dim)
        self.net = nn.Sequential(nn.Conv2d(in_dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                 nn.ReLU(inplace=True), nn.Conv2d(hidden, out_dim, 1))

    def forward(self, x):
        return self.net(x)


class ProjectedHypercolumn(nn.Module):
    """ContrastLandmarks' compact features: a 1x1-conv projector on a frozen hypercolumn."""

    def __init__(self, backbone: Backbone, out_dim: int):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.proj = nn.Conv2d(backbone.hypercolumn_channels, out_dim, 1)

    def forward(self, x):
        with torch.no_grad():
            h = self.backbone.hypercolumn(x)
        return self.proj(h)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()                  # the frozen backbone keeps its BatchNorm statistics
        return self


# -- the loss ---------------------------------------------------------------------------------
def _cosine_logits(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """``(B, N_a, N_b)``: cosine similarity of every position of ``a`` with every position of
    ``b`` (maps ``(B, C, h, w)``), divided by ``tau``."""
    a = F.normalize(a.flatten(2), dim=1)
    b = F.normalize(b.flatten(2), dim=1)
    return torch.einsum("bcu,bcv->buv", a, b) / tau


def similarity_distribution(a: torch.Tensor, b: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """Eq. 3.2: ``(B, N_a, N_b)``, row ``u`` = softmax over positions of ``b`` of the cosine
    similarity with position ``u`` of ``a``, over ``tau``. Rows sum to one."""
    return _cosine_logits(a, b, tau).softmax(-1)


def lead_loss(f_i: torch.Tensor, f_j: torch.Tensor, h_i: torch.Tensor, h_j: torch.Tensor,
              tau: float = TAU, reduction: str = "mean") -> torch.Tensor:
    """Eq. 3.3: cross-entropy between the hypercolumn distributions ``p`` (targets, no
    gradient) and the compact-feature distributions ``q``, for image pairs ``(i, j)``.

    ``f_*``: compact (projected) maps ``(B, C, h, w)``; ``h_*``: stage-1 hypercolumns
    ``(B, C~, h, w)`` on the same grid. ``reduction="sum"`` is Eq. 3.3 exactly (summed over
    the positions of ``i``), averaged over the ``B`` pairs; ``"mean"`` (the default, used for
    training) also divides by the number of positions, so the loss scale, and hence the
    learning rate, does not depend on the resolution.
    """
    if f_i.shape[-2:] != h_i.shape[-2:] or f_j.shape[-2:] != h_j.shape[-2:]:
        raise ValueError(f"compact maps {tuple(f_i.shape)} and hypercolumns {tuple(h_i.shape)} "
                         "must share the spatial grid")
    with torch.no_grad():
        p = similarity_distribution(h_i.float(), h_j.float(), tau)
    log_q = _cosine_logits(f_i.float(), f_j.float(), tau).log_softmax(-1)
    ce = -(p * log_q).sum(-1)                                            # (B, N_i)
    if reduction == "sum":
        return ce.sum(1).mean()
    if reduction == "mean":
        return ce.mean()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


# -- NMF baseline -----------------------------------------------------------------------------
def nmf_codes(x: torch.Tensor, components: torch.Tensor, iters: int = 200,
              eps: float = 1e-10) -> torch.Tensor:
    """Non-negative codes ``W >= 0`` minimising ``||x - W @ components||^2`` for rows ``x``
    ``(N, D)`` (non-negative) and fixed ``components`` ``(k, D)``: Lee and Seung's
    multiplicative updates from a uniform start (the 'mu' solver of scikit-learn, batched)."""
    x = x.double().clamp(min=0)
    H = components.double()
    HHt = H @ H.T
    XHt = x @ H.T
    W = torch.full((len(x), len(H)), float(x.mean() / max(H.mean(), eps)), dtype=torch.float64,
                   device=x.device) / len(H)
    for _ in range(iters):
        W = W * XHt / (W @ HHt + eps)
    return W.float()


def fit_nmf(vectors: torch.Tensor, dim: int, seed: int = 0, max_iter: int = 200) -> dict:
    """scikit-learn NMF (coordinate descent) of the rows of ``vectors`` ``(N, D)``. Returns
    ``components`` ``(dim, D)``, ``n_iter`` and ``relative_error`` (Frobenius norm of the
    residual over that of the data); stopping at ``max_iter`` is reported there, not warned."""
    import warnings
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning
    x = vectors.double().clamp(min=0).numpy()
    model = NMF(n_components=dim, init="nndsvda", solver="cd", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x)
    rel = model.reconstruction_err_ / max(float((x ** 2).sum()) ** 0.5, 1e-12)
    return dict(components=torch.from_numpy(model.components_).float(), n_iter=int(model.n_iter_),
                relative_error=float(rel))


class NMFFeatures(nn.Module):
    """``BYOL + NMF``: the backbone's hypercolumn at every position, replaced by its NMF codes."""

    def __init__(self, backbone: Backbone, components: torch.Tensor, iters: int = 200):
        super().__init__()
        self.backbone = backbone.eval()
        self.register_buffer("components", components)
        self.iters = iters

    @torch.no_grad()
    def forward(self, x):
        h = self.backbone.hypercolumn(x)
        B, C, hh, ww = h.shape
        codes = nmf_codes(h.permute(0, 2, 3, 1).reshape(-1, C), self.components, self.iters)
        return codes.view(B, hh, ww, -1).permute(0, 3, 1, 2)


# -- training ---------------------------------------------------------------------------------
DEFAULTS = dict(
    feat_dim=64, proj_dim=256, width=128,   # C of Phi^D, output of g^D (None: no head), FPN width
    stages=4,                               # encoder stages under the FPN (thesis: 1-4)
    size=96, crop_scale=(0.5, 1.0),         # training crops (thesis: 96-px views of 136-px faces)
    batch_size=32, steps=100, lr=1e-3,
    weight_decay=1e-4, amsgrad=False,       # Adam (DVE's released configs: 0 and True; see below)
    tau=TAU,                                # LEAD's temperature (also used by DVE / CL here)
    tps_jitter=0.1,                         # DVE / CL warps
    amp=False, channels_last=False,         # bf16 autocast of the networks (losses in float32)
)


class _Trained(nn.Module):
    """The networks stage 2 trains (Phi^D or the CL projector, and g^D if any) as one module
    whose single call runs every forward pass of a step, so that under torchrun one
    ``DistributedDataParallel`` call per step covers them. Returns one map per input."""

    def __init__(self, net: nn.Module, head: nn.Module | None):
        super().__init__()
        self.net, self.head = net, head

    def forward(self, *xs):
        fs = [self.net(x) for x in xs]
        return fs if self.head is None else [self.head(f) for f in fs]


def _views(images, idx, cfg, gen, device):
    """Random crops (``crop_scale`` of the area, resized to ``size``) with colour jitter."""
    x = to_float(images[idx.to(images.device)]).to(device)
    x, _ = random_resized_crop(x, cfg["size"], tuple(cfg["crop_scale"]), generator=gen)
    return color_jitter(x, generator=gen)


def train_stage2(method: str, images: torch.Tensor, teacher: Backbone, cfg: dict | None = None,
                 device="cpu", seed: int = 0, progress: bool = True) -> dict:
    """Train a compact dense feature extractor on ``images`` (N, 3, H, W) (uint8 or float).

    ``method``:
      * ``"lead"``: DenseNet with the encoder initialised from ``teacher`` (stage-1 BYOL; MoCo in
        Table 3.6's ``lead/stage2-lead-from-moco``), plus a
        projection head of ``proj_dim`` (None: none); :func:`lead_loss` against the frozen
        teacher's hypercolumns, each image paired with the next one in the batch.
      * ``"dve"``: the same DenseNet (encoder from ``teacher``), trained with
        :func:`~ssl_lab.ssl.equivariance.dve_loss` between an image and its random TPS warp,
        exchanging descriptors through the next image in the batch.
      * ``"cl"``: :class:`ProjectedHypercolumn` on the frozen ``teacher`` (stage-1 MoCo; BYOL in
        ``lead/stage2-cl-from-byol``),
        trained with :func:`~ssl_lab.ssl.equivariance.equivariance_loss` on TPS warps.

    Adam with a cosine decay. The thesis does not give stage 2's optimizer. The defaults
    (weight decay 1e-4, no amsgrad) are what the shipped networks were trained with; DVE's
    released dense-feature configs (jamt9000/DVE ``configs/celeba/*.json``) use Adam, lr 1e-3,
    ``weight_decay`` 0 and ``amsgrad``, and ContrastLandmarks' projector (cvl-umass/
    contrast-landmark ``train_feature_projector.py``) weight decay 5e-4. PyTorch's Adam adds
    weight decay to the gradient before normalising it, so on BatchNorm-scaled encoder weights
    (where the loss gradient is small) it moves them about ``lr`` per step towards zero: with
    1e-4, 1500 small-scale steps left the BYOL initialisation's stage-4 weights at 1 % of their
    norm (:func:`encoder_drift`; data_scripts/stage2_ablation.py). ``stages``: the encoder
    stages under the FPN (:class:`DenseNet`). ``amp``: the networks run under bf16 autocast (with
    ``channels_last``: NHWC), the losses in float32. Returns ``state_dict`` (of the DenseNet, or of the projector
    for ``"cl"``), ``history`` (loss per step), ``config``, ``wall_s`` and ``images_per_s``.

    Under ``torchrun`` (as :func:`ssl_lab.ssl.train.train_ssl`): ``batch_size`` is the global
    batch, each process draws its ``batch_size / W`` images (with replacement, so independent
    draws per process are a draw of the global batch; no shard is needed) and augmentations
    from seed + rank, the trained networks run in ``DistributedDataParallel`` with synchronised
    BatchNorm (CL's projector has none; its frozen teacher stays as it is), and the history holds the loss averaged over the processes. Pairs (LEAD) and
    descriptor exchanges (DVE) stay within a process's batch.
    """
    from . import equivariance as eq
    cfg = {**DEFAULTS, **(cfg or {})}
    device = torch.device(device)
    torch.manual_seed(seed)                                  # the same initialisation everywhere
    gen = torch.Generator().manual_seed(seed + distributed.rank())   # own data and augmentations
    teacher = teacher.to(device).eval().requires_grad_(False)
    enc_state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    head = None
    if method in ("lead", "dve"):
        net = DenseNet(teacher.name, cfg["feat_dim"], cfg["width"], enc_state, cfg["stages"]).to(device)
        if method == "lead" and cfg["proj_dim"]:
            head = ProjectionHead(cfg["feat_dim"], cfg["proj_dim"]).to(device)
    elif method == "cl":
        net = ProjectedHypercolumn(teacher, cfg["feat_dim"]).to(device)
    else:
        raise ValueError(f"unknown stage-2 method {method!r}; choose 'lead', 'dve' or 'cl'")
    if cfg["channels_last"]:
        for m in (net, head, teacher):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    params = [p for m in (net, head) if m is not None for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], amsgrad=cfg["amsgrad"])
    steps = int(cfg["steps"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / max(steps, 1))))
    bs = min(cfg["batch_size"], len(images))                 # the global batch
    b = distributed.per_process_batch(bs)                    # this process's part of it
    net.train()
    if head is not None:
        head.train()
    trained = distributed.data_parallel(_Trained(net, head),   # itself in one process;
                                        sync_bn=method != "cl")  # CL: a frozen BN backbone
    history = []
    t0 = time.perf_counter()
    for _ in bar(range(steps), f"stage 2 {method}", show=progress and distributed.is_main()):
        x = _views(images, torch.randint(len(images), (b,), generator=gen), cfg, gen, device)
        if method == "lead":
            with bf16(device, cfg["amp"]):
                x = nhwc(x, cfg["channels_last"])
                with torch.no_grad():
                    h = teacher.hypercolumn(x)
                f, = trained(x)
            f, h = f.float(), h.float()            # the loss outside autocast, in float32
            loss = lead_loss(f, f.roll(1, 0), h, h.roll(1, 0), cfg["tau"])
        else:
            grid = eq.random_tps(b, x.shape[-1], generator=gen, jitter=cfg["tps_jitter"]).to(device)
            with bf16(device, cfg["amp"]):
                f, f2 = trained(nhwc(x, cfg["channels_last"]), nhwc(eq.warp(x, grid), cfg["channels_last"]))
            f, f2 = f.float(), f2.float()
            g = eq.resize_grid(grid, f.shape[-2:])
            if method == "dve":
                loss = eq.dve_loss(f, f2, f.roll(1, 0), g, tau=cfg["tau"])
            else:
                loss = eq.equivariance_loss(f, f2, g, tau=cfg["tau"])
        history.append(distributed.mean(optimizer_step(loss, opt, sched, f"stage-2 {method}")))
    wall = time.perf_counter() - t0
    model = net.proj if method == "cl" else net
    return dict(method=method, backbone=teacher.name, config=cfg, seed=seed, history=history,
                state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                wall_s=wall, images_per_s=steps * bs / wall if wall > 0 else float("nan"),
                precision=precision(device, cfg["amp"]))
