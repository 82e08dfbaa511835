"""Image folders for GAN training (FFHQ, LSUN-Church, AnimalFace-Dog/Cat, CUB), and the
image loading and dataset errors shared with :mod:`ssl_lab.data.faces`.

An :class:`ImageFolder` is every ``.png``/``.jpg``/``.jpeg`` file under a folder (any
depth), in sorted order of the relative path, so index ``i`` is the same image on every
machine.  It can resize (shorter side to ``resolution``, then a centre crop to a square,
as StyleGAN's ``dataset_tool --transform=center-crop`` does), keep only the first ``limit``
images or a seeded random ``limit`` of them (the thesis' FFHQ-1k/2k/10k), and add
horizontal flips (the thesis doubles every GAN dataset with them).

Items are float32 tensors ``[3, H, W]`` in **[0, 1]**, the convention of every loader in
``ssl_lab.data``; a GAN that wants [-1, 1] calls :func:`to_signed` on the batch.

``image_dataset(name, data_root)`` knows where each named dataset lives under a data root
once ``data_scripts/prepare_gan_images.py`` has laid it out (:data:`IMAGE_DATASETS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

EXTENSIONS = (".png", ".jpg", ".jpeg")


class DatasetNotFound(FileNotFoundError):
    """A dataset file or folder is missing; the message names it and the script that makes it."""


class MalformedDataset(ValueError):
    """A dataset file exists but does not parse; the message names the file (and line)."""


def hint(script: str) -> str:
    return f"run `python data_scripts/{script} --help` to see where to get it and how to prepare it"


def require(path: str | Path, script: str) -> Path:
    """``path`` as a Path if it exists, else :class:`DatasetNotFound` naming it and ``script``."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFound(f"expected {path}; {hint(script)}")
    return path


def open_rgb(path: str | Path, script: str = "prepare_gan_images.py") -> Image.Image:
    """Read an image file with PIL as RGB; a missing or undecodable file is a clear error."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DatasetNotFound(f"expected image {path}; {hint(script)}") from None
    except OSError as err:  # PIL.UnidentifiedImageError and truncated files
        raise MalformedDataset(f"{path}: cannot decode image ({err}); {hint(script)}") from None


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 ``[3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255)


def load_image(path: str | Path, script: str = "prepare_gan_images.py") -> torch.Tensor:
    """Read an image file as float32 RGB ``[3, H, W]`` in [0, 1]."""
    return pil_to_tensor(open_rgb(path, script))


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] (float) or 0..255 (uint8, as SynthFaces splits store images) -> float [-1, 1], the
    range StyleGAN's generator and discriminator work in."""
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1)
    return x * 2 - 1


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (Lanczos), then the central ``size x size`` square."""
    w, h = image.size
    s = size / min(w, h)
    if (w, h) != (size, size):
        image = image.resize((max(size, round(w * s)), max(size, round(h * s))), Image.LANCZOS)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def list_images(root: str | Path, script: str = "prepare_gan_images.py") -> list[Path]:
    """Every image file under ``root`` (any depth), sorted by relative path."""
    root = require(root, script)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DatasetNotFound(f"expected image files ({', '.join(EXTENSIONS)}) under {root}, "
                              f"found none; {hint(script)}")
    return files


class ImageFolder(Dataset):
    """The images under ``root`` as float32 ``[3, R, R]`` tensors in [0, 1].

    resolution: resize the shorter side and centre-crop to ``resolution`` (None: as stored;
        then images of different sizes cannot be batched).
    limit: keep ``limit`` images: the first ones in sorted order if ``seed`` is None, else a
        random subset drawn with ``torch.Generator().manual_seed(seed)``, kept in sorted order.
    xflip: append the horizontal mirror of every image (``len`` doubles).
    """

    def __init__(self, root: str | Path, resolution: int | None = None, limit: int | None = None,
                 seed: int | None = None, xflip: bool = False,
                 script: str = "prepare_gan_images.py"):
        self.root, self.resolution, self.xflip, self.script = Path(root), resolution, xflip, script
        files = list_images(root, script)
        if limit is not None:
            if not 0 < limit <= len(files):
                raise ValueError(f"limit={limit} but {root} holds {len(files)} images")
            if seed is None:
                files = files[:limit]
            else:
                pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))
                files = [files[i] for i in sorted(pick[:limit].tolist())]
        self.files = files

    def __len__(self) -> int:
        return len(self.files) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        flip, i = divmod(index, len(self.files))
        image = open_rgb(self.files[i], self.script)
        if self.resolution is not None:
            image = resize_center_crop(image, self.resolution)
        image = pil_to_tensor(image)
        return image.flip(-1) if flip else image


@dataclass(frozen=True)
class ImageLayout:
    folder: str  # relative to the data root, as prepare_gan_images.py writes it
    count: int  # images in the full dataset (before flips)
    source: str


IMAGE_DATASETS = {
    "ffhq": ImageLayout("ffhq", 70_000, "FFHQ (Karras et al.), images1024x1024/*/*.png"),
    "lsun-church": ImageLayout("lsun-church", 126_227,
                               "LSUN church_outdoor train, exported from its lmdb"),
    "animalface-dog": ImageLayout("animalface-dog", 389, "AnimalFace dog faces (Si & Zhu)"),
    "animalface-cat": ImageLayout("animalface-cat", 160, "AnimalFace cat faces (Si & Zhu)"),
    "cub": ImageLayout("CUB_200_2011/images", 11_788, "Caltech-UCSD Birds-200-2011, images/<class>/"),
}


def image_dataset(name: str, data_root: str | Path, resolution: int | None = 256,
                  limit: int | None = None, seed: int | None = None,
                  xflip: bool = False) -> ImageFolder:
    """The named GAN dataset under ``data_root`` (see :data:`IMAGE_DATASETS`), e.g.
    ``image_dataset("ffhq", "/data", 256, limit=1000, seed=0)`` for FFHQ-1k."""
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; known: {', '.join(IMAGE_DATASETS)}")
    folder = Path(data_root) / IMAGE_DATASETS[name].folder
    return ImageFolder(folder, resolution, limit, seed, xflip)
