"""Benchmark-like SynthFaces splits: who plays CelebA, MAFL, AFLW_M, AFLW_R, 300-W and FFHQ.

Each split has its own pose/framing ranges (:class:`SynthConfig`), its own seed and a
disjoint range of identity ids (so no test identity is seen in training). Sizes come from
the scale (:mod:`ssl_lab.scales`). Rendered splits are cached under
``$SSL_LAB_HOME/synthfaces`` (a pure function of name, size and renderer version).

>>> test = load("mafl/test", scale="smoke")          # doctest: +SKIP
>>> item = test[0]; item["image"].shape, item["landmarks"].shape
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import scales as _scales
from ..paths import atomic_save, home
from .synthfaces import (BINARY_ATTRIBUTES, CONTINUOUS_ATTRIBUTES, RENDERER_VERSION, SynthConfig, image_params,
                         render_faces)

# Framing follows the thesis's protocol (after DVE): CelebA and MAFL are CelebA's *aligned*
# images (a similarity transform puts the eye centres at fixed positions: about (69, 111) and
# (108, 111) of 178 x 218), resized to 136 px; stage 1 trains on random 96-px crops of them and
# evaluation uses the 96-px *centre* crop. So the eye line is level, the inter-ocular distance
# is 0.22 of the width at 136 px and 0.22 x 136 / 96 = 0.31 in the centre crop, and the eyes sit
# just below the middle (y = 111 / 218 of the height: +0.02 in [-1, 1], +0.03 after the crop).
# The renderer aligns exactly (SynthConfig.align_eyes); pose still varies (yaw, pitch, and the
# roll that alignment leaves: none).
ALIGNED = SynthConfig(yaw=30, pitch=15, roll=10, occluder_p=0.05, face_scale=0.77, align_eyes=(0.22, 0.02))
CENTRE_CROP = SynthConfig(**{**asdict(ALIGNED), "face_scale": 1.0, "align_eyes": (0.22 * 136 / 96, 0.02 * 136 / 96)})
#: the MAFL-role framing before this alignment (the centre-crop scale, faces posed, not aligned)
UNALIGNED_CROP = SynthConfig(**{**asdict(CENTRE_CROP), "align_eyes": None})
WIDE = SynthConfig(yaw=60, pitch=25, roll=30, occluder_p=0.15, zoom=(1.0, 1.1))


@dataclass(frozen=True)
class SplitSpec:
    cfg: SynthConfig
    points: int          # 5 (MAFL-style) or 68 (300-W) annotated landmarks; 0 = unannotated
    seed: int
    id_offset: int
    per_identity: int    # images per identity


SPECS = {
    "celeba": SplitSpec(ALIGNED, 0, 11, 0, 20),
    "mafl/train": SplitSpec(CENTRE_CROP, 5, 21, 1_000_000, 10),
    "mafl/test": SplitSpec(CENTRE_CROP, 5, 22, 2_000_000, 10),
    "aflw_m/train": SplitSpec(WIDE, 5, 31, 3_000_000, 10),
    "aflw_m/test": SplitSpec(WIDE, 5, 32, 4_000_000, 10),
    # AFLW_R: the same wide poses, cropped tighter (the face fills more of the frame)
    "aflw_r/train": SplitSpec(SynthConfig(**{**asdict(WIDE), "face_scale": 0.75}), 5, 41, 5_000_000, 10),
    "aflw_r/test": SplitSpec(SynthConfig(**{**asdict(WIDE), "face_scale": 0.75}), 5, 42, 6_000_000, 10),
    "300w/train": SplitSpec(SynthConfig(yaw=45, pitch=20, roll=20, occluder_p=0.1), 68, 51, 7_000_000, 10),
    "300w/test": SplitSpec(SynthConfig(yaw=45, pitch=20, roll=20, occluder_p=0.1), 68, 52, 8_000_000, 10),
    # unaligned MAFL: zoomed out (recorded per image) and shifted; test zooms out further
    "mafl_unaligned/train": SplitSpec(SynthConfig(**{**asdict(UNALIGNED_CROP), "zoom": (1.0, 1.5), "shift": 0.15}),
                                      5, 61, 1_000_000, 10),
    "mafl_unaligned/test": SplitSpec(SynthConfig(**{**asdict(UNALIGNED_CROP), "zoom": (1.0, 2.0), "shift": 0.15}),
                                     5, 62, 2_000_000, 10),
    # GAN training set (FFHQ role): near-frontal, clean, with attributes
    "ffhq": SplitSpec(SynthConfig(yaw=25, pitch=12, roll=5, blur=(0.0, 0.3), noise=(0.0, 0.01)),
                      0, 71, 9_000_000, 1),
}
GAN_LIMITED = (1000, 2000, 10000)

# The FFHQ role as FFHQ is made (NVlabs/ffhq-dataset, recreate_aligned_images): a similarity
# that fixes the eyes and the mouth, with a crop side of max(2 x eye-to-eye, 1.8 x eye-to-mouth)
# centred 0.1 eye-to-mouth below the eye midpoint. For a face whose eye-to-mouth distance is
# about 1.1 x its eye-to-eye one that puts the eye centres a quarter of the width apart, level,
# 0.055 (in [-1, 1] units) above the centre. The renderer aligns the eyes exactly
# (align_eyes); the mouth then lands within the spread of the identities' face proportions.
# Near-frontal poses (FFHQ is mostly frontal), clean images, no occluders. Kept apart from
# SPECS: the LEAD networks do not train on it, so adding it leaves their zoo keys unchanged;
# the GAN recipes put spec_key("ffhq_aligned") in their configs instead.
FFHQ_ALIGNED = SynthConfig(yaw=15, pitch=10, roll=10, blur=(0.0, 0.3), noise=(0.0, 0.01),
                           align_eyes=(0.25, -0.055))
# ffhq_aligned_attr: the same distribution, other identities and images: the attribute
# classifiers of the ALS chapter train and are tested on it (the CelebA-HQ role: the thesis's
# classifiers were not trained on the GAN's data either).
GAN_SPECS = {"ffhq_aligned": SplitSpec(FFHQ_ALIGNED, 0, 73, 9_500_000, 1),
             "ffhq_aligned_attr": SplitSpec(FFHQ_ALIGNED, 0, 75, 9_700_000, 1)}


def _spec(name: str) -> SplitSpec:
    if name in SPECS:
        return SPECS[name]
    if name in GAN_SPECS:
        return GAN_SPECS[name]
    raise KeyError(f"unknown split {name!r}; known: {sorted(SPECS) + sorted(GAN_SPECS)}")


def spec_key(name: str) -> str:
    """A short hash of the renderer version and split ``name``'s definition."""
    key = json.dumps([RENDERER_VERSION, asdict(_spec(name))], sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


class FaceSet(Dataset):
    """A rendered split. Items are dicts: ``image`` float [3,S,S] in [0,1], ``landmarks``
    (K,2) and ``visible`` (K,) for the split's annotation (5 or 68 points; 5 if unannotated),
    ``name``, plus SynthFaces extras (kp5, vis5, kp68, vis68, parts, binary, continuous,
    identity, pose, zoom). Whole-split tensors are in ``.data``."""

    def __init__(self, name: str, data: dict, points: int):
        self.name, self.data, self.points = name, data, points
        self.binary_names, self.continuous_names = BINARY_ATTRIBUTES, CONTINUOUS_ATTRIBUTES

    def __len__(self):
        return len(self.data["image"])

    @property
    def images(self) -> torch.Tensor:
        """All images as float [N,3,S,S] in [0,1]."""
        return self.data["image"].float() / 255

    @property
    def landmarks(self) -> torch.Tensor:
        return self.data["kp68" if self.points == 68 else "kp5"]

    @property
    def visible(self) -> torch.Tensor:
        return self.data["vis68" if self.points == 68 else "vis5"]

    def __getitem__(self, i):
        d = {k: v[i] for k, v in self.data.items()}
        d["image"] = d["image"].float() / 255
        d["parts"] = d["parts"].long()
        k = "68" if self.points == 68 else "5"
        d.update(landmarks=d[f"kp{k}"], visible=d[f"vis{k}"], name=f"{self.name}/{i:06d}")
        return d

    def subset(self, n: int) -> "FaceSet":
        """The first ``n`` images (the limited-data subsets of the GAN chapters)."""
        if n > len(self):
            raise ValueError(f"{self.name} has {len(self)} images, cannot take the first {n}")
        return FaceSet(f"{self.name}[:{n}]", {k: v[:n] for k, v in self.data.items()}, self.points)


def split_size(name: str, scale: str) -> int:
    sc = _scales.get(scale)
    if name in GAN_SPECS:                   # the GAN roles share the FFHQ role's size
        name = "ffhq"
    if name not in sc.sizes:
        raise KeyError(f"unknown split {name!r}; known: {sorted(SPECS)}")
    if sc.real_data:
        raise ValueError(f"scale {scale!r} uses the real datasets: read them with "
                         "ssl_lab.data.faces (see data_scripts/) instead of SynthFaces")
    return sc.sizes[name]


def render_split(name: str, n: int, size: int, device="cpu", chunk: int = 256, progress=False) -> dict:
    """Render the first ``n`` images of split ``name`` at ``size`` px (uint8 images)."""
    spec = _spec(name)
    idx = np.arange(n)
    ids = spec.id_offset + idx // spec.per_identity
    out = {}
    from ..progress import bar
    it = bar(range(0, n, chunk), f"render {name}", show=progress, leave=False)
    for a in it:
        r = render_faces(idx[a:a + chunk], ids[a:a + chunk], seed=spec.seed, size=size,
                         cfg=spec.cfg, device=device)
        r["image"] = (r["image"] * 255).round().to(torch.uint8)
        r["parts"] = r["parts"].to(torch.uint8)
        r["zoom"] = r["continuous"][:, CONTINUOUS_ATTRIBUTES.index("zoom")]
        for k, v in r.items():
            out.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def render_params(name: str, n: int) -> dict[str, np.ndarray]:
    """The renderer's per-image parameters (:func:`~ssl_lab.data.synthfaces.image_params`:
    pose before any eye alignment, light, framing, nuisances) of the first ``n`` images of split
    ``name``, as :func:`render_split` drew them: what a split's tensors do not store, such as
    its lighting (:func:`~ssl_lab.data.synthfaces.frontal_light`)."""
    spec = _spec(name)
    return image_params(np.arange(n), spec.seed, spec.cfg)


def specs_key() -> str:
    """A short hash of the renderer version and every split's definition: what a network
    trained on SynthFaces depends on (the zoo puts it in its cache keys)."""
    key = json.dumps([RENDERER_VERSION, {k: asdict(v) for k, v in SPECS.items()}], sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def _cache_path(name, n, size):
    spec = _spec(name)
    key = json.dumps([name, n, size, RENDERER_VERSION, asdict(spec)], sort_keys=True)
    h = hashlib.sha1(key.encode()).hexdigest()[:10]
    return home() / "synthfaces" / f"{name.replace('/', '-')}-n{n}-{size}px-{h}.pt"


def load(name: str, scale: str = "smoke", size: int | None = None, n: int | None = None,
         device="cpu", cache: bool = True, progress: bool = False) -> FaceSet:
    """The SynthFaces split ``name`` (e.g. ``"mafl/test"``) at ``scale``; ``size`` defaults to
    the scale's face size (GAN size for the FFHQ roles), ``n`` to the scale's split size."""
    spec = _spec(name)
    sc = _scales.get(scale)
    n = n or split_size(name, scale)
    size = size or (sc.gan_size if name.startswith("ffhq") else sc.face_size)
    path = _cache_path(name, n, size)
    if cache and path.exists():
        data = torch.load(path, weights_only=True)
    else:
        data = render_split(name, n, size, device=device, progress=progress)
        if cache:
            atomic_save(data, path)
    return FaceSet(name, data, spec.points)


def matching_pairs(faces: FaceSet, n: int, same: bool, seed: int = 0) -> torch.Tensor:
    """``n`` index pairs (n, 2) into ``faces``: two images of one identity (``same``) or of
    two different identities. Deterministic in ``seed``; no pair repeats."""
    ids = faces.data["identity"].numpy()
    rng = np.random.default_rng(seed)
    members = {k: np.flatnonzero(ids == k) for k in np.unique(ids)}
    pairs = set()
    limit = n * 50
    while len(pairs) < n and limit:
        limit -= 1
        a = int(rng.integers(len(ids)))
        pool = members[ids[a]] if same else np.flatnonzero(ids != ids[a])
        pool = pool[pool != a]
        if len(pool):
            pairs.add((a, int(rng.choice(pool))))
    if len(pairs) < n:
        raise ValueError(f"{faces.name}: could not find {n} {'same' if same else 'different'}-"
                         f"identity pairs among {len(ids)} images; use a larger split")
    return torch.tensor(sorted(pairs))


def inter_ocular_fraction(faces: FaceSet) -> float:
    """Mean distance between the two eye centres as a fraction of the image width."""
    kp = faces.data["kp5"].double()
    return float((kp[:, 0] - kp[:, 1]).norm(dim=-1).mean() / faces.data["image"].shape[-1])


def describe(scale: str) -> list[dict]:
    """One row per split: its role, size, resolution, annotation and ranges (for tables)."""
    sc = _scales.get(scale)
    rows = []
    for name, spec in SPECS.items():
        c = spec.cfg
        rows.append(dict(split=name, images=sc.sizes.get(name),
                         px=sc.gan_size if name.startswith("ffhq") else sc.face_size,
                         landmarks=spec.points or "-",
                         identities=None if sc.sizes.get(name) is None
                         else math.ceil(sc.sizes[name] / spec.per_identity),
                         yaw=f"±{c.yaw:g}", pitch=f"±{c.pitch:g}", roll=f"±{c.roll:g}",
                         zoom=f"{c.zoom[0]:g}-{c.zoom[1]:g}", face_scale=c.face_scale,
                         eyes_aligned="yes" if c.align_eyes else "no",
                         occluders=c.occluder_p))
    return rows
