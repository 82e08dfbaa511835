"""What limits LEAD's stage 2 at small scale: its optimiser and the depth of its encoder.

LEAD-64 (C = 64, projection head 256, seed 0) trained three ways on the same data from the same
BYOL teacher, evaluated as the matching chapter does (DVE's ``test_matching.py`` protocol on the
MAFL-role test split, float64, with standard errors over the 500 pairs) and with
:func:`ssl_lab.ssl.lead.encoder_drift` (how much of the BYOL initialisation each encoder stage
kept)::

    python data_scripts/stage2_ablation.py --old OLD.pt --four FOUR.pt

* ``--old``: weight decay 1e-4 (PyTorch Adam's, coupled), encoder stages 1-4: the shipped
  artefact until commit 0f8a07e (``git show 0f8a07e:results/zoo/lead/stage2-lead/small-seed0.pt
  > OLD.pt``);
* ``--four``: DVE's optimiser (no weight decay, amsgrad), stages 1-4 (``python -m ssl_lab train
  lead/stage2-lead --scale small --set stages=4``, then its file in ``$SSL_LAB_HOME/zoo/``);
* the shipped one: DVE's optimiser, stages 1-3 (the small config).

Writes ``results/lead/stage2-ablation/small-seed0.json`` (table ``stage2-ablation``), which the
matching chapter shows.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ssl_lab import results, scales, zoo
from ssl_lab.data import splits
from ssl_lab.metrics.landmarks import matching_row
from ssl_lab.ssl.lead import encoder_drift


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="LEAD-64 trained with weight decay 1e-4, stages 1-4")
    ap.add_argument("--four", required=True, help="LEAD-64 trained without weight decay, stages 1-4")
    a = ap.parse_args()
    t0 = time.perf_counter()
    scale, seed = "small", 0
    sc = scales.get(scale)
    teacher = zoo.get("lead/stage1-byol", scale, seed=seed)
    test = splits.load("mafl/test", scale)
    new_pose = splits.matching_pairs(test, sc.pairs, same=True, seed=seed)
    nets = {"weight decay 1e-4, stages 1-4": (zoo.get("lead/stage2-lead", scale, checkpoint=a.old), a.old),
            "no weight decay, stages 1-4": (zoo.get("lead/stage2-lead", scale, checkpoint=a.four), a.four),
            "no weight decay, stages 1-3 (shipped)": (zoo.get("lead/stage2-lead", scale, seed=seed), None)}
    rows = {}
    for name, (net, path) in nets.items():
        net = net.double().eval()
        with torch.no_grad():
            row = matching_row(lambda x, net=net: net(x), test.data["image"], test.landmarks, test.visible,
                               new_pose, sc.pairs, seed, identity=test.data["identity"], se=True)
        drift = encoder_drift(net, teacher)
        row.update({f"{k} cosine": round(v["cosine"], 3) for k, v in drift.items()})
        row.update({f"{k} norm ratio": round(v["norm ratio"], 3) for k, v in drift.items()})
        meta = (json.loads(Path(path).with_suffix(".json").read_text()) if path and Path(path).with_suffix(".json").exists()
                else zoo.info("lead/stage2-lead", scale, seed=seed))
        row["train s"] = meta.get("wall_time_s") if meta else None
        row["bytes (int8)"] = None if path else zoo.info("lead/stage2-lead", scale, seed=seed)["bytes"]
        rows[name] = row
        print(name, row, flush=True)
    with torch.no_grad():
        rows["BYOL hypercolumn (the teacher)"] = matching_row(
            lambda x: teacher.double().hypercolumn(x), test.data["image"], test.landmarks, test.visible,
            new_pose, sc.pairs, seed, identity=test.data["identity"], se=True)
    rec = results.make_record("lead/stage2-ablation", scale, "stage2-ablation", rows, tag=f"seed{seed}",
                              device="cpu", seeds=[seed], wall_time_s=time.perf_counter() - t0,
                              parameters=dict(pairs=sc.pairs, protocol="DVE test_matching.py, float64",
                                              old="git show 0f8a07e:results/zoo/lead/stage2-lead/small-seed0.pt",
                                              four="python -m ssl_lab train lead/stage2-lead --scale small --set stages=4"))
    print("recorded", results.save(rec))


if __name__ == "__main__":
    main()
