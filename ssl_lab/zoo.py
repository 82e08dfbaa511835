"""Named, cached, reproducible trained artefacts shared by the chapters.

``zoo.get("lead/stage1-byol", scale="small")`` returns the artefact, training it on first use
with a fixed seed and caching it under ``$SSL_LAB_HOME/zoo/<recipe>/<scale>-<hash>.pt``,
where the hash covers the recipe's config at that scale (plus overrides), the seed, the
SynthFaces renderer version and the split definitions (:func:`ssl_lab.data.splits.specs_key`).
So any chapter can run alone, in any order, and two chapters asking for the same thing
share one training run.

A recipe is a function ``train(cfg, device, seed) -> artefact`` (anything ``torch.save``
stores, usually a dict with a ``state_dict``) registered with its config per scale, and an
optional ``build(artefact, device)`` that turns the stored artefact into the object the
chapters use (e.g. an ``nn.Module``). At ``full`` scale nothing is trained implicitly:
run ``python -m ssl_lab train RECIPE --scale full`` or pass ``checkpoint=``.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .paths import atomic_save, atomic_write_text, home
from .results import device_name, git_commit


@dataclass(frozen=True)
class Recipe:
    name: str
    train: Callable[[dict, Any, int], Any]
    configs: dict            # scale -> config dict
    build: Callable[[Any, Any], Any] | None = None


RECIPES: dict[str, Recipe] = {}


def register(name: str, configs: dict, build: Callable | None = None):
    """Decorator: ``@register("lead/stage1-byol", {"smoke": {...}, "small": {...}, "full": {...}})``."""
    def deco(train):
        RECIPES[name] = Recipe(name, train, configs, build)
        return train
    return deco


def recipe(name: str) -> Recipe:
    _load_builtin_recipes()
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES) or 'none yet'}")
    return RECIPES[name]


def config(name: str, scale: str, **overrides) -> dict:
    r = recipe(name)
    if scale not in r.configs:
        raise ValueError(f"recipe {name!r} has no config for scale {scale!r}; it has {sorted(r.configs)}")
    unknown = set(overrides) - set(r.configs[scale])
    if unknown:
        raise KeyError(f"unknown config keys for {name!r}: {sorted(unknown)}; "
                       f"known: {sorted(r.configs[scale])}")
    return {**r.configs[scale], **overrides}


def cache_path(name: str, scale: str, seed: int = 0, **overrides) -> Path:
    cfg = config(name, scale, **overrides)
    from .data.splits import specs_key               # artefacts trained on SynthFaces go stale with
    key = json.dumps([name, scale, seed, cfg, specs_key()], sort_keys=True, default=str)  # its splits
    h = hashlib.sha1(key.encode()).hexdigest()[:10]
    return home() / "zoo" / name / f"{scale}-seed{seed}-{h}.pt"


def get(name: str, scale: str = "smoke", device="cpu", seed: int = 0, checkpoint=None,
        retrain: bool = False, train_full: bool = False, **overrides):
    """The trained artefact ``name`` at ``scale`` (built with the recipe's ``build`` if any)."""
    r = recipe(name)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} for recipe {name!r} does not exist")
    else:
        path = cache_path(name, scale, seed, **overrides)
    if retrain or not path.exists():
        if checkpoint is not None:
            raise ValueError("retrain=True and checkpoint= cannot be combined")
        if scale == "full" and not train_full:
            raise FileNotFoundError(
                f"no full-scale artefact for {name!r} at {path}; train it with "
                f"`python -m ssl_lab train {name} --scale full --data-root DATA` or pass checkpoint=")
        train(name, scale, device=device, seed=seed, **overrides)
    art = torch.load(path, map_location=device, weights_only=False)
    return r.build(art, device) if r.build else art


def train(name: str, scale: str, device="cpu", seed: int = 0, **overrides) -> Path:
    """Train recipe ``name`` at ``scale`` with ``seed`` and cache it; returns the file."""
    r = recipe(name)
    cfg = config(name, scale, **overrides)
    torch.manual_seed(seed)
    t0 = time.time()
    art = r.train(cfg, device, seed)
    wall = time.time() - t0
    path = atomic_save(art, cache_path(name, scale, seed, **overrides))
    meta = dict(recipe=name, scale=scale, seed=seed, config=cfg, wall_time_s=round(wall, 1),
                device=device_name(device), torch=torch.__version__, commit=git_commit())
    atomic_write_text(json.dumps(meta, indent=1, default=str) + "\n", path.with_suffix(".json"))
    return path


def info(name: str, scale: str = "smoke", seed: int = 0, **overrides) -> dict | None:
    """Provenance of a cached artefact (wall time, device, commit), or None if not trained."""
    p = cache_path(name, scale, seed, **overrides).with_suffix(".json")
    return json.loads(p.read_text()) if p.exists() else None


def _load_builtin_recipes():
    """Import the modules that register recipes (added by the LEAD and HSR parts)."""
    import importlib
    for mod in ("ssl_lab.recipes",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
