"""What limits LEAD's stage 2 at small scale: its optimiser and the depth of its encoder.

LEAD-64 (C = 64, projection head 256, seed 0) trained from the shipped small BYOL on the same
data, with the small recipe's budget (1500 steps of 64 crops of 48 px), four ways:

* ``shipped``: the shipped ``lead/stage2-lead``, labelled by its manifest (the record of
  2026-12-04 holds the network shipped until then: PyTorch Adam's coupled weight decay 1e-4,
  encoder stages 1-4, bf16 autocast, trained on an AMX CPU; the recipe has since switched to
  ``dve-3``'s optimiser and depth);
* ``wd``: the same in float32 (weight decay 1e-4, stages 1-4);
* ``dve``: DVE's released optimiser (jamt9000/DVE ``configs/celeba/*.json``: no weight decay,
  amsgrad), stages 1-4, float32;
* ``dve-3``: DVE's optimiser, encoder stages 1-3 (stage 4 holds 75 % of a ResNet-18's
  weights, which the shipped zoo's 100 MB budget cannot hold for Table 3.1's and 3.3's
  networks), float32.

Float32, because on a CPU without AVX-512 BF16 or AMX, bf16 autocast made a stage-2 step ten
times slower (4.8 against 50.7 images/s on one AVX2 core). Each variant is evaluated as the
matching chapter evaluates (DVE's ``test_matching.py`` protocol on the MAFL-role test split,
float64, with standard errors over the 500 pairs) and with :func:`ssl_lab.ssl.lead.encoder_drift`
(how much of the BYOL initialisation each encoder stage kept)::

    python data_scripts/stage2_ablation.py train dve      # one variant per process (~35 min, 1 core)
    python data_scripts/stage2_ablation.py record         # -> results/lead/stage2-ablation/small-seed0.json

The trained variants are kept in ``$SSL_LAB_HOME/stage2-ablation/`` (not shipped); the record
holds what the matching chapter shows.
"""
from __future__ import annotations

import time

import torch

from _common import variant_cli
from ssl_lab import paths, results, scales, zoo
from ssl_lab.data import splits
from ssl_lab.metrics.landmarks import matching_row, matching_views
from ssl_lab.recipes import pretraining_images
from ssl_lab.ssl.lead import encoder_drift, train_stage2

FP32 = dict(amp=False, channels_last=False)
VARIANTS = {"wd": dict(weight_decay=1e-4, amsgrad=False, stages=4, **FP32),
            "dve": dict(weight_decay=0.0, amsgrad=True, stages=4, **FP32),
            "dve-3": dict(weight_decay=0.0, amsgrad=True, stages=3, **FP32)}
LABELS = {"wd": "weight decay 1e-4, stages 1-4", "dve": "DVE's Adam, stages 1-4",
          "dve-3": "DVE's Adam, stages 1-3"}
SCALE, SEED = "small", 0


def _file(variant: str):
    return paths.home() / "stage2-ablation" / f"{variant}.pt"


def train(variant: str) -> None:
    cfg = zoo.config("lead/stage2-lead", SCALE)
    images = pretraining_images(SCALE, cfg["n"], cfg["render"])
    teacher = zoo.get("lead/stage1-byol", SCALE, seed=SEED)
    run = {k: v for k, v in cfg.items() if k not in ("scale", "n", "render")} | VARIANTS[variant]
    art = train_stage2("lead", images, teacher, run, seed=SEED)
    art.update(teacher=dict(recipe="lead/stage1-byol", scale=SCALE, seed=SEED), variant=variant)
    print(variant, "trained in", round(art["wall_s"]), "s,", round(art["images_per_s"], 1), "images/s")
    paths.atomic_save(art, _file(variant))


def _shipped_label(art: dict) -> str:
    cfg = art["config"]
    opt = "DVE's Adam" if cfg.get("weight_decay", 1e-4) == 0 and cfg.get("amsgrad") else \
        f"weight decay {cfg.get('weight_decay', 1e-4):g}"
    return f"{opt}, stages 1-{cfg.get('stages', 4)}, {art.get('precision', 'precision not recorded')} (shipped)"


def record() -> None:
    t0 = time.perf_counter()
    sc = scales.get(SCALE)
    teacher = zoo.get("lead/stage1-byol", SCALE, seed=SEED).double()
    test = splits.load("mafl/test", SCALE)
    new_pose = splits.matching_pairs(test, sc.pairs, same=True, seed=SEED)
    views = matching_views(test.data["image"], test.landmarks, sc.pairs, SEED, identity=test.data["identity"])
    evaluate = lambda f: matching_row(f, test.data["image"], test.landmarks, test.visible, new_pose, sc.pairs,
                                      SEED, identity=test.data["identity"], se=True, views=views)
    arts = {"shipped": zoo.load("lead/stage2-lead", SCALE, seed=SEED)}
    arts.update({v: torch.load(_file(v), weights_only=False) for v in VARIANTS if _file(v).exists()})
    rows = {}
    for v, art in arts.items():
        net = zoo.recipe("lead/stage2-lead").build(art, "cpu").double().eval()
        with torch.no_grad():
            row = evaluate(lambda x, net=net: net(x))
        for stage, d in encoder_drift(net, teacher).items():
            row[f"{stage} cosine"], row[f"{stage} norm ratio"] = round(d["cosine"], 3), round(d["norm ratio"], 3)
        wall = art.get("wall_s") or zoo.info("lead/stage2-lead", SCALE, seed=SEED)["wall_time_s"]
        row.update({"train s": round(wall), "images/s": round(art["images_per_s"], 1),
                    "weights (M)": round(sum(p.numel() for p in net.parameters()) / 1e6, 2)})
        label = LABELS[v] if v != "shipped" else _shipped_label(art)
        rows[label] = row
        print(label, row, flush=True)
    with torch.no_grad():
        rows["BYOL hypercolumn (the teacher)"] = evaluate(lambda x: teacher.hypercolumn(x))
    rec = results.make_record("lead/stage2-ablation", SCALE, "stage2-ablation", rows, tag=f"seed{SEED}",
                              device="cpu", seeds=[SEED], wall_time_s=time.perf_counter() - t0,
                              parameters=dict(pairs=sc.pairs, protocol="DVE test_matching.py, float64",
                                              variants={LABELS[k]: v for k, v in VARIANTS.items()},
                                              command="python data_scripts/stage2_ablation.py train VARIANT; ... record"))
    print("recorded", results.save(rec))


if __name__ == "__main__":
    variant_cli(__doc__, VARIANTS, train, record)
