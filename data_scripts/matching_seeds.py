"""Table 3.1's LEAD rows over training seeds: the BYOL teacher's hypercolumn ("LEAD / 3840"),
MoCo's ("CL / 3840") and LEAD-64 distilled from the BYOL of the same seed, evaluated at each seed
as the matching chapter evaluates them, with gate S2 per seed
(:func:`ssl_lab.learning_curve.seed_study`)::

    python data_scripts/matching_seeds.py --seeds 0 2
    python data_scripts/matching_seeds.py --seeds 2 --rows "LEAD / 3840" "LEAD / 64"

Seed 0 is the shipped zoo's; other seeds are read from the local cache, or trained into it
when missing (``python -m ssl_lab train lead/stage1-byol --scale small --seed 2``, then
``lead/stage2-lead``: 34 and 8.5 min on one core of an AMX CPU, measured). Writes
``results/lead/matching-seeds/<scale>-seed<N>.json``; the matching chapter shows the records.
"""
from __future__ import annotations

import argparse

import _common  # noqa: F401  (this checkout's ssl_lab)
from ssl_lab.learning_curve import SEED_ROWS, seed_study


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", nargs="+", default=list(SEED_ROWS), choices=list(SEED_ROWS))
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    for seed in a.seeds:
        out = seed_study(a.scale, seed, rows=a.rows, device=a.device)
        for name, row in out["rows"].items():
            print(f"seed {seed}  {name:24s} different {row['Different']:6.2f} px  same {row['Same']:5.2f} px")
        for g in out["gates"]:
            print(f"seed {seed}  gate {g['gate']}: {g['value']} <= {g['bound']}: {'passed' if g['passed'] else 'FAILED'}")
        print("recorded", out["path"])


if __name__ == "__main__":
    main()
