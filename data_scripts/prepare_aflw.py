"""Lay out the two AFLW benchmarks for ssl_lab.data.faces (aflw_m, aflw_r) and verify them
with those readers.

Where to get the data (nothing is downloaded by this script).  Both are derived from AFLW
(Koestinger et al., "Annotated Facial Landmarks in the Wild", 2011), whose own images are
released by TU Graz after a registration; the crops below are what the benchmarks use:
  AFLW_M  test: the MTFL archive (MTFL.zip) from the TCDCN project page of the Multimedia
          Laboratory, CUHK (Zhang et al., ECCV 2014): testing.txt lists its 2,995 AFLW faces
          as "AFLW\\<image> x1..x5 y1..y5 gender smile glasses pose" (1-based pixels).
          train: the 10,122 cropped AFLW faces of Thewlis et al. (ICCV 2017), distributed
          by the Oxford VGG group beside the DVE code (aflw_10122train_cropped.zip): a
          folder with facedata_cropped.csv (columns crop_file, set, ...; fields 5-14 the five
          points as x1,y1,...,x5,y5, 1-based) and the crops.
  AFLW_R  the tighter re-cropped release of Thewlis et al. used by DVE (aflw_release-2):
          aflw_{train,test}_images.txt, aflw_{train,test}_keypoints.mat (variable gt
          [N,5,2] stored as (y, x), hw [N,2]) and the images in output/.
          10,122 train / 2,991 test images.

Layout written (and read):
  <out>/aflw_m/MTFL/testing.txt, <out>/aflw_m/MTFL/AFLW/...
  <out>/aflw_m/aflw_cropped/facedata_cropped.csv, <out>/aflw_m/aflw_cropped/<crops>
  <out>/aflw_r/aflw_{train,test}_images.txt, aflw_{train,test}_keypoints.mat, output/...

Each --source may be a folder or a .zip/.tar archive; it is copied (or symlinked with
--link, or extracted) into a temporary folder that is renamed into place, so an
interrupted run leaves nothing half-written.

Example:
  python data_scripts/prepare_aflw.py --mtfl MTFL.zip \\
      --aflw-cropped aflw_10122train_cropped.zip --aflw-r aflw_release-2 --out /data
  python data_scripts/prepare_aflw.py --out /data --verify-only
"""

from __future__ import annotations

from pathlib import Path

from _common import check_checksums, parser, place, report_splits, run

# sha256 of the annotation files.  No verified values are recorded (none were available
# when this was written; never fill these in from memory); the digests are printed so a
# copy can be compared with a trusted one.
KNOWN_SHA256 = {
    "aflw_m": {"MTFL/testing.txt": "", "aflw_cropped/facedata_cropped.csv": ""},
    "aflw_r": {f"aflw_{s}_{k}": "" for s in ("train", "test")
               for k in ("images.txt", "keypoints.mat")},
}


def verify(data_root: Path, which: list[str]) -> None:
    from ssl_lab.data import faces

    for name in which:
        root = data_root / faces.DEFAULT_DIRS[name]
        print(f"verifying {name} in {root}")
        check_checksums(root, KNOWN_SHA256[name])
        report_splits(name, lambda split, name=name: getattr(faces, name)(root, split), name)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--mtfl", type=Path, help="MTFL.zip or its extracted folder (AFLW_M test)")
    p.add_argument("--aflw-cropped", type=Path,
                   help="the 10,122 cropped AFLW faces, folder or archive (AFLW_M train)")
    p.add_argument("--aflw-r", type=Path, help="aflw_release-2, folder or archive (AFLW_R)")
    p.add_argument("--only", choices=["aflw_m", "aflw_r"], action="append",
                   help="verify only this benchmark (repeatable; default: both)")
    args = p.parse_args()
    from ssl_lab.data import faces

    m_root = args.out / faces.DEFAULT_DIRS["aflw_m"]
    if not args.verify_only:
        for src, dst in ((args.mtfl, m_root / "MTFL"), (args.aflw_cropped, m_root / "aflw_cropped"),
                         (args.aflw_r, args.out / faces.DEFAULT_DIRS["aflw_r"])):
            if src is not None:
                print(f"  {src} -> {dst}")
                place(src, dst, args.link, args.force)
    verify(args.out, args.only or ["aflw_m", "aflw_r"])


if __name__ == "__main__":
    run(main)
