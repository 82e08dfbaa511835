"""Lay out the GAN image datasets for ssl_lab.data.images (image_dataset, ImageFolder) and
verify them with that reader.

Where to get the data (nothing is downloaded by this script):
  ffhq            Flickr-Faces-HQ (Karras et al., CVPR 2019), from NVIDIA Research's FFHQ
                  repository: images1024x1024/ (70,000 PNGs in 70 sub-folders).
  lsun-church     LSUN (Yu et al., 2015) church_outdoor, training split, from the LSUN
                  project page: church_outdoor_train_lmdb (126,227 images in an LMDB
                  database).  Exporting it needs the `lmdb` Python package (not in
                  requirements.txt; install it where you run this).
  animalface-dog  the 389 dog faces and the 160 cat faces of the Animal Face dataset (Si &
  animalface-cat  Zhu, TPAMI 2012), as packaged for the low-shot GAN benchmarks of
                  Data-Efficient GANs with DiffAugment (Zhao et al., NeurIPS 2020): one
                  folder of images per animal.
  cub             Caltech-UCSD Birds-200-2011 (Wah et al., 2011), from the Caltech Vision
                  Lab: CUB_200_2011.tgz (11,788 images in images/<class>/).

Layout written (and read by image_dataset(name, <out>)):
  <out>/ffhq/...png   <out>/lsun-church/0000000.png ...   <out>/animalface-dog/...
  <out>/animalface-cat/...   <out>/CUB_200_2011/images/<class>/...jpg

--src is a folder or an archive (for lsun-church the lmdb folder).  With --resolution R
every image is resized (shorter side to R, centre crop, Lanczos) and written as PNG, as
the thesis trains at 256 x 256; without it folders are copied (or symlinked with --link)
unchanged.  Everything is written into a temporary folder that is renamed into place, so
an interrupted run leaves nothing half-written.

Example:
  python data_scripts/prepare_gan_images.py animalface-dog --src AnimalFace/dog --out /data
  python data_scripts/prepare_gan_images.py lsun-church --src church_outdoor_train_lmdb \\
      --resolution 256 --out /data
  python data_scripts/prepare_gan_images.py ffhq --out /data --verify-only
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from _common import PrepareError, atomic_dir, extract, is_archive, parser, place, report, run

NAMES = ("ffhq", "lsun-church", "animalface-dog", "animalface-cat", "cub")  # = IMAGE_DATASETS


def export_lmdb(src: Path, dst: Path, resolution: int | None, limit: int | None) -> int:
    from PIL import Image

    from ssl_lab.data import images

    try:
        import lmdb
    except ImportError:
        raise PrepareError("exporting LSUN needs the `lmdb` package (pip install lmdb)") from None
    n = 0
    with lmdb.open(str(src), readonly=True, lock=False, readahead=False) as env, \
            env.begin(write=False) as txn:
        for _, value in txn.cursor():
            image = Image.open(io.BytesIO(value)).convert("RGB")
            if resolution:
                image = images.resize_center_crop(image, resolution)
            image.save(dst / f"{n:07d}.png")
            n += 1
            if limit and n >= limit:
                break
    return n


def convert_folder(src: Path, dst: Path, resolution: int) -> int:
    from ssl_lab.data import images

    files = images.list_images(src)
    for i, path in enumerate(files):
        out = dst / path.relative_to(src).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        images.resize_center_crop(images.open_rgb(path), resolution).save(out)
        if i % 5000 == 4999:
            print(f"    {i + 1}/{len(files)}")
    return len(files)


def prepare(name: str, src: Path, out: Path, resolution: int | None, link: bool, force: bool,
            limit: int | None) -> None:
    from ssl_lab.data import images

    dst = out / images.IMAGE_DATASETS[name].folder
    if name == "lsun-church":
        print(f"  {src} -> {dst}")
        with atomic_dir(dst, force) as tmp:
            export_lmdb(src, tmp, resolution, limit)
        return
    if is_archive(src):  # unpack beside the output, then prepare from the unpacked folder
        with tempfile.TemporaryDirectory(prefix=".unpack.", dir=out) as unpacked:
            extract(src, Path(unpacked))
            return prepare(name, Path(unpacked), out, resolution, False, force, limit)
    if name == "cub":  # the images/ folder of CUB_200_2011, wherever src starts
        src = next((p for p in (src / "images", src / "CUB_200_2011" / "images") if p.is_dir()), src)
    print(f"  {src} -> {dst}")
    if resolution is None:
        place(src, dst, link, force)
    else:
        with atomic_dir(dst, force) as tmp:
            convert_folder(src, tmp, resolution)


def verify(name: str, out: Path) -> None:
    from ssl_lab.data import images

    layout = images.IMAGE_DATASETS[name]
    print(f"verifying {name} in {out / layout.folder}")
    ds = images.image_dataset(name, out, resolution=None)
    report(name, len(ds), layout.count)
    print(f"    first: {ds.files[0].relative_to(ds.root)}, image {tuple(ds[0].shape)}")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("name", choices=NAMES, help="which dataset")
    p.add_argument("--src", type=Path, help="the downloaded folder or archive")
    p.add_argument("--resolution", type=int, help="resize + centre crop to this size (PNG)")
    p.add_argument("--limit", type=int, help="lsun-church: export only the first N images")
    args = p.parse_args()
    if not args.verify_only:
        if args.src is None:
            raise PrepareError("give --src (or --verify-only)")
        args.out.mkdir(parents=True, exist_ok=True)
        prepare(args.name, args.src, args.out, args.resolution, args.link, args.force, args.limit)
    verify(args.name, args.out)


if __name__ == "__main__":
    run(main)
