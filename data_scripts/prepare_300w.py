"""Lay out 300-W for ssl_lab.data.faces.w300 and verify it with that reader.

Where to get the data (nothing is downloaded by this script): the 300 Faces In-the-Wild
challenge page of the Intelligent Behaviour Understanding Group (iBUG), Imperial College
London (Sagonas et al., ICCV Workshops 2013), which distributes the re-annotated 68-point
versions of its parts as separate archives: afw.zip, helen.zip, lfpw.zip, ibug.zip (each
image beside a .pts file) and the bounding boxes (bounding_boxes.zip, a "Bounding Boxes"
folder of bounding_boxes_<subset>.mat files).  XM2VTS is not used.

The split (Ren et al., "Face Alignment at 3000 FPS", CVPR 2014; used by DVE and the thesis):
  train 3148 = lfpw/trainset 811 + helen/trainset 2000 + afw 337
  test   689 = common (lfpw/testset 224 + helen/testset 330 = 554) + challenging (ibug 135)

Layout written (and read):
  <out>/300w/{afw,ibug}/<image>.{jpg,png} + <image>.pts
  <out>/300w/{lfpw,helen}/{trainset,testset}/...
  <out>/300w/Bounding Boxes/bounding_boxes_{afw,ibug,helen_trainset,helen_testset,
                                            lfpw_trainset,lfpw_testset}.mat

--src is a folder holding the four parts and the boxes, each either extracted (afw/,
helen/, lfpw/, ibug/, Bounding Boxes/) or as its archive (afw.zip, ..., bounding_boxes.zip).
Each part is copied (or symlinked with --link, or extracted) into a temporary folder that
is renamed into place, so an interrupted run leaves nothing half-written.

Example:
  python data_scripts/prepare_300w.py --src ~/Downloads/300W --out /data
  python data_scripts/prepare_300w.py --out /data --verify-only
"""

from __future__ import annotations

from pathlib import Path

from _common import PrepareError, check_checksums, parser, place, report, report_splits, run

PARTS = {"afw": "afw", "helen": "helen", "lfpw": "lfpw", "ibug": "ibug",
         "Bounding Boxes": "bounding_boxes"}  # folder -> archive stem
# sha256 of the bounding-box files.  No verified values are recorded (none were available
# when this was written; never fill these in from memory); the digests are printed so a
# copy can be compared with a trusted one.
KNOWN_SHA256 = {f"Bounding Boxes/bounding_boxes_{s}.mat": "" for s in
                ("afw", "ibug", "helen_trainset", "helen_testset", "lfpw_trainset", "lfpw_testset")}


def locate(src: Path, folder: str, stem: str) -> Path:
    for candidate in (src / folder, src / stem, *(src / f"{stem}{e}" for e in (".zip", ".tar.gz", ".tgz"))):
        if candidate.exists():
            return candidate
    raise PrepareError(f"neither {src / folder}/ nor {src / stem}.zip found")


def verify(root: Path) -> None:
    from ssl_lab.data import faces

    print(f"verifying {root}")
    faces.require(root, "prepare_300w.py")
    check_checksums(root, KNOWN_SHA256)
    counts = faces.w300_counts(root)
    for subset, expected in faces.W300_EXPECTED.items():
        report(subset, counts[subset], expected)
    report_splits("300w", lambda split: faces.w300(root, split), "300w")  # parses every .pts and box


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--src", type=Path, help="folder with afw, helen, lfpw, ibug and the boxes")
    args = p.parse_args()
    from ssl_lab.data import faces

    root = args.out / faces.DEFAULT_DIRS["300w"]
    if not args.verify_only:
        if args.src is None:
            raise PrepareError("give --src (or --verify-only)")
        for folder, stem in PARTS.items():
            source = locate(args.src, folder, stem)
            print(f"  {source} -> {root / folder}")
            place(source, root / folder, args.link, args.force)
    verify(root)


if __name__ == "__main__":
    run(main)
