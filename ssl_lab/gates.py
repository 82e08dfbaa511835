"""Learning gates: what a small-scale network must show before its numbers are findings.

A gate compares a trained network with a yardstick that has learned nothing (random
initialisation, copying positions, raw pixel patches, ...). Gates are fixed here, never
loosened to pass, and never the thesis's orderings (those are findings either way). Each
gate is evaluated on a matching table (rows: descriptors; columns as
:func:`ssl_lab.metrics.landmarks.matching_row`) and returns pass/fail with its numbers.

LEAD stage 1 (the correspondence chapter), on DVE's different-identity error:

* ``S1a``: BYOL's and MoCo's hypercolumns each at most 0.8 x random init's;
* ``S1b``: the best stage-1 hypercolumn beats copying positions and 7x7 patches;

LEAD stage 2 (the matching chapter): ``S2``: LEAD-64 within 1.2 x its BYOL teacher's
hypercolumn error.

Landmark regression (the regression chapter, % IOD): ``R <set>``: the regressor on LEAD-64
below both nothing-learned yardsticks, the mean training shape and the regressor on
random-init hypercolumns, on every role set.

The GAN warm-up of the HSR part (:func:`gan_warmup`): ``G1`` precision >= 0.5, ``G2`` recall
>= 0.2 (k = 3, in the stand-in feature space), ``G3`` its FD falling over training.

The ALS chapter's attribute classifiers (:func:`attribute_classifiers`), on held-out images:
``A1 <attribute>`` ROC AUC >= 0.9 on each of the six; ``A2`` their mean AUC above the mean of
a logistic regression on raw pixels (the yardstick that learned no features).

The HSR feature networks' stand-ins (:func:`feature_standins`): ``V <row>``: the trained ViTs
("ViT DINO", "DeiT") each above the random-init ViT in the mean held-out AUC of a linear probe
of the six ALS attributes on their features.
"""
from __future__ import annotations

COLUMN = "Different"      # DVE's different-identity error (pixels at 70 px)


def _row(name, ok, value, bound, rule):
    return {"gate": name, "rule": rule, "value": round(float(value), 2), "bound": round(float(bound), 2),
            "passed": bool(ok)}


def stage1(table: dict, column: str = COLUMN) -> list[dict]:
    """Gates S1a (per SSL network) and S1b on a correspondence table ``{row: {column: v}}``
    with rows BYOL, MoCo (either may be missing), random, no features, 7x7 pixel patches."""
    d = {k: v[column] for k, v in table.items()}
    out = []
    for net in ("BYOL", "MoCo"):
        if net in d:
            out.append(_row(f"S1a {net}", d[net] <= 0.8 * d["random"], d[net], 0.8 * d["random"],
                            f"{net} <= 0.8 x random init"))
    learned = [k for k in ("BYOL", "MoCo", "supervised") if k in d]
    best = min(learned, key=d.get)
    bound = min(d["no features"], d["7x7 pixel patches"])
    out.append(_row(f"S1b ({best})", d[best] < bound, d[best], bound,
                    "best stage-1 hypercolumn < min(copy positions, 7x7 patches)"))
    return out


def stage2(table: dict, column: str = COLUMN, lead: str = "LEAD / 64", teacher: str = "LEAD / 3840") -> list[dict]:
    """Gate S2 on a Table 3.1 ``{row: {column: v}}``: LEAD-64 within 1.2 x the hypercolumn
    of its BYOL teacher (the thesis's "LEAD / 3840" row)."""
    d = {k: v[column] for k, v in table.items()}
    return [_row("S2", d[lead] <= 1.2 * d[teacher], d[lead], 1.2 * d[teacher], f"{lead} <= 1.2 x {teacher}")]


def regression(table: dict, lead: str = "LEAD / 64",
               yardsticks=("mean shape", "random hypercolumn")) -> list[dict]:
    """Gate R on a Table 3.2 ``{row: {set: % IOD}}``, one row per set ``lead`` was measured on:
    ``lead`` below every yardstick row measured on that set (a yardstick missing on a set is
    named in that row's rule, never silently dropped)."""
    out = []
    for col, value in table[lead].items():
        have = [y for y in yardsticks if col in table.get(y, {})]
        missing = [y for y in yardsticks if y not in have]
        if not have:
            raise ValueError(f"no yardstick measured on {col}: gate R cannot be evaluated there")
        bound = min(table[y][col] for y in have)
        rule = f"{lead} < min({', '.join(have)})" + (f"; not measured: {', '.join(missing)}" if missing else "")
        out.append(_row(f"R {col}", value < bound, value, bound, rule))
    return out


#: the GAN warm-up's bounds (issue 13): precision and recall (k = 3) in the eval feature space
GAN_PRECISION, GAN_RECALL = 0.5, 0.2


def gan_warmup(precision: float, recall: float, curve: list[dict], fd_key: str) -> list[dict]:
    """Gates G1-G3 of a GAN warm-up (HSR part): ``G1`` precision >= 0.5 and ``G2`` recall
    >= 0.2 of the final EMA generator; ``G3`` the FD falling over training: the last point of
    ``curve`` (``[{"kimg", fd_key}]``, first point the untrained generator at kimg 0) below
    the first snapshot's and below the untrained generator's."""
    fd = [p[fd_key] for p in curve]
    if len(fd) < 3:
        raise ValueError("the FD curve needs the untrained generator and at least two snapshots")
    return [_row("G1 precision", precision >= GAN_PRECISION, precision, GAN_PRECISION, "precision >= 0.5 (k = 3)"),
            _row("G2 recall", recall >= GAN_RECALL, recall, GAN_RECALL, "recall >= 0.2 (k = 3)"),
            _row("G3 FD falls", fd[-1] < min(fd[0], fd[1]), fd[-1], min(fd[0], fd[1]),
                 f"{fd_key} at the end < at the first snapshot ({curve[1]['kimg']:g} kimg) and untrained")]


#: the attribute classifiers' bound (ALS chapter): held-out ROC AUC of every ALS attribute
CLASSIFIER_AUC = 0.9


def attribute_classifiers(auc: dict, pixel_auc: dict) -> list[dict]:
    """Gates A1 (per attribute: AUC >= 0.9) and A2 (mean AUC > the raw-pixel logistic
    regression's mean AUC) on ``{attribute: held-out AUC}`` of the classifier and of the
    pixel probe (the same attributes)."""
    if set(auc) != set(pixel_auc):
        raise ValueError(f"the classifier and the pixel probe were scored on different attributes: "
                         f"{sorted(auc)} vs {sorted(pixel_auc)}")
    out = [_row(f"A1 {a}", v >= CLASSIFIER_AUC, v, CLASSIFIER_AUC, "held-out AUC >= 0.9")
           for a, v in auc.items()]
    mean, pix = sum(auc.values()) / len(auc), sum(pixel_auc.values()) / len(pixel_auc)
    out.append(_row("A2 mean AUC", mean > pix, mean, pix, "mean AUC > raw-pixel logistic regression's"))
    return out


def feature_standins(mean_auc: dict, random: str = "ViT (RandInit)",
                     trained=("ViT DINO", "DeiT")) -> list[dict]:
    """Gate V on ``{Table 4.1 row: mean held-out probe AUC}``: each ``trained`` row above ``random``."""
    missing = [r for r in (random, *trained) if r not in mean_auc]
    if missing:
        raise ValueError(f"gate V needs the probe of {missing}")
    return [_row(f"V {r}", mean_auc[r] > mean_auc[random], mean_auc[r], mean_auc[random],
                 f"{r} probe AUC > {random}'s") for r in trained]
