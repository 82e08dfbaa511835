"""MoCo v2 (He et al. 2020; Chen et al. 2020), the ContrastLandmarks stage-1 objective that
the thesis compares BYOL against (Fig. 3.3, Tables 3.1-3.2).

A query encoder (backbone -> MLP head Linear-ReLU-Linear, 2048 -> 128) embeds view 1; a
momentum key encoder (EMA of the query encoder, m = 0.999, no gradient) embeds view 2. Both
embeddings are L2-normalised. The key of the same image is the positive; a FIFO queue of the
K most recent keys gives the negatives. InfoNCE with temperature T = 0.2:

    logits = [q . k+, q . queue_1, ..., q . queue_K] / T,   loss = cross-entropy(logits, 0).

The queue is stored as ``(K, dim)`` with a pointer to the oldest entry; a batch of keys
overwrites the entries ``ptr, ptr + 1, ...`` modulo K, so any K and batch size work (a
batch larger than K keeps its last K keys).

Shuffled BN: multi-GPU MoCo shuffles the key batch across GPUs so that BatchNorm statistics
cannot leak which key is the positive. Under ``torchrun`` (world size W > 1) :meth:`MoCo.keys`
does this as ``moco/builder.py`` of facebookresearch/moco (``_batch_shuffle_ddp``,
``_batch_unshuffle_ddp``): the key views of all processes are gathered, permuted by a
permutation that rank 0 draws and broadcasts, each process encodes its share, and the keys
are gathered back into their own order; the queue then enqueues the keys of every process
(``_dequeue_and_enqueue`` with ``concat_all_gather``), so it is the same on all of them. On
one device ``key_splits > 1`` emulates the shuffle: the key batch is shuffled and encoded in
that many chunks (separate BN statistics); the default 1 encodes it whole.

ContrastLandmarks' own code used K = 4096 (our default too), a Linear head (MoCo v1) and
T = 0.07; we follow MoCo v2 (MLP head, T = 0.2).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from .byol import Encoder, _backbone, ema_update, mlp


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float = 0.2) -> torch.Tensor:
    """Mean InfoNCE of queries ``q`` (B, d) with positives ``k`` (B, d) and negatives ``queue``
    (K, d). Plain dot products: pass L2-normalised vectors for cosine similarities.
    Computed in float32 (safe under autocast); ``k`` and ``queue`` get no gradient."""
    q, k, queue = q.float(), k.detach().float(), queue.detach().float()
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.t()
    logits = torch.cat([pos, neg], 1) / T
    labels = torch.zeros(len(q), dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


class MoCo(nn.Module):
    """``loss = MoCo("resnet50")(v1, v2)``; after each optimiser step call
    ``update_target(step, total)``. The trained feature extractor is ``.backbone``."""

    def __init__(self, backbone="resnet50", dim: int = 128, hidden: int = 2048, K: int = 4096,
                 m: float = 0.999, T: float = 0.2, key_splits: int = 1, weights=None):
        super().__init__()
        bb = _backbone(backbone, weights)
        self.encoder_q = Encoder(bb, mlp(bb.pooled_channels, hidden, dim, bn=False))
        self.encoder_k = copy.deepcopy(self.encoder_q).requires_grad_(False)
        self.K, self.m, self.T, self.key_splits = K, m, T, key_splits
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def backbone(self):
        return self.encoder_q.backbone

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """FIFO: write ``keys`` (B, dim) over the oldest entries and advance the pointer."""
        keys = keys.detach()[-self.K:].to(self.queue.dtype)
        idx = (self.queue_ptr + torch.arange(len(keys), device=self.queue.device)) % self.K
        self.queue[idx] = keys
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % self.K)

    @torch.no_grad()
    def keys(self, v: torch.Tensor) -> torch.Tensor:
        """L2-normalised keys of the views ``v`` (float32), with BN over a shuffled batch when
        ``key_splits > 1`` or under torchrun (module docstring; ``key_splits`` is then unused)."""
        if distributed.world_size() > 1:
            return self._keys_shuffled_across_processes(v)
        if self.key_splits <= 1:
            return F.normalize(self.encoder_k(v).float(), dim=1)      # float32 under autocast
        perm = torch.randperm(len(v), device=v.device)
        k = torch.cat([self.encoder_k(c).float() for c in v[perm].chunk(self.key_splits)])
        return F.normalize(k[torch.argsort(perm)], dim=1)

    @torch.no_grad()
    def _keys_shuffled_across_processes(self, v):
        world, rank = distributed.world_size(), distributed.rank()
        everyone = distributed.all_gather_cat(v)                     # (W * b, 3, H, W)
        perm = torch.randperm(len(everyone), device=v.device)
        torch.distributed.broadcast(perm, src=0)                     # rank 0's permutation
        mine = everyone[perm.view(world, -1)[rank]]
        if v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous():
            mine = mine.contiguous(memory_format=torch.channels_last)
        k = distributed.all_gather_cat(self.encoder_k(mine).float())  # in the shuffled order
        return F.normalize(k[torch.argsort(perm).view(world, -1)[rank]], dim=1)

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        q = F.normalize(self.encoder_q(v1).float(), dim=1)
        k = self.keys(v2)
        loss = info_nce(q, k, self.queue.clone(), self.T)
        self.enqueue(distributed.all_gather_cat(k))          # every process's keys (W > 1)
        return loss

    def update_target(self, step: int = 0, total: int = 0) -> float:
        """Momentum update of the key encoder (constant m; step/total only for symmetry with
        BYOL). Returns m."""
        ema_update(self.encoder_k, self.encoder_q, self.m)
        return self.m
