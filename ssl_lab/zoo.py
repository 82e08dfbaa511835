"""Named, reproducible trained artefacts: the shipped zoo, the local cache, training.

``zoo.get("lead/stage1-byol", scale="small", seed=0)`` resolves, in order:

1. an explicit ``checkpoint=`` file;
2. the **shipped** artefact in ``results/zoo/<recipe>/<slot>.pt`` (``$SSL_LAB_ZOO`` moves
   that folder), if its manifest's key matches; its sha256 is checked before it is read,
   and a mismatch (a corrupt or truncated file) is a :class:`CorruptArtefact` error;
3. the local cache, ``$SSL_LAB_HOME/zoo/<recipe>/<scale>-seed<N>-<key>.pt``;
4. training, unless ``SSL_LAB_TRAIN=never`` (the book build and the tests set it), where a
   missing or stale artefact is a :class:`MissingArtefact` error that says which part of the
   key no longer matches (config, renderer, split definitions) and names the command that
   makes it: ``python -m ssl_lab train RECIPE --scale S --seed N [--set k=v] --ship``.

The **key** covers the recipe, scale, seed, config (the recipe's config at that scale plus
overrides) and :func:`ssl_lab.data.splits.specs_key` (the SynthFaces renderer version and
every split's definition). The **slot** (the shipped file's name) covers only recipe, scale,
seed and the overrides that differ from the scale's config, so a shipped file whose key no
longer matches is found and explained rather than silently ignored.

Shipped files are compact: what only training needs (:data:`TRAINING_ONLY`) is dropped, and
float32 tensors are stored as float16, or, for recipes registered with ``store="int8"``, large
weights as int8 with a scale per output channel (:func:`_compact`), and restored to float32 on
load (the chapters are executed with the restored weights, so what they print is what ships);
the files' zip records are deflated (:func:`ssl_lab.paths.atomic_save_deflated`). A
manifest beside each file records recipe, config, key, seed, device, torch, commit, wall
time, images/s, the training-loss curve, the gates it passed and the file's sha256.

A recipe is a function ``train(cfg, device, seed) -> artefact`` (anything ``torch.save``
stores, usually a dict with a ``state_dict``) registered with its config per scale, and an
optional ``build(artefact, device)`` that turns the stored artefact into the object the
chapters use (e.g. an ``nn.Module``). At ``full`` scale nothing is trained implicitly:
run ``python -m ssl_lab train RECIPE --scale full`` or pass ``checkpoint=``.
"""
from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import distributed
from .paths import atomic_save, atomic_save_deflated, atomic_write_text, home, repo_root
from .results import device_name, git_commit


class MissingArtefact(FileNotFoundError):
    """No usable artefact (none shipped, or the shipped one is stale) and training is off."""


class CorruptArtefact(ValueError):
    """A shipped file whose sha256 differs from its manifest's."""


@dataclass(frozen=True)
class Recipe:
    name: str
    train: Callable[[dict, Any, int], Any]
    configs: dict            # scale -> config dict
    build: Callable[[Any, Any], Any] | None = None
    store: str = "float16"   # how shipped files keep float32 weights: "float16" or "int8"
    ship_state: bool = False  # ship the training state too (float32, beside the artefact)
    inputs: Callable[[str, int, dict], list] | None = None   # (scale, seed, config) -> artefacts it loads
    parallel: bool = False   # its training loop is data-parallel under torchrun


RECIPES: dict[str, Recipe] = {}


def register(name: str, configs: dict, build: Callable | None = None, store: str = "float16",
             ship_state: bool = False, inputs: Callable | None = None, parallel: bool = False):
    """Decorator: ``@register("lead/stage1-byol", {"smoke": {...}, "small": {...}, "full": {...}})``.
    ``store="int8"``: shipped files keep large weight tensors as int8 (:func:`_compact`).
    ``ship_state``: the shipped zoo also keeps the artefact's training state (its ``"state"``;
    not its snapshots), exactly (float32), in ``<slot>.state.pt``: what a branch continues from
    (``load(..., with_state=True)``), so no clone has to retrain a warm-up to branch.
    ``inputs(scale, seed, config)``: the trained artefacts its training loads, as
    ``(recipe, scale, seed, overrides)`` (a stage-2 net's teacher, a regressor's features, a
    GAN branch's warm-up): their keys are recorded when it is trained, and a shipped artefact
    whose inputs have changed since is stale (:func:`stale_reason`). ``parallel``: its training
    loop is data-parallel (:mod:`ssl_lab.distributed`), so it may run under torchrun; any other
    recipe started there stops before training (each process would train all of it)."""
    if store not in STORES:
        raise ValueError(f"store must be one of {sorted(STORES)}, got {store!r}")

    def deco(train):
        RECIPES[name] = Recipe(name, train, configs, build, store, ship_state, inputs, parallel)
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


def inputs(name: str, scale: str, seed: int = 0, **overrides) -> list[tuple[str, str, int, dict]]:
    """The trained artefacts ``(recipe, scale, seed, overrides)`` that training this one loads
    (its recipe's ``inputs``; none if it declares none)."""
    fn = recipe(name).inputs
    return [] if fn is None else list(fn(scale, seed, config(name, scale, **overrides)))


def input_keys(name: str, scale: str, seed: int = 0, **overrides) -> list[dict]:
    """:func:`inputs` with their present keys: what a manifest records."""
    return [dict(recipe=n, scale=s, seed=sd, overrides=_real_overrides(n, s, o), key=key(n, s, sd, **o))
            for n, s, sd, o in inputs(name, scale, seed, **overrides)]


# -- keys, slots, places ------------------------------------------------------------------------
def _splits_key() -> str:
    from .data.splits import specs_key                 # artefacts trained on SynthFaces go stale
    return specs_key()                                 # with its renderer and splits


def key(name: str, scale: str, seed: int = 0, **overrides) -> str:
    """The 10-hex key of an artefact: recipe, scale, seed, config and SynthFaces splits."""
    cfg = config(name, scale, **overrides)
    text = json.dumps([name, scale, seed, cfg, _splits_key()], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _real_overrides(name: str, scale: str, overrides: dict) -> dict:
    """The overrides that differ from the scale's config (only those name a slot)."""
    base = config(name, scale)
    config(name, scale, **overrides)                   # unknown keys are an error
    return {k: v for k, v in sorted(overrides.items()) if base[k] != v}


def slot(name: str, scale: str, seed: int = 0, **overrides) -> str:
    """The shipped file's stem, e.g. ``smoke-seed0-feat_dim=128-proj_dim=256``."""
    parts = [f"{scale}-seed{seed}"]
    parts += [re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{k}={v}")
              for k, v in _real_overrides(name, scale, overrides).items()]
    return "-".join(parts)


def zoo_dir() -> Path:
    """The shipped zoo: ``$SSL_LAB_ZOO`` or ``results/zoo`` of this checkout."""
    return Path(os.environ.get("SSL_LAB_ZOO", repo_root() / "results" / "zoo"))


def shipped_path(name: str, scale: str, seed: int = 0, **overrides) -> Path:
    return zoo_dir() / name / f"{slot(name, scale, seed, **overrides)}.pt"


def cache_path(name: str, scale: str, seed: int = 0, **overrides) -> Path:
    return home() / "zoo" / name / f"{scale}-seed{seed}-{key(name, scale, seed, **overrides)}.pt"


def train_command(name: str, scale: str, seed: int = 0, ship: bool = True, **overrides) -> str:
    sets = "".join(" --set " + shlex.quote(f"{k}={v}") for k, v in _real_overrides(name, scale, overrides).items())
    return f"python -m ssl_lab train {name} --scale {scale} --seed {seed}{sets}" + (" --ship" if ship else "")


def training_allowed() -> bool:
    return os.environ.get("SSL_LAB_TRAIN", "").lower() != "never"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- the shipped zoo ----------------------------------------------------------------------------
def stale_reason(manifest: dict, name: str, scale: str, seed: int = 0, **overrides) -> str | None:
    """Why a shipped manifest's key no longer matches the code, or why an input it was trained
    from (recorded in ``inputs``) has changed since (None if neither)."""
    if manifest.get("key") == key(name, scale, seed, **overrides):
        changed = [f"{i['recipe']} {slot(i['recipe'], i['scale'], i['seed'], **i['overrides'])} "
                   f"{i['key']} -> {now}" for i in manifest.get("inputs", [])
                   if (now := _key_or_none(i)) != i["key"]]
        return ("trained from inputs that have changed since: " + "; ".join(changed)) if changed else None
    why = []
    cfg = config(name, scale, **overrides)
    old = manifest.get("config", {})
    changed = sorted(k for k in set(cfg) | set(old) if json.dumps(cfg.get(k), default=str)
                     != json.dumps(old.get(k), default=str))
    if changed:
        why.append("config changed: " + ", ".join(f"{k} {old.get(k)!r} -> {cfg.get(k)!r}" for k in changed))
    from .data.splits import RENDERER_VERSION
    if manifest.get("renderer") != RENDERER_VERSION:
        why.append(f"SynthFaces renderer {manifest.get('renderer')!r} -> {RENDERER_VERSION!r}")
    elif manifest.get("splits") != _splits_key():
        why.append(f"split definitions changed (splits key {manifest.get('splits')} -> {_splits_key()})")
    return "; ".join(why) or "key differs (recipe name or key format changed)"


def _key_or_none(i: dict) -> str | None:
    try:
        return key(i["recipe"], i["scale"], i["seed"], **i["overrides"])
    except (KeyError, ValueError):                 # the input's recipe or config is gone
        return None


def shipped_manifest(name: str, scale: str, seed: int = 0, **overrides) -> dict | None:
    """The manifest of the shipped artefact if it is there and current (its key matches)."""
    sp = shipped_path(name, scale, seed, **overrides)
    if not (sp.exists() and sp.with_suffix(".json").exists()):
        return None
    m = _read_manifest(sp)
    return m if stale_reason(m, name, scale, seed, **overrides) is None else None


def _read_manifest(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def _check_sha(path: Path, manifest: dict):
    got = sha256(path)
    if got != manifest.get("sha256"):
        raise CorruptArtefact(
            f"shipped artefact {path} is corrupt or truncated: sha256 {got[:12]}... but its manifest "
            f"says {str(manifest.get('sha256'))[:12]}...; restore it (git checkout -- {path}) or remake "
            f"it with `{train_command(manifest['recipe'], manifest['scale'], manifest['seed'], **manifest.get('overrides', {}))}`")


#: artefact keys that only training needs, dropped from shipped files: a warm-up's full
#: training state (optimisers, D, RNG; branching asks the cache for it), DINO's student (the
#: teacher is the network DINO evaluates) and the learning-curve snapshots of the SSL loop
TRAINING_ONLY = ("state", "student_state_dict", "snapshots")


#: what ``stored`` says in a manifest, per recipe ``store``
STORES = {"float16": "float32 tensors as float16 (restored on load); training state dropped; zip records deflated",
          "int8": "float32 weights of >= 2 dims and >= 1024 values as int8 with a float32 scale per "
                  "output channel, other float32 tensors as float16 (restored on load); training state dropped; "
                  "zip records deflated"}
_INT8 = "__int8__"


def _compact(obj, int8: bool = False):
    """float32 tensors -> float16 where their values fit its range (finite, |x| < 6e4); with
    ``int8``, those of at least 2 dims and 1024 values (convolution and linear weights) ->
    ``{"__int8__": q, "scale": s}``, symmetric per output channel (dim 0): ``s = max|w| / 127``,
    ``q = round(w / s)``. The precision lost is what the book evaluates (the chapters run on the
    restored weights)."""
    if torch.is_tensor(obj):
        if obj.dtype != torch.float32 or not obj.numel() or not torch.isfinite(obj).all():
            return obj
        if int8 and obj.dim() >= 2 and obj.numel() >= 1024:
            scale = obj.abs().flatten(1).amax(1).clamp(min=1e-30) / 127
            q = (obj / scale.view(-1, *[1] * (obj.dim() - 1))).round().clamp(-127, 127).to(torch.int8)
            return {_INT8: q, "scale": scale}
        return obj.half() if obj.abs().max() < 6e4 else obj
    if isinstance(obj, dict):
        return {k: _compact(v, int8) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_compact(v, int8) for v in obj)
    return obj


def _restore(obj):
    """The inverse of :func:`_compact` on what it changed: float16 and int8 -> float32."""
    if torch.is_tensor(obj):
        return obj.float() if obj.dtype == torch.float16 else obj
    if isinstance(obj, dict):
        if set(obj) == {_INT8, "scale"}:
            q = obj[_INT8]
            return q.float() * obj["scale"].view(-1, *[1] * (q.dim() - 1))
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_restore(v) for v in obj)
    return obj


def _curve(history, limit: int = 400):
    """The training-loss curve of an artefact's history, at most ``limit`` points."""
    if not history:
        return []
    step = max(1, len(history) // limit)
    return history[::step]


def ship(name: str, scale: str, seed: int = 0, device="cpu", gates: dict | None = None, **overrides) -> Path:
    """Write the cached artefact (trained now if absent) to the shipped zoo, compact, with its
    manifest; returns the file. ``gates``: the learning gates it passed (recorded as given)."""
    path = cache_path(name, scale, seed, **overrides)
    if not path.exists():
        train(name, scale, device=device, seed=seed, **overrides)
    if not distributed.is_main():                  # under torchrun only rank 0 ships
        return shipped_path(name, scale, seed, **overrides)
    art = torch.load(path, map_location="cpu", weights_only=False)
    meta = info(name, scale, seed, cached=True, **overrides) or {}
    state = {}
    if isinstance(art, dict):                                    # not needed to evaluate
        state = {k: v for k, v in art.items() if k == "state"}     # what resuming reads; not snapshots
        art = {k: v for k, v in art.items() if k not in TRAINING_ONLY}
    store = recipe(name).store
    out = atomic_save_deflated(_compact(art, int8=store == "int8"), shipped_path(name, scale, seed, **overrides))
    state_info = {}
    if recipe(name).ship_state:
        if not state:
            raise ValueError(f"{name!r} ships its training state, but {path} holds none")
        sp = atomic_save_deflated(state, _state_path(out))
        state_info = dict(state_file=sp.name, state_sha256=sha256(sp), state_bytes=sp.stat().st_size)
    from .data.splits import RENDERER_VERSION
    history = art.get("history") if isinstance(art, dict) else None
    manifest = dict(
        recipe=name, scale=scale, seed=seed, overrides=_real_overrides(name, scale, overrides),
        config=config(name, scale, **overrides), key=key(name, scale, seed, **overrides),
        renderer=RENDERER_VERSION, splits=_splits_key(), file=out.name, sha256=sha256(out),
        bytes=out.stat().st_size, stored=STORES[store],
        device=meta.get("device"), torch=meta.get("torch"), commit=meta.get("commit"),
        wall_time_s=meta.get("wall_time_s"), images_per_s=_images_per_s(art),
        precision=art.get("precision") if isinstance(art, dict) else None,
        loss_curve=_curve(history), gates=gates or (art.get("gates") if isinstance(art, dict) else None),
        command=train_command(name, scale, seed, **overrides), **state_info)
    if recipe(name).inputs is not None:                       # as recorded when it was trained
        manifest["inputs"] = meta["inputs"] if "inputs" in meta else input_keys(name, scale, seed, **overrides)
    atomic_write_text(json.dumps(manifest, indent=1, default=str) + "\n", out.with_suffix(".json"))
    return out


def restore_shipped(name: str, scale: str, seed: int = 0, **overrides) -> Path:
    """Rewrite a current shipped artefact in its recipe's present ``store`` (after a change of
    storage, e.g. float16 -> int8), from the shipped file itself: the same trained weights,
    restored and compacted again; the manifest keeps its provenance (commit, wall time,
    gates) and gets the new ``sha256``, ``bytes``, ``stored`` and a ``restored_from`` note.
    Nothing is retrained, so what was trained from it stays current."""
    sp = shipped_path(name, scale, seed, **overrides)
    m = shipped_manifest(name, scale, seed, **overrides)
    if m is None:
        raise MissingArtefact(f"no current shipped artefact {sp} to store anew")
    _check_sha(sp, m)
    store = recipe(name).store
    art = _restore(torch.load(sp, map_location="cpu", weights_only=False))
    out = atomic_save_deflated(_compact(art, int8=store == "int8"), sp)
    m = {**m, "restored_from": f"{m['stored']} (sha256 {m['sha256'][:12]}...)", "stored": STORES[store],
         "sha256": sha256(out), "bytes": out.stat().st_size}
    atomic_write_text(json.dumps(m, indent=1, default=str) + "\n", out.with_suffix(".json"))
    return out


def _state_path(artefact: Path) -> Path:
    return artefact.with_name(artefact.stem + ".state.pt")


def _images_per_s(art):
    v = art.get("images_per_s") if isinstance(art, dict) else None
    return round(float(v), 1) if isinstance(v, (int, float)) else None


def load(name: str, scale: str = "smoke", device="cpu", seed: int = 0, checkpoint=None,
         retrain: bool = False, train_full: bool = False, shipped: bool = True,
         with_state: bool = False, **overrides):
    """The stored artefact (no ``build``), resolved as the module docstring says.
    ``shipped=False`` skips the shipped zoo. ``with_state``: the artefact with its training
    state (what a branch continues from): the shipped one only if it ships its state
    (``register(ship_state=True)``; checked against the manifest's sha256), else the cache's."""
    recipe(name)
    if checkpoint is not None:
        if retrain:
            raise ValueError("retrain=True and checkpoint= cannot be combined")
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} for recipe {name!r} does not exist")
        return _restore(torch.load(path, map_location=device, weights_only=False))   # a shipped file, too
    stale = None
    if shipped and not retrain:
        sp = shipped_path(name, scale, seed, **overrides)
        if sp.exists() and sp.with_suffix(".json").exists():
            manifest = _read_manifest(sp)
            stale = stale_reason(manifest, name, scale, seed, **overrides)
            if stale is None and (not with_state or "state_file" in manifest):
                _check_sha(sp, manifest)
                art = _restore(torch.load(sp, map_location=device, weights_only=False))
                if with_state:
                    state = _state_path(sp)
                    if not state.exists() or sha256(state) != manifest["state_sha256"]:
                        raise CorruptArtefact(
                            f"the training state {state} of {sp} is missing or corrupt (its sha256 "
                            f"does not match the manifest's); restore it (git checkout -- {state})")
                    art.update(torch.load(state, map_location=device, weights_only=False))
                return art
    path = cache_path(name, scale, seed, **overrides)
    if retrain or not path.exists():
        cmd = train_command(name, scale, seed, **overrides)
        if not training_allowed():
            why = (f"the shipped artefact {shipped_path(name, scale, seed, **overrides)} is stale ({stale})"
                   if stale else f"nothing is shipped at {shipped_path(name, scale, seed, **overrides)}")
            raise MissingArtefact(
                f"no usable artefact for recipe {name!r} (scale {scale}, seed {seed}, key "
                f"{key(name, scale, seed, **overrides)}): {why}, none is cached, and SSL_LAB_TRAIN=never "
                f"forbids training here. Make it with `{cmd}`")
        if scale == "full" and not train_full:
            raise FileNotFoundError(
                f"no full-scale artefact for {name!r} at {path}; train it with "
                f"`python -m ssl_lab train {name} --scale full --data-root DATA` or pass checkpoint=")
        train(name, scale, device=device, seed=seed, **overrides)
    return torch.load(path, map_location=device, weights_only=False)


def get(name: str, scale: str = "smoke", device="cpu", seed: int = 0, checkpoint=None,
        retrain: bool = False, train_full: bool = False, **overrides):
    """The trained artefact ``name`` at ``scale`` (built with the recipe's ``build`` if any)."""
    art = load(name, scale, device=device, seed=seed, checkpoint=checkpoint, retrain=retrain,
               train_full=train_full, **overrides)
    r = recipe(name)
    return r.build(art, device) if r.build else art


def train(name: str, scale: str, device="cpu", seed: int = 0, **overrides) -> Path:
    """Train recipe ``name`` at ``scale`` with ``seed`` and cache it; returns the file.
    Under torchrun every process trains (the recipe's loop is data-parallel) and only rank 0
    writes the cache; all return once it is written (:func:`ssl_lab.distributed.barrier`)."""
    r = recipe(name)
    if distributed.world_size() > 1 and not r.parallel:
        raise RuntimeError(f"{name} trains in one process (its loop is not data-parallel): start it with "
                           f"`python -m ssl_lab train {name} ...`, not under torchrun")
    cfg = config(name, scale, **overrides)
    torch.manual_seed(seed)
    ckpt = cache_path(name, scale, seed, **overrides).with_suffix(".ckpt")
    ins = input_keys(name, scale, seed, **overrides)
    token = _CHECKPOINT.set(ckpt)
    t0 = time.time()
    try:
        art = r.train(cfg, device, seed)
    finally:
        _CHECKPOINT.reset(token)
    wall = time.time() - t0
    path = cache_path(name, scale, seed, **overrides)
    if distributed.is_main():
        atomic_save(art, path)
        ckpt.unlink(missing_ok=True)
        meta = dict(recipe=name, scale=scale, seed=seed, config=cfg, wall_time_s=round(wall, 1),
                    device=device_name(device), torch=torch.__version__, commit=git_commit(),
                    processes=distributed.world_size(), **({"inputs": ins} if r.inputs else {}))
        atomic_write_text(json.dumps(meta, indent=1, default=str) + "\n", path.with_suffix(".json"))
    distributed.barrier()                          # the others read it only once it is there
    return path


_CHECKPOINT: contextvars.ContextVar = contextvars.ContextVar("ssl_lab_zoo_checkpoint", default=None)


def training_checkpoint() -> Path | None:
    """While :func:`train` runs a recipe: the file its loop may checkpoint to and resume from
    (beside the cache entry, ``.ckpt``; removed once the artefact is saved). Else None."""
    return _CHECKPOINT.get()


def info(name: str, scale: str = "smoke", seed: int = 0, cached: bool = False, **overrides) -> dict | None:
    """Provenance of an artefact (wall time, device, commit): the shipped manifest if it is
    current, else the cached one's (``cached=True``: only the cache's); None if neither."""
    m = None if cached else shipped_manifest(name, scale, seed, **overrides)
    if m is not None:
        return m
    p = cache_path(name, scale, seed, **overrides).with_suffix(".json")
    return json.loads(p.read_text()) if p.exists() else None


def listing(needed=()) -> list[dict]:
    """Every shipped manifest with its status (``ok``, ``stale: why``, ``corrupt``), then each
    ``(recipe, scale, seed, overrides)`` of ``needed`` that is not shipped (``missing``)."""
    rows, seen = [], set()
    for m_path in sorted(zoo_dir().rglob("*.json")):
        m = json.loads(m_path.read_text())
        name, scale, seed, ov = m["recipe"], m["scale"], m["seed"], m.get("overrides", {})
        art = m_path.with_suffix(".pt")
        try:
            why = stale_reason(m, name, scale, seed, **ov)
        except (KeyError, ValueError) as e:
            why = f"recipe or config no longer exists ({e})"
        status = "ok" if why is None else f"stale: {why}"
        if not art.exists():
            status = "missing file"
        elif why is None and sha256(art) != m.get("sha256"):
            status = "corrupt (sha256 differs)"
        seen.add((name, scale, seed, json.dumps(ov, sort_keys=True, default=str)))
        rows.append(dict(recipe=name, slot=art.stem, status=status, MB=round(art.stat().st_size / 2**20, 2)
                         if art.exists() else None, command=m.get("command")))
    for name, scale, seed, ov in needed:
        ov = _real_overrides(name, scale, ov)
        if (name, scale, seed, json.dumps(ov, sort_keys=True, default=str)) not in seen:
            rows.append(dict(recipe=name, slot=slot(name, scale, seed, **ov), status="missing", MB=None,
                             command=train_command(name, scale, seed, **ov)))
    return rows


def _load_builtin_recipes():
    """Import the modules that register recipes (added by the LEAD and HSR parts)."""
    import importlib
    for mod in ("ssl_lab.recipes", "ssl_lab.regression"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
