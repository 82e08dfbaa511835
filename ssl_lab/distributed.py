"""Data-parallel training across processes: ``torchrun --nproc_per_node N -m ssl_lab train ...``.

Without torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) everything here is a
no-op for one process: :func:`world_size` is 1, :func:`all_gather_cat` returns its input and
:func:`barrier` returns at once, so single-process code paths are unchanged.

Follows the released code of facebookresearch/dino (``utils.init_distributed_mode``,
``get_rank``, ``get_world_size``, ``is_main_process``; ``main_dino.py``: a
``DistributedSampler`` over the data and ``nn.SyncBatchNorm.convert_sync_batchnorm`` before
``DistributedDataParallel``) and of facebookresearch/moco (``builder.concat_all_gather``).
Differences: the backend is NCCL on CUDA and gloo on CPU (DINO: NCCL only), and
:class:`CPUSyncBatchNorm` synchronises CPU tensors (torch's SyncBatchNorm refuses them), so
that the tests can run two gloo processes on a CPU.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init() -> int:
    """Join the process group torchrun describes (``env://``: ``MASTER_ADDR``, ``MASTER_PORT``,
    ``RANK``, ``WORLD_SIZE``; on CUDA also ``torch.cuda.set_device(LOCAL_RANK)``); the backend
    is NCCL when CUDA is available, else gloo. Without those variables (a plain ``python``
    run) nothing happens. Returns the world size (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 1
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if cuda else "gloo", rank=int(os.environ["RANK"]),
                            world_size=int(os.environ["WORLD_SIZE"]))
    return world_size()


def _on() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if _on() else 0


def world_size() -> int:
    """The number of processes (1 when not distributed)."""
    return dist.get_world_size() if _on() else 1


def local_rank() -> int:
    """This process's rank on its machine (torchrun's ``LOCAL_RANK``; 0 if unset)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Whether this is rank 0, the only process that writes files or shows progress."""
    return rank() == 0


def device(name) -> torch.device:
    """The device this process trains on: ``"cuda"`` means ``cuda:LOCAL_RANK`` under torchrun."""
    d = torch.device(name)
    if d.type == "cuda" and d.index is None and world_size() > 1:
        return torch.device("cuda", local_rank())
    return d


def per_process_batch(global_batch: int, world: int | None = None) -> int:
    """The batch each process takes so that the processes together take ``global_batch``."""
    world = world_size() if world is None else world
    if global_batch % world:
        raise ValueError(f"the global batch {global_batch} is not divisible by the world size "
                         f"{world}; choose a batch_size that is a multiple of {world}")
    return global_batch // world


def shard_indices(n: int, seed: int, epoch: int, rank_: int | None = None,
                  world: int | None = None) -> torch.Tensor:
    """This process's part of epoch ``epoch``'s order of ``n`` items, as
    ``torch.utils.data.DistributedSampler(shuffle=True, drop_last=False)`` after
    ``set_epoch(epoch)``: every rank draws the same ``randperm(n)`` from seed ``seed + epoch``,
    pads it with its own first items to a multiple of the world size, and takes every
    ``world``-th item from position ``rank``. All shards have the same length."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    total = -(-n // world) * world
    order = torch.cat([order, order.repeat(-(-total // n))[:total - n]])
    return order[rank_:total:world]


@torch.no_grad()
def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every process's ``t`` concatenated along dim 0, in rank order (MoCo's
    ``concat_all_gather``: no gradient). The input itself in a single process."""
    if world_size() == 1:
        return t
    out = [torch.empty_like(t, memory_format=torch.contiguous_format) for _ in range(world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def mean(value: float) -> float:
    """The mean of a number over the processes (a logged loss: the global batch's)."""
    if world_size() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.item() / world_size()


def gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` in one process)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every process (e.g. until rank 0 has written a file the others read)."""
    if world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (if any)."""
    if _on():
        dist.destroy_process_group()


# -- gradient averaging and global-batch random draws (the GAN training) ----------------------
def average_gradients(params) -> None:
    """Replace every ``.grad`` of ``params`` by its mean over the processes: one ``all_reduce``
    of the flattened gradients, divided by the world size (the arithmetic of
    ``DistributedDataParallel``'s bucketed all-reduce; written out flat as NVlabs' later
    StyleGAN3 ``training/training_loop.py`` does). Parameters without a gradient are skipped
    (they must be the same on every process). A no-op in one process."""
    if world_size() == 1:
        return
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= world_size()
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.view_as(p.grad))


def sum_over_processes(values) -> list[float]:
    """Element-wise sums of a list of numbers over the processes (float64; the list itself in
    one process)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


_SHARD = (0, 1)          # (rank, world) of the batch-shaped random draws; (0, 1): the local batch


class global_draws:
    """Context: inside it, the batch-shaped random draws that call :func:`batch_draw` (z, the
    synthesis noise, the path-length noise, the ADA parameters) are drawn for the global batch
    of ``world x`` the local one and this process keeps rows ``rank, rank + world, ...``.
    With the same generator state on every process, the processes together then draw exactly
    what one process draws for the global batch. Outside it (and in one process) draws are
    local and unchanged."""

    def __init__(self, rank_: int | None = None, world: int | None = None):
        self.shard = (rank() if rank_ is None else rank_, world_size() if world is None else world)

    def __enter__(self):
        global _SHARD
        self._saved, _SHARD = _SHARD, self.shard
        return self

    def __exit__(self, *exc):
        global _SHARD
        _SHARD = self._saved
        return False


def draws_sharded() -> bool:
    """Whether batch-shaped draws are global right now (inside :class:`global_draws`, world > 1)."""
    return _SHARD[1] > 1


def batch_draw(fn, rows: int, *shape, **kw) -> torch.Tensor:
    """``fn((rows, *shape), **kw)`` (e.g. ``torch.rand``, ``torch.randn``); inside
    :class:`global_draws` with world ``W > 1``: ``fn((rows * W, *shape), **kw)[rank::W]``,
    this process's rows of the global batch's draw (strided, as the training loop splits the
    global batch; see :mod:`ssl_lab.gan.train`)."""
    r, w = _SHARD
    if w == 1:
        return fn((rows, *shape), **kw)
    return fn((rows * w, *shape), **kw)[r::w]


# -- synchronised BatchNorm and the data-parallel wrapper --------------------------------------
class _SumOverProcesses(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: the backward pass sums the incoming gradients over
    the processes too (what torch's SyncBatchNorm backward does for its statistics)."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Synchronised BatchNorm for CPU tensors (gloo), which torch's ``nn.SyncBatchNorm`` and
    ``DistributedDataParallel`` refuse. In training mode the batch mean and (biased) variance
    are sums over every process's batch (two passes, float32, gradients summed back over the
    processes as torch's SyncBatchNorm backward does), and the running statistics are updated
    with the unbiased variance of the whole batch, as BatchNorm over the concatenated batch
    would: BN over W processes of B/W equals BN over B in one process, in value and gradient."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x):
        if not self.training or world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        s = _SumOverProcesses.apply(torch.cat([xf.sum(dims), xf.new_tensor([xf.numel() / xf.shape[1]])]))
        n, mu = s[-1], s[:-1] / s[-1]
        d = xf - mu.view(shape)
        var = _SumOverProcesses.apply((d * d).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mu, m)
                self.running_var.lerp_(var * n / (n - 1), m)
        y = d * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of ``module`` synchronised over the processes: DINO's
    ``nn.SyncBatchNorm.convert_sync_batchnorm``, and on CPU those layers then as
    :class:`CPUSyncBatchNorm`. Parameters and buffers stay the same tensors, so an optimiser
    made before still holds them, and the state_dict keys do not change."""
    module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if not next(module.parameters()).is_cuda:
        for m in module.modules():
            if type(m) is nn.SyncBatchNorm:
                m.__class__ = CPUSyncBatchNorm
    return module


def data_parallel(module: nn.Module, sync_bn: bool = True) -> nn.Module:
    """``module`` itself in one process; else ``DistributedDataParallel(module)`` (gradients
    averaged over the processes in the backward pass; the weights start as rank 0's), with
    :func:`sync_batchnorm` first when ``sync_bn``. Call the wrapper for the forward pass and
    keep using ``module`` (not itself a BatchNorm, so converted in place) for everything else:
    its state_dict has no ``module.`` prefix and the same keys as before the conversion."""
    if world_size() == 1:
        return module
    if sync_bn:
        module = sync_batchnorm(module)
    p = next(module.parameters())
    return nn.parallel.DistributedDataParallel(module, device_ids=[p.device.index] if p.is_cuda else None)
