"""What limits the small landmark regressors: their training budget or the features under them.

Gate R (the regression chapter) failed on MAFL at small: the regressor on LEAD-64 was worse on
the test faces than predicting the mean training shape. This script asks whether the
regressor *fits its own training faces*: an underfit regressor is worse than the mean shape
on the faces it was trained on too, and then its test error says nothing about the features.

For each role set it fits the regressor on the shipped small LEAD-64's frozen maps of the
annotated training split (the ``lead/regressor`` recipe's features, optimiser and seed), two
ways, and reports the error on the training and on the test split beside the mean shape's:

* ``small``: the budget the recipe's small scale had when this study ran (20 epochs, a cosine
  over those 20; :data:`OLD_SMALL_EPOCHS`); after it, small follows the released schedule;
* ``protocol``: ContrastLandmarks' released schedule, a 200-epoch cosine stopped at the epoch
  its README reports per set (MAFL 120, AFLW 45, 300-W 80), as the recipe runs at full scale;
* ``half``: the small budget on maps bilinearly resized to half the input's resolution (32 x 32
  for 64-px faces, instead of the network's 16 x 16), the ratio of ContrastLandmarks'
  ``eval_face.py``, which regresses from hypercolumns resized to ``output_shape`` 48 x 48 for its
  96-px crops. At 16 x 16 a cell of the map is 4 px, a fifth of the MAFL role's inter-ocular
  distance, and the soft-argmax of the regressor's randomly initialised filters is nearly a hard
  argmax (the softmax multiplier is 100).
* ``norm=N``: the released schedule on maps multiplied by one number per row, chosen so that
  their mean L2 norm per map cell over the training faces is ``N``
  (:func:`ssl_lab.regression.mean_norm`). A 1x1 filter can absorb any such number exactly
  (filters divided by it give the same heat maps), so the maps hold the same information at
  every ``N``; what changes is where the randomly initialised filters start (their responses
  scale with the norm and go through a softmax with a multiplier of 100) and so what Adam's
  steps can reach. The rows' own maps differ in norm by two orders of magnitude (CL's projector
  ends in a spatial softmax, LEAD's and DVE's FPN in a free 1x1 convolution, the hypercolumn is
  normalised per stage), and the released protocol feeds each one as it comes. ``--rows``
  picks the feature rows (:data:`ssl_lab.regression.FEATURES`).

``--annotations N --draws D...``: the same variants on ``N`` annotated training faces, by the
limited-annotation protocol of Table 3.5 (:func:`ssl_lab.regression.fit_few`, the
``lead/regressor-few`` recipe's optimiser; the faces of :func:`ssl_lab.regression.annotated_subset`),
once per draw; the yardstick is the mean shape of the same faces, and ``train`` is the error on them.

Everything else is the recipe's (:mod:`ssl_lab.nets.regressor` says what came from where)::

    python data_scripts/regressor_budget.py mafl aflw_m                       # small + protocol, ~25 min, 1 core
    python data_scripts/regressor_budget.py mafl --variants half --tag half   # ~8 min
    python data_scripts/regressor_budget.py aflw_m --rows "LEAD / 64" "CL / 64" "DVE / 64" \
        --variants protocol norm=0.1 norm=1 norm=10 --tag feature-scale       # ~25 min
    python data_scripts/regressor_budget.py aflw_m --rows "LEAD / 64" "CL / 64" --annotations 100 \
        --draws 0 1 2 --variants protocol norm=0.1 --tag feature-scale-few100  # ~25 min
    for n in 1 5 10 20 50 100; do python data_scripts/regressor_budget.py aflw_m --rows "DVE / 64" \
        --annotations $n --draws 0 1 2 3 4 --variants protocol --tag few-dve64-$n; done  # Table 3.5's DVE-64 row, ~51 min
    for n in 1 5 10 20 50 100; do python data_scripts/regressor_budget.py aflw_m --rows "LEAD / 128" \
        --annotations $n --draws 0 1 2 3 4 --variants protocol --tag few-lead128-$n; done  # its LEAD-128 row, ~45 min
    # CL-128, CL-256, LEAD-256 the same way (tags few-cl128-N, few-cl256-N, few-lead256-N): 53, 66, 76 min (two side by side);
    # the hypercolumn rows ("BYOL hypercolumn" few-byolhc-N, "MoCo hypercolumn" few-mocohc-N): 960 channels,
    # 325-380 s a fit, 91 min a row with two side by side (maps: about 4 min and 6 GB per run)
    # -> results/lead/regressor-budget/small-seed0[-TAG].json

The fitted regressors are not kept: the record holds what the regression chapter shows.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ssl_lab import results, zoo
from ssl_lab.data import splits
from ssl_lab.metrics.landmarks import iod_error, standard_error
from ssl_lab.nets.backbones import dense_maps
from ssl_lab.nets.regressor import fit_regressor, predict
from ssl_lab.regression import (FEATURES, FULL_EPOCHS, SCALED_TO, annotated_subset, budget_key, dense_features,
                                fit_few, mean_norm, mean_shape_error)

SCALE, SEED, ROW = "small", 0, "LEAD / 64"
#: the mean map norms of the ``norm=N`` variants
NORMS = (0.01, 0.1, 1, 10)
#: the small scale's regressor budget before this study replaced it with the released schedule
OLD_SMALL_EPOCHS = 20


def variants(set_name: str) -> dict[str, tuple[str, int, int, int, float | None]]:
    """name -> (label, epochs, cosine schedule length, map upsampling factor, mean map norm or
    None for the maps as they come)."""
    small, full = OLD_SMALL_EPOCHS, FULL_EPOCHS[set_name]
    return {"small": (f"small ({small} of {small} epochs)", small, small, 1, None),
            "protocol": (f"protocol ({full} of 200 epochs)", full, 200, 1, None),
            "half": (f"small ({small} of {small} epochs), maps at input / 2", small, small, 2, None),
            **{f"norm={n:g}": (f"protocol ({full} of 200 epochs), {SCALED_TO}{n:g}", full, 200, 1, n)
               for n in NORMS}}


def study(set_name: str, names, row_names=(ROW,)) -> dict:
    cfg = zoo.config("lead/regressor", SCALE)
    train, test = splits.load(f"{set_name}/train", SCALE), splits.load(f"{set_name}/test", SCALE)
    size = tuple(train.data["image"].shape[-2:])
    resized = lambda f, k: f if k == 1 else F.interpolate(f.float(), scale_factor=k, mode="bilinear",
                                                          align_corners=False).half()
    rows = {budget_key(set_name, "mean shape"): {
        "train": mean_shape_error(train.landmarks, train.landmarks, train.visible, train.visible),
        "test": mean_shape_error(train.landmarks, test.landmarks, train.visible, test.visible)}}
    for row_name in row_names:
        feats, own = _maps(row_name, train, test)
        for name in names:
            label, epochs, schedule, up, norm = variants(set_name)[name]
            factor = 1.0 if norm is None else norm / own     # one number for both splits
            maps = {part: resized(f, up) if norm is None else (f.float() * factor).half() for part, f in feats.items()}
            t0 = time.perf_counter()
            reg, hist = fit_regressor(maps["train"], train.landmarks, size, visible=train.visible, epochs=epochs,
                                      schedule_epochs=schedule, batch_size=cfg["batch_size"], lr=cfg["lr"],
                                      weight_decay=cfg["weight_decay"], seed=SEED)
            wall = time.perf_counter() - t0
            (tr, _), (te, se) = (_error(reg, maps[part], s.landmarks, s.visible, size)
                                 for part, s in (("train", train), ("test", test)))
            key = budget_key(set_name, row_name, label)
            rows[key] = {"train": tr, "test": te, "test s.e.": se, "mean norm": own * factor,
                         "final loss": hist["loss"][-1], "fit s": round(wall, 1)}
            print(key, {k: round(v, 3) for k, v in rows[key].items()}, flush=True)
    return {k: {c: round(float(v), 4) for c, v in r.items()} for k, r in rows.items()}


def _maps(row_name, train, test) -> tuple[dict, float]:
    """The frozen maps of feature row ``row_name`` on both splits, and their mean cell norm over
    the training faces."""
    fn = dense_features(row_name, SCALE, seed=SEED)
    with torch.no_grad():
        feats = {"train": dense_maps(fn, train.data["image"]), "test": dense_maps(fn, test.data["image"])}
    return feats, mean_norm(feats["train"])


def _error(reg, maps, landmarks, visible, size) -> tuple[float, float]:
    """The regressor's % IOD error on these faces and its standard error over them."""
    mean, each = iod_error(predict(reg, maps, size), landmarks, visible=visible, per_image=True)
    return mean, standard_error(each)


def few_study(set_name: str, names, row_names, annotations: int, draws) -> dict:
    """:func:`study` on ``annotations`` faces per draw, by the limited-annotation protocol."""
    cfg = {**zoo.config("lead/regressor-few", SCALE), "set": set_name, "annotations": annotations}
    train, test = splits.load(f"{set_name}/train", SCALE), splits.load(f"{set_name}/test", SCALE)
    size = tuple(train.data["image"].shape[-2:])
    picks = {d: annotated_subset(len(train), annotations, d) for d in draws}
    rows = {budget_key(set_name, "mean shape", None, annotations, d):
            {"train": mean_shape_error(train.landmarks[p], train.landmarks[p], train.visible[p], train.visible[p]),
             "test": mean_shape_error(train.landmarks[p], test.landmarks, train.visible[p], test.visible)}
            for d, p in picks.items()}
    for row_name in row_names:
        feats, own = _maps(row_name, train, test)
        for name in names:
            norm = variants(set_name)[name][4]
            if name != "protocol" and norm is None:
                raise ValueError(f"--annotations takes the variants protocol and norm=N, not {name!r}")
            factor = 1.0 if norm is None else norm / own
            maps = {part: (f.float() * factor).half() for part, f in feats.items()}
            label = f"few-annotation protocol ({cfg['epochs']} epochs)" + ("" if norm is None else
                                                                         f", {SCALED_TO}{norm:g}")
            for d, pick in picks.items():
                t0 = time.perf_counter()
                reg, hist = fit_few(maps["train"][pick], train, pick, {**cfg, "draw": d})
                wall = time.perf_counter() - t0
                tr, _ = _error(reg, maps["train"][pick], train.landmarks[pick], train.visible[pick], size)
                te, se = _error(reg, maps["test"], test.landmarks, test.visible, size)
                key = budget_key(set_name, row_name, label, annotations, d)
                rows[key] = {"train": tr, "test": te, "test s.e.": se, "mean norm": own * factor,
                             "final loss": hist["loss"][-1], "fit s": round(wall, 1)}
                print(key, {k: round(v, 3) for k, v in rows[key].items()}, flush=True)
    return {k: {c: round(float(v), 4) for c, v in r.items()} for k, r in rows.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", choices=sorted(FULL_EPOCHS))
    p.add_argument("--variants", nargs="+", default=["small", "protocol"], choices=sorted(variants("mafl")))
    p.add_argument("--rows", nargs="+", default=[ROW], choices=sorted(FEATURES), help="feature rows")
    p.add_argument("--annotations", type=int, default=None, help="annotated training faces (Table 3.5's protocol)")
    p.add_argument("--draws", nargs="+", type=int, default=[0], help="draws of the annotated faces")
    p.add_argument("--tag", default="", help="suffix of the record's file name")
    args = p.parse_args()
    t0 = time.perf_counter()
    run = (lambda s: study(s, args.variants, args.rows)) if args.annotations is None else (
        lambda s: few_study(s, args.variants, args.rows, args.annotations, args.draws))
    rows = {key: cols for s in args.sets for key, cols in run(s).items()}
    tag = f"seed{SEED}" + (f"-{args.tag}" if args.tag else "")
    rec = results.make_record("lead/regressor-budget", SCALE, "regressor-budget", rows, tag=tag,
                              device="cpu", seeds=[SEED], wall_time_s=time.perf_counter() - t0,
                              parameters=dict(features=args.rows if args.rows != [ROW] else ROW,
                                              threads=torch.get_num_threads(), annotations=args.annotations,
                                              draws=args.draws if args.annotations else None))
    print("recorded", results.save(rec))


if __name__ == "__main__":
    main()
