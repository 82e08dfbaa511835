"""Lay out CelebA and MAFL for ssl_lab.data.faces (mafl, celeba_unlabelled, mafl_unaligned)
and verify them with those readers.

Where to get the data (nothing is downloaded by this script):
  CelebA  the official CelebA page of the Multimedia Laboratory, CUHK (Liu et al., "Deep
          Learning Face Attributes in the Wild", ICCV 2015), download section:
            Img/img_align_celeba.zip               aligned & cropped images (202,599)
            Anno/list_landmarks_align_celeba.txt   5 landmarks of the aligned images
            Eval/list_eval_partition.txt           0 train / 1 val / 2 test
          for unaligned MAFL (thesis Fig. 3.9) also the in-the-wild images
          (Img/img_celeba.7z; extract it with 7-Zip first, giving img_celeba/),
          Anno/list_landmarks_celeba.txt and Anno/list_bbox_celeba.txt.
  MAFL    training.txt (19,000 names) and testing.txt (1,000 names) of the MAFL subset of
          CelebA, from the TCDCN project page of the same laboratory (Zhang et al., "Learning
          Deep Representation for Face Alignment with Auxiliary Attributes", TPAMI 2016).
          The DVE authors (Thewlis et al., ICCV 2019) distribute CelebA + MAFL already in the
          layout below.

Layout written (and read):
  <out>/celeba/Anno/list_landmarks_align_celeba.txt   [list_landmarks_celeba.txt,
  <out>/celeba/Eval/list_eval_partition.txt            list_bbox_celeba.txt]
  <out>/celeba/Img/img_align_celeba/000001.jpg ...    [Img/img_celeba/]
  <out>/celeba/MAFL/training.txt, testing.txt

--celeba may be the CelebA download folder (files found anywhere below it; the aligned
images as img_align_celeba/ or img_align_celeba.zip); --mafl a folder holding training.txt
and testing.txt.  Annotation files are copied through a temporary file and a rename, image
folders are copied (or symlinked with --link, or extracted) into a temporary folder that is
renamed into place, so an interrupted run leaves nothing half-written.

Example:
  python data_scripts/prepare_celeba_mafl.py --celeba ~/Downloads/CelebA \\
      --mafl ~/Downloads/MAFL --out /data --link
  python data_scripts/prepare_celeba_mafl.py --out /data --verify-only
"""

from __future__ import annotations

from pathlib import Path

from _common import (PrepareError, atomic_copy_file, check_checksums, find, parser, place,
                     report, run)

ANNOTATIONS = {  # file in the download -> place in the layout; True = required
    "list_landmarks_align_celeba.txt": ("Anno", True),
    "list_eval_partition.txt": ("Eval", True),
    "list_landmarks_celeba.txt": ("Anno", False),
    "list_bbox_celeba.txt": ("Anno", False),
}
# sha256 of the official annotation files.  No verified values are recorded here (none were
# available when this script was written; never fill these in from memory): the script
# prints each file's digest so that a copy can be compared with a trusted one.
KNOWN_SHA256 = {"Anno/list_landmarks_align_celeba.txt": "", "Eval/list_eval_partition.txt": "",
                "Anno/list_landmarks_celeba.txt": "", "Anno/list_bbox_celeba.txt": "",
                "MAFL/training.txt": "", "MAFL/testing.txt": ""}


def copy_celeba(src: Path, root: Path, link: bool, force: bool) -> None:
    for name, (folder, required) in ANNOTATIONS.items():
        try:
            atomic_copy_file(find(src, f"{folder}/{name}", name), root / folder / name)
        except PrepareError:
            if required:
                raise
            print(f"  (optional {name} not found: unaligned MAFL will be unavailable)")
    for folder in ("img_align_celeba", "img_celeba"):
        try:
            images = find(src, folder, f"{folder}.zip")
        except PrepareError:
            if folder == "img_align_celeba":
                raise
            continue
        print(f"  {images} -> {root / 'Img' / folder}")
        place(images, root / "Img" / folder, link, force)


def verify(root: Path) -> None:
    from ssl_lab.data import faces

    print(f"verifying {root}")
    check_checksums(root, KNOWN_SHA256)
    size = faces.EXPECTED_SIZES
    checks = [("MAFL train", lambda: faces.mafl(root, "train"), size["mafl", "train"]),
              ("MAFL test", lambda: faces.mafl(root, "test"), size["mafl", "test"]),
              ("CelebA pretraining set (partition 0 minus MAFL test)",
               lambda: faces.celeba_unlabelled(root), None)]
    if (root / "Anno" / "list_bbox_celeba.txt").exists():
        checks.append(("unaligned MAFL test", lambda: faces.mafl_unaligned(root, "test"),
                       size["mafl", "test"]))
    for label, make, expected in checks:
        ds = make()
        report(label, len(ds), expected)
        if len(ds):
            item = ds[0]  # reads the first image: the folder is where the annotations say
            print(f"    first: {item['name']}, image {tuple(item['image'].shape)}")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--celeba", type=Path, help="the CelebA download folder")
    p.add_argument("--mafl", type=Path, help="folder holding MAFL training.txt and testing.txt")
    args = p.parse_args()
    from ssl_lab.data import faces

    root = args.out / faces.DEFAULT_DIRS["mafl"]
    if not args.verify_only:
        if args.celeba:
            copy_celeba(args.celeba, root, args.link, args.force)
        if args.mafl:
            for name in ("training.txt", "testing.txt"):
                atomic_copy_file(find(args.mafl, name), root / "MAFL" / name)
    verify(root)


if __name__ == "__main__":
    run(main)
