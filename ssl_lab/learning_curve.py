"""When does correspondence emerge, and how much does it vary? Matching error of a stage-1
network over its training, and of the LEAD networks over training seeds.

``python -m ssl_lab curve lead/stage1-byol --scale small --seed 0`` evaluates the snapshots a
training kept (:func:`ssl_lab.ssl.train.train_ssl` with ``snapshots``; they live in the local
cache, not in the shipped zoo), with the random initialisation as step 0, under the
correspondence chapter's protocol (:func:`ssl_lab.metrics.landmarks.matching_row`, hypercolumns
matched as in float64: ``fast``), and records them in ``results/lead/learning-curve/<scale>-<recipe>-seed<N>.json``
with the yardsticks and the stage-1 gates (:mod:`ssl_lab.gates`) at every point. The
correspondence chapter plots that record; it never trains.

Where does the network learn? Each point also holds the different-identity error of each
stage of the hypercolumn alone (``"levels"``: ``{"layer1": px, ..., "layer4": px}``, the
level's map resized to the stride-4 grid and matched the same way), in float32: a
diagnostic, not a table entry.

Over seeds: ``python data_scripts/matching_seeds.py --seeds 0 2`` (:func:`seed_study`) evaluates the
networks of :data:`SEED_ROWS` trained with each seed (the BYOL teacher's hypercolumn, MoCo's, and
LEAD-64 distilled from the BYOL of the same seed) exactly as the matching chapter's Table 3.1 does,
with gate S2 per seed, and records ``results/lead/matching-seeds/<scale>-seed<N>.json``; seeds
other than 0 are trained into the local cache, not shipped (the zoo's 100 MB hold one seed).
"""
from __future__ import annotations

import copy
import time

import torch

from . import gates, results, scales, zoo
from .data import splits
from .metrics.landmarks import DualPrecision, dve_matching, dve_order, matching_row, matching_views, pixel_patches
from .nets.backbones import STAGES, Backbone


def level_errors(net: Backbone, images: torch.Tensor, landmarks: torch.Tensor, identity: torch.Tensor,
                 pairs: int, seed: int = 0, device="cpu") -> dict:
    """DVE different-identity error (px at 70) of each hypercolumn stage alone, in float32
    (on a float32 copy of ``net``)."""
    order = dve_order(identity, pairs)
    net32 = copy.deepcopy(net).float()
    out = {}
    for level in STAGES:
        f = lambda x: net32.hypercolumn(x.to(device), levels=(level,)).cpu()
        d = dve_matching(f, images[order], landmarks[order], seed=seed, dtype=torch.float32,
                         identity=identity[order])
        out[f"layer{level}"] = round(d["different_px70"], 2)
    return out


def mafl_matcher(scale: str, seed: int = 0, se: bool = False, fast: bool = True):
    """The matching chapters' protocol on the MAFL-role test split at ``scale``, pairs and warps
    drawn with ``seed`` (warped once): returns ``(test, row)``, where ``row(descriptor)`` is
    :func:`~ssl_lab.metrics.landmarks.matching_row` of a descriptor function (``None``: copying
    positions), ``se`` adds its standard errors over pairs. ``fast`` (float32, float64 near ties)
    needs a descriptor that computes in its input's dtype (a network in
    :class:`~ssl_lab.metrics.landmarks.DualPrecision`); without it, the descriptor gets float64."""
    sc = scales.get(scale)
    test = splits.load("mafl/test", scale)
    new_pose = splits.matching_pairs(test, sc.pairs, same=True, seed=seed)
    views = matching_views(test.data["image"], test.landmarks, sc.pairs, seed, identity=test.data["identity"])
    row = lambda f: matching_row(f, test.data["image"], test.landmarks, test.visible, new_pose, sc.pairs, seed,
                                 identity=test.data["identity"], se=se, views=views, fast=fast)
    return test, row


def stage1_curve(name: str, scale: str = "small", seed: int = 0, device="cpu", record: bool = True) -> dict:
    t0 = time.perf_counter()
    art = torch.load(zoo.cache_path(name, scale, seed), map_location="cpu", weights_only=False)
    if not art.get("snapshots"):
        raise ValueError(f"the cached {name} ({scale}, seed {seed}) kept no snapshots; retrain it with "
                         f"`python -m ssl_lab train {name} --scale {scale} --seed {seed}`")
    sc = scales.get(scale)
    test, row = mafl_matcher(scale, seed)
    torch.manual_seed(seed)                                       # the run's own initialisation
    net = Backbone(art["backbone"]).double().eval()
    steps = {0: {k: v.clone() for k, v in net.state_dict().items()}, **art["snapshots"]}
    rows = {}
    with torch.no_grad():
        for step, sd in sorted(steps.items()):
            net.load_state_dict(sd)
            rows[f"step {step}"] = row(DualPrecision(net.hypercolumn, device))
            rows[f"step {step}"]["levels"] = level_errors(net, test.data["image"], test.landmarks,
                                                          test.data["identity"], sc.pairs, seed, device)
        rows["no features"], rows["7x7 pixel patches"] = row(None), row(pixel_patches)
    label = {"lead/stage1-byol": "BYOL", "lead/stage1-moco": "MoCo"}.get(name, name)
    for step in steps:
        table = {label: rows[f"step {step}"], "random": rows["step 0"],
                 "no features": rows["no features"], "7x7 pixel patches": rows["7x7 pixel patches"]}
        rows[f"step {step}"]["gates passed"] = all(g["passed"] for g in gates.stage1(table))
    out = dict(rows=rows, images_seen={f"step {s}": s * art["config"]["batch_size"] for s in steps})
    if record:
        rec = results.make_record("lead/learning-curve", scale, "thesis-fig-3.3-curve", rows,
                                  tag=f"{name.split('/')[-1]}-seed{seed}", device=device, seeds=[seed],
                                  wall_time_s=time.perf_counter() - t0,
                                  parameters=dict(recipe=name, config=art["config"], pairs=sc.pairs,
                                                  protocol="DVE test_matching.py (+ same identity, new pose)",
                                                  train_wall_s=art.get("wall_s"), images_per_s=art.get("images_per_s")))
        out["path"] = str(results.save(rec))
    return out


def last_step(record: dict) -> str:
    """The row name of a curve record's last snapshot (``"step 4000"``)."""
    return max((r for r in record["rows"] if r.startswith("step ")), key=lambda r: int(r.split()[1]))


def seed_summary(records, columns=("Different", "Same", "same identity, new pose / % IOD")) -> dict:
    """The end of each recipe's curves over its recorded seeds: ``{recipe: {"seeds", "steps",
    "values": {column: [one per seed]}, "mean": {column: v}, "std": {column: v}}}``
    (``std``: sample standard deviation, NaN for one seed). Records of one recipe with
    different budgets (steps) are a ``ValueError``: they are different experiments."""
    out = {}
    for rec in sorted(records, key=lambda r: r["seeds"][0]):
        name, last = rec["parameters"]["recipe"], last_step(rec)
        steps = int(last.split()[1])
        entry = out.setdefault(name, dict(seeds=[], steps=steps, values={c: [] for c in columns}))
        if entry["steps"] != steps:
            raise ValueError(f"{name}: curves of {entry['steps']} and {steps} steps are different budgets")
        entry["seeds"].append(rec["seeds"][0])
        for c in columns:
            entry["values"][c].append(float(rec["rows"][last][c]))
    for entry in out.values():
        vals = {c: torch.tensor(v, dtype=torch.float64) for c, v in entry["values"].items()}
        entry["mean"] = {c: v.mean().item() for c, v in vals.items()}
        entry["std"] = {c: v.std().item() if len(v) > 1 else float("nan") for c, v in vals.items()}
    return out


#: Table 3.1's rows that the seed study trains and evaluates at each seed:
#: ``row -> (recipe, overrides, descriptor)``, the descriptor being the network's hypercolumn or its output
SEED_ROWS = {"LEAD / 3840": ("lead/stage1-byol", {}, "hypercolumn"),
             "CL / 3840": ("lead/stage1-moco", {}, "hypercolumn"),
             "LEAD / 64": ("lead/stage2-lead", dict(feat_dim=64, proj_dim=256), "output")}


def seed_study(scale: str = "small", seed: int = 0, rows=tuple(SEED_ROWS), device="cpu", record: bool = True) -> dict:
    """Table 3.1's ``rows`` (of :data:`SEED_ROWS`) for the networks trained with ``seed``, as the
    matching chapter at that ``seed`` computes them (float64's matches, standard errors over pairs, pairs and
    warps drawn with ``seed``: the spread over seeds holds both draws), with the yardsticks and,
    when LEAD-64 and its teacher's hypercolumn are both there, gate S2. Networks that are neither
    shipped nor cached are trained (:func:`ssl_lab.zoo.get`). Returns ``{"rows", "gates"}`` (and
    ``"path"`` of the record)."""
    t0 = time.perf_counter()
    _, row = mafl_matcher(scale, seed, se=True)
    nets = {name: zoo.get(SEED_ROWS[name][0], scale, device=device, seed=seed, **SEED_ROWS[name][1]).double().eval()
            for name in rows}                                    # (trained here if need be: outside no_grad)
    out = {}
    with torch.no_grad():
        for name, net in nets.items():
            out[name] = row(DualPrecision(net.hypercolumn if SEED_ROWS[name][2] == "hypercolumn" else net, device))
        out["no features"], out["7x7 pixel patches / 147"] = row(None), row(pixel_patches)
    checks = gates.stage2(out) if {"LEAD / 64", "LEAD / 3840"} <= set(out) else []
    result = dict(rows=out, gates=checks)
    if record:
        rec = results.make_record("lead/matching-seeds", scale, "thesis-3.1-seeds", out, tag=f"seed{seed}",
                                  device=device, seeds=[seed], wall_time_s=time.perf_counter() - t0,
                                  parameters=dict(gates=checks, pairs=scales.get(scale).pairs,
                                                  recipes={r: SEED_ROWS[r][:2] for r in rows},
                                                  protocol="DVE test_matching.py (+ same identity, new pose)"))
        result["path"] = str(results.save(rec))
    return result
