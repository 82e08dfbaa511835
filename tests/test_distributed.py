"""Data-parallel SSL training (:mod:`ssl_lab.distributed`): two gloo processes on the CPU.

One launch (module fixture ``two_ranks``) forks 2 processes with the environment torchrun
gives them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1``, a free
``MASTER_PORT``; forked rather than spawned, so that they need not import torch again); each
writes what it saw under a folder of its own and the tests compare that with one process:

* gradient averaging: BYOL at a global batch of 8 on 2 processes (4 each, synchronised BN)
  ends with the weights of 1 process at a batch of 8. The views are fixed crops (no random
  augmentation) and the 8 images are the whole data set, so every step of either run sees the
  same 8 images and the two differ only in the order of float sums (tolerance 1e-5);
* rank 1 writes no file: ``python -m ssl_lab train`` (``cli.main``, which joins the process
  group itself) of a tiny recipe with a cache folder per rank, the training loop
  checkpointing every step;
* the MoCo queue after one step holds the keys of both ranks, in rank order, on both ranks;
  each rank augments with its own stream (seed + rank);
* a MoCo run stopped after 2 of 4 steps and resumed from rank 0's checkpoint ends with the
  weights of an uninterrupted 2-process run, on both ranks;
* stage 2 (LEAD, DVE) trains data-parallel: both ranks end with the same weights.

StyleGAN2-ADA (``ssl_lab.gan.train``; a second launch, fixture ``gan_ranks``, 16 px TINY nets,
global batch 8): 2 x 4 == 1 x 8 after 4 steps with ADA, style mixing and R1 (G, D, G_ema within
2e-5; measured 4e-6), with the path-length mean and w_avg per process as in the official code;
kill-and-resume of a 2-process run exact on both ranks; rank 1 writes nothing; batches that do
not split over the processes raise.
"""
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssl_lab import distributed
from ssl_lab.ssl.train import train_ssl

IMAGES = dict(n=8, size=36)
BYOL = dict(backbone="test_resnet", size=32, batch_size=8, steps=3, proj_hidden=16, proj_dim=8,
            pred_hidden=16, optimizer="sgd", lr=0.1)
MOCO = dict(backbone="test_resnet", size=32, batch_size=8, steps=4, proj_hidden=16, proj_dim=8,
            queue=24, optimizer="sgd", lr=0.1)


def _images(seed=0):
    return torch.rand(IMAGES["n"], 3, IMAGES["size"], IMAGES["size"],
                      generator=torch.Generator().manual_seed(seed))


class FixedViews:
    """TwoViewAugment without randomness: the top-left crop and the flipped bottom-right crop."""

    def __init__(self, size, **_):
        self.size = size

    def __call__(self, x, generator=None):
        s = self.size
        return x[..., :s, :s].contiguous(), x[..., -s:, -s:].flip(-1).contiguous()


# -- by hand, in one process ---------------------------------------------------------------------
def test_per_process_batch():
    assert distributed.per_process_batch(256, world=4) == 64
    assert distributed.per_process_batch(7, world=1) == 7
    with pytest.raises(ValueError, match="not divisible by the world size 4"):
        distributed.per_process_batch(10, world=4)


def test_shard_indices_by_hand_and_as_distributed_sampler():
    perm = torch.randperm(5, generator=torch.Generator().manual_seed(7 + 2)).tolist()
    r0, r1 = (distributed.shard_indices(5, seed=7, epoch=2, rank_=r, world=2).tolist() for r in (0, 1))
    assert r0 == perm[0::2] and r1 == perm[1::2] + perm[:1]     # padded with the first item
    for n, world in [(10, 4), (12, 3), (3, 2)]:
        for epoch in (0, 1):
            shards = [distributed.shard_indices(n, 3, epoch, r, world) for r in range(world)]
            assert len({len(s) for s in shards}) == 1                         # equal lengths
            assert all(torch.equal(s, distributed.shard_indices(n, 3, epoch, r, world))
                       for r, s in enumerate(shards))                          # the same order on every call
            everything = torch.stack(shards, 1).flatten()                      # the interleaved permutation
            assert sorted(everything[:n].tolist()) == list(range(n))           # covering, disjoint
            sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=1, seed=3)
            sampler.set_epoch(epoch)
            assert list(sampler) == shards[1].tolist()
    assert not torch.equal(distributed.shard_indices(50, 3, 0, 0, 2), distributed.shard_indices(50, 3, 1, 0, 2))


def test_single_process_is_a_no_op(monkeypatch):
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.init() == 1 and distributed.world_size() == 1 and distributed.is_main()
    t = torch.arange(3)
    assert distributed.all_gather_cat(t) is t and distributed.mean(2.5) == 2.5
    net = torch.nn.BatchNorm1d(2)
    assert distributed.data_parallel(net) is net and type(net) is torch.nn.BatchNorm1d
    distributed.barrier()
    distributed.cleanup()


def test_a_recipe_that_is_not_data_parallel_stops_under_torchrun(monkeypatch, home):
    """Each process would train the whole recipe: it stops before training, with the command
    that runs it."""
    from ssl_lab import recipes, zoo
    assert recipes.DATA_PARALLEL == {"lead/stage1-byol", "lead/stage1-moco", "lead/stage2-lead", "lead/stage2-dve",
                                     "lead/stage2-cl", "lead/stage2-lead-from-moco", "lead/stage2-cl-from-byol",
                                     "hsr/warmup", "hsr/branch"}
    calls = []
    zoo.register("test/one-process", {"smoke": dict(a=1)})(lambda cfg, device, seed: calls.append(cfg) or {})
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    for name in ("test/one-process", "lead/regressor", "lead/stage2-nmf"):
        with pytest.raises(RuntimeError, match=f"{name} trains in one process.*python -m ssl_lab train {name}"):
            zoo.train(name, "smoke")
    assert calls == [] and not [p for p in home.parent.rglob("*") if p.is_file()]


# -- two processes ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(_worker, args=(out, _free_port()), nprocs=2,
                                          start_method="fork")     # raises a worker's error
    return out


def test_two_processes_average_gradients_like_one_batch(two_ranks, monkeypatch, one_thread):
    monkeypatch.setattr("ssl_lab.ssl.train.TwoViewAugment", FixedViews)
    one = train_ssl("byol", _images(), BYOL, seed=0, progress=False)
    ranks = [torch.load(two_ranks / f"rank{r}" / "byol.pt") for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["history"] == ranks[1]["history"]
    assert all(torch.equal(v, ranks[1]["state_dict"][k]) for k, v in ranks[0]["state_dict"].items())
    torch.testing.assert_close(ranks[0]["history"], one["history"], rtol=1e-5, atol=1e-6)
    # Weights and BN running statistics: the same algorithm up to rounding, amplified by three
    # SGD steps of lr 0.1 on 4-image BN batches. Measured on two machines: differences up to
    # 1.2e-4 where the weights moved by 0.1-0.5, at most 0.11 % of a tensor's movement (one machine
    # met 1e-5 absolute, another not). Summing the gradients instead of averaging them doubles an
    # SGD step, a difference of the order of the movement itself: the bound is 1 % of it.
    moved = 0.0
    for k, v in one["state_dict"].items():
        got = ranks[0]["state_dict"][k]
        if not v.is_floating_point():
            assert torch.equal(got, v), k
            continue
        step = (v - ranks[0]["init"][k]).abs().max().item()
        assert (got - v).abs().max().item() <= 0.01 * step + 1e-6, k
        moved = max(moved, step)
    assert moved > 1e-2                                # it trained


def test_rank1_writes_no_file(two_ranks):
    home0, home1 = two_ranks / "rank0" / "home", two_ranks / "rank1" / "home"
    assert not home1.exists()
    files = sorted(p.relative_to(home0).as_posix() for p in home0.rglob("*") if p.is_file())
    assert len(files) == 2 and files[0].startswith("zoo/test/ddp-byol/smoke-seed0-"), files
    assert [Path(f).suffix for f in files] == [".json", ".pt"]     # the checkpoint is gone
    assert json.loads((home0 / files[0]).read_text())["processes"] == 2
    assert (two_ranks / "rank0" / "stdout.txt").read_text().startswith("trained test/ddp-byol")
    assert (two_ranks / "rank1" / "stdout.txt").read_text() == ""          # nor prints
    seen = json.loads((two_ranks / "rank0" / "zoo.json").read_text())
    assert seen["checkpoints_written"] == [1, 2]         # rank 0 did checkpoint during training
    assert json.loads((two_ranks / "rank1" / "zoo.json").read_text())["checkpoints_written"] == []


def test_moco_queue_holds_the_keys_of_both_ranks(two_ranks):
    r0, r1 = (torch.load(two_ranks / f"rank{r}" / "moco.pt") for r in (0, 1))
    assert r0["aug_seed"] == 0 and r1["aug_seed"] == 1            # its own augmentation stream
    assert r0["keys"].shape == (4, 8) and not torch.allclose(r0["keys"], r1["keys"])
    ckpt = torch.load(two_ranks / "moco-step1.ckpt", weights_only=False)["model"]
    for queue in (r0["queue"], r1["queue"], ckpt["queue"]):
        assert torch.equal(queue[:8], torch.cat([r0["keys"], r1["keys"]]))   # gathered, rank order
        assert torch.equal(queue[8:], r0["initial_queue"][8:])
    assert int(ckpt["queue_ptr"]) == 8


def test_moco_resumes_across_ranks_to_the_same_weights(two_ranks):
    for r in (0, 1):
        got = torch.load(two_ranks / f"rank{r}" / "resume.pt")
        assert got["resumed"]["history"] == got["whole"]["history"] and len(got["whole"]["history"]) == 4
        assert all(torch.equal(v, got["resumed"]["state_dict"][k]) for k, v in got["whole"]["state_dict"].items())


def test_stage2_ranks_stay_in_step(two_ranks):
    r0, r1 = (torch.load(two_ranks / f"rank{r}" / "stage2.pt") for r in (0, 1))
    for m in ("lead", "dve"):
        assert r0[m]["history"] == r1[m]["history"] and len(r0[m]["history"]) == 2
        assert all(torch.equal(v, r1[m]["state_dict"][k]) for k, v in r0[m]["state_dict"].items()), m


# -- what each of the two processes runs ---------------------------------------------------------
def _worker(rank: int, out: Path, port: int):
    import contextlib
    import io

    from ssl_lab import cli, zoo
    from ssl_lab.nets.backbones import Backbone
    from ssl_lab.ssl import moco as moco_module
    from ssl_lab.ssl import train as train_module
    from ssl_lab.ssl.lead import train_stage2

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), SSL_LAB_TRAIN="allow", SSL_LAB_PROGRESS="0")
    torch.cuda.is_available = lambda: False            # gloo even where a GPU is present
    torch.set_num_threads(1)
    assert distributed.init() == 2 and torch.distributed.get_backend() == "gloo"
    assert distributed.rank() == rank
    mine = out / f"rank{rank}"
    mine.mkdir()
    real_aug = train_module.TwoViewAugment

    # gradient averaging: fixed views, the 8 images each step
    train_module.TwoViewAugment = FixedViews
    torch.manual_seed(0)
    teacher = Backbone("test_resnet")
    init = {k: v.clone() for k, v in teacher.state_dict().items()}
    art = train_ssl("byol", _images(), BYOL, seed=0, progress=False)
    torch.save(dict(art, world=distributed.world_size(), init=init), mine / "byol.pt")
    train_module.TwoViewAugment = real_aug

    # the MoCo queue after one step; the augmentation streams
    seen, keys = {}, moco_module.MoCo.keys

    def spy_keys(self, v):
        seen.setdefault("model", self)
        seen.setdefault("initial_queue", self.queue.clone())
        seen["keys"] = keys(self, v)
        return seen["keys"]

    def spy_aug(self, x, generator=None):
        seen.setdefault("aug_seed", generator.initial_seed())
        return real_aug.__call__(self, x, generator)

    moco_module.MoCo.keys, train_module.TwoViewAugment = spy_keys, type("Spy", (real_aug,), {"__call__": spy_aug})
    train_ssl("moco", _images(), dict(MOCO, steps=2), seed=0, progress=False,
              checkpoint=out / "moco-step1.ckpt", max_steps=1)
    moco_module.MoCo.keys, train_module.TwoViewAugment = keys, real_aug
    torch.save(dict(keys=seen["keys"], queue=seen["model"].queue.clone(), aug_seed=seen["aug_seed"],
                    initial_queue=seen["initial_queue"]), mine / "moco.pt")

    # exact resume across ranks
    ckpt = out / "moco-resume.ckpt"
    whole = train_ssl("moco", _images(), MOCO, seed=1, progress=False)
    assert train_ssl("moco", _images(), MOCO, seed=1, progress=False, checkpoint=ckpt,
                     checkpoint_every=10, max_steps=2) is None
    resumed = train_ssl("moco", _images(), MOCO, seed=1, progress=False, checkpoint=ckpt)
    torch.save(dict(whole=whole, resumed=resumed), mine / "resume.pt")

    # stage 2 (LEAD; DVE: two inputs in one data-parallel call)
    cfg = dict(size=32, batch_size=4, steps=2, width=8, feat_dim=8, proj_dim=16)
    torch.save({m: train_stage2(m, _images(), teacher, cfg, progress=False) for m in ("lead", "dve")},
               mine / "stage2.pt")

    # rank 1 writes nothing: `python -m ssl_lab train` with a cache of its own (last: the
    # command leaves the process group)
    os.environ["SSL_LAB_HOME"] = str(mine / "home")
    written, save = [], train_module.atomic_save
    train_module.atomic_save = lambda state, path: (written.append(state["step"]), save(state, path))[1]

    @zoo.register("test/ddp-byol", {"smoke": dict(BYOL)}, parallel=True)
    def _recipe(cfg, device, seed):
        return train_ssl("byol", _images(), cfg, device=device, seed=seed, progress=False,
                         checkpoint=zoo.training_checkpoint(), checkpoint_every=1)

    with contextlib.redirect_stdout(io.StringIO()) as printed:
        cli.main(["train", "test/ddp-byol", "--scale", "smoke"])
    assert not torch.distributed.is_initialized()
    (mine / "stdout.txt").write_text(printed.getvalue())
    (mine / "zoo.json").write_text(json.dumps(dict(checkpoints_written=written)))


# -- StyleGAN2-ADA data-parallel (ssl_lab.gan.train) ---------------------------------------------
# One launch (module fixture ``gan_ranks``) of 2 forked gloo processes, as above; global batch 8
# (4 per process, one minibatch-std group each) on 16 px TINY networks.
GAN_ARCH = dict(resolution=16, z_dim=8, w_dim=8, channel_base=128, channel_max=16, mapping_layers=2,
                mbstd_group=4)
# ADA on (p from 0.3, adjusted every step), style mixing 0.9, R1 every 2nd step
GAN = dict(arch=GAN_ARCH, batch=8, log_every=1, augment_p=0.3, ada_target=0.6, ada_interval=1,
           ada_kimg=0.1, d_reg_interval=2, g_reg_interval=2)
GAN_EQ = dict(GAN, pl_weight=0.0)          # the path-length mean is per process (official): off here


def _gan_images(size=16):
    return torch.rand(20, 3, size, size, generator=torch.Generator().manual_seed(3))


# HSR from the first step at 32 px (its four G levels need >= 32 px), predictors of width 8
GAN_HSR = dict(GAN_EQ, arch=dict(GAN_ARCH, resolution=32), hsr=True, hsr_hidden=8, hsr_warmup_kimg=0.0)


def _hsr_features():
    """A tiny frozen ViT (random, seeded alike in every process) as HSR's feature network."""
    from ssl_lab.nets.extractors import vit_features
    torch.manual_seed(7)
    return vit_features("vit_tiny_patch16_224", input_size=32, patch_size=8, depth=4, embed_dim=16, num_heads=2)


class _Killed(RuntimeError):
    pass


def test_gan_batch_must_split_over_the_processes(monkeypatch):
    from ssl_lab.gan.train import gan_config, train_gan
    imgs = _gan_images()
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="GAN batch 8 .* not divisible by the world size 3"):
        train_gan(imgs, gan_config("smoke", **GAN), steps=1, progress=False)
    monkeypatch.setattr(distributed, "world_size", lambda: 4)       # 2 per process < the group of 4
    with pytest.raises(ValueError, match="per-process batch 2 .* minibatch-std group 4; set batch to a multiple of 16"):
        train_gan(imgs, gan_config("smoke", **GAN), steps=1, progress=False)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)       # path-length batch 12 // 8 = 1
    with pytest.raises(ValueError, match="path-length batch 1 .* not divisible by the world size 2"):
        train_gan(imgs, gan_config("smoke", **dict(GAN, pl_batch_shrink=8)), steps=1, progress=False)


def test_gan_real_batches_split_into_strided_rows():
    """Each process's reals are rows rank, rank + W, ... of the one-process batch (tensor and
    Dataset, across an epoch boundary and a resume mid-epoch), and only those are loaded."""
    from ssl_lab.gan.train import _batches
    imgs = _gan_images()
    for data in (imgs, torch.utils.data.TensorDataset(imgs)):
        one = _batches(data, 8, 16, torch.Generator().manual_seed(5))
        ranks = [_batches(data, 8, 16, torch.Generator().manual_seed(5), r, 2) for r in (0, 1)]
        for step in range(5):                                   # 20 images: 2 batches an epoch
            if step == 3:                                       # resume each from its state
                for d in ranks:
                    d.load_state(d.state())
            whole, parts = next(one), [next(d) for d in ranks]
            assert all(x.shape[0] == 4 for x in parts)
            assert torch.equal(torch.stack(parts, 1).flatten(0, 1), whole), step


@pytest.fixture(scope="module")
def gan_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-gan")
    torch.multiprocessing.start_processes(_gan_worker, args=(out, _free_port()), nprocs=2,
                                          start_method="fork")
    return out


def _params_of(state):
    """The parameters of a G / G_ema state dict (its buffers: w_avg per process, fixed noise maps)."""
    return {k: v for k, v in state.items() if not k.endswith(("w_avg", "noise_const"))}


def test_gan_two_processes_equal_one_process_at_the_global_batch(gan_ranks, one_thread):
    """2 x 4 == 1 x 8 for 4 steps with ADA (p moving every step), style mixing, R1: G, D and
    G_ema weights within 2e-5 (float sum order; Adam's first steps are ~lr * sign(grad)); the
    mapping's w_avg is per process (official), and the mean of the two equals one process's."""
    from ssl_lab.gan.train import gan_config, train_gan
    one = train_gan(_gan_images(), gan_config("smoke", **GAN_EQ), seed=0, steps=4, progress=False,
                    keep_state=True)
    r0, r1 = (torch.load(gan_ranks / f"rank{r}" / "eq.pt", weights_only=False) for r in (0, 1))
    s1, s0 = one["state"], r0["state"]
    for net in ("G", "D", "G_ema"):
        mine = _params_of(s0[net])
        assert all(torch.equal(v, _params_of(r1["state"][net])[k]) for k, v in mine.items()), net
        moved = 0.0
        for k, v in _params_of(s1[net]).items():
            torch.testing.assert_close(mine[k], v, rtol=0, atol=2e-5, msg=f"{net} {k}")
            moved = max(moved, (v - r0["init"][net][k]).abs().max().item())
        assert moved > 1e-3, net                         # it trained: far above the tolerance
    for net in ("G", "G_ema"):
        w0, w1 = s0[net]["mapping.w_avg"], r1["state"][net]["mapping.w_avg"]
        assert not torch.allclose(w0, w1)                                  # per process
        torch.testing.assert_close((w0 + w1) / 2, s1[net]["mapping.w_avg"], rtol=0, atol=1e-6)
    assert s0["ada"] == r1["state"]["ada"]                                 # the same ADA state everywhere
    assert float(s0["ada"]["p"]) == float(s1["ada"]["p"]) and s0["ada"]["steps"] == 4
    assert [h["p"] for h in r0["history"]] == [h["p"] for h in one["history"]] != [0.3] * 4
    for h0, h in zip(r0["history"], one["history"]):
        assert h0.keys() == h.keys()
        for k in ("d_loss", "g_loss", "real_sign", "r1"):
            if k in h:
                assert h0[k] == pytest.approx(h[k], rel=1e-4, abs=1e-6), k


def test_gan_with_hsr_two_processes_equal_one_process(gan_ranks, one_thread):
    """HSR's predictors train in G's optimizer (param group 1), so their gradients are averaged
    with G's: 2 x 4 == 1 x 8 for 3 steps with HSR on from the first, for G, D, G_ema and the
    predictors, and the HSR loss logged alike. Bound per tensor: mean |difference| < 2e-5 and
    max < lr / 4. Adam's first steps are about lr * sign(grad), so an element whose gradient
    is near zero may step differently when the float sum order differs (under the AVX2 kernels
    one element of a G affine differed by 1.6e-4 = lr / 15, the mean by 3.6e-6; by default
    kernels the largest difference was 2.4e-7)."""
    from ssl_lab.gan.train import gan_config, train_gan
    cfg = gan_config("smoke", **GAN_HSR)
    lr = cfg.lr
    one = train_gan(_gan_images(32), cfg, seed=0, steps=3, progress=False,
                    features=_hsr_features(), keep_state=True)
    r0, r1 = (torch.load(gan_ranks / f"rank{r}" / "hsr.pt", weights_only=False) for r in (0, 1))
    s1, s0 = one["state"], r0["state"]
    nets = {net: (_params_of(s0[net]), _params_of(r1["state"][net]), _params_of(s1[net]))
            for net in ("G", "D", "G_ema")}
    nets["HSR predictors"] = tuple(s["hsr"]["predictors"] for s in (s0, r1["state"], s1))
    for net, (a, b, ref) in nets.items():
        assert a.keys() == ref.keys() and len(a) > 0, net
        assert all(torch.equal(v, b[k]) for k, v in a.items()), net          # the same on both ranks
        for k, v in ref.items():
            d = (a[k] - v).abs()
            assert d.mean() < 2e-5 and d.max() < lr / 4, (net, k, d.mean().item(), d.max().item())
    init = r0["init_predictors"]
    assert max((s1["hsr"]["predictors"][k] - v).abs().max().item() for k, v in init.items()) > 1e-3
    assert all("hsr" in h for h in r0["history"])
    for h0, h in zip(r0["history"], one["history"]):
        assert h0["hsr"] == pytest.approx(h["hsr"], rel=1e-4)


def test_gan_path_length_mean_is_per_process(gan_ranks, one_thread):
    """One step with the path-length regulariser: each process keeps its own mean (official
    loss.py); G stays the same on both (averaged gradients); the two means average to the
    one-process mean of the first update."""
    from ssl_lab.gan.train import gan_config, train_gan
    one = train_gan(_gan_images(), gan_config("smoke", **GAN), seed=0, steps=1, progress=False,
                    keep_state=True)["state"]
    r0, r1 = (torch.load(gan_ranks / f"rank{r}" / "pl.pt", weights_only=False)["state"] for r in (0, 1))
    a0, a1 = float(r0["pl_mean"]), float(r1["pl_mean"])
    assert a0 != a1 and (a0 + a1) / 2 == pytest.approx(float(one["pl_mean"]), rel=1e-5)
    assert [float(r["pl_mean"]) for r in r0["ranks"]] == [a0, a1]          # every process's, in rank order
    assert all(torch.equal(v, _params_of(r1["G"])[k]) for k, v in _params_of(r0["G"]).items())


def test_gan_resumes_across_ranks_to_the_same_weights(gan_ranks):
    """Killed after 2 of 4 steps (rank 0's checkpoint), resumed on both processes: the weights,
    optimizer and ADA states and each process's own w_avg / path-length mean equal those of
    the uninterrupted 2-process run, exactly."""
    def same(a, b):
        if torch.is_tensor(a):
            return torch.equal(a, b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b
    pl = []
    for r in (0, 1):
        got = torch.load(gan_ranks / f"rank{r}" / "resume.pt", weights_only=False)
        assert got["killed_done"] == 2
        whole, resumed = got["whole"], got["resumed"]
        for k in ("G", "D", "G_ema", "opt_G", "opt_D", "ada", "pl_mean", "ranks", "data", "torch_rng"):
            assert same(whole["state"][k], resumed["state"][k]), (r, k)
        assert same(whole["G_ema"], resumed["G_ema"])
        assert [h["step"] for h in resumed["history"]] == [1, 2, 3, 4]
        pl.append(float(resumed["state"]["pl_mean"]))
    assert pl[0] != pl[1]                          # rank 1 continued its own path-length mean


def test_gan_rank1_writes_no_file(gan_ranks):
    """Only rank 0 checkpoints (``train_gan``'s atomic_save) and writes the zoo's artefact."""
    seen = [json.loads((gan_ranks / f"rank{r}" / "saves.json").read_text()) for r in (0, 1)]
    assert seen[1] == [] and len(seen[0]) >= 3 and all(p.endswith(".ckpt") for p in seen[0]), seen
    home0, home1 = gan_ranks / "rank0" / "home", gan_ranks / "rank1" / "home"
    assert not home1.exists()
    files = sorted(p.relative_to(home0).as_posix() for p in home0.rglob("*") if p.is_file())
    assert [Path(f).suffix for f in files] == [".json", ".pt"], files      # the checkpoint is gone
    assert files[0].startswith("zoo/test/ddp-gan/smoke-seed0-")
    assert json.loads((home0 / files[0]).read_text())["processes"] == 2
    assert (gan_ranks / "rank1" / "stdout.txt").read_text() == ""


def _gan_worker(rank: int, out: Path, port: int):
    import contextlib
    import io

    from ssl_lab import cli, paths, zoo
    from ssl_lab.gan import train as gan_train
    from ssl_lab.gan.train import gan_config, train_gan

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), SSL_LAB_TRAIN="allow", SSL_LAB_PROGRESS="0")
    torch.cuda.is_available = lambda: False
    torch.set_num_threads(1)
    assert distributed.init() == 2 and torch.distributed.get_backend() == "gloo"
    mine = out / f"rank{rank}"
    mine.mkdir()
    saves, save = [], paths.atomic_save
    paths.atomic_save = lambda obj, path: (saves.append(str(path)), save(obj, path))[1]

    # (a) 2 x 4 == 1 x 8; the initial weights (to show that it trained)
    from ssl_lab.nets.stylegan2 import build
    torch.manual_seed(0)
    G, D = build(GAN_ARCH)
    init = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict()}
    eq = train_gan(_gan_images(), gan_config("smoke", **GAN_EQ), seed=0, steps=4, progress=False,
                   keep_state=True)
    torch.save(dict(eq, init=init), mine / "eq.pt")
    torch.save(train_gan(_gan_images(), gan_config("smoke", **GAN), seed=0, steps=1, progress=False,
                         keep_state=True), mine / "pl.pt")

    # (a') with HSR; the predictors' initial weights (from a zero-step run: to show that they trained)
    hsr_cfg = gan_config("smoke", **GAN_HSR)
    init_pred = train_gan(_gan_images(32), hsr_cfg, seed=0, steps=0, progress=False,
                          features=_hsr_features(), keep_state=True)["state"]["hsr"]["predictors"]
    hsr_run = train_gan(_gan_images(32), hsr_cfg, seed=0, steps=3, progress=False,
                        features=_hsr_features(), keep_state=True)
    torch.save(dict(hsr_run, init_predictors=init_pred), mine / "hsr.pt")

    # (b) kill after 2 of 4 steps, resume from rank 0's checkpoint (path-length regulariser on)
    cfg, ckpt = gan_config("smoke", **GAN), out / "gan-resume.ckpt"
    whole = train_gan(_gan_images(), cfg, seed=1, steps=4, progress=False, keep_state=True)
    real_step = gan_train.train_step

    def killed_at_3(*a, **k):
        if a[6] == 2:
            raise _Killed
        return real_step(*a, **k)
    gan_train.train_step = killed_at_3
    with contextlib.suppress(_Killed):
        train_gan(_gan_images(), cfg, seed=1, steps=4, progress=False, checkpoint=ckpt, checkpoint_every=2)
    gan_train.train_step = real_step
    distributed.barrier()
    killed_done = torch.load(ckpt, weights_only=False)["done"]
    resumed = train_gan(_gan_images(), cfg, seed=1, steps=4, progress=False, checkpoint=ckpt,
                        keep_state=True)
    torch.save(dict(whole=whole, resumed=resumed, killed_done=killed_done), mine / "resume.pt")

    # (c) `python -m ssl_lab train` of a GAN recipe, a cache folder per rank (last: it leaves the group)
    os.environ["SSL_LAB_HOME"] = str(mine / "home")

    @zoo.register("test/ddp-gan", {"smoke": dict(steps=2)}, parallel=True)
    def _recipe(c, device, seed):
        return train_gan(_gan_images(), gan_config("smoke", **GAN), device=device, seed=seed,
                         steps=c["steps"], checkpoint=zoo.training_checkpoint(), checkpoint_every=1)

    with contextlib.redirect_stdout(io.StringIO()) as printed:
        cli.main(["train", "test/ddp-gan", "--scale", "smoke"])
    assert not torch.distributed.is_initialized()
    (mine / "stdout.txt").write_text(printed.getvalue())
    (mine / "saves.json").write_text(json.dumps(saves))
