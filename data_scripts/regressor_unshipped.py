"""Table 3.2's regressors that the shipped zoo has no room for, trained here and recorded.

The regression chapter evaluates shipped regressors. One of its cells cannot be shipped: the
random-init hypercolumn's 68-point regressor on 300-W (960 x 3,400 filters, 3.3 M weights,
6.5 MB as float16, where the zoo is bound to 100 MB). Without it 300-W's gate R compares
LEAD-64 with the mean shape alone. This script trains such a regressor by the zoo recipe
(``lead/regressor``, the same protocol and seed as the shipped ones, into ``$SSL_LAB_HOME``),
evaluates it on the test faces, and on its own training faces, with the chapter's own function
(:func:`ssl_lab.regression.regression_error`) and writes one record, which the chapter shows
in its table, marked as recorded::

    OMP_NUM_THREADS=2 python -m ssl_lab train lead/regressor --scale small \\
        --set "features=random hypercolumn" --set set=300w    # 67 min on 2 AMX cores, ~4 h on 2 without
    python data_scripts/regressor_unshipped.py "random hypercolumn" 300w
    # -> results/lead/regressor-unshipped/small-seed0-random-hypercolumn-300w.json

Run without the ``train`` line, it trains the regressor itself (unless ``SSL_LAB_TRAIN=never``).
The same script records 300-W's diagnostic rows (the trained BYOL hypercolumn at 960-d, the
random-init one projected to 64-d) and, for a shipped regressor, its training-face error beside
the test error (the record's notes say which): what the chapter's *What limits 300-W* reads.
"""
from __future__ import annotations

import argparse
import re
import time

import _common  # noqa: F401  (puts this checkout's ssl_lab first on the path)
import torch

from ssl_lab import results, zoo
from ssl_lab.regression import FEATURES, FULL_EPOCHS, SETS, UNSHIPPED, feature_dim, regression_error

SCALE, SEED = "small", 0


def tag(row: str, set_name: str) -> str:
    """The record's tag: ``seed0-<row as a slug>-<set>``."""
    return f"seed{SEED}-{re.sub(r'[^a-z0-9]+', '-', row.lower()).strip('-')}-{set_name}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("row", choices=sorted(FEATURES))
    p.add_argument("set", choices=sorted(SETS.values()))
    args = p.parse_args()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = regression_error(args.row, args.set, SCALE, seed=SEED)
        fit = regression_error(args.row, args.set, SCALE, seed=SEED, part="train")    # its own training faces
    info = zoo.info("lead/regressor", SCALE, seed=SEED, features=args.row, set=args.set)
    key = zoo.key("lead/regressor", SCALE, SEED, features=args.row, set=args.set)    # the cache file's name holds it
    col = {s: c for c, s in SETS.items()}[args.set]
    shipped = zoo.shipped_manifest("lead/regressor", SCALE, SEED, features=args.row, set=args.set) is not None
    rows = {args.row: {col: round(out["iod"], 4), f"{col} s.e.": round(out["se"], 4),
                       f"{col} median": round(out["median"], 4),
                       f"{col} train": round(fit["iod"], 4), f"{col} train s.e.": round(fit["se"], 4)}}
    print(rows, flush=True)
    rec = results.make_record(
        UNSHIPPED, SCALE, "thesis-3.2", rows, tag=tag(args.row, args.set), device="cpu", seeds=[SEED],
        wall_time_s=time.perf_counter() - t0,
        parameters=dict(features=args.row, set=args.set, epochs=FULL_EPOCHS[args.set], regressor_key=key,
                        regressor_wall_time_s=info["wall_time_s"], regressor_device=info["device"],
                        regressor_commit=info.get("commit"), shipped=shipped,
                        dimensions=feature_dim(args.row, SCALE),
                        command=f'python data_scripts/regressor_unshipped.py "{args.row}" {args.set}'),
        notes=("the regressor is shipped; recorded for its error on its own training faces" if shipped else
               "the regressor is not shipped (no room in the zoo); it lives in the cache of the machine "
               "that recorded this"))
    print("recorded", results.save(rec))


if __name__ == "__main__":
    main()
