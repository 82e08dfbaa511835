"""Recorded runs: one JSON per chapter run, with provenance, in ``results/<chapter>/``.

Schema (DESIGN.md, "Conventions")::

    {"chapter": "lead/matching", "scale": "small", "tag": "seed0", "table": "thesis-3.1",
     "rows": {"LEAD / 64": {"Same": 2.1, "Different": 4.3}, ...},
     "device": "cpu", "torch": "2.14.1", "commit": "abc1234", "date": "2026-11-22T...",
     "seeds": [0], "wall_time_s": 812.4, "parameters": {...},
     "stand_ins": {"ViT DINO": "dino-vit-tiny trained on SynthFaces celeba/small"}}

Row and column labels are the paper's own (see :mod:`ssl_lab.reference`), so a recorded
table lines up with the published one. Files are written atomically.
"""
from __future__ import annotations

import datetime as _dt
import json
import subprocess
from pathlib import Path

import torch

from .paths import atomic_write_text, repo_root

SCALES = ("smoke", "small", "full")


def results_dir() -> Path:
    return repo_root() / "results"


#: what a record's ``+dirty`` leaves out: the records themselves (``results/**/*.json``, the zoo's
#: manifests included), so that a page writing several records in a row, or rewriting the ones a
#: commit holds, does not mark the later ones dirty; the zoo's weight files still count
RECORDS_PATHSPEC = ":(exclude,glob)results/**/*.json"


def git_commit(root: Path | None = None) -> str:
    """This checkout's short commit, ``+dirty`` if a tracked file other than a record
    (:data:`RECORDS_PATHSPEC`) differs from it; ``unknown`` outside git."""
    root = root or repo_root()
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", RECORDS_PATHSPEC],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {torch.get_num_threads()} threads"


def make_record(chapter: str, scale: str, table: str, rows: dict, *, tag: str = "run",
                device="cpu", seeds=(0,), wall_time_s: float | None = None,
                parameters: dict | None = None, stand_ins: dict | None = None,
                notes: str = "") -> dict:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    for r, cols in rows.items():
        if not isinstance(cols, dict):
            raise TypeError(f"row {r!r} must map column labels to values, got {type(cols).__name__}")
    return dict(chapter=chapter, scale=scale, tag=tag, table=table, rows=rows,
                device=device_name(device), torch=torch.__version__, commit=git_commit(),
                date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                seeds=list(seeds), wall_time_s=None if wall_time_s is None else round(wall_time_s, 1),
                parameters=parameters or {}, stand_ins=stand_ins or {}, notes=notes)


def save(record: dict, root: Path | None = None) -> Path:
    """Write ``results/<chapter>/<scale>-<tag>.json`` (chapter may contain a ``/``)."""
    root = Path(root) if root else results_dir()
    path = root / record["chapter"] / f"{record['scale']}-{record['tag']}.json"
    return atomic_write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", path)


def load_all(chapter: str | None = None, root: Path | None = None) -> list[dict]:
    """Every recorded run (of one chapter, or all), oldest first."""
    root = Path(root) if root else results_dir()
    base = root / chapter if chapter else root
    zoo = root / "zoo"                              # the shipped zoo's manifests are not runs
    recs = ([json.loads(p.read_text()) for p in sorted(base.rglob("*.json")) if zoo not in p.parents]
            if base.exists() else [])
    return sorted(recs, key=lambda r: r.get("date", ""))


def best(chapter: str, table: str, root: Path | None = None) -> dict | None:
    """The recorded run to show beside the paper: the largest scale, then the newest.
    Smoke runs are never returned: they prove the code path, not a finding."""
    recs = [r for r in load_all(chapter, root) if r["table"] == table and r["scale"] != "smoke"]
    if not recs:
        return None
    return max(recs, key=lambda r: (SCALES.index(r["scale"]), r.get("date", "")))


def across_seeds(chapter: str, table: str, root: Path | None = None) -> dict | None:
    """Mean and spread of one table over the recorded seeds of the run :func:`best` would show.

    Only records of that run's scale and ``parameters`` are pooled (a run with another
    budget is a different experiment); of several records of one seed the newest counts.
    A row or column need not be in every record (a study trained variant by variant): each
    pools the records that hold it. Returns ``{"scale", "seeds", "records", "mean", "std",
    "n"}``, where ``mean``, ``std`` and ``n`` (how many seeds each number pools) have the
    shape of the union of the records' ``rows`` (``std``: sample standard deviation, ddof 1;
    NaN for one seed), or None when nothing is recorded."""
    top = best(chapter, table, root)
    if top is None:
        return None
    same = [r for r in load_all(chapter, root) if r["table"] == table and r["scale"] == top["scale"]
            and r.get("parameters", {}) == top.get("parameters", {})]
    by_seed = {}
    for r in same:  # oldest first, so the newest record of a seed wins
        by_seed[tuple(r["seeds"])] = r
    recs = [by_seed[s] for s in sorted(by_seed)]
    mean, std, n = {}, {}, {}
    for row in dict.fromkeys(row for r in recs for row in r["rows"]):
        mean[row], std[row], n[row] = {}, {}, {}
        for col in dict.fromkeys(col for r in recs for col in r["rows"].get(row, {})):
            vals = torch.tensor([float(r["rows"][row][col]) for r in recs
                                 if col in r["rows"].get(row, {})], dtype=torch.float64)
            mean[row][col], n[row][col] = vals.mean().item(), len(vals)
            std[row][col] = vals.std().item() if len(vals) > 1 else float("nan")
    return dict(scale=top["scale"], seeds=[s for k in sorted(by_seed) for s in k], records=recs,
                mean=mean, std=std, n=n)


def beyond_spread(a, b, k: float = 2.0) -> bool | None:
    """Whether two sets of one measurement (e.g. a metric over seeds) differ by more than
    ``k`` times the larger of their sample standard deviations (ddof 1):
    ``|mean(a) - mean(b)| > k * max(sd(a), sd(b))``. None when either holds fewer than two
    values: with no spread measured, no difference is a finding."""
    a, b = (torch.as_tensor([float(v) for v in x], dtype=torch.float64) for x in (a, b))
    if len(a) < 2 or len(b) < 2:
        return None
    return bool((a.mean() - b.mean()).abs() > k * max(a.std(), b.std()))


def spread_verdict(a, b, name_a: str, name_b: str, k: float = 2.0) -> str:
    """:func:`beyond_spread` in words, for errors (lower is better): which of ``name_a`` and
    ``name_b`` is ahead beyond ``k`` standard deviations over seeds, or why it is not a finding."""
    sep = beyond_spread(a, b, k)
    if sep is None:
        return "fewer than two seeds of either: no spread measured, not a finding"
    if not sep:
        return f"within {k:g} standard deviations: not a finding"
    lower = name_a if sum(map(float, a)) / len(a) < sum(map(float, b)) / len(b) else name_b
    return f"{lower} ahead beyond {k:g} standard deviations"


def noise_and_spread_verdict(a, b, name_a: str, name_b: str, noise_sd: float, k: float = 2.0) -> str:
    """:func:`spread_verdict`, first asking that the means of ``a`` and ``b`` (e.g. a GAN
    metric over seeds) differ by more than ``k`` times ``noise_sd``, the metric's own sampling
    noise (its sd over sample seeds of one network): a difference must beat both."""
    if min(len(a), len(b)) < 2:
        return spread_verdict(a, b, name_a, name_b, k)            # no spread measured
    diff = abs(sum(map(float, a)) / len(a) - sum(map(float, b)) / len(b))
    if diff <= k * noise_sd:
        return f"within {k:g} standard deviations of the sampling noise: not a finding"
    return spread_verdict(a, b, name_a, name_b, k)


def beyond_noise(a: float, se_a: float, b: float, se_b: float, k: float = 2.0) -> int:
    """Compare two measurements with standard errors (e.g. two networks' matching errors over
    the same 500 pairs): -1 if ``a < b`` by more than ``k * sqrt(se_a**2 + se_b**2)``, +1 if
    ``a > b`` by more, 0 within it (not a finding). Conservative for paired measurements."""
    bound = k * (float(se_a) ** 2 + float(se_b) ** 2) ** 0.5
    d = float(a) - float(b)
    return -1 if d < -bound else 1 if d > bound else 0


def ordering(rows: dict, better: str, worse, column: str = "Different", k: float = 2.0) -> str:
    """Whether row ``better`` has a lower ``column`` than every row of ``worse`` (a label or a
    list) of a table ``{row: {column: v, column + " s.e.": se}}``, judged by
    :func:`beyond_noise`: ``"yes"`` (lower than each beyond the noise), ``"no: reversed"``
    (higher than one beyond it), else ``"within the noise"``."""
    worse = [worse] if isinstance(worse, str) else list(worse)
    se = lambda r: r.get(f"{column} s.e.", 0.0)
    got = [beyond_noise(rows[better][column], se(rows[better]), rows[w][column], se(rows[w]), k) for w in worse]
    return "yes" if all(g == -1 for g in got) else "no: reversed" if any(g == 1 for g in got) else "within the noise"
