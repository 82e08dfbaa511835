"""Attribute classifiers ``C_j`` for the Attribute Linearity Score (thesis §4.3.3, Eqs. 4.3-4.5),
and the renderer's own linear attribute paths that calibrate ALS.

The thesis scores six attributes, {gender, smile, age, hair, bangs, beard}, with the
pretrained CelebA-HQ classifiers of the StyleGAN release (``celebahq-classifier-*.pkl``; the
HSR release's ``ALS/get_attr.py`` runs them and keeps their logits). Below full scale one
network does it: a ResNet trained on SynthFaces renders of the FFHQ role's distribution
(``splits.GAN_SPECS["ffhq_aligned_attr"]``: the GAN's aligned framing, other identities than
any GAN trains on) and their true binary attributes, all eleven at once (BCE, one logit
each). :data:`ALS_ATTRIBUTES` maps the thesis's names to SynthFaces' ("Hair": black hair,
the CelebA attribute ``Black_Hair``; "Age": ``young``, whose logit rises as the face gets
younger). The classifier takes generator images in [-1, 1] at the GAN's resolution.

**Calibration** (beyond the thesis; SynthFaces is ground-truthed): :func:`linear_paths`
renders paths along which every continuous renderer parameter (age, smile, mouth, hair
length, skin tone, face shape, pose, light) moves exactly linearly between two draws of one
discrete class (sex, hair colour, bangs, beard, glasses equal at both ends). On such a path the
true attributes are as linear as a path can be; the ALS the classifiers give it is what their
own non-linearity (logit against the true parameter) and their noise add. It is a reference
for a generator's ALS, not a bound: a generator's path need not follow the renderer's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import splits
from .data.images import to_signed
from .data.synthfaces import BINARY_ATTRIBUTES, attributes, identity_params, image_params, render
from .nets.backbones import Backbone

#: the thesis's six ALS attributes -> the SynthFaces binary attribute each is scored by
ALS_ATTRIBUTES = {"Gender": "male", "Smile": "smiling", "Age": "young", "Hair": "black_hair",
                  "Bangs": "bangs", "Beard": "beard"}
#: the split the classifiers train and are tested on (its last ``test`` images are held out)
CLASSIFIER_SPLIT = "ffhq_aligned_attr"


class AttributeClassifier(nn.Module):
    """A :class:`~ssl_lab.nets.backbones.Backbone` with a linear head: images in [-1, 1]
    -> one logit per SynthFaces binary attribute (:data:`BINARY_ATTRIBUTES`)."""

    def __init__(self, backbone: str):
        super().__init__()
        self.net = Backbone(backbone)
        self.head = nn.Linear(self.net.pooled_channels, len(BINARY_ATTRIBUTES))
        self.names = list(BINARY_ATTRIBUTES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """In the dtype of the weights: a float64 copy (``copy.deepcopy(clf).double()``) scores in float64."""
        return self.head(self.net.pooled((images.to(self.head.weight.dtype) + 1) / 2))

    @torch.no_grad()
    def scores(self, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """``(B, 6)`` logits of :data:`ALS_ATTRIBUTES`, in its order (the ``C_j`` of Eq. 4.4)."""
        cols = [self.names.index(a) for a in ALS_ATTRIBUTES.values()]
        return torch.cat([self(images[i:i + batch])[:, cols] for i in range(0, len(images), batch)])


def fit(clf: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor, steps: int,
        batch_size: int, lr: float, seed: int = 0, device="cpu") -> list[float]:
    """Train ``clf`` on uint8 ``images`` and binary ``labels`` (BCE, Adam, random horizontal
    flips: every attribute here is mirror-symmetric); returns the loss per step."""
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    clf.train()
    history = []
    for _ in range(steps):
        i = torch.randint(len(images), (batch_size,), generator=gen)
        x = to_signed(images[i])
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x).to(device)
        loss = F.binary_cross_entropy_with_logits(clf(x), labels[i].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


def held_out_report(clf: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Per ALS attribute on held-out uint8 ``images``: accuracy (logit > 0), ROC AUC and the
    positive rate, plus the logits' std (``"logit_std"``, the scale of an ALS deviation)."""
    from sklearn.metrics import roc_auc_score
    clf.eval()
    logits = clf.scores(to_signed(images))
    out = {}
    for j, (thesis, name) in enumerate(ALS_ATTRIBUTES.items()):
        y = labels[:, BINARY_ATTRIBUTES.index(name)].numpy().astype(bool)
        s = logits[:, j].numpy()
        out[thesis] = dict(attribute=name, accuracy=float(((s > 0) == y).mean()),
                           auc=float(roc_auc_score(y, s)) if 0 < y.mean() < 1 else float("nan"),
                           positive_rate=float(y.mean()), logit_std=float(s.std()))
    return out


_DISCRETE_ID = ("male", "hair_cat", "bangs", "beard", "glasses")


def linear_paths(n_paths: int, steps: int = 10, size: int = 32, seed: int = 0,
                 cfg=splits.FFHQ_ALIGNED, pool: int = 4000) -> dict:
    """Renders of ``n_paths`` paths with ``steps + 1`` points each along which every continuous
    renderer parameter moves linearly between two draws that agree in the discrete ones (see
    the module doc). Returns ``images`` float ``(n_paths, steps + 1, 3, size, size)`` in
    [-1, 1], ``ts`` ``(steps + 1,)``, ``binary`` ``(n_paths, steps + 1, 11)`` true attributes
    and ``age`` / ``smile`` ``(n_paths, steps + 1)``, the true continuous values (linear in t).

    Identities and images come from their own id/seed range (``seed``), not from any split."""
    rng = np.random.default_rng(seed)
    ids = 12_000_000 + 10 * pool * seed + np.arange(pool)
    idp = identity_params(ids, seed=0)
    key = np.stack([idp[k].astype(np.int64) for k in _DISCRETE_ID], 1)
    ends, used = [], set()
    for a in rng.permutation(pool):
        if len(ends) == n_paths:
            break
        if a in used:
            continue
        match = [b for b in np.flatnonzero((key == key[a]).all(1)) if b != a and b not in used]
        if match:
            b = int(rng.choice(match))
            ends.append((int(a), b))
            used.update((int(a), b))
    if len(ends) < n_paths:
        raise ValueError(f"only {len(ends)} pairs of one discrete class among {pool} identities")
    a, b = np.array(ends).T
    ts = np.linspace(0, 1, steps + 1)
    imp = image_params(np.arange(2 * n_paths) + 10 ** 7 * (seed + 1), seed=97, cfg=cfg)
    t = np.repeat(ts[None], n_paths, 0).reshape(-1)                 # path-major, then t

    def lerp(p: dict, i0, i1) -> dict:
        out = {}
        for k, v in p.items():
            v0, v1 = np.repeat(v[i0], steps + 1, 0), np.repeat(v[i1], steps + 1, 0)
            if np.issubdtype(v.dtype, np.floating):
                tt = t.reshape(-1, *([1] * (v.ndim - 1)))
                out[k] = (1 - tt) * v0 + tt * v1
            else:
                out[k] = v0                                         # discrete: both ends agree
        return out

    id_path = lerp(idp, a, b)
    im_path = lerp(imp, np.arange(n_paths), np.arange(n_paths) + n_paths)
    r = render(id_path, im_path, size, "cpu", cfg)
    binary, cont = attributes(id_path, im_path)
    shape = (n_paths, steps + 1)
    return dict(images=(r["image"] * 2 - 1).reshape(*shape, 3, size, size),
                ts=torch.from_numpy(ts), binary=torch.from_numpy(binary).reshape(*shape, -1),
                age=torch.from_numpy(id_path["age"]).reshape(shape),
                smile=torch.from_numpy(im_path["smile"]).reshape(shape))



def linear_probe(train_x, train_labels: torch.Tensor, test_x, test_labels: torch.Tensor,
                 attributes: dict = ALS_ATTRIBUTES) -> dict:
    """Held-out ROC AUC per attribute (``{thesis name: SynthFaces name}``) of a logistic
    regression (scikit-learn, L2, C = 1, on standardised inputs) from features ``(N, D)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    train_x, test_x = np.asarray(train_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    scaler = StandardScaler().fit(train_x)
    xtr, xte = scaler.transform(train_x), scaler.transform(test_x)
    out = {}
    for thesis, name in attributes.items():
        j = BINARY_ATTRIBUTES.index(name)
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(xtr, train_labels[:, j].numpy())
        out[thesis] = float(roc_auc_score(test_labels[:, j].numpy(), lr.decision_function(xte)))
    return out


def ridge_probe(train_x, train_y, test_x, test_y, names, alpha: float = 1.0) -> dict:
    """Held-out R^2 per column of ``train_y`` / ``test_y`` ``(N, len(names))`` of a ridge
    regression (scikit-learn, ``alpha``) from standardised features ``(N, D)``: how much of
    each continuous quantity (e.g. the renderer's pose or age) the features hold linearly;
    0 is the test mean's score, 1 exact."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler
    train_x, test_x = np.asarray(train_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    train_y, test_y = np.asarray(train_y, dtype=np.float64), np.asarray(test_y, dtype=np.float64)
    scaler = StandardScaler().fit(train_x)
    pred = Ridge(alpha=alpha).fit(scaler.transform(train_x), train_y).predict(scaler.transform(test_x))
    return {n: float(r2_score(test_y[:, j], pred[:, j])) for j, n in enumerate(names)}


def pixel_probe(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                test_labels: torch.Tensor, size: int = 16) -> dict:
    """The nothing-learned yardstick of the classifiers' gate: :func:`linear_probe` on raw
    pixels (uint8 images area-resized to ``size`` px)."""
    def pixels(x):
        return F.interpolate(x.float() / 255, size=(size, size), mode="area").flatten(1).numpy()
    return linear_probe(pixels(train_images), train_labels, pixels(test_images), test_labels)


def label_auc(labels: torch.Tensor, target: str, cue: str, sign: float = 1.0) -> float:
    """ROC AUC of one true binary attribute ``cue`` (times ``sign``) as the score for another,
    ``target`` (SynthFaces names): how much of ``target`` a single visible cue gives away."""
    from sklearn.metrics import roc_auc_score
    y = labels[:, BINARY_ATTRIBUTES.index(target)].numpy()
    return float(roc_auc_score(y, sign * labels[:, BINARY_ATTRIBUTES.index(cue)].numpy()))
