"""Command line: ``python -m ssl_lab {train,run,results,splits} ...``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _cmd_train(a):
    from . import zoo
    if a.data_root:
        os.environ["SSL_LAB_DATA"] = a.data_root
    path = zoo.train(a.recipe, a.scale, device=a.device, seed=a.seed)
    print(f"trained {a.recipe} at scale {a.scale}: {path}")


def _cmd_run(a):
    import papermill as pm
    nb = Path(a.notebook)
    if not nb.exists():
        sys.exit(f"no such notebook: {nb}")
    out = Path(a.out or Path("_runs") / f"{nb.stem}-{a.scale}-seed{a.seed}.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    params = dict(scale=a.scale, device=a.device, seed=a.seed, data_root=a.data_root or "")
    pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), progress_bar=True)
    print(f"executed {nb} -> {out}")


def _cmd_results(a):
    from . import results
    recs = results.load_all(a.chapter)
    if not recs:
        print("no recorded runs" + (f" for {a.chapter}" if a.chapter else ""))
    for r in recs:
        print(f"{r['chapter']:<28} {r['scale']:<6} {r['tag']:<12} {r['table']:<16} "
              f"{r['device']:<28} {r['date']}  {r.get('wall_time_s')} s  {r['commit']}")


def _cmd_splits(a):
    from .data import splits
    if a.render:
        for name in splits.SPECS:
            f = splits.load(name, a.scale, device=a.device, progress=True)
            print(f"{name:<22} {len(f):>6} images cached")
        return
    import pandas as pd
    print(pd.DataFrame(splits.describe(a.scale)).to_string(index=False))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ssl_lab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--scale", default="smoke", choices=["smoke", "small", "full"])
    common.add_argument("--device", default="cpu")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--data-root", default=None, help="real datasets (full scale)")
    t = sub.add_parser("train", parents=[common], help="train a zoo recipe and cache it")
    t.add_argument("recipe")
    t.set_defaults(fn=_cmd_train)
    r = sub.add_parser("run", parents=[common], help="execute a chapter with papermill")
    r.add_argument("notebook")
    r.add_argument("--out", default=None)
    r.set_defaults(fn=_cmd_run)
    s = sub.add_parser("results", help="list recorded runs in results/")
    s.add_argument("chapter", nargs="?")
    s.set_defaults(fn=_cmd_results)
    d = sub.add_parser("splits", parents=[common], help="describe (or --render) SynthFaces splits")
    d.add_argument("--render", action="store_true", help="render and cache every split")
    d.set_defaults(fn=_cmd_splits)
    a = p.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()
