"""The supervised yardstick of Table 3.2: LEAD's architecture trained end to end on the annotated set.

The regression chapter's two nothing-learned yardsticks (the mean shape, the regressor on a
random-init hypercolumn) say whether a self-supervised network learned anything. This one says
what it must beat to be worth its pre-training: the same dense network (LEAD's stage-2
architecture at 64 dimensions) from random initialisation, with the same regressor on top,
every weight trained on the annotated training faces alone, by the regressor's own protocol
(:func:`ssl_lab.regression.fit_end_to_end` says which). No paper shows it.

One record per role set, written when that set is done, so a stopped run loses one set::

    python data_scripts/regressor_end_to_end.py aflw_m aflw_r mafl      # 2 threads
    python data_scripts/regressor_end_to_end.py mafl --epochs 2 --tag try  # a timing run
    # -> results/lead/regressor-end-to-end/small-seed0-<set>[-TAG].json

The networks are not kept (the shipped zoo has no room for them): the record holds the errors
on the training and test faces, beside the mean shape's, and the training curve.
"""
from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts this checkout's ssl_lab first on the path)
import torch

from ssl_lab import results
from ssl_lab.data import splits
from ssl_lab.metrics.landmarks import iod_error, standard_error
from ssl_lab.nets.backbones import dense_maps
from ssl_lab.nets.regressor import predict
from ssl_lab.regression import FULL_EPOCHS, fit_end_to_end, mean_shape_error

SCALE, SEED, FEAT_DIM = "small", 0, 64


def study(set_name: str, epochs: int | None) -> tuple[dict, list[float]]:
    train, test = splits.load(f"{set_name}/train", SCALE), splits.load(f"{set_name}/test", SCALE)
    t0 = time.perf_counter()
    net, reg, hist = fit_end_to_end(set_name, SCALE, seed=SEED, feat_dim=FEAT_DIM, epochs=epochs)
    wall = time.perf_counter() - t0
    size = tuple(train.data["image"].shape[-2:])
    row = {}
    for part, s in (("train", train), ("test", test)):
        with torch.no_grad():
            pred = predict(reg, dense_maps(net, s.data["image"]), size)
        mean, each = iod_error(pred, s.landmarks, visible=s.visible, per_image=True)
        row[part], row[f"{part} s.e."] = mean, standard_error(each)
    shape = {part: mean_shape_error(train.landmarks, s.landmarks, train.visible, s.visible)
             for part, s in (("train", train), ("test", test))}
    rows = {"mean shape": shape,
            f"end to end, LEAD's architecture / {FEAT_DIM}": {**row, "epochs": len(hist["loss"]),
                                                              "final loss": hist["loss"][-1], "fit s": wall}}
    print(set_name, {k: {c: round(float(v), 3) for c, v in r.items()} for k, r in rows.items()}, flush=True)
    return {k: {c: round(float(v), 4) for c, v in r.items()} for k, r in rows.items()}, hist["loss"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", choices=sorted(FULL_EPOCHS))
    p.add_argument("--epochs", type=int, default=None, help="stop after this many epochs of the schedule")
    p.add_argument("--tag", default="", help="suffix of the records' file names")
    args = p.parse_args()
    for s in args.sets:
        t0 = time.perf_counter()
        rows, curve = study(s, args.epochs)
        tag = f"seed{SEED}-{s}" + (f"-{args.tag}" if args.tag else "")
        rec = results.make_record("lead/regressor-end-to-end", SCALE, "yardstick-end-to-end", rows, tag=tag,
                                  device="cpu", seeds=[SEED], wall_time_s=time.perf_counter() - t0,
                                  parameters=dict(set=s, feat_dim=FEAT_DIM, epochs=args.epochs or FULL_EPOCHS[s],
                                                  threads=torch.get_num_threads(), loss_curve=curve,
                                                  command="python data_scripts/regressor_end_to_end.py "
                                                          + " ".join(args.sets)))
        print("recorded", results.save(rec))


if __name__ == "__main__":
    main()
