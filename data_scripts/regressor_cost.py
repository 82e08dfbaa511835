"""The landmark regressor's training cost per feature dimension (thesis Table 3.7), measured.

Table 3.7 gives one number per feature dimension ("FLOPS": 3840-d 2.21, 256-d 0.16, 128-d
0.08, 64-d 0.04) and calls the 3840-d hypercolumn 55x slower. The regression chapter counts
the operations with :func:`ssl_lab.regression.regressor_flops`; this script measures the
other half, the wall time of training: it times ``--steps`` optimiser steps of
:func:`ssl_lab.nets.regressor.fit_regressor` (the recipe's optimiser, batch 32, 5 landmarks)
on random features of each dimension (the cost does not depend on their values) and
reports seconds per epoch of the MAFL role's 5,000 training faces (its 157 batches), once on
the small geometry (16 x 16 maps of 64-px faces; the ResNet-18 hypercolumn is 960-d) and
once on ContrastLandmarks' (48 x 48 maps of 96-px crops; the ResNet-50 hypercolumn, 3840-d)::

    OMP_NUM_THREADS=1 python data_scripts/regressor_cost.py      # ~6 min on one core
    # -> results/lead/regressor-cost/small-seed0.json

Run it on an otherwise idle core: the times are the machine's, the ratios are the finding.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from ssl_lab import results, zoo
from ssl_lab.nets.regressor import fit_regressor

SCALE, SEED, IMAGES, POINTS = "small", 0, 5000, 5
#: geometry -> (map side, image side, feature dimensions)
GEOMETRIES = {"small": (16, 64, (64, 128, 256, 960)), "ContrastLandmarks": (48, 96, (64, 128, 256, 3840))}


def seconds_per_epoch(dim: int, side: int, image: int, steps: int, batch: int, cfg: dict,
                      repeats: int = 3) -> float:
    """Wall time of one epoch of IMAGES faces, from the median time of ``repeats`` runs of
    ``steps`` batches (after one warm-up run of the same length)."""
    gen = torch.Generator().manual_seed(SEED)
    feats = torch.randn(batch, dim, side, side, generator=gen)      # one batch, tiled ``steps`` times
    lm = torch.rand(batch, POINTS, 2, generator=gen) * (image - 1)
    kw = dict(epochs=1, batch_size=batch, num_per_epoch=steps * batch, lr=cfg["lr"],
              weight_decay=cfg["weight_decay"], seed=SEED)
    fit_regressor(feats, lm, image, **kw)                           # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit_regressor(feats, lm, image, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / steps * math.ceil(IMAGES / batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    cfg = zoo.config("lead/regressor", SCALE)
    t0 = time.perf_counter()
    rows = {}
    for geometry, (side, image, dims) in GEOMETRIES.items():
        for dim in dims:
            s = seconds_per_epoch(dim, side, image, args.steps, cfg["batch_size"], cfg)
            rows[f"{geometry} / {dim}"] = {"map side": side, "s per epoch": round(s, 2)}
            print(geometry, dim, rows[f"{geometry} / {dim}"], flush=True)
    rec = results.make_record("lead/regressor-cost", SCALE, "thesis-3.7", rows, tag=f"seed{SEED}",
                              device="cpu", seeds=[SEED], wall_time_s=time.perf_counter() - t0,
                              parameters=dict(steps=args.steps, images=IMAGES, points=POINTS,
                                              batch_size=cfg["batch_size"], threads=torch.get_num_threads()))
    print("recorded", results.save(rec))


if __name__ == "__main__":
    main()
