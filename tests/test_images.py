"""ssl_lab.data.images: image folders for GAN training, on tiny folders written here."""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_lab.data import images
from ssl_lab.data.images import DatasetNotFound, ImageFolder, MalformedDataset

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, w: int, h: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((h, w, 3), value, np.uint8)
    array[:, : w // 2, 0] = 0  # left half without red: shows flips
    Image.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    """10 images in two sub-folders, mixed formats and sizes, plus files to be ignored."""
    root = tmp_path / "imgs"
    for i in range(10):
        sub = "b" if i % 2 else "a"
        ext = ".jpg" if i == 3 else ".png"
        write(root / sub / f"{i:02d}{ext}", 40 + i, 30, 10 * i + 50)
    (root / "a" / "notes.txt").write_text("not an image")
    write(root / "a" / "UPPER.PNG", 8, 8, 7)
    return root


def test_sorted_recursive_listing(folder):
    ds = ImageFolder(folder)
    names = [str(p.relative_to(folder)) for p in ds.files]
    assert names == sorted(names) and len(names) == 11
    assert names[:2] == ["a/00.png", "a/02.png"] and "a/notes.txt" not in names
    assert "a/UPPER.PNG" in names and "b/03.jpg" in names


def test_items_are_float_in_unit_range(folder):
    image = ImageFolder(folder)[0]  # a/00.png: 40 x 30, value 50 (red 0 on the left half)
    assert image.dtype == torch.float32 and image.shape == (3, 30, 40)
    assert image.min() >= 0 and image.max() <= 1
    torch.testing.assert_close(image[1], torch.full((30, 40), 50 / 255))
    torch.testing.assert_close(images.to_signed(image)[1], torch.full((30, 40), 50 / 255 * 2 - 1))


def test_to_signed_of_uint8_is_the_same_range():
    x = torch.tensor([0, 50, 255], dtype=torch.uint8)
    torch.testing.assert_close(images.to_signed(x), torch.tensor([-1.0, 50 / 127.5 - 1, 1.0]))
    torch.testing.assert_close(images.to_signed(x), images.to_signed(x.float() / 255))


def test_resolution_resizes_shorter_side_and_centre_crops(folder):
    ds = ImageFolder(folder, resolution=16)
    batch = torch.stack([ds[i] for i in range(len(ds))])
    assert batch.shape == (11, 3, 16, 16)
    assert 0 <= batch.min() and batch.max() <= 1
    pil = images.resize_center_crop(Image.new("RGB", (60, 30)), 20)
    assert pil.size == (20, 20)


def test_limit_first_n_and_seeded_subset(folder):
    full = ImageFolder(folder)
    first = ImageFolder(folder, limit=4)
    assert first.files == full.files[:4]
    a, b = ImageFolder(folder, limit=4, seed=0), ImageFolder(folder, limit=4, seed=0)
    assert a.files == b.files and len(a) == 4
    assert a.files == sorted(a.files) and set(a.files) <= set(full.files)
    subsets = {tuple(ImageFolder(folder, limit=4, seed=s).files) for s in range(5)}
    assert len(subsets) > 1  # the seed matters
    with pytest.raises(ValueError, match="limit=12 but .* holds 11 images"):
        ImageFolder(folder, limit=12)


def test_xflip_doubles_with_mirrors(folder):
    ds = ImageFolder(folder, xflip=True)
    assert len(ds) == 22
    torch.testing.assert_close(ds[11], ds[0].flip(-1))
    assert ds[11][0, 0, 0] > 0 and ds[0][0, 0, 0] == 0
    with pytest.raises(IndexError):
        ds[22]


def test_named_datasets_map_to_their_folders(tmp_path):
    assert set(images.IMAGE_DATASETS) == {"ffhq", "lsun-church", "animalface-dog",
                                          "animalface-cat", "cub"}
    assert images.IMAGE_DATASETS["animalface-dog"].count == 389
    assert images.IMAGE_DATASETS["animalface-cat"].count == 160
    assert images.IMAGE_DATASETS["ffhq"].count == 70_000
    write(tmp_path / "CUB_200_2011" / "images" / "001.Black_footed_Albatross" / "x.jpg", 50, 40, 90)
    write(tmp_path / "ffhq" / "00000" / "00000.png", 64, 64, 90)
    assert images.image_dataset("cub", tmp_path, resolution=32)[0].shape == (3, 32, 32)
    assert len(images.image_dataset("ffhq", tmp_path, xflip=True)) == 2
    with pytest.raises(ValueError, match="unknown image dataset 'afhq'; known: ffhq"):
        images.image_dataset("afhq", tmp_path)
    with pytest.raises(DatasetNotFound, match=r"lsun-church; run `python data_scripts/prepare_gan_images.py --help`"):
        images.image_dataset("lsun-church", tmp_path)


def test_errors(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFound, match=r"found none; run `python data_scripts/prepare_gan_images.py"):
        ImageFolder(tmp_path / "empty")
    (folder / "a" / "00.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(MalformedDataset, match=r"00.png: cannot decode image"):
        ImageFolder(folder)[0]
    ds = ImageFolder(folder)
    (folder / "a" / "02.png").unlink()
    with pytest.raises(DatasetNotFound, match=r"expected image .*02.png"):
        ds[1]


def run_script(*args) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "data_scripts"))
        mp.setattr(sys, "argv", ["prepare_gan_images.py", *map(str, args)])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(REPO / "data_scripts" / "prepare_gan_images.py"),
                               run_name="__main__")
                code = 0
            except SystemExit as exit:
                code = exit.code or 0
    return code, out.getvalue(), err.getvalue()


def test_prepare_gan_images(tmp_path, folder):
    out = tmp_path / "data"
    code, stdout, stderr = run_script("animalface-cat", "--src", folder, "--out", out,
                                      "--resolution", 16)
    assert code == 0, stderr
    assert "animalface-cat: 11 (the full dataset has 160: a partial copy)" in stdout
    ds = images.image_dataset("animalface-cat", out, resolution=None)
    assert len(ds) == 11 and ds[0].shape == (3, 16, 16)
    assert all(p.suffix == ".png" for p in ds.files)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    code, _, stderr = run_script("animalface-cat", "--src", folder, "--out", out)
    assert code == 2 and "exists; pass --force" in stderr
    code, _, stderr = run_script("lsun-church", "--out", out, "--verify-only")
    assert code == 2 and "lsun-church" in stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "data_scripts"))
        names = runpy.run_path(str(REPO / "data_scripts" / "prepare_gan_images.py"))["NAMES"]
    assert set(names) == set(images.IMAGE_DATASETS)  # the script's choices
