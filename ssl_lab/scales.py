"""The three scales every chapter runs at: ``smoke`` (default, CI), ``small``, ``full``.

A preset says how big the SynthFaces splits are and at which resolution they are rendered.
Training recipes (in the zoo) read their own budget from ``Scale.name``. ``full`` uses the
real datasets (``data_root``), so its split sizes are ``None``: the readers decide.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scale:
    name: str
    face_size: int             # landmark images (px); full: 136 resized, 96 centre crop
    gan_size: int              # GAN training images (px)
    sizes: dict = field(default_factory=dict)   # split name -> number of images
    pairs: int = 500           # same-identity and different-identity matching pairs, each
    real_data: bool = False


SMOKE = Scale("smoke", face_size=48, gan_size=32, pairs=16, sizes={
    "celeba": 512, "mafl/train": 128, "mafl/test": 64, "aflw_m/train": 128, "aflw_m/test": 64,
    "aflw_r/train": 128, "aflw_r/test": 64, "300w/train": 128, "300w/test": 64,
    "mafl_unaligned/train": 128, "mafl_unaligned/test": 64, "ffhq": 256})

SMALL = Scale("small", face_size=64, gan_size=32, pairs=500, sizes={
    "celeba": 20000, "mafl/train": 5000, "mafl/test": 1000, "aflw_m/train": 4000,
    "aflw_m/test": 1000, "aflw_r/train": 4000, "aflw_r/test": 1000, "300w/train": 3148,
    "300w/test": 689, "mafl_unaligned/train": 5000, "mafl_unaligned/test": 1000,
    "ffhq": 10000})

FULL = Scale("full", face_size=96, gan_size=256, pairs=500, real_data=True,
             sizes={k: None for k in SMALL.sizes})

SCALES = {s.name: s for s in (SMOKE, SMALL, FULL)}


def get(name: str) -> Scale:
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"unknown scale {name!r}; choose one of {sorted(SCALES)}") from None


def page_note(scale: str) -> str:
    """One sentence for a chapter's top: which networks the page shows, and where they come from."""
    get(scale)
    where = ("loaded from the shipped zoo (results/zoo/, `python -m ssl_lab zoo` lists it); "
             "nothing is trained while the page runs")
    return {
        "smoke": f"Scale 'smoke': every network on this page trained for a few steps only and is {where}. "
                 "Its numbers and pictures prove the code path; they are not findings.",
        "small": f"Scale 'small': networks trained on SynthFaces at the small budget, {where}. Each one's "
                 "learning gates are evaluated (its manifest and the page's gate tables say which passed); a "
                 "number is a finding only where they pass.",
        "full": "Scale 'full': the thesis's networks and data sets, from the checkpoints trained with "
                "`python -m ssl_lab train RECIPE --scale full` (or passed as checkpoint=).",
    }[scale]
