"""Command line: ``python -m ssl_lab {train,zoo,bench,curve,run,plan,results,splits} ...``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parse_sets(sets) -> dict:
    """``["feat_dim=128", "features=ViT DINO"]`` -> ``{"feat_dim": 128, "features": "ViT DINO"}``."""
    import ast
    out = {}
    for item in sets or ():
        k, sep, v = item.partition("=")
        if not sep:
            sys.exit(f"--set needs KEY=VALUE, got {item!r}")
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def _cmd_train(a):
    from . import distributed, zoo
    distributed.init()                           # under torchrun: join its process group
    device = str(distributed.device(a.device))   # "cuda" -> cuda:LOCAL_RANK there
    if a.data_root:
        os.environ["SSL_LAB_DATA"] = a.data_root
    overrides = _parse_sets(a.set)
    try:
        if a.ship:                               # ship trains first if nothing is cached
            path = zoo.ship(a.recipe, a.scale, a.seed, device=device, **overrides)
            what = f"shipped {a.recipe} at scale {a.scale}, seed {a.seed}: {path}"
        else:
            path = zoo.train(a.recipe, a.scale, device=device, seed=a.seed, **overrides)
            what = f"trained {a.recipe} at scale {a.scale}: {path}"
        if distributed.is_main():
            print(what)
    finally:
        distributed.cleanup()


def _cmd_bench(a):
    from .benchmark import bench
    sets = _parse_sets(a.set)
    for name in a.recipe:
        r = bench(name, a.scale, steps=a.steps, seed=a.seed, device=a.device, **sets)
        print("  ".join(f"{k}={v}" for k, v in r.items()), flush=True)
        if a.record:                  # results/bench/<recipe>/<scale>-<tag>.json, for the chapters
            from . import results
            label = ", ".join(f"{k}={v}" for k, v in sets.items()) or "recipe config"
            rec = results.make_record(f"bench/{name}", a.scale, "bench", {label: r}, tag=a.record,
                                      device=a.device, seeds=[a.seed], parameters=dict(steps=a.steps, **sets))
            print("recorded", results.save(rec))


def _cmd_curve(a):
    from .learning_curve import stage1_curve
    out = stage1_curve(a.recipe, a.scale, seed=a.seed, device=a.device)
    import pandas as pd
    print(pd.DataFrame(out["rows"]).T.to_string())
    print("recorded", out["path"])


def _cmd_zoo(a):
    from . import recipes, zoo
    needed = [] if a.scale == "full" else recipes.book_artefacts(a.scale)   # None: each chapter's default
    if a.make:
        for name, scale, seed, ov in needed:
            if zoo.shipped_manifest(name, scale, seed, **ov) is None:
                print("making", zoo.train_command(name, scale, seed, **ov), flush=True)
                zoo.ship(name, scale, seed, device=a.device, **ov)
    rows = zoo.listing(needed)
    if not rows:
        print(f"nothing shipped in {zoo.zoo_dir()}")
        return
    import pandas as pd
    frame = pd.DataFrame(rows)
    print(frame.drop(columns=["command"]).to_string(index=False))
    total = sum(r["MB"] or 0 for r in rows)
    print(f"\nshipped zoo {zoo.zoo_dir()}: {total:.1f} MB")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['recipe']} {r['slot']}: {r['status']}; remake: {r['command']}")


def _cmd_plan(a):
    from . import recipes
    chapter = chapter_notebook(a.chapter).resolve()
    name = chapter.relative_to(chapter.parents[1]).with_suffix("").as_posix()   # e.g. lead/matching
    print(f"# {name} at scale {a.scale}: what it loads, in training order, then the chapter")
    print("\n".join(recipes.training_plan(name, a.scale, gpus=a.gpus, device=a.device,
                                          data_root=a.data_root or "DATA", seed=a.seed)))


def chapter_notebook(name: str) -> Path:
    """A chapter given as a notebook path or by its name under ``book/`` (``lead/matching``)."""
    from .paths import repo_root
    for nb in (Path(name), repo_root() / "book" / f"{name.removesuffix('.ipynb')}.ipynb"):
        if nb.is_file():
            return nb
    sys.exit(f"no such chapter: {name} (a notebook path, or a name under book/ such as lead/matching)")


def _cmd_run(a):
    """Checks what the run needs before any cell executes: the chapter, at full scale a data root
    that exists, and ``--zoo`` (a folder of full-scale artefacts trained with ``train ... --ship``
    elsewhere, read through ``SSL_LAB_ZOO`` instead of ``results/zoo``)."""
    import papermill as pm
    nb = chapter_notebook(a.notebook)
    if a.scale == "full" and not (a.data_root and Path(a.data_root).is_dir()):
        sys.exit(f"--scale full reads the real data sets: --data-root {a.data_root or 'DIR'} is not a "
                 "folder (see book/foundations/full_scale.md for how to prepare it)")
    if a.zoo:
        if not Path(a.zoo).is_dir():
            sys.exit(f"--zoo {a.zoo} is not a folder")
        os.environ["SSL_LAB_ZOO"] = str(Path(a.zoo).resolve())      # the kernel inherits it
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
    t = sub.add_parser(
        "train", parents=[common], help="train a zoo recipe and cache it (on N GPUs: torchrun)",
        description="Train a zoo recipe and cache it. On several GPUs (or CPU processes) run it "
                    "under torchrun, e.g. `torchrun --nproc_per_node N -m ssl_lab train RECIPE "
                    "--scale full --device cuda --data-root DATA`: the SSL recipes (LEAD stage 1 "
                    "BYOL / MoCo, stage 2; DistributedDataParallel, batch_size the global batch, "
                    "a multiple of N) and the StyleGAN2-ADA training of hsr/warmup and hsr/branch "
                    "(gradients averaged over the processes; batch the global batch, a multiple "
                    "of N x the minibatch-std group; a branch's warm-up and feature network are "
                    "not: train those first) then train data-parallel and only rank 0 writes. "
                    "Other recipes run in one process; under torchrun they stop before training "
                    "(each process would train the whole recipe).")
    t.add_argument("recipe")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--ship", action="store_true",
                   help="then write it, compact and with its manifest, to the shipped zoo (results/zoo)")
    t.set_defaults(fn=_cmd_train)
    b = sub.add_parser("bench", parents=[common], help="images/s and FLOP utilisation of recipes")
    b.add_argument("recipe", nargs="+")
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    b.add_argument("--record", metavar="TAG", help="also record the result as results/bench/RECIPE/SCALE-TAG.json")
    b.set_defaults(fn=_cmd_bench)
    c = sub.add_parser("curve", parents=[common], help="matching error over a stage-1 training (its snapshots)")
    c.add_argument("recipe")
    c.set_defaults(fn=_cmd_curve)
    z = sub.add_parser("zoo", parents=[common], help="list the shipped zoo: ok, stale, corrupt, missing")
    z.add_argument("--make", action="store_true",
                   help="train (or take from the cache) and ship what the book needs: each chapter's "
                        "artefacts at its default scale, or at --scale")
    z.set_defaults(fn=_cmd_zoo, scale=None)
    r = sub.add_parser("run", parents=[common], help="execute a chapter with papermill")
    r.add_argument("notebook", help="a notebook path, or a chapter under book/ (lead/matching)")
    r.add_argument("--out", default=None)
    r.add_argument("--zoo", default=None, help="read shipped artefacts from this folder (SSL_LAB_ZOO)")
    r.set_defaults(fn=_cmd_run)
    pl = sub.add_parser("plan", parents=[common], help="print the commands that train what a chapter loads, then run it",
                        description="Print, for a chapter at --scale, one `train` command per artefact it "
                                    "loads (teachers and warm-ups first; data-parallel recipes under torchrun "
                                    "when --gpus > 1), the weights files it reads, and the `run` command.")
    pl.add_argument("chapter", help="a chapter under book/ (lead/matching) or its notebook path")
    pl.add_argument("--gpus", type=int, default=1, help="processes per node for the data-parallel recipes")
    pl.set_defaults(fn=_cmd_plan)
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
